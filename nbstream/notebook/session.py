"""The engine the magics use: one per kernel, created on first use, its queries run in the background."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbstream.errors import LogError
from nbstream.log.kafka_options import check_client_options, literal_secrets, parse_kafka_url
from nbstream.runtime.service import EngineService

_lock = threading.Lock()
_current: EngineService | None = None


def current_engine() -> EngineService:
    """The engine ``%%stream`` runs on (in memory unless ``%stream connect PATH`` chose a state
    directory); its persistent queries run in a background thread while the kernel is free."""
    global _current
    with _lock:
        if _current is None:
            _current = _started(EngineService())
        return _current


def connect(target: str, kafka_options: Mapping[str, Any] | None = None) -> EngineService:
    """Replace the current engine: ``memory`` for an in-memory one, ``kafka://host:port[?name=
    value&…]`` for one on a Kafka cluster (``kafka_options`` first, then the URL's), else a state
    directory path.

    The previous engine's background loop stops and its connection closes first (so connecting
    to the directory it uses again reopens it, with its streams, tables and queries); a Kafka
    engine is made before that, so the previous engine stays if its options are wrong or the
    cluster cannot be reached. Secrets must be ``env:``/``file:`` references, so a notebook never
    holds one.
    """
    global _current
    if target.lower().startswith("kafka://"):
        bootstrap, from_url = parse_kafka_url(target)
        options = {**(kafka_options or {}), **from_url}
        check_client_options(options)
        literal = literal_secrets(options)
        if literal:
            raise LogError(f"Kafka option(s) {', '.join(literal)} must be a reference, env:NAME or file:PATH, "
                           "so the secret stays out of the notebook")
        engine = EngineService(kafka=bootstrap, **options)  # shares nothing with the current one,
        disconnect()  # which is kept if the cluster cannot be reached
    else:
        disconnect()
        engine = EngineService() if target.lower() == "memory" else EngineService(Path(target).expanduser())
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


def _started(engine: EngineService) -> EngineService:
    engine.background.start()
    return engine
