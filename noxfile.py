"""The Python-version matrix: the API tests on every supported CPython, from the wheel.

    nox -s api                 # tests/api on 3.9, 3.10, 3.11, 3.12 and 3.13
    nox -s api-3.9             # one version
    nox -s api -- -k close     # extra arguments go to pytest

Each session installs the wheel named by ``$TTHSD_WHEEL`` (``scripts/build-wheel.sh`` makes
it; ``.ci/run`` builds it once and hands it over), never the source tree: one
``py3-none`` wheel serves every version, so no session runs cargo, and what is tested is
what users install. Without ``$TTHSD_WHEEL`` the newest wheel in ``dist/`` is used.

Only what ``tests/api`` imports is installed (not the whole ``test`` extra, whose
documentation and HTTP/2-server tools the API tests don't use), which keeps a session to
seconds of installing once pip's cache is warm.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# What tests/api and tests/support import, bounded below as in pyproject's ``test`` extra.
API_TEST_DEPS = ["pytest>=8", "pytest-httpserver>=1.0", "pytest-timeout>=2", "hypothesis>=6"]

nox.options.sessions = ["api"]
nox.options.reuse_existing_virtualenvs = False


def _put_pyenv_pythons_on_path() -> None:
    """pyenv's shims run only the versions ``pyenv global`` selects; link each wanted
    ``pythonX.Y`` that pyenv has into ``.nox/pythons`` and put that first on ``PATH``."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    links = ROOT / ".nox" / "pythons"
    for version in PYTHONS:
        name = f"python{version}"
        found = sorted(
            versions.glob(f"{version}.*/bin/{name}"),
            key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
        )
        if not found:
            continue
        links.mkdir(parents=True, exist_ok=True)
        # Made aside and renamed into place: nox processes started together (.ci/run
        # runs one per version) each redo this.
        tmp = links / f".{name}.{os.getpid()}"
        tmp.symlink_to(found[-1])
        tmp.replace(links / name)
    if links.is_dir():
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


_put_pyenv_pythons_on_path()


def _wheel() -> Path:
    named = os.environ.get("TTHSD_WHEEL")
    if named:
        return Path(named).resolve()
    wheels = sorted((ROOT / "dist").glob("tthsd_interface-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise SystemExit("no wheel: run scripts/build-wheel.sh or set TTHSD_WHEEL")
    return wheels[-1]


@nox.session(python=PYTHONS)
def api(session: nox.Session) -> None:
    """tests/api against the installed wheel."""
    session.install(str(_wheel()), *API_TEST_DEPS)
    # The installed copy of the core, not a developer's $TTHSD_LIBRARY.
    env = {"TTHSD_LIBRARY": ""}
    session.run(
        "python", "-m", "pytest", "tests/api", "-q", "-p", "no:cacheprovider", "--durations=5",
        *session.posargs,
        env=env,
    )  # fmt: skip
