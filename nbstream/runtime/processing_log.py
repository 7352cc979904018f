"""The processing log: a stream of the records queries could not process.

Every query writes one JSON record per failed input record to the ``KSQL_PROCESSING_LOG`` topic
(in the same transaction as its output), and the engine declares a stream of the same name over
it, so failures are queryable like any other stream::

    SELECT MESSAGE->ERRORMESSAGE, MESSAGE->TOPIC FROM KSQL_PROCESSING_LOG EMIT CHANGES;
"""

from __future__ import annotations

from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import BIGINT, INTEGER, STRING, SqlType

TOPIC = "KSQL_PROCESSING_LOG"

#: ksqlDB's error types (the MESSAGE->TYPE field).
DESERIALIZATION_ERROR = 0
RECORD_PROCESSING_ERROR = 1

MESSAGE = SqlType.struct([
    ("TYPE", INTEGER), ("ERRORMESSAGE", STRING), ("TOPIC", STRING), ("PARTITION", INTEGER), ("OFFSET", BIGINT),
])


def processing_log_source() -> Source:
    """The ``KSQL_PROCESSING_LOG`` stream over the processing-log topic."""
    schema = LogicalSchema((Column("LOGGER", STRING), Column("LEVEL", STRING), Column("TIME", BIGINT),
                            Column("MESSAGE", MESSAGE)))
    return Source(name=TOPIC, kind="STREAM", schema=schema, topic=TOPIC, key_format="KAFKA",
                  value_format="JSON", sql="(the engine's processing log)")
