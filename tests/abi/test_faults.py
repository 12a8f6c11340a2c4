"""The engine against a misbehaving server: each fault ends in the right file or a clear
err, never in a wrong file. (The first scenarios of issue 7, on the raw ABI.)"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from tests.support.content import Content
from tests.support.server import (
    LoopbackServer,
    RequestRecord,
    Response,
    close_after,
    fail_times,
    overlong_body,
    premature_eof,
    reset_after,
    serve_from,
    wrong_content_range,
)

from .lib import Harness, Lib, MiB, assert_file, check_events, task


def _first_big_ranged(req: RequestRecord) -> bool:
    """The first request asking for a range that does not start at 0 (a worker, not the
    probe)."""
    return req.range_spec is not None and (req.range_spec[0] or 0) > 0 and req.nth <= 3


def _run_one(tthsd: Harness, lib: Lib, server: LoopbackServer, tmp: Path, path: str,
             size: int = 4 * MiB, threads: int = 4, **knobs: Any) -> tuple[Any, Any, Any]:
    res = server.add(path, size=size, **knobs)
    t = task(res.url, tmp / "out.bin", id="x")
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.tthsd_set_timeouts(run.id, 2000, 1000) == 0
    assert lib.set_retry_config(run.id, 4, 20, 200) == 0
    assert run.start() == 0
    run.wait_end(20)
    return res, t, run


def test_close_mid_range_is_retried(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                    tmp_path: Path) -> None:
    res, t, run = _run_one(tthsd, lib, http_server, tmp_path, "/c.bin",
                           hook=close_after(100_000, on=_first_big_ranged))
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "out.bin", res.body)
    assert "fault-close" in [r.outcome for r in http_server.requests()]


def test_reset_mid_range_is_retried(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                    tmp_path: Path) -> None:
    res, t, run = _run_one(tthsd, lib, http_server, tmp_path, "/r.bin",
                           hook=reset_after(100_000, on=_first_big_ranged))
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "out.bin", res.body)
    assert "fault-reset" in [r.outcome for r in http_server.requests()]


def test_wrong_content_range_is_never_written(tthsd: Harness, lib: Lib,
                                              http_server: LoopbackServer,
                                              tmp_path: Path) -> None:
    res, _t, run = _run_one(tthsd, lib, http_server, tmp_path, "/w.bin",
                           hook=wrong_content_range(4096, on=_first_big_ranged))
    assert any(_first_big_ranged(r) and r.status == 206 for r in http_server.requests())
    assert run.events.of("endOne")[0].msg["Success"] is True
    assert_file(tmp_path / "out.bin", res.body)


def test_premature_eof_is_retried(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                  tmp_path: Path) -> None:
    res, t, run = _run_one(tthsd, lib, http_server, tmp_path, "/eof.bin",
                           hook=premature_eof(10_000, on=_first_big_ranged))
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "out.bin", res.body)


def test_body_longer_than_asked_is_not_written(tthsd: Harness, lib: Lib,
                                               http_server: LoopbackServer,
                                               tmp_path: Path) -> None:
    res, _t, run = _run_one(tthsd, lib, http_server, tmp_path, "/long.bin",
                           hook=overlong_body(50_000, on=_first_big_ranged))
    assert run.events.of("endOne")[0].msg["Success"] is True
    assert_file(tmp_path / "out.bin", res.body)


def test_retry_after_is_honoured(tthsd: Harness, lib: Lib, http_server: LoopbackServer,
                                 tmp_path: Path) -> None:
    res, t, run = _run_one(tthsd, lib, http_server, tmp_path, "/ra.bin", size=MiB,
                           hook=fail_times(1, 503, retry_after=1))
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "out.bin", res.body)
    first, second = http_server.requests("/ra.bin")[:2]
    assert first.status == 503
    assert second.started - first.started >= 0.9, "Retry-After: 1 was not waited for"


def test_redirects_followed_up_to_the_limit(tthsd: Harness, lib: Lib,
                                            http_server: LoopbackServer,
                                            tmp_path: Path) -> None:
    res = http_server.add("/final.bin", size=MiB + 1)
    for i in range(3):
        http_server.add(f"/hop{i}", redirect=f"/hop{i + 1}" if i < 2 else "/final.bin")
    for i in range(12):
        http_server.add(f"/loop{i}", redirect=f"/loop{(i + 1) % 12}", redirect_status=301)
    ok = task(http_server.url("/hop0"), tmp_path / "ok.bin", id="ok")
    loop = task(http_server.url("/loop0"), tmp_path / "loop.bin", id="loop")
    run = tthsd.start([ok, loop])
    run.wait_end(20)
    check_events(run.events, [ok, loop], success={"ok": True, "loop": False})
    assert_file(tmp_path / "ok.bin", res.body)
    errs = run.events.of("err", "loop")
    assert errs and errs[0].msg["Code"] == "too_many_redirects", errs
    assert not (tmp_path / "loop.bin").exists()


def test_credentials_do_not_cross_origins(tthsd: Harness, http_server: LoopbackServer,
                                          http_server_factory: Any, tmp_path: Path) -> None:
    other = http_server_factory()
    res = other.add("/there.bin", size=MiB)
    http_server.add("/here", redirect=other.url("/there.bin"))
    t = task(http_server.url("/here"), tmp_path / "x.bin", id="x",
             headers={"Authorization": "Bearer secret", "Cookie": "s=1", "X-Plain": "p"})
    run = tthsd.start([t], threads=2)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "x.bin", res.body)
    assert http_server.requests("/here")[0].headers.get("Authorization") == "Bearer secret"
    for r in other.requests():
        assert "Authorization" not in r.headers and "Cookie" not in r.headers, r.headers


def test_content_encoding_is_saved_as_served(tthsd: Harness, http_server: LoopbackServer,
                                             tmp_path: Path) -> None:
    raw = gzip.compress(Content(200_000, "gz").bytes())
    res = http_server.add("/z.gz", body=raw, headers={"Content-Encoding": "gzip"})
    t = task(res.url, tmp_path / "z.gz", id="z")
    run = tthsd.start([t], threads=2)
    run.wait_end(20)
    check_events(run.events, [t], sizes={"z": len(raw)})
    assert_file(tmp_path / "z.gz", res.body)


def test_file_changing_mid_download_never_yields_a_mixed_file(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    v2 = Content(4 * MiB, "version 2")
    res, _t, run = _run_one(tthsd, lib, http_server, tmp_path, "/v.bin", etag='"v1"',
                           hook=serve_from(3, v2, etag='"v2"'))
    out = tmp_path / "out.bin"
    if run.events.of("endOne")[0].msg["Success"]:
        try:
            assert_file(out, v2)
        except AssertionError:
            assert_file(out, res.body)
    else:
        errs = run.events.of("err", "x")
        assert errs and errs[0].msg["Code"] in ("file_changed", "size_mismatch"), errs
        assert not out.exists()


def test_stall_before_headers_is_cut_by_the_read_timeout(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    hung: list[int] = []

    def hang_first_worker(req: RequestRecord, resp: Response) -> None:
        if _first_big_ranged(req) and not hung:
            hung.append(req.seq)
            resp.delay = 60.0  # silent before the status line, until the server stops
    res, t, run = _run_one(tthsd, lib, http_server, tmp_path, "/h.bin", hook=hang_first_worker)
    assert hung
    check_events(run.events, [t], sizes={"x": res.size})
    assert_file(tmp_path / "out.bin", res.body)
