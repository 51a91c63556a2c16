"""A real RFC 3161 timestamp authority on 127.0.0.1: Debian's `openssl ts -reply` behind a tiny HTTP server.

Each authority has its own root CA and a TSA certificate with the critical timeStamping key usage RFC 3161
requires; nothing leaves this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
certs = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ v3_tsa ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


@dataclass
class Authority:
    url: str
    root_pem: str  # the CA certificate a verifier configures
    requests: list[bytes]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_authority(directory: Path, name: str) -> Path:
    directory.mkdir()
    (directory / "tsa.cnf").write_text(CONFIG.format(dir=directory))
    (directory / "serial").write_text("01\n")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "3650", "-subj", f"/CN={name} Root", "-config", "tsa.cnf",
             "-extensions", "v3_ca", cwd=directory)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tsa.key",
             "-out", "tsa.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "tsa.pem", "-days", "3650", "-extfile", "tsa.cnf", "-extensions", "v3_tsa", cwd=directory)
    return directory


def _serve(directory: Path) -> tuple[HTTPServer, list[bytes]]:
    seen: list[bytes] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock, tempfile.TemporaryDirectory() as scratch:
                seen.append(query)
                (Path(scratch) / "query.tsq").write_bytes(query)
                done = subprocess.run(["openssl", "ts", "-reply", "-config", str(directory / "tsa.cnf"), "-queryfile",
                                       str(Path(scratch) / "query.tsq"), "-out", str(Path(scratch) / "reply.tsr")],
                                      capture_output=True, check=False)
                reply = (Path(scratch) / "reply.tsr").read_bytes() if done.returncode == 0 else b""
            self.send_response(200 if reply else 400)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def _authority(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Authority]:
    if shutil.which("openssl") is None:
        pytest.fail("these tests need Debian's openssl (apt-get install openssl)")
    directory = _make_authority(tmp_path_factory.mktemp("tsa") / name, name)
    server, seen = _serve(directory)
    try:
        yield Authority(f"http://127.0.0.1:{server.server_address[1]}/tsr", (directory / "ca.pem").read_text(), seen)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    yield from _authority(tmp_path_factory, "Test TSA")


@pytest.fixture(scope="session")
def rogue_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    """Another authority with its own root: its tokens are well formed but not from a configured TSA."""
    yield from _authority(tmp_path_factory, "Rogue TSA")
