"""Event queues (``tthsd_queue_*``), our pull-style alternative to the callback: a host
thread polls for batches of ``[id, event, msg]`` items. Held here against the raw ABI:
the same events as the callback gives, per-id order across downloaders sharing a queue,
the "released" item after ``stop_download``, a buffer too small for an item, and close."""

from __future__ import annotations

import ctypes
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import LoopbackServer

from .lib import Events, Lib, MiB, assert_file, check_events, task, tasks_json


class Poller:
    """Polls one queue on its own thread, like a host's dispatcher, and records items."""

    def __init__(self, lib: Lib, queue: int, size: int = 64 * 1024) -> None:
        self.lib = lib
        self.queue = queue
        self.size = size
        self.items: list[list[Any]] = []
        self.by_id: dict[int, Events] = {}
        self.calls = 0
        self.grown = 0
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def events_for(self, ident: int) -> Events:
        return self.by_id.setdefault(ident, Events())

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        buf = ctypes.create_string_buffer(self.size)
        while True:
            n = self.lib.tthsd_queue_poll(self.queue, buf, len(buf), 1000)
            self.calls += 1
            if n < 0:
                self.closed.set()
                return
            if n == 0:
                continue
            if n >= len(buf):  # one item larger than the buffer: grow and ask again
                self.grown += 1
                buf = ctypes.create_string_buffer(n + 1)
                continue
            batch = json.loads(buf.raw[:n])
            assert buf.raw[n] == 0, "the batch must be NUL-terminated"
            for item in batch:
                self.items.append(item)
                ident, event, msg = item
                if event is not None:
                    self.events_for(ident)._on_event(
                        json.dumps(event).encode(), json.dumps(msg).encode()
                    )

    def released(self, ident: int) -> bool:
        return [ident, None, None] in self.items

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the poller did not end after close"


def create(lib: Lib, queue: int, tasks: list[dict[str, Any]], threads: int = 4) -> int:
    ident = lib.tthsd_get_downloader_queued(
        queue, tasks_json(tasks), len(tasks), threads, 1, False, None, None, None, None
    )
    assert ident > 0, lib.last_error()
    return ident


def test_queued_downloaders_get_the_callback_events_in_order(
    lib: Lib, http_server: LoopbackServer, tmp_path: Path
) -> None:
    q = lib.tthsd_queue_new()
    assert q > 0
    poller = Poller(lib, q).start()
    big = http_server.add("/q/big.bin", size=3 * MiB + 5)
    small = [http_server.add(f"/q/s{i}.bin", size=10_000 + i) for i in range(20)]
    t1 = [task(big.url, tmp_path / "big.bin", id="big")]
    t2 = [task(r.url, tmp_path / f"s{i}.bin", id=f"s{i}") for i, r in enumerate(small)]
    a = create(lib, q, t1)
    b = create(lib, q, t2)
    # Map ids before any event can come: nothing is emitted before a start.
    ev_a, ev_b = poller.events_for(a), poller.events_for(b)
    assert lib.start_download_id(a) == 0
    assert lib.start_multiple_downloads_id(b) == 0
    ev_a.wait_end(20)
    ev_b.wait_end(20)
    check_events(ev_a, t1, sizes={"big": big.size})
    check_events(ev_b, t2, sizes={f"s{i}": r.size for i, r in enumerate(small)})
    assert_file(tmp_path / "big.bin", big.body)
    for i, r in enumerate(small):
        assert_file(tmp_path / f"s{i}.bin", r.body)
    # Batching: fewer polls than items.
    assert poller.calls < len(poller.items), (poller.calls, len(poller.items))

    # stop_download of a finished run: the released item right after `end`, then nothing.
    assert lib.stop_download(a) == 0
    deadline = time.monotonic() + 5
    while not poller.released(a) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert poller.released(a)
    of_a = [it for it in poller.items if it[0] == a]
    assert of_a[-1] == [a, None, None]
    assert of_a[-2][1]["Type"] == "end"
    assert lib.stop_download(b) == 0

    assert lib.tthsd_queue_close(q) == 0
    poller.join()
    assert poller.released(b)
    # The closed queue is gone: polls and new downloaders fail with a reason.
    buf = ctypes.create_string_buffer(64)
    assert lib.tthsd_queue_poll(q, buf, len(buf), 0) == -1
    assert "no event queue" in lib.last_error()


def test_an_item_larger_than_the_buffer_is_kept_and_sized(
    lib: Lib, http_server: LoopbackServer, tmp_path: Path
) -> None:
    q = lib.tthsd_queue_new()
    res = http_server.add("/" + "n" * 300 + ".bin", size=1000)
    t = [task(res.url, tmp_path / "long.bin", id="L")]
    ident = create(lib, q, t)
    assert lib.start_download_id(ident) == 0
    # The first item (start) is small; startOne carries the 300-byte URL: a 64-byte buffer
    # fits neither, and the return says how much is needed.
    buf = ctypes.create_string_buffer(64)
    n = lib.tthsd_queue_poll(q, buf, len(buf), 5000)
    assert n >= len(buf), n
    again = lib.tthsd_queue_poll(q, buf, len(buf), 5000)
    assert again == n, "nothing may be taken when the item does not fit"
    big = ctypes.create_string_buffer(n + 1)
    got = lib.tthsd_queue_poll(q, big, len(big), 5000)
    assert 0 < got <= n
    first = json.loads(big.raw[:got])[0]
    assert first[0] == ident and first[1]["Type"] == "start"
    poller = Poller(lib, q, size=128).start()  # grows as needed
    ev = poller.events_for(ident)
    ev.wait_end(20)
    assert any(e.type == "startOne" and res.url in json.dumps(e.msg) for e in ev.snapshot())
    assert poller.grown >= 1
    assert_file(tmp_path / "long.bin", res.body)
    assert lib.stop_download(ident) == 0
    assert lib.tthsd_queue_close(q) == 0
    poller.join()


def test_close_wakes_a_waiting_poll_and_refuses_new_downloaders(lib: Lib, tmp_path: Path) -> None:
    q = lib.tthsd_queue_new()
    poller = Poller(lib, q).start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert lib.tthsd_queue_close(q) == 0
    assert poller.closed.wait(5)
    assert time.monotonic() - t0 < 0.9, "close must wake a poll, not wait for its timeout"
    poller.join()
    t = [task("http://127.0.0.1:9/x", tmp_path / "x")]
    assert lib.tthsd_get_downloader_queued(
        q, tasks_json(t), 1, 1, 1, False, None, None, None, None
    ) == -1
    assert "no event queue" in lib.last_error() or "closed" in lib.last_error()


def test_a_closed_queue_still_hands_out_what_it_holds(
    lib: Lib, http_server: LoopbackServer, tmp_path: Path
) -> None:
    q = lib.tthsd_queue_new()
    res = http_server.add("/c.bin", size=5000)
    t = [task(res.url, tmp_path / "c.bin", id="c")]
    ident = create(lib, q, t)
    assert lib.start_download_id(ident) == 0
    assert lib.stop_download(ident) == 0  # every event of the id is queued now
    assert lib.tthsd_queue_close(q) == 0
    buf = ctypes.create_string_buffer(1 << 20)
    items: list[Any] = []
    while (n := lib.tthsd_queue_poll(q, buf, len(buf), 0)) > 0:
        items += json.loads(buf.raw[:n])
    assert n == -1 and "closed" in lib.last_error()
    assert items[0][1]["Type"] == "start"
    assert items[-1] == [ident, None, None]


@pytest.mark.parametrize(
    "args, reason",
    [
        ((123456, None, 0, 0), "buf is NULL"),
        ((987654, "buf", 16, 0), "no event queue with id 987654"),
        ((-1, "buf", 16, 0), "no event queue with id -1"),
    ],
)
def test_bad_poll_arguments_fail_with_a_reason(
    lib: Lib, args: tuple[Any, ...], reason: str
) -> None:
    q, buf, size, timeout = args
    if buf == "buf":
        buf = ctypes.create_string_buffer(size)
    assert lib.tthsd_queue_poll(q, buf, size, timeout) == -1
    assert reason in lib.last_error()
    assert lib.tthsd_queue_close(987654) == -1
    assert "no event queue" in lib.last_error()


def test_a_downloader_for_an_unknown_queue_is_refused(lib: Lib, tmp_path: Path) -> None:
    t = [task("http://127.0.0.1:9/x", tmp_path / "x")]
    assert lib.tthsd_get_downloader_queued(
        424242, tasks_json(t), 1, 1, 1, False, None, None, None, None
    ) == -1
    assert "no event queue with id 424242" in lib.last_error()
    # Bad task JSON is refused as with get_downloader, and the queue is unharmed.
    q = lib.tthsd_queue_new()
    assert lib.tthsd_get_downloader_queued(q, b"[", 1, 1, 1, False, None, None, None, None) == -1
    assert lib.last_error()
    buf = ctypes.create_string_buffer(256)
    assert lib.tthsd_queue_poll(q, buf, len(buf), 0) == 0
    assert lib.tthsd_queue_close(q) == 0
    assert lib.tthsd_queue_poll(q, buf, len(buf), 0) == -1
