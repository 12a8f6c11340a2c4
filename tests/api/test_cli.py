"""The ``tthsd`` command line, run as a user runs it: a child process (``python -m
tthsd_interface``, and the installed ``tthsd`` script) against loopback servers.  Every
option of the issue, the exit statuses, the JSON lines, Ctrl-C leaving a resumable
download, and a pseudo-terminal run that captures the live progress bars."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import tthsd_interface
from tests.support.content import sha256_file
from tests.support.server import LoopbackServer, fail_times
from tthsd_interface._cli import name_from_url

MiB = 1 << 20


def _env(core: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TTHSD_LIBRARY"] = str(core)
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    return env


def tthsd(
    core: Path, cwd: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tthsd_interface", *args],
        cwd=cwd, env=_env(core), input=stdin, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_one_url_to_an_output_path(core: Path, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/one.bin", size=3 * MiB)
    out = tthsd(core, tmp_path, "-o", "saved/here.bin", "-x", "8", "-k", "1", res.url)
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "saved" / "here.bin") == res.sha256()
    assert out.stdout == ""
    # Not a terminal: plain lines on standard error.
    assert "start  here.bin" in out.stderr
    assert "done   here.bin  3.0 MiB in" in out.stderr
    assert "1 file(s), 3.0 MiB in" in out.stderr
    assert "\x1b[" not in out.stderr


def test_several_urls_into_a_folder_named_after_the_urls(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    a = http_server.add("/a.bin", size=MiB)
    twin = http_server.add("/other/a.bin", size=1000)
    index = http_server.add("/dir/", size=10)
    spaced = http_server.add("/with%20space.txt", size=5)
    out = tthsd(core, tmp_path, "-j", "-d", "dl", a.url, twin.url, index.url, spaced.url)
    assert out.returncode == 0, out.stderr
    dl = tmp_path / "dl"
    assert sha256_file(dl / "a.bin") == a.sha256()
    assert sha256_file(dl / "a.bin.1") == twin.sha256()
    assert sha256_file(dl / "index.html") == index.sha256()
    assert sha256_file(dl / "with space.txt") == spaced.sha256()


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/a/b.iso?x=1#f", "b.iso"),
        ("http://h/", "index.html"),
        ("http://h", "index.html"),
        ("http://h/..", "index.html"),
        ("http://h/a%2Fb", "a_b"),
        ("http://h/%E4%B8%AD.txt", "中.txt"),
    ],
)
def test_file_names_from_urls(url: str, name: str) -> None:
    assert name_from_url(url) == name


@pytest.mark.parametrize("columns", [50, 100])
def test_help_fits_the_width_in_columns(columns: int, tmp_path: Path) -> None:
    # argparse's formatter honours $COLUMNS.
    env = dict(os.environ, COLUMNS=str(columns))
    out = subprocess.run(
        [sys.executable, "-m", "tthsd_interface", "--help"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    # The options' help is wrapped; the description and the epilog are kept as written.
    text = out.stdout
    # Python 3.9's argparse titles them "optional arguments:", later ones "options:".
    heading = "options:" if "options:" in text else "optional arguments:"
    lines = text[text.index(heading) : text.index("examples:")].splitlines()
    assert "--limit-rate RATE" in text
    assert max(len(line) for line in lines) <= columns
    if columns == 100:
        assert max(len(line) for line in lines) > 50  # the width is used, not a default


def test_input_file_with_comments_paths_and_stdin(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    one = http_server.add("/one.bin", size=1000)
    two = http_server.add("/two.bin", size=2000)
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# my files\n\n{one.url}\n  {two.url}   renamed/two copy.bin  \n")
    out = tthsd(core, tmp_path, "-i", str(listing), "-d", "dl")
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "dl" / "one.bin") == one.sha256()
    assert sha256_file(tmp_path / "dl" / "renamed" / "two copy.bin") == two.sha256()
    out = tthsd(core, tmp_path, "-i", "-", "-q", stdin=f"{one.url} from-stdin.bin\n")
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "from-stdin.bin") == one.sha256()


def test_input_file_lines_name_mirrors_as_aria2c_does(
    core: Path, http_server_factory: Any, tmp_path: Path
) -> None:
    main, same, other = http_server_factory(), http_server_factory(), http_server_factory()
    one = main.add("/m.bin", size=3 * MiB, throttle=4 * MiB)
    mirror = same.add("/m.bin", one.body)
    stale = other.add("/m.bin", size=3 * MiB, salt="old build")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{one.url}\t{mirror.url}\t{stale.url}\tm copy.bin\n")
    out = tthsd(core, tmp_path, "--json", "-x", "8", "-k", "1", "-i", str(listing))
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "m copy.bin") == one.sha256()
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    (end_one,) = [e["msg"] for e in lines if e.get("event", {}).get("Type") == "endOne"]
    urls = [(s["URL"], s["Dropped"] is None) for s in end_one["Sources"]]
    assert urls == [(one.url, True), (mirror.url, True), (stale.url, False)], end_one
    assert sum(s["Bytes"] for s in end_one["Sources"]) == one.size
    # --mirror: the same for a URL on the command line.
    out = tthsd(core, tmp_path, "-q", "-o", "again.bin", "--mirror", mirror.url, one.url)
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "again.bin") == one.sha256()


def test_json_lines_on_stdout(core: Path, http_server: LoopbackServer, tmp_path: Path) -> None:
    good = http_server.add("/j.bin", size=MiB)
    http_server.add("/gone", status=404)
    out = tthsd(core, tmp_path, "--json", "--retries", "0", good.url, http_server.url("/gone"))
    assert out.returncode == 1
    assert out.stderr == ""
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    events = [line for line in lines if "event" in line]
    types = [e["event"]["Type"] for e in events]
    assert types[0] == "start" and types[-1] == "end"
    assert {"startOne", "update", "endOne", "err"} <= set(types)
    assert all(set(e) == {"event", "msg"} for e in events)
    summary = lines[-1]["summary"]
    assert summary["ok"] == 1 and summary["failed"] == 1 and not summary["interrupted"]
    assert summary["files"][0]["bytes"] == MiB
    assert summary["failures"][0]["code"] == "http_status"


def test_quiet_prints_nothing_on_success(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/q.bin", size=1000)
    out = tthsd(core, tmp_path, "-q", res.url)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_exit_status_1_lists_each_failed_file_with_its_code(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    good = http_server.add("/good.bin", size=1000)
    http_server.add("/missing.bin", status=404)
    sums = http_server.add("/sum.bin", size=1000)
    out = tthsd(
        core, tmp_path, "-q", "--retries", "0", good.url, http_server.url("/missing.bin"),
        sums.url, "--checksum", "sha256:" + good.sha256(), "--checksum", "md5:" + "0" * 32,
        "--checksum", "sha256:" + "1" * 64,
    )  # fmt: skip
    assert out.returncode == 1
    assert "2 file(s) failed:" in out.stderr
    assert "missing.bin" in out.stderr and "(http_status)" in out.stderr
    assert "sum.bin" in out.stderr and "(checksum_mismatch)" in out.stderr
    assert (tmp_path / "good.bin").exists()
    assert not (tmp_path / "sum.bin").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no URL given"),
        (["-o", "x", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "exactly one URL"),
        (["-H", "no colon", "http://127.0.0.1:1/a"], "Name: value"),
        (["--limit-rate", "fast", "http://127.0.0.1:1/a"], "not a rate"),
        (["--checksum", "md5:00", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "--checksum"),
        (["-x", "0", "http://127.0.0.1:1/a"], "positive"),
        (["--retries", "-1", "http://127.0.0.1:1/a"], "retries"),
        (["-i", "does-not-exist.txt"], "cannot read"),
        (["gopher://example.invalid/x"], "refused"),
        (["--proxy", "ftp://nowhere", "http://127.0.0.1:1/a"], "proxy"),
        (
            ["--mirror", "http://127.0.0.1:1/m", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"],
            "--mirror needs exactly one URL",
        ),
        (["--mirror", "http://127.0.0.1:1/a", "http://127.0.0.1:1/a"], "repeats"),
    ],
)
def test_usage_errors_exit_2(core: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tthsd(core, tmp_path, *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def test_headers_user_agent_and_proxy_reach_the_server(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/h.bin", size=1000)
    out = tthsd(
        core, tmp_path, "-H", "X-One: 1", "-H", "X-Two:  two words ", "--user-agent", "ua/9",
        "--proxy", http_server.base_url, "http://files.example.invalid/h.bin",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sha256_file(tmp_path / "h.bin") == res.sha256()
    requests = http_server.requests("/h.bin")
    assert requests, "the request went through the proxy"
    for rec in requests:
        assert rec.target.startswith("http://files.example.invalid/")
        assert rec.headers.get("X-One") == "1"
        assert rec.headers.get("X-Two") == "two words"
        assert rec.headers.get("User-Agent") == "ua/9"


def test_limit_rate_retries_and_timeouts(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/r.bin", size=2 * MiB, hook=fail_times(2, 503))
    started = time.monotonic()
    out = tthsd(
        core, tmp_path, "-q", "--limit-rate", "4M", "--retries", "2", "--connect-timeout", "5",
        "--read-timeout", "5", "--no-durable", res.url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started >= 0.4  # 2 MiB at 4 MiB/s, plus start-up
    assert sha256_file(tmp_path / "r.bin") == res.sha256()
    flaky = http_server.add("/f.bin", size=100, hook=fail_times(1, 503))
    out = tthsd(core, tmp_path, "-q", "--retries", "0", flaky.url)
    assert out.returncode == 1
    assert "(http_status)" in out.stderr


def test_version(core: Path, tmp_path: Path) -> None:
    out = tthsd(core, tmp_path, "--version")
    assert out.returncode == 0
    assert out.stdout.startswith(f"tthsd {tthsd_interface.__version__} ")
    assert f"({core})" in out.stdout


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    # Resuming in a new process needs a validator for If-Range (docs/resume.md).
    res = http_server.add("/big.bin", size=8 * MiB, throttle=MiB, etag='"big"')
    command = [sys.executable, "-m", "tthsd_interface", "-x", "4", "-k", "1", res.url]
    # The child gets SIGINT's default disposition whatever this process inherited: a
    # shell's background job starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt (the child finished its download and exited 0).
    child = subprocess.Popen(
        command, cwd=tmp_path, env=_env(core), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while http_server.bytes_sent("/big.bin") < 2 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    assert "interrupted" in err and "resume" in err
    assert "Traceback" not in err
    target = tmp_path / "big.bin"
    assert not target.exists()
    assert Path(str(target) + ".tthsd.part").exists()
    assert Path(str(target) + ".tthsd.journal").exists()
    before = http_server.bytes_sent("/big.bin")
    res.throttle = None
    again = subprocess.run(
        command, cwd=tmp_path, env=_env(core), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sha256_file(target) == res.sha256()
    assert http_server.bytes_sent("/big.bin") - before < res.size - MiB


def test_installed_script_runs_the_demo(core: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tthsd"
    assert script.exists(), "pip install should have created the tthsd script"
    out = subprocess.run(
        [str(script), "--demo", "--limit-rate", "0", "-d", "demo"], cwd=tmp_path,
        env=_env(core), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "demo OK" in out.stderr
    assert len(list((tmp_path / "demo").glob("demo*.bin"))) == 4


# -- the progress bars, in a pseudo-terminal ---------------------------------------------


def run_in_pty(
    command: Sequence[str], cwd: Path, env: dict[str, Any], *, columns: int = 100,
    rows: int = 24, timeout: float = 60,
) -> tuple[int, bytes]:  # fmt: skip
    """Run ``command`` with a pseudo-terminal as its stdin, stdout and stderr; its exit
    status and everything it wrote to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    child = subprocess.Popen(
        list(command), cwd=cwd, env={**env, "TERM": "xterm-256color"}, stdin=slave,
        stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                output += data
            elif child.poll() is not None:
                # Drain what is left, then stop.
                with contextlib.suppress(OSError):
                    while select.select([master], [], [], 0.05)[0]:
                        data = os.read(master, 65536)
                        if not data:
                            break
                        output += data
                break
        status = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    return status, bytes(output)


def test_progress_bars_in_a_terminal(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    files = [http_server.add(f"/pty{i}.bin", size=4 * MiB, throttle=2 * MiB) for i in range(3)]
    status, raw = run_in_pty(
        [sys.executable, "-m", "tthsd_interface", "-j", "-x", "6", "-k", "1", "-d", "out",
         *(f.url for f in files)],
        tmp_path, _env(core),
    )  # fmt: skip
    text = raw.decode("utf-8", "replace")
    assert status == 0, text
    for f in files:
        assert sha256_file(tmp_path / "out" / f.path.lstrip("/")) == f.sha256()
    assert "\x1b[" in text  # a live display: colours and cursor movements
    assert "━" in text  # bars
    assert "total" in text and "/3 files" in text  # the overall bar
    assert "MiB/s" in text and "ETA" in text  # speed and time left
    assert "%" in text
    for i in range(3):
        assert f"pty{i}.bin" in text
        assert f"✓ pty{i}.bin" in text or f"pty{i}.bin  4.0 MiB in" in text
    assert "3 file(s), 12.0 MiB in" in text
