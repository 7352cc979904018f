"""The notebook layer: ``%load_ext nbstream`` registers the ``%%stream`` / ``%stream`` magics;
:func:`current_engine` is the engine they use, its persistent queries running in the background."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbstream.notebook.session import connect, current_connection, current_engine

if TYPE_CHECKING:
    from nbstream.notebook.live import LiveQuery

__all__ = ["connect", "current_connection", "current_engine", "load_ipython_extension", "push_query"]


def push_query(sql: str, params: Mapping[str, object] | None = None, *, cap: int = 200) -> LiveQuery:
    """Start the push query ``sql`` on the current connection (the engine or a server) and return
    its handle (what ``%%stream NAME <<`` assigns): ``.stop()``, ``.status``, ``.to_pandas()``,
    ``.chart(...)``, ``async for frame in handle``; shown as a live table keeping ``cap`` rows when
    displayed."""
    from nbstream.errors import UnsupportedError
    from nbstream.notebook.live import live_query

    connection = current_connection()
    statements = connection.statements(sql)
    if len(statements) != 1 or statements[0].kind != "push":
        raise UnsupportedError("push_query() takes one push query (SELECT … EMIT CHANGES)")
    return live_query(connection.push(statements[0], params or {}), cap)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with IPython (``%load_ext nbstream``); they learn each cell's id before
    it runs, so re-running a cell stops the push queries it started; tab completion learns SQL."""
    from nbstream.notebook.completion import stream_matcher
    from nbstream.notebook.magics import StreamMagic

    magics = StreamMagic(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.remember_cell)
    ipython.Completer.custom_matchers.append(stream_matcher)
