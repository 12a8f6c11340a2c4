"""Offline stand-in for the example URLs: generated files on a loopback server.

In Python: ``with example_server("file1.zip", "file2.zip") as urls: ...``.

From a shell (``command_line.sh``): ``python _server.py NAME... > urls.txt`` prints one URL
per line, then serves until its standard input closes or it is killed.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tthsd_interface.demo import serve_files


@contextmanager
def example_server(*names: str, size: int = 8 << 20) -> Iterator[list[str]]:
    """Serve ``names`` (e.g. ``"file1.zip"``) with random content; yields their URLs."""
    rng = random.Random(7)  # test data, not secrets
    files = {"/" + name: rng.randbytes(size) for name in names}
    with serve_files(files) as base:
        yield [base + "/" + name for name in names]


if __name__ == "__main__":
    with example_server(*sys.argv[1:]) as served:
        print("\n".join(served), flush=True)
        sys.stdin.read()  # serve until standard input closes
