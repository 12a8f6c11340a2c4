"""The handlers of ``_TIlog`` (see ``_log``): subclasses of logging's, so this module is
imported with logging, on the first record, not with the package."""

from __future__ import annotations

import logging
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO  # noqa: F401 - used in a string, as a base class argument

    from ._log import _LogState

__all__ = ["LazyFileHandler", "StartingQueueHandler", "StderrHandler"]


class LazyFileHandler(logging.FileHandler):
    """A file handler that creates its file on the first record and, if the file cannot
    be opened, says so once on standard error and stops trying (instead of printing a
    traceback for every record)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)
        self._broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._broken:
            return
        if self.stream is None:
            try:
                os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
                self.stream = self._open()
            except OSError as exc:
                self._broken = True
                print(
                    f"tthsd_interface: cannot write log file {self.baseFilename}: {exc}",
                    file=sys.stderr,
                )
                return
        super().emit(record)


class StderrHandler(logging.StreamHandler["TextIO"]):  # a string: typing is not imported
    """Writes to whatever ``sys.stderr`` is when the record is written (a program, or a
    test runner, may replace it after the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class StartingQueueHandler(logging.Handler):
    """Starts the listener with the first record, and queues records for it."""

    def __init__(self, state: _LogState) -> None:
        super().__init__()
        self._state = state
        self.queue = state.queue

    def emit(self, record: logging.LogRecord) -> None:
        if not self._state.ensure_started():
            self._state.handle_synchronously(record)
            return
        try:
            self.queue.put(self._prepare(record))
        except Exception:  # noqa: BLE001 - a handler reports through handleError, never raises
            self.handleError(record)

    def _prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy with the message merged now, as ``QueueHandler.prepare`` makes it: the
        arguments may change (or die) before the listener writes the record, and the
        traceback text is formatted on the thread that has the exception."""
        text = self.format(record)
        prepared = logging.makeLogRecord(record.__dict__)
        prepared.message = prepared.msg = text
        prepared.args = None
        prepared.exc_info = None
        prepared.exc_text = None
        prepared.stack_info = None
        return prepared
