"""A server that goes silent: right after the headers, or mid-body, on the probe, on a
worker's range, on a body of unknown length, or on every request. The read timeout
(``tthsd_set_timeouts``) cuts each stall, a retry carries on, and the run ends in bounded
time: the exact file, or an ``err`` with ``Code`` ``timeout`` when it never recovers.
A trickling server is no stall, yet never holds ``stop_download``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer, RequestRecord, Response

from .knobs import is_worker

READ_TIMEOUT_MS = 500


def _run(tthsd: Harness, lib: Lib, url: str, save: Path, *, threads: int = 4,
         retries: int = 3):  # type: ignore[no-untyped-def]
    t = task(url, save, id="t", show_name="t")
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, retries, 20, 40) == 0
    assert lib.tthsd_set_timeouts(run.id, 1000, READ_TIMEOUT_MS) == 0
    assert lib.tthsd_set_durability(run.id, False) == 0
    t0 = time.monotonic()
    assert run.start() == 0
    run.wait_end(30)
    run.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return run


def _stall_once(after: int, pick) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """A hook that stalls the first response ``pick`` chooses after ``after`` body bytes
    (0: right after the headers) until the server stops; and the list of stalled seqs."""
    stalled: list[int] = []

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and not stalled:
            stalled.append(req.seq)
            resp.stall_after = after
            resp.stall_for = 0.0  # silent until the server stops
    return hook, stalled


@pytest.mark.scenario("stall after headers, recovered by the read timeout")
@pytest.mark.parametrize("who", ["probe", "worker"])
def test_a_stall_right_after_the_headers(tthsd: Harness, lib: Lib,
                                         http_server: LoopbackServer, tmp_path: Path,
                                         who: str) -> None:
    pick = (lambda r: r.nth == 1) if who == "probe" else is_worker
    hook, stalled = _stall_once(0, pick)
    res = http_server.add("/h.bin", size=4 * MiB, hook=hook)
    run = _run(tthsd, lib, res.url, tmp_path / "h.bin")
    assert stalled, "nothing stalled"
    assert outcome(run, tmp_path / "h.bin", res.body).success
    assert run.seconds < 4.0, f"took {run.seconds:.1f}s"  # type: ignore[attr-defined]
    rec = next(r for r in http_server.requests() if r.seq == stalled[0])
    assert rec.status in (200, 206) and rec.bytes_sent == 0, "headers were sent, no body"


@pytest.mark.scenario("stall mid-body, recovered by the read timeout")
@pytest.mark.parametrize("shape", ["probe of a ranged file", "whole body (no ranges)",
                                   "chunked, unknown length", "worker range"])
def test_a_stall_mid_body(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                          tmp_path: Path, shape: str) -> None:
    knobs: dict = {}  # type: ignore[type-arg]
    pick = lambda r: r.nth == 1  # noqa: E731
    if shape == "whole body (no ranges)":
        knobs = {"ranges": False}
    elif shape == "chunked, unknown length":
        knobs = {"ranges": False, "framing": "chunked"}
    elif shape == "worker range":
        pick = is_worker
    hook, stalled = _stall_once(300_000, pick)
    res = http_server.add("/m.bin", size=4 * MiB + 9, hook=hook, **knobs)
    run = _run(tthsd, lib, res.url, tmp_path / "m.bin")
    assert stalled
    assert outcome(run, tmp_path / "m.bin", res.body).success
    assert run.seconds < 4.0, f"took {run.seconds:.1f}s"  # type: ignore[attr-defined]
    if shape != "worker range":  # a stalled worker's range may be stolen instead
        assert any("Retry" in t for t in run.events.texts()), run.events.texts()


@pytest.mark.scenario("stall on every request: a timeout err, not a hang")
@pytest.mark.parametrize("after", [0, 100_000])
def test_a_server_that_always_stalls_ends_in_a_timeout_err(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        after: int) -> None:
    def always(req: RequestRecord, resp: Response) -> None:
        resp.stall_after = after
    res = http_server.add("/s.bin", size=2 * MiB, ranges=False, hook=always)
    run = _run(tthsd, lib, res.url, tmp_path / "s.bin", retries=2)
    out = outcome(run, tmp_path / "s.bin", res.body)
    assert not out.success and out.code == "timeout", out.err
    # 3 attempts x 0.5 s read timeout, plus small backoffs: well under 4 s.
    assert run.seconds < 4.0, f"took {run.seconds:.1f}s"  # type: ignore[attr-defined]
    assert len(http_server.requests("/s.bin")) == 3


def test_a_trickling_server_does_not_hold_stop(tthsd: Harness, lib: Lib,
                                               http_server: LoopbackServer,
                                               tmp_path: Path) -> None:
    # 64 bytes a second: never silent for a read timeout, never finishing either.
    res = http_server.add("/t.bin", size=MiB, ranges=False, throttle=64)
    t = task(res.url, tmp_path / "t.bin", id="t")
    run = tthsd.create([t], threads=2)
    assert lib.tthsd_set_timeouts(run.id, 1000, READ_TIMEOUT_MS) == 0
    assert run.start() == 0
    time.sleep(1.5)
    assert run.stats()["state"] == "running", "a trickle is not a stall"
    t0 = time.monotonic()
    assert run.stop() == 0
    assert time.monotonic() - t0 < 1.0
    assert not (tmp_path / "t.bin").exists()
