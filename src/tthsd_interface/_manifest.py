"""The download list of a distributed job (``tthsd_interface.dask``), read as a stream.

* :func:`read_manifest`: rows from an iterable (URL strings, ``(url, path, checksum)``
  tuples, mappings with those keys) or from a file (``.csv`` with a header naming
  ``url`` and optionally ``path`` and ``checksum``; any other file: one URL per line,
  optionally followed by a tab and a path, and another tab and a checksum; without a tab,
  the rest of the line after white space is the path, as ``tthsd -i`` reads it).  One
  row at a time: a list of millions of URLs is never held in memory.
* :func:`mirror_path`: where a URL goes when the row names no path.
* :func:`shards`: rows grouped into shards of at most ``files_per_task``, by host.

Nothing here imports Dask: the module is the part of a job that runs on the client, and
is tested without a cluster.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Union
from urllib.parse import unquote, urlsplit

__all__ = [
    "Manifest",
    "Row",
    "host_of",
    "mirror_path",
    "read_lines",
    "read_manifest",
    "shards",
]

Manifest = Union[str, "os.PathLike[str]", Iterable[Any]]
"""A file name, or an iterable of rows (see :func:`read_manifest`)."""

# Buffered rows over all hosts before the fullest host's rows are sent as a shard anyway:
# bounds the client's memory when a list interleaves many hosts.
_BUFFERED_SHARDS = 32


@dataclass(frozen=True)
class Row:
    """One file of the list: its position in the list (0-based), URL, target path (as
    given, before it is joined to the destination folder), and optional checksum."""

    index: int
    url: str
    path: str | None = None
    checksum: str | None = None

    def __reduce__(self) -> tuple[type[Row], tuple[int, str, str | None, str | None]]:
        # As a tuple of fields: a shard of rows pickles ~2x faster and smaller than by
        # the instances' dicts (shards go to the workers by pickle).
        return Row, (self.index, self.url, self.path, self.checksum)


def _text(value: Any) -> str | None:
    """A cell's text, None for an empty or missing one (pandas' NaN included)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _row(index: int, item: Any) -> Row:
    url: Any
    path: Any
    checksum: Any
    if isinstance(item, str):
        url, path, checksum = item, None, None
    elif isinstance(item, Mapping):
        url, path, checksum = item.get("url"), item.get("path"), item.get("checksum")
    elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        url, path, checksum = (*item, None, None)[:3]
    else:
        raise TypeError(
            f"manifest row {index}: a URL, a (url, path, checksum) tuple or a mapping, "
            f"not {type(item).__name__}"
        )
    text = _text(url)
    if text is None:
        raise ValueError(f"manifest row {index} has no URL")
    return Row(index, text, _text(path), _text(checksum))


def read_lines(stream: IO[str]) -> Iterator[tuple[str, str | None, str | None]]:
    """``(url, path, checksum)`` of each line of a text manifest (the module's format)."""
    for raw in stream:
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in line:
            cells = [*line.split("\t"), "", ""]
            yield cells[0].strip(), cells[1], cells[2]
        else:  # as ``tthsd -i``: the URL, then the rest of the line is the path
            parts = stripped.split(None, 1)
            yield parts[0], (parts[1] if len(parts) > 1 else None), None


def _csv_rows(stream: IO[str]) -> Iterator[Mapping[str, Any]]:
    reader = csv.DictReader(stream)
    fields = {f.strip().lower(): f for f in reader.fieldnames or ()}
    if "url" not in fields:
        raise ValueError("a CSV manifest needs a header with a 'url' column")
    for record in reader:
        yield {key: record.get(name) for key, name in fields.items()}


def read_manifest(
    manifest: Manifest, checksums: Iterable[str | None] | None = None
) -> Iterator[Row]:
    """The rows of ``manifest``, one at a time (a file is read as it is consumed).

    ``checksums``, when given, is zipped with the rows (one per row, ``None`` for none):
    a checksum a row carries itself wins.
    """
    sums = iter(checksums) if checksums is not None else None
    items: Iterable[Any]
    if isinstance(manifest, (str, os.PathLike)):
        items = _file_items(os.fspath(manifest))
    elif isinstance(manifest, (bytes, bytearray)):
        raise TypeError("manifest must be a file name or an iterable of rows, not bytes")
    else:
        items = manifest
    for index, item in enumerate(items):
        row = _row(index, item)
        if sums is not None:
            given = next(sums, None)
            if row.checksum is None and given is not None:
                row = Row(row.index, row.url, row.path, _text(given))
        yield row


def _file_items(name: str) -> Iterator[Any]:
    with open(name, encoding="utf-8", newline="") as stream:
        if name.lower().endswith(".csv"):
            yield from _csv_rows(stream)
        else:
            yield from read_lines(stream)


_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``, lower-cased (user info dropped): the unit of the
    per-host connection cap and of the grouping into shards.

    A regular expression rather than ``urlsplit``: this runs once per manifest row on
    the client, and ``urlsplit`` was a quarter of the client's time there.
    """
    match = _AUTHORITY.match(url)
    return match.group(1).rpartition("@")[2].lower() if match else ""


def _segment(text: str) -> str:
    for sep in ("/", "\\", os.sep, "\0"):
        text = text.replace(sep, "_")
    text = text.strip()
    return "_" if text in ("", ".", "..") else text


def mirror_path(url: str) -> str:
    """Where ``url`` goes when its row names no path: ``host[_port]/path/of/the/url``.

    Each segment is decoded and made safe (no separators, no ``.``/``..``); a path that
    ends with ``/`` gets ``index.html``; a query adds ``_q`` and 12 hex digits of its
    SHA-256 to the file name.  Two different URLs map to different paths (up to the
    query's digest, and to URLs that differ only in characters made safe), and the same
    URL always to the same path, so a job run again finds its files.
    """
    parts = urlsplit(url)
    host = _segment(parts.netloc.rpartition("@")[2].lower().replace(":", "_"))
    segments = [_segment(unquote(s)) for s in parts.path.split("/") if s]
    if not segments or parts.path.endswith("/"):
        segments.append("index.html")
    if parts.query:
        digest = hashlib.sha256(parts.query.encode("utf-8", "surrogatepass")).hexdigest()
        segments[-1] += f"_q{digest[:12]}"
    return os.path.join(host, *segments)


def shards(rows: Iterable[Row], files_per_task: int) -> Iterator[list[Row]]:
    """``rows`` in lists of at most ``files_per_task``, each from one host where the list
    allows it: a shard's files then share the connections a downloader keeps open, and
    hold the per-host cap of one host only.

    Rows wait in a buffer per host until ``files_per_task`` of one host are there; when
    more than ``32 * files_per_task`` wait in all, the fullest buffer goes out as it is.
    So a list sorted or clustered by host gives full one-host shards, and memory stays
    bounded whatever the order.
    """
    if files_per_task < 1:
        raise ValueError(f"files_per_task must be at least 1, got {files_per_task}")
    waiting: dict[str, list[Row]] = {}
    buffered = 0
    for row in rows:
        host = host_of(row.url)
        bucket = waiting.setdefault(host, [])
        bucket.append(row)
        buffered += 1
        if len(bucket) >= files_per_task:
            buffered -= len(bucket)
            del waiting[host]
            yield bucket
        elif buffered > _BUFFERED_SHARDS * files_per_task:
            fullest = waiting.pop(max(waiting, key=lambda h: len(waiting[h])))
            buffered -= len(fullest)
            yield fullest
    for bucket in waiting.values():
        yield bucket
