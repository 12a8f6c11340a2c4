"""Mirrors (issue 20, item 2): a task may name other URLs of the same file; ranges are
spread over them by speed, a mirror that fails or serves another file is dropped, never
mixed into the file, and the result says what each URL served.

The servers are ours (``tests/support/server.py``). "Fast" and "slow" are servers whose
uplink is the bottleneck (``support.pacing.Uplink``: one bandwidth shared by every
response, as a mirror's network link), not a per-connection cap: one connection or
eight get the same bytes per second from it, so a second server adds bandwidth that
more connections to the first cannot.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.content import Content, LiteralContent
from tests.support.pacing import Uplink
from tests.support.server import LoopbackServer, RequestRecord, Response

SIZE = 24 * MiB + 321
FAST = 12 * MiB  # bytes/s, the whole server
SLOW = 6 * MiB

Factory = Callable[..., LoopbackServer]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _msgs(run: Any) -> list[str]:
    return [str(e.msg.get("Text", "")) for e in run.events.snapshot() if e.type == "msg"]


@pytest.mark.scenario("a fast and a slow mirror finish faster than the fast one alone")
@pytest.mark.parametrize("primary", ["fast", "slow"])
def test_a_fast_and_a_slow_mirror_finish_faster_than_the_fast_one_alone(
        http_server_factory: Factory, lib_path: Path, tmp_path: Path, primary: str) -> None:
    import tthsd_interface

    body = Content(SIZE, "mirrored")
    fast = http_server_factory().add("/f.bin", body, etag='"fast-1"',
                                     hook=Uplink(FAST).hook())
    slow = http_server_factory().add("/f.bin", body, etag='"slow-9"',
                                     hook=Uplink(SLOW).hook())

    def timed(url: str, mirrors: list[str] | None, name: str) -> tuple[float, Any]:
        save = tmp_path / name
        t0 = time.monotonic()
        (result,) = tthsd_interface.download(
            url, save, connections=8, chunk_size_mb=1, mirrors=mirrors, durable=False,
            dll_path=lib_path,
        )  # fmt: skip
        wall = time.monotonic() - t0
        assert _sha(save) == body.sha256(), f"{name}: wrong file"
        return wall, result

    alone, _ = timed(fast.url, None, "alone.bin")
    first, other = (fast, slow) if primary == "fast" else (slow, fast)
    both, result = timed(first.url, [other.url], "both.bin")
    shares = {s.url: s for s in result.sources}
    print(f"task URL {primary}: fast alone {alone:.2f} s, both {both:.2f} s "
          f"(ideal {SIZE / FAST:.2f} and {SIZE / (FAST + SLOW):.2f}); {result.sources}")
    assert set(shares) == {fast.url, slow.url}
    assert [s.url for s in result.sources] == [first.url, other.url], "task URL first"
    assert sum(s.bytes for s in result.sources) == SIZE
    assert all(s.dropped is None for s in result.sources)
    # Each server served about its share of the bandwidth (1/3 for the slow one).
    assert shares[slow.url].bytes >= SIZE // 6, result.sources
    assert shares[fast.url].bytes >= SIZE // 2, result.sources
    assert both < 0.9 * alone, f"with the slow mirror {both:.2f} s, alone {alone:.2f} s"


@pytest.mark.scenario("a mirror serving another version is dropped; the file is right")
def test_a_mirror_serving_another_version_is_dropped_and_the_file_is_right(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path) -> None:
    good = http_server_factory().add("/f.bin", size=8 * MiB, salt="v2", etag='"v2"',
                                     throttle=4 * MiB)
    # Same size, same name, another build of the file.
    old_server = http_server_factory()
    old = old_server.add("/f.bin", size=8 * MiB, salt="v1", etag='"v1"')
    save = tmp_path / "f.bin"
    run = tthsd.create([task(good.url, save, id="t", mirrors=[old.url])], threads=8)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, good.body).success
    (entry,) = run.stats()["tasks"]
    print(entry["sources"], _msgs(run))
    assert entry["sources"][0] == {"URL": good.url, "Bytes": 8 * MiB, "Dropped": None}
    dropped = entry["sources"][1]
    assert dropped["URL"] == old.url and dropped["Bytes"] == 0
    assert "another version" in dropped["Dropped"]
    assert sum("dropped" in m for m in _msgs(run)) == 1
    # Only the sample it was compared by was asked of it; no range of the file.
    assert [r.range for r in old_server.requests()] == [(0, 64 * 1024 - 1)]
    end_one = next(e for e in run.events.snapshot() if e.type == "endOne")
    assert end_one.msg["Sources"] == entry["sources"]


@pytest.mark.parametrize("kind", ["size", "404", "no-ranges"])
def test_a_mirror_that_cannot_serve_the_file_is_dropped(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path, kind: str) -> None:
    good = http_server_factory().add("/f.bin", size=6 * MiB, etag='"g"', throttle=4 * MiB)
    srv = http_server_factory()
    knobs: dict[str, Any] = {
        "size": {"size": 6 * MiB + 1, "salt": "/f.bin"},
        "404": {"status": 404},
        "no-ranges": {"body": good.body, "ranges": False},
    }[kind]
    bad = srv.add("/f.bin", **knobs)
    save = tmp_path / "f.bin"
    run = tthsd.create([task(good.url, save, id="t", mirrors=[bad.url])], threads=8)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, good.body).success
    sources = run.stats()["tasks"][0]["sources"]
    print(kind, sources)
    assert sources[1]["Bytes"] == 0 and sources[1]["Dropped"], sources


def test_a_mirror_that_fails_after_it_was_vetted_is_dropped_and_its_bytes_refetched(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path) -> None:
    body = Content(12 * MiB, "late")
    good = http_server_factory().add("/f.bin", body, etag='"g"', throttle=3 * MiB)
    served = {"n": 0}

    def gone_after_two(req: RequestRecord, resp: Response) -> Response | None:
        served["n"] += 1
        if served["n"] > 2:  # the sample and one range, then the file is gone
            resp.status, resp.body, resp.length = 410, LiteralContent(b"gone"), 4
        else:
            resp.reset_after = 300 * 1024 if served["n"] == 2 else None
        return resp

    flaky = http_server_factory().add("/f.bin", body, etag='"m"', throttle=3 * MiB,
                                      hook=gone_after_two)
    save = tmp_path / "f.bin"
    run = tthsd.create([task(good.url, save, id="t", mirrors=[flaky.url])], threads=8)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, body).success
    sources = run.stats()["tasks"][0]["sources"]
    print(sources, _msgs(run))
    assert sources[1]["Dropped"] and "410" in sources[1]["Dropped"], sources
    assert sources[0]["Bytes"] + sources[1]["Bytes"] == body.size


def test_bytes_a_mirror_got_wrong_past_its_sample_fail_the_checksum_and_the_file_restarts(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path) -> None:
    """A mirror that agrees on its first bytes but differs later cannot be told apart
    by a sample; the task's checksum catches it, and the file starts over from the
    task's URL alone."""
    real = Content(8 * MiB, "real").bytes()
    fake = real[: 2 * MiB] + Content(6 * MiB, "fake").bytes()
    good = http_server_factory().add("/f.bin", LiteralContent(real), etag='"r"',
                                     throttle=4 * MiB)
    liar_server = http_server_factory()
    liar = liar_server.add("/f.bin", LiteralContent(fake), etag='"r2"')
    save = tmp_path / "f.bin"
    digest = hashlib.sha256(real).hexdigest()
    run = tthsd.create([task(good.url, save, id="t", mirrors=[liar.url],
                             checksum=f"sha256:{digest}")], threads=8)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, good.body).success
    msgs = _msgs(run)
    print(msgs)
    assert any("without them" in m for m in msgs), msgs
    assert len(liar_server.requests()) > 1, "the liar was never asked: the test proves nothing"


@pytest.mark.parametrize("mirrors, reason", [
    ("http://127.0.0.1:9/a", "must be a list"),
    ([7], "not a string"),
    (["ftp://127.0.0.1/a"], "scheme"),
    (["http://127.0.0.1:9/x"], "repeats"),
    (["http://127.0.0.1:9/b", "http://127.0.0.1:9/b"], "repeats"),
    ([f"http://127.0.0.1:9/{i}" for i in range(17)], "at most 16"),
])
def test_bad_mirrors_are_refused_with_a_reason(lib: Lib, tmp_path: Path, mirrors: Any,
                                               reason: str) -> None:
    tasks = json.dumps([task("http://127.0.0.1:9/x", tmp_path / "x", mirrors=mirrors)])
    assert lib.get_downloader(tasks.encode(), 1, 8, 1, None, False, None, None, None,
                              None) == -1
    assert reason in lib.last_error()


def test_download_takes_mirrors_in_every_form(lib_path: Path, tmp_path: Path) -> None:
    import tthsd_interface
    from tthsd_interface._request import DownloadRequest

    one = DownloadRequest.build("http://a/x", tmp_path / "x", mirrors=["http://b/x"])
    assert one.mirrors == (("http://b/x",),)
    two = DownloadRequest.build(["http://a/x", "http://a/y"], [tmp_path / "x", tmp_path / "y"],
                                mirrors={"http://a/y": ["http://b/y", "http://c/y"]})
    assert two.mirrors == ((), ("http://b/y", "http://c/y"))
    listed = DownloadRequest.build(["http://a/x", "http://a/y"],
                                   [tmp_path / "x", tmp_path / "y"],
                                   mirrors=[None, ["http://b/y"]])
    assert listed.mirrors == ((), ("http://b/y",))
    with pytest.raises(TypeError):
        DownloadRequest.build(["http://a/x", "http://a/y"], [tmp_path / "x", tmp_path / "y"],
                              mirrors=["http://b/x", "http://b/y"])
    with pytest.raises(ValueError, match="not downloaded"):
        DownloadRequest.build("http://a/x", tmp_path / "x", mirrors={"http://z/": ["http://b"]})
    with pytest.raises(ValueError, match="entries"):
        DownloadRequest.build("http://a/x", tmp_path / "x", mirrors=[["http://b"], None])
    with pytest.raises(tthsd_interface.DownloadRefusedError, match="mirror 0"):
        tthsd_interface.download("http://127.0.0.1:9/x", tmp_path / "x",
                                 mirrors=["not a url"], dll_path=lib_path)


def test_credentials_reach_no_mirror_on_another_origin(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path) -> None:
    body = Content(6 * MiB, "secret")
    home = http_server_factory()
    good = home.add("/f.bin", body, throttle=3 * MiB)
    away = http_server_factory()
    mirror = away.add("/f.bin", body, throttle=3 * MiB)
    save = tmp_path / "f.bin"
    run = tthsd.create([task(good.url, save, id="t", mirrors=[mirror.url],
                             headers={"Authorization": "Bearer s3cret", "X-Trace": "1"})],
                       threads=8, headers={"Cookie": "session=abc"})
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, body).success
    assert run.stats()["tasks"][0]["sources"][1]["Bytes"] > 0, "the mirror served nothing"
    for rec in away.requests():
        assert rec.headers.get("Authorization") is None and rec.headers.get("Cookie") is None
        assert rec.headers.get("X-Trace") == "1"
    assert all(r.headers.get("Authorization") == "Bearer s3cret" for r in home.requests())


@pytest.mark.parametrize("down", ["404", "refused"])
def test_a_task_whose_url_is_down_is_fetched_from_its_mirror(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path, down: str) -> None:
    body = Content(5 * MiB, "fallback")
    mirror = http_server_factory().add("/f.bin", body, throttle=4 * MiB)
    if down == "404":
        url = http_server_factory().url("/missing.bin")
    else:
        url = "http://127.0.0.1:9/f.bin"  # discard port: nothing listens
    save = tmp_path / "f.bin"
    run = tthsd.create([task(url, save, id="t", mirrors=[mirror.url])], threads=8)
    assert run.start() == 0
    run.wait_end(60)
    assert outcome(run, save, body).success
    sources = run.stats()["tasks"][0]["sources"]
    msgs = _msgs(run)
    print(sources, msgs)
    assert any("trying mirror" in m for m in msgs), msgs
    assert sources[0]["Bytes"] == 0 and sources[0]["Dropped"], sources
    assert sources[1]["Bytes"] == body.size and sources[1]["Dropped"] is None


def test_when_every_url_fails_the_task_fails_once_with_a_clear_error(
        tthsd: Harness, http_server_factory: Factory, tmp_path: Path) -> None:
    a = http_server_factory()
    b = http_server_factory()
    save = tmp_path / "f.bin"
    run = tthsd.create([task(a.url("/gone.bin"), save, id="t", mirrors=[b.url("/gone.bin")])],
                       threads=8)
    assert run.start() == 0
    run.wait_end(60)
    result = outcome(run, save, Content(1, "x"))
    assert not result.success and result.err is not None
    assert result.err.msg["Code"] == "http_status"
    msgs = _msgs(run)
    assert sum("trying" in m for m in msgs) == 1, msgs
    assert len(a.requests()) == 1 and len(b.requests()) == 1
