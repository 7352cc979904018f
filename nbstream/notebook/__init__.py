"""The notebook layer: ``%load_ext nbstream`` registers the ``%%stream`` / ``%stream`` magics;
:func:`current_engine` is the engine they use, its persistent queries running in the background."""

from __future__ import annotations

from typing import Any

from nbstream.notebook.session import connect, current_engine

__all__ = ["connect", "current_engine", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with IPython (``%load_ext nbstream``); they learn each cell's id before
    it runs, so re-running a cell stops the push queries it started; tab completion learns SQL."""
    from nbstream.notebook.completion import stream_matcher
    from nbstream.notebook.magics import StreamMagic

    magics = StreamMagic(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.remember_cell)
    ipython.Completer.custom_matchers.append(stream_matcher)
