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

# Not ``typing.TYPE_CHECKING``: the package's import leaves typing out (see ``_ffi``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._asyncio import AsyncDownload, AsyncDownloader, download_async, fetch_async, stream
    from ._highlevel import download, fetch
    from ._results import DownloadEvent, FileFailure, FileResult
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

__version__ = "0.1.0"

# The layers above the seed API are imported on first use: ``import asyncio`` alone costs
# about 50 ms and each dataclass a few more, which every short-lived script (and the
# command line) would otherwise pay at start, even one that only uses TTHSDownloader.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("AsyncDownload", "AsyncDownloader", "download_async", "fetch_async", "stream"), "_asyncio"
    ),
    **dict.fromkeys(("download", "fetch"), "_highlevel"),
    **dict.fromkeys(("DownloadEvent", "FileFailure", "FileResult"), "_results"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None and name in __all__:
        # Every other public name is bound at import, except the typed shapes (they need
        # typing at run time, for TypedDict: ~8 ms): those come from ``_types``.
        module = "_types"
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
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
