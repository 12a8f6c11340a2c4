"""What ``import tthsd_interface`` costs: the modules it leaves out stay out.

Start-up is part of every short-lived program's run (and of the benchmark's wall time):
typing, pathlib and logging.handlers together were ~20 ms of it. Each check runs in a
fresh interpreter, where nothing else has imported them yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tthsd_interface

# Heavy modules the package must not import until a feature needs them.
LEFT_OUT = (
    "asyncio",
    "dataclasses",
    "logging.handlers",
    "pathlib",
    "rich",
    "typing",
)


def _loaded_after(code: str, tmp_path: Path) -> list[str]:
    """Runs ``code`` in a fresh interpreter; the LEFT_OUT modules it has loaded."""
    report = f"print(json.dumps([m for m in {LEFT_OUT!r} if m in sys.modules]))"
    probe = f"import sys, json\n{code}\n{report}"
    env = dict(os.environ, TTHSD_LOG_FILE=str(tmp_path / "log.txt"))
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60, check=True,
    )  # fmt: skip
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


# Not loaded before a download's first request either: json (with re and enum) and logging
# are imported once the download runs, the first by the dispatcher thread, the second by
# the first log record.
BEFORE_THE_FIRST_REQUEST = ("json", "logging", "re")


def test_importing_the_package_leaves_heavy_modules_out(tmp_path: Path) -> None:
    assert _loaded_after("import tthsd_interface", tmp_path) == []


@pytest.mark.parametrize(
    "code",
    [
        "import tthsd_interface",
        "import tthsd_interface as t\nt.TTHSDownloader().close()",
        "from TTHSD_interface import TTHSDownloader\nTTHSDownloader().close()",
    ],
)
def test_json_and_logging_wait_for_a_running_download(code: str, tmp_path: Path) -> None:
    probe = f"{code}\nprint([m for m in {BEFORE_THE_FIRST_REQUEST!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{probe}"], capture_output=True, text=True,
        cwd=tmp_path, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert _loaded_after(code, tmp_path) == []


def test_the_documented_module_name_forwards_without_loading_everything(tmp_path: Path) -> None:
    # `from TTHSD_interface import TTHSDownloader` used to star-import every lazy name:
    # the asyncio layer, the dataclasses and logging (~40 ms).
    code = (
        "import TTHSD_interface as T\n"
        "assert T.download is __import__('tthsd_interface').download\n"  # loads _highlevel
        "assert T._TIlog.name == 'tthsd_interface'\n"
        "assert 'stream' in dir(T) and '_TIlog' in dir(T)\n"
    )
    assert _loaded_after(code, tmp_path) == []


def test_a_record_logged_just_before_exit_is_written(tmp_path: Path) -> None:
    # logging is imported late, with this very record, which is still queued for the
    # listener thread when the interpreter exits: the exit drains the queue.
    code = "import tthsd_interface as t\nt._log.tilog().warning('last words')\n"
    _loaded_after(code, tmp_path)
    assert "last words" in (tmp_path / "log.txt").read_text(encoding="utf-8")


def test_a_level_set_before_the_first_record_is_kept(tmp_path: Path) -> None:
    # The documented way to quiet the log, done before the package made its logger.
    code = (
        "import tthsd_interface as t, logging\n"
        "logging.getLogger('tthsd_interface').setLevel(logging.WARNING)\n"
        "t._log.tilog().info('dropped')\n"
        "t._log.tilog().warning('kept')\n"
    )
    _loaded_after(code, tmp_path)
    text = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert "kept" in text and "dropped" not in text


def test_a_downloader_and_its_first_log_record_leave_them_out(tmp_path: Path) -> None:
    code = (
        "import tthsd_interface as t\n"
        "d = t.TTHSDownloader()\n"
        "t._log._TIlog.info('first record')\n"
        "t.flush_log()\n"
        "d.close()\n"
    )
    assert _loaded_after(code, tmp_path) == []
    assert "first record" in (tmp_path / "log.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", tthsd_interface.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(tthsd_interface, name) is not None
    assert name in dir(tthsd_interface)


def test_the_typed_shapes_load_on_first_use(tmp_path: Path) -> None:
    code = "import tthsd_interface as t\nassert t.Event.__name__ == 'Event'\n"
    assert _loaded_after(code, tmp_path) == ["typing"]


def test_the_command_line_up_to_its_first_request_leaves_them_out(tmp_path: Path) -> None:
    # What `tthsd -q -d out URL...` runs before the core's first request: the result
    # dataclasses and pathlib load later, while the core downloads (prepare_outcome).
    code = (
        "from tthsd_interface import _cli\n"
        "args = _cli._parser().parse_args(\n"
        "    ['-q', '-x', '16', '-k', '10', '-d', 'out', 'http://h/a.bin', 'https://h/b?x=1#y']\n"
        ")\n"
        "plan = _cli._plan(args, _cli._jobs(args))\n"
        "import os\n"
        "assert plan.paths == (os.path.join('out', 'a.bin'), os.path.join('out', 'b'))\n"
        "assert 'urllib.parse' not in sys.modules\n"
    )
    assert _loaded_after(code, tmp_path) == []
    # json too (the probe above loads it itself to report): only --json needs it early.
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}print('json' in sys.modules)"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_program_that_imported_logging_first_keeps_its_changes(tmp_path: Path) -> None:
    # With logging already loaded, the package sets its logger up at import, as it always
    # did: the program's later changes (its own handler, propagation) stay.
    code = (
        "import logging, io\n"
        "import tthsd_interface as t\n"
        "lg = logging.getLogger('tthsd_interface')\n"
        "lg.handlers.clear(); lg.propagate = True\n"
        "seen = io.StringIO(); logging.basicConfig(stream=seen, format='%(message)s')\n"
        "t._log.tilog().warning('to the root')\n"
        "assert lg.propagate and 'to the root' in seen.getvalue(), seen.getvalue()\n"
    )
    _loaded_after(code, tmp_path)
    assert not (tmp_path / "log.txt").exists()


def test_a_first_record_logged_at_exit_is_written(tmp_path: Path) -> None:
    code = (
        "import atexit, tthsd_interface as t\n"
        "atexit.register(lambda: t._log.tilog().warning('said at exit'))\n"
    )
    _loaded_after(code, tmp_path)
    assert "said at exit" in (tmp_path / "log.txt").read_text(encoding="utf-8")
