"""Remote event sinks (ABI.md §6): with ``use_callback_url`` and a
``remote_callback_url``, every event also goes to a WebSocket (``use_socket`` false or
NULL; ``http://`` means ``ws://``) or to a TCP ``host:port`` (``use_socket`` true, one
JSON object per line), as ``{"Type", "Msg" (the msg JSON as a string), "Event"}``. A
listener that is down, dies, or reads slowly never fails or slows the download, and a
lost one is reported once as a ``msg`` event.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import Events, MiB, assert_file, check_events, summarize, task
from tests.support.server import LoopbackServer

from .conftest import Listeners
from .listeners import Message, free_port
from .runs import (
    UNREACHABLE,
    RemoteHarness,
    as_local,
    check_wire_shape,
    local_triples,
    poll_until,
    unreachable_notices,
)

#: Per-response rate of the "long" downloads: 3 ranges of 1 MiB at 1 MiB/s each take
#: about a second, long enough for several `update`s and for a listener to die mid-run.
SLOW = 1 << 20


def _two_tasks(
    srv: LoopbackServer, tmp: Path, size: int = 3 * MiB, throttle: float | None = SLOW
) -> tuple[list[dict[str, Any]], list[Any]]:
    res = [srv.add(f"/r{i}.bin", size=size + i * 7, throttle=throttle) for i in (1, 2)]
    tasks = [task(r.url, tmp / f"r{i}.bin", id=f"t{i}") for i, r in zip((1, 2), res, strict=True)]
    return tasks, res


def _received_everything(lis: Any, events: Events, timeout: float = 10.0) -> list[Message]:
    """Waits until the listener has as many messages as the local callback saw."""
    n = len(events.snapshot())
    lis.wait_for(lambda ms: len(ms) >= n, timeout)
    time.sleep(0.2)  # anything extra would show up now
    return list(lis.snapshot())


def _assert_ends_with_end_and_one_notice(events: Events) -> None:
    evs = events.snapshot()
    assert evs[-1].type == "end", f"the run does not end with `end`: {summarize(evs, 80)}"
    assert [e.type for e in evs].count("end") == 1, summarize(evs, 80)
    notices = unreachable_notices(events)
    assert len(notices) == 1, f"want one notice of the lost listener: {summarize(evs, 80)}"
    notice = next(e for e in evs if e.type == "msg" and e.text.startswith(UNREACHABLE))
    assert (notice.show_name, notice.id) == ("Global", ""), notice


# -- delivery --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_websocket_listener_receives_every_event_in_order(
    remote: RemoteHarness,
    listeners: Listeners,
    http_server: LoopbackServer,
    tmp_path: Path,
    scheme: str,
) -> None:
    ws = listeners.ws()
    tasks, res = _two_tasks(http_server, tmp_path)
    # use_socket false and NULL both mean WebSocket
    use_socket = False if scheme == "http" else None
    run = remote.start_remote(
        tasks, remote_url=ws.url(scheme, "/events?who=test"), use_socket=use_socket
    )
    run.wait_end(20)
    check_events(run.events, tasks, sequential=True, sizes={"t1": res[0].size, "t2": res[1].size})
    for t, r in zip(tasks, res, strict=True):
        assert_file(t["save_path"], r.body)
    got = _received_everything(ws, run.events)
    check_wire_shape(got)
    assert [as_local(m) for m in got] == local_triples(run.events)
    assert ws.connections == 1 and ws.paths == ["/events?who=test"]
    assert len(run.events.of("update")) >= 3, "too few updates to say anything about order"


def test_tcp_listener_receives_every_event_as_one_json_line(
    remote: RemoteHarness, listeners: Listeners, http_server: LoopbackServer, tmp_path: Path
) -> None:
    tcp = listeners.tcp()
    tasks, res = _two_tasks(http_server, tmp_path)
    run = remote.start_remote(tasks, remote_url=tcp.address, use_socket=True, multiple=True)
    run.wait_end(20)
    check_events(run.events, tasks, sizes={"t1": res[0].size, "t2": res[1].size})
    for t, r in zip(tasks, res, strict=True):
        assert_file(t["save_path"], r.body)
    got = _received_everything(tcp, run.events)
    check_wire_shape(got)
    assert [as_local(m) for m in got] == local_triples(run.events)
    assert tcp.connections == 1


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_releasing_a_completed_run_sends_the_listener_nothing_after_end(
    remote: RemoteHarness,
    listeners: Listeners,
    http_server: LoopbackServer,
    tmp_path: Path,
    kind: str,
) -> None:
    # Regression: stop_download on a downloader whose run had finished sent a `msg`
    # "Download stopped" after `end`, so the listener's stream ended in a stop nobody made.
    lis = listeners.tcp() if kind == "tcp" else listeners.ws()
    tasks, _ = _two_tasks(http_server, tmp_path, throttle=None)
    if kind == "tcp":
        run = remote.start_remote(tasks, remote_url=lis.address, use_socket=True)
    else:
        run = remote.start_remote(tasks, remote_url=lis.url("ws", "/e"), use_socket=False)
    run.wait_end(20)
    assert run.stop() == 0
    run.events.wait_quiet(0.5)
    got = _received_everything(lis, run.events)
    assert got and got[-1].type == "end", [m.type for m in got][-5:]
    assert [m.type for m in got].count("end") == 1
    texts = [json.loads(m.value["Msg"]).get("Text") for m in got if m.type == "msg"]
    assert "Download stopped" not in texts, texts
    assert run.events.snapshot()[-1].type == "end", "the local stream ends with `end` too"


def test_tcp_listener_on_ipv6_loopback(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    try:
        srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with srv:
        res = http_server.add("/v6.bin", size=MiB)
        tasks = [task(res.url, tmp_path / "v6.bin", id="v6")]
        port = srv.getsockname()[1]
        run = remote.start_remote(tasks, remote_url=f"[::1]:{port}", use_socket=True)
        srv.settimeout(5)
        conn, _ = srv.accept()
        run.wait_end(20)
        conn.settimeout(5)
        data = b""
        while b'"Type":"end"' not in data:
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
        conn.close()
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert [x["Type"] for x in lines] == run.events.types()
    assert_file(tmp_path / "v6.bin", res.body)


def test_without_use_callback_url_nothing_is_sent(
    remote: RemoteHarness, listeners: Listeners, http_server: LoopbackServer, tmp_path: Path
) -> None:
    tcp = listeners.tcp()
    tasks, _res = _two_tasks(http_server, tmp_path, size=MiB, throttle=None)
    run = remote.start_remote(
        tasks, remote_url=tcp.address, use_socket=True, use_callback_url=False
    )
    run.wait_end(20)
    check_events(run.events, tasks)
    time.sleep(0.3)
    assert tcp.connections == 0 and not tcp.snapshot()


@pytest.mark.parametrize("trusted", [True, False])
def test_https_remote_url_means_wss_with_the_trusted_roots(
    child: Any,
    listeners: Listeners,
    server_cert: Any,
    ca_file: Path,
    http_server: LoopbackServer,
    tmp_path: Path,
    trusted: bool,
) -> None:
    from .conftest import server_context

    wss = listeners.ws(ssl_context=server_context(server_cert))
    res = http_server.add("/wss.bin", size=MiB + 1)
    save = tmp_path / "wss.bin"
    spec = {
        "tasks": [task(res.url, save, id="w")],
        "remote_url": wss.url("https"),
        "use_socket": False,
        "quiet": 1.0,
    }
    report = child(spec, env={"SSL_CERT_FILE": str(ca_file)} if trusted else {})
    assert report["ended"], report
    assert_file(save, res.body)
    texts = [json.loads(m).get("Text", "") for _, m in report["events"]]
    notices = [t for t in texts if t.startswith(UNREACHABLE)]
    if trusted:
        assert wss.wait_type("end", 10), wss.types()
        assert [m.type for m in wss.snapshot()] == [
            json.loads(e)["Type"] for e, _ in report["events"]
        ]
        assert not notices
    else:
        # the listener's certificate is not trusted: reported once, the download is fine
        assert not wss.snapshot()
        assert len(notices) == 1 and "certificate" in notices[0], texts


# -- a listener that is down or dies ------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_listener_down_from_the_start_is_reported_once_and_the_download_completes(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path, kind: str
) -> None:
    port = free_port()
    url, sock = (
        (f"127.0.0.1:{port}", True) if kind == "tcp" else (f"http://127.0.0.1:{port}/events", False)
    )
    tasks, res = _two_tasks(http_server, tmp_path)
    run = remote.start_remote(tasks, remote_url=url, use_socket=sock)
    run.wait_end(20)
    run.events.wait_quiet(0.5)
    check_events(run.events, tasks, sequential=True)
    for t, r in zip(tasks, res, strict=True):
        assert_file(t["save_path"], r.body)
    _assert_ends_with_end_and_one_notice(run.events)
    assert f"127.0.0.1:{port}" in unreachable_notices(run.events)[0]


def test_listener_down_from_the_start_is_reported_before_end_even_for_a_short_run(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: the notice came after `end` when the run was shorter than the sink's
    # give-up time (3 tries, ~0.6 s); `end` now reaches the callback through the writer.
    res = http_server.add("/short.bin", size=MiB)
    tasks = [task(res.url, tmp_path / "short.bin", id="s")]
    run = remote.start_remote(tasks, remote_url=f"127.0.0.1:{free_port()}", use_socket=True)
    run.wait_end(20)
    run.events.wait_quiet(1.5)
    assert_file(tmp_path / "short.bin", res.body)
    _assert_ends_with_end_and_one_notice(run.events)


def test_lost_listener_notice_hides_credentials_of_the_remote_url(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: the notice printed the remote URL as given, user info and token too.
    res = http_server.add("/cred.bin", size=MiB, throttle=SLOW)
    tasks = [task(res.url, tmp_path / "cred.bin", id="c")]
    url = f"ws://viewer:Ws-S3cret@127.0.0.1:{free_port()}/events?token=T0ken-S3cret"
    run = remote.start_remote(tasks, remote_url=url, use_socket=False)
    run.wait_end(20)
    assert poll_until(lambda: bool(unreachable_notices(run.events)), 10)
    (notice,) = unreachable_notices(run.events)
    assert f"127.0.0.1:{url.split(':')[3].split('/')[0]}" in notice, notice
    assert "Ws-S3cret" not in notice and "T0ken-S3cret" not in notice, notice


def _first_update(ms: list[Message]) -> bool:
    return any(m.type == "update" for m in ms)


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_listener_dying_mid_download_is_reported_once_and_the_download_completes(
    remote: RemoteHarness,
    listeners: Listeners,
    http_server: LoopbackServer,
    tmp_path: Path,
    kind: str,
) -> None:
    if kind == "tcp":
        lis: Any = listeners.tcp(die_when=_first_update)
        url, sock = lis.address, True
    else:
        lis = listeners.ws(die_when=_first_update)
        url, sock = lis.url("ws"), False
    tasks, res = _two_tasks(http_server, tmp_path)
    run = remote.start_remote(tasks, remote_url=url, use_socket=sock)
    run.wait_end(20)
    run.events.wait_quiet(0.5)
    assert lis.dead.is_set(), "the listener never saw an update, so it never died"
    check_events(run.events, tasks, sequential=True)
    for t, r in zip(tasks, res, strict=True):
        assert_file(t["save_path"], r.body)
    _assert_ends_with_end_and_one_notice(run.events)
    # what it got before dying was the start of the real sequence, in order
    got = [as_local(m) for m in lis.snapshot()]
    assert got == local_triples(run.events)[: len(got)]
    assert lis.connections == 1, "the sink reconnected to a listener that is gone"


def test_listener_that_keeps_dropping_the_connection_gets_a_bounded_number_of_reconnects(
    remote: RemoteHarness, listeners: Listeners, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: a successful write reset the failure count and a write into a socket
    # the peer had just closed "succeeded", so the sink reconnected about once per event
    # for as long as the run lasted, losing events without a notice.
    lis = listeners.tcp(hang_up_after=1)  # reads one line, then resets the connection
    res = [http_server.add(f"/f{i}.bin", size=3 * MiB + i, throttle=SLOW) for i in range(3)]
    tasks = [task(r.url, tmp_path / f"f{i}.bin", id=f"f{i}") for i, r in enumerate(res)]
    run = remote.start_remote(tasks, remote_url=lis.address, use_socket=True, threads=4)
    run.wait_end(30)  # about 3 s, an `update` every 200 ms
    run.events.wait_quiet(1.0)
    for t, r in zip(tasks, res, strict=True):
        assert_file(t["save_path"], r.body)
    n = len(run.events.snapshot())
    assert lis.connections <= 5, f"{lis.connections} connections for {n} events"
    assert len(unreachable_notices(run.events)) == 1, summarize(run.events.snapshot(), 200)


# -- a slow listener -----------------------------------------------------------------------


def _many_tasks(
    srv: LoopbackServer, tmp: Path, n: int = 60, pad: int = 0
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``n`` small files, fetched side by side: about 3 events per file. ``pad`` adds a
    query of that many bytes to every URL, which ``startOne``/``endOne`` repeat, to make
    the messages big."""
    query = "?pad=" + "p" * pad if pad else ""
    res = [srv.add(f"/m{i}.bin", size=256 * 1024 + i) for i in range(n)]
    return [task(r.url + query, tmp / f"m{i}.bin", id=f"m{i}") for i, r in enumerate(res)], res


def _timed_run(
    remote: RemoteHarness, tasks: list[dict[str, Any]], **kw: Any
) -> tuple[float, Events]:
    """Seconds from start_download to the last file's `endOne` (the download; `end`
    may wait a bounded time for the listener, see below), and the events."""
    t0 = time.monotonic()
    run = remote.start_remote(tasks, multiple=True, threads=8, **kw)
    run.wait_end(60)
    check_events(run.events, tasks)
    return max(e.at for e in run.events.of("endOne")) - t0, run.events


@pytest.mark.parametrize("how", ["never-reads", "reads-slowly", "ws-reads-slowly"])
def test_slow_listener_never_slows_the_download(
    remote: RemoteHarness,
    listeners: Listeners,
    http_server: LoopbackServer,
    tmp_path: Path,
    how: str,
) -> None:
    # never-reads: ~5 MB of messages (40 KB URLs) against a listener that reads nothing,
    # more than the kernel buffers (a few MB), so the sink's writes really block.
    pad = 40_000 if how == "never-reads" else 0
    # the best of two runs without a listener (the first one runs cold)
    baseline = min(
        _timed_run(remote, _many_tasks(http_server, tmp_path / f"base{i}", pad=pad)[0],
                   remote_url=None, use_socket=None)[0]
        for i in (1, 2)
    )  # fmt: skip
    if how == "never-reads":
        lis: Any = listeners.tcp(never_read=True, rcvbuf=4096)
        kw: dict[str, Any] = {"remote_url": lis.address, "use_socket": True}
    elif how == "reads-slowly":
        lis = listeners.tcp(read_delay=0.05, read_size=1024, rcvbuf=4096)
        kw = {"remote_url": lis.address, "use_socket": True}
    else:
        lis = listeners.ws(read_delay=0.02)
        kw = {"remote_url": lis.url("ws"), "use_socket": False}
    tasks2, res = _many_tasks(http_server, tmp_path / "slow", pad=pad)
    with_listener, events = _timed_run(remote, tasks2, **kw)
    for t, r in zip(tasks2, res, strict=True):
        assert_file(t["save_path"], r.body)
    assert with_listener <= 2 * baseline + 1.0, (
        f"{with_listener:.2f} s with a slow listener, {baseline:.2f} s without"
    )
    if how == "never-reads":
        # Proof the listener pushed back: a write timed out (the sink then reconnects,
        # or gives up and says so).
        assert poll_until(lambda: lis.connections >= 2 or bool(unreachable_notices(events)), 15), (
            "the sink's writes never blocked: the test proves nothing"
        )
    else:
        # `update`s may be dropped, nothing else: what arrives is in order
        assert lis.wait_type("end", 30), "the slow listener never got `end`"
        got = [as_local(m) for m in lis.snapshot() if m.type != "update"]
        assert got == [x for x in local_triples(events) if x[0] != "update"]


def _stuck_listener_run(
    remote: RemoteHarness,
    listeners: Listeners,
    http_server: LoopbackServer,
    tmp: Path,
    *,
    throttle: float | None,
) -> tuple[Any, Any]:
    """30 files side by side whose 100 KB show names make every event ~200 KB: ~20 MB
    for a listener that never reads, far past what the kernel buffers per connection."""
    res = [http_server.add(f"/k{i}.bin", size=MiB + i, throttle=throttle) for i in range(30)]
    tasks = [
        task(r.url, tmp / f"k{i}.bin", id=f"k{i}", show_name=f"k{i}-" + "s" * 100_000)
        for i, r in enumerate(res)
    ]
    lis = listeners.tcp(never_read=True, rcvbuf=4096)
    run = remote.start_remote(
        tasks, remote_url=lis.address, use_socket=True, multiple=True, threads=64
    )
    return run, lis


def test_a_listener_that_takes_no_data_delays_end_only_briefly(
    remote: RemoteHarness, listeners: Listeners, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: `end` went to the callback through the writer only, so a listener that
    # took no data held it (and wait()) back ~8 s, until the writer gave up.
    run, _ = _stuck_listener_run(remote, listeners, http_server, tmp_path, throttle=None)
    end = run.wait_end(60)
    last = max(e.at for e in run.events.of("endOne"))
    assert all(e.msg["Success"] for e in run.events.of("endOne"))
    assert end.at - last <= 2.5, f"`end` came {end.at - last:.1f} s after the last file"


def test_stop_with_a_listener_that_takes_no_data_is_prompt_and_still_ends_with_end(
    remote: RemoteHarness, listeners: Listeners, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: stop_download blocked 5 s on the writer, then closed the event thread
    # before the writer had handed `end` on: the stopped run had no `end`.
    # 128 KiB/s a response: the 30 files take several seconds even split over 64
    # connections, so the run is still going when stopped (a finished run sends no
    # "Download stopped").
    run, _ = _stuck_listener_run(remote, listeners, http_server, tmp_path, throttle=128 * 1024)
    run.events.wait_type("update", 10)
    time.sleep(1.0)  # megabytes queued for a listener that reads nothing
    t0 = time.monotonic()
    assert run.stop() == 0
    took = time.monotonic() - t0
    run.events.wait_quiet(0.5)
    types = run.events.types()
    # "Download stopped", maybe the notice that the listener was given up on, then `end`
    assert types[-1] == "end" and types.count("end") == 1, types[-5:]
    done = sum(1 for e in run.events.of("endOne") if e.msg.get("Success"))
    assert done < 30, "the run finished before it was stopped: the test proves nothing"
    assert "Download stopped" in run.events.texts(), run.events.texts()
    assert took <= 2.0, f"stop_download took {took:.1f} s"


# -- invalid input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "use_socket"),
    [
        (b"localhost", True),  # no port
        (b"127.0.0.1:notaport", True),
        (b"127.0.0.1:70000", True),  # port out of range
        (b":9000", True),  # no host
        (b"ftp://127.0.0.1:21/x", False),  # not a WebSocket / http(s) URL
        (b"127.0.0.1:9000", False),  # host:port is for use_socket only
        (b"http://", False),  # no host
        (b"ws://[::1", False),  # does not parse
        (b"\xff\xfe", False),  # not UTF-8
        (b"\xff\xfe", True),
    ],
)
def test_invalid_remote_url_gives_minus_one_with_a_reason(
    remote: RemoteHarness, tmp_path: Path, http_server: LoopbackServer, url: bytes, use_socket: bool
) -> None:
    res = http_server.add("/x.bin", size=1000)
    for create_only in (False, True):
        rc, _ = remote.call(
            [task(res.url, tmp_path / "x.bin", id="x")],
            remote_url=url,
            use_socket=use_socket,
            create_only=create_only,
        )
        assert rc == -1
        reason = remote.lib.last_error()
        assert reason and "remote_callback_url" in reason, reason
    assert not http_server.requests(), "a refused downloader still made requests"


# Regression: a refused remote_callback_url used to be quoted whole in tthsd_last_error
# (and so in the Python log), user info and query included.
@pytest.mark.parametrize(
    ("url", "use_socket"),
    [
        (b"ftp://viewer:Ws-S3cret@127.0.0.1:21/x", False),
        (b"ws://viewer:Ws-S3cret@[::1/events", False),
        (b"http://127.0.0.1:9/events?token=Ws-S3cret oops\x7f", True),
        (b"viewer:Ws-S3cret@host", True),
    ],
)
def test_refused_remote_url_reason_hides_its_secrets(
    remote: RemoteHarness, tmp_path: Path, url: bytes, use_socket: bool
) -> None:
    t = [task("http://127.0.0.1:9/never.bin", tmp_path / "never.bin", id="n")]
    rc, _ = remote.call(t, remote_url=url, use_socket=use_socket, create_only=True)
    assert rc == -1
    reason = remote.lib.last_error()
    assert "remote_callback_url" in reason, reason
    assert "Ws-S3cret" not in reason, reason


def test_remote_url_is_ignored_without_use_callback_url_and_when_empty(
    remote: RemoteHarness, tmp_path: Path, http_server: LoopbackServer
) -> None:
    res = http_server.add("/y.bin", size=1000)
    t = [task(res.url, tmp_path / "y.bin", id="y")]
    rc, _ = remote.call(
        t, remote_url=b"not a url", use_socket=True, use_callback_url=False, create_only=True
    )
    assert rc > 0, remote.lib.last_error()
    rc, _ = remote.call(t, remote_url=b"", use_socket=True, create_only=True)
    assert rc > 0, remote.lib.last_error()
