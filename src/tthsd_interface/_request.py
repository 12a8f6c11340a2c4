"""A high-level download request, normalized and checked, and the core downloader made for
it.

* :class:`DownloadRequest`: the URLs and paths (a single URL and path may be plain
  strings), the settings, and the generated task ids events are matched with.
* :func:`create_downloader`: ``get_downloader`` then every setting, raising
  :class:`DownloadRefusedError` with the core's reason where the seed API returns
  ``-1``/``False``; :func:`start_downloader` starts it.

Shared by the blocking functions (``_blocking``), the asyncio API and the command line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Optional, Union, cast

from ._downloader import TTHSDownloader
from ._errors import DownloadRefusedError
from ._tasks import host_cap, mirror_lists
from ._types import Callback
from ._units import parse_rate

__all__ = ["DownloadRequest", "create_downloader", "start_downloader"]

# typing.Union: evaluated at run time, where ``|`` needs Python 3.10.
MirrorsArg = Optional[
    Union[Mapping[str, Sequence[str]], Sequence[str], Sequence[Optional[Sequence[str]]]]
]
"""``mirrors`` of the high-level functions: see :func:`_mirrors`."""

_DEFAULT_RETRY_DELAY_MS = 500
_DEFAULT_MAX_RETRY_DELAY_MS = 30_000
_task_serial = iter(range(1, 2**62))
_serial_lock = threading.Lock()


def _as_list(name: str, value: Any, kinds: tuple[type, ...]) -> list[Any]:
    if isinstance(value, kinds):
        return [value]
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{name} must be str or a sequence of them, not bytes")
    try:
        return list(value)
    except TypeError:
        kind = type(value).__name__
        raise TypeError(f"{name} must be a string or a sequence, not {kind}") from None


def _timeouts_ms(timeouts: float | tuple[float, float] | None) -> tuple[int, int] | None:
    if timeouts is None:
        return None
    if isinstance(timeouts, (int, float)):
        connect = read = float(timeouts)
    else:
        connect, read = (float(t) for t in timeouts)
    if connect <= 0 or read <= 0:
        raise ValueError("timeouts must be positive numbers of seconds")
    return round(connect * 1000), round(read * 1000)


@dataclass(frozen=True)
class DownloadRequest:
    """One high-level download request, normalized and checked (by :meth:`build`).

    ``paths`` are strings in pathlib's form (what the core is given); results turn them
    into :class:`~pathlib.Path` objects.
    """

    urls: tuple[str, ...]
    paths: tuple[str, ...]
    ids: tuple[str, ...]
    checksums: tuple[str | None, ...] | None = None
    show_names: tuple[str, ...] | None = None
    connections: int = 64
    chunk_size_mb: int = 10
    parallel: bool = True
    headers: Mapping[str, str] | None = None
    user_agent: str | None = None
    proxy: str | None = None
    speed_limit: int = 0
    retries: int | None = None
    timeouts_ms: tuple[int, int] | None = None
    durable: bool = True
    name_from_server: bool = False
    overwrite: bool = False
    max_connections_per_host: int | None = None
    #: per URL, the other URLs of the same file (empty: none)
    mirrors: tuple[tuple[str, ...], ...] | None = None

    def __repr__(self) -> str:
        return f"<DownloadRequest {len(self.urls)} file(s), {self.connections} connections>"

    @classmethod
    def build(
        cls,
        urls: str | Sequence[str],
        save_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        connections: int = 64,
        chunk_size_mb: int = 10,
        parallel: bool = True,
        headers: Mapping[str, str] | None = None,
        checksums: str | Sequence[str | None] | None = None,
        show_names: Sequence[str] | None = None,
        user_agent: str | None = None,
        proxy: str | None = None,
        speed_limit: int | str = 0,
        retries: int | None = None,
        timeouts: float | tuple[float, float] | None = None,
        durable: bool = True,
        ids: Sequence[str] | None = None,
        name_from_server: bool = False,
        overwrite: bool = False,
        max_connections_per_host: int | None = None,
        mirrors: MirrorsArg = None,
    ) -> DownloadRequest:
        url_list: list[str] = _as_list("urls", urls, (str,))
        for url in url_list:
            if not isinstance(url, str):
                raise TypeError("urls must hold strings")
        path_list = []
        for given in _as_list("save_paths", save_paths, (str, os.PathLike)):
            path = os.fspath(given)
            if not isinstance(path, str):
                raise TypeError("save_paths must hold str or os.PathLike[str]")
            path_list.append(_pathlib_text(path))
        if len(url_list) != len(path_list):
            raise ValueError(
                f"urls and save_paths must have the same length ({len(url_list)} != "
                f"{len(path_list)})"
            )
        if not url_list:
            raise ValueError("nothing to download: urls is empty")
        sums: tuple[str | None, ...] | None = None
        if checksums is not None:
            sums = tuple(_as_list("checksums", checksums, (str,)))
            if len(sums) != len(url_list):
                raise ValueError(f"checksums has {len(sums)} entries but urls has {len(url_list)}")
        names = None if show_names is None else tuple(_as_list("show_names", show_names, (str,)))
        if names is not None and len(names) != len(url_list):
            raise ValueError(f"show_names has {len(names)} entries but urls has {len(url_list)}")
        if ids is None:
            with _serial_lock:
                serial = next(_task_serial)
            task_ids = tuple(f"tthsd-{os.getpid()}-{serial}-{i + 1}" for i in range(len(url_list)))
        else:
            task_ids = tuple(_as_list("ids", ids, (str,)))
            if len(task_ids) != len(url_list):
                raise ValueError(f"ids has {len(task_ids)} entries but urls has {len(url_list)}")
        mirror_sets = _mirrors(mirrors, urls, url_list)
        if retries is not None and (isinstance(retries, bool) or retries < 0):
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        return cls(
            urls=tuple(url_list),
            paths=tuple(path_list),
            ids=task_ids,
            checksums=sums,
            show_names=names,
            connections=connections,
            chunk_size_mb=chunk_size_mb,
            parallel=bool(parallel),
            headers=None if headers is None else dict(headers),
            user_agent=user_agent,
            proxy=proxy,
            speed_limit=parse_rate(speed_limit),
            retries=retries,
            timeouts_ms=_timeouts_ms(timeouts),
            durable=bool(durable),
            name_from_server=bool(name_from_server),
            overwrite=bool(overwrite),
            max_connections_per_host=host_cap(max_connections_per_host),
            mirrors=mirror_sets,
        )

    def names(self) -> tuple[str, ...]:
        """The show name of each file (its file name unless given)."""
        if self.show_names is not None:
            return self.show_names
        return tuple(_file_name(p) for p in self.paths)


def _mirrors(
    mirrors: MirrorsArg, urls: str | Sequence[str], url_list: list[str]
) -> tuple[tuple[str, ...], ...] | None:
    """``mirrors`` of :func:`download` as one tuple per URL: a mapping from URL to its
    mirrors, a list with one list (or None) per URL, or, for a single URL given as a
    string, the list of its mirrors."""
    if mirrors is None:
        return None
    if isinstance(mirrors, Mapping):
        unknown = [u for u in mirrors if u not in url_list]
        if unknown:
            raise ValueError(f"mirrors names a URL that is not downloaded: {unknown[0]!r}")
        per_url: list[Sequence[str] | None] = [mirrors.get(u) for u in url_list]
    elif isinstance(urls, str) and all(isinstance(m, str) for m in mirrors):
        per_url = [list(cast("Sequence[str]", mirrors))]
    else:
        per_url = list(mirrors)
    checked = mirror_lists(per_url, len(url_list))
    return None if checked is None else tuple(checked)


def _pathlib_text(path: str) -> str:
    """``str(PurePath(path))``, the form ``download`` has always given the core: no
    trailing separator (``out/`` is the file ``out``), no repeated separators, no ``.``
    components."""
    return str(PurePath(path))


def _file_name(path: str) -> str:
    """The last component of a path in pathlib's form (no trailing separator); the whole
    path when it has none (``/``)."""
    return os.path.basename(path) or path


def _refused(dl: TTHSDownloader, what: str) -> DownloadRefusedError:
    reason = dl._last_error() or "the core refused"
    return DownloadRefusedError(f"{what}: {reason}")


def create_downloader(dl: TTHSDownloader, request: DownloadRequest, callback: Callback) -> int:
    """``get_downloader`` for ``request`` then each of its settings; the downloader id.

    Raises :class:`DownloadRefusedError` (after releasing the id) when the core refuses.
    """
    checksums = None if request.checksums is None else list(request.checksums)
    dl_id = dl.get_downloader(
        list(request.urls), list(request.paths), request.connections, request.chunk_size_mb,
        callback, user_agent=request.user_agent, headers=request.headers,
        show_names=request.show_names, ids=list(request.ids), checksums=checksums,
        name_from_server=request.name_from_server, overwrite=request.overwrite,
        max_connections_per_host=request.max_connections_per_host,
        mirrors=None if request.mirrors is None else list(request.mirrors),
    )  # fmt: skip
    if dl_id < 0:
        raise _refused(dl, "the core refused the download")
    settings: list[tuple[str, Callable[[], bool]]] = []
    if request.proxy is not None:
        settings.append(("proxy", lambda: dl.set_proxy(dl_id, request.proxy)))
    if request.speed_limit:
        settings.append(("speed limit", lambda: dl.set_speed_limit(dl_id, request.speed_limit)))
    if request.retries is not None:
        retries = request.retries
        settings.append((
            "retries",
            lambda: dl.set_retry_config(
                dl_id, retries, _DEFAULT_RETRY_DELAY_MS, _DEFAULT_MAX_RETRY_DELAY_MS
            ),
        ))  # fmt: skip
    if request.timeouts_ms is not None:
        connect_ms, read_ms = request.timeouts_ms
        settings.append(("timeouts", lambda: dl.set_timeouts(dl_id, connect_ms, read_ms)))
    if not request.durable:
        settings.append(("durability", lambda: dl.set_durability(dl_id, False)))
    for name, apply in settings:
        if not apply():
            error = _refused(dl, f"the core refused the {name} setting")
            dl.stop_download(dl_id)
            raise error
    return dl_id


def start_downloader(dl: TTHSDownloader, dl_id: int, request: DownloadRequest) -> None:
    if request.parallel:
        started = dl.start_multiple_downloads_by_id(dl_id)
    else:
        started = dl.start_download_by_id(dl_id)
    if not started:
        error = _refused(dl, "the core could not start the download")
        dl.stop_download(dl_id)
        raise error
