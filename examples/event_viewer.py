"""Watch downloads from another process: a tiny viewer for TTHSD remote events.

    python examples/event_viewer.py --tcp 127.0.0.1:9000
    python examples/event_viewer.py --ws 127.0.0.1:9001
    python examples/event_viewer.py --tcp 127.0.0.1:0 --ws 127.0.0.1:0 --demo

It listens, and prints every event a downloader sends it, live, one line each. Point a
download at it with ``use_callback_url=True`` and:

* ``--tcp HOST:PORT``: ``remote_callback_url="HOST:PORT"``, ``use_socket=True`` (one JSON
  object per line);
* ``--ws HOST:PORT``: ``remote_callback_url="http://HOST:PORT/"`` (or ``ws://``),
  ``use_socket=False`` (one WebSocket text message per event).

Each message is ``{"Type": ..., "Msg": "<the msg object as a JSON string>", "Event":
{...}}`` (see docs/remote-events.md). ``--raw`` prints the messages as received,
``--no-updates`` hides progress, ``--demo`` runs a download of a generated file from a
loopback server against the first listener, then exits. Port 0 picks a free port; the
banner says which. The standard library is all it needs (the WebSocket side is a minimal
RFC 6455 server: text frames, fragments, ping, close).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65536
_MAX_MESSAGE = 16 << 20

_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


# -- formatting ----------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def describe(message: dict[str, Any]) -> str:
    """One line for one remote message (without the time and source)."""
    event = message.get("Event")
    event = event if isinstance(event, dict) else {}
    kind = str(message.get("Type") or event.get("Type") or "?")
    raw_msg = message.get("Msg", "{}")
    try:
        msg = json.loads(raw_msg) if isinstance(raw_msg, str) else raw_msg
    except ValueError:
        msg = {"Text": raw_msg}
    if not isinstance(msg, dict):
        msg = {"Text": str(msg)}
    who = str(event.get("ShowName", ""))
    if event.get("ID"):
        who += f" [{event['ID']}]"
    if kind == "startOne":
        detail = f"{msg.get('Index')}/{msg.get('Total')} {msg.get('URL')} -> {msg.get('SavePath')}"
    elif kind == "update":
        done, total = int(msg.get("Downloaded", 0)), int(msg.get("Total", 0))
        pct = f" {done / total:6.1%}" if total > 0 else ""
        detail = (
            f"{human_bytes(done)} / {human_bytes(total) if total else '?'}{pct}"
            f"  {human_bytes(float(msg.get('Speed', 0)))}/s"
        )
    elif kind == "endOne":
        detail = "done" if msg.get("Success") else "FAILED"
    elif kind == "err":
        detail = f"{msg.get('Code', '?')}: {msg.get('Error', '')}"
    elif kind == "msg":
        detail = str(msg.get("Text", ""))
    elif kind in ("start", "end"):
        detail = ""
    else:
        detail = json.dumps(msg, ensure_ascii=False)
    return f"{kind:<8} {who:<24} {detail}".rstrip()


class Printer:
    """Turns received text into output lines; one instance shared by all listeners."""

    def __init__(self, *, raw: bool, updates: bool) -> None:
        self.raw = raw
        self.updates = updates
        self.ended = threading.Event()

    def __call__(self, source: str, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            say(f"{_now()} {source} (not a JSON object) {text[:200]!r}")
            return
        kind = message.get("Type")
        if kind == "update" and not self.updates:
            return
        line = text if self.raw else describe(message)
        say(f"{_now()} {source} {line}")
        if kind == "end":
            self.ended.set()


def _now() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


# -- listeners -----------------------------------------------------------------------------

Sink = Callable[[str, str], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: Sink


class _Server6(_Server):
    address_family = socket.AF_INET6


class TcpLines(socketserver.StreamRequestHandler):
    """``use_socket=True``: one JSON object per line."""

    server: _Server

    def handle(self) -> None:
        source = "tcp:{}:{}".format(*self.client_address[:2])
        say(f"{_now()} {source} connected")
        for line in self.rfile:
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text:
                self.server.sink(source, text)
        say(f"{_now()} {source} disconnected")


class WebSocket(socketserver.StreamRequestHandler):
    """``use_socket=False``: a WebSocket, one text message per event."""

    server: _Server

    def handle(self) -> None:
        source = "ws:{}:{}".format(*self.client_address[:2])
        head = self._read_head()
        if head is None:
            return
        request_line, headers = head
        key = headers.get("sec-websocket-key")
        if "websocket" not in headers.get("upgrade", "").lower() or not key:
            body = b"TTHSD event viewer: connect with a WebSocket client.\n"
            self.wfile.write(
                b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\n"
                b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            return
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self.wfile.flush()
        path = request_line.split(" ")[1] if request_line.count(" ") >= 2 else "/"
        say(f"{_now()} {source} connected ({path})")
        try:
            self._messages(source)
        except (OSError, ValueError) as exc:
            say(f"{_now()} {source} dropped: {exc}")
            return
        say(f"{_now()} {source} disconnected")

    def _read_head(self) -> tuple[str, dict[str, str]] | None:
        lines: list[str] = []
        size = 0
        while True:
            line = self.rfile.readline(_MAX_HEAD)
            size += len(line)
            if not line or size > _MAX_HEAD:
                return None
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            lines.append(text)
        if not lines:
            return None
        headers = {}
        for h in lines[1:]:
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise ValueError("connection closed mid-frame")
        return data

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(header + payload)
        self.wfile.flush()

    def _messages(self, source: str) -> None:
        parts: list[bytes] = []
        kind = 0
        while True:
            b0, b1 = self._read(2)
            fin, opcode, masked, n = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            if n > _MAX_MESSAGE:
                raise ValueError(f"frame of {n} bytes")
            mask = self._read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))
            if opcode == 0x8:  # close: answer it, and we are done
                self._send(0x8, data[:2])
                return
            if opcode == 0x9:
                self._send(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                kind, parts = opcode, []
            parts.append(data)
            if sum(map(len, parts)) > _MAX_MESSAGE:
                raise ValueError("message too large")
            if fin:
                text = b"".join(parts).decode("utf-8", "replace")
                parts = []
                if kind == 0x1:
                    self.server.sink(source, text)


def listen(kind: str, address: str, sink: Sink) -> _Server:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--{kind} wants HOST:PORT, got {address!r}")
    handler = TcpLines if kind == "tcp" else WebSocket
    host = host.strip("[]") or "127.0.0.1"
    server_class = _Server6 if ":" in host else _Server
    try:
        server = server_class((host, int(port)), handler)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}") from None
    server.sink = sink
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def remote_arguments(kind: str, server: _Server) -> tuple[str, bool]:
    """What to pass as (``remote_callback_url``, ``use_socket``) to reach ``server``."""
    raw_host, port = server.server_address[:2]
    host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (where, True) if kind == "tcp" else (f"http://{where}/", False)


# -- demo ------------------------------------------------------------------------------


def demo(remote_callback_url: str, use_socket: bool, printer: Printer) -> None:
    """Download a generated file from a loopback server, events sent to this viewer."""
    import tempfile
    from pathlib import Path

    from _server import example_server

    from tthsd_interface import TTHSDownloader

    with (
        tempfile.TemporaryDirectory() as tmp,
        example_server("demo.bin", size=64 << 20) as urls,
        TTHSDownloader() as dl,
    ):
        dl_id = dl.start_download(
            urls,
            [Path(tmp) / "demo.bin"],
            thread_count=8,
            chunk_size_mb=4,
            use_callback_url=True,
            remote_callback_url=remote_callback_url,
            use_socket=use_socket,
        )
        if dl_id <= 0:
            raise SystemExit("the demo download could not start")
        dl.wait(dl_id, timeout=120)
    printer.ended.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--tcp", action="append", default=[], metavar="HOST:PORT",
        help="listen for use_socket=True (one JSON per line)",
    )  # fmt: skip
    parser.add_argument(
        "--ws", action="append", default=[], metavar="HOST:PORT",
        help="listen for WebSocket events (use_socket=False)",
    )  # fmt: skip
    parser.add_argument("--raw", action="store_true", help="print messages as received")
    parser.add_argument("--no-updates", action="store_true", help="hide `update` events")
    parser.add_argument(
        "--demo", action="store_true",
        help="run a loopback download against the first listener, then exit",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.tcp and not args.ws:
        args.tcp = ["127.0.0.1:9000"]
    printer = Printer(raw=args.raw, updates=not args.no_updates)
    servers = [("tcp", listen("tcp", a, printer)) for a in args.tcp]
    servers += [("ws", listen("ws", a, printer)) for a in args.ws]
    for kind, server in servers:
        url, use_socket = remote_arguments(kind, server)
        say(f"listening ({kind}): remote_callback_url={url!r} use_socket={use_socket}")
    try:
        if args.demo:
            demo(*remote_arguments(*servers[0]), printer)
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
