"""What the resume tests share: planting a partial download on disk (part file plus
journal, as a killed process would leave them), running one download to its end, and the
one rule every test of issue 5 checks: a byte-exact file, or a clear ``err`` and nothing
at ``save_path``.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.abi.lib import Event, Harness, Run, check_events, summarize, task
from tests.resume import journal
from tests.support.content import Body, first_mismatch, sha256_file
from tests.support.server import LoopbackServer, RequestRecord
from tthsd_interface._types import ErrorCode

KiB = 1 << 10
MiB = 1 << 20

#: `Code` values an `err` event may carry (the engine's ErrorCode, mirrored by the
#: package's; tests/api/test_contract.py holds the two together).
KNOWN_CODES = set(typing.get_args(ErrorCode))


def plant(
    save: Path,
    body: Body,
    ranges: Iterable[tuple[int, int]],
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    total: int | None = None,
    journal_url: str | None = None,
    part_bytes: Body | None = None,
) -> journal.Ranges:
    """Leave ``save`` half-downloaded: a sparse part file of ``total`` bytes (the body's
    size by default) holding ``part_bytes`` (default ``body``) at ``ranges``, and a journal
    listing those ranges with the given facts. Returns the ranges, merged."""
    ranges = journal.union(ranges)
    total = body.size if total is None else total
    src = part_bytes or body
    save.parent.mkdir(parents=True, exist_ok=True)
    with open(journal.part_path(save), "wb") as f:
        f.truncate(total)
        for s, e in ranges:
            pos = s
            while pos < e:
                n = min(MiB, e - pos)
                f.seek(pos)
                f.write(src.read(pos, n))
                pos += n
    body_json = journal.make(
        journal_url or url, total, ranges, etag=etag, last_modified=last_modified
    )
    journal.journal_path(save).write_bytes(journal.encode(body_json))
    return ranges


def download(
    tthsd: Harness,
    url: str,
    save: Path,
    *,
    threads: int = 4,
    chunk_mb: int = 1,
    checksum: str | None = None,
    timeout: float = 30.0,
    retries: tuple[int, int, int] = (3, 20, 100),
) -> Run:
    """One task (id ``t``) with fast retries, started and waited to its ``end``."""
    extra: dict[str, Any] = {"checksum": checksum} if checksum else {}
    t = task(url, save, id="t", show_name="t", **extra)
    run = tthsd.create([t], threads=threads, chunk_mb=chunk_mb)
    assert tthsd.lib.set_retry_config(run.id, *retries) == 0
    assert tthsd.lib.tthsd_set_timeouts(run.id, 2000, 3000) == 0
    assert run.start() == 0
    run.wait_end(timeout)
    run.events.wait_quiet(0.1, 1.0)
    return run


@dataclass
class Outcome:
    success: bool
    err: Event | None
    run: Run

    @property
    def code(self) -> str | None:
        return None if self.err is None else self.err.msg.get("Code")


def outcome(run: Run, save: Path, expected: Body | Sequence[Body]) -> Outcome:
    """The rule of issue 5 for one finished run: either the task succeeded and the file at
    ``save`` is byte-exact (one of ``expected``: a file that changed on the server may
    legitimately end as its new version) with no temporary file left, or it failed with an
    ``err`` carrying a known ``Code`` and nothing is at ``save``. Never anything else."""
    bodies = [expected] if not isinstance(expected, Sequence) else list(expected)
    evs = run.events.snapshot()
    listing = summarize(evs, 60)
    check_events(run.events, run.tasks, success=_success(evs))
    errs = [e for e in evs if e.type == "err"]
    # Shown with -s (and on failure): how the engine got there.
    print(f"outcome: {listing}")
    if _success(evs):
        assert not errs, f"success with an err event: {listing}"
        assert save.is_file(), f"success but no file at {save}: {listing}"
        digest = sha256_file(save)
        if not any(digest == b.sha256() for b in bodies):
            raise AssertionError(
                f"WRONG FILE at {save}: {first_mismatch(bodies[-1], save)}; {listing}"
            )
        assert not journal.siblings(save), f"left behind: {journal.siblings(save)}"
        return Outcome(True, None, run)
    assert len(errs) == 1, f"a failed task needs exactly one err: {listing}"
    err = errs[0]
    assert err.msg.get("Code") in KNOWN_CODES, f"unclear err: {err.msg}"
    assert err.msg.get("Error"), f"err without a sentence: {err.msg}"
    assert not save.exists(), f"failed, yet a file is at {save}: {err.msg}"
    return Outcome(False, err, run)


def _success(evs: list[Event]) -> bool:
    ends = [e for e in evs if e.type == "endOne"]
    return bool(ends and ends[-1].msg.get("Success"))


def gets(server: LoopbackServer, path: str) -> list[RequestRecord]:
    server.wait_idle(5)
    return [r for r in server.requests(path) if r.method == "GET"]


def fetched(server: LoopbackServer, path: str) -> int:
    server.wait_idle(5)
    return server.bytes_sent(path)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
