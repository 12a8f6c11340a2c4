"""Build glue: compile the Rust core and ship it inside the ``tthsd_interface`` package.

Everything declarative lives in ``pyproject.toml``; this file only adds

* ``build_py`` that runs ``cargo build --release -p tthsd-ffi`` on ``native/Cargo.toml``
  and copies the cdylib into the package as ``TTHighSpeedDownloader.<so|dylib|dll>``
  (for an editable install, into ``src/tthsd_interface/``);
* ``bdist_wheel`` that tags the wheel for the platform (``py3-none-<platform>``): the
  library is native code, but it does not use the Python C API, so any Python 3 works.

Environment:

* ``TTHSD_PREBUILT_LIBRARY=/path/to/libTTHighSpeedDownloader.so`` ships that file instead
  of running cargo;
* ``CARGO`` names the cargo binary (default ``cargo``); ``CARGO_TARGET_DIR`` is honoured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CARGO_MANIFEST = ROOT / "native" / "Cargo.toml"
CRATE = "tthsd-ffi"
LIB_TARGET = "TTHighSpeedDownloader"
PACKAGE = "tthsd_interface"


def packaged_name() -> str:
    """The file name inside the package (the one the TTHSD documentation uses)."""
    if sys.platform.startswith(("win32", "cygwin")):
        return "TTHighSpeedDownloader.dll"
    if sys.platform == "darwin":
        return "TTHighSpeedDownloader.dylib"
    return "TTHighSpeedDownloader.so"


def _native_suffix() -> str:
    return Path(packaged_name()).suffix


def build_native() -> Path:
    """Run cargo and return the path of the built cdylib."""
    prebuilt = os.environ.get("TTHSD_PREBUILT_LIBRARY")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"TTHSD_PREBUILT_LIBRARY={prebuilt!r} is not a file")
        return path
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit(
            "building tthsd_interface needs a Rust toolchain: 'cargo' was not found on PATH "
            "(install it with rustup, or set TTHSD_PREBUILT_LIBRARY to a built library)"
        )
    cmd = [
        cargo, "build", "--release", "--manifest-path", str(CARGO_MANIFEST), "-p", CRATE,
        "--message-format=json-render-diagnostics",
    ]  # fmt: skip
    print("running", " ".join(cmd), file=sys.stderr, flush=True)
    # stdout carries JSON messages (we look for the artifact); stderr, cargo's progress
    # and rendered diagnostics, goes straight to the user.
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cargo build failed with exit code {proc.returncode}")
    found: Path | None = None
    for line in proc.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("reason") != "compiler-artifact":
            continue
        target = message.get("target", {})
        if target.get("name") != LIB_TARGET or "cdylib" not in target.get("kind", []):
            continue
        for filename in message.get("filenames", []):
            if Path(filename).suffix == _native_suffix():
                found = Path(filename)
    if found is None or not found.is_file():
        raise SystemExit(f"cargo built no {LIB_TARGET} cdylib (looked at cargo's JSON messages)")
    return found


class BuildPyWithNative(build_py):
    """``build_py`` that also builds the Rust core and copies it into the package."""

    def run(self) -> None:
        super().run()
        library = build_native()
        if getattr(self, "editable_mode", False):
            dest_dir = ROOT / "src" / PACKAGE
        else:
            dest_dir = Path(self.build_lib) / PACKAGE
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / packaged_name()
        shutil.copyfile(library, dest)
        dest.chmod(0o755)
        print(f"copied {library} -> {dest}", file=sys.stderr, flush=True)


class BinaryDistribution(Distribution):
    """Says the package holds native code, so it installs into platlib and its wheel is
    not "pure" (Root-Is-Purelib: false)."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """A wheel tagged ``py3-none-<platform>``: it carries a native library."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithNative, "bdist_wheel": PlatformWheel},
)
