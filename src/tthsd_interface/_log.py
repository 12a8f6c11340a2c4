"""``_TIlog``: the package's asynchronous, thread-safe logger.

Records go through a queue to one background thread (a small listener of our own, see
``_Listener``), which writes them at level INFO to

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

``logging`` itself is imported with the first record (or the first use of ``_TIlog``), not
with the package: with what it pulls in (``traceback``, ``re``, ``enum``...) it is ~8 ms
of start-up, and the package's first record comes once a download is running, so the
import overlaps the transfer.  The handler classes, which subclass logging's, live in
``_loghandlers`` for that reason.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading

# Not ``typing.TYPE_CHECKING``: importing typing (and pathlib) costs every program ~15 ms
# of start-up; type checkers treat any constant of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from pathlib import Path
    from typing import Final

    _TIlog: logging.Logger  # made on first use, by __getattr__ below

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
    """What the public functions return; pathlib is imported only when one is called."""
    if path is None:
        return None
    from pathlib import Path

    return Path(path)


class _Unset:
    pass


_UNSET: Final = _Unset()


class _Listener:
    """The thread that writes queued records to the handlers.

    What :class:`logging.handlers.QueueListener` does (with ``respect_handler_level``), in
    a few lines: importing ``logging.handlers`` pulls in socket, pickle and more, ~7 ms
    that every program paid with its first record.
    """

    _STOP: Final = None

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | None], handlers: list[logging.Handler]
    ) -> None:
        self._records = records
        self._handlers = handlers
        self._thread = threading.Thread(target=self._run, name="tthsd-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (record := self._records.get()) is not self._STOP:
            for handler in self._handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._records.put(self._STOP)
        self._thread.join()


class _LogState:
    """Everything mutable about logging, behind ``self._lock``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._listener: _Listener | None = None
        self._handlers: list[logging.Handler] = []
        self._file_choice: str | _Unset | None = _UNSET  # absolute paths
        self._file: str | None = None
        self._console = True
        self._shut_down = False

    # -- called from _StartingQueueHandler.emit, on any thread
    def ensure_started(self) -> bool:
        """Start the listener if needed; False once shut down (then write synchronously)."""
        if self._listener is not None:
            return True
        with self._lock:
            if self._shut_down:
                return False
            if self._listener is None:
                self._start_locked()
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
        import logging

        from ._loghandlers import LazyFileHandler, StderrHandler

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
        self._listener = _Listener(self.queue, self._handlers)

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


_logger: logging.Logger | None = None
_logger_lock = threading.Lock()


def tilog() -> logging.Logger:
    """``_TIlog``, the package logger; the first call imports logging and sets it up."""
    return _logger if _logger is not None else _make_logger()


def _make_logger() -> logging.Logger:
    global _logger
    with _logger_lock:
        if _logger is None:
            import logging

            from ._loghandlers import StartingQueueHandler

            logger = logging.getLogger(LOGGER_NAME)
            if logger.level == logging.NOTSET:  # a program may have set it before
                logger.setLevel(logging.INFO)
            logger.propagate = False
            if not any(isinstance(h, StartingQueueHandler) for h in logger.handlers):
                logger.addHandler(StartingQueueHandler(_state))
            # Importing logging registered its atexit ``shutdown``, which closes every
            # handler; ours should run before it (atexit runs last-registered first) to
            # write what is still queued.  Registered again, not moved: a registration
            # made while the interpreter exits never runs, and the first one must stay.
            atexit.register(_state.shutdown)
            _logger = logger
        return _logger


def __getattr__(name: str) -> object:
    if name == "_TIlog":
        return tilog()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Flush what is queued at interpreter exit; records logged after this are written
# synchronously.
atexit.register(_state.shutdown)

# A program that imported logging before us pays nothing for the setup: do it now, as
# before logging was deferred, so that whatever the program then does to the logger
# (handlers, propagation) is not undone by our first record.
if "logging" in sys.modules:
    _make_logger()


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
