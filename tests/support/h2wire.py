"""Below the ASGI app of :mod:`tests.support.h2server`: the TCP connections it accepted
and the HTTP/2 streams on them. A :class:`Connection` records one connection and can
drop it; the stream helpers send unless the stream went away, wait until what was handed
over is on the wire, and reset one stream. The last two reach into hypercorn's ``h2``
state machine (:func:`h2_stream`), the one place besides ``H2Server._on_connection``
that does; a hypercorn release that moves those internals fails the tests loudly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Connection:
    """One TCP connection the server accepted (after its TLS handshake)."""

    index: int  #: accept order, from 1
    port: int  #: the client's port
    alpn: str | None  #: "h2", "http/1.1", or None when nothing was negotiated
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None
    #: the server dropped it on purpose (``close_after``)
    dropped: bool = False
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False)
    _tcp: Any = field(default=None, repr=False)  # hypercorn's TCPServer
    _pace_at: float = field(default=0.0, repr=False)

    async def pace(self, nbytes: int, rate: float) -> None:
        """Wait for this connection's turn to send ``nbytes`` at ``rate`` bytes/s (one
        clock for all its streams, so the connection as a whole keeps to the rate)."""
        now = time.monotonic()
        at = max(self._pace_at, now)
        self._pace_at = at + nbytes / rate
        if at > now:
            await asyncio.sleep(at - now)

    def closing(self) -> bool:
        """The connection is closed or on its way."""
        return self.closed is not None or self._writer is None or self._writer.is_closing()

    def abort(self, rst: bool = False) -> None:
        """Drop the TCP connection now: no GOAWAY, no TLS close_notify; a RST with
        ``rst``, else a FIN."""
        w = self._writer
        if w is None:
            return
        try:
            if rst:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
            self.dropped = True
            w.transport.abort()
        except AttributeError:
            # asyncio's TLS transport, closed twice (the client went first, hypercorn and
            # we closed after it), has let go of its protocol: every call on it raises
            # AttributeError ('NoneType' object has no attribute '_get_extra_info', seen
            # in a soak). The connection is gone already; nothing to drop.
            if not w.is_closing():
                raise


async def send_unless_gone(
    send: Send, msg: Message, gone: asyncio.Event, conn: Connection | None
) -> bool:
    """``send(msg)``, given up when the stream goes away meanwhile (hypercorn holds a send
    on a full stream buffer, and the end of a body until the buffer is empty; a dead
    connection never empties it); False then."""
    sending = asyncio.ensure_future(send(msg))
    if not sending.done():
        waiting = asyncio.ensure_future(gone.wait())
        await asyncio.wait((sending, waiting), return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not sending.done():
            # The end of a stream also announces its disconnect, before the send that
            # ended it returns: a moment's grace tells that from a dead stream.
            await asyncio.wait((sending,), timeout=0.5)
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            return False
    try:
        sending.result()
    except Exception:
        # A write racing the client's close fails inside asyncio's TLS transport
        # (AttributeError, ConnectionError...): the stream is gone, the server is fine.
        if gone.is_set() or conn is None or conn.closing():
            return False
        raise
    return True


async def watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Read the request (and its body) and then wait for ``http.disconnect``: the client
    reset the stream or the connection ended."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            gone.set()
            return


# -- hypercorn internals (see the module doc) ---------------------------------------------


def h2_stream(scope: Scope, conn: Connection) -> tuple[Any, int] | None:
    """The connection's H2Protocol and the stream id that carries ``scope``; None when
    the connection speaks HTTP/1.1 (or the stream is gone)."""
    tcp = conn._tcp
    proto = getattr(getattr(tcp, "protocol", None), "protocol", None)
    streams = getattr(proto, "streams", None)
    if proto is None or streams is None or not hasattr(proto, "connection"):
        return None
    for sid, stream in list(streams.items()):
        if getattr(stream, "scope", None) is scope:
            return proto, int(sid)
    return None


async def drain(scope: Scope, conn: Connection | None) -> None:
    """Wait (briefly) until the bytes handed over for this stream are on the wire, so a
    fault after N bytes comes after N bytes, not before."""
    if conn is None:
        return
    found = h2_stream(scope, conn)
    if found is None:
        return
    proto, sid = found
    buf = proto.stream_buffers.get(sid)
    if buf is not None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(buf.drain(), 2.0)


async def reset_stream(scope: Scope, conn: Connection) -> bool:
    """Send RST_STREAM (INTERNAL_ERROR) for the stream of ``scope``; False when there is
    no HTTP/2 stream to reset (an HTTP/1.1 connection)."""
    import h2.errors
    import h2.exceptions

    found = h2_stream(scope, conn)
    if found is None:
        return False
    proto, sid = found
    try:
        proto.connection.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
    except h2.exceptions.StreamClosedError:
        return True  # it ended meanwhile: nothing left to reset
    await proto._flush()  # through hypercorn's writer, under its send lock
    return True
