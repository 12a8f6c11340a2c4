"""``thread_count`` means TCP connections on HTTP/2 too, small files share those
connections, and a crawling connection does not set the pace (issue 15, items 2 and 4).

A parallel run (``multiple=True``) offers HTTP/2, so the HTTP/2 cases run that way even for
one file; a run of files one after another offers HTTP/1.1 alone, and its ranges ride
HTTP/1.1 on a server that offers both (docs/tuning.md has the measurements).

Each download runs against a real HTTP/2 stack over TLS (hypercorn, ALPN ``h2``), which
records for every request the TCP connection it came on (the client's port) and when it
was open; "connections at once" counts connections with a request open at the same
moment. No assertion here is about speed: the straggler test checks who delivered the
bytes and what was waited for, not how long it took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.abi.lib import task
from tests.support.h2server import H2Server

from .conftest import Download
from .runs import KiB, MiB, connection_summary, outcome, small_content


def only_http2(srv: H2Server) -> None:
    versions = {r.http_version for r in srv.requests()}
    assert versions == {"2"}, f"expected HTTP/2 only, saw {versions}"


def max_streams_on_one_connection(srv: H2Server) -> int:
    """The most requests one TCP connection carried at the same moment (> 1: HTTP/2
    multiplexing happened)."""
    return max(srv.max_streams_per_connection().values(), default=0)


def test_a_large_file_uses_several_connections_and_at_most_thread_count(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/big.bin", size=32 * MiB, etag='"big-1"')
    save = tmp_path / "big.bin"
    report = download([task(res.url, save, id="t")], threads=8, multiple=True, durable=False)
    assert outcome(report, save, res.body).success, report.listing()
    h2_server.wait_idle(5)  # every record ended: a request still "open" would inflate counts
    only_http2(h2_server)
    busy = h2_server.max_busy_connections()
    detail = connection_summary(h2_server)
    assert busy > 1, f"every range shared one TCP connection: {detail}"
    assert busy <= 8, f"more TCP connections at once than thread_count=8: {detail}"
    # Connections opened ahead while the probe was out carry the ranges: none is opened
    # for nothing, none beyond thread_count, and no request is spent on warming them.
    accepted = len(h2_server.connections())
    assert accepted <= 8, f"{accepted} TCP connections for thread_count=8: {detail}"
    assert {r.method for r in h2_server.requests()} == {"GET"}, detail


def test_a_file_alone_rides_http11_on_a_server_offering_both(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    res = h2_server.add("/alone.bin", size=16 * MiB, etag='"alone-1"')
    save = tmp_path / "alone.bin"
    report = download([task(res.url, save, id="t")], threads=8, durable=False)
    assert outcome(report, save, res.body).success, report.listing()
    h2_server.wait_idle(5)
    detail = connection_summary(h2_server)
    versions = {r.http_version for r in h2_server.requests()}
    assert versions == {"1.1"}, f"a run of one file after another used {versions}: {detail}"
    # Without ALPN (or with http/1.1 alone) a TLS server speaks HTTP/1.1.
    assert not {c.alpn for c in h2_server.connections()} - {None, "http/1.1"}, detail
    busy = h2_server.max_busy_connections()
    assert 1 < busy <= 8, f"{busy} connections at once for thread_count=8: {detail}"
    # hyper's HTTP/1.1 pool may open a connection while the lane's own is on its way
    # back to the pool; that one stays idle: requests came on 8 connections at most.
    assert len(h2_server.ports()) <= 8, detail


def test_many_small_files_are_exact_over_at_most_thread_count_connections(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    count, size = 300, 16 * KiB
    files = [
        h2_server.add(f"/small/{i:03d}.bin", small_content(size, f"small {i}"))
        for i in range(count)
    ]
    saves = [tmp_path / "out" / f"{i:03d}.bin" for i in range(count)]
    tasks = [task(r.url, s, id=f"f{i}") for i, (r, s) in enumerate(zip(files, saves, strict=True))]
    report = download(tasks, threads=4, multiple=True, durable=False, timeout=90)
    bad = []
    for i, (res, save) in enumerate(zip(files, saves, strict=True)):
        try:
            assert outcome(report, save, res.body, task_id=f"f{i}").success
        except AssertionError as exc:
            bad.append(f"f{i}: {str(exc)[:300]}")
    assert not bad, f"{len(bad)} of {count} files not exact: {bad[:5]}"
    h2_server.wait_idle(5)  # every record ended: a request still "open" would inflate counts
    only_http2(h2_server)
    busy = h2_server.max_busy_connections()
    streams = max_streams_on_one_connection(h2_server)
    detail = f"max streams on one connection at once: {streams}; {connection_summary(h2_server)}"
    assert busy <= 4, f"more TCP connections at once than thread_count=4: {detail}"
    # A connection that speaks HTTP/2 carries up to 4 files at once (docs/tuning.md); the
    # server may still count a stream whose last bytes the client already has, so only
    # the sharing itself is asserted.
    assert streams > 1, f"small files never shared a connection: {detail}"
    print(detail)


SLOW = 2  #: the connection (in the order the server accepted them) that crawls
SLOW_RATE = 128 * KiB


@pytest.mark.timeout(240)
def test_a_crawling_connection_loses_its_range_to_faster_ones(
    h2_server: H2Server, download: Download, tmp_path: Path
) -> None:
    size = 64 * MiB
    res = h2_server.add("/straggler.bin", size=size, etag='"s-1"')
    h2_server.conn_throttle = {SLOW: SLOW_RATE}
    save = tmp_path / "straggler.bin"
    report = download(
        [task(res.url, save, id="t")], threads=8, multiple=True, durable=False, timeout=180
    )
    assert outcome(report, save, res.body).success, report.listing()
    h2_server.wait_idle(5)
    detail = connection_summary(h2_server)
    slow = [r for r in h2_server.requests() if r.conn == SLOW]
    assert slow, f"no request came on connection {SLOW}: the case never arose; {detail}"
    slow_bytes = sum(r.bytes_sent for r in slow)
    assert slow_bytes < size * 0.10, (
        f"the crawling connection delivered {slow_bytes} of {size} bytes; {detail}"
    )
    total = h2_server.bytes_sent()
    assert total <= size * 1.10, f"{total} bytes sent for a {size}-byte file; {detail}"
    # Not waited for: the last range to complete did not come from the crawling
    # connection (a range it held was cut short, the client resetting its stream, and
    # fetched by another connection).
    done = [r for r in h2_server.requests() if r.outcome == "complete" and r.finished]
    last = max(done, key=lambda r: r.finished or 0.0)
    slow_tail = [(r.range_header, r.outcome, r.bytes_sent) for r in slow]
    assert last.conn != SLOW, (
        f"the download waited for the crawling connection to finish {last.range_header}; "
        f"its requests: {slow_tail}; {detail}"
    )
