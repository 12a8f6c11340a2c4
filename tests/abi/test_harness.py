"""The ABI tests' own helpers, checked without the library: the event recorder and the
event-order check must catch what they claim to catch."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from .lib import Events, check_events, task

T1 = task("http://h/1", "/tmp/1", id="1", show_name="one")
T2 = task("http://h/2", "/tmp/2", id="2", show_name="two")


def _feed(events: Events, seq: list[tuple[str, str, dict[str, Any]]]) -> None:
    def run() -> None:
        for type_, tid, msg in seq:
            show = {"1": "one", "2": "two"}.get(tid, "Global")
            ev = {"Type": type_, "Name": type_, "ShowName": show, "ID": tid}
            events.callback(json.dumps(ev).encode(), json.dumps(msg).encode())

    th = threading.Thread(target=run)
    th.start()
    th.join()


def _info(t: dict[str, Any], index: int, success: bool | None = None) -> dict[str, Any]:
    m = {"URL": t["url"], "SavePath": t["save_path"], "ShowName": t["show_name"],
         "Index": index, "Total": 2}
    if success is not None:
        m["Success"] = success
    return m


def _good() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("start", "", {}),
        ("startOne", "1", _info(T1, 1)),
        ("update", "1", {"Downloaded": 5, "Total": 10, "Speed": 1.0}),
        ("update", "1", {"Downloaded": 10, "Total": 10, "Speed": 1.0}),
        ("endOne", "1", _info(T1, 1, True)),
        ("startOne", "2", _info(T2, 2)),
        ("msg", "", {"Text": "hello"}),
        ("update", "2", {"Downloaded": 3, "Total": 3, "Speed": 0}),
        ("endOne", "2", _info(T2, 2, True)),
        ("end", "", {}),
    ]


def test_a_good_run_passes() -> None:
    ev = Events()
    _feed(ev, _good())
    check_events(ev, [T1, T2], sequential=True, sizes={"1": 10, "2": 3})
    assert ev.texts() == ["hello"] and ev.of("update", "2")[0].msg["Downloaded"] == 3


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[1:],  # no start
        lambda s: s[:-1],  # no end
        lambda s: [*s, ("msg", "", {"Text": "late"})],  # event after end
        lambda s: [s[0], s[2], s[1], *s[3:]],  # update before startOne
        lambda s: [*s[:4], ("update", "1", {"Downloaded": 4, "Total": 10, "Speed": 1}), *s[4:]],
        lambda s: [*s[:2], ("update", "1", {"Downloaded": 1, "Total": 10}), *s[2:]],  # no Speed
        lambda s: [*s[:5], ("update", "1", {"Downloaded": 10, "Total": 10, "Speed": 1}),
                   *s[5:]],  # update after endOne
        lambda s: [x if x[0] != "endOne" or x[1] != "2" else ("endOne", "2", _info(T2, 2, False))
                   for x in s],  # wrong Success
        lambda s: [s[0], s[1], s[5], *s[2:5], *s[6:]],  # overlap in sequential mode
        lambda s: [x if x[0] != "startOne" or x[1] != "2" else ("startOne", "2", _info(T2, 1))
                   for x in s],  # wrong Index
        lambda s: [*s[:3], *s[4:]],  # final Downloaded short of the size
    ],
)
def test_a_bad_run_fails(mutate: Any) -> None:
    ev = Events()
    _feed(ev, mutate(_good()))
    with pytest.raises(AssertionError):
        check_events(ev, [T1, T2], sequential=True, sizes={"1": 10, "2": 3})


def test_callback_errors_are_recorded_not_raised() -> None:
    ev = Events()
    ev.callback(b"not json", b"{}")
    ev.callback(None, None)
    assert len(ev.errors) == 2 and ev.items == []


def test_wait_for_times_out_with_the_events_listed() -> None:
    ev = Events()
    _feed(ev, _good()[:3])
    with pytest.raises(AssertionError, match=r"startOne\[1\]"):
        ev.wait_type("end", timeout=0.1)
    assert ev.wait_type("update", timeout=0.1).msg["Downloaded"] == 5
