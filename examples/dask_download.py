"""A download list on a Dask cluster: 400 files over 2 worker processes, a manifest
file with paths, a per-host cap, the failures as rows, and a second run that fetches
nothing.

    pip install 'tthsd_interface[dask,pandas]'
    python examples/dask_download.py

Offline: the URLs point at a loopback server in this process serving generated files,
one of them missing (a 404).  On a real cluster, give ``download`` a
``Client("tcp://scheduler:8786")`` and a folder every worker sees (docs/distributed.md).
"""

from __future__ import annotations

import random
from pathlib import Path

from dask.distributed import Client, LocalCluster

from tthsd_interface.dask import download
from tthsd_interface.demo import serve_files


def main() -> None:
    rng = random.Random(7)  # test data, not secrets
    files = {f"/img/{i:04}.jpg": rng.randbytes(rng.randint(2_000, 40_000)) for i in range(400)}
    folder = Path("downloads") / "cluster"
    with serve_files(files) as base, LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        client = Client(cluster)
        # The manifest: URL <tab> path under the folder; the last URL does not exist.
        manifest = Path("manifest.tsv")
        with manifest.open("w", encoding="utf-8") as out:
            for name in files:
                out.write(f"{base}{name}\t{name.removeprefix('/')}\n")
            out.write(f"{base}/img/missing.jpg\tmissing.jpg\n")

        table = download(
            manifest, folder, client, files_per_task=100, connections_per_worker=16,
            host_connections=16, progress=True,
        )  # fmt: skip
        done = table[table.ok]
        print(f"{len(done)} files, {done.bytes.sum() / 2**20:.1f} MiB")
        for row in table[~table.ok].itertuples():
            print(f"failed: {row.url} [{row.code}] {row.message}")

        again = download(manifest, folder, client, progress=False)
        skipped = again[again.ok & (again.seconds == 0)]
        print(f"second run: {len(skipped)} files already there, {int((~again.ok).sum())} failed")
        client.close()


if __name__ == "__main__":
    main()
