"""A library of the Go-era layout (camel-case exports only, no headers argument, no
tthsd_* additions) still works: each operation falls back to its alias, and what such a
library cannot do returns -1/False/{} with a logged reason instead of crashing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.api.conftest import Recorder
from tthsd_interface import TTHSDownloader


def test_downloads_and_controls_through_the_camel_case_aliases(
    go_era_core: Path, recorder: Recorder
) -> None:
    with TTHSDownloader(go_era_core) as dl:
        assert dl.core_version is None
        dl_id = dl.start_download(["http://fake/1"], ["one.bin"], callback=recorder)
        assert dl_id > 0
        assert dl.wait(dl_id, timeout=10)
        other = dl.get_downloader(["http://fake/2"], ["two.bin"])
        assert dl.start_multiple_downloads_by_id(other)
        assert dl.wait(other, timeout=10)
        assert dl.pause_download(other) is True
        assert dl.resume_download(other) is True
        assert dl.stop_download(other) is True
    assert recorder.types()[0] == "start"
    assert recorder.types()[-1] == "end"


def test_what_the_library_lacks_fails_softly(
    go_era_core: Path, read_log: Callable[[], str]
) -> None:
    with TTHSDownloader(go_era_core) as dl:
        assert dl.start_download(["http://fake/1"], ["a"], headers={"X": "y"}) == -1
        dl_id = dl.get_downloader(["http://fake/1"], ["a"])
        assert dl_id > 0
        assert dl.set_speed_limit(dl_id, 100) is False
        assert dl.set_timeouts(dl_id, 1, 1) is False
        assert dl.get_performance_stats(dl_id) == {}
    log = read_log()
    assert "does not support headers" in log
    assert "does not export set_speed_limit" in log
