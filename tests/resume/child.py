"""A download in a process of its own, to be killed: ``python -m tests.resume.child``.

Downloads one URL to one save_path through the raw C ABI (tests/abi/lib.py), prints
``READY`` once ``start_download`` returned, then, when the run ends, one line
``RESULT <json>`` (event types, err codes, the task's success, the engine's stats) and
exits 0. The parent (tests.resume.crash_soak) kills it with SIGKILL at a random moment
and starts another one to resume from whatever the first left on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.abi.lib import Events, Lib, library_path, task, tasks_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--chunk-mb", type=int, default=4)
    ap.add_argument("--checksum", default=None)
    ap.add_argument("--speed-limit", type=int, default=0, help="bytes/s, 0 = none")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)

    lib = Lib(library_path())
    events = Events()
    extra = {"checksum": args.checksum} if args.checksum else {}
    t = task(args.url, Path(args.save), id="t1", show_name="soak", **extra)
    ident = lib.start_download(
        tasks_json([t]),
        1,
        args.threads,
        args.chunk_mb,
        events.callback,
        False,
        None,
        None,
        None,
        None,
        None,
    )
    if ident <= 0:
        print("RESULT " + json.dumps({"start_failed": lib.last_error()}), flush=True)
        return 1
    if args.speed_limit:
        lib.set_speed_limit(ident, args.speed_limit)
    print("READY", flush=True)
    events.wait_end(args.timeout)
    stats = lib.stats(ident)
    evs = events.snapshot()
    end_one = [e.msg for e in evs if e.type == "endOne"]
    result = {
        "types": [e.type for e in evs],
        "errors": [
            {"Code": e.msg.get("Code"), "Error": e.msg.get("Error")} for e in evs if e.type == "err"
        ],
        "msgs": [e.text for e in evs if e.type == "msg"],
        "success": bool(end_one and end_one[-1].get("Success")),
        "bytes_fetched": stats.get("bytes_fetched"),
        "callback_errors": [repr(x) for x in events.errors],
    }
    lib.stop_download(ident)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
