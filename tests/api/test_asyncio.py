"""The asyncio API on the real core: ``download_async`` never blocks the loop, an
``AsyncDownloader`` streams typed events with ``async for``, its downloads are awaitable,
pausable, resumable and stoppable, ``async with`` waits (or stops on an exception),
cancellation keeps a resumable download, and a closed loop never hurts the dispatcher."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.content import sha256_file
from tests.support.server import LoopbackServer
from tthsd_interface import (
    AsyncDownloader,
    DownloadError,
    DownloadEvent,
    DownloadRefusedError,
    FileResult,
    download_async,
)
from tthsd_interface._asyncio import _EventInbox

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _real_core(core: Path) -> None:
    """Every test here needs the real core (fail, do not skip, without it)."""


def test_download_async_returns_results_and_never_blocks_the_loop(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    resources = [http_server.add(f"/a{i}.bin", size=2 * MiB, throttle=4 * MiB) for i in range(3)]
    paths = [tmp_path / f"a{i}.bin" for i in range(3)]
    seen: list[tuple[str, str]] = []
    loop_thread: list[int] = []

    async def main() -> tuple[list[FileResult], int, float]:
        loop_thread.append(threading.get_ident())
        ticks = 0
        worst = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks, worst
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                worst = max(worst, now - last)
                last = now
                ticks += 1

        def progress(ev: DownloadEvent) -> None:
            seen.append((ev.type, threading.current_thread().name))
            assert threading.get_ident() == loop_thread[0]

        tick_task = asyncio.create_task(ticker())
        results = await download_async(
            [r.url for r in resources], paths, connections=6, chunk_size_mb=1,
            progress=progress,
        )  # fmt: skip
        done.set()
        await tick_task
        return results, ticks, worst

    results, ticks, worst = asyncio.run(main())
    assert [r.path for r in results] == paths
    assert all(r.bytes == 2 * MiB for r in results)
    assert len(paths) == len(resources)
    for path, res in zip(paths, resources):
        assert sha256_file(path) == res.sha256()
    assert ticks >= 10  # the loop ran all along
    assert worst < 0.25
    assert seen[0][0] == "start" and seen[-1][0] == "end"


def test_download_async_raises_download_error(http_server: LoopbackServer, tmp_path: Path) -> None:
    http_server.add("/nope", status=404)
    with pytest.raises(DownloadError) as info:
        asyncio.run(download_async(http_server.url("/nope"), tmp_path / "nope", retries=0))
    assert info.value.codes == ("http_status",)


def test_async_for_yields_typed_events_in_order_until_end(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    a = http_server.add("/e1.bin", size=MiB)
    b = http_server.add("/e2.bin", size=3 * MiB, throttle=8 * MiB)

    async def main() -> tuple[list[DownloadEvent], list[FileResult]]:
        async with AsyncDownloader() as dl:
            d = await dl.start([a.url, b.url], [tmp_path / "e1.bin", tmp_path / "e2.bin"])
            events = [ev async for ev in d]
            assert d.done()
            return events, await d

    events, results = asyncio.run(main())
    types = [e.type for e in events]
    assert types[0] == "start" and types[-1] == "end"
    assert types.count("startOne") == 2 and types.count("endOne") == 2
    assert all(isinstance(e, DownloadEvent) for e in events)
    assert [r.bytes for r in results] == [MiB, 3 * MiB]


def test_pause_resume_and_stop(http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/pr.bin", size=6 * MiB, throttle=MiB, etag='"pr"')
    target = tmp_path / "pr.bin"

    async def main() -> None:
        async with AsyncDownloader() as dl:
            d = await dl.start(res.url, target, connections=4, chunk_size_mb=1)
            async for ev in d:
                if ev.type == "update" and ev.downloaded > 0:
                    break
            assert await d.pause()
            paused_stats = d.stats()
            assert paused_stats["state"] == "paused"
            await asyncio.sleep(0.3)
            assert not d.done()
            assert await d.resume()
            assert d.set_speed_limit(0)
            await asyncio.sleep(0.2)
            assert await d.stop()
            assert d.done()
            assert not await d.stop()  # released
            with pytest.raises(DownloadError) as info:
                await d
            assert info.value.codes == ("stopped",)
            texts = [ev.text async for ev in d if ev.type == "msg"]
            assert texts == [] or "Download stopped" in texts[-1]

    asyncio.run(main())
    assert not target.exists()
    assert Path(str(target) + ".tthsd.journal").exists()


def test_async_with_waits_for_the_downloads_started_inside(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = [http_server.add(f"/w{i}.bin", size=MiB, throttle=4 * MiB) for i in range(2)]

    async def main() -> None:
        async with AsyncDownloader() as dl:
            for i, r in enumerate(res):
                await dl.start(r.url, tmp_path / f"w{i}.bin")
        assert dl.closed

    asyncio.run(main())
    for i, r in enumerate(res):
        assert sha256_file(tmp_path / f"w{i}.bin") == r.sha256()


def test_an_exception_in_async_with_stops_the_downloads(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/x.bin", size=8 * MiB, throttle=MiB)

    async def main() -> None:
        async with AsyncDownloader() as dl:
            d = await dl.start(res.url, tmp_path / "x.bin", connections=2)
            await asyncio.sleep(0.2)
            raise RuntimeError(f"boom {d.id}")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())
    assert time.monotonic() - started < 3
    assert not (tmp_path / "x.bin").exists()


def test_cancelling_download_async_stops_it_and_keeps_it_resumable(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/c.bin", size=8 * MiB, throttle=MiB, etag='"c"')
    target = tmp_path / "c.bin"

    async def main() -> None:
        task = asyncio.create_task(download_async(res.url, target, connections=4, chunk_size_mb=1))
        await asyncio.sleep(1.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not target.exists()
    assert Path(str(target) + ".tthsd.journal").exists()
    before = http_server.bytes_sent("/c.bin")
    res.throttle = None
    asyncio.run(download_async(res.url, target, connections=4, chunk_size_mb=1))
    assert sha256_file(target) == res.sha256()
    assert http_server.bytes_sent("/c.bin") - before < res.size - MiB


def test_refused_request_raises(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncDownloader() as dl:
            await dl.start("gopher://x.invalid/", tmp_path / "x")

    with pytest.raises(DownloadRefusedError):
        asyncio.run(main())


def test_a_closed_loop_never_crashes_the_dispatcher(
    http_server: LoopbackServer, tmp_path: Path, read_log: Callable[[], str]
) -> None:
    res = http_server.add("/late.bin", size=2 * MiB, throttle=4 * MiB)
    holder: list[AsyncDownloader] = []

    async def main() -> None:
        dl = AsyncDownloader()
        holder.append(dl)
        await dl.start(res.url, tmp_path / "late.bin", connections=2)
        # Return at once: asyncio.run closes the loop while the core still sends events.

    asyncio.run(main())
    dl = holder[0]
    sync = dl.downloader
    # The dispatcher goes on delivering (to nobody) until the run's end.
    assert sync.wait(timeout=30)
    assert sha256_file(tmp_path / "late.bin") == res.sha256()
    sync.close()
    log = read_log()
    assert "Traceback" not in log and "raised" not in log


def test_event_queue_keeps_one_unread_update_per_file() -> None:
    async def main() -> list[tuple[str, str, int]]:
        q = _EventInbox(asyncio.get_running_loop())

        def ev(kind: str, task: str, downloaded: int = 0) -> DownloadEvent:
            return DownloadEvent.from_raw(
                {"Type": kind, "Name": kind, "ShowName": task, "ID": task},
                {"Downloaded": downloaded},
            )

        for item in (
            ev("start", ""), ev("update", "a", 1), ev("update", "b", 1), ev("update", "a", 2),
            ev("msg", "a"), ev("update", "a", 3), ev("update", "b", 5), ev("endOne", "a"),
        ):  # fmt: skip
            q.put(item)
        q.close()
        q.put(ev("end", ""))  # after close: dropped
        out: list[tuple[str, str, int]] = []
        while (got := await q.get()) is not None:
            out.append((got.type, got.id, got.downloaded))
        return out

    # An unread update is replaced in place by the newer one of the same file.
    assert asyncio.run(main()) == [
        ("start", "", 0), ("update", "a", 3), ("update", "b", 5), ("msg", "a", 0),
        ("endOne", "a", 0),
    ]  # fmt: skip


def test_two_readers_share_the_events_and_both_see_the_end() -> None:
    async def main() -> tuple[list[str], list[str]]:
        q = _EventInbox(asyncio.get_running_loop())

        async def read() -> list[str]:
            got: list[str] = []
            while (item := await q.get()) is not None:
                got.append(item.id)
                await asyncio.sleep(0)
            return got

        readers = [asyncio.create_task(read()) for _ in range(2)]
        await asyncio.sleep(0)  # both wait on an empty queue
        for i in range(6):
            q.put(DownloadEvent.from_raw({"Type": "msg", "ID": str(i)}, {}))
            await asyncio.sleep(0)
        q.close()
        first, second = await asyncio.gather(*readers)
        return first, second

    first, second = asyncio.run(asyncio.wait_for(main(), 5))
    assert sorted(first + second, key=int) == [str(i) for i in range(6)]
