"""A schema registry's REST API (nbstream's ASGI app over a registry) served by hypercorn on a
thread of its own, on a fixed loopback port, to be stopped and started again at will."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config
from kafka_broker import free_port

from nbstream.formats.registry import Registry
from nbstream.server.auth import Users
from nbstream.server.schema_registry import SchemaRegistryApp


class ServedRegistry:
    """``registry`` served at :attr:`url` (https with ``tls``: a certificate and key file) once
    :meth:`start` ran; ``users`` ask for HTTP Basic credentials."""

    def __init__(self, registry: Registry, users: Users | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.registry = registry
        self.app = SchemaRegistryApp(registry, users)
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread] | None = None

    def start(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.loglevel = "WARNING"
        if self.tls is not None:
            config.certfile, config.keyfile = map(str, self.tls)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=loop.run_until_complete,
                                  args=(serve(self.app, config, shutdown_trigger=stop.wait),),  # type: ignore[arg-type]
                                  daemon=True)
        thread.start()
        self._running = loop, stop, thread
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._running is None:
            return
        loop, stop, thread = self._running
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()
        self._running = None


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
