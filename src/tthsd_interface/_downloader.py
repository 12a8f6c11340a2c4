"""``TTHSDownloader``: the Python API of the TTHSD documentation, over the C ABI.

Names, parameters, defaults and return conventions are those of the TTHSD Python
interface (``TTHSD_interface.py``): ``start_download``/``get_downloader`` return the
downloader id or ``-1``; the control methods return ``True`` when the core returned 0 and
``False`` otherwise, never raising for an unknown id.  Added here: keyword-only task
options, ``wait``, ``close``, a context manager that waits for its downloads, speed,
proxy, retry and timeout settings.

Ownership: every downloader id created through an instance belongs to it.  ``close()``
(also run when the instance is garbage-collected or the interpreter exits) calls
``stop_download`` for each of them, and returns only when no user callback of the
instance is running or will run.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from . import _ffi
from ._dispatch import Dispatcher, Run
from ._errors import DownloaderClosedError
from ._log import _TIlog
from ._tasks import build_tasks
from ._types import Callback

__all__ = ["TTHSDownloader"]

_C_INT_MIN: Final = -(2**31)
_C_INT_MAX: Final = 2**31 - 1


def _int_arg(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not _C_INT_MIN <= value <= _C_INT_MAX:
        raise ValueError(f"{name} out of range: {value}")
    return value


def _headers_json(headers: Mapping[str, str] | None) -> str | None:
    if headers is None:
        return None
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("headers must map str to str")
    return json.dumps(dict(headers), ensure_ascii=False)


class _Session:
    """Everything a TTHSDownloader owns, kept apart from it so that the finalizer (which
    must not reference the TTHSDownloader) can close it."""

    def __init__(self, lib: _ffi.NativeLibrary) -> None:
        self.lib = lib
        self.dispatcher = Dispatcher(lib.new_event_queue)
        self.lock = threading.RLock()
        self.runs: dict[int, Run] = {}
        self.closed = False
        # Runs started inside each open ``with`` block of the instance.
        self.with_frames: list[list[Run]] = []

    def record_start(self, run: Run) -> None:
        with self.lock:
            for frame in self.with_frames:
                frame.append(run)

    def stop(self, downloader_id: int, *, quiet: bool = False) -> bool:
        rc = self.lib.stop_download(downloader_id)
        if rc != 0:
            _TIlog.warning(
                "stop_download(%d) failed: %s", downloader_id, self.lib.last_error() or "-1"
            )
            return False
        with self.lock:
            run = self.runs.get(downloader_id)
        if run is not None:
            self.dispatcher.stopped(run)
        if quiet:
            _TIlog.debug("downloader %d released", downloader_id)
        else:
            _TIlog.info("downloader %d stopped", downloader_id)
        return True

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            live = [r for r in self.runs.values() if not r.stopped]
        self.dispatcher.begin_close()
        for run in live:
            idle = self.dispatcher.mute_if_idle(run)
            self.stop(run.downloader_id, quiet=idle)
        self.dispatcher.shutdown()


class TTHSDownloader:
    """A set of downloads on the native TTHSD core.

    ``dll_path``: the library file.  When ``None``: ``$TTHSD_LIBRARY``, then the copy
    bundled in this package, then (only without one) ``TTHighSpeedDownloader.<dll|dylib|so>``
    in the current directory.  Raises :class:`LibraryNotFoundError` naming every path
    tried, :class:`LibraryLoadError` for a core of an ABI version this package does not know.

    Callbacks run on this instance's own dispatcher thread, in the order the core sent
    the events; see ``docs/callbacks.md``.
    """

    def __init__(self, dll_path: str | os.PathLike[str] | None = None) -> None:
        self._lib = _ffi.load_library(dll_path)
        self._session = _Session(self._lib)
        self._finalizer = weakref.finalize(self, self._session.close)

    # -- information ----------------------------------------------------------------------
    @property
    def library_path(self) -> Path:
        """The library file in use."""
        return Path(self._lib.path)

    @property
    def core_version(self) -> str | None:
        """The core's ``tthsd_version()`` (None for a core without it)."""
        return self._lib.version

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._session.closed

    # -- creating downloaders -------------------------------------------------------------
    def start_download(
        self,
        urls: Sequence[str],
        save_paths: Sequence[str | os.PathLike[str]],
        thread_count: int = 64,
        chunk_size_mb: int = 10,
        callback: Callback | None = None,
        use_callback_url: bool = False,
        user_agent: str | None = None,
        remote_callback_url: str | None = None,
        use_socket: bool | None = None,
        is_multiple: bool | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        show_names: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        checksums: Sequence[str | None] | None = None,
        name_from_server: bool = False,
        overwrite: bool = False,
        max_connections_per_host: int | None = None,
        mirrors: Sequence[Sequence[str] | None] | None = None,
    ) -> int:
        """Create a downloader for ``urls`` → ``save_paths`` and start it at once.

        ``is_multiple`` true runs the tasks at the same time, otherwise one after another.
        Keyword-only: ``headers`` sent on every request, per-task ``show_names``, ``ids``
        and ``checksums`` (``"sha256:<hex>"`` or ``"md5:<hex>"``); ``name_from_server``
        names each file from the server's ``Content-Disposition`` (a safe base name in
        its ``save_path``'s folder, never replacing an existing file unless
        ``overwrite``); ``max_connections_per_host``: at most that many requests to one
        host at once (default ``thread_count``; the core goes lower while a host pushes
        back); ``mirrors``: per URL, a list of other URLs of the same file (or None):
        ranges are spread over them by speed, and one that serves another file is
        dropped (see docs/python-api.md).

        Returns the downloader id (> 0), or -1 when the core refused (the reason is
        logged).  Raises ``ValueError`` when the lists differ in length.
        """
        return self._create(
            urls, save_paths, thread_count, chunk_size_mb, callback, use_callback_url,
            user_agent, remote_callback_url, use_socket, is_multiple, headers, show_names,
            ids, checksums, max_connections_per_host, start=True,
            naming=(name_from_server, overwrite), mirrors=mirrors,
        )  # fmt: skip

    def get_downloader(
        self,
        urls: Sequence[str],
        save_paths: Sequence[str | os.PathLike[str]],
        thread_count: int = 64,
        chunk_size_mb: int = 10,
        callback: Callback | None = None,
        use_callback_url: bool = False,
        user_agent: str | None = None,
        remote_callback_url: str | None = None,
        use_socket: bool | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        show_names: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        checksums: Sequence[str | None] | None = None,
        name_from_server: bool = False,
        overwrite: bool = False,
        max_connections_per_host: int | None = None,
        mirrors: Sequence[Sequence[str] | None] | None = None,
    ) -> int:
        """Like :meth:`start_download` but only create the downloader.

        Start it with :meth:`start_download_by_id` (one task after another) or
        :meth:`start_multiple_downloads_by_id` (all at once).  Returns the id or -1.
        """
        return self._create(
            urls, save_paths, thread_count, chunk_size_mb, callback, use_callback_url,
            user_agent, remote_callback_url, use_socket, None, headers, show_names, ids,
            checksums, max_connections_per_host, start=False,
            naming=(name_from_server, overwrite), mirrors=mirrors,
        )  # fmt: skip

    def _create(
        self,
        urls: Sequence[str],
        save_paths: Sequence[str | os.PathLike[str]],
        thread_count: int,
        chunk_size_mb: int,
        callback: Callback | None,
        use_callback_url: bool,
        user_agent: str | None,
        remote_callback_url: str | None,
        use_socket: bool | None,
        is_multiple: bool | None,
        headers: Mapping[str, str] | None,
        show_names: Sequence[str] | None,
        ids: Sequence[str] | None,
        checksums: Sequence[str | None] | None,
        max_connections_per_host: int | None,
        *,
        start: bool,
        naming: tuple[bool, bool] = (False, False),
        mirrors: Sequence[Sequence[str] | None] | None = None,
    ) -> int:
        tasks = build_tasks(
            urls, save_paths, show_names=show_names, ids=ids, checksums=checksums,
            name_from_server=naming[0], overwrite=naming[1],
            max_connections_per_host=max_connections_per_host, mirrors=mirrors,
        )  # fmt: skip
        tasks_json = json.dumps(tasks, ensure_ascii=False)
        headers_json = _headers_json(headers)
        _int_arg("thread_count", thread_count)
        _int_arg("chunk_size_mb", chunk_size_mb)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        session = self._session
        dispatcher = session.dispatcher
        name = "start_download" if start else "get_downloader"
        with session.lock:
            if session.closed:
                raise DownloaderClosedError(f"{name}() on a closed TTHSDownloader")
            # Always our own delivery, even without a user callback: wait() needs `end`.
            run = dispatcher.new_run(callback)
            if start:
                dispatcher.expect_end(run)
            spec = _ffi.CreateArgs(
                tasks_json, len(tasks), thread_count, chunk_size_mb, use_callback_url,
                user_agent, remote_callback_url, use_socket, headers_json,
            )  # fmt: skip
            dl_id = self._create_in_core(run, spec, is_multiple, start=start)
            if dl_id <= 0:
                reason = self._lib.last_error() or f"the core returned {dl_id}"
                if start:
                    dispatcher.unexpect_end(run)
                run.native = None  # the core created nothing: it cannot call it
                _TIlog.error("%s failed: %s", name, reason)
                return -1
            session.runs[dl_id] = run
            if start:
                session.record_start(run)
        _TIlog.info(
            "downloader %d %s with %d task(s)", dl_id, "started" if start else "created",
            len(tasks),
        )  # fmt: skip
        return dl_id

    def _create_in_core(
        self, run: Run, spec: _ffi.CreateArgs, is_multiple: bool | None, *, start: bool
    ) -> int:
        """The core's id for ``run`` (bound to it before any event can come), or -1."""
        lib = self._lib
        dispatcher = self._session.dispatcher
        event_queue = dispatcher.event_queue
        if event_queue is None:
            assert run.native is not None
            if start:
                dl_id = lib.start_download(spec, run.native, is_multiple)
            else:
                dl_id = lib.get_downloader(spec, run.native)
            if dl_id > 0:
                dispatcher.bind(run, dl_id)
            return dl_id
        # Queued events: create, bind, then start, which is what start_download does in
        # one call; a start that fails releases the id again.
        dl_id = event_queue.get_downloader(spec)
        if dl_id <= 0:
            return dl_id
        dispatcher.bind(run, dl_id)
        if not start:
            return dl_id
        start_fn = lib.start_multiple_downloads_id if is_multiple else lib.start_download_id
        rc = start_fn(dl_id)
        if rc == 0:
            return dl_id
        reason = lib.last_error()
        lib.stop_download(dl_id)
        lib.set_error(reason or f"start of downloader {dl_id} failed")
        return -1

    # -- controlling downloaders ----------------------------------------------------------
    def _start_by_id(self, downloader_id: int, multiple: bool) -> bool:
        session = self._session
        with session.lock:
            run = session.runs.get(downloader_id)
        if run is not None and not run.stopped:
            session.dispatcher.expect_end(run)
        if multiple:
            rc = self._lib.start_multiple_downloads_id(downloader_id)
        else:
            rc = self._lib.start_download_id(downloader_id)
        name = "start_multiple_downloads_by_id" if multiple else "start_download_by_id"
        if rc != 0:
            reason = self._lib.last_error()
            if run is not None and not run.stopped:
                session.dispatcher.unexpect_end(run)
            _TIlog.warning("%s(%d) failed: %s", name, downloader_id, reason or rc)
            return False
        if run is not None:
            session.record_start(run)
        _TIlog.info("downloader %d started (%s)", downloader_id, name)
        return True

    def start_download_by_id(self, downloader_id: int) -> bool:
        """Start a created downloader, running its tasks one after another."""
        return self._start_by_id(downloader_id, multiple=False)

    def start_multiple_downloads_by_id(self, downloader_id: int) -> bool:
        """Start a created downloader, running its tasks at the same time."""
        return self._start_by_id(downloader_id, multiple=True)

    def _last_error(self) -> str:
        """Why the last failed call of this thread failed ("" if it did not)."""
        return self._lib.last_error()

    def _control(self, name: str, rc: int, downloader_id: int) -> bool:
        if rc != 0:
            _TIlog.warning("%s(%d) failed: %s", name, downloader_id, self._lib.last_error() or rc)
            return False
        return True

    def pause_download(self, downloader_id: int) -> bool:
        """Pause: transfers stop, bytes on disk are kept; no ``end`` is sent."""
        return self._control(
            "pause_download", self._lib.pause_download(downloader_id), downloader_id
        )

    def resume_download(self, downloader_id: int) -> bool:
        """Resume a paused downloader from the bytes already on disk."""
        return self._control(
            "resume_download", self._lib.resume_download(downloader_id), downloader_id
        )

    def stop_download(self, downloader_id: int) -> bool:
        """Stop and release the downloader; partial data is kept for a later resume.

        When it returns True the core has sent its last event for the id (``msg``
        "Download stopped", then ``end`` if a run was going on); those are still delivered
        to the callback, and the id is invalid from now on.
        """
        return self._session.stop(downloader_id)

    def set_speed_limit(self, downloader_id: int, bytes_per_second: int) -> bool:
        """Limit the whole downloader to ``bytes_per_second`` (0 = unlimited), live."""
        return self._control(
            "set_speed_limit",
            self._lib.set_speed_limit(downloader_id, bytes_per_second),
            downloader_id,
        )

    def set_proxy(self, downloader_id: int, proxy_url: str | None) -> bool:
        """Use ``http://``, ``https://``, ``socks5://`` or ``socks5h://`` proxy; None = none."""
        return self._control(
            "set_proxy", self._lib.set_proxy(downloader_id, proxy_url), downloader_id
        )

    def set_retry_config(
        self,
        downloader_id: int,
        max_retries: int,
        retry_delay_ms: int,
        max_retry_delay_ms: int,
    ) -> bool:
        """Retry transient failures up to ``max_retries`` times with exponential backoff."""
        return self._control(
            "set_retry_config",
            self._lib.set_retry_config(
                downloader_id, max_retries, retry_delay_ms, max_retry_delay_ms
            ),
            downloader_id,
        )

    def set_timeouts(
        self, downloader_id: int, connect_timeout_ms: int, read_timeout_ms: int
    ) -> bool:
        """Set the connect and read timeouts of the downloader's requests."""
        return self._control(
            "set_timeouts",
            self._lib.set_timeouts(downloader_id, connect_timeout_ms, read_timeout_ms),
            downloader_id,
        )

    def set_durability(self, downloader_id: int, durable: bool) -> bool:
        """Whether the core flushes the part file to stable storage before each journal
        write and before publishing (``True``, the default: safe against power cuts).

        ``False`` is faster on slow disks and still safe against a killed process, not
        against a power cut.  Applies from the next journal write on.
        """
        return self._control(
            "set_durability", self._lib.set_durability(downloader_id, durable), downloader_id
        )

    def get_performance_stats(self, downloader_id: int) -> dict[str, Any]:
        """The core's statistics of one downloader (see ``PerformanceStats``); ``{}`` if unknown."""
        return self._lib.get_performance_stats(downloader_id)

    # -- waiting and closing --------------------------------------------------------------
    def wait(self, downloader_id: int | None = None, timeout: float | None = None) -> bool:
        """Block until the run of ``downloader_id`` (or of every downloader of this
        instance) has ended, its ``end`` event delivered to the callback.

        Returns True when they ended (a stopped run counts as ended, and so does a
        downloader that was never started), False when ``timeout`` seconds ran out or the
        id does not belong to this instance.  A paused run has not ended.  Raises
        :class:`CallbackContextError` when called from inside a callback.
        """
        session = self._session
        with session.lock:
            if downloader_id is None:
                runs = list(session.runs.values())
            else:
                run = session.runs.get(downloader_id)
                if run is None:
                    _TIlog.warning("wait(%d): not a downloader of this instance", downloader_id)
                    return False
                runs = [run]
        return session.dispatcher.wait(runs, timeout)

    def close(self) -> None:
        """Stop every downloader of this instance that was not stopped yet, and shut down
        its dispatcher thread.

        When it returns, no callback of this instance is running or will run (called
        from inside a callback: none will run after that callback returns).  Of a run
        that was still going on, the queued ``msg``/``err``/``endOne`` events and the
        final "Download stopped" and ``end`` are delivered first, queued progress
        ``update`` events are dropped; a downloader whose run had already ended is
        released silently.  Idempotent; also runs when the instance is garbage-collected
        and at interpreter exit.
        """
        self._finalizer()

    def __enter__(self) -> TTHSDownloader:
        with self._session.lock:
            self._session.with_frames.append([])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait for the downloads started inside the block to end, then close.

        If the block raised, stop them instead (close at once).
        """
        with self._session.lock:
            frame = self._session.with_frames.pop() if self._session.with_frames else []
        try:
            if exc_type is None and frame:
                self._session.dispatcher.wait(frame, None)
        finally:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._session.runs)} downloader(s)"
        return f"<TTHSDownloader {self._lib.path!r} {state}>"
