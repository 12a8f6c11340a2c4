"""Soak: thousands of downloads from a server that injects faults, every file checked, and
the process's memory and open descriptors watched.

    python -m tests.soak.soak --downloads 5000 --fault-rate 0.05
    python tests/soak/soak.py --downloads 300 --fault-rate 0.1 --json out.json

* The fault servers run in child processes (this script with ``--serve PROTO``), so the
  measured process holds only the core and this driver: one per protocol of
  ``--protocols`` (plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 over TLS; the TLS ones with
  a throwaway CA named by ``SSL_CERT_FILE``), see :mod:`tests.soak.servers`. Each serves
  the same ``--files`` files of self-describing content (sizes from 0 to a few MiB, each
  with an ETag) and, at ``--fault-rate`` per request, injects one fault drawn from
  ``tests.adversarial.knobs.FAULT_KINDS`` (those that exist on its protocol): close or
  reset mid-body (``RST_STREAM`` on HTTP/2), a lying Content-Length, bytes past the range
  (HTTP/1.1 only), 500/503/429, a stall the read timeout must cut, a lying
  Content-Range. It counts what it injected and the requests by HTTP version.
* Each task's protocol is drawn at random, so a downloader's batch mixes them.
* Downloads run ``--concurrency`` downloaders at a time, each with ``--batch`` tasks
  (sequential or side by side, alternately), ``--max-retries`` fast retries and a 500 ms
  read timeout. A task that still fails must leave nothing at its ``save_path``; it is
  downloaded again by a later downloader (resuming from its journal) up to
  ``--attempts`` times.
* Every file that a run reports complete is checked by SHA-256 against the server's; a
  failed task must leave nothing at its ``save_path``. Files are deleted once checked.
* A sampler notes RSS and open descriptors every ``--sample-every`` seconds. At the end
  (every downloader stopped) descriptors must be back to where they were after a
  one-download warm-up, and RSS within ``--rss-slack`` MiB of what it was after the first
  tenth of the downloads (allocator arenas and caches fill during that tenth); the RSS
  slope over the second half is reported too.

Prints a summary and exits 0 when no file was wrong, every download finished within its
attempts, and memory and descriptors stayed flat; 1 otherwise. ``--json`` writes the
figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.abi.lib import CALLBACK, Lib, bool_p, library_path
from tests.soak.servers import PROTOCOLS, PROXY_VARS, ServerChild, make_trust, serve
from tests.support.content import Content, sha256_file

MiB = 1 << 20


# -- the measured process ---------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Sampler(threading.Thread):
    """RSS (KiB) and open descriptors of this process, every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.every = every
        self.samples: list[tuple[float, int, int, int]] = []  # (t, downloads, rss, fds)
        self.done = 0
        self._stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> tuple[int, int]:
        rss, fds = _rss_kib(), _fds()
        self.samples.append((round(time.monotonic() - self.t0, 1), self.done, rss, fds))
        return rss, fds

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Job:
    """One downloader and its tasks; the callback records how each task ended."""

    ident: int = 0
    tasks: dict[str, tuple[int, Path]] = field(default_factory=dict)  # id -> (file, path)
    success: dict[str, bool] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    ended: threading.Event = field(default_factory=threading.Event)
    bad_events: list[str] = field(default_factory=list)
    callback: Any = None

    def on_event(self, event_json: bytes | None, msg_json: bytes | None) -> None:
        try:
            ev = event_json or b""
            if b'"endOne"' in ev or b'"err"' in ev:
                e, m = json.loads(ev), json.loads(msg_json or b"")
                if e["Type"] == "endOne":
                    self.success[e["ID"]] = bool(m["Success"])
                elif e["Type"] == "err" and e["ID"]:
                    self.codes[e["ID"]] = str(m.get("Code"))
            elif b'"end"' in ev and json.loads(ev)["Type"] == "end":
                self.ended.set()
        except BaseException as exc:  # never unwind into the library
            self.bad_events.append(repr(exc))


@dataclass
class Totals:
    downloads_done: int = 0
    attempts: int = 0
    retried_tasks: int = 0
    failed_for_good: int = 0
    wrong_files: int = 0
    left_after_failure: int = 0
    bytes_checked: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    done_by_protocol: Counter[str] = field(default_factory=Counter)
    codes_by_protocol: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    retries: int = 0
    bytes_fetched: int = 0
    #: tasks that named mirrors, bytes the mirrors served, mirrors dropped
    mirror_tasks: int = 0
    mirror_bytes: int = 0
    mirrors_dropped: int = 0


def soak(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    protocols = [p for p in args.protocols.split(",") if p]
    if not protocols or set(protocols) - set(PROTOCOLS):
        raise SystemExit(f"--protocols: some of {','.join(PROTOCOLS)}, not {args.protocols!r}")
    trust = None
    if set(protocols) - {"http"}:
        trust = make_trust(workdir / "trust")
        # The core loads its roots at its first handshake, from SSL_CERT_FILE: our CA only.
        os.environ["SSL_CERT_FILE"] = str(trust.ca_pem)
        os.environ.pop("SSL_CERT_DIR", None)
    for var in PROXY_VARS:  # loopback only, never through a proxy of the environment
        os.environ.pop(var, None)
    lib = Lib(library_path())
    servers: dict[str, ServerChild] = {}
    counts: dict[str, dict[str, Any]] = {}
    try:
        for proto in protocols:
            servers[proto] = ServerChild(proto, args,
                                         None if trust is None else trust.server_pem)
        file_sizes = servers[protocols[0]].sizes
        expected = [Content(size, f"/f{i}.bin").sha256() for i, size in enumerate(file_sizes)]
        result = _drive(lib, args, {p: s.base for p, s in servers.items()}, file_sizes,
                        expected, workdir)
    finally:
        for proto, child in servers.items():
            counts[proto] = child.finish()
    by_protocol = {p: c["faults"] for p, c in counts.items()}
    total: Counter[str] = Counter()
    for f in by_protocol.values():
        total.update(f)
    server_errors = [f"{p} server: {e}" for p, c in counts.items() for e in c["errors"]]
    result.update({
        "faults_injected": sum(total.values()), "faults_by_kind": dict(total),
        "faults_by_protocol": by_protocol,
        "requests_by_version": {p: c["versions"] for p, c in counts.items()},
        "server_errors": server_errors[:20],
    })
    result["problems"] = (result["problems"] + server_errors)[:50]
    result["ok"] = result["ok"] and not server_errors
    return result


#: (file index, protocol, attempt, path of an earlier attempt or None)
Entry = tuple[int, str, int, Optional[Path]]


def _drive(lib: Lib, args: argparse.Namespace, bases: dict[str, str], sizes: list[int],
           expected: list[str], workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    totals = Totals()
    protocols = sorted(bases)
    # Each entry: (file index, protocol, attempt, path of an earlier attempt or None). A
    # failed task goes back with its protocol and path, so the next downloader resumes it
    # from its journal on the same server. A batch mixes protocols.
    queue: list[Entry] = [
        (rng.randrange(len(sizes)), rng.choice(protocols), 1, None)
        for _ in range(args.downloads)]
    queue.reverse()
    lock = threading.Lock()
    sampler = Sampler(args.sample_every)
    serial = iter(range(10**12))
    warmup_at = max(1, args.downloads // 10)
    baseline: dict[str, int] = {}

    def one_downloader(worker: int) -> None:
        while True:
            with lock:
                if not queue:
                    return
                batch = [queue.pop() for _ in range(min(args.batch, len(queue)))]
                n = next(serial)
            job = Job()
            tasks = []
            for k, (fi, proto, _attempt, old) in enumerate(batch):
                tid = f"w{worker}-{n}-{k}"
                path = old or workdir / f"w{worker}" / f"f{fi}-{proto}-{n}-{k}.bin"
                job.tasks[tid] = (fi, path)
                task: dict[str, Any] = {"url": f"{bases[proto]}/f{fi}.bin",
                                        "save_path": str(path), "id": tid}
                if args.mirror_every and (n + k) % args.mirror_every == 0:
                    # The same file on the other protocols' servers (their own faults).
                    task["mirrors"] = [f"{bases[p]}/f{fi}.bin" for p in protocols if p != proto]
                tasks.append(task)
            job.callback = CALLBACK(job.on_event)
            tj = json.dumps(tasks).encode()
            ident = lib.get_downloader(tj, len(tasks), args.threads, 1, job.callback, False,
                                       b"tthsd-soak", None, None, None)
            if ident <= 0:
                with lock:
                    totals.problems.append(f"get_downloader refused: {lib.last_error()}")
                return
            job.ident = ident
            lib.set_retry_config(ident, args.max_retries, 10, 100)
            lib.tthsd_set_timeouts(ident, 2000, 500)
            lib.tthsd_set_durability(ident, n % 4 == 0)  # a quarter with fsyncs
            start = lib.start_multiple_downloads_id if n % 2 else lib.start_download_id
            rc = start(ident)
            if rc != 0 or not job.ended.wait(args.run_timeout):
                with lock:
                    totals.problems.append(f"downloader {ident}: rc {rc} or no end in "
                                           f"{args.run_timeout}s")
            stats = _stats(lib, ident)
            lib.stop_download(ident)
            job.callback = None  # no callback may come after stop_download returned
            if _stats(lib, ident) != {}:
                with lock:
                    totals.problems.append(f"id {ident} still answers after stop_download")
            account(job, batch, stats)

    def account(job: Job, batch: list[Entry], stats: dict[str, Any]) -> None:
        with lock:
            totals.retries += int(stats.get("retries", 0))
            totals.bytes_fetched += int(stats.get("bytes_fetched", 0))
            for entry in stats.get("tasks", []):
                shares = entry.get("sources")
                if shares:
                    totals.mirror_tasks += 1
                    totals.mirror_bytes += sum(int(s["Bytes"]) for s in shares[1:])
                    totals.mirrors_dropped += sum(1 for s in shares if s["Dropped"])
            totals.problems.extend(job.bad_events)
        for (tid, (fi, path)), (_, proto, attempt, _old) in zip(job.tasks.items(), batch):
            ok = job.success.get(tid)
            with lock:
                totals.attempts += 1
            if ok:
                digest = sha256_file(path) if path.exists() else "missing"
                with lock:
                    if digest != expected[fi]:
                        totals.wrong_files += 1
                        totals.problems.append(
                            f"WRONG FILE {path} (f{fi}, {sizes[fi]} B, {proto})")
                    totals.downloads_done += 1
                    totals.done_by_protocol[proto] += 1
                    totals.bytes_checked += sizes[fi]
                    sampler.done = totals.downloads_done
                    if totals.downloads_done == warmup_at and not baseline:
                        baseline["rss"], baseline["fds"] = _rss_kib(), _fds()
                for p in (path, Path(str(path) + ".tthsd.part"),
                          Path(str(path) + ".tthsd.journal")):
                    if p.exists():
                        p.unlink()
                continue
            code = job.codes.get(tid, "no endOne" if ok is None else "no err")
            with lock:
                totals.codes[code] += 1
                totals.codes_by_protocol.setdefault(proto, Counter())[code] += 1
                if path.exists():
                    totals.left_after_failure += 1
                    totals.problems.append(f"failed ({code}, {proto}) yet {path} exists")
                if attempt < args.attempts:
                    totals.retried_tasks += 1
                    queue.insert(0, (fi, proto, attempt + 1, path))
                else:
                    totals.failed_for_good += 1
                    totals.problems.append(
                        f"f{fi} ({proto}) failed {attempt} times, last {code}")

    # Warm up (the core's runtime, its descriptors, the TLS roots) before the first
    # measure: one download per protocol.
    warm = Job()
    warm.callback = CALLBACK(warm.on_event)
    warm_paths = [workdir / f"warm-{p}.bin" for p in protocols]
    tj = json.dumps([{"url": f"{bases[p]}/f1.bin", "save_path": str(path)}
                     for p, path in zip(protocols, warm_paths)])
    ident = lib.start_download(tj.encode(), len(protocols), 2, 1, warm.callback, False, None,
                               None, None, bool_p(False), None)
    warm.ended.wait(30)
    lib.stop_download(ident)
    warm.callback = None
    for path in warm_paths:
        for p in (path, Path(str(path) + ".tthsd.part"), Path(str(path) + ".tthsd.journal")):
            p.unlink(missing_ok=True)
    time.sleep(0.5)
    rss0, fds0 = _rss_kib(), _fds()
    sampler.start()
    t0 = time.monotonic()
    workers = [threading.Thread(target=one_downloader, args=(w,), name=f"soak-{w}")
               for w in range(args.concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.monotonic() - t0
    sampler.stop()
    time.sleep(1.0)  # let sockets of stopped downloaders close
    rss_end, fds_end = sampler.sample()
    if not baseline:
        baseline = {"rss": rss0, "fds": fds0}
    rss_growth_mib = (rss_end - baseline["rss"]) / 1024
    # Every downloader is stopped: exactly the descriptors the warmed-up process had.
    flat_fds = fds_end <= fds0 + 1
    flat_rss = rss_growth_mib <= args.rss_slack
    half = [x for x in sampler.samples if x[1] >= args.downloads // 2]
    slope = None
    if len(half) >= 2 and half[-1][1] > half[0][1]:
        slope = round((half[-1][2] - half[0][2]) / (half[-1][1] - half[0][1]) * 1000, 1)
    result = {
        "downloads_asked": args.downloads, "downloads_done": totals.downloads_done,
        "attempts": totals.attempts, "tasks_retried": totals.retried_tasks,
        "failed_for_good": totals.failed_for_good, "files_wrong": totals.wrong_files,
        "left_after_failure": totals.left_after_failure,
        "protocols": protocols, "done_by_protocol": dict(totals.done_by_protocol),
        "fault_rate": args.fault_rate, "engine_retries": totals.retries,
        "failure_codes": dict(totals.codes),
        "failure_codes_by_protocol": {p: dict(c) for p, c in
                                      totals.codes_by_protocol.items()},
        "bytes_checked": totals.bytes_checked,
        "bytes_fetched": totals.bytes_fetched, "seconds": round(seconds, 1),
        "mirrors": {"tasks": totals.mirror_tasks, "bytes_served": totals.mirror_bytes,
                    "dropped": totals.mirrors_dropped},
        "rss_mib": {"start": round(rss0 / 1024, 1),
                    "after_warmup": round(baseline["rss"] / 1024, 1),
                    "end": round(rss_end / 1024, 1),
                    "max": round(max([s[2] for s in sampler.samples] + [rss_end]) / 1024, 1)},
        "rss_kib_per_1000_downloads_second_half": slope,
        "fds": {"start": fds0, "end": fds_end,
                "max": max([s[3] for s in sampler.samples] + [fds_end])},
        "samples": sampler.samples, "flat_rss": flat_rss, "flat_fds": flat_fds,
        "problems": totals.problems[:50],
    }
    result["ok"] = (totals.wrong_files == 0 and totals.failed_for_good == 0
                    and totals.left_after_failure == 0 and flat_rss and flat_fds
                    and totals.downloads_done == args.downloads and not totals.problems)
    return result


def _stats(lib: Lib, ident: int) -> dict[str, Any]:
    ptr = lib.get_performance_stats(ident)
    try:
        out: dict[str, Any] = json.loads(ctypes.string_at(ptr)) if ptr else {}
        return out
    finally:
        lib.free_string(ptr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--downloads", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--max-size", type=int, default=3 * MiB)
    ap.add_argument("--concurrency", type=int, default=4, help="downloaders at a time")
    ap.add_argument("--batch", type=int, default=8, help="tasks per downloader")
    ap.add_argument("--threads", type=int, default=4, help="thread_count per downloader")
    ap.add_argument("--attempts", type=int, default=3,
                    help="downloaders a file may take (a failed task is downloaded again)")
    ap.add_argument("--max-retries", type=int, default=8, help="set_retry_config's")
    ap.add_argument("--run-timeout", type=float, default=120.0)
    ap.add_argument("--sample-every", type=float, default=2.0)
    ap.add_argument("--rss-slack", type=float, default=24.0, help="MiB")
    ap.add_argument("--mirror-every", type=int, default=3,
                    help="one task in N names the same file on the other servers as mirrors "
                         "(0: none)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS),
                    help="servers to mix, some of http,https,h2 (a task's is drawn at random)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--serve", choices=PROTOCOLS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cert", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.seed, args.fault_rate, args.files, args.max_size,
                     args.cert)
    if args.workdir is None:
        import tempfile

        args.workdir = Path(tempfile.mkdtemp(prefix="tthsd-soak-"))
    result = soak(args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    brief = {k: v for k, v in result.items() if k not in ("samples", "problems")}
    print(json.dumps(brief, indent=1))
    for p in result["problems"][:20]:
        print("problem:", p)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
