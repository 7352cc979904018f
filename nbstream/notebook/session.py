"""What the magics run on: one connection per kernel — the embedded engine, created on first use,
its queries running in the background, or a server (``%stream connect http(s)://…``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbstream.client import Connection, LocalConnection, connect_server
from nbstream.errors import LogError, ServerAuthError
from nbstream.log.kafka_options import check_client_options, is_reference, literal_secrets, parse_kafka_url
from nbstream.runtime.service import EngineService

if TYPE_CHECKING:
    from nbstream.client.remote import RemoteEngine

_lock = threading.Lock()
_current: Connection | None = None


@dataclass(frozen=True)
class ServerOptions:
    """How ``%stream connect http(s)://…`` logs in: HTTP Basic ``user`` and ``password`` (the
    password an ``env:NAME`` or ``file:PATH`` reference, never the secret itself) and the CA file
    that verifies the server's TLS certificate (None: the system's CAs)."""

    user: str | None = None
    password: str | None = None
    ca_file: str | None = None


def current_connection() -> Connection:
    """The connection ``%%stream`` runs on: the embedded engine (in memory unless ``%stream connect
    PATH`` chose a state directory), whose persistent queries run in a background thread while the
    kernel is free, or the server ``%stream connect http(s)://…`` chose."""
    global _current
    with _lock:
        if _current is None:
            _current = _local(EngineService())
        return _current


def current_engine() -> EngineService | RemoteEngine:
    """The engine the magics use: the embedded :class:`EngineService`, or — connected to a server —
    a :class:`~nbstream.client.remote.RemoteEngine` whose calls go to the server (and which says so
    for the calls only the embedded engine has, such as ``source``)."""
    connection = current_connection()
    if isinstance(connection, LocalConnection):
        return connection.engine
    from nbstream.client.remote import RemoteConnection, RemoteEngine

    assert isinstance(connection, RemoteConnection)
    return RemoteEngine(connection)


def connect(target: str, kafka_options: Mapping[str, Any] | None = None,
            server: ServerOptions | None = None) -> Connection:
    """Replace the current connection: ``memory`` for an in-memory engine, ``kafka://host:port[?name=
    value&…]`` for one on a Kafka cluster (``kafka_options`` first, then the URL's),
    ``http(s)://host:port`` for a ksqlDB-compatible server (``server`` says how to log in), else
    a state directory path.

    The previous engine's background loop stops and its connection closes first (so connecting
    to the directory it uses again reopens it, with its streams, tables and queries); a Kafka
    engine or a server connection is made before that, so the previous one stays if its options
    are wrong or it cannot be reached. Secrets must be ``env:``/``file:`` references, so a notebook
    never holds one.
    """
    global _current
    if target.lower().startswith(("http://", "https://")):
        connection: Connection = _server(target, server or ServerOptions())
        disconnect()  # the current one is kept if the server cannot be reached
    elif target.lower().startswith("kafka://"):
        bootstrap, from_url = parse_kafka_url(target)
        options = {**(kafka_options or {}), **from_url}
        check_client_options(options)
        literal = literal_secrets(options)
        if literal:
            raise LogError(f"Kafka option(s) {', '.join(literal)} must be a reference, env:NAME or file:PATH, "
                           "so the secret stays out of the notebook")
        connection = _local(EngineService(kafka=bootstrap, **options))  # shares nothing with the current one,
        disconnect()  # which is kept if the cluster cannot be reached
    else:
        disconnect()
        connection = _local(EngineService() if target.lower() == "memory" else EngineService(Path(target).expanduser()))
    with _lock:
        _current = connection
    return connection


def _server(url: str, options: ServerOptions) -> Connection:
    if options.password is not None and not is_reference(options.password):
        raise ServerAuthError("StreamMagic.server_password must be a reference, env:NAME or file:PATH, so the "
                              "secret stays out of the notebook")
    return connect_server(url, user=options.user, password=options.password, ca_file=options.ca_file, reruns=True)


def disconnect() -> None:
    """Stop and close the current connection (the next :func:`current_connection` makes a new engine)."""
    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous.close()


def _local(engine: EngineService) -> LocalConnection:
    """``engine`` as the magics' connection (its background loop started; statements re-run as
    cells do)."""
    return LocalConnection(engine, reruns=True)
