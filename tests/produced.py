"""Statements run on an engine, then records produced to it and processed: the shape of the join
specifications' scenarios."""

from __future__ import annotations

from typing import Any

from nbstream import Engine

Record = tuple[str, Any, dict[str, Any] | None, int]  # topic, key, value (None: tombstone), timestamp


def run_records(sql: str, records: list[Record], eng: Engine | None = None) -> Engine:
    """``eng`` (a new in-memory engine by default) after ``sql`` and then ``records``, processed."""
    eng = eng or Engine()
    eng.execute(sql)
    for topic, key, value, ts in records:
        eng.produce(topic, value, key=key, timestamp=ts)
    eng.run_until_idle()
    return eng
