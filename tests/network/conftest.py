"""Fixtures of the HTTP/2 tests.

* ``trust``: a throwaway CA (trustme) and a certificate for 127.0.0.1 it signed; the CA's
  PEM goes to the child's ``SSL_CERT_FILE``, so the core verifies the server as it would a
  real one (no verification switched off).
* ``h2_server``: a started :class:`~tests.support.h2server.H2Server` (hypercorn: ALPN
  ``h2`` and ``http/1.1``) for one test; the test fails at teardown if a hook or the app
  raised. ``h2_server_factory(**kwargs)`` starts more (an HTTP/1.1-only one...).
* ``download``: ``download(tasks, threads=..., ...)`` runs one downloader in a fresh
  interpreter (:mod:`.child`) against the library under test and returns its
  :class:`~.runs.Report`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.abi.conftest import lib_path
from tests.abi.lib import REPO
from tests.remote.conftest import PROXY_VARS
from tests.support.h2server import H2Server

from .runs import Report

__all__ = ["lib_path"]


@dataclass(frozen=True)
class Trust:
    ca_pem: Path  #: the CA certificate: SSL_CERT_FILE of the child
    server_pem: Path  #: the server's key and certificate chain


@pytest.fixture(scope="session")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    import trustme  # the test extra: a missing one fails these tests, never skips them

    folder = tmp_path_factory.mktemp("h2-trust")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = Trust(folder / "ca.pem", folder / "server.pem")
    ca.cert_pem.write_to_path(str(out.ca_pem))
    cert.private_key_and_cert_chain_pem.write_to_path(str(out.server_pem))
    return out


def _stop_all(servers: list[H2Server]) -> None:
    errors: list[BaseException] = []
    for srv in servers:
        srv.stop()
        errors.extend(srv.errors)
    if errors:
        raise AssertionError(f"the HTTP/2 server failed: {errors!r}") from errors[0]


@pytest.fixture
def h2_server_factory(trust: Trust) -> Iterator[Callable[..., H2Server]]:
    servers: list[H2Server] = []

    def make(**kwargs: Any) -> H2Server:
        srv = H2Server(trust.server_pem, **kwargs).start()
        servers.append(srv)
        return srv

    try:
        yield make
    finally:
        _stop_all(servers)


@pytest.fixture
def h2_server(h2_server_factory: Callable[..., H2Server]) -> H2Server:
    return h2_server_factory()


Download = Callable[..., Report]


@pytest.fixture
def download(lib_path: Path, tmp_path: Path, trust: Trust) -> Download:
    """``download(tasks, threads=8, chunk_mb=1, multiple=False, retry=(3, 20, 100),
    timeouts=(2000, 3000), durable=None, timeout=60)``: one run in a child interpreter
    trusting only the test CA, without the parent's proxy variables."""
    runs = 0

    def run(
        tasks: list[dict[str, Any]],
        *,
        threads: int = 8,
        chunk_mb: int = 1,
        multiple: bool = False,
        retry: tuple[int, int, int] | None = (3, 20, 100),
        timeouts: tuple[int, int] | None = (2000, 3000),
        durable: bool | None = None,
        timeout: float = 60.0,
    ) -> Report:
        nonlocal runs
        spec: dict[str, Any] = {
            "tasks": tasks,
            "threads": threads,
            "chunk_mb": chunk_mb,
            "multiple": multiple,
            "timeout": timeout,
        }
        if retry is not None:
            spec["retry"] = list(retry)
        if timeouts is not None:
            spec["timeouts"] = list(timeouts)
        if durable is not None:
            spec["durable"] = durable
        runs += 1
        spec_path = tmp_path / f"child-spec-{runs}.json"
        spec_path.write_text(json.dumps(spec))
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in PROXY_VARS and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")
        }
        env = dict(
            base,
            TTHSD_LIBRARY=str(lib_path),
            PYTHONFAULTHANDLER="1",
            SSL_CERT_FILE=str(trust.ca_pem),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "tests.network.child", str(spec_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"child exited with {proc.returncode}\n{proc.stderr[-3000:]}", pytrace=False
            )
        return Report(json.loads(proc.stdout.strip().splitlines()[-1]))

    return run
