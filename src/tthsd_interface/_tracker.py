"""What happened to each file of one run, built from its events: :class:`Tracker`, which
turns a run's events into :class:`FileResult` objects or a :class:`DownloadError`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import DownloadError
from ._eventfields import event_type, int_field, str_field, success
from ._request import DownloadRequest
from ._results import DownloadEvent, FileFailure, FileResult, SourceShare, file_size

__all__ = ["Tracker"]


@dataclass
class _File:
    """What one file of a run has reported so far."""

    url: str
    path: str
    started: float | None = None
    ended: float | None = None
    success: bool | None = None
    code: str | None = None
    message: str | None = None
    downloaded: int = 0
    total: int = 0
    sources: tuple[SourceShare, ...] = ()


class Tracker:
    """What happened to each file of one run, built from its events.

    Feed it from one thread at a time (the dispatcher thread, or the event loop).
    """

    def __init__(self, request: DownloadRequest) -> None:
        self.files = [_File(u, p) for u, p in zip(request.urls, request.paths)]
        self._by_id = {task_id: i for i, task_id in enumerate(request.ids)}
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
            # A file the server named (name_from_server) is where the core says.
            saved_as = str_field(msg, "SavedAs")
            if saved_as:
                f.path = saved_as
            f.sources = SourceShare.list_from(msg.get("Sources"))

    def outcome(self) -> tuple[list[FileResult], list[FileFailure]]:
        """Completed files, and failed ones (files that never ended count as stopped)."""
        return self.results(), self.failures()

    def results(self) -> list[FileResult]:
        """The completed files, each with its size on disk."""
        results: list[FileResult] = []
        for f in self.files:
            if f.success:
                size = file_size(f.path)
                size = f.downloaded if size is None else size
                seconds = max(0.0, (f.ended or 0.0) - (f.started or f.ended or 0.0))
                speed = size / seconds if seconds > 0 else 0.0
                results.append(FileResult(f.url, Path(f.path), size, seconds, speed, f.sources))
        return results

    def failures(self) -> list[FileFailure]:
        """The files that did not complete (files that never ended count as stopped)."""
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
