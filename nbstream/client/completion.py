"""What completion offers in a ksqlDB statement, in the notebook and in the shell alike: keywords, and
the names a connection knows (streams, tables, columns, functions)."""

from __future__ import annotations

from nbstream.client.connection import Connection

KEYWORDS = (
    "CREATE", "STREAM", "TABLE", "SOURCE", "OR", "REPLACE", "IF", "NOT", "EXISTS", "AS", "SELECT", "FROM",
    "WHERE", "GROUP", "BY", "HAVING", "PARTITION", "WINDOW", "TUMBLING", "HOPPING", "SESSION", "SIZE",
    "ADVANCE", "GRACE", "PERIOD", "EMIT", "CHANGES", "FINAL", "LIMIT", "JOIN", "LEFT", "RIGHT", "FULL",
    "OUTER", "INNER", "ON", "WITHIN", "INSERT", "INTO", "VALUES", "DROP", "DELETE", "TOPIC", "TERMINATE",
    "SHOW", "LIST", "STREAMS", "TABLES", "TOPICS", "QUERIES", "FUNCTIONS", "PROPERTIES", "DESCRIBE",
    "EXTENDED", "EXPLAIN", "PRINT", "SET", "UNSET", "WITH", "KEY", "PRIMARY", "AND", "IN", "IS", "NULL",
    "LIKE", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "TRUE", "FALSE", "SECONDS",
    "MINUTES", "HOURS", "DAYS", "MILLISECONDS", "KAFKA_TOPIC", "VALUE_FORMAT", "KEY_FORMAT", "PARTITIONS",
    "TIMESTAMP", "ROWTIME", "WINDOWSTART", "WINDOWEND", "SINK", "CONNECTOR", "CONNECTORS", "RUN", "SCRIPT",
    "TYPE", "TYPES",
)


def candidates(connection: Connection) -> dict[str, str]:
    """Every name completion offers, with its kind (the connection's names win over keywords)."""
    return {**dict.fromkeys(KEYWORDS, "keyword"), **connection.names()}


def matching(fragment: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """The names starting with ``fragment`` (case aside), sorted, written in its case when it is
    lower case: ``(name, kind)``."""
    lower = fragment[:1].islower()
    return [(name.lower() if lower else name, kind) for name, kind in sorted(names.items())
            if name.upper().startswith(fragment.upper())]
