"""``INSERT INTO s (cols) VALUES (…)``: one row evaluated and encoded in DuckDB, then appended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlglot import exp

from nbstream.catalog import functions
from nbstream.catalog.types import SqlType
from nbstream.errors import BindError, did_you_mean
from nbstream.physical.compile import encode_rows_sql
from nbstream.physical.expressions import ExpressionCompiler, Scope, TypeProbe, quote
from nbstream.plan.planner import passthrough, sink_of
from nbstream.sql.ast import InsertValues

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine


def insert_values(engine: Engine, stmt: InsertValues, params: Mapping[str, object]) -> None:
    """Append the row of ``stmt`` to its target's topic, durably (``params`` bind its ``:name`` placeholders)."""
    target = engine.catalog.get(stmt.target)
    if target.is_source:
        kind = "table" if target.is_table else "stream"
        raise BindError(f"Cannot insert values into read-only {kind}: {target.name}")
    writable = [c for c in target.schema.columns if c.role not in ("HEADER", "HEADERS")]
    names = list(stmt.columns) if stmt.columns is not None else [c.name for c in writable]
    if len(names) != len(stmt.values):
        raise BindError(f"Failed to prepare statement: Expected number columns and values to match: "
                        f"{len(names)}, {len(stmt.values)}")
    _check_values(stmt.values)
    scope = Scope([], source=target.name)
    compiler = ExpressionCompiler(scope, TypeProbe(engine.con, scope), params=params)
    given: dict[str, str] = {}
    ts = "epoch_ms(now())"
    for name, value in zip(names, stmt.values, strict=True):
        if name.upper() == "ROWTIME":
            ts = f"CAST({compiler.compile(value).sql('duckdb')} AS BIGINT)"
            continue
        if name.upper() in ("ROWPARTITION", "ROWOFFSET"):
            raise BindError(f"Inserting into column `{name.upper()}` is not allowed.")
        col = target.schema.find(name)
        if col is None or col.role in ("HEADER", "HEADERS"):
            raise BindError(f"Column name {name} does not exist.{did_you_mean(name, [c.name for c in writable])}")
        given[col.name] = _value_sql(compiler, value, col.type)
    projected = ", ".join(f"{given.get(c.name, f'NULL::{c.type.duckdb()}')} AS {quote(c.name)}" for c in writable)
    row = (f"(SELECT FALSE AS __err, FALSE AS __deleted, NULL AS __headers, {ts} AS __ts, "
           f"0 AS __in_partition, 0 AS __in_offset, {projected})")
    sink = sink_of(target, engine.log.require(target.topic).partitions)
    outputs = [passthrough(c) for c in writable]
    engine.log.append_relation(target.topic, f"({encode_rows_sql(sink, outputs, row)})")


def _check_values(values: tuple[exp.Expression, ...] | list[exp.Expression]) -> None:
    """A value naming a column of some source is refused as ksqlDB refuses it (there is no source)."""
    for value in values:
        for column in value.find_all(exp.Column):
            if column.table:
                raise BindError(f"Failed to prepare statement: '{column.table}' is not a valid stream/table name "
                                "or alias.")


def _value_sql(compiler: ExpressionCompiler, value: exp.Expression, column_type: SqlType) -> str:
    """``value`` as DuckDB SQL of the column's type, coerced as ksqlDB coerces inserted values."""
    compiled = compiler.compile(value)
    return functions.compile_cast(compiled, compiler.type_of(compiled), column_type).sql("duckdb")
