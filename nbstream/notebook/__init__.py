"""The notebook layer: ``%load_ext nbstream`` registers the ``%%stream`` / ``%stream`` magics;
:func:`current_engine` is the engine they use, its persistent queries running in the background."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbstream.notebook.session import connect, current_engine

if TYPE_CHECKING:
    from nbstream.notebook.live import LiveQuery

__all__ = ["connect", "current_engine", "load_ipython_extension", "push_query"]


def push_query(sql: str, params: Mapping[str, object] | None = None, *, cap: int = 200) -> LiveQuery:
    """Start the push query ``sql`` on :func:`current_engine` and return its handle (what
    ``%%stream NAME <<`` assigns): ``.stop()``, ``.status``, ``.to_pandas()``, ``.chart(...)``,
    ``async for frame in handle``; shown as a live table keeping ``cap`` rows when displayed."""
    from nbstream.notebook.live import live_query

    return live_query(current_engine(), sql, params or {}, cap)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with IPython (``%load_ext nbstream``); they learn each cell's id before
    it runs, so re-running a cell stops the push queries it started; tab completion learns SQL."""
    from nbstream.notebook.completion import stream_matcher
    from nbstream.notebook.magics import StreamMagic

    magics = StreamMagic(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.remember_cell)
    ipython.Completer.custom_matchers.append(stream_matcher)
