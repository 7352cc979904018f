"""The WITH clause of CREATE STREAM/TABLE and CREATE … AS SELECT: the property names ksqlDB knows.

ksqlDB refuses a name it does not know ("Invalid config variable(s) in the WITH clause: …", from
its ``CommonCreateConfigs`` and ``CreateConfigs``), so a misspelt ``PARTITION=4`` or
``RETENTION_MSS`` never goes unnoticed; nbstream does the same, naming the nearest known name.
``CLEANUP_POLICY`` is known, and taken when it says what the embedded log does anyway: a stream's
topic deletes by retention, a table's keeps each key's latest row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from nbstream.errors import CatalogError, did_you_mean

#: The properties of every CREATE, with or without AS SELECT (ksqlDB's ``CommonCreateConfigs``).
COMMON_PROPERTIES = frozenset({
    "KAFKA_TOPIC", "PARTITIONS", "REPLICAS", "RETENTION_MS", "CLEANUP_POLICY", "TIMESTAMP", "TIMESTAMP_FORMAT",
    "VALUE_FORMAT", "KEY_FORMAT", "FORMAT", "WRAP_SINGLE_VALUE", "VALUE_DELIMITER", "KEY_DELIMITER",
    "KEY_SCHEMA_ID", "VALUE_SCHEMA_ID", "KEY_SCHEMA_FULL_NAME", "VALUE_SCHEMA_FULL_NAME",
    "VALUE_AVRO_SCHEMA_FULL_NAME", "KEY_PROTOBUF_NULLABLE_REPRESENTATION", "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
})

#: Those of CREATE STREAM/TABLE over a topic besides (``CreateConfigs``): the window of a windowed
#: topic's keys, and the connector that writes the topic (metadata only).
CREATE_PROPERTIES = COMMON_PROPERTIES | {"WINDOW_TYPE", "WINDOW_SIZE", "SOURCE_CONNECTOR", "SOURCED_BY_CONNECTOR"}

#: The CLEANUP_POLICY of the topic of a stream and of a table, as the embedded log keeps them.
CLEANUP_POLICIES = {"STREAM": "delete", "TABLE": "compact"}


def check_with_clause(properties: Mapping[str, Any], kind: str, name: str, *, as_select: bool,
                      key_columns: Collection[str] = ()) -> None:
    """A CatalogError unless every name of ``properties`` (upper-cased) is one ksqlDB knows for
    this statement, and a CLEANUP_POLICY is the one of a ``kind`` (STREAM or TABLE).

    ``KEY``, the key column before ksqlDB 0.10 declared keys in the column list, is taken where it
    names one of the statement's ``key_columns``, as clients written then still send it (the
    ``create_table`` of ksql-python-ng): it then says nothing more than the column list."""
    known = COMMON_PROPERTIES if as_select else CREATE_PROPERTIES
    legacy_key = properties.get("KEY")
    if legacy_key is not None and not as_select:
        if str(legacy_key).strip("`").upper() not in {c.upper() for c in key_columns}:
            raise CatalogError(f"{kind.title()} {name}: KEY='{legacy_key}' names no KEY column of the statement; "
                               "declare the key in the column list (`id VARCHAR KEY`, or PRIMARY KEY for a table)")
        known = known | {"KEY"}
    unknown = sorted(set(properties) - known)
    if unknown:
        raise CatalogError(f"Invalid config variable(s) in the WITH clause: {','.join(unknown)}."
                           f"{did_you_mean(unknown[0], known)}")
    policy = properties.get("CLEANUP_POLICY")
    if policy is not None and str(policy).strip().lower() != CLEANUP_POLICIES[kind]:
        raise CatalogError(f"{kind.title()} {name}: CLEANUP_POLICY '{policy}' is not supported: the topic of a "
                           f"{kind.lower()} is '{CLEANUP_POLICIES[kind]}' (RETENTION_MS bounds a stream's)")
