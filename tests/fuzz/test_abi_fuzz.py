"""ABI fuzzing in the test run: :mod:`tests.fuzz.program` in a child process, a few fixed
seeds (reproducible: rerun one with ``python -m tests.fuzz.program --seed N ...``).

``TTHSD_FUZZ_EXAMPLES`` (default 40) and ``TTHSD_FUZZ_SEEDS`` (default ``1,2``) scale it.
A crash or a hang fails the test with the seed, how the child died, and the last calls it
made; anything else (a return value, a string, an event, an id that outlives its stop,
threads or descriptors that do not come back) fails with hypothesis' smallest program.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.abi.lib import REPO

EXAMPLES = int(os.environ.get("TTHSD_FUZZ_EXAMPLES", "40"))
SEEDS = [int(s) for s in os.environ.get("TTHSD_FUZZ_SEEDS", "1,2").split(",") if s]
THREADS = 3


def run_fuzz(lib_path: Path, workdir: Path, seed: int, examples: int,
             threads: int = THREADS, timeout: float = 600) -> dict:  # type: ignore[type-arg]
    env = dict(os.environ, TTHSD_LIBRARY=str(lib_path), PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, "-m", "tests.fuzz.program", "--seed", str(seed), "--examples",
           str(examples), "--threads", str(threads), "--workdir", str(workdir)]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fuzz seed {seed}: no answer in {timeout}s\n{_last_calls(workdir)}",
                    pytrace=False)
    if proc.returncode != 0:
        how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else "a hang (watchdog)" if proc.returncode == 70
               else f"exit status {proc.returncode}")
        pytest.fail(f"fuzz seed {seed}: the child died of {how}\n"
                    f"rerun: {' '.join(cmd[1:])}\n{_last_calls(workdir)}\n"
                    f"stderr tail:\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _last_calls(workdir: Path, n: int = 25) -> str:
    log = workdir / "calls.log"
    lines = log.read_text(errors="replace").splitlines()[-n:] if log.exists() else []
    return "last calls:\n  " + "\n  ".join(lines)


@pytest.mark.scenario("ABI fuzzing: random arguments and orders from several threads")
@pytest.mark.parametrize("seed", SEEDS)
def test_random_calls_from_several_threads_never_crash_hang_or_leak(
        lib_path: Path, tmp_path: Path, seed: int, figures: Callable[[str], None]) -> None:
    r = run_fuzz(lib_path, tmp_path / "work", seed, EXAMPLES)
    figures(f"ABI fuzz seed {seed}: {r['examples']} programs x {THREADS} threads, "
            f"{r['calls']} calls over {len(r['per_export'])} exports, {r['ids_created']} "
            f"downloaders created and stopped, {sum(r['events'].values())} events, slowest "
            f"call {r['slowest_call'][0]}s, threads {r['threads']}, fds {r['fds']}, "
            f"HTTPS requests (after the warm-up) {r['tls_requests_by_version']}, "
            f"{r['seconds']}s")
    assert r["failure"] is None, r["failure"]
    assert not r["tls_server_errors"], r["tls_server_errors"]
    assert not r["violations"], r["violations"]
    assert r["ids_unique"] == r["ids_created"], "an id was handed out twice"
    assert r["ids_created"] >= EXAMPLES // 4, f"too few downloaders to mean much: {r}"
    base_threads, end_threads = r["threads"]
    base_fds, end_fds = r["fds"]
    assert end_threads <= base_threads + 1, f"threads left behind: {r['threads']}"
    assert end_fds <= base_fds + 2, f"descriptors left behind: {r['fds']}"
    # Every export was called (the id ones through their snake or camel names).
    called = set(r["per_export"])
    for name in ("start_download", "get_downloader", "set_speed_limit", "set_proxy",
                 "set_retry_config", "tthsd_set_timeouts", "get_performance_stats",
                 "free_string", "tthsd_last_error"):
        assert name in called, f"{name} was never called: {sorted(called)}"


def test_an_absurd_thread_count_does_not_abort_the_host() -> None:
    # Found by the fuzz: thread_count INT_MAX aborted the process on a 64 GiB allocation.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.repro_int_max_threads"], timeout=120, check=False
    )
    assert done.returncode == 0
