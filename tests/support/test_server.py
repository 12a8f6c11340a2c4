"""The loopback server itself: ranges, framing, validators, faults, records, speed."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from tests.support.content import Content
from tests.support.server import (
    LoopbackServer,
    chain,
    close_after,
    fail_times,
    overlong_body,
    parse_range,
    premature_eof,
    reset_after,
    serve_from,
    shift_body,
    stall,
    wrong_content_range,
)


def _get(srv: LoopbackServer, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def _raw(srv: LoopbackServer, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` and read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        s.sendall(request)
        out = []
        try:
            while True:
                blk = s.recv(65536)
                if not blk:
                    break
                out.append(blk)
        except (TimeoutError, ConnectionResetError):
            out.append(b"<timeout-or-reset>")
        return b"".join(out)


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("bytes=0-99", (0, 99)), ("bytes=100-", (100, None)), ("bytes=-5", (None, 5)),
        ("bytes = 3 - 4", (3, 4)), ("bytes=5-4", None), ("bytes=0-1,4-5", None),
        ("items=0-1", None), ("bytes=x-1", None), ("bytes=-", None), ("", None),
    ],
)
def test_parse_range(value: str, spec: object) -> None:
    assert parse_range(value) == spec


def test_ranges_are_honoured_exactly(http_server: LoopbackServer) -> None:
    res = http_server.add("/f.bin", size=10_000)
    data = res.body.read(0, 10_000)
    st, h, body = _get(http_server, "/f.bin")
    assert (st, body, h["Accept-Ranges"], h["Content-Length"]) == (200, data, "bytes", "10000")
    cases = {
        "bytes=0-0": (0, 0), "bytes=100-199": (100, 199), "bytes=9990-": (9990, 9999),
        "bytes=-10": (9990, 9999), "bytes=9000-20000": (9000, 9999), "bytes=-20000": (0, 9999),
    }
    for rng, (a, b) in cases.items():
        st, h, body = _get(http_server, "/f.bin", {"Range": rng})
        assert st == 206, rng
        assert h["Content-Range"] == f"bytes {a}-{b}/10000"
        assert body == data[a : b + 1]
    for rng in ("bytes=10000-", "bytes=20000-20001", "bytes=-0"):
        st, h, body = _get(http_server, "/f.bin", {"Range": rng})
        assert (st, h["Content-Range"], body) == (416, "bytes */10000", b""), rng
    st, _, body = _get(http_server, "/f.bin", {"Range": "bytes=0-1,5-6"})
    assert (st, len(body)) == (200, 10_000)
    recs = http_server.requests("/f.bin")
    assert [r.range_spec for r in recs[1:3]] == [(0, 0), (100, 199)]
    assert recs[2].served == (100, 199) and recs[2].bytes_sent == 100
    assert [r.nth for r in recs] == list(range(1, len(recs) + 1))


def test_ignoring_range_sends_the_whole_body(http_server: LoopbackServer) -> None:
    res = http_server.add("/plain.bin", size=5000, ranges=False)
    st, h, body = _get(http_server, "/plain.bin", {"Range": "bytes=10-19"})
    assert (st, body, h.get("Accept-Ranges"), h.get("Content-Range")) == (
        200, res.body.read(0, 5000), None, None)


def test_close_delimited_and_chunked_bodies(http_server: LoopbackServer) -> None:
    res = http_server.add("/close.bin", size=300_000, framing="close")
    http_server.add("/chunked.bin", body=res.body, framing="chunked")
    out = _raw(http_server, b"GET /close.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length" not in head.lower() and b"Connection: close" in head
    assert body == res.body.read(0, 300_000)
    st, h, body = _get(http_server, "/chunked.bin")
    assert (st, h["Transfer-Encoding"], body) == (200, "chunked", res.body.read(0, 300_000))
    st, h, body = _get(http_server, "/chunked.bin", {"Range": "bytes=5-9"})
    assert (st, h["Content-Range"], body) == (206, "bytes 5-9/300000", res.body.read(5, 5))


def test_fixed_status_and_unknown_path_and_zero_bytes(http_server: LoopbackServer) -> None:
    http_server.add("/gone", status=404)
    http_server.add("/boom", status=500, body=b"custom")
    http_server.add("/empty.bin", size=0)
    assert _get(http_server, "/gone")[0] == 404
    assert _get(http_server, "/boom", {"Range": "bytes=0-1"})[::2] == (500, b"custom")
    assert _get(http_server, "/nowhere")[0] == 404
    st, h, body = _get(http_server, "/empty.bin")
    assert (st, h["Content-Length"], body) == (200, "0", b"")
    st, h, _ = _get(http_server, "/empty.bin", {"Range": "bytes=0-0"})
    assert (st, h["Content-Range"]) == (416, "bytes */0")


def test_head_and_keep_alive(http_server: LoopbackServer) -> None:
    res = http_server.add("/f.bin", size=4096)
    conn = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=5)
    conn.request("HEAD", "/f.bin")
    r = conn.getresponse()
    assert (r.status, r.headers["Content-Length"], r.read()) == (200, "4096", b"")
    for _ in range(3):
        conn.request("GET", "/f.bin", headers={"Range": "bytes=0-9"})
        assert conn.getresponse().read() == res.body.read(0, 10)
    conn.close()
    recs = http_server.requests("/f.bin")
    assert [r.method for r in recs] == ["HEAD", "GET", "GET", "GET"]
    assert len({r.conn for r in recs}) == 1


def test_validators_and_if_range(http_server: LoopbackServer) -> None:
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    http_server.add("/v.bin", size=1000, etag='"v1"', last_modified=lm)
    st, h, _ = _get(http_server, "/v.bin")
    assert (h["ETag"], h["Last-Modified"]) == ('"v1"', lm)
    assert _get(http_server, "/v.bin", {"Range": "bytes=0-9", "If-Range": '"v1"'})[0] == 206
    assert _get(http_server, "/v.bin", {"Range": "bytes=0-9", "If-Range": lm})[0] == 206
    st, _, body = _get(http_server, "/v.bin", {"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert (st, len(body)) == (200, 1000)
    assert _get(http_server, "/v.bin", {"Range": "bytes=0-9", "If-Range": "W/\"v1\""})[0] == 200


def test_throttle_holds_the_rate(http_server: LoopbackServer) -> None:
    http_server.add("/slow.bin", size=300_000, throttle=600_000)
    t0 = time.monotonic()
    assert len(_get(http_server, "/slow.bin")[2]) == 300_000
    assert 0.4 < time.monotonic() - t0 < 0.9


def test_sixty_four_mib_in_well_under_two_seconds(http_server: LoopbackServer) -> None:
    res = http_server.add("/big.bin", size=64 << 20)
    res.body.read(0, 1)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", http_server.port)) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = 0
        while blk := s.recv(1 << 20):
            got += len(blk)
    assert got > 64 << 20
    assert time.monotonic() - t0 < 2.0
    assert http_server.wait_idle()
    assert http_server.bytes_sent("/big.bin") == 64 << 20


def test_fail_times_then_success_with_retry_after(http_server: LoopbackServer) -> None:
    http_server.add("/flaky", size=100, hook=fail_times(2, 503, retry_after=1))
    r1, r2, r3 = (_get(http_server, "/flaky") for _ in range(3))
    assert (r1[0], r1[1]["Retry-After"], r2[0], r3[0], len(r3[2])) == (503, "1", 503, 200, 100)
    assert [r.status for r in http_server.requests("/flaky")] == [503, 503, 200]


def test_close_and_reset_after_n_bytes(http_server: LoopbackServer) -> None:
    http_server.add("/c", size=100_000, hook=close_after(1000, on=1))
    http_server.add("/r", size=100_000, hook=reset_after(1000))
    out = _raw(http_server, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Length: 100000" in head and len(body) == 1000
    assert len(_get(http_server, "/c")[2]) == 100_000  # only the first request was cut
    out = _raw(http_server, b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"<timeout-or-reset>") or len(out.partition(b"\r\n\r\n")[2]) == 1000
    http_server.wait_idle()
    assert [r.outcome for r in http_server.requests()] == [
        "fault-close", "complete", "fault-reset"]


def test_stall_mid_body_and_before_headers(http_server: LoopbackServer) -> None:
    http_server.add("/s", size=10_000, hook=stall(500, 0.5))
    t0 = time.monotonic()
    assert len(_get(http_server, "/s")[2]) == 10_000
    assert time.monotonic() - t0 >= 0.45
    http_server.add("/hang", size=10_000, hook=stall(0, None, headers_first=False))
    out = _raw(http_server, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.3)
    assert out == b"<timeout-or-reset>"
    http_server.add("/hang2", size=10_000, hook=stall(0, None))
    out = _raw(http_server, b"GET /hang2 HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.3)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\n<timeout-or-reset>")


def test_lies_about_ranges(http_server: LoopbackServer) -> None:
    res = http_server.add("/w", size=10_000, hook=wrong_content_range(16))
    st, h, body = _get(http_server, "/w", {"Range": "bytes=0-99"})
    assert (st, h["Content-Range"], body) == (206, "bytes 16-115/10000", res.body.read(0, 100))
    res = http_server.add("/s", size=10_000, hook=shift_body(32))
    st, h, body = _get(http_server, "/s", {"Range": "bytes=0-99"})
    assert (h["Content-Range"], body) == ("bytes 0-99/10000", res.body.read(32, 100))


def test_broken_chunked_framing(http_server: LoopbackServer) -> None:
    def bad(req, resp):
        resp.chunked_fault = "bad-size"

    def trunc(req, resp):
        resp.chunked_fault = "truncated"

    http_server.add("/bad", size=50_000, framing="chunked", hook=bad)
    http_server.add("/trunc", size=50_000, framing="chunked", hook=trunc)
    out = _raw(http_server, b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"zz-not-hex\r\n")
    out = _raw(http_server, b"GET /trunc HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"\r\n") and not out.endswith(b"0\r\n\r\n")


def test_new_version_from_the_kth_request(http_server: LoopbackServer) -> None:
    v2 = Content(2000, "v2")
    http_server.add("/f", size=1000, etag='"v1"', hook=chain(serve_from(3, v2, etag='"v2"')))
    a, _b, c = (_get(http_server, "/f") for _ in range(3))
    assert (a[1]["ETag"], len(a[2]), c[1]["ETag"], c[2]) == ('"v1"', 1000, '"v2"', v2.bytes())
    st, _, _ = _get(http_server, "/f", {"Range": "bytes=0-9", "If-Range": '"v1"'})
    assert st == 200  # the validator changed: If-Range no longer matches


def test_redirect_and_request_records(http_server: LoopbackServer) -> None:
    http_server.add("/target", size=10)
    http_server.add("/hop", redirect="/target")
    st, h, _ = _get(http_server, "/hop", {"Authorization": "Bearer x"})
    assert (st, h["Location"]) == (302, "/target")
    rec = http_server.requests("/hop")[0]
    assert rec.headers["authorization"] == "Bearer x" and rec.method == "GET"


def test_hook_errors_are_reported() -> None:
    srv = LoopbackServer().start()
    try:
        srv.add("/x", size=10, hook=lambda req, resp: 1 / 0)
        assert _get(srv, "/x")[0] == 500
    finally:
        srv.stop()
    assert isinstance(srv.errors[0], ZeroDivisionError)


def test_stop_is_prompt_with_stalled_connections() -> None:
    srv = LoopbackServer().start()
    srv.add("/hang", size=100_000, hook=stall(10, None))
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.0
    s.close()


def test_doubles_as_a_proxy(http_server: LoopbackServer) -> None:
    res = http_server.add("/p.bin", size=1000)
    out = _raw(http_server, b"GET http://elsewhere.invalid/p.bin HTTP/1.1\r\n"
               b"Host: elsewhere.invalid\r\nConnection: close\r\n\r\n")
    assert out.partition(b"\r\n\r\n")[2] == res.body.read(0, 1000)
    out = _raw(http_server, b"CONNECT elsewhere.invalid:80 HTTP/1.1\r\n\r\n"
               b"GET /p.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-15\r\n"
               b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 206")
    assert out.endswith(res.body.read(0, 16))
    assert [r.method for r in http_server.requests()] == ["GET", "CONNECT", "GET"]
    assert http_server.requests()[0].target == "http://elsewhere.invalid/p.bin"


def test_lying_lengths(http_server: LoopbackServer) -> None:
    res = http_server.add("/short", size=10_000, hook=premature_eof(500))
    out = _raw(http_server, b"GET /short HTTP/1.1\r\nHost: x\r\nRange: bytes=0-999\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Length: 1500" in head and b"Connection: close" in head
    assert body == res.body.read(0, 1000)
    res = http_server.add("/long", size=10_000, hook=overlong_body(300))
    out = _raw(http_server, b"GET /long HTTP/1.1\r\nHost: x\r\nRange: bytes=0-999\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head and b"Content-Range: bytes 0-999/10000" in head
    assert body == res.body.read(0, 1300)
