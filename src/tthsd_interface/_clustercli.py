"""``tthsd --scheduler ADDRESS``: the command line's list run on a Dask cluster.

Imported by ``_cli`` only when ``--scheduler`` is given, so the command line never loads
Dask otherwise.  The URLs of the command line come first, then those of ``-i FILE``
(streamed: the file is never read whole); the files go under ``-d`` (made absolute; it
must be the same folder on every worker).  Exit status as for a local run: 0 when every
file is done, 1 when one failed (each listed with its code on standard error).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterable
from typing import Any

from ._manifest import read_lines, read_manifest

__all__ = ["run_on_cluster"]


def _manifest(args: argparse.Namespace) -> Iterable[Any]:
    listed: Iterable[Any] = ()
    if args.input_file == "-":
        listed = read_lines(sys.stdin)
    elif args.input_file:
        listed = ((r.url, r.path, r.checksum) for r in read_manifest(args.input_file))
    return itertools.chain(args.urls, listed)


def run_on_cluster(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """Run the list of ``args`` on the scheduler at ``args.scheduler``; the exit status."""
    from distributed import Client

    from .dask import iter_download

    human = not args.quiet and not args.json
    failures = ok = 0
    with Client(args.scheduler) as client:
        rows = iter_download(
            _manifest(args), args.dir or ".", client,
            files_per_task=args.files_per_task, connections_per_worker=args.connections,
            checksums=args.checksum or None, host_connections=args.host_connections,
            progress=human, dll_path=args.dll_path, **options,
        )  # fmt: skip
        for row in rows:
            if args.json:
                print(json.dumps(row.__dict__, ensure_ascii=False), flush=True)
            if row.ok:
                ok += 1
                continue
            failures += 1
            if not args.json:
                print(f"  {row.url} -> {row.path}: {row.message} ({row.code})", file=sys.stderr)
    if human:
        print(f"{ok} file(s) done, {failures} failed", file=sys.stderr)
    return 1 if failures else 0
