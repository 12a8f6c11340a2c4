"""asyncio with many files: 24 downloads at once on one AsyncDownloader, a live count
from ``async for``, a pause in the middle, and the results.

    python examples/asyncio_many_files.py

The URLs point at a loopback server serving generated files.  The event loop stays free
all along: a heartbeat task keeps ticking while the core downloads.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from _server import example_server

from tthsd_interface import AsyncDownloader, DownloadError, download_async

NAMES = [f"part{i:02}.bin" for i in range(24)]


async def heartbeat(stop: asyncio.Event) -> int:
    beats = 0
    while not stop.is_set():
        await asyncio.sleep(0.05)
        beats += 1
    return beats


async def main(urls: list[str]) -> None:
    folder = Path("downloads") / "many"
    paths = [folder / name for name in NAMES]
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(stop))
    started = time.monotonic()

    async with AsyncDownloader() as dl:
        download = await dl.start(urls, paths, connections=32, chunk_size_mb=1, speed_limit="80M")
        finished = 0
        paused = False
        async for event in download:
            if event.type == "endOne":
                finished += 1
                print(f"\r{finished}/{len(urls)} files", end="", flush=True)
            if finished == len(urls) // 2 and not paused:
                paused = True
                await download.pause()  # bytes on disk are kept
                print("  (paused for 0.5 s)", end="", flush=True)
                await asyncio.sleep(0.5)
                await download.resume()
        results = await download  # raises DownloadError if a file failed
    print()
    stop.set()
    total = sum(r.bytes for r in results)
    seconds = time.monotonic() - started
    print(
        f"{len(results)} files, {total >> 20} MiB in {seconds:.2f} s; the loop ticked "
        f"{await beat} times meanwhile"
    )

    # The one-call form: the same arguments, one FileResult per file or DownloadError.
    try:
        await download_async(
            [urls[0], urls[0] + ".missing"],
            [folder / "again.bin", folder / "missing.bin"],
            retries=0,
        )
    except DownloadError as exc:
        for failure in exc.failures:
            print(f"failed as expected: {failure.url} [{failure.code}]")


if __name__ == "__main__":
    with example_server(*NAMES, size=2 << 20) as served:
        asyncio.run(main(served))
