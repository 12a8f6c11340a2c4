"""Proxies that need an environment of their own, run in a child interpreter each:

* https targets through an HTTP ``CONNECT`` proxy and through an ``https://`` proxy, with
  the test CA trusted through ``SSL_CERT_FILE`` (the core reads it, as OpenSSL-based
  tools do);
* the default proxy settings: ``HTTP_PROXY``/``http_proxy``, ``HTTPS_PROXY``,
  ``ALL_PROXY`` and ``NO_PROXY``, read the way curl reads them, and overridden by
  ``set_proxy``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import MiB, assert_file, task
from tests.support.server import LoopbackServer

from .conftest import ORIGIN_HOST
from .proxy import LoopbackProxy

USER = "env-user"
SECRET = "Env-Pr0xy-S3cret"
AUTH = (USER, SECRET)
HOSTS = {ORIGIN_HOST: "127.0.0.1"}

Child = Callable[..., dict[str, Any]]


def _url(srv: LoopbackServer, path: str, host: str = ORIGIN_HOST) -> str:
    scheme = "https" if srv.ssl_context is not None else "http"
    return f"{scheme}://{host}:{srv.port}{path}"


def _events(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(json.loads(e), json.loads(m)) for e, m in report["events"]]


def _types(report: dict[str, Any]) -> list[str]:
    return [e["Type"] for e, _ in _events(report)]


def _success(report: dict[str, Any]) -> bool:
    ends = [m for e, m in _events(report) if e["Type"] == "endOne"]
    assert report["ended"] and len(ends) == 1, report
    return bool(ends[0]["Success"])


def _errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for e, m in _events(report) if e["Type"] == "err"]


def _no_secret(report: dict[str, Any], secret: str = SECRET) -> None:
    for e, m in report["events"]:
        assert secret not in e and secret not in m, (e, m)
    assert secret not in report["stats"], report["stats"]
    assert secret not in report["last_error"]


def _spec(url: str, save: Path, **extra: Any) -> dict[str, Any]:
    return {"tasks": [task(url, save, id="c")], "threads": 4, **extra}


# -- https targets: CONNECT and https:// proxies ----------------------------------------


def test_connect_proxy_tunnels_an_https_download(
    child: Child, proxies: Any, https_server: LoopbackServer, ca_file: Path, tmp_path: Path
) -> None:
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = https_server.add("/tls.bin", size=3 * MiB + 3)
    save = tmp_path / "tls.bin"
    report = child(
        _spec(_url(https_server, "/tls.bin"), save, proxy=proxy.url()),
        env={"SSL_CERT_FILE": str(ca_file)},
    )
    assert report["set_proxy"] == 0
    assert _success(report), _events(report)
    assert_file(save, res.body)
    recs = proxy.records()
    assert recs and {(r.kind, r.host, r.port) for r in recs} == {
        ("connect", ORIGIN_HOST, https_server.port)
    }, recs
    assert all(r.authorized and r.user == USER for r in recs), recs
    _no_secret(report)


def test_without_the_ca_in_ssl_cert_file_the_https_download_fails_as_tls(
    child: Child, proxies: Any, https_server: LoopbackServer, tmp_path: Path
) -> None:
    # The other half of the proof above: the test CA is trusted only through the variable.
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    https_server.add("/untrusted.bin", size=MiB)
    report = child(
        _spec(_url(https_server, "/untrusted.bin"), tmp_path / "u.bin", proxy=proxy.url())
    )
    assert not _success(report)
    assert [m["Code"] for m in _errors(report)] == ["tls"], _errors(report)
    assert proxy.records(), "the tunnel was never asked for"
    _no_secret(report)


@pytest.mark.parametrize("target", ["http", "https"])
def test_https_proxy_carries_the_download(
    child: Child,
    proxies: Any,
    server_cert: Any,
    http_server: LoopbackServer,
    https_server: LoopbackServer,
    ca_file: Path,
    tmp_path: Path,
    target: str,
) -> None:
    from .conftest import server_context

    proxy: LoopbackProxy = proxies(
        "http", auth=AUTH, hosts=HOSTS, ssl_context=server_context(server_cert)
    )
    srv = https_server if target == "https" else http_server
    res = srv.add("/viatls.bin", size=2 * MiB + 1)
    save = tmp_path / "viatls.bin"
    # the proxy's certificate names 127.0.0.1, which is how the proxy URL names it
    report = child(
        _spec(_url(srv, "/viatls.bin"), save, proxy=proxy.url(scheme="https")),
        env={"SSL_CERT_FILE": str(ca_file)},
    )
    assert _success(report), _events(report)
    assert_file(save, res.body)
    kind = "connect" if target == "https" else "forward"
    recs = proxy.records()
    assert recs and {(r.kind, r.host) for r in recs} == {(kind, ORIGIN_HOST)}, recs
    _no_secret(report)


def test_untrusted_https_proxy_fails_as_tls(
    child: Child, proxies: Any, server_cert: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: classified `network` (and retried): is_tls_error looked one io::Error
    # deep, and an https:// proxy's rustls::Error comes wrapped in two.
    from .conftest import server_context

    proxy: LoopbackProxy = proxies(
        "http", auth=AUTH, hosts=HOSTS, ssl_context=server_context(server_cert)
    )
    http_server.add("/nottrusted.bin", size=MiB)
    report = child(
        _spec(
            _url(http_server, "/nottrusted.bin"),
            tmp_path / "nt.bin",
            proxy=proxy.url(scheme="https"),
            retries=[1, 10, 10],
        )
    )
    assert not _success(report)
    assert [m["Code"] for m in _errors(report)] == ["tls"], _errors(report)
    assert not http_server.requests()
    _no_secret(report)


# -- the environment -------------------------------------------------------------------


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_environment_proxy_carries_http(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path, var: str
) -> None:
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/env.bin", size=2 * MiB + 7)
    save = tmp_path / "env.bin"
    report = child(_spec(_url(http_server, "/env.bin"), save), env={var: proxy.url()})
    assert _success(report), _events(report)
    assert_file(save, res.body)
    recs = proxy.records()
    assert recs and all(r.host == ORIGIN_HOST and r.authorized for r in recs), recs
    _no_secret(report)


def test_environment_proxy_without_a_scheme_means_http(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy: LoopbackProxy = proxies("http", hosts=HOSTS)  # no credentials: curl's "host:port"
    res = http_server.add("/bare.bin", size=MiB + 3)
    report = child(
        _spec(_url(http_server, "/bare.bin"), tmp_path / "bare.bin"),
        env={"http_proxy": f"127.0.0.1:{proxy.port}"},
    )
    assert _success(report), _events(report)
    assert_file(tmp_path / "bare.bin", res.body)
    assert proxy.records() and {r.kind for r in proxy.records()} == {"forward"}


def test_environment_socks5h_proxy_from_all_proxy(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    proxy: LoopbackProxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/all.bin", size=MiB + 7)
    save = tmp_path / "all.bin"
    report = child(
        _spec(_url(http_server, "/all.bin"), save), env={"ALL_PROXY": proxy.url(scheme="socks5h")}
    )
    assert _success(report), _events(report)
    assert_file(save, res.body)
    assert proxy.records() and all(r.address_type == "name" for r in proxy.records())
    _no_secret(report)


def test_https_proxy_variable_is_for_https_and_http_proxy_for_http(
    child: Child,
    proxies: Any,
    http_server: LoopbackServer,
    https_server: LoopbackServer,
    ca_file: Path,
    tmp_path: Path,
) -> None:
    for_http: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    for_https: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    env = {
        "HTTP_PROXY": for_http.url(),
        "HTTPS_PROXY": for_https.url(),
        "SSL_CERT_FILE": str(ca_file),
    }
    plain = http_server.add("/p.bin", size=MiB + 1)
    tls = https_server.add("/s.bin", size=MiB + 2)
    r1 = child(_spec(_url(http_server, "/p.bin"), tmp_path / "p.bin"), env=env)
    r2 = child(_spec(_url(https_server, "/s.bin"), tmp_path / "s.bin"), env=env)
    assert _success(r1) and _success(r2), (_events(r1), _events(r2))
    assert_file(tmp_path / "p.bin", plain.body)
    assert_file(tmp_path / "s.bin", tls.body)
    assert {r.kind for r in for_http.records()} == {"forward"}
    assert {(r.kind, r.port) for r in for_https.records()} == {("connect", https_server.port)}


@pytest.mark.parametrize(
    ("no_proxy", "host"),
    [
        ("localhost", "localhost"),
        ("*", "localhost"),
        ("example.org,localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.0/8", "127.0.0.1"),  # CIDR, as curl >= 7.86 reads it
    ],
)
@pytest.mark.parametrize("var", ["NO_PROXY", "no_proxy"])
def test_no_proxy_hosts_go_direct(
    child: Child,
    proxies: Any,
    http_server: LoopbackServer,
    tmp_path: Path,
    no_proxy: str,
    host: str,
    var: str,
) -> None:
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/direct.bin", size=MiB + 5)
    save = tmp_path / "direct.bin"
    report = child(
        _spec(_url(http_server, "/direct.bin", host=host), save),
        env={"HTTP_PROXY": proxy.url(), var: no_proxy},
    )
    assert _success(report), _events(report)
    assert_file(save, res.body)
    assert not proxy.records(), f"NO_PROXY={no_proxy!r} did not bypass the proxy"
    assert http_server.requests("/direct.bin")


@pytest.mark.parametrize("no_proxy", ["invalid", ".invalid", "origin.invalid"])
def test_no_proxy_domain_matches_the_name_and_its_subdomains(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path, no_proxy: str
) -> None:
    # origin.invalid resolves only through the proxy: going direct fails at the resolver,
    # and the proxy never hears of it.
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    http_server.add("/sub.bin", size=MiB)
    report = child(
        _spec(_url(http_server, "/sub.bin"), tmp_path / "sub.bin", retries=[0, 10, 10]),
        env={"HTTP_PROXY": proxy.url(), "NO_PROXY": no_proxy},
    )
    assert not _success(report)
    assert not proxy.records(), f"NO_PROXY={no_proxy!r} did not match {ORIGIN_HOST}"


def test_no_proxy_does_not_match_a_mere_suffix(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # curl matches whole labels: "gin.invalid" is not a domain of "origin.invalid"
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/suffix.bin", size=MiB)
    report = child(
        _spec(_url(http_server, "/suffix.bin"), tmp_path / "suffix.bin"),
        env={"HTTP_PROXY": proxy.url(), "NO_PROXY": "gin.invalid"},
    )
    assert _success(report), _events(report)
    assert_file(tmp_path / "suffix.bin", res.body)
    assert proxy.records()


def test_http_proxy_is_ignored_in_a_cgi_environment(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # "httpoxy": under CGI, HTTP_PROXY may come from a request's "Proxy:" header. curl
    # never reads upper-case HTTP_PROXY; the core reads it (issue 8 asks for it) except
    # when REQUEST_METHOD says it runs under CGI.
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/cgi.bin", size=MiB)
    report = child(
        _spec(_url(http_server, "/cgi.bin", host="127.0.0.1"), tmp_path / "cgi.bin"),
        env={"HTTP_PROXY": proxy.url(), "REQUEST_METHOD": "GET"},
    )
    assert _success(report), _events(report)
    assert_file(tmp_path / "cgi.bin", res.body)
    assert not proxy.records()


def test_set_proxy_overrides_the_environment(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    env_proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    own: LoopbackProxy = proxies("socks5", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/own.bin", size=MiB + 1)
    env = {"HTTP_PROXY": env_proxy.url(), "ALL_PROXY": env_proxy.url()}
    r1 = child(
        _spec(_url(http_server, "/own.bin"), tmp_path / "own.bin", proxy=own.url(scheme="socks5h")),
        env=env,
    )
    assert _success(r1), _events(r1)
    assert_file(tmp_path / "own.bin", res.body)
    assert own.records() and not env_proxy.records()
    # set_proxy(NULL): direct, whatever the environment says
    r2 = child(
        _spec(_url(http_server, "/own.bin", host="127.0.0.1"), tmp_path / "direct.bin", proxy=None),
        env=env,
    )
    assert _success(r2), _events(r2)
    assert_file(tmp_path / "direct.bin", res.body)
    assert not env_proxy.records()


def test_no_proxy_applies_to_a_set_proxy_proxy_too(
    child: Child, proxies: Any, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: a set_proxy proxy ignored NO_PROXY; curl applies it to -x proxies.
    proxy: LoopbackProxy = proxies("http", auth=AUTH, hosts=HOSTS)
    res = http_server.add("/np.bin", size=MiB)
    report = child(
        _spec(
            _url(http_server, "/np.bin", host="127.0.0.1"), tmp_path / "np.bin", proxy=proxy.url()
        ),
        env={"NO_PROXY": "127.0.0.1"},
    )
    assert _success(report), _events(report)
    assert_file(tmp_path / "np.bin", res.body)
    assert not proxy.records(), "NO_PROXY=127.0.0.1 did not keep 127.0.0.1 off the proxy"
