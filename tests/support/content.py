"""Deterministic test content that encodes its own offsets.

A file is a prefix of an endless stream of 16-byte records. The record that starts at
byte offset ``o`` (always a multiple of 16) is::

    <o as 11 lower-case hex digits><salt: 4 characters>\\n

for example ``00000000010a3f9\\n`` is the second record of a file whose salt is ``a3f9``.
So:

* every byte knows where it belongs: a range written at the wrong place, a range served
  twice, or a hole shows up as a record whose digits disagree with its position
  (:func:`first_mismatch` says where and what was found instead);
* two files with different salts differ at every record, so bytes of one file landing in
  another are caught too;
* 11 hex digits cover offsets up to 16 TiB, so files past 4 GiB work.

Nothing is stored: :meth:`Content.read` builds any ``(offset, length)`` slice on demand,
one 1 MiB block at a time (a copy of a per-salt template with the block's high digits
stamped in by strided slice assignment, so generation runs at memory speed), which keeps
a multi-GiB "file" free. :meth:`Content.sha256` hashes the whole file streaming and
caches the result.

:class:`LiteralContent` wraps plain ``bytes`` behind the same interface, for bodies that
must be something else (an error page, a "new version" of a file).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "RECORD",
    "assert_file_matches",
    "Body",
    "Content",
    "LiteralContent",
    "first_mismatch",
    "salt_for",
    "sha256_file",
]

#: Size of one self-describing record.
RECORD = 16
_DIGITS = 11
_SALT_LEN = 4
#: Generation block: 2**20 bytes = 2**16 records, so inside a block the low 5 hex digits of
#: the offset depend only on the record's index and the high 6 only on the block.
_BLOCK = 1 << 20
_LOW_DIGITS = 5
_HIGH_DIGITS = _DIGITS - _LOW_DIGITS
_MAX_SIZE = 16**_DIGITS


class Body(Protocol):
    """What a server resource serves: a sized, randomly readable byte source."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def iter_blocks(
        self, offset: int = 0, length: int | None = None, block: int = 256 * 1024
    ) -> Iterator[bytes]: ...

    def sha256(self) -> str: ...


def salt_for(name: str) -> str:
    """The 4-character salt used for a file called ``name`` (stable across runs)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:_SALT_LEN]


_template_lock = threading.Lock()
_templates: dict[bytes, bytes] = {}


def _template(salt: bytes) -> bytes:
    """One block of records for ``salt`` with the high offset digits left as ``0``."""
    with _template_lock:
        tpl = _templates.get(salt)
        if tpl is None:
            tail = salt + b"\n"
            tpl = b"".join(
                b"0" * _HIGH_DIGITS + b"%05x" % (i * RECORD) + tail
                for i in range(_BLOCK // RECORD)
            )
            _templates[salt] = tpl
        return tpl


class Content:
    """A file of ``size`` bytes made of self-describing records (see the module doc).

    ``salt`` is either a 4-character string used as is, or any other string, which is
    hashed into one (so ``Content(1000, "a.bin")`` and ``Content(1000, "b.bin")`` differ).
    """

    def __init__(self, size: int, salt: str = "data") -> None:
        if size < 0 or size > _MAX_SIZE:
            raise ValueError(f"size out of range: {size}")
        if len(salt) != _SALT_LEN or not salt.isascii() or "\n" in salt:
            salt = salt_for(salt)
        self._size = size
        self.salt = salt
        self._salt = salt.encode("ascii")
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"Content(size={self._size}, salt={self.salt!r})"

    @property
    def size(self) -> int:
        return self._size

    def _block(self, index: int) -> bytes:
        with self._lock:
            blk = self._cache.get(index)
            if blk is not None:
                self._cache.move_to_end(index)
                return blk
        buf = bytearray(_template(self._salt))
        high = b"%06x" % index  # block index == offset >> 20 == the high 6 hex digits
        n = _BLOCK // RECORD
        for j in range(_HIGH_DIGITS):
            if high[j] != 0x30:  # the template already holds '0'
                buf[j::RECORD] = high[j : j + 1] * n
        blk = bytes(buf)
        with self._lock:
            self._cache[index] = blk
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return blk

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)``, clipped to the file."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        parts = []
        pos = offset
        while pos < end:
            index, inner = divmod(pos, _BLOCK)
            take = min(_BLOCK - inner, end - pos)
            blk = self._block(index)
            parts.append(blk if (inner == 0 and take == _BLOCK) else blk[inner : inner + take])
            pos += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_blocks(
        self, offset: int = 0, length: int | None = None, block: int = 256 * 1024
    ) -> Iterator[bytes]:
        """Yield ``[offset, offset + length)`` (to the end when ``length`` is None) in
        pieces of at most ``block`` bytes."""
        end = self._size if length is None else min(self._size, offset + length)
        pos = offset
        while pos < end:
            take = min(block, end - pos)
            yield self.read(pos, take)
            pos += take

    def bytes(self) -> bytes:
        """The whole file in memory (for small files only)."""
        return self.read(0, self._size)

    def sha256(self) -> str:
        """Hex SHA-256 of the whole file, computed streaming, cached."""
        if self._digest is None:
            h = hashlib.sha256()
            for blk in self.iter_blocks(block=_BLOCK):
                h.update(blk)
            self._digest = h.hexdigest()
        return self._digest

    def expected_at(self, offset: int) -> bytes:
        """The record that covers ``offset`` (useful in assertion messages)."""
        start = offset - offset % RECORD
        return b"%011x" % start + self._salt + b"\n"


class LiteralContent:
    """Plain ``bytes`` behind the :class:`Body` interface."""

    def __init__(self, data: bytes | str) -> None:
        self.data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"LiteralContent({len(self.data)} bytes)"

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def iter_blocks(
        self, offset: int = 0, length: int | None = None, block: int = 256 * 1024
    ) -> Iterator[bytes]:
        end = len(self.data) if length is None else min(len(self.data), offset + length)
        for pos in range(offset, end, block):
            yield self.data[pos : min(pos + block, end)]

    def bytes(self) -> bytes:
        return self.data

    def sha256(self) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self.data).hexdigest()
        return self._digest


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file on disk, streaming."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            blk = f.read(block)
            if not blk:
                break
            h.update(blk)
    return h.hexdigest()


def first_mismatch(
    expected: Body, path: str | os.PathLike[str], block: int = 1 << 20
) -> str | None:
    """Compare a file on disk with ``expected``; ``None`` when identical, else a sentence
    naming the first differing offset and, for :class:`Content`, which record was found
    there (so "bytes from offset X written at offset Y" is visible in a failure)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < max(size, expected.size):
            got = f.read(block)
            want = expected.read(pos, block)
            if got != want:
                n = min(len(got), len(want))
                i = next((k for k in range(n) if got[k] != want[k]), n)
                where = pos + i
                if where >= size:
                    return f"file is short: {size} bytes, expected {expected.size}"
                if where >= expected.size:
                    return f"file is long: {size} bytes, expected {expected.size}"
                rec_start = (where - where % RECORD) - pos
                found = got[max(rec_start, 0) : rec_start + RECORD]
                want_rec = want[max(rec_start, 0) : rec_start + RECORD]
                return (
                    f"first difference at offset {where} (of {expected.size}): "
                    f"expected record {want_rec!r}, found {found!r}"
                )
            pos += block
    return None


def assert_file_matches(path: str | os.PathLike[str], expected: Body) -> None:
    """Raise AssertionError naming the first wrong byte unless the file at ``path`` is
    exactly ``expected``."""
    problem = first_mismatch(expected, path)
    if problem is not None:
        raise AssertionError(f"{os.fspath(path)}: {problem}")
