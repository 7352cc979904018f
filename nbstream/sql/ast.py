"""The statements of nbstream's ksqlDB dialect, as immutable values.

:func:`nbstream.sql.parse` turns a script into a list of these. Expressions inside them are
sqlglot expression trees with ksqlDB meaning (see "Expression conventions" below); the binder and
compiler turn those into DuckDB SQL.

Expression conventions (what the parser guarantees to later phases):

* Unquoted identifiers are upper-cased (ksqlDB's rule); quoted ones keep their case and carry
  ``quoted=True``. Column references are ``exp.Column`` (``table`` set for ``src.col``).
* Every function call is ``exp.Anonymous(this=NAME_UPPER, expressions=[args])`` — no dialect
  mapping of names — except the syntax forms below.
* ``CAST(x AS T)`` is ``exp.Cast`` whose ``to`` is an ``exp.DataType`` and whose
  ``meta["ksql_type"]`` is the :class:`SqlType`.
* ``a->b`` struct field access is :class:`Dereference` (``this`` the struct, ``field`` the name).
* ``arr[i]`` / ``map[k]`` is ``exp.Bracket(this, expressions=[i])`` with the index *as written*
  (ksqlDB arrays are 1-based; negative indexes count from the end).
* ``x => expr`` and ``(x, y) => expr`` are ``exp.Lambda(this=body, expressions=[Identifier…])``.
* ``ARRAY[a, b]`` is ``exp.Array``; ``MAP(k := v, …)`` is ``exp.VarMap(keys=Array, values=Array)``;
  ``STRUCT(name := v, …)`` is ``exp.Struct`` of ``exp.PropertyEQ(this=Identifier, expression=v)``.
* Literals: ``exp.Literal`` keeps the number's text (``1.5`` is a DECIMAL in ksqlDB, ``1.5E0`` a
  DOUBLE); ``exp.Boolean``; ``exp.Null``. Bound parameters ``:name`` are ``exp.Placeholder``.
* Pseudo-columns (ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND) are plain columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp

from nbstream.catalog.types import SqlType
from nbstream.errors import Span

SourceKind = Literal["STREAM", "TABLE"]
ColumnRole = Literal["VALUE", "KEY", "PRIMARY KEY", "HEADERS", "HEADER"]
PropertyValue = str | int | float | bool | None


class Dereference(exp.Expression):
    """``struct->field``: ``this`` is the struct expression, ``field`` the field name (str)."""

    arg_types = {"this": True, "field": True}


class StructStar(exp.Expression):
    """``struct->*``, a SELECT item only: one column per field of the struct ``this`` (a column or a
    dereference of one), each named by its field (ksqlDB's ``StructAll``)."""

    arg_types = {"this": True}


# ---------------------------------------------------------------------------------------------
# Parts of statements
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDef:
    """One element of a CREATE STREAM/TABLE column list."""

    name: str
    type: SqlType
    role: ColumnRole = "VALUE"
    header_key: str | None = None  # for ``HEADER('k')``
    span: Span | None = None


@dataclass(frozen=True)
class WindowSpec:
    """``WINDOW TUMBLING|HOPPING|SESSION (…)``; all durations in milliseconds."""

    kind: Literal["TUMBLING", "HOPPING", "SESSION"]
    size_ms: int  # for SESSION: the inactivity gap
    advance_ms: int | None = None  # HOPPING only
    grace_ms: int | None = None  # None: ksqlDB's default (plan.aggregate.window_grace_ms)
    retention_ms: int | None = None


@dataclass(frozen=True)
class Within:
    """``WITHIN (before, after) [GRACE PERIOD g]`` of a stream-stream join; milliseconds."""

    before_ms: int
    after_ms: int
    grace_ms: int | None = None


@dataclass(frozen=True)
class Query:
    """A SELECT in ksqlDB's dialect.

    ``select`` is the sqlglot SELECT without the streaming clauses, which are lifted out:
    its FROM/JOINs name sources, and each join that has a WITHIN clause carries it as
    ``join.meta["within"]`` (a :class:`Within`). ``window``, ``partition_by``, ``emit`` and
    ``limit`` hold what ksqlDB adds or moves.
    """

    select: exp.Select
    window: WindowSpec | None = None
    partition_by: tuple[exp.Expression, ...] = ()
    emit: Literal["CHANGES", "FINAL"] | None = None
    limit: int | None = None
    span: Span | None = None


# ---------------------------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """Base of all statements: ``text`` is the statement's own SQL, ``span`` where it starts in
    the script it came from."""

    text: str = field(default="", kw_only=True)
    span: Span | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class CreateSource(Statement):
    """``CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] name (cols) WITH (…)``."""

    kind: SourceKind
    name: str
    columns: tuple[ColumnDef, ...]
    properties: dict[str, PropertyValue]  # keys upper-cased
    or_replace: bool = False
    if_not_exists: bool = False
    is_source: bool = False  # CREATE SOURCE STREAM/TABLE: read-only, materialized


@dataclass(frozen=True)
class CreateAsSelect(Statement):
    """``CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS] name [WITH (…)] AS SELECT …``."""

    kind: SourceKind
    name: str
    query: Query
    properties: dict[str, PropertyValue]
    or_replace: bool = False
    if_not_exists: bool = False


@dataclass(frozen=True)
class InsertInto(Statement):
    """``INSERT INTO target [WITH (…)] SELECT …`` — a persistent query into an existing stream."""

    target: str
    query: Query
    properties: dict[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True)
class InsertValues(Statement):
    """``INSERT INTO target [(col, …)] VALUES (expr, …)``."""

    target: str
    columns: tuple[str, ...] | None
    values: tuple[exp.Expression, ...]


@dataclass(frozen=True)
class Select(Statement):
    """A transient query: a push query (``EMIT CHANGES``) or a pull query."""

    query: Query


@dataclass(frozen=True)
class Show(Statement):
    """``SHOW|LIST STREAMS|TABLES|TOPICS|QUERIES|FUNCTIONS|PROPERTIES|CONNECTORS [EXTENDED]``."""

    what: Literal["STREAMS", "TABLES", "TOPICS", "QUERIES", "FUNCTIONS", "PROPERTIES", "CONNECTORS",
                  "VARIABLES", "TYPES"]
    extended: bool = False


@dataclass(frozen=True)
class Describe(Statement):
    """``DESCRIBE [EXTENDED] name`` (``name`` None with ``DESCRIBE STREAMS|TABLES``)."""

    name: str | None
    extended: bool = False
    all_of: Literal["STREAMS", "TABLES"] | None = None


@dataclass(frozen=True)
class DescribeFunction(Statement):
    """``DESCRIBE FUNCTION name``."""

    name: str


@dataclass(frozen=True)
class Explain(Statement):
    """``EXPLAIN statement`` or ``EXPLAIN query_id``."""

    statement: Statement | None = None
    query_id: str | None = None


@dataclass(frozen=True)
class Drop(Statement):
    """``DROP STREAM|TABLE [IF EXISTS] name [DELETE TOPIC]``."""

    kind: SourceKind
    name: str
    if_exists: bool = False
    delete_topic: bool = False


@dataclass(frozen=True)
class CreateType(Statement):
    """``CREATE TYPE [IF NOT EXISTS] name AS type`` (``type`` as written: it may name custom types)."""

    name: str
    type: SqlType
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropType(Statement):
    """``DROP TYPE [IF EXISTS] name``."""

    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class Terminate(Statement):
    """``TERMINATE query_id`` or ``TERMINATE ALL`` (``query_id`` None)."""

    query_id: str | None


@dataclass(frozen=True)
class SetProperty(Statement):
    """``SET 'name' = 'value'``."""

    name: str
    value: str


@dataclass(frozen=True)
class UnsetProperty(Statement):
    """``UNSET 'name'``."""

    name: str


@dataclass(frozen=True)
class PrintTopic(Statement):
    """``PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]``."""

    topic: str
    from_beginning: bool = False
    interval: int | None = None
    limit: int | None = None


@dataclass(frozen=True)
class CreateConnector(Statement):
    """``CREATE SOURCE|SINK CONNECTOR [IF NOT EXISTS] name WITH ('k'='v', …)``."""

    kind: Literal["SOURCE", "SINK"]
    name: str
    properties: dict[str, PropertyValue]
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropConnector(Statement):
    """``DROP CONNECTOR [IF EXISTS] name``."""

    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class DescribeConnector(Statement):
    """``DESCRIBE CONNECTOR name``."""

    name: str
