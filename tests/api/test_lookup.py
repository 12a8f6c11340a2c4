"""Library lookup: explicit path, then TTHSD_LIBRARY, then the copy bundled in the package,
then (only without one) the current directory; a failure names every path tried, and a
core of an unknown ABI version is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import tthsd_interface
from tthsd_interface import (
    LibraryLoadError,
    LibraryNotFoundError,
    TTHSDownloader,
    candidate_paths,
    library_file_name,
)
from tthsd_interface._ffi import find_library

LINUX = "linux"


def test_file_names_follow_the_documentation() -> None:
    assert library_file_name("win32") == "TTHighSpeedDownloader.dll"
    assert library_file_name("darwin") == "TTHighSpeedDownloader.dylib"
    assert library_file_name("linux") == "TTHighSpeedDownloader.so"


def test_order_is_env_then_package_then_cwd(tmp_path: Path) -> None:
    paths = candidate_paths(
        environ={"TTHSD_LIBRARY": "/opt/core/libx.so"},
        cwd=tmp_path / "cwd",
        package_dir=tmp_path / "pkg",
        platform=LINUX,
    )
    assert paths == [
        Path("/opt/core/libx.so"),
        tmp_path / "pkg" / "TTHighSpeedDownloader.so",
        tmp_path / "cwd" / "TTHighSpeedDownloader.so",
        tmp_path / "cwd" / "libTTHighSpeedDownloader.so",
    ]


def test_empty_env_variable_is_ignored(tmp_path: Path) -> None:
    paths = candidate_paths(
        environ={"TTHSD_LIBRARY": ""}, cwd=tmp_path, package_dir=tmp_path / "p", platform=LINUX
    )
    assert paths[0] == tmp_path / "p" / "TTHighSpeedDownloader.so"


def test_relative_env_path_is_taken_from_cwd(tmp_path: Path) -> None:
    paths = candidate_paths(
        environ={"TTHSD_LIBRARY": "lib/core.so"}, cwd=tmp_path, package_dir=tmp_path, platform=LINUX
    )
    assert paths[0] == tmp_path / "lib" / "core.so"


def test_windows_and_macos_names(tmp_path: Path) -> None:
    win = candidate_paths(environ={}, cwd=tmp_path, package_dir=tmp_path, platform="win32")
    assert [p.name for p in win] == ["TTHighSpeedDownloader.dll", "TTHighSpeedDownloader.dll"]
    mac = candidate_paths(environ={}, cwd=tmp_path, package_dir=tmp_path, platform="darwin")
    assert mac[0].name == "TTHighSpeedDownloader.dylib"


def test_explicit_path_is_the_only_candidate(tmp_path: Path) -> None:
    explicit = tmp_path / "mine.so"
    assert candidate_paths(explicit, environ={"TTHSD_LIBRARY": "/x.so"}) == [explicit]


def test_explicit_folder_means_the_library_inside(tmp_path: Path) -> None:
    paths = candidate_paths(tmp_path, platform=LINUX)
    assert paths[0] == tmp_path / "TTHighSpeedDownloader.so"


def test_first_existing_candidate_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_core: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy(fake_core, cwd / library_file_name())
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TTHSD_LIBRARY", raising=False)
    # A package without a core of its own (a source checkout) takes the current directory's.
    monkeypatch.setattr(tthsd_interface._ffi, "_PACKAGE_DIR", str(tmp_path / "empty"))
    assert find_library() == cwd / library_file_name()
    # The environment variable comes before the current directory.
    monkeypatch.setenv("TTHSD_LIBRARY", str(fake_core))
    assert find_library() == fake_core
    # A missing TTHSD_LIBRARY file falls through to the next candidate.
    monkeypatch.setenv("TTHSD_LIBRARY", str(tmp_path / "nope.so"))
    assert find_library() == cwd / library_file_name()


def test_downloader_loads_the_library_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_core: Path
) -> None:
    """What the documentation promises: TTHSDownloader() with the library in the CWD,
    where the package has no core of its own."""
    shutil.copy(fake_core, tmp_path / library_file_name())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TTHSD_LIBRARY", raising=False)
    monkeypatch.setattr(tthsd_interface._ffi, "_PACKAGE_DIR", str(tmp_path / "empty"))
    dl = TTHSDownloader()
    try:
        assert dl.library_path == tmp_path / library_file_name()
        assert dl.core_version == "0.0.0-fake"
    finally:
        dl.close()


def test_not_found_names_every_path_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TTHSD_LIBRARY", str(tmp_path / "env.so"))
    monkeypatch.setattr(tthsd_interface._ffi, "_PACKAGE_DIR", tmp_path / "pkg")
    with pytest.raises(LibraryNotFoundError) as info:
        TTHSDownloader()
    tried = info.value.tried
    assert tried == tuple(str(p) for p in candidate_paths())
    assert tried[0] == str(tmp_path / "env.so")
    assert tried[1] == str(tmp_path / "pkg" / library_file_name())
    for path in tried:
        assert path in str(info.value)


def test_missing_explicit_path_does_not_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_core: Path
) -> None:
    monkeypatch.setenv("TTHSD_LIBRARY", str(fake_core))
    with pytest.raises(LibraryNotFoundError) as info:
        TTHSDownloader(dll_path=tmp_path / "absent.so")
    assert info.value.tried == (str(tmp_path / "absent.so"),)
    assert isinstance(info.value, tthsd_interface.TTHSDError)
    assert isinstance(info.value, OSError)


def test_a_file_that_is_not_a_library(tmp_path: Path) -> None:
    bogus = tmp_path / "TTHighSpeedDownloader.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(LibraryLoadError) as info:
        TTHSDownloader(bogus)
    assert str(bogus) in str(info.value)


def test_a_library_that_is_not_a_tthsd_core(tmp_path: Path, fake_core: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None  # fake_core needed one
    source = tmp_path / "other.c"
    source.write_text("int something_else(void) { return 0; }\n")
    other = tmp_path / "libother.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(other), str(source)], check=True)
    with pytest.raises(LibraryLoadError, match="not a TTHSD core"):
        TTHSDownloader(other)


def test_a_path_through_a_symlink_and_dotdot_loads_the_file_found(
    tmp_path: Path, fake_core: Path
) -> None:
    # link -> real/inner, so link/.. is real, not tmp_path: the path must not be folded
    # by text (that would name tmp_path/<lib>, which does not exist).
    (tmp_path / "real" / "inner").mkdir(parents=True)
    shutil.copy(fake_core, tmp_path / "real" / "core.so")
    (tmp_path / "link").symlink_to(tmp_path / "real" / "inner")
    given = tmp_path / "link" / ".." / "core.so"
    found = find_library(given)
    assert found.is_file() and found.samefile(tmp_path / "real" / "core.so")
    assert TTHSDownloader(dll_path=given).library_path.samefile(found)


def test_a_file_named_like_the_core_in_the_cwd_never_replaces_the_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_core: Path
) -> None:
    # Regression (library planting): `tthsd https://host/TTHighSpeedDownloader.so` saves
    # a file of that name in the current directory; the next run there must not load it.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(fake_core, pkg / library_file_name())
    cwd = tmp_path / "downloads"
    cwd.mkdir()
    for name in (library_file_name(), "lib" + library_file_name()):
        (cwd / name).write_bytes(b"a downloaded file, not our core")
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TTHSD_LIBRARY", raising=False)
    monkeypatch.setattr(tthsd_interface._ffi, "_PACKAGE_DIR", str(pkg))
    dl = TTHSDownloader()
    try:
        assert dl.library_path == pkg / library_file_name()
        assert dl.core_version == "0.0.0-fake"
    finally:
        dl.close()


def test_a_core_of_an_unknown_abi_version_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_core: Path
) -> None:
    # A copy of its own: a library is loaded (and checked) once per process and path.
    other = tmp_path / "other-abi.so"
    shutil.copy(fake_core, other)
    monkeypatch.setenv("FAKECORE_ABI_VERSION", "2")
    with pytest.raises(LibraryLoadError) as info:
        TTHSDownloader(dll_path=other)
    text = str(info.value)
    assert "ABI version is 2" in text and "ABI version 1" in text, text
    same = tmp_path / "same-abi.so"
    shutil.copy(fake_core, same)
    monkeypatch.setenv("FAKECORE_ABI_VERSION", "1")
    TTHSDownloader(dll_path=same).close()
