"""Server knobs that ``tests/support`` lacks, written as hooks over its
:class:`~tests.support.server.Response` plan (that module is not ours to change).

* :func:`fail_first`: the first ``n`` chosen requests get a status, with a ``Retry-After``
  that may be computed when the request arrives (an HTTP date "3 s from now").
* :func:`storm`: every chosen request gets the status (a server that never recovers).
* :func:`raw`: send these exact bytes instead of a response, then close.
* :func:`redirect_on`: turn the chosen responses into a redirect (a range request that
  is suddenly sent elsewhere).
* :func:`chunked_overlong`: a 206 sent chunked whose chunks carry more bytes than its
  ``Content-Range`` names.
* :func:`random_faults`: one fault drawn at a given rate per request, from a seeded
  generator (the soak's fault server).
* :func:`http_date`: an IMF-fixdate ``seconds`` from now.
* :class:`SelfSignedCert`: a certificate signed by its own key, for a TLS server nobody
  trusts unless told to.
* :class:`DualPort`: one port speaking TLS and plain HTTP, for an https -> http redirect
  to the same host and port.
"""

from __future__ import annotations

import datetime as _dt
import random
import threading
from collections import Counter
from collections.abc import Callable, Container
from email.utils import formatdate
from pathlib import Path
from typing import Any

from tests.support.content import LiteralContent
from tests.support.server import Headers, Hook, RequestRecord, Response

__all__ = [
    "FAULT_KINDS",
    "DualPort",
    "SelfSignedCert",
    "chunked_overlong",
    "fail_first",
    "http_date",
    "is_worker",
    "random_faults",
    "raw",
    "redirect_on",
    "storm",
]

Which = Callable[[RequestRecord], bool] | Container[int] | int | None


def _pick(which: Which) -> Callable[[RequestRecord], bool]:
    if which is None:
        return lambda req: True
    if callable(which):
        return which
    if isinstance(which, int):
        k = which
        return lambda req: req.nth == k
    ks = which
    return lambda req: req.nth in ks


def is_worker(req: RequestRecord) -> bool:
    """A request for a range that does not start at 0 (a worker's, not the probe's)."""
    return req.range_spec is not None and (req.range_spec[0] or 0) > 0


def http_date(seconds: float) -> str:
    """``Retry-After`` / ``Last-Modified`` style date ``seconds`` from now (whole
    seconds: the fraction is cut, as every HTTP date does)."""
    return formatdate(_now() + seconds, usegmt=True)


def _now() -> float:
    return _dt.datetime.now(_dt.UTC).timestamp()


def _status_response(status: int, keep_alive: bool, retry_after: str | None) -> Response:
    body = LiteralContent(f"{status} from the adversarial server\n")
    h = Headers([("Content-Type", "text/plain")])
    if retry_after is not None:
        h.set("Retry-After", retry_after)
    return Response(status, h, body, 0, body.size, keep_alive=keep_alive)


def fail_first(n: int, status: int, *, retry_after: str | Callable[[], str] | None = None,
               on: Which = None) -> Hook:
    """The first ``n`` requests chosen by ``on`` get ``status`` (and ``Retry-After``,
    computed per request when it is a callable); the hook records when each was sent in
    ``hook.sent`` (monotonic times)."""
    pick = _pick(on)
    lock = threading.Lock()
    count = 0
    sent: list[float] = []

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        nonlocal count
        if not pick(req):
            return None
        with lock:
            count += 1
            if count > n:
                return None
            sent.append(req.started)
        ra = retry_after() if callable(retry_after) else retry_after
        return _status_response(status, resp.keep_alive, ra)

    hook.sent = sent  # type: ignore[attr-defined]
    return hook


def storm(status: int, on: Which = None) -> Hook:
    """Every request chosen by ``on`` gets ``status``: a server that never recovers."""
    pick = _pick(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        return _status_response(status, resp.keep_alive, None) if pick(req) else None

    return hook


def raw(data: bytes, on: Which = None) -> Hook:
    """Send ``data`` verbatim (no status line unless it holds one), then close."""
    pick = _pick(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req):
            resp.raw = data
        return None

    return hook


def redirect_on(location: str, status: int = 302, on: Which = None) -> Hook:
    """The chosen requests are answered with a redirect to ``location``."""
    pick = _pick(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if not pick(req):
            return None
        body = LiteralContent(b"moved\n")
        h = Headers([("Content-Type", "text/plain"), ("Location", location)])
        return Response(status, h, body, 0, body.size, keep_alive=resp.keep_alive)

    return hook


def chunked_overlong(extra: int, on: Which = None) -> Hook:
    """A 206 sent with chunked framing whose chunks carry ``extra`` bytes past the range
    its ``Content-Range`` names (the file's next bytes): a client must cut them."""
    pick = _pick(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            resp.framing = "chunked"
            resp.length = min(resp.length + extra, resp.body.size - resp.offset)
        return None

    return hook


#: What :func:`random_faults` may inject, each a transport fault a client must survive.
FAULT_KINDS = ("close", "reset", "eof", "overlong", "503", "500", "429", "stall", "cr")


def random_faults(rate: float, seed: int, *, kinds: tuple[str, ...] = FAULT_KINDS,
                  stall_for: float = 5.0) -> Hook:
    """At ``rate`` per request, one fault drawn from ``kinds``: ``close``/``reset`` after a
    random share of the body, ``eof`` (a Content-Length longer than the body), ``overlong``
    (bytes past the range), ``503``/``429`` (with ``Retry-After: 0``), ``500``, ``stall``
    (silent mid-body for ``stall_for`` s: the client's read timeout must cut it) and ``cr``
    (a ``Content-Range`` that lies). ``hook.injected`` counts the faults by kind."""
    rng = random.Random(seed)
    lock = threading.Lock()
    injected: Counter[str] = Counter()

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        with lock:
            if rng.random() >= rate:
                return None
            kind = rng.choice(kinds)
            share = rng.random()
        length = resp.length if resp.body is not None else 0
        if kind in ("503", "500", "429"):
            injected[kind] += 1
            return _status_response(int(kind), resp.keep_alive,
                                    None if kind == "500" else "0")
        if resp.status not in (200, 206) or length == 0:
            return None  # a body fault needs a body
        cut = int(length * share)
        if kind == "close":
            resp.close_after = cut
        elif kind == "reset":
            resp.reset_after = cut
        elif kind == "eof":
            if resp.framing != "length":
                return None
            resp.announce_length = length + 1 + cut
        elif kind == "overlong":
            if resp.framing != "length" or resp.offset + length >= resp.body.size:
                return None
            resp.announce_length = length
            resp.length = min(length + 1 + cut, resp.body.size - resp.offset)
        elif kind == "stall":
            resp.stall_after = cut
            resp.stall_for = stall_for
        elif kind == "cr":
            if resp.status != 206:
                return None
            first = resp.offset + 16
            resp.headers.set("Content-Range",
                             f"bytes {first}-{first + length - 1}/{resp.body.size}")
        injected[kind] += 1
        return None

    hook.injected = injected  # type: ignore[attr-defined]
    return hook


class SelfSignedCert:
    """A key and a certificate signed by that key, naming ``names`` (DNS names or IP
    addresses). Not a CA: a client that trusts this very certificate (``SSL_CERT_FILE``)
    accepts it, any other refuses it."""

    def __init__(self, *names: str, days: int = 30, expired: bool = False) -> None:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tthsd self-signed")])
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = _dt.datetime.now(_dt.UTC)
        if expired:
            not_before, not_after = now - _dt.timedelta(days=60), now - _dt.timedelta(days=1)
        else:
            not_before, not_after = now - _dt.timedelta(hours=1), now + _dt.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``cert.pem`` and ``key.pem`` into ``folder``; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "cert.pem", folder / "key.pem"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key

    def server_context(self, folder: Path):  # type: ignore[no-untyped-def]
        import ssl

        cert, key = self.write(folder)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        return ctx


class DualPort:
    """One port that speaks TLS and plain HTTP: a connection whose first byte is a TLS
    handshake (0x16) is served over TLS, any other as plain text. Every request gets a
    302 to ``location`` (TLS side) or a short 200 (plain side); ``plain`` records the
    header blocks that arrived in clear text. For the https -> http downgrade on the same
    host and port (an origin change only by scheme)."""

    def __init__(self, context: Any, location: Callable[[int], str]) -> None:
        import socket

        self.context = context
        self.location = location
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.plain: list[str] = []
        self.tls: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DualPort:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import contextlib
        import socket

        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: Any) -> None:
        import socket

        try:
            conn.settimeout(5)
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x16":
                conn = self.context.wrap_socket(conn, server_side=True)
                head = _read_head(conn)
                self.tls.append(head)
                loc = self.location(self.port)
                conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {loc}\r\nContent-Length: 0"
                             f"\r\nConnection: close\r\n\r\n".encode())
            else:
                head = _read_head(conn)
                self.plain.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close"
                             b"\r\n\r\nplain")
        except OSError:
            pass
        finally:
            conn.close()


def _read_head(conn: Any) -> str:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")
