"""A download list fanned out over a Dask cluster (``pip install 'tthsd_interface[dask]'``).

::

    from dask.distributed import Client
    from tthsd_interface.dask import download

    client = Client("tcp://scheduler:8786")
    table = download("urls.tsv", "/shared/data", client, files_per_task=500)
    print(table[~table.ok])            # failures, with their codes

The manifest (an iterable of rows or a file, see :func:`read_manifest`) is read as a
stream and cut into shards of ``files_per_task`` files; each shard is one Dask task that
runs one ``TTHSDownloader`` over its files at the same time (``is_multiple``) and returns
one :class:`ResultRow` per file.  At most ``max_pending`` shards are in the cluster at
once, so the client holds only those, never the whole list.  See docs/distributed.md.

Importing this module imports Dask; ``import tthsd_interface`` never does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

try:
    from distributed import Client, KilledWorker, as_completed, get_client
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tthsd_interface.dask needs Dask's distributed scheduler: "
        "pip install 'tthsd_interface[dask]'"
    ) from exc

from ._jobprogress import JobProgress, ProgressArg, count_rows
from ._manifest import Manifest, Row, read_manifest, shards
from ._request import _pathlib_text
from ._shard import ResultRow, ShardSpec, failed, run_shard, target_path

if TYPE_CHECKING:
    import pandas

__all__ = ["COLUMNS", "ResultRow", "Row", "download", "iter_download", "read_manifest"]

COLUMNS = ("index", "url", "path", "ok", "bytes", "seconds", "code", "message")
"""The columns of the table :func:`download` returns (the fields of :class:`ResultRow`)."""


def _client(client: Client | None) -> tuple[Client, Any]:
    """``client``, else the current default client, else a LocalCluster of this machine
    (returned second, to be closed by the caller)."""
    if client is not None:
        return client, None
    try:
        return get_client(), None
    except ValueError:
        from distributed import LocalCluster

        cluster = LocalCluster(threads_per_worker=1, processes=True)
        return Client(cluster), cluster


def iter_download(
    manifest: Manifest,
    dest: str | os.PathLike[str],
    client: Client | None = None,
    *,
    files_per_task: int = 200,
    connections_per_worker: int = 64,
    checksums: Iterable[str | None] | None = None,
    host_connections: int | None = None,
    skip_existing: bool = True,
    progress: ProgressArg = False,
    max_pending: int | None = None,
    chunk_size_mb: int = 10,
    headers: Mapping[str, str] | None = None,
    user_agent: str | None = None,
    proxy: str | None = None,
    speed_limit: int | str = 0,
    retries: int | None = None,
    timeouts: float | tuple[float, float] | None = None,
    durable: bool = True,
    dll_path: str | os.PathLike[str] | None = None,
) -> Iterator[ResultRow]:
    """Like :func:`download`, but yields the rows shard by shard as shards end (in the
    order they end), holding none of them: for lists too long for one table in memory."""
    if connections_per_worker < 1:
        raise ValueError("connections_per_worker must be at least 1")
    if host_connections is not None and host_connections < 1:
        raise ValueError("host_connections must be at least 1 (or None: no cap)")
    folder = os.path.abspath(os.fspath(dest))
    options: dict[str, Any] = {
        "chunk_size_mb": chunk_size_mb, "headers": None if headers is None else dict(headers),
        "user_agent": user_agent, "proxy": proxy, "speed_limit": speed_limit,
        "retries": retries, "timeouts": timeouts, "durable": durable,
    }  # fmt: skip
    library = None if dll_path is None else os.fspath(dll_path)
    total = None
    if progress is True and isinstance(manifest, (str, os.PathLike)):
        total = count_rows(read_manifest(manifest))
    elif progress is True and hasattr(manifest, "__len__"):
        total = len(manifest)  # type: ignore[arg-type]
    rows = read_manifest(manifest, checksums)
    batches = enumerate(shards(rows, files_per_task))
    dask_client, cluster = _client(client)
    job = uuid.uuid4().hex[:12]
    meter = JobProgress(total, show=progress)
    topic = f"tthsd-progress-{job}"
    if progress:
        dask_client.subscribe_topic(topic, meter.on_event)
    if max_pending is None:
        max_pending = 2 * sum(dask_client.nthreads().values()) + 2
    pending: dict[str, ShardSpec] = {}
    done = as_completed()

    def submit_next() -> bool:
        number, batch = next(batches, (-1, None))
        if batch is None:
            return False
        spec = ShardSpec(
            job=job, number=number, rows=tuple(batch), dest=folder,
            connections_per_worker=connections_per_worker, host_connections=host_connections,
            skip_existing=skip_existing, progress=bool(progress), options=options,
            dll_path=library,
        )  # fmt: skip
        key = f"tthsd-{job}-{number}"
        future = dask_client.submit(run_shard, spec, key=key, pure=False)
        pending[key] = spec
        done.add(future)
        return True

    try:
        while len(pending) < max_pending and submit_next():
            pass
        for future in done:
            spec = pending.pop(str(future.key))
            try:
                result: list[ResultRow] = future.result()
            except KilledWorker as exc:  # its workers died more often than allowed
                result = _all_failed(spec, "worker_lost", f"the shard's workers died: {exc}")
            except Exception as exc:  # noqa: BLE001 - every file still gets its row
                result = _all_failed(spec, "task_error", f"{type(exc).__name__}: {exc}")
            future.release()
            meter.shard_done(spec.number, result)
            yield from result
            while len(pending) < max_pending and submit_next():
                pass
    finally:
        if pending:
            dask_client.cancel(list(done.futures))
        if progress:
            dask_client.unsubscribe_topic(topic)
        meter.close()
        if cluster is not None:
            dask_client.close()
            cluster.close()


def _all_failed(spec: ShardSpec, code: str, message: str) -> list[ResultRow]:
    return [failed(r, _pathlib_text(target_path(spec.dest, r)), code, message) for r in spec.rows]


@overload
def download(
    manifest: Manifest,
    dest: str | os.PathLike[str],
    client: Client | None = None,
    *,
    files_per_task: int = ...,
    connections_per_worker: int = ...,
    checksums: Iterable[str | None] | None = ...,
    host_connections: int | None = ...,
    skip_existing: bool = ...,
    progress: ProgressArg = ...,
    frame: Literal[False],
    max_pending: int | None = ...,
    **options: Any,
) -> list[ResultRow]: ...


@overload
def download(
    manifest: Manifest,
    dest: str | os.PathLike[str],
    client: Client | None = None,
    *,
    files_per_task: int = ...,
    connections_per_worker: int = ...,
    checksums: Iterable[str | None] | None = ...,
    host_connections: int | None = ...,
    skip_existing: bool = ...,
    progress: ProgressArg = ...,
    frame: Literal[True],
    max_pending: int | None = ...,
    **options: Any,
) -> pandas.DataFrame: ...


@overload
def download(
    manifest: Manifest,
    dest: str | os.PathLike[str],
    client: Client | None = None,
    *,
    files_per_task: int = ...,
    connections_per_worker: int = ...,
    checksums: Iterable[str | None] | None = ...,
    host_connections: int | None = ...,
    skip_existing: bool = ...,
    progress: ProgressArg = ...,
    frame: None = ...,
    max_pending: int | None = ...,
    **options: Any,
) -> Any: ...


def download(
    manifest: Manifest,
    dest: str | os.PathLike[str],
    client: Client | None = None,
    *,
    files_per_task: int = 200,
    connections_per_worker: int = 64,
    checksums: Iterable[str | None] | None = None,
    host_connections: int | None = None,
    skip_existing: bool = True,
    progress: ProgressArg = True,
    frame: bool | None = None,
    max_pending: int | None = None,
    **options: Any,
) -> Any:
    """Download every file of ``manifest`` into ``dest`` on the workers of ``client``.

    ``manifest``: a file (one URL per line, optionally with a tab-separated path and
    checksum; or a ``.csv`` with ``url``, ``path``, ``checksum`` columns) or an iterable
    of URLs, ``(url, path, checksum)`` tuples or mappings with those keys.  A relative
    path is under ``dest``; a row without one goes to ``dest/host/path/of/the/url``.
    ``dest`` must be the same folder on every worker (shared storage), and is made
    absolute on the client.  ``client``: a ``distributed.Client``; default the current
    client, else a local cluster started for this call.

    ``files_per_task``: files per shard (one Dask task, one core run with ``is_multiple``).
    ``connections_per_worker``: connections of each worker, shared among the tasks it
    runs at once.  ``checksums``: one ``"sha256:<hex>"``/``"md5:<hex>"``/None per row
    (a row's own checksum wins).  ``host_connections``: the most connections open to one
    host over the whole cluster.  ``skip_existing``: a file already at its path is done
    (checked against the checksum when the row has one).  ``progress``: one bar on
    standard error for the whole job, fed by the workers while they run (or a callable
    receiving ``(files ended, bytes, files failed)``).  ``frame``: a pandas DataFrame
    (default when pandas imports) or a list of :class:`ResultRow` (``False``).
    ``options``: ``chunk_size_mb``, ``headers``, ``user_agent``, ``proxy``,
    ``speed_limit`` (per shard), ``retries``, ``timeouts``, ``durable``, ``dll_path``.

    Returns one row per manifest row, in manifest order; failed files are rows with
    ``ok`` False and a ``code``, never left out.  Raises only for the job itself (a
    malformed manifest, an unreachable scheduler).
    """
    rows = sorted(
        iter_download(
            manifest, dest, client, files_per_task=files_per_task,
            connections_per_worker=connections_per_worker, checksums=checksums,
            host_connections=host_connections, skip_existing=skip_existing,
            progress=progress, max_pending=max_pending, **options,
        ),
        key=lambda r: r.index,
    )  # fmt: skip
    if frame is False:
        return rows
    try:
        import pandas
    except ImportError:
        if frame:
            raise
        return rows
    return pandas.DataFrame.from_records(
        [tuple(getattr(r, c) for c in COLUMNS) for r in rows], columns=list(COLUMNS)
    )
