"""Query plans: immutable, self-checking values, serializable as versioned JSON.

A plan holds everything the runtime needs to run a query and nothing it must look up again: the
source's topic, formats and columns, the compiled DuckDB expressions of the filter and of each
output column, and the sink's topic and formats. Beside each DuckDB lowering it keeps the bound
ksqlDB expression it came from (``OutputColumn.expression``, ``where_expression``…), so that a
stored plan reads in the user's terms and two plans can be compared across releases. The exporter
stores plans (as JSON, see :mod:`nbstream.plan.serde`); the runner runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import SqlType, quote_identifier
from nbstream.errors import PlanError

#: The plan document's format (2: every kind of plan, ksqlDB expressions beside their lowering).
PLAN_VERSION = 2


@dataclass(frozen=True)
class Scan:
    """Read a source's topic and decode its records into the source's columns."""

    source: str
    topic: str
    schema: LogicalSchema
    key_format: str
    value_format: str
    key_properties: dict[str, Any] = field(default_factory=dict)
    value_properties: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    timestamp_format: str | None = None
    is_table: bool = False
    windowed: bool = False  # the keys are windowed: records carry WINDOWSTART/WINDOWEND
    throw_on_invalid_timestamp: bool = False  # ksql.timestamp.throw.on.invalid: fail, don't log and skip

    def __post_init__(self) -> None:
        if self.timestamp is not None and self.schema.find(self.timestamp) is None:
            raise PlanError(f"TIMESTAMP column {self.timestamp} is not a column of {self.source}")


@dataclass(frozen=True)
class OutputColumn:
    """One column of a query's result: its name, type, role and DuckDB expression, and the bound
    ksqlDB expression that lowered into it (None: a column the planner made, such as a pass-through)."""

    name: str
    type: SqlType
    sql: str
    role: str = "VALUE"  # KEY | VALUE
    expression: str | None = None

    def column(self) -> Column:
        return Column(self.name, self.type, "KEY" if self.role == "KEY" else "VALUE")


@dataclass(frozen=True)
class TableFunction:
    """A table function call of a projection (EXPLODE, CUBE_EXPLODE): the DuckDB list it computes
    per input row, the column ``name`` that holds one element per output row, and the bound ksqlDB
    call it came from (see :mod:`nbstream.physical.table_functions`)."""

    name: str
    sql: str
    expression: str


@dataclass(frozen=True)
class Sink:
    """Where a persistent query writes: a topic, its formats and partition count."""

    name: str
    topic: str
    key_format: str
    value_format: str
    partitions: int
    key_properties: dict[str, Any] = field(default_factory=dict)
    value_properties: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    timestamp_format: str | None = None


@dataclass(frozen=True)
class StatelessPlan:
    """Scan → filter (→ flat-map by table functions) → project (→ re-key) → sink: a query with
    no state between records."""

    scan: Scan
    columns: tuple[OutputColumn, ...]
    where: str | None = None
    sink: Sink | None = None
    emits_table: bool = False
    limit: int | None = None
    key_from_source: bool = False  # the result's key columns are the input's: no input key, no output key
    where_expression: str | None = None  # ``where`` as bound ksqlDB text
    table_functions: tuple[TableFunction, ...] = ()  # each input row becomes one row per element
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        if not self.columns:
            raise PlanError("a query must select at least one column")
        if self.table_functions and self.scan.is_table:
            raise PlanError("Table source is not supported with table functions")
        again = [c for i, c in enumerate(self.columns) if any(o.name == c.name for o in self.columns[:i])]
        if again:  # ksqlDB's words (LogicalSchema), the columns that repeat a name before them
            role = "key" if again[0].role == "KEY" else "value"
            listed = ", ".join(f"{quote_identifier(c.name)} {c.type}" for c in again if c.role == again[0].role)
            raise PlanError(f"Duplicate {role} columns found in schema: {listed} (use AS to rename)")

    @property
    def schema(self) -> LogicalSchema:
        return LogicalSchema(tuple(c.column() for c in self.columns))
