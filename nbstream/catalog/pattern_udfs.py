"""Date/time functions whose Java pattern is a column, not a literal (``FORMAT_DATE(d, fmt_col)``).

DuckDB's strftime/strptime need a constant format, and a Java pattern translates to one only once
its text is known. So such a call becomes an Arrow UDF: for each vector it takes the distinct
patterns, compiles the literal-pattern SQL of the function once per pattern (cached), and evaluates
``CASE pattern WHEN … END`` over the whole vector on a private DuckDB connection — one statement
per vector, never Python per row. A pattern that does not translate fails its rows (DuckDB's
``error``), as ksqlDB's function throws for them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.errors import NbstreamError

#: Compiles the function's SQL for one literal pattern, over the value column ``v``.
PatternSql = Callable[[str], str]

_local = threading.local()


@dataclass(frozen=True)
class PatternUdf:
    """One function's pattern-column UDF: its DuckDB name, value and result types."""

    name: str
    value_type: str
    returns: str
    compile: PatternSql

    def __call__(self, values: pa.Array, patterns: pa.Array) -> pa.Array:
        distinct = [p for p in pc.unique(patterns).to_pylist() if p is not None]
        whens = " ".join(f"WHEN {_quote(p)} THEN {_compiled(self, p)}" for p in distinct)
        expr = f"CASE __p {whens} END" if whens else "NULL"
        con = _connection()
        con.register("__patterns", pa.table({"v": values, "__p": patterns}))
        try:
            result = con.sql(f"SELECT CAST(({expr}) AS {self.returns}) AS r FROM __patterns").to_arrow_table()
        finally:
            con.unregister("__patterns")
        return result.column("r").combine_chunks()


@functools.lru_cache(maxsize=1024)
def _compiled(udf: PatternUdf, pattern: str) -> str:
    try:
        return udf.compile(pattern)
    except NbstreamError as error:  # the row fails, as ksqlDB's function throws for it
        return f"error({_quote(str(error))})"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connection() -> duckdb.DuckDBPyConnection:
    """A private in-memory connection per thread (the UDF runs inside another connection's statement)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
    return con
