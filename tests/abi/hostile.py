"""Hostile calls into the library, run in a child interpreter by the ``isolated`` fixture.

``python -m tests.abi.hostile GROUP TMPDIR`` runs one group of cases and prints one JSON
object (case -> result) as its last stdout line. Before each case it writes
``>>> case`` to stderr, so a crash names the case that caused it. Results are plain data;
the assertions live in test_bad_input.py.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lib import Events, Lib, bool_p, library_path, task, tasks_json

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
ID_FUNCTIONS = (
    "start_download_id", "start_multiple_downloads_id", "pause_download", "resume_download",
    "stop_download", "startDownload_ID", "startMultipleDownloads_ID", "pauseDownload",
    "resumeDownload", "stopDownload",
)
BAD_IDS = (0, -1, 987654, INT_MAX, INT_MIN)
DEAD_URL = "http://127.0.0.1:9/never.bin"  # nothing listens: connection refused


def _case(name: str) -> None:
    print(f">>> {name}", file=sys.stderr, flush=True)


def _entry(lib: Lib, entry: str, events: Events) -> Callable[[Any, int], int]:
    """A caller of one of the four creating exports taking (tasks_json, task_count)."""
    cb = events.callback

    def call(tj: Any, count: int) -> int:
        base = (tj, count, 4, 1, cb, False, None, None, None)
        if entry == "start_download":
            return int(lib.start_download(*base, None, None))
        if entry == "get_downloader":
            return int(lib.get_downloader(*base, None))
        if entry == "startDownload":
            return int(lib.startDownload(*base, None))
        return int(lib.getDownloader(*base))

    return call


def invalid_tasks(lib: Lib, tmp: Path, entry: str) -> dict[str, Any]:
    events = Events()
    call = _entry(lib, entry, events)
    a, b = str(tmp / "a.bin"), str(tmp / "b.bin")
    ok = task(DEAD_URL, a)
    cases: dict[str, tuple[Any, int]] = {
        "null": (None, 1),
        "invalid utf-8": (b'[{"url": "http://127.0.0.1:9/\xff\xfe", "save_path": "x"}]', 1),
        "invalid utf-8 outside strings": (b'[\xff{"url": "http://h/x", "save_path": "x"}]', 1),
        "malformed json": (b'[{"url": ', 1),
        "not json": (b"hello", 1),
        "empty string": (b"", 0),
        "object, not array": (json.dumps(ok).encode(), 1),
        "array of non-objects": (b'["http://127.0.0.1:9/x"]', 1),
        "count too small": (tasks_json([ok, task(DEAD_URL, b)]), 1),
        "count too large": (tasks_json([ok]), 3),
        "negative count": (tasks_json([ok]), -1),
        "missing url": (tasks_json([{"save_path": a}]), 1),
        "missing save_path": (tasks_json([{"url": DEAD_URL}]), 1),
        "url not a string": (tasks_json([{"url": 5, "save_path": a}]), 1),
        "empty save_path": (tasks_json([task(DEAD_URL, "")]), 1),
        "duplicate save_path": (tasks_json([task(DEAD_URL, a), task(DEAD_URL + "2", a)]), 2),
        "unsupported scheme ftp": (tasks_json([task("ftp://127.0.0.1/x", a)]), 1),
        "unsupported scheme file": (tasks_json([task("file:///etc/hostname", a)]), 1),
        "url that does not parse": (tasks_json([task("not a url", a)]), 1),
        "empty url": (tasks_json([task("", a)]), 1),
    }
    out: dict[str, Any] = {}
    for name, (tj, count) in cases.items():
        _case(f"{entry}: {name}")
        ret = call(tj, count)
        out[name] = [ret, lib.last_error()]
        if ret > 0:  # should not happen; don't leave it running
            lib.stop_download(ret)
    time.sleep(0.3)
    out["__events__"] = len(events.items)
    out["__files__"] = sorted(p.name for p in tmp.iterdir())
    return out


def unknown_ids(lib: Lib, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fn in ID_FUNCTIONS:
        for ident in BAD_IDS:
            _case(f"{fn}({ident})")
            out[f"{fn}({ident})"] = [getattr(lib, fn)(ident), lib.last_error()]
    for ident in BAD_IDS:
        _case(f"set_speed_limit({ident})")
        out[f"set_speed_limit({ident})"] = [lib.set_speed_limit(ident, 1000), lib.last_error()]
        _case(f"set_proxy({ident})")
        out[f"set_proxy({ident})"] = [lib.set_proxy(ident, b"http://127.0.0.1:9"),
                                      lib.last_error()]
        _case(f"set_retry_config({ident})")
        out[f"set_retry_config({ident})"] = [lib.set_retry_config(ident, 1, 1, 1),
                                             lib.last_error()]
        _case(f"tthsd_set_timeouts({ident})")
        out[f"tthsd_set_timeouts({ident})"] = [lib.tthsd_set_timeouts(ident, 1000, 1000),
                                               lib.last_error()]
        _case(f"tthsd_set_durability({ident})")
        out[f"tthsd_set_durability({ident})"] = [lib.tthsd_set_durability(ident, False),
                                                 lib.last_error()]
        _case(f"get_performance_stats({ident})")
        ptr = lib.get_performance_stats(ident)
        text = ctypes.string_at(ptr).decode() if ptr else None
        lib.free_string(ptr)
        out[f"get_performance_stats({ident})"] = text
    return out


def free_string(lib: Lib, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _case("free_string(NULL)")
    lib.free_string(None)
    buf = ctypes.create_string_buffer(b"not from the library", 64)
    _case("free_string(ctypes buffer)")
    lib.free_string(ctypes.addressof(buf))
    out["buffer intact"] = buf.value == b"not from the library"
    py = ctypes.c_char_p(b"python bytes")
    _case("free_string(python bytes)")
    lib.free_string(ctypes.cast(py, ctypes.c_void_p).value)
    _case("free_string(malloc'd by libc)")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    mem = libc.malloc(32)
    lib.free_string(mem)
    libc.free(mem)  # still ours to free: the library must not have freed it
    _case("free_string(middle of a library string)")
    ptr = lib.get_performance_stats(424242)
    lib.free_string(ptr + 1)
    _case("free_string(library string)")
    lib.free_string(ptr)
    _case("free_string(library string again)")
    lib.free_string(ptr)
    _case("tthsd_version after all that")
    out["version"] = lib.tthsd_version().decode()
    return out


def last_error(lib: Lib, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _case("fail a call")
    lib.pause_download(987654)
    _case("tthsd_last_error(NULL, 0)")
    full = lib.tthsd_last_error(None, 0)
    out["length"] = full
    _case("tthsd_last_error(NULL, 100)")
    out["null with length"] = lib.tthsd_last_error(None, 100)
    big = ctypes.create_string_buffer(full + 1)
    lib.tthsd_last_error(big, len(big))
    out["message"] = big.raw.decode("utf-8", "replace")
    small = ctypes.create_string_buffer(b"\xaa" * 8, 8)
    _case("tthsd_last_error(buf, 5)")
    out["small returns"] = lib.tthsd_last_error(small, 5)
    out["small raw"] = list(small.raw)
    zero = ctypes.create_string_buffer(b"\xaa" * 4, 4)
    _case("tthsd_last_error(buf, 0)")
    out["zero returns"] = lib.tthsd_last_error(zero, 0)
    out["zero raw"] = list(zero.raw)
    _case("a call that succeeds")
    out["abi_version"] = lib.tthsd_abi_version()
    lib.free_string(None)
    ptr = lib.get_performance_stats(987654)
    lib.free_string(ptr)
    ident = lib.get_downloader(tasks_json([task(DEAD_URL, tmp / "x.bin")]), 1, 1, 1, None,
                               False, None, None, None, None)
    out["after success"] = lib.tthsd_last_error(None, 0)
    lib.stop_download(ident)
    return out


def null_optional_args(lib: Lib, tmp: Path) -> dict[str, Any]:
    """NULL for every optional pointer is valid input; malformed headers_json is not."""
    out: dict[str, Any] = {}
    tj = tasks_json([task(DEAD_URL, tmp / "n.bin", id="n")])
    for name, call in {
        "start_download all NULL": lambda: lib.start_download(
            tj, 1, 0, 0, None, False, None, None, None, None, None),
        "get_downloader all NULL": lambda: lib.get_downloader(
            tj, 1, 0, 0, None, False, None, None, None, None),
        "startDownload all NULL": lambda: lib.startDownload(
            tj, 1, 0, 0, None, False, None, None, None, None),
        "getDownloader all NULL": lambda: lib.getDownloader(
            tj, 1, 0, 0, None, False, None, None, None),
        "use_callback_url true, NULL url": lambda: lib.start_download(
            tj, 1, 1, 1, None, True, None, None, bool_p(True), bool_p(False), None),
        "negative thread and chunk counts": lambda: lib.get_downloader(
            tj, 1, -5, -5, None, False, None, None, None, None),
    }.items():
        _case(name)
        ident = call()
        out[name] = [ident, lib.last_error()]
        if ident > 0:
            lib.stop_download(ident)
    for name, hdr in {
        "headers_json malformed": b'{"X-A": ',
        "headers_json not an object": b'["X-A"]',
        "headers_json non-string value": b'{"X-A": 5}',
        "headers_json invalid utf-8": b'{"X-A": "\xff"}',
    }.items():
        _case(name)
        ident = lib.start_download(tj, 1, 1, 1, None, False, None, None, None, None, hdr)
        out[name] = [ident, lib.last_error()]
        if ident > 0:
            lib.stop_download(ident)
    # A user agent that could not be sent as a header is refused at creation, as headers
    # are, not by every task failing later.
    for name, ua in {
        "user_agent with CR/LF": b"TTHSD\r\nX-Injected: 1",
        "user_agent with LF": b"TTHSD\nX: 1",
        "user_agent with a NUL-free control byte": b"TTHSD\x01",
    }.items():
        _case(name)
        ident = lib.get_downloader(tj, 1, 1, 1, None, False, ua, None, None, None)
        out[name] = [ident, lib.last_error()]
        if ident > 0:
            lib.stop_download(ident)
    return out


def bad_proxy(lib: Lib, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ident = lib.get_downloader(tasks_json([task(DEAD_URL, tmp / "p.bin")]), 1, 1, 1, None,
                               False, None, None, None, None)
    out["id"] = ident
    for name, value in {
        "NULL": None, "empty": b"", "http": b"http://127.0.0.1:9", "https": b"https://127.0.0.1:9",
        "ftp": b"ftp://127.0.0.1:21", "garbage": b"not a proxy", "invalid utf-8": b"http://\xff",
        "no host": b"http://",
    }.items():
        _case(f"set_proxy({name})")
        out[name] = [lib.set_proxy(ident, value), lib.last_error()]
    lib.stop_download(ident)
    return out


GROUPS: dict[str, Callable[[Lib, Path], dict[str, Any]]] = {
    "invalid_tasks:start_download": lambda lib, t: invalid_tasks(lib, t, "start_download"),
    "invalid_tasks:get_downloader": lambda lib, t: invalid_tasks(lib, t, "get_downloader"),
    "invalid_tasks:startDownload": lambda lib, t: invalid_tasks(lib, t, "startDownload"),
    "invalid_tasks:getDownloader": lambda lib, t: invalid_tasks(lib, t, "getDownloader"),
    "unknown_ids": unknown_ids,
    "free_string": free_string,
    "last_error": last_error,
    "null_optional_args": null_optional_args,
    "bad_proxy": bad_proxy,
}


def main() -> None:
    group, tmp = sys.argv[1], Path(sys.argv[2])
    lib = Lib(library_path())
    result = GROUPS[group](lib, tmp)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
