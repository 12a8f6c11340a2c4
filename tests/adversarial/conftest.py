"""Fixtures of the adversarial tests, and the scenario list printed after the run.

* ``lib``, ``lib_path``, ``tthsd``: the real core and a harness that stops its ids (from
  tests/abi); ``child``: one download in a fresh interpreter (:mod:`.child`) whose
  environment is the test's own (``SSL_CERT_FILE``), with a retry policy and timeouts.
* ``tmpfs``: ``tmpfs(size)`` mounts a small tmpfs under ``tmp_path`` (root only; the test
  skips, saying why, when mounting is not permitted) and unmounts it after the test.
* ``@pytest.mark.scenario("...")`` names the issue-7 scenario a test holds; after the
  run the terminal summary lists the scenarios with their outcomes (see :mod:`.report`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.abi.conftest import isolated, lib, lib_path, tthsd
from tests.abi.lib import REPO
from tests.remote.conftest import PROXY_VARS

from . import report

__all__ = ["isolated", "lib", "lib_path", "tthsd"]


def pytest_configure(config: pytest.Config) -> None:
    report.register(config)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``tmpfs("4m")`` mounts a tmpfs of that size under ``tmp_path`` and returns its
    folder (``tmpfs("1m", "ro")`` mounts it read-only); unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, mode: str = "rw") -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},{mode}", "tmpfs", str(where)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'}): "
                        "the full-disk and read-only cases need one")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            with contextlib.suppress(OSError):
                subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def child(lib_path: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``child(spec, env={...})``: one download in a new interpreter (tests/adversarial/
    child.py) without the parent's proxy and trust-store variables, plus ``env``."""

    def run(spec: dict[str, Any], env: dict[str, str] | None = None,
            timeout: float = 60.0) -> dict[str, Any]:
        base = {k: v for k, v in os.environ.items()
                if k not in PROXY_VARS and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        full = dict(base, TTHSD_LIBRARY=str(lib_path), PYTHONFAULTHANDLER="1", **(env or {}))
        spec_path = tmp_path / f"child-spec-{len(list(tmp_path.glob('child-spec-*')))}.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "tests.adversarial.child", str(spec_path)],
                              cwd=REPO, env=full, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f"child exited with {proc.returncode}\n{proc.stderr[-3000:]}",
                        pytrace=False)
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return report

    return run
