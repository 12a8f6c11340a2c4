"""The progress of a distributed job on the client: one bar (files and bytes) fed by the
workers while their shards run.

Workers send ``[shard, files ended, bytes]`` counts for the whole of a shard's current run
(see ``_shard._Progress``) as Dask events; :class:`JobProgress` keeps the newest count of
each running shard and, when a shard's rows arrive, replaces that count with the exact
one from the rows.  A shard that Dask runs again after its worker died thus never counts
twice, and counts of a shard that already ended (late events) are ignored.  Memory: two
numbers per running shard and the numbers of finished shards.

Not thread-bound: events arrive on the Dask client's event loop thread, rows on the
caller's; a lock orders them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, Protocol, Union

from ._units import format_bytes, format_rate

__all__ = ["JobProgress", "ProgressArg", "count_rows"]

_PLAIN_EVERY = 5.0  # seconds between two plain lines (standard error is not a terminal)

ProgressArg = Union[bool, Callable[[int, int, int], object], None]
"""``progress=`` of a distributed job: True for a bar on standard error, or a callable
receiving ``(files ended, bytes, files failed)`` at each change (on Dask's event thread
while shards run, on the caller's when a shard's rows arrive)."""


class _RowLike(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def bytes(self) -> int: ...


class JobProgress:
    """Counts of a job and their display: rich bar on a terminal, a plain line every 5 s
    otherwise, a callable's call, or nothing (the counts are still kept)."""

    def __init__(self, total: int | None, show: ProgressArg, stream: IO[str] | None = None) -> None:
        self.total = total
        self._lock = threading.Lock()
        self._live: dict[int, tuple[int, int]] = {}
        self._finished: set[int] = set()
        self.files = self.bytes = self.failed = 0
        self._started = time.monotonic()
        self._stream = stream if stream is not None else sys.stderr
        self._last_line = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._call = show if callable(show) else None
        self._show = show is True
        if self._show and self._stream.isatty():
            self._bar, self._task = _rich_bar(self._stream, total)

    def counts(self) -> tuple[int, int, int]:
        """``(files ended, bytes, files failed)`` so far, running shards included."""
        with self._lock:
            files = self.files + sum(f for f, _ in self._live.values())
            size = self.bytes + sum(b for _, b in self._live.values())
            return files, size, self.failed

    def on_event(self, event: Any) -> None:
        """A Dask event ``(timestamp, [shard, files, bytes])`` from a worker."""
        try:
            number, files, size = (int(x) for x in event[1])
        except (TypeError, ValueError, IndexError):
            return
        with self._lock:
            if number in self._finished:
                return
            old = self._live.get(number, (0, 0))
            self._live[number] = (max(old[0], files), max(old[1], size))
        self._draw()

    def shard_done(self, number: int, rows: Sequence[_RowLike]) -> None:
        with self._lock:
            self._finished.add(number)
            self._live.pop(number, None)
            self.files += len(rows)
            self.bytes += sum(r.bytes for r in rows if r.ok)
            self.failed += sum(1 for r in rows if not r.ok)
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if self._call is not None:
            self._call(*self.counts())
        if not self._show:
            return
        files, size, failed = self.counts()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        text = f"{format_bytes(size)} ({format_rate(size / elapsed)})" + (
            f", {failed} failed" if failed else ""
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=files, info=text)
            return
        now = time.monotonic()
        if final or now - self._last_line >= _PLAIN_EVERY:
            self._last_line = now
            of = f"/{self.total}" if self.total is not None else ""
            print(f"tthsd: {files}{of} files, {text}", file=self._stream, flush=True)

    def close(self) -> None:
        self._draw(final=True)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _rich_bar(stream: IO[str], total: int | None) -> tuple[Any, Any]:
    # Imported here: rich is loaded only when a bar is drawn (see _blocking.make_display).
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn("files"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(file=stream),
    )
    task = bar.add_task("files", total=total, info="")
    bar.start()
    return bar, task


def count_rows(rows: Iterable[object]) -> int:
    """How many rows an iterable has (one streaming pass, nothing kept)."""
    return sum(1 for _ in rows)
