"""Bodies that lie: cut short (a lying ``Content-Length``, chunked framing without its end
or with a broken size line), longer than asked (chunked this time), compressed, empty,
of unknown length, and responses whose head is hostile. Every run ends in the server's
exact bytes or in one clear ``err`` with nothing at ``save_path`` (the rule of
``tests/resume/helpers.outcome``), in bounded time."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.content import Content, LiteralContent
from tests.support.server import LoopbackServer, RequestRecord, Response, premature_eof

from .knobs import chunked_overlong, is_worker, raw


def _run(tthsd: Harness, lib: Lib, url: str, save: Path, *, checksum: str | None = None,
         threads: int = 4, timeout: float = 30):  # type: ignore[no-untyped-def]
    extra = {"checksum": checksum} if checksum else {}
    t = task(url, save, id="t", show_name="t", **extra)
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, 3, 20, 40) == 0
    assert lib.tthsd_set_timeouts(run.id, 2000, 1000) == 0
    assert lib.tthsd_set_durability(run.id, False) == 0
    t0 = time.monotonic()
    assert run.start() == 0
    run.wait_end(timeout)
    run.events.wait_quiet(0.1, 1.0)
    run.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return run


def _first(req: RequestRecord) -> bool:
    return req.nth == 1


def _fault_first(**fault: Any):  # type: ignore[no-untyped-def]
    """Arm ``fault`` (Response fields) on the first request only."""
    def hook(req: RequestRecord, resp: Response) -> None:
        if req.nth == 1:
            for k, v in fault.items():
                setattr(resp, k, v)
    return hook


# -- cut short --------------------------------------------------------------------------------


@pytest.mark.scenario("premature EOF")
def test_premature_eof_on_the_probe(tthsd: Harness, lib: Lib,
                                    http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/p.bin", size=3 * MiB, hook=premature_eof(5000, on=_first))
    assert outcome(_run(tthsd, lib, res.url, tmp_path / "p.bin"), tmp_path / "p.bin",
                   res.body).success


@pytest.mark.scenario("premature EOF")
@pytest.mark.parametrize("fault", ["truncated", "bad-size"])
def test_chunked_body_cut_short_is_never_published(tthsd: Harness, lib: Lib,
                                                   http_server: LoopbackServer,
                                                   tmp_path: Path, fault: str) -> None:
    res = http_server.add("/c.bin", size=2 * MiB + 3, framing="chunked", ranges=False,
                          hook=_fault_first(chunked_fault=fault))
    out = outcome(_run(tthsd, lib, res.url, tmp_path / "c.bin"), tmp_path / "c.bin", res.body)
    assert out.success
    assert len(http_server.requests("/c.bin")) >= 2, "the cut body was not noticed"


@pytest.mark.scenario("premature EOF")
def test_chunked_body_always_cut_short_is_a_clear_err(tthsd: Harness, lib: Lib,
                                                      http_server: LoopbackServer,
                                                      tmp_path: Path) -> None:
    def always(req: RequestRecord, resp: Response) -> None:
        resp.chunked_fault = "truncated"
    res = http_server.add("/a.bin", size=MiB, framing="chunked", ranges=False, hook=always)
    out = outcome(_run(tthsd, lib, res.url, tmp_path / "a.bin"), tmp_path / "a.bin", res.body)
    assert not out.success and out.code in ("network", "size_mismatch"), out.err


@pytest.mark.scenario("premature EOF")
def test_close_delimited_body_cut_short_is_caught_by_a_checksum(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    # Without a length, a close is the end: only a checksum can tell a cut body.
    res = http_server.add("/k.bin", size=MiB, framing="close", ranges=False,
                          hook=_fault_first(close_after=300_000))
    run = _run(tthsd, lib, res.url, tmp_path / "k.bin",
               checksum=f"sha256:{res.body.sha256()}")
    out = outcome(run, tmp_path / "k.bin", res.body)
    assert out.success or out.code == "checksum_mismatch", out.err


# -- too long ------------------------------------------------------------------------------


@pytest.mark.scenario("body longer than asked")
def test_chunked_206_longer_than_its_content_range_is_cut(tthsd: Harness, lib: Lib,
                                                          http_server: LoopbackServer,
                                                          tmp_path: Path) -> None:
    res = http_server.add("/o.bin", size=4 * MiB,
                          hook=chunked_overlong(70_000, on=is_worker))
    out = outcome(_run(tthsd, lib, res.url, tmp_path / "o.bin"), tmp_path / "o.bin", res.body)
    assert out.success
    assert any(r.served and r.status == 206 and is_worker(r)
               and r.bytes_sent > (r.range_spec[1] - r.range_spec[0] + 1)  # type: ignore[index,operator]
               for r in http_server.requests("/o.bin")), "no overlong body was sent"


# -- compressed ------------------------------------------------------------------------


def _gzip_of(size: int) -> bytes:
    # Content compresses well; mix in random bytes so the archive is megabytes long.
    data = Content(size, "gz").bytes() + os.urandom(size // 2)
    return gzip.compress(data, compresslevel=1)


@pytest.mark.scenario("Content-Encoding gzip saved as served")
@pytest.mark.parametrize("framing,ranges", [("length", True), ("chunked", False),
                                            ("close", False)])
def test_gzip_is_saved_as_served_over_many_ranges_or_unknown_length(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        framing: str, ranges: bool) -> None:
    archive = _gzip_of(3 * MiB)
    res = http_server.add("/z.gz", body=archive, framing=framing, ranges=ranges,
                          headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    run = _run(tthsd, lib, res.url, tmp_path / "z.gz")
    assert outcome(run, tmp_path / "z.gz", res.body).success
    assert (tmp_path / "z.gz").read_bytes()[:2] == b"\x1f\x8b", "inflated behind our back"
    recs = http_server.requests("/z.gz")
    if ranges:
        assert len(recs) >= 3, "expected several ranges"
    for r in recs:
        assert "gzip" not in (r.headers.get("Accept-Encoding") or ""), r.headers
    totals = {e.msg["Total"] for e in run.events.of("update")}
    assert totals <= {len(archive), 0}, totals


# -- empty and unknown -----------------------------------------------------------------------


@pytest.mark.scenario("zero-length file")
@pytest.mark.parametrize("framing,ranges", [("length", False), ("chunked", False),
                                            ("close", False), ("chunked", True)])
def test_zero_length_file_in_every_framing(tthsd: Harness, lib: Lib,
                                           http_server: LoopbackServer, tmp_path: Path,
                                           framing: str, ranges: bool) -> None:
    res = http_server.add("/e.bin", body=b"", framing=framing, ranges=ranges)
    save = tmp_path / "e.bin"
    save.write_bytes(b"old content")  # replaced by the empty file, not kept
    run = _run(tthsd, lib, res.url, save,
               checksum=f"sha256:{hashlib.sha256(b'').hexdigest()}")
    assert outcome(run, save, res.body).success
    assert save.stat().st_size == 0


@pytest.mark.scenario("unknown length")
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_unknown_length_survives_a_reset(tthsd: Harness, lib: Lib,
                                         http_server: LoopbackServer, tmp_path: Path,
                                         framing: str) -> None:
    res = http_server.add("/u.bin", size=6 * MiB + 1, framing=framing, ranges=False,
                          hook=_fault_first(reset_after=2 * MiB))
    run = _run(tthsd, lib, res.url, tmp_path / "u.bin")
    out = outcome(run, tmp_path / "u.bin", res.body)
    assert out.success
    assert next(r.outcome for r in http_server.requests("/u.bin")) == "fault-reset"
    totals = [e.msg["Total"] for e in run.events.of("update")]
    # Unknown while it flows; the final update, once the end was seen, knows it.
    assert totals[-1] == res.size and set(totals[:-1]) <= {0}, totals


# -- hostile heads ---------------------------------------------------------------------------

HOSTILE = {
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    "length and chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"),
    "status not a number": b"HTTP/1.1 2OO OK\r\nContent-Length: 3\r\n\r\nabc",
    "no status line": b"just some bytes, no HTTP at all\n" * 100,
    "header line of 1 MiB": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MiB + b"\r\n\r\n",
    "100000 headers": b"HTTP/1.1 200 OK\r\n" + b"X-H: v\r\n" * 100_000 + b"\r\n",
    "absurd total": (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/"
                     b"18446744073709551615\r\nContent-Length: 3\r\n\r\nabc"),
    "total past i64": (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/"
                       b"99999999999999999999999\r\nContent-Length: 3\r\n\r\nabc"),
    "unknown total": (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/*\r\n"
                      b"Content-Length: 3\r\n\r\nabc"),
    "multipart ranges": (b"HTTP/1.1 206 Partial Content\r\nContent-Type: multipart/byteranges;"
                         b" boundary=X\r\nContent-Length: 60\r\n\r\n--X\r\nContent-Range: bytes"
                         b" 0-2/10\r\n\r\nabc\r\n--X--\r\n" + b" " * 5),
    "206 without Content-Range": b"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabc",
    "1xx forever": b"HTTP/1.1 102 Processing\r\n\r\n" * 2000,
}


@pytest.mark.scenario("hostile response heads")
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_response_head_is_exact_or_a_clear_err(tthsd: Harness, lib: Lib,
                                                         http_server: LoopbackServer,
                                                         tmp_path: Path, name: str) -> None:
    res = http_server.add("/h.bin", body=b"abc", hook=raw(HOSTILE[name]))
    run = _run(tthsd, lib, res.url, tmp_path / "h.bin", timeout=20)
    # "abc" is the only right file: whatever the head says, no other bytes are published.
    out = outcome(run, tmp_path / "h.bin", [res.body, LiteralContent(b"abcde")])
    assert run.seconds < 10, f"{name}: took {run.seconds:.1f}s"  # type: ignore[attr-defined]
    print(name, "->", "success" if out.success else out.err.msg)


@pytest.mark.scenario("file changing between requests")
@pytest.mark.parametrize("validators", [True, False])
def test_a_file_that_changes_on_every_request_ends_in_bounded_time(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        validators: bool) -> None:
    # Every response is another version (another salt, and ETag): a client that chases
    # it must give up (file_changed) or publish one version whole, never a blend.
    versions: list[Content] = []

    def new_version(req: RequestRecord, resp: Response):  # type: ignore[no-untyped-def]
        from tests.support.server import plan_response

        body = Content(4 * MiB, f"v{req.nth}")
        versions.append(body)
        import dataclasses

        res = dataclasses.replace(req.resource, body=body, hook=None,
                                  etag=f'"v{req.nth}"' if validators else None,
                                  last_modified=None)
        return plan_response(req, res)
    res = http_server.add("/c.bin", size=4 * MiB, hook=new_version)
    # Without a validator no client can see the change between two ranges (the blend is
    # a well-formed file): only a checksum can, so the task carries one (of version 1).
    checksum = None if validators else f"sha256:{Content(4 * MiB, 'v1').sha256()}"
    run = _run(tthsd, lib, res.url, tmp_path / "c.bin", timeout=30, checksum=checksum)
    out = outcome(run, tmp_path / "c.bin", versions or [res.body])
    assert run.seconds < 15, f"took {run.seconds:.1f}s"  # type: ignore[attr-defined]
    if not out.success:
        assert out.code in ("file_changed", "size_mismatch", "range_unsupported",
                            "checksum_mismatch"), out.err
