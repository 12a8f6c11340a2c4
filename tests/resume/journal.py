"""Reading and forging the engine's journal (``save_path + ".tthsd.journal"``), and the
byte-range arithmetic the resume tests need.

The format is the one ``native/engine/src/journal.rs`` writes: two UTF-8 lines, a JSON
object, then the lower-case hex SHA-256 of that first line::

    {"format":"tthsd-journal","version":1,"url":...,"final_url":...,"total":N,
     "validators":{"etag":...,"last_modified":...},"ranges":[[start,end],...]}
    <sha256 hex of the line above>

Ranges are half-open ``[start, end)``, sorted and disjoint. Tests read journals to see
what a killed process had made durable, and write journals the engine must refuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PART_SUFFIX = ".tthsd.part"
JOURNAL_SUFFIX = ".tthsd.journal"

Ranges = list[tuple[int, int]]


def part_path(save: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(save) + PART_SUFFIX)


def journal_path(save: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(save) + JOURNAL_SUFFIX)


def siblings(save: str | os.PathLike[str]) -> list[str]:
    """Names of the engine's temporary files beside ``save`` (``.tthsd.*``)."""
    p = Path(save)
    if not p.parent.is_dir():
        return []
    return sorted(q.name for q in p.parent.iterdir() if q.name.startswith(p.name + ".tthsd"))


# -- the journal ------------------------------------------------------------------------


def encode(body: dict[str, Any]) -> bytes:
    """The two-line form of ``body``, exactly as the engine writes it (compact JSON)."""
    line = json.dumps(body, separators=(",", ":"))
    return f"{line}\n{hashlib.sha256(line.encode()).hexdigest()}\n".encode()


def make(
    url: str,
    total: int,
    ranges: Iterable[tuple[int, int]],
    *,
    final_url: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> dict[str, Any]:
    """A journal body the engine would accept (if its facts match)."""
    return {
        "format": "tthsd-journal",
        "version": 1,
        "url": url,
        "final_url": final_url or url,
        "total": total,
        "validators": {"etag": etag, "last_modified": last_modified},
        "ranges": [[s, e] for s, e in ranges],
    }


def decode(data: bytes) -> dict[str, Any] | None:
    """The journal body if ``data`` is a well-formed journal (digest checked), else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if len(lines) < 2 or hashlib.sha256(lines[0].encode()).hexdigest() != lines[1]:
        return None
    try:
        body = json.loads(lines[0])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def read(save: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The valid journal beside ``save``, or None (absent, torn, edited)."""
    try:
        return decode(journal_path(save).read_bytes())
    except FileNotFoundError:
        return None


def covered(body: dict[str, Any] | None) -> Ranges:
    return [] if body is None else [(int(s), int(e)) for s, e in body["ranges"]]


# -- half-open range sets ------------------------------------------------------------------


def union(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, disjoint, merged (touching ranges merge); empty ones dropped."""
    out: Ranges = []
    for s, e in sorted(r for r in ranges if r[0] < r[1]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect(a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]) -> Ranges:
    """Intersection of two range sets (each normalised first)."""
    a, b = union(a), union(b)
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def size(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(e - s for s, e in union(ranges))


_WRITTEN = re.compile(rb"[^\x00]+")


def written(
    path: str | os.PathLike[str], within: Iterable[tuple[int, int]], block: int = 1 << 20
) -> Ranges:
    """The parts of ``within`` that hold data in the file at ``path``.

    The tests' content (tests.support.content) never contains a zero byte, and the part
    file is created sparse (zeros), so a non-zero byte is a byte the engine wrote. Regions
    past the end of the file, or a missing file, hold nothing.
    """
    out: Ranges = []
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return []
    with f:
        for s, e in union(within):
            pos = s
            while pos < e:
                f.seek(pos)
                data = f.read(min(block, e - pos))
                if not data:
                    break
                out.extend((pos + m.start(), pos + m.end()) for m in _WRITTEN.finditer(data))
                pos += len(data)
    return union(out)
