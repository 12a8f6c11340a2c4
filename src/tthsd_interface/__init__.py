"""tthsd_interface: the Python interface of TT High Speed Downloader (TTHSD).

Drives the native download core ``TTHighSpeedDownloader`` (a Rust cdylib, bundled in the
wheel) through ctypes, with the API of the TTHSD documentation::

    from tthsd_interface import TTHSDownloader

    with TTHSDownloader() as dl:
        dl.start_download(urls=[...], save_paths=[...], callback=on_event)
    # the with block waits for the downloads started inside it

``from TTHSD_interface import TTHSDownloader`` (the documentation's module name) works too.

Beyond the seed API: ``download(urls, paths)`` (blocking) and ``await download_async(...)``
return one :class:`FileResult` per file or raise :class:`DownloadError`;
:class:`AsyncDownloader` gives ``async for`` events and awaitable completion;
``fetch(url) -> bytes`` and ``async for offset, chunk in stream(url)`` deliver bodies
instead of files; ``tthsd`` / ``python -m tthsd_interface`` is the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._downloader import TTHSDownloader
from ._errors import (
    CallbackContextError,
    DownloaderClosedError,
    DownloadError,
    DownloadRefusedError,
    LibraryError,
    LibraryLoadError,
    LibraryNotFoundError,
    TTHSDError,
)
from ._ffi import LIBRARY_ENV, candidate_paths, find_library, library_file_name
from ._log import (
    LOG_FILE_ENV,
    LOG_FILE_NAME,
    current_log_file,
    flush_log,
    set_console_logging,
    set_log_file,
    use_default_log_file,
)
from ._types import (
    Callback,
    EmptyMsg,
    EndOneMsg,
    ErrMsg,
    ErrorCode,
    Event,
    EventType,
    Msg,
    PerformanceStats,
    StartOneMsg,
    TaskStats,
    TextMsg,
    UpdateMsg,
)

if TYPE_CHECKING:
    from ._asyncio import AsyncDownload, AsyncDownloader, download_async, fetch_async, stream
    from ._blocking import download, fetch
    from ._results import DownloadEvent, FileFailure, FileResult, SourceShare

__version__ = "0.1.0"

# The asyncio layer is imported on the first use of one of its names.  ``import asyncio``
# is +33 ms of start-up (measured on the 2-core test machine, min of 21 runs over the
# package's other imports), ~8% of bench workload 3 through TTHSDownloader there
# (0.42 s), and the seed API, download(), fetch() and the command line never need it.
#
# The high-level layer (download(), fetch() and their result types) likewise: it brings
# dataclasses, tempfile, shutil and the progress display, ~20 ms that the seed API
# (TTHSDownloader, which bench workload 3 drives) never needs.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("AsyncDownload", "AsyncDownloader", "download_async", "fetch_async", "stream"),
        "._asyncio",
    ),
    **dict.fromkeys(("download", "fetch"), "._blocking"),
    **dict.fromkeys(("DownloadEvent", "FileFailure", "FileResult", "SourceShare"), "._results"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AsyncDownload",
    "AsyncDownloader",
    "DownloadError",
    "DownloadEvent",
    "DownloadRefusedError",
    "FileFailure",
    "FileResult",
    "SourceShare",
    "download",
    "download_async",
    "fetch",
    "fetch_async",
    "stream",
    "LIBRARY_ENV",
    "LOG_FILE_ENV",
    "LOG_FILE_NAME",
    "Callback",
    "CallbackContextError",
    "DownloaderClosedError",
    "EmptyMsg",
    "EndOneMsg",
    "ErrMsg",
    "ErrorCode",
    "Event",
    "EventType",
    "LibraryError",
    "LibraryLoadError",
    "LibraryNotFoundError",
    "Msg",
    "PerformanceStats",
    "StartOneMsg",
    "TTHSDError",
    "TTHSDownloader",
    "TaskStats",
    "TextMsg",
    "UpdateMsg",
    "__version__",
    "candidate_paths",
    "current_log_file",
    "find_library",
    "flush_log",
    "library_file_name",
    "set_console_logging",
    "set_log_file",
    "use_default_log_file",
]
