"""The command line: ``tthsd [options] URL...`` and ``python -m tthsd_interface``.

Exit status: 0 when every file was downloaded, 1 when at least one failed, 2 for a usage
error or a request the core refused, 130 after Ctrl-C (the downloads are stopped, their
part files and journals kept: the same command resumes them).

Human output goes to standard error (live bars on a terminal, plain lines otherwise);
``--json`` writes the events to standard output, one JSON object per line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from . import __version__
from ._blocking import make_display
from ._downloader import TTHSDownloader
from ._errors import DownloadRefusedError, LibraryError
from ._log import LOG_FILE_ENV, set_console_logging, set_log_file
from ._progress import Display
from ._request import DownloadRequest, create_downloader, start_downloader
from ._results import DownloadEvent
from ._tracker import Tracker
from ._units import format_bytes, format_rate, parse_rate

__all__ = ["main", "name_from_url"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEMO_FILES = 4
DEMO_SIZE = 16 << 20
DEMO_RATE = "32M"


class _UsageError(Exception):
    """A usage error found after parsing (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tthsd",
        description=(
            "Download files over many connections with the TTHSD core: ranges in parallel, "
            "resumable (Ctrl-C, then the same command again), verified checksums."
        ),
        epilog=(
            "examples:\n"
            "  tthsd --demo\n"
            "  tthsd -x 32 https://example.com/big.iso\n"
            "  tthsd -j -d downloads -i urls.txt --limit-rate 10M\n"
            "  tthsd -o a.iso --checksum sha256:<hex> https://example.com/a.iso\n"
            "exit status: 0 all files done, 1 a file failed, 2 usage error, 130 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="what to download")
    p.add_argument("-o", "--output", metavar="PATH", help="save the (single) URL here")
    p.add_argument(
        "-d", "--dir", metavar="DIR", help="folder for the files (default: the current one)"
    )
    p.add_argument(
        "-x", "--connections", type=int, metavar="N",
        help="most connections at once, over all files (default 64; 16 for --demo)",
    )  # fmt: skip
    p.add_argument(
        "--max-connections-per-host", type=int, metavar="N",
        help="most requests to one host at once (default: -x); fewer are used on their own "
        "while a host answers 429/503 or refuses connections",
    )  # fmt: skip
    p.add_argument(
        "-k", "--chunk-size", type=int, metavar="MB",
        help="size of the ranges files are cut into, in MiB (default 10; 1 for --demo)",
    )  # fmt: skip
    p.add_argument(
        "-j", "--parallel", action="store_true",
        help="download the files at the same time (default: one after another)",
    )  # fmt: skip
    p.add_argument(
        "-i", "--input-file", metavar="FILE",
        help="read URLs from FILE ('-' for standard input): one per line, optionally "
        "followed by mirrors of the same file (TAB- or space-separated URLs, as aria2c's "
        "input files) and a path; blank lines and lines starting with # are skipped",
    )  # fmt: skip
    p.add_argument(
        "--mirror", action="append", default=[], metavar="URL",
        help="another URL of the same file (repeatable; with one URL): ranges go to the "
        "faster ones, and a mirror serving another file is dropped",
    )  # fmt: skip
    p.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
        help="send this header on every request (repeatable)",
    )  # fmt: skip
    p.add_argument("--user-agent", metavar="UA", help="the User-Agent header")
    p.add_argument(
        "--proxy", metavar="URL", help="http://, https://, socks5:// or socks5h:// proxy"
    )
    p.add_argument(
        "--limit-rate", metavar="RATE", help="total speed limit, e.g. 500k, 10M (bytes/s)"
    )
    p.add_argument("--retries", type=int, metavar="N", help="retries per range (default 5)")
    p.add_argument(
        "--checksum", action="append", default=[], metavar="ALGO:HEX",
        help="sha256:<hex> or md5:<hex>, once per URL in order; the file is kept only "
        "when it matches",
    )  # fmt: skip
    p.add_argument("--connect-timeout", type=float, metavar="S", help="seconds (default 15)")
    p.add_argument("--read-timeout", type=float, metavar="S", help="seconds (default 30)")
    p.add_argument(
        "--no-durable", action="store_true",
        help="skip the fsyncs that make partial downloads survive a power cut (faster on "
        "slow disks; still safe when the process is killed)",
    )  # fmt: skip
    p.add_argument(
        "-J", "--remote-header-name", action="store_true",
        help="name each file from the server's Content-Disposition (a safe base name in "
        "the output folder, like curl -J); an existing file is not replaced",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="with -J: replace an existing file of the name the server gave",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="write every event as a JSON line on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    p.add_argument(
        "--version", action="store_true", help="print the versions of tthsd and the core"
    )
    p.add_argument(
        "--demo", action="store_true",
        help=f"serve {DEMO_FILES} generated files of {DEMO_SIZE >> 20} MiB on 127.0.0.1, "
        f"download them (at {DEMO_RATE}/s unless --limit-rate is given) and verify them",
    )  # fmt: skip
    p.add_argument("--dll-path", metavar="PATH", help="the core library to use")
    # (a short title: argparse does not wrap it; docs/distributed.md says the rest)
    cluster = p.add_argument_group("on a Dask cluster (the [dask] extra)")
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="run the list on the Dask cluster of this scheduler (e.g. tcp://host:8786); "
        "-d must be the same folder on every worker; -x is connections per worker",
    )  # fmt: skip
    cluster.add_argument(
        "--files-per-task", type=int, default=200, metavar="N",
        help="files per Dask task, one core run each (default 200)",
    )  # fmt: skip
    cluster.add_argument(
        "--host-connections", type=int, metavar="N",
        help="the most connections to one host over the whole cluster (default: no cap)",
    )  # fmt: skip
    return p


def name_from_url(url: str) -> str:
    """A file name for ``url``: the last segment of its path, decoded; ``index.html`` when
    there is none.  Never a path: separators are replaced."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    for sep in ("/", "\\", os.sep, "\0"):
        segment = segment.replace(sep, "_")
    segment = segment.strip()
    if segment in ("", ".", ".."):
        return "index.html"
    return segment


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}.{n}"
    taken.add(candidate)
    return candidate


def _read_input(source: str) -> Iterator[tuple[str, str | None, tuple[str, ...]]]:
    stream: IO[str]
    with ExitStack() as stack:
        if source == "-":
            stream = sys.stdin
        else:
            try:
                stream = stack.enter_context(open(source, encoding="utf-8"))
            except OSError as exc:
                raise _UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
        for raw in stream:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            url = line.split(None, 1)[0]
            rest = line[len(url) :].strip()
            mirrors: list[str] = []
            # Fields after the URL that are URLs themselves are its mirrors; the rest
            # of the line, if any, is the path.
            while rest:
                field = rest.split(None, 1)[0]
                if "://" not in field:
                    break
                mirrors.append(field)
                rest = rest[len(field) :].strip()
            yield url, (rest or None), tuple(mirrors)


def _jobs(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[tuple[str, ...]]]:
    """The (URL, path) of each file, and each one's mirrors."""
    folder = args.dir or ""
    entries: list[tuple[str, str | None, tuple[str, ...]]] = [(u, None, ()) for u in args.urls]
    if args.input_file:
        entries += list(_read_input(args.input_file))
    if not entries:
        raise _UsageError("no URL given (pass URLs, -i FILE, or --demo)")
    if args.mirror:
        if len(entries) != 1:
            raise _UsageError("--mirror needs exactly one URL (put mirrors in -i FILE for several)")
        entries = [(entries[0][0], entries[0][1], entries[0][2] + tuple(args.mirror))]
    if args.output is not None:
        if len(entries) != 1:
            raise _UsageError("-o/--output needs exactly one URL (use -d for several)")
        entries = [(entries[0][0], args.output, entries[0][2])]
    taken: set[str] = set()
    jobs: list[tuple[str, str]] = []
    for url, given, _ in entries:
        if given is not None:
            keep = os.path.isabs(given) or args.output
            jobs.append((url, given if keep else os.path.join(folder, given)))
        else:
            jobs.append((url, os.path.join(folder, _unique(name_from_url(url), taken))))
    return jobs, [m for _, _, m in entries]


def _headers(values: Sequence[str]) -> dict[str, str] | None:
    if not values:
        return None
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise _UsageError(f"a header is 'Name: value', not {value!r}")
        headers[name.strip()] = rest.strip()
    return headers


def _request(
    args: argparse.Namespace, jobs: list[tuple[str, str]], **extra: Any
) -> DownloadRequest:
    checksums: list[str | None] | None = None
    if args.checksum:
        if len(args.checksum) != len(jobs):
            raise _UsageError(
                f"{len(args.checksum)} --checksum for {len(jobs)} URL(s): give one per URL"
            )
        checksums = list(args.checksum)
    try:
        rate = parse_rate(args.limit_rate) if args.limit_rate is not None else 0
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    timeouts = None
    if args.connect_timeout is not None or args.read_timeout is not None:
        timeouts = (args.connect_timeout or 15.0, args.read_timeout or 30.0)
    options: dict[str, Any] = {
        "connections": args.connections,
        "chunk_size_mb": args.chunk_size,
        "parallel": args.parallel,
        "headers": _headers(args.header),
        "checksums": checksums,
        "user_agent": args.user_agent,
        "proxy": args.proxy,
        "speed_limit": rate,
        "retries": args.retries,
        "timeouts": timeouts,
        "durable": not args.no_durable,
        "name_from_server": args.remote_header_name,
        "overwrite": args.overwrite,
        "max_connections_per_host": args.max_connections_per_host,
    }
    options.update(extra)
    try:
        return DownloadRequest.build([u for u, _ in jobs], [p for _, p in jobs], **options)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None


class _JsonLines:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True


def _run(request: DownloadRequest, args: argparse.Namespace) -> int:
    """Download ``request``; print as ``args`` asks; the exit status."""
    tracker = Tracker(request)
    human = not args.quiet and not args.json
    display: Display | None = None
    if human:
        display = make_display(request.names())
    out = _JsonLines(sys.stdout) if args.json else None
    dl_id = 0

    def on_event(event: dict[str, Any], msg: dict[str, Any]) -> None:
        tracker.feed_raw(event, msg)
        if display is not None:
            display.feed(DownloadEvent.from_raw(event, msg, dl_id))
        if out is not None:
            out.write({"event": event, "msg": msg})

    try:
        dl = TTHSDownloader(args.dll_path)
    except LibraryError as exc:
        print(f"tthsd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    started = time.monotonic()
    interrupted = False
    try:
        try:
            dl_id = create_downloader(dl, request, on_event)
        except DownloadRefusedError as exc:
            print(f"tthsd: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if display is not None:
            display.start()
        try:
            start_downloader(dl, dl_id, request)
            while not dl.wait(dl_id, timeout=0.2):
                pass
        except KeyboardInterrupt:
            interrupted = True
            # Stop once, whatever more Ctrl-C arrive: the journal must be written.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            dl.stop_download(dl_id)
    finally:
        dl.close()
        if display is not None:
            display.close()
    elapsed = time.monotonic() - started
    failures = tracker.failures()
    # Sizes and speeds are printed only with --json or without -q: a quiet run skips a
    # stat per file at its end.
    results = tracker.results() if out is not None or human else []
    if interrupted:
        failures = [f for f in failures if f.code != "stopped"]
    if out is not None:
        out.write({
            "summary": {
                "ok": len(results),
                "failed": len(failures),
                "interrupted": interrupted,
                "seconds": round(elapsed, 3),
                "files": [
                    {"url": r.url, "path": str(r.path), "bytes": r.bytes,
                     "seconds": round(r.seconds, 3), "average_speed": round(r.average_speed)}
                    for r in results
                ],
                "failures": [
                    {"url": f.url, "path": str(f.path), "code": f.code, "message": f.message}
                    for f in failures
                ],
            }
        })  # fmt: skip
    if human and results:
        size = sum(r.bytes for r in results)
        rate = size / elapsed if elapsed > 0 else 0.0
        print(
            f"{len(results)} file(s), {format_bytes(size)} in {elapsed:.2f} s"
            f" ({format_rate(rate)})",
            file=sys.stderr,
        )
    if failures and not args.json:
        print(f"{len(failures)} file(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f.url} -> {f.path}: {f.message} ({f.code})", file=sys.stderr)
    if interrupted:
        if not args.json:
            print(
                "interrupted: downloads stopped; partial files kept, run the same command "
                "again to resume",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else EXIT_OK


def _on_cluster(args: argparse.Namespace) -> int:
    """``--scheduler``: the list on a Dask cluster (Dask is imported only here)."""
    if args.output is not None:
        raise _UsageError("-o/--output names one file: use -d with --scheduler")
    if not args.urls and not args.input_file:
        raise _UsageError("no URL given (pass URLs or -i FILE)")
    # The local run's checks and defaults, for the options shared with it (the
    # checksums, one per URL of a list not read yet, go to the cluster run as they are).
    shared = argparse.Namespace(**{**vars(args), "checksum": []})
    probe = _request(shared, [("http://localhost/", "x")])
    timeouts = probe.timeouts_ms
    options = {
        "chunk_size_mb": probe.chunk_size_mb, "headers": probe.headers,
        "user_agent": probe.user_agent, "proxy": probe.proxy, "speed_limit": probe.speed_limit,
        "retries": probe.retries, "durable": probe.durable,
        "timeouts": None if timeouts is None else (timeouts[0] / 1000, timeouts[1] / 1000),
    }  # fmt: skip
    try:
        from ._clustercli import run_on_cluster

        return run_on_cluster(args, options)
    except ImportError as exc:
        raise _UsageError(
            f"--scheduler needs Dask: pip install 'tthsd_interface[dask]' ({exc})"
        ) from None


def _version(args: argparse.Namespace) -> int:
    print(f"tthsd {__version__} (tthsd_interface, Python {sys.version.split()[0]})")
    try:
        dl = TTHSDownloader(args.dll_path)
    except LibraryError as exc:
        first = str(exc).splitlines()[0]
        print(f"core: not available ({first})")
        return EXIT_OK
    print(f"core {dl.core_version or '?'} ({dl.library_path})")
    dl.close()
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    # Here, for --demo alone: its server's http.server is +19 to +30 ms of start-up
    # (measured on the 2-core test machine, min and median of 21 runs), 4-7% of bench
    # workload 3 through this command line there (0.46 s), which every other run would pay.
    from .demo import serve_files

    rng = random.Random(20240601)  # noqa: S311 - test data, not secrets
    files = {f"/demo{i}.bin": rng.randbytes(DEMO_SIZE) for i in range(1, DEMO_FILES + 1)}
    digests = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    with ExitStack() as stack:
        base = stack.enter_context(serve_files(files))
        folder = args.dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="tthsd-demo-"))
        jobs = [(base + name, os.path.join(folder, name.lstrip("/"))) for name in files]
        if not args.quiet and not args.json:
            print(
                f"demo: serving {DEMO_FILES} x {DEMO_SIZE >> 20} MiB of generated data at "
                f"{base}, saving to {folder}",
                file=sys.stderr,
            )
        if args.limit_rate is None:
            args.limit_rate = DEMO_RATE
        request = _request(
            args, jobs, parallel=True, checksums=[f"sha256:{d}" for d in digests.values()]
        )
        status = _run(request, args)
        if status != EXIT_OK:
            return status
        for (_, path), expected in zip(jobs, digests.values()):
            sha = hashlib.sha256()  # not hashlib.file_digest: it needs Python 3.11
            with open(path, "rb") as saved:
                while block := saved.read(1 << 20):
                    sha.update(block)
            digest = sha.hexdigest()
            if digest != expected:
                name = os.path.basename(path)
                print(f"demo FAILED: {name} has sha256 {digest}", file=sys.stderr)
                return EXIT_FAILED
        if not args.quiet and not args.json:
            print(f"demo OK: {DEMO_FILES} files downloaded and verified (SHA-256)", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The seed's log goes to the console and to TTHSDPyInter.log; a command line keeps
    # its terminal clean and writes the log file only when TTHSD_LOG_FILE asks for one.
    set_console_logging(False)
    if not os.environ.get(LOG_FILE_ENV):
        set_log_file(None)
    if args.version:
        return _version(args)
    if args.connections is None:
        # The demo's server is Python's http.server, in this process: it serves fewer,
        # smaller ranges faster than 64 connections of 10 MiB pieces.
        args.connections = 16 if args.demo else 64
    if args.chunk_size is None:
        args.chunk_size = 1 if args.demo else 10
    if args.connections <= 0 or args.chunk_size <= 0:
        parser.error("-x and -k must be positive")
    if args.retries is not None and args.retries < 0:
        parser.error("--retries must be 0 or more")
    try:
        if args.demo:
            return _demo(args)
        if args.scheduler:
            return _on_cluster(args)
        jobs, mirrors = _jobs(args)
        extra = {"mirrors": mirrors} if any(mirrors) else {}
        return _run(_request(args, jobs, **extra), args)
    except _UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
