"""Servers that push back (issue 20, item 3): a host that answers 503 or 429, or closes
the connection unanswered, once more than N requests are in flight gets fewer connections, and the
download still completes byte-exact.

The server is ours (``tests/support/server.py``) with a hook that serves at most N
requests at once, as nginx's ``limit_conn`` counts them (a connection counts while a
request on it is being answered), and refuses the rest. At each arrival the hook
counts the requests the server is answering (the new one included). After the first
seconds (the engine starts at ``thread_count``, halving per round of refusals) no arrival
may find more than N + 1 in flight: N served plus the one probe of the limit the engine
makes now and then. The statistics name the limit the engine settled on.

Each response is throttled so that the download lasts a few seconds at N connections.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import Harness, Lib, MiB, Run, task
from tests.resume.helpers import outcome
from tests.support.content import LiteralContent
from tests.support.server import Headers, LoopbackServer, RequestRecord, Response

N = 4
THROTTLE = 2 * MiB  # per response: 8 MiB/s at N connections
SIZE = 24 * MiB + 123
WARMUP = 2.0  # seconds after the first request during which higher counts are allowed


def _answered(r: RequestRecord) -> bool:
    """The server has handed every byte of its answer to the socket (its record ends
    later: the throttle sleeps after the last block)."""
    if r.finished is not None:
        return True
    return r.served is not None and r.bytes_sent >= r.served[1] - r.served[0] + 1


class ServeAtMost:
    """A hook serving at most ``n`` requests at once; the others get ``status`` (or, for
    ``status=0``, the connection closed unanswered), as a server at its connection limit
    does. At each arrival it notes how many requests the server is answering, the new
    one included: the count at the server."""

    def __init__(self, n: int, status: int) -> None:
        self.n = n
        self.status = status
        self.lock = threading.Lock()
        self.serving: list[RequestRecord] = []
        self.refused = 0
        self.arrivals: list[tuple[float, int]] = []

    def __call__(self, req: RequestRecord, resp: Response) -> Response | None:
        with self.lock:
            self.serving = [r for r in self.serving if not _answered(r)]
            self.arrivals.append((time.monotonic(), len(self.serving) + 1))
            if len(self.serving) < self.n:
                self.serving.append(req)
                return None
            self.refused += 1
        if self.status == 0:
            resp.raw = b""  # the connection closed before any answer
            return resp
        body = LiteralContent(b"busy, try later\n")
        return Response(self.status, Headers([("Content-Type", "text/plain")]), body, 0,
                        body.size)

    def busy_after(self, seconds: float) -> list[tuple[float, int]]:
        """(time since the first arrival, requests in flight) of the arrivals after
        ``seconds``."""
        t0 = self.arrivals[0][0]
        return [(round(t - t0, 3), busy) for t, busy in self.arrivals if t - t0 >= seconds]


def _download(tthsd: Harness, lib: Lib, srv: LoopbackServer, tmp_path: Path, threads: int,
              status: int, **extra: Any) -> tuple[Run, ServeAtMost, float, str]:
    cap = ServeAtMost(N, status)
    res = srv.add("/f.bin", size=SIZE, etag='"v1"', throttle=THROTTLE, hook=cap)
    save = tmp_path / "f.bin"
    run = tthsd.create([task(res.url, save, id="t", **extra)], threads=threads, chunk_mb=1)
    assert lib.tthsd_set_timeouts(run.id, 2000, 5000) == 0
    t0 = time.monotonic()
    assert run.start() == 0
    run.wait_end(90)
    wall = time.monotonic() - t0
    assert outcome(run, save, res.body).success
    srv.wait_idle(5)
    return run, cap, wall, res.url


@pytest.mark.scenario("a server refusing beyond N connections gets at most N + 1")
@pytest.mark.parametrize("threads", [16, 64])
@pytest.mark.parametrize("status", [503, 429, 0], ids=["503", "429", "closed"])
def test_a_host_refusing_beyond_n_connections_gets_at_most_n_plus_one(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        threads: int, status: int) -> None:
    run, cap, wall, _ = _download(tthsd, lib, http_server, tmp_path, threads, status)
    late = cap.busy_after(WARMUP)
    peak = max((busy for _, busy in late), default=0)
    stats = run.stats()
    hosts = stats["hosts"]
    print(f"threads={threads} status={status}: {wall:.2f} s, {cap.refused} refused, "
          f"{len(http_server.requests())} requests, peak after {WARMUP} s: {peak}, "
          f"hosts={hosts}, retries={stats['retries']}")
    assert cap.refused > 0, "the server never had to refuse: the test proves nothing"
    assert peak <= N + 1, f"more than N + 1 = {N + 1} in flight after {WARMUP} s: {late}"
    assert len(hosts) == 1 and hosts[0]["ceiling"] == threads, hosts
    assert 1 <= hosts[0]["connection_limit"] <= N + 1, hosts
    assert hosts[0]["pushbacks"] > 0, hosts


def test_a_healthy_host_gets_every_connection_from_the_start(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    seen = ServeAtMost(1000, 503)
    res = http_server.add("/h.bin", size=16 * MiB, etag='"h"', throttle=THROTTLE, hook=seen)
    save = tmp_path / "h.bin"
    run = tthsd.create([task(res.url, save, id="t")], threads=16, chunk_mb=1)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, res.body).success
    http_server.wait_idle(5)
    early = [busy for at, busy in seen.busy_after(0.0) if at < 1.0]
    assert max(early) == 16, f"thread_count=16 but at most {max(early)} at once: {early}"
    assert run.stats()["hosts"] == [{"host": f"127.0.0.1:{http_server.port}",
                                     "connection_limit": 16, "ceiling": 16, "pushbacks": 0}]


def test_max_connections_per_host_caps_a_healthy_host(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    seen = ServeAtMost(1000, 503)
    res = http_server.add("/c.bin", size=8 * MiB, etag='"c"', throttle=4 * MiB, hook=seen)
    save = tmp_path / "c.bin"
    run = tthsd.create([task(res.url, save, id="t", max_connections_per_host=3)],
                       threads=16, chunk_mb=1)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, res.body).success
    http_server.wait_idle(5)
    peak = max(busy for _, busy in seen.busy_after(0.0))
    assert peak == 3, f"max_connections_per_host=3, yet {peak} at once"
    assert run.stats()["hosts"][0]["ceiling"] == 3


@pytest.mark.parametrize("bad", [0, -1, 5000, "4", 2.5, True])
def test_max_connections_per_host_must_be_a_sane_integer(
        lib: Lib, tmp_path: Path, bad: object) -> None:
    import json
    tasks = json.dumps([task("http://127.0.0.1:9/x", tmp_path / "x",
                             max_connections_per_host=bad)]).encode()
    assert lib.get_downloader(tasks, 1, 8, 1, None, False, None, None, None, None) == -1
    assert "max_connections_per_host" in lib.last_error()


def test_download_passes_the_cap_and_completes_against_a_host_that_pushes_back(
        http_server: LoopbackServer, lib_path: Path, tmp_path: Path) -> None:
    import hashlib

    import tthsd_interface

    cap = ServeAtMost(N, 503)
    res = http_server.add("/d.bin", size=8 * MiB + 5, etag='"d"', throttle=4 * MiB, hook=cap)
    save = tmp_path / "d.bin"
    (result,) = tthsd_interface.download(
        res.url, save, connections=16, chunk_size_mb=1, max_connections_per_host=6,
        durable=False, dll_path=lib_path,
    )  # fmt: skip
    assert result.bytes == res.size
    assert hashlib.sha256(save.read_bytes()).hexdigest() == res.body.sha256()
    peak = max(busy for _, busy in cap.busy_after(0.0))
    assert cap.refused > 0 and peak <= 6, (cap.refused, peak)


def test_the_limit_rises_again_once_the_host_stops_pushing_back(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    cap = ServeAtMost(N, 503)
    res = http_server.add("/r.bin", size=40 * MiB, etag='"r"', throttle=THROTTLE, hook=cap)
    save = tmp_path / "r.bin"
    run = tthsd.create([task(res.url, save, id="t")], threads=16, chunk_mb=1)
    lifted = threading.Timer(2.0, lambda: setattr(cap, "n", 1000))
    assert run.start() == 0
    lifted.start()
    try:
        run.wait_end(90)
    finally:
        lifted.cancel()
    assert outcome(run, save, res.body).success
    hosts = run.stats()["hosts"]
    late = cap.busy_after(3.5)
    print(f"after the cap was lifted: {late}; hosts={hosts}")
    assert hosts[0]["connection_limit"] >= N + 2, hosts
    assert max(busy for _, busy in late) >= N + 2, late
