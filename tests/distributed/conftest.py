"""Fixtures of the tests of ``tthsd_interface.dask``: a LocalCluster of 2 worker processes
(one thread each) and loopback servers that serve many small files.

Skipped as a whole where Dask is not installed (it is in the ``test`` extra; the nox
sessions of tests/api don't install it).  Workers inherit this process's environment, so
``TTHSD_LIBRARY`` chooses their core too, and ``TTHSD_LOG_FILE`` (set here when unset)
keeps their logs out of the working directory.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster
from tests.support.server import LoopbackServer


def start_cluster(workers: int = 2, threads: int = 1) -> tuple[LocalCluster, Client]:
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True,
        dashboard_address=":0", silence_logs=logging.ERROR,
    )  # fmt: skip
    return cluster, Client(cluster)


@pytest.fixture(scope="session", autouse=True)
def _worker_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if os.environ.get("TTHSD_LOG_FILE"):
        yield
        return
    os.environ["TTHSD_LOG_FILE"] = str(tmp_path_factory.mktemp("log") / "TTHSDPyInter.log")
    try:
        yield
    finally:
        os.environ.pop("TTHSD_LOG_FILE", None)


@pytest.fixture(scope="module")
def client(_worker_log: None) -> Iterator[Client]:
    """A client of a LocalCluster with 2 worker processes, shared by a module's tests."""
    cluster, dask_client = start_cluster()
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


class CountingServer(LoopbackServer):
    """A LoopbackServer that remembers the most connections it ever had open at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._count_lock = threading.Lock()
        self.open_now = 0
        self.open_max = 0

    def _register(self, sock: Any) -> int:
        with self._count_lock:
            self.open_now += 1
            self.open_max = max(self.open_max, self.open_now)
        return super()._register(sock)

    def _unregister(self, sock: Any) -> None:
        with self._count_lock:
            self.open_now -= 1
        super()._unregister(sock)


def add_files(
    srv: LoopbackServer,
    count: int,
    *,
    low: int = 200,
    high: int = 2000,
    seed: int = 7,
    prefix: str = "/f",
    **knobs: Any,
) -> dict[str, bytes]:
    """``count`` files of random bytes (sizes in [low, high]); ``{url: body}``.

    Random bytes rather than ``Content``: a Content builds a 1 MiB template per salt, far
    too slow for 10,000 small files.
    """
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for i in range(count):
        body = rng.randbytes(rng.randint(low, high))
        files[srv.add(f"{prefix}{i}.bin", body, **knobs).url] = body
    return files


def assert_all_exact(table: Any, files: dict[str, bytes]) -> None:
    """One ok row per URL, each file at its row's path with exactly its bytes."""
    assert len(table) == len(files)
    assert sorted(table["url"]) == sorted(files)
    assert list(table["index"]) == list(range(len(files)))
    bad = table[~table["ok"]]
    assert bad.empty, bad.head(10).to_dict("records")
    for url, path, size in zip(table["url"], table["path"], table["bytes"]):
        assert Path(path).read_bytes() == files[url], url
        assert size == len(files[url])
