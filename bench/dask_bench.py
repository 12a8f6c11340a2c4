"""Bench of issue 19: tthsd_interface.dask on this machine.

Rows:
* 10,000 small files (16 KiB by default) from nginx on loopback (bench/bench.py's Nginx
  and DataSet), through ``tthsd_interface.dask.download`` with 1 and 2 worker processes
  (one thread each), and the same files through ``tthsd_interface.download`` in one
  process for reference.  The scheduler and the workers are separate processes
  (``dask scheduler`` / ``dask worker``), as on a real cluster, so the client's own CPU
  time and peak RSS are the client's overhead alone.  Every file is checked by SHA-256.
* The client's memory while streaming a 1,000,000-line manifest: a child process runs
  ``iter_download`` (rows dropped as they come) and ``download`` (a DataFrame kept) over
  a 1,000,000-line file with workers whose shard function is a stub that returns a row
  per file at once (nothing is downloaded: this measures the client side only: reading
  the manifest, cutting shards, submitting them, collecting rows).

    python bench/dask_bench.py [--files 10000] [--size 16384] [--runs 3] [--work DIR]
                               [--out DIR] [--files-per-task 500,2000]

Needs nginx, the [dask] and [pandas] extras, and the core ($TTHSD_LIBRARY or the
installed one).  Writes only under the work dir (default /tmp/tthsd-dask-bench) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402  (bench/common.py: the data set)
from nginx import Nginx  # noqa: E402  (bench/nginx.py)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _start_cluster(work: Path, workers: int) -> tuple[list[subprocess.Popen[bytes]], str]:
    sched_file = work / f"scheduler-{workers}.json"
    sched_file.unlink(missing_ok=True)
    log = open(work / f"dask-{workers}.log", "wb")  # noqa: SIM115 - lives with the processes
    procs = [
        subprocess.Popen(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
            stdout=log, stderr=log,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 30
    while not sched_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the scheduler did not start (see {log.name})")
        time.sleep(0.1)
    procs.append(
        subprocess.Popen(
            ["dask", "worker", "--scheduler-file", str(sched_file), "--nworkers", str(workers),
             "--nthreads", "1", "--no-dashboard", "--local-directory", str(work / "dask-space")],
            stdout=log, stderr=log,
        )
    )  # fmt: skip
    return procs, str(sched_file)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _check(dest: Path, expected: dict[str, str]) -> None:
    for rel, sha in expected.items():
        digest = hashlib.sha256((dest / rel).read_bytes()).hexdigest()
        if digest != sha:
            raise SystemExit(f"{dest / rel}: wrong SHA-256")


def bench_files(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    import tthsd_interface
    from distributed import Client
    from tthsd_interface.dask import download

    data = common.DataSet(work / "data")
    rels = [(f"small/{i:05d}.bin", args.size) for i in range(args.files)]
    expected = data.ensure_many(rels)
    common.warm_page_cache([data.root / r for r, _ in rels])
    nginx = Nginx(work / "nginx", data.root, 8, 0, 0)
    nginx.start(rels[0][0])
    rows: list[dict[str, object]] = []
    try:
        manifest = [(nginx.plain_url(r), r) for r, _ in rels]

        def run(label: str, go: object) -> None:
            walls, cpus = [], []
            for _ in range(args.runs):
                dest = args.out / "out"
                shutil.rmtree(dest, ignore_errors=True)
                t0, c0 = time.monotonic(), _cpu()
                go(dest)  # type: ignore[operator]
                walls.append(time.monotonic() - t0)
                cpus.append(_cpu() - c0)
                _check(dest, expected)
            wall = statistics.median(walls)
            rows.append({
                "run": label, "wall_s": round(wall, 2), "wall_min_max": f"{min(walls):.2f}–{max(walls):.2f}",
                "files_per_s": round(args.files / wall), "client_cpu_s": round(statistics.median(cpus), 2),
            })  # fmt: skip
            print(rows[-1], file=sys.stderr)

        run(
            "tthsd_interface.download, one process, 64 connections",
            lambda dest: tthsd_interface.download(
                [u for u, _ in manifest], [str(dest / r) for _, r in manifest], durable=False
            ),
        )
        for workers in (1, 2):
            procs, sched = _start_cluster(work, workers)
            try:
                with Client(scheduler_file=sched) as client:
                    client.wait_for_workers(workers, timeout=60)
                    for per_task in args.files_per_task:
                        run(
                            f"dask, {workers} worker(s) x 1 thread, 64 connections each, "
                            f"{per_task} files per task",
                            lambda dest, c=client, n=per_task: download(
                                manifest, dest, c, files_per_task=n, durable=False, progress=False
                            ),
                        )
            finally:
                _stop(procs)
    finally:
        nginx.stop()
    return rows


# --------------------------------------------------------------------------- memory


def _stub_shard(spec: object) -> list[object]:
    """Stands in for run_shard on the workers: a row per file at once, nothing fetched."""
    from tthsd_interface._shard import ResultRow, ShardSpec, target_path

    assert isinstance(spec, ShardSpec)
    return [ResultRow(r.index, r.url, target_path(spec.dest, r), True, 1, 0.0) for r in spec.rows]


def memory_child(sched: str, manifest: str, mode: str) -> None:
    """In a child process: stream ``manifest`` through the client; print peak RSS."""
    import tthsd_interface.dask as tdask
    from distributed import Client

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tdask.run_shard = _stub_shard  # type: ignore[assignment]
    with Client(scheduler_file=sched) as client:
        t0 = time.monotonic()
        if mode == "iter":
            count = sum(1 for _ in tdask.iter_download(manifest, "/nonexistent", client, files_per_task=1000))
        else:
            count = len(tdask.download(manifest, "/nonexistent", client, files_per_task=1000, progress=False))
        wall = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "rows": count, "wall_s": round(wall, 1),
                      "rss_before_mib": round(before / 1024), "peak_rss_mib": round(peak / 1024)}))  # fmt: skip


def bench_memory(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    manifest = work / "million.txt"
    if not manifest.exists():
        with open(manifest, "w") as f:
            for i in range(args.lines):
                f.write(f"http://host{i % 100}.example/d/{i:07d}.bin\tm/{i:07d}.bin\n")
    procs, sched = _start_cluster(work, 2)
    out: list[dict[str, object]] = []
    try:
        for mode in ("iter", "frame"):
            res = subprocess.run(
                [sys.executable, __file__, "--memory-child", sched, str(manifest), mode],
                capture_output=True, text=True, check=True,
            )
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(out[-1], file=sys.stderr)
    finally:
        _stop(procs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--size", type=int, default=16 << 10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--files-per-task", type=lambda t: [int(x) for x in t.split(",")], default=[500, 2000],
        help="comma-separated shard sizes to run (default 500,2000)",
    )
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tthsd-dask-bench")
    p.add_argument("--out", type=Path, default=None, help="where the files go (default: the work dir)")
    p.add_argument("--skip-files", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--memory-child", nargs=3, metavar=("SCHED", "MANIFEST", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    args.out = args.out or args.work
    os.chmod(args.work, 0o755)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if not args.skip_files:
        rows = bench_files(args, args.work)
        print(f"\n{args.files} files of {args.size} B, nginx on loopback, durable=False, into {args.out}, median of {args.runs}\n")
        print("| run | wall (s) | min–max (s) | files/s | client CPU (s) |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['wall_s']} | {r['wall_min_max']} | {r['files_per_s']} | {r['client_cpu_s']} |")
    if not args.skip_memory:
        mem = bench_memory(args, args.work)
        print(f"\nclient memory, {args.lines:,}-line manifest, 1000 files per task, stub workers\n")
        print("| client | rows | wall (s) | RSS after imports (MiB) | peak RSS (MiB) |\n|---|---|---|---|---|")
        for m in mem:
            label = "iter_download (rows dropped)" if m["mode"] == "iter" else "download (DataFrame kept)"
            print(f"| {label} | {m['rows']} | {m['wall_s']} | {m['rss_before_mib']} | {m['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
