"""A userspace model of a wide-area link, for the bench of issue 15 (this machine has no tc netem).

    python bench/relay.py --route [LISTEN_PORT:]UPSTREAM_PORT [--route ...] [--rtt-ms 40]
                          [--rate 5000000] [--stats-file F]
    python bench/relay.py --selftest [--rtt-ms 40] [--rate 5000000]

Relay mode: for each `--route`, listens on LISTEN_PORT (a free one if left out) on loopback
and prints one JSON line on stdout, `{"routes": {"<upstream port>": <listening port>, ...}}`,
once every port is bound.
Each accepted TCP connection gets its own connection to 127.0.0.1:<upstream port>; bytes
pass through untouched (TLS included), with:

* a one-way delay of RTT/2 on each direction: a piece of data read at t is written on at
  t + RTT/2 at the earliest, so a request and its answer cost one RTT;
* the TCP handshake's round trip: the kernel completes the client's connect() at once, so
  the client's first bytes are held until accept + RTT + RTT/2, as if they had waited for a
  SYN-ACK. A connection, a TLS 1.3 handshake and a request thus cost 3 RTT before the first
  byte of the answer, as on a real link;
* a cap on each connection's downstream (server to client) rate, a token bucket of
  `--rate` bytes/s with a burst of 16 KiB, written in pieces of at most 16 KiB. Upstream
  (requests) is delayed but not capped;
* bounded buffering: each direction of a connection holds at most max(256 KiB, 2 x rate x
  RTT) bytes read but not yet written on (16 MiB when uncapped); past that it stops reading,
  so back-pressure reaches the sender through TCP; it writes no faster than the receiver
  reads (asyncio's drain); and its kernel buffers are small (SO_RCVBUF from the server and
  SO_SNDBUF to the client at 128 KiB, which Linux doubles), so that a server stops sending to
  a client that stopped reading after a few hundred KiB of the relay's own buffers, not after
  loopback's autotuned megabytes (the server's own send buffer comes on top).

What it does not model: loss, reordering, slow start and congestion control, a window that
limits throughput to window / RTT (the rate cap stands in for a per-flow ceiling), a
bottleneck shared between connections (each has its own cap, nothing caps their sum), and
jitter beyond the event loop's timer lateness, which it measures.

On SIGTERM or SIGINT it writes its counters to `--stats-file` (JSON: connections, bytes each
way, CPU seconds, and how late its timers fired: a relay that cannot keep up shows it there)
and exits.

Selftest mode measures the relay's own capacity on this machine, against an in-memory
source (no nginx, no TLS): 16 connections of `--selftest-mb` MiB each at once, then 1,000
connections of 64 KiB, 50 at a time, each on its own connection; it prints measured against
ideal times and the relay's CPU. Standard library only, Python 3.11.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

KiB = 1 << 10
MiB = 1 << 20
READ_SIZE = 64 * KiB
PIECE = 16 * KiB  # largest write of a capped direction: the pacing's granularity
BURST = 16 * KiB  # token bucket depth after an idle spell: the first 16 KiB go out at once
# While a connection sends back to back, the bucket may hold more: the credit a late timer
# (this process descheduled, or a busy loop) earned, so jitter up to CREDIT / rate (26 ms at
# 5 MB/s) costs no throughput. It never builds up while idle (see pipe).
CREDIT = 128 * KiB
KERNEL_BUFFER = 128 * KiB  # SO_RCVBUF from the server, SO_SNDBUF to the client (Linux doubles it)
LATE_BUCKETS_MS = (1, 2, 5, 10, 20, 50)
NICE = -10  # see main


@dataclasses.dataclass(frozen=True)
class Link:
    rtt: float  # seconds
    rate: float  # bytes/s of each connection's downstream; 0: no cap

    @property
    def buffer(self) -> int:
        # Enough to keep the delay line full at the capped rate (rate x RTT/2), twice over.
        return max(256 * KiB, int(2 * self.rate * self.rtt)) if self.rate else 16 * MiB


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.upstream_failures = 0
        self.resets = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.timers = 0
        self.late_max = 0.0
        self.late_sum = 0.0
        self.late_hist = [0] * (len(LATE_BUCKETS_MS) + 1)  # timers later than 1, 2, 5... ms
        self.started = time.monotonic()

    def late(self, seconds: float) -> None:
        self.timers += 1
        seconds = max(0.0, seconds)
        self.late_sum += seconds
        self.late_max = max(self.late_max, seconds)
        ms = seconds * 1000
        i = 0
        while i < len(LATE_BUCKETS_MS) and ms >= LATE_BUCKETS_MS[i]:
            i += 1
        self.late_hist[i] += 1

    def as_dict(self) -> dict[str, object]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "connections": self.connections,
            "upstream_failures": self.upstream_failures,
            "resets": self.resets,
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "nice": os.nice(0),
            "alive_s": round(time.monotonic() - self.started, 3),
            "timers": self.timers,
            "late_mean_ms": round(1000 * self.late_sum / self.timers, 3) if self.timers else 0.0,
            "late_max_ms": round(1000 * self.late_max, 3),
            # timers that fired at least 1, 2, 5, 10, 20, 50 ms late
            "late_over_ms": {
                str(b): sum(self.late_hist[i + 1 :]) for i, b in enumerate(LATE_BUCKETS_MS)
            },
        }


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float, stats: Stats) -> None:
    await asyncio.sleep(when - loop.time())
    stats.late(loop.time() - when)


async def pipe(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    link: Link,
    stats: Stats,
    *,
    not_before: float,
    capped: bool,
) -> str:
    """Copy src to dst through the delay line (and the cap); 'eof' or 'reset' at the end."""
    loop = asyncio.get_running_loop()
    delay = link.rtt / 2
    rate = link.rate if capped else 0.0
    limit = link.buffer
    queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
    have, room = asyncio.Event(), asyncio.Event()
    room.set()
    buffered = 0

    async def pull() -> None:
        nonlocal buffered
        while True:
            try:
                data: bytes | None = await src.read(READ_SIZE)
            except OSError:
                data = None  # reset: passed on, in order, as a reset
            queue.append((max(loop.time() + delay, not_before), data))
            have.set()
            if not data:
                return
            buffered += len(data)
            if buffered >= limit:
                room.clear()
                await room.wait()

    reader = asyncio.create_task(pull())
    tokens, last = float(BURST), loop.time()
    try:
        while True:
            if not queue:
                have.clear()
                await have.wait()
                tokens = min(float(BURST), tokens + (loop.time() - last) * rate)  # idle: no credit
                last = loop.time()
                continue
            due, data = queue.popleft()
            if due > loop.time():
                await _sleep_until(loop, due, stats)
                tokens = min(float(BURST), tokens + (loop.time() - last) * rate)
                last = loop.time()
            if data is None:
                return "reset"
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return "eof"
            buffered -= len(data)
            if buffered < limit:
                room.set()
            if capped:
                stats.bytes_down += len(data)
            else:
                stats.bytes_up += len(data)
            if not rate:
                dst.write(data)
                await dst.drain()
                continue
            view = memoryview(data)
            for off in range(0, len(view), PIECE):
                piece = view[off : off + PIECE]
                now = loop.time()
                tokens = min(float(CREDIT), tokens + (now - last) * rate)
                last = now
                if tokens < 0:
                    # In debt from the last piece: wait until it is paid. The bucket refills
                    # while we sleep, so a late timer costs no rate, up to the burst.
                    await _sleep_until(loop, now - tokens / rate, stats)
                    now = loop.time()
                    tokens = min(float(CREDIT), tokens + (now - last) * rate)
                    last = now
                dst.write(piece)
                tokens -= len(piece)
                await dst.drain()
    except OSError:
        return "reset"
    finally:
        reader.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream_port: int,
    link: Link,
    stats: Stats,
) -> None:
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    stats.connections += 1
    up_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Small kernel buffers on both sides of the relay, so back-pressure reaches the
        # sender about as soon as it would on a real path (where the window in flight is
        # near rate x RTT), rather than after loopback's autotuned megabytes.
        up_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUFFER)
        up_sock.setblocking(False)
        await loop.sock_connect(up_sock, ("127.0.0.1", upstream_port))
        up_r, up_w = await asyncio.open_connection(sock=up_sock, limit=READ_SIZE)
    except OSError:
        up_sock.close()
        stats.upstream_failures += 1
        client_w.transport.abort()
        return
    sock = client_w.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER)
    _nodelay(client_w)
    _nodelay(up_w)
    first = accepted + link.rtt + link.rtt / 2  # the SYN / SYN-ACK round trip, then one way
    up = asyncio.create_task(pipe(client_r, up_w, link, stats, not_before=first, capped=False))
    down = asyncio.create_task(pipe(up_r, client_w, link, stats, not_before=0.0, capped=True))
    reset = True  # unless both directions end with an orderly EOF
    try:
        pending = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.result() == "reset" for t in done):
                stats.resets += 1
                break
        else:
            reset = False
    finally:
        for t in (up, down):
            t.cancel()
        for w in (client_w, up_w):
            if reset:
                w.transport.abort()  # a reset on one side is passed on as a reset
            else:
                w.close()


async def run_relay(routes: list[tuple[int, int]], link: Link, stats_file: str) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    servers, ports = [], {}
    live: set[asyncio.Task[None]] = set()
    for listen, upstream in routes:

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, up: int = upstream) -> None:
            task = asyncio.current_task()
            if task is not None:
                live.add(task)
            try:
                await serve(r, w, up, link, stats)
            except asyncio.CancelledError:
                pass  # stopping: asyncio's stream callback would report a cancelled task
            finally:
                live.discard(task)  # type: ignore[arg-type]

        server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=4096, limit=READ_SIZE)
        servers.append(server)
        ports[str(upstream)] = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(json.dumps({"routes": ports, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    await stop.wait()
    if stats_file:
        tmp = stats_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats.as_dict(), f)
        os.replace(tmp, stats_file)
    for server in servers:
        server.close()
    for task in list(live):
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


# --------------------------------------------------------------------------- selftest


async def run_source() -> None:
    """An in-memory server: each line 'N' read from a connection is answered with N bytes."""
    blob = os.urandom(MiB)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while line := await r.readline():
                left = int(line)
                while left:
                    n = min(left, len(blob))
                    w.write(blob[:n])
                    left -= n
                    await w.drain()
        except OSError:
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    sys.stdout.write(json.dumps({"port": server.sockets[0].getsockname()[1]}) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fetch(port: int, size: int) -> float:
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=READ_SIZE)
    w.write(b"%d\n" % size)
    left = size
    while left:
        data = await r.read(READ_SIZE)
        if not data:
            raise OSError(f"short answer: {left} bytes missing")
        left -= len(data)
    w.close()
    return time.perf_counter() - t0


async def _selftest_client(port: int, relay_pid: int, link: Link, big_mb: int) -> list[str]:
    out = []
    size = big_mb * MiB
    cpu0, t0 = _proc_cpu(relay_pid), time.perf_counter()
    times = await asyncio.gather(*(_fetch(port, size) for _ in range(16)))
    wall = time.perf_counter() - t0
    cpu = _proc_cpu(relay_pid) - cpu0
    ideal = 3 * link.rtt + (size - BURST) / link.rate  # 2 RTT here (no TLS), kept as a bound
    rates = sorted(size / (t - 2 * link.rtt) / 1e6 for t in times)
    out.append(
        f"16 connections x {big_mb} MiB at once: wall {wall:.2f} s (ideal {ideal - link.rtt:.2f} s), "
        f"per-connection rate {rates[0]:.2f}-{rates[-1]:.2f} MB/s (cap {link.rate / 1e6:.2f}), "
        f"aggregate {16 * size / wall / 1e6:.1f} MB/s, relay CPU {cpu:.2f} s ({100 * cpu / wall:.0f}% of a core)"
    )
    n, width, small = 1000, 50, 64 * KiB
    sem = asyncio.Semaphore(width)

    async def one() -> float:
        async with sem:
            return await _fetch(port, small)

    cpu0, t0 = _proc_cpu(relay_pid), time.perf_counter()
    each = await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    cpu = _proc_cpu(relay_pid) - cpu0
    per = 2 * link.rtt + (small - BURST) / link.rate
    each.sort()
    out.append(
        f"{n} connections x 64 KiB, {width} at a time: wall {wall:.2f} s (ideal {n / width * per:.2f} s), "
        f"each median {1000 * each[n // 2]:.1f} ms p99 {1000 * each[int(n * 0.99)]:.1f} ms "
        f"(ideal {1000 * per:.1f} ms), relay CPU {cpu:.2f} s ({100 * cpu / wall:.0f}% of a core)"
    )
    return out


def _start(argv: list[str]) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{argv} did not start")
    return proc, json.loads(line)


def selftest(link: Link, big_mb: int) -> int:
    me = [sys.executable, os.path.abspath(__file__)]
    source, info = _start([*me, "--source"])
    stats_file = f"/tmp/relay-selftest-{os.getpid()}.json"
    relay = None
    try:
        relay, rinfo = _start([*me, "--route", str(info["port"]), "--rtt-ms", str(link.rtt * 1000),
                               "--rate", str(link.rate), "--stats-file", stats_file])  # fmt: skip
        port = int(rinfo["routes"][str(info["port"])])  # type: ignore[index]
        lines = asyncio.run(_selftest_client(port, relay.pid, link, big_mb))
        relay.send_signal(signal.SIGTERM)
        relay.wait(10)
        with open(stats_file) as f:
            stats = json.load(f)
        os.unlink(stats_file)
        lines.append(f"relay counters: {json.dumps(stats, sort_keys=True)}")
    finally:
        for p in (relay, source):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    print(f"relay selftest: RTT {link.rtt * 1000:.0f} ms, cap {link.rate / 1e6:.2f} MB/s per connection")
    for line in lines:
        print(" - " + line)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--route", action="append", default=[], help="[LISTEN_PORT:]UPSTREAM_PORT on 127.0.0.1 (repeatable)")
    p.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time to add (40)")
    p.add_argument("--rate", type=float, default=5_000_000, help="downstream cap per connection, bytes/s (5000000; 0: none)")
    p.add_argument("--stats-file", default="", help="write counters here on SIGTERM")
    p.add_argument("--selftest", action="store_true", help="measure the relay's capacity on this machine")
    p.add_argument("--selftest-mb", type=int, default=20, help="MiB per connection of the selftest's 16 (20)")
    p.add_argument("--source", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    link = Link(rtt=args.rtt_ms / 1000, rate=args.rate)
    if args.source:
        asyncio.run(run_source())
        return 0
    if args.selftest:
        return selftest(link, args.selftest_mb)
    if not args.route:
        p.error("give at least one --route, or --selftest")
    # The relay stands for the network: the tools it carries must not starve it of CPU on a
    # small machine (it needs about a fifth of a core at 16 x 5 MB/s). Raising the priority
    # needs root; without it the timer lateness in the counters says how much that cost.
    with contextlib.suppress(OSError):
        os.nice(NICE)
    routes = []
    for route in args.route:
        listen, _, upstream = route.rpartition(":")
        routes.append((int(listen or 0), int(upstream)))
    asyncio.run(run_relay(routes, link, args.stats_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
