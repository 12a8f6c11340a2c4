"""Loopback event listeners for the remote-sink tests: a TCP one (one JSON per line) and
a WebSocket one (the ``websockets`` package's threaded server).

Both record every message in arrival order, parsed, with the connection it came on, and
can misbehave: read slowly, never read, or die (close every connection and the listening
socket, as a crashed process would) once a predicate over the received messages holds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: SO_LINGER on with a 0 s timeout: close() sends RST, as a killed process's socket may.
_LINGER_RST = struct.pack("ii", 1, 0)

Predicate = Callable[[list["Message"]], bool]


@dataclass
class Message:
    """One message as a listener received it."""

    conn: int  #: 1-based connection number
    text: str  #: the raw text (a line without its newline, or a WebSocket text frame)
    value: Any  #: the parsed JSON, or None when it did not parse
    at: float = field(default_factory=time.monotonic)

    @property
    def type(self) -> str:
        return str(self.value.get("Type")) if isinstance(self.value, dict) else ""


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Recorder:
    def __init__(self, die_when: Predicate | None) -> None:
        self.messages: list[Message] = []
        self.connections = 0
        self.die_when = die_when
        self.dead = threading.Event()
        self._cond = threading.Condition()

    def _record(self, conn: int, text: str) -> bool:
        """Records one message; True when the listener must now die."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        with self._cond:
            self.messages.append(Message(conn, text, value))
            self._cond.notify_all()
            return self.die_when is not None and self.die_when(self.messages)

    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def types(self) -> list[str]:
        return [m.type for m in self.snapshot()]

    def wait_for(self, pred: Callable[[list[Message]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_type(self, type_: str, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda ms: any(m.type == type_ for m in ms), timeout)


class TcpListener(_Recorder):
    """Listens on 127.0.0.1; every accepted connection is read line by line.

    ``read_delay``: seconds to sleep before each ``recv`` of ``read_size`` bytes (a slow
    reader); ``never_read``: accept and never read; ``rcvbuf``: the receive buffer asked
    for the listening socket (inherited by accepted ones), so a non-reading listener
    pushes back early; ``die_when``: a predicate over the received messages after which
    the listener closes everything; ``hang_up_after``: close each connection after that
    many lines (and keep listening: a flapping listener).
    """

    def __init__(
        self,
        *,
        read_delay: float = 0.0,
        read_size: int = 65536,
        never_read: bool = False,
        rcvbuf: int | None = None,
        die_when: Predicate | None = None,
        hang_up_after: int | None = None,
    ) -> None:
        super().__init__(die_when)
        self.hang_up_after = hang_up_after
        self.read_delay = read_delay
        self.read_size = read_size
        self.never_read = never_read
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        t = threading.Thread(
            target=self._accept_loop, name=f"tcp-listener-{self.port}", daemon=True
        )
        t.start()
        self._threads.append(t)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self.dead.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self.dead.is_set():
                    conn.close()
                    return
                self.connections += 1
                n = self.connections
                self._conns.append(conn)
            t = threading.Thread(target=self._read_loop, args=(conn, n), daemon=True)
            t.start()
            self._threads.append(t)

    def _read_loop(self, conn: socket.socket, n: int) -> None:
        if self.never_read:
            self.dead.wait()
            return
        buf = b""
        lines = 0
        while not self.dead.is_set():
            if self.read_delay:
                time.sleep(self.read_delay)
            try:
                data = conn.recv(self.read_size)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if self._record(n, line.decode("utf-8", "replace")):
                    self.die()
                    return
                lines += 1
                if self.hang_up_after is not None and lines >= self.hang_up_after:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                    conn.close()
                    return

    def die(self) -> None:
        """Close the listening socket and every connection (RST where data is unread)."""
        self.dead.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                c.close()
            except OSError:
                pass
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def close(self) -> None:
        self.die()


class WsListener(_Recorder):
    """A ``websockets`` (sync API) server on 127.0.0.1 that records text messages.

    ``paths`` records the request path of each connection; ``read_delay`` sleeps after
    each message; ``die_when`` as for :class:`TcpListener`; ``ssl_context`` (a server
    context) makes it a ``wss://`` listener.
    """

    def __init__(
        self, *, read_delay: float = 0.0, die_when: Predicate | None = None, ssl_context: Any = None
    ) -> None:
        from websockets.sync.server import serve

        super().__init__(die_when)
        self.read_delay = read_delay
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self._server = serve(
            self._handler, "127.0.0.1", 0, compression=None, ping_interval=None, ssl=ssl_context
        )
        self.port = int(self._server.socket.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"ws-listener-{self.port}", daemon=True
        )
        self._thread.start()

    def url(self, scheme: str = "ws", path: str = "/events") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _handler(self, ws: Any) -> None:
        with self._lock:
            if self.dead.is_set():
                return
            self.connections += 1
            n = self.connections
            self._conns.append(ws)
            self.paths.append(ws.request.path if ws.request is not None else "")
        try:
            for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if self._record(n, text):
                    threading.Thread(target=self.die, daemon=True).start()
                    return
                if self.read_delay:
                    time.sleep(self.read_delay)
        except Exception:
            return

    def die(self) -> None:
        """Drop every connection without a closing handshake and stop listening."""
        self.dead.set()
        with self._lock:
            conns = list(self._conns)
        for ws in conns:
            try:
                ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.shutdown()
        self._server.socket.close()

    def close(self) -> None:
        if not self.dead.is_set():
            self.die()
