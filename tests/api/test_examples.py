"""The new examples run as a user runs them: ``python examples/asyncio_many_files.py`` and
``bash examples/command_line.sh`` (with the installed ``tthsd`` on PATH), offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _env(core: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TTHSD_LIBRARY"] = str(core)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_asyncio_many_files(core: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "asyncio_many_files.py")], cwd=tmp_path,
        env=_env(core), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "24/24 files" in out.stdout
    assert "24 files, 48 MiB in" in out.stdout
    assert "[http_status]" in out.stdout
    assert len(list((tmp_path / "downloads" / "many").glob("part*.bin"))) == 24


def test_command_line_script(core: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(EXAMPLES / "command_line.sh")], cwd=tmp_path, env=_env(core),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo: OK" in out.stdout
    assert '"summary": {"ok": 3, "failed": 0' in out.stdout
    assert "a missing file exits with status 1" in out.stdout
