"""Where bytes land: paths with spaces, Unicode and very long names work; nothing is
written outside ``save_path`` and its temporary siblings (``.tthsd.part``,
``.tthsd.journal``, ``.tthsd.journal.tmp``), whatever the server says
(``Content-Disposition``) and whatever an attacker planted beside ``save_path``
(symbolic links where the temporary files or the file itself will be)."""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, assert_file, task
from tests.resume import journal
from tests.resume.helpers import outcome, plant
from tests.support.content import first_mismatch
from tests.support.server import LoopbackServer

SIBLINGS = (".tthsd.part", ".tthsd.journal", ".tthsd.journal.tmp")
NAME_MAX = 255


def _run(tthsd: Harness, lib: Lib, tasks: list[dict], *, threads: int = 4,  # type: ignore[type-arg]
         durable: bool = False):  # type: ignore[no-untyped-def]
    run = tthsd.create(tasks, threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, 3, 20, 40) == 0
    assert lib.tthsd_set_durability(run.id, durable) == 0
    assert run.start(multiple=True) == 0
    run.wait_end(30)
    run.events.wait_quiet(0.1, 1.0)
    return run


def _utf8_name(nbytes: int, unit: str, tail: str = ".bin") -> str:
    """A file name of exactly ``nbytes`` UTF-8 bytes made of ``unit`` then ``tail``."""
    body = nbytes - len(tail.encode())
    name = unit * (body // len(unit.encode()))
    name += "x" * (body - len(name.encode()))
    assert len((name + tail).encode()) == nbytes
    return name + tail


ODD_NAMES = {
    "spaces": "a file  with   spaces .bin",
    "leading dash and dots": "-rf ..bin",
    "unicode": "ファイル über naïve 名前 🚀.bin",
    "quotes and backslashes": "it's \"quoted\" \\ back.bin",
    "percent and hash": "100%20 #1 ?.bin",
    "newline and tab": "line\nbreak\ttab.bin",
    "nfd": unicodedata.normalize("NFD", "café.bin"),
}


@pytest.mark.scenario("paths with spaces, unicode and very long names")
def test_odd_names_land_exactly_where_asked(tthsd: Harness, lib: Lib,
                                            http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    tasks, bodies = [], {}
    folder = tmp_path / "dir with spaces" / "ünï cødé 📁"
    for i, name in enumerate(ODD_NAMES.values()):
        res = http_server.add(f"/odd{i}.bin", size=300_000 + i)
        tasks.append(task(res.url, folder / name, id=f"o{i}", show_name=name))
        bodies[name] = res.body
    # NFC and NFD spellings are two different files on Linux: both must exist.
    nfc = unicodedata.normalize("NFC", ODD_NAMES["nfd"])
    res = http_server.add("/nfc.bin", size=1000)
    tasks.append(task(res.url, folder / nfc, id="nfc"))
    bodies[nfc] = res.body
    run = _run(tthsd, lib, tasks)
    assert all(e.msg["Success"] for e in run.events.of("endOne")), run.events.types()
    for name, body in bodies.items():
        assert_file(folder / name, body)
    assert sorted(os.listdir(folder)) == sorted(bodies)


@pytest.mark.scenario("paths with spaces, unicode and very long names")
def test_a_very_deep_path(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                          tmp_path: Path) -> None:
    deep = tmp_path
    while len(os.fsencode(deep)) < 3800:
        deep = deep / ("d" * 200)
    res = http_server.add("/deep.bin", size=2 * MiB)
    run = _run(tthsd, lib, [task(res.url, deep / "deep.bin", id="t")])
    assert outcome(run, deep / "deep.bin", res.body).success


# Regression: the temporary siblings were the file name plus 11 to 18 bytes, so a name of
# 245-255 bytes failed with ENAMETOOLONG and, from 238 bytes, no journal was ever written
# (silently: a stopped download started again from zero).


@pytest.mark.scenario("paths with spaces, unicode and very long names")
@pytest.mark.parametrize("nbytes", [
    200, 244, 245, NAME_MAX,
])
def test_long_file_names_up_to_name_max(tthsd: Harness, lib: Lib,
                                        http_server: LoopbackServer, tmp_path: Path,
                                        nbytes: int) -> None:
    name = _utf8_name(nbytes, "é")
    res = http_server.add("/long.bin", size=3 * MiB)
    save = tmp_path / name
    run = _run(tthsd, lib, [task(res.url, save, id="t")])
    assert outcome(run, save, res.body).success


@pytest.mark.scenario("paths with spaces, unicode and very long names")
@pytest.mark.parametrize("nbytes", [
    200, 237, 238, NAME_MAX,
])
def test_long_file_names_resume_after_a_stop(tthsd: Harness, lib: Lib,
                                             http_server: LoopbackServer, tmp_path: Path,
                                             nbytes: int) -> None:
    # 237 + len(".tthsd.journal.tmp") == 255: the longest name whose siblings all fit as
    # name + suffix; longer names get shortened siblings, which must be found again.
    name = _utf8_name(nbytes, "é")
    res = http_server.add("/long.bin", size=4 * MiB, throttle=256 * 1024, etag='"v1"')
    save = tmp_path / name
    t = task(res.url, save, id="t")
    first = tthsd.create([t], threads=2)
    assert first.start() == 0
    # 2 s at the throttle on a quiet machine; a loaded CI box may take many times that.
    deadline = time.monotonic() + 30
    while first.stats().get("downloaded", 0) < MiB:
        assert first.stats().get("state") == "running", first.events.types()
        assert time.monotonic() < deadline, "1 MiB not on disk in 30 s"
        time.sleep(0.05)
    time.sleep(1.2)  # a journal is written about once a second
    assert first.stats()["state"] == "running"
    assert first.stop() == 0
    kept = first.stats().get("downloaded", 0)
    http_server.wait_idle(5)
    before = http_server.bytes_sent("/long.bin")
    res.throttle = None
    run = _run(tthsd, lib, [t])
    assert outcome(run, save, res.body).success
    again = http_server.bytes_sent("/long.bin") - before
    # The stop made the journal name every byte written: only the rest is fetched.
    assert again <= res.size - kept, f"fetched {again} bytes again of {res.size}; {kept} kept"


def test_a_name_past_name_max_is_a_clear_err(tthsd: Harness, lib: Lib,
                                             http_server: LoopbackServer,
                                             tmp_path: Path) -> None:
    res = http_server.add("/toolong.bin", size=MiB)
    save = tmp_path / ("n" * (NAME_MAX + 1))
    run = _run(tthsd, lib, [task(res.url, save, id="t")])
    errs = run.events.of("err")
    assert [e.msg["Code"] for e in errs] == ["io"], [e.msg for e in errs]
    assert "too long" in errs[0].msg["Error"].lower(), errs[0].msg
    assert os.listdir(tmp_path) == []


# -- nothing outside save_path and its siblings ---------------------------------------------


@pytest.mark.scenario("nothing written outside save_path and its temporary siblings")
def test_only_save_path_and_its_siblings_ever_appear(tthsd: Harness, lib: Lib,
                                                     http_server: LoopbackServer,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    res = http_server.add("/w.bin", size=6 * MiB, throttle=4 * MiB,
                          headers={"Content-Disposition": 'attachment; filename="../evil.sh"'})
    save = folder / "w.bin"
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for root, dirs, files in os.walk(tmp_path):
                for n in dirs + files:
                    seen.add(os.path.relpath(os.path.join(root, n), tmp_path))
            time.sleep(0.005)
    w = threading.Thread(target=watch)
    w.start()
    try:
        run = _run(tthsd, lib, [task(res.url, save, id="t")], durable=True)
    finally:
        stop.set()
        w.join()
    assert outcome(run, save, res.body).success
    allowed = {"dl", "dl/w.bin"} | {f"dl/w.bin{s}" for s in SIBLINGS}
    assert seen <= allowed, f"unexpected paths: {sorted(seen - allowed)}"
    assert "dl/w.bin.tthsd.part" in seen, "the watcher saw nothing of the download"
    assert sorted(os.listdir(folder)) == ["w.bin"]


@pytest.mark.scenario("nothing written outside save_path and its temporary siblings")
@pytest.mark.parametrize("planted", [
    # Regression: the part file was opened through a planted link (its target got the
    # download, and the link itself was published at save_path).
    "part, no journal",
    # Regression: a journal beside the link was trusted (its length check followed the
    # link), the link was replaced by an empty file, and the vouched-for ranges were
    # published as zeros.
    "part and journal",
    "save_path",
    "journal", "journal.tmp",
])
def test_a_planted_symlink_never_redirects_writes(tthsd: Harness, lib: Lib,
                                                  http_server: LoopbackServer,
                                                  tmp_path: Path, planted: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n" * 1000)
    before = victim.read_bytes()
    res = http_server.add("/s.bin", size=4 * MiB, throttle=3 * MiB, etag='"v1"')
    save = tmp_path / "dl" / "s.bin"
    save.parent.mkdir()
    if planted == "part and journal":
        # A journal that vouches for the first MiB of a part file that is the link.
        plant(save, res.body, [(0, MiB)], res.url, etag='"v1"')
        journal.part_path(save).unlink()
        victim.write_bytes(b"\0" * res.size)
        before = victim.read_bytes()
    link = {"part, no journal": ".tthsd.part", "part and journal": ".tthsd.part",
            "save_path": "", "journal": ".tthsd.journal",
            "journal.tmp": ".tthsd.journal.tmp"}[planted]
    os.symlink(victim, str(save) + link)
    run = _run(tthsd, lib, [task(res.url, save, id="t")], durable=True)
    out = outcome(run, save, res.body)
    assert victim.read_bytes() == before, "the download wrote through the planted link"
    assert not save.is_symlink(), "the planted link was published as the file"
    assert out.success


# -- two downloads, one save_path ------------------------------------------------------------

# Regression: two downloaders given one save_path at once used to share its temporary
# files (no claim): the one that finished first published a file that was not the one it
# downloaded, and reported success. Now the second one fails at once with Code io.


@pytest.mark.scenario("nothing written outside save_path and its temporary siblings")
def test_two_downloaders_with_one_save_path_never_publish_a_wrong_file(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    # Two files sent to one path by two downloaders of one process (or two processes),
    # the second starting when the first is under way: whatever ends at the path must be
    # exactly the file of the downloader whose success came last.
    a = http_server.add("/a.bin", size=8 * MiB, throttle=MiB, etag='"a"')
    b = http_server.add("/b.bin", size=8 * MiB, throttle=2 * MiB, etag='"b"')
    save = tmp_path / "same.bin"
    ra = tthsd.create([task(a.url, save, id="a")], threads=4)
    rb = tthsd.create([task(b.url, save, id="b")], threads=4)
    assert ra.start() == 0
    deadline = time.monotonic() + 10
    while ra.stats()["downloaded"] < 3 * MiB and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.1)  # a journal of the first download is on disk
    assert rb.start() == 0
    ra.wait_end(30)
    rb.wait_end(30)
    ends = sorted((r.events.of("endOne")[0] for r in (ra, rb)), key=lambda e: e.at)
    winners = [e.id for e in ends if e.msg["Success"]]
    if not winners:
        assert not save.exists()
        return
    want = {"a": a.body, "b": b.body}[winners[-1]]
    assert save.exists(), f"{winners} succeeded, yet nothing is at {save}"
    problem = first_mismatch(want, save)
    assert problem is None, (
        f"{winners[-1]!r} published last, yet the file is not its: {problem}; "
        f"also {first_mismatch({'a': b.body, 'b': a.body}[winners[-1]], save)} "
        f"for the other")
