"""examples/event_viewer.py: it listens on TCP and WebSocket, and prints every event the
core sends it, live."""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import REPO, MiB, assert_file, check_events, task
from tests.support.server import LoopbackServer

from .runs import RemoteHarness, local_triples

VIEWER = REPO / "examples" / "event_viewer.py"


class Viewer:
    """The viewer as a child process; its stdout lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(VIEWER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=VIEWER.parent,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.endpoints: dict[str, tuple[str, bool]] = {}
        pattern = re.compile(r"listening \((\w+)\): remote_callback_url='([^']+)' use_socket=(\w+)")
        while len(self.endpoints) < len(args) // 2:
            m = pattern.match(self.next_line(10))
            assert m, self.seen
            self.endpoints[m[1]] = (m[2], m[3] == "True")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            err = (
                self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            )
            raise AssertionError(f"no output from the viewer; so far {self.seen}; {err}") from None
        self.seen.append(line)
        return line

    def lines_until(self, needle: str, timeout: float = 20.0) -> list[str]:
        out = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            out.append(line)
            if needle in line:
                return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def viewer_factory() -> Iterator[Any]:
    started: list[Viewer] = []

    def make(*args: str) -> Viewer:
        v = Viewer(*args)
        started.append(v)
        return v

    yield make
    for v in started:
        v.close()


_RAW = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (tcp|ws):127\.0\.0\.1:\d+ (\{.*\})$")


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_viewer_prints_every_event_as_it_comes(
    viewer_factory: Any,
    remote: RemoteHarness,
    http_server: LoopbackServer,
    tmp_path: Path,
    kind: str,
) -> None:
    viewer = viewer_factory(f"--{kind}", "127.0.0.1:0", "--raw")
    url, use_socket = viewer.endpoints[kind]
    res = http_server.add("/v.bin", size=3 * MiB, throttle=2 * MiB)
    tasks = [task(res.url, tmp_path / "v.bin", id="v")]
    run = remote.start_remote(tasks, remote_url=url, use_socket=use_socket)
    # live: the viewer shows startOne while the download is still running
    lines = viewer.lines_until('"Type":"startOne"')
    assert not run.events.of("end"), "the viewer printed startOne only after the run ended"
    lines += viewer.lines_until('"Type":"end"')
    run.wait_end(20)
    check_events(run.events, tasks)
    assert_file(tmp_path / "v.bin", res.body)
    printed = [json.loads(m[2]) for m in map(_RAW.match, lines) if m]
    got = [(p["Type"], p["Event"], json.loads(p["Msg"])) for p in printed]
    assert got == local_triples(run.events)


def test_viewer_readable_lines(
    viewer_factory: Any, remote: RemoteHarness, http_server: LoopbackServer, tmp_path: Path
) -> None:
    viewer = viewer_factory("--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0")
    res = http_server.add("/h.bin", size=MiB)
    http_server.add("/gone.bin", status=404)
    tasks = [
        task(res.url, tmp_path / "h.bin", id="ok", show_name="good.bin"),
        task(http_server.url("/gone.bin"), tmp_path / "gone.bin", id="bad", show_name="bad.bin"),
    ]
    url, use_socket = viewer.endpoints["ws"]
    run = remote.start_remote(tasks, remote_url=url, use_socket=use_socket)
    text = "\n".join(viewer.lines_until(" end "))
    run.wait_end(20)
    assert re.search(r"startOne good\.bin \[ok\] +1/2 http://\S+/h\.bin -> \S+h\.bin", text), text
    assert re.search(r"update +good\.bin \[ok\] +1\.0 MiB / 1\.0 MiB +100\.0%", text), text
    assert re.search(r"endOne +good\.bin \[ok\] +done", text), text
    assert re.search(r"err +bad\.bin \[bad\] +http_status: ", text), text
    assert re.search(r"endOne +bad\.bin \[bad\] +FAILED", text), text


def test_viewer_websocket_side_speaks_rfc6455(viewer_factory: Any) -> None:
    from websockets.sync.client import connect

    viewer = viewer_factory("--ws", "127.0.0.1:0")
    url = viewer.endpoints["ws"][0].replace("http://", "ws://")
    message = {"Type": "msg", "Msg": json.dumps({"Text": "fragmented " * 2000}), "Event": {
        "Type": "msg", "Name": "Message", "ShowName": "Global", "ID": ""}}  # fmt: skip
    text = json.dumps(message)
    with connect(url, compression=None) as ws:
        ws.ping(b"hi").wait(5)  # answered
        ws.send(iter([text[:100], text[100:5000], text[5000:]]))  # fragments
        ws.send(json.dumps({**message, "Msg": json.dumps({"Text": "second"})}))
        line = "\n".join(viewer.lines_until("second"))
    assert "msg      Global                   fragmented fragmented" in line, line
    viewer.lines_until("disconnected")


def test_viewer_listens_on_ipv6(viewer_factory: Any) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    viewer = viewer_factory("--tcp", "[::1]:0")
    where, use_socket = viewer.endpoints["tcp"]
    assert where.startswith("[::1]:") and use_socket
    host, port = where.rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as c:
        c.sendall(b'{"Type":"msg","Msg":"{\\"Text\\":\\"over v6\\"}","Event":{}}\n')
        assert "over v6" in "\n".join(viewer.lines_until("over v6"))


def test_viewer_answers_plain_http_with_426(viewer_factory: Any) -> None:
    viewer = viewer_factory("--ws", "127.0.0.1:0")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(viewer.endpoints["ws"][0], timeout=5)
    assert exc.value.code == 426


def test_viewer_refuses_a_bad_address() -> None:
    proc = subprocess.run(
        [sys.executable, str(VIEWER), "--tcp", "nohostport"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "HOST:PORT" in proc.stderr
