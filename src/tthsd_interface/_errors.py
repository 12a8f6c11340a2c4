"""The exceptions this package raises, all rooted in :class:`TTHSDError`.

::

    TTHSDError                      anything this package raises on purpose
     ├── LibraryError               the native core could not be used
     │    ├── LibraryNotFoundError  no candidate file exists (names every path tried)
     │    └── LibraryLoadError      a file exists but could not be loaded or lacks exports
     ├── DownloaderClosedError      a download was started on a closed TTHSDownloader
     ├── CallbackContextError       a blocking call (wait) was made from inside a callback
     ├── DownloadRefusedError       the core refused to create a download or take a setting
     │                              (high-level API; also a ValueError)
     └── DownloadError              files of a high-level download did not complete;
                                    ``failures`` lists each with its error code

In the seed API (:class:`TTHSDownloader`) failures of the core on a given download are
*not* exceptions: as the TTHSD API has always done, ``start_download`` returns ``-1`` and
the control methods return ``False``, with the core's reason logged through ``_TIlog``.
The high-level API (``download``, ``download_async``, ``fetch``, ``stream``,
``AsyncDownloader``) raises :class:`DownloadRefusedError` and :class:`DownloadError`
instead.  Invalid Python arguments raise the ordinary built-in exceptions
(``ValueError`` for mismatched list lengths, ``TypeError`` for wrong types).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the seed API never builds results
    from ._results import FileFailure, FileResult

__all__ = [
    "CallbackContextError",
    "DownloadError",
    "DownloadRefusedError",
    "DownloaderClosedError",
    "LibraryError",
    "LibraryLoadError",
    "LibraryNotFoundError",
    "TTHSDError",
]


class TTHSDError(Exception):
    """Base class of every exception raised by tthsd_interface."""


class LibraryError(TTHSDError, OSError):
    """The native TTHighSpeedDownloader library could not be used."""


class LibraryNotFoundError(LibraryError):
    """No candidate path held the native library.

    ``tried`` lists every path that was looked at, in lookup order.
    """

    def __init__(self, tried: Sequence[str], reasons: Sequence[str] = ()) -> None:
        self.tried: tuple[str, ...] = tuple(tried)
        self.reasons: tuple[str, ...] = tuple(reasons)
        lines = ["TTHighSpeedDownloader library not found; tried, in order:"]
        lines += [f"  {path}" for path in self.tried]
        lines += [f"  ({reason})" for reason in self.reasons]
        lines.append(
            "Pass dll_path=..., set TTHSD_LIBRARY, or reinstall the package (it bundles the core)."
        )
        super().__init__("\n".join(lines))


class LibraryLoadError(LibraryError):
    """A library file exists but could not be loaded, or does not export the TTHSD ABI."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot load TTHighSpeedDownloader library {path!r}: {reason}")


class DownloaderClosedError(TTHSDError, RuntimeError):
    """A download was started on a TTHSDownloader after ``close()``."""


class CallbackContextError(TTHSDError, RuntimeError):
    """A call that waits for events was made from inside an event callback.

    Callbacks run on the downloader's dispatcher thread, which is the thread that would
    have to deliver the awaited ``end`` event: waiting there could never finish.
    """


class DownloadRefusedError(TTHSDError, ValueError):
    """The core refused to create a download, or to take one of its settings.

    Raised by the high-level API where the seed API returns ``-1`` or ``False``: an
    invalid URL or unsupported scheme, two files with the same path, a proxy URL the core
    does not accept...  ``reason`` is the core's explanation.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DownloadError(TTHSDError):
    """One or more files of a high-level download did not complete.

    ``failures`` holds one :class:`FileFailure` per file that failed (``url``, ``path``,
    ``code``, ``message``); ``results`` holds a :class:`FileResult` per file that did
    complete.  ``code`` is the core's machine code (``http_status``,
    ``checksum_mismatch``, ``timeout``...; see :data:`ErrorCode`), or ``"stopped"`` for
    a file that had not completed when the download was stopped.
    """

    def __init__(self, failures: Sequence[FileFailure], results: Sequence[FileResult] = ()) -> None:
        self.failures: tuple[FileFailure, ...] = tuple(failures)
        self.results: tuple[FileResult, ...] = tuple(results)
        total = len(self.failures) + len(self.results)
        lines = [f"{len(self.failures)} of {total} file(s) failed:"]
        lines += [f"  {f.url} -> {f.path}: [{f.code}] {f.message}" for f in self.failures]
        super().__init__("\n".join(lines))

    @property
    def codes(self) -> tuple[str, ...]:
        """The error code of each failed file, in order."""
        return tuple(f.code for f in self.failures)
