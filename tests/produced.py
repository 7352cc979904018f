"""Statements run on an engine, then records produced to it and processed: the shape of the join
specifications' scenarios; and records appended to a topic as their raw bytes."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from nbstream import Engine
from nbstream.log.base import RECORD_SCHEMA

Record = tuple[str, Any, dict[str, Any] | None, int]  # topic, key, value (None: tombstone), timestamp

#: ksqlDB's configuration with Kafka Streams' record cache off: an EMIT CHANGES aggregation then
#: writes every change, not each group's last change of a micro-batch. The specifications of every
#: change a changelog holds run with it, as ksqlDB's own tests do.
EVERY_CHANGE = {"cache.max.bytes.buffering": 0}


def run_records(sql: str, records: list[Record], eng: Engine | None = None) -> Engine:
    """``eng`` (by default a new in-memory engine writing every change) after ``sql`` and then
    ``records``, processed."""
    eng = eng or Engine(properties=EVERY_CHANGE)
    eng.execute(sql)
    for topic, key, value, ts in records:
        eng.produce(topic, value, key=key, timestamp=ts)
    eng.run_until_idle()
    return eng


def append_raw(engine: Engine, topic: str, values: list[bytes | None], first_ts: int = 0) -> None:
    """``values`` appended to ``topic`` as they are, as a Kafka producer would write them (no key,
    partition 0, timestamps ``first_ts``, ``first_ts + 1``, …)."""
    rows = [{"partition": 0, "offset": 0, "ts": first_ts + i, "key": None, "value": v, "headers": [],
             "win_start": None, "win_end": None, "win_type": None} for i, v in enumerate(values)]
    engine.log.append(topic, pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
