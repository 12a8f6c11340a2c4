"""The short soak of the test run: ``tests/soak/soak.py`` in its own process (its RSS and
descriptors are the ones measured), 1200 downloads mixed over plain HTTP/1.1, HTTPS
(HTTP/1.1 over TLS) and HTTP/2 over TLS, with a fault in one request of five and a single
retry, so that some tasks fail (nothing may be left at their ``save_path``) and are
downloaded again by a later downloader.
The long run and its last figures: tests/soak/README.md. ``TTHSD_SOAK_DOWNLOADS`` and
``TTHSD_SOAK_FAULT_RATE`` scale it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.abi.lib import REPO

DOWNLOADS = int(os.environ.get("TTHSD_SOAK_DOWNLOADS", "1200"))
FAULT_RATE = float(os.environ.get("TTHSD_SOAK_FAULT_RATE", "0.2"))


@pytest.mark.scenario("soak: thousands of downloads with faults, files exact, RSS and fds flat")
def test_short_soak(lib_path: Path, tmp_path: Path, figures: Callable[[str], None]) -> None:
    out = tmp_path / "soak.json"
    env = dict(os.environ, TTHSD_LIBRARY=str(lib_path), PYTHONFAULTHANDLER="1")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.soak.soak", "--downloads", str(DOWNLOADS),
         "--fault-rate", str(FAULT_RATE), "--seed", "7", "--sample-every", "1",
         # Few retries, so that some tasks fail and are downloaded again (resumed).
         "--max-retries", "1", "--attempts", "5",
         "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.exists(), f"the soak died ({proc.returncode}):\n{proc.stderr[-4000:]}"
    r = json.loads(out.read_text())
    mix = ", ".join(f"{p} {n}" for p, n in sorted(r["done_by_protocol"].items()))
    figures(f"soak: {r['downloads_done']}/{r['downloads_asked']} downloads ({mix}) in "
            f"{r['seconds']}s, {r['faults_injected']} faults injected "
            f"({r['fault_rate']}/request), {r['tasks_retried']} tasks downloaded again, "
            f"{r['engine_retries']} engine retries, files wrong {r['files_wrong']}, "
            f"RSS MiB {r['rss_mib']['after_warmup']} -> {r['rss_mib']['end']}, "
            f"fds {r['fds']['start']} -> {r['fds']['end']}")
    assert r["files_wrong"] == 0, r["problems"]
    assert r["left_after_failure"] == 0, r["problems"]
    assert r["failed_for_good"] == 0, r["problems"]
    assert r["downloads_done"] == DOWNLOADS, r["problems"]
    assert r["faults_injected"] >= DOWNLOADS * FAULT_RATE / 2, "too few faults to mean much"
    assert not r["server_errors"], r["server_errors"]
    # Every protocol had its share of downloads and of faults.
    assert sorted(r["done_by_protocol"]) == ["h2", "http", "https"], r["done_by_protocol"]
    assert min(r["done_by_protocol"].values()) >= DOWNLOADS // 5, r["done_by_protocol"]
    for proto, kinds in r["faults_by_protocol"].items():
        assert sum(kinds.values()) >= DOWNLOADS * FAULT_RATE / 10, (proto, kinds)
    assert "overlong" not in r["faults_by_protocol"]["h2"], r["faults_by_protocol"]
    # Parallel runs (every other one) offer HTTP/2; runs of one file after another offer
    # HTTP/1.1 alone (docs/tuning.md), also to the server that speaks both.
    assert set(r["requests_by_version"]["h2"]) == {"HTTP/1.1", "HTTP/2"}, r["requests_by_version"]
    assert set(r["requests_by_version"]["https"]) == {"HTTP/1.1"}, r["requests_by_version"]
    assert r["flat_fds"], r["fds"]
    assert r["flat_rss"], r["rss_mib"]
    assert not r["problems"], r["problems"]
    assert proc.returncode == 0, proc.stdout[-3000:]
