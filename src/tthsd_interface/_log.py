"""``_TIlog``: the package's asynchronous, thread-safe logger.

Records go through a queue (``logging.handlers.QueueHandler``) to one background thread
(a ``QueueListener``), which writes them at level INFO to

* the console (standard error), and
* the file ``TTHSDPyInter.log``: next to ``sys.executable`` in a frozen program
  (PyInstaller and the like), otherwise in the current directory.

Nothing happens at import: the listener thread starts with the first record, and the file
is opened (created) when the first record is written to it.  Where it goes is decided at
that moment, in this order:

1. :func:`set_log_file` (``None`` disables the file),
2. the environment variable ``TTHSD_LOG_FILE``: a path, or the empty string to disable,
3. the default location above.

:func:`use_default_log_file` undoes :func:`set_log_file`, :func:`set_console_logging` turns
the console copy off and on, and :func:`flush_log` waits until everything logged so far is
written.  Both functions may be
called at any time from any thread; records already queued are written to the old
destination first.  The logger is ``logging.getLogger("tthsd_interface")``, so its level
can be changed the usual way.  It does not propagate to the root logger (it has its own
console handler, and would otherwise print twice).

The logger and its listener are shared by every ``TTHSDownloader``: logging is
thread-safe and the only mutable state here is behind one lock.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

__all__ = [
    "LOG_FILE_ENV",
    "LOG_FILE_NAME",
    "LOGGER_NAME",
    "_TIlog",
    "current_log_file",
    "flush_log",
    "set_console_logging",
    "set_log_file",
    "use_default_log_file",
]

LOGGER_NAME: Final = "tthsd_interface"
LOG_FILE_NAME: Final = "TTHSDPyInter.log"
LOG_FILE_ENV: Final = "TTHSD_LOG_FILE"
_FORMAT: Final = "%(asctime)s [%(levelname)s] %(threadName)s: %(message)s"


def _default_log_dir() -> str:
    """The folder of ``TTHSDPyInter.log`` when nothing overrides it."""
    if getattr(sys, "frozen", False):
        return os.path.dirname(os.path.realpath(sys.executable))
    return os.getcwd()


def _as_path(path: str | None) -> Path | None:
    return None if path is None else Path(path)


class _Unset:
    pass


_UNSET: Final = _Unset()


class LazyFileHandler(logging.FileHandler):
    """A file handler that creates its file (and folder) on the first record and, if the
    file cannot be opened, says so once on standard error and stops trying (instead of
    printing a traceback for every record)."""

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


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable at run time from Python 3.11 on
    _StreamHandler = logging.StreamHandler


class StderrHandler(_StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is written (a program, or a
    test runner, may replace it after the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class StartingQueueHandler(QueueHandler):
    """A ``QueueHandler`` that starts the listener with the first record, so that a
    program that never logs has no listener thread; after the interpreter began to exit
    (the listener is shut down) it writes records itself."""

    def __init__(self, state: _LogState) -> None:
        super().__init__(state.queue)
        self._state = state

    def emit(self, record: logging.LogRecord) -> None:
        if not self._state.ensure_started():
            self._state.handle_synchronously(record)
            return
        super().emit(record)


class _LogState:
    """Everything mutable about logging, behind ``self._lock``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener: QueueListener | None = None
        self._handlers: list[logging.Handler] = []
        self._file_choice: str | _Unset | None = _UNSET  # absolute paths
        self._file: str | None = None
        self._console = True
        self._shut_down = False

    # -- called from StartingQueueHandler.emit, on any thread
    def ensure_started(self) -> bool:
        """Start the listener if needed; False once shut down (then write synchronously)."""
        if self._listener is not None:
            return True
        with self._lock:
            if self._shut_down:
                return False
            if self._listener is None:
                try:
                    self._start_locked()
                except RuntimeError:
                    # Python 3.12+ starts no thread once the interpreter is exiting,
                    # which it is when an atexit handler run before ours logs: from
                    # here on, write synchronously as after our shutdown.
                    self._listener = None
                    self._shut_down = True
                    return False
            return True

    def handle_synchronously(self, record: logging.LogRecord) -> None:
        with self._lock:
            if not self._handlers:
                self._handlers = self._make_handlers()
            for handler in self._handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)

    def _resolve_file(self) -> str | None:
        if not isinstance(self._file_choice, _Unset):
            return self._file_choice
        env = os.environ.get(LOG_FILE_ENV)
        if env is not None:
            return os.path.abspath(env) if env else None
        return os.path.join(_default_log_dir(), LOG_FILE_NAME)

    def _make_handlers(self) -> list[logging.Handler]:
        formatter = logging.Formatter(_FORMAT)
        handlers: list[logging.Handler] = []
        if self._console:
            handlers.append(StderrHandler())
        self._file = self._resolve_file()
        if self._file is not None:
            handlers.append(LazyFileHandler(self._file))
        for handler in handlers:
            handler.setFormatter(formatter)
        return handlers

    def _start_locked(self) -> None:
        self._handlers = self._make_handlers()
        self._listener = QueueListener(self.queue, *self._handlers, respect_handler_level=True)
        self._listener.start()

    def _stop_locked(self) -> None:
        if self._listener is not None:
            self._listener.stop()  # writes what is queued, then joins the thread
            self._listener = None
        for handler in self._handlers:
            handler.close()
        self._handlers = []

    def reconfigure(
        self,
        *,
        file: str | _Unset | None = _UNSET,
        console: bool | None = None,
        reset_file: bool = False,
    ) -> None:
        with self._lock:
            running = self._listener is not None
            self._stop_locked()
            if reset_file:
                self._file_choice = _UNSET
            elif not isinstance(file, _Unset):
                self._file_choice = file
            if console is not None:
                self._console = console
            if running and not self._shut_down:
                self._start_locked()

    def flush(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._stop_locked()  # drains the queue into the handlers
                self._start_locked()

    def current_file(self) -> str | None:
        with self._lock:
            if self._listener is not None or self._handlers:
                return self._file
            return self._resolve_file()

    def shutdown(self) -> None:
        with self._lock:
            self._stop_locked()
            self._shut_down = True


_state = _LogState()


def _make_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if logger.level == logging.NOTSET:  # a program may have set it before importing us
        logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, StartingQueueHandler) for h in logger.handlers):
        logger.addHandler(StartingQueueHandler(_state))
    return logger


_TIlog: Final = _make_logger()
"""The package logger of the TTHSD documentation (``logging.getLogger("tthsd_interface")``)."""

# logging registered its atexit ``shutdown`` (which closes every handler) when it was
# imported, before this: ours runs first (atexit runs last-registered first) and writes
# what is still queued.  Records logged after it are written synchronously.
atexit.register(_state.shutdown)


def set_log_file(path: str | os.PathLike[str] | None) -> None:
    """Write the log to ``path`` from now on, or nowhere when ``path`` is ``None``.

    Overrides ``TTHSD_LOG_FILE``.  The file is created on the next record.
    """
    _state.reconfigure(file=None if path is None else os.path.abspath(path))


def set_console_logging(enabled: bool) -> None:
    """Turn the copy of the log on standard error on or off (on by default)."""
    _state.reconfigure(console=enabled)


def use_default_log_file() -> None:
    """Undo :func:`set_log_file`: back to ``TTHSD_LOG_FILE`` or the default location."""
    _state.reconfigure(reset_file=True)


def flush_log() -> None:
    """Block until every record logged so far has been written."""
    _state.flush()


def current_log_file() -> Path | None:
    """Where the log file is (or would be, if nothing has been logged yet); None if off."""
    return _as_path(_state.current_file())
