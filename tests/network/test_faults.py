"""The faults the HTTP/1.1 suites throw at the core (tests/abi/test_faults.py,
tests/adversarial, tests/resume/test_server_faults.py), thrown over HTTP/2: each run ends
with the server's exact bytes at ``save_path`` or one clear ``err`` with the right
``Code`` (docs/errors.md) and nothing there; never a wrong file.

On HTTP/2 some faults take another shape: a reset hits one stream and leaves the others
on its connection running; a dropped connection takes all its streams at once; a body
shorter or longer than its ``content-length`` is a malformed response (RFC 9113 8.1.1)
rather than a connection that ends early; a stalled stream sits on a connection that
other streams keep busy, so only a per-request read timeout can cut it.

Every run here is a parallel run (``start_multiple_downloads_id``) of the one file: that
is where the core offers HTTP/2; a run of files one after another fetches over HTTP/1.1
(docs/tuning.md), which tests/network/test_connections.py checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.abi.lib import task
from tests.adversarial.knobs import fail_first, is_worker
from tests.support.content import Content
from tests.support.h2server import H2Server
from tests.support.server import (
    RequestRecord,
    Response,
    close_after,
    overlong_body,
    premature_eof,
    reset_after,
    serve_from,
    stall,
    wrong_content_range,
)

from .conftest import Download
from .runs import MiB, Report, outcome

SIZE = 8 * MiB + 123  # an odd size: the last range is short
Pick = Callable[[RequestRecord], bool]


class First:
    """Picks the first request ``pred`` accepts, and no other; ``seq`` is the one it
    picked (None: none came, the fault was never thrown)."""

    def __init__(self, pred: Pick) -> None:
        self.pred = pred
        self.seq: int | None = None
        self._lock = threading.Lock()

    def __call__(self, req: RequestRecord) -> bool:
        with self._lock:
            if self.seq is not None or not self.pred(req):
                return False
            self.seq = req.seq
            return True


def probe(req: RequestRecord) -> bool:
    return req.nth == 1


WHERE = {"probe": probe, "worker range": is_worker}


def _run(
    download: Download, srv: H2Server, res_path: str, tmp_path: Path, **kw: object
) -> tuple[Report, Path]:
    save = tmp_path / "out" / "f.bin"
    report = download(
        [task(srv.url(res_path), save, id="t")], threads=4, multiple=True, durable=False, **kw
    )
    return report, save


def _outcomes(srv: H2Server) -> list[str]:
    srv.wait_idle(5)
    return [r.outcome for r in srv.requests()]


def _refetched(srv: H2Server, seq: int | None) -> None:
    """The first byte request ``seq`` did not deliver was asked again, later."""
    srv.wait_idle(5)
    cut = next(r for r in srv.requests() if r.seq == seq)
    assert cut.served is not None, cut
    lost = cut.served[0] + cut.bytes_sent
    again = [
        r
        for r in srv.requests()
        if r.seq > cut.seq and r.served is not None and r.served[0] <= lost <= r.served[1]
    ]
    assert again, f"byte {lost} (first one {cut.range_header} did not deliver) never asked again"


def _only_h2(srv: H2Server) -> None:
    assert {r.http_version for r in srv.requests()} == {"2"}, "the run did not use HTTP/2"


@pytest.mark.parametrize("where", WHERE)
def test_503_with_retry_after_then_the_exact_file(
    h2_server: H2Server, download: Download, tmp_path: Path, where: str
) -> None:
    hook = fail_first(1, 503, retry_after="1", on=WHERE[where])
    res = h2_server.add("/f.bin", Content(SIZE, "503"), etag='"a"', hook=hook)
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    _only_h2(h2_server)
    assert [r.status for r in h2_server.requests()].count(503) == 1


@pytest.mark.parametrize("where", WHERE)
def test_a_stream_reset_mid_body_is_retried(
    h2_server: H2Server, download: Download, tmp_path: Path, where: str
) -> None:
    pick = First(WHERE[where])
    res = h2_server.add(
        "/f.bin", Content(SIZE, "reset"), etag='"a"', hook=reset_after(300_000, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)
    assert "fault-reset" in _outcomes(h2_server)
    _refetched(h2_server, pick.seq)


@pytest.mark.parametrize("where", WHERE)
def test_a_connection_dropped_mid_body_loses_no_byte(
    h2_server: H2Server, download: Download, tmp_path: Path, where: str
) -> None:
    # Every stream on the dropped connection dies with it, not just the one picked.
    pick = First(WHERE[where])
    res = h2_server.add(
        "/f.bin", Content(SIZE, "drop"), etag='"a"', hook=close_after(300_000, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)
    assert "fault-close" in _outcomes(h2_server)
    assert any(c.dropped for c in h2_server.connections())
    _refetched(h2_server, pick.seq)


def truncate(keep: int, pick: Pick) -> Callable[[RequestRecord, Response], None]:
    """Headers for the whole range (``content-length`` and ``Content-Range`` honest),
    then only ``keep`` body bytes and the end of the stream: a truncated body."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if pick(req) and resp.body is not None and resp.length > keep:
            resp.announce_length = resp.length
            resp.length = keep

    return hook


@pytest.mark.parametrize("where", WHERE)
def test_a_stream_that_ends_before_its_range_does_is_refetched(
    h2_server: H2Server, download: Download, tmp_path: Path, where: str
) -> None:
    pick = First(WHERE[where])
    res = h2_server.add("/f.bin", Content(SIZE, "short"), etag='"a"', hook=truncate(300_000, pick))
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)
    h2_server.wait_idle(5)
    cut = next(r for r in h2_server.requests() if r.seq == pick.seq)
    assert cut.outcome == "complete" and cut.bytes_sent == 300_000, cut
    _refetched(h2_server, pick.seq)


def test_a_content_length_past_the_body_still_gives_the_exact_file(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    # The 206 carries its whole range, its content-length claims 50 000 bytes more.
    pick = First(is_worker)
    res = h2_server.add(
        "/f.bin", Content(SIZE, "cl"), etag='"a"', hook=premature_eof(50_000, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)


def test_a_body_longer_than_its_content_length_is_not_written(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    pick = First(is_worker)
    res = h2_server.add(
        "/f.bin", Content(SIZE, "long"), etag='"a"', hook=overlong_body(4096, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)


@pytest.mark.parametrize("delta", [1, -4096])
def test_a_wrong_content_range_is_refused(
    h2_server: H2Server, download: Download, tmp_path: Path, delta: int
) -> None:
    pick = First(is_worker)
    res = h2_server.add(
        "/f.bin", Content(SIZE, "cr"), etag='"a"', hook=wrong_content_range(delta, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)


def test_an_etag_change_mid_download_ends_with_the_new_file(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    # From the 4th request on the server has a new version (new bytes, new ETag): the
    # ranges already fetched belong to the old one, so the file must start over.
    new = Content(SIZE, "etag v2")
    h2_server.add(
        "/f.bin", Content(SIZE, "etag v1"), etag='"v1"', hook=serve_from(4, new, etag='"v2"')
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, new).success, "the file changed once: expected a restart"
    _only_h2(h2_server)
    assert h2_server.bytes_sent() >= SIZE, "the new version was not fetched whole"


def test_a_server_ignoring_ranges_serves_the_file_in_one_stream(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/f.bin", Content(SIZE, "norange"), ranges=False)
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    _only_h2(h2_server)
    assert h2_server.bytes_sent() <= SIZE * 1.10, h2_server.bytes_sent()


def _ignore_ranges_from(k: int) -> Callable[[RequestRecord, Response], None]:
    """From the ``k``-th request on, a 200 with the whole body instead of a 206."""

    def hook(req: RequestRecord, resp: Response) -> None:
        if req.nth >= k and resp.status == 206 and resp.body is not None:
            resp.status = 200
            resp.headers.remove("Content-Range")
            resp.offset, resp.length = 0, resp.body.size

    return hook


def test_a_server_that_stops_honouring_ranges_mid_run(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/f.bin", Content(SIZE, "stops"), etag='"a"', hook=_ignore_ranges_from(3))
    report, save = _run(download, h2_server, "/f.bin", tmp_path)
    assert outcome(report, save, res.body).success
    _only_h2(h2_server)


def test_a_stalled_stream_is_cut_by_the_read_timeout(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    # Silent until the server stops, while the connection's other streams flow.
    pick = First(is_worker)
    res = h2_server.add(
        "/f.bin", Content(SIZE, "stall"), etag='"a"', hook=stall(300_000, None, on=pick)
    )
    report, save = _run(download, h2_server, "/f.bin", tmp_path, timeouts=(1000, 500))
    assert outcome(report, save, res.body).success
    assert pick.seq is not None, "the fault was never thrown"
    _only_h2(h2_server)


def test_404_is_an_err_with_code_http_status(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/gone.bin", Content(1000, "gone"), status=404)
    report, save = _run(download, h2_server, "/gone.bin", tmp_path)
    out = outcome(report, save, res.body)
    assert not out.success and out.code == "http_status", out.err
    _only_h2(h2_server)


def test_500_on_every_request_is_an_err_after_bounded_retries(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/f.bin", Content(1000, "storm"), status=500)
    report, save = _run(download, h2_server, "/f.bin", tmp_path, retry=(2, 20, 40))
    out = outcome(report, save, res.body)
    assert not out.success and out.code == "http_status", out.err
    assert len(h2_server.requests()) == 3, "1 + max_retries requests"
