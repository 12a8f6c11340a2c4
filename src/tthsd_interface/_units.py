"""Parsing and formatting of byte counts, rates and durations (the CLI and the displays)."""

from __future__ import annotations

import math
import re

__all__ = ["format_bytes", "format_duration", "format_rate", "parse_rate"]

_RATE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgGtT]?)(?:i?[bB])?(?:/s)?\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_rate(text: str | int) -> int:
    """Bytes per second from ``"10M"``, ``"512k"``, ``"1.5G"``, ``"2MiB"``, ``"800"`` or an int.

    Suffixes are binary (k = 1024), as in curl and wget; ``0`` means unlimited.  Raises
    ``ValueError`` for anything else.
    """
    if isinstance(text, bool):
        raise TypeError("a rate is an int or a string such as '10M'")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a rate cannot be negative: {text}")
        return text
    match = _RATE_PATTERN.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (expected e.g. 800, 512k, 10M, 1.5G)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return int(value)


def format_bytes(count: float) -> str:
    """``"12.3 MiB"``: binary units, three significant digits."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_rate(bytes_per_second: float) -> str:
    """``"12.3 MiB/s"``."""
    return format_bytes(bytes_per_second) + "/s"


def format_duration(seconds: float | None) -> str:
    """``"0:01:05"``; ``"-:--:--"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
