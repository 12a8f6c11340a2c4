"""nginx for the benchmark: a prefix and config in the work dir, a plain and a
throttled server on loopback, their access logs (requests and body bytes per run).
"""

from __future__ import annotations

import grp
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

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
