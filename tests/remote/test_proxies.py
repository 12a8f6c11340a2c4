"""Proxies (issue 8): ``set_proxy`` with ``http://`` (forward for http targets, CONNECT
for https ones), ``https://``, ``socks5://`` (the client resolves) and ``socks5h://`` (the
proxy resolves), credentials in the URL; by default the environment's proxy variables,
read the way curl reads them. Every test proves the proxy was really used from the
proxy's own log (and, where it can, by a target name only the proxy resolves), checks the
file byte for byte, and checks the proxy's credentials appear in no event and not in
``get_performance_stats``.

Tests that need an environment of their own (proxy variables, ``SSL_CERT_FILE`` naming
the test CA) run the download in a child interpreter: see tests/remote/child.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import Events, Lib, MiB, assert_file, check_events, summarize, task
from tests.support.server import LoopbackServer

from .conftest import ORIGIN_HOST
from .proxy import LoopbackProxy
from .runs import RemoteHarness

USER = "tthsd-user"
SECRET = "Pr0xy-S3cret"
AUTH = (USER, SECRET)
HOSTS = {ORIGIN_HOST: "127.0.0.1"}


def _origin_url(srv: LoopbackServer, path: str, host: str = ORIGIN_HOST) -> str:
    scheme = "https" if srv.ssl_context is not None else "http"
    return f"{scheme}://{host}:{srv.port}{path}"


def _assert_secret_absent(secret: str, events: list[tuple[str, str]], stats: str) -> None:
    for event_json, msg_json in events:
        assert secret not in event_json and secret not in msg_json, (event_json, msg_json)
    assert secret not in stats, stats


def _local_secret_check(lib: Lib, ident: int, events: Events, secret: str = SECRET) -> None:
    raw = [(e.raw[0].decode(), e.raw[1].decode()) for e in events.snapshot()]
    _assert_secret_absent(secret, raw, json.dumps(lib.stats(ident)))


def _proxied_run(
    remote: RemoteHarness,
    proxy_url: str,
    tasks: list[dict[str, Any]],
    *,
    retries: tuple[int, int, int] | None = None,
) -> Any:
    run = remote.create(tasks, threads=4, chunk_mb=1)
    assert remote.lib.set_proxy(run.id, proxy_url.encode()) == 0, remote.lib.last_error()
    if retries is not None:
        assert remote.lib.set_retry_config(run.id, *retries) == 0
    assert run.start() == 0, remote.lib.last_error()
    run.wait_end(30)
    return run


# -- HTTP forward proxy ----------------------------------------------------------------


def test_http_proxy_carries_plain_http_with_the_credentials_of_its_url(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/fwd.bin", size=3 * MiB + 5)
    t = task(_origin_url(http_server, "/fwd.bin"), tmp_path / "fwd.bin", id="fwd")
    run = _proxied_run(remote, proxy.url(), [t])
    check_events(run.events, [t], sizes={"fwd": res.size})
    assert_file(tmp_path / "fwd.bin", res.body)
    recs = proxy.records()
    assert recs, "the proxy saw nothing"
    assert {(r.kind, r.host, r.port) for r in recs} == {("forward", ORIGIN_HOST, http_server.port)}
    assert all(r.authorized and r.user == USER for r in recs), recs
    # the origin never sees the proxy's credentials
    for rec in http_server.requests():
        assert "Proxy-Authorization" not in rec.headers, rec
    _local_secret_check(remote.lib, run.id, run.events)


def test_proxy_credentials_are_percent_decoded(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    password = "p@ss:w/rd %"
    proxy = proxies("http", auth=(USER, password), hosts=HOSTS)
    res = http_server.add("/pct.bin", size=MiB)
    t = task(_origin_url(http_server, "/pct.bin"), tmp_path / "pct.bin", id="pct")
    run = _proxied_run(remote, proxy.url(password="p%40ss%3Aw%2Frd%20%25", user=USER), [t])
    check_events(run.events, [t])
    assert_file(tmp_path / "pct.bin", res.body)
    assert all(r.password == password for r in proxy.records()), proxy.records()
    _local_secret_check(remote.lib, run.id, run.events, secret="p%40ss")


def test_wrong_proxy_credentials_fail_the_task_without_showing_them(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("http", auth=AUTH, hosts=HOSTS)
    http_server.add("/no.bin", size=MiB)
    t = task(_origin_url(http_server, "/no.bin"), tmp_path / "no.bin", id="no")
    run = _proxied_run(
        remote, proxy.url(user=USER, password="Wr0ng-S3cret"), [t], retries=(0, 10, 10)
    )
    check_events(run.events, [t], success=False)
    errs = run.events.of("err")
    assert errs, summarize(run.events.snapshot())
    # docs/proxies.md: a 407 is the proxy's refusal, not the origin's status.
    assert [e.msg["Code"] for e in errs] == ["proxy"], summarize(run.events.snapshot())
    assert proxy.records() and all(r.status == 407 for r in proxy.records())
    assert not http_server.requests(), "the request went around the proxy"
    assert not (tmp_path / "no.bin").exists()
    _local_secret_check(remote.lib, run.id, run.events, secret="Wr0ng-S3cret")


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_unreachable_proxy_fails_the_task_without_showing_its_credentials(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path, scheme: str
) -> None:
    from .listeners import free_port

    http_server.add("/nop.bin", size=MiB)
    t = task(http_server.url("/nop.bin"), tmp_path / "nop.bin", id="nop")
    run = _proxied_run(
        remote, f"{scheme}://{USER}:{SECRET}@127.0.0.1:{free_port()}", [t], retries=(0, 10, 10)
    )
    check_events(run.events, [t], success=False)
    assert not http_server.requests(), "the request went around the proxy"
    _local_secret_check(remote.lib, run.id, run.events)


# -- SOCKS5 ----------------------------------------------------------------------------


def test_socks5_resolves_locally_and_carries_the_download(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("socks5", auth=AUTH)
    res = http_server.add("/s5.bin", size=3 * MiB + 1)
    t = task(_origin_url(http_server, "/s5.bin", host="localhost"), tmp_path / "s5.bin", id="s5")
    run = _proxied_run(remote, proxy.url(scheme="socks5"), [t])
    check_events(run.events, [t], sizes={"s5": res.size})
    assert_file(tmp_path / "s5.bin", res.body)
    recs = proxy.records()
    assert recs and all(r.status == 200 and r.user == USER for r in recs), recs
    # socks5://: the client resolved "localhost" and sent an address
    assert {(r.address_type, r.port) for r in recs} <= {
        ("ipv4", http_server.port),
        ("ipv6", http_server.port),
    }, recs
    _local_secret_check(remote.lib, run.id, run.events)


def test_socks5h_lets_the_proxy_resolve_the_name(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/s5h.bin", size=3 * MiB + 2)
    t = task(_origin_url(http_server, "/s5h.bin"), tmp_path / "s5h.bin", id="s5h")
    run = _proxied_run(remote, proxy.url(scheme="socks5h"), [t])
    check_events(run.events, [t], sizes={"s5h": res.size})
    assert_file(tmp_path / "s5h.bin", res.body)
    recs = proxy.records()
    assert recs and {(r.host, r.address_type, r.port) for r in recs} == {
        (ORIGIN_HOST, "name", http_server.port)
    }, recs
    _local_secret_check(remote.lib, run.id, run.events)


def test_socks5_without_h_cannot_reach_a_name_only_the_proxy_knows(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    http_server.add("/local.bin", size=MiB)
    t = task(_origin_url(http_server, "/local.bin"), tmp_path / "local.bin", id="l")
    run = _proxied_run(remote, proxy.url(scheme="socks5"), [t], retries=(0, 10, 10))
    check_events(run.events, [t], success=False)
    assert not [r for r in proxy.records() if r.address_type == "name"], proxy.records()


def test_socks5_wrong_password_fails_the_task_without_showing_it(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    http_server.add("/bad5.bin", size=MiB)
    t = task(_origin_url(http_server, "/bad5.bin"), tmp_path / "bad5.bin", id="b5")
    run = _proxied_run(
        remote,
        proxy.url(scheme="socks5h", user=USER, password="Wr0ng-S3cret"),
        [t],
        retries=(0, 10, 10),
    )
    check_events(run.events, [t], success=False)
    # docs/proxies.md: a SOCKS refusal reads as a network failure.
    assert {e.msg["Code"] for e in run.events.of("err")} == {"network"}, summarize(
        run.events.snapshot()
    )
    assert proxy.records() and all(r.status == 407 for r in proxy.records())
    assert not http_server.requests()
    _local_secret_check(remote.lib, run.id, run.events, secret="Wr0ng-S3cret")


# -- switching -------------------------------------------------------------------------


def test_set_proxy_null_goes_direct_and_applies_to_the_next_run(
    remote: RemoteHarness, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy = proxies("http", auth=AUTH)
    res = http_server.add("/sw.bin", size=MiB + 3)
    t = task(http_server.url("/sw.bin"), tmp_path / "sw.bin", id="sw")
    run = remote.create([t], threads=2)
    assert remote.lib.set_proxy(run.id, proxy.url().encode()) == 0
    assert remote.lib.set_proxy(run.id, None) == 0  # NULL: direct
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t])
    assert_file(tmp_path / "sw.bin", res.body)
    assert not proxy.records(), "set_proxy(NULL) still used the proxy"
    # An id stays valid after its run: a proxy set now carries the next run's requests.
    (tmp_path / "sw.bin").unlink()
    assert remote.lib.set_proxy(run.id, proxy.url().encode()) == 0
    before = len(run.events.snapshot())
    assert run.start() == 0
    run.events.wait_for(
        lambda e: e.type == "end" and run.events.snapshot().index(e) >= before, 20, "the second end"
    )
    assert_file(tmp_path / "sw.bin", res.body)
    assert proxy.records(), "the proxy set between runs was not used"


# -- invalid proxy URLs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        b"ftp://u:" + SECRET.encode() + b"@127.0.0.1:21",
        b"socks4://u:" + SECRET.encode() + b"@127.0.0.1:1080",
        b"http://u:" + SECRET.encode() + b"@",
        b"not a proxy " + SECRET.encode(),
        b"http://",
        b"127.0.0.1:3128",
        b"http://\xff",
    ],
)
def test_invalid_proxy_url_gives_minus_one_with_a_reason_that_hides_credentials(
    remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path, url: bytes
) -> None:
    t = task(http_server.url("/never"), tmp_path / "never.bin", id="n")
    run = remote.create([t])
    assert remote.lib.set_proxy(run.id, url) == -1
    reason = remote.lib.last_error()
    assert reason, "no reason given"
    assert SECRET not in reason, reason
    assert remote.lib.set_proxy(999_999, b"http://127.0.0.1:3128") == -1
    assert remote.lib.last_error()


# -- through the Python package --------------------------------------------------------


def test_python_set_proxy_and_remote_sink(
    lib_path: Path,
    proxies: Any,
    listeners: Any,
    http_server: LoopbackServer,
    tmp_path: Path,
) -> None:
    tthsd_interface = pytest.importorskip("tthsd_interface")
    proxy: LoopbackProxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    tcp = listeners.tcp()
    res = http_server.add("/py.bin", size=2 * MiB + 9)
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tthsd_interface.TTHSDownloader(lib_path) as dl:
        ident = dl.get_downloader(
            [_origin_url(http_server, "/py.bin")],
            [tmp_path / "py.bin"],
            thread_count=4,
            chunk_size_mb=1,
            callback=lambda e, m: seen.append((dict(e), dict(m))),
            use_callback_url=True,
            remote_callback_url=tcp.address,
            use_socket=True,
        )
        assert ident > 0
        assert dl.set_proxy(ident, "ftp://nope") is False
        assert dl.set_proxy(ident, proxy.url(scheme="socks5h")) is True
        assert dl.start_download_by_id(ident) is True
        assert dl.wait(ident, timeout=30)
        stats = dl.get_performance_stats(ident)
    assert_file(tmp_path / "py.bin", res.body)
    assert proxy.records() and all(r.host == ORIGIN_HOST for r in proxy.records())
    assert tcp.wait_type("end", 10)
    got = [m.type for m in tcp.snapshot()]
    # close() releases the ended downloader: the listener also gets its "Download
    # stopped", which the Python side keeps from the callback of an ended run.
    assert got[: got.index("end") + 1] == [e["Type"] for e, _ in seen]
    assert SECRET not in json.dumps(stats) and SECRET not in json.dumps(seen)
    assert all(SECRET not in m.text for m in tcp.snapshot())
