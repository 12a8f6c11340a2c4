"""Several downloaders at once, calls from other threads and from inside callbacks,
and names that need escaping."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from tests.support.server import LoopbackServer

from .lib import (
    Event,
    Events,
    Harness,
    Lib,
    MiB,
    assert_file,
    bool_p,
    check_events,
    summarize,
    task,
    tasks_json,
)


def test_downloaders_are_isolated(tthsd: Harness, http_server: LoopbackServer,
                                  tmp_path: Path) -> None:
    runs = []
    for i in range(8):
        res = http_server.add(f"/iso{i}.bin", size=300_000 + 1000 * i)
        t = task(res.url, tmp_path / f"iso{i}.bin", id=f"iso{i}")
        runs.append((tthsd.start([t], threads=2), t, res))
    assert len({r.id for r, _, _ in runs}) == 8, "ids must be unique"
    for run, t, res in runs:
        run.wait_end(20)
        check_events(run.events, [t], sizes={t["id"]: res.size})  # only its own task
        assert_file(t["save_path"], res.body)


def test_ids_are_not_reused(tthsd: Harness, lib: Lib, tmp_path: Path) -> None:
    seen = set()
    for i in range(100):
        run = tthsd.create([task("http://127.0.0.1:9/x", tmp_path / f"{i}.bin")])
        assert run.id not in seen
        seen.add(run.id)
        assert run.stop() == 0
        assert lib.stats(run.id) == {}


def test_control_calls_from_many_threads(tthsd: Harness, lib: Lib,
                                         http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/mt.bin", size=8 * MiB, throttle=2 * MiB)
    t = task(res.url, tmp_path / "mt.bin", id="mt")
    run = tthsd.start([t], threads=4)
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer(k: int) -> None:
        try:
            while not stop.is_set():
                assert isinstance(lib.stats(run.id), dict)
                assert lib.set_speed_limit(run.id, 0) in (0, -1)
                if k == 0:  # pause and resume now and then: each pause drops connections
                    assert lib.pause_download(run.id) in (0, -1)
                    stop.wait(0.02)
                    assert lib.resume_download(run.id) in (0, -1)
                    stop.wait(0.2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    try:
        run.wait_end(30)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors
    check_events(run.events, [t], sizes={"mt": res.size})
    assert_file(tmp_path / "mt.bin", res.body)


def test_starting_and_stopping_others_from_inside_a_callback(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    a = http_server.add("/a.bin", size=200_000)
    b = http_server.add("/b.bin", size=300_000)
    victim = tthsd.create([task("http://127.0.0.1:9/v", tmp_path / "v.bin")])
    tb = task(b.url, tmp_path / "b.bin", id="b")
    events_b = Events()
    made: dict[str, int] = {}

    def react(e: Event, events: Events) -> None:
        if e.type == "end" and "b" not in made:
            made["stop other"] = lib.stop_download(victim.id)
            made["b"] = lib.start_download(
                b'[{"url": "%s", "save_path": "%s", "id": "b"}]'
                % (b.url.encode(), str(tmp_path / "b.bin").encode()),
                1, 2, 1, events_b.callback, False, None, None, None, None, None)
            made["get"] = lib.get_downloader(
                b'[{"url": "http://127.0.0.1:9/z", "save_path": "%s"}]'
                % str(tmp_path / "z.bin").encode(), 1, 2, 1, None, False, None, None, None, None)

    ta = task(a.url, tmp_path / "a.bin", id="a")
    run = tthsd.start([ta], events=Events(react))
    run.wait_end(10)
    events_b.wait_end(10)
    tthsd.ids += [made["b"], made["get"]]
    assert made["stop other"] == 0 and made["b"] > 0 and made["get"] > 0, made
    check_events(events_b, [tb], sizes={"b": b.size})
    assert_file(tmp_path / "b.bin", b.body)
    assert_file(tmp_path / "a.bin", a.body)


def test_stop_inside_the_end_callback_sends_no_second_end(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/e.bin", size=100_000)
    rets: list[int] = []
    ident = 0

    def react(e: Event, events: Events) -> None:
        if e.type == "end" and not rets:
            rets.append(lib.stop_download(ident))

    events = Events(react)
    run = tthsd.create([task(res.url, tmp_path / "e.bin", id="e")], events=events)
    ident = run.id
    assert run.start() == 0
    events.wait_end(10)
    events.wait_quiet(0.4)
    evs = events.snapshot()
    assert rets == [0]
    assert [e.type for e in evs].count("end") == 1, summarize(evs)
    # The run had ended: releasing it adds nothing after its `end`.
    assert evs[-1].type == "end", summarize(evs)
    assert "Download stopped" not in [e.text for e in evs if e.type == "msg"], summarize(evs)
    assert_file(tmp_path / "e.bin", res.body)


def test_names_and_paths_that_need_escaping(tthsd: Harness, http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    res = http_server.add("/odd%20name.bin", size=100_000)
    show = 'naïve "quoted" \\ back\tslash 名前 🚀'
    save = tmp_path / "dir with space" / "ファイル 'x'.bin"
    t = task(res.url, save, id='id "with" quotes/ü', show_name=show)
    run = tthsd.start([t], threads=2)
    run.wait_end(10)
    check_events(run.events, [t], sizes={t["id"]: res.size})
    assert run.events.of("startOne")[0].show_name == show
    assert_file(save, res.body)


def test_remote_tcp_sink_gets_every_event_as_a_line(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    """ABI.md §6 with ``*use_socket`` true: one JSON object per line over TCP."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    res = http_server.add("/remote.bin", size=300_000)
    t = task(res.url, tmp_path / "remote.bin", id="r")
    events = Events()
    ident = lib.start_download(tasks_json([t]), 1, 2, 1, events.callback, True, None,
                               f"127.0.0.1:{port}".encode(), bool_p(True), None, None)
    assert ident > 0, lib.last_error()
    tthsd.ids.append(ident)
    events.wait_end(10)
    conn, _ = listener.accept()
    conn.settimeout(5)
    buf = b""
    while b'"Type":"end"' not in buf.replace(b" ", b""):
        chunk = conn.recv(65536)
        assert chunk, f"sink closed early: {buf[-500:]!r}"
        buf += chunk
    conn.close()
    listener.close()
    lines = [json.loads(ln) for ln in buf.decode().splitlines() if ln.strip()]
    got = [(m["Type"], m["Event"]["ID"]) for m in lines if m["Type"] != "update"]
    want = [(e.type, e.id) for e in events.snapshot() if e.type != "update"]
    assert got == want, (got, want)  # updates may be dropped; nothing else
    for m in lines:
        assert m["Event"]["Type"] == m["Type"]
        assert isinstance(m["Msg"], str) and isinstance(json.loads(m["Msg"]), dict), m
    assert_file(tmp_path / "remote.bin", res.body)
