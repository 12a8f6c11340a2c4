"""One download in a fresh interpreter, so its trust store (``SSL_CERT_FILE``) is the
test's own and a crash of the core fails one test, not the run.

``python -m tests.network.child SPEC.json`` where SPEC is ``{"tasks": [...], "threads":
8, "chunk_mb": 1, "multiple": false, "retry": [max_retries, delay_ms, max_delay_ms]
(optional), "timeouts": [connect_ms, read_ms] (optional), "durable": true (optional),
"timeout": 60}``. ``multiple`` runs the tasks at once (``start_multiple_downloads_id``).
Prints one JSON line: ``{"id", "last_error", "events": [[event_json, msg_json], ...],
"stats", "ended", "seconds"}`` (``seconds``: from the start call to ``end``).
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.abi.lib import Events, Lib, library_path, tasks_json


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    lib = Lib(library_path())
    events = Events()
    tasks = spec["tasks"]
    report: dict[str, Any] = {"events": [], "stats": "", "ended": False, "seconds": None}
    ident = lib.get_downloader(
        tasks_json(tasks),
        len(tasks),
        spec.get("threads", 4),
        spec.get("chunk_mb", 1),
        events.callback,
        False,
        None,
        None,
        None,
        None,
    )
    report["id"] = ident
    report["last_error"] = lib.last_error()
    if ident > 0:
        if "retry" in spec:
            assert lib.set_retry_config(ident, *spec["retry"]) == 0, lib.last_error()
        if "timeouts" in spec:
            assert lib.tthsd_set_timeouts(ident, *spec["timeouts"]) == 0, lib.last_error()
        if "durable" in spec:
            assert lib.tthsd_set_durability(ident, spec["durable"]) == 0, lib.last_error()
        start = lib.start_multiple_downloads_id if spec.get("multiple") else lib.start_download_id
        t0 = time.monotonic()
        assert start(ident) == 0, lib.last_error()
        try:
            events.wait_end(spec.get("timeout", 60))
            report["ended"] = True
            report["seconds"] = time.monotonic() - t0
        except AssertionError:
            pass
        ptr = lib.get_performance_stats(ident)
        report["stats"] = ctypes.string_at(ptr).decode("utf-8")
        lib.free_string(ptr)
        lib.stop_download(ident)
    report["events"] = [[e.raw[0].decode(), e.raw[1].decode()] for e in events.snapshot()]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
