"""Starting downloads with a remote event sink through the raw C ABI, and checking what a
listener received against what the local callback saw.

Reuses :mod:`tests.abi.lib` (the ctypes declarations, the event recorder, the order
check); adds the three arguments the ABI tests always pass as "none":
``use_callback_url``, ``remote_callback_url`` and ``use_socket``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.abi.lib import Events, Harness, Run, bool_p, tasks_json

from .listeners import Message

#: The sentence the core emits, once, when it gives up on a listener.
UNREACHABLE = "Remote event listener"


class RemoteHarness(Harness):
    """A :class:`tests.abi.lib.Harness` that can also pass the remote-sink arguments."""

    def call(
        self,
        tasks: list[dict[str, Any]],
        *,
        remote_url: str | bytes | None,
        use_socket: bool | None,
        use_callback_url: bool = True,
        threads: int = 8,
        chunk_mb: int = 1,
        multiple: bool | None = None,
        events: Events | None = None,
        create_only: bool = False,
    ) -> tuple[int, Events]:
        """``start_download`` (or ``get_downloader``) as is: returns (rc, events); a
        returned id is registered for teardown."""
        events = events if events is not None else Events()
        url = remote_url.encode() if isinstance(remote_url, str) else remote_url
        args = (
            tasks_json(tasks),
            len(tasks),
            threads,
            chunk_mb,
            events.callback,
            use_callback_url,
            None,
            url,
            bool_p(use_socket),
        )
        if create_only:
            rc = self.lib.get_downloader(*args, None)
        else:
            rc = self.lib.start_download(*args, bool_p(multiple), None)
        if rc > 0:
            self.ids.append(rc)
        return rc, events

    def start_remote(self, tasks: list[dict[str, Any]], **kw: Any) -> Run:
        rc, events = self.call(tasks, **kw)
        assert rc > 0, f"start_download returned {rc}: {self.lib.last_error()!r}"
        return Run(self, rc, events, tasks)


def check_wire_shape(messages: list[Message]) -> None:
    """Every message has the shape of ABI.md §6: exactly ``Type``, ``Msg`` (the msg
    object serialised as a JSON *string*, as the Go core sent it) and ``Event`` (the
    event object, whose ``Type`` agrees)."""
    assert messages, "the listener received nothing"
    for m in messages:
        v = m.value
        assert isinstance(v, dict), f"not a JSON object: {m.text!r}"
        assert set(v) == {"Type", "Msg", "Event"}, f"keys {sorted(v)}: {m.text!r}"
        assert isinstance(v["Msg"], str), f"Msg is not a string: {m.text!r}"
        assert isinstance(json.loads(v["Msg"]), dict), f"Msg is not a JSON object: {m.text!r}"
        ev = v["Event"]
        assert isinstance(ev, dict), m.text
        assert {"Type", "Name", "ShowName", "ID"} <= set(ev), m.text
        assert ev["Type"] == v["Type"], m.text


def as_local(m: Message) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A received message as (type, event object, msg object)."""
    return m.value["Type"], m.value["Event"], json.loads(m.value["Msg"])


def local_triples(events: Events) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The events the local callback saw, in the same form as :func:`as_local`."""
    out = []
    for e in events.snapshot():
        ev, msg = json.loads(e.raw[0]), json.loads(e.raw[1])
        out.append((e.type, ev, msg))
    return out


def unreachable_notices(events: Events) -> list[str]:
    return [t for t in events.texts() if t.startswith(UNREACHABLE)]


def poll_until(pred: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """True as soon as ``pred()`` holds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True
