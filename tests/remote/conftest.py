"""Fixtures of the remote-sink and proxy tests.

* ``lib`` / ``lib_path``: the real core, as the ABI tests load it (``TTHSD_LIBRARY``,
  else native/target/release).
* ``remote``: a :class:`~tests.remote.runs.RemoteHarness`; every id it made is stopped
  after the test, before the servers, listeners and proxies it uses go away.
* ``listeners``: ``listeners.tcp(**kw)`` / ``listeners.ws(**kw)`` start loopback event
  listeners, all closed after the test.
* ``proxies``: ``proxies(kind, **kw)`` starts a :class:`~tests.remote.proxy.LoopbackProxy`.
* ``ca``: a session-wide test CA (``trustme``), ``ca_file`` its PEM, ``https_server`` an
  HTTPS loopback origin whose certificate names ``origin.invalid``, ``localhost`` and
  ``127.0.0.1``.
* ``child``: runs :mod:`tests.remote.child` in a fresh interpreter with an environment
  of the test's choosing (proxy variables, ``SSL_CERT_FILE``) and returns its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.abi.conftest import lib, lib_path
from tests.abi.lib import REPO, Lib
from tests.support.server import LoopbackServer

from .listeners import TcpListener, WsListener
from .proxy import LoopbackProxy
from .runs import RemoteHarness

__all__ = ["lib", "lib_path"]

#: Names only our proxies resolve (RFC 6761 reserves .invalid): a download of such a URL
#: that succeeds went through the proxy.
ORIGIN_HOST = "origin.invalid"
#: Proxy variables a child must not inherit from the developer's shell.
PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUEST_METHOD",
)


class Listeners:
    def __init__(self) -> None:
        self.all: list[TcpListener | WsListener] = []

    def tcp(self, **kw: Any) -> TcpListener:
        lis = TcpListener(**kw)
        self.all.append(lis)
        return lis

    def ws(self, **kw: Any) -> WsListener:
        lis = WsListener(**kw)
        self.all.append(lis)
        return lis


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    box = Listeners()
    try:
        yield box
    finally:
        for lis in box.all:
            lis.close()


@pytest.fixture
def proxies() -> Iterator[Callable[..., LoopbackProxy]]:
    started: list[LoopbackProxy] = []

    def make(kind: str = "http", **kw: Any) -> LoopbackProxy:
        p = LoopbackProxy(kind, **kw).start()
        started.append(p)
        return p

    try:
        yield make
    finally:
        for p in started:
            p.stop()


@pytest.fixture
def remote(
    lib: Lib,
    http_server: LoopbackServer,
    http_server_factory: Any,
    listeners: Listeners,
    proxies: Any,
) -> Iterator[RemoteHarness]:
    """Downloaders for one test, stopped before its servers, listeners and proxies."""
    h = RemoteHarness(lib)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="session")
def ca() -> Any:
    import trustme  # a test dependency, like websockets: missing means failing

    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_cert(ca: Any) -> Any:
    return ca.issue_cert(ORIGIN_HOST, "localhost", "127.0.0.1")


def server_context(cert: Any) -> Any:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def https_server(server_cert: Any, http_server_factory: Any) -> LoopbackServer:
    srv: LoopbackServer = http_server_factory(ssl_context=server_context(server_cert))
    return srv


@pytest.fixture
def child(lib_path: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``child(spec, env={...})``: run one download in a new interpreter whose proxy
    variables are exactly ``env``'s (the parent's are removed), and return its report
    (see tests/remote/child.py)."""

    def run(
        spec: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in PROXY_VARS and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")
        }
        full = dict(base, TTHSD_LIBRARY=str(lib_path), PYTHONFAULTHANDLER="1", **(env or {}))
        spec_path = tmp_path / f"child-spec-{len(list(tmp_path.glob('child-spec-*')))}.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.remote.child", str(spec_path)],
            cwd=REPO,
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"child exited with {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}",
                pytrace=False,
            )
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return report

    return run
