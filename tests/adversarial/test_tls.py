"""TLS verification is on: a certificate nobody vouches for is refused with the ``Code``
``tls`` and nothing is written; the same certificate is accepted once trusted through
``SSL_CERT_FILE``; a trusted certificate for another name, or an expired one, is still
refused. Each download runs in a fresh interpreter (``child``) so the trust store it reads
is exactly the one the test gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import MiB, assert_file, task
from tests.support.server import LoopbackServer

from .knobs import SelfSignedCert

Child = Callable[..., dict[str, Any]]

def _outcome(report: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    evs = [(json.loads(e), json.loads(m)) for e, m in report["events"]]
    ends = [m for e, m in evs if e["Type"] == "endOne"]
    assert report["ended"] and len(ends) == 1, evs
    return bool(ends[0]["Success"]), [m for e, m in evs if e["Type"] == "err"]


def _https(factory: Any, cert: SelfSignedCert, folder: Path) -> LoopbackServer:
    srv: LoopbackServer = factory(ssl_context=cert.server_context(folder))
    return srv


def _spec(url: str, save: Path, retry: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"tasks": [task(url, save, id="t")], "threads": 4}
    if retry:  # fast retries: a refusal must not cost the suite the default backoff
        spec["retry"] = [2, 20, 40]
    return spec


@pytest.fixture(scope="module")
def self_signed() -> SelfSignedCert:
    return SelfSignedCert("127.0.0.1", "localhost")


def _refused(report: dict[str, Any], save: Path) -> list[dict[str, Any]]:
    ok, errs = _outcome(report)
    assert not ok, "a certificate nobody vouches for was accepted"
    assert len(errs) == 1 and errs[0]["Error"], errs
    assert not save.exists() and not list(save.parent.glob(save.name + ".tthsd*"))
    return errs


@pytest.mark.scenario("bad TLS certificate refused by default")
def test_a_self_signed_certificate_is_refused_and_nothing_is_written(
        child: Child, http_server_factory: Any, self_signed: SelfSignedCert,
        tmp_path: Path) -> None:
    srv = _https(http_server_factory, self_signed, tmp_path / "cert")
    srv.add("/s.bin", size=MiB)
    save = tmp_path / "out" / "s.bin"
    errs = _refused(child(_spec(srv.url("/s.bin"), save)), save)
    assert "certificate" in errs[0]["Error"].lower(), errs
    assert len(srv.requests()) == 0, "a request went over an unverified connection"


@pytest.mark.scenario("bad TLS certificate refused by default")
def test_a_self_signed_certificate_is_refused_with_code_tls(
        child: Child, http_server_factory: Any, self_signed: SelfSignedCert,
        tmp_path: Path) -> None:
    # Regression: rustls' error came inside an io::Error inside an io::Error, which the
    # classifier did not open, so a bad certificate was `network` (and retried).
    srv = _https(http_server_factory, self_signed, tmp_path / "cert")
    srv.add("/s.bin", size=MiB)
    save = tmp_path / "s.bin"
    errs = _refused(child(_spec(srv.url("/s.bin"), save)), save)
    assert errs[0]["Code"] == "tls", errs


@pytest.mark.scenario("bad TLS certificate accepted when trusted via SSL_CERT_FILE")
def test_the_same_certificate_trusted_through_ssl_cert_file_is_accepted(
        child: Child, http_server_factory: Any, self_signed: SelfSignedCert,
        tmp_path: Path) -> None:
    srv = _https(http_server_factory, self_signed, tmp_path / "cert")
    res = srv.add("/s.bin", size=3 * MiB + 5)
    save = tmp_path / "s.bin"
    cert, _ = self_signed.write(tmp_path / "trust")
    report = child(_spec(srv.url("/s.bin"), save), env={"SSL_CERT_FILE": str(cert)})
    ok, errs = _outcome(report)
    assert ok, errs
    assert_file(save, res.body)
    assert len(srv.requests("/s.bin")) >= 2, "expected several ranges over TLS"


@pytest.mark.scenario("bad TLS certificate refused by default")
def test_a_trusted_certificate_for_another_name_is_refused(
        child: Child, http_server_factory: Any, tmp_path: Path) -> None:
    wrong = SelfSignedCert("other.invalid")
    srv = _https(http_server_factory, wrong, tmp_path / "cert")
    srv.add("/n.bin", size=MiB)
    cert, _ = wrong.write(tmp_path / "trust")
    save = tmp_path / "n.bin"
    report = child(_spec(srv.url("/n.bin"), save), env={"SSL_CERT_FILE": str(cert)})
    assert _refused(report, save)[0]["Code"] == "tls"


@pytest.mark.scenario("bad TLS certificate refused by default")
def test_a_trusted_but_expired_certificate_is_refused(
        child: Child, http_server_factory: Any, tmp_path: Path) -> None:
    old = SelfSignedCert("127.0.0.1", expired=True)
    srv = _https(http_server_factory, old, tmp_path / "cert")
    srv.add("/e.bin", size=MiB)
    cert, _ = old.write(tmp_path / "trust")
    save = tmp_path / "e.bin"
    report = child(_spec(srv.url("/e.bin"), save), env={"SSL_CERT_FILE": str(cert)})
    assert _refused(report, save)[0]["Code"] == "tls"


def test_plain_http_on_an_https_url_is_a_clear_err(child: Child, http_server: LoopbackServer,
                                                    tmp_path: Path) -> None:
    http_server.add("/p.bin", size=MiB)
    save = tmp_path / "p.bin"
    report = child(_spec(f"https://127.0.0.1:{http_server.port}/p.bin", save))
    assert _refused(report, save)[0]["Code"] in ("tls", "network")


@pytest.mark.scenario("bad TLS certificate refused by default")
def test_a_refused_certificate_is_not_retried(child: Child, http_server_factory: Any,
                                              self_signed: SelfSignedCert,
                                              tmp_path: Path) -> None:
    srv = _https(http_server_factory, self_signed, tmp_path / "cert")
    srv.add("/s.bin", size=MiB)
    save = tmp_path / "s.bin"
    spec = _spec(srv.url("/s.bin"), save, retry=False)
    spec["retry"] = [3, 400, 400]  # a retried failure would wait at least 3 x 200 ms
    report = child(spec)
    _refused(report, save)
    assert report["seconds"] < 0.5, f"refused only after {report['seconds']:.1f}s of retries"


@pytest.mark.scenario("cross-origin redirect drops credentials")
@pytest.mark.parametrize("same_port", [True, False])
def test_an_https_to_http_downgrade_never_carries_credentials_in_clear(
        child: Child, http_server: LoopbackServer, self_signed: SelfSignedCert,
        tmp_path: Path, same_port: bool) -> None:
    from .knobs import DualPort

    http_server.add("/plain.bin", body=b"plain")

    def location(port: int) -> str:
        return (f"http://127.0.0.1:{port}/plain.bin" if same_port
                else http_server.url("/plain.bin"))
    cert, _ = self_signed.write(tmp_path / "trust")
    with DualPort(self_signed.server_context(tmp_path / "cert"), location) as dual:
        t = task(f"https://127.0.0.1:{dual.port}/secure.bin", tmp_path / "d.bin", id="t",
                 headers={"Authorization": "Bearer d0wngrade-5ecret", "Cookie": "c=d0wn"})
        report = child({"tasks": [t], "threads": 2, "retry": [1, 20, 40]},
                       env={"SSL_CERT_FILE": str(cert)})
        heads = dual.plain + [
            "\n".join(f"{k}: {v}" for k, v in r.headers.items()) for r in http_server.requests()]
        assert dual.tls and "d0wngrade-5ecret" in dual.tls[0], "the https origin gets them"
    assert report["ended"], report
    assert heads, "the redirect was not followed"
    for head in heads:
        assert "d0wngrade-5ecret" not in head and "c=d0wn" not in head, head
