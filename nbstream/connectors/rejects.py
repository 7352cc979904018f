"""Connector input that made no record, written to the processing log (``KSQL_PROCESSING_LOG``)
as deserialization errors, like the records queries cannot decode."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from nbstream.log.base import SqlLog
from nbstream.runtime.processing_log import DESERIALIZATION_ERROR
from nbstream.runtime.processing_log import TOPIC as PROCESSING_LOG_TOPIC


def log_rejects(con: duckdb.DuckDBPyConnection, log: SqlLog, logger: str, topic: str, relation: str) -> dict[int, int]:
    """Append a processing-log record for each row of ``relation`` (columns ``message``,
    ``partition``, ``offset``; the last two NULL for a line of a file) in the caller's transaction;
    returns the records written per partition (for ``log.confirm`` after the commit)."""
    return log.append_relation(PROCESSING_LOG_TOPIC, f"""(SELECT NULL::INTEGER AS "partition",
        epoch_ms(now()) AS ts, NULL::BLOB AS "key",
        encode(to_json({{'LOGGER': {_literal(logger)}, 'LEVEL': 'ERROR', 'TIME': epoch_ms(now()),
          'MESSAGE': {{'TYPE': {DESERIALIZATION_ERROR}, 'ERRORMESSAGE': message, 'TOPIC': {_literal(topic)},
                       'PARTITION': "partition"::INTEGER, 'OFFSET': "offset"::BIGINT}}}})::VARCHAR) AS "value",
        NULL AS headers, NULL::BIGINT AS win_start, NULL::BIGINT AS win_end, NULL::VARCHAR AS win_type,
        row_number() OVER () AS __seq FROM {relation})""", commit=False)


def log_messages(con: duckdb.DuckDBPyConnection, log: SqlLog, logger: str, topic: str,
                 messages: pa.Array) -> dict[int, int]:
    """:func:`log_rejects` for messages without a partition and offset (a source's bad lines)."""
    if not len(messages):
        return {}
    table = pa.table({"message": messages, "partition": pa.nulls(len(messages), pa.int32()),
                      "offset": pa.nulls(len(messages), pa.int64())})
    con.register("__rejected", table)
    try:
        return log_rejects(con, log, logger, topic, "__rejected")
    finally:
        con.unregister("__rejected")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
