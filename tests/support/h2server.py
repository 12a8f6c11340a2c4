"""A loopback HTTPS server speaking HTTP/2 (ALPN ``h2``) and HTTP/1.1, for tests of how
the core behaves against a real HTTP/2 stack.

The protocol work is hypercorn's (an ASGI server built on the ``h2`` state machine):
ALPN, SETTINGS, flow-control windows, HPACK, stream multiplexing, the frames a real
server sends. The answers are ours: a small ASGI app that serves the same
:class:`~tests.support.server.Resource` objects, plans the same
:class:`~tests.support.server.Response` (:func:`~tests.support.server.plan_response`:
Range, 206 with an exact ``Content-Range``, 416, If-Range with a strong ETag or a date),
and runs the same hooks (``fail_times``, ``wrong_content_range``, ``serve_from``,
``premature_eof``, ``stall``, ``close_after``, ``reset_after``... and those of
``tests/adversarial/knobs.py``), so an HTTP/1.1 fault test carries over by changing its
server.

Usage::

    with H2Server(cert_chain) as srv:           # https://127.0.0.1:<port>, h2 and http/1.1
        res = srv.add("/big.bin", size=32 << 20)
        srv.conn_throttle = {2: 128 * 1024}     # the 2nd TCP connection crawls
        ... download res.url with SSL_CERT_FILE naming the CA ...
        srv.max_busy_connections()              # connections with a request open at once
        srv.max_streams_per_connection()        # requests open at once on one connection
        srv.bytes_by_connection()               # {connection index: body bytes}

What the response plan means on HTTP/2 (where it differs from the HTTP/1.1 server):

* ``framing``: ``"length"`` sends ``content-length``; ``"close"`` and ``"chunked"`` send
  none (HTTP/2 has no chunked coding: the body ends with the stream). ``keep_alive`` and
  ``chunked_fault`` have no meaning here and are ignored; ``raw`` is refused (a hook
  error: the test fails).
* ``announce_length``: a ``content-length`` that lies. Shorter than the body: the DATA
  frames run past it; longer: the stream ends early (a truncated body). Both are
  malformed on HTTP/2 (RFC 9113 8.1.1), the client must refuse the response.
* ``reset_after``: after that many body bytes, the stream is reset (``RST_STREAM``
  ``INTERNAL_ERROR``); the connection and its other streams go on. On an HTTP/1.1
  connection the TCP connection is reset (RST).
* ``close_after``: after that many body bytes, the whole TCP connection is dropped without
  a ``GOAWAY`` (every stream on it dies), as a crashed server or a middlebox would.
* ``throttle``: bytes per second for this response (one stream). Per connection, shared
  by all its streams: :attr:`H2Server.conn_throttle`, ``{connection index: bytes/s}`` or
  a callable ``(Connection) -> bytes/s | None``.
* ``stall_after``/``stall_for``, ``delay``: as on HTTP/1.1 (silence on this stream only).

Records: every request is an :class:`H2Record` (a :class:`RequestRecord` plus the TCP
connection it came on, its client port and ``scope["http_version"]``); every TCP
connection a :class:`Connection` (index in accept order from 1, client port, ALPN, when
it opened and closed). ``bytes_sent`` counts body bytes handed to hypercorn for a stream
(at most one window of them may still be unsent when a stream dies).

hypercorn is driven below its public ``serve()``: we accept connections ourselves so each
one is known (its port, its writer to drop it), and a stream reset goes through the
connection's ``h2`` state machine. Those internals are reached in ``h2wire.h2_stream`` and
:meth:`H2Server._on_connection` only; a hypercorn release that moves them fails these
tests loudly (``H2Server.errors``), never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .content import Body, Content, LiteralContent
from .h2wire import (
    Connection,
    Message,
    Receive,
    Scope,
    Send,
    drain,
    reset_stream,
    send_unless_gone,
    watch_disconnect,
)
from .server import (
    Headers,
    RequestRecord,
    Resource,
    Response,
    parse_range,
    plan_response,
)

__all__ = ["Connection", "H2Record", "H2Server"]

#: Body bytes handed to hypercorn at a time (it frames them in DATA frames of the
#: client's SETTINGS_MAX_FRAME_SIZE and holds at most two frames per stream).
SEND_BLOCK = 64 * 1024
#: Headers an HTTP/2 response must not carry (RFC 9113 8.2.2).
_HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection")

_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}
ConnRate = Mapping[int, float] | Callable[["Connection"], "float | None"] | None


@dataclass
class H2Record(RequestRecord):
    """A request as the HTTP/2 server saw it: :class:`RequestRecord` (``conn`` is the
    connection's index) plus its connection."""

    port: int = 0  #: the client's TCP port (one per connection)
    http_version: str = ""  #: ``scope["http_version"]``: "2" or "1.1"
    connection: Connection | None = field(default=None, repr=False)


class H2Server:
    """An HTTPS server on 127.0.0.1 and an ephemeral port, offering ``alpn`` (HTTP/2 and
    HTTP/1.1 by default; ``alpn=("http/1.1",)`` makes an HTTP/1.1-only TLS server).

    ``cert_chain``: a PEM file with the certificate chain (and the key, unless
    ``keyfile`` names it). Start and stop with ``with`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        cert_chain: str | os.PathLike[str],
        keyfile: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        alpn: Iterable[str] = ("h2", "http/1.1"),
        send_block: int = SEND_BLOCK,
        max_concurrent_streams: int = 100,
        keep_alive_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.cert_chain = Path(cert_chain)
        self.keyfile = Path(keyfile) if keyfile is not None else None
        self.alpn = list(alpn)
        self.send_block = send_block
        self.max_concurrent_streams = max_concurrent_streams
        self.keep_alive_timeout = keep_alive_timeout
        #: per-connection pacing: ``{connection index: bytes/s}`` or a callable
        self.conn_throttle: ConnRate = None
        #: exceptions raised by hooks or the app (a test should fail when not empty)
        self.errors: list[BaseException] = []
        #: exceptions that ended a connection's handling (seen when a client closes as
        #: the server writes; not failures of the server's own)
        self.connection_errors: list[BaseException] = []
        self.port = 0
        self._resources: dict[str, Resource] = {}
        self._records: list[H2Record] = []
        self._per_path: dict[str, int] = {}
        self._conns: list[Connection] = []
        self._by_port: dict[int, Connection] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> H2Server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(256)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"h2-server-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the HTTP/2 server did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("the HTTP/2 server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop accepting, wake stalled responses, drop every connection."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> H2Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- resources (as LoopbackServer.add) ---------------------------------------------

    def add(
        self,
        path: str,
        body: Body | bytes | str | None = None,
        *,
        size: int | None = None,
        salt: str | None = None,
        **knobs: Any,
    ) -> Resource:
        """Register ``path``: ``body``, else ``Content(size, salt or path)``, else empty;
        ``knobs`` are :class:`Resource` fields (``ranges``, ``status``, ``etag``,
        ``throttle``, ``hook``...)."""
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        if body is None:
            body = Content(size, salt or path) if size is not None else LiteralContent(b"")
        elif isinstance(body, (bytes, bytearray, str)):
            body = LiteralContent(body)
        res = Resource(path=path, body=body, **knobs)
        res.url = self.url(path)
        with self._lock:
            self._resources[path] = res
        return res

    def resource(self, path: str) -> Resource:
        return self._resources[path]

    # -- what happened --------------------------------------------------------------

    def requests(self, path: str | None = None, method: str | None = None) -> list[H2Record]:
        """Recorded requests in arrival order, optionally for one path / method."""
        with self._lock:
            recs = list(self._records)
        return [
            r
            for r in recs
            if (path is None or r.path == path) and (method is None or r.method == method)
        ]

    def connections(self) -> list[Connection]:
        """Every TCP connection accepted, in accept order."""
        with self._lock:
            return list(self._conns)

    def bytes_sent(self, path: str | None = None) -> int:
        return sum(r.bytes_sent for r in self.requests(path))

    def bytes_by_connection(self, path: str | None = None) -> dict[int, int]:
        """Body bytes per connection index (connections that carried no request: 0)."""
        out = {c.index: 0 for c in self.connections()}
        for r in self.requests(path):
            out[r.conn] = out.get(r.conn, 0) + r.bytes_sent
        return out

    def ports(self) -> set[int]:
        """The client ports of the connections that carried a request."""
        return {r.port for r in self.requests()}

    def max_busy_connections(self, path: str | None = None) -> int:
        """The most connections that had a request open at the same moment."""
        return _max_overlap(self.requests(path), key=lambda r: r.conn, distinct=True)

    def max_streams_per_connection(self, path: str | None = None) -> dict[int, int]:
        """Per connection index: the most requests it had open at the same moment."""
        by_conn: dict[int, list[H2Record]] = {}
        for r in self.requests(path):
            by_conn.setdefault(r.conn, []).append(r)
        return {
            c: _max_overlap(rs, key=lambda r: r.seq, distinct=False) for c, rs in by_conn.items()
        }

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
        """Forget recorded requests (resources and connections stay)."""
        with self._lock:
            self._records.clear()
            self._per_path.clear()

    # -- the server thread ------------------------------------------------------------

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._main(sock))
        except BaseException as exc:  # reported by start() or, later, through errors
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                self.errors.append(exc)
        finally:
            sock.close()

    async def _main(self, sock: socket.socket) -> None:
        from hypercorn.app_wrappers import ASGIWrapper
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.worker_context import WorkerContext
        from hypercorn.config import Config

        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = Config()
        config.keep_alive_timeout = self.keep_alive_timeout
        config.keep_alive_max_requests = 1 << 30
        config.h2_max_concurrent_streams = self.max_concurrent_streams
        config.errorlog = None  # our app reports its own failures through self.errors
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 needs TLS 1.2 or later
        ctx.load_cert_chain(
            str(self.cert_chain), None if self.keyfile is None else str(self.keyfile)
        )
        ctx.set_alpn_protocols(self.alpn)
        context = WorkerContext(None)
        app = ASGIWrapper(cast(Any, self._app))
        tasks: set[asyncio.Task[None]] = set()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                tasks.add(task)
            peer = writer.get_extra_info("peername")
            obj = writer.get_extra_info("ssl_object")
            with self._lock:
                conn = Connection(
                    index=len(self._conns) + 1,
                    port=int(peer[1]),
                    alpn=obj.selected_alpn_protocol() if obj else None,
                )
                conn._writer = writer
                self._conns.append(conn)
                self._by_port[conn.port] = conn
            try:
                tcp = TCPServer(app, loop, config, context, {}, reader, writer)
                conn._tcp = tcp
                await tcp
            except asyncio.CancelledError:
                pass  # the server is stopping; ending quietly spares asyncio's complaint
            except Exception as exc:
                # hypercorn writing to a connection the client just closed (asyncio's TLS
                # transport may raise AttributeError then): the client's doing, kept
                # apart from the failures of our app and hooks.
                self.connection_errors.append(exc)
            finally:
                conn.closed = time.monotonic()
                if task is not None:
                    tasks.discard(task)

        server = await asyncio.start_server(
            on_connection, sock=sock, ssl=ctx, ssl_handshake_timeout=10, backlog=256
        )
        self._loop = loop
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            # As hypercorn's own shutdown: wakes every connection's keep-alive timer (a
            # dropped connection's timer would otherwise hold its task for that long).
            await context.terminated.set()
            for conn in self.connections():
                if conn.closed is None:
                    conn.abort()
            # Dropped connections end their tasks; any still running after a moment
            # (a stalled response) is cancelled.
            if tasks:
                _, pending = await asyncio.wait(list(tasks), timeout=2)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=5)

    async def _sleep(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (None: until the server stops); True if it is stopping."""
        assert self._stop is not None
        if self._stop.is_set():
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    # -- the ASGI app -------------------------------------------------------------------

    def _new_record(self, **kw: Any) -> H2Record:
        with self._lock:
            nth = self._per_path.get(kw["path"], 0) + 1
            self._per_path[kw["path"]] = nth
            rec = H2Record(seq=len(self._records) + 1, nth=nth, **kw)
            self._records.append(rec)
            self._in_flight += 1
        return rec

    def _finish(self, rec: H2Record) -> None:
        rec.finished = time.monotonic()
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        port = int(scope["client"][1]) if scope.get("client") else 0
        conn = self._by_port.get(port)
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        rng = headers.get("Range")
        version = str(scope["http_version"])
        rec = self._new_record(
            conn=conn.index if conn else 0,
            method=scope["method"],
            target=target,
            path=scope["path"],
            version=f"HTTP/{version}",
            headers=headers,
            range_header=rng,
            range_spec=parse_range(rng),
            port=port,
            http_version=version,
            connection=conn,
        )
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(watch_disconnect(receive, gone))
        try:
            await self._respond(scope, rec, conn, send, gone)
        except Exception as exc:
            if not rec.outcome:
                rec.outcome = "error"
            self.errors.append(exc)
        finally:
            watcher.cancel()
            if not rec.outcome:
                rec.outcome = "client-closed" if gone.is_set() else "stopped"
            self._finish(rec)

    def _plan(self, rec: H2Record) -> Response:
        res = self._resources.get(rec.path)
        rec.resource = res
        resp = plan_response(rec, res)
        if res is not None and res.hook is not None:
            try:
                out = res.hook(rec, resp)
            except Exception as exc:  # a bug in a test's hook: answer 500, report it
                self.errors.append(exc)
                body = LiteralContent(f"hook failed: {exc!r}\n")
                out = Response(500, Headers([("Content-Type", "text/plain")]), body, 0, body.size)
            if out is not None:
                resp = out
        if resp.raw is not None:
            self.errors.append(ValueError("raw responses have no HTTP/2 form"))
            body = LiteralContent(b"raw responses are not served over HTTP/2\n")
            resp = Response(500, Headers([("Content-Type", "text/plain")]), body, 0, body.size)
        return resp

    def _conn_rate(self, conn: Connection | None) -> float | None:
        rule = self.conn_throttle
        if conn is None or rule is None:
            return None
        if callable(rule):
            return rule(conn)
        return rule.get(conn.index)

    async def _respond(
        self, scope: Scope, rec: H2Record, conn: Connection | None, send: Send, gone: asyncio.Event
    ) -> None:
        resp = self._plan(rec)
        if resp.delay > 0 and await self._sleep(resp.delay):
            rec.outcome = "stopped"
            return
        head_only = rec.method == "HEAD" or resp.status in (204, 304)
        h = resp.headers
        for name in ("Content-Length", *_HOP_BY_HOP):
            h.remove(name)
        if resp.framing == "length":
            h.set(
                "Content-Length",
                resp.announce_length if resp.announce_length is not None else resp.length,
            )
        raw_headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in h]
        rec.status = resp.status
        if resp.body is not None and resp.length > 0:
            rec.served = (resp.offset, resp.offset + resp.length - 1)
        start = {"type": "http.response.start", "status": resp.status, "headers": raw_headers}
        if not await send_unless_gone(send, start, gone, conn):
            return
        if head_only or resp.body is None or resp.length == 0:
            if await send_unless_gone(send, _END, gone, conn):
                rec.outcome = "complete"
            return
        await self._send_body(scope, rec, conn, resp, send, gone)

    async def _send_body(
        self,
        scope: Scope,
        rec: H2Record,
        conn: Connection | None,
        resp: Response,
        send: Send,
        gone: asyncio.Event,
    ) -> None:
        assert resp.body is not None
        total = resp.length
        stop_at, stop_kind = total, ""
        for kind, at in (("fault-close", resp.close_after), ("fault-reset", resp.reset_after)):
            if at is not None and at < stop_at:
                stop_at, stop_kind = max(0, at), kind
        conn_rate = self._conn_rate(conn)
        block = self.send_block
        for rate in (resp.throttle, conn_rate):
            if rate:
                block = max(1024, min(block, int(rate / 20)))
        stall_at = resp.stall_after
        t0 = time.monotonic()
        sent = 0
        for blk in resp.body.iter_blocks(resp.offset, min(total, stop_at), block):
            while blk:
                if stall_at is not None and sent == stall_at:
                    stall_at = None
                    if await self._sleep(resp.stall_for if resp.stall_for > 0 else None):
                        rec.outcome = "stopped"
                        return
                piece = blk
                if stall_at is not None and sent < stall_at < sent + len(piece):
                    piece = blk[: stall_at - sent]
                if conn_rate and conn is not None:
                    await conn.pace(len(piece), conn_rate)
                if gone.is_set():
                    return
                msg = {"type": "http.response.body", "body": piece, "more_body": True}
                if not await send_unless_gone(send, msg, gone, conn):
                    return
                sent += len(piece)
                rec.bytes_sent = sent
                blk = blk[len(piece) :]
                if resp.throttle:
                    ahead = sent / resp.throttle - (time.monotonic() - t0)
                    if ahead > 0 and await self._sleep(ahead):
                        rec.outcome = "stopped"
                        return
        if (
            stall_at is not None
            and sent == stall_at
            and await self._sleep(resp.stall_for if resp.stall_for > 0 else None)
        ):
            rec.outcome = "stopped"
            return
        if stop_kind:
            await drain(scope, conn)
            rec.outcome = stop_kind
            if stop_kind == "fault-close" and conn is not None:
                conn.abort()
            elif conn is not None and not await reset_stream(scope, conn):
                conn.abort(rst=True)  # HTTP/1.1: a stream is its connection
            return
        short = resp.announce_length is not None and sent < resp.announce_length
        if short and resp.framing == "length" and scope["http_version"] != "2" and conn:
            # HTTP/1.1 has no way to end a body before its Content-Length but closing the
            # connection (h11 refuses to), which is what a server that runs dry does.
            await drain(scope, conn)
            rec.outcome = "fault-close"
            conn.abort()
            return
        if await send_unless_gone(send, _END, gone, conn):  # the last bytes reached the socket
            rec.outcome = "complete"


def _max_overlap(recs: list[H2Record], *, key: Callable[[H2Record], int], distinct: bool) -> int:
    """The most ``key`` values (``distinct``) or records open at one moment; a record is
    open from ``started`` to ``finished`` (now, if it has not finished)."""
    now = time.monotonic()
    marks: list[tuple[float, int, int]] = []
    for r in recs:
        marks.append((r.started, 1, key(r)))
        marks.append((r.finished if r.finished is not None else now, -1, key(r)))
    marks.sort(key=lambda m: (m[0], m[1]))  # at a tie, what ends goes first
    open_by: dict[int, int] = {}
    best = 0
    for _, delta, k in marks:
        open_by[k] = open_by.get(k, 0) + delta
        if open_by[k] == 0:
            del open_by[k]
        best = max(best, len(open_by) if distinct else sum(open_by.values()))
    return best
