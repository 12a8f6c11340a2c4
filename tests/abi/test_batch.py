"""A 20-file batch in sequential and in multiple mode."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import LoopbackServer

from .lib import Harness, assert_file, check_events, task


def _batch(server: LoopbackServer, tmp: Path, n: int = 20,
           **knobs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tasks, bodies = [], {}
    for i in range(n):
        # Sizes vary (a zero-byte file, odd sizes, some over a chunk).
        size = [0, 1, 15, 4097][i] if i < 4 else 50_000 * i + i
        res = server.add(f"/batch/{i:02d}.bin", size=size, **knobs)
        tid = f"f{i:02d}"
        tasks.append(task(res.url, tmp / "out" / f"{i:02d}.bin", id=tid, show_name=f"file {i}"))
        bodies[tid] = res.body
    return tasks, bodies


def test_twenty_files_sequential(tthsd: Harness, http_server: LoopbackServer,
                                 tmp_path: Path) -> None:
    tasks, bodies = _batch(http_server, tmp_path)
    run = tthsd.start(tasks, multiple=False, threads=8, chunk_mb=1)
    run.wait_end(30)
    check_events(run.events, tasks, sequential=True,
                 sizes={k: b.size for k, b in bodies.items()})
    for t in tasks:
        assert_file(t["save_path"], bodies[t["id"]])
    st = run.stats()
    assert st["state"] == "finished"
    assert st["downloaded"] == st["total"] == sum(b.size for b in bodies.values())


def test_twenty_files_multiple_run_at_once(tthsd: Harness, http_server: LoopbackServer,
                                           tmp_path: Path) -> None:
    # Each file trickles at 1 MiB/s per connection: one after another would take > 5 s.
    tasks, bodies = _batch(http_server, tmp_path, throttle=1 << 20)
    t0 = time.monotonic()
    run = tthsd.start(tasks, multiple=True, threads=32, chunk_mb=1)
    run.wait_end(30)
    elapsed = time.monotonic() - t0
    check_events(run.events, tasks, sizes={k: b.size for k, b in bodies.items()})
    for t in tasks:
        assert_file(t["save_path"], bodies[t["id"]])
    # How many tasks were between their startOne and endOne at once.
    running = peak = 0
    for e in run.events.snapshot():
        if e.type == "startOne":
            running += 1
            peak = max(peak, running)
        elif e.type == "endOne":
            running -= 1
    assert peak >= 4, f"multiple mode ran at most {peak} tasks at once"
    assert elapsed < 4.0, f"multiple mode took {elapsed:.1f}s for 20 small files"


def test_sequential_via_start_download_id_and_multiple_via_start_multiple(
        tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    tasks, bodies = _batch(http_server, tmp_path, n=6)
    run = tthsd.create(tasks)
    assert run.start(multiple=False) == 0
    run.wait_end(30)
    check_events(run.events, tasks, sequential=True)
    for t in tasks:
        assert_file(t["save_path"], bodies[t["id"]])
    tasks2 = [dict(t, save_path=str(Path(t["save_path"]).with_suffix(".2"))) for t in tasks]
    run2 = tthsd.create(tasks2)
    assert run2.start(multiple=True) == 0
    run2.wait_end(30)
    check_events(run2.events, tasks2)
    for t in tasks2:
        assert_file(t["save_path"], bodies[t["id"]])


@pytest.mark.parametrize("multiple", [False, True], ids=["sequential", "multiple"])
def test_one_failing_task_does_not_stop_the_others(tthsd: Harness, http_server: LoopbackServer,
                                                   tmp_path: Path, multiple: bool) -> None:
    tasks, bodies = _batch(http_server, tmp_path, n=8)
    http_server.add("/batch/03.bin", status=404)  # replace one file by a 404
    http_server.add("/batch/06.bin", status=403)
    run = tthsd.start(tasks, multiple=multiple, threads=8)
    run.wait_end(30)
    failed = {"f03", "f06"}
    check_events(run.events, tasks, sequential=not multiple,
                 success={t["id"]: t["id"] not in failed for t in tasks})
    for t in tasks:
        if t["id"] in failed:
            assert not Path(t["save_path"]).exists()
            errs = run.events.of("err", t["id"])
            assert errs and errs[0].msg["Code"] == "http_status", errs
        else:
            assert_file(t["save_path"], bodies[t["id"]])
    st = run.stats()
    assert st["state"] == "failed"
    assert sorted(x["id"] for x in st["tasks"] if x["state"] == "failed") == sorted(failed)
