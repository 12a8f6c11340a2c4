"""Every export is there, and bad input to any of them is -1 with a reason, never a crash.

The hostile calls run in a child interpreter (see ``hostile.py``), so a crash fails the
one test that caused it and names the case.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest

from .hostile import BAD_IDS, ID_FUNCTIONS
from .lib import PROTOTYPES, REPO, Lib

CREATING = ("start_download", "get_downloader", "startDownload", "getDownloader")


def test_every_export_is_present(lib: Lib) -> None:
    missing = [name for name in PROTOTYPES if not lib.has(name)]
    assert not missing, f"{lib.path} lacks exports: {missing}"


def _documented_exports() -> set[str]:
    """Function names of the C block in docs/architecture.md."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("```c", 1)[1].split("```", 1)[0]
    return set(re.findall(r"^[a-z][\w ]*?\**\s+\**(\w+)\(", block, flags=re.MULTILINE))


def test_documented_exports_are_declared_here() -> None:
    documented = _documented_exports()
    assert len(documented) >= 23, documented
    assert documented == set(PROTOTYPES), (
        f"docs/architecture.md and tests/abi/lib.py disagree: "
        f"only documented {documented - set(PROTOTYPES)}, only declared "
        f"{set(PROTOTYPES) - documented}")


def test_no_undocumented_exports(lib: Lib) -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not available to list the dynamic symbols")
    out = subprocess.run([nm, "-D", "--defined-only", str(lib.path)], capture_output=True,
                         text=True, check=True).stdout
    exported = {parts[2] for parts in (ln.split() for ln in out.splitlines())
                if len(parts) == 3 and parts[1] == "T"}
    extra = {name for name in exported if not name.startswith(("_", "rust_"))} - set(PROTOTYPES)
    assert not extra, f"exported but not documented in docs/architecture.md: {sorted(extra)}"


def test_version_matches_cargo_and_abi_version_is_positive(lib: Lib) -> None:
    with (REPO / "native" / "Cargo.toml").open("rb") as f:
        want = tomllib.load(f)["workspace"]["package"]["version"]
    assert lib.tthsd_version().decode() == want
    assert lib.tthsd_version() == lib.tthsd_version()  # static, stable
    assert lib.tthsd_abi_version() >= 1


@pytest.mark.parametrize("entry", CREATING)
def test_invalid_task_lists_are_refused_whole(isolated: Any, entry: str) -> None:
    out = isolated(f"invalid_tasks:{entry}")
    events, files = out.pop("__events__"), out.pop("__files__")
    wrong = {case: r for case, r in out.items() if r[0] != -1 or not r[1]}
    assert not wrong, f"{entry}: expected -1 with a reason, got {wrong}"
    assert events == 0, "a refused call must create nothing, yet the callback ran"
    assert files == [], f"a refused call must create nothing, yet files appeared: {files}"


def test_unknown_ids_are_refused_by_every_export(isolated: Any) -> None:
    out = isolated("unknown_ids")
    stats = {k: out.pop(k) for k in list(out) if k.startswith("get_performance_stats")}
    wrong = {case: r for case, r in out.items() if r[0] != -1 or not r[1]}
    assert not wrong, f"expected -1 with a reason, got {wrong}"
    assert len(out) == (len(ID_FUNCTIONS) + 5) * len(BAD_IDS)
    for case, text in stats.items():
        assert text is not None and json.loads(text) == {}, (case, text)


def test_free_string_ignores_null_and_foreign_pointers(isolated: Any, lib: Lib) -> None:
    out = isolated("free_string")
    assert out["buffer intact"] is True
    assert out["version"] == lib.tthsd_version().decode()


def test_last_error_copies_truncates_and_clears(isolated: Any) -> None:
    out = isolated("last_error")
    n = out["length"]
    assert n > 0
    assert out["null with length"] == n  # NULL buffer: nothing written, length returned
    msg = out["message"]
    assert msg.endswith("\x00") and len(msg.encode()) == n + 1, msg
    assert "987654" in msg or "id" in msg.lower(), f"reason should name the bad id: {msg!r}"
    assert out["small returns"] == n
    raw = out["small raw"]
    assert raw[4] == 0, f"truncated copy must be NUL-terminated within len: {raw}"
    assert bytes(raw[:4]) == msg.encode()[:4]
    assert raw[5:] == [0xAA] * 3, "wrote past len"
    assert out["zero returns"] == n and out["zero raw"] == [0xAA] * 4, "len 0 must write nothing"
    assert out["after success"] == 0


def test_null_optional_pointers_are_valid_and_bad_headers_or_user_agents_are_not(
    isolated: Any,
) -> None:
    out = isolated("null_optional_args")
    for case, (ret, reason) in out.items():
        if case.startswith(("headers_json", "user_agent")):
            assert ret == -1 and reason, f"{case}: expected -1 with a reason, got {ret}"
        else:
            assert ret > 0, f"{case}: expected an id, got {ret} ({reason!r})"


def test_set_proxy_accepts_its_schemes_and_refuses_the_rest(isolated: Any) -> None:
    out = isolated("bad_proxy")
    assert out.pop("id") > 0
    for case in ("NULL", "empty", "http", "https"):
        assert out[case][0] == 0, (case, out[case])
    for case in ("ftp", "garbage", "invalid utf-8", "no host"):
        assert out[case][0] == -1 and out[case][1], (case, out[case])
