"""The issue-7 report printed after a test run: every scenario with the outcome of the
tests that hold it, and the figures the fuzzing and soak tests measured.

* ``@pytest.mark.scenario("name", ...)`` on a test names the scenarios it holds;
  :data:`ELSEWHERE` adds those held by tests outside our folders (tests/abi,
  tests/resume), shown when they ran in the same session.
* ``figures(line)`` (a fixture of tests/fuzz and tests/soak) adds a line of figures.

:func:`register` installs one global plugin (conftest hooks only see the items under
their own folder, and the scenarios of tests/abi must be seen too).
"""

from __future__ import annotations

from typing import Any

import pytest

PLUGIN = "tthsd-issue7-report"

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
    "500 storm: bounded retries, then a clear err": [
        "tests/abi/test_config.py::test_retries_are_bounded",
    ],
}


class ScenarioReport:
    """A global plugin (conftest hooks only see items under their folder): collects the
    ``scenario`` marks and every test's outcome, prints the list at the end."""

    def __init__(self) -> None:
        self.marks: dict[str, list[str]] = {}
        self.outcomes: dict[str, str] = {}
        self.figures: list[str] = []

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
        if self.figures:
            terminalreporter.section("issue 7 figures")
            for line in self.figures:
                terminalreporter.write_line(line)
        if not self.marks:
            return
        rows: dict[str, list[tuple[str, str]]] = {}
        for name, ids in self.marks.items():
            rows.setdefault(name, []).extend((i, self.outcomes.get(i, "not run")) for i in ids)
        for name, suffixes in ELSEWHERE.items():
            for suffix in suffixes:
                hits = [(i, o) for i, o in self.outcomes.items() if i.endswith(suffix)]
                if hits:  # shown only when they ran in this session
                    rows.setdefault(name, []).extend(hits)
        tr = terminalreporter
        tr.section("issue 7 scenarios")
        for name in sorted(rows, key=str.lower):
            outs = [o for _, o in rows[name]]
            verdict = "PASSED" if all(o == "PASSED" for o in outs) else "/".join(
                sorted(set(outs)))
            tr.write_line(f"{verdict:>10}  {name}  ({len(outs)} test{'s' * (len(outs) > 1)})")




def register(config: pytest.Config) -> ScenarioReport:
    """Install the report plugin once per session (and the ``scenario`` marker)."""
    config.addinivalue_line("markers", "scenario(name): the issue-7 scenario a test holds")
    plugin = config.pluginmanager.get_plugin(PLUGIN)
    if plugin is None:
        plugin = ScenarioReport()
        config.pluginmanager.register(plugin, PLUGIN)
    return plugin  # type: ignore[no-any-return]
