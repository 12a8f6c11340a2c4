"""Ready-made hooks of the loopback test server: each returns a ``hook(request,
response)`` that alters the planned response (fail N times, close or reset after N
bytes, stall, lie about the range or the length, serve another body).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Container
from typing import Optional, Union

from .content import Body, LiteralContent
from .exchange import REASONS, Headers, Hook, RequestRecord, Response, plan_response

__all__ = [
    "chain",
    "close_after",
    "fail_times",
    "overlong_body",
    "premature_eof",
    "reset_after",
    "serve_from",
    "shift_body",
    "stall",
    "wrong_content_range",
]

def _on(which: int | Container[int] | Callable[[RequestRecord], bool] | None) -> Callable[
    [RequestRecord], bool
]:
    """Normalise a "which requests" argument: None = all, int = that nth, a container of
    nth values, or a predicate on the record."""
    if which is None:
        return lambda req: True
    if callable(which):
        return which  # type: ignore[return-value]
    if isinstance(which, int):
        k = which
        return lambda req: req.nth == k
    ks = which
    return lambda req: req.nth in ks



# typing.Union: evaluated at run time, where ``|`` needs Python 3.10.
Which = Optional[Union[int, Container[int], Callable[[RequestRecord], bool]]]


def chain(*hooks: Hook) -> Hook:
    """Apply several hooks in order."""

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        for h in hooks:
            out = h(req, resp)
            if out is not None:
                resp = out
        return resp

    return hook


def fail_times(
    n: int,
    status: int = 503,
    *,
    retry_after: str | int | None = None,
    methods: Container[str] | None = None,
) -> Hook:
    """The first ``n`` requests for the path (counting only ``methods`` if given) get
    ``status`` with a short body (and ``Retry-After`` if given); later ones are normal."""
    count = 0
    lock = threading.Lock()

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        nonlocal count
        if methods is not None and req.method not in methods:
            return None
        with lock:
            count += 1
            hit = count <= n
        if not hit:
            return None
        body = LiteralContent(f"{status} {REASONS.get(status, 'Status')}\n")
        h = Headers([("Content-Type", "text/plain")])
        if retry_after is not None:
            h.set("Retry-After", str(retry_after))
        return Response(status, h, body, 0, body.size, keep_alive=resp.keep_alive)

    return hook


def close_after(nbytes: int, on: Which = None) -> Hook:
    """Close the connection (FIN) after ``nbytes`` body bytes, on the chosen requests."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req):
            resp.close_after = nbytes
        return None

    return hook


def reset_after(nbytes: int, on: Which = None) -> Hook:
    """Reset the connection (RST) after ``nbytes`` body bytes, on the chosen requests."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req):
            resp.reset_after = nbytes
        return None

    return hook


def stall(after: int, seconds: float | None = None, on: Which = None,
          headers_first: bool = True) -> Hook:
    """Go silent after ``after`` body bytes for ``seconds`` (None: until the server
    stops). ``after=0`` with ``headers_first`` stalls right after the headers; with
    ``headers_first=False`` the stall happens before the status line."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if not pick(req):
            return None
        if not headers_first:
            resp.delay = seconds if seconds is not None else 1e9
        else:
            resp.stall_after = after
            resp.stall_for = seconds or 0.0
        return None

    return hook


def wrong_content_range(delta: int = 1, on: Which = None) -> Hook:
    """A 206 whose ``Content-Range`` claims a range ``delta`` bytes off from the bytes it
    actually carries (which are the ones asked)."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            first, last = resp.offset + delta, resp.offset + resp.length - 1 + delta
            resp.headers.set("Content-Range", f"bytes {first}-{last}/{resp.body.size}")
        return None

    return hook


def shift_body(delta: int, on: Which = None) -> Hook:
    """A 206 whose headers are right but whose bytes come from ``delta`` bytes further on
    (a server that lies in its body: only content checks catch it)."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req) and resp.status == 206 and resp.body is not None:
            start = max(0, min(resp.offset + delta, resp.body.size - resp.length))
            resp.offset = start
        return None

    return hook


def premature_eof(missing: int, on: Which = None) -> Hook:
    """Announce ``missing`` more bytes than the body carries (a lying Content-Length),
    then close: the client sees the connection end early."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req) and resp.body is not None and resp.framing == "length":
            resp.announce_length = resp.length + missing
        return None

    return hook


def overlong_body(extra: int, on: Which = None) -> Hook:
    """Send ``extra`` bytes past the announced Content-Length (and past the range of a
    206), then close: a client must not write them anywhere."""
    pick = _on(on)

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if pick(req) and resp.body is not None and resp.framing == "length":
            resp.announce_length = resp.length
            # The extra bytes are the file's next ones (none past its end).
            resp.length = min(resp.length + extra, resp.body.size - resp.offset)
        return None

    return hook


def serve_from(k: int, body: Body | bytes, *, etag: str | None = None,
               last_modified: str | None = None) -> Hook:
    """From the ``k``-th request for the path on, serve ``body`` (a new version of the
    file) with its own validators; every other knob of the resource stays. The plan
    (size, ranges, 416, If-Range) follows the new version."""
    new_body = LiteralContent(body) if isinstance(body, (bytes, bytearray)) else body

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        if req.nth < k or req.resource is None:
            return None
        new = dataclasses.replace(req.resource, body=new_body, etag=etag,
                                  last_modified=last_modified, hook=None)
        return plan_response(req, new)

    return hook
