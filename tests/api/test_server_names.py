"""Server-chosen names (issue 20, item 4): ``tthsd -J`` and ``download(name_from_server=
True)`` name the file from ``Content-Disposition``, and a hostile header (``../x``,
absolute paths, ``..\\x``, control characters, a hidden name, an empty one) only ever
yields a safe base name inside the output folder; an existing file is not replaced
unless asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tthsd_interface
from tests.support.content import sha256_file
from tests.support.server import LoopbackServer

MiB = 1 << 20

HOSTILE = [
    ('attachment; filename="../x"', "x"),
    ('attachment; filename="../../../../etc/passwd"', "passwd"),
    ('attachment; filename="/etc/passwd"', "passwd"),
    ('attachment; filename="..\\\\x"', "x"),
    ('attachment; filename="C:\\\\Windows\\\\evil.dll"', "evil.dll"),
    ("attachment; filename*=UTF-8''..%2F..%2Fescape.bin", "escape.bin"),
    ("attachment; filename*=UTF-8''a%01b%0Ac%1B.bin", "a_b_c_.bin"),
    ('attachment; filename=".bashrc"', "bashrc"),
    ('attachment; filename=".."', "file.bin"),
    ('attachment; filename=""', "file.bin"),
    ("attachment", "file.bin"),
    ("attachment; filename=\"plain.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
]


def _cli(core: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TTHSD_LIBRARY=str(core), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "tthsd_interface", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("header", "name"), HOSTILE)
def test_cli_j_gives_only_a_safe_base_name_in_the_folder(
    core: Path, http_server: LoopbackServer, tmp_path: Path, header: str, name: str
) -> None:
    res = http_server.add("/file.bin", size=3 * MiB + 5, etag='"n1"',
                          headers={"Content-Disposition": header})  # fmt: skip
    work = tmp_path / "work"
    out = work / "out"
    work.mkdir()
    proc = _cli(core, work, "-J", "-q", "-x", "4", "-k", "1", "-d", "out", res.url)
    assert proc.returncode == 0, proc.stderr
    # Exactly one file, directly in the output folder, nothing anywhere else.
    assert _tree(work) == {"out", f"out/{name}"}, _tree(work)
    assert sha256_file(out / name) == res.sha256()


def test_cli_j_does_not_replace_an_existing_file_unless_asked(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add(
        "/dl", size=MiB, headers={"Content-Disposition": 'attachment; filename="report.pdf"'}
    )
    (tmp_path / "report.pdf").write_bytes(b"theirs")
    proc = _cli(core, tmp_path, "-J", "--retries", "0", res.url)
    assert proc.returncode == 1
    assert "not replacing" in proc.stderr, proc.stderr
    assert (tmp_path / "report.pdf").read_bytes() == b"theirs"
    assert not (tmp_path / "dl").exists()
    # No byte was fetched for nothing: the name is checked on the first answer.
    assert http_server.bytes_sent("/dl") <= MiB
    proc = _cli(core, tmp_path, "-J", "--overwrite", res.url)
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(tmp_path / "report.pdf") == res.sha256()


def test_without_j_the_header_is_ignored(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add(
        "/plain.bin", size=1000, headers={"Content-Disposition": 'attachment; filename="other"'}
    )
    proc = _cli(core, tmp_path, "-q", res.url)
    assert proc.returncode == 0, proc.stderr
    assert _tree(tmp_path) == {"plain.bin"}


def test_download_name_from_server(core: Path, http_server: LoopbackServer, tmp_path: Path) -> None:
    a = http_server.add(
        "/a", size=2 * MiB, headers={"Content-Disposition": 'attachment; filename="../../a.iso"'}
    )
    b = http_server.add("/b", size=1000)  # names nothing: its save path is used
    results = tthsd_interface.download(
        [a.url, b.url], [tmp_path / "d" / "a.part-name", tmp_path / "d" / "b.bin"],
        connections=4, chunk_size_mb=1, name_from_server=True, dll_path=core,
    )  # fmt: skip
    assert [r.path for r in results] == [tmp_path / "d" / "a.iso", tmp_path / "d" / "b.bin"]
    assert _tree(tmp_path / "d") == {"a.iso", "b.bin"}
    assert not (tmp_path / "a.iso").exists() and not (tmp_path.parent / "a.iso").exists()
    assert sha256_file(tmp_path / "d" / "a.iso") == a.sha256()
    with pytest.raises(tthsd_interface.DownloadError) as info:
        tthsd_interface.download(
            a.url, tmp_path / "d" / "x", name_from_server=True, retries=0, dll_path=core
        )
    assert info.value.codes == ("io",)
    assert "not replacing" in info.value.failures[0].message


def test_download_async_name_from_server(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add(
        "/r", size=MiB, headers={"Content-Disposition": 'attachment; filename="/etc/r.tar"'}
    )

    async def main() -> list[tthsd_interface.FileResult]:
        return await tthsd_interface.download_async(
            res.url, tmp_path / "o" / "ignored", connections=4, name_from_server=True,
            dll_path=core,
        )  # fmt: skip

    (result,) = asyncio.run(main())
    assert result.path == tmp_path / "o" / "r.tar"
    assert _tree(tmp_path / "o") == {"r.tar"}
    assert sha256_file(tmp_path / "o" / "r.tar") == res.sha256()

    async def again(overwrite: bool) -> list[tthsd_interface.FileResult]:
        async with tthsd_interface.AsyncDownloader(core) as dl:
            handle = await dl.start(
                res.url, tmp_path / "o" / "ignored", name_from_server=True,
                overwrite=overwrite, retries=0,
            )  # fmt: skip
            return await handle.wait()

    with pytest.raises(tthsd_interface.DownloadError) as info:
        asyncio.run(again(False))
    assert info.value.codes == ("io",)
    (replaced,) = asyncio.run(again(True))
    assert replaced.path == tmp_path / "o" / "r.tar"
    assert sha256_file(tmp_path / "o" / "r.tar") == res.sha256()


def test_seed_api_name_from_server_and_a_second_run_of_the_id(
    core: Path, http_server: LoopbackServer, tmp_path: Path
) -> None:
    res = http_server.add(
        "/s",
        size=2 * MiB,
        etag='"s1"',
        headers={"Content-Disposition": 'attachment; filename="named.bin"'},
    )
    ends: list[dict[str, object]] = []

    def on_event(event: dict[str, object], msg: dict[str, object]) -> None:
        if event.get("Type") == "endOne":
            ends.append(dict(msg))

    with tthsd_interface.TTHSDownloader(core) as dl:
        dl_id = dl.get_downloader(
            [res.url], [tmp_path / "fallback.bin"], 4, 1, on_event, name_from_server=True
        )
        assert dl_id > 0
        requests = []
        for _ in range(2):  # the second run finds the named file complete
            assert dl.start_download_by_id(dl_id)
            assert dl.wait(dl_id, timeout=30)
            requests.append(len(http_server.requests("/s")))
        dl.stop_download(dl_id)
    assert [e["Success"] for e in ends] == [True, True], ends
    assert ends[0]["SavedAs"] == str(tmp_path / "named.bin")
    assert _tree(tmp_path) - {"TTHSDPyInter.log"} == {"named.bin"}
    assert sha256_file(tmp_path / "named.bin") == res.sha256()
    assert requests[1] == requests[0], "the second run asked the server again"
