"""Clients of an engine: one :class:`~nbstream.client.connection.Connection` interface that the
faces (the notebook's magics, the command line's shell) run statements on, over the engine in this
process (:class:`~nbstream.client.connection.LocalConnection`) or over a ksqlDB-compatible server
(:class:`~nbstream.client.remote.RemoteConnection`, through the REST client
:class:`~nbstream.client.rest.KsqlClient`).

Below the faces: nothing here imports one. The REST modules (and httpx) are imported only when a
server is connected to (:func:`connect_server`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbstream.client.connection import Connection, LocalConnection, Outcome
from nbstream.client.statements import Statement

if TYPE_CHECKING:
    from nbstream.client.remote import RemoteConnection

__all__ = ["Connection", "LocalConnection", "Outcome", "Statement", "connect_server", "resolve_secret"]


def connect_server(url: str, *, user: str | None = None, password: str | None = None, ca_file: str | None = None,
                   timeout: float = 30.0, reruns: bool = False) -> RemoteConnection:
    """A connection to the server at ``url`` (``http(s)://host[:port]``), checked by asking its
    ``/info``. ``user`` and ``password`` are HTTP Basic credentials, each given as itself or as an
    ``env:NAME``/``file:PATH`` reference (:func:`resolve_secret`); ``ca_file`` verifies its TLS
    certificate (default: the system's CAs); ``reruns``: statements run as re-run notebook cells
    (:class:`~nbstream.client.remote.RemoteConnection`)."""
    from nbstream.client.remote import RemoteConnection
    from nbstream.client.rest import Credentials, KsqlClient
    from nbstream.errors import ServerAuthError

    if password is not None and user is None:
        raise ServerAuthError("a password needs a user name")
    credentials = None if user is None else Credentials(resolve_secret("user", user),
                                                        resolve_secret("password", password or ""))
    client = KsqlClient(url, credentials=credentials, ca_file=ca_file, timeout=timeout)
    try:
        return RemoteConnection(client, reruns=reruns)
    except BaseException:
        client.close()
        raise


def resolve_secret(option: str, value: str) -> str:
    """``value``, or what it refers to if it is an ``env:NAME`` or ``file:PATH`` reference."""
    from nbstream.errors import ServerAuthError
    from nbstream.log.kafka_options import is_reference, resolve_reference

    if not is_reference(value):
        return value
    return resolve_reference(option, value, what="server option", error=ServerAuthError)
