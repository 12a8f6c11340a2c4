"""One shard of a distributed job, as a Dask worker runs it: one ``TTHSDownloader`` run
over the shard's files at the same time (``is_multiple``), one :class:`ResultRow` per file.

Idempotent, so that Dask may run a shard again after its worker died: a file already at
its path counts as done (a file appears at its path only by the atomic rename of a
complete copy, see docs/resume.md) and is checked by the core against its checksum when
the row has one; a partial file resumes from its journal.  No exception leaves
:func:`run_shard` for a file's sake: every file gets a row, failures with a code.

Dask is imported only inside a worker, for the progress events and the per-host
semaphores; the module itself imports without it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._downloader import TTHSDownloader
from ._errors import DownloadRefusedError, TTHSDError
from ._manifest import Row, host_of, mirror_path
from ._request import DownloadRequest, _pathlib_text, create_downloader, start_downloader
from ._tracker import Tracker

__all__ = ["PROGRESS_EVERY", "ResultRow", "ShardSpec", "run_shard"]

PROGRESS_EVERY = 0.5
"""Seconds between two progress events of a running shard."""


@dataclass(frozen=True)
class ResultRow:
    """What happened to one URL of a distributed job (``tthsd_interface.dask``)."""

    index: int
    """Its position in the manifest (0-based)."""
    url: str
    path: str
    """Where the file is (or would have been)."""
    ok: bool
    """The file is complete at ``path`` (and matched its checksum, when one was given)."""
    bytes: int
    """Its size when ``ok``; else the bytes that were on disk when it failed."""
    seconds: float
    """From the start of this file to its end, in its last run (0.0 when it was already
    complete)."""
    code: str | None = None
    """None when ``ok``; else the core's error code (``http_status``, ``timeout``,
    ``checksum_mismatch``, ...; see ErrorCode), or one of this layer's: ``duplicate_path``,
    ``refused``, ``stopped``, ``worker_lost``, ``task_error``."""
    message: str | None = None
    """None when ``ok``; else the sentence that says why."""

    def __reduce__(self) -> tuple[type[ResultRow], tuple[Any, ...]]:
        # As a tuple of fields, as Row does: rows come back from the workers by pickle.
        return ResultRow, (
            self.index, self.url, self.path, self.ok, self.bytes, self.seconds, self.code,
            self.message,
        )  # fmt: skip


@dataclass(frozen=True)
class ShardSpec:
    """Everything a worker needs to run one shard (pickled to the worker)."""

    job: str
    number: int
    rows: tuple[Row, ...]
    dest: str
    connections_per_worker: int
    host_connections: int | None = None
    skip_existing: bool = True
    progress: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of :meth:`DownloadRequest.build` (chunk size, headers, ...)."""
    dll_path: str | None = None

    @property
    def progress_topic(self) -> str:
        return f"tthsd-progress-{self.job}"


def target_path(dest: str, row: Row) -> str:
    """Where ``row`` is saved: its path (joined to ``dest`` unless absolute), else
    :func:`mirror_path` under ``dest``."""
    return os.path.join(dest, row.path if row.path is not None else mirror_path(row.url))


def failed(row: Row, path: str, code: str, message: str) -> ResultRow:
    return ResultRow(row.index, row.url, path, False, 0, 0.0, code, message)


def _worker() -> Any:
    """The Dask worker running this task, or None outside one (a plain call, tests)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def connections_for(spec: ShardSpec, worker: Any) -> int:
    """The shard's ``thread_count``: the worker's connections shared among the tasks it
    runs at once, and never more than the per-host cap (each lease of a host's semaphore
    stands for this many connections)."""
    slots = max(1, int(getattr(worker, "state", worker).nthreads)) if worker is not None else 1
    count = max(1, spec.connections_per_worker // slots)
    if spec.host_connections is not None:
        count = min(count, spec.host_connections)
    return count


def leases_per_host(host_connections: int, connections: int) -> int:
    """How many shards may hold one host at once so that ``leases * connections`` stays
    within ``host_connections``."""
    return max(1, host_connections // connections)


@contextmanager
def host_leases(spec: ShardSpec, hosts: Sequence[str], connections: int) -> Iterator[None]:
    """Hold one lease of each host's cluster-wide semaphore while the shard runs.

    Acquired in sorted order, so two shards with overlapping hosts never wait on each
    other in a cycle.  A lease of a worker that died is released by the scheduler after
    ``distributed.scheduler.locks.lease-timeout`` (30 s by default).
    """
    if spec.host_connections is None or _worker() is None:
        yield
        return
    from distributed import Semaphore

    leases = leases_per_host(spec.host_connections, connections)
    with ExitStack() as stack:
        for host in sorted(set(hosts)):
            sem = Semaphore(max_leases=leases, name=f"tthsd-{spec.job}-host-{host}")
            sem.acquire()
            stack.callback(_release, sem)
        yield


def _release(sem: Any) -> None:
    """Give a lease back; one the scheduler already took back (it timed out) is no
    reason to lose the shard's rows."""
    # distributed raises RuntimeError, or others from the scheduler's side, here
    with contextlib.suppress(Exception):
        sem.release()


class _Progress:
    """Sends ``[shard, files ended, bytes]`` to the client, at most every PROGRESS_EVERY s.

    Counts are for the shard's whole run (not deltas), so a shard that Dask runs again
    replaces its earlier counts on the client instead of adding to them.
    """

    def __init__(self, spec: ShardSpec, worker: Any, already: int, already_bytes: int) -> None:
        self._worker = worker if spec.progress else None
        self._topic = spec.progress_topic
        self._number = spec.number
        self._base = (already, already_bytes)
        self._last = 0.0

    def send(self, trackers: Sequence[Tracker], force: bool = False) -> None:
        if self._worker is None:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        files, size = self._base
        for tracker in trackers:
            for f in tracker.files:
                files += f.ended is not None
                size += max(f.downloaded, f.total) if f.success else f.downloaded
        self._worker.log_event(self._topic, [self._number, files, size])


def _run(
    spec: ShardSpec,
    todo: list[tuple[Row, str]],
    connections: int,
    progress: _Progress,
    trackers: list[Tracker],
) -> list[ResultRow]:
    """One run of the core over ``todo``; on a refusal (one bad URL or checksum refuses
    the whole request) the halves are run apart, down to the file that is refused."""
    options = dict(spec.options)
    request = DownloadRequest.build(
        [r.url for r, _ in todo],
        [p for _, p in todo],
        connections=connections,
        parallel=True,
        checksums=[r.checksum for r, _ in todo],
        **options,
    )
    tracker = Tracker(request)
    trackers.append(tracker)
    dl = TTHSDownloader(spec.dll_path)
    try:
        try:
            dl_id = create_downloader(dl, request, tracker.feed_raw)
            start_downloader(dl, dl_id, request)
        except DownloadRefusedError as exc:
            trackers.remove(tracker)
            if len(todo) == 1:
                row, path = todo[0]
                return [failed(row, path, "refused", str(exc))]
            half = len(todo) // 2
            return _run(spec, todo[:half], connections, progress, trackers) + _run(
                spec, todo[half:], connections, progress, trackers
            )
        while not dl.wait(dl_id, timeout=PROGRESS_EVERY / 2):
            progress.send(trackers)
    finally:
        dl.close()
    return _rows(todo, tracker)


def _rows(todo: list[tuple[Row, str]], tracker: Tracker) -> list[ResultRow]:
    results, failures = tracker.outcome()
    done, lost = iter(results), iter(failures)
    rows: list[ResultRow] = []
    for (row, path), f in zip(todo, tracker.files):
        if f.success:
            r = next(done)
            rows.append(ResultRow(row.index, row.url, path, True, r.bytes, r.seconds))
        else:
            x = next(lost)
            seconds = max(0.0, (f.ended or time.monotonic()) - (f.started or f.ended or 0.0))
            rows.append(
                ResultRow(row.index, row.url, path, False, f.downloaded, seconds, x.code, x.message)
            )
    return rows


def run_shard(spec: ShardSpec) -> list[ResultRow]:
    """Download the shard's files; one row per row of the shard, in its order."""
    worker = _worker()
    connections = connections_for(spec, worker)
    out: dict[int, ResultRow] = {}
    todo: list[tuple[Row, str]] = []
    seen: set[str] = set()
    already = already_bytes = 0
    for row in spec.rows:
        path = _pathlib_text(target_path(spec.dest, row))
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            out[row.index] = failed(
                row, path, "duplicate_path", "another row of the same shard has this path"
            )
            continue
        seen.add(key)
        if spec.skip_existing and row.checksum is None and os.path.isfile(path):
            size = os.path.getsize(path)
            out[row.index] = ResultRow(row.index, row.url, path, True, size, 0.0)
            already, already_bytes = already + 1, already_bytes + size
            continue
        todo.append((row, path))
    progress = _Progress(spec, worker, already, already_bytes)
    trackers: list[Tracker] = []
    if todo:
        try:
            with host_leases(spec, [host_of(r.url) for r, _ in todo], connections):
                for result in _run(spec, todo, connections, progress, trackers):
                    out[result.index] = result
        except TTHSDError as exc:  # the core could not be loaded on this worker
            for row, path in todo:
                out.setdefault(row.index, failed(row, path, "task_error", str(exc)))
    progress.send(trackers, force=True)
    return [out[row.index] for row in spec.rows]
