"""The soak's servers: one child process per protocol, each serving the same files with
faults, so that a soak run mixes plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS.

* ``http``: :class:`~tests.support.server.LoopbackServer` (plain HTTP/1.1).
* ``https``: the same server over TLS (its ``ssl_context``, ALPN ``http/1.1``): the
  same faults, under TLS. (Not hypercorn's HTTP/1.1: h11 refuses to send a body longer
  or shorter than its ``Content-Length``, so two of the faults could not be thrown.)
* ``h2``: :class:`~tests.support.h2server.H2Server` (hypercorn) offering ALPN ``h2``
  only.

The TLS servers present a certificate for 127.0.0.1 signed by a throwaway CA
(:func:`make_trust`, trustme); the measured process names that CA in ``SSL_CERT_FILE``,
so the core verifies the servers as it would real ones.

Faults are those of :func:`tests.adversarial.knobs.random_faults`; what they mean per
protocol (:data:`KINDS`):

* ``close``: after a random share of the body the TCP connection is closed (over TLS
  without ``close_notify``; on HTTP/2 without ``GOAWAY``, so every stream of that
  connection dies with it);
* ``reset``: HTTP/1.1 (plain or TLS): a TCP RST; HTTP/2: ``RST_STREAM`` on that stream
  only, the connection goes on;
* ``eof``: a ``Content-Length`` longer than the body, then the end of the body (HTTP/1.1:
  the connection closes; HTTP/2: ``END_STREAM`` early);
* ``overlong`` (bytes past the range, under a ``Content-Length`` of the range): HTTP/1.1
  only. HTTP/2 frames the body by ``END_STREAM``, so there are no bytes after the
  message to read past; not injected on ``h2``;
* ``500``, ``503``, ``429`` (``Retry-After: 0``), ``stall`` (2 s of silence mid-body: the
  500 ms read timeout must cut it; on HTTP/2 the silence is on one stream), ``cr`` (a
  lying ``Content-Range``): on every protocol.

A child prints ``{"port", "sizes"}``, serves until its stdin closes, then prints
``{"faults": {kind: n}, "versions": {"HTTP/1.1" | "HTTP/2": requests}, "errors": [...]}``
(``errors``: exceptions of the server's own or of a hook, which fail the soak) and exits.
"""

from __future__ import annotations

import json
import random
import ssl
import subprocess
import sys
import threading
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.adversarial.knobs import FAULT_KINDS

PROTOCOLS = ("http", "https", "h2")
KINDS: dict[str, tuple[str, ...]] = {
    "http": FAULT_KINDS,
    "https": FAULT_KINDS,
    "h2": tuple(k for k in FAULT_KINDS if k != "overlong"),
}
REPO = Path(__file__).resolve().parents[2]
#: Proxy variables the measured process drops (as tests/remote/conftest.py's): loopback
#: only, never through a proxy of the environment.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
              "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


def sizes(seed: int, files: int, max_size: int) -> list[int]:
    """File sizes: one empty file, then small, medium and large ones."""
    rng = random.Random(seed)
    out = []
    for i in range(files):
        r = rng.random()
        if i == 0:
            out.append(0)  # an empty file is part of every soak
        elif r < 0.3:
            out.append(rng.randrange(1, 16 * 1024))
        elif r < 0.8:
            out.append(rng.randrange(16 * 1024, 512 * 1024))
        else:
            out.append(rng.randrange(512 * 1024, max_size + 1))
    return out


@dataclass(frozen=True)
class Trust:
    ca_pem: Path  #: the CA certificate (``SSL_CERT_FILE`` of the measured process)
    server_pem: Path  #: the servers' key and certificate chain


def make_trust(folder: Path) -> Trust:
    """A throwaway CA and a certificate for 127.0.0.1 it signed, written to ``folder``."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = Trust(folder / "ca.pem", folder / "server.pem")
    ca.cert_pem.write_to_path(str(out.ca_pem))
    cert.private_key_and_cert_chain_pem.write_to_path(str(out.server_pem))
    return out


def serve(proto: str, seed: int, fault_rate: float, files: int, max_size: int,
          cert: Path | None) -> int:
    """The body of a server child (``soak.py --serve PROTO``)."""
    from tests.adversarial.knobs import random_faults
    from tests.support.h2server import H2Server
    from tests.support.server import LoopbackServer, RequestRecord, Response

    file_sizes = sizes(seed, files, max_size)
    # A seed of its own per protocol: the servers do not throw the same faults in step.
    faults = random_faults(fault_rate, seed * 7 + PROTOCOLS.index(proto), kinds=KINDS[proto],
                           stall_for=2.0)
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def hook(req: RequestRecord, resp: Response) -> Response | None:
        with lock:
            versions[req.version] += 1
        return faults(req, resp)

    srv: LoopbackServer | H2Server
    if proto == "http":
        srv = LoopbackServer(idle_timeout=10.0)
    elif proto == "https":
        assert cert is not None, "a TLS server needs --cert"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert))
        ctx.set_alpn_protocols(["http/1.1"])
        srv = LoopbackServer(idle_timeout=10.0, ssl_context=ctx)
    else:
        assert cert is not None, "a TLS server needs --cert"
        srv = H2Server(cert, alpn=("h2",), keep_alive_timeout=10.0)
    with srv:
        for i, size in enumerate(file_sizes):
            srv.add(f"/f{i}.bin", size=size, etag=f'"f{i}"', hook=hook)
        print(json.dumps({"port": srv.port, "sizes": file_sizes}), flush=True)
        sys.stdin.read()  # until the soak closes our stdin (or dies)
        injected: Counter[str] = faults.injected  # type: ignore[attr-defined]
        errors = [repr(e)[:300] + " at " + " <- ".join(
            f"{Path(f.filename).name}:{f.lineno} {f.name}"
            for f in reversed(traceback.extract_tb(e.__traceback__)[-4:]))
            for e in srv.errors]
        print(json.dumps({"faults": dict(injected), "versions": dict(versions),
                          "errors": errors}), flush=True)
    return 0


class ServerChild:
    """A server child process for one protocol: :attr:`base` and :attr:`sizes` once
    started, :meth:`finish` closes its stdin and returns its counts."""

    def __init__(self, proto: str, args: Any, cert: Path | None) -> None:
        self.proto = proto
        cmd = [sys.executable, "-m", "tests.soak.soak", "--serve", proto, "--seed",
               str(args.seed), "--fault-rate", str(args.fault_rate), "--files",
               str(args.files), "--max-size", str(args.max_size)]
        if cert is not None:
            cmd += ["--cert", str(cert)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the {proto} server did not start "
                               f"(exit {self.proc.returncode})")
        hello = json.loads(line)
        scheme = "http" if proto == "http" else "https"
        self.base = f"{scheme}://127.0.0.1:{hello['port']}"
        self.sizes: list[int] = hello["sizes"]

    def finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {"faults": {}, "versions": {},
                               "errors": [f"the {self.proto} server gave no counts"]}
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line:
                out = json.loads(line)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return out
