"""The contenders: the command line of each tool (curl, aria2c, axel, hf_transfer, ours
through the Python API, its command line, or the engine alone) for one job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from common import HERE, HF_CHUNK, OURS_DEFAULT_CONNECTIONS, RELEASE_LIB, REPO, child_env

# --------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Job:
    """What one run must produce: files named after their URLs in `out_dir`."""

    urls: list[str]
    expected: dict[str, str]  # output file name -> SHA-256
    out_dir: Path
    scratch: Path  # per-workload dir for list files and the child's cwd
    # Set for the last round only: ours then also reads get_performance_stats (5 ms for
    # 1,000 tasks), a diagnostic no user pays, for the "last run" line under the table.
    want_stats: bool = False


@dataclasses.dataclass
class Contender:
    key: str  # family, as --tools names it: curl, aria2c, axel, hf_transfer, ours
    label: str
    connections: int
    argv: Callable[[Job], list[str]]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    ours: bool = False
    # A contender with its own files (the RSS comparison): URLs, expected SHA-256s, bytes.
    urls: list[str] | None = None
    expected: dict[str, str] | None = None
    total_bytes: int = 0


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


HF_SNIPPET = """
import sys, hf_transfer
url, out, n, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
hf_transfer.download(url=url, filename=out, max_files=n, chunk_size=chunk)
"""


def curl_single() -> Contender:
    def argv(job: Job) -> list[str]:
        (url,) = job.urls
        return ["curl", "-sS", "-f", "-o", str(job.out_dir / _name(url)), url]

    return Contender("curl", "curl", 1, argv)


def curl_then_sync(extra: tuple[str, ...] = ()) -> Contender:
    """curl, then `sync --data` on its file: what a user of curl runs to have the bytes
    on stable storage, as ours has them (durable by default) when it reports a file."""

    def argv(job: Job) -> list[str]:
        (url,) = job.urls
        out = str(job.out_dir / _name(url))
        script = 'curl "$@" && exec sync --data "$0"'
        return ["sh", "-c", script, out, *extra, "-sS", "-f", "-o", out, url]

    return Contender("curl", "curl, then sync --data", 1, argv)


def aria2c_single(n: int) -> Contender:
    def argv(job: Job) -> list[str]:
        (url,) = job.urls
        return [
            "aria2c", "-q", f"-x{n}", f"-s{n}", "-k1M",
            "--allow-overwrite=true", "--auto-file-renaming=false",
            "-d", str(job.out_dir), "-o", _name(url), url,
        ]  # fmt: skip

    return Contender("aria2c", f"aria2c -x{n} -s{n} -k1M", n, argv)


def axel_single(n: int) -> Contender:
    def argv(job: Job) -> list[str]:
        (url,) = job.urls
        return ["axel", "-q", "-n", str(n), "-o", str(job.out_dir / _name(url)), url]

    return Contender("axel", f"axel -n {n}", n, argv)


def hf_single(python: str, n: int) -> Contender:
    def argv(job: Job) -> list[str]:
        (url,) = job.urls
        return [python, "-c", HF_SNIPPET, url, str(job.out_dir / _name(url)), str(n), str(HF_CHUNK)]

    return Contender("hf_transfer", f"hf_transfer max_files={n}", n, argv)


def curl_parallel(n: int) -> Contender:
    def argv(job: Job) -> list[str]:
        config = job.scratch / "curl.config"
        if not config.exists():
            lines = []
            for url in job.urls:
                lines += [f'url = "{url}"', f'output = "{job.out_dir / _name(url)}"']
            _write_lines(config, lines)
        return ["curl", "-sS", "-f", "--parallel", "--parallel-max", str(n), "-K", str(config)]

    return Contender("curl", f"curl --parallel --parallel-max {n}", n, argv)


def aria2c_multi(n: int) -> Contender:
    def argv(job: Job) -> list[str]:
        listing = job.scratch / "aria2c.list"
        if not listing.exists():
            lines = []
            for url in job.urls:
                lines += [url, f"  out={_name(url)}"]
            _write_lines(listing, lines)
        return [
            "aria2c", "-q", f"-j{n}", "--allow-overwrite=true", "--auto-file-renaming=false",
            "-d", str(job.out_dir), "-i", str(listing),
        ]  # fmt: skip

    return Contender("aria2c", f"aria2c -j{n}", n, argv)


@dataclasses.dataclass
class OursSetup:
    python: str
    env: dict[str, str]
    note: str  # how it was found, for the report


def ours(setup: OursSetup, n: int, *, callback: bool = True, multiple: bool = False, label: str = "") -> Contender:
    """run_ours.py at `n` connections (0: the library's default) with or without a callback."""

    def argv(job: Job) -> list[str]:
        urls_file = job.scratch / "urls.txt"
        if not urls_file.exists():
            _write_lines(urls_file, job.urls)
        cmd = [
            setup.python, str(HERE / "run_ours.py"),
            "--urls-file", str(urls_file), "--out-dir", str(job.out_dir), "--connections", str(n),
        ]  # fmt: skip
        if callback:
            cmd.append("--callback")
        if multiple:
            cmd.append("--multiple")
        if job.want_stats:
            cmd.append("--stats")
        return cmd

    if not label:
        label = f"ours {n}" if n else "ours (defaults)"
        if multiple:
            label += ", is_multiple"
        if not callback:
            label += ", no callback"
    return Contender("ours", label, n or OURS_DEFAULT_CONNECTIONS, argv, env=setup.env, ours=True)


OURS_REPORT_PREFIX = "run_ours-report: "  # as run_ours.py prints it


def ours_report(stdout: str) -> dict[str, object]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(OURS_REPORT_PREFIX):
            try:
                report = json.loads(line[len(OURS_REPORT_PREFIX) :])
            except ValueError:
                return {}
            return report if isinstance(report, dict) else {}
    return {}


def ours_cli(template: str, n: int, setup: OursSetup | None) -> Contender:
    """Our command-line tool, from a template with {urls_file}, {out_dir}, {connections}."""

    def argv(job: Job) -> list[str]:
        urls_file = job.scratch / "urls.txt"
        if not urls_file.exists():
            _write_lines(urls_file, job.urls)
        values = {"urls_file": str(urls_file), "out_dir": str(job.out_dir), "connections": str(n)}
        return [token.format(**values) for token in shlex.split(template)]

    # Same package and library as the API rows when they were found.
    env = setup.env if setup else {}
    return Contender("ours", f"ours CLI ({n})", n, argv, env=env)


def ours_engine(binary: str, n: int) -> Contender:
    """The engine alone, through its Rust API (native/engine/examples/fetch_list.rs): no
    FFI, no Python. Not judged against the targets; it tells engine cost from binding cost."""
    binary = str(Path(binary).resolve())  # the children run in their own folders

    def argv(job: Job) -> list[str]:
        urls_file = job.scratch / "urls.txt"
        if not urls_file.exists():
            _write_lines(urls_file, job.urls)
        mode = ["--parallel"] if len(job.urls) > 1 else []
        return [binary, str(urls_file), str(job.out_dir), str(n), *mode]

    return Contender("engine", f"engine alone ({n})", n, argv)


def find_ours(python: str, lib: str | None, work: Path) -> tuple[OursSetup | None, str]:
    """Check that run_ours.py can import tthsd_interface and load its library."""
    env: dict[str, str] = {}
    notes = []
    if lib:
        env["TTHSD_LIBRARY"] = str(Path(lib).resolve())
    elif os.environ.get("TTHSD_LIBRARY"):
        env["TTHSD_LIBRARY"] = os.environ["TTHSD_LIBRARY"]
    elif RELEASE_LIB.is_file():
        env["TTHSD_LIBRARY"] = str(RELEASE_LIB)
    attempts = [dict(env)]
    if (REPO / "src" / "tthsd_interface").is_dir():
        # Not installed yet: the package straight from the source tree.
        path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
        attempts.append({**env, "PYTHONPATH": path})
    cwd = work / "scratch"
    cwd.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in attempts:
        proc = subprocess.run(
            [python, str(HERE / "run_ours.py"), "--check"],
            capture_output=True, text=True, env=child_env(attempt), cwd=cwd, timeout=120,
        )  # fmt: skip
        if proc.returncode == 0:
            info = json.dumps(ours_report(proc.stdout), sort_keys=True)
            if "PYTHONPATH" in attempt:
                notes.append(f"tthsd_interface imported from {REPO / 'src'} (not installed)")
            if "TTHSD_LIBRARY" in attempt:
                notes.append(f"TTHSD_LIBRARY={attempt['TTHSD_LIBRARY']}")
            notes.append(f"check: {info}")
            return OursSetup(python, attempt, "; ".join(notes)), info
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        last = last[0]
    return None, last
