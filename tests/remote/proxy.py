"""A small loopback proxy for the proxy tests: HTTP forward proxy, HTTP ``CONNECT``
tunnel and SOCKS5 (RFC 1928, user/password auth of RFC 1929), optionally behind TLS (an
``https://`` proxy). Written here rather than taken from a package so that it logs
exactly what the tests must prove: which targets were asked for, in which form (a host
name or an address: ``socks5h://`` sends the name, ``socks5://`` resolves it first), and
with which credentials.

Host names are resolved through ``hosts`` (a name -> address map) before the system
resolver, so tests can use names under ``.invalid`` that only the proxy can reach: a
download that succeeds with such a URL cannot have bypassed the proxy.

Usage::

    with LoopbackProxy("http", auth=("user", "pw"), hosts={"origin.invalid": "127.0.0.1"}) as p:
        lib.set_proxy(id, p.url(with_auth=True).encode())
        ...
        assert p.log and all(r.authorized for r in p.log)
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import select
import socket
import socketserver
import ssl
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["LoopbackProxy", "ProxyRecord"]

_IDLE = 30.0  # seconds a tunnel may stay silent before it is closed


@dataclass
class ProxyRecord:
    """One proxied request (forward), tunnel (CONNECT) or SOCKS5 connect."""

    kind: str  #: "forward", "connect" or "socks5"
    host: str  #: the target host as the client named it (a name, or an address)
    port: int
    #: how the client named the host: "name", "ipv4" or "ipv6"
    address_type: str
    user: str | None  #: the user name the client sent, if any
    password: str | None
    authorized: bool  #: the credentials were accepted (or none were required)
    request_line: str = ""  #: forward proxy: the request line as received
    headers: list[tuple[str, str]] = field(default_factory=list)  #: forward: as received
    status: int = 0  #: the proxy's own answer: 200, 407, 502...


def _address_type(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "name"
    return "ipv4" if ip.version == 4 else "ipv6"


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit():
        return authority, default_port
    return host, int(port)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(_IDLE)
        owner._track(sock)
        try:
            if owner.kind == "socks5":
                owner._socks5(sock)
            else:
                owner._http(sock)
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            owner._untrack(sock)
            with contextlib.suppress(OSError):
                sock.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LoopbackProxy


class LoopbackProxy:
    """A threaded proxy on 127.0.0.1.

    ``kind``: ``"http"`` (forward and CONNECT on one port) or ``"socks5"``. ``auth``: a
    (user, password) pair that every request must carry (``Proxy-Authorization: Basic``
    for HTTP, RFC 1929 for SOCKS5); None accepts anyone. ``ssl_context``: a server
    context, making an ``https://`` proxy (HTTP kinds only). ``hosts``: names the proxy
    resolves itself.
    """

    def __init__(
        self,
        kind: str = "http",
        *,
        auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        if kind not in ("http", "socks5"):
            raise ValueError(f"unknown proxy kind {kind!r}")
        if ssl_context is not None and kind != "http":
            raise ValueError("only the HTTP proxy can sit behind TLS")
        self.kind = kind
        self.auth = auth
        self.ssl_context = ssl_context
        self.hosts = dict(hosts or {})
        self.log: list[ProxyRecord] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LoopbackProxy:
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.owner = self
        if self.ssl_context is not None:
            srv.socket = self.ssl_context.wrap_socket(
                srv.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = srv
        self.port = int(srv.server_address[1])
        self._thread = threading.Thread(
            target=srv.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> LoopbackProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(
        self,
        *,
        scheme: str | None = None,
        with_auth: bool = True,
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        """The proxy URL, credentials included when ``with_auth`` (or given)."""
        if scheme is None:
            scheme = ("https" if self.ssl_context else "http") if self.kind == "http" else "socks5"
        cred = ""
        if user is not None or password is not None:
            cred = f"{user or ''}:{password or ''}@"
        elif with_auth and self.auth is not None:
            cred = f"{self.auth[0]}:{self.auth[1]}@"
        return f"{scheme}://{cred}127.0.0.1:{self.port}"

    def records(self, kind: str | None = None) -> list[ProxyRecord]:
        with self._lock:
            return [r for r in self.log if kind is None or r.kind == kind]

    # -- internals ------------------------------------------------------------------------

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.add(s)

    def _untrack(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.discard(s)

    def _record(self, rec: ProxyRecord) -> ProxyRecord:
        with self._lock:
            self.log.append(rec)
        return rec

    def _check(self, user: str | None, password: str | None) -> bool:
        return self.auth is None or (user, password) == self.auth

    def _connect(self, host: str, port: int) -> socket.socket:
        addr = self.hosts.get(host.lower(), host.strip("[]"))
        up = socket.create_connection((addr, port), timeout=5)
        up.settimeout(_IDLE)
        self._track(up)
        return up

    # HTTP: forward and CONNECT ----------------------------------------------------------

    def _http(self, sock: socket.socket) -> None:
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        buf = b""
        upstream: socket.socket | None = None
        up_key: tuple[str, int] | None = None
        try:
            while True:
                head, buf = _read_head(sock, buf, upstream)
                if head is None:
                    return
                line, headers = _parse_head(head)
                method, target, version = line.split(" ", 2)
                user, password = _basic_credentials(headers)
                ok = self._check(user, password)
                if method.upper() == "CONNECT":
                    host, port = _split_host_port(target, 443)
                    rec = self._record(
                        ProxyRecord(
                            "connect",
                            host,
                            port,
                            _address_type(host),
                            user,
                            password,
                            ok,
                            line,
                            headers,
                        )
                    )
                    if not ok:
                        rec.status = 407
                        _send_407(sock)
                        return
                    try:
                        up = self._connect(host, port)
                    except OSError:
                        rec.status = 502
                        sock.sendall(
                            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                        return
                    rec.status = 200
                    sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    try:
                        if buf:
                            up.sendall(buf)
                        _pipe(sock, up)
                    finally:
                        self._untrack(up)
                        up.close()
                    return
                # forward: absolute-form target
                scheme, _, rest = target.partition("://")
                if scheme.lower() != "http" or not rest:
                    sock.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    return
                authority, slash, path = rest.partition("/")
                host, port = _split_host_port(authority, 80)
                rec = self._record(
                    ProxyRecord(
                        "forward",
                        host,
                        port,
                        _address_type(host),
                        user,
                        password,
                        ok,
                        line,
                        headers,
                    )
                )
                if not ok:
                    rec.status = 407
                    _send_407(sock)
                    return
                if upstream is not None and up_key != (host, port):
                    return  # one origin per client connection: the client reconnects
                if upstream is None:
                    try:
                        upstream = self._connect(host, port)
                    except OSError:
                        rec.status = 502
                        sock.sendall(
                            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                        return
                    up_key = (host, port)
                rec.status = 200  # relayed; the origin's own status is the origin's business
                out = [f"{method} {slash}{path} {version}"]
                out += [f"{k}: {v}" for k, v in headers if not k.lower().startswith("proxy-")]
                upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        finally:
            if upstream is not None:
                self._untrack(upstream)
                upstream.close()

    # SOCKS5 ----------------------------------------------------------------------------

    def _socks5(self, sock: socket.socket) -> None:
        ver, n = _recv_exact(sock, 2)
        if ver != 5:
            return
        methods = _recv_exact(sock, n)
        want = 0x02 if self.auth is not None else 0x00
        if want not in methods:
            # recorded before answering: the client may act on the answer at once
            self._record(ProxyRecord("socks5", "", 0, "", None, None, False, status=407))
            sock.sendall(b"\x05\xff")
            return
        sock.sendall(bytes([5, want]))
        user = password = None
        if want == 0x02:
            sub, ulen = _recv_exact(sock, 2)
            user = _recv_exact(sock, ulen).decode("utf-8", "replace")
            (plen,) = _recv_exact(sock, 1)
            password = _recv_exact(sock, plen).decode("utf-8", "replace")
            ok = sub == 1 and self._check(user, password)
            if not ok:
                self._record(ProxyRecord("socks5", "", 0, "", user, password, False, status=407))
            sock.sendall(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return
        ver, cmd, _rsv, atyp = _recv_exact(sock, 4)
        if atyp == 1:
            host, kind = socket.inet_ntop(socket.AF_INET, _recv_exact(sock, 4)), "ipv4"
        elif atyp == 4:
            host, kind = socket.inet_ntop(socket.AF_INET6, _recv_exact(sock, 16)), "ipv6"
        elif atyp == 3:
            (ln,) = _recv_exact(sock, 1)
            host, kind = _recv_exact(sock, ln).decode("idna"), "name"
        else:
            sock.sendall(b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        (port,) = struct.unpack("!H", _recv_exact(sock, 2))
        rec = self._record(ProxyRecord("socks5", host, port, kind, user, password, True))
        if cmd != 1:
            rec.status = 502
            sock.sendall(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        try:
            up = self._connect(host, port)
        except OSError:
            rec.status = 502
            sock.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        rec.status = 200
        bound_ip, bound_port = up.getsockname()[:2]
        sock.sendall(
            b"\x05\x00\x00\x01" + socket.inet_aton(bound_ip) + struct.pack("!H", bound_port)
        )
        try:
            _pipe(sock, up)
        finally:
            self._untrack(up)
            up.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ValueError("connection closed mid-handshake")
        out += data
    return out


def _read_head(
    sock: socket.socket, buf: bytes, upstream: socket.socket | None
) -> tuple[bytes | None, bytes]:
    """Reads one request head from ``sock``; while waiting, relays what ``upstream``
    (the origin of a forwarded request) sends back. Returns (None, b"") at the end."""
    while b"\r\n\r\n" not in buf:
        if upstream is not None:
            ready = _wait_readable([sock, upstream])
            if upstream in ready:
                data = upstream.recv(65536)
                if not data:
                    return None, b""
                sock.sendall(data)
            if sock not in ready:
                continue
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
        if len(buf) > 65536:
            raise ValueError("request head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


def _basic_credentials(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    for k, v in headers:
        if k.lower() == "proxy-authorization":
            scheme, _, token = v.partition(" ")
            if scheme.lower() != "basic":
                return None, None
            try:
                user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except ValueError:
                return None, None
            return user, password
    return None, None


def _send_407(sock: socket.socket) -> None:
    sock.sendall(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="tthsd-test"\r\n'
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


def _wait_readable(socks: list[socket.socket]) -> list[socket.socket]:
    # TLS sockets may hold decrypted bytes that select() cannot see.
    pending = [s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()]
    if pending:
        return pending
    ready, _, _ = select.select(socks, [], [], _IDLE)
    if not ready:
        raise TimeoutError("tunnel idle")
    return ready


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copies both ways in one thread (a TLS socket must not be used by two at once)
    until either side closes."""
    peer = {a: b, b: a}
    while True:
        for s in _wait_readable([a, b]):
            data = s.recv(65536)
            if not data:
                return
            peer[s].sendall(data)
