"""ksqlDB configuration names: a Kafka Streams setting (``auto.offset.reset``,
``cache.max.bytes.buffering`` …) may be given as it is named or with ksqlDB's ``ksql.streams.``
prefix, as ksqlDB's ``KsqlConfig`` passes both on to Kafka Streams."""

from __future__ import annotations

from collections.abc import Mapping

#: The prefix under which ksqlDB passes a setting on to Kafka Streams.
STREAMS_PREFIX = "ksql.streams."


def find_setting(properties: Mapping[str, object], name: str) -> tuple[str, object] | None:
    """The key and value of setting ``name`` in ``properties``: as named, else with
    :data:`STREAMS_PREFIX`; None where neither is set (a None value counts as not set)."""
    for key in (name, STREAMS_PREFIX + name):
        value = properties.get(key)
        if value is not None:
            return key, value
    return None
