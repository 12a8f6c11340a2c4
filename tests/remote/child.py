"""One download in a fresh interpreter, for tests whose environment must be isolated
(proxy variables, ``SSL_CERT_FILE``): the core reads them when it builds its HTTP client,
and a test must neither see the developer's nor leak its own into other tests.

``python -m tests.remote.child SPEC.json`` where SPEC is::

    {"tasks": [...task objects...], "proxy": <absent: leave the default (environment);
     null: set_proxy(NULL); "url": set_proxy(url)>, "threads": 4, "timeout": 30,
     "remote_url": <optional remote_callback_url, with use_callback_url true>,
     "use_socket": <optional bool>, "retries": [max, delay_ms, max_delay_ms],
     "quiet": <seconds without events to wait for after `end`>}

Prints one JSON line: ``{"id", "last_error", "set_proxy", "events": [[event_json,
msg_json], ...], "stats": "<get_performance_stats text>", "ended": bool}``.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any

from tests.abi.lib import Events, Lib, bool_p, library_path, tasks_json


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    lib = Lib(library_path())
    events = Events()
    tasks = spec["tasks"]
    report: dict[str, Any] = {"set_proxy": None, "events": [], "stats": "", "ended": False}
    remote = spec.get("remote_url")
    use_socket = spec.get("use_socket")
    ident = lib.get_downloader(
        tasks_json(tasks), len(tasks), spec.get("threads", 4), 1, events.callback,
        remote is not None, None, remote.encode() if remote else None,
        bool_p(use_socket), None,
    )  # fmt: skip
    report["id"] = ident
    report["last_error"] = lib.last_error()
    if ident > 0:
        if "proxy" in spec:
            value = spec["proxy"]
            report["set_proxy"] = lib.set_proxy(ident, None if value is None else value.encode())
        if "retries" in spec:  # [max_retries, delay_ms, max_delay_ms]
            assert lib.set_retry_config(ident, *spec["retries"]) == 0, lib.last_error()
        assert lib.start_download_id(ident) == 0, lib.last_error()
        try:
            events.wait_end(spec.get("timeout", 30))
            report["ended"] = True
        except AssertionError:
            pass
        if spec.get("quiet"):  # let late events (a lost listener's notice) arrive
            events.wait_quiet(spec["quiet"], spec["quiet"] + 5)
        ptr = lib.get_performance_stats(ident)
        report["stats"] = ctypes.string_at(ptr).decode("utf-8")
        lib.free_string(ptr)
        lib.stop_download(ident)
    report["events"] = [[e.raw[0].decode(), e.raw[1].decode()] for e in events.snapshot()]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
