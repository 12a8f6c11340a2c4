"""Pause, resume and stop, from the test thread and from inside the callback."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.server import LoopbackServer

from .hostile import ID_FUNCTIONS
from .lib import Event, Events, Harness, Lib, MiB, assert_file, check_events, summarize, task

# 8 MiB trickling at 1 MiB/s per connection over 4 connections: about 2 s when left alone.
SIZE = 8 * MiB
RATE = 1 << 20


def _wait_progress(run, at_least: int, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while run.stats().get("downloaded", 0) < at_least:
        assert time.monotonic() < deadline, f"no progress: {run.stats()}"
        time.sleep(0.02)


def test_pause_then_resume_continues_from_the_bytes_on_disk(
        tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/p.bin", size=SIZE, throttle=RATE)
    save = tmp_path / "p.bin"
    t = task(res.url, save, id="p")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    _wait_progress(run, SIZE // 4)

    t_pause = time.monotonic()
    assert run.pause() == 0
    paused = run.events.wait_for(lambda e: e.type == "msg" and e.text == "Download paused", 2,
                                 "msg 'Download paused'")
    assert paused.at - t_pause < 1.0
    # "stops all transfers within 200 ms" (with slack for a loaded machine): the server's
    # responses all end, cut by the client.
    assert http_server.wait_idle(0.5), "transfers still running 0.5 s after the pause"
    time.sleep(0.3)  # "stops all transfers within 200 ms"
    served_1, on_disk_1 = http_server.bytes_sent("/p.bin"), run.stats()["downloaded"]
    time.sleep(0.5)
    served_2, st = http_server.bytes_sent("/p.bin"), run.stats()
    assert st["state"] == "paused", st
    assert st["downloaded"] == on_disk_1, "bytes kept arriving while paused"
    assert served_2 - served_1 < 128 * 1024, (
        f"the server still sent {served_2 - served_1} bytes while paused")
    assert 0 < on_disk_1 < SIZE
    types = run.events.types()
    assert "endOne" not in types and "end" not in types, "a pause ends nothing"
    assert not save.exists(), "the file must not appear before it is complete"

    assert run.resume() == 0
    run.events.wait_for(lambda e: e.type == "msg" and e.text == "Download resumed", 2,
                        "msg 'Download resumed'")
    run.wait_end(20)
    check_events(run.events, [t], sizes={"p": SIZE})
    assert_file(save, res.body)
    http_server.wait_idle()
    served = http_server.bytes_sent("/p.bin")
    assert served <= SIZE * 1.1, (
        f"served {served} bytes for a {SIZE} file: the resume did not continue from disk")


def test_stop_ends_the_run_and_releases_the_id(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/s.bin", size=SIZE, throttle=RATE)
    save = tmp_path / "s.bin"
    run = tthsd.start([task(res.url, save, id="s")], threads=4, chunk_mb=1)
    _wait_progress(run, MiB)
    assert run.stop() == 0
    # stop waits for its transfers: the server sees every connection go at once.
    assert http_server.wait_idle(1.0), "transfers still running after stop_download returned"
    n = run.events.wait_quiet(0.5)
    evs = run.events.snapshot()
    listing = summarize(evs, 100)
    assert evs[-1].type == "end", listing
    assert evs[-2].type == "msg" and evs[-2].text == "Download stopped", listing
    assert [e.type for e in evs].count("end") == 1, listing
    assert len(run.events.items) == n
    assert not save.exists()
    # The id is released: everything answers -1 (with a reason), stats answer {}.
    for fn in ID_FUNCTIONS:
        assert getattr(lib, fn)(run.id) == -1, fn
        assert lib.last_error(), fn
    assert lib.set_speed_limit(run.id, 0) == -1
    assert lib.set_retry_config(run.id, 1, 1, 1) == -1
    assert lib.set_proxy(run.id, None) == -1
    assert lib.tthsd_set_timeouts(run.id, 1000, 1000) == -1
    assert run.stats() == {}
    time.sleep(0.2)
    assert len(run.events.items) == n, "events arrived for a stopped id"


def test_double_stop_and_stop_before_start(tthsd: Harness, lib: Lib,
                                           http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/d.bin", size=1000)
    run = tthsd.create([task(res.url, tmp_path / "d.bin", id="d")])
    assert run.stop() == 0
    assert run.stop() == -1
    assert lib.last_error()
    run.events.wait_quiet(0.3)
    assert [(e.type, e.text) for e in run.events.snapshot()] == [("msg", "Download stopped")], (
        "a downloader that never ran reports the stop, and no end")
    assert http_server.requests() == []


def test_stop_while_paused(tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/sp.bin", size=SIZE, throttle=RATE)
    run = tthsd.start([task(res.url, tmp_path / "sp.bin", id="sp")], threads=4, chunk_mb=1)
    _wait_progress(run, MiB)
    assert run.pause() == 0
    assert run.stop() == 0
    run.events.wait_quiet(0.3)
    evs = run.events.snapshot()
    assert [e.type for e in evs[-2:]] == ["msg", "end"], summarize(evs)
    assert evs[-2].text == "Download stopped"
    assert [e.type for e in evs].count("end") == 1


def test_pause_from_inside_the_callback(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                        tmp_path: Path) -> None:
    res = http_server.add("/cb.bin", size=4 * MiB, throttle=2 * RATE)
    save = tmp_path / "cb.bin"
    t = task(res.url, save, id="cb")
    calls: dict[str, int] = {}
    ident = 0

    def react(e: Event, events: Events) -> None:
        if e.type == "update" and e.msg["Downloaded"] > 0 and "pause" not in calls:
            calls["pause"] = lib.pause_download(ident)
            calls["stats_ok"] = int(bool(lib.stats(ident)))
            calls["limit"] = lib.set_speed_limit(ident, 0)

    events = Events(react)
    run = tthsd.create([t], events=events, threads=2, chunk_mb=1)
    ident = run.id
    assert run.start() == 0
    events.wait_for(lambda e: e.type == "msg" and e.text == "Download paused", 5,
                    "the pause asked from inside the callback")
    assert calls == {"pause": 0, "stats_ok": 1, "limit": 0}
    assert run.stats()["state"] == "paused"
    assert run.resume() == 0
    run.wait_end(20)
    check_events(events, [t], sizes={"cb": res.size})
    assert_file(save, res.body)


def test_pause_and_resume_both_from_inside_the_callback(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/cb2.bin", size=2 * MiB, throttle=2 * RATE)
    t = task(res.url, tmp_path / "cb2.bin", id="cb2")
    rets: list[tuple[str, int]] = []
    ident = 0

    def react(e: Event, events: Events) -> None:
        if e.type == "update" and e.msg["Downloaded"] > 0 and not rets:
            rets.append(("pause", lib.pause_download(ident)))
        elif e.type == "msg" and e.text == "Download paused":
            rets.append(("resume", lib.resume_download(ident)))

    events = Events(react)
    run = tthsd.create([t], events=events, threads=2)
    ident = run.id
    assert run.start() == 0
    run.wait_end(20)
    assert rets == [("pause", 0), ("resume", 0)]
    check_events(events, [t], sizes={"cb2": res.size})
    assert_file(tmp_path / "cb2.bin", res.body)


def test_stop_from_inside_the_callback(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                       tmp_path: Path) -> None:
    res = http_server.add("/cs.bin", size=4 * MiB, throttle=2 * RATE)
    t = task(res.url, tmp_path / "cs.bin", id="cs")
    rets: list[int] = []
    ident = 0

    def react(e: Event, events: Events) -> None:
        if e.type == "update" and e.msg["Downloaded"] > 0 and not rets:
            rets.append(lib.stop_download(ident))

    events = Events(react)
    run = tthsd.create([t], events=events, threads=2)
    ident = run.id
    assert run.start() == 0
    events.wait_end(10)
    events.wait_quiet(0.5)
    evs = events.snapshot()
    assert rets == [0]
    k = next(i for i, e in enumerate(evs) if e.type == "update" and e.msg["Downloaded"] > 0)
    tail = [(e.type, e.text) for e in evs[k + 1:]]
    assert tail == [("msg", "Download stopped"), ("end", "")], (
        f"after a stop from inside the callback: {summarize(evs[k:])}")
    assert http_server.wait_idle(1.0)
