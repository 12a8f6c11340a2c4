"""Progress displays for the command line and ``progress=True``: what every display keeps
(:class:`Base`, one :class:`FileView` per file), and the plain one.

* ``RichDisplay`` (a terminal; module ``_richdisplay``, built on :class:`Base`): live
  bars, one per active file (at most ``max_bars`` at a time) and one for the whole
  download, with size, speed and ETA; a finished file leaves one line above the bars.
* :class:`PlainDisplay` (not a terminal: a pipe, a log file, CI): plain lines, at most one
  progress line per file per ``interval`` seconds.

``_blocking.make_display`` chooses between them.

Both are fed :class:`DownloadEvent` objects from one thread (the dispatcher thread or the
event loop) while the main thread may call :meth:`close`; every method is thread-safe.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from ._results import DownloadEvent
from ._units import format_bytes, format_duration, format_rate

__all__ = ["Base", "Display", "FileView", "PlainDisplay", "short"]


class Display(Protocol):
    """What the downloads call: ``start`` before the first event, ``feed`` with each event,
    ``close`` at the end (idempotent)."""

    def start(self) -> None: ...

    def feed(self, ev: DownloadEvent) -> object: ...

    def close(self) -> None: ...


@dataclass
class FileView:
    name: str
    started: float
    downloaded: int = 0
    total: int = 0
    speed: float = 0.0
    error: str = ""
    code: str = ""
    task: int | None = None
    """The file's bar (a rich ``TaskID``) while it has one."""
    last_line: float = 0.0


def short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


class Base:
    """What both displays keep: one view per file, and the counts."""

    def __init__(self, names: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._count = len(names)
        self._files: dict[str, FileView] = {}
        self._finished = 0
        self._failed = 0
        self._done_bytes = 0

    def _view(self, ev: DownloadEvent) -> FileView:
        view = self._files.get(ev.id)
        if view is None:
            view = FileView(ev.show_name or ev.id, time.monotonic())
            self._files[ev.id] = view
        return view

    def _overall(self) -> tuple[int, int | None]:
        done = sum(v.downloaded for v in self._files.values())
        totals = [v.total for v in self._files.values()]
        known = len(totals) == self._count and all(totals)
        return done, sum(totals) if known else None


class PlainDisplay(Base):
    """Plain lines for a pipe or a log."""

    def __init__(
        self, names: Sequence[str], stream: IO[str] | None = None, interval: float = 1.0
    ) -> None:
        super().__init__(names)
        self._stream = stream
        self._interval = interval

    def _print(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        print(line, file=stream, flush=True)

    def start(self) -> None:
        pass

    def feed(self, ev: DownloadEvent) -> None:
        with self._lock:
            kind = ev.type
            if kind == "startOne":
                view = self._view(ev)
                view.started = view.last_line = time.monotonic()
                self._print(f"start  {view.name}  {ev.url}")
            elif kind == "update":
                view = self._view(ev)
                view.downloaded, view.total, view.speed = ev.downloaded, ev.total, ev.speed
                now = time.monotonic()
                if now - view.last_line >= self._interval and view.downloaded < view.total:
                    view.last_line = now
                    self._print(self._progress_line(view))
            elif kind == "err":
                view = self._view(ev)
                view.error, view.code = ev.error, ev.code
            elif kind == "endOne":
                view = self._view(ev)
                seconds = time.monotonic() - view.started
                if ev.success:
                    size = view.total or view.downloaded
                    rate = size / seconds if seconds > 0 else 0.0
                    self._print(
                        f"done   {view.name}  {format_bytes(size)} in {seconds:.2f} s"
                        f" ({format_rate(rate)})"
                    )
                else:
                    code = f" ({view.code})" if view.code else ""
                    self._print(f"FAILED {view.name}: {view.error or 'failed'}{code}")
            elif kind == "msg" and ev.text:
                self._print(f"note   {ev.show_name}: {ev.text}")

    @staticmethod
    def _progress_line(view: FileView) -> str:
        if view.total:
            share = f"{view.downloaded / view.total:6.1%}"
            size = f"{format_bytes(view.downloaded)} / {format_bytes(view.total)}"
            eta = (view.total - view.downloaded) / view.speed if view.speed > 0 else None
        else:
            share, size, eta = "     ?", format_bytes(view.downloaded), None
        return (
            f"       {view.name}  {share}  {size}  {format_rate(view.speed)}"
            f"  ETA {format_duration(eta)}"
        )

    def close(self) -> None:
        pass
