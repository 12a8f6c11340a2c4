"""Frozen dataclasses of the high-level API: what a download returns and what it reports.

* :class:`FileResult`: one completed file (``download`` returns one per file).
* :class:`FileFailure`: one file that did not complete (listed by :class:`DownloadError`).
* :class:`DownloadEvent`: one event of the core, decoded (``AsyncDownload`` yields them,
  ``progress`` callables receive them); the raw ``msg`` stays available.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from ._eventfields import event_type, float_field, int_field, str_field, success
from ._types import EventType

__all__ = ["DownloadEvent", "FileFailure", "FileResult", "SourceShare"]


@dataclass(frozen=True)
class SourceShare:
    """What one URL of a file with mirrors served (``FileResult.sources``)."""

    url: str
    """The URL as the core reports it: no credentials, no query string."""
    bytes: int
    """Bytes of the file it served in this run (since the file last started from zero)."""
    dropped: str | None = None
    """Why the core stopped using it (another file, failures), or None."""

    @classmethod
    def list_from(cls, value: object) -> tuple[SourceShare, ...]:
        """The ``Sources`` list of an ``endOne`` message (entries that do not parse are
        skipped)."""
        if not isinstance(value, list):
            return ()
        out = []
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("URL"), str):
                n = item.get("Bytes")
                why = item.get("Dropped")
                out.append(cls(
                    item["URL"],
                    n if isinstance(n, int) and not isinstance(n, bool) else 0,
                    why if isinstance(why, str) else None,
                ))  # fmt: skip
        return tuple(out)


@dataclass(frozen=True)
class FileResult:
    """A file that was downloaded completely (and verified, when a checksum was given)."""

    url: str
    path: Path
    """Where the file is (the ``save_path`` asked for)."""
    bytes: int
    """Its size."""
    seconds: float
    """From the moment the core started this file to the moment it completed."""
    average_speed: float
    """``bytes / seconds``, in bytes per second (0.0 for an instant completion)."""
    sources: tuple[SourceShare, ...] = ()
    """For a file with mirrors: what each of its URLs served (its own URL first, then
    the mirrors in the order given); empty otherwise."""


@dataclass(frozen=True)
class FileFailure:
    """A file that did not complete."""

    url: str
    path: Path
    code: str
    """The core's machine code (``http_status``, ``checksum_mismatch``, ``timeout``, ...;
    see ``ErrorCode``), ``"stopped"`` when the download was stopped before this file
    completed, or ``"unknown"`` when the core gave none."""
    message: str
    """The core's sentence."""


@dataclass(frozen=True)
class DownloadEvent:
    """One event of the core (see ``docs/callbacks.md`` for every type and key).

    ``type``, ``name``, ``show_name`` and ``id`` come from the event object; ``msg`` is the
    message object as the core sent it (read-only).  The properties read the usual keys
    of ``msg`` with a default when absent.
    """

    type: EventType
    name: str
    show_name: str
    id: str
    msg: Mapping[str, Any] = field(repr=False)
    downloader_id: int = 0

    @classmethod
    def from_raw(
        cls, event: Mapping[str, Any], msg: Mapping[str, Any], downloader_id: int = 0
    ) -> DownloadEvent:
        """Build from the two dicts a callback receives."""
        return cls(
            type=cast("EventType", event_type(event)),
            name=str_field(event, "Name"),
            show_name=str_field(event, "ShowName"),
            id=str_field(event, "ID"),
            msg=MappingProxyType(dict(msg)),
            downloader_id=downloader_id,
        )

    @property
    def downloaded(self) -> int:
        """``update``: bytes of this file on disk so far."""
        return int_field(self.msg, "Downloaded")

    @property
    def total(self) -> int:
        """``update``: the file's size (0 when unknown); ``startOne``/``endOne``: task count."""
        return int_field(self.msg, "Total")

    @property
    def speed(self) -> float:
        """``update``: smoothed speed in bytes per second."""
        return float_field(self.msg, "Speed")

    @property
    def contiguous(self) -> int:
        """``update``: bytes from offset 0 that are all on disk (0 from Go-era cores)."""
        return int_field(self.msg, "Contiguous")

    @property
    def index(self) -> int:
        """``startOne``/``endOne``: 1-based position of the task."""
        return int_field(self.msg, "Index")

    @property
    def url(self) -> str:
        """``startOne``/``endOne``: the task's URL."""
        return str_field(self.msg, "URL")

    @property
    def save_path(self) -> str:
        """``startOne``/``endOne``: the task's path."""
        return str_field(self.msg, "SavePath")

    @property
    def success(self) -> bool:
        """``endOne``: whether the file completed."""
        return success(self.msg)

    @property
    def text(self) -> str:
        """``msg``: the notice."""
        return str_field(self.msg, "Text")

    @property
    def error(self) -> str:
        """``err``: the core's sentence."""
        return str_field(self.msg, "Error")

    @property
    def code(self) -> str:
        """``err``: the stable machine code."""
        return str_field(self.msg, "Code")


def file_size(path: str | os.PathLike[str]) -> int | None:
    """The size of ``path``, or None when it is not a file."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None
