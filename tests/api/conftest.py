"""Fixtures of the Python API tests.

* ``fake_core``: tests/api/fakecore/fakecore.c compiled into a shared library, a stand-in
  core that emits scripted events without any network (for the dispatch, close and
  lifetime behaviour of the Python side alone); ``go_era_core``: the same with only the
  Go-era camel-case exports.
* ``core``: the real TTHighSpeedDownloader library, found as TTHSDownloader() would find it
  (``TTHSD_LIBRARY``, the current directory, the copy installed in the package).  Tests
  that need it fail, they do not skip, when it cannot be found.
* Every test logs to its own ``tmp_path/TTHSDPyInter.log``; ``read_log()`` returns it.
* Servers: ``http_server`` comes from tests/support (ranges, throttling, faults).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tthsd_interface
from tthsd_interface import _log

FAKECORE_SOURCE = Path(__file__).parent / "fakecore" / "fakecore.c"


def _compile_fake_core(out: Path, *defines: str) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in core")
    subprocess.run(
        [cc, "-Wall", "-shared", "-fPIC", "-pthread", *defines, "-o", str(out),
         str(FAKECORE_SOURCE)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def fake_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the compiled stand-in core."""
    return _compile_fake_core(tmp_path_factory.mktemp("fakecore") / "libfakecore.so")


@pytest.fixture(scope="session")
def go_era_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in core with only the Go-era camel-case exports."""
    out = tmp_path_factory.mktemp("gocore") / "libgocore.so"
    return _compile_fake_core(out, "-DGO_ERA")


@pytest.fixture(scope="session")
def core() -> Path:
    """Path of the real core library (fails the test when there is none)."""
    try:
        return tthsd_interface.find_library()
    except tthsd_interface.LibraryNotFoundError as exc:
        pytest.fail(f"the real core is needed: {exc}")


@pytest.fixture(autouse=True, scope="session")
def _quiet_console() -> Iterator[None]:
    """The log's console copy would be written after pytest stopped capturing a test's
    output (it is asynchronous); tests read the log file instead."""
    _log.set_console_logging(False)
    yield
    _log.set_console_logging(True)


@pytest.fixture(autouse=True)
def _log_to_tmp(tmp_path: Path) -> Iterator[None]:
    """Each test logs into its own folder (and no test writes the repository's root)."""
    _log.set_log_file(tmp_path / _log.LOG_FILE_NAME)
    yield
    _log.flush_log()


@pytest.fixture
def read_log(tmp_path: Path) -> Callable[[], str]:
    def read() -> str:
        _log.flush_log()
        path = _log.current_log_file()
        return path.read_text(encoding="utf-8") if path and path.exists() else ""

    return read


class Recorder:
    """A callback that records ``(event, msg)`` pairs, thread-safely, with their thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[dict[str, object], dict[str, object]]] = []
        self.threads: set[str] = set()
        self.ended = threading.Event()

    def __call__(self, event: dict[str, object], msg: dict[str, object]) -> None:
        with self.lock:
            self.calls.append((event, msg))
            self.threads.add(threading.current_thread().name)
        if event.get("Type") == "end":
            self.ended.set()

    def types(self) -> list[str]:
        with self.lock:
            return [str(e["Type"]) for e, _ in self.calls]

    def of_type(self, kind: str) -> list[tuple[dict[str, object], dict[str, object]]]:
        with self.lock:
            return [(e, m) for e, m in self.calls if e["Type"] == kind]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
