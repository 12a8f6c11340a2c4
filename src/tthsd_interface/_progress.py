"""Progress displays for the command line and ``progress=True``.

* :class:`RichDisplay` (a terminal): live bars drawn with ``rich``, one per active file (at
  most ``max_bars`` at a time) and one for the whole download, with size, speed and ETA;
  a finished file leaves one line above the bars.
* :class:`PlainDisplay` (not a terminal: a pipe, a log file, CI): plain lines, at most one
  progress line per file per ``interval`` seconds.

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

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from ._results import DownloadEvent
from ._units import format_bytes, format_duration, format_rate

__all__ = ["Display", "PlainDisplay", "RichDisplay", "make_display"]


class Display(Protocol):
    """What the downloads call: ``start`` before the first event, ``feed`` with each event,
    ``close`` at the end (idempotent)."""

    def start(self) -> None: ...

    def feed(self, ev: DownloadEvent) -> object: ...

    def close(self) -> None: ...


@dataclass
class _FileView:
    name: str
    started: float
    downloaded: int = 0
    total: int = 0
    speed: float = 0.0
    error: str = ""
    code: str = ""
    task: TaskID | None = None
    last_line: float = 0.0


class _SpeedColumn(ProgressColumn):
    """The core's smoothed speed (``Speed`` of ``update`` events), in binary units."""

    def render(self, task: Task) -> Text:
        speed = float(task.fields.get("speed", 0.0))
        if task.finished:
            return Text("")
        return Text(format_rate(speed) if speed > 0 else "?", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left at the core's current speed."""

    def render(self, task: Task) -> Text:
        speed = float(task.fields.get("speed", 0.0))
        if task.finished:
            return Text(format_duration(task.finished_time or 0.0), style="progress.elapsed")
        left = None
        if task.total is not None and speed > 0:
            left = (task.total - task.completed) / speed
        return Text("ETA " + format_duration(left), style="progress.remaining")


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


class _Base:
    def __init__(self, names: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._count = len(names)
        self._files: dict[str, _FileView] = {}
        self._finished = 0
        self._failed = 0
        self._done_bytes = 0

    def _view(self, ev: DownloadEvent) -> _FileView:
        view = self._files.get(ev.id)
        if view is None:
            view = _FileView(ev.show_name or ev.id, time.monotonic())
            self._files[ev.id] = view
        return view

    def _overall(self) -> tuple[int, int | None]:
        done = sum(v.downloaded for v in self._files.values())
        totals = [v.total for v in self._files.values()]
        known = len(totals) == self._count and all(totals)
        return done, sum(totals) if known else None


class RichDisplay(_Base):
    """Live progress bars on a terminal."""

    def __init__(
        self, names: Sequence[str], console: Console | None = None, max_bars: int = 10
    ) -> None:
        super().__init__(names)
        self.console = console if console is not None else Console(stderr=True)
        self._max_bars = max(1, min(max_bars, self.console.size.height - 3))
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            _SpeedColumn(),
            _EtaColumn(),
            console=self.console,
            refresh_per_second=8,
            speed_estimate_period=5.0,
            expand=True,
        )
        self._total_task = self._progress.add_task(self._total_label(), total=None, speed=0.0)
        self._waiting: list[str] = []  # ids of active files without a visible bar
        self._started = False
        self._closed = False

    def _total_label(self) -> str:
        return f"[bold]total[/] {self._finished}/{self._count} files"

    def start(self) -> None:
        with self._lock:
            if not self._started and not self._closed:
                self._started = True
                self._progress.start()

    def _visible(self) -> int:
        return sum(1 for v in self._files.values() if v.task is not None)

    def _show(self, task_id: str, view: _FileView) -> None:
        view.task = self._progress.add_task(
            _short(view.name), total=view.total or None, completed=view.downloaded,
            speed=view.speed,
        )  # fmt: skip

    def feed(self, ev: DownloadEvent) -> None:
        with self._lock:
            if self._closed:
                return
            kind = ev.type
            if kind == "startOne":
                view = self._view(ev)
                view.started = time.monotonic()
                if self._visible() < self._max_bars:
                    self._show(ev.id, view)
                else:
                    self._waiting.append(ev.id)
            elif kind == "update":
                view = self._view(ev)
                view.downloaded, view.total, view.speed = ev.downloaded, ev.total, ev.speed
                if view.task is not None:
                    self._progress.update(
                        view.task, completed=view.downloaded, total=view.total or None,
                        speed=view.speed,
                    )  # fmt: skip
            elif kind == "err":
                view = self._view(ev)
                view.error, view.code = ev.error, ev.code
            elif kind == "endOne":
                self._end_one(ev)
            elif kind == "msg" and ev.text:
                self._progress.console.print(f"[dim]{_short(ev.show_name, 40)}: {ev.text}[/]")
            done, total = self._overall()
            speed = sum(v.speed for v in self._files.values())
            self._progress.update(
                self._total_task, completed=done, total=total, description=self._total_label(),
                speed=speed,
            )  # fmt: skip

    def _end_one(self, ev: DownloadEvent) -> None:
        view = self._view(ev)
        view.speed = 0.0  # no longer part of the overall speed
        seconds = time.monotonic() - view.started
        if ev.success:
            self._finished += 1
            if view.total:
                view.downloaded = view.total
            rate = view.downloaded / seconds if seconds > 0 else 0.0
            self._progress.console.print(
                f"[green]✓[/] {view.name}  {format_bytes(view.downloaded)} in {seconds:.2f} s"
                f" ({format_rate(rate)})",
                highlight=False,
            )
        else:
            self._failed += 1
            self._progress.console.print(
                f"[red]✗ {view.name}[/]: {view.error or 'failed'}"
                + (f" [dim]({view.code})[/]" if view.code else ""),
                highlight=False,
            )
        if view.task is not None:
            self._progress.remove_task(view.task)
            view.task = None
        if ev.id in self._waiting:
            self._waiting.remove(ev.id)
        while self._waiting and self._visible() < self._max_bars:
            waiting_id = self._waiting.pop(0)
            self._show(waiting_id, self._files[waiting_id])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started:
            self._progress.stop()


class PlainDisplay(_Base):
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
    def _progress_line(view: _FileView) -> str:
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


def make_display(names: Sequence[str], stream: IO[str] | None = None) -> Display:
    """Bars when ``stream`` (default: standard error) is a terminal, plain lines otherwise."""
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        return RichDisplay(names, Console(file=target))
    return PlainDisplay(names, target)
