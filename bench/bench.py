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
  bench/netbench.py, bench/relay.py and bench/tls.py; netbench imports this module as
  `bench`, and this one imports netbench only inside functions.

Run `bench/run.sh --help` (it installs the peers first) or `python3 bench/bench.py --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import grp
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_PATH = HERE / "RESULTS.md"
RELEASE_LIB = REPO / "native" / "target" / "release" / "libTTHighSpeedDownloader.so"

KiB = 1 << 10
MiB = 1 << 20

# Full-size parameters, as issue 4 states them; a run with other values is a smoke run.
DEFAULTS = {"size_mb": 1024, "throttled_mb": 256, "big_mb": 4096, "files": 1000, "file_kb": 64}
OURS_DEFAULT_CONNECTIONS = 64  # ABI.md: thread_count <= 0 means 64
HF_CHUNK = 10 * MiB  # huggingface_hub's chunk size for hf_transfer

# Targets of issue 4, as ratios measured in the same run.
TARGET_W1_WALL = 1.0
TARGET_W1_CPU = 1.3
TARGET_RSS_MIB = 64
TARGET_W2_IDEAL = 1.05
TARGET_W3_WALL = 1.25
TARGET_W3_FILES_PER_S = 3.0
TARGET_CALLBACK_COST = 0.03

# Issue 4's workloads, then issue 15's groups (bench/netbench.py).
DEFAULT_WORKLOADS = "1,2,3,callback,tls,wan,straggler"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data

# Bump when the generator changes, so stale data files are remade rather than trusted.
GEN_VERSION = 1
GEN_BLOCK = 4 * MiB


def _stream_block(seed: str, index: int, length: int) -> bytes:
    # SHAKE-128 keyed by (seed, block index): every block differs, so neither compression
    # nor deduplication anywhere on the path can make one tool look faster than another.
    return hashlib.shake_128(f"tthsd-bench:{seed}:{index}".encode()).digest(length)


def generate_file(path: Path, size: int, seed: str) -> str:
    """Write `size` bytes of non-repeating content to `path`; return their SHA-256."""
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        index, left = 0, size
        while left:
            block = _stream_block(seed, index, min(GEN_BLOCK, left))
            f.write(block)
            digest.update(block)
            left -= len(block)
            index += 1
    tmp.rename(path)
    return digest.hexdigest()


class DataSet:
    """The data files under `<work>/data`, with a manifest of their sizes and SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = root / "manifest.json"
        try:
            self.manifest: dict[str, dict[str, object]] = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            self.manifest = {}

    def _save(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        tmp.rename(self.manifest_path)

    def ensure(self, rel: str, size: int) -> str:
        """Make `rel` (relative to the data root) `size` bytes long if it is not; return its SHA-256."""
        path = self.root / rel
        entry = self.manifest.get(rel)
        if (
            entry
            and entry.get("gen") == GEN_VERSION
            and entry.get("size") == size
            and path.is_file()
            and path.stat().st_size == size
        ):
            return str(entry["sha256"])
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = generate_file(path, size, seed=rel)
        self.manifest[rel] = {"size": size, "sha256": sha, "gen": GEN_VERSION}
        return sha

    def ensure_many(self, items: Sequence[tuple[str, int]]) -> dict[str, str]:
        made = {rel: self.ensure(rel, size) for rel, size in items}
        self._save()
        return made


def warm_page_cache(paths: Sequence[Path]) -> None:
    # nginx serves from the page cache in every run; read the files once so the first
    # contender of round 1 does not pay for the disk.
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


# --------------------------------------------------------------------------- nginx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Nginx:
    """nginx under its own prefix in the work dir: a plain server and a throttled one."""

    def __init__(self, prefix: Path, data_root: Path, rate_mb: int, plain_port: int, throttled_port: int) -> None:
        self.prefix = prefix
        self.data_root = data_root
        self.rate_mb = rate_mb
        self.plain_port = plain_port or free_port()
        self.throttled_port = throttled_port or free_port()
        self.conf = prefix / "nginx.conf"
        self.pid_file = prefix / "nginx.pid"
        self.error_log = prefix / "error.log"
        self.access_log = prefix / "access.log"
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.pid: int | None = None
        # More of the http block (maps, servers): bench/netbench.py's TLS and straggler servers.
        self.extra_http = ""

    def plain_url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.plain_port}/{rel}"

    def throttled_url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.throttled_port}/{rel}"

    def _config(self) -> str:
        p = self.prefix
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = 16384 if hard == resource.RLIM_INFINITY else min(16384, hard)
        user = ""
        if os.geteuid() == 0:
            # Workers drop to nobody; the data lives under /tmp, readable by all.
            group = "nogroup" if _group_exists("nogroup") else "nobody"
            user = f"user nobody {group};"
        server_common = f"""
        root {self.data_root};
        location / {{ autoindex off; }}
"""
        return f"""# Written by bench/bench.py; nginx -p {p} -c {self.conf}
{user}
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {self.pid_file};
error_log {self.error_log} warn;
events {{
    worker_connections 4096;
}}
http {{
    # One line per request, to count each tool's requests and the body bytes it was sent; then
    # nginx's connection serial and the request's time, for reading the log by hand (which
    # connection served what, and how slowly: the stragglers of bench/netbench.py).
    log_format bench '$status $body_bytes_sent $connection $request_time';
    access_log {self.access_log} bench;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    reset_timedout_connection on;
    open_file_cache max=4096 inactive=120s;
    open_file_cache_valid 120s;
    server {{
        listen 127.0.0.1:{self.plain_port} backlog=4096;
{server_common}
    }}
    server {{
        listen 127.0.0.1:{self.throttled_port} backlog=4096;
        # nginx's "m" is 1024 * 1024: {self.rate_mb} MiB/s per connection. nginx sends a
        # response in pieces of sendfile_max_chunk (default 2m) and sleeps piece / rate
        # after each, so the first piece of every request goes out unthrottled: keep it
        # small, or a client that cuts a file into many short requests outruns the cap.
        limit_rate {self.rate_mb}m;
        sendfile_max_chunk 128k;
{server_common}
    }}
{self.extra_http}
}}
"""

    def start(self, probe_rel: str) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        base = [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"nginx rejects {self.conf}:\n{check.stderr}")
        # An nginx left by a killed run of this harness on this work dir: end it first. Its pid
        # file may be gone (another master deletes it on exit), so look for our config.
        for pid in _our_nginx_masters(self.conf):
            _terminate(pid)
        # A pid file left by a master killed with SIGKILL would name a process that is gone.
        self.pid_file.unlink(missing_ok=True)
        started = subprocess.run(base, capture_output=True, text=True)
        if started.returncode != 0:
            raise SystemExit(f"nginx did not start:\n{started.stderr}\n(see {self.error_log})")
        deadline = time.monotonic() + 10
        while True:
            try:
                pid = int(self.pid_file.read_text().strip())
                if not _is_our_nginx(pid, self.conf):
                    raise ValueError("not up yet")
                self.pid = pid
                for url in (self.plain_url(probe_rel), self.throttled_url(probe_rel)):
                    with NO_PROXY_OPENER.open(url, timeout=2) as r:
                        r.read()
                return
            except urllib.error.HTTPError as e:
                self.stop()
                raise SystemExit(
                    f"nginx answers {e.code} for {e.url}: its workers run as nobody, so the work dir"
                    " and its parents must be readable by all (use one under /tmp)"
                ) from e
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"nginx did not answer within 10 s (see {self.error_log})") from None
                time.sleep(0.05)

    def _stop_pid_file(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if _is_our_nginx(pid, self.conf):
            _terminate(pid)

    def stop(self) -> None:
        if self.pid is not None:
            if _is_our_nginx(self.pid, self.conf):
                _terminate(self.pid)
            self.pid = None
        else:
            self._stop_pid_file()

    def log_offset(self) -> int:
        try:
            return self.access_log.stat().st_size
        except OSError:
            return 0

    def requests_since(self, offset: int) -> tuple[int, int]:
        """(requests, body bytes sent) logged after `offset` of the access log."""
        # nginx logs a request when it finalizes it, which may be a moment after the client
        # has its last byte and exits.
        time.sleep(0.05)
        try:
            with open(self.access_log, "rb") as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except OSError:
            return 0, 0
        served = 0
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                served += int(fields[1])
        return len(lines), served

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip().replace("nginx version: ", "")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _our_nginx_masters(conf: Path) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_our_nginx(int(p.name), conf)]


def _is_our_nginx(pid: int, conf: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # The master rewrites its title to "nginx: master process <argv joined by spaces>".
    return cmdline.startswith(b"nginx: master process") and f" -c {conf} ".encode() in cmdline


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):  # exited; a daemon's zombie waits for init, not for us
            return
        time.sleep(0.05)


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


# Every request goes to 127.0.0.1: a proxy from the environment would measure the proxy.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(extra)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


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


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
        for s in ours_rows("1"):
            name = s.contender.label
            check(f"W1 {name}: wall ≤ {TARGET_W1_WALL}× curl", ratio(s.wall, curl and curl.wall), TARGET_W1_WALL,
                  f"{fmt(ratio(s.wall, curl and curl.wall), '.2f')}×")  # fmt: skip
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
    _netbench().add_arguments(p)
    args = p.parse_args(argv)
    if args.smoke:
        args.scale, args.files, args.runs = 0.0625, 100, 1
    if args.runs < 1 or args.connections < 1 or args.scale <= 0:
        p.error("--runs, --connections and --scale must be positive")
    return args


def scaled_bytes(mb: int, scale: float) -> int:
    # Whole 64 KiB units, so range arithmetic stays ordinary at any scale.
    return max(64 * KiB, int(mb * MiB * scale) // (64 * KiB) * (64 * KiB))


def is_full_size(args: argparse.Namespace) -> bool:
    return (
        args.scale == 1.0
        and all(getattr(args, k) == v for k, v in DEFAULTS.items())
        and args.runs >= 3
        and args.connections == 16
        and args.rate_mb == 8
        and _netbench().full_size(args)
    )


def _netbench() -> ModuleType:
    # Imported here, not at the top: netbench imports this module (see the __main__ block).
    import netbench

    return netbench


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
    netbench = _netbench()
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
        workloads.append(Workload("1", f"one {one_gib / MiB:.0f} MiB file, plain server", urls, expected,
                                  one_gib, singles(), reference="curl"))  # fmt: skip
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
    report = render_report(args, results, notes, machine, started, profiles, net)
    print(report)
    (work / "report.md").write_text(report)
    log(f"report copied to {work / 'report.md'}")
    if args.write_results:
        RESULTS_PATH.write_text(report)
        log(f"wrote {RESULTS_PATH}")
    failed = any(not s.ok for _, summaries in results.values() for s in summaries)
    return 1 if failed else 0


def render_report(
    args: argparse.Namespace,
    results: dict[str, tuple[Workload, list[Summary]]],
    notes: list[str],
    machine: list[tuple[str, str]],
    load_start: str,
    profiles: Sequence[Profile] = (),
    net: Any = None,  # netbench.NetBench
) -> str:
    full = is_full_size(args)
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


if __name__ == "__main__":
    # netbench does `from bench import ...`: let that find this very module, already run,
    # rather than load bench.py a second time as another module with its own globals.
    sys.modules.setdefault("bench", sys.modules[__name__])
    sys.exit(main())
