"""Offsets past 4 GiB: nothing in the engine may keep an offset, a length or a range in
32 bits.

* Fast (always): a resume whose journal vouches for everything below 4 GiB - 1 MiB of a
  sparse part file, so the engine fetches only the tail, which straddles 2**32: the
  ranges it asks, the positions it writes and the journal it keeps are all past 4 GiB.
* Whole (``slow``, about 10 s here): a 4.1 GiB file from scratch over loopback, with
  durability off; skipped when the disk has less than 10 GiB free. Checked where 32-bit
  truncation would show: the 8 MiB around 2**32, the tail, and 64 records across the file.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume import journal
from tests.support.content import RECORD, Content
from tests.support.server import LoopbackServer

GiB = 1 << 30
FOUR_GIB = 4 * GiB


def _matches(path: Path, body: Content, start: int, end: int) -> None:
    with path.open("rb") as f:
        pos = start
        while pos < end:
            n = min(4 * MiB, end - pos)
            f.seek(pos)
            got = f.read(n)
            if got != body.read(pos, n):
                i = next(k for k in range(n) if got[k : k + 1] != body.read(pos + k, 1))
                raise AssertionError(
                    f"byte {pos + i}: expected {body.expected_at(pos + i)!r}, found "
                    f"{got[i - i % RECORD : i - i % RECORD + RECORD]!r}")
            pos += n


@pytest.mark.scenario("offsets past 4 GiB")
def test_a_tail_past_4_gib_is_fetched_and_written_where_it_belongs(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    total = FOUR_GIB + 3 * MiB + 5
    have = FOUR_GIB - MiB
    res = http_server.add("/huge.bin", body=Content(total, "huge"), etag='"h1"')
    save = tmp_path / "huge.bin"
    with journal.part_path(save).open("wb") as f:
        f.truncate(total)  # sparse: the "bytes on disk" below `have` are zeros here
    body = journal.make(res.url, total, [(0, have)], etag='"h1"')
    journal.journal_path(save).write_bytes(journal.encode(body))
    t = task(res.url, save, id="t")
    run = tthsd.create([t], threads=4, chunk_mb=1)
    assert lib.tthsd_set_durability(run.id, False) == 0
    assert run.start() == 0
    run.wait_end(30)
    assert run.events.of("endOne")[0].msg["Success"] is True, run.events.types()
    assert save.stat().st_size == total
    _matches(save, res.body, have, total)
    # What the journal vouched for was never fetched again (it is still the zeros).
    with save.open("rb") as f:
        for pos in (0, GiB, 3 * GiB, have - 4096):
            f.seek(pos)
            assert f.read(4096) == b"\0" * 4096, f"bytes at {pos} were fetched again"
    recs = [r for r in http_server.requests("/huge.bin") if r.status == 206]
    assert recs and all(r.served and r.served[0] >= have for r in recs), [
        r.range_header for r in recs]
    assert http_server.bytes_sent("/huge.bin") <= total - have + MiB
    ups = run.events.of("update")
    assert ups[-1].msg["Downloaded"] == total and ups[-1].msg["Total"] == total


@pytest.mark.slow
@pytest.mark.scenario("offsets past 4 GiB")
def test_a_whole_file_past_4_gib(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                 tmp_path: Path) -> None:
    total = FOUR_GIB + 100 * MiB + 7
    free = shutil.disk_usage(tmp_path).free
    if free < total + 6 * GiB:
        pytest.skip(f"needs {total + 6 * GiB} bytes free for a 4.1 GiB file, has {free}")
    res = http_server.add("/whole.bin", body=Content(total, "whole"))
    save = tmp_path / "whole.bin"
    run = tthsd.create([task(res.url, save, id="t")], threads=8, chunk_mb=64)
    assert lib.tthsd_set_durability(run.id, False) == 0
    assert run.start() == 0
    try:
        run.wait_end(120)
        assert run.events.of("endOne")[0].msg["Success"] is True, run.events.types()
        assert save.stat().st_size == total
        _matches(save, res.body, FOUR_GIB - 4 * MiB, FOUR_GIB + 4 * MiB)
        _matches(save, res.body, total - 8 * MiB, total)
        rng = random.Random(7)
        for _ in range(64):
            pos = rng.randrange(0, total // RECORD) * RECORD
            _matches(save, res.body, pos, min(pos + RECORD, total))
        # Tail steals cut connections with bytes in flight: some waste, not a second copy.
        assert http_server.bytes_sent("/whole.bin") <= total * 1.05
    finally:
        for p in (save, journal.part_path(save)):
            if p.exists():
                os.unlink(p)
