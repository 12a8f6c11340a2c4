"""A server's uplink for tests: one bandwidth shared by all of its responses.

:class:`Uplink` is a token bucket. A response that sends through it (a hook sets
``response.pace = uplink.take``, see ``support.server``) waits its turn for every block,
so ten connections to a server capped at 8 MB/s get 8 MB/s between them, as from a
mirror whose network link is the bottleneck; ``throttle`` by contrast caps each response
on its own.
"""

from __future__ import annotations

import threading
import time

from .server import Hook, RequestRecord, Response


class Uplink:
    """``rate`` bytes per second over every response that takes from it."""

    def __init__(self, rate: float, burst: int = 64 * 1024) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._next = time.monotonic()  # when the link is free again

    def take(self, n: int) -> float:
        """Books ``n`` bytes; returns how long to wait before sending them."""
        with self._lock:
            now = time.monotonic()
            # Idle time builds up at most ``burst`` bytes of credit.
            start = max(self._next, now - self.burst / self.rate)
            self._next = start + n / self.rate
            return max(0.0, start - now)

    def hook(self) -> Hook:
        """A resource hook that sends every body through this uplink."""

        def hook(req: RequestRecord, resp: Response) -> Response | None:
            resp.pace = self.take
            return resp

        return hook
