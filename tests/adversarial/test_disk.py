"""The disk fights back: it fills mid-download (a small tmpfs), it is read-only, the
destination is a folder or sits under a file. Each ends in one ``err`` with a clear
``Code`` (``disk_full`` or ``io``), quickly, with nothing published at ``save_path`` and
nothing of the user's touched; a download that failed for room resumes once there is
room."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, assert_file, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer

Mount = Callable[..., Path]


def _run(tthsd: Harness, lib: Lib, tasks: list[dict], *, multiple: bool = False):  # type: ignore[no-untyped-def,type-arg]
    run = tthsd.create(tasks, threads=4, chunk_mb=1)
    assert lib.set_retry_config(run.id, 3, 20, 40) == 0
    assert lib.tthsd_set_durability(run.id, False) == 0
    t0 = time.monotonic()
    assert run.start(multiple=multiple) == 0
    run.wait_end(30)
    run.events.wait_quiet(0.1, 1.0)
    run.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return run


@pytest.mark.scenario("disk fills mid-download: disk_full, nothing at save_path")
def test_a_disk_that_fills_mid_download(tthsd: Harness, lib: Lib,
                                        http_server: LoopbackServer, tmpfs: Mount) -> None:
    disk = tmpfs("4m")
    res = http_server.add("/big.bin", size=8 * MiB)
    save = disk / "big.bin"
    run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "disk_full", out.err
    assert run.seconds < 5.0, f"a full disk took {run.seconds:.1f}s to report"  # type: ignore[attr-defined]
    # The server sent some bytes before the disk filled: it failed mid-download.
    assert http_server.bytes_sent("/big.bin") > MiB


@pytest.mark.scenario("disk fills mid-download: disk_full, nothing at save_path")
def test_two_files_filling_a_disk_together_both_fail_cleanly(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmpfs: Mount) -> None:
    disk = tmpfs("6m")
    a = http_server.add("/a.bin", size=5 * MiB)
    b = http_server.add("/b.bin", size=5 * MiB)
    tasks = [task(a.url, disk / "a.bin", id="a", show_name="a"),
             task(b.url, disk / "b.bin", id="b", show_name="b")]
    run = _run(tthsd, lib, tasks, multiple=True)
    errs = {e.id: e.msg["Code"] for e in run.events.of("err")}
    ends = {e.id: e.msg["Success"] for e in run.events.of("endOne")}
    assert set(ends) == {"a", "b"}
    for tid, res in (("a", a), ("b", b)):
        save = disk / f"{tid}.bin"
        if ends[tid]:
            assert_file(save, res.body)
        else:
            assert errs[tid] == "disk_full", errs
            assert not save.exists()
    assert not all(ends.values()), "10 MiB fitted in 6 MiB?"


@pytest.mark.scenario("disk fills mid-download: disk_full, nothing at save_path")
def test_a_download_that_ran_out_of_room_resumes_once_there_is_room(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmpfs: Mount) -> None:
    disk = tmpfs("8m")
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (5 * MiB))
    res = http_server.add("/r.bin", size=6 * MiB)
    save = disk / "r.bin"
    run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
    assert outcome(run, save, res.body).code == "disk_full"
    first = http_server.bytes_sent("/r.bin")
    filler.unlink()
    http_server.clear()
    run.events.items.clear()
    assert run.start() == 0
    run.wait_end(30)
    assert outcome(run, save, res.body).success
    again = http_server.bytes_sent("/r.bin")
    assert again < res.size, f"restarted from zero: {again} bytes after {first}"


@pytest.mark.scenario("unwritable destination")
def test_a_read_only_file_system(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                 tmpfs: Mount) -> None:
    disk = tmpfs("4m", "ro")
    res = http_server.add("/ro.bin", size=2 * MiB)
    save = disk / "sub" / "ro.bin"
    run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "io", out.err
    assert "read-only" in out.err.msg["Error"].lower(), out.err.msg
    assert len(http_server.requests("/ro.bin")) <= 1, "an unwritable disk is not retried"


@pytest.mark.scenario("unwritable destination")
def test_a_destination_under_a_regular_file(tthsd: Harness, lib: Lib,
                                            http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    blocker = tmp_path / "plain.txt"
    blocker.write_text("mine\n")
    res = http_server.add("/f.bin", size=MiB)
    save = blocker / "f.bin"
    run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "io", out.err
    assert blocker.read_text() == "mine\n"


@pytest.mark.scenario("unwritable destination")
def test_a_destination_that_is_a_folder_is_left_alone(tthsd: Harness, lib: Lib,
                                                      http_server: LoopbackServer,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    res = http_server.add("/d.bin", size=MiB)
    run = _run(tthsd, lib, [task(res.url, folder, id="t", show_name="t")])
    ends = run.events.of("endOne")
    assert ends and ends[0].msg["Success"] is False, run.events.types()
    assert run.events.of("err")[0].msg["Code"] == "io"
    assert folder.is_dir() and (folder / "keep.txt").read_text() == "mine\n"
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


@pytest.mark.scenario("unwritable destination")
def test_a_destination_that_root_cannot_write_either(tthsd: Harness, lib: Lib,
                                                    http_server: LoopbackServer,
                                                    tmp_path: Path) -> None:
    # Root ignores mode bits; an immutable folder (chattr +i) stops even root.
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.system(f"chattr +i {folder} 2>/dev/null") != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        res = http_server.add("/l.bin", size=MiB)
        save = folder / "l.bin"
        run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
        out = outcome(run, save, res.body)
        assert not out.success and out.code == "io", out.err
    finally:
        os.system(f"chattr -i {folder}")


@pytest.mark.scenario("disk fills mid-download: disk_full, nothing at save_path")
@pytest.mark.parametrize("framing,ranges", [("chunked", False), ("close", False),
                                            ("length", True)])
def test_an_endless_body_fills_the_disk_not_the_memory(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmpfs: Mount,
        framing: str, ranges: bool) -> None:
    # 1 TiB of content generated on demand: only the disk can stop it.
    from tests.support.content import Content

    disk = tmpfs("8m")
    res = http_server.add("/endless.bin", body=Content(1 << 40, "endless"), framing=framing,
                          ranges=ranges)
    save = disk / "endless.bin"
    run = _run(tthsd, lib, [task(res.url, save, id="t", show_name="t")])
    errs = [e.msg for e in run.events.of("err")]
    assert [m["Code"] for m in errs] == ["disk_full"], errs
    assert not save.exists()
    assert run.seconds < 10.0, f"took {run.seconds:.1f}s"  # type: ignore[attr-defined]
