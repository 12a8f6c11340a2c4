"""ABI fuzzing: random calls to every export of the core, from several threads at once,
against a few live downloaders fed by loopback servers (plain HTTP, and HTTPS with
HTTP/2 by ALPN and a throwaway CA named by ``SSL_CERT_FILE``). Run in a child process
(``tests/fuzz/test_abi_fuzz.py``) so a crash fails a test and names its seed::

    python -m tests.fuzz.program --seed 1 --examples 40 --threads 3 --workdir DIR

Each hypothesis example is a *program*: for each of ``--threads`` threads, a list of calls
drawn from every export (the creating ones with random task JSON, counts, thread and
chunk numbers, callbacks, user agents, remote URLs, ``bool*`` and headers; the id ones
with live, stopped and random ids; the setters with random integers over their whole C
range; ``free_string`` with NULL, real, already-freed and made-up pointers;
``tthsd_last_error`` with odd buffers), plus short sleeps so controls land mid-transfer.
Callbacks validate every event and some call back into the library (stats, pause, stop).

What must hold, checked after every example:

* no crash (the child would die: the parent reports the seed and the last calls, which
  are appended unbuffered to ``DIR/calls.log``);
* no hang: a watchdog ends the child (exit 70, every thread's stack on stderr) when one
  call takes longer than ``--call-limit`` seconds;
* every return value is in its documented set, every string returned is a JSON object,
  every event a JSON object of the documented shape, no reason mentions a panic;
* no leak of ids: every id created is stopped at the end of its example and then
  answers ``get_performance_stats`` with ``{}``; ids are never handed out twice;
* threads and open file descriptors of the process come back to where they were.

Loopback only: every URL is the test server, a closed port of 127.0.0.1, or not a URL;
random strings never contain ``:`` where a URL could be built from them.

The last stdout line is a JSON report: examples, calls per export, ids created, the
slowest call, resource counts, violations.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.abi.lib import CALLBACK, Lib, bool_p, library_path
from tests.fuzz.serving import plain_resources, resources_now, settle, tls_resources
from tests.fuzz.strategies import ID_EXPORTS, strategies
from tests.soak.servers import make_trust
from tests.support.h2server import H2Server
from tests.support.server import LoopbackServer

#: What each export may return (beyond ids > 0 for the creating ones).
SETTERS = ("set_speed_limit", "set_proxy", "set_retry_config", "tthsd_set_timeouts",
           "tthsd_set_durability")
RETURNS = {name: {0, -1} for name in (*ID_EXPORTS, *SETTERS)}
EVENT_TYPES = {"start", "startOne", "update", "msg", "err", "endOne", "end"}


# -- the run's shared state --------------------------------------------------------------------


@dataclass
class State:
    lib: Lib
    base: str
    workdir: Path
    log_fd: int
    ids_ever: list[int] = field(default_factory=list)  #: every id, over all examples
    example_ids: list[int] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    in_flight: dict[int, tuple[str, float]] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")
    lock: threading.Lock = field(default_factory=threading.Lock)
    examples: int = 0
    refusals: Counter[str] = field(default_factory=Counter)

    def violate(self, what: str) -> None:
        with self.lock:
            if len(self.violations) < 50:
                self.violations.append(what)

    def live(self, k: int) -> int:
        with self.lock:
            ids = [i for i in self.example_ids if i not in self.stopped]
            if not ids:
                ids = self.example_ids
        return ids[k % len(ids)] if ids else k

    def any_id(self, k: int) -> int:
        with self.lock:
            ids = list(self.example_ids)
        return ids[k % len(ids)] if ids else k


STATE: State | None = None


def _log(line: str) -> None:
    assert STATE is not None
    os.write(STATE.log_fd, (line[:300].replace("\n", "\\n") + "\n").encode("utf-8",
                                                                            "replace"))


# -- callbacks (created once, alive for the whole process) ---------------------------------


def _check_event(event_json: bytes | None, msg_json: bytes | None) -> dict[str, Any] | None:
    assert STATE is not None
    try:
        ev = json.loads(event_json or b"")
        msg = json.loads(msg_json or b"")
    except ValueError as exc:
        STATE.violate(f"event is not JSON: {event_json!r} {msg_json!r}: {exc}")
        return None
    if not isinstance(ev, dict) or not isinstance(msg, dict):
        STATE.violate(f"event is not an object: {event_json!r} {msg_json!r}")
        return None
    if set(ev) < {"Type", "Name", "ShowName", "ID"} or ev.get("Type") not in EVENT_TYPES:
        STATE.violate(f"event shape: {ev!r}")
    if ev.get("Type") == "err" and ("panic" in str(msg).lower() or not msg.get("Code")):
        STATE.violate(f"err event: {msg!r}")
    with STATE.lock:
        STATE.events[str(ev.get("Type"))] += 1
    return ev


def _counting(event_json: bytes | None, msg_json: bytes | None) -> None:
    try:
        _check_event(event_json, msg_json)
    except BaseException as exc:  # never unwind into the library
        if STATE is not None:
            STATE.violate(f"callback raised {exc!r}")


_reentrant_rng = random.Random(0)


def _reentrant(event_json: bytes | None, msg_json: bytes | None) -> None:
    """Validates, then calls back into the library: stats of some id, sometimes a pause,
    a resume or a stop of some id of this example (maybe its own)."""
    try:
        if _check_event(event_json, msg_json) is None or STATE is None:
            return
        lib = STATE.lib
        ident = STATE.any_id(_reentrant_rng.randrange(1 << 16))
        ptr = lib.get_performance_stats(ident)
        if ptr:
            ctypes.string_at(ptr)
            lib.free_string(ptr)
        r = _reentrant_rng.random()
        if r < 0.02:
            lib.pause_download(ident)
        elif r < 0.04:
            lib.resume_download(ident)
        elif r < 0.05:
            lib.stop_download(ident)
            with STATE.lock:
                STATE.stopped.add(ident)
    except BaseException as exc:
        if STATE is not None:
            STATE.violate(f"callback raised {exc!r}")


def _slow(event_json: bytes | None, msg_json: bytes | None) -> None:
    _counting(event_json, msg_json)
    time.sleep(0.002)


CALLBACKS = [None, CALLBACK(_counting), CALLBACK(_reentrant), CALLBACK(_slow)]


# -- running a program ---------------------------------------------------------------------


def _resolve(ident: Any) -> int:
    assert STATE is not None
    if isinstance(ident, tuple):
        kind, k = ident
        return STATE.live(k) if kind == "live" else STATE.any_id(k)
    return int(ident)


def _stats_text(lib: Lib, ident: int, where: str) -> str | None:
    assert STATE is not None
    ptr = lib.get_performance_stats(ident)
    if not ptr:
        STATE.violate(f"{where}: get_performance_stats({ident}) returned NULL")
        return None
    try:
        text = ctypes.string_at(ptr).decode("utf-8")
        value = json.loads(text)
        if not isinstance(value, dict):
            STATE.violate(f"{where}: stats not an object: {text[:200]}")
        return text
    except ValueError as exc:
        STATE.violate(f"{where}: stats not JSON: {exc}")
        return None
    finally:
        lib.free_string(ptr)


def _call(lib: Lib, call: tuple[str, Any], tag: str) -> None:
    """Make one call, checking what it returns."""
    assert STATE is not None
    kind, a = call
    name = kind
    if kind == "sleep":
        time.sleep(a / 1000)
        return
    if kind == "create":
        (name, (tj, count), threads, chunk, cb_i, use_url, ua, remote, use_socket, multi,
         hdr) = a
        cb = CALLBACKS[cb_i]
        desc = f"{name}(tasks={tj[:60] if tj else tj!r}, count={count}, threads={threads}, " \
               f"chunk={chunk}, cb={cb_i}, url={use_url}, ua={ua!r:.30}, remote={remote!r:.30}" \
               f", sock={use_socket}, multi={multi}, hdr={hdr!r:.40})"
    elif kind == "id":
        name, ident = a
        ident = _resolve(ident)
        desc = f"{name}({ident})"
    elif kind in ("set_speed_limit", "set_proxy", "set_retry_config", "tthsd_set_timeouts",
                  "tthsd_set_durability", "get_performance_stats"):
        ident = _resolve(a[0])
        rest = a[1:]
        desc = f"{kind}({ident}, {', '.join(repr(x)[:40] for x in rest)})"
    else:
        desc = f"{kind}({a!r})"
    _log(f"{tag} {desc}")
    me = threading.get_ident()
    t0 = time.monotonic()
    with STATE.lock:
        STATE.in_flight[me] = (desc, t0)
        STATE.calls[name] += 1
    try:
        _dispatch(lib, kind, name, a, locals().get("ident"), desc)
    finally:
        took = time.monotonic() - t0
        with STATE.lock:
            STATE.in_flight.pop(me, None)
            if took > STATE.slowest[0]:
                STATE.slowest = (took, desc)


def _dispatch(lib: Lib, kind: str, name: str, a: Any, ident: int | None, desc: str) -> None:
    assert STATE is not None
    if kind == "create":
        (_, (tj, count), threads, chunk, cb_i, use_url, ua, remote, use_socket, multi,
         hdr) = a
        base = (tj, count, threads, chunk, CALLBACKS[cb_i], use_url, ua, remote,
                bool_p(use_socket))
        if name == "start_download":
            rc = lib.start_download(*base, bool_p(multi), hdr)
        elif name == "get_downloader":
            rc = lib.get_downloader(*base, hdr)
        elif name == "startDownload":
            rc = lib.startDownload(*base, bool_p(multi))
        else:
            rc = lib.getDownloader(*base)
        if rc > 0:
            with STATE.lock:
                if rc in STATE.ids_ever:
                    STATE.violations.append(f"id {rc} handed out twice ({desc})")
                STATE.ids_ever.append(rc)
                STATE.example_ids.append(rc)
        elif rc != -1:
            STATE.violate(f"{desc} returned {rc}")
        else:
            _check_reason(lib, desc)
            reason = lib.last_error()
            with STATE.lock:
                STATE.refusals[reason.split(":")[0][:40]] += 1
        return
    if kind == "id":
        rc = getattr(lib, name)(ident)
        if rc not in RETURNS[name]:
            STATE.violate(f"{desc} returned {rc}")
        if rc == 0 and name in ("stop_download", "stopDownload"):
            with STATE.lock:
                STATE.stopped.add(ident)  # type: ignore[arg-type]
        if rc == -1:
            _check_reason(lib, desc)
        return
    if kind in ("set_speed_limit", "set_proxy", "set_retry_config", "tthsd_set_timeouts",
                "tthsd_set_durability"):
        rc = getattr(lib, kind)(ident, *a[1:])
        if rc not in RETURNS[kind]:
            STATE.violate(f"{desc} returned {rc}")
        if rc == -1:
            _check_reason(lib, desc)
        return
    if kind == "get_performance_stats":
        assert ident is not None
        _stats_text(lib, ident, desc)
        return
    if kind == "free_string":
        how, n = a
        if how == "null":
            lib.free_string(None)
        elif how == "made-up":
            lib.free_string(n)  # the library must ignore what it did not hand out
        else:
            ptr = lib.get_performance_stats(STATE.any_id(n))
            if how == "inner":
                lib.free_string(ptr + 1)
            lib.free_string(ptr)
            if how == "twice":
                lib.free_string(ptr)
        return
    if kind == "tthsd_last_error":
        with_buf, n = a
        if with_buf:
            buf = ctypes.create_string_buffer(n + 1)
            full = lib.tthsd_last_error(buf, n)
            if n and full > 0 and buf.raw[min(full, n - 1)] != 0:
                STATE.violate(f"last_error({n}) not NUL-terminated within len")
        else:
            full = lib.tthsd_last_error(None, n)
        if full < 0:
            STATE.violate(f"tthsd_last_error returned {full}")
        return
    if kind == "tthsd_version":
        v = lib.tthsd_version()
        if not v:
            STATE.violate("tthsd_version returned NULL")
        return
    if kind == "tthsd_abi_version":
        if lib.tthsd_abi_version() < 1:
            STATE.violate("tthsd_abi_version < 1")
        return
    raise AssertionError(f"unknown call {kind}")


def _check_reason(lib: Lib, desc: str) -> None:
    assert STATE is not None
    reason = lib.last_error()
    if not reason:
        STATE.violate(f"{desc}: -1 without a reason")
    elif "panic" in reason.lower():
        STATE.violate(f"{desc}: {reason}")


def run_program(program: list[list[tuple[str, Any]]]) -> None:
    """Run one example: its threads at once, then stop every id it made and check."""
    assert STATE is not None
    lib = STATE.lib
    STATE.examples += 1
    n = STATE.examples
    with STATE.lock:
        STATE.example_ids = []
        STATE.stopped = set()
    _reentrant_rng.seed(n)
    barrier = threading.Barrier(len(program))
    errors: list[BaseException] = []

    def body(i: int, calls: list[tuple[str, Any]]) -> None:
        try:
            barrier.wait(10)
            for j, c in enumerate(calls):
                _call(lib, c, f"e{n}.t{i}.{j}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i, calls), name=f"fuzz-{i}")
               for i, calls in enumerate(program)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    # No leak of ids: stop them all; a stopped id answers {} and refuses controls.
    with STATE.lock:
        ids = list(STATE.example_ids)
    for ident in ids:
        _log(f"e{n}.cleanup stop_download({ident})")
        with STATE.lock:
            STATE.in_flight[threading.get_ident()] = (f"cleanup stop_download({ident})",
                                                      time.monotonic())
        lib.stop_download(ident)
        with STATE.lock:
            STATE.in_flight.pop(threading.get_ident(), None)
    for ident in ids:
        text = _stats_text(lib, ident, f"after stop {ident}")
        if text is not None and json.loads(text) != {}:
            STATE.violate(f"id {ident} still answers after stop_download: {text[:200]}")
        if lib.pause_download(ident) != -1:
            STATE.violate(f"id {ident} still controllable after stop_download")
    if STATE.violations:
        raise AssertionError("violations: " + " | ".join(STATE.violations[:5]))


def _watchdog(limit: float) -> None:
    while True:
        time.sleep(0.25)
        assert STATE is not None
        now = time.monotonic()
        with STATE.lock:
            stuck = [(d, now - t0) for d, t0 in STATE.in_flight.values() if now - t0 > limit]
        if stuck:
            desc, took = stuck[0]
            sys.stderr.write(f"HANG: {desc} has not returned after {took:.1f}s\n")
            sys.stderr.flush()
            faulthandler.dump_traceback(all_threads=True)
            os._exit(70)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--calls", type=int, default=12, help="most calls per thread")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--call-limit", type=float, default=20.0)
    args = ap.parse_args(argv)
    global STATE
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)  # a relative save_path from random JSON lands here
    # The HTTPS server's CA is the only one the core trusts (it reads SSL_CERT_FILE at its
    # first handshake).
    trust = make_trust(args.workdir / "trust")
    os.environ["SSL_CERT_FILE"] = str(trust.ca_pem)
    os.environ.pop("SSL_CERT_DIR", None)
    lib = Lib(library_path())
    log_fd = os.open(args.workdir / "calls.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    t_start = time.monotonic()
    tls = H2Server(trust.server_pem, keep_alive_timeout=5.0)
    with LoopbackServer(idle_timeout=5.0) as srv, tls:
        paths = plain_resources(srv)
        tls_urls = [tls.url(p) for p in tls_resources(tls)]
        STATE = State(lib=lib, base=srv.base_url, workdir=args.workdir, log_fd=log_fd)
        threading.Thread(target=_watchdog, args=(args.call_limit,), daemon=True).start()
        # Warm up (the core's runtime, the servers, the TLS roots) before the baseline.
        warm = lib.get_downloader(json.dumps([
            {"url": srv.url("/small.bin"), "save_path": str(args.workdir / "warm.bin")},
            {"url": tls.url("/small.bin"), "save_path": str(args.workdir / "warm-tls.bin")},
        ]).encode(), 2, 1, 1, None, False, None, None, None, None)
        lib.start_download_id(warm)
        time.sleep(0.3)
        lib.stop_download(warm)
        baseline = settle(resources_now(), 1.0)
        warm_requests = len(tls.requests())
        calls = strategies(srv.base_url, paths, args.workdir, tls_urls, len(CALLBACKS))
        program = st.lists(st.lists(calls, max_size=args.calls), min_size=args.threads,
                           max_size=args.threads)
        test = seed(args.seed)(settings(
            max_examples=args.examples, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
            print_blob=True,
        )(given(program)(run_program)))
        failure = None
        try:
            test()
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {exc}"[:3000]
        srv.wait_idle(5)
        tls.wait_idle(5)
        end = settle(baseline)
        tls_versions = Counter(r.version for r in tls.requests()[warm_requests:])
        tls_errors = [repr(e)[:300] for e in tls.errors]
    report = {
        "seed": args.seed, "examples": STATE.examples, "calls": sum(STATE.calls.values()),
        "per_export": dict(sorted(STATE.calls.items())), "events": dict(STATE.events),
        "ids_created": len(STATE.ids_ever), "ids_unique": len(set(STATE.ids_ever)),
        "slowest_call": [round(STATE.slowest[0], 3), STATE.slowest[1][:200]],
        "threads": [baseline[0], end[0]], "fds": [baseline[1], end[1]],
        "refusals": dict(STATE.refusals.most_common(12)),
        "violations": STATE.violations, "failure": failure,
        "tls_requests_by_version": dict(tls_versions), "tls_server_errors": tls_errors[:20],
        "seconds": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
