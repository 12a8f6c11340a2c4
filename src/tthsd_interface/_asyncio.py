"""The asyncio API: :class:`AsyncDownloader`, :class:`AsyncDownload`, :func:`download_async`,
:func:`fetch_async` and :func:`stream`, on the same core and dispatcher as
:class:`TTHSDownloader`.

Threads: the core's event thread queues each event for the instance's dispatcher thread
(see ``_dispatch``); there the event is decoded and handed to the event loop with
``loop.call_soon_threadsafe``, so everything a user sees (the ``async for`` events,
``progress`` callables, completion) happens on the loop's thread.  A loop that is closed
by then is ignored: the dispatcher thread never fails because of it.  Calls that may wait
inside the core (``stop``, ``pause``, ``close``) run in a worker thread
(``asyncio.to_thread``); the others return at once.

Events of one :class:`AsyncDownload` are kept until they are consumed, except that an
``update`` waiting in the queue is replaced by a newer ``update`` of the same file (a
reader that falls behind sees the latest progress, and the queue stays bounded by the
number of files plus the non-progress events).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ._blocking import ProgressArg, progress_handler
from ._downloader import TTHSDownloader
from ._errors import DownloadError
from ._log import _TIlog
from ._request import DownloadRequest, MirrorsArg, create_downloader, start_downloader
from ._results import DownloadEvent, FileFailure, FileResult
from ._tracker import Tracker

__all__ = ["AsyncDownload", "AsyncDownloader", "download_async", "fetch_async", "stream"]


class _Slot:
    __slots__ = ("event",)

    def __init__(self, event: DownloadEvent) -> None:
        self.event = event


class _EventInbox:
    """The events of one :class:`AsyncDownload` waiting for its reader, an unread
    ``update`` replaced by a newer one of the same file; used on the loop's thread only.

    Not a queue of the core (``_ffi.EventQueue``): this one lives on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[_Slot] = deque()
        self._pending_update: dict[str, _Slot] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self.closed = False

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def put(self, ev: DownloadEvent) -> None:
        if self.closed:
            return
        if ev.type == "update":
            slot = self._pending_update.get(ev.id)
            if slot is not None:
                slot.event = ev  # the newer snapshot replaces the unread one
                return
            slot = self._pending_update[ev.id] = _Slot(ev)
        else:
            slot = _Slot(ev)
        self._items.append(slot)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def get(self) -> DownloadEvent | None:
        """The next event, or None once the queue is closed and empty."""
        while not self._items:
            if self.closed:
                return None
            waiter = self._loop.create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
        slot = self._items.popleft()
        if self._pending_update.get(slot.event.id) is slot:
            del self._pending_update[slot.event.id]
        return slot.event


class AsyncDownload:
    """One downloader of an :class:`AsyncDownloader`: its files, events and completion.

    * ``async for event in download``: the :class:`DownloadEvent` objects of the run, in
      order, until its ``end`` (one reader at a time: each event is delivered once);
    * ``await download`` (or ``await download.wait()``): one :class:`FileResult` per file
      when every file completed, else :class:`DownloadError` listing the failures;
    * ``await download.pause()``, ``resume()``, ``stop()``: ``True`` when the core
      accepted; ``stop`` keeps the partial files for a later resume;
    * ``download.stats()``: the core's statistics (``get_performance_stats``).
    """

    def __init__(
        self,
        dl: TTHSDownloader,
        request: DownloadRequest,
        loop: asyncio.AbstractEventLoop,
        on_progress: Callable[[DownloadEvent], object] | None,
        display: Any,
    ) -> None:
        self.id = 0
        """The core's downloader id."""
        self.request = request
        self._dl = dl
        self._loop = loop
        self._on_progress = on_progress
        self._display = display
        self._tracker = Tracker(request)
        self._inbox = _EventInbox(loop)
        self._done: asyncio.Future[None] = loop.create_future()

    @property
    def urls(self) -> tuple[str, ...]:
        return self.request.urls

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in self.request.paths)

    # -- events -----------------------------------------------------------------------
    def _native_callback(self) -> Callable[[dict[str, Any], dict[str, Any]], None]:
        loop = self._loop
        deliver = self._deliver

        def on_event(event: dict[str, Any], msg: dict[str, Any]) -> None:
            # The dispatcher thread.  A closed loop raises RuntimeError: nobody is left to
            # tell, and the dispatcher must go on for the other downloads.
            ev = DownloadEvent.from_raw(event, msg, self.id)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, ev)

        return on_event

    def _deliver(self, ev: DownloadEvent) -> None:
        if self._done.done():
            return  # e.g. the "Download stopped" of releasing a finished downloader
        self._tracker.feed(ev)
        if self._on_progress is not None:
            try:
                self._on_progress(ev)
            except Exception:  # noqa: BLE001 - a progress callable never stops a download
                _TIlog.exception("progress callable raised on %s event (ignored)", ev.type)
        self._inbox.put(ev)
        if ev.type == "end":
            self._finish()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
        self._inbox.close()
        if self._display is not None:
            self._display.close()

    def __aiter__(self) -> AsyncIterator[DownloadEvent]:
        return self.events()

    async def events(self) -> AsyncGenerator[DownloadEvent, None]:
        """The run's events, until its ``end`` (or until it was stopped)."""
        while True:
            ev = await self._inbox.get()
            if ev is None:
                return
            yield ev

    # -- completion -------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the run ended (completed, failed or stopped)."""
        return self._done.done()

    async def wait(self) -> list[FileResult]:
        """Wait for the end of the run; one :class:`FileResult` per file.

        Raises :class:`DownloadError` when a file failed or the run was stopped before
        every file completed.  Cancelling the wait does not stop the download.
        """
        await asyncio.shield(self._done)
        return self._tracker.results_or_raise()

    def __await__(self) -> Generator[Any, None, list[FileResult]]:
        return self.wait().__await__()

    def outcome(self) -> tuple[list[FileResult], list[FileFailure]]:
        """Completed and failed files so far (files still running count as stopped)."""
        return self._tracker.outcome()

    # -- control ----------------------------------------------------------------------
    async def pause(self) -> bool:
        """Pause: transfers stop, the bytes on disk are kept; the run has not ended."""
        return await asyncio.to_thread(self._dl.pause_download, self.id)

    async def resume(self) -> bool:
        """Resume a paused run from the bytes on disk."""
        return await asyncio.to_thread(self._dl.resume_download, self.id)

    def _stop_blocking(self) -> bool:
        stopped = self._dl.stop_download(self.id)
        if stopped:
            self._dl.wait(self.id)  # every event of the id handed to the loop
        return stopped

    async def stop(self) -> bool:
        """Stop the run and release the downloader; partial files are kept for a resume.

        When it returns True the last events were delivered and :meth:`wait` has its
        answer (files not completed count as failures with code ``"stopped"``).
        """
        stopped = await asyncio.to_thread(self._stop_blocking)
        if stopped:
            self._finish()
        return stopped

    def set_speed_limit(self, bytes_per_second: int) -> bool:
        """Limit the whole download to ``bytes_per_second`` (0 = unlimited), live."""
        return self._dl.set_speed_limit(self.id, bytes_per_second)

    def stats(self) -> dict[str, Any]:
        """The core's statistics of this downloader (``{}`` once released)."""
        return self._dl.get_performance_stats(self.id)

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<AsyncDownload id={self.id} files={len(self.request.urls)} {state}>"


class AsyncDownloader:
    """Downloads for asyncio programs on one core instance.

    ::

        async with AsyncDownloader() as dl:
            download = await dl.start(urls, paths, connections=32)
            async for event in download:
                ...
            results = await download

    Leaving ``async with`` normally waits for the downloads started inside it; leaving
    it by an exception (cancellation included) stops them, keeping their partial files.
    """

    def __init__(self, dll_path: str | os.PathLike[str] | None = None) -> None:
        self._dl = TTHSDownloader(dll_path)
        self._downloads: list[AsyncDownload] = []
        self._frames: list[list[AsyncDownload]] = []

    @property
    def downloader(self) -> TTHSDownloader:
        """The underlying :class:`TTHSDownloader`."""
        return self._dl

    @property
    def closed(self) -> bool:
        return self._dl.closed

    async def start(
        self,
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
        ids: Sequence[str] | None = None,
        user_agent: str | None = None,
        proxy: str | None = None,
        speed_limit: int | str = 0,
        retries: int | None = None,
        timeouts: float | tuple[float, float] | None = None,
        durable: bool = True,
        max_connections_per_host: int | None = None,
        name_from_server: bool = False,
        overwrite: bool = False,
        mirrors: MirrorsArg = None,
    ) -> AsyncDownload:
        """Create and start one downloader for ``urls`` → ``save_paths``.

        The arguments are those of :func:`download`, plus ``ids`` (echoed in events).
        ``progress`` callables run on the event loop.  Raises
        :class:`DownloadRefusedError` when the core refuses the request or a setting.
        """
        loop = asyncio.get_running_loop()
        request = DownloadRequest.build(
            urls, save_paths, connections=connections, chunk_size_mb=chunk_size_mb,
            parallel=parallel, headers=headers, checksums=checksums, show_names=show_names,
            user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
            timeouts=timeouts, durable=durable, ids=ids,
            max_connections_per_host=max_connections_per_host,
            name_from_server=name_from_server, overwrite=overwrite, mirrors=mirrors,
        )  # fmt: skip
        on_progress, display = progress_handler(progress, request)
        handle = AsyncDownload(self._dl, request, loop, on_progress, display)
        try:
            handle.id = create_downloader(self._dl, request, handle._native_callback())
            if display is not None:
                display.start()
            start_downloader(self._dl, handle.id, request)
        except BaseException:
            if display is not None:
                display.close()
            raise
        self._downloads.append(handle)
        for frame in self._frames:
            frame.append(handle)
        return handle

    async def close(self) -> None:
        """Stop what still runs (partial files kept) and release everything."""
        await asyncio.to_thread(self._dl.close)
        for handle in self._downloads:
            handle._finish()

    async def __aenter__(self) -> AsyncDownloader:
        self._frames.append([])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame = self._frames.pop() if self._frames else []
        try:
            if exc_type is None and frame:
                await asyncio.gather(*(asyncio.shield(h._done) for h in frame))
        finally:
            await self.close()


async def download_async(
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
    max_connections_per_host: int | None = None,
    name_from_server: bool = False,
    overwrite: bool = False,
    mirrors: MirrorsArg = None,
) -> list[FileResult]:
    """:func:`download` for asyncio: the same arguments and results, and it never blocks
    the event loop (``progress`` callables run on the loop).

    Cancelling it stops the download, keeping the partial files for a later resume.
    """
    async with AsyncDownloader(dll_path) as dl:
        handle = await dl.start(
            urls, save_paths, connections=connections, chunk_size_mb=chunk_size_mb,
            parallel=parallel, headers=headers, checksums=checksums, progress=progress,
            show_names=show_names, user_agent=user_agent, proxy=proxy,
            speed_limit=speed_limit, retries=retries, timeouts=timeouts, durable=durable,
            max_connections_per_host=max_connections_per_host,
            name_from_server=name_from_server, overwrite=overwrite, mirrors=mirrors,
        )  # fmt: skip
        return await handle.wait()


async def fetch_async(
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
    """:func:`fetch` for asyncio."""
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="tthsd-fetch-", dir=tmp_dir)
    try:
        target = Path(folder) / "body"
        await download_async(
            url, target, connections=connections, chunk_size_mb=chunk_size_mb,
            headers=headers, checksums=None if checksum is None else [checksum],
            user_agent=user_agent, proxy=proxy, speed_limit=speed_limit, retries=retries,
            timeouts=timeouts, durable=False, dll_path=dll_path,
        )  # fmt: skip
        return await asyncio.to_thread(target.read_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _open_data(part: Path, target: Path) -> int:
    """A descriptor on the bytes: the part file, or the published file once renamed.

    One descriptor serves the whole stream: it stays valid across the rename."""
    for path in (part, target):
        try:
            return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            continue
    return -1


async def stream(
    url: str,
    *,
    block_size: int = 1 << 20,
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
) -> AsyncGenerator[tuple[int, bytes], None]:
    """``async for offset, chunk in stream(url)``: the body of ``url`` in order, while the
    engine downloads it over many connections.

    The engine writes into a temporary part file; each ``update`` event tells how many
    bytes from offset 0 are on disk (``Contiguous``, our ABI extension), and those are read
    from the file in pieces of at most ``block_size`` bytes.  Chunks are contiguous:
    each ``offset`` is the previous one plus the previous chunk's length.  The
    temporary file is deleted at the end; leaving the loop early stops the download
    (use ``contextlib.aclosing(stream(url))`` to do it at once rather than when the
    generator is collected).

    Raises :class:`DownloadError` when the download fails, including a file that the
    server changed after bytes of it were delivered (code ``file_changed``); a
    ``checksum`` is verified before the last chunk is delivered.
    """
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="tthsd-stream-", dir=tmp_dir)
    target = Path(folder) / "body"
    part = Path(str(target) + ".tthsd.part")
    fd = -1
    offset = 0
    try:
        async with AsyncDownloader(dll_path) as dl:
            handle = await dl.start(
                url, target, connections=connections, chunk_size_mb=chunk_size_mb,
                headers=headers, checksums=None if checksum is None else [checksum],
                user_agent=user_agent, proxy=proxy, speed_limit=speed_limit,
                retries=retries, timeouts=timeouts, durable=False,
            )  # fmt: skip
            task_id = handle.request.ids[0]
            available = 0
            async for ev in handle:
                if ev.type != "update" or ev.id != task_id:
                    continue
                if ev.contiguous < offset:
                    failure = FileFailure(
                        url, target, "file_changed",
                        "the download restarted from zero after bytes of it were delivered",
                    )  # fmt: skip
                    raise DownloadError([failure])
                if checksum is not None and ev.total and ev.contiguous >= ev.total:
                    # Hold the last bytes until the core verified the checksum.
                    available = max(available, ev.contiguous - 1)
                else:
                    available = max(available, ev.contiguous)
                if fd < 0 and available > offset:
                    fd = _open_data(part, target)
                while fd >= 0 and offset < available:
                    chunk = os.pread(fd, min(block_size, available - offset), offset)
                    if not chunk:
                        break
                    yield offset, chunk
                    offset += len(chunk)
            await handle.wait()  # DownloadError when the file failed
            if fd < 0:
                fd = _open_data(part, target)
            if fd < 0:
                raise DownloadError(
                    [FileFailure(url, target, "io", "the downloaded file disappeared")]
                )
            while True:
                chunk = os.pread(fd, block_size, offset)
                if not chunk:
                    break
                yield offset, chunk
                offset += len(chunk)
    finally:
        if fd >= 0:
            os.close(fd)
        await asyncio.to_thread(shutil.rmtree, folder, True)
