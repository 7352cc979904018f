"""Table functions — EXPLODE and CUBE_EXPLODE — in the SELECT list of a query on a stream.

A table function turns one input row into as many output rows as the list it computes has
elements. ksqlDB's rules (``KudtfFlatMapper``): every table function of a projection is computed
on the same input row, and output row *i* takes element *i* of each list, NULL where a list is
shorter; a NULL or empty list contributes no rows; the other columns repeat on every output row.

The expression compiler compiles a table function call to its list (:func:`table_function_list`)
and hands it to a :class:`TableFunctionSink`, which names it ``__tf<i>``; the call itself compiles
to that name — the element — so ``EXPLODE(arr)->F1`` or ``ABS(EXPLODE(arr))`` read the element.
The plan keeps each list beside the ksqlDB call it came from
(:class:`~nbstream.plan.logical.TableFunction`); the micro-batch unnests them side by side
(:func:`unnest_sql`), which is DuckDB's semantics for several ``unnest`` calls in one SELECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlglot import exp

from nbstream.catalog.casts import sql
from nbstream.catalog.types import SqlType
from nbstream.errors import SqlTypeError
from nbstream.plan.logical import TableFunction

#: The column holding an output row's place among the rows its input row became (0, 1, …).
SUB_ROW = "__in_sub"

#: ksqlDB's table functions, by name.
BUILTIN = ("EXPLODE", "CUBE_EXPLODE")


class _Probe(Protocol):
    def add_columns(self, columns: dict[str, SqlType]) -> None: ...


class TableFunctionSink:
    """Collects the lists of a projection's table function calls, in order."""

    def __init__(self, probe: _Probe) -> None:
        self._probe = probe
        self.calls: list[TableFunction] = []

    def add(self, values: exp.Expression, list_type: SqlType, expression: str) -> exp.Expression:
        """Keep the list ``values`` (of ``list_type``), the lowering of ksqlDB call ``expression``;
        returns the column holding its element."""
        if list_type.name != "ARRAY" or list_type.element is None:
            raise SqlTypeError(f"a table function must return an ARRAY, not {list_type}")
        name = f"__tf{len(self.calls)}"
        self.calls.append(TableFunction(name, values.sql("duckdb"), expression))
        self._probe.add_columns({name: list_type.element})
        return exp.column(name, quoted=True)


def table_function_list(name: str, args: Sequence[exp.Expression], types: Sequence[SqlType]) -> exp.Expression:
    """The list ksqlDB's table function ``name`` yields for arguments ``args`` of ``types``."""
    upper = name.upper()
    if len(args) != 1 or types[0].name not in ("ARRAY", "NULL"):
        rendered = ", ".join(str(t) for t in types)
        lower = name.lower()
        raise SqlTypeError(f"Function '{lower}' does not accept parameters ({rendered}).\n"
                           f"Valid alternatives are:\n{lower}(ARRAY<T> list)")
    if upper == "EXPLODE":
        return args[0]
    if upper == "CUBE_EXPLODE":
        return _cube(args[0])
    raise SqlTypeError(f"unknown table function {name}")


def _cube(values: exp.Expression) -> exp.Expression:
    """Every combination of the elements and NULL, each once, in ksqlDB's order: for mask ``m``
    from 0 to 2^n - 1, element ``i`` (from the left, 1-based) is kept when bit n - i of ``m`` is
    set. A NULL element makes some combinations equal: only the first of equal ones is kept."""
    combos = sql(
        "list_transform(range(1 << len({0})), "
        "lambda __m: list_transform({0}, lambda __v, __i: CASE WHEN (__m >> (len({0}) - __i)) & 1 = 1 "
        "THEN __v END))", values)
    return sql("nbs_distinct_in_order({0})", combos)


def unnest_sql(calls: Sequence[TableFunction], relation: str, where: str) -> str:
    """SELECT over ``relation`` (rows matching ``where``) with one row per element of the longest
    list of ``calls``: each call's column holds the elements side by side (NULL past a shorter
    list's end), :data:`SUB_ROW` the element's place. A row in error (``__err``) stays one row, so
    it still reaches the processing log."""
    unnests = [f'unnest(CASE WHEN __err THEN [NULL] ELSE ({c.sql}) END) AS "{c.name}"' for c in calls]
    longest = f"greatest({', '.join(f'len({c.sql})' for c in calls)})"
    unnests.append(f"unnest(CASE WHEN __err THEN [0] ELSE range({longest}) END) AS {SUB_ROW}")
    return f"SELECT *, {', '.join(unnests)} FROM {relation} WHERE {where}"
