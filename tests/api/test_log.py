"""_TIlog: asynchronous, INFO, console plus TTHSDPyInter.log where the documentation says
(the current directory, or next to the executable of a frozen program), created on first
use, movable and disableable."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import tthsd_interface
from tthsd_interface import TTHSDownloader, _log
from tthsd_interface._log import _TIlog


@pytest.fixture
def default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing overrides the log location; the current directory is a fresh folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TTHSD_LOG_FILE", raising=False)
    _log.use_default_log_file()
    return cwd


def test_the_logger_is_info_and_asynchronous() -> None:
    assert _TIlog.name == "tthsd_interface"
    assert _TIlog.getEffectiveLevel() == logging.INFO
    # One handler, which only queues records (their message merged, as
    # logging.handlers.QueueHandler would) for the listener thread.
    (handler,) = [h for h in _TIlog.handlers if isinstance(h, _log.StartingQueueHandler)]
    assert handler.queue is _log._state.queue
    assert _TIlog.propagate is False


def test_file_appears_in_the_current_directory_on_first_use(default_location: Path) -> None:
    log_file = default_location / "TTHSDPyInter.log"
    assert tthsd_interface.current_log_file() == log_file
    assert not log_file.exists()  # created lazily, not at import or configuration
    _TIlog.info("first record")
    _log.flush_log()
    assert "first record" in log_file.read_text(encoding="utf-8")


def test_a_failed_download_is_logged_in_the_current_directory(
    default_location: Path, fake_core: Path
) -> None:
    with TTHSDownloader(fake_core) as dl:
        assert dl.start_download([], []) == -1  # the stand-in core refuses an empty list
    _log.flush_log()
    text = (default_location / "TTHSDPyInter.log").read_text(encoding="utf-8")
    assert "start_download failed: invalid tasks" in text


def test_frozen_program_logs_next_to_the_executable(
    default_location: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app / "program.exe"))
    _log.use_default_log_file()
    assert tthsd_interface.current_log_file() == app / "TTHSDPyInter.log"
    _TIlog.info("frozen record")
    _log.flush_log()
    assert "frozen record" in (app / "TTHSDPyInter.log").read_text(encoding="utf-8")
    assert not (default_location / "TTHSDPyInter.log").exists()


def test_environment_variable_moves_the_file(
    default_location: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "logs" / "tthsd.log"
    monkeypatch.setenv("TTHSD_LOG_FILE", str(target))
    _log.use_default_log_file()
    _TIlog.info("moved record")
    _log.flush_log()
    assert "moved record" in target.read_text(encoding="utf-8")


def test_empty_environment_variable_disables_the_file(
    default_location: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTHSD_LOG_FILE", "")
    _log.use_default_log_file()
    assert tthsd_interface.current_log_file() is None
    _TIlog.info("nowhere")
    _log.flush_log()
    assert list(default_location.iterdir()) == []


def test_set_log_file_moves_and_disables(default_location: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.log"
    tthsd_interface.set_log_file(target)
    _TIlog.info("to elsewhere")
    tthsd_interface.set_log_file(None)
    _TIlog.info("to nowhere")
    _log.flush_log()
    text = target.read_text(encoding="utf-8")
    assert "to elsewhere" in text
    assert "to nowhere" not in text
    assert not (default_location / "TTHSDPyInter.log").exists()


def test_console_copy_can_be_turned_off(
    default_location: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tthsd_interface.set_console_logging(True)
    try:
        _TIlog.info("on the console")
        _log.flush_log()
        tthsd_interface.set_console_logging(False)
        _TIlog.info("not on the console")
        _log.flush_log()
    finally:
        tthsd_interface.set_console_logging(False)  # as the session fixture left it
    err = capfd.readouterr().err
    assert "on the console" in err
    assert "not on the console" not in err


def test_many_threads_log_without_losing_records(
    read_log: Callable[[], str], tmp_path: Path
) -> None:
    def work(n: int) -> None:
        for i in range(200):
            _TIlog.info("thread %d record %d", n, i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = read_log()
    assert sum(1 for line in text.splitlines() if " record " in line) == 8 * 200


def test_unwritable_location_warns_once_and_goes_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    tthsd_interface.set_log_file(blocker / "sub" / "x.log")  # parent is a file
    tthsd_interface.set_console_logging(True)
    try:
        _TIlog.info("one")
        _TIlog.info("two")
        _log.flush_log()
    finally:
        tthsd_interface.set_console_logging(False)
    err = capfd.readouterr().err
    assert err.count("cannot write log file") == 1
    assert "two" in err
