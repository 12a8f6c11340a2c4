"""pytest fixtures over :mod:`tests.support.server` (re-exported by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .server import LoopbackServer


def _stop_and_check(servers: list[LoopbackServer]) -> None:
    errors: list[BaseException] = []
    for srv in servers:
        srv.stop()
        errors.extend(srv.errors)
    if errors:
        raise AssertionError(f"a server hook raised: {errors!r}") from errors[0]


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A started loopback HTTP server for this test."""
    srv = LoopbackServer().start()
    try:
        yield srv
    finally:
        _stop_and_check([srv])


@pytest.fixture
def http_server_factory() -> Iterator[Callable[..., LoopbackServer]]:
    """Start more servers: ``http_server_factory(**LoopbackServer kwargs)``."""
    servers: list[LoopbackServer] = []

    def make(**kwargs: Any) -> LoopbackServer:
        srv = LoopbackServer(**kwargs).start()
        servers.append(srv)
        return srv

    try:
        yield make
    finally:
        _stop_and_check(servers)
