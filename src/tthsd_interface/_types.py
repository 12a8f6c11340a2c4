"""Typed shapes of what the core sends to callbacks (ABI.md section 4).

Callbacks receive two plain ``dict`` objects at run time; these ``TypedDict`` classes only
describe them for type checkers and readers.  The core may add keys, never remove them,
so every shape here is a lower bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict, Union

__all__ = [
    "Callback",
    "EmptyMsg",
    "EndOneMsg",
    "ErrMsg",
    "ErrorCode",
    "Event",
    "EventType",
    "Msg",
    "HostStats",
    "PerformanceStats",
    "StartOneMsg",
    "TaskStats",
    "TextMsg",
    "UpdateMsg",
]

EventType = Literal["start", "startOne", "update", "end", "endOne", "msg", "err"]
"""The ``Type`` of an event."""

ErrorCode = Literal[
    "invalid_input",
    "http_status",
    "range_unsupported",
    "checksum_mismatch",
    "disk_full",
    "timeout",
    "network",
    "tls",
    "io",
    "too_many_redirects",
    "bad_redirect",
    "file_changed",
    "size_mismatch",
    "proxy",
    "state",
    "internal",
]
"""The stable machine codes of ``err`` events (docs/errors.md says what each means).

The engine's ``ErrorCode`` (native/engine/src/error.rs) is their one definition;
``tests/api/test_contract.py`` fails when this list differs from it.  Newer cores may send
other codes, so code that matches on them should keep a default.
"""


class Event(TypedDict):
    """The first callback argument.

    Downloader-wide events (``start``, ``end``, most ``msg``) carry ``ShowName`` ``"Global"``
    and ``ID`` ``""``; task events carry the task's show name and id.
    """

    Type: EventType
    Name: str
    ShowName: str
    ID: str


class EmptyMsg(TypedDict):
    """``msg`` of ``start`` and ``end``: no keys."""


class StartOneMsg(TypedDict):
    """``msg`` of ``startOne``: a task begins."""

    URL: str
    SavePath: str
    ShowName: str
    Index: int
    """1-based position of the task in the downloader."""
    Total: int
    """Number of tasks in the downloader."""


class _EndOneMsgKeys(StartOneMsg):
    Success: bool


class EndOneMsg(_EndOneMsgKeys, total=False):
    """``msg`` of ``endOne``: a task ended, successfully or not (``SavedAs`` only for a
    file the server named: ``name_from_server``)."""

    SavedAs: str
    """Where the file was saved, when the server's ``Content-Disposition`` named it."""
    Sources: list[dict[str, Any]]
    """For a task with mirrors: ``{"URL", "Bytes", "Dropped"}`` per URL, its own first."""


class _UpdateMsgKeys(TypedDict):
    # The keys every core sends; UpdateMsg adds the optional one.  (A base class of
    # total=True and a subclass of total=False, not typing.NotRequired: Python 3.9 and
    # 3.10 have no NotRequired.)
    Downloaded: int
    """Bytes of this file downloaded so far."""
    Total: int
    """Size of the file in bytes; 0 when unknown."""
    Speed: float
    """Smoothed speed in bytes per second."""


class UpdateMsg(_UpdateMsgKeys, total=False):
    """``msg`` of ``update``: progress of one task (``Downloaded``, ``Total``, ``Speed``
    always; ``Contiguous`` from our core)."""

    Contiguous: int
    """Bytes from offset 0 that are all on disk (our core; absent from Go-era cores)."""


class TextMsg(TypedDict):
    """``msg`` of ``msg``: retries, pause, resume, stop and other notices."""

    Text: str


class ErrMsg(TypedDict):
    """``msg`` of ``err``: a task or the run failed."""

    Error: str
    """A human sentence."""
    Code: str
    """A stable machine code, see :data:`ErrorCode`."""


# typing.Union, not ``|``: these aliases are evaluated at run time, where ``|`` between
# classes and generic aliases needs Python 3.10.
Msg = Union[EmptyMsg, StartOneMsg, EndOneMsg, UpdateMsg, TextMsg, ErrMsg]
"""Any of the ``msg`` shapes."""

Callback = Union[
    Callable[[Event, dict[str, Any]], object], Callable[[dict[str, Any], dict[str, Any]], object]
]
"""A user callback: ``callback(event, msg)``.

Both styles of the TTHSD documentation type-check: ``def cb(event: dict, msg: dict)`` and
``def cb(event: Event, msg: dict[str, str | int | float])``.  Its return value is ignored.
"""


class HostStats(TypedDict, total=False):
    """One host inside :class:`PerformanceStats`: how many requests it may get at once."""

    host: str  #: name:port
    #: the limit now: ``ceiling`` unless the host pushed back (429, 503, refused)
    connection_limit: int
    ceiling: int  #: ``thread_count``, or the task's ``max_connections_per_host``
    pushbacks: int  #: refusals seen from it


class TaskStats(TypedDict, total=False):
    """One task inside :class:`PerformanceStats`."""

    id: str
    show_name: str
    url: str
    save_path: str
    state: Literal["pending", "running", "paused", "done", "failed"]
    downloaded: int
    total: int
    speed: float
    contiguous: int
    """Bytes from offset 0 that are all on disk: an in-order reader may consume them."""
    error: str | None
    sources: list[dict[str, Any]]
    """Only for a task with mirrors: ``{"URL", "Bytes", "Dropped"}`` per URL, its own first."""


class PerformanceStats(TypedDict, total=False):
    """What ``get_performance_stats`` returns for a known downloader (``{}`` otherwise)."""

    state: Literal["created", "running", "paused", "finished", "failed", "stopped"]
    downloaded: int
    total: int
    speed: float
    average_speed: float
    elapsed: float
    bytes_fetched: int
    retries: int
    connections: int
    thread_count: int
    chunk_size: int
    speed_limit: int
    hosts: list[HostStats]
    tasks: list[TaskStats]
