"""Redirects: at most 10 are followed (a chain of 10 succeeds, 11 is ``too_many_redirects``,
loops end the same way), only to ``http:`` and ``https:`` (anything else is
``bad_redirect`` and is never opened), and a redirect that turns up on a worker's range
request is followed or refused by the same rules, never written as file bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.abi.lib import Harness, Lib, MiB, task
from tests.resume.helpers import outcome
from tests.support.server import LoopbackServer

from .knobs import is_worker, redirect_on


def _run(tthsd: Harness, lib: Lib, url: str, save: Path, threads: int = 4):  # type: ignore[no-untyped-def]
    t = task(url, save, id="t", show_name="t")
    run = tthsd.create([t], threads=threads, chunk_mb=1)
    assert lib.set_retry_config(run.id, 2, 20, 40) == 0
    assert lib.tthsd_set_timeouts(run.id, 2000, 3000) == 0
    assert run.start() == 0
    run.wait_end(30)
    return run


def _chain(server: LoopbackServer, name: str, hops: int, target: str,
           status: int = 302) -> str:
    """``hops`` redirects in a row ending at ``target``; returns the first URL."""
    for i in range(hops):
        nxt = f"/{name}{i + 1}" if i + 1 < hops else target
        server.add(f"/{name}{i}", redirect=nxt, redirect_status=status)
    return server.url(f"/{name}0")


@pytest.mark.scenario("redirect chain at and over the limit of 10")
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_chain_of_ten_redirects_is_followed(tthsd: Harness, lib: Lib,
                                              http_server: LoopbackServer, tmp_path: Path,
                                              status: int) -> None:
    res = http_server.add("/final.bin", size=3 * MiB + 1)
    url = _chain(http_server, "hop", 10, "/final.bin", status)
    run = _run(tthsd, lib, url, tmp_path / "ten.bin")
    assert outcome(run, tmp_path / "ten.bin", res.body).success


@pytest.mark.scenario("redirect chain at and over the limit of 10")
def test_a_chain_of_eleven_redirects_is_too_many(tthsd: Harness, lib: Lib,
                                                 http_server: LoopbackServer,
                                                 tmp_path: Path) -> None:
    res = http_server.add("/final.bin", size=MiB)
    url = _chain(http_server, "hop", 11, "/final.bin")
    run = _run(tthsd, lib, url, tmp_path / "eleven.bin")
    out = outcome(run, tmp_path / "eleven.bin", res.body)
    assert not out.success and out.code == "too_many_redirects", out.err
    assert not http_server.requests("/final.bin"), "the 12th URL was asked for"
    # Not retried: the same 11 hops are asked once each.
    assert len(http_server.requests()) == 11


@pytest.mark.scenario("redirect loop")
def test_a_redirect_to_itself_and_a_loop_across_two_servers(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory,  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    other = http_server_factory()
    http_server.add("/self", redirect="/self")
    http_server.add("/ping", redirect=other.url("/pong"))
    other.add("/pong", redirect=http_server.url("/ping"), redirect_status=307)
    for name in ("self", "ping"):
        save = tmp_path / f"{name}.bin"
        run = _run(tthsd, lib, http_server.url(f"/{name}"), save)
        out = outcome(run, save, http_server.resource(f"/{name}").body)
        assert not out.success and out.code == "too_many_redirects", out.err
    assert len(http_server.requests("/self")) == 11
    assert len(http_server.requests("/ping")) + len(other.requests("/pong")) == 11


@pytest.mark.scenario("redirects to file:, ftp: and other schemes refused")
@pytest.mark.parametrize("location", [
    "ftp://127.0.0.1/x.bin", "gopher://127.0.0.1:9/x", "javascript:alert(1)",
    "ws://127.0.0.1:9/x",
    # Regression: reqwest hands back, unfollowed, a redirect it cannot turn into a
    # request (no authority); the engine called that an http_status error.
    "file:///etc/passwd", "data:text/plain,hello", "unix:/var/run/docker.sock",
])
def test_redirect_to_another_scheme_is_refused(tthsd: Harness, lib: Lib,
                                               http_server: LoopbackServer, tmp_path: Path,
                                               location: str) -> None:
    http_server.add("/go", redirect=location)
    save = tmp_path / "go.bin"
    run = _run(tthsd, lib, http_server.url("/go"), save)
    out = outcome(run, save, http_server.resource("/go").body)
    assert len(http_server.requests("/go")) == 1, "a refused redirect is not retried"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "something was written"
    assert not out.success and out.code == "bad_redirect", out.err


@pytest.mark.scenario("redirects to file:, ftp: and other schemes refused")
def test_a_redirect_to_file_never_opens_the_file(tthsd: Harness, lib: Lib,
                                                  http_server: LoopbackServer,
                                                  tmp_path: Path) -> None:
    # Whatever the Code, the local file named by the Location is never read or copied.
    secret = tmp_path / "secret.txt"
    secret.write_text("local secret\n")
    http_server.add("/go", redirect=secret.as_uri())
    save = tmp_path / "out" / "go.bin"
    run = _run(tthsd, lib, http_server.url("/go"), save)
    out = outcome(run, save, http_server.resource("/go").body)
    assert not out.success
    assert not save.parent.exists() or not any(save.parent.iterdir())


@pytest.mark.parametrize("location", ["http://", "http://[::1"])
def test_redirect_without_a_usable_target_is_bad_redirect(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        location: str) -> None:
    http_server.add("/nowhere", redirect=location)
    save = tmp_path / "n.bin"
    run = _run(tthsd, lib, http_server.url("/nowhere"), save)
    out = outcome(run, save, http_server.resource("/nowhere").body)
    assert not out.success and out.code == "bad_redirect", out.err


@pytest.mark.parametrize("location", ["", "   "])
def test_an_empty_location_is_the_same_url_hence_a_loop(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path,
        location: str) -> None:
    # RFC 3986: an empty reference resolves to the base URL itself.
    http_server.add("/nowhere", redirect=location)
    save = tmp_path / "n.bin"
    run = _run(tthsd, lib, http_server.url("/nowhere"), save)
    out = outcome(run, save, http_server.resource("/nowhere").body)
    assert not out.success and out.code == "too_many_redirects", out.err


@pytest.mark.scenario("redirects to file:, ftp: and other schemes refused")
def test_a_worker_range_redirected_to_file_is_refused_and_never_written(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    res = http_server.add("/r.bin", size=4 * MiB,
                          hook=redirect_on("file:///etc/passwd", on=is_worker))
    save = tmp_path / "r.bin"
    run = _run(tthsd, lib, res.url, save)
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "bad_redirect", out.err


def test_a_worker_range_redirected_to_a_mirror_is_followed(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, http_server_factory,  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    mirror = http_server_factory()
    res = http_server.add("/m.bin", size=4 * MiB)
    mirror.add("/m.bin", body=res.body)
    res.hook = redirect_on(mirror.url("/m.bin"), status=307, on=is_worker)
    save = tmp_path / "m.bin"
    run = _run(tthsd, lib, res.url, save)
    assert outcome(run, save, res.body).success
    assert any(r.status == 206 for r in mirror.requests("/m.bin"))


def test_a_redirect_answer_to_a_range_is_never_written_as_bytes(
        tthsd: Harness, lib: Lib, http_server: LoopbackServer, tmp_path: Path) -> None:
    # A 3xx without Location: its body ("moved") must never land in the file.
    res = http_server.add("/x.bin", size=4 * MiB)

    def no_location(req, resp):  # type: ignore[no-untyped-def]
        out = redirect_on("", on=is_worker)(req, resp)
        if out is not None:
            out.headers.remove("Location")
        return out
    res.hook = no_location
    save = tmp_path / "x.bin"
    run = _run(tthsd, lib, res.url, save)
    # The 3xx cannot be followed: the task fails with the status, nothing at save_path.
    out = outcome(run, save, res.body)
    assert not out.success and out.code == "http_status", out.err
