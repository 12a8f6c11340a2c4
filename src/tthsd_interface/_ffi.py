"""The TTHighSpeedDownloader library, loaded and wrapped.

This is the only module of the package that touches ``ctypes`` pointers.  It

* finds the library (:func:`candidate_paths`, :func:`find_library`): an explicit path, then
  the environment variable ``TTHSD_LIBRARY``, then the copy bundled inside this package,
  and only where the package has none (a source checkout) ``TTHighSpeedDownloader.<ext>``
  in the current directory (what the TTHSD documentation promises). The bundled copy
  comes first because the current directory is where downloads land: a download named
  like the core must never become the core the next run executes. The first candidate
  that exists is loaded, and when none does, :class:`LibraryNotFoundError` names every
  path tried; a core of an ABI version this package does not know is refused with
  :class:`LibraryLoadError`;
* declares every export of ``native/include/tthsd.h`` with the one table of them,
  ``_prototypes.PROTOTYPES`` (prototypes, ``argtypes`` and ``restype``);
* wraps them in :class:`NativeLibrary`, whose methods take and return plain Python values
  (``int``, ``str``, ``dict``) and never raise for an unknown downloader id: the core's
  ``-1`` comes back as ``-1``, and :meth:`NativeLibrary.last_error` tells why.

Libraries of the Go-era layout (camel-case exports only) are accepted too: each operation
falls back to its camel-case alias, and operations that such a library lacks return ``-1``
with a reason in :meth:`NativeLibrary.last_error`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from ctypes import c_bool
from pathlib import Path
from typing import Any, Final

from ._errors import LibraryLoadError, LibraryNotFoundError
from ._prototypes import CALLBACK, PROTOTYPES

__all__ = [
    "LIBRARY_ENV",
    "CreateArgs",
    "EventQueue",
    "NativeCallback",
    "NativeLibrary",
    "candidate_paths",
    "find_library",
    "library_file_name",
    "load_library",
]

LIBRARY_ENV: Final = "TTHSD_LIBRARY"
"""Environment variable naming the library file to load."""

_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1


def library_file_name(platform: str = sys.platform) -> str:
    """``TTHighSpeedDownloader.dll`` / ``.dylib`` / ``.so``, as the TTHSD documentation names it."""
    if platform.startswith(("win32", "cygwin")):
        return "TTHighSpeedDownloader.dll"
    if platform == "darwin":
        return "TTHighSpeedDownloader.dylib"
    return "TTHighSpeedDownloader.so"


def _cwd_file_names(platform: str) -> list[str]:
    names = [library_file_name(platform)]
    if not platform.startswith(("win32", "cygwin")):
        # What cargo names the cdylib, for a library copied straight out of target/.
        names.append("lib" + names[0])
    return names


_PACKAGE_DIR: Final = os.path.dirname(os.path.realpath(__file__))


def candidate_paths(
    dll_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    package_dir: str | os.PathLike[str] | None = None,
    platform: str = sys.platform,
) -> list[Path]:
    """The paths looked at, in order, to find the library.

    An explicit ``dll_path`` is the only candidate (a folder means the library file inside
    it).  Otherwise: ``$TTHSD_LIBRARY`` if set and non-empty, then this package's folder,
    then the current directory (reached only when the package has no core of its own).
    The keyword arguments exist for tests.
    """
    return [
        Path(p)
        for p in _candidates(
            dll_path, environ=environ, cwd=cwd, package_dir=package_dir, platform=platform
        )
    ]


def _candidates(
    dll_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    package_dir: str | os.PathLike[str] | None = None,
    platform: str = sys.platform,
) -> list[str]:
    """:func:`candidate_paths` as strings, what ``ctypes.CDLL`` and the error take."""
    join = os.path.join
    if dll_path is not None:
        path = os.fspath(dll_path)
        if os.path.isdir(path):
            return [join(path, name) for name in _cwd_file_names(platform)]
        return [path]
    env = os.environ if environ is None else environ
    base = os.getcwd() if cwd is None else os.fspath(cwd)
    pkg = _PACKAGE_DIR if package_dir is None else os.fspath(package_dir)
    paths: list[str] = []
    from_env = env.get(LIBRARY_ENV, "")
    if from_env:
        paths.append(from_env)
    paths.append(join(pkg, library_file_name(platform)))
    paths += [join(base, name) for name in _cwd_file_names(platform)]
    return [p if os.path.isabs(p) else join(base, p) for p in paths]


def find_library(dll_path: str | os.PathLike[str] | None = None) -> Path:
    """The first existing candidate of :func:`candidate_paths`, made absolute.

    Raises :class:`LibraryNotFoundError` naming every path tried.
    """
    return Path(_find(dll_path))


def _find(dll_path: str | os.PathLike[str] | None) -> str:
    tried = _candidates(dll_path)
    for path in tried:
        if os.path.isfile(path):
            # Not os.path.abspath: it folds ``..`` by text, which through a symlink names
            # another file than the one just found (Path.absolute() did not fold).
            return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    raise LibraryNotFoundError(tried)


#: ``tthsd_abi_version()`` values whose contract this package implements.
KNOWN_ABI_VERSIONS: Final = frozenset({1})

# All of these, or the callback is used (earlier cores have none of them).
_QUEUE_EXPORTS: Final = (
    "tthsd_queue_new",
    "tthsd_get_downloader_queued",
    "tthsd_queue_poll",
    "tthsd_queue_close",
)

# Snake-case name -> Go-era alias used when a library lacks the snake-case export.
_ALIASES: Final[Mapping[str, str]] = {
    "start_download": "startDownload",
    "get_downloader": "getDownloader",
    "start_download_id": "startDownload_ID",
    "start_multiple_downloads_id": "startMultipleDownloads_ID",
    "pause_download": "pauseDownload",
    "resume_download": "resumeDownload",
    "stop_download": "stopDownload",
}


class NativeCallback:
    """A C callback of type ``tthsd_callback`` wrapping a Python function.

    The core holds the raw function pointer; this object owns the ctypes thunk behind it.
    Keep it referenced for as long as the core may call it, i.e. until ``stop_download`` of
    the downloader it was given to has returned.
    """

    __slots__ = ("__weakref__", "_thunk")

    def __init__(self, fn: Callable[[bytes | None, bytes | None], None]) -> None:
        def thunk(event_json: bytes | None, msg_json: bytes | None) -> None:
            # Runs on the core's event thread: nothing may unwind into C.
            with contextlib.suppress(BaseException):
                fn(event_json, msg_json)

        self._thunk = CALLBACK(thunk)


class CreateArgs:
    """What every creating export takes besides the event delivery (callback or queue)."""

    __slots__ = (
        "chunk_size_mb",
        "headers_json",
        "remote_callback_url",
        "task_count",
        "tasks_json",
        "thread_count",
        "use_callback_url",
        "use_socket",
        "user_agent",
    )

    def __init__(
        self,
        tasks_json: str,
        task_count: int,
        thread_count: int,
        chunk_size_mb: int,
        use_callback_url: bool,
        user_agent: str | None,
        remote_callback_url: str | None,
        use_socket: bool | None,
        headers_json: str | None,
    ) -> None:
        self.tasks_json = tasks_json
        self.task_count = task_count
        self.thread_count = thread_count
        self.chunk_size_mb = chunk_size_mb
        self.use_callback_url = use_callback_url
        self.user_agent = user_agent
        self.remote_callback_url = remote_callback_url
        self.use_socket = use_socket
        self.headers_json = headers_json

    def head(self) -> tuple[Any, ...]:
        """The C arguments before the callback."""
        return (_c_str(self.tasks_json), self.task_count, self.thread_count, self.chunk_size_mb)

    def tail(self) -> tuple[Any, ...]:
        """The C arguments from ``use_callback_url`` to ``use_socket``."""
        return (
            bool(self.use_callback_url), _c_str(self.user_agent),
            _c_str(self.remote_callback_url), _c_bool_p(self.use_socket),
        )  # fmt: skip


class EventQueue:
    """An event queue of the core (``tthsd_queue_*``; ``EventQueue`` in
    native/ffi/src/queue.rs is the other side of it): the host's own thread takes the
    events in batches, instead of the core calling into Python once per event.

    Why: each call of a ctypes callback from a core thread makes CPython build and tear
    down a thread state, which dominated the cost of events on many small files.

    :meth:`poll` is for one thread at a time (the dispatcher's); the rest may be called
    from any thread.
    """

    _INITIAL_BUFFER: Final = 256 * 1024

    def __init__(self, lib: NativeLibrary, queue_id: int) -> None:
        self._lib = lib
        self.queue_id = queue_id
        self._buf = ctypes.create_string_buffer(self._INITIAL_BUFFER)

    def poll(self, timeout_ms: int = -1) -> bytes | None:
        """Waits up to ``timeout_ms`` (negative: for ever) and returns the queued items as
        the JSON text of ``[[downloader_id, event, msg], ...]`` (``b""`` on timeout), or
        None once the queue is closed and empty."""
        fn = self._lib._fns["tthsd_queue_poll"]
        while True:
            size = len(self._buf)
            n = int(fn(self.queue_id, self._buf, size, timeout_ms))
            if n < 0:
                return None
            if n < size:
                return self._buf.raw[:n]
            self._buf = ctypes.create_string_buffer(n + 1)  # one item larger than the buffer

    def close(self) -> None:
        """Wakes the poller; it gets what is left, then None."""
        self._lib._fns["tthsd_queue_close"](self.queue_id)

    def get_downloader(self, spec: CreateArgs) -> int:
        """``tthsd_get_downloader_queued``: a new downloader id (> 0) whose events come to
        this queue, created but not started; -1."""
        self._lib._local.error = None
        fn = self._lib._fns["tthsd_get_downloader_queued"]
        return int(fn(self.queue_id, *spec.head(), *spec.tail(), _c_str(spec.headers_json)))


def _c_str(value: str | None) -> bytes | None:
    if value is None:
        return None
    if "\0" in value:
        raise ValueError(f"string contains a NUL character: {value!r}")
    return value.encode("utf-8")


def _c_bool_p(value: bool | None) -> Any:
    """``const bool*``: NULL for None ("not given"), else a pointer to a bool."""
    return None if value is None else ctypes.pointer(c_bool(bool(value)))


def _check_id(downloader_id: int) -> bool:
    if isinstance(downloader_id, bool) or not isinstance(downloader_id, int):
        raise TypeError(f"downloader id must be an int, not {type(downloader_id).__name__}")
    return _INT_MIN <= downloader_id <= _INT_MAX


def _check_unsigned(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}, got {value}")


class NativeLibrary:
    """One loaded TTHighSpeedDownloader library, with typed Python wrappers.

    Thread-safe: the core's functions may be called from any thread, and the only Python
    state is per thread (the reason of a failure detected on the Python side).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            self._lib = ctypes.CDLL(self.path)
        except OSError as exc:
            raise LibraryLoadError(self.path, str(exc)) from exc
        self._fns: dict[str, Any] = {}
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(self._lib, name)
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            self._fns[name] = fn
        if not ({"start_download", "startDownload"} & self._fns.keys()):
            raise LibraryLoadError(
                self.path, "exports neither start_download nor startDownload: not a TTHSD core"
            )
        abi = self.abi_version
        # Cores without the export (the Go and earlier Rust ones) speak version 1.
        if abi is not None and abi not in KNOWN_ABI_VERSIONS:
            known = ", ".join(str(v) for v in sorted(KNOWN_ABI_VERSIONS))
            raise LibraryLoadError(
                self.path,
                f"its ABI version is {abi}; this package speaks ABI version {known}",
            )
        self._local = threading.local()

    # -- introspection
    def exports(self, name: str) -> bool:
        """Whether the library exports the function ``name``."""
        return name in self._fns

    @property
    def version(self) -> str | None:
        """``tthsd_version()``, or None for a library without it."""
        fn = self._fns.get("tthsd_version")
        if fn is None:
            return None
        raw: bytes | None = fn()
        return None if raw is None else raw.decode("utf-8", "replace")

    @property
    def abi_version(self) -> int | None:
        """``tthsd_abi_version()``, or None for a library without it."""
        fn = self._fns.get("tthsd_abi_version")
        return None if fn is None else int(fn())

    def new_event_queue(self) -> EventQueue | None:
        """A new event queue, or None if this library has none (earlier cores) or
        ``TTHSD_EVENT_QUEUE=0`` asks for the callback path."""
        if os.environ.get("TTHSD_EVENT_QUEUE", "1") == "0":
            return None
        if not all(name in self._fns for name in _QUEUE_EXPORTS):
            return None
        queue_id = int(self._fns["tthsd_queue_new"]())
        return EventQueue(self, queue_id) if queue_id > 0 else None

    # -- errors
    def _fail(self, reason: str) -> int:
        self._local.error = reason
        return -1

    def set_error(self, reason: str) -> None:
        """Make ``reason`` what :meth:`last_error` reports on this thread."""
        self._local.error = reason

    def _fn(self, name: str) -> Any:
        """The export ``name`` or its Go-era alias; None if the library has neither."""
        self._local.error = None
        fn = self._fns.get(name)
        if fn is None and name in _ALIASES:
            fn = self._fns.get(_ALIASES[name])
        return fn

    def last_error(self) -> str:
        """Why the last failed call on this thread failed ("" if it did not fail)."""
        local_error: str | None = getattr(self._local, "error", None)
        if local_error is not None:
            return local_error
        fn = self._fns.get("tthsd_last_error")
        if fn is None:
            return ""
        size = 1024
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            full = int(fn(buf, size))
            if full < size:
                break
            size = full + 1
        return buf.value.decode("utf-8", "replace")

    # -- creating downloaders
    def start_download(
        self, spec: CreateArgs, callback: NativeCallback, is_multiple: bool | None
    ) -> int:
        """``start_download``: a new downloader id (> 0), started; -1 on failure."""
        args = (*spec.head(), callback._thunk, *spec.tail(), _c_bool_p(is_multiple))
        fn = self._fns.get("start_download")
        self._local.error = None
        if fn is not None:
            return int(fn(*args, _c_str(spec.headers_json)))
        if spec.headers_json is not None:
            return self._fail("this library (Go-era layout) does not support headers")
        return int(self._fns["startDownload"](*args))

    def get_downloader(self, spec: CreateArgs, callback: NativeCallback) -> int:
        """``get_downloader``: a new downloader id (> 0), created but not started; -1."""
        args = (*spec.head(), callback._thunk, *spec.tail())
        fn = self._fns.get("get_downloader")
        self._local.error = None
        if fn is not None:
            return int(fn(*args, _c_str(spec.headers_json)))
        if spec.headers_json is not None:
            return self._fail("this library (Go-era layout) does not support headers")
        alias = self._fns.get("getDownloader")
        if alias is None:
            return self._fail("this library exports neither get_downloader nor getDownloader")
        return int(alias(*args))

    # -- controlling downloaders
    def _call_id(self, name: str, downloader_id: int, *rest: Any) -> int:
        fn = self._fn(name)
        if fn is None:
            return self._fail(f"this library does not export {name}")
        if not _check_id(downloader_id):
            return self._fail(f"no downloader with id {downloader_id}")
        return int(fn(downloader_id, *rest))

    def start_download_id(self, downloader_id: int) -> int:
        """``start_download_id``: run the tasks one after another. 0, or -1."""
        return self._call_id("start_download_id", downloader_id)

    def start_multiple_downloads_id(self, downloader_id: int) -> int:
        """``start_multiple_downloads_id``: run the tasks at the same time. 0, or -1."""
        return self._call_id("start_multiple_downloads_id", downloader_id)

    def pause_download(self, downloader_id: int) -> int:
        """``pause_download``. 0, or -1."""
        return self._call_id("pause_download", downloader_id)

    def resume_download(self, downloader_id: int) -> int:
        """``resume_download``. 0, or -1."""
        return self._call_id("resume_download", downloader_id)

    def stop_download(self, downloader_id: int) -> int:
        """``stop_download``: returns once the core will make no more callbacks for the id."""
        return self._call_id("stop_download", downloader_id)

    def set_speed_limit(self, downloader_id: int, bytes_per_second: int) -> int:
        """``set_speed_limit``; 0 means unlimited. 0, or -1."""
        _check_unsigned("bytes_per_second", bytes_per_second, _U64_MAX)
        return self._call_id("set_speed_limit", downloader_id, bytes_per_second)

    def set_proxy(self, downloader_id: int, proxy_url: str | None) -> int:
        """``set_proxy``; None or "" means no proxy. 0, or -1."""
        return self._call_id("set_proxy", downloader_id, _c_str(proxy_url))

    def set_retry_config(
        self, downloader_id: int, max_retries: int, retry_delay_ms: int, max_retry_delay_ms: int
    ) -> int:
        """``set_retry_config``. 0, or -1."""
        _check_unsigned("max_retries", max_retries, _U32_MAX)
        _check_unsigned("retry_delay_ms", retry_delay_ms, _U64_MAX)
        _check_unsigned("max_retry_delay_ms", max_retry_delay_ms, _U64_MAX)
        return self._call_id(
            "set_retry_config", downloader_id, max_retries, retry_delay_ms, max_retry_delay_ms
        )

    def set_timeouts(
        self, downloader_id: int, connect_timeout_ms: int, read_timeout_ms: int
    ) -> int:
        """``tthsd_set_timeouts``. 0, or -1."""
        _check_unsigned("connect_timeout_ms", connect_timeout_ms, _U64_MAX)
        _check_unsigned("read_timeout_ms", read_timeout_ms, _U64_MAX)
        return self._call_id(
            "tthsd_set_timeouts", downloader_id, connect_timeout_ms, read_timeout_ms
        )

    def set_durability(self, downloader_id: int, durable: bool) -> int:
        """``tthsd_set_durability``. 0, or -1."""
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be a bool, not {type(durable).__name__}")
        return self._call_id("tthsd_set_durability", downloader_id, durable)

    def get_performance_stats(self, downloader_id: int) -> dict[str, Any]:
        """``get_performance_stats``, decoded; ``{}`` for an unknown id or a library without it."""
        fn = self._fn("get_performance_stats")
        if fn is None or not _check_id(downloader_id):
            return {}
        pointer: int | None = fn(downloader_id)
        if not pointer:
            return {}
        try:
            raw = ctypes.string_at(pointer)
        finally:
            free = self._fns.get("free_string")
            if free is not None:
                free(pointer)
        try:
            value = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


_cache: dict[str, NativeLibrary] = {}
_cache_lock = threading.Lock()


def load_library(dll_path: str | os.PathLike[str] | None = None) -> NativeLibrary:
    """Find (see :func:`find_library`) and load the library; one instance per file."""
    path = _find(dll_path)
    key = os.path.realpath(path)
    with _cache_lock:
        lib = _cache.get(key)
        if lib is None:
            lib = NativeLibrary(path)
            _cache[key] = lib
        return lib
