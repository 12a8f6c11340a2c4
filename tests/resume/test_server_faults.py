"""One test per server behaviour of issue 5 that must never corrupt a file.

Each runs against the loopback server of tests/support, with content that encodes its
own offsets (so a misplaced range shows up as a record whose digits disagree with its
place), and ends with the same rule (helpers.outcome): a byte-exact file at save_path,
or an ``err`` event with a known ``Code`` and nothing at save_path. Resume cases start
from a part file and journal planted as a killed process would have left them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.abi.lib import Harness
from tests.resume import journal
from tests.resume.helpers import MiB, download, fetched, gets, outcome, plant
from tests.support.content import Content
from tests.support.server import (
    LoopbackServer,
    RequestRecord,
    Response,
    close_after,
    serve_from,
    shift_body,
)

SIZE = 8 * MiB
ETAG = '"v1"'
DATE = "Tue, 03 Nov 2026 10:00:00 GMT"

Hook = Callable[[RequestRecord, Response], "Response | None"]
Pick = Callable[[RequestRecord], bool]


# -- scripted misbehaviour (hooks on top of the support server's hook API) ----------------


def ranged(req: RequestRecord) -> bool:
    return req.range_spec is not None


def nth_at_least(k: int) -> Pick:
    return lambda req: req.nth >= k and req.range_spec is not None


def ignore_range(pick: Pick) -> Hook:
    """Answer the picked range requests with 200 and the whole body, as a server that
    does not do ranges (validators unchanged)."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            resp.status = 200
            resp.headers.remove("Content-Range")
            resp.offset, resp.length = 0, resp.body.size

    return hook


def start_elsewhere(shift: int, pick: Pick) -> Hook:
    """A 206 that honestly carries another range than asked: it starts ``shift`` bytes
    before (negative: after) the asked start, with a matching Content-Range."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            size = resp.body.size
            first = max(0, min(size - 1, resp.offset - shift))
            last = min(size - 1, first + resp.length - 1)
            resp.offset, resp.length = first, last - first + 1
            resp.headers.set("Content-Range", f"bytes {first}-{last}/{size}")

    return hook


def wrong_total(total: int, pick: Pick) -> Hook:
    """Right bytes, right range, but ``total`` as the size in Content-Range."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            first, last = resp.offset, resp.offset + resp.length - 1
            resp.headers.set("Content-Range", f"bytes {first}-{last}/{total}")

    return hook


def refuse_416(pick: Pick) -> Hook:
    """416 with ``Content-Range: bytes */size`` for the picked requests."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.body is not None and resp.status in (200, 206):
            size = resp.body.size
            resp.status = 416
            resp.headers.set("Content-Range", f"bytes */{size}")
            resp.body, resp.offset, resp.length = None, 0, 0

    return hook


class Spliced:
    """A body that is ``good`` before ``cut`` and ``junk`` from there on (a server that
    keeps sending something else after what it promised)."""

    def __init__(self, good: Content, junk: Content, cut: int) -> None:
        self.good, self.junk, self.cut = good, junk, cut

    @property
    def size(self) -> int:
        return self.good.size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        a = self.good.read(offset, max(0, min(end, self.cut) - offset))
        b = self.junk.read(max(offset, self.cut), max(0, end - max(offset, self.cut)))
        return a + b

    def iter_blocks(
        self, offset: int = 0, length: int | None = None, block: int = 256 * 1024
    ) -> Iterator[bytes]:
        end = self.size if length is None else min(self.size, offset + length)
        for pos in range(offset, end, block):
            yield self.read(pos, min(block, end - pos))

    def sha256(self) -> str:  # pragma: no cover - never served whole
        raise NotImplementedError


def longer_than_range(pick: Pick, junk: Content) -> Hook:
    """A 206 whose Content-Range promises the first half of the asked range while the body
    (Content-Length) runs on over the whole asked range with junk after the promise."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.status == 206 and resp.body is not None and resp.length > 2:
            first = resp.offset
            promised = resp.length // 2
            last = first + promised - 1
            resp.headers.set("Content-Range", f"bytes {first}-{last}/{resp.body.size}")
            resp.body = Spliced(resp.body, junk, first + promised)  # type: ignore[arg-type]

    return hook


def longer_than_length(pick: Pick, extra: int, junk: Content) -> Hook:
    """A 206 for exactly the asked range whose Content-Length (and body) runs ``extra``
    junk bytes past it."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            end = resp.offset + resp.length
            resp.body = Spliced(resp.body, junk, end)  # type: ignore[arg-type]
            resp.length = min(resp.length + extra, resp.body.size - resp.offset)

    return hook


@pytest.fixture
def srv(http_server: LoopbackServer) -> LoopbackServer:
    return http_server


def content(name: str = "/f.bin", size: int = SIZE) -> Content:
    return Content(size, name)


# -- ignoring Range ---------------------------------------------------------------------


def test_resume_when_server_ignores_range_restarts_from_zero(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, ranges=False)
    save = tmp_path / "f.bin"
    # The part file holds garbage where the journal says nothing: a restart must not keep
    # any of it, and the planted half must be overwritten by what the server sends.
    plant(save, body, [(0, SIZE // 2)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert fetched(srv, "/f.bin") == SIZE, "a 200 means one whole body, nothing more"


def test_server_that_stops_honouring_range_mid_run(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=ignore_range(nth_at_least(3)))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_resume_against_a_server_that_lost_range_support_keeps_no_stale_byte(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # The planted bytes are from another version of the file, the journal vouches for
    # them with the current ETag (a lying journal would be caught by nothing; this one
    # is honest about the past): the whole body the server sends must replace them all.
    body = content()
    old = Content(SIZE, "old version")
    res = srv.add("/f.bin", body, etag=ETAG, ranges=False)
    save = tmp_path / "f.bin"
    plant(save, body, [(0, 3 * MiB), (5 * MiB, 6 * MiB)], res.url, etag=ETAG, part_bytes=old)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


# -- a 206 starting elsewhere than asked -------------------------------------------------


@pytest.mark.parametrize("shift", [MiB, 1, -4096], ids=["1MiB-early", "1B-early", "4KiB-late"])
def test_resume_206_starting_elsewhere_than_asked(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path, shift: int
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=start_elsewhere(shift, lambda r: r.nth == 1))
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE // 2)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


@pytest.mark.parametrize("shift", [MiB // 2, 1, -1])
def test_206_starting_elsewhere_mid_run(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path, shift: int
) -> None:
    body = content()
    res = srv.add(
        "/f.bin", body, etag=ETAG, hook=start_elsewhere(shift, lambda r: r.nth in (2, 3, 5))
    )
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_206_with_the_asked_range_but_other_bytes_is_caught_by_the_checksum(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # Headers right, body from 4 KiB further on: only content can tell, so only a
    # checksum can; the file must then not be published.
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=shift_body(4096, on=3))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save, checksum="sha256:" + body.sha256())
    out = outcome(run, save, body)
    assert not out.success and out.code == "checksum_mismatch", out.err


# -- a wrong total in Content-Range ------------------------------------------------------


@pytest.mark.parametrize("total", [SIZE + 1, SIZE * 2, SIZE - 1], ids=["plus1", "double", "minus1"])
@pytest.mark.parametrize("where", ["probe", "mid-run"])
def test_wrong_total_in_content_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path, total: int, where: str
) -> None:
    body = content()
    pick: Pick = (lambda r: r.nth == 1) if where == "probe" else (lambda r: r.nth == 4)
    res = srv.add("/f.bin", body, etag=ETAG, hook=wrong_total(total, pick))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


@pytest.mark.parametrize("total", [SIZE + 1, SIZE // 2 + MiB])
def test_wrong_total_on_resume(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path, total: int
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=wrong_total(total, lambda r: r.nth == 1))
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE // 2)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_wrong_total_on_every_response_is_a_clear_file_changed_error(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # A server that always claims a bigger file than it serves: ranges past its real end
    # are refused, the whole body is shorter than the size we were told.
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=wrong_total(SIZE + MiB, ranged))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    # The size it names cannot be had: after its restarts the file fails, nothing saved.
    out = outcome(run, save, body)
    assert not out.success and out.code == "file_changed", out.err


# -- a 416 for a file already complete ---------------------------------------------------


def test_416_for_a_file_already_complete_publishes_it_without_fetching(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=refuse_416(ranged))
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    assert fetched(srv, "/f.bin") == 0


def test_416_when_resuming_the_last_missing_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # The server answers the resume request for the tail with 416 bytes */size, as if the
    # file were complete: the engine cannot trust its journal any more.
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=refuse_416(lambda r: r.nth == 1))
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE - 100_000)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_416_for_every_range_past_the_journal_is_a_clear_file_changed_error(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add(
        "/f.bin",
        body,
        etag=ETAG,
        hook=refuse_416(lambda r: r.range_spec is not None and (r.range_spec[0] or 0) >= SIZE // 2),
    )
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE // 2)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    # Every range past the journal is refused: the server cannot serve its own file.
    out = outcome(run, save, body)
    assert not out.success and out.code == "file_changed", out.err


# -- a weak ETag ---------------------------------------------------------------------------


def test_weak_etag_is_never_sent_in_if_range_and_resume_is_exact(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    weak = 'W/"v1"'
    res = srv.add("/f.bin", body, etag=weak)
    save = tmp_path / "f.bin"
    plant(save, body, [(0, SIZE // 2)], res.url, etag=weak)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success
    sent = [r.headers.get("If-Range") for r in gets(srv, "/f.bin")]
    assert not [v for v in sent if v and v.startswith("W/")], sent


def test_weak_etag_with_last_modified_uses_the_date_and_sees_a_change(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    old, new = content(), Content(SIZE, "/f.bin v2")
    weak = 'W/"v1"'
    res = srv.add("/f.bin", new, etag=weak, last_modified="Wed, 04 Nov 2026 10:00:00 GMT")
    save = tmp_path / "f.bin"
    plant(save, old, [(0, SIZE // 2)], res.url, etag=weak, last_modified=DATE)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, new).success
    first = gets(srv, "/f.bin")[0]
    assert first.headers.get("If-Range") == DATE, first.headers


def test_weak_etag_alone_cannot_vouch_for_old_bytes(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # A weak ETag says "semantically equivalent", not "byte-identical" (RFC 9110 8.8.1):
    # here the bytes changed and the weak tag did not. Nothing the server says can prove
    # the planted half still belongs, so resuming must not use it.
    # Regression: a journal with only a weak ETag was trusted and the file came out mixed.
    old, new = content(), Content(SIZE, "/f.bin v2")
    weak = 'W/"same"'
    res = srv.add("/f.bin", new, etag=weak)
    save = tmp_path / "f.bin"
    plant(save, old, [(0, SIZE // 2)], res.url, etag=weak)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, new).success
    assert fetched(srv, "/f.bin") == SIZE, "restarted from zero"


def test_no_validator_at_all_cannot_vouch_for_old_bytes(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # Regression: a journal without any validator was trusted, the file came out mixed.
    old, new = content(), Content(SIZE, "/f.bin v2")
    res = srv.add("/f.bin", new)
    save = tmp_path / "f.bin"
    plant(save, old, [(0, SIZE // 2)], res.url)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, new).success
    assert fetched(srv, "/f.bin") == SIZE, "restarted from zero"


# -- a body shorter or longer than promised -----------------------------------------------


def test_206_body_shorter_than_promised_is_refetched(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, hook=close_after(100_000, on={1, 2, 4}))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_206_close_delimited_body_shorter_than_content_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # No Content-Length: only Content-Range says how long the body should be.
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, framing="close", hook=close_after(300_000, on={2, 3}))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_content_length_shorter_than_content_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()

    def hook(req: RequestRecord, resp: Response) -> None:
        if req.nth in (2, 3) and resp.status == 206:
            resp.length -= 12_345  # Content-Length and body short; Content-Range full

    res = srv.add("/f.bin", body, etag=ETAG, hook=hook)
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_whole_body_shorter_than_content_length_is_retried(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, ranges=False, hook=close_after(MiB, on=1))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_whole_body_always_short_is_a_clear_error(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    res = srv.add("/f.bin", body, etag=ETAG, ranges=False, hook=close_after(MiB))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save, retries=(2, 10, 20))
    out = outcome(run, save, body)
    assert not out.success and out.code in ("size_mismatch", "network"), out.err


def test_206_body_longer_than_its_content_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # Content-Range promises half of what was asked; Content-Length and the body go on
    # with junk to the end of the asked range. The junk must never land in the file.
    # Regression: stream_range wrote past the promised end, up to the end of its lease.
    body = content()
    junk = Content(SIZE, "junk")
    res = srv.add("/f.bin", body, etag=ETAG, hook=longer_than_range(nth_at_least(2), junk))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_206_body_longer_than_its_content_range_close_delimited(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    junk = Content(SIZE, "junk")
    res = srv.add(
        "/f.bin", body, etag=ETAG, framing="close", hook=longer_than_range(nth_at_least(2), junk)
    )
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_206_content_length_longer_than_the_range(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    junk = Content(SIZE, "junk")
    res = srv.add("/f.bin", body, etag=ETAG, hook=longer_than_length(ranged, 64 * 1024, junk))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    assert outcome(run, save, body).success


def test_whole_body_longer_than_content_length(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    body = content()
    junk = Content(SIZE, "junk")

    def hook(req: RequestRecord, resp: Response) -> None:
        resp.body = Spliced(body, junk, SIZE - MiB)
        resp.announce_length = SIZE - MiB  # says 7 MiB, sends 8 (the last one junk)

    res = srv.add("/f.bin", body, etag=ETAG, ranges=False, hook=hook)
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    # The server's file is what its Content-Length says; never the junk after it.
    assert outcome(run, save, Content(SIZE - MiB, "/f.bin")).success


# -- the file changes between two ranges of one run --------------------------------------


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("change", ["etag", "etag+size", "last-modified", "etag, no If-Range"])
def test_file_changes_between_two_ranges_of_one_run(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path, k: int, change: str
) -> None:
    old = content()
    new_size = SIZE + 3 * MiB + 5 if "size" in change else SIZE
    new = Content(new_size, "/f.bin v2")
    if change == "last-modified":
        res = srv.add(
            "/f.bin",
            old,
            last_modified=DATE,
            hook=serve_from(k, new, last_modified="Thu, 05 Nov 2026 10:00:00 GMT"),
        )
    else:
        hook = serve_from(k, new, etag='"v2"')
        if change == "etag, no If-Range":
            inner = hook

            def hook(req: RequestRecord, resp: Response) -> Response | None:
                # a server that ignores If-Range: serves the new bytes as the range asked
                req.headers.remove("If-Range")
                return inner(req, resp)

        res = srv.add("/f.bin", old, etag=ETAG, hook=hook)
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save)
    out = outcome(run, save, [new])
    assert out.success or out.code == "file_changed", out.err


def test_file_changes_without_validators_is_caught_by_the_checksum(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    # Same size, no ETag, no Last-Modified: no header can show the change; the expected
    # checksum is what keeps the mix of two versions from being published.
    old, new = content(), Content(SIZE, "/f.bin v2")
    res = srv.add("/f.bin", old, hook=serve_from(4, new))
    save = tmp_path / "f.bin"
    run = download(tthsd, res.url, save, checksum="sha256:" + old.sha256())
    out = outcome(run, save, old)
    assert not out.success and out.code == "checksum_mismatch", out.err


def test_file_changed_on_the_server_between_runs_restarts_from_zero(
    tthsd: Harness, srv: LoopbackServer, tmp_path: Path
) -> None:
    old, new = content(), Content(SIZE, "/f.bin v2")
    res = srv.add("/f.bin", new, etag='"v2"')
    save = tmp_path / "f.bin"
    plant(save, old, [(0, 6 * MiB)], res.url, etag=ETAG)
    run = download(tthsd, res.url, save)
    assert outcome(run, save, new).success
    first = gets(srv, "/f.bin")[0]
    assert first.headers.get("If-Range") == ETAG, "the resume must be conditional"
    assert not journal.journal_path(save).exists()
