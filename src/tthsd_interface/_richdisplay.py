"""``RichDisplay``: live progress bars on a terminal, drawn with ``rich``.

Its own module so that ``rich`` (+42 ms of start-up, see ``_blocking.make_display``) is
loaded only when bars are shown: the command line on a pipe, with ``-q``, or in a script
never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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

from ._progress import Base, FileView, short
from ._results import DownloadEvent
from ._units import format_bytes, format_duration, format_rate

__all__ = ["RichDisplay"]


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


class RichDisplay(Base):
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

    def _show(self, task_id: str, view: FileView) -> None:
        view.task = self._progress.add_task(
            short(view.name), total=view.total or None, completed=view.downloaded,
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
                        TaskID(view.task), completed=view.downloaded, total=view.total or None,
                        speed=view.speed,
                    )  # fmt: skip
            elif kind == "err":
                view = self._view(ev)
                view.error, view.code = ev.error, ev.code
            elif kind == "endOne":
                self._end_one(ev)
            elif kind == "msg" and ev.text:
                self._progress.console.print(f"[dim]{short(ev.show_name, 40)}: {ev.text}[/]")
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
            self._progress.remove_task(TaskID(view.task))
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
