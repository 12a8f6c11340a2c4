"""examples/dask_download.py runs as a user runs it (offline, in a fresh folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dask_download.py"


def test_the_dask_example(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "400 files, " in out.stdout
    assert "missing.jpg [http_status]" in out.stdout
    assert "second run: 400 files already there, 1 failed" in out.stdout
    assert len(list((tmp_path / "downloads" / "cluster" / "img").glob("*.jpg"))) == 400
