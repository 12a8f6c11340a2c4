"""The blocking high-level functions, :func:`download` and :func:`fetch`, and the
``progress=`` argument they share with the asyncio API (:func:`progress_handler`,
:func:`make_display`)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Optional, Union

from ._downloader import TTHSDownloader
from ._progress import Display, PlainDisplay
from ._request import DownloadRequest, MirrorsArg, create_downloader, start_downloader
from ._results import DownloadEvent, FileResult
from ._tracker import Tracker
from ._types import Callback

__all__ = ["ProgressArg", "download", "fetch", "make_display", "progress_handler"]

# typing's Union/Optional: evaluated at run time, where ``|`` needs Python 3.10.
ProgressArg = Optional[Union[bool, Callable[[DownloadEvent], object]]]
"""``progress=``: None/False for nothing, True for progress bars on standard error (plain
lines when it is not a terminal), or a callable that receives every
:class:`DownloadEvent`."""


def make_display(names: Sequence[str], stream: IO[str] | None = None) -> Display:
    """Bars when ``stream`` (default: standard error) is a terminal, plain lines otherwise."""
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        # Here, for bars on a terminal alone: rich is +42 ms of start-up (measured on the
        # 2-core test machine, min of 21 runs), ~9% of bench workload 3 through the
        # command line there (0.46 s), which runs without bars.
        from rich.console import Console

        from ._richdisplay import RichDisplay

        return RichDisplay(names, Console(file=target))
    return PlainDisplay(names, target)


def progress_handler(
    progress: ProgressArg, request: DownloadRequest
) -> tuple[Callable[[DownloadEvent], object] | None, Any]:
    """``(per-event function, display or None)`` for a ``progress=`` argument."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        display = make_display(request.names())
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
    name_from_server: bool = False,
    overwrite: bool = False,
    max_connections_per_host: int | None = None,
    mirrors: MirrorsArg = None,
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
    ``name_from_server=True`` names each file from the server's ``Content-Disposition``
    (like ``curl -J``): a sanitised base name in its save path's folder (the save path
    itself when the server names none), never replacing an existing file unless
    ``overwrite=True``; the result's ``path`` is where the file went.
    ``max_connections_per_host``: at most that many requests to one host at once (the
    core also goes lower on its own while a host answers 429/503, see docs/tuning.md).
    ``mirrors``: other URLs of the same files, as ``{url: [mirror, ...]}``, one list (or
    None) per URL, or for a single URL the list of its mirrors; ranges are spread over
    a file's URLs by their speed, a mirror that serves another file is dropped, and the
    result's ``sources`` says what each URL served (see docs/high-level.md).

    Returns one :class:`FileResult` per file, in order.  Raises :class:`DownloadError`
    listing every failed file and its error code, :class:`DownloadRefusedError` when the
    core refuses the request.  On ``KeyboardInterrupt`` (or any exception) the download
    is stopped, its partial data kept for a later resume, and the exception propagates.
    """
    request = DownloadRequest.build(
        urls, save_paths, connections=connections, chunk_size_mb=chunk_size_mb,
        parallel=parallel, headers=headers, checksums=checksums, show_names=show_names,
        user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
        timeouts=timeouts, durable=durable, name_from_server=name_from_server,
        overwrite=overwrite, max_connections_per_host=max_connections_per_host,
        mirrors=mirrors,
    )  # fmt: skip
    return run_blocking(request, progress, dll_path)


def run_blocking(
    request: DownloadRequest, progress: ProgressArg, dll_path: str | os.PathLike[str] | None
) -> list[FileResult]:
    tracker = Tracker(request)
    on_progress, display = progress_handler(progress, request)
    dl_id = 0
    on_event: Callback = tracker.feed_raw
    if on_progress is not None:

        def on_event(event: dict[str, Any], msg: dict[str, Any]) -> None:
            ev = DownloadEvent.from_raw(event, msg, dl_id)
            tracker.feed(ev)
            on_progress(ev)

    dl = TTHSDownloader(dll_path)
    try:
        dl_id = create_downloader(dl, request, on_event)
        if display is not None:
            display.start()
        start_downloader(dl, dl_id, request)
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
    folder = tempfile.mkdtemp(prefix="tthsd-fetch-", dir=tmp_dir)
    try:
        target = os.path.join(folder, "body")
        request = DownloadRequest.build(
            url, target, connections=connections, chunk_size_mb=chunk_size_mb,
            headers=headers, checksums=None if checksum is None else [checksum],
            user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
            timeouts=timeouts, durable=False,
        )  # fmt: skip
        run_blocking(request, None, dll_path)
        with open(target, "rb") as body:
            return body.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
