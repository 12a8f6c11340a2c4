"""Fixtures of the soak test: the library path (from tests/abi) and ``figures`` (a line of
the issue-7 figures printed after the run, tests/adversarial/report.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.abi.conftest import lib_path
from tests.adversarial import report

__all__ = ["lib_path"]


def pytest_configure(config: pytest.Config) -> None:
    report.register(config)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    plugin = report.register(request.config)
    return plugin.figures.append
