"""The Python side alone, on the stand-in core (tests/api/fakecore): event delivery on the
dispatcher thread, wait, close, the context manager, lifetimes and argument checks."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Recorder
from tthsd_interface import CallbackContextError, DownloaderClosedError, TTHSDownloader, _ffi

URLS = ["http://fake/1", "http://fake/2"]
PATHS = ["one.bin", "two.bin"]


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of the stand-in core last about 10 s per task (200 updates, 50 ms apart)."""
    monkeypatch.setenv("FAKECORE_UPDATES", "200")
    monkeypatch.setenv("FAKECORE_DELAY_MS", "50")


@pytest.fixture
def dl(fake_core: Path) -> Any:
    downloader = TTHSDownloader(fake_core)
    yield downloader
    downloader.close()


def test_events_arrive_in_order_on_the_dispatcher_thread(dl: Any, recorder: Recorder) -> None:
    dl_id = dl.start_download(URLS, PATHS, callback=recorder)
    assert dl_id > 0
    assert dl.wait(dl_id, timeout=10)
    per_task = ["startOne", "update", "update", "update", "endOne"]
    assert recorder.types() == ["start", *per_task, *per_task, "end"]
    (thread,) = recorder.threads
    assert thread.startswith("TTHSD-dispatch-")
    for event, _ in recorder.of_type("update"):
        assert event["ID"] in {"task1", "task2"}


def test_wait_works_without_a_user_callback(dl: Any) -> None:
    dl_id = dl.start_download(URLS, PATHS)
    assert dl.wait(dl_id, timeout=10)
    assert dl.wait(timeout=0)


def test_a_raising_callback_is_logged_and_the_run_completes(
    dl: Any, read_log: Callable[[], str]
) -> None:
    seen: list[str] = []

    def bad(event: dict[str, Any], msg: dict[str, Any]) -> None:
        seen.append(event["Type"])
        if event["Type"] == "update":
            raise RuntimeError("boom in user code")

    dl_id = dl.start_download(URLS, PATHS, callback=bad)
    assert dl.wait(dl_id, timeout=10)
    assert seen[-1] == "end"
    assert seen.count("endOne") == 2
    log = read_log()
    assert "RuntimeError: boom in user code" in log
    assert "the download goes on" in log


def test_close_during_a_run_is_prompt_and_silences_callbacks(
    dl: Any, recorder: Recorder, slow: None
) -> None:
    dl_id = dl.start_download(URLS, PATHS, callback=recorder)
    deadline = time.monotonic() + 5
    while not recorder.of_type("update") and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    dl.close()
    assert time.monotonic() - started < 2
    count = len(recorder.calls)
    time.sleep(0.3)
    assert len(recorder.calls) == count
    assert dl.closed
    assert dl.get_performance_stats(dl_id) == {}  # stopped: the core released the id
    assert dl.pause_download(dl_id) is False


def test_close_from_inside_a_callback(dl: Any, slow: None) -> None:
    calls: list[str] = []
    closed = threading.Event()

    def closer(event: dict[str, Any], msg: dict[str, Any]) -> None:
        if closed.is_set():
            calls.append("after close: " + event["Type"])
            return
        calls.append(event["Type"])
        if event["Type"] == "update":
            dl.close()  # from the dispatcher thread: must neither deadlock nor raise
            closed.set()

    dl.start_download(URLS, PATHS, callback=closer)
    assert closed.wait(5)
    assert dl.wait(timeout=5)  # the stop settled the run
    time.sleep(0.2)
    assert not [c for c in calls if c.startswith("after close")]


def test_wait_from_inside_a_callback_raises(dl: Any) -> None:
    errors: list[BaseException] = []

    def waiter(event: dict[str, Any], msg: dict[str, Any]) -> None:
        if event["Type"] == "start":
            try:
                dl.wait(timeout=1)
            except CallbackContextError as exc:
                errors.append(exc)

    dl_id = dl.start_download(URLS, PATHS, callback=waiter)
    assert dl.wait(dl_id, timeout=10)
    assert len(errors) == 1


def test_context_manager_waits_for_downloads_started_inside(
    fake_core: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKECORE_DELAY_MS", "20")
    with TTHSDownloader(fake_core) as dl:
        dl_id = dl.start_download(URLS, PATHS, callback=recorder)
    assert recorder.types()[-1] == "end"
    assert recorder.types().count("endOne") == 2
    assert dl.closed
    assert dl.get_performance_stats(dl_id) == {}


def test_context_manager_stops_downloads_when_the_block_raises(
    fake_core: Path, recorder: Recorder, slow: None
) -> None:
    started = time.monotonic()
    with pytest.raises(KeyError), TTHSDownloader(fake_core) as dl:
        dl.start_download(URLS, PATHS, callback=recorder)
        raise KeyError("user error")
    assert time.monotonic() - started < 3
    assert "endOne" not in recorder.types()
    count = len(recorder.calls)
    time.sleep(0.2)
    assert len(recorder.calls) == count


def test_two_instances_in_two_threads_do_not_interfere(fake_core: Path) -> None:
    results: dict[int, Recorder] = {}
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            rec = Recorder()
            with TTHSDownloader(fake_core) as dl:
                for _ in range(3):
                    dl.start_download(URLS[: n + 1], PATHS[: n + 1], callback=rec)
            results[n] = rec
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures
    for n, rec in results.items():
        assert rec.types().count("end") == 3
        assert rec.types().count("endOne") == 3 * (n + 1)
    assert results[0].threads.isdisjoint(results[1].threads)


def test_control_methods_return_false_for_unknown_ids(dl: Any) -> None:
    for bad_id in (-1, 0, 999, 2**40):
        assert dl.start_download_by_id(bad_id) is False
        assert dl.start_multiple_downloads_by_id(bad_id) is False
        assert dl.pause_download(bad_id) is False
        assert dl.resume_download(bad_id) is False
        assert dl.stop_download(bad_id) is False
        assert dl.set_speed_limit(bad_id, 1000) is False
        assert dl.set_proxy(bad_id, None) is False
        assert dl.set_retry_config(bad_id, 3, 100, 1000) is False
        assert dl.set_timeouts(bad_id, 1000, 1000) is False
        assert dl.get_performance_stats(bad_id) == {}
        assert dl.wait(bad_id, timeout=0) is False


def test_control_methods_return_true_for_known_ids(dl: Any, slow: None) -> None:
    dl_id = dl.get_downloader(URLS, PATHS)
    assert dl.set_speed_limit(dl_id, 0) is True
    assert dl.set_proxy(dl_id, "socks5://127.0.0.1:9") is True
    assert dl.set_retry_config(dl_id, 3, 100, 1000) is True
    assert dl.set_timeouts(dl_id, 1000, 2000) is True
    assert dl.get_performance_stats(dl_id)["state"] == "finished"
    assert dl.start_multiple_downloads_by_id(dl_id) is True
    assert dl.get_performance_stats(dl_id)["state"] == "running"
    assert dl.pause_download(dl_id) is True
    assert dl.wait(dl_id, timeout=0.2) is False  # paused: not ended
    assert dl.resume_download(dl_id) is True
    assert dl.stop_download(dl_id) is True
    assert dl.wait(dl_id, timeout=5) is True  # stopped counts as ended
    assert dl.stop_download(dl_id) is False  # released


def test_stop_delivers_its_events_then_nothing(dl: Any, recorder: Recorder, slow: None) -> None:
    dl_id = dl.start_download(URLS, PATHS, callback=recorder)
    assert dl.stop_download(dl_id) is True
    assert dl.wait(dl_id, timeout=5)
    texts = [m.get("Text") for _, m in recorder.of_type("msg")]
    assert texts == ["Download stopped"]
    assert recorder.types()[-1] == "end"
    count = len(recorder.calls)
    time.sleep(0.2)
    assert len(recorder.calls) == count


def test_get_downloader_then_start_by_id(dl: Any, recorder: Recorder) -> None:
    dl_id = dl.get_downloader(URLS, PATHS, callback=recorder)
    assert dl_id > 0
    assert dl.wait(dl_id, timeout=0)  # created, never started: nothing to wait for
    assert recorder.calls == []
    assert dl.start_download_by_id(dl_id) is True
    assert dl.wait(dl_id, timeout=10)
    assert recorder.types().count("end") == 1
    # An id stays valid after its run ended; it can run again.
    assert dl.start_download_by_id(dl_id) is True
    assert dl.wait(dl_id, timeout=10)
    assert recorder.types().count("end") == 2


def test_core_refusal_returns_minus_one_with_the_reason_logged(
    dl: Any, read_log: Callable[[], str]
) -> None:
    assert dl.start_download([], []) == -1
    assert dl.get_downloader([], []) == -1
    assert "failed: invalid tasks" in read_log()
    assert dl.wait(timeout=0)


def test_mismatched_lists_raise_value_error(dl: Any) -> None:
    with pytest.raises(ValueError, match="same length"):
        dl.start_download(URLS, PATHS[:1])
    with pytest.raises(ValueError, match="same length"):
        dl.get_downloader(URLS[:1], PATHS)
    with pytest.raises(ValueError, match="show_names"):
        dl.start_download(URLS, PATHS, show_names=["a"])
    with pytest.raises(ValueError, match="ids"):
        dl.start_download(URLS, PATHS, ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="checksums"):
        dl.start_download(URLS, PATHS, checksums=[None])


def test_a_single_string_is_not_a_list_of_urls(dl: Any) -> None:
    with pytest.raises(TypeError):
        dl.start_download("http://fake/1", ["a"])
    with pytest.raises(TypeError):
        dl.start_download(["http://fake/1"], "a")


def test_start_after_close_raises(dl: Any) -> None:
    dl.close()
    dl.close()  # idempotent
    with pytest.raises(DownloaderClosedError):
        dl.start_download(URLS, PATHS)
    assert dl.start_download_by_id(1) is False


def test_the_c_callback_lives_until_stop_download_returned(dl: Any, slow: None) -> None:
    dl_id = dl.start_download(URLS, PATHS)
    run = dl._session.runs[dl_id]
    thunk = weakref.ref(run.native)
    gc.collect()
    assert thunk() is not None
    assert dl.stop_download(dl_id)
    gc.collect()
    assert thunk() is None


def test_a_forgotten_downloader_stops_its_downloads(fake_core: Path, slow: None) -> None:
    dl = TTHSDownloader(fake_core)
    rec = Recorder()
    dl_id = dl.start_download(URLS, PATHS, callback=rec)
    lib = _ffi.load_library(fake_core)
    assert lib.get_performance_stats(dl_id)["state"] == "running"
    del dl
    gc.collect()
    assert lib.get_performance_stats(dl_id) == {}
