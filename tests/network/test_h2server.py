"""The HTTP/2 test server checked on its own, with curl (nghttp2) as the client, so the
core's tests rest on a server known to do what they assume: ALPN h2, exact 206 and 416
answers, If-Range, a stream reset and a dropped connection that a client sees as such,
and the connection and stream counts the other tests assert on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.h2server import H2Server
from tests.support.server import close_after, reset_after

from .conftest import Trust

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def _curl_has_http2() -> bool:
    if shutil.which("curl") is None:
        return False
    out = subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout
    return "HTTP2" in out


needs_http2 = pytest.mark.skipif(not _curl_has_http2(), reason="curl without HTTP/2")


def curl(
    trust: Trust, out: Path, *urls: str, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    cmd = ["curl", "-sS", "--cacert", str(trust.ca_pem), "-D", "-", *args]
    for u in urls:
        cmd += ["-o", str(out), u]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@needs_http2
def test_a_range_over_h2_is_a_206_with_the_exact_content_range(
    h2_server: H2Server, trust: Trust, tmp_path: Path
) -> None:
    res = h2_server.add("/r.bin", size=100_000, etag='"e1"')
    out = tmp_path / "r"
    proc = curl(trust, out, res.url, args=("--http2", "-r", "1000-1999"))
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.lower()
    assert head.startswith("http/2 206"), proc.stdout
    assert "content-range: bytes 1000-1999/100000" in head, proc.stdout
    assert out.read_bytes() == res.body.read(1000, 1000)
    (rec,) = h2_server.requests()
    assert (rec.http_version, rec.status, rec.served, rec.bytes_sent) == (
        "2",
        206,
        (1000, 1999),
        1000,
    )
    assert h2_server.connections()[0].alpn == "h2"


@needs_http2
def test_416_and_if_range(h2_server: H2Server, trust: Trust, tmp_path: Path) -> None:
    res = h2_server.add("/r.bin", size=5000, etag='"e1"')
    out = tmp_path / "r"
    proc = curl(trust, out, res.url, args=("--http2", "-r", "9000-9999"))
    assert proc.stdout.lower().startswith("http/2 416"), proc.stdout
    assert "content-range: bytes */5000" in proc.stdout.lower()
    stale = ("--http2", "-r", "0-9", "-H", 'If-Range: "old"')
    proc = curl(trust, out, res.url, args=stale)
    assert proc.stdout.lower().startswith("http/2 200"), proc.stdout
    assert out.read_bytes() == res.body.read(0, 5000)
    fresh = ("--http2", "-r", "0-9", "-H", 'If-Range: "e1"')
    proc = curl(trust, out, res.url, args=fresh)
    assert proc.stdout.lower().startswith("http/2 206"), proc.stdout


@needs_http2
def test_a_reset_is_a_stream_error_and_a_drop_ends_the_connection(
    h2_server: H2Server, trust: Trust, tmp_path: Path
) -> None:
    res = h2_server.add("/x.bin", size=1 << 20, hook=reset_after(100_000))
    drop = h2_server.add("/d.bin", size=1 << 20, hook=close_after(100_000))
    proc = curl(trust, tmp_path / "x", res.url, args=("--http2",))
    assert proc.returncode == 92, (proc.returncode, proc.stderr)  # HTTP/2 stream error
    assert "INTERNAL_ERROR" in proc.stderr, proc.stderr
    proc = curl(trust, tmp_path / "d", drop.url, args=("--http2",))
    assert proc.returncode != 0, proc.stderr
    h2_server.wait_idle(5)
    assert [r.outcome for r in h2_server.requests()] == ["fault-reset", "fault-close"]
    assert 100_000 <= (tmp_path / "x").stat().st_size < 1 << 20


@needs_http2
def test_streams_and_connections_are_counted(
    h2_server: H2Server, trust: Trust, tmp_path: Path
) -> None:
    # Two throttled files fetched in parallel by one curl: one connection, two streams
    # open at once; the 2nd connection (a second curl) is paced to 200 KB/s overall.
    a = h2_server.add("/a.bin", size=200_000, throttle=1_000_000)
    b = h2_server.add("/b.bin", size=200_000, throttle=1_000_000)
    args = ("--http2", "--parallel")  # multiplexed on one connection: curl waits for it
    cmd = ["curl", "-sS", "--cacert", str(trust.ca_pem), *args]
    cmd += ["-o", str(tmp_path / "a"), a.url, "-o", str(tmp_path / "b"), b.url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    h2_server.wait_idle(5)
    assert h2_server.max_streams_per_connection() == {1: 2}
    assert h2_server.max_busy_connections() == 1
    h2_server.conn_throttle = {2: 200_000}
    c = h2_server.add("/c.bin", size=100_000)
    proc = curl(trust, tmp_path / "c", c.url, args=("--http2",))
    assert proc.returncode == 0, proc.stderr
    h2_server.wait_idle(5)  # curl may have the last bytes before the server ends its record
    rec = h2_server.requests("/c.bin")[0]
    assert rec.conn == 2 and rec.finished is not None
    assert rec.finished - rec.started >= 0.4, "the 2nd connection was not paced"
    assert h2_server.bytes_by_connection() == {1: 400_000, 2: 100_000}
    assert len(h2_server.ports()) == 2


def test_an_http11_only_server_records_http_1_1(
    h2_server_factory: object, trust: Trust, tmp_path: Path
) -> None:
    assert callable(h2_server_factory)
    srv: H2Server = h2_server_factory(alpn=("http/1.1",))
    res = srv.add("/h.bin", size=3000)
    proc = curl(trust, tmp_path / "h", res.url, args=("-r", "0-99"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("HTTP/1.1 206"), proc.stdout
    assert srv.requests()[0].http_version == "1.1"
    assert srv.connections()[0].alpn == "http/1.1"
