"""Reproduction (found by the fuzz, seed 306): a downloader created with ``thread_count``
``INT_MAX`` aborts the whole process when its first task starts. ``build_client`` ->
``Lanes::new`` allocates one ``Lane`` per connection up front
(``native/engine/src/http/lanes.rs``); ``ffi/src/args.rs::thread_count`` passes any
positive ``c_int`` through, so 2**31 - 1 lanes of 32 bytes are asked for at once:
``memory allocation of 68719476704 bytes failed``, SIGABRT (Rust aborts on allocation
failure, ``catch_unwind`` cannot help). Creation accepted the argument (an id > 0).

    TTHSD_LIBRARY=... python -m tests.fuzz.repro_int_max_threads   # exit 0: fixed
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INT_MAX = 2**31 - 1


def child(threads: int) -> None:
    from tests.abi.lib import Lib, library_path
    from tests.support.server import LoopbackServer

    lib = Lib(library_path())
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as tmp:
        srv.add("/small.bin", size=1000)
        tasks = json.dumps([{"url": srv.url("/small.bin"),
                             "save_path": str(Path(tmp) / "a.bin")}]).encode()
        ident = lib.get_downloader(tasks, 1, threads, 1, None, False, None, None, None, None)
        print("id", ident, lib.last_error(), flush=True)
        if ident > 0:
            lib.start_download_id(ident)
            time.sleep(2)
            lib.stop_download(ident)
        print("survived", flush=True)


def main() -> int:
    if len(sys.argv) > 1:
        child(int(sys.argv[1]))
        return 0
    for threads in (64, INT_MAX):
        proc = subprocess.run([sys.executable, "-m", "tests.fuzz.repro_int_max_threads",
                               str(threads)], capture_output=True, text=True, timeout=60)
        tail = proc.stderr.strip().splitlines()[:1]
        print(f"thread_count {threads}: exit {proc.returncode}, stdout "
              f"{proc.stdout.split()!r}, stderr {tail!r}")
        if proc.returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
