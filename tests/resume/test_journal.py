"""The journal beside a download: what it records, and when it must not be trusted.

A journal that is truncated, edited, foreign (another URL, another size) or that does not
match its part file must never be trusted: the tests plant such a journal over a part file
full of junk, so trusting it would publish junk, and check that the download restarts
from zero and ends byte-exact. They also pin what a stop leaves on disk, the checksum
(mismatch: ``err`` ``checksum_mismatch`` and nothing published) and the instant
completion of a file already at save_path.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.abi.lib import Harness, check_events, task
from tests.resume import journal
from tests.resume.helpers import MiB, download, fetched, gets, outcome, plant
from tests.support.content import Content, sha256_file
from tests.support.server import LoopbackServer

SIZE = 6 * MiB
ETAG = '"v1"'
DATE = "Tue, 03 Nov 2026 10:00:00 GMT"


def junk_plant(save: Path, body: Content, url: str, **kw: object) -> None:
    """A part file full of junk where the journal (if trusted) says the file is."""
    plant(save, body, [(0, 4 * MiB)], url, etag=ETAG, part_bytes=Content(SIZE, "junk"), **kw)  # type: ignore[arg-type]


def assert_restarted(srv: LoopbackServer, path: str) -> None:
    first = gets(srv, path)[0]
    assert first.range_spec is not None and first.range_spec[0] == 0, first.range_header
    assert first.headers.get("If-Range") is None, "a restart is not conditional"


# -- journals that must not be trusted ---------------------------------------------------

Spoil = Callable[[bytes], bytes]


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


SPOILED: dict[str, Spoil] = {
    "empty": lambda d: b"",
    "cut-in-json": lambda d: d[: len(d) // 3],
    "no-digest": lambda d: d.split(b"\n")[0] + b"\n",
    "cut-in-digest": lambda d: d[:-20],
    "json-byte-flipped": lambda d: _flip(d, 40),
    "digest-byte-flipped": lambda d: _flip(d, len(d) - 5),
    "binary-garbage": lambda d: bytes(range(256)) * 4,
    "not-utf8": lambda d: d.replace(b'"url"', b'"\xff\xfe"'),
    "lines-swapped": lambda d: b"\n".join(reversed(d.rstrip(b"\n").split(b"\n"))) + b"\n",
}


@pytest.mark.parametrize("how", sorted(SPOILED))
def test_torn_or_corrupt_journal_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, how: str
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    junk_plant(save, body, res.url)
    jp = journal.journal_path(save)
    jp.write_bytes(SPOILED[how](jp.read_bytes()))
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert_restarted(http_server, "/f.bin")


def _resealed(**changes: object) -> Callable[[dict[str, object]], dict[str, object]]:
    def edit(body: dict[str, object]) -> dict[str, object]:
        body.update(changes)
        return body

    return edit


INCONSISTENT: dict[str, Callable[[dict[str, object]], dict[str, object]]] = {
    "range-past-total": _resealed(ranges=[[0, SIZE + 1]]),
    "unsorted-ranges": _resealed(ranges=[[2 * MiB, 3 * MiB], [0, MiB]]),
    "overlapping-ranges": _resealed(ranges=[[0, 2 * MiB], [MiB, 3 * MiB]]),
    "empty-range": _resealed(ranges=[[MiB, MiB]]),
    "other-format": _resealed(format="other-journal"),
    "other-version": _resealed(version=2),
    "total-not-a-number": _resealed(total="6291456"),
    "missing-ranges": lambda b: {k: v for k, v in b.items() if k != "ranges"},
}


@pytest.mark.parametrize("how", sorted(INCONSISTENT))
def test_well_sealed_but_inconsistent_journal_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, how: str
) -> None:
    # The digest is right (recomputed after the edit): only the content check can refuse.
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    junk_plant(save, body, res.url)
    jp = journal.journal_path(save)
    sealed = journal.decode(jp.read_bytes())
    assert sealed is not None
    jp.write_bytes(journal.encode(INCONSISTENT[how](sealed)))
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert_restarted(http_server, "/f.bin")


def test_journal_of_another_url_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    # Same server, same size, same ETag: only the URL differs.
    junk_plant(save, body, res.url, journal_url=http_server.url("/other.bin"))
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert_restarted(http_server, "/f.bin")


def test_journal_of_another_size_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    # Journal and part file agree with each other on a size the server does not have.
    plant(
        save,
        body,
        [(0, 4 * MiB)],
        res.url,
        etag=ETAG,
        total=SIZE + MiB,
        part_bytes=Content(SIZE + MiB, "junk"),
    )
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


@pytest.mark.parametrize("delta", [-1, +1, -SIZE])
def test_part_file_of_another_length_than_the_journal_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, delta: int
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    junk_plant(save, body, res.url)
    with open(journal.part_path(save), "r+b") as f:
        f.truncate(SIZE + delta)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert_restarted(http_server, "/f.bin")


def test_journal_without_its_part_file_is_never_trusted(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    junk_plant(save, body, res.url)
    journal.part_path(save).unlink()
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert_restarted(http_server, "/f.bin")


# -- the file changed on the server between runs ----------------------------------------


@pytest.mark.parametrize("change", ["etag", "size", "etag+size", "last-modified"])
def test_file_changed_on_the_server_between_runs_restarts_from_zero(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, change: str
) -> None:
    old = Content(SIZE, "/f.bin")
    new = Content(SIZE + (MiB + 3 if "size" in change else 0), "/f.bin v2")
    if change == "last-modified":
        res = http_server.add("/f.bin", new, last_modified="Wed, 04 Nov 2026 10:00:00 GMT")
        vals = {"last_modified": DATE}
    else:
        res = http_server.add("/f.bin", new, etag='"v2"' if "etag" in change else ETAG)
        vals = {"etag": ETAG}
    save = tmp_path / "f.bin"
    plant(save, old, [(0, 4 * MiB)], res.url, **vals)  # type: ignore[arg-type]
    run = download(tthsd, res.url, save)
    assert outcome(run, save, new).success
    first = gets(http_server, "/f.bin")[0]
    assert first.headers.get("If-Range") == next(iter(vals.values())), first.headers


def test_unchanged_file_resumes_with_if_range_and_fetches_only_the_gaps(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG, last_modified=DATE)
    save = tmp_path / "f.bin"
    have = plant(
        save,
        body,
        [(0, MiB), (2 * MiB, 3 * MiB + 77), (5 * MiB, SIZE)],
        res.url,
        etag=ETAG,
        last_modified=DATE,
    )
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    reqs = gets(http_server, "/f.bin")
    assert reqs[0].range_spec is not None and reqs[0].range_spec[0] == MiB, reqs[0].range_header
    assert all(r.headers.get("If-Range") == ETAG for r in reqs), "strong ETag, every request"
    sent = journal.union((r.served[0], r.served[0] + r.bytes_sent) for r in reqs if r.served)
    assert journal.intersect(sent, have) == [], "a byte the journal vouched for was refetched"
    # Only the gaps, each once. A connection is judged a crawl only after 240 ms (plan.rs,
    # CRAWL_EVIDENCE): before that, one starved of CPU for a moment on a loaded machine
    # lost its whole piece to a take-over while the piece sat in its socket (0.75 MiB
    # twice, 2 runs in 12 under 6 busy loops; 0 in 20 since). The margin is for a box
    # starved longer than that.
    gaps = SIZE - journal.size(have)
    served = [(r.range_header, r.bytes_sent) for r in reqs]
    assert gaps <= fetched(http_server, "/f.bin") <= gaps + MiB // 2, served


# -- what a stop leaves on disk, and resuming it in the same and another downloader -------


def test_stop_leaves_a_journal_that_names_the_bytes_on_disk(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(16 * MiB, "/slow.bin")
    res = http_server.add("/slow.bin", body, etag=ETAG, last_modified=DATE, throttle=2 * MiB)
    http_server.add("/go", redirect=res.url)
    url = http_server.url("/go")
    save = tmp_path / "slow.bin"
    t = task(url, save, id="t")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.events.wait_for(
        lambda e: e.type == "update" and e.msg["Downloaded"] > 3 * MiB,
        timeout=20,
        what="3 MiB on disk",
    )
    assert run.stop() == 0
    j = journal.read(save)
    assert j is not None, journal.siblings(save)
    assert (j["format"], j["version"], j["url"], j["final_url"], j["total"]) == (
        "tthsd-journal",
        1,
        url,
        res.url,
        body.size,
    )
    assert j["validators"] == {"etag": ETAG, "last_modified": DATE}
    listed = journal.covered(j)
    assert journal.size(listed) >= 3 * MiB
    with open(journal.part_path(save), "rb") as f:
        for s, e in listed:
            f.seek(s)
            assert f.read(e - s) == body.read(s, e - s), f"journal lists [{s}, {e})"
    assert not save.exists()
    # A new downloader (as a new process would) resumes: conditional, only the gaps.
    http_server.wait_idle(5)
    http_server.clear()
    res.throttle = None
    run2 = download(tthsd, url, save)
    assert outcome(run2, save, body).success
    reqs = gets(http_server, "/slow.bin")
    assert all(r.headers.get("If-Range") == ETAG for r in reqs)
    assert fetched(http_server, "/slow.bin") <= body.size - journal.size(listed) + 4 * MiB // 4


# -- checksum ----------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_checksum_mismatch_is_an_err_and_nothing_is_published(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, algo: str
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    wrong = hashlib.new(algo, b"not this file").hexdigest()
    run = download(tthsd, res.url, save, checksum=f"{algo}:{wrong}")
    out = outcome(run, save, body)
    assert not out.success and out.code == "checksum_mismatch", out.err
    assert wrong in out.err.msg["Error"]  # type: ignore[union-attr]
    # Not resumable: a later attempt must not build on bytes that failed verification.
    assert not journal.journal_path(save).exists()
    # And with the right checksum, the next attempt succeeds.
    run2 = download(
        tthsd, res.url, save, checksum=f"{algo}:" + hashlib.new(algo, body.bytes()).hexdigest()
    )
    assert outcome(run2, save, body).success


def test_checksum_mismatch_keeps_an_older_file_at_save_path(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    save.write_bytes(b"the user's older file\n")
    run = download(tthsd, res.url, save, checksum="sha256:" + "0" * 64)
    codes = [e.msg.get("Code") for e in run.events.of("err")]
    assert codes == ["checksum_mismatch"], codes
    assert save.read_bytes() == b"the user's older file\n"


def test_checksum_mismatch_after_a_resume(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # The planted half is junk the journal vouches for (a lying journal, or a disk that
    # rotted): only the checksum can catch it, and then nothing is published.
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    junk_plant(save, body, res.url)
    run = download(tthsd, res.url, save, checksum="sha256:" + body.sha256())
    out = outcome(run, save, body)
    assert not out.success and out.code == "checksum_mismatch", out.err


# -- instant completion ---------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_file_already_at_save_path_with_matching_checksum_completes_at_once(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, algo: str
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    save.write_bytes(body.bytes())
    before = save.stat().st_mtime_ns
    t0 = time.monotonic()
    t = task(
        res.url, save, id="t", checksum=f"{algo}:" + hashlib.new(algo, body.bytes()).hexdigest()
    )
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.wait_end(10)
    run.events.wait_quiet(0.1, 1.0)
    assert time.monotonic() - t0 < 5
    check_events(run.events, [t], sizes={"t": SIZE})
    assert run.events.types() == ["start", "startOne", "update", "endOne", "end"], (
        run.events.types()
    )
    up = run.events.of("update")[0].msg
    assert (up["Downloaded"], up["Total"]) == (SIZE, SIZE), up
    http_server.wait_idle(5)
    assert http_server.requests("/f.bin") == [], "nothing may be fetched"
    assert run.stats()["bytes_fetched"] == 0
    assert save.stat().st_mtime_ns == before and sha256_file(save) == body.sha256()


def test_file_at_save_path_that_does_not_match_the_checksum_is_replaced(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    save.write_bytes(Content(SIZE, "older").bytes())
    run = download(tthsd, res.url, save, checksum="sha256:" + body.sha256())
    assert outcome(run, save, body).success
    assert fetched(http_server, "/f.bin") == SIZE


# -- nothing left beside a finished file ---------------------------------------------------


def test_instant_completion_removes_a_stale_partial_download(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(SIZE, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    # Regression: the stale part file and journal stayed beside the finished file.
    plant(save, body, [(0, MiB)], res.url, etag=ETAG)
    save.write_bytes(body.bytes())
    run = download(tthsd, res.url, save, checksum="sha256:" + body.sha256())
    assert fetched(http_server, "/f.bin") == 0
    assert outcome(run, save, body).success  # no sibling left


def test_journal_tmp_left_by_a_torn_write_is_removed(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    body = Content(2 * MiB, "/f.bin")
    res = http_server.add("/f.bin", body, etag=ETAG)
    save = tmp_path / "f.bin"
    # As a kill between File::create and rename in Journal::store leaves it. Regression:
    # nothing removed it unless a later journal write happened to reuse the name.
    Path(str(journal.journal_path(save)) + ".tmp").write_bytes(b'{"format":"tthsd-jour')
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success  # no sibling left


# -- pause, the file changes, resume (progress kept in memory, same downloader) -----------


@pytest.mark.parametrize("change", ["etag", "size"])
def test_file_changed_during_a_pause_restarts_from_zero(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path, change: str
) -> None:
    old = Content(12 * MiB, "/p.bin")
    new = Content(12 * MiB + (MiB + 1 if change == "size" else 0), "/p.bin v2")
    res = http_server.add("/p.bin", old, etag=ETAG, throttle=2 * MiB)
    save = tmp_path / "p.bin"
    t = task(res.url, save, id="t")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.events.wait_for(
        lambda e: e.type == "update" and e.msg["Downloaded"] > 2 * MiB,
        timeout=20,
        what="2 MiB on disk",
    )
    assert run.pause() == 0
    http_server.wait_idle(5)
    res.body, res.throttle = new, None
    res.etag = '"v2"' if change == "etag" else ETAG
    assert run.resume() == 0
    run.wait_end(30)
    run.events.wait_quiet(0.1, 1.0)
    assert outcome(run, save, new).success


def test_pause_while_the_file_is_being_published_keeps_the_file(
    tthsd: Harness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # 128 MiB written at loopback speed leave plenty of dirty pages: the fsync before the
    # rename takes long enough for a pause to land inside finalize. Regression: the
    # pause dropped the future awaiting the publish, which went on without updating the
    # task; the resume published an empty part file over the good one, with Success.
    body = Content(128 * MiB, "/big.bin")
    res = http_server.add("/big.bin", body, etag=ETAG)
    save = tmp_path / "big.bin"
    t = task(res.url, save, id="t")
    run = tthsd.start([t], threads=8, chunk_mb=8)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = run.stats()["tasks"][0]
        if st["total"] and st["downloaded"] >= st["total"]:
            break  # every byte written: finalize (verify, fsync, rename) is running
    assert run.pause() == 0, "the run ended before the pause: nothing tested"
    deadline = time.monotonic() + 10
    while not save.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.resume() == 0
    run.wait_end(60)
    run.events.wait_quiet(0.1, 1.0)
    assert outcome(run, save, body).success
