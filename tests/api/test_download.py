"""The Python API on the real core, against loopback servers: the documentation's examples
download correct files, events arrive in order with the task ids, callbacks that raise,
two instances in two threads, close during a download, control methods and errors."""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.api.conftest import Recorder
from tests.support.content import sha256_file
from tests.support.server import LoopbackServer
from tthsd_interface import TTHSDownloader
from tthsd_interface.demo import main as demo_main

MiB = 1 << 20

# The documentation's example 4.1, character for character (only the URLs are replaced).
SEED_EXAMPLE_4_1 = """\
from TTHSD_interface import TTHSDownloader

def on_progress(event, msg):
    if event['Type'] == 'update':
        total = msg.get('Total', 0)
        downloaded = msg.get('Downloaded', 0)
        task_id = event.get('ID', '')  # ID 从 event 获取
        if total:
            print(f"进度 [{task_id}]: {downloaded/total:.1%}")
    elif event['Type'] == 'startOne':
        url = msg.get('URL', '')
        task_id = event.get('ID', '')  # ID 从 event 获取
        index = msg.get('Index', 0)
        total = msg.get('Total', 0)
        print(f"开始下载 [{index}/{total}]: {url} (ID: {task_id})")
    elif event['Type'] == 'endOne':
        url = msg.get('URL', '')
        task_id = event.get('ID', '')  # ID 从 event 获取
        print(f"下载完成: {url} (ID: {task_id})")
    elif event['Type'] == 'err':
        print("错误:", msg.get('Error'))
    
    # 剩下的处理可以去查看 示例/TTHSD Python 接口封装 的 Callback 示例

with TTHSDownloader() as dl:
    dl_id = dl.start_download(
        urls=["https://example.com/file1.zip", "https://example.com/file2.zip"],
        save_paths=["./downloads/file1.zip", "./downloads/file2.zip"],
        thread_count=32,
        callback=on_progress
    )
    # 程序退出 with 块时自动 close()
"""

# The documentation's example 4.2, likewise.
SEED_EXAMPLE_4_2 = """\
dl = TTHSDownloader()
dl_id = dl.get_downloader(
    urls=["https://example.com/bigfile.iso"],
    save_paths=["./downloads/bigfile.iso"],
    thread_count=64
)
dl.start_multiple_downloads_by_id(dl_id)
# ... 后续可暂停、恢复等
# 资源会在 dl 对象被销毁时自动清理
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core: Path) -> Path:
    """Run in tmp_path with the real core found by the default lookup."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TTHSD_LIBRARY", str(core))
    return tmp_path


def test_documentation_example_4_1_downloads_both_files(
    in_tmp: Path, http_server: LoopbackServer
) -> None:
    one = http_server.add("/file1.zip", size=3 * MiB + 123)
    two = http_server.add("/file2.zip", size=5 * MiB)
    code = SEED_EXAMPLE_4_1.replace("https://example.com/file1.zip", one.url).replace(
        "https://example.com/file2.zip", two.url
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "documentation-4.1", "exec"), {"__name__": "__seed__"})
    # The with block waited: both files are complete right after it.
    assert sha256_file(in_tmp / "downloads" / "file1.zip") == one.sha256()
    assert sha256_file(in_tmp / "downloads" / "file2.zip") == two.sha256()
    printed = out.getvalue()
    assert printed.count("下载完成") == 2
    assert "开始下载 [1/2]" in printed
    assert "开始下载 [2/2]" in printed
    assert "错误" not in printed


def test_documentation_example_4_2_downloads_the_file(
    in_tmp: Path, http_server: LoopbackServer
) -> None:
    big = http_server.add("/bigfile.iso", size=24 * MiB)
    code = "from TTHSD_interface import TTHSDownloader\n" + SEED_EXAMPLE_4_2.replace(
        "https://example.com/bigfile.iso", big.url
    )
    namespace: dict[str, Any] = {"__name__": "__seed__"}
    exec(compile(code, "documentation-4.2", "exec"), namespace)
    dl: TTHSDownloader = namespace["dl"]
    try:
        assert namespace["dl_id"] > 0
        assert dl.wait(namespace["dl_id"], timeout=120)
        assert sha256_file(in_tmp / "downloads" / "bigfile.iso") == big.sha256()
        stats = dl.get_performance_stats(namespace["dl_id"])
        assert stats["state"] == "finished"
        assert stats["downloaded"] == stats["total"] == big.size
    finally:
        dl.close()


@pytest.fixture(params=["queue", "callback"])
def delivery(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways events reach Python on the real core: polled from the core's event queue
    (the default) and through the C callback (what earlier cores offer, and what
    ``TTHSD_EVENT_QUEUE=0`` asks for)."""
    if request.param == "callback":
        monkeypatch.setenv("TTHSD_EVENT_QUEUE", "0")
    else:
        monkeypatch.delenv("TTHSD_EVENT_QUEUE", raising=False)
    return str(request.param)


def test_each_delivery_is_used_and_calls_back_on_the_dispatcher_thread(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder, delivery: str
) -> None:
    files = [http_server.add(f"/d{i}.bin", size=20_000 + i) for i in range(30)]
    with TTHSDownloader() as dl:
        dl_id = dl.start_download(
            [f.url for f in files], [in_tmp / f"d{i}.bin" for i in range(30)],
            callback=recorder, is_multiple=True,
        )  # fmt: skip
        assert dl_id > 0
        assert (dl._session.dispatcher.event_queue is not None) == (delivery == "queue")
        assert dl.wait(dl_id, timeout=30)
    assert len(recorder.threads) == 1
    assert next(iter(recorder.threads)).startswith("TTHSD-dispatch-")
    types = recorder.types()
    assert (types[0], types[-1]) == ("start", "end")
    assert types.count("startOne") == types.count("endOne") == 30
    for i, f in enumerate(files):
        assert sha256_file(in_tmp / f"d{i}.bin") == f.sha256()


def test_events_come_in_order_with_the_task_ids(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder, delivery: str
) -> None:
    files = [http_server.add(f"/f{i}.bin", size=(i + 1) * MiB) for i in range(3)]
    with TTHSDownloader() as dl:
        dl_id = dl.start_download(
            [f.url for f in files],
            [in_tmp / f"f{i}.bin" for i in range(3)],
            thread_count=8,
            chunk_size_mb=1,
            callback=recorder,
            ids=["id-a", "id-b", "id-c"],
            show_names=["A", "B", "C"],
        )
        assert dl_id > 0
    types = recorder.types()
    assert types[0] == "start"
    assert types[-1] == "end"
    assert types.count("end") == 1
    # Sequential run: each task's events lie between its startOne and its endOne.
    task_events = [(e, m) for e, m in recorder.calls if e["Type"] not in ("start", "end", "msg")]
    current: str | None = None
    for event, msg in task_events:
        if event["Type"] == "startOne":
            assert current is None
            current = str(event["ID"])
            assert event["ShowName"] == msg["ShowName"]
        else:
            assert event["ID"] == current, (event, current)
            if event["Type"] == "endOne":
                assert msg["Success"] is True
                current = None
    starts = recorder.of_type("startOne")
    assert [e["ID"] for e, _ in starts] == ["id-a", "id-b", "id-c"]
    assert [m["Index"] for _, m in starts] == [1, 2, 3]
    assert {m["Total"] for _, m in starts} == {3}
    assert len(files) == 3
    for task_id, res in zip(["id-a", "id-b", "id-c"], files):
        updates = [m for e, m in recorder.of_type("update") if e["ID"] == task_id]
        assert updates, f"no update for {task_id}"
        assert updates[-1]["Downloaded"] == updates[-1]["Total"] == res.size
        downloaded = [int(str(m["Downloaded"])) for m in updates]
        assert downloaded == sorted(downloaded)
    for i, res in enumerate(files):
        assert sha256_file(in_tmp / f"f{i}.bin") == res.sha256()
    global_events = [e for e, _ in recorder.calls if e["Type"] in ("start", "end")]
    assert all(e["ShowName"] == "Global" and e["ID"] == "" for e in global_events)


def test_a_raising_callback_does_not_stop_the_download(
    in_tmp: Path, http_server: LoopbackServer, read_log: Callable[[], str]
) -> None:
    res = http_server.add("/r.bin", size=4 * MiB)
    seen: list[str] = []

    def raising(event: dict[str, Any], msg: dict[str, Any]) -> None:
        seen.append(event["Type"])
        raise ValueError(f"user bug on {event['Type']}")

    with TTHSDownloader() as dl:
        dl.start_download([res.url], [in_tmp / "r.bin"], callback=raising)
    assert seen[0] == "start"
    assert seen[-1] == "end"
    assert "endOne" in seen
    assert sha256_file(in_tmp / "r.bin") == res.sha256()
    log = read_log()
    assert "ValueError: user bug on start" in log
    assert "ValueError: user bug on end" in log


def test_two_instances_in_two_threads_do_not_interfere(
    in_tmp: Path, http_server: LoopbackServer, delivery: str
) -> None:
    resources = {n: http_server.add(f"/t{n}.bin", size=(6 + n) * MiB) for n in range(2)}
    recorders = {n: Recorder() for n in range(2)}
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(n: int) -> None:
        try:
            with TTHSDownloader() as dl:
                barrier.wait()
                dl_id = dl.start_download(
                    [resources[n].url], [in_tmp / f"t{n}.bin"], thread_count=4,
                    chunk_size_mb=1, callback=recorders[n], ids=[f"task-{n}"],
                )  # fmt: skip
                assert dl_id > 0
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    for n in range(2):
        ids = {e["ID"] for e, _ in recorders[n].calls} - {""}
        assert ids == {f"task-{n}"}
        assert recorders[n].types()[-1] == "end"
        assert sha256_file(in_tmp / f"t{n}.bin") == resources[n].sha256()
    assert recorders[0].threads.isdisjoint(recorders[1].threads)


def test_close_during_a_download_is_prompt_and_final(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder, delivery: str
) -> None:
    res = http_server.add("/slow.bin", size=32 * MiB, throttle=256 * 1024)
    dl = TTHSDownloader()
    dl_id = dl.start_download([res.url], [in_tmp / "slow.bin"], thread_count=4, callback=recorder)
    assert dl_id > 0
    deadline = time.monotonic() + 10
    while not recorder.of_type("update") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.of_type("update"), "no progress within 10 s"
    started = time.monotonic()
    dl.close()
    assert time.monotonic() - started < 3
    count = len(recorder.calls)
    time.sleep(0.5)
    assert len(recorder.calls) == count
    assert not (in_tmp / "slow.bin").exists()  # incomplete: never published
    assert dl.get_performance_stats(dl_id) == {}


def test_pause_and_resume_finish_a_correct_file(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder
) -> None:
    res = http_server.add("/pr.bin", size=8 * MiB, throttle=2 * MiB)
    with TTHSDownloader() as dl:
        dl_id = dl.start_download(
            [res.url], [in_tmp / "pr.bin"], thread_count=4, chunk_size_mb=1, callback=recorder
        )
        time.sleep(0.5)
        assert dl.pause_download(dl_id) is True
        assert dl.get_performance_stats(dl_id)["state"] == "paused"
        assert dl.wait(dl_id, timeout=0.5) is False
        assert dl.resume_download(dl_id) is True
    texts = [m.get("Text") for _, m in recorder.of_type("msg")]
    assert "Download paused" in texts
    assert "Download resumed" in texts
    assert sha256_file(in_tmp / "pr.bin") == res.sha256()


def test_checksums_are_verified(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder
) -> None:
    good = http_server.add("/good.bin", size=MiB)
    bad = http_server.add("/bad.bin", size=MiB)
    with TTHSDownloader() as dl:
        dl.start_download(
            [good.url, bad.url],
            [in_tmp / "good.bin", in_tmp / "bad.bin"],
            callback=recorder,
            checksums=["sha256:" + good.sha256(), "sha256:" + "0" * 64],
        )
    ends = {m["SavePath"]: m["Success"] for _, m in recorder.of_type("endOne")}
    assert ends == {str(in_tmp / "good.bin"): True, str(in_tmp / "bad.bin"): False}
    assert [m["Code"] for _, m in recorder.of_type("err")] == ["checksum_mismatch"]
    assert sha256_file(in_tmp / "good.bin") == good.sha256()
    assert not (in_tmp / "bad.bin").exists()


def test_headers_and_user_agent_are_sent(
    in_tmp: Path, httpserver: HTTPServer, recorder: Recorder
) -> None:
    body = hashlib.sha256(b"seed").digest() * 1000
    httpserver.expect_request(
        "/h.bin", headers={"X-Token": "secret", "User-Agent": "tthsd-test/1"}
    ).respond_with_data(body, content_type="application/octet-stream")
    with TTHSDownloader() as dl:
        dl_id = dl.start_download(
            [httpserver.url_for("/h.bin")], [in_tmp / "h.bin"], callback=recorder,
            user_agent="tthsd-test/1", headers={"X-Token": "secret"},
        )  # fmt: skip
        assert dl_id > 0
    assert (in_tmp / "h.bin").read_bytes() == body
    assert recorder.of_type("err") == []


def test_http_errors_are_err_events(
    in_tmp: Path, httpserver: HTTPServer, recorder: Recorder
) -> None:
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    with TTHSDownloader() as dl:
        dl.start_download([httpserver.url_for("/missing")], [in_tmp / "m.bin"], callback=recorder)
    errs = recorder.of_type("err")
    assert errs and errs[0][1]["Code"] == "http_status"
    assert [m["Success"] for _, m in recorder.of_type("endOne")] == [False]
    assert recorder.types()[-1] == "end"
    assert not (in_tmp / "m.bin").exists()


def test_core_refusal_is_minus_one_with_the_core_reason_logged(
    in_tmp: Path, read_log: Callable[[], str]
) -> None:
    with TTHSDownloader() as dl:
        assert dl.start_download(["not a url"], [in_tmp / "x"]) == -1
        assert dl.get_downloader(["ftp://h/x"], [in_tmp / "x"]) == -1
        assert dl.start_download(["http://h/a", "http://h/b"], [in_tmp / "x", in_tmp / "x"]) == -1
    log = read_log()
    assert log.count("failed: ") >= 3
    assert "failed: the core returned" not in log  # the core's own reason is logged


def test_unknown_ids_return_false_on_the_real_core(in_tmp: Path) -> None:
    with TTHSDownloader() as dl:
        for bad in (-1, 0, 123456):
            assert dl.pause_download(bad) is False
            assert dl.resume_download(bad) is False
            assert dl.stop_download(bad) is False
            assert dl.start_download_by_id(bad) is False
            assert dl.start_multiple_downloads_by_id(bad) is False
            assert dl.set_speed_limit(bad, 1) is False
            assert dl.set_proxy(bad, "http://127.0.0.1:9") is False
            assert dl.set_retry_config(bad, 1, 1, 1) is False
            assert dl.get_performance_stats(bad) == {}


def test_no_callback_still_lets_wait_work(in_tmp: Path, http_server: LoopbackServer) -> None:
    res = http_server.add("/n.bin", size=2 * MiB)
    dl = TTHSDownloader()
    try:
        dl_id = dl.start_download([res.url], [in_tmp / "n.bin"])
        assert dl.wait(dl_id, timeout=60)
        assert sha256_file(in_tmp / "n.bin") == res.sha256()
    finally:
        dl.close()


def test_the_demo_runs_offline(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--files", "2", "--size-mb", "4"]) == 0
    assert "demo OK" in capsys.readouterr().out


def test_stop_download_ends_the_run_with_its_last_events(
    in_tmp: Path, http_server: LoopbackServer, recorder: Recorder, delivery: str
) -> None:
    res = http_server.add("/stop.bin", size=16 * MiB, throttle=512 * 1024)
    with TTHSDownloader() as dl:
        dl_id = dl.start_download([res.url], [in_tmp / "stop.bin"], callback=recorder)
        time.sleep(0.3)
        started = time.monotonic()
        assert dl.stop_download(dl_id) is True
        assert time.monotonic() - started < 3
        assert dl.wait(dl_id, timeout=5)
        assert dl.stop_download(dl_id) is False  # the id is released
        assert dl.get_performance_stats(dl_id) == {}
    types = recorder.types()
    assert types[-1] == "end"
    assert [m["Text"] for _, m in recorder.of_type("msg")][-1] == "Download stopped"
    assert not (in_tmp / "stop.bin").exists()


def test_stop_and_close_from_inside_callbacks(
    in_tmp: Path, http_server: LoopbackServer, delivery: str
) -> None:
    res = http_server.add("/cb.bin", size=16 * MiB, throttle=512 * 1024)
    dl = TTHSDownloader()
    after_close: list[str] = []
    closed = threading.Event()

    def control(event: dict[str, Any], msg: dict[str, Any]) -> None:
        if closed.is_set():
            after_close.append(event["Type"])
        elif event["Type"] == "update":
            dl.close()  # on the dispatcher thread: must not deadlock
            closed.set()

    stopped: list[bool] = []
    two = TTHSDownloader()

    def stopper(event: dict[str, Any], msg: dict[str, Any]) -> None:
        if event["Type"] == "update" and not stopped:
            stopped.append(two.stop_download(two_id))

    dl.start_download([res.url], [in_tmp / "cb1.bin"], callback=control)
    two_id = two.start_download([res.url], [in_tmp / "cb2.bin"], callback=stopper)
    assert closed.wait(10)
    assert two.wait(two_id, timeout=10)
    assert stopped == [True]
    time.sleep(0.3)
    assert after_close == []
    two.close()
