"""The shape of a server's push-query result: which columns key its rows.

A live view keeps one row per key of a TABLE's changes (and appends a STREAM's rows), so it must
know the keys. ksqlDB marks them only in a pull query's header; for a push query they are read from
the query itself: the ``GROUP BY`` columns of an aggregation (with ``WINDOWSTART``/``WINDOWEND``
when selected), or the primary key of the one TABLE it selects from (asked of the server with
``DESCRIBE``) — each only where the result has it as a column. Anything else (a join, a
STREAM, a key that is not selected, a query nbstream's parser does not read) is appended as a
stream's rows are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp

from nbstream.client.rows import Header
from nbstream.errors import NbstreamError
from nbstream.runtime.query import ResultShape
from nbstream.sql import ast, parse

WINDOW_BOUNDS = ("WINDOWSTART", "WINDOWEND")

#: ``DESCRIBE name`` on the server: its ``sourceDescription`` (None: it has none).
Describe = Callable[[str], dict[str, Any] | None]


def push_shape(header: Header, sql: str, describe: Describe) -> ResultShape:
    """The shape of the push query ``sql``'s rows, whose header is ``header``."""
    keys = header.keys or inferred_keys(sql, header.columns, describe)
    return ResultShape(header.columns, tuple(keys), bool(keys), None)


def inferred_keys(sql: str, columns: Sequence[str], describe: Describe) -> tuple[str, ...]:
    """The result columns that key the rows of ``sql`` (empty: its rows are a stream's)."""
    query = _query(sql)
    if query is None:
        return ()
    select = query.select
    group = select.args.get("group")
    if group is not None:
        keys = [_output(select, g, columns) for g in group.expressions]
        window = [c for c in columns if c.upper() in WINDOW_BOUNDS] if query.window else []
        return () if None in keys else (*(k for k in keys if k is not None), *window)
    if select.args.get("joins"):
        return ()
    source = select.args.get("from") or select.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table):
        return ()
    description = describe(_quoted(table))
    if not description or str(description.get("type", "")).upper() != "TABLE":
        return ()
    names = [str(f.get("name")) for f in description.get("fields") or () if f.get("type") == "KEY"]
    keys = [_output(select, exp.column(name), columns) for name in names]
    window = [c for c in columns if c.upper() in WINDOW_BOUNDS] if description.get("windowType") else []
    return () if None in keys or not keys else (*(k for k in keys if k is not None), *window)


def _output(select: exp.Select, key: exp.Expression, columns: Sequence[str]) -> str | None:
    """The result column holding ``key`` (a column of the input), if the query selects it."""
    if not isinstance(key, exp.Column):
        return None
    wanted = key.name.upper()
    by_upper = {c.upper(): c for c in columns}
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and projection.is_star):
            if wanted in by_upper:
                return by_upper[wanted]
            continue
        inner = projection.unalias()
        if isinstance(inner, exp.Column) and inner.name.upper() == wanted:
            return by_upper.get(projection.alias_or_name.upper())
    return None


def _query(sql: str) -> ast.Query | None:
    """The query of ``sql`` as nbstream's parser reads it (None: it cannot)."""
    try:
        statements = parse(sql)
    except NbstreamError:
        return None
    if len(statements) != 1 or not isinstance(statements[0], ast.Select):
        return None
    return statements[0].query


def _quoted(table: exp.Table) -> str:
    identifier = table.this
    if isinstance(identifier, exp.Identifier) and identifier.quoted:
        return "`" + identifier.name.replace("`", "``") + "`"
    return table.name
