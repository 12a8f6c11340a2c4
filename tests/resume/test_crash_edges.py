"""Crashes at the worst moments for a journal the engine refused.

A refused journal (foreign, or not matching its part file) must be gone before the engine
rebuilds the part file: otherwise a SIGKILL before the first journal of the new download
leaves the old journal next to a part file of the very size it names, and the next
process would trust it and publish junk. Each test kills a child process
(tests.resume.child) right after the engine sized its part file, then lets a second child
finish, and checks the file byte-exact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.resume import journal
from tests.resume.crash_soak import Child
from tests.resume.helpers import MiB, plant
from tests.support.content import Content, first_mismatch, sha256_file
from tests.support.server import LoopbackServer

SIZE = 16 * MiB
ETAG = '"v1"'


def _env(lib_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["TTHSD_LIBRARY"] = str(lib_path)
    return env


def part_is_sized(size: int) -> Callable[[Path], bool]:
    def check(part: Path) -> bool:
        return part.stat().st_size == size

    return check


def holds(body: Content, offset: int) -> Callable[[Path], bool]:
    """The part file is ``body``'s size and holds ``body``'s record at ``offset``."""
    want = body.read(offset, 16)

    def check(part: Path) -> bool:
        if part.stat().st_size != body.size:
            return False
        with open(part, "rb") as f:
            f.seek(offset)
            return f.read(16) == want

    return check


def kill_when(lib_path: Path, url: str, save: Path, ready: Callable[[Path], bool]) -> None:
    """Start a child on ``url`` and SIGKILL it as soon as ``ready(part file)`` holds --
    well before its first journal write (one second into the transfer)."""
    child = Child(
        ["--url", url, "--save", str(save), "--threads", "4", "--chunk-mb", "1"],
        _env(lib_path),
        None,
    )
    try:
        assert child.wait_line("READY", 30), "child did not start"
        part = journal.part_path(save)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if ready(part):
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        else:
            pytest.fail("the part file never got ready for the kill")
    finally:
        child.kill()


def finish(lib_path: Path, url: str, save: Path) -> dict[str, object]:
    child = Child(
        ["--url", url, "--save", str(save), "--threads", "4", "--chunk-mb", "1"],
        _env(lib_path),
        None,
    )
    assert child.wait_line("READY", 30), "child did not start"
    assert child.finish(60), "the resuming child did not finish"
    assert child.result is not None
    return child.result


def test_refused_journal_cannot_come_back_after_a_crash(
    lib_path: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG, throttle=256 * 1024)
    save = tmp_path / "f.bin"
    # Same URL, same ETag, a valid seal, junk behind it; refused only because the part
    # file is one byte short of the size the journal names.
    plant(save, body, [(0, 12 * MiB)], res.url, etag=ETAG, part_bytes=Content(SIZE, "junk"))
    with open(journal.part_path(save), "r+b") as f:
        f.truncate(SIZE - 1)
    kill_when(lib_path, res.url, save, part_is_sized(SIZE))
    left = journal.read(save)
    assert left is None or journal.covered(left) != [(0, 12 * MiB)], (
        "the refused journal is still there, next to a part file it now matches"
    )
    res.throttle = None
    result = finish(lib_path, res.url, save)
    assert result["success"], result
    assert sha256_file(save) == body.sha256(), first_mismatch(body, save)


def test_journal_of_another_url_cannot_vouch_for_this_urls_bytes_after_a_crash(
    lib_path: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # B was being downloaded to save_path and left a journal. Then A is downloaded to the
    # same save_path and killed early. When B is downloaded again, the part file holds A's
    # bytes, at B's size: B's old journal must not be trusted for them.
    a = Content(SIZE, "/a.bin")
    b = Content(SIZE, "/b.bin")
    res_a = http_server.add("/a.bin", a, etag='"a"', throttle=MiB)
    res_b = http_server.add("/b.bin", b, etag='"b"')
    save = tmp_path / "f.bin"
    plant(save, b, [(0, MiB)], res_b.url, etag='"b"')
    # A's download begins from zero (the journal is B's) and rewrites the part file.
    kill_when(lib_path, res_a.url, save, holds(a, 0))
    with open(journal.part_path(save), "rb") as f:
        assert f.read(16) == a.read(0, 16), "A's first bytes are in the part file"
    result = finish(lib_path, res_b.url, save)
    assert result["success"], result
    assert sha256_file(save) == b.sha256(), first_mismatch(b, save)
