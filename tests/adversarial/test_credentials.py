"""Credentials never cross origins, and are never printed.

* ``Authorization`` and ``Cookie`` (from ``headers_json``, a task's ``headers``, or a
  URL's ``user:password@``) reach every request to the task's own origin, the probe and
  every worker range, and none to another origin reached by a redirect: the probe's, or
  one sprung on a worker's range (a second server is the other origin; another port or
  another host name for the same address is another origin too).
* A header value holding CR/LF never splits into a second header.
* No event, statistic, last-error text or Python log line shows a header value, a URL's
  password or its query, whatever way the task fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.abi.lib import REPO, Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer

from .knobs import SelfSignedCert, is_worker, redirect_on, storm

TOKEN = "Bearer tok-5ecret-A1"
COOKIE = "session=c00kie-5ecret-B2"
PASSWORD = "pa55-5ecret-C3"
QUERY_TOKEN = "qu3ry-5ecret-D4"
SECRETS = ("tok-5ecret-A1", "c00kie-5ecret-B2", "pa55-5ecret-C3", "qu3ry-5ecret-D4")
SENSITIVE = ("Authorization", "Cookie")


def _run(tthsd: Harness, lib: Lib, tasks: list[dict[str, Any]], *,
         headers: dict[str, str] | None = None, threads: int = 4):  # type: ignore[no-untyped-def]
    run = tthsd.create(tasks, threads=threads, chunk_mb=1, headers=headers)
    assert lib.set_retry_config(run.id, 2, 20, 40) == 0
    assert lib.tthsd_set_timeouts(run.id, 2000, 1000) == 0
    assert run.start() == 0
    run.wait_end(30)
    run.events.wait_quiet(0.1, 1.0)
    return run


def _with_credentials(srv: LoopbackServer, path: str) -> list[Any]:
    return [r for r in srv.requests(path) if r.headers.get("Authorization") == TOKEN
            and r.headers.get("Cookie") == COOKIE]


@pytest.mark.scenario("cross-origin redirect drops credentials")
@pytest.mark.parametrize("where", ["task headers", "headers_json"])
def test_credentials_reach_no_other_origin_on_any_range(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory: Any,
        tmp_path: Path, where: str) -> None:
    other = http_server_factory()
    res = other.add("/there.bin", size=6 * MiB + 3)
    http_server.add("/here", redirect=other.url("/there.bin"))
    creds = {"Authorization": TOKEN, "Cookie": COOKIE, "X-Plain": "p"}
    if where == "task headers":
        t = task(http_server.url("/here"), tmp_path / "x.bin", id="t", headers=creds)
        run = _run(tthsd, lib, [t])
    else:
        t = task(http_server.url("/here"), tmp_path / "x.bin", id="t")
        run = _run(tthsd, lib, [t], headers=creds)
    assert outcome(run, tmp_path / "x.bin", res.body).success
    assert _with_credentials(http_server, "/here"), "the first origin must get them"
    theirs = other.requests("/there.bin")
    assert len([r for r in theirs if is_worker(r)]) >= 3, "several connections expected"
    for r in theirs:
        assert r.headers.get("X-Plain") == "p", r.headers  # other headers do go on
        for h in SENSITIVE:
            assert h not in r.headers, f"{h} reached the other origin: {r.range_header}"


@pytest.mark.scenario("same-origin redirect keeps credentials")
def test_same_origin_redirect_keeps_credentials_on_every_request(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/b.bin", size=6 * MiB + 3)
    http_server.add("/a", redirect="/b.bin", redirect_status=301)
    t = task(http_server.url("/a"), tmp_path / "b.bin", id="t",
             headers={"Authorization": TOKEN, "Cookie": COOKIE})
    run = _run(tthsd, lib, [t])
    assert outcome(run, tmp_path / "b.bin", res.body).success
    recs = http_server.requests("/b.bin")
    assert len(recs) >= 4
    assert len(_with_credentials(http_server, "/b.bin")) == len(recs), [
        (r.range_header, r.headers.get("Authorization")) for r in recs]


@pytest.mark.scenario("cross-origin redirect drops credentials")
def test_another_host_name_for_the_same_server_is_another_origin(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/n.bin", size=4 * MiB)
    http_server.add("/by-ip", redirect=f"http://localhost:{http_server.port}/n.bin")
    t = task(http_server.url("/by-ip"), tmp_path / "n.bin", id="t",
             headers={"Authorization": TOKEN, "Cookie": COOKIE})
    run = _run(tthsd, lib, [t])
    assert outcome(run, tmp_path / "n.bin", res.body).success
    for r in http_server.requests("/n.bin"):
        assert r.headers.get("Host", "").startswith("localhost")
        for h in SENSITIVE:
            assert h not in r.headers, (h, r.range_header)


@pytest.mark.scenario("cross-origin redirect drops credentials")
def test_url_user_and_password_reach_no_other_origin(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory: Any,
        tmp_path: Path) -> None:
    other = http_server_factory()
    res = other.add("/u.bin", size=4 * MiB)
    http_server.add("/u", redirect=other.url("/u.bin"))
    url = f"http://user:{PASSWORD}@127.0.0.1:{http_server.port}/u"
    run = _run(tthsd, lib, [task(url, tmp_path / "u.bin", id="t")])
    assert outcome(run, tmp_path / "u.bin", res.body).success
    first = http_server.requests("/u")[0]
    assert (first.headers.get("Authorization") or "").startswith("Basic "), first.headers
    for r in other.requests():
        assert "Authorization" not in r.headers, r.headers


@pytest.mark.scenario("cross-origin redirect drops credentials")
def test_a_worker_range_redirected_to_another_origin_carries_no_credentials(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory: Any,
        tmp_path: Path) -> None:
    mirror = http_server_factory()
    res = http_server.add("/w.bin", size=4 * MiB)
    mirror.add("/w.bin", body=res.body)
    res.hook = redirect_on(mirror.url("/w.bin"), status=307, on=is_worker)
    t = task(res.url, tmp_path / "w.bin", id="t",
             headers={"Authorization": TOKEN, "Cookie": COOKIE})
    run = _run(tthsd, lib, [t])
    assert outcome(run, tmp_path / "w.bin", res.body).success
    assert _with_credentials(http_server, "/w.bin"), "the own origin gets them"
    assert mirror.requests(), "no range was redirected"
    for r in mirror.requests():
        for h in SENSITIVE:
            assert h not in r.headers, (h, r.range_header)


@pytest.mark.parametrize("value", ["v\r\nX-Injected: 1", "v\nX-Injected: 1", "v\rX-Injected: 1"])
def test_a_header_value_with_a_line_break_never_becomes_a_second_header(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        value: str) -> None:
    res = http_server.add("/i.bin", size=MiB + 1)
    t = task(res.url, tmp_path / "i.bin", id="t", headers={"X-A": value})
    tj = json.dumps([t]).encode()
    hdr = json.dumps({"X-B": value}).encode()
    ident = lib.start_download(tj, 1, 2, 1, None, False, None, None, None, None, hdr)
    if ident > 0:
        tthsd.ids.append(ident)
        import time

        deadline = time.monotonic() + 10
        while lib.stats(ident).get("state") == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    for r in http_server.requests():
        assert "X-Injected" not in r.headers, r.headers.items()
        for v in (r.headers.get("X-A"), r.headers.get("X-B")):
            assert v is None or ("\n" not in v and "\r" not in v)


# -- never printed ------------------------------------------------------------------------


def _failing_tasks(http_server: LoopbackServer, tls: LoopbackServer,
                   tmp: Path) -> list[dict[str, Any]]:
    """One task per way of failing, each URL with a password and a query token."""
    http_server.add("/404.bin", status=404)
    http_server.add("/500.bin", size=MiB, hook=storm(500))
    http_server.add("/loop", redirect="/loop")
    http_server.add("/ftp", redirect=f"ftp://user:{PASSWORD}@127.0.0.1/x?t={QUERY_TOKEN}")
    http_server.add("/cut.bin", size=MiB, framing="chunked", ranges=False)
    http_server.resource("/cut.bin").hook = lambda req, resp: setattr(
        resp, "chunked_fault", "truncated")
    http_server.add("/stall.bin", size=MiB, ranges=False)
    http_server.resource("/stall.bin").hook = lambda req, resp: setattr(
        resp, "stall_after", 1000)
    tls.add("/tls.bin", size=MiB)

    def url(srv: LoopbackServer, path: str) -> str:
        scheme = "https" if srv.ssl_context is not None else "http"
        return f"{scheme}://user:{PASSWORD}@127.0.0.1:{srv.port}{path}?t={QUERY_TOKEN}"
    paths = [(http_server, p) for p in
             ("/404.bin", "/500.bin", "/loop", "/ftp", "/cut.bin", "/stall.bin")]
    paths.append((tls, "/tls.bin"))
    out = [task(url(s, p), tmp / f"f{i}.bin", id=f"f{i}") for i, (s, p) in enumerate(paths)]
    out.append(task(f"http://user:{PASSWORD}@127.0.0.1:9/refused?t={QUERY_TOKEN}",
                    tmp / "refused.bin", id="refused"))
    return out


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.scenario("no secret in events, stats, last error or log lines")
def test_no_secret_in_err_events_stats_or_last_error(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory: Any,
        tmp_path: Path) -> None:
    tls = http_server_factory(ssl_context=SelfSignedCert("127.0.0.1").server_context(
        tmp_path / "cert"))
    tasks = _failing_tasks(http_server, tls, tmp_path)
    run = _run(tthsd, lib, tasks, headers={"Authorization": TOKEN, "Cookie": COOKIE})
    errs = run.events.of("err")
    assert {e.id for e in errs} == {t["id"] for t in tasks}, [e.msg for e in errs]
    codes = {e.id: e.msg["Code"] for e in errs}
    assert codes["f0"] == "http_status" and codes["f2"] == "too_many_redirects", codes
    for e in errs:
        assert not _leaks(e.raw[0].decode() + e.raw[1].decode()), e.msg
    for e in run.events.snapshot():
        if e.type not in ("startOne", "endOne"):
            assert not _leaks(e.raw[0].decode() + e.raw[1].decode()), e
    stats = lib.get_performance_stats(run.id)
    import ctypes

    text = ctypes.string_at(stats).decode()
    lib.free_string(stats)
    assert not _leaks(text), text
    # A call that fails with a proxy URL holding a password: the reason hides it.
    assert lib.set_proxy(run.id, f"ftp://user:{PASSWORD}@127.0.0.1:1".encode()) == -1
    assert not _leaks(lib.last_error()), lib.last_error()


# Regression: the reason a task URL was refused quoted the URL whole (and the Python
# package logs reasons).
@pytest.mark.scenario("no secret in events, stats, last error or log lines")
@pytest.mark.parametrize("url", [
    f"gopher://user:{PASSWORD}@h/?t={QUERY_TOKEN}",
    f"http://user:{PASSWORD}@/?t={QUERY_TOKEN}",
    f"http://user:{PASSWORD}@h:99999/?t={QUERY_TOKEN}",
])
def test_no_secret_in_the_reason_a_task_url_is_refused(lib: Lib, tmp_path: Path,
                                                        url: str) -> None:
    bad = json.dumps([task(url, tmp_path / "g")])
    assert lib.get_downloader(bad.encode(), 1, 1, 1, None, False, None, None, None,
                              None) == -1
    assert lib.last_error(), "a refusal needs a reason"
    assert not _leaks(lib.last_error()), lib.last_error()


# Regression: startOne/endOne echoed the task URL whole, password included (and remote
# sinks ship these events over the network).
@pytest.mark.scenario("no secret in events, stats, last error or log lines")
def test_no_url_password_in_start_and_end_events(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/ok.bin", size=1000)
    url = f"http://user:{PASSWORD}@127.0.0.1:{http_server.port}/ok.bin"
    run = _run(tthsd, lib, [task(url, tmp_path / "ok.bin", id="t")])
    assert outcome(run, tmp_path / "ok.bin", res.body).success
    for e in run.events.snapshot():
        assert PASSWORD not in e.raw[1].decode(), f"{e.type}: {e.msg}"


LOG_CHILD = r"""
import json, sys, time
from tthsd_interface import TTHSDownloader
from tthsd_interface._log import flush_log
spec = json.loads(sys.argv[1])
with TTHSDownloader(spec["lib"]) as dl:
    ident = dl.start_download(spec["urls"], spec["paths"], thread_count=2,
                              headers=spec["headers"])
    dl.set_proxy(ident, spec["proxy"])
    dl.wait(ident, timeout=30)
    dl.get_performance_stats(ident)
flush_log()
"""


def _log_of(lib_path: Path, tmp_path: Path, urls: list[str]) -> str:
    """Run the Python package in a child whose log file is ours; return the log text
    (and the child's stderr, the log's console copy)."""
    log = tmp_path / "TTHSDPyInter.log"
    spec = {"lib": str(lib_path), "urls": urls,
            "paths": [str(tmp_path / f"{i}.bin") for i in range(len(urls))],
            "headers": {"Authorization": TOKEN, "Cookie": COOKIE},
            "proxy": f"ftp://user:{PASSWORD}@127.0.0.1:1"}
    import os

    env = dict(os.environ, TTHSD_LOG_FILE=str(log), PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", LOG_CHILD, json.dumps(spec)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return log.read_text(encoding="utf-8") + proc.stderr


@pytest.mark.scenario("no secret in events, stats, last error or log lines")
def test_no_secret_in_the_python_log(lib_path: Path, http_server: LoopbackServer,
                                     tmp_path: Path) -> None:
    http_server.add("/404.bin", status=404)
    http_server.add("/loop", redirect="/loop")
    urls = [f"http://user:{PASSWORD}@127.0.0.1:{http_server.port}{p}?t={QUERY_TOKEN}"
            for p in ("/404.bin", "/loop")]
    text = _log_of(lib_path, tmp_path, urls)
    assert "set_proxy" in text, text  # it did log the refused proxy
    assert not _leaks(text), text


@pytest.mark.scenario("no secret in events, stats, last error or log lines")
def test_no_secret_in_the_python_log_when_a_url_is_refused(lib_path: Path,
                                                           tmp_path: Path) -> None:
    text = _log_of(lib_path, tmp_path, [f"gopher://user:{PASSWORD}@h/x?t={QUERY_TOKEN}"])
    assert "failed" in text, text
    assert not _leaks(text), text
