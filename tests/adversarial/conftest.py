"""Fixtures of the adversarial tests, and the scenario list printed after the run.

* ``lib``, ``lib_path``, ``tthsd``: the real core and a harness that stops its ids (from
  tests/abi); ``child``: one download in a fresh interpreter (:mod:`.child`) whose
  environment is the test's own (``SSL_CERT_FILE``), with a retry policy and timeouts.
* ``tmpfs``: ``tmpfs(size)`` mounts a small tmpfs under ``tmp_path`` (root only; the test
  skips, saying why, when mounting is not permitted) and unmounts it after the test.
* ``@pytest.mark.scenario("...")`` names the issue-7 scenario a test holds. After the run,
  the terminal summary lists every scenario with the outcome of its tests, including the
  scenarios held by tests outside this folder (:data:`ELSEWHERE`) when they ran too.
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

from tests.abi.lib import REPO
from tests.abi.conftest import isolated, lib, lib_path, tthsd
from tests.remote.conftest import PROXY_VARS

__all__ = ["isolated", "lib", "lib_path", "tthsd"]

#: Issue-7 scenarios already held by tests in other folders (node id suffixes).
ELSEWHERE: dict[str, list[str]] = {
    "reset on one of N connections mid-range": [
        "tests/abi/test_faults.py::test_reset_mid_range_is_retried",
        "tests/abi/test_faults.py::test_close_mid_range_is_retried",
    ],
    "stall before the status line": [
        "tests/abi/test_faults.py::test_stall_before_headers_is_cut_by_the_read_timeout",
    ],
    "stall mid-body, recovered by the read timeout": [
        "tests/abi/test_config.py::test_read_timeout_recovers_a_stalled_range",
    ],
    "503 with Retry-After in seconds": [
        "tests/abi/test_faults.py::test_retry_after_is_honoured",
    ],
    "premature EOF": [
        "tests/abi/test_faults.py::test_premature_eof_is_retried",
        "tests/resume/test_server_faults.py::test_whole_body_shorter_than_content_length_is_retried",
    ],
    "body longer than asked": [
        "tests/abi/test_faults.py::test_body_longer_than_asked_is_not_written",
        "tests/resume/test_server_faults.py::test_206_body_longer_than_its_content_range",
        "tests/resume/test_server_faults.py::test_whole_body_longer_than_content_length",
    ],
    "Content-Encoding gzip saved as served": [
        "tests/abi/test_faults.py::test_content_encoding_is_saved_as_served",
    ],
    "zero-length file": ["tests/abi/test_download.py::test_zero_byte_file"],
    "unknown length": [
        "tests/abi/test_download.py::test_no_content_length_close_delimited",
        "tests/abi/test_download.py::test_no_content_length_chunked",
    ],
    "redirect loop": ["tests/abi/test_faults.py::test_redirects_followed_up_to_the_limit"],
    "cross-origin redirect drops credentials": [
        "tests/abi/test_faults.py::test_credentials_do_not_cross_origins",
    ],
    "lying Content-Range": [
        "tests/abi/test_faults.py::test_wrong_content_range_is_never_written",
    ],
    "file changing between requests": [
        "tests/abi/test_faults.py::test_file_changing_mid_download_never_yields_a_mixed_file",
    ],
    "500 storm: bounded retries, then a clear err": ["tests/abi/test_config.py::test_retries_are_bounded"],
}


class ScenarioReport:
    """A global plugin (conftest hooks only see items under their folder): collects the
    ``scenario`` marks and every test's outcome, prints the list at the end."""

    def __init__(self) -> None:
        self.marks: dict[str, list[str]] = {}
        self.outcomes: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            for m in item.iter_markers("scenario"):
                for name in m.args:
                    self.marks.setdefault(name, []).append(item.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome in ("failed", "skipped"):
            if hasattr(report, "wasxfail"):
                outcome = "XFAIL" if report.skipped else "XPASS"
            else:
                outcome = report.outcome.upper()
            if report.when != "call" and report.outcome == "failed":
                outcome = "ERROR"
            self.outcomes.setdefault(report.nodeid, outcome)
            if outcome in ("FAILED", "ERROR"):
                self.outcomes[report.nodeid] = outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.marks:
            return
        rows: dict[str, list[tuple[str, str]]] = {}
        for name, ids in self.marks.items():
            rows.setdefault(name, []).extend((i, self.outcomes.get(i, "not run")) for i in ids)
        for name, suffixes in ELSEWHERE.items():
            for suffix in suffixes:
                hits = [(i, o) for i, o in self.outcomes.items() if i.endswith(suffix)]
                rows.setdefault(name, []).extend(hits or [(suffix, "not run")])
        tr = terminalreporter
        tr.section("issue 7 scenarios")
        for name in sorted(rows, key=str.lower):
            outs = [o for _, o in rows[name]]
            verdict = "PASSED" if all(o == "PASSED" for o in outs) else "/".join(
                sorted(set(outs)))
            tr.write_line(f"{verdict:>10}  {name}  ({len(outs)} test{'s' * (len(outs) > 1)})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(name): the issue-7 scenario a test holds")
    if not config.pluginmanager.has_plugin("tthsd-scenarios"):
        config.pluginmanager.register(ScenarioReport(), "tthsd-scenarios")


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
