"""Downloads through the raw ABI against loopback servers: one file per kind of server,
both key spellings, every creating/starting export (camel-case aliases included),
headers, checksums, and the event stream of each run."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tests.support.content import Content
from tests.support.server import LoopbackServer

from .lib import Events, Harness, MiB, assert_file, check_events, task


def test_range_server_many_connections(tthsd: Harness, http_server: LoopbackServer,
                                       tmp_path: Path) -> None:
    res = http_server.add("/big.bin", size=6 * MiB + 12345)
    t = task(res.url, tmp_path / "big.bin", id="big", show_name="Big file")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"big": res.size})
    assert_file(tmp_path / "big.bin", res.body)
    http_server.wait_idle()
    gets = [r for r in http_server.requests("/big.bin") if r.method == "GET"]
    ranged = [r for r in gets if r.status == 206]
    assert len(ranged) >= 4, "a 6 MiB file in 1 MiB chunks should take several ranges"
    assert len({r.conn for r in ranged}) >= 2, "expected more than one connection"
    assert all(r.range_header for r in gets if r.status == 206)
    for r in ranged:
        first, last = r.served
        assert 0 <= first <= last < res.size
    # The engine reads no byte twice; the server may have pushed a little more into socket
    # buffers for ranges whose tail was handed to another connection.
    assert res.size <= run.stats()["bytes_fetched"] <= res.size + 256 * 1024
    served = http_server.bytes_sent("/big.bin")
    assert served <= res.size * 1.25, f"served {served} bytes for a {res.size} file"


def test_server_that_ignores_range(tthsd: Harness, http_server: LoopbackServer,
                                   tmp_path: Path) -> None:
    res = http_server.add("/plain.bin", size=3 * MiB + 7, ranges=False)
    t = task(res.url, tmp_path / "plain.bin", id="p")
    run = tthsd.start([t], threads=8, chunk_mb=1)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"p": res.size})
    assert_file(tmp_path / "plain.bin", res.body)
    http_server.wait_idle()
    served = http_server.bytes_sent("/plain.bin")
    assert served < 2 * res.size, f"ranges ignored, yet {served} bytes fetched for {res.size}"


def test_no_content_length_close_delimited(tthsd: Harness, http_server: LoopbackServer,
                                           tmp_path: Path) -> None:
    res = http_server.add("/close.bin", size=2 * MiB + 3, framing="close", ranges=False)
    t = task(res.url, tmp_path / "close.bin", id="c")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"c": res.size})
    assert_file(tmp_path / "close.bin", res.body)


def test_no_content_length_chunked(tthsd: Harness, http_server: LoopbackServer,
                                   tmp_path: Path) -> None:
    res = http_server.add("/chunked.bin", size=2 * MiB + 5, framing="chunked", ranges=False)
    t = task(res.url, tmp_path / "chunked.bin", id="k")
    run = tthsd.start([t], threads=4, chunk_mb=1)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"k": res.size})
    assert_file(tmp_path / "chunked.bin", res.body)


def test_404_is_an_http_status_error(tthsd: Harness, http_server: LoopbackServer,
                                     tmp_path: Path) -> None:
    res = http_server.add("/missing.bin", status=404)
    t = task(res.url, tmp_path / "missing.bin", id="m")
    run = tthsd.start([t])
    run.wait_end(20)
    check_events(run.events, [t], success=False)
    errs = run.events.of("err", "m")
    assert errs, "a 404 must produce an err event for the task"
    assert errs[0].msg["Code"] == "http_status" and errs[0].msg["Error"], errs[0].msg
    assert not (tmp_path / "missing.bin").exists()
    assert len(http_server.requests("/missing.bin")) <= 2, "a 404 is not retried"


def test_zero_byte_file(tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/empty.bin", size=0)
    t = task(res.url, tmp_path / "sub" / "empty.bin", id="z")
    run = tthsd.start([t])
    run.wait_end(20)
    check_events(run.events, [t])
    assert_file(tmp_path / "sub" / "empty.bin", res.body)  # parent folder created too


def test_go_style_keys_with_startDownload(tthsd: Harness, http_server: LoopbackServer,  # noqa: N802
                                         tmp_path: Path) -> None:
    res = http_server.add("/go.bin", size=MiB + 1)
    t = task(res.url, tmp_path / "go.bin", id="go-1", show_name="Go", go_style=True)
    run = tthsd.start([t], alias=True, multiple=False)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"go-1": res.size})
    assert_file(tmp_path / "go.bin", res.body)


def test_default_show_name_and_generated_ids(tthsd: Harness, http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    a = http_server.add("/a.bin", size=1000)
    b = http_server.add("/b.bin", size=2000)
    run = tthsd.start([task(a.url, tmp_path / "a.bin"), task(b.url, tmp_path / "b.bin")])
    run.wait_end(20)
    starts = run.events.of("startOne")
    assert [e.show_name for e in starts] == ["a.bin", "b.bin"]
    ids = [e.id for e in starts]
    assert all(ids) and len(set(ids)) == 2, f"generated ids must be unique: {ids}"
    assert_file(tmp_path / "a.bin", a.body)
    assert_file(tmp_path / "b.bin", b.body)


def test_get_downloader_then_start_download_id(tthsd: Harness, http_server: LoopbackServer,
                                               tmp_path: Path) -> None:
    res = http_server.add("/g.bin", size=MiB + 2)
    t = task(res.url, tmp_path / "g.bin", id="g")
    run = tthsd.create([t])
    assert run.stats()["state"] == "created"
    assert run.events.wait_quiet(0.2) == 0, "a created downloader must not start"
    assert http_server.requests() == [], "get_downloader must not touch the network"
    assert run.start() == 0
    run.wait_end(20)
    check_events(run.events, [t], sizes={"g": res.size})
    assert_file(tmp_path / "g.bin", res.body)


def test_getDownloader_then_startDownload_ID(tthsd: Harness, lib, http_server: LoopbackServer,  # noqa: N802
                                            tmp_path: Path) -> None:
    res = http_server.add("/gc.bin", size=MiB + 3)
    t = task(res.url, tmp_path / "gc.bin", id="gc")
    run = tthsd.create([t], alias=True)
    assert lib.startDownload_ID(run.id) == 0
    run.wait_end(20)
    check_events(run.events, [t], sizes={"gc": res.size})
    assert_file(tmp_path / "gc.bin", res.body)


def test_startMultipleDownloads_ID(tthsd: Harness, lib, http_server: LoopbackServer,  # noqa: N802
                                   tmp_path: Path) -> None:
    tasks, bodies = [], {}
    for i in range(3):
        res = http_server.add(f"/m{i}.bin", size=300_000 + i)
        tasks.append(task(res.url, tmp_path / f"m{i}.bin", id=f"m{i}"))
        bodies[f"m{i}"] = res.body
    run = tthsd.create(tasks, alias=True)
    assert lib.startMultipleDownloads_ID(run.id) == 0
    run.wait_end(20)
    check_events(run.events, tasks, sizes={k: b.size for k, b in bodies.items()})
    for i in range(3):
        assert_file(tmp_path / f"m{i}.bin", bodies[f"m{i}"])


def test_start_again_after_end_fetches_nothing_new(tthsd: Harness, http_server: LoopbackServer,
                                                   tmp_path: Path) -> None:
    res = http_server.add("/again.bin", size=2 * MiB)
    t = task(res.url, tmp_path / "again.bin", id="again")
    run = tthsd.create([t])
    assert run.start() == 0
    run.wait_end(20)
    http_server.wait_idle()
    first = http_server.bytes_sent("/again.bin")
    assert run.stats()["state"] == "finished"
    n = len(run.events.items)
    t0 = time.monotonic()
    assert run.start() == 0, "an id stays valid after its run ends"
    run.events.wait_for(lambda e: e.type == "end" and e.at >= t0, 20, "the second run's end")
    second = run.events.snapshot()[n:]
    assert second[0].type == "start" and second[-1].type == "end"
    http_server.wait_idle()
    assert http_server.bytes_sent("/again.bin") - first < 64 * 1024, (
        "the file is complete: a second run must not fetch it again")
    assert_file(tmp_path / "again.bin", res.body)


def test_user_agent_and_headers_reach_every_request(tthsd: Harness, http_server: LoopbackServer,
                                                    tmp_path: Path) -> None:
    res = http_server.add("/h.bin", size=2 * MiB)
    t = task(res.url, tmp_path / "h.bin", id="h",
             headers={"X-Over": "task", "X-Task-Only": "t"})
    run = tthsd.start([t], threads=4, user_agent="tthsd-abi-test/1.0",
                      headers={"X-Global": "g", "X-Over": "global"})
    run.wait_end(20)
    check_events(run.events, [t])
    recs = http_server.requests("/h.bin")
    assert recs
    for r in recs:
        assert r.headers.get("User-Agent") == "tthsd-abi-test/1.0", r.headers
        assert r.headers.get("X-Global") == "g", r.headers
        assert r.headers.get_all("X-Over") == ["task"], r.headers
        assert r.headers.get("X-Task-Only") == "t", r.headers
        assert r.headers.get("Accept-Encoding") in (None, "identity"), (
            "no automatic decompression: don't ask for compressed bodies")
    assert_file(tmp_path / "h.bin", res.body)


def test_url_fragment_query_and_escapes_reach_the_server_as_they_should(
        tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/dir%20x/f.bin", size=3 * MiB + 1)
    t = task(res.url + "?v=1&w=%2F#part-2", tmp_path / "f.bin", id="f")
    run = tthsd.start([t], threads=4)
    run.wait_end(20)
    check_events(run.events, [t])
    assert_file(tmp_path / "f.bin", res.body)
    recs = http_server.requests("/dir%20x/f.bin")
    assert len(recs) >= 2
    for r in recs:
        assert "#" not in r.target and r.target.endswith("?v=1&w=%2F"), r.target
        assert r.headers.get("Accept") == "*/*", r.headers
        assert r.headers.get("Host") == f"127.0.0.1:{http_server.port}", r.headers


def test_checksums_verified(tthsd: Harness, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/c.bin", size=MiB + 9)
    data = res.body.read(0, res.size)
    good_sha = task(res.url, tmp_path / "sha.bin", id="sha",
                    checksum="sha256:" + res.sha256())
    good_md5 = task(res.url, tmp_path / "md5.bin", id="md5",
                    checksum="md5:" + hashlib.md5(data).hexdigest())
    bad = task(res.url, tmp_path / "bad.bin", id="bad", checksum="sha256:" + "0" * 64)
    run = tthsd.start([good_sha, good_md5, bad])
    run.wait_end(20)
    check_events(run.events, [good_sha, good_md5, bad],
                 success={"sha": True, "md5": True, "bad": False})
    assert_file(tmp_path / "sha.bin", res.body)
    assert_file(tmp_path / "md5.bin", res.body)
    errs = run.events.of("err", "bad")
    assert errs and errs[0].msg["Code"] == "checksum_mismatch", errs
    assert not (tmp_path / "bad.bin").exists(), "a file failing its checksum is not published"


def test_null_callback_still_downloads(tthsd: Harness, http_server: LoopbackServer,
                                       tmp_path: Path) -> None:
    res = http_server.add("/quiet.bin", size=MiB)
    run = tthsd.start([task(res.url, tmp_path / "quiet.bin")], callback=False)
    deadline = time.monotonic() + 20
    while run.stats().get("state") not in ("finished", "failed"):
        assert time.monotonic() < deadline, run.stats()
        time.sleep(0.05)
    assert run.stats()["state"] == "finished"
    assert_file(tmp_path / "quiet.bin", res.body)


def test_two_files_differ_and_land_in_place(tthsd: Harness, http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    """Same size, different salts: a range of one written into the other is caught."""
    a = http_server.add("/x/a.bin", body=Content(MiB + 100, "xa"))
    b = http_server.add("/x/b.bin", body=Content(MiB + 100, "xb"))
    ts = [task(a.url, tmp_path / "a.bin", id="a"), task(b.url, tmp_path / "b.bin", id="b")]
    run = tthsd.start(ts, multiple=True, threads=8, chunk_mb=1)
    run.wait_end(20)
    check_events(run.events, ts)
    assert_file(tmp_path / "a.bin", a.body)
    assert_file(tmp_path / "b.bin", b.body)


def test_events_carry_task_identity(tthsd: Harness, http_server: LoopbackServer,
                                    tmp_path: Path) -> None:
    res = http_server.add("/id.bin", size=2 * MiB)
    t = task(res.url, tmp_path / "id.bin", id="task-42", show_name="Forty-two")
    events = Events()
    run = tthsd.start([t], events=events, threads=2)
    run.wait_end(20)
    for e in events.of("update"):
        assert (e.id, e.show_name) == ("task-42", "Forty-two")
        assert e.msg["Total"] == res.size
    assert events.of("update")[-1].msg["Downloaded"] == res.size
