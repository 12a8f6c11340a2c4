"""5xx storms: a server that keeps failing gets a bounded number of retries, then the task
ends in one ``err`` whose ``Code`` is ``http_status`` and whose sentence names the status,
quickly, with nothing at ``save_path``; bytes already on disk stay for a later run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer

from .knobs import is_worker, storm

RETRIES = 3


def _run(tthsd: Harness, lib: Lib, url: str, save: Path, threads: int = 4):  # type: ignore[no-untyped-def]
    t = task(url, save, id="t", show_name="t")
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, RETRIES, 20, 80) == 0
    assert run.start() == 0
    run.wait_end(30)
    return run


@pytest.mark.scenario("500 storm: bounded retries, then a clear err")
@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_storm_from_the_first_request(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                      tmp_path: Path, status: int) -> None:
    res = http_server.add("/s.bin", size=2 * MiB, hook=storm(status))
    t0 = time.monotonic()
    run = _run(tthsd, lib, res.url, tmp_path / "s.bin")
    took = time.monotonic() - t0
    out = outcome(run, tmp_path / "s.bin", res.body)
    assert not out.success and out.code == "http_status", out.err
    assert str(status) in out.err.msg["Error"], out.err.msg
    assert len(http_server.requests("/s.bin")) == RETRIES + 1
    assert took < 5.0, f"{RETRIES} retries of 20-80 ms took {took:.1f}s"


@pytest.mark.scenario("500 storm: bounded retries, then a clear err")
def test_storm_after_the_probe_keeps_the_bytes_for_a_later_run(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/m.bin", size=6 * MiB, hook=storm(500, on=is_worker))
    save = tmp_path / "m.bin"
    run = _run(tthsd, lib, res.url, save)
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "http_status" and "500" in out.err.msg["Error"]
    workers = [r for r in http_server.requests("/m.bin") if is_worker(r)]
    # Every range may be tried 1 + RETRIES times; the tail may be re-split, not more.
    assert len(workers) <= 6 * (RETRIES + 1), f"{len(workers)} worker requests"
    # The storm passes: the same id, started again, fetches only what is missing.
    res.hook = None
    http_server.clear()
    run.events.items.clear()
    assert run.start() == 0
    run.wait_end(30)
    assert outcome(run, save, res.body).success
    refetched = http_server.bytes_sent("/m.bin")
    assert refetched <= 5 * MiB + 4096, f"the probe's MiB was fetched again: {refetched}"
