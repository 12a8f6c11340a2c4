"""Expiring signed links on a :class:`~tests.support.server.LoopbackServer`, the way object
stores and CDNs hand out large files: the file's public URL answers a ``302`` to a signed
URL (``?expires=...&sig=...``, an HMAC of the path and the deadline) that serves the file,
ranges and all, until its deadline, then refuses (``403`` with S3's ``Request has
expired`` body by default; ``401``, ``410`` or ``400`` with ``ExpiredToken`` on request).
A request counts by when it arrives: a response already under way finishes (as S3 does).

Usage::

    links = SignedLinks(http_server, "/big.bin", Content(32 << 20, "big"), ttl=0.4,
                        throttle=2 << 20)
    download(links.url, ...)
    links.resolutions   # redirects handed out (the first request, and every renewal)
    links.refusals      # requests refused because their link had expired

``serve(body, etag)`` makes later resolutions lead to another version of the file (at a
new signed path; links already handed out keep serving the old one until they expire).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from urllib.parse import parse_qs, urlsplit

from .content import Body, LiteralContent
from .server import Headers, LoopbackServer, RequestRecord, Response

__all__ = ["SignedLinks"]

_SECRET = b"tthsd-test-signing-key"

_BODIES = {
    400: b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message>"
         b"</Error>",
    401: b"<Error><Code>AuthenticationFailed</Code><Message>Signature expired</Message></Error>",
    403: b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
    410: b"<Error><Code>Gone</Code><Message>This link has expired</Message></Error>",
}


class SignedLinks:
    """A public path redirecting to signed links valid ``ttl`` seconds."""

    def __init__(self, server: LoopbackServer, path: str, body: Body, *, ttl: float,
                 etag: str = '"v1"', last_modified: str = "Tue, 01 Dec 2026 10:00:00 GMT",
                 throttle: float | None = None, refusal: int = 403) -> None:
        self.server = server
        self.path = path
        self.ttl = ttl
        self.throttle = throttle
        self.refusal = refusal
        self.resolutions = 0
        self.refusals = 0
        self.served = 0  #: ranges served through signed links
        self._lock = threading.Lock()
        self._version = 0
        self._last_modified = last_modified
        self.url = server.add(path, redirect="/", hook=self._redirect).url
        self.serve(body, etag)

    def serve(self, body: Body, etag: str) -> None:
        """Later resolutions lead to ``body`` (validators ``etag``) at a new signed path."""
        with self._lock:
            self._version += 1
            signed = f"/signed/v{self._version}{self.path}"
            self._current = signed
        self.server.add(signed, body, etag=etag, last_modified=self._last_modified,
                        throttle=self.throttle, hook=self._check)

    def _sign(self, path: str, expires: str) -> str:
        return hmac.new(_SECRET, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _redirect(self, req: RequestRecord, resp: Response) -> Response:
        with self._lock:
            self.resolutions += 1
            signed = self._current
        expires = f"{time.time() + self.ttl:.3f}"
        resp.headers.set("Location", f"{signed}?expires={expires}&sig={self._sign(signed, expires)}")
        return resp

    def _check(self, req: RequestRecord, resp: Response) -> Response | None:
        query = parse_qs(urlsplit(req.target).query)
        expires = (query.get("expires") or [""])[0]
        sig = (query.get("sig") or [""])[0]
        valid = bool(expires) and hmac.compare_digest(sig, self._sign(req.path, expires))
        if valid and time.time() <= float(expires):
            if resp.status == 206:
                with self._lock:
                    self.served += 1
            return None
        with self._lock:
            self.refusals += 1
        body = LiteralContent(_BODIES.get(self.refusal, b"<Error>expired</Error>"))
        return Response(self.refusal, Headers([("Content-Type", "application/xml")]), body, 0,
                        body.size, keep_alive=resp.keep_alive)
