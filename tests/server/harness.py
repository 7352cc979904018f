"""A real ``nbstream serve`` process on a free loopback port, and plain HTTP/1.1 and HTTP/2 calls to it.

Every test of the server talks to it through a socket, as a client on another machine would; the
server runs in a process of its own so that signals (SIGTERM, SIGKILL) reach it as they would
reach a deployed one.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STARTUP_SECONDS = 60


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running server: its process, address and log."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path
    auth: tuple[str, str] | None = None
    _closed: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- HTTP/1.1 ----------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> Response:
        """One HTTP/1.1 request on a connection of its own (http.client: what goes on the wire is plain)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            connection.request(method, path, body=data, headers={**self._auth_header(), **(headers or {})})
            reply = connection.getresponse()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            connection.close()

    def ksql(self, statements: str, **members: Any) -> list[dict[str, Any]]:
        """POST /ksql, expecting success: the entities."""
        reply = self.request("POST", "/ksql", {"ksql": statements, **members})
        assert reply.status == 200, reply.body
        entities: list[dict[str, Any]] = reply.json()
        return entities

    # -- HTTP/2 ------------------------------------------------------------------------------------------
    def h2(self, **options: Any) -> httpx.Client:
        """An HTTP/2 client speaking to the server without TLS by prior knowledge (h2c), as ksqlDB's clients do."""
        return httpx.Client(base_url=self.url, http1=False, http2=True, auth=self.auth,
                            timeout=httpx.Timeout(30.0), **options)

    def _auth_header(self) -> dict[str, str]:
        if self.auth is None:
            return {}
        return {"Authorization": httpx.BasicAuth(*self.auth)._auth_header}

    # -- the process -------------------------------------------------------------------------------------
    def signal(self, signum: int, timeout: float = 30) -> int:
        """Send ``signum``; the exit status once the process ended."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self._closed = True

    def stop(self) -> None:
        if not self._closed and self.process.poll() is None:
            self.signal(signal.SIGTERM)
        self._closed = True

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_server(log_dir: Path, *args: str, auth: tuple[str, str] | None = None,
                   ready: bool = True) -> Iterator[Server]:
    """``nbstream serve --listen 127.0.0.1:0 ARGS`` until the block ends (then SIGTERM)."""
    server = start_server(log_dir, *args, auth=auth, ready=ready)
    try:
        yield server
    finally:
        server.stop()


def start_server(log_dir: Path, *args: str, auth: tuple[str, str] | None = None, ready: bool = True) -> Server:
    """Start a server and wait until it listens (and, with ``ready``, until ``/chc/ready`` says so)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "nbstream.server", "--listen", "127.0.0.1:0", *args],
                                   stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port = _wait_for_port(process, log)
    server = Server(process, "127.0.0.1", port, log, auth)
    if ready:
        _wait_until_ready(server)
    return server


def _wait_for_port(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on" in line:
                return int(line.rsplit(":", 1)[1])
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server did not listen within {STARTUP_SECONDS} s:\n{log.read_text()}")


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.request("GET", "/chc/ready").status == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the server was not ready within {STARTUP_SECONDS} s:\n{server.output()}")


def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """The first truthy value of ``check()`` within ``timeout`` seconds (AssertionError otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        time.sleep(interval)


class RawH2:
    """A bare HTTP/2 client (the ``h2`` library over a socket) for what httpx will not do: reset one
    stream of a connection, read nothing (a window that never grows), send half a body."""

    def __init__(self, server: Server, window: int = 65_535) -> None:
        import h2.config
        import h2.connection
        import h2.settings

        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.server = server
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.statuses: dict[int, int] = {}
        self._flush()

    def request(self, path: str, body: bytes = b"", *, end: bool = True, headers: dict[str, str] | None = None) -> int:
        """Open a POST stream (its body ended unless ``end`` is False); its id."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                        (":authority", f"{self.server.host}:{self.server.port}"),
                                        *(headers or {}).items()])
        self.data[stream] = bytearray()
        if body or end:
            self.conn.send_data(stream, body, end_stream=end)
        self._flush()
        return stream

    def reset(self, stream: int) -> None:
        self.conn.reset_stream(stream)
        self._flush()

    def read(self, seconds: float, *, acknowledge: bool = True) -> None:
        """Take what the server sends for ``seconds`` (granting it more window only if ``acknowledge``)."""
        import h2.events

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65_536)
            except TimeoutError:
                continue
            if not chunk:
                return
            for event in self.conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    self.statuses[event.stream_id] = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                    if acknowledge:
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    self.ended.add(event.stream_id)
            self._flush()

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)
