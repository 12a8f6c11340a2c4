"""A throwaway certificate authority for the bench's TLS servers (issue 15).

`make_tls(folder)` writes, with the `openssl` command line:
* `ca.pem`, `ca.key`: a self-signed CA (ECDSA P-256, valid 2 days), made fresh on every
  bench start, so nothing outside the work dir ever trusts it;
* `server.pem`, `server.key`: a certificate for `127.0.0.1` and `localhost` (both in
  subjectAltName, serverAuth, not a CA), signed by that CA.
Every client is then told to trust `ca.pem` alone (curl `--cacert`, aria2c
`--ca-certificate`, ours `SSL_CERT_FILE`): nothing is run with verification off.

ECDSA P-256, as most CDNs serve today; it is also the cheaper handshake, which matters when
a thousand small files each open a connection.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate every client trusts
    cert: Path  # the server's certificate
    key: Path  # the server's private key


SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"openssl {' '.join(args[:2])} failed:\n{proc.stderr}")


def make_tls(folder: Path) -> TlsFiles:
    """A new CA and a server certificate for 127.0.0.1 in `folder` (emptied first)."""
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not installed (Debian: openssl); the TLS workloads need it")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text(SERVER_EXT)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=tthsd bench throwaway CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", "-new", *curve, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-sha256", "-extfile", str(ext),
    )  # fmt: skip
    # nginx's workers drop to nobody, but nginx reads its key as the master (root): 0600 is fine.
    key.chmod(0o600)
    ca_key.chmod(0o600)
    return TlsFiles(ca=ca, cert=cert, key=key)
