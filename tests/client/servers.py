"""What the client tests share about their servers: the guarded server's user, and the TLS server
with the certificates openssl made for it. (The fixtures that start them are in conftest.py.)"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from server.harness import Server

USER, PASSWORD = "alice", "s3cret"


@dataclass(frozen=True)
class TlsServer:
    server: Server
    ca_file: Path  # the server's self-signed certificate: the CA that verifies it
    other_ca: Path  # a CA that did not sign it

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key
