"""Pull queries: a SELECT answered once from the current state.

On a TABLE the query reads the table's materialized state (the latest row per key; on a windowed
table, per key and window, with ``WINDOWSTART``/``WINDOWEND`` columns after the key as in
ksqlDB); on a STREAM it scans every record of the stream's topic. :func:`pull` returns the rows as
a DataFrame; :func:`pull_rows` as Python tuples with the ksqlDB columns they hold (what a network
face encodes).

Planning a query costs milliseconds (parsing, and DuckDB typing its expressions) while a point
lookup on a table's state takes a fraction of one, so the SQL a pull query on a TABLE compiles to is
cached per engine, by the query's text and the types of its ``:name`` parameters. The plan is made
with a stand-in value for each string and integer parameter and each call puts the actual values'
literals in their place: a lookup repeated with other parameter values is not planned again. An
entry is used only while the table it reads is still the same catalog object (a dropped and
re-created table is planned anew).

A query without parameters has the string and integer literals it compares with ``=``, ``<>``,
``<``, ``>``, ``<=`` or ``>=`` taken out as parameters first (:func:`lift_literals`), so that the
point lookups a client sends as text (``WHERE ID = 'k17'``) share one plan too. Where the lifted
query cannot be run, the query runs as written, and its error is the one the user sees.

The cache is safe to share between threads, and a pull query on a connection of its own (a cursor
of the engine's database) needs no engine lock: planning only looks sources up in the catalog,
whose entries are immutable values, and a stream's end offsets in the log.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from nbstream.analysis.pull_rules import PullOptions, check_clauses, check_where
from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import WINDOW_BOUNDS, Column
from nbstream.errors import BindError, ExecutionError, NbstreamError, UnsupportedError
from nbstream.physical.compile import order_by_sql, result_sql
from nbstream.physical.expressions import literal, quote
from nbstream.plan.aggregate import AggregatePlan
from nbstream.plan.logical import OutputColumn, StatelessPlan
from nbstream.plan.planner import plan_query
from nbstream.runtime.lookups import KEY_COLUMN, Lookup, Lookups
from nbstream.runtime.materialize import state_columns, state_table
from nbstream.sql import ast, parse
from nbstream.sql.printer import ksql_text

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine

#: Compiled pull queries kept per engine (least recently used dropped first).
CACHE_SIZE = 256


@dataclass(frozen=True)
class PullResult:
    """A pull query's rows, as Python tuples, and the ksqlDB columns they hold (a TABLE's key
    columns in the projection, and a windowed table's ``WINDOWSTART``/``WINDOWEND``, have role
    ``KEY``, as ksqlDB marks them in a pull query's header). ``stream``: the query scanned a
    STREAM (ksqlDB ends such a query's ``/query`` response with "Query Completed", or "Limit
    Reached" when ``limit_reached``: it returned as many rows as its LIMIT)."""

    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]
    stream: bool = False
    limit_reached: bool = False


@dataclass(frozen=True)
class _Query:
    """The DuckDB SQL answering a pull query, and the columns it returns (``stream``: of a STREAM)."""

    sql: str
    columns: tuple[Column, ...]
    stream: bool = False
    limit: int | None = None
    lookup_prefix: str | None = None  # a point lookup that may run with others (runtime/lookups.py)
    lookup_slot: str | None = None  # the parameter holding its key
    lookup: Lookup | None = None  # bound: the lookup of this call


@dataclass(frozen=True)
class _Compiled:
    """The DuckDB SQL of a pull query on a table, cut where its parameters' values go: ``pieces``
    around the places, ``slots`` the parameter whose value goes in each place."""

    query: _Query
    source: Source
    pieces: tuple[str, ...]
    slots: tuple[str, ...]

    @classmethod
    def of(cls, query: _Query, source: Source, stand_ins: Mapping[str, str]) -> _Compiled:
        """``query``'s SQL cut at each stand-in literal (parameter name -> the literal standing for it)."""
        by_literal = {literal_sql: name for name, literal_sql in stand_ins.items()}
        if not by_literal:
            return cls(query, source, (query.sql,), ())
        pattern = re.compile("|".join(_literal_pattern(text).pattern for text in by_literal))
        pieces, slots, start = [], [], 0
        for match in pattern.finditer(query.sql):
            pieces.append(query.sql[start:match.start()])
            slots.append(by_literal[match.group(0)])
            start = match.end()
        pieces.append(query.sql[start:])
        return cls(query, source, tuple(pieces), tuple(slots))

    def bind(self, params: Mapping[str, object]) -> _Query:
        if not self.slots:
            return self.query
        values = [_sql_literal(params[name]) for name in self.slots]
        parts = [piece for pair in zip(self.pieces, values, strict=False) for piece in pair]
        query = self.query
        lookup = None
        if query.lookup_prefix is not None and query.lookup_slot is not None and query.lookup_slot in params:
            key = params[query.lookup_slot]
            lookup = Lookup(query.lookup_prefix, key, _sql_literal(key))
        return replace(query, sql="".join([*parts, self.pieces[-1]]), lookup=lookup)


def _sql_literal(value: object) -> str:
    """A string or integer as a DuckDB literal (the kinds of values stood in for), as sqlglot writes them."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return literal(value).sql("duckdb")


class _Cache:
    """The compiled pull queries of one engine, least recently used first (thread-safe)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[object, ...], _Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> _Compiled | None:
        with self._lock:
            compiled = self._entries.get(key)
            if compiled is not None:
                self._entries.move_to_end(key)
            return compiled

    def put(self, key: tuple[object, ...], compiled: _Compiled) -> None:
        with self._lock:
            self._entries[key] = compiled
            if len(self._entries) > CACHE_SIZE:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


_caches: weakref.WeakKeyDictionary[Engine, _Cache] = weakref.WeakKeyDictionary()
_LOOKUPS = Lookups()
_caches_lock = threading.Lock()


def pull(engine: Engine, sql: str, params: Mapping[str, object],
         con: duckdb.DuckDBPyConnection | None = None, properties: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run the pull query ``sql`` (one SELECT without EMIT) against the engine's current state — its
    last committed state when ``con`` is another connection (cursor) to the engine's database.
    ``properties`` override the engine's for this query (``ksql.query.pull.table.scan.enabled`` …:
    :class:`~nbstream.analysis.pull_rules.PullOptions`)."""
    con = con or engine.con
    return _execute(con, _prepare(engine, sql, params, con, _options(engine, properties)).sql)


def pull_rows(engine: Engine, sql: str, params: Mapping[str, object],
              con: duckdb.DuckDBPyConnection | None = None, properties: Mapping[str, Any] | None = None) -> PullResult:
    """:func:`pull`, its rows as Python tuples with their columns."""
    con = con or engine.con
    query = _prepare(engine, sql, params, con, _options(engine, properties))
    try:
        rows = _LOOKUPS.rows(query.lookup, con) if query.lookup is not None else con.execute(query.sql).fetchall()
        return PullResult(query.columns, rows, query.stream, query.limit is not None and len(rows) >= query.limit)
    except duckdb.Error as e:
        raise ExecutionError(f"pull query failed: {e}") from e


def _options(engine: Engine, properties: Mapping[str, Any] | None) -> PullOptions:
    overrides = properties or {}
    return PullOptions.of(lambda name: overrides[name] if name in overrides else engine.property(name))


def _prepare(engine: Engine, sql: str, params: Mapping[str, object], con: duckdb.DuckDBPyConnection,
             options: PullOptions) -> _Query:
    """The SQL answering ``sql``: cached or planned, or, for a query without parameters, that of the
    query with its compared literals lifted. A query ksqlDB would refuse is refused
    (:mod:`nbstream.analysis.pull_rules`) when it is planned."""
    if not params:
        template, lifted = lift_literals(sql)
        if lifted:
            try:
                return _prepare(engine, template, lifted, con, options)
            except NbstreamError:
                pass  # the query as written says what is wrong with it
    cache = _cache(engine)
    key = _cache_key(sql, params, options)
    cached = _cached(engine, cache.get(key), params)
    if cached is not None:
        return cached
    query = _parse_select(sql)
    source = engine.catalog.get(_source_name(query))
    check_clauses(query, options)
    if not source.is_table:
        return _stream_query(engine, con, query, params)
    compiled = _compile_table_query(engine, con, query, source, params, options)
    if compiled is None:
        return _table_query(engine, con, query, source, params, options)
    cache.put(key, compiled)
    return compiled.bind(params)


@dataclass(frozen=True)
class PointLookup:
    """A pull query that is a point lookup planned before: its result's columns and the lookup
    answering it (:mod:`~nbstream.runtime.lookups`)."""

    columns: tuple[Column, ...]
    lookup: Lookup


def cached_point_lookup(engine: Engine, sql: str, properties: Mapping[str, Any] | None = None) -> PointLookup | None:
    """``sql`` as a :class:`PointLookup` if it is one and its compiled SQL is cached (no planning, no
    DuckDB: cheap enough for an event loop); None for any other query, or one not planned yet."""
    template, params = lift_literals(sql)
    query = _cached(engine, _cache(engine).get(_cache_key(template, params, _options(engine, properties))), params)
    if query is None or query.lookup is None:
        return None
    return PointLookup(query.columns, query.lookup)


def _cache(engine: Engine) -> _Cache:
    with _caches_lock:
        return _caches.setdefault(engine, _Cache())


def _cache_key(sql: str, params: Mapping[str, object], options: PullOptions) -> tuple[object, ...]:
    return (sql, options, *sorted((name, _shape(value)) for name, value in params.items()))


def _cached(engine: Engine, compiled: _Compiled | None, params: Mapping[str, object]) -> _Query | None:
    """``compiled`` bound to ``params`` while the table it reads is still the catalog's."""
    if compiled is None or engine.catalog.find(compiled.source.name) is not compiled.source:
        return None
    return compiled.bind(params)


def _stream_query(engine: Engine, con: duckdb.DuckDBPyConnection, query: ast.Query,
                  params: Mapping[str, object]) -> _Query:
    """A scan of every record of a stream's topic."""
    plan = _plan(engine, con, query, params)
    limit = f" LIMIT {plan.limit}" if plan.limit is not None else ""
    info = engine.log.require(plan.scan.topic)
    relation = engine.log.relation(plan.scan.topic, {p: (0, e) for p, e in info.end_offsets.items()})
    names = ", ".join(quote(c.name) for c in plan.columns)
    return _Query(f"SELECT {names} FROM ({result_sql(plan, relation)}) "
                  f"WHERE NOT __err ORDER BY {order_by_sql(plan)}{limit}",
                  tuple(_value_column(c) for c in plan.columns), stream=True, limit=plan.limit)


def _plan(engine: Engine, con: duckdb.DuckDBPyConnection, query: ast.Query,
          params: Mapping[str, object]) -> StatelessPlan:
    plan = plan_query(query, engine.catalog, con, params=params)
    if isinstance(plan, AggregatePlan):
        raise UnsupportedError("Pull queries don't support GROUP BY clauses or aggregate functions.")
    if not isinstance(plan, StatelessPlan):
        raise UnsupportedError("Pull queries don't support JOIN clauses.")
    return plan


def _table_query(engine: Engine, con: duckdb.DuckDBPyConnection, query: ast.Query, source: Source,
                 params: Mapping[str, object], options: PullOptions) -> _Query:
    """The SELECT over the table's state; a windowed table's rows in key, then window order."""
    if source.window is not None:
        query = _expand_star(query, source)
    plan = _plan(engine, con, query, params)
    check_where(query, source, options, params)
    outputs = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in plan.columns)
    where = f" WHERE {_sargable(plan.where)}" if plan.where else ""
    order = ""
    if source.window is not None:
        order = " ORDER BY " + ", ".join([*(quote(c.name) for c in source.schema.key), '"WINDOWSTART"'])
    elif plan.limit is not None:  # the first rows by key, as ksqlDB's scan of its state store returns them
        order = " ORDER BY " + ", ".join(quote(c.name) for c in source.schema.key)
    limit = f" LIMIT {plan.limit}" if plan.limit is not None else ""
    columns = tuple(_table_column(c, source) for c in plan.columns)
    sql = f"SELECT {outputs} FROM {state_table(source.name)}{where}{order}{limit}"
    slot = _lookup_slot(query, source) if plan.limit is None else None
    if slot is None:
        return _Query(sql, columns)
    key = quote(source.schema.key[0].name)
    prefix = f"SELECT {outputs}, {key} AS {quote(KEY_COLUMN)} FROM {state_table(source.name)} WHERE {key} IN ("
    return _Query(sql, columns, lookup_prefix=prefix, lookup_slot=slot)


def _lookup_slot(query: ast.Query, source: Source) -> str | None:
    """The parameter of a query whose WHERE is only ``key = :param`` on a table of one STRING,
    INTEGER or BIGINT key, not windowed (such lookups may run together); None for any other."""
    where = query.select.args.get("where")
    keys = source.schema.key
    if where is None or source.window is not None or len(keys) != 1 or \
            keys[0].type.name not in ("STRING", "INTEGER", "BIGINT"):
        return None
    node = where.this.unnest() if isinstance(where.this, exp.Paren) else where.this
    if not isinstance(node, exp.EQ):
        return None
    sides = (node.this, node.expression)
    column = next((s for s in sides if isinstance(s, exp.Column)), None)
    param = next((s for s in sides if isinstance(s, exp.Placeholder)), None)
    if column is None or param is None or column.table or column.name != keys[0].name:
        return None
    return str(param.name)


def _table_column(column: OutputColumn, source: Source) -> Column:
    """A result column of a pull query on ``source``: ``KEY`` if it is a key column of the table
    (or a window bound of a windowed one), as ksqlDB marks them in a pull query's header."""
    found = source.schema.find(column.name)
    is_key = (found is not None and found.role == "KEY" and found.type == column.type) or \
        (source.window is not None and column.name in WINDOW_BOUNDS)
    return Column(column.name, column.type, "KEY" if is_key else "VALUE")


def _value_column(column: OutputColumn) -> Column:
    return Column(column.name, column.type)


def _sargable(where: str) -> str:
    """``where`` with its top-level conjuncts ``coalesce(c, FALSE)`` written ``c`` (the same filter
    in a WHERE clause), so DuckDB sees ``key = literal`` and looks the key up in the state's index."""
    def strip(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Paren):
            return exp.Paren(this=strip(node.this))
        if isinstance(node, exp.And):
            return exp.And(this=strip(node.this), expression=strip(node.expression))
        rest = node.expressions if isinstance(node, exp.Coalesce) else None
        if rest is not None and len(rest) == 1 and rest[0] == exp.false():
            return strip(node.this)
        return node
    return strip(cast(exp.Expression, sqlglot.parse_one(where, read="duckdb"))).sql("duckdb")


def _compile_table_query(engine: Engine, con: duckdb.DuckDBPyConnection, query: ast.Query, source: Source,
                         params: Mapping[str, object], options: PullOptions) -> _Compiled | None:
    """The cacheable SQL of a pull query on a table, or None if its parameters can't be stood in for."""
    stand_ins = {name: _stand_in(i, value) for i, (name, value) in enumerate(params.items())}
    stand_ins = {name: s for name, s in stand_ins.items() if s is not None}
    rendered = {name: literal(value).sql("duckdb") for name, value in stand_ins.items()}
    planned = _table_query(engine, con, query, source, {**params, **stand_ins}, options)
    sql = planned.sql
    for name, stand_in in stand_ins.items():  # a stand-in must only appear as its own literal
        if ksql_text(query.select).count(str(stand_in)) or \
                len(_literal_pattern(rendered[name]).findall(sql)) != sql.count(str(stand_in)):
            return None
    return _Compiled.of(planned, source, rendered)


def _stand_in(index: int, value: object) -> object | None:
    """A value planned in place of a parameter's: of the same SQL type, and found nowhere else."""
    if isinstance(value, str):
        return f"__nbstream_param_{index}__"
    if isinstance(value, int) and not isinstance(value, bool):
        return (2_147_000_000 if -(2**31) <= value < 2**31 else 9_000_000_000_000_000_000) + index
    return None


def _shape(value: object) -> object:
    """What of a parameter's value a compiled query depends on: its type (for stood-in values)."""
    if isinstance(value, str):
        return str
    if isinstance(value, int) and not isinstance(value, bool):
        return (int, -(2**31) <= value < 2**31)
    return (type(value), repr(value))


def _literal_pattern(rendered: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.'-])" + re.escape(rendered) + r"(?![\w.'])")


def _expand_star(query: ast.Query, source: Source) -> ast.Query:
    """``SELECT *`` on a windowed table: keys, ``WINDOWSTART``, ``WINDOWEND``, then values."""
    select = query.select
    if not any(isinstance(item, exp.Star) for item in select.expressions):
        return query
    names = [c.name for c in state_columns(source)]
    items: list[exp.Expression] = []
    for item in select.expressions:
        items += [exp.column(n, quoted=True) for n in names] if isinstance(item, exp.Star) else [item]
    return replace(query, select=select.copy().select(*items, append=False))


def _parse_select(sql: str) -> ast.Query:
    statements = parse(sql)
    if len(statements) != 1 or not isinstance(statements[0], ast.Select):
        raise NbstreamError("expected exactly one SELECT statement")
    query = statements[0].query
    if query.emit is not None:
        raise NbstreamError("EMIT CHANGES makes a push query: use Engine.push()")
    return query


def _source_name(query: ast.Query) -> str:
    from_ = query.select.args.get("from") or query.select.args.get("from_")
    if from_ is None:
        raise BindError("a query needs a FROM clause")
    if not isinstance(from_.this, exp.Table):
        raise UnsupportedError(f"FROM {from_.this.sql()}: only a stream or table name is supported")
    return str(from_.this.name)


def _execute(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    try:
        return con.execute(sql).df()
    except duckdb.Error as e:
        raise ExecutionError(f"pull query failed: {e}") from e


#: A literal a pull query compares a value with: a string or an integer right after a comparison
#: operator. Quoted identifiers and other strings are matched as a whole, so nothing inside them is
#: taken for a literal.
_COMPARED_LITERAL = re.compile(
    r"""(?P<skip>`(?:[^`]|``)*`|"(?:[^"]|"")*"|'(?:[^']|'')*')"""
    r"""|(?P<op>(?:<=|>=|<>|!=|=|<|>)\s*)(?P<literal>'(?:[^']|'')*'|\d+(?![\w.]))""")


def lift_literals(sql: str) -> tuple[str, dict[str, object]]:
    """``sql`` with each string and integer literal that follows a comparison operator replaced by a
    ``:__lit<n>`` placeholder, and the literals' values by placeholder name (none: ``sql`` as is).

    >>> lift_literals("SELECT * FROM t WHERE id = 'k''1' AND n >= 10;")
    ('SELECT * FROM t WHERE id = :__lit0 AND n >= :__lit1;', {'__lit0': "k'1", '__lit1': 10})
    """
    values: dict[str, object] = {}

    def lift(match: re.Match[str]) -> str:
        text = match.group("literal")
        if text is None:
            return match.group(0)
        name = f"__lit{len(values)}"
        values[name] = text[1:-1].replace("''", "'") if text.startswith("'") else int(text)
        return f"{match.group('op')}:{name}"

    return _COMPARED_LITERAL.sub(lift, sql), values
