"""``examples/c/get.c`` (shown in docs/c-abi.md) compiles against the committed header and
downloads a file with the real core."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]


def test_the_c_example_downloads_a_file(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(core, libdir / "libTTHighSpeedDownloader.so")  # the name the linker wants
    exe = tmp_path / "get"
    subprocess.run(
        [cc, "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(ROOT / "examples/c/get.c"),
         "-I", str(ROOT / "native/include"), "-L", str(libdir), "-lTTHighSpeedDownloader",
         f"-Wl,-rpath,{libdir}"],
        check=True,
    )  # fmt: skip
    res = http_server.add("/c.bin", size=3 << 20)
    out = subprocess.run(
        [str(exe), res.url, str(tmp_path / "c.bin")], capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"state":"finished"' in out.stdout
    assert f'"contiguous":{res.size}' in out.stdout
    assert hashlib.sha256((tmp_path / "c.bin").read_bytes()).hexdigest() == res.sha256()
    refused = subprocess.run(
        [str(exe), "gopher://x/", str(tmp_path / "x")], capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and refused.stderr.startswith("refused: ")
