"""Fixtures of the resume tests: the library, a harness that stops its downloaders
before the test's servers go, and a place to report the kill-test distribution."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import ALLOW_MISSING_ENV, Harness, Lib, LibraryMissing, library_path

_REPORTS: list[str] = []


@pytest.fixture(scope="session")
def lib_path() -> Path:
    try:
        return library_path()
    except LibraryMissing as exc:
        if os.environ.get(ALLOW_MISSING_ENV) == "1":
            pytest.skip(str(exc))
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def lib(lib_path: Path) -> Lib:
    return Lib(lib_path)


@pytest.fixture
def tthsd(lib: Lib, http_server: Any, http_server_factory: Any) -> Iterator[Harness]:
    """Make downloaders (``tthsd.start(...)``, ``tthsd.create(...)``); all are stopped
    after the test, before its servers."""
    h = Harness(lib)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def report_lines() -> list[str]:
    """Lines a test wants shown in the terminal summary (the kill-test distribution)."""
    return _REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORTS:
        terminalreporter.section("resume: SIGKILL rounds")
        for line in _REPORTS:
            terminalreporter.write_line(line)
