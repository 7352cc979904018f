"""Fixtures of the client tests: real ``nbstream serve`` processes on loopback ports (plain, with
users, with TLS) from the server tests' harness, and the files they need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server.harness import Server, eventually, running_server, start_server
from servers import PASSWORD, USER, TlsServer, self_signed

from nbstream.client.rest import KsqlClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An in-memory engine served on a free loopback port (one per test module)."""
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, which it may stop or kill."""
    with running_server(tmp_path / "server") as running:
        yield running


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that wants HTTP Basic credentials: alice, s3cret."""
    folder = tmp_path_factory.mktemp("guarded")
    made = subprocess.run([sys.executable, "-m", "nbstream", "serve", "--hash-password", USER],
                          input=PASSWORD + "\n", capture_output=True, text=True, check=True, timeout=60)
    (folder / "users").write_text(made.stdout)
    with running_server(folder / "logs", "--auth", str(folder / "users"), auth=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A server speaking TLS with a self-signed certificate (made by openssl), and a CA that did not sign it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test certificates")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder, "server")
    other, _ = self_signed(folder, "other")
    running = start_server(folder / "logs", "--tls-cert", str(cert), "--tls-key", str(key), ready=False)
    try:
        served = TlsServer(running, cert, other)
        with KsqlClient(served.url, ca_file=str(cert)) as client:  # ready: its engine is open
            eventually(lambda: client.info()["serverStatus"] == "RUNNING", timeout=30)
        yield served
    finally:
        running.stop()
