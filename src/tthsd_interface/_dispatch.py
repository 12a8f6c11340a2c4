"""Delivery of core events to user callbacks, one dispatcher thread per TTHSDownloader.

The contract:

* Events reach this module in one of two ways.  With a core that has event queues (ours,
  see ``tthsd_queue_poll``), the dispatcher thread itself takes them from the core, in
  batches, blocking in C with the GIL released: no core thread ever runs Python.  With an
  earlier core, the C callback handed to the core (one per downloader id, a
  :class:`NativeCallback`) only copies its two strings, as ``bytes``, onto a
  :class:`queue.SimpleQueue`.  Either way the core never waits for Python and never
  calls user code, so a slow user callback can slow neither the core nor another
  TTHSDownloader.
* One daemon thread per :class:`Dispatcher` decodes the JSON and calls the user callback
  as ``callback(event: dict, msg: dict)``, in the order the core sent the events.  An
  exception raised by a user callback is logged through ``_TIlog`` and the next event is
  delivered as usual: the download is never affected.
* Each downloader id has a :class:`Run` that counts the ``end`` events still expected
  (:meth:`Dispatcher.expect_end` before each start); :meth:`Dispatcher.wait` blocks until
  they have been delivered.  Once ``stop_download`` returned, the core has sent
  everything it will send for the id; a marker behind those events (the queue's
  "released" item, or one this module queues) settles the count.
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
from dataclasses import dataclass
from typing import Any, Final, Optional, Union, cast

from ._errors import CallbackContextError
from ._ffi import EventQueue, NativeCallback
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
    delivered: int = 0
    """Events of this run handed to the delivery (muted ones included)."""


class _Stopped:
    """Queue marker: the core will send nothing more for ``run``."""

    __slots__ = ("run",)

    def __init__(self, run: Run) -> None:
        self.run = run


class _Shutdown:
    """Queue marker: the dispatcher thread should end."""


_SHUTDOWN: Final = _Shutdown()

# typing.Union: evaluated at run time, where ``|`` needs Python 3.10.
_Item = Union[tuple[Run, Optional[bytes], Optional[bytes]], _Stopped, _Shutdown]


_DELIVERY_FAILED: Final = "TTHSD dispatcher: unexpected error while delivering an event"


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return {}
    return json.loads(raw.decode("utf-8", "replace"))


class Dispatcher:
    """The queue and the thread that deliver one TTHSDownloader's events.

    ``new_event_queue`` makes the core's event queue (None: the core has none, use the C
    callback); it is called once, when the first run is made, so an instance that never
    downloads holds nothing in the core.
    """

    def __init__(self, new_event_queue: Callable[[], EventQueue | None] | None = None) -> None:
        self._new_event_queue = new_event_queue
        self._event_queue: EventQueue | None = None
        self._by_id: dict[int, Run] = {}
        self._callback_items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._muted = False
        self._closing = False
        self._shut_down = False

    # -- runs -----------------------------------------------------------------------------
    def new_run(self, callback: Callback | None) -> Run:
        """A run, to hand to the core before the id is known: with the core's event queue
        (:attr:`event_queue`) when there is one, else with its own C callback.

        The C callback closes over the queue and the run only (not over the
        TTHSDownloader), so a forgotten downloader can still be garbage-collected.
        """
        self._ensure_thread()
        run = Run(callback=callback)
        if self._event_queue is None:
            put = self._callback_items.put

            def on_event(event_json: bytes | None, msg_json: bytes | None) -> None:
                put((run, event_json, msg_json))

            run.native = NativeCallback(on_event)
        return run

    @property
    def event_queue(self) -> EventQueue | None:
        """The core's event queue new downloaders should use; None: use ``run.native``."""
        return self._event_queue

    def bind(self, run: Run, downloader_id: int) -> None:
        """The core returned ``downloader_id`` for ``run`` (before any start of it)."""
        run.downloader_id = downloader_id
        if self._event_queue is not None:  # only polled items name their run by id
            self._by_id[downloader_id] = run

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
        if self._event_queue is not None:
            return  # the core queued its "released" item behind the last event
        # The core promised no further call: the C callback may go once the queue has
        # been worked off up to here (the marker holds ``run``, not the thunk).
        run.native = None
        self._callback_items.put(_Stopped(run))

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
        if self._event_queue is not None:
            self._event_queue.close()  # the poll returns what is left, then None
        else:
            self._callback_items.put(_SHUTDOWN)
        if thread is threading.current_thread():
            self.mute()
        else:
            thread.join()

    # -- the thread -----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None and not self._shut_down:
                if self._new_event_queue is not None:
                    self._event_queue = self._new_event_queue()
                self._thread = threading.Thread(
                    target=self._loop if self._event_queue is None else self._poll_loop,
                    name=f"TTHSD-dispatch-{next(_thread_numbers)}",
                    daemon=True,  # must not keep the interpreter alive
                )
                self._thread.start()

    def _loop(self) -> None:
        get = self._callback_items.get
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
                _TIlog.exception(_DELIVERY_FAILED)

    def _poll_loop(self) -> None:
        event_queue = self._event_queue
        assert event_queue is not None
        while True:
            raw = event_queue.poll(-1)
            if raw is None:
                return  # closed by shutdown(), and everything delivered
            try:
                items = json.loads(raw)
            except ValueError as exc:
                _TIlog.warning("undecodable batch of events dropped (%s): %r", exc, raw[:200])
                continue
            for item in items if isinstance(items, list) else ():
                try:
                    self._take(item)
                except BaseException:  # noqa: BLE001 - the thread must outlive anything
                    _TIlog.exception(_DELIVERY_FAILED)

    def _take(self, item: Any) -> None:
        """One ``[downloader_id, event, msg]`` item of a polled batch."""
        dl_id, event, msg = item
        run = self._by_id.get(dl_id)
        if run is None:
            _TIlog.debug("event for unknown downloader %r dropped", dl_id)
            return
        if event is None and msg is None:  # released: nothing more will come for the id
            del self._by_id[dl_id]
            with self._cond:
                run.pending_ends = 0
                self._cond.notify_all()
            return
        self._deliver_decoded(run, event, msg, item)

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
        self._deliver_decoded(run, event, msg, (event_json, msg_json))

    def _deliver_decoded(self, run: Run, event: Any, msg: Any, raw: object) -> None:
        if not isinstance(event, dict) or not isinstance(msg, dict):
            _TIlog.warning(
                "downloader %d: event that is not a JSON object dropped: %r",
                run.downloader_id, raw,
            )  # fmt: skip
            return
        run.delivered += 1
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
    callback = cast("Callable[[dict[str, Any], dict[str, Any]], object]", callback)
    try:
        callback(event, msg)
    except BaseException:  # noqa: BLE001 - a user callback never stops the download
        _TIlog.exception(
            "callback %r raised on %s event of downloader %d (the download goes on)",
            getattr(callback, "__qualname__", callback), event.get("Type"), dl_id,
        )  # fmt: skip
