"""The configuration exports: speed limit, retries, timeouts, proxy, statistics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.server import LoopbackServer, RequestRecord, Response, fail_times

from .lib import Harness, Lib, MiB, assert_file, check_events, task


def test_speed_limit_holds_within_ten_percent(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    # Measured over the whole run (about 3 s): the "downloaded" counter moves in lumps of
    # a few hundred KiB, too coarse for shorter windows.
    limit = 1536 * 1024  # 1.5 MiB/s
    res = http_server.add("/limited.bin", size=3 * limit)
    t = task(res.url, tmp_path / "limited.bin", id="lim")
    run = tthsd.create([t], threads=8, chunk_mb=1)
    assert lib.set_speed_limit(run.id, limit) == 0
    assert run.stats()["speed_limit"] == limit
    t0 = time.monotonic()
    assert run.start() == 0
    time.sleep(1.5)
    running = run.stats()
    assert running["state"] == "running" and running["connections"] >= 1, running
    assert running["speed"] > 0, running
    end = run.wait_end(10)
    rate = res.size / (end.at - t0)
    assert abs(rate - limit) <= 0.1 * limit, f"rate {rate:.0f} B/s for a limit of {limit}"
    check_events(run.events, [t], sizes={"lim": res.size})
    assert_file(tmp_path / "limited.bin", res.body)


def test_speed_limit_applies_live(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                  tmp_path: Path) -> None:
    limit = 1 << 20
    res = http_server.add("/live.bin", size=8 * MiB)
    t = task(res.url, tmp_path / "live.bin", id="live")
    run = tthsd.create([t], threads=4, chunk_mb=1)
    assert lib.set_speed_limit(run.id, limit) == 0
    assert run.start() == 0
    deadline = time.monotonic() + 5
    while run.stats()["downloaded"] < MiB:
        assert time.monotonic() < deadline, run.stats()
        time.sleep(0.02)
    t_lift = time.monotonic()
    assert lib.set_speed_limit(run.id, 0) == 0  # 7 MiB left: 7 s at the old limit
    assert run.stats()["speed_limit"] == 0
    end = run.wait_end(10)
    assert end.at - t_lift < 2.0, "lifting the limit did not apply to the running download"
    check_events(run.events, [t], sizes={"live": res.size})
    assert_file(tmp_path / "live.bin", res.body)


def test_retry_config_turns_two_503_into_a_success(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/flaky.bin", size=MiB + 5, hook=fail_times(2, 503))
    t = task(res.url, tmp_path / "flaky.bin", id="fl")
    run = tthsd.create([t], threads=2)
    assert lib.set_retry_config(run.id, 3, 50, 200) == 0
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t], sizes={"fl": res.size})
    assert_file(tmp_path / "flaky.bin", res.body)
    assert [r.status for r in http_server.requests("/flaky.bin")][:2] == [503, 503]
    assert run.stats()["retries"] >= 2


def test_retry_config_zero_retries_fails_at_the_first_503(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/down.bin", size=MiB, hook=fail_times(1, 503))
    t = task(res.url, tmp_path / "down.bin", id="dn")
    run = tthsd.create([t], threads=2)
    assert lib.set_retry_config(run.id, 0, 10, 10) == 0
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t], success=False)
    errs = run.events.of("err", "dn")
    assert errs and errs[0].msg["Code"] == "http_status", errs
    assert not (tmp_path / "down.bin").exists()


def test_retries_are_bounded(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                             tmp_path: Path) -> None:
    res = http_server.add("/storm.bin", size=MiB, hook=fail_times(10**6, 500))
    t = task(res.url, tmp_path / "storm.bin", id="st")
    run = tthsd.create([t], threads=4)
    assert lib.set_retry_config(run.id, 2, 10, 20) == 0
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t], success=False)
    n = len(http_server.requests("/storm.bin"))
    assert 3 <= n <= 6, f"2 retries allowed, yet {n} requests were made"


def test_read_timeout_recovers_a_stalled_range(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    stalled: list[int] = []

    def stall_first_big_response(req: RequestRecord, resp: Response) -> None:
        if resp.length > 128 * 1024 and not stalled:
            stalled.append(req.seq)
            resp.stall_after = 64 * 1024  # then silent until the server stops
    res = http_server.add("/stall.bin", size=2 * MiB, hook=stall_first_big_response)
    t = task(res.url, tmp_path / "stall.bin", id="sl")
    run = tthsd.create([t], threads=2, chunk_mb=1)
    assert lib.tthsd_set_timeouts(run.id, 1000, 500) == 0
    assert lib.set_retry_config(run.id, 3, 10, 50) == 0
    t0 = time.monotonic()
    assert run.start() == 0
    run.wait_end(10)
    assert time.monotonic() - t0 < 5.0
    assert stalled, "the hook never stalled a response"
    check_events(run.events, [t], sizes={"sl": res.size})
    assert_file(tmp_path / "stall.bin", res.body)


def test_proxy_carries_the_requests(tthsd: Harness, lib: Lib, http_server_factory: Any,
                                    tmp_path: Path) -> None:
    proxy = http_server_factory()
    res = proxy.add("/via-proxy.bin", size=MiB + 11)
    url = "http://tthsd-proxy-check.invalid/via-proxy.bin"  # resolvable only by the proxy
    t = task(url, tmp_path / "vp.bin", id="vp")
    run = tthsd.create([t], threads=2)
    assert lib.set_proxy(run.id, proxy.base_url.encode()) == 0
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t], sizes={"vp": res.size})
    assert_file(tmp_path / "vp.bin", res.body)
    recs = proxy.requests()
    assert recs
    assert all(r.target.startswith("http://tthsd-proxy-check.invalid/") or r.method == "CONNECT"
               or r.headers.get("Host") == "tthsd-proxy-check.invalid" for r in recs), recs


def test_performance_stats_describe_the_downloader(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    a = http_server.add("/sa.bin", size=MiB + 1)
    b = http_server.add("/sb.bin", status=404)
    ta = task(a.url, tmp_path / "sa.bin", id="sa", show_name="A")
    tb = task(b.url, tmp_path / "sb.bin", id="sb", show_name="B")
    run = tthsd.create([ta, tb], threads=5, chunk_mb=2)
    st = run.stats()
    assert st["state"] == "created"
    assert (st["thread_count"], st["chunk_size"], st["speed_limit"]) == (5, 2 * MiB, 0)
    assert st["downloaded"] == 0
    assert [(x["id"], x["show_name"], x["state"]) for x in st["tasks"]] == [
        ("sa", "A", "pending"), ("sb", "B", "pending")]
    assert [x["url"] for x in st["tasks"]] == [a.url, b.url]
    assert [x["save_path"] for x in st["tasks"]] == [ta["save_path"], tb["save_path"]]
    assert run.start() == 0
    run.wait_end(20)
    st = run.stats()
    for key, kind in {"state": str, "downloaded": int, "total": int, "speed": (int, float),
                      "average_speed": (int, float), "elapsed": (int, float),
                      "bytes_fetched": int, "retries": int, "connections": int,
                      "thread_count": int, "chunk_size": int, "speed_limit": int,
                      "tasks": list}.items():
        assert isinstance(st.get(key), kind), (key, st.get(key))
    assert st["state"] == "failed", "one task failed"
    sa, sb = st["tasks"]
    assert (sa["state"], sa["downloaded"], sa["total"], sa["error"]) == (
        "done", a.size, a.size, None)
    assert sb["state"] == "failed" and sb["error"], sb
    assert st["downloaded"] >= a.size and st["bytes_fetched"] >= a.size
    assert st["elapsed"] > 0 and st["average_speed"] > 0
    assert_file(tmp_path / "sa.bin", a.body)


def test_default_thread_count_and_chunk_size(tthsd: Harness, http_server: LoopbackServer,
                                             tmp_path: Path) -> None:
    res = http_server.add("/d.bin", size=10)
    run = tthsd.create([task(res.url, tmp_path / "d.bin")], threads=0, chunk_mb=-1)
    st = run.stats()
    assert (st["thread_count"], st["chunk_size"]) == (64, 10 * MiB)
    assert run.start() == 0
    run.wait_end(10)
    assert run.stats()["state"] == "finished"


def test_durability_switch(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                           tmp_path: Path) -> None:
    tasks, bodies = [], {}
    for i in range(5):
        res = http_server.add(f"/dur{i}.bin", size=100_000 + i)
        tasks.append(task(res.url, tmp_path / f"dur{i}.bin", id=f"d{i}"))
        bodies[f"d{i}"] = res.body
    run = tthsd.create(tasks)
    assert lib.tthsd_set_durability(run.id, False) == 0
    assert lib.tthsd_set_durability(run.id, True) == 0
    assert lib.tthsd_set_durability(run.id, False) == 0
    assert run.start(multiple=True) == 0
    run.wait_end(20)
    check_events(run.events, tasks, sizes={k: b.size for k, b in bodies.items()})
    for t in tasks:
        assert_file(t["save_path"], bodies[t["id"]])
