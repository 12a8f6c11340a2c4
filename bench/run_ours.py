"""One download through the Python API, as a child process of bench/bench.py.

    python bench/run_ours.py --urls-file F --out-dir D --connections N [--callback] [--multiple] [--stats]
    python bench/run_ours.py --check

Reads one URL a line from F and saves each to D/<last path segment of the URL> with one
`TTHSDownloader.start_download` call (`is_multiple=True` with --multiple), then waits for
the run to end: `TTHSDownloader.wait` when the class has it, else the `end` event.
`--connections 0` leaves `thread_count` at the library's default.

With --callback a Python callback counts every event by Type (the cost issue 4 bounds at
3% of throughput); without it nothing is registered, and the end is found through `wait`
or, lacking that, by polling `get_performance_stats`.

Prints one JSON line on stdout, after the prefix `run_ours-report: `: `ok`, `events` (counts
by Type), `errors` (the first few `err` messages), `api_wall` and `api_cpu` (seconds from
`start_download` to the end, CPU of the whole process over that span), `startup` (seconds
from interpreter start to a constructed downloader), `wait_by`, and with --stats `state`
and `stats` (a few keys of `get_performance_stats` after the end: thread_count, chunk_size,
retries, bytes_fetched...). Exit status: 0 success, 1 an `err` event (seen with --callback)
or a failed or stopped state (known with --stats, or when the end was found by polling),
2 bad arguments, 3 import or library failure, 4 `start_download` refused, 5 timeout. A run
that fails without telling us either way still fails bench.py's SHA-256 check.

The harness is part of what the parent times, so it imports no more than it needs: no
argparse, pathlib or typing (together ~20 ms of a start-up that curl does in C), and json
only to print the report.

`--lib PATH` sets TTHSD_LIBRARY before the import. Run with the cwd in the work dir: the
package's log file lands in the cwd.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

T_START = time.perf_counter()

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


STATS_KEYS = ("thread_count", "chunk_size", "connections", "retries", "bytes_fetched", "downloaded", "total")

# The package may log to stdout too: the harness looks for the line with this prefix.
REPORT_PREFIX = "run_ours-report: "


def emit(report: dict[str, Any]) -> None:
    # json only now: the package loads it on its dispatcher thread once a download runs,
    # so a successful run finds it loaded; a top-level import would be ~5 ms of start-up.
    import json

    sys.stdout.write(REPORT_PREFIX + json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()


def call_wait(dl: Any, dl_id: int, timeout: float) -> bool:
    """`dl.wait(dl_id, timeout=...)`; False when it says the run did not end in time."""
    try:
        result = dl.wait(dl_id, timeout=timeout)
    except TypeError:  # an older signature without timeout
        result = dl.wait(dl_id)
    return result is not False


def stats_of(dl: Any, dl_id: int) -> dict[str, Any] | None:
    get = getattr(dl, "get_performance_stats", None)
    if get is None:
        return None
    stats = get(dl_id)
    if isinstance(stats, (str, bytes)):
        import json

        stats = json.loads(stats)
    return stats if isinstance(stats, dict) else None


class Args:
    """The command line (see the module docstring)."""

    VALUED = {"--urls-file": str, "--out-dir": str, "--connections": int, "--chunk-mb": int,
              "--lib": str, "--timeout": float}  # fmt: skip
    FLAGS = ("--callback", "--multiple", "--check", "--stats")

    def __init__(self, argv: list[str]) -> None:
        self.urls_file = self.out_dir = self.lib = ""
        self.connections = self.chunk_mb = 0
        self.timeout = 3600.0
        self.callback = self.multiple = self.check = self.stats = False
        i = 0
        while i < len(argv):
            opt = argv[i]
            if opt in self.FLAGS:
                setattr(self, opt[2:], True)
            elif opt in self.VALUED and i + 1 < len(argv):
                i += 1
                setattr(self, opt[2:].replace("-", "_"), self.VALUED[opt](argv[i]))
            else:
                raise ValueError(f"unknown or incomplete option {opt!r}")
            i += 1
        if not self.check and not (self.urls_file and self.out_dir):
            raise ValueError("--urls-file and --out-dir are required")


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return 0
    try:
        args = Args(sys.argv[1:])
    except ValueError as e:
        print(f"run_ours: {e}", file=sys.stderr)
        return 2
    if args.lib:
        os.environ["TTHSD_LIBRARY"] = os.path.realpath(args.lib)

    report: dict[str, Any] = {"ok": False, "events": {}, "errors": []}
    try:
        import tthsd_interface
        from tthsd_interface import TTHSDownloader

        dl = TTHSDownloader()
    except Exception as e:  # the harness turns this into "ours skipped" with the reason
        print(f"run_ours: cannot load tthsd_interface: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    report["startup"] = round(time.perf_counter() - T_START, 4)
    if args.check:
        info = {"package": getattr(tthsd_interface, "__version__", "?"), "file": tthsd_interface.__file__}
        info["library_path"] = str(getattr(dl, "library_path", "?"))
        for name in ("core_version", "version"):
            value = getattr(dl, name, None)
            if value is not None:
                try:
                    info["library"] = str(value() if callable(value) else value)
                except Exception:
                    pass
                break
        info["has_wait"] = callable(getattr(dl, "wait", None))
        info["startup_s"] = round(report["startup"], 3)
        emit(info)
        return 0

    with open(args.urls_file, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    save_paths = [os.path.join(args.out_dir, url.rsplit("/", 1)[1]) for url in urls]

    counts: dict[str, int] = {}
    errors: list[str] = []
    ended = threading.Event()

    def count_events(event: dict[str, Any], msg: dict[str, Any]) -> None:
        kind = event.get("Type", "?")
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "err":
            errors.append(f"{event.get('ShowName', '')}: {msg.get('Code', '')} {msg.get('Error', '')}")
        elif kind == "end":
            ended.set()

    has_wait = callable(getattr(dl, "wait", None))
    callback: Callable[[dict[str, Any], dict[str, Any]], None] | None = count_events
    if not args.callback:
        callback = None
        if not has_wait and getattr(dl, "get_performance_stats", None) is None:
            # Nothing else tells us the end: a callback that looks only for it.
            def only_end(event: dict[str, Any], msg: dict[str, Any]) -> None:
                if event.get("Type") == "end":
                    ended.set()

            callback = only_end

    kwargs: dict[str, Any] = {"urls": urls, "save_paths": save_paths}
    if args.connections > 0:
        kwargs["thread_count"] = args.connections
    if args.chunk_mb > 0:
        kwargs["chunk_size_mb"] = args.chunk_mb
    if callback is not None:
        kwargs["callback"] = callback
    if args.multiple:
        kwargs["is_multiple"] = True

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    try:
        dl_id = dl.start_download(**kwargs)
    except Exception as e:
        print(f"run_ours: start_download raised {type(e).__name__}: {e}", file=sys.stderr)
        return 4
    if not isinstance(dl_id, int) or dl_id <= 0:
        print(f"run_ours: start_download returned {dl_id!r}", file=sys.stderr)
        return 4

    deadline = t0 + args.timeout
    stats: dict[str, Any] = {}
    if has_wait:
        report["wait_by"] = "wait()"
        if not call_wait(dl, dl_id, args.timeout):
            emit(report)
            print(f"run_ours: wait() gave up after {args.timeout:.0f} s", file=sys.stderr)
            return 5
        if callback is count_events:
            # wait() may return before the dispatcher has handed us `end`; count them all.
            ended.wait(max(0.0, min(30.0, deadline - time.perf_counter())))
    elif callback is not None:
        report["wait_by"] = "end event"
        ended.wait(args.timeout)
    else:
        report["wait_by"] = "polling get_performance_stats"
        while time.perf_counter() < deadline:
            stats = stats_of(dl, dl_id) or {}
            if stats.get("state") in ("finished", "failed", "stopped"):
                break
            time.sleep(0.01)
    api_wall = time.perf_counter() - t0
    report["api_wall"] = round(api_wall, 4)
    report["api_cpu"] = round(cpu_seconds() - cpu0, 4)
    report["events"] = dict(counts)
    report["errors"] = errors[:5]

    if not has_wait and time.perf_counter() >= deadline and not ended.is_set():
        emit(report)
        print(f"run_ours: no end within {args.timeout:.0f} s", file=sys.stderr)
        return 5
    if args.stats:
        try:
            stats = stats_of(dl, dl_id) or {}
        except Exception as e:  # stats are a diagnostic: report, do not fail the run
            report["stats_error"] = f"{type(e).__name__}: {e}"
        # What the engine says it did: the harness prints these under its table.
        report["stats"] = {k: stats[k] for k in STATS_KEYS if k in stats}
    state = stats.get("state")
    report["state"] = state
    report["ok"] = not errors and state not in ("failed", "stopped")
    emit(report)
    if errors:
        print(f"run_ours: {len(errors)} err event(s), first: {errors[0]}", file=sys.stderr)
        return 1
    if state in ("failed", "stopped"):
        print(f"run_ours: the downloader ended in state {state}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
