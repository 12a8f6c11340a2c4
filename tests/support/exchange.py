"""What the loopback test server exchanges: request records, response plans, resources,
and the well-behaved answer to a request (:func:`plan_response`). ``support.server``
serves them; ``support.hooks`` alters plans to misbehave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .content import Body, LiteralContent

__all__ = [
    "REASONS",
    "Headers",
    "Hook",
    "RequestRecord",
    "Resource",
    "Response",
    "parse_range",
    "plan_response",
]

REASONS = {
    200: "OK", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 410: "Gone",
    416: "Range Not Satisfiable", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class Headers:
    """An ordered list of header fields with case-insensitive lookup."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for k, v in self._items:
            if k.lower() == low:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self._items if k.lower() == low]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def set(self, name: str, value: str | int) -> None:
        """Replace every field called ``name`` by one with ``value``."""
        self.remove(name)
        self._items.append((name, str(value)))

    def add(self, name: str, value: str | int) -> None:
        self._items.append((name, str(value)))

    def remove(self, name: str) -> None:
        low = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class RequestRecord:
    """One request as the server saw it, and what it answered."""

    seq: int  #: arrival order over the whole server, from 1
    conn: int  #: connection number, from 1 (requests on one keep-alive connection share it)
    nth: int  #: 1-based index among the requests for this path
    method: str
    target: str  #: the raw request-target, query included
    path: str  #: the target without its query
    version: str
    headers: Headers
    range_header: str | None  #: the Range header as sent, if any
    #: the single range asked as ``(first, last)``; ``first`` is None for a suffix
    #: ``-n`` (then ``last`` is n) and ``last`` is None for ``a-``; None when no or an
    #: unparsable/multi Range was sent
    range_spec: tuple[int | None, int | None] | None
    body: bytes = b""  #: the request body (Content-Length only)
    status: int = 0  #: status sent (0 until the response starts)
    #: inclusive byte range of the file the response carries (None when no body slice)
    served: tuple[int, int] | None = None
    bytes_sent: int = 0  #: body bytes handed to the socket (chunk framing not counted)
    #: "", then "complete", "client-closed", "fault-close", "fault-reset", "stopped"
    outcome: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: the resource that answered (None for an unknown path)
    resource: Resource | None = field(default=None, repr=False)

    @property
    def range(self) -> tuple[int | None, int | None] | None:
        return self.range_spec


@dataclass
class Response:
    """The plan for one response; hooks may change any field."""

    status: int
    headers: Headers
    body: Body | None = None  #: where the body bytes come from
    offset: int = 0  #: first byte of ``body`` to send
    length: int = 0  #: how many bytes of ``body`` to send
    #: "length" (Content-Length), "close" (close-delimited) or "chunked"
    framing: str = "length"
    keep_alive: bool = True
    throttle: float | None = None  #: bytes per second for this response
    #: called with each block's size before it is sent; returns seconds to wait first
    #: (a bandwidth shared by several responses: ``support.pacing.Uplink.take``)
    pace: Callable[[int], float] | None = None
    delay: float = 0.0  #: seconds to wait before sending the status line
    close_after: int | None = None  #: close (FIN) after this many body bytes
    reset_after: int | None = None  #: reset (RST) after this many body bytes
    stall_after: int | None = None  #: go silent after this many body bytes...
    stall_for: float = 0.0  #: ...for this long (then carry on), or until the server stops
    #: for chunked framing: "bad-size" (an invalid chunk-size line after half the body,
    #: then close) or "truncated" (no terminating 0-chunk; close)
    chunked_fault: str | None = None
    #: content-length to announce instead of ``length`` (a lying length)
    announce_length: int | None = None
    #: send these bytes verbatim instead of a formatted response, then close
    raw: bytes | None = None


Hook = Callable[[RequestRecord, Response], "Response | None"]


@dataclass
class Resource:
    """A path the server answers, with its behaviour knobs (see the module doc)."""

    path: str
    body: Body = field(default_factory=lambda: LiteralContent(b""))
    ranges: bool = True
    framing: str = "length"
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    throttle: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    redirect: str | None = None
    redirect_status: int = 302
    hook: Hook | None = None
    url: str = ""  #: set by the server

    @property
    def content(self) -> Body:
        return self.body

    @property
    def size(self) -> int:
        return self.body.size

    def sha256(self) -> str:
        return self.body.sha256()


def parse_range(value: str | None) -> tuple[int | None, int | None] | None:
    """Parse a single-range ``bytes=`` header into ``(first, last)`` (see
    :attr:`RequestRecord.range_spec`); None for anything else."""
    if not value:
        return None
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if (first_s and not first_s.isdigit()) or (last_s and not last_s.isdigit()):
        return None
    if not first_s:
        return (None, int(last_s)) if last_s else None
    first = int(first_s)
    last = int(last_s) if last_s else None
    if last is not None and last < first:
        return None
    return (first, last)


def _resolve(spec: tuple[int | None, int | None], size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive within a file of ``size``, or None if unsatisfiable."""
    first, last = spec
    if first is None:
        n = last or 0
        if n == 0 or size == 0:
            return None
        return (max(0, size - n), size - 1)
    if first >= size:
        return None
    return (first, size - 1 if last is None else min(last, size - 1))


def _keep_alive(rec: RequestRecord) -> bool:
    conn = (rec.headers.get("Connection") or "").lower()
    if "close" in conn:
        return False
    return rec.version == "HTTP/1.1" or "keep-alive" in conn


def _if_range_ok(rec: RequestRecord, res: Resource) -> bool:
    cond = rec.headers.get("If-Range")
    if cond is None:
        return True
    if cond.startswith(('"', "W/")):
        # If-Range needs a strong comparison: a weak ETag never matches.
        return res.etag is not None and not res.etag.startswith("W/") and cond == res.etag
    return res.last_modified is not None and cond == res.last_modified


def plan_response(rec: RequestRecord, res: Resource | None) -> Response:
    """The well-behaved answer to ``rec`` from ``res`` (None: an unknown path, 404)."""
    keep = _keep_alive(rec)
    if res is None:
        body = LiteralContent(b"no such resource\n")
        return Response(404, Headers([("Content-Type", "text/plain")]), body, 0, body.size,
                        keep_alive=keep)
    headers = Headers([("Content-Type", "application/octet-stream")])
    for k, v in res.headers.items():
        headers.add(k, v)
    if res.redirect is not None:
        headers.set("Location", res.redirect)
        headers.set("Content-Type", "text/plain")
        body = LiteralContent(b"redirect\n")
        return Response(res.redirect_status, headers, body, 0, body.size, keep_alive=keep,
                        framing=res.framing)
    if res.status is not None:
        body = res.body if res.body.size else LiteralContent(
            f"{res.status} {REASONS.get(res.status, 'Status')}\n"
        )
        headers.set("Content-Type", "text/plain")
        return Response(res.status, headers, body, 0, body.size, framing=res.framing,
                        keep_alive=keep, throttle=res.throttle)
    if res.etag is not None:
        headers.set("ETag", res.etag)
    if res.last_modified is not None:
        headers.set("Last-Modified", res.last_modified)
    size = res.body.size
    resp = Response(200, headers, res.body, 0, size, framing=res.framing, keep_alive=keep,
                    throttle=res.throttle)
    if not res.ranges:
        return resp
    headers.set("Accept-Ranges", "bytes")
    if rec.range_spec is None or not _if_range_ok(rec, res):
        return resp
    span = _resolve(rec.range_spec, size)
    if span is None:
        resp.status = 416
        headers.set("Content-Range", f"bytes */{size}")
        resp.body, resp.offset, resp.length = None, 0, 0
        if resp.framing == "close":
            resp.framing = "length"
        return resp
    first, last = span
    resp.status = 206
    headers.set("Content-Range", f"bytes {first}-{last}/{size}")
    resp.offset, resp.length = first, last - first + 1
    return resp


