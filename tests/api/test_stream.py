"""``stream()`` and ``fetch_async()`` on the real core: ordered chunks that start arriving
while the engine still downloads (read from the contiguous prefix of the part file), the
same bytes as the server's, servers without ranges, failures as ``DownloadError``, early
exits that stop the download, and no temporary file left behind."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from tests.support.server import LoopbackServer
from tthsd_interface import DownloadError, fetch_async, stream

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _real_core(core: Path) -> None:
    """Every test here needs the real core (fail, do not skip, without it)."""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """An empty folder for the temporary files (tmp_path holds the test's log)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def _collect(url: str, **kwargs: object) -> tuple[list[tuple[int, int, float]], bytes, float]:
    """``(offset, length, seconds since start)`` of each chunk, the bytes, the total time."""

    async def main() -> tuple[list[tuple[int, int, float]], bytes, float]:
        started = time.monotonic()
        seen: list[tuple[int, int, float]] = []
        body = bytearray()
        async for offset, chunk in stream(url, **kwargs):  # type: ignore[arg-type]
            seen.append((offset, len(chunk), time.monotonic() - started))
            body += chunk
        return seen, bytes(body), time.monotonic() - started

    return asyncio.run(main())


def test_chunks_are_ordered_and_arrive_while_downloading(
    http_server: LoopbackServer, scratch: Path
) -> None:
    res = http_server.add("/s.bin", size=6 * MiB, throttle=2 * MiB)  # per connection
    seen, body, total = _collect(
        res.url, connections=4, chunk_size_mb=1, block_size=256 * 1024, tmp_dir=scratch
    )
    assert hashlib.sha256(body).hexdigest() == res.sha256()
    offsets = [o for o, _, _ in seen]
    expected = 0
    for offset, length, _ in seen:
        assert offset == expected
        assert 0 < length <= 256 * 1024
        expected += length
    assert offsets[0] == 0 and expected == res.size
    # Bytes were delivered well before the end: the first chunk within the first half.
    assert seen[0][2] < total / 2
    assert list(scratch.iterdir()) == []  # the temporary folder is gone


def test_a_server_without_ranges_streams_too(http_server: LoopbackServer, scratch: Path) -> None:
    res = http_server.add("/plain.bin", size=3 * MiB + 1, ranges=False, throttle=8 * MiB)
    seen, body, _ = _collect(res.url, tmp_dir=scratch)
    assert hashlib.sha256(body).hexdigest() == res.sha256()
    assert len(seen) >= 2
    assert list(scratch.iterdir()) == []


def test_a_small_file_arrives_whole(http_server: LoopbackServer, scratch: Path) -> None:
    res = http_server.add("/tiny.txt", size=10)
    seen, body, _ = _collect(res.url, tmp_dir=scratch)
    assert seen[0][:2] == (0, 10)
    assert hashlib.sha256(body).hexdigest() == res.sha256()


def test_a_failure_raises_download_error_and_cleans_up(
    http_server: LoopbackServer, scratch: Path
) -> None:
    http_server.add("/missing", status=404)
    with pytest.raises(DownloadError) as info:
        _collect(http_server.url("/missing"), retries=0, tmp_dir=scratch)
    assert info.value.codes == ("http_status",)
    assert list(scratch.iterdir()) == []


def test_a_checksum_mismatch_withholds_the_last_byte(
    http_server: LoopbackServer, scratch: Path
) -> None:
    res = http_server.add("/sum.bin", size=2 * MiB)
    got = bytearray()

    async def main() -> None:
        async for _, chunk in stream(res.url, checksum="sha256:" + "0" * 64, tmp_dir=scratch):
            got.extend(chunk)

    with pytest.raises(DownloadError) as info:
        asyncio.run(main())
    assert info.value.codes == ("checksum_mismatch",)
    assert len(got) < res.size
    assert list(scratch.iterdir()) == []


def test_leaving_the_loop_early_stops_the_download(
    http_server: LoopbackServer, scratch: Path
) -> None:
    res = http_server.add("/long.bin", size=32 * MiB, throttle=MiB)

    async def main() -> int:
        first = 0
        s = stream(res.url, connections=2, tmp_dir=scratch)
        try:  # contextlib.aclosing, which Python 3.9 lacks
            async for _, chunk in s:
                first = len(chunk)
                break
        finally:
            await s.aclose()
        return first

    started = time.monotonic()
    assert asyncio.run(main()) > 0
    assert time.monotonic() - started < 5  # not the 16 s of the whole file
    assert list(scratch.iterdir()) == []
    sent = http_server.bytes_sent("/long.bin")
    time.sleep(0.3)
    assert http_server.bytes_sent("/long.bin") - sent < MiB  # the transfers ended


def test_fetch_async_returns_the_body(http_server: LoopbackServer, scratch: Path) -> None:
    res = http_server.add("/fa.bin", size=MiB + 3)
    body = asyncio.run(fetch_async(res.url, tmp_dir=scratch))
    assert hashlib.sha256(body).hexdigest() == res.sha256()
    assert list(scratch.iterdir()) == []


def test_block_size_must_be_positive() -> None:
    async def main() -> None:
        async for _ in stream("http://127.0.0.1:1/x", block_size=0):
            pass  # pragma: no cover

    with pytest.raises(ValueError, match="block_size"):
        asyncio.run(main())
