"""Offline stand-in for the example URLs: two generated files on a loopback server."""

from __future__ import annotations

import random
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
