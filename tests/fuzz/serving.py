"""What the ABI fuzzing serves (a plain HTTP server and an HTTPS one that speaks HTTP/2 by
ALPN), and the process's thread and descriptor counts that must come back after a run."""

from __future__ import annotations

import os
import time

from tests.support.content import Content
from tests.support.h2server import H2Server
from tests.support.server import LoopbackServer, stall


def tls_resources(srv: H2Server) -> list[str]:
    """What the HTTPS server (HTTP/2 by ALPN, HTTP/1.1 offered too) serves: files to
    complete, a throttled one that controls land on, a stall, statuses, a redirect."""
    srv.add("/empty.bin", size=0)
    srv.add("/small.bin", size=1000)
    srv.add("/mid.bin", size=300_000, etag='"m"')
    srv.add("/slow.bin", size=2 << 20, throttle=512 * 1024, etag='"s"')
    srv.add("/stall.bin", size=1 << 20, hook=stall(1000, 2.0))
    srv.add("/404", status=404)
    srv.add("/503", status=503)
    srv.add("/redir", redirect="/small.bin")
    return ["/empty.bin", "/small.bin", "/mid.bin", "/slow.bin", "/stall.bin", "/404",
            "/503", "/redir"]


def plain_resources(srv: LoopbackServer) -> list[str]:
    srv.add("/empty.bin", size=0)
    srv.add("/small.bin", size=1000)
    srv.add("/mid.bin", size=300_000)
    srv.add("/big.bin", size=3 << 20, etag='"b"')
    srv.add("/slow.bin", size=2 << 20, throttle=512 * 1024, etag='"s"')
    srv.add("/chunked.bin", size=200_000, framing="chunked", ranges=False)
    srv.add("/404", status=404)
    srv.add("/503", status=503)
    srv.add("/redir", redirect="/small.bin")
    srv.add("/loop", redirect="/loop")
    srv.add("/stall.bin", size=1 << 20, hook=stall(1000, 2.0))
    srv.add("/gz", body=Content(50_000, "gz").bytes(), headers={"Content-Encoding": "gzip"})
    return ["/empty.bin", "/small.bin", "/mid.bin", "/big.bin", "/slow.bin", "/chunked.bin",
            "/404", "/503", "/redir", "/loop", "/stall.bin", "/gz"]


def resources_now() -> tuple[int, int]:
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def settle(baseline: tuple[int, int], timeout: float = 10.0) -> tuple[int, int]:
    """Wait for worker threads and sockets to wind down to ``baseline`` (or time out)."""
    deadline = time.monotonic() + timeout
    now = resources_now()
    while time.monotonic() < deadline and (now[0] > baseline[0] or now[1] > baseline[1]):
        time.sleep(0.2)
        now = resources_now()
    return now
