"""``tthsd_interface.dask`` on a LocalCluster of 2 worker processes against loopback
servers: 10,000 files byte-exact, a worker killed mid-run, the per-host cap across
workers, idempotent re-runs, failures kept as rows, ``tthsd --scheduler``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from distributed import Client
from tests.support.server import Hook, LoopbackServer, RequestRecord, Response
from tthsd_interface.dask import ResultRow, download, iter_download

from .conftest import CountingServer, add_files, assert_all_exact, start_cluster


def test_10000_files_byte_exact(client: Client, tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        files = add_files(srv, 10_000)
        table = download(
            list(files), tmp_path, client, files_per_task=500, durable=False, progress=False
        )
        assert len(srv.requests()) == 10_000  # one GET per file, nothing fetched twice
    assert_all_exact(table, files)


def test_a_worker_killed_mid_run(tmp_path: Path) -> None:
    """SIGKILL one worker while both run shards: Dask runs its shard again elsewhere,
    complete files are skipped, partial ones resume, every file ends byte-exact, and
    there is one row per URL."""
    cluster, client = start_cluster()
    try:
        with LoopbackServer() as srv:
            # ~0.25 s per file, 4 connections per worker: ~6 s of work per worker
            files = add_files(srv, 200, low=16_000, high=16_000, throttle=64_000, etag='"v1"')
            # and two larger files that journal (ranged, > 1 s): resumed, not restarted
            big = add_files(
                srv, 2, low=1 << 20, high=1 << 20, prefix="/big", throttle=256 << 10,
                etag='"v1"',
            )  # fmt: skip
            manifest = list(big) + list(files)
            pids = client.run(os.getpid)
            done: list[ResultRow] = []
            killed: list[str] = []

            def kill_the_worker_of_the_first_shard() -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(srv.requests()) < 40:
                    time.sleep(0.05)
                time.sleep(1.5)  # the big files (shard 0) have journaled
                for address, keys in client.processing().items():
                    if any(str(k).endswith("-0") for k in keys):
                        killed.append(address)
                        os.kill(pids[address], signal.SIGKILL)

            killer = threading.Thread(target=kill_the_worker_of_the_first_shard)
            killer.start()
            done = list(
                iter_download(
                    manifest, tmp_path, client, files_per_task=50,
                    connections_per_worker=4, durable=False,
                )
            )  # fmt: skip
            killer.join()
            requests = srv.requests()
        assert killed, "no worker was killed"
        # the kill cut transfers: some files were asked for again
        assert len({r.path for r in requests}) == len(manifest) < len(requests)
        rows = sorted(done, key=lambda r: r.index)
        assert [r.index for r in rows] == list(range(len(manifest)))
        assert all(r.ok for r in rows), [r for r in rows if not r.ok][:5]
        every = {**big, **files}
        for r in rows:
            assert Path(r.path).read_bytes() == every[r.url], r.url
        assert not list(tmp_path.rglob("*.tthsd.*")), "a part file or journal was left"
        # the big files were cut and resumed from their journals: asked for again from
        # a byte past 0, with If-Range
        for url in big:
            path = url[len(srv.base_url) :]
            resumed = [
                r for r in requests
                if r.path == path and (r.range_spec or (0,))[0] and r.headers.get("If-Range")
            ]  # fmt: skip
            assert resumed, [(r.range_header, r.status) for r in requests if r.path == path]
    finally:
        client.close()
        cluster.close()


def _max_connections(client: Client, tmp: Path, cap: int | None) -> list[int]:
    servers = [CountingServer(), CountingServer()]
    for srv in servers:
        srv.start()
    try:
        manifest: list[str] = []
        for n, srv in enumerate(servers):
            # each response waits 20 ms, so connections overlap
            files = add_files(srv, 240, seed=n, hook=_delay(0.02))
            manifest += list(files)
        table = download(
            manifest, tmp, client, files_per_task=40, connections_per_worker=8,
            host_connections=cap, durable=False, progress=False, frame=False,
        )  # fmt: skip
        assert isinstance(table, list)
        assert all(r.ok for r in table)
        return [srv.open_max for srv in servers]
    finally:
        for srv in servers:
            srv.stop()


def _delay(seconds: float) -> Hook:
    def hook(req: RequestRecord, resp: Response) -> Response:
        resp.delay = seconds
        return resp

    return hook


def test_the_per_host_cap_holds_across_workers(tmp_path: Path) -> None:
    """Two hosts (two ports); 2 workers x 2 threads, 8 connections per worker, so 4 per
    shard: up to 16 connections to one host without a cap.  With host_connections=8 a
    host's semaphore has 8 // 4 = 2 leases: never more than 8."""
    cluster, client = start_cluster(workers=2, threads=2)
    try:
        uncapped = _max_connections(client, tmp_path / "free", None)
        capped = _max_connections(client, tmp_path / "capped", 8)
    finally:
        client.close()
        cluster.close()
    assert max(uncapped) > 8, f"the test cannot see a cap: {uncapped}"
    assert max(capped) <= 8, capped


@pytest.mark.parametrize("with_checksums", [False, True])
def test_a_second_run_fetches_nothing(client: Client, tmp_path: Path, with_checksums: bool) -> None:
    """Complete files are skipped: without a checksum by skip_existing, with one by the
    core, which hashes the file and completes it without a request."""
    with LoopbackServer() as srv:
        files = add_files(srv, 300)
        sums = [f"sha256:{hashlib.sha256(b).hexdigest()}" for b in files.values()]
        checksums = sums if with_checksums else None
        first: Any = download(
            list(files), tmp_path, client, files_per_task=100, progress=False,
            checksums=checksums,
        )  # fmt: skip
        assert first["ok"].all()
        before = len(srv.requests())
        again = download(
            list(files), tmp_path, client, files_per_task=100, progress=False,
            checksums=checksums,
        )  # fmt: skip
        assert len(srv.requests()) == before
    assert_all_exact(again, files)
    assert (again["seconds"] < 1.0).all()


def test_failures_are_rows_with_codes(client: Client, tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        files = add_files(srv, 20)
        srv.add("/gone", status=404)
        manifest = [
            *files, srv.url("/gone"), "ftp://127.0.0.1/nope",
            (srv.url("/f1.bin"), "wrong.bin", "sha256:" + "0" * 64),
        ]  # fmt: skip
        table: Any = download(manifest, tmp_path, client, files_per_task=8, progress=False)
    assert len(table) == len(manifest)
    bad = table[~table["ok"]].set_index("url")
    assert set(bad.index) == {srv.url("/gone"), "ftp://127.0.0.1/nope", srv.url("/f1.bin")}
    assert bad.loc[srv.url("/gone"), "code"] == "http_status"
    assert bad.loc["ftp://127.0.0.1/nope", "code"] == "refused"
    assert bad.loc[srv.url("/f1.bin"), "code"] == "checksum_mismatch"
    assert all(bad["message"].str.len() > 0)
    assert table["ok"].sum() == 20  # the refused URL did not take its shard down


def test_the_command_line_runs_a_list_on_a_cluster(client: Client, tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        files = add_files(srv, 50)
        listing = tmp_path / "urls.txt"
        listing.write_text("".join(f"{u}\tf/{i}.bin\n" for i, u in enumerate(files)))
        address = client.scheduler_info()["address"]
        out = subprocess.run(
            [sys.executable, "-m", "tthsd_interface", "--scheduler", address,
             "-d", str(tmp_path / "d"), "-i", str(listing), "-q"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for i, body in enumerate(files.values()):
        assert (tmp_path / "d" / "f" / f"{i}.bin").read_bytes() == body


def test_importing_the_package_does_not_import_dask() -> None:
    code = (
        "import sys, tthsd_interface\n"
        "print(sorted({'dask', 'distributed', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_progress_arrives_while_shards_run(client: Client, tmp_path: Path) -> None:
    """One shard of 40 slow files: counts between 0 and 40 can only come from the
    worker's events (the shard's rows bring all 40 at once)."""
    seen: list[tuple[int, int, int]] = []
    with LoopbackServer() as srv:
        files = add_files(srv, 40, low=8000, high=8000, throttle=32_000)
        table = download(
            list(files), tmp_path, client, files_per_task=40, connections_per_worker=8,
            progress=lambda *counts: seen.append(counts),
        )  # fmt: skip
    assert_all_exact(table, files)
    assert any(0 < files_ < 40 and size > 0 for files_, size, _ in seen), seen
    assert seen[-1] == (40, 40 * 8000, 0)
