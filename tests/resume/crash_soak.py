"""Kill a downloading process with SIGKILL at random moments, resume it, repeat.

Run as a script for the long soak (issue 5 asks for 200+ rounds)::

    python -m tests.resume.crash_soak --rounds 200
    python tests/resume/crash_soak.py --rounds 200 --size-mib 64 --seed 7

and imported by ``tests/resume/test_sigkill.py`` for the 20 rounds of the test run.

One round: a child process (:mod:`tests.resume.child`) starts downloading a file from a
loopback server running here; after a random delay the child gets SIGKILL; the next child
resumes from what the dead one left on disk. When a file completes, its SHA-256 is
checked and the next file begins, until the wanted number of kills happened (the last
file then runs to the end without kills).

The server throttles every response (``--rate-kib`` per connection), so the transfer
rate is known and a kill lands mid-transfer. What is measured per kill, server-side:

* ``sent``: body bytes the server sent to the killed process;
* ``on_disk``: of those, bytes found in the part file after the kill (the content never
  holds a zero byte and the part file is sparse, so a non-zero byte was written);
* ``refetched``: bytes that were on disk at the kill and that a later process fetched
  again (what the journal had not made durable yet);
* ``resent``: bytes the server sent to the killed process and sent again later
  (``refetched`` plus what was still in flight: socket buffers, the engine's write
  buffer).

The engine journals every second while ranges arrive (after syncing the part file), so
both must stay within one journal period of transfer plus the in-flight window::

    bound = rate * cadence + connections * in-flight allowance

Every round also checks that the journal left by the killed process is valid and names
only bytes that are really in the part file, with the right content.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `tests.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.abi.lib import library_path
from tests.resume import journal
from tests.support.content import Content, first_mismatch, sha256_file
from tests.support.server import LoopbackServer

REPO = Path(__file__).resolve().parents[2]
KiB = 1 << 10
MiB = 1 << 20


@dataclass
class Settings:
    rounds: int = 20  #: kills
    size: int = 32 * MiB  #: bytes per file
    connections: int = 4  #: thread_count of the child's downloader
    rate_per_connection: int = 1536 * KiB  #: server throttle per response, bytes/s
    chunk_mb: int = 4
    #: delay between the child's READY and the kill, uniform in [min_delay, max_delay] s
    min_delay: float = 0.0
    max_delay: float = 2.5
    cadence: float = 1.0  #: the engine's journal period, seconds
    inflight_per_connection: int = 512 * KiB
    checksum: bool = True  #: give the task its sha256 (exercises verification too)
    seed: int | None = None
    #: a file that needs more than this many kills without completing fails the soak
    max_runs_per_file: int = 400

    @property
    def rate(self) -> int:
        return self.connections * self.rate_per_connection

    @property
    def bound(self) -> int:
        return int(self.rate * self.cadence) + self.connections * self.inflight_per_connection


@dataclass
class Kill:
    file: int
    run: int  #: 1-based run of this file that was killed
    delay: float  #: seconds between READY and SIGKILL
    sent: int
    on_disk: int
    journaled: int  #: bytes the journal listed after the kill
    refetched: int = 0
    resent: int = 0
    #: internal: ranges, filled while the file runs
    sent_ranges: journal.Ranges = field(default_factory=list, repr=False)
    disk_ranges: journal.Ranges = field(default_factory=list, repr=False)


@dataclass
class FileOutcome:
    file: int
    runs: int
    kills: int
    sha256_ok: bool
    problem: str | None
    bytes_sent: int


@dataclass
class Report:
    settings: Settings
    seed: int
    kills: list[Kill]
    files: list[FileOutcome]
    failures: list[str]
    elapsed: float

    def over_bound(self) -> list[Kill]:
        b = self.settings.bound
        return [k for k in self.kills if k.refetched > b or k.resent > b]

    def distribution(self, attr: str) -> dict[str, float]:
        values: list[int] = sorted(int(getattr(k, attr)) for k in self.kills)
        if not values:
            return {}

        def q(p: float) -> int:
            return values[min(len(values) - 1, int(p * len(values)))]

        return {
            "n": len(values),
            "min": values[0],
            "p50": q(0.5),
            "p90": q(0.9),
            "p99": q(0.99),
            "max": values[-1],
            "mean": statistics.fmean(values),
        }

    def summary(self) -> str:
        s = self.settings
        lines = [
            f"crash soak: {len(self.kills)} kills over {len(self.files)} files of "
            f"{s.size / MiB:.0f} MiB, {s.connections} connections × "
            f"{s.rate_per_connection / KiB:.0f} KiB/s = {s.rate / MiB:.2f} MiB/s, "
            f"kill {s.min_delay}-{s.max_delay} s after start, seed {self.seed}, "
            f"{self.elapsed:.1f} s",
            f"bound per kill: {s.cadence:.1f} s × rate + {s.connections} × "
            f"{s.inflight_per_connection / KiB:.0f} KiB = {s.bound / MiB:.2f} MiB",
        ]
        for attr in ("refetched", "resent", "sent", "on_disk"):
            d = self.distribution(attr)
            if d:
                lines.append(
                    f"  {attr:>9} MiB: "
                    + "  ".join(f"{k} {v / MiB:.2f}" for k, v in d.items() if k != "n")
                    + f"   ({d['max'] / s.rate:.2f} s of transfer at most)"
                )
        ok = sum(f.sha256_ok for f in self.files)
        lines.append(f"files byte-exact by SHA-256: {ok}/{len(self.files)}")
        over = self.over_bound()
        lines.append(
            f"kills over the bound: {len(over)}" + "".join(f"\n    {k}" for k in over[:10])
        )
        if self.failures:
            lines.append("FAILURES:\n  " + "\n  ".join(self.failures))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": dataclasses.asdict(self.settings),
            "seed": self.seed,
            "bound": self.settings.bound,
            "elapsed": self.elapsed,
            "kills": [
                {
                    k: v
                    for k, v in dataclasses.asdict(x).items()
                    if k not in ("sent_ranges", "disk_ranges")
                }
                for x in self.kills
            ],
            "files": [dataclasses.asdict(f) for f in self.files],
            "failures": self.failures,
            "distribution": {a: self.distribution(a) for a in ("refetched", "resent")},
        }


class Child:
    """One child download process, its stdout read by a thread (lines into a queue)."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.resume.child", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.result: dict[str, Any] | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the child to end on its own; True if it did."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._reader.join(5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line and line.startswith("RESULT "):
                self.result = json.loads(line[7:])
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)


def _sent_ranges(server: LoopbackServer, path: str, after_seq: int) -> journal.Ranges:
    out = []
    for r in server.requests(path):
        if r.seq > after_seq and r.served is not None and r.bytes_sent > 0:
            out.append((r.served[0], r.served[0] + r.bytes_sent))
    return journal.union(out)


def _check_journal(save: Path, url: str, content: Content) -> tuple[int, str | None]:
    """Bytes the journal beside ``save`` lists, and a problem if it is not trustworthy
    (foreign facts, or a listed range whose bytes are not in the part file)."""
    raw = journal.journal_path(save)
    if not raw.exists():
        return 0, None
    body = journal.decode(raw.read_bytes())
    if body is None:
        return 0, f"{raw} does not parse after a kill (torn write?)"
    if body["url"] != url or body["total"] != content.size:
        return 0, f"{raw} names {body['url']} / {body['total']}"
    ranges = journal.covered(body)
    part = journal.part_path(save)
    with open(part, "rb") as f:
        for s, e in ranges:
            pos = s
            while pos < e:
                n = min(MiB, e - pos)
                f.seek(pos)
                if f.read(n) != content.read(pos, n):
                    return journal.size(ranges), (
                        f"the journal lists [{s}, {e}) but the part file differs near {pos}"
                    )
                pos += n
    return journal.size(ranges), None


def soak(settings: Settings, workdir: Path, *, lib: Path | None = None, log: Any = None) -> Report:
    """Run the soak; never raises for a failed check (see ``Report.failures``)."""
    seed = settings.seed if settings.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["TTHSD_LIBRARY"] = str(lib or library_path())
    workdir.mkdir(parents=True, exist_ok=True)
    kills: list[Kill] = []
    files: list[FileOutcome] = []
    failures: list[str] = []
    t0 = time.monotonic()

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    with LoopbackServer() as server, open(workdir / "children.stderr", "ab") as errlog:
        file_no = 0
        while len(kills) < settings.rounds and not failures:
            file_no += 1
            path = f"/soak-{file_no}.bin"
            content = Content(settings.size, f"soak{file_no}")
            res = server.add(
                path, content, throttle=settings.rate_per_connection, etag=f'"soak-{file_no}"'
            )
            save = workdir / f"file{file_no}.bin"
            args = [
                "--url",
                res.url,
                "--save",
                str(save),
                "--threads",
                str(settings.connections),
                "--chunk-mb",
                str(settings.chunk_mb),
            ]
            if settings.checksum:
                args += ["--checksum", "sha256:" + content.sha256()]
            file_kills: list[Kill] = []
            run_sent: list[journal.Ranges] = []  # per run of this file, in order
            runs = 0
            result: dict[str, Any] | None = None
            while runs < settings.max_runs_per_file:
                runs += 1
                mark = len(server.requests())
                child = Child(args, env, errlog)
                if child.wait_line("READY", 30) is None:
                    child.kill()
                    failures.append(f"file {file_no} run {runs}: child never got READY")
                    break
                want_kill = len(kills) < settings.rounds
                delay = rng.uniform(settings.min_delay, settings.max_delay)
                if child.finish(delay if want_kill else 120.0):
                    result = child.result
                    server.wait_idle(5)
                    run_sent.append(_sent_ranges(server, path, mark))
                    break
                if not want_kill:
                    child.kill()
                    failures.append(f"file {file_no}: the last run did not end in 120 s")
                    break
                child.kill()
                server.wait_idle(5)
                sent = _sent_ranges(server, path, mark)
                run_sent.append(sent)
                disk = journal.written(journal.part_path(save), sent)
                listed, problem = _check_journal(save, res.url, content)
                if problem:
                    failures.append(f"file {file_no} run {runs}: {problem}")
                k = Kill(
                    file_no,
                    runs,
                    delay,
                    journal.size(sent),
                    journal.size(disk),
                    listed,
                    sent_ranges=sent,
                    disk_ranges=disk,
                )
                kills.append(k)
                file_kills.append(k)
                say(
                    f"kill {len(kills):4d}: file {file_no} run {runs} after {delay:.2f} s, "
                    f"sent {k.sent / MiB:6.2f} MiB, on disk {k.on_disk / MiB:6.2f} MiB, "
                    f"journal lists {listed / MiB:6.2f} MiB"
                )
            # Per kill: what the killed run had received that a later run fetched again.
            later: journal.Ranges = []
            by_run = {k.run: k for k in file_kills}
            for run in range(len(run_sent), 0, -1):
                killed = by_run.get(run)
                if killed is not None:
                    killed.refetched = journal.size(journal.intersect(killed.disk_ranges, later))
                    killed.resent = journal.size(journal.intersect(killed.sent_ranges, later))
                later = journal.union(later + run_sent[run - 1])
            problem = None
            ok = False
            if result is None:
                problem = "did not complete"
            elif not result.get("success"):
                problem = f"ended without success: {result.get('errors')}"
            elif not save.is_file():
                problem = "no file at save_path after success"
            else:
                ok = sha256_file(save) == content.sha256()
                if not ok:
                    problem = f"SHA-256 differs: {first_mismatch(content, save)}"
                elif journal.siblings(save):
                    problem = f"temporary files left: {journal.siblings(save)}"
            if problem:
                failures.append(f"file {file_no}: {problem}")
            files.append(
                FileOutcome(file_no, runs, len(file_kills), ok, problem, server.bytes_sent(path))
            )
            say(
                f"file {file_no}: {runs} runs, {len(file_kills)} kills, "
                f"{'byte-exact' if ok else problem}"
            )
            server.remove(path)
            if ok:
                save.unlink()
    return Report(settings, seed, kills, files, failures, time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    d = Settings()
    ap = argparse.ArgumentParser(
        description="SIGKILL a downloading child at random moments, resume, repeat; "
        "check every file by SHA-256 and report the bytes fetched again."
    )
    ap.add_argument("--rounds", type=int, default=200, help="kills (default 200)")
    ap.add_argument("--size-mib", type=int, default=d.size // MiB)
    ap.add_argument("--connections", type=int, default=d.connections)
    ap.add_argument(
        "--rate-kib",
        type=int,
        default=d.rate_per_connection // KiB,
        help="server throttle per connection, KiB/s",
    )
    ap.add_argument("--chunk-mb", type=int, default=d.chunk_mb)
    ap.add_argument("--min-delay", type=float, default=d.min_delay)
    ap.add_argument("--max-delay", type=float, default=d.max_delay)
    ap.add_argument("--inflight-kib", type=int, default=d.inflight_per_connection // KiB)
    ap.add_argument("--no-checksum", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where files go (default: a new temporary folder)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--quiet", action="store_true", help="no line per kill")
    a = ap.parse_args(argv)
    settings = Settings(
        rounds=a.rounds,
        size=a.size_mib * MiB,
        connections=a.connections,
        rate_per_connection=a.rate_kib * KiB,
        chunk_mb=a.chunk_mb,
        min_delay=a.min_delay,
        max_delay=a.max_delay,
        inflight_per_connection=a.inflight_kib * KiB,
        checksum=not a.no_checksum,
        seed=a.seed,
    )
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tthsd-soak-") as tmp:
        workdir = a.workdir or Path(tmp)
        report = soak(settings, workdir, log=None if a.quiet else sys.stdout)
    print(report.summary())
    if a.json:
        a.json.write_text(json.dumps(report.to_json(), indent=1))
    return 1 if report.failures or report.over_bound() else 0


if __name__ == "__main__":
    sys.exit(main())
