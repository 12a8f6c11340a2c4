"""Running a contender: one child process per run, wall and CPU time, peak RSS, the
outputs checked by SHA-256, medians over the rounds of a workload, perf profiles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common import KiB, MiB, child_env, load_average, log
from contenders import Contender, Job, ours_report
from nginx import Nginx

# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Run:
    ok: bool
    wall: float
    cpu: float
    rss_kib: int
    error: str = ""
    requests: int = 0  # HTTP requests nginx logged during the run
    served: int = 0  # body bytes nginx sent during the run
    api: dict[str, object] = dataclasses.field(default_factory=dict)  # run_ours.py's report


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def verify(job: Job) -> str:
    """'' when every expected output is there with the right content, else why not."""
    bad = []
    for name, sha in job.expected.items():
        path = job.out_dir / name
        if not path.is_file():
            bad.append(f"{name} missing")
        elif sha256_file(path) != sha:
            bad.append(f"{name} wrong SHA-256")
        if len(bad) >= 3:
            break
    if not bad:
        return ""
    return ", ".join(bad) + (f" (of {len(job.expected)} files)" if len(job.expected) > 1 else "")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def clear_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


# Rounds of the callback-cost workloads (at least; --runs if larger).
CALLBACK_RUNS = 9

# Where the outputs of many-file runs go instead of being deleted (see retire_outputs).
TRASH: list[Path] = []


def retire_outputs(job: Job) -> None:
    """Empty the job's output folder before or after a run.

    A run's thousand files are not deleted between runs but moved aside, and deleted when
    the harness ends. On ext4 without a journal (as on the machine of bench/RESULTS.md),
    allocating an inode skips the ones freed in the last ~30 s, scanning past each: right
    after a thousand deletions every file the next tool creates costs up to a millisecond
    more, so whoever ran after a deletion paid for it (curl --parallel measured anywhere
    from 0.16 to 0.99 s). Big single files are deleted as before: one inode each.
    """
    if len(job.urls) > 1 and TRASH and job.out_dir.exists():
        job.out_dir.rename(TRASH[0] / f"{len(list(TRASH[0].iterdir()))}")
    clear_dir(job.out_dir)


def gnu_time() -> str | None:
    """/usr/bin/time when it is GNU time, which reports the peak RSS of the command alone."""
    path = shutil.which("time", path="/usr/bin:/bin")
    if path is None:
        return None
    proc = subprocess.run([path, "--version"], capture_output=True, text=True)
    return path if "GNU" in proc.stdout + proc.stderr else None


GNU_TIME = gnu_time()


def run_once(
    c: Contender, job: Job, timeout: float, logs: Path, server: Nginx | None = None, wrap: Sequence[str] = ()
) -> Run:
    retire_outputs(job)
    # Write back what earlier runs left dirty, so it lands on no one's clock.
    os.sync()
    argv = c.argv(job)
    rss_path = logs / "maxrss"
    rss_path.unlink(missing_ok=True)
    if wrap:
        argv = [*wrap, *argv]
    elif GNU_TIME:
        # Linux counts the high-water mark of the address space a child had before exec,
        # i.e. this harness's, in the child's ru_maxrss. GNU time (about 1 MiB) forks the
        # command from its own small address space and reports the command's peak alone.
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *argv]
    stdout_path, stderr_path = logs / "stdout", logs / "stderr"
    log_offset = server.log_offset() if server else 0
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=job.scratch,
            env=child_env(c.env), start_new_session=True,
        )  # fmt: skip
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C reaches only this process group, not the child's session: end it too.
            kill()
            os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss
    if GNU_TIME and not wrap:
        lines = [x for x in _read(rss_path).split() if x.isdigit()]
        rss_kib = int(lines[-1]) if lines else 0
    run = Run(True, wall, usage.ru_utime + usage.ru_stime, rss_kib)
    if server:
        run.requests, run.served = server.requests_since(log_offset)
    if c.ours:
        run.api = ours_report(_read(stdout_path))
    if timed_out.is_set():
        run.ok, run.error = False, f"timeout after {timeout:.0f} s"
    elif proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        run.ok, run.error = False, f"exit {proc.returncode}: {tail[0][:160]}"
    else:
        problem = verify(job)
        if problem:
            run.ok, run.error = False, problem
    if not run.ok:
        # Keep the evidence of a failure next to the logs.
        shutil.copy(stderr_path, logs / f"failed-{int(time.time())}.stderr")
    retire_outputs(job)
    return run


@dataclasses.dataclass
class Workload:
    key: str  # 1, 2, 3, callback, rss
    title: str
    urls: list[str]
    expected: dict[str, str]
    total_bytes: int
    contenders: list[Contender]
    reference: str = ""  # label of the reference contender; "ideal" for workload 2
    rate: int = 0  # bytes/s per connection, for the ideal time
    notes: list[str] = dataclasses.field(default_factory=list)
    ideal_extra: float = 0.0  # seconds added to the ideal time (round trips of a link model)
    ideal_note: str = ""  # how the ideal time is computed, when not the line of workload 2
    # Entered around the rounds of the workload (netbench's relay), when set.
    context: Callable[[], contextlib.AbstractContextManager[None]] | None = None


@dataclasses.dataclass
class Summary:
    contender: Contender
    runs: list[Run]

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and len(self.good) == len(self.runs)

    def median(self, field: str) -> float | None:
        values = [getattr(r, field) for r in self.good]
        return statistics.median(values) if values else None

    def api_median(self, key: str) -> float | None:
        values = [float(r.api[key]) for r in self.good if isinstance(r.api.get(key), (int, float))]
        return statistics.median(values) if values else None

    @property
    def connections(self) -> int:
        """The connection budget: as ours reports it (thread_count), else as it was given."""
        for run in reversed(self.good):
            stats = run.api.get("stats")
            if isinstance(stats, dict) and isinstance(stats.get("thread_count"), int) and stats["thread_count"] > 0:
                return int(stats["thread_count"])
        return self.contender.connections

    @property
    def wall(self) -> float | None:
        return self.median("wall")

    @property
    def cpu(self) -> float | None:
        return self.median("cpu")

    @property
    def rss_mib(self) -> float | None:
        # The largest peak over the runs: the targets bound the worst case.
        values = [r.rss_kib for r in self.good]
        return max(values) * KiB / MiB if values else None


def run_workload(
    w: Workload,
    runs: int,
    timeout: float,
    work: Path,
    server: Nginx | None = None,
    perf: bool = False,
    profiles: list[Profile] | None = None,
) -> list[Summary]:
    """Rounds over the contenders of `w`; with `perf`, one profiled run of ours after them."""
    profiles = [] if profiles is None else profiles
    scratch = work / "scratch" / w.key
    clear_dir(scratch)
    summaries = [Summary(c, []) for c in w.contenders]
    jobs = []
    for c in w.contenders:
        logs = work / "logs" / w.key / slug(c.label)
        clear_dir(logs)
        job_scratch = scratch / slug(c.label)
        job_scratch.mkdir(parents=True, exist_ok=True)
        urls, expected = c.urls or w.urls, c.expected or w.expected
        jobs.append((Job(urls, expected, work / "out" / w.key / slug(c.label), job_scratch), logs))
    log(f"== workload {w.key}: {w.title} (load average {load_average()})")
    for r in range(runs):
        # Start one further each round, so no tool always follows the same one.
        order = [(i + r) % len(w.contenders) for i in range(len(w.contenders))]
        for i in order:
            c = w.contenders[i]
            job, logs = jobs[i]
            job.want_stats = r == runs - 1
            run = run_once(c, job, timeout, logs, server)
            summaries[i].runs.append(run)
            status = "ok" if run.ok else f"FAILED ({run.error})"
            log(
                f"   round {r + 1}/{runs}  {c.label:<34} wall {run.wall:8.3f} s  cpu {run.cpu:7.3f} s"
                f"  rss {run.rss_kib / 1024:7.1f} MiB  {status}"
            )
    if perf:
        for c, (job, logs) in zip(w.contenders, jobs, strict=True):
            if c.ours:
                profiles.append(profile_once(c, job, timeout, logs, w, work))
    for job, _ in jobs:
        shutil.rmtree(job.out_dir, ignore_errors=True)
    return summaries


@dataclasses.dataclass
class Profile:
    workload: str
    label: str
    path: Path  # perf report --stdio
    top: list[str]  # its first lines of samples
    error: str = ""


def profile_once(c: Contender, job: Job, timeout: float, logs: Path, w: Workload, work: Path) -> Profile:
    """One more, unmeasured run of `c` under perf record; the flat profile by symbol."""
    out = work / "perf"
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"{w.key}-{slug(c.label)}.data"
    text = data.with_suffix(".txt")
    wrap = ["perf", "record", "-q", "-F", "999", "-g", "-o", str(data), "--"]
    run = run_once(c, job, timeout, logs, wrap=wrap)  # its requests are not counted
    profile = Profile(w.key, c.label, text, [])
    if not run.ok:
        profile.error = run.error
        return profile
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,symbol",
         "--percent-limit", "0.5", "-g", "none"],
        capture_output=True, text=True,
    )  # fmt: skip
    by_dso = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso", "-g", "none"],
        capture_output=True, text=True,
    )  # fmt: skip
    text.write_text(by_dso.stdout + report.stdout + report.stderr)

    def rows(out: str, n: int) -> list[str]:
        lines = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
        # Without srcline data perf pads each row with "-" columns: drop them.
        return [re.sub(r"(\s+-)+\s*$", "", line).rstrip() for line in lines[:n]]

    profile.top = [*rows(by_dso.stdout, 6), "", *rows(report.stdout, 15)]
    if report.returncode != 0:
        profile.error = (report.stderr.strip().splitlines() or ["perf report failed"])[-1]
    log(f"   perf: {c.label} -> {text}")
    return profile


def slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in label).strip("-").replace("--", "-")
