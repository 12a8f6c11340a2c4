"""What a finished child run says, and the one rule every test here ends with: the
server's exact bytes at ``save_path``, or exactly one ``err`` with a known ``Code`` and
nothing at ``save_path``; never a wrong file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.resume.helpers import KNOWN_CODES
from tests.resume.journal import siblings
from tests.support.content import (
    RECORD,
    Body,
    LiteralContent,
    first_mismatch,
    salt_for,
    sha256_file,
)
from tests.support.h2server import H2Server

KiB = 1 << 10
MiB = 1 << 20


def small_content(size: int, name: str) -> LiteralContent:
    """A small file in :class:`~tests.support.content.Content`'s record format (each
    16-byte record names its offset and a salt from ``name``), built directly:
    ``Content`` prepares a 1 MiB template per salt (~25 ms), too dear for 300 files."""
    salt = salt_for(name).encode("ascii")
    data = b"".join(b"%011x%s\n" % (o, salt) for o in range(0, size, RECORD))
    return LiteralContent(data[:size])


class Report:
    """One child run (tests/network/child.py): its events, parsed."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.events: list[tuple[dict[str, Any], dict[str, Any]]] = [
            (json.loads(e), json.loads(m)) for e, m in raw["events"]
        ]

    @property
    def ended(self) -> bool:
        return bool(self.raw["ended"])

    def of(self, type_: str, task_id: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for e, m in self.events
            if e["Type"] == type_ and (task_id is None or e["ID"] == task_id)
        ]

    def success(self, task_id: str) -> bool | None:
        """``Success`` of the task's ``endOne`` (None: it never ended)."""
        ends = self.of("endOne", task_id)
        return bool(ends[-1]["Success"]) if ends else None

    def listing(self, limit: int = 40) -> str:
        parts = []
        for e, m in self.events[:limit]:
            extra = ""
            if e["Type"] == "err":
                extra = f" {m.get('Code')}: {m.get('Error')!r}"
            elif e["Type"] == "endOne":
                extra = f" Success={m.get('Success')}"
            elif e["Type"] == "msg":
                extra = f" {m.get('Text')!r}"
            elif e["Type"] == "update":
                continue
            parts.append(f"{e['Type']}[{e['ID']}]{extra}")
        more = f" ... (+{len(self.events) - limit} events)" if len(self.events) > limit else ""
        return ", ".join(parts) + more


@dataclass
class Outcome:
    success: bool
    err: dict[str, Any] | None

    @property
    def code(self) -> str | None:
        return None if self.err is None else self.err.get("Code")


def outcome(
    report: Report, save: Path, expected: Body | Sequence[Body], task_id: str = "t"
) -> Outcome:
    """The rule for one task of a finished run: success and a byte-exact file (one of
    ``expected``: a file changed on the server may end as its new version) with no
    temporary sibling left, or one ``err`` with a known ``Code`` and nothing at ``save``."""
    bodies = list(expected) if isinstance(expected, Sequence) else [expected]
    listing = report.listing()
    assert report.ended, f"the run did not end: {listing}"
    ok = report.success(task_id)
    assert ok is not None, f"task {task_id} never ended: {listing}"
    errs = report.of("err", task_id)
    if ok:
        assert not errs, f"success with an err event: {listing}"
        assert save.is_file(), f"success but no file at {save}: {listing}"
        digest = sha256_file(save)
        if not any(digest == b.sha256() for b in bodies):
            raise AssertionError(
                f"WRONG FILE at {save}: {first_mismatch(bodies[-1], save)}; {listing}"
            )
        assert not siblings(save), f"left behind: {siblings(save)}"
        return Outcome(True, None)
    assert len(errs) == 1, f"a failed task needs exactly one err: {listing}"
    err = errs[0]
    assert err.get("Code") in KNOWN_CODES, f"unclear err: {err}"
    assert err.get("Error"), f"err without a sentence: {err}"
    assert not save.exists(), f"failed, yet a file is at {save}: {err}"
    return Outcome(False, err)


def connection_summary(srv: H2Server, path: str | None = None) -> str:
    """What the server saw, for assertion messages: connections (index, client port,
    ALPN), the most busy at once, streams at once and body bytes per connection."""
    conns = srv.connections()
    reqs = srv.requests(path)
    versions = sorted({r.http_version for r in reqs})
    return (
        f"{len(reqs)} requests over HTTP/{'+'.join(versions) or '?'}; "
        f"{len(conns)} connections accepted {[(c.index, c.port, c.alpn) for c in conns]}; "
        f"{len(srv.ports())} distinct client ports carried requests; "
        f"most busy at once: {srv.max_busy_connections(path)}; "
        f"streams at once per connection: {srv.max_streams_per_connection(path)}; "
        f"bytes per connection: {srv.bytes_by_connection(path)}"
    )
