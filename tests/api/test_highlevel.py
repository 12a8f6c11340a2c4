"""The blocking high-level API on the real core: ``download()`` and ``fetch()`` return what
the issue promises (one frozen result per file, bytes in memory), raise typed exceptions
that list each failed file with its code, report progress, and leave a download
resumable when interrupted; ``set_durability`` reaches the core."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import tthsd_interface
from tests.support.content import sha256_file
from tests.support.server import LoopbackServer, fail_times
from tthsd_interface import (
    DownloadError,
    DownloadEvent,
    DownloadRefusedError,
    FileFailure,
    FileResult,
    TTHSDError,
    TTHSDownloader,
    download,
    fetch,
)

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _real_core(core: Path) -> None:
    """Every test here needs the real core (fail, do not skip, without it)."""


def test_download_returns_one_frozen_result_per_file_in_order(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    a = http_server.add("/a.bin", size=3 * MiB + 17)
    b = http_server.add("/b.bin", size=1000)
    paths = [tmp_path / "a.bin", tmp_path / "sub" / "b.bin"]
    results = download([a.url, b.url], paths, connections=8, chunk_size_mb=1)
    assert [r.path for r in results] == paths
    assert [r.url for r in results] == [a.url, b.url]
    assert [r.bytes for r in results] == [a.size, b.size]
    for r in results:
        assert isinstance(r, FileResult)
        assert r.seconds >= 0
        assert r.average_speed == pytest.approx(r.bytes / r.seconds if r.seconds else 0.0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.bytes = 0  # type: ignore[misc]
    assert sha256_file(paths[0]) == a.sha256()
    assert sha256_file(paths[1]) == b.sha256()


def test_download_accepts_a_single_url_and_path_as_plain_strings(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/one.bin", size=2 * MiB)
    target = tmp_path / "one.bin"
    (result,) = download(res.url, str(target), checksums="sha256:" + res.sha256())
    assert result.path == target
    assert result.bytes == res.size
    assert sha256_file(target) == res.sha256()


def test_download_one_after_another_when_not_parallel(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    names = [f"/s{i}.bin" for i in range(3)]
    resources = [http_server.add(n, size=MiB) for n in names]
    seen: list[DownloadEvent] = []
    download(
        [r.url for r in resources], [tmp_path / n.lstrip("/") for n in names],
        parallel=False, progress=seen.append,
    )  # fmt: skip
    kinds = [(e.type, e.index) for e in seen if e.type in ("startOne", "endOne")]
    assert kinds == [
        ("startOne", 1), ("endOne", 1), ("startOne", 2), ("endOne", 2),
        ("startOne", 3), ("endOne", 3),
    ]  # fmt: skip


def test_progress_callable_receives_typed_events_ending_with_end(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/p.bin", size=4 * MiB, throttle=16 * MiB)
    events: list[DownloadEvent] = []
    threads: set[str] = set()

    def progress(ev: DownloadEvent) -> None:
        events.append(ev)
        threads.add(threading.current_thread().name)

    download(res.url, tmp_path / "p.bin", connections=4, chunk_size_mb=1, progress=progress)
    assert events[0].type == "start"
    assert events[-1].type == "end"
    updates = [e for e in events if e.type == "update"]
    assert updates and updates[-1].downloaded == res.size == updates[-1].total
    assert all(0 <= e.contiguous <= e.downloaded for e in updates)
    assert updates[-1].contiguous == res.size
    (end_one,) = [e for e in events if e.type == "endOne"]
    assert end_one.success and end_one.url == res.url and end_one.downloader_id > 0
    assert len(threads) == 1


def test_progress_true_prints_plain_lines_when_not_a_terminal(
    http_server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = http_server.add("/plain.bin", size=MiB)
    download(res.url, tmp_path / "plain.bin", progress=True)
    err = capsys.readouterr().err
    assert "start  plain.bin" in err
    assert "done   plain.bin  1.0 MiB in" in err


def test_failed_files_are_listed_with_their_codes_and_the_others_kept(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    good = http_server.add("/good.bin", size=MiB)
    http_server.add("/missing.bin", status=404)
    bad_sum = http_server.add("/sum.bin", size=1000)
    urls = [good.url, http_server.url("/missing.bin"), bad_sum.url]
    paths = [tmp_path / "good.bin", tmp_path / "missing.bin", tmp_path / "sum.bin"]
    with pytest.raises(DownloadError) as info:
        download(urls, paths, checksums=[None, None, "sha256:" + "0" * 64], retries=0)
    err = info.value
    assert isinstance(err, TTHSDError)
    assert err.codes == ("http_status", "checksum_mismatch")
    assert [f.path for f in err.failures] == paths[1:]
    assert all(isinstance(f, FileFailure) and f.message for f in err.failures)
    assert [r.path for r in err.results] == [paths[0]]
    assert "missing.bin" in str(err) and "[checksum_mismatch]" in str(err)
    assert sha256_file(paths[0]) == good.sha256()
    assert not paths[1].exists() and not paths[2].exists()


def test_save_paths_reach_the_core_in_pathlib_form(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    # "out/" is the file "out" and "a/./b//c.bin" is "a/b/c.bin", as pathlib reads them
    # (and as download() always passed them): the core refuses a path that ends with a
    # separator, whose part file would land inside a folder of that name.
    a = http_server.add("/a.bin", size=1000)
    b = http_server.add("/b.bin", size=2000)
    given = [f"{tmp_path}/out/", f"{tmp_path}/a/./b//c.bin"]
    results = download([a.url, b.url], given, connections=2)
    assert [r.path for r in results] == [tmp_path / "out", tmp_path / "a" / "b" / "c.bin"]
    assert sha256_file(tmp_path / "out") == a.sha256()
    assert sha256_file(tmp_path / "a" / "b" / "c.bin") == b.sha256()


def test_the_seed_api_refuses_a_save_path_that_names_a_folder(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/f.bin", size=10)
    with TTHSDownloader() as dl:
        for path in (f"{tmp_path}/out/", f"{tmp_path}/out/."):
            assert dl.start_download([res.url], [path]) == -1
            assert "does not name a file" in dl._last_error()
    assert not (tmp_path / "out").exists()  # nothing created


def test_the_tracker_reads_raw_events_as_it_reads_download_events() -> None:
    from tthsd_interface._request import DownloadRequest
    from tthsd_interface._tracker import Tracker

    request = DownloadRequest.build(["http://h/a", "http://h/b", "http://h/c"], ["a", "b", "c"])
    a, b, _ = request.ids
    raw: list[tuple[dict[str, object], dict[str, object]]] = [
        ({"Type": "start", "ID": ""}, {}),
        ({"Type": "startOne", "ID": a}, {"Index": 1}),
        ({"Type": "update", "ID": a}, {"Downloaded": 5, "Total": 9}),
        ({"Type": "startOne", "ID": "unknown"}, {"Index": 2}),  # matched by Index
        ({"Type": "err", "ID": b}, {"Code": "http_status", "Error": "404"}),
        ({"Type": "endOne", "ID": b}, {"Success": False, "Index": 2}),
        ({"Type": "endOne", "ID": a}, {"Success": True, "Index": 1}),
        ({"Type": "surprise", "ID": a}, {"Text": "Download stopped"}),  # an unknown type
        ({"Type": "end", "ID": ""}, {}),
    ]
    by_raw, by_event = Tracker(request), Tracker(request)
    for event, msg in raw:
        by_raw.feed_raw(event, msg)
        by_event.feed(DownloadEvent.from_raw(event, msg))
    for t in (by_raw, by_event):
        assert t.ended and t.stopped
        assert [(f.success, f.code, f.downloaded, f.total) for f in t.files] == [
            (True, None, 5, 9), (False, "http_status", 0, 0), (None, None, 0, 0),
        ]  # fmt: skip
    assert [f.code for f in by_raw.failures()] == [f.code for f in by_event.failures()]
    assert [f.code for f in by_raw.failures()] == ["http_status", "stopped"]


def test_a_request_the_core_refuses_raises_download_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadRefusedError, match="refused") as info:
        download("gopher://example.invalid/x", tmp_path / "x")
    assert isinstance(info.value, ValueError) and isinstance(info.value, TTHSDError)
    assert info.value.reason


def test_a_proxy_the_core_refuses_raises_download_refused(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/x.bin", size=10)
    with pytest.raises(DownloadRefusedError, match="proxy"):
        download(res.url, tmp_path / "x.bin", proxy="ftp://nowhere:21")


def test_argument_errors_are_plain_python_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same length"):
        download(["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], [tmp_path / "a"])
    with pytest.raises(ValueError, match="checksums"):
        download("http://127.0.0.1:1/a", tmp_path / "a", checksums=["md5:00", "md5:11"])
    with pytest.raises(ValueError, match="empty"):
        download([], [])
    with pytest.raises(ValueError, match="rate"):
        download("http://127.0.0.1:1/a", tmp_path / "a", speed_limit="fast")
    with pytest.raises(TypeError, match="progress"):
        download("http://127.0.0.1:1/a", tmp_path / "a", progress=3)  # type: ignore[arg-type]


def test_settings_reach_the_core(http_server: LoopbackServer, tmp_path: Path) -> None:
    # Two 503s then the body: retries=2 is enough; a string speed limit bounds the time.
    res = http_server.add("/flaky.bin", size=2 * MiB, hook=fail_times(2, 503))
    started = time.monotonic()
    (result,) = download(
        res.url, tmp_path / "flaky.bin", retries=2, speed_limit="4M", timeouts=(5, 5),
        durable=False, headers={"X-Test": "yes"}, user_agent="tthsd-tests/1",
    )  # fmt: skip
    assert time.monotonic() - started >= 0.3  # 2 MiB at 4 MiB/s
    assert result.bytes == res.size
    requests = http_server.requests("/flaky.bin")
    assert all(r.headers.get("X-Test") == "yes" for r in requests)
    assert all(r.headers.get("User-Agent") == "tthsd-tests/1" for r in requests)
    assert [r.status for r in requests][:2] == [503, 503]


def test_no_retries_fails_at_the_first_503(http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/flaky.bin", size=1000, hook=fail_times(1, 503))
    with pytest.raises(DownloadError) as info:
        download(res.url, tmp_path / "flaky.bin", retries=0)
    assert info.value.codes == ("http_status",)


def test_ctrl_c_stops_the_download_and_keeps_it_resumable(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    # per connection; resuming in a new downloader needs a validator (docs/resume.md)
    res = http_server.add("/big.bin", size=8 * MiB, throttle=MiB, etag='"v1"')
    target = tmp_path / "big.bin"
    # SIGINT raises KeyboardInterrupt here even where this process inherited it ignored
    # (pytest started as a shell's background job).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            download(res.url, target, connections=4, chunk_size_mb=1)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not target.exists()
    assert Path(str(target) + ".tthsd.part").exists()
    assert Path(str(target) + ".tthsd.journal").exists()
    sent_before = http_server.bytes_sent("/big.bin")
    res.throttle = None
    download(res.url, target, connections=4, chunk_size_mb=1)
    assert sha256_file(target) == res.sha256()
    refetched = http_server.bytes_sent("/big.bin") - sent_before
    assert refetched < res.size - MiB  # resumed, not restarted


def test_fetch_returns_the_body(http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/f.bin", size=3 * MiB + 5)
    body = fetch(res.url, tmp_dir=tmp_path)
    assert len(body) == res.size
    assert body == res.content.read(0, res.size)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tthsd-fetch")] == []


def test_fetch_raises_download_error(http_server: LoopbackServer) -> None:
    http_server.add("/gone", status=410)
    with pytest.raises(DownloadError) as info:
        fetch(http_server.url("/gone"), retries=0)
    assert info.value.codes == ("http_status",)


def test_set_durability_is_accepted_for_a_live_id_only(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add("/d.bin", size=MiB)
    with TTHSDownloader() as dl:
        dl_id = dl.get_downloader([res.url], [tmp_path / "d.bin"])
        assert dl.set_durability(dl_id, False) is True
        assert dl.set_durability(dl_id, True) is True
        assert dl.set_durability(dl_id + 1000, False) is False
        assert dl.start_download_by_id(dl_id)
        assert dl.wait(dl_id, timeout=30)
        assert dl.stop_download(dl_id)
        assert dl.set_durability(dl_id, False) is False
        with pytest.raises(TypeError):
            dl.set_durability(dl_id, 1)  # type: ignore[arg-type]
    assert sha256_file(tmp_path / "d.bin") == res.sha256()


def test_the_exception_hierarchy_is_importable_from_the_package() -> None:
    assert issubclass(tthsd_interface.DownloadError, tthsd_interface.TTHSDError)
    assert issubclass(tthsd_interface.DownloadRefusedError, tthsd_interface.TTHSDError)
    assert issubclass(tthsd_interface.LibraryNotFoundError, tthsd_interface.TTHSDError)
    doc = tthsd_interface._errors.__doc__ or ""
    for name in ("TTHSDError", "DownloadError", "DownloadRefusedError", "LibraryError"):
        assert name in doc
