"""The report: tables per workload, the verdicts against the targets of issues 4
and 15, the machine's description, and RESULTS.md as a whole.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    REPO,
    TARGET_CALLBACK_COST,
    TARGET_RSS_MIB,
    TARGET_W1_CPU,
    TARGET_W1_WALL,
    TARGET_W2_IDEAL,
    TARGET_W3_FILES_PER_S,
    TARGET_W3_WALL,
    MiB,
    load_average,
)
from nginx import Nginx
from runner import Profile, Summary, Workload

# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def ideal_time(w: Workload, connections: int) -> float:
    return w.total_bytes / (connections * w.rate) + w.ideal_extra


def find(summaries: Sequence[Summary], label: str) -> Summary | None:
    return next((s for s in summaries if s.contender.label == label), None)


def render_table(w: Workload, summaries: list[Summary]) -> str:
    ref = find(summaries, w.reference) if w.reference and w.reference != "ideal" else None
    files = len(w.expected)
    head = ["tool", "conns", "runs ok", "wall median (s)", "wall min–max (s)", "CPU median (s)",
            "peak RSS (MiB)", "requests", "sent ÷ size", "MiB/s"]  # fmt: skip
    if files > 1:
        head.append("files/s")
    if ref is not None:
        head += [f"wall × {ref.contender.label}", f"CPU × {ref.contender.label}"]
    if w.reference == "ideal":
        head += ["ideal (s)", "wall × ideal"]
    head += ["API wall (s)", "API CPU (s)"]
    rows = []
    for s in summaries:
        good = s.good
        walls = [r.wall for r in good]
        status = f"{len(good)}/{len(s.runs)}" if s.ok else f"**FAILED** {len(good)}/{len(s.runs)}"
        row = [
            s.contender.label,
            str(s.connections),
            status,
            fmt(s.wall),
            f"{min(walls):.3f}–{max(walls):.3f}" if walls else "—",
            fmt(s.cpu),
            fmt(s.rss_mib, ".1f"),
            fmt(s.median("requests"), ".0f"),
            fmt(ratio(s.median("served"), s.contender.total_bytes or w.total_bytes), ".2f"),
            fmt(ratio((s.contender.total_bytes or w.total_bytes) / MiB, s.wall), ".1f"),
        ]
        if files > 1:
            row.append(fmt(ratio(files, s.wall), ".0f"))
        if ref is not None:
            row += [fmt(ratio(s.wall, ref.wall), ".2f"), fmt(ratio(s.cpu, ref.cpu), ".2f")]
        if w.reference == "ideal":
            ideal = ideal_time(w, s.connections)
            row += [f"{ideal:.3f}", fmt(ratio(s.wall, ideal), ".2f")]
        row += [fmt(s.api_median("api_wall")), fmt(s.api_median("api_cpu"))]
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    failures = [(s.contender.label, r.error) for s in summaries for r in s.runs if not r.ok]
    for label, error in failures[:10]:
        lines.append(f"\nFAILED run of {label}: {error}")
    for s in summaries:
        if not (s.contender.ours and s.runs):
            continue
        last = (s.good or s.runs)[-1].api
        parts = []
        if last.get("events"):
            parts.append(f"events {json.dumps(last['events'], sort_keys=True)}")
        if last.get("stats"):
            parts.append(f"stats {json.dumps(last['stats'], sort_keys=True)}")
        if parts:
            lines.append(f"\n{s.contender.label}, last run: " + "; ".join(parts))
    return "\n".join(lines)


@dataclasses.dataclass
class Verdict:
    target: str
    measured: str
    passed: bool | None  # None: could not be measured


def judge(results: dict[str, tuple[Workload, list[Summary]]]) -> list[Verdict]:
    out: list[Verdict] = []

    def ours_rows(key: str) -> list[Summary]:
        return [s for s in results[key][1] if s.contender.key == "ours"]  # API and CLI rows if key in results else []

    def check(target: str, value: float | None, limit: float, measured: str, *, at_least: bool = False) -> None:
        if value is None:
            out.append(Verdict(target, "not measured", None))
        else:
            out.append(Verdict(target, measured, value >= limit if at_least else value <= limit))

    if "1" in results:
        w, summaries = results["1"]
        curl = find(summaries, "curl")
        synced = find(summaries, "curl, then sync --data")
        for s in ours_rows("1"):
            name = s.contender.label
            check(f"W1 {name}: wall ≤ {TARGET_W1_WALL}× curl", ratio(s.wall, curl and curl.wall), TARGET_W1_WALL,
                  f"{fmt(ratio(s.wall, curl and curl.wall), '.2f')}×")  # fmt: skip
            # Not issue 4's target: the same with curl's bytes made durable too, as ours
            # makes them by default.
            check(f"W1 {name}: wall ≤ 1.0× curl, then sync --data (both durable)", ratio(s.wall, synced and synced.wall),
                  1.0, f"{fmt(ratio(s.wall, synced and synced.wall), '.2f')}×")  # fmt: skip
            check(f"W1 {name}: CPU ≤ {TARGET_W1_CPU}× curl", ratio(s.cpu, curl and curl.cpu), TARGET_W1_CPU,
                  f"{fmt(ratio(s.cpu, curl and curl.cpu), '.2f')}×")  # fmt: skip
            check(f"W1 {name}: peak RSS ≤ {TARGET_RSS_MIB} MiB", s.rss_mib, TARGET_RSS_MIB, f"{fmt(s.rss_mib, '.1f')} MiB")
    if "rss" in results:
        w, summaries = results["rss"]
        for s in summaries:
            check(f"RSS {s.contender.label}: ≤ {TARGET_RSS_MIB} MiB", s.rss_mib, TARGET_RSS_MIB,
                  f"{fmt(s.rss_mib, '.1f')} MiB")  # fmt: skip
        if len(summaries) == 2 and all(s.rss_mib for s in summaries):
            small, big = summaries[0].rss_mib or 0.0, summaries[1].rss_mib or 0.0
            # "Must not grow with file size": allow 10% noise between the two runs.
            check("RSS does not grow with file size (big ≤ 1.1× small)", big / small, 1.1,
                  f"{small:.1f} → {big:.1f} MiB")  # fmt: skip
    if "2" in results:
        w, summaries = results["2"]
        for s in ours_rows("2"):
            ideal = ideal_time(w, s.connections)
            check(f"W2 {s.contender.label}: wall ≤ {TARGET_W2_IDEAL}× ideal ({ideal:.3f} s)",
                  ratio(s.wall, ideal), TARGET_W2_IDEAL, f"{fmt(ratio(s.wall, ideal), '.2f')}×")  # fmt: skip
            if s.contender.connections != 16:  # as asked, not as reported
                continue
            for peer_key in ("aria2c", "axel"):
                peer = next((p for p in summaries if p.contender.key == peer_key), None)
                r = ratio(s.wall, peer and peer.wall)
                check(f"W2 {s.contender.label}: faster than {peer.contender.label if peer else peer_key}",
                      r, 1.0, f"{fmt(r, '.2f')}× its wall")  # fmt: skip
                if out[-1].passed and r == 1.0:
                    out[-1].passed = False  # a tie is not faster
    if "3" in results:
        w, summaries = results["3"]
        curl = next((p for p in summaries if p.contender.key == "curl"), None)
        aria = next((p for p in summaries if p.contender.key == "aria2c"), None)
        for s in ours_rows("3"):
            r = ratio(s.wall, curl and curl.wall)
            check(f"W3 {s.contender.label}: wall ≤ {TARGET_W3_WALL}× curl --parallel", r, TARGET_W3_WALL,
                  f"{fmt(r, '.2f')}×")  # fmt: skip
            r = ratio(aria and aria.wall, s.wall)  # files/s ratio = inverse wall ratio
            check(f"W3 {s.contender.label}: files/s ≥ {TARGET_W3_FILES_PER_S}× aria2c", r, TARGET_W3_FILES_PER_S,
                  f"{fmt(r, '.2f')}×", at_least=True)  # fmt: skip
    for key in ("callback-1", "callback-3"):
        if key not in results:
            continue
        w, summaries = results[key]
        with_cb = next((s for s in summaries if "no callback" not in s.contender.label), None)
        without = next((s for s in summaries if "no callback" in s.contender.label), None)
        # Throughput is bytes / wall, so its loss is 1 - wall_without / wall_with. The API
        # wall (start_download to end) leaves out the interpreter start both rows pay alike.
        basis = "API wall"
        a, b = without and without.api_median("api_wall"), with_cb and with_cb.api_median("api_wall")
        if a is None or b is None:
            basis, a, b = "process wall", without and without.wall, with_cb and with_cb.wall
        r = ratio(a, b)
        loss = None if r is None else 1 - r
        check(f"{w.title}: counting callback costs ≤ {TARGET_CALLBACK_COST:.0%} throughput", loss,
              TARGET_CALLBACK_COST, fmt(None if loss is None else loss * 100, ".1f", f"% (by {basis})"))  # fmt: skip
    return out


def render_verdicts(verdicts: list[Verdict]) -> str:
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for v in verdicts:
        verdict = "—" if v.passed is None else ("met" if v.passed else "**missed**")
        lines.append(f"| {v.target} | {v.measured} | {verdict} |")
    return "\n".join(lines)


def first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].strip() if text else "not available"


def machine_info(python: str, nginx: Nginx, ours_note: str, work: Path) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    commit = first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    df = subprocess.run(["df", "--output=fstype", str(work)], capture_output=True, text=True)
    fs = (df.stdout.split() or ["?"])[-1]
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("RAM", mem),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("work dir", f"{work} ({fs})"),
        ("repo commit", commit),
        ("python", first_line([python, "--version"])),
        ("nginx", nginx.version()),
        ("curl", " ".join(first_line(["curl", "--version"]).split()[:2])),
        ("aria2c", first_line(["aria2c", "--version"])),
        ("axel", first_line(["axel", "--version"])),
        ("hf_transfer", first_line([python, "-c", "import hf_transfer; print(getattr(hf_transfer, '__version__', 'present'))"])),
        ("ours", ours_note or "not run"),
    ]



def render_report(
    args: argparse.Namespace,
    results: dict[str, tuple[Workload, list[Summary]]],
    notes: list[str],
    machine: list[tuple[str, str]],
    load_start: str,
    profiles: Sequence[Profile] = (),
    net: Any = None,  # netbench.NetBench
    *,
    full: bool,
) -> str:
    out = ["# Benchmark results (issues 4 and 15)", ""]
    if not full:
        out += ["> **Smoke run** with reduced sizes or rounds: not a result.", ""]
    out += [
        "Written by `bench/bench.py`; see `bench/README.md` for what each column means. "
        "Medians over the runs that succeeded; every output was checked against its SHA-256.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in machine]
    out += [
        f"| load average | {load_start} at start, {load_average()} at end (1, 5, 15 min) |",
        f"| parameters | runs {args.runs}, {args.connections} connections, scale {args.scale}, "
        f"limit_rate {args.rate_mb} MiB/s |",
        "",
    ]
    if net:
        out += net.section()
    for w, summaries in results.values():
        out += [f"## Workload {w.key}: {w.title}", ""]
        if w.ideal_note:
            out += [w.ideal_note, ""]
        elif w.reference == "ideal":
            out += [f"Ideal time with N connections = {w.total_bytes / MiB:.0f} MiB / (N × {w.rate / MiB:.0f} MiB/s).", ""]
        elif w.reference:
            out += [f"Reference: {w.reference}.", ""]
        out += [render_table(w, summaries), ""]
        out += [f"Note: {note}" for note in w.notes]
        if w.notes:
            out.append("")
    verdicts = judge(results) + (net.judge(results) if net else [])
    if verdicts:
        out += ["## Targets", "", render_verdicts(verdicts), ""]
    if profiles:
        out += ["## Profiles (perf record -g, one unmeasured run each)", ""]
        for prof in profiles:
            out += [f"### Workload {prof.workload}, {prof.label}", ""]
            if prof.error:
                out += [f"No profile: {prof.error}", ""]
            if prof.top:
                out += [f"Top of `perf report --no-children --sort dso`, then `dso,symbol` (all: `{prof.path}`):",
                        "", "```"]  # fmt: skip
                out += prof.top + ["```", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(out)
