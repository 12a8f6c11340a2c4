"""An offline demonstration: download generated files from a loopback server and check them.

Run it with ``python -m tthsd_interface.demo``.  It

1. generates a few files of pseudo-random bytes in memory (``--files``, ``--size-mb``),
2. serves them from an HTTP/1.1 server on ``127.0.0.1`` in a thread (with ``Range``
   support, as a real file server has),
3. downloads them all at once with :class:`TTHSDownloader`, printing progress from the
   callback,
4. verifies the SHA-256 of every file and exits 0 when all match, 1 otherwise.

No network beyond the loopback interface is used.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ._downloader import TTHSDownloader

__all__ = ["main", "serve_files"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _make_handler(files: Mapping[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the core's connections expect

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the demo prints its own progress

        def _send(self, head_only: bool) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            size = len(body)
            start, end = 0, size - 1
            status = 200
            wanted = self.headers.get("Range")
            match = _RANGE.match(wanted.strip()) if wanted else None
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
                else:  # suffix range: the last n bytes
                    start = max(0, size - int(last))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not head_only:
                self.wfile.write(memoryview(body)[start : end + 1])  # no copy

        def do_GET(self) -> None:
            self._send(head_only=False)

        def do_HEAD(self) -> None:
            self._send(head_only=True)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A downloader closes connections it no longer needs (after a probe, when a range
        # is taken over at the tail, on pause or stop): not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def serve_files(files: Mapping[str, bytes]) -> Iterator[str]:
    """Serve ``{"/path": bytes}`` on 127.0.0.1 in a thread; yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), _make_handler(files))
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Progress:
    """The demo's callback: one line per task event, and a throttled progress line."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.last_print = 0.0
        self.done: dict[str, int] = {}
        self.errors: list[str] = []

    def __call__(self, event: dict[str, Any], msg: dict[str, Any]) -> None:
        kind = event.get("Type")
        name = event.get("ShowName", "")
        if kind == "startOne":
            print(f"  start   [{msg.get('Index')}/{msg.get('Total')}] {name}")
        elif kind == "update":
            self.done[name] = int(msg.get("Downloaded", 0))
            now = time.monotonic()
            if now - self.last_print >= 0.2:
                self.last_print = now
                done, total = sum(self.done.values()), self.total_bytes
                if total:
                    print(f"  progress {done / total:6.1%}  {done >> 20} / {total >> 20} MiB")
        elif kind == "endOne":
            print(f"  {'done' if msg.get('Success') else 'FAILED':7} {name}")
        elif kind == "err":
            self.errors.append(f"{name}: {msg.get('Error')} ({msg.get('Code')})")
            print(f"  error   {name}: {msg.get('Error')}")
        elif kind == "end":
            print("  all tasks ended")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tthsd_interface.demo",
        description="Download generated files from a loopback server and verify them.",
    )
    parser.add_argument("--files", type=int, default=3, help="number of files (default 3)")
    parser.add_argument("--size-mb", type=int, default=16, help="size of each file in MiB")
    parser.add_argument("--threads", type=int, default=16, help="connections (default 16)")
    parser.add_argument("--dir", type=Path, default=None, help="where to save (default: temp)")
    parser.add_argument("--dll-path", default=None, help="the core library to use")
    args = parser.parse_args(argv)

    rng = random.Random(20240601)  # noqa: S311 - test data, not secrets
    files = {f"/file{i}.bin": rng.randbytes(args.size_mb << 20) for i in range(1, args.files + 1)}
    expected = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}

    with tempfile.TemporaryDirectory(prefix="tthsd-demo-") as tmp, serve_files(files) as base:
        out = args.dir if args.dir is not None else Path(tmp)
        urls = [base + name for name in files]
        paths = [out / name.lstrip("/") for name in files]
        print(f"serving {len(files)} x {args.size_mb} MiB at {base}; saving to {out}")
        progress = _Progress(sum(len(body) for body in files.values()))
        started = time.monotonic()
        with TTHSDownloader(args.dll_path) as dl:
            print(f"core {dl.core_version or '?'} from {dl.library_path}")
            dl_id = dl.start_download(
                urls, paths, thread_count=args.threads, chunk_size_mb=1,
                callback=progress, is_multiple=True,
            )  # fmt: skip
            if dl_id < 0:
                print("the core refused the download (see TTHSDPyInter.log)", file=sys.stderr)
                return 1
        elapsed = time.monotonic() - started
        ok = True
        for name, path in zip(files, paths):
            got = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            good = got == expected[name]
            ok = ok and good
            print(f"  sha256 {'OK  ' if good else 'BAD '} {path.name} {got}")
        total_mb = args.files * args.size_mb
        print(f"{total_mb} MiB in {elapsed:.2f} s ({total_mb / max(elapsed, 1e-9):.0f} MiB/s)")
        print("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
