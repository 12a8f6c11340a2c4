"""429 and 503 with ``Retry-After``, in seconds and as an HTTP date: the wait the server
asks for is honoured (measured between the refused request and its retry), a date in the
past or a value that does not parse does not stall, and a server asking for a day does not
hold ``stop_download`` hostage.

The retry policy is set to a 20 ms backoff, so a retry that comes seconds later can only
be the server's ``Retry-After`` at work.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer, RequestRecord, Response, chain

from .knobs import fail_first, http_date, is_worker


class Arrivals:
    """A hook that notes the wall-clock time every request arrived (``Retry-After``
    dates are wall-clock times)."""

    def __init__(self) -> None:
        self.at: list[tuple[RequestRecord, float]] = []

    def __call__(self, req: RequestRecord, resp: Response) -> None:
        self.at.append((req, time.time()))

    def of_range(self, first: int) -> list[float]:
        return [t for r, t in self.at if r.range_spec and r.range_spec[0] == first]


def _run(tthsd: Harness, lib: Lib, url: str, save: Path, threads: int = 4) -> object:
    t = task(url, save, id="t", show_name="t")
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, 3, 20, 40) == 0
    assert lib.tthsd_set_timeouts(run.id, 2000, 3000) == 0
    assert run.start() == 0
    run.wait_end(30)
    return run


@pytest.mark.scenario("429 with Retry-After in seconds", "503 with Retry-After in seconds")
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_on_the_first_request_is_waited_for(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        status: int) -> None:
    seen = Arrivals()
    res = http_server.add("/s.bin", size=MiB + 7,
                          hook=chain(seen, fail_first(1, status, retry_after="2")))
    run = _run(tthsd, lib, res.url, tmp_path / "s.bin")
    assert outcome(run, tmp_path / "s.bin", res.body).success
    (first, t0), (second, t1) = seen.at[:2]
    assert first.status == status and second.status in (200, 206)
    assert 1.95 <= t1 - t0 <= 3.5, f"Retry-After: 2 gave a wait of {t1 - t0:.2f}s"


@pytest.mark.scenario("429 with Retry-After as an HTTP date",
                      "503 with Retry-After as an HTTP date")
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_date_is_waited_for(tthsd: Harness, lib: Lib,
                                        http_server: LoopbackServer, tmp_path: Path,
                                        status: int) -> None:
    seen = Arrivals()
    dates: list[str] = []

    def in_three_seconds() -> str:
        dates.append(http_date(3))
        return dates[-1]
    res = http_server.add("/d.bin", size=MiB + 7,
                          hook=chain(seen, fail_first(1, status, retry_after=in_three_seconds)))
    run = _run(tthsd, lib, res.url, tmp_path / "d.bin")
    assert outcome(run, tmp_path / "d.bin", res.body).success
    from email.utils import parsedate_to_datetime

    target = parsedate_to_datetime(dates[0]).timestamp()
    (_, t0), (_, t1) = seen.at[:2]
    # The date has whole seconds: the server asked for a retry at `target`, 2-3 s on.
    assert t1 >= target - 0.05, f"retried {target - t1:.2f}s before the date {dates[0]}"
    assert t1 - target <= 1.0, f"retried {t1 - target:.2f}s after the date {dates[0]}"
    assert t1 - t0 >= 1.9


@pytest.mark.scenario("429 with Retry-After in seconds")
def test_retry_after_on_one_worker_range_delays_that_range_only(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    seen = Arrivals()
    refused = fail_first(1, 429, retry_after="2", on=is_worker)
    res = http_server.add("/w.bin", size=6 * MiB, hook=chain(seen, refused))
    run = _run(tthsd, lib, res.url, tmp_path / "w.bin")
    assert outcome(run, tmp_path / "w.bin", res.body).success
    bad = next(r for r, _ in seen.at if r.status == 429)
    assert bad.range_spec is not None and bad.range_spec[0] is not None
    times = seen.of_range(bad.range_spec[0])
    others_done = [r.finished for r, _ in seen.at
                   if r.status == 206 and r.range_spec != bad.range_spec and r.finished]
    if len(times) >= 2:  # the same range asked again (it may also have been re-split)
        assert times[1] - times[0] >= 1.95, f"retried after {times[1] - times[0]:.2f}s"
    # The other connections went on meanwhile.
    assert any(t < bad.started + 1.9 for t in others_done), "the 429 held every connection"


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", "-5", "1.5"])
def test_retry_after_in_the_past_or_unparsable_does_not_stall(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        value: str) -> None:
    seen = Arrivals()
    res = http_server.add("/p.bin", size=MiB + 7,
                          hook=chain(seen, fail_first(2, 503, retry_after=value)))
    run = _run(tthsd, lib, res.url, tmp_path / "p.bin")
    assert outcome(run, tmp_path / "p.bin", res.body).success
    (_, t0), _, (_, t2) = seen.at[:3]
    assert t2 - t0 < 1.0, f"Retry-After {value!r}: two retries took {t2 - t0:.2f}s"


@pytest.mark.scenario("429 storm: bounded retries")
def test_429_forever_with_retry_after_zero_ends_in_a_clear_err(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/z.bin", size=MiB, hook=fail_first(10**6, 429, retry_after="0"))
    run = _run(tthsd, lib, res.url, tmp_path / "z.bin")
    out = outcome(run, tmp_path / "z.bin", res.body)
    assert not out.success and out.code == "http_status", out.err
    assert "429" in out.err.msg["Error"], out.err.msg
    assert len(http_server.requests("/z.bin")) == 4, "3 retries allowed: 4 requests"


def test_a_retry_after_of_a_day_does_not_hold_stop(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/day.bin", size=MiB, hook=fail_first(1, 503, retry_after="86400"))
    t = task(res.url, tmp_path / "day.bin", id="t")
    run = tthsd.create([t], threads=2)
    assert lib.set_retry_config(run.id, 3, 20, 40) == 0
    assert run.start() == 0
    run.events.wait_type("startOne", 5)
    deadline = time.monotonic() + 5
    while not http_server.requests("/day.bin") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # now waiting out the server's day
    t0 = time.monotonic()
    assert run.stop() == 0
    assert time.monotonic() - t0 < 1.0, "stop_download waited for the Retry-After"
    assert run.events.types()[-1] == "msg" or "end" in run.events.types()
    assert not (tmp_path / "day.bin").exists()
