"""The client's side of a distributed job without a cluster: reading the manifest as a
stream, the default paths, the shards, the progress counts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tthsd_interface._jobprogress import JobProgress
from tthsd_interface._manifest import Row, mirror_path, read_manifest, shards
from tthsd_interface._shard import ResultRow


def test_a_text_manifest_tabs_spaces_comments(tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text(
        "# a comment\n\nhttp://h/a\nhttp://h/b  sub/b file.bin\n"
        "http://h/c\tc.bin\tsha256:" + "ab" * 32 + "\nhttp://h/d\t\tmd5:" + "0" * 32 + "\n",
        encoding="utf-8",
    )
    rows = list(read_manifest(f))
    assert rows == [
        Row(0, "http://h/a"),
        Row(1, "http://h/b", "sub/b file.bin"),
        Row(2, "http://h/c", "c.bin", "sha256:" + "ab" * 32),
        Row(3, "http://h/d", None, "md5:" + "0" * 32),
    ]


def test_a_csv_manifest(tmp_path: Path) -> None:
    f = tmp_path / "list.csv"
    f.write_text("URL,path,checksum,other\nhttp://h/a,,,x\nhttp://h/b,b.bin,,y\n")
    assert list(read_manifest(str(f))) == [Row(0, "http://h/a"), Row(1, "http://h/b", "b.bin")]
    (tmp_path / "bad.csv").write_text("link\nhttp://h/a\n")
    with pytest.raises(ValueError, match="url"):
        list(read_manifest(tmp_path / "bad.csv"))


def test_rows_of_an_iterable_and_checksums_zipped() -> None:
    items = ["http://h/a", ("http://h/b", "b"), {"url": "http://h/c", "checksum": "md5:1"}]
    rows = list(read_manifest(items, checksums=["md5:0", None, "md5:2"]))
    assert rows == [
        Row(0, "http://h/a", None, "md5:0"),
        Row(1, "http://h/b", "b"),
        Row(2, "http://h/c", None, "md5:1"),  # the row's own checksum wins
    ]
    with pytest.raises(TypeError):
        list(read_manifest([42]))
    with pytest.raises(ValueError, match="no URL"):
        list(read_manifest([("", "x")]))


def test_the_manifest_is_streamed() -> None:
    endless = (f"http://h/{i}" for i in itertools.count())
    first = list(itertools.islice(shards(read_manifest(endless), 10), 3))
    assert [len(s) for s in first] == [10, 10, 10]


def test_mirror_paths() -> None:
    assert mirror_path("http://Example.org:8080/a/b%20c.bin") == "example.org_8080/a/b c.bin"
    assert mirror_path("https://h/") == "h/index.html"
    assert mirror_path("https://h/dir/") == "h/dir/index.html"
    assert mirror_path("https://h/../x/%2e%2e/y%2Fz") == "h/_/x/_/y_z"
    a, b = mirror_path("http://h/i?id=1"), mirror_path("http://h/i?id=2")
    assert a != b and a.startswith("h/i_q")


def test_shards_group_by_host_with_bounded_buffers() -> None:
    rows = [Row(i, f"http://h{i % 2}/{i}") for i in range(10)]
    out = list(shards(rows, 3))
    assert sorted(r.index for s in out for r in s) == list(range(10))
    assert all(len({r.url.split("/")[2] for r in s}) == 1 for s in out)
    # 1000 hosts, one file each: shards go out before the list ends
    many = (Row(i, f"http://h{i}/x") for i in range(1000))
    gen = shards(many, 2)
    assert len(next(gen)) == 1
    with pytest.raises(ValueError):
        next(shards([], 0))


def _row(index: int, ok: bool, size: int) -> ResultRow:
    return ResultRow(index, "u", "p", ok, size, 0.0, None if ok else "x", None if ok else "y")


def test_progress_counts_replace_a_rerun_shard_and_ignore_late_events() -> None:
    calls: list[tuple[int, int, int]] = []
    meter = JobProgress(None, show=lambda *c: calls.append(c))
    meter.on_event((0.0, [0, 5, 500]))
    meter.on_event((0.0, [1, 2, 200]))
    meter.on_event((0.0, [0, 1, 100]))  # shard 0 run again after its worker died
    assert meter.counts() == (7, 700, 0)
    meter.shard_done(0, [_row(i, i != 3, 100) for i in range(10)])
    meter.on_event((0.0, [0, 3, 300]))  # late
    assert meter.counts() == (12, 1100, 1)
    assert calls[-1] == (12, 1100, 1)
    meter.close()
