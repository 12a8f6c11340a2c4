"""Benchmark harness of issues 4 and 15: our downloader against curl, aria2c, axel and hf_transfer.

Contract:
* Everything it makes lives in the work dir (default /tmp/tthsd-bench): the data files
  and their manifest, nginx's prefix and config, the outputs of each run, logs, and a copy
  of the report (`report.md`). Nothing is written into the repository, except
  `bench/RESULTS.md` when `--write-results` is given on a full-size run.
* nginx serves the data on loopback from two servers: a plain one, and one whose every
  connection is capped by `limit_rate` (8 MiB/s by default, like a per-connection CDN cap).
  Its access log gives each run's request count and body bytes sent.
* Each contender runs as a child process; wall time is measured around it, CPU time
  (user + sys) comes from `os.wait4`, so it covers the child and every thread it ran, and
  peak RSS from GNU time's `%M`. Rounds alternate over the contenders, starting one
  further each round, so drift on this shared machine hits every tool alike. The median
  of the runs is reported.
* Every output is checked against the SHA-256 of its source; a run with a missing or wrong
  file, a non-zero exit status, or a timeout counts as FAILED and is left out of medians.
* "ours" runs `bench/run_ours.py` (the Python API, `TTHSDownloader.start_download`). It is
  skipped with a note when `tthsd_interface` cannot be imported or its library not loaded.
* The real-network workloads of issue 15 (TLS, a wide-area link model, stragglers) live in
  bench/netbench.py, bench/relay.py and bench/tls.py.
* Modules: this one parses the arguments and drives the run; common.py (paths, units,
  targets, the data set), nginx.py (the servers), contenders.py (each tool's command),
  runner.py (timing one run, medians), report.py (tables, verdicts, RESULTS.md).

Run `bench/run.sh --help` (it installs the peers first) or `python3 bench/bench.py --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import netbench
from common import (
    DEFAULT_WORKLOADS,
    DEFAULTS,
    REPO,
    RESULTS_PATH,
    DataSet,
    KiB,
    MiB,
    load_average,
    log,
    scaled_bytes,
    warm_page_cache,
)
from contenders import (
    Contender,
    OursSetup,
    _name,
    aria2c_multi,
    aria2c_single,
    axel_single,
    curl_parallel,
    curl_single,
    curl_then_sync,
    find_ours,
    hf_single,
    ours,
    ours_cli,
    ours_engine,
)
from nginx import Nginx
from report import machine_info, render_report
from runner import (
    CALLBACK_RUNS,
    GNU_TIME,
    TRASH,
    Profile,
    Summary,
    Workload,
    clear_dir,
    run_workload,
)

# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark of issues 4 and 15: tthsd_interface against curl, aria2c, axel, hf_transfer.",
        epilog="Smoke test: --smoke (= --scale 0.0625 --files 100 --runs 1)",
    )
    p.add_argument("--runs", type=int, default=5, help="rounds per workload (default 5)")
    p.add_argument("--connections", type=int, default=16, help="connections for every tool that takes a number (16)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/tthsd-bench"))
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                   help=f"comma list of 1,2,3,callback,rss and issue 15's keys or groups tls,wan,straggler "
                        f"(default {DEFAULT_WORKLOADS}; --big adds rss)")  # fmt: skip
    p.add_argument("--tools", default="curl,aria2c,axel,hf_transfer,ours", help="comma list of contender families")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every file size by this (smoke tests)")
    p.add_argument("--size-mb", type=int, default=DEFAULTS["size_mb"], help="workload 1 file size in MiB (1024)")
    p.add_argument("--throttled-mb", type=int, default=DEFAULTS["throttled_mb"], help="workload 2 file size in MiB (256)")
    p.add_argument("--big-mb", type=int, default=DEFAULTS["big_mb"], help="the large file of --big in MiB (4096)")
    p.add_argument("--files", type=int, default=DEFAULTS["files"], help="workload 3 file count (1000)")
    p.add_argument("--file-kb", type=int, default=DEFAULTS["file_kb"], help="workload 3 file size in KiB (64)")
    p.add_argument("--rate-mb", type=int, default=8, help="per-connection cap of the throttled server, MiB/s (8)")
    p.add_argument("--big", action="store_true", help="also compare our peak RSS on the 1 GiB and the 4 GiB file")
    p.add_argument("--lib", help="path of a built libTTHighSpeedDownloader.so, passed to ours as TTHSD_LIBRARY")
    p.add_argument("--python", default=sys.executable, help="interpreter for ours and hf_transfer")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed and FAILED")
    p.add_argument("--port-plain", type=int, default=0, help="port of the plain server (default: a free one)")
    p.add_argument("--port-throttled", type=int, default=0, help="port of the throttled server (default: a free one)")
    p.add_argument("--cli", help="also run our command-line tool: a template with {urls_file} (one URL a line), {out_dir}, {connections}")
    p.add_argument("--cli-multiple", help="the --cli template for workload 3 (default: --cli)")
    p.add_argument("--engine", help="also run the engine alone: path of the built fetch_list example (cargo build --release --example fetch_list)")
    p.add_argument("--perf", action="store_true", help="after each workload, profile one more run of ours with perf record")
    p.add_argument("--write-results", action="store_true", help=f"write {RESULTS_PATH.relative_to(REPO)} (full-size runs only)")
    p.add_argument("--force", action="store_true", help="allow --write-results on a smoke run")
    p.add_argument("--smoke", action="store_true", help="small and quick: --scale 0.0625 --files 100 --runs 1")
    netbench.add_arguments(p)
    args = p.parse_args(argv)
    if args.smoke:
        args.scale, args.files, args.runs = 0.0625, 100, 1
    if args.runs < 1 or args.connections < 1 or args.scale <= 0:
        p.error("--runs, --connections and --scale must be positive")
    return args



def is_full_size(args: argparse.Namespace) -> bool:
    return (
        args.scale == 1.0
        and all(getattr(args, k) == v for k, v in DEFAULTS.items())
        and args.runs >= 3
        and args.connections == 16
        and args.rate_mb == 8
        and netbench.full_size(args)
    )



def _exit_on_signal(signum: int, _frame: object) -> None:
    # Unwind through the finally blocks, which end the running child and nginx.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    if args.write_results and not is_full_size(args) and not args.force:
        raise SystemExit(
            "--write-results wants the sizes of issues 4 and 15 and --runs >= 3 (this is a smoke run); add --force to override"
        )
    work: Path = args.work_dir.resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit("--work-dir must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    wanted = netbench.expand(args.workloads) | ({"rss"} if args.big else set())
    unknown = wanted - {"1", "2", "3", "callback", "rss"} - netbench.KEYS
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))} (see --help)")
    tools = set(args.tools.split(","))
    notes: list[str] = []

    if not GNU_TIME:
        notes.append(
            "GNU time (/usr/bin/time) is missing, so peak RSS is the child's ru_maxrss, which on Linux"
            " also counts this harness's RSS at spawn: it is too high for small tools (run.sh installs `time`)"
        )
    available = {t: shutil.which(t) is not None for t in ("curl", "aria2c", "axel")}
    for t, present in available.items():
        if t in tools and not present:
            notes.append(f"{t} is not installed: skipped (bench/run.sh installs it)")
            tools.discard(t)
    if "hf_transfer" in tools:
        probe = subprocess.run([args.python, "-c", "import hf_transfer"], capture_output=True)
        if probe.returncode != 0:
            notes.append("hf_transfer is not importable: skipped (pip install hf_transfer)")
            tools.discard("hf_transfer")
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        raise SystemExit("nginx is not installed (bench/run.sh installs it)")

    ours_setup: OursSetup | None = None
    ours_note = ""
    if "ours" in tools:
        ours_setup, info = find_ours(args.python, args.lib, work)
        if ours_setup is None:
            notes.append(f"ours skipped: `import tthsd_interface` or its library failed: {info}")
            tools.discard("ours")
        else:
            ours_note = ours_setup.note
            log(f"ours: {ours_note}")

    # Data.
    data = DataSet(work / "data")
    one_gib = scaled_bytes(args.size_mb, args.scale)
    throttled = scaled_bytes(args.throttled_mb, args.scale)
    big = scaled_bytes(args.big_mb, args.scale)
    small = args.file_kb * KiB
    sizes = {"one": one_gib, "throttled": throttled, "big": big, "small": small}
    rel_one = f"one-{one_gib}.bin"
    rel_throttled = f"throttled-{throttled}.bin"
    rel_big = f"big-{big}.bin"
    small_dir = f"small-{args.files}x{small}"
    items = [("ping.txt", 5)]
    if wanted & {"1", "callback", "rss"}:
        items.append((rel_one, one_gib))
    if "2" in wanted:
        items.append((rel_throttled, throttled))
    if "rss" in wanted:
        items.append((rel_big, big))
    small_items = [(f"{small_dir}/f{i:05d}.bin", small) for i in range(args.files)]
    if wanted & {"3", "callback"}:
        items += small_items
    net = netbench.NetBench(args, work, wanted) if wanted & netbench.KEYS else None
    if net:
        items += net.data_items(rel_one, one_gib, small_items)
    items = list(dict.fromkeys(items))  # a file two workloads share is made and read once
    log(f"data: making what is missing under {data.root} ...")
    t0 = time.perf_counter()
    sha = data.ensure_many(items)
    log(f"data: ready in {time.perf_counter() - t0:.1f} s")
    warm_page_cache([data.root / rel for rel, _ in items])

    nginx = Nginx(work / "nginx", data.root, args.rate_mb, args.port_plain, args.port_throttled)
    if net:
        net.configure(nginx)
    nginx.start("ping.txt")
    log(f"nginx: plain on {nginx.plain_port}, limit_rate {args.rate_mb}m on {nginx.throttled_port}")
    clear_dir(work / "trash")
    TRASH.append(work / "trash")
    try:
        if net:
            net.started(nginx, "ping.txt")
            log(f"nginx: TLS h2 on {net.ports.tls_h2}, TLS h1 on {net.ports.tls_h1}, stragglers on "
                f"{net.ports.straggler}, their healthy twin on {net.ports.healthy}")  # fmt: skip
        return _run(args, work, wanted, tools, notes, ours_setup, ours_note, nginx, sizes, sha, net)
    finally:
        nginx.stop()
        shutil.rmtree(work / "trash", ignore_errors=True)


def _run(
    args: argparse.Namespace,
    work: Path,
    wanted: set[str],
    tools: set[str],
    notes: list[str],
    ours_setup: OursSetup | None,
    ours_note: str,
    nginx: Nginx,
    sizes: dict[str, int],
    sha: dict[str, str],
    net: Any = None,  # netbench.NetBench, when issue 15's workloads run
) -> int:
    n = args.connections
    one_gib, throttled, big, small = sizes["one"], sizes["throttled"], sizes["big"], sizes["small"]
    rel_one, rel_throttled, rel_big = f"one-{one_gib}.bin", f"throttled-{throttled}.bin", f"big-{big}.bin"
    small_rels = [f"small-{args.files}x{small}/f{i:05d}.bin" for i in range(args.files)]

    def single(url_of: Callable[[str], str], rel: str) -> tuple[list[str], dict[str, str]]:
        url = url_of(rel)
        return [url], {_name(url): sha[rel]}

    def singles() -> list[Contender]:
        cs: list[Contender] = []
        if "curl" in tools:
            cs.append(curl_single())
        if "aria2c" in tools:
            cs.append(aria2c_single(n))
        if "axel" in tools:
            cs.append(axel_single(n))
        if "hf_transfer" in tools:
            cs.append(hf_single(args.python, n))
        if ours_setup:
            cs += [ours(ours_setup, n), ours(ours_setup, 0)]
        if args.cli:
            cs.append(ours_cli(args.cli, n, ours_setup))
        if args.engine:
            cs.append(ours_engine(args.engine, n))
        return cs

    small_urls = [nginx.plain_url(rel) for rel in small_rels]
    small_expected = {_name(nginx.plain_url(rel)): sha.get(rel, "") for rel in small_rels}

    workloads: list[Workload] = []
    if "1" in wanted:
        urls, expected = single(nginx.plain_url, rel_one)
        synced = [curl_then_sync()] if "curl" in tools else []  # curl with a durable file, as ours
        workloads.append(Workload("1", f"one {one_gib / MiB:.0f} MiB file, plain server", urls, expected,
                                  one_gib, singles() + synced, reference="curl"))  # fmt: skip
    if "2" in wanted:
        urls, expected = single(nginx.throttled_url, rel_throttled)
        workloads.append(Workload("2", f"one {throttled / MiB:.0f} MiB file, limit_rate {args.rate_mb} MiB/s per connection",
                                  urls, expected, throttled, singles(), reference="ideal",
                                  rate=args.rate_mb * MiB))  # fmt: skip
    if "3" in wanted:
        cs = []
        if "curl" in tools:
            cs.append(curl_parallel(n))
        if "aria2c" in tools:
            cs.append(aria2c_multi(n))
        if ours_setup:
            cs += [ours(ours_setup, n, multiple=True), ours(ours_setup, 0, multiple=True)]
        if args.cli:
            cs.append(ours_cli(args.cli_multiple or args.cli, n, ours_setup))
        if args.engine:
            cs.append(ours_engine(args.engine, n))
        ref = cs[0].label if cs and cs[0].key == "curl" else ""
        workloads.append(Workload("3", f"{args.files} files of {args.file_kb} KiB, plain server", small_urls,
                                  small_expected, args.files * small, cs, reference=ref))  # fmt: skip
    if "callback" in wanted and ours_setup:
        urls, expected = single(nginx.plain_url, rel_one)
        workloads.append(Workload("callback-1", f"callback cost, one {one_gib / MiB:.0f} MiB file", urls, expected,
                                  one_gib, [ours(ours_setup, 0), ours(ours_setup, 0, callback=False)]))  # fmt: skip
        workloads.append(Workload("callback-3", f"callback cost, {args.files} files of {args.file_kb} KiB",
                                  small_urls, small_expected, args.files * small,
                                  [ours(ours_setup, 0, multiple=True),
                                   ours(ours_setup, 0, multiple=True, callback=False)]))  # fmt: skip
    if "rss" in wanted and ours_setup:
        w1 = ours(ours_setup, 0, label=f"ours (defaults), {one_gib / MiB:.0f} MiB")
        w4 = ours(ours_setup, 0, label=f"ours (defaults), {big / MiB:.0f} MiB")
        # Each row downloads its own file; rounds still alternate between the two.
        w1.urls, w1.expected = single(nginx.plain_url, rel_one)
        w4.urls, w4.expected = single(nginx.plain_url, rel_big)
        w1.total_bytes, w4.total_bytes = one_gib, big
        workloads.append(Workload("rss", "peak RSS against file size", [], {}, 0, [w1, w4]))

    if net:
        workloads += net.workloads(tools, ours_setup, sha, rel_one, one_gib, small_rels)

    if wanted & {"callback", "rss"} and not ours_setup:
        notes.append("the callback-cost and RSS comparisons need ours: not run")

    perf = args.perf and bool(ours_setup)
    if args.perf and not shutil.which("perf"):
        notes.append("--perf: perf is not installed (Debian: linux-perf); no profiles")
        perf = False
    results: dict[str, tuple[Workload, list[Summary]]] = {}
    profiles: list[Profile] = []
    started = load_average()
    for w in workloads:
        if not w.contenders:
            notes.append(f"workload {w.key}: no contender available")
            continue
        # The callback rows differ by a few percent at most, less than the run-to-run
        # spread of a 1 GiB write: they get more rounds for a steadier median.
        runs = max(args.runs, CALLBACK_RUNS) if w.key.startswith("callback") else args.runs
        with w.context() if w.context else contextlib.nullcontext():
            results[w.key] = (w, run_workload(w, runs, args.timeout, work, nginx, perf, profiles))

    machine = machine_info(args.python, nginx, ours_note, work)
    report = render_report(
        args, results, notes, machine, started, profiles, net, full=is_full_size(args)
    )
    print(report)
    (work / "report.md").write_text(report)
    log(f"report copied to {work / 'report.md'}")
    if args.write_results:
        RESULTS_PATH.write_text(report)
        log(f"wrote {RESULTS_PATH}")
    failed = any(not s.ok for _, summaries in results.values() for s in summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
