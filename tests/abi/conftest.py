"""Fixtures of the ABI tests: the loaded library, a harness that cleans up its ids, and a
way to run hostile calls in a child process (a crash there fails one test, not the run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lib import ALLOW_MISSING_ENV, REPO, Harness, Lib, LibraryMissing, library_path


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
    after the test, before its servers (hence the server fixtures requested here)."""
    h = Harness(lib)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def isolated(lib_path: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``isolated(group)`` runs ``tests.abi.hostile.<group>`` in a child interpreter with
    the same library and returns its results; a crash fails the test naming the case."""

    def run(group: str, timeout: float = 60.0) -> dict[str, Any]:
        env = dict(os.environ, TTHSD_LIBRARY=str(lib_path), PYTHONFAULTHANDLER="1")
        proc = subprocess.run(
            [sys.executable, "-m", "tests.abi.hostile", group, str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            cases = [ln[4:] for ln in proc.stderr.splitlines() if ln.startswith(">>> ")]
            how = (f"signal {signal.Signals(-proc.returncode).name}"
                   if proc.returncode < 0 else f"exit status {proc.returncode}")
            pytest.fail(
                f"child process died ({how}) during case {cases[-1] if cases else '?'!r}\n"
                f"stderr tail:\n{proc.stderr[-3000:]}",
                pytrace=False,
            )
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
