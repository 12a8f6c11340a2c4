"""The public surface: names of the TTHSD documentation, the TTHSD_interface module,
typed callbacks in both documented styles, and the task JSON sent to the core."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tthsd_interface
from tthsd_interface import Event, TTHSDownloader
from tthsd_interface._tasks import build_tasks


def test_the_documented_module_name_works() -> None:
    import TTHSD_interface

    assert TTHSD_interface.TTHSDownloader is TTHSDownloader
    assert TTHSD_interface._TIlog is tthsd_interface._log._TIlog
    assert TTHSD_interface.__version__ == tthsd_interface.__version__


def test_package_is_typed() -> None:
    assert (Path(tthsd_interface.__file__).parent / "py.typed").is_file()


def test_signatures_keep_the_documented_names_and_defaults() -> None:
    start = inspect.signature(TTHSDownloader.start_download)
    assert list(start.parameters)[1:11] == [
        "urls", "save_paths", "thread_count", "chunk_size_mb", "callback", "use_callback_url",
        "user_agent", "remote_callback_url", "use_socket", "is_multiple",
    ]  # fmt: skip
    defaults = {n: p.default for n, p in start.parameters.items() if n != "self"}
    assert defaults["thread_count"] == 64
    assert defaults["chunk_size_mb"] == 10
    assert defaults["callback"] is None
    assert defaults["use_callback_url"] is False
    for name in ("user_agent", "remote_callback_url", "use_socket", "is_multiple"):
        assert defaults[name] is None
    for name in ("headers", "show_names", "ids", "checksums"):
        assert start.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    get = inspect.signature(TTHSDownloader.get_downloader)
    assert "is_multiple" not in get.parameters
    assert list(get.parameters)[1:10] == list(start.parameters)[1:10]
    assert inspect.signature(TTHSDownloader.__init__).parameters["dll_path"].default is None
    wait = inspect.signature(TTHSDownloader.wait)
    assert [(p.name, p.default) for p in list(wait.parameters.values())[1:]] == [
        ("downloader_id", None),
        ("timeout", None),
    ]
    for name in (
        "start_download_by_id", "start_multiple_downloads_by_id", "pause_download",
        "resume_download", "stop_download", "set_speed_limit", "set_proxy",
        "set_retry_config", "get_performance_stats", "close",
    ):  # fmt: skip
        assert callable(getattr(TTHSDownloader, name))


# Both callback styles of the documentation must type-check (mypy --strict runs on this
# file); these functions are never called.
def _dict_style(event: dict[str, Any], msg: dict[str, Any]) -> None:
    pass


def _typed_style(event_dict: Event, msg_dict: dict[str, str | int | float]) -> None:
    pass


def _untyped_style(event, msg):  # type: ignore[no-untyped-def]
    pass


def _type_check_only(dl: TTHSDownloader) -> None:
    dl.start_download(["u"], ["p"], callback=_dict_style)
    dl.start_download(["u"], ["p"], callback=_typed_style)
    dl.get_downloader(["u"], ["p"], callback=_untyped_style)
    dl.start_download(["u"], [Path("p")], callback=lambda e, m: None)


def test_tasks_use_the_documented_keys() -> None:
    tasks = build_tasks(
        ["http://h/a", "http://h/b"],
        ["a", Path("dir/b")],
        show_names=["A", "B"],
        ids=["1", "2"],
        checksums=["sha256:00", None],
    )
    assert tasks == [
        {
            "url": "http://h/a",
            "save_path": "a",
            "show_name": "A",
            "id": "1",
            "checksum": "sha256:00",
        },
        {"url": "http://h/b", "save_path": str(Path("dir/b")), "show_name": "B", "id": "2"},
    ]


def test_max_connections_per_host_goes_into_every_task_and_is_checked() -> None:
    tasks = build_tasks(["http://h/a", "http://h/b"], ["a", "b"], max_connections_per_host=4)
    assert [t["max_connections_per_host"] for t in tasks] == [4, 4]
    assert "max_connections_per_host" not in build_tasks(["http://h/a"], ["a"])[0]
    for bad in (0, 4097, -1):
        with pytest.raises(ValueError, match="max_connections_per_host"):
            build_tasks(["http://h/a"], ["a"], max_connections_per_host=bad)
    for wrong in (True, 2.0, "4"):
        with pytest.raises(TypeError, match="max_connections_per_host"):
            build_tasks(["http://h/a"], ["a"], max_connections_per_host=wrong)  # type: ignore[arg-type]
    start = inspect.signature(TTHSDownloader.start_download).parameters
    assert start["max_connections_per_host"].kind is inspect.Parameter.KEYWORD_ONLY
    assert start["max_connections_per_host"].default is None


@given(
    st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1), st.none() | st.text()), max_size=8)
)
def test_task_json_round_trips_any_text(rows: list[tuple[str, str, str | None]]) -> None:
    urls = [r[0] for r in rows]
    paths = [r[1] for r in rows]
    names = [r[2] for r in rows]
    tasks = build_tasks(urls, paths, show_names=names)  # type: ignore[arg-type]
    decoded = json.loads(json.dumps(tasks, ensure_ascii=False))
    assert [t["url"] for t in decoded] == urls
    assert [t["save_path"] for t in decoded] == paths
    assert [t.get("show_name") for t in decoded] == names
