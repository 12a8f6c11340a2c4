"""The manylinux wheel installs and works where there is no Rust toolchain.

The wheel is ``$TTHSD_WHEEL`` when set (``.ci/run`` builds it once and hands it to this
test and to the nox sessions), otherwise ``scripts/build-wheel.sh`` builds it once per
session.  It is installed into a fresh virtual environment whose ``PATH`` has no
``cargo``, with ``--only-binary :all:`` so that nothing can be compiled, and from there
run: ``tthsd --demo``, and a download through the API from a loopback server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.content import sha256_file
from tests.support.server import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
# py3-none: every Python 3; both spellings of the glibc 2.17 policy (auditwheel sorts them).
WHEEL_NAME = re.compile(
    r"tthsd_interface-[^-]+-py3-none-manylinux2014_(?P<arch>\w+?)\.manylinux_2_17_(?P=arch)\.whl"
)

pytestmark = pytest.mark.wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("TTHSD_WHEEL")
    if named:
        return Path(named).resolve()
    dist = tmp_path_factory.mktemp("dist")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-wheel.sh")],
        env={**os.environ, "DIST": str(dist), "PYTHON": sys.executable},
        stdout=subprocess.PIPE, text=True, check=True, timeout=1500,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1]).resolve()


def _path_without_cargo() -> str:
    """``PATH`` less every folder that holds a ``cargo`` (rustup's ~/.cargo/bin included)."""
    kept = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.path.exists(os.path.join(d, "cargo"))
    ]  # fmt: skip
    return os.pathsep.join(kept)


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh venv with the wheel installed, and the environment to run it in."""
    env_dir = tmp_path_factory.mktemp("venv-no-rust") / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    path = os.pathsep.join([str(bin_dir), _path_without_cargo()])
    assert shutil.which("cargo", path=path) is None
    env = {
        "PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(env_dir), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "CARGO": "/nonexistent/cargo",  # setup.py's knob: a source build would fail here
    }  # fmt: skip
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--only-binary", ":all:",
         str(wheel)],
        env=env, check=True, timeout=600,
    )  # fmt: skip
    return env


def test_the_wheel_is_tagged_manylinux_for_every_python_3(wheel: Path) -> None:
    assert WHEEL_NAME.fullmatch(wheel.name), wheel.name


def test_tthsd_demo_runs_from_the_wheel(installed: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        ["tthsd", "--demo", "-q"], cwd=tmp_path, env=installed,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


DOWNLOAD = """
import sys, tthsd_interface as t
lib = str(t.find_library())
assert lib.startswith(sys.prefix), (lib, sys.prefix)      # the copy inside the wheel
(res,) = t.download([sys.argv[1]], [sys.argv[2]], connections=4)
print(res.bytes)
"""


def test_a_download_through_the_api_from_the_wheel(
    installed: dict[str, str], http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/w.bin", size=3 << 20)
    target = tmp_path / "w.bin"
    proc = subprocess.run(
        ["python", "-c", DOWNLOAD, res.url, str(target)], cwd=tmp_path, env=installed,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == res.size
    assert sha256_file(target) == res.sha256()
