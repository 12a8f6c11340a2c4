"""What the ABI fuzz draws (:mod:`tests.fuzz.program` runs it): every export's arguments
over their whole C range, task JSON good and bad, ids live, stopped and made up, and the
URLs a program may reach (the loopback servers, a closed port, or not a URL at all)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1
DEAD = "http://127.0.0.1:9/dead"  # nothing listens on the discard port

ID_EXPORTS = (
    "start_download_id", "start_multiple_downloads_id", "pause_download", "resume_download",
    "stop_download", "startDownload_ID", "startMultipleDownloads_ID", "pauseDownload",
    "resumeDownload", "stopDownload",
)
CREATING = ("start_download", "get_downloader", "startDownload", "getDownloader")


def _cbytes(max_size: int = 120, colon: bool = True) -> st.SearchStrategy[bytes]:
    """Bytes for a C string: anything but NUL (and, where a URL could come out, ':')."""
    drop = b"\0" if colon else b"\0:"
    return st.binary(max_size=max_size).map(lambda b: bytes(c for c in b if c not in drop))


INT32 = st.one_of(st.integers(-3, 70), st.sampled_from([INT_MIN, INT_MAX, -1, 0, 1 << 20]),
                  st.integers(INT_MIN, INT_MAX))
U32 = st.one_of(st.integers(0, 5), st.sampled_from([U32_MAX, 1 << 31]),
                st.integers(0, U32_MAX))
U64 = st.one_of(st.integers(0, 3000), st.sampled_from([U64_MAX, 1 << 63, 1, 1 << 40]),
                st.integers(0, U64_MAX))
BOOL_OPT = st.sampled_from([None, True, False])
#: An id argument: ("live", k) / ("any", k) resolve at call time; an int is used as is.
ID = st.one_of(st.tuples(st.just("live"), st.integers(0, 1 << 16)),
               st.tuples(st.just("any"), st.integers(0, 1 << 16)),
               st.sampled_from([0, -1, INT_MAX, INT_MIN, 987654]), st.integers(INT_MIN, INT_MAX))
#: The sizes of text in JSON: small, surrogates and odd characters included.
TEXT = st.text(max_size=24)


def strategies(base: str, paths: list[str], workdir: Path,
               tls_urls: list[str] | None = None, callbacks: int = 1) -> st.SearchStrategy[Any]:
    """The strategy of one program (a list of call lists, one per thread). ``tls_urls``:
    files of the HTTPS/HTTP/2 server, drawn as often as the plain server's; ``callbacks``:
    how many callbacks the program may pick from (by index)."""
    served = [base + p for p in paths]
    good_urls = st.sampled_from(served)
    if tls_urls:
        good_urls = st.one_of(good_urls, st.sampled_from(tls_urls))
    urls = st.one_of(
        good_urls,
        st.sampled_from([DEAD, "https://127.0.0.1:9/x", "ftp://127.0.0.1/x", "file:///etc/hostname",
                         "not a url", "", "http://", "http://[::1", "HTTP://127.0.0.1:9/UP",
                         f"http://u:p@127.0.0.1:{base.rsplit(':', 1)[1]}/small.bin?q=1#f"]),
        TEXT.map(lambda s: base + "/" + urllib.parse.quote(s)),
    )
    names = st.text(st.characters(blacklist_characters="\0/"), min_size=1, max_size=30)
    save_paths = st.one_of(
        st.lists(names, min_size=1, max_size=3).map(
            lambda parts: str(workdir / "dl" / "/".join(p.replace("..", "_") for p in parts))),
        st.sampled_from(["", str(workdir / "dl"), str(workdir / "dl" / "same.bin")]),
    )
    #: Mostly distinct, always valid: many creating calls must succeed.
    good_paths = st.tuples(st.integers(0, 10**9), st.sampled_from(["a.bin", "b c.bin", "ü.bin"]))
    no_surrogates: tuple[Literal["Cs"]] = ("Cs",)
    good_text = st.text(st.characters(blacklist_categories=no_surrogates), max_size=16)
    header_names = st.one_of(st.sampled_from(["X-A", "Authorization", "Cookie", "Range",
                                              "Host", "Content-Length", "bad name", ""]), TEXT)
    header_values = st.one_of(st.sampled_from(["v", "a\r\nX-Injected: 1", "\x7f", ""]), TEXT)
    headers_obj = st.dictionaries(header_names, header_values, max_size=4)
    good_headers = st.dictionaries(st.sampled_from(["X-A", "X-B", "Authorization"]),
                                   st.sampled_from(["1", "v v", "Bearer t"]), max_size=2)
    junk = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
                     st.lists(st.integers(), max_size=2), TEXT)
    checksum = st.one_of(st.sampled_from(["sha256:" + "0" * 64, "md5:" + "0" * 32, "sha1:00",
                                          "sha256:zz", ""]), TEXT)
    good = st.fixed_dictionaries(
        {"url": good_urls,
         "save_path": good_paths.map(lambda t: str(workdir / "dl" / str(t[0]) / t[1]))},
        optional={"show_name": good_text, "id": good_text, "headers": good_headers,
                  # Other files of the servers (dropped: another size or other bytes) or
                  # the same file over another protocol (used).
                  "mirrors": st.lists(good_urls, max_size=2, unique=True)},
    ).filter(lambda t: t["url"] not in t.get("mirrors", ()))
    rust = st.fixed_dictionaries(
        {"url": urls, "save_path": save_paths},
        optional={"show_name": TEXT, "id": TEXT, "headers": headers_obj, "checksum": checksum,
                  "mirrors": st.one_of(junk, st.lists(urls, max_size=3)), "extra": junk})
    go = st.fixed_dictionaries({"URL": urls, "SavePath": save_paths},
                               optional={"ShowName": TEXT, "ID": TEXT})
    odd = st.dictionaries(st.sampled_from(["url", "save_path", "URL", "SavePath", "headers"]),
                          junk, max_size=3)
    task_lists = st.one_of(
        st.lists(good, min_size=1, max_size=3),
        st.lists(good, min_size=1, max_size=3),
        st.lists(st.one_of(good, rust, go, odd), min_size=0, max_size=4),
    )

    @st.composite
    def tasks_arg(draw: Any) -> tuple[bytes | None, int]:
        kind = draw(st.sampled_from(["tasks"] * 6 + ["cut", "bytes", "null"]))
        count = draw(st.one_of(*[st.just(None)] * 5, INT32))
        if kind == "null":
            return None, 1 if count is None else count
        if kind == "bytes":
            return draw(_cbytes(200)), 1 if count is None else count
        tl = draw(task_lists)
        text = json.dumps(tl).encode("utf-8", "surrogatepass")
        if kind == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        return text, len(tl) if count is None else count

    headers_json = st.one_of(st.none(), headers_obj.map(
        lambda h: json.dumps(h).encode("utf-8", "surrogatepass")), _cbytes(80))
    remote = st.one_of(st.none(), st.just(b""), st.sampled_from(
        [b"ws://127.0.0.1:9/x", b"127.0.0.1:9", b"http://127.0.0.1:9", b"wss://127.0.0.1:9"]),
        _cbytes(40, colon=False))
    proxy = st.one_of(st.none(), st.just(b""), st.sampled_from(
        [b"http://127.0.0.1:9", b"socks5://127.0.0.1:9", b"socks5h://u:p@127.0.0.1:9",
         b"https://127.0.0.1:9", b"ftp://127.0.0.1:9", b"http://"]), _cbytes(40, colon=False))

    wild_create = st.tuples(
        st.sampled_from(CREATING), tasks_arg(), INT32, INT32,
        st.integers(0, callbacks - 1), st.booleans(), st.one_of(st.none(), _cbytes(60)),
        remote, BOOL_OPT, BOOL_OPT, headers_json,
    ).map(lambda t: ("create", t))
    good_tasks = st.lists(good, min_size=1, max_size=3).map(
        lambda tl: (json.dumps(tl).encode(), len(tl)))
    valid_create = st.tuples(
        st.sampled_from(CREATING), good_tasks, st.integers(-2, 16), st.integers(-1, 3),
        st.integers(0, callbacks - 1), st.booleans(),
        st.one_of(st.none(), st.sampled_from([b"fuzz/1.0", b"", "ü agent".encode()])),
        st.sampled_from([None, b"", b"ws://127.0.0.1:9/events", b"127.0.0.1:9"]),
        BOOL_OPT, BOOL_OPT,
        st.one_of(st.none(), good_headers.map(lambda h: json.dumps(h).encode())),
    ).map(lambda t: ("create", t))
    create = st.one_of(valid_create, wild_create)
    return st.one_of(
        create, create, create, create,
        st.tuples(st.sampled_from(ID_EXPORTS), ID).map(lambda t: ("id", t)),
        st.tuples(st.sampled_from(ID_EXPORTS), ID).map(lambda t: ("id", t)),
        st.tuples(ID, U64).map(lambda t: ("set_speed_limit", t)),
        st.tuples(ID, proxy).map(lambda t: ("set_proxy", t)),
        st.tuples(ID, U32, U64, U64).map(lambda t: ("set_retry_config", t)),
        st.tuples(ID, U64, U64).map(lambda t: ("tthsd_set_timeouts", t)),
        st.tuples(ID, st.booleans()).map(lambda t: ("tthsd_set_durability", t)),
        ID.map(lambda t: ("get_performance_stats", (t,))),
        st.tuples(st.sampled_from(["null", "fresh", "twice", "inner", "made-up"]),
                  st.integers(1, 2**48)).map(lambda t: ("free_string", t)),
        st.tuples(st.booleans(), st.integers(0, 300)).map(lambda t: ("tthsd_last_error", t)),
        st.sampled_from(["tthsd_version", "tthsd_abi_version"]).map(lambda n: (n, ())),
        st.integers(0, 60).map(lambda ms: ("sleep", ms)),
    )
