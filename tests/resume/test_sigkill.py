"""SIGKILL at random moments, resume, repeat (issue 5, "Must show", first point).

20 kills of a child process downloading 32 MiB files from a throttled loopback server
(4 connections, 1.5 MiB/s each), each followed by a new process that resumes. The long form
is ``python -m tests.resume.crash_soak --rounds 200``. Set ``TTHSD_SOAK_SEED`` to replay
a run (the seed is printed in the terminal summary and in failure messages).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.resume.crash_soak import Settings, soak


@pytest.mark.slow
@pytest.mark.timeout(170)
def test_sigkill_at_random_moments_resumes_to_byte_exact_files(
    lib_path: Path, tmp_path: Path, report_lines: list[str]
) -> None:
    seed = int(os.environ.get("TTHSD_SOAK_SEED") or random.randrange(1 << 32))
    settings = Settings(rounds=20, seed=seed)
    report = soak(settings, tmp_path, lib=lib_path)
    summary = report.summary()
    report_lines.extend(summary.splitlines())
    print(summary)
    assert not report.failures, summary
    assert len(report.kills) == settings.rounds, summary
    assert report.files and all(f.sha256_ok for f in report.files), summary
    # Bytes on disk at a kill that had to be fetched again, and bytes sent twice in all:
    # within one journal period of transfer plus the in-flight window.
    assert not report.over_bound(), summary
    # The journal was really used: over all kills, most of what reached the disk
    # survived (a kill before the first journal write of a run loses that run).
    on_disk = sum(k.on_disk for k in report.kills)
    refetched = sum(k.refetched for k in report.kills)
    assert refetched < on_disk, summary
