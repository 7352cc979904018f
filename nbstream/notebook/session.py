"""The engine the magics use: one per kernel, created on first use, its queries run in the background."""

from __future__ import annotations

import threading
from pathlib import Path

from nbstream.errors import UnsupportedError
from nbstream.notebook.background import NotebookEngine

_lock = threading.Lock()
_current: NotebookEngine | None = None


def current_engine() -> NotebookEngine:
    """The engine ``%%stream`` runs on (in memory unless ``%stream connect PATH`` chose a state
    directory); its persistent queries run in a background thread while the kernel is free."""
    global _current
    with _lock:
        if _current is None:
            _current = _started(NotebookEngine())
        return _current


def connect(target: str) -> NotebookEngine:
    """Replace the current engine: ``memory`` for an in-memory one, else a state directory path.

    The previous engine's background loop stops and its connection closes first (so connecting
    to the directory it uses again reopens it, with its streams, tables and queries).
    """
    global _current
    if target.lower().startswith("kafka://"):
        raise UnsupportedError("%stream connect kafka://… is not supported yet: the notebook runs on "
                               "the embedded log (connect memory or a state directory)")
    disconnect()
    engine = NotebookEngine() if target.lower() == "memory" else NotebookEngine(Path(target).expanduser())
    with _lock:
        _current = _started(engine)
    return engine


def disconnect() -> None:
    """Stop and close the current engine (the next :func:`current_engine` makes a new one)."""
    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None:
        previous.close()


def _started(engine: NotebookEngine) -> NotebookEngine:
    engine.background.start()
    return engine
