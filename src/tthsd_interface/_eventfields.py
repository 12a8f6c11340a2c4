"""Reading the fields of a core event from the two raw dicts a callback receives (ABI.md
section 4), with one default per field.

:class:`DownloadEvent` (``_results``) and the run ``Tracker`` (``_tracker``) read the same
keys with the same defaults.  The tracker reads the raw dicts directly: it sees every
event of a run (3,000 for 1,000 small files) and needs two keys of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_TYPES", "event_type", "float_field", "int_field", "str_field", "success"]

EVENT_TYPES: frozenset[str] = frozenset(
    {"start", "startOne", "update", "end", "endOne", "msg", "err"}
)


def event_type(event: Mapping[str, Any]) -> str:
    """The event's ``Type``; an unknown one reads as ``"msg"`` (a notice to show, not act on)."""
    kind = str(event.get("Type", ""))
    return kind if kind in EVENT_TYPES else "msg"


def int_field(msg: Mapping[str, Any], key: str) -> int:
    """``msg[key]`` as an int; 0 when absent or not a number (bools are not numbers)."""
    value = msg.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def float_field(msg: Mapping[str, Any], key: str) -> float:
    value = msg.get(key, 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def str_field(msg: Mapping[str, Any], key: str) -> str:
    return str(msg.get(key, ""))


def success(msg: Mapping[str, Any]) -> bool:
    """``endOne``: only a JSON ``true`` counts."""
    return msg.get("Success") is True
