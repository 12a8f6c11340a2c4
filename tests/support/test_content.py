"""The self-describing content: records, laziness, hashing, mismatch reports."""

from __future__ import annotations

import hashlib
import random

import pytest

from tests.support.content import (
    RECORD,
    Content,
    LiteralContent,
    assert_file_matches,
    first_mismatch,
    sha256_file,
)


def test_each_record_names_its_offset_and_salt() -> None:
    c = Content(100, "abcd")
    assert c.read(0, 32) == b"00000000000abcd\n00000000010abcd\n"
    assert c.expected_at(37) == b"00000000020abcd\n"
    assert c.read(96, 100) == b"0000"  # clipped to the file


def test_salts_make_files_differ_everywhere() -> None:
    a, b = Content(1 << 20, "a.bin"), Content(1 << 20, "b.bin")
    assert a.salt != b.salt
    da, db = a.bytes(), b.bytes()
    assert all(da[i : i + RECORD] != db[i : i + RECORD] for i in range(0, len(da), 4099 * 16))


def test_any_slice_matches_the_whole() -> None:
    size = 3 * (1 << 20) + 12345
    c = Content(size, "slices")
    whole = c.bytes()
    assert len(whole) == size
    rnd = random.Random(7)
    for _ in range(300):
        off = rnd.randrange(0, size + 10)
        n = rnd.randrange(0, 2 * (1 << 20))
        assert c.read(off, n) == whole[off : off + n]
    assert b"".join(c.iter_blocks(5, 1 << 20, block=1000)) == whole[5 : 5 + (1 << 20)]
    assert c.sha256() == hashlib.sha256(whole).hexdigest()


def test_offsets_past_4_gib_need_no_memory() -> None:
    c = Content(6 << 30, "huge")
    off = (5 << 30) + 48
    assert c.read(off, 16) == b"%011x" % off + c.salt.encode() + b"\n"
    assert c.read((6 << 30) - 3, 10) == c.read((6 << 30) - 16, 16)[-3:]


def test_first_mismatch_names_the_misplaced_record(tmp_path) -> None:
    c = Content(64 * 1024, "m")
    data = bytearray(c.bytes())
    data[4096:4112] = c.read(8192, 16)  # a record written at the wrong place
    p = tmp_path / "f"
    p.write_bytes(bytes(data))
    msg = first_mismatch(c, p)
    assert msg is not None and "offset 4103" in msg and "00000002000" in msg
    with pytest.raises(AssertionError):
        assert_file_matches(p, c)
    p.write_bytes(c.bytes()[:-1])
    assert "short" in (first_mismatch(c, p) or "")
    p.write_bytes(c.bytes() + b"x")
    assert "long" in (first_mismatch(c, p) or "")
    p.write_bytes(c.bytes())
    assert first_mismatch(c, p) is None
    assert sha256_file(p) == c.sha256()


def test_literal_content_has_the_same_interface() -> None:
    lit = LiteralContent(b"hello world")
    assert lit.size == 11 and lit.read(6, 100) == b"world"
    assert b"".join(lit.iter_blocks(1, 5, block=2)) == b"ello "
    assert lit.sha256() == hashlib.sha256(b"hello world").hexdigest()
    assert Content(0).sha256() == hashlib.sha256(b"").hexdigest()
