"""Delivery of core events to user callbacks, one dispatcher thread per TTHSDownloader.

The contract:

* The C callback handed to the core (one per downloader id, a :class:`NativeCallback`)
  only copies its two strings, as ``bytes``, onto a :class:`queue.SimpleQueue`.  It never
  blocks, never decodes, never calls user code, so a slow user callback can slow neither
  the core's event thread nor another TTHSDownloader.
* One daemon thread per :class:`Dispatcher` takes the items off the queue in order,
  decodes the JSON and calls the user callback as ``callback(event: dict, msg: dict)``.
  An exception raised by a user callback is logged through ``_TIlog`` and the next event
  is delivered as usual: the download is never affected.
* Each downloader id has a :class:`Run` that counts the ``end`` events still expected
  (:meth:`Dispatcher.expect_end` before each start); :meth:`Dispatcher.wait` blocks until
  they have been delivered.  A stop marker queued after ``stop_download`` returned (when
  the core has sent everything it will ever send for the id) settles the count.
* :meth:`Dispatcher.mute` makes every later delivery a no-op except for bookkeeping, and
  :meth:`Dispatcher.shutdown` ends the thread after what is queued; from any thread but the
  dispatcher's it also joins, so once it returns no user callback is running or will run.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from ._errors import CallbackContextError
from ._ffi import NativeCallback
from ._log import _TIlog
from ._types import Callback

__all__ = ["Dispatcher", "Run"]

_thread_numbers = itertools.count(1)


@dataclass(eq=False)
class Run:
    """What this package knows about one downloader id of the core."""

    callback: Callback | None
    native: NativeCallback | None = None
    """The C callback given to the core; dropped once ``stop_download`` returned."""
    downloader_id: int = 0
    """0 until the core returned the id."""
    pending_ends: int = 0
    """``end`` events expected and not delivered yet (guarded by the dispatcher lock)."""
    stopped: bool = False
    """``stop_download`` returned 0 for this id (the core released it)."""
    muted: bool = False
    """Deliver nothing more of this run to the user callback."""
    events: int = field(default=0, repr=False)


class _Stopped:
    """Queue marker: the core will send nothing more for ``run``."""

    __slots__ = ("run",)

    def __init__(self, run: Run) -> None:
        self.run = run


class _Shutdown:
    """Queue marker: the dispatcher thread should end."""


_SHUTDOWN: Final = _Shutdown()

_Item = tuple[Run, bytes | None, bytes | None] | _Stopped | _Shutdown


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return {}
    return json.loads(raw.decode("utf-8", "replace"))


class Dispatcher:
    """The queue and the thread that deliver one TTHSDownloader's events."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._muted = False
        self._closing = False
        self._shut_down = False

    # -- runs -----------------------------------------------------------------------------
    def new_run(self, callback: Callback | None) -> Run:
        """A run with its C callback, to hand to the core before the id is known.

        The C callback closes over the queue and the run only (not over the
        TTHSDownloader), so a forgotten downloader can still be garbage-collected.
        """
        run = Run(callback=callback)
        put = self._queue.put

        def on_event(event_json: bytes | None, msg_json: bytes | None) -> None:
            put((run, event_json, msg_json))

        run.native = NativeCallback(on_event)
        self._ensure_thread()
        return run

    def expect_end(self, run: Run) -> None:
        """A start of ``run`` is about to be asked for: one more ``end`` to wait for."""
        with self._cond:
            run.pending_ends += 1

    def unexpect_end(self, run: Run) -> None:
        """The start asked for by :meth:`expect_end` failed: no ``end`` will come."""
        with self._cond:
            run.pending_ends = max(0, run.pending_ends - 1)
            self._cond.notify_all()

    def mute_if_idle(self, run: Run) -> bool:
        """Mute ``run`` if it expects no ``end`` (it ended, or never started): releasing it
        at close must not show the user a "Download stopped" after a finished download."""
        with self._cond:
            if run.pending_ends == 0:
                run.muted = True
            return run.muted

    def stopped(self, run: Run) -> None:
        """``stop_download`` returned 0: every event of the id is already queued."""
        run.stopped = True
        # The core promised no further call: the C callback may go once the queue has
        # been worked off up to here (the marker holds ``run``, not the thunk).
        run.native = None
        self._queue.put(_Stopped(run))

    # -- waiting --------------------------------------------------------------------------
    def on_dispatcher_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def wait(self, runs: Iterable[Run], timeout: float | None) -> bool:
        """Block until none of ``runs`` expects an ``end``; False if ``timeout`` ran out."""
        if self.on_dispatcher_thread():
            raise CallbackContextError(
                "wait() cannot be called from inside a callback: the callback's thread is "
                "the one that delivers the end event being waited for"
            )
        runs = list(runs)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while any(run.pending_ends > 0 for run in runs):
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
        return True

    # -- closing --------------------------------------------------------------------------
    def mute(self) -> None:
        """Call no user callback from now on (bookkeeping goes on)."""
        self._muted = True

    def begin_close(self) -> None:
        """Drop queued ``update`` events from now on; other events are still delivered."""
        self._closing = True

    def shutdown(self) -> None:
        """End the thread once the queue is worked off up to now.

        Not on the dispatcher thread: joins it, so no user callback runs after this
        returns.  On the dispatcher thread (close from inside a callback): mutes instead,
        and the thread ends after the current callback returns.
        """
        with self._cond:
            if self._shut_down:
                thread = None
            else:
                self._shut_down = True
                thread = self._thread
        if thread is None:
            return
        self._queue.put(_SHUTDOWN)
        if thread is threading.current_thread():
            self.mute()
        else:
            thread.join()

    # -- the thread -----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None and not self._shut_down:
                self._thread = threading.Thread(
                    target=self._loop,
                    name=f"TTHSD-dispatch-{next(_thread_numbers)}",
                    daemon=True,  # must not keep the interpreter alive
                )
                self._thread.start()

    def _loop(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if isinstance(item, _Shutdown):
                return
            if isinstance(item, _Stopped):
                with self._cond:
                    item.run.pending_ends = 0
                    self._cond.notify_all()
                continue
            try:
                self._deliver(*item)
            except BaseException:  # noqa: BLE001 - the thread must outlive anything
                _TIlog.exception("TTHSD dispatcher: unexpected error while delivering an event")

    def _deliver(self, run: Run, event_json: bytes | None, msg_json: bytes | None) -> None:
        try:
            event = _decode(event_json)
            msg = _decode(msg_json)
        except ValueError as exc:
            _TIlog.warning(
                "downloader %d: undecodable event dropped (%s): %r %r",
                run.downloader_id, exc, event_json, msg_json,
            )  # fmt: skip
            return
        if not isinstance(event, dict) or not isinstance(msg, dict):
            _TIlog.warning(
                "downloader %d: event that is not a JSON object dropped: %r %r",
                run.downloader_id, event_json, msg_json,
            )  # fmt: skip
            return
        run.events += 1
        event_type = event.get("Type")
        callback = run.callback
        skip = self._muted or run.muted or (self._closing and event_type == "update")
        if callback is not None and not skip:
            _call_user(callback, event, msg, run.downloader_id)
        if event_type == "end":
            with self._cond:
                run.pending_ends = max(0, run.pending_ends - 1)
                self._cond.notify_all()


def _call_user(callback: Callback, event: dict[str, Any], msg: dict[str, Any], dl_id: int) -> None:
    # Both members of the Callback union take the two decoded dicts (an Event is a dict).
    call = cast("Callable[[dict[str, Any], dict[str, Any]], object]", callback)
    try:
        call(event, msg)
    except BaseException:  # noqa: BLE001 - a user callback never stops the download
        _TIlog.exception(
            "callback %r raised on %s event of downloader %d (the download goes on)",
            getattr(callback, "__qualname__", callback), event.get("Type"), dl_id,
        )  # fmt: skip
