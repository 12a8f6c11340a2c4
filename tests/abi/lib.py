"""The raw TTHighSpeedDownloader library through ctypes, for the ABI tests.

These tests hold the C contract (``../shared/ABI.md``) directly, without the Python
package's wrappers in between; the exports are declared by the package's one table of
them, ``tthsd_interface._prototypes`` (held to ``native/include/tthsd.h`` by
``tests/api/test_contract.py``).

* :func:`library_path` finds the library: ``$TTHSD_LIBRARY`` (alone, when set), else
  ``native/target/release/libTTHighSpeedDownloader.so``, else
  ``src/tthsd_interface/TTHighSpeedDownloader.so``, else the one inside an installed
  ``tthsd_interface`` package. Missing library = failing tests, unless
  ``TTHSD_ALLOW_MISSING_LIB=1`` (then they skip).
* :class:`Lib` resolves each export lazily with its prototype, so a missing export fails
  only the tests that use it. Pointer-returning functions are declared ``c_void_p`` so the
  pointer can go back to ``free_string``.
* :class:`Events` is a callback that records every event (parsed JSON, time, thread) and
  lets tests wait for one; it can also run a reaction inside the callback. Every callback
  object is kept alive for the whole session (:data:`_KEEP_ALIVE`): a downloader that
  outlives its test must never call freed memory.
* :class:`Run` is one downloader id with its events; :class:`Harness` makes runs for a
  test and stops every id it made at teardown.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from ctypes import c_bool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Re-exported: the ABI tests import them from here.
from tthsd_interface._prototypes import BOOL_P as BOOL_P
from tthsd_interface._prototypes import CALLBACK as CALLBACK
from tthsd_interface._prototypes import PROTOTYPES as PROTOTYPES

REPO = Path(__file__).resolve().parents[2]
LIBRARY_ENV = "TTHSD_LIBRARY"
ALLOW_MISSING_ENV = "TTHSD_ALLOW_MISSING_LIB"
CANDIDATES = (
    REPO / "native" / "target" / "release" / "libTTHighSpeedDownloader.so",
    REPO / "src" / "tthsd_interface" / "TTHighSpeedDownloader.so",
)
MiB = 1 << 20

class LibraryMissing(Exception):  # noqa: N818  (imported by name elsewhere)
    pass


def _installed_package_library() -> list[Path]:
    """The library inside an installed ``tthsd_interface`` (found without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("tthsd_interface")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(d) / "TTHighSpeedDownloader.so" for d in spec.submodule_search_locations]


def library_path() -> Path:
    """The library to test, or :class:`LibraryMissing` naming every path tried."""
    env = os.environ.get(LIBRARY_ENV, "")
    # An explicit choice is the only candidate: never test another library by surprise.
    tried = [Path(env)] if env else list(CANDIDATES) + _installed_package_library()
    for p in tried:
        if p.is_file():
            return p
    raise LibraryMissing(
        "TTHighSpeedDownloader library not found; tried: "
        + ", ".join(str(p) for p in tried)
        + ". Build it with `cargo build --release --manifest-path native/Cargo.toml "
        "-p tthsd-ffi`, or set TTHSD_LIBRARY (TTHSD_ALLOW_MISSING_LIB=1 skips these tests)."
    )


class Lib:
    """The loaded library; ``lib.<export>(...)`` calls it with the declared prototype."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dll = ctypes.CDLL(str(path))
        self._fns: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in PROTOTYPES:
            raise AttributeError(name)
        fn = self._fns.get(name)
        if fn is None:
            try:
                fn = getattr(self.dll, name)
            except AttributeError:
                raise AttributeError(f"the library does not export {name!r}") from None
            fn.restype, fn.argtypes = PROTOTYPES[name]
            self._fns[name] = fn
        return fn

    def has(self, name: str) -> bool:
        try:
            getattr(self.dll, name)
        except AttributeError:
            return False
        return True

    def last_error(self) -> str:
        """``tthsd_last_error`` as text ('' when the last call succeeded)."""
        n = self.tthsd_last_error(None, 0)
        if n <= 0:
            return ""
        buf = ctypes.create_string_buffer(n + 1)
        self.tthsd_last_error(buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def stats(self, ident: int) -> dict[str, Any]:
        """``get_performance_stats`` parsed (and the string released)."""
        ptr = self.get_performance_stats(ident)
        assert ptr, "get_performance_stats returned NULL"
        try:
            text = ctypes.string_at(ptr).decode("utf-8")
        finally:
            self.free_string(ptr)
        value = json.loads(text)
        assert isinstance(value, dict)
        return value


# -- events -------------------------------------------------------------------------------


@dataclass
class Event:
    type: str
    name: str
    show_name: str
    id: str
    msg: dict[str, Any]
    at: float
    thread: int
    raw: tuple[bytes, bytes] = field(repr=False, default=(b"", b""))

    @property
    def text(self) -> str:
        return str(self.msg.get("Text", ""))


#: Every callback object ever handed to the library, so none is freed while it may run.
_KEEP_ALIVE: list[Any] = []


class Events:
    """A callback that records events. ``react(event, events)`` runs inside the callback
    (on the library's event thread) after the event is recorded."""

    def __init__(self, react: Callable[[Event, Events], None] | None = None) -> None:
        self.items: list[Event] = []
        self.errors: list[BaseException] = []
        self.react = react
        self._cond = threading.Condition()
        self.callback = CALLBACK(self._on_event)
        _KEEP_ALIVE.append(self.callback)

    def _on_event(self, event_json: bytes | None, msg_json: bytes | None) -> None:
        # Never let an exception unwind into native code: record it, the test checks.
        try:
            ev = json.loads((event_json or b"null").decode("utf-8"))
            msg = json.loads((msg_json or b"null").decode("utf-8"))
            assert isinstance(ev, dict) and isinstance(msg, dict), (event_json, msg_json)
            e = Event(
                type=ev["Type"], name=ev["Name"], show_name=ev["ShowName"], id=ev["ID"],
                msg=msg, at=time.monotonic(), thread=threading.get_ident(),
                raw=(event_json or b"", msg_json or b""),
            )
            with self._cond:
                self.items.append(e)
                self._cond.notify_all()
            if self.react is not None:
                self.react(e, self)
        except BaseException as exc:
            self.errors.append(exc)

    def snapshot(self) -> list[Event]:
        with self._cond:
            return list(self.items)

    def types(self) -> list[str]:
        return [e.type for e in self.snapshot()]

    def of(self, type_: str, id_: str | None = None) -> list[Event]:
        return [e for e in self.snapshot() if e.type == type_ and (id_ is None or e.id == id_)]

    def texts(self) -> list[str]:
        return [e.text for e in self.of("msg")]

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10.0,
                 what: str = "an event") -> Event:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for e in self.items[seen:]:
                    if pred(e):
                        return e
                seen = len(self.items)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; events: "
                        + summarize(self.items)
                    )
                self._cond.wait(left)

    def wait_type(self, type_: str, timeout: float = 10.0) -> Event:
        return self.wait_for(lambda e: e.type == type_, timeout, f"a {type_!r} event")

    def wait_end(self, timeout: float = 20.0) -> Event:
        return self.wait_type("end", timeout)

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 5.0) -> int:
        """Wait until no event came for ``quiet`` seconds; returns the event count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            n = len(self.items)
            while time.monotonic() < deadline:
                self._cond.wait(quiet)
                if len(self.items) == n:
                    return n
                n = len(self.items)
        return n


def summarize(events: Sequence[Event], limit: int = 40) -> str:
    """A compact listing of events for assertion messages."""
    parts = []
    for e in events[:limit]:
        extra = ""
        if e.type == "msg":
            extra = f" {e.text!r}"
        elif e.type == "err":
            extra = f" {e.msg.get('Code')}: {e.msg.get('Error')!r}"
        elif e.type == "endOne":
            extra = f" Success={e.msg.get('Success')}"
        elif e.type == "update":
            extra = f" {e.msg.get('Downloaded')}/{e.msg.get('Total')}"
        parts.append(f"{e.type}[{e.id}]{extra}")
    more = f" ... (+{len(events) - limit})" if len(events) > limit else ""
    return ", ".join(parts) + more


# -- tasks and runs -------------------------------------------------------------------------


def task(url: str, save_path: str | os.PathLike[str], *, id: str | None = None,
         show_name: str | None = None, go_style: bool = False, **extra: Any) -> dict[str, Any]:
    """One task object, Rust-style keys by default, Go-style (``URL``...) on request."""
    keys = ("URL", "SavePath", "ShowName", "ID") if go_style else (
        "url", "save_path", "show_name", "id")
    t: dict[str, Any] = {keys[0]: url, keys[1]: os.fspath(save_path)}
    if show_name is not None:
        t[keys[2]] = show_name
    if id is not None:
        t[keys[3]] = id
    t.update(extra)
    return t


def tasks_json(tasks: Iterable[dict[str, Any]]) -> bytes:
    return json.dumps(list(tasks)).encode("utf-8")


def bool_p(value: bool | None) -> Any:
    return None if value is None else ctypes.pointer(c_bool(value))


class Run:
    """One downloader id made by a :class:`Harness`, with its events."""

    def __init__(self, harness: Harness, ident: int, events: Events,
                 tasks: list[dict[str, Any]]) -> None:
        self.h = harness
        self.lib = harness.lib
        self.id = ident
        self.events = events
        self.tasks = tasks

    def start(self, multiple: bool = False) -> int:
        fn = self.lib.start_multiple_downloads_id if multiple else self.lib.start_download_id
        return fn(self.id)

    def pause(self) -> int:
        return self.lib.pause_download(self.id)

    def resume(self) -> int:
        return self.lib.resume_download(self.id)

    def stop(self) -> int:
        return self.lib.stop_download(self.id)

    def stats(self) -> dict[str, Any]:
        return self.lib.stats(self.id)

    def wait_end(self, timeout: float = 20.0) -> Event:
        return self.events.wait_end(timeout)


class Harness:
    """Makes downloaders for one test; stops them all at teardown."""

    def __init__(self, lib: Lib) -> None:
        self.lib = lib
        self.ids: list[int] = []

    def _args(self, tasks: list[dict[str, Any]], *, count: int | None, threads: int,
              chunk_mb: int, events: Events | None, user_agent: str | None,
              headers: dict[str, str] | None,
              callback: bool) -> tuple[tuple[Any, ...], bytes | None]:
        cb = events.callback if (events is not None and callback) else None
        hdr = json.dumps(headers).encode() if headers is not None else None
        return (tasks_json(tasks), len(tasks) if count is None else count, threads, chunk_mb,
                cb, False, user_agent.encode() if user_agent else None, None, None), hdr

    def start(self, tasks: list[dict[str, Any]], *, multiple: bool | None = None,
              threads: int = 8, chunk_mb: int = 1, events: Events | None = None,
              user_agent: str | None = None, headers: dict[str, str] | None = None,
              alias: bool = False, count: int | None = None,
              callback: bool = True) -> Run:
        """``start_download`` (``startDownload`` when ``alias``); asserts an id came back."""
        events = events if events is not None else Events()
        base, hdr = self._args(tasks, count=count, threads=threads, chunk_mb=chunk_mb,
                               events=events, user_agent=user_agent, headers=headers,
                               callback=callback)
        if alias:
            assert headers is None, "startDownload has no headers_json"
            ident = self.lib.startDownload(*base, bool_p(multiple))
        else:
            ident = self.lib.start_download(*base, bool_p(multiple), hdr)
        assert ident > 0, f"start_download returned {ident}: {self.lib.last_error()!r}"
        self.ids.append(ident)
        return Run(self, ident, events, tasks)

    def create(self, tasks: list[dict[str, Any]], *, threads: int = 8, chunk_mb: int = 1,
               events: Events | None = None, user_agent: str | None = None,
               headers: dict[str, str] | None = None, alias: bool = False,
               count: int | None = None, callback: bool = True) -> Run:
        """``get_downloader`` (``getDownloader`` when ``alias``): created, not started."""
        events = events if events is not None else Events()
        base, hdr = self._args(tasks, count=count, threads=threads, chunk_mb=chunk_mb,
                               events=events, user_agent=user_agent, headers=headers,
                               callback=callback)
        if alias:
            assert headers is None, "getDownloader has no headers_json"
            ident = self.lib.getDownloader(*base)
        else:
            ident = self.lib.get_downloader(*base, hdr)
        assert ident > 0, f"get_downloader returned {ident}: {self.lib.last_error()!r}"
        self.ids.append(ident)
        return Run(self, ident, events, tasks)

    def close(self) -> None:
        for ident in self.ids:
            self.lib.stop_download(ident)


# -- checks -------------------------------------------------------------------------------


def url_without_password(url: str) -> str:
    """The task URL as startOne/endOne echo it: the password of its user info removed."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def check_events(events: Events, tasks: list[dict[str, Any]], *,
                 sequential: bool | None = None,
                 success: dict[str, bool] | bool = True,
                 sizes: dict[str, int] | None = None) -> None:
    """Assert the ABI.md §3-4 shape and order of one finished run.

    ``tasks`` must carry explicit ids. Checks: no callback error; one event thread;
    ``start`` first and ``end`` last (exactly once each); per task ``startOne`` <
    ``update``... < ``endOne`` (once each) with the right Index/Total/URL/SavePath/
    ShowName; ``update`` messages with Downloaded/Total/Speed, Downloaded never going
    back, the last one equal to the size when ``sizes`` gives it; ``Success`` as
    expected; with ``sequential`` the tasks do not overlap.
    """
    assert not events.errors, f"callback errors: {events.errors!r}"
    evs = events.snapshot()
    listing = summarize(evs, 80)
    assert evs, "no event at all"
    assert evs[0].type == "start", listing
    assert evs[-1].type == "end", listing
    assert [e.type for e in evs].count("start") == 1, listing
    assert [e.type for e in evs].count("end") == 1, listing
    assert len({e.thread for e in evs}) == 1, "events came from more than one thread"
    for e in evs:
        if e.type in ("start", "end"):
            assert (e.show_name, e.id, e.msg) == ("Global", "", {}), e
    ids = [t.get("id", t.get("ID")) for t in tasks]
    assert all(ids), "check_events needs tasks with explicit ids"
    assert len(set(ids)) == len(ids)
    task_ids = set(ids)
    for e in evs:
        if e.type in ("startOne", "update", "endOne"):
            assert e.id in task_ids, f"{e.type} for unknown task id {e.id!r}"
    spans = []
    for index, (t, tid) in enumerate(zip(tasks, ids, strict=True), start=1):
        mine = [(i, e) for i, e in enumerate(evs) if e.id == tid]
        kinds = [e.type for _, e in mine]
        assert kinds.count("startOne") == 1, f"task {tid}: {kinds}"
        assert kinds.count("endOne") == 1, f"task {tid}: {kinds}"
        first_i, first = mine[0]
        assert first.type == "startOne", f"task {tid} events begin with {first.type}: {kinds}"
        last_i, last = next((i, e) for i, e in mine if e.type == "endOne")
        after = [e.type for i, e in mine if i > last_i]
        assert not after, f"task {tid}: events after endOne: {after}"
        url = t.get("url", t.get("URL"))
        save = t.get("save_path", t.get("SavePath"))
        show = t.get("show_name", t.get("ShowName"))
        for e in (first, last):
            # Events echo the task URL without its password (docs/security.md).
            assert e.msg["URL"] == url_without_password(url) and e.msg["SavePath"] == save, e.msg
            assert e.msg["Index"] == index and e.msg["Total"] == len(tasks), e.msg
            if show is not None:
                assert e.msg["ShowName"] == show and e.show_name == show, e
        want = success if isinstance(success, bool) else success[tid]
        assert last.msg["Success"] is want, f"task {tid}: {last.msg} ({listing})"
        prev = -1
        ups = [e for _, e in mine if e.type == "update"]
        for u in ups:
            for key in ("Downloaded", "Total", "Speed"):
                assert key in u.msg, f"update without {key}: {u.msg}"
            d, total = u.msg["Downloaded"], u.msg["Total"]
            assert isinstance(d, int) and isinstance(total, int), u.msg
            assert isinstance(u.msg["Speed"], (int, float)) and u.msg["Speed"] >= 0, u.msg
            assert d >= prev, f"task {tid}: Downloaded went back {prev} -> {d}"
            if total > 0:
                assert d <= total, u.msg
            prev = d
        if want and sizes is not None and sizes.get(tid):
            assert ups, f"task {tid}: no update event"
            assert ups[-1].msg["Downloaded"] == sizes[tid], (ups[-1].msg, sizes[tid])
        # "at most every 200 ms while bytes flow, plus one final update": judged on the
        # whole span (receipt times can bunch when the event thread is briefly held up).
        span_s = last.at - first.at
        assert len(ups) <= span_s / 0.2 + 3, (
            f"task {tid}: {len(ups)} updates in {span_s:.2f}s, more than one per 200 ms")
        spans.append((first_i, last_i))
    if sequential:
        for (_, end_a), (start_b, _) in itertools.pairwise(spans):
            assert end_a < start_b, f"tasks overlap in sequential mode: {listing}"


def assert_file(path: str | os.PathLike[str], body: Any) -> None:
    """The file at ``path`` is exactly ``body`` (a tests.support Body), checked by SHA-256,
    and no temporary sibling is left."""
    from tests.support.content import first_mismatch, sha256_file

    p = Path(path)
    assert p.is_file(), f"{p} does not exist"
    digest = sha256_file(p)
    if digest != body.sha256():
        raise AssertionError(f"{p}: SHA-256 differs; {first_mismatch(body, p)}")
    for suffix in (".tthsd.part", ".tthsd.journal"):
        assert not Path(str(p) + suffix).exists(), f"{p}{suffix} left behind"
