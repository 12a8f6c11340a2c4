"""The blocking high-level functions, :func:`download` and :func:`fetch`, and the pieces the
asyncio API shares with them.

* :class:`Plan`: the normalized request (a single URL and path may be plain strings), the
  settings, and the generated task ids events are matched with.
* :class:`Tracker`: fed every event of a run (on whichever single thread delivers them),
  it knows when each file started and ended and how, and turns that into
  :class:`FileResult` objects or a :class:`DownloadError`.
* :func:`create_downloader`: ``get_downloader`` then every setting, raising
  :class:`DownloadRefusedError` with the core's reason where the seed API returns
  ``-1``/``False``.
"""

from __future__ import annotations

import os
import threading
import time

from ._downloader import TTHSDownloader
from ._errors import DownloadError, DownloadRefusedError
from ._fields import event_type, int_field, str_field, success
from ._units import parse_rate

# What only type checkers read.  The rest of what a run needs late (``_results`` with its
# dataclasses, pathlib) is imported by ``prepare_outcome`` while the core downloads, not
# before the first request: together ~15 ms of a command-line run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TypeAlias

    from ._results import DownloadEvent, FileFailure, FileResult
    from ._types import Callback

__all__ = [
    "ProgressArg",
    "Plan",
    "Tracker",
    "create_downloader",
    "download",
    "fetch",
]

ProgressArg: TypeAlias = "bool | Callable[[DownloadEvent], object] | None"
"""``progress=``: None/False for nothing, True for progress bars on standard error (plain
lines when it is not a terminal), or a callable that receives every
:class:`DownloadEvent`."""

_DEFAULT_RETRY_DELAY_MS = 500
_DEFAULT_MAX_RETRY_DELAY_MS = 30_000
_task_serial = iter(range(1, 2**62))
_serial_lock = threading.Lock()


def _as_list(name: str, value: Any, kinds: tuple[type, ...]) -> list[Any]:
    if isinstance(value, kinds):
        return [value]
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{name} must be str or a sequence of them, not bytes")
    try:
        return list(value)
    except TypeError:
        kind = type(value).__name__
        raise TypeError(f"{name} must be a string or a sequence, not {kind}") from None


def _timeouts_ms(timeouts: float | tuple[float, float] | None) -> tuple[int, int] | None:
    if timeouts is None:
        return None
    if isinstance(timeouts, (int, float)):
        connect = read = float(timeouts)
    else:
        connect, read = (float(t) for t in timeouts)
    if connect <= 0 or read <= 0:
        raise ValueError("timeouts must be positive numbers of seconds")
    return round(connect * 1000), round(read * 1000)


class Plan:
    """One high-level download request, normalized and checked.  Read-only by convention.

    A plain class: importing ``dataclasses`` (with ``inspect``) alone takes up to ~15 ms,
    which a dataclass here would put before the first request.  ``paths`` are strings in
    pathlib's form; results turn them into :class:`~pathlib.Path` objects.
    """

    __slots__ = (
        "checksums", "chunk_size_mb", "connections", "durable", "headers", "ids", "parallel",
        "paths", "proxy", "retries", "show_names", "speed_limit", "timeouts_ms", "urls",
        "user_agent",
    )  # fmt: skip

    def __init__(
        self,
        *,
        urls: tuple[str, ...],
        paths: tuple[str, ...],
        ids: tuple[str, ...],
        checksums: tuple[str | None, ...] | None = None,
        show_names: tuple[str, ...] | None = None,
        connections: int = 64,
        chunk_size_mb: int = 10,
        parallel: bool = True,
        headers: Mapping[str, str] | None = None,
        user_agent: str | None = None,
        proxy: str | None = None,
        speed_limit: int = 0,
        retries: int | None = None,
        timeouts_ms: tuple[int, int] | None = None,
        durable: bool = True,
    ) -> None:
        self.urls = urls
        self.paths = paths
        self.ids = ids
        self.checksums = checksums
        self.show_names = show_names
        self.connections = connections
        self.chunk_size_mb = chunk_size_mb
        self.parallel = parallel
        self.headers = headers
        self.user_agent = user_agent
        self.proxy = proxy
        self.speed_limit = speed_limit
        self.retries = retries
        self.timeouts_ms = timeouts_ms
        self.durable = durable

    def __repr__(self) -> str:
        return f"<Plan {len(self.urls)} file(s), {self.connections} connections>"

    @classmethod
    def build(
        cls,
        urls: str | Sequence[str],
        save_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        connections: int = 64,
        chunk_size_mb: int = 10,
        parallel: bool = True,
        headers: Mapping[str, str] | None = None,
        checksums: str | Sequence[str | None] | None = None,
        show_names: Sequence[str] | None = None,
        user_agent: str | None = None,
        proxy: str | None = None,
        speed_limit: int | str = 0,
        retries: int | None = None,
        timeouts: float | tuple[float, float] | None = None,
        durable: bool = True,
        ids: Sequence[str] | None = None,
    ) -> Plan:
        url_list: list[str] = _as_list("urls", urls, (str,))
        for url in url_list:
            if not isinstance(url, str):
                raise TypeError("urls must hold strings")
        path_list = []
        for given in _as_list("save_paths", save_paths, (str, os.PathLike)):
            path = os.fspath(given)
            if not isinstance(path, str):
                raise TypeError("save_paths must hold str or os.PathLike[str]")
            path_list.append(_pathlib_text(path))
        if len(url_list) != len(path_list):
            raise ValueError(
                f"urls and save_paths must have the same length ({len(url_list)} != "
                f"{len(path_list)})"
            )
        if not url_list:
            raise ValueError("nothing to download: urls is empty")
        sums: tuple[str | None, ...] | None = None
        if checksums is not None:
            sums = tuple(_as_list("checksums", checksums, (str,)))
            if len(sums) != len(url_list):
                raise ValueError(f"checksums has {len(sums)} entries but urls has {len(url_list)}")
        names = None if show_names is None else tuple(_as_list("show_names", show_names, (str,)))
        if names is not None and len(names) != len(url_list):
            raise ValueError(f"show_names has {len(names)} entries but urls has {len(url_list)}")
        if ids is None:
            with _serial_lock:
                serial = next(_task_serial)
            task_ids = tuple(f"tthsd-{os.getpid()}-{serial}-{i + 1}" for i in range(len(url_list)))
        else:
            task_ids = tuple(_as_list("ids", ids, (str,)))
            if len(task_ids) != len(url_list):
                raise ValueError(f"ids has {len(task_ids)} entries but urls has {len(url_list)}")
        if retries is not None and (isinstance(retries, bool) or retries < 0):
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        return cls(
            urls=tuple(url_list),
            paths=tuple(path_list),
            ids=task_ids,
            checksums=sums,
            show_names=names,
            connections=connections,
            chunk_size_mb=chunk_size_mb,
            parallel=bool(parallel),
            headers=None if headers is None else dict(headers),
            user_agent=user_agent,
            proxy=proxy,
            speed_limit=parse_rate(speed_limit),
            retries=retries,
            timeouts_ms=_timeouts_ms(timeouts),
            durable=bool(durable),
        )

    def names(self) -> tuple[str, ...]:
        """The show name of each file (its file name unless given)."""
        if self.show_names is not None:
            return self.show_names
        return tuple(_file_name(p) for p in self.paths)


def _pathlib_text(path: str) -> str:
    """``str(PurePath(path))``, the form ``download`` has always given the core: no
    trailing separator (``out/`` is the file ``out``), no repeated separators, no ``.``
    components.  A path already in that form, nearly every one, skips importing pathlib
    (~9 ms before the first request)."""
    if os.sep == "/" and os.altsep is None:
        parts = path.split("/")
        if parts[0] == "":  # absolute
            parts = parts[1:]
        if all(part and part != "." for part in parts):
            return path
    from pathlib import PurePath

    return str(PurePath(path))


def _file_name(path: str) -> str:
    """The last component of a path in pathlib's form (no trailing separator); the whole
    path when it has none (``/``)."""
    return os.path.basename(path) or path


class _File:
    """What one file of a run has reported so far."""

    __slots__ = ("code", "downloaded", "ended", "message", "path", "started", "success",
                 "total", "url")  # fmt: skip

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self.started: float | None = None
        self.ended: float | None = None
        self.success: bool | None = None
        self.code: str | None = None
        self.message: str | None = None
        self.downloaded = 0
        self.total = 0


class Tracker:
    """What happened to each file of one run, built from its events.

    Feed it from one thread at a time (the dispatcher thread, or the event loop).
    """

    def __init__(self, plan: Plan) -> None:
        self.files = [_File(u, p) for u, p in zip(plan.urls, plan.paths, strict=True)]
        self._by_id = {task_id: i for i, task_id in enumerate(plan.ids)}
        self.run_error: tuple[str, str] | None = None
        self.ended = False
        self.stopped = False

    def feed(self, ev: DownloadEvent) -> None:
        self._apply(ev.type, ev.id, ev.msg)

    def feed_raw(self, event: Mapping[str, Any], msg: Mapping[str, Any]) -> None:
        """:meth:`feed` from the two dicts a callback receives, without a DownloadEvent."""
        self._apply(event_type(event), str_field(event, "ID"), msg)

    def _apply(self, kind: str, task_id: str, msg: Mapping[str, Any]) -> None:
        if kind == "end":
            self.ended = True
            return
        if kind == "msg":
            if str_field(msg, "Text") == "Download stopped":
                self.stopped = True
            return
        index = self._by_id.get(task_id)
        if index is None and kind in ("startOne", "endOne"):
            position = int_field(msg, "Index")
            if 1 <= position <= len(self.files):
                index = position - 1
        if index is None:
            if kind == "err":
                self.run_error = (str_field(msg, "Code") or "unknown", str_field(msg, "Error"))
            return
        f = self.files[index]
        if kind == "startOne":
            f.started = time.monotonic()
            f.ended = f.success = None
        elif kind == "update":
            f.downloaded, f.total = int_field(msg, "Downloaded"), int_field(msg, "Total")
        elif kind == "err":
            f.code, f.message = str_field(msg, "Code") or "unknown", str_field(msg, "Error")
        elif kind == "endOne":
            f.ended = time.monotonic()
            f.success = success(msg)

    def outcome(self) -> tuple[list[FileResult], list[FileFailure]]:
        """Completed files, and failed ones (files that never ended count as stopped)."""
        return self.results(), self.failures()

    def results(self) -> list[FileResult]:
        """The completed files, each with its size on disk."""
        from pathlib import Path

        from ._results import FileResult, file_size

        results: list[FileResult] = []
        for f in self.files:
            if f.success:
                size = file_size(f.path)
                size = f.downloaded if size is None else size
                seconds = max(0.0, (f.ended or 0.0) - (f.started or f.ended or 0.0))
                speed = size / seconds if seconds > 0 else 0.0
                results.append(FileResult(f.url, Path(f.path), size, seconds, speed))
        return results

    def failures(self) -> list[FileFailure]:
        """The files that did not complete (files that never ended count as stopped)."""
        from pathlib import Path

        from ._results import FileFailure

        failures: list[FileFailure] = []
        for f in self.files:
            if f.success:
                continue
            if f.success is False:
                code, message = f.code, f.message
                if code is None and self.run_error is not None:
                    code, message = self.run_error
                code, message = code or "unknown", message or "the file failed"
            else:
                code, message = "stopped", "the download was stopped before this file completed"
            failures.append(FileFailure(f.url, Path(f.path), code, message))
        return failures

    def results_or_raise(self) -> list[FileResult]:
        results, failures = self.outcome()
        if failures:
            raise DownloadError(failures, results)
        return results


def _refused(dl: TTHSDownloader, what: str) -> DownloadRefusedError:
    reason = dl._last_error() or "the core refused"
    return DownloadRefusedError(f"{what}: {reason}")


def create_downloader(dl: TTHSDownloader, plan: Plan, callback: Callback) -> int:
    """``get_downloader`` for ``plan`` then each of its settings; the downloader id.

    Raises :class:`DownloadRefusedError` (after releasing the id) when the core refuses.
    """
    dl_id = dl.get_downloader(
        list(plan.urls), list(plan.paths), plan.connections, plan.chunk_size_mb, callback,
        user_agent=plan.user_agent, headers=plan.headers, show_names=plan.show_names,
        ids=list(plan.ids), checksums=None if plan.checksums is None else list(plan.checksums),
    )  # fmt: skip
    if dl_id < 0:
        raise _refused(dl, "the core refused the download")
    settings: list[tuple[str, Callable[[], bool]]] = []
    if plan.proxy is not None:
        settings.append(("proxy", lambda: dl.set_proxy(dl_id, plan.proxy)))
    if plan.speed_limit:
        settings.append(("speed limit", lambda: dl.set_speed_limit(dl_id, plan.speed_limit)))
    if plan.retries is not None:
        retries = plan.retries
        settings.append((
            "retries",
            lambda: dl.set_retry_config(
                dl_id, retries, _DEFAULT_RETRY_DELAY_MS, _DEFAULT_MAX_RETRY_DELAY_MS
            ),
        ))  # fmt: skip
    if plan.timeouts_ms is not None:
        connect_ms, read_ms = plan.timeouts_ms
        settings.append(("timeouts", lambda: dl.set_timeouts(dl_id, connect_ms, read_ms)))
    if not plan.durable:
        settings.append(("durability", lambda: dl.set_durability(dl_id, False)))
    for name, apply in settings:
        if not apply():
            error = _refused(dl, f"the core refused the {name} setting")
            dl.stop_download(dl_id)
            raise error
    return dl_id


def start_downloader(dl: TTHSDownloader, dl_id: int, plan: Plan) -> None:
    if plan.parallel:
        started = dl.start_multiple_downloads_by_id(dl_id)
    else:
        started = dl.start_download_by_id(dl_id)
    if not started:
        error = _refused(dl, "the core could not start the download")
        dl.stop_download(dl_id)
        raise error


def prepare_outcome() -> None:
    """Load what :meth:`Tracker.outcome` needs.  Called once the core is downloading: the
    import then overlaps the transfer instead of delaying its first request."""
    import pathlib  # noqa: F401

    from . import _results  # noqa: F401


def progress_handler(
    progress: ProgressArg, plan: Plan
) -> tuple[Callable[[DownloadEvent], object] | None, Any]:
    """``(per-event function, display or None)`` for a ``progress=`` argument."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        from ._progress import make_display

        display = make_display(plan.names())
        return display.feed, display
    if callable(progress):
        return progress, None
    raise TypeError("progress must be None, a bool or a callable taking a DownloadEvent")


def download(
    urls: str | Sequence[str],
    save_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    connections: int = 64,
    chunk_size_mb: int = 10,
    parallel: bool = True,
    headers: Mapping[str, str] | None = None,
    checksums: str | Sequence[str | None] | None = None,
    progress: ProgressArg = None,
    show_names: Sequence[str] | None = None,
    user_agent: str | None = None,
    proxy: str | None = None,
    speed_limit: int | str = 0,
    retries: int | None = None,
    timeouts: float | tuple[float, float] | None = None,
    durable: bool = True,
    dll_path: str | os.PathLike[str] | None = None,
) -> list[FileResult]:
    """Download ``urls`` to ``save_paths`` and block until every file ended.

    A single URL and path may be given as plain strings.  ``connections`` is the most
    connections open at once over all files, ``chunk_size_mb`` the size of the ranges
    files are cut into, ``parallel`` runs the files at the same time (otherwise one after
    another).  ``checksums``: ``"sha256:<hex>"``/``"md5:<hex>"``/None per file.
    ``progress``: True for progress bars on standard error, or a callable receiving each
    :class:`DownloadEvent` (on the dispatcher thread).  ``speed_limit``: bytes per second
    or ``"10M"``; ``retries``: retries per range; ``timeouts``: seconds, one number or
    ``(connect, read)``; ``durable=False`` skips the fsyncs (see docs/tuning.md).

    Returns one :class:`FileResult` per file, in order.  Raises :class:`DownloadError`
    listing every failed file and its error code, :class:`DownloadRefusedError` when the
    core refuses the request.  On ``KeyboardInterrupt`` (or any exception) the download
    is stopped, its partial data kept for a later resume, and the exception propagates.
    """
    plan = Plan.build(
        urls, save_paths, connections=connections, chunk_size_mb=chunk_size_mb,
        parallel=parallel, headers=headers, checksums=checksums, show_names=show_names,
        user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
        timeouts=timeouts, durable=durable,
    )  # fmt: skip
    return run_blocking(plan, progress, dll_path)


def run_blocking(
    plan: Plan, progress: ProgressArg, dll_path: str | os.PathLike[str] | None
) -> list[FileResult]:
    tracker = Tracker(plan)
    on_progress, display = progress_handler(progress, plan)
    dl_id = 0
    on_event: Callback = tracker.feed_raw
    if on_progress is not None:
        from ._results import DownloadEvent

        def on_event(event: dict[str, Any], msg: dict[str, Any]) -> None:
            ev = DownloadEvent.from_raw(event, msg, dl_id)
            tracker.feed(ev)
            on_progress(ev)

    dl = TTHSDownloader(dll_path)
    try:
        dl_id = create_downloader(dl, plan, on_event)
        if display is not None:
            display.start()
        start_downloader(dl, dl_id, plan)
        prepare_outcome()
        # Short waits, so that Ctrl-C is seen at once on every platform.
        while not dl.wait(dl_id, timeout=0.25):
            pass
    finally:
        dl.close()  # stops the download when we got here by an exception
        if display is not None:
            display.close()
    return tracker.results_or_raise()


def fetch(
    url: str,
    *,
    connections: int = 16,
    chunk_size_mb: int = 1,
    headers: Mapping[str, str] | None = None,
    checksum: str | None = None,
    user_agent: str | None = None,
    proxy: str | None = None,
    speed_limit: int | str = 0,
    retries: int | None = None,
    timeouts: float | tuple[float, float] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    dll_path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Download ``url`` over many connections and return its bytes.

    The engine writes into a temporary file (in ``tmp_dir``, default the system's temp
    folder, without fsyncs) that is read back and deleted.  Raises :class:`DownloadError`
    when the file could not be downloaded.
    """
    import shutil  # here: only fetch() needs them, and they cost every program's start
    import tempfile

    folder = tempfile.mkdtemp(prefix="tthsd-fetch-", dir=tmp_dir)
    try:
        target = os.path.join(folder, "body")
        plan = Plan.build(
            url, target, connections=connections, chunk_size_mb=chunk_size_mb,
            headers=headers, checksums=None if checksum is None else [checksum],
            user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
            timeouts=timeouts, durable=False,
        )  # fmt: skip
        run_blocking(plan, None, dll_path)
        with open(target, "rb") as body:
            return body.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
