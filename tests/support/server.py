"""A loopback HTTP/1.1 server for tests, written on raw sockets so it can misbehave.

Why not ``http.server``: it hides the socket, so broken chunked framing, a close after N
body bytes, a reset (RST via ``SO_LINGER`` 0) or a stall mid-body are awkward or
impossible. Here each accepted connection is a thread (``socketserver``) running a small
HTTP/1.1 loop: parse a request, plan a :class:`Response`, let the resource's hook alter
the plan, send it, repeat while the connection is kept alive.

Usage::

    with LoopbackServer() as srv:                      # 127.0.0.1, ephemeral port
        res = srv.add("/big.bin", size=8 << 20)         # Content(8 MiB, salt "/big.bin")
        srv.add("/plain.bin", size=1000, ranges=False)  # ignores Range: 200, full body
        srv.add("/gone", status=404)
        srv.add("/flaky.bin", size=1 << 20, hook=fail_times(2, status=503))
        download(res.url) ...
        assert srv.bytes_sent("/big.bin") <= 8 << 20
        for rec in srv.requests("/big.bin"): print(rec.method, rec.range, rec.status)

Resource knobs (keyword arguments of :meth:`LoopbackServer.add`, attributes of
:class:`Resource`, changeable while the server runs):

* ``ranges``: True (default) honours one ``Range: bytes=a-b`` / ``a-`` / ``-n`` with a 206
  and an exact ``Content-Range``, or a 416 with ``Content-Range: bytes */N`` when it
  cannot be satisfied. False ignores Range (200, full body, no ``Accept-Ranges``).
  A multi-range or malformed Range header is ignored (200), as RFC 9110 allows.
* ``framing``: ``"length"`` (Content-Length, keep-alive), ``"close"`` (no length, body
  delimited by closing the connection), ``"chunked"`` (Transfer-Encoding: chunked).
* ``status``: a fixed status (404, 500...) served with a short text body, never ranged.
* ``etag`` / ``last_modified``: sent as validators; ``If-Range`` is honoured with them
  (a range is served only when ``If-Range`` matches the strong ETag or the date exactly).
* ``throttle``: bytes per second, per response (so per connection at a time).
* ``headers``: extra response headers.
* ``redirect``: a Location to send with ``redirect_status`` (302) instead of a body.
* ``hook``: ``hook(request, response) -> Response | None`` called for each request after
  the response is planned; it can change anything in the plan (status, headers, body,
  slice) and arm faults (``close_after``, ``reset_after``, ``stall_after``/``stall_for``,
  ``chunked_fault``, ``delay``). Ready-made hooks: :func:`fail_times`, :func:`close_after`,
  :func:`reset_after`, :func:`stall`, :func:`wrong_content_range`, :func:`shift_body`,
  :func:`premature_eof`, :func:`overlong_body`, :func:`serve_from`, :func:`chain`.

The server doubles as an HTTP proxy for tests of ``set_proxy``: an absolute-form target
(``GET http://any.host/path``) is served from the resource at ``/path``, and ``CONNECT`` is
answered 200 after which the tunnel carries plain HTTP on the same connection.

The request records, response plans and resources live in ``exchange.py``, the
ready-made hooks in ``hooks.py``; both are re-exported here.

Every request is recorded as a :class:`RequestRecord` (method, path, headers, the Range
asked, the status sent, body bytes handed to the socket, the outcome), in arrival order.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import struct
import threading
import time
from typing import Any

from .content import Body, Content, LiteralContent
from .exchange import (
    REASONS,
    Headers,
    Hook,
    RequestRecord,
    Resource,
    Response,
    parse_range,
    plan_response,
)
from .hooks import (
    chain,
    close_after,
    fail_times,
    overlong_body,
    premature_eof,
    reset_after,
    serve_from,
    shift_body,
    stall,
    wrong_content_range,
)

__all__ = [
    "Headers",
    "Hook",
    "LoopbackServer",
    "RequestRecord",
    "Resource",
    "Response",
    "chain",
    "close_after",
    "fail_times",
    "overlong_body",
    "parse_range",
    "plan_response",
    "premature_eof",
    "reset_after",
    "serve_from",
    "shift_body",
    "stall",
    "wrong_content_range",
]

SEND_BLOCK = 256 * 1024
_MAX_LINE = 65536
_MAX_HEADERS = 200

class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def setup(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.server.owner.idle_timeout)
        self.conn_id = self.server.owner._register(sock)
        self.rfile = sock.makefile("rb", buffering=65536)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.server.owner._unregister(self.request)

    def handle(self) -> None:
        owner = self.server.owner
        while not owner._stopping.is_set():
            try:
                rec = self._read_request()
            except (OSError, ValueError):
                return
            if rec is None:
                return
            if rec.method == "CONNECT":  # act as a tunnelling proxy: go on on this socket
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rec.status, rec.outcome = 200, "complete"
                owner._finish(rec)
                continue
            try:
                keep = owner._respond(self.request, rec)
            except (OSError, ssl.SSLError):
                if not rec.outcome:
                    rec.outcome = "stopped" if owner._stopping.is_set() else "client-closed"
                keep = False
            finally:
                owner._finish(rec)
            if not keep:
                return

    def _readline(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ValueError("line too long")
        return line

    def _read_request(self) -> RequestRecord | None:
        line = self._readline()
        while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
            line = self._readline()
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise ValueError(f"bad request line {line!r}")
        method, target, version = parts
        items = []
        while True:
            h = self._readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"bad header line {h!r}")
            items.append((name.strip(), value.strip()))
            if len(items) > _MAX_HEADERS:
                raise ValueError("too many headers")
        headers = Headers(items)
        body = b""
        cl = headers.get("Content-Length")
        if cl and cl.isdigit() and int(cl) > 0:
            body = self.rfile.read(int(cl))
        path = target.split("?", 1)[0]
        if "://" in path:  # absolute-form (a proxy-style request)
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        rng = headers.get("Range")
        return self.server.owner._new_record(
            conn=self.conn_id, method=method, target=target, path=path, version=version,
            headers=headers, range_header=rng, range_spec=parse_range(rng), body=body,
        )


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256
    owner: LoopbackServer


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 and an ephemeral port.

    Start and stop it with ``with`` (or :meth:`start` / :meth:`stop`). ``base_url`` is
    ``http://127.0.0.1:<port>``; :meth:`add` registers a resource and returns it with its
    ``url`` filled in. ``ssl_context`` (a server-side :class:`ssl.SSLContext`) makes it an
    HTTPS server.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 30.0,
        send_block: int = SEND_BLOCK,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.send_block = send_block
        self._resources: dict[str, Resource] = {}
        self._records: list[RequestRecord] = []
        self._per_path: dict[str, int] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._conns: dict[int, socket.socket] = {}
        self._conn_seq = 0
        self._stopping = threading.Event()
        self._tcp: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        #: exceptions raised by hooks (the fixtures fail the test when this is not empty)
        self.errors: list[BaseException] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        tcp = _TCPServer((self.host, 0), _Handler, bind_and_activate=False)
        tcp.owner = self
        try:
            tcp.server_bind()
            tcp.server_activate()
        except BaseException:
            tcp.server_close()
            raise
        if self.ssl_context is not None:
            tcp.socket = self.ssl_context.wrap_socket(tcp.socket, server_side=True)
        self._tcp = tcp
        self.port = tcp.server_address[1]
        self._thread = threading.Thread(
            target=tcp.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"loopback-http-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake stalled responses, close every connection."""
        if self._tcp is None:
            return
        self._stopping.set()
        self._tcp.shutdown()
        self._tcp.server_close()
        with self._lock:
            conns = list(self._conns.values())
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self._tcp = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- resources ------------------------------------------------------------------

    def add(
        self,
        path: str,
        body: Body | bytes | str | None = None,
        *,
        size: int | None = None,
        salt: str | None = None,
        **knobs: Any,
    ) -> Resource:
        """Register ``path``. The body is ``body`` (a :class:`Content`, another
        :class:`Body`, or bytes/str), else ``Content(size, salt or path)``, else empty.
        ``knobs`` are :class:`Resource` fields."""
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        if body is None:
            body = Content(size, salt or path) if size is not None else LiteralContent(b"")
        elif isinstance(body, (bytes, bytearray, str)):
            body = LiteralContent(body)
        if knobs.get("framing", "length") not in ("length", "close", "chunked"):
            raise ValueError(f"unknown framing {knobs['framing']!r}")
        res = Resource(path=path, body=body, **knobs)
        res.url = self.url(path)
        with self._lock:
            self._resources[path] = res
        return res

    def resource(self, path: str) -> Resource:
        return self._resources[path]

    def remove(self, path: str) -> None:
        with self._lock:
            self._resources.pop(path, None)

    # -- what happened --------------------------------------------------------------

    def requests(self, path: str | None = None, method: str | None = None) -> list[RequestRecord]:
        """Recorded requests in arrival order, optionally for one path / method."""
        with self._lock:
            recs = list(self._records)
        return [
            r for r in recs
            if (path is None or r.path == path) and (method is None or r.method == method)
        ]

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes handed to sockets, over all requests (or those for ``path``)."""
        return sum(r.bytes_sent for r in self.requests(path))

    def connections_opened(self) -> int:
        return self._conn_seq

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no response is being sent; True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def clear(self) -> None:
        """Forget recorded requests (resources stay)."""
        with self._lock:
            self._records.clear()
            self._per_path.clear()

    # -- internals --------------------------------------------------------------------

    def _register(self, sock: socket.socket) -> int:
        with self._lock:
            self._conn_seq += 1
            self._conns[id(sock)] = sock
            return self._conn_seq

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(id(sock), None)

    def _new_record(self, **kw: Any) -> RequestRecord:
        with self._lock:
            nth = self._per_path.get(kw["path"], 0) + 1
            self._per_path[kw["path"]] = nth
            rec = RequestRecord(seq=len(self._records) + 1, nth=nth, **kw)
            self._records.append(rec)
            self._in_flight += 1
        return rec

    def _finish(self, rec: RequestRecord) -> None:
        rec.finished = time.monotonic()
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _respond(self, sock: socket.socket, rec: RequestRecord) -> bool:
        """Send the response for ``rec``; True when the connection stays open."""
        res = self._resources.get(rec.path)
        rec.resource = res
        resp = plan_response(rec, res)
        if res is not None and res.hook is not None:
            try:
                out = res.hook(rec, resp)
            except Exception as exc:  # a bug in a test's hook: answer 500, report it
                self.errors.append(exc)
                body = LiteralContent(f"hook failed: {exc!r}\n")
                out = Response(500, Headers([("Content-Type", "text/plain")]), body, 0,
                               body.size, keep_alive=False)
            if out is not None:
                resp = out
        if resp.delay > 0 and self._stopping.wait(resp.delay):
            rec.outcome = "stopped"
            return False
        if resp.raw is not None:
            rec.status = -1
            sock.sendall(resp.raw)
            rec.outcome = "fault-close"
            return False
        head_only = rec.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        h = resp.headers
        for name in ("Content-Length", "Transfer-Encoding", "Connection"):
            h.remove(name)
        if resp.framing == "length":
            h.set("Content-Length", resp.announce_length if resp.announce_length is not None
                  else resp.length)
        elif resp.framing == "chunked":
            h.set("Transfer-Encoding", "chunked")
        else:
            resp.keep_alive = False
        if resp.close_after is not None or resp.reset_after is not None:
            resp.keep_alive = False
        if resp.announce_length is not None and resp.announce_length != resp.length:
            resp.keep_alive = False
        h.set("Connection", "keep-alive" if resp.keep_alive else "close")
        reason = REASONS.get(resp.status, "Status")
        head = f"HTTP/1.1 {resp.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in h
        ) + "\r\n"
        rec.status = resp.status
        if resp.body is not None and resp.length > 0:
            rec.served = (resp.offset, resp.offset + resp.length - 1)
        head_bytes = head.encode("latin-1")
        if head_only or resp.body is None or resp.length == 0:
            tail = b"0\r\n\r\n" if resp.framing == "chunked" and not head_only else b""
            sock.sendall(head_bytes + tail)
            rec.outcome = "complete"
            return resp.keep_alive
        ok = self._send_body(sock, rec, resp, head_bytes)
        return ok and resp.keep_alive

    def _send_body(self, sock: socket.socket, rec: RequestRecord, resp: Response,
                   head: bytes) -> bool:
        assert resp.body is not None
        chunked = resp.framing == "chunked"
        total = resp.length
        # Fault thresholds, in body bytes.
        stop_at = total
        stop_kind = ""
        for kind, at in (("fault-close", resp.close_after), ("fault-reset", resp.reset_after)):
            if at is not None and at < stop_at:
                stop_at, stop_kind = max(0, at), kind
        if chunked and resp.chunked_fault == "bad-size" and total // 2 < stop_at:
            stop_at, stop_kind = total // 2, "bad-size"
        stall_at = resp.stall_after
        block = self.send_block
        if resp.throttle:
            block = max(1024, min(block, int(resp.throttle / 20)))
        t0 = time.monotonic()
        sent = 0
        pending = head  # the head rides with the first block: one segment for small bodies
        for blk in resp.body.iter_blocks(resp.offset, min(total, stop_at), block):
            while blk:
                if stall_at is not None and sent == stall_at:
                    stall_at = None
                    if pending:
                        sock.sendall(pending)
                        pending = b""
                    if self._stopping.wait(resp.stall_for if resp.stall_for > 0 else None):
                        rec.outcome = "stopped"
                        return False
                piece = blk
                if stall_at is not None and sent < stall_at < sent + len(piece):
                    piece = blk[: stall_at - sent]
                if resp.pace is not None:
                    wait = resp.pace(len(piece))
                    if wait > 0 and self._stopping.wait(wait):
                        rec.outcome = "stopped"
                        return False
                out = b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece
                sock.sendall(pending + out if pending else out)
                pending = b""
                sent += len(piece)
                rec.bytes_sent = sent
                blk = blk[len(piece):]
                if resp.throttle:
                    ahead = sent / resp.throttle - (time.monotonic() - t0)
                    if ahead > 0 and self._stopping.wait(ahead):
                        rec.outcome = "stopped"
                        return False
        if pending:  # no body byte was sent (a fault at 0)
            sock.sendall(pending)
        if stall_at is not None and sent == stall_at and self._stopping.wait(
            resp.stall_for if resp.stall_for > 0 else None
        ):
            rec.outcome = "stopped"
            return False
        if stop_kind == "fault-close":
            rec.outcome = stop_kind
            sock.shutdown(socket.SHUT_WR)
            return False
        if stop_kind == "fault-reset":
            rec.outcome = stop_kind
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return False
        if stop_kind == "bad-size":
            sock.sendall(b"zz-not-hex\r\n")
            rec.outcome = "fault-close"
            return False
        if chunked:
            if resp.chunked_fault == "truncated":
                rec.outcome = "fault-close"
                return False
            sock.sendall(b"0\r\n\r\n")
        rec.outcome = "complete"
        if resp.framing == "close":
            sock.shutdown(socket.SHUT_WR)
            return False
        return True


# -- ready-made hooks -----------------------------------------------------------------
