"""Planning of joins: two sources, each decoded and keyed by its join expression, then joined.

A query ``SELECT … FROM a [LEFT|RIGHT|FULL] JOIN b [WITHIN …] ON e(a) = f(b) [WHERE …]`` becomes:

* one :class:`JoinSide` per source: a :class:`StatelessPlan` (``pre``) decoding the source's
  records into its columns renamed ``<ALIAS>_<COLUMN>`` (ksqlDB's names inside a join) plus the
  join key ``__jk`` (the side's ON expression);
* the join itself (:class:`JoinPlan`): its kind, the WITHIN window of a stream-stream join, and
  the projection and WHERE compiled over the joined row (both sides' renamed columns and ``__jk``).

A RIGHT join is planned as the LEFT join of the swapped sides (the projection reads columns by
name, so the order of the sides does not show). ksqlDB's rules are checked here, with its
messages: the join order, a WITHIN clause exactly for stream-stream joins, table-table joins on
primary keys, join key types, and the join key in the projection (the result's key column). A
PARTITION BY instead keys the result by its expressions of the joined row, as
:mod:`nbstream.plan.repartition` re-keys one source's records.

A multi-way join is left-deep as in ksqlDB, ((a ⋈ b) ⋈ c) …: a stream joined to tables and streams
one after another, each stream-stream join with its own WITHIN (:func:`_plan_chain`), or a chain of
tables joined on their primary keys (:func:`_plan_table_chain`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

import duckdb
from sqlglot import exp

from nbstream.catalog.catalog import Catalog, Source, WindowInfo
from nbstream.catalog.schema import PSEUDO_COLUMNS, WINDOW_BOUNDS, Column, LogicalSchema
from nbstream.catalog.types import BIGINT, SqlType
from nbstream.errors import BindError, PlanError, UnknownNameError, UnsupportedError
from nbstream.physical.expressions import ExpressionCompiler, Scope, ScopeColumn, TypeProbe, quote
from nbstream.plan.aggregate import AggregatePlan, is_aggregate_query, plan_aggregate
from nbstream.plan.aliases import AliasGenerator
from nbstream.plan.logical import OutputColumn, Scan, Sink, StatelessPlan
from nbstream.plan.repartition import Item, PartitionInput, bind_partition_by, key_projection, star_columns
from nbstream.sql.ast import Dereference, Query, Within
from nbstream.sql.printer import ksql_text

#: ksqlDB's grace period of a stream-stream join that names none: 24 hours.
DEFAULT_JOIN_GRACE_MS = 24 * 60 * 60 * 1000

#: The column of a join side, and of the joined row, holding the join key.
JOIN_KEY = "__jk"

#: The name of a synthetic join key (FULL OUTER joins, or joins on expressions of both sides),
#: suffixed ``_<n>`` past every ``ROWKEY_<n>`` column of the sources.
SYNTHETIC_KEY = "ROWKEY"

#: The field of a windowed join key (see :func:`windowed_key_sql`) holding the key itself.
WINDOWED_KEY = "K"

#: Key formats whose serializers register a schema: ksqlDB re-serializes both sides of a join in
#: them (its issue 6332), which it refuses for a windowed TABLE.
_SCHEMA_KEY_FORMATS = ("AVRO", "JSON_SR", "PROTOBUF")

#: ksqlDB's refusal to re-key (or re-serialize) a windowed source.
_REKEY_WINDOWED = ("Implicit repartitioning of windowed sources is not supported. "
                   "See https://github.com/confluentinc/ksql/issues/4385.")


def windowed_key_sql(key_sql: str, key_type: SqlType, window: WindowInfo, prefix: str = "") -> tuple[str, SqlType]:
    """The join key of a windowed source's record, and its type: a STRUCT of the key (field
    :data:`WINDOWED_KEY`) and the window bounds ksqlDB's windowed keys serialize — a time window's
    start, a session's start and end — so that records join only when key and window are equal
    (NULL when the key is: such a record joins nothing). ``prefix``: that of the bound columns' names
    (in a joined row, ``<ALIAS>_``)."""
    bounds = WINDOW_BOUNDS if window.kind == "SESSION" else WINDOW_BOUNDS[:1]
    fields = [(WINDOWED_KEY, key_type, f"({key_sql})"), *((b, BIGINT, quote(prefix + b)) for b in bounds)]
    packed = ", ".join(f"{quote(name)} := {sql}" for name, _, sql in fields)
    return (f"CASE WHEN ({key_sql}) IS NULL THEN NULL ELSE struct_pack({packed}) END",
            SqlType.struct([(name, sql_type) for name, sql_type, _ in fields]))


def _key_field_sql(name: str) -> str:
    """A field of the joined row's windowed join key ``__jk``."""
    return f"struct_extract({quote(JOIN_KEY)}, '{name}')"


@dataclass(frozen=True)
class JoinSide:
    """One input of a join: its alias, whether it is a TABLE, and its decoding plan."""

    alias: str
    pre: StatelessPlan
    is_table: bool
    key_columns: tuple[str, ...] = ()  # a TABLE's primary key columns, renamed
    window: WindowInfo | None = None  # a windowed source's: its ``__jk`` holds the key and window (windowed_key_sql)

    @property
    def scan(self) -> Scan:
        return self.pre.scan

    @property
    def value_columns(self) -> tuple[OutputColumn, ...]:
        """The side's renamed columns (everything but the join key)."""
        return tuple(c for c in self.pre.columns if c.name != JOIN_KEY)


@dataclass(frozen=True)
class TableLookup:
    """A further join of a multi-way join, whose left input is the joined row so far: a table the
    row looks up, or — with ``within`` — a stream joined in a window (a stream-stream join of its
    own: its own window stores, WITHIN and GRACE PERIOD). ``side``: the joined source; ``kind``:
    the join kind (a table after a stream: INNER or LEFT; in a chain of tables, or a stream: any
    kind); ``probe``: the SQL over the joined row so far (earlier sources' renamed columns,
    ``__jk``) of the key the source's ``__jk`` (a table's primary key) must equal."""

    side: JoinSide
    kind: str
    probe: str
    within: Within | None = None

    def __post_init__(self) -> None:
        if (self.within is None) != self.side.is_table:
            what = "a table with" if self.side.is_table else "a stream without"
            raise PlanError(f"the join of {self.side.alias} is of {what} a WITHIN window")

    @property
    def is_window_join(self) -> bool:
        """Whether this is a stream-stream join (the joined source is a stream)."""
        return self.within is not None


@dataclass(frozen=True)
class JoinPlan:
    """left ⋈ right [⋈ chain…] → WHERE → projection → sink.

    ``kind``: INNER, LEFT or FULL (RIGHT is planned as LEFT with the sides swapped, but for the first
    join of a chain of tables, whose later joins read the first join's result).
    ``within``: the window of a stream-stream join. ``chain``: the further sources of a multi-way
    join, joined in order after ``right`` as in ksqlDB's left-deep n-way joins (((a ⋈ b) ⋈ c) …):
    after a stream, tables looked up and streams joined in their own windows; after a table, the
    tables of a chain of tables on one key. ``columns`` and ``where`` read the joined row: every
    side's columns and ``__jk`` (the last join's key)."""

    left: JoinSide
    right: JoinSide
    kind: str
    columns: tuple[OutputColumn, ...]
    key_type: SqlType
    where: str | None = None
    where_expression: str | None = None  # ``where`` as bound ksqlDB text (over the renamed columns)
    within: Within | None = None
    sink: Sink | None = None
    emits_table: bool = False
    limit: int | None = None
    foreign_key: bool = False  # table-table on left.expr = right.pk: keyed by the left table's key
    on_keys: bool = False  # both sides join on their key: ksqlDB reads them without repartitioning
    chain: tuple[TableLookup, ...] = ()
    window: WindowInfo | None = None  # windowed sources: the result's key window (the left one's)

    @property
    def sides(self) -> tuple[JoinSide, ...]:
        """Every input: left, right, then the chain's tables (a side's number is its place here)."""
        return (self.left, self.right, *(t.side for t in self.chain))

    @property
    def lookups(self) -> tuple[TableLookup, ...]:
        """The joins the left input's rows go through, in order: a stream-table join's right table
        (by the stream's ``__jk``), then the chain's tables and streams; after a stream-stream join,
        the chain's. Side ``i`` of :attr:`sides` is lookup ``i - (len(sides) - len(lookups))``."""
        if self.within is not None:
            return self.chain
        return (TableLookup(self.right, self.kind, quote(JOIN_KEY)), *self.chain)

    @property
    def windowed_chain(self) -> bool:
        """Whether a join after the first is a stream-stream join."""
        return any(step.is_window_join for step in self.chain)

    @property
    def scan(self) -> Scan:
        """The left source's scan (its formats are the result's defaults, as in ksqlDB)."""
        return self.left.scan

    @property
    def schema(self) -> LogicalSchema:
        return LogicalSchema(tuple(c.column() for c in self.columns))

    @property
    def grace_ms(self) -> int:
        if self.within is None or self.within.grace_ms is None:
            return DEFAULT_JOIN_GRACE_MS
        return self.within.grace_ms

    @property
    def window_bounds_sql(self) -> tuple[str, str] | None:
        """The SQL over the joined row of the result key's ``WINDOWSTART`` and ``WINDOWEND`` (None
        unless windowed): the join key's bounds; a time window's end is its start plus the size of
        the result's window, as ksqlDB's time-windowed keys hold only the start."""
        if self.window is None:
            return None
        start = _key_field_sql("WINDOWSTART")
        if self.window.kind == "SESSION":
            return start, _key_field_sql("WINDOWEND")
        return start, f"({start} + {self.window.size_ms})"

    @property
    def row_key(self) -> tuple[str, SqlType]:
        """The SQL over the joined row naming a result row (a TABLE's changes replace the row of
        it), and its type: the key column, with windowed keys the join key (key and window), with
        several key columns (a foreign-key join's left table's) a STRUCT of them."""
        if self.window is not None:
            return quote(JOIN_KEY), self.key_type
        keys = [c for c in self.columns if c.role == "KEY"]
        if len(keys) == 1:
            return keys[0].sql, keys[0].type
        packed = ", ".join(f"{quote(c.name)} := {c.sql}" for c in keys)
        return f"struct_pack({packed})", SqlType.struct([(c.name, c.type) for c in keys])

    @property
    def has_grace(self) -> bool:
        """Whether the WITHIN clause names a GRACE PERIOD (null-padded rows wait for the window)."""
        return self.within is not None and self.within.grace_ms is not None


def check_copartitioned(plan: JoinPlan, partitions: Callable[[str], int]) -> None:
    """ksqlDB joins sources on their keys only if their topics have as many partitions (a join on
    an expression repartitions, and a foreign-key join needs no co-partitioning). In a multi-way join,
    each join's left input (named by its first source) has the partitions of the source joined last."""
    if not plan.on_keys or plan.foreign_key:
        return
    first = plan.left.scan.source
    counts = [partitions(side.scan.topic) for side in plan.sides]
    for side, (left, right) in zip(plan.sides[1:], itertools.pairwise(counts), strict=True):
        if left != right:
            name = side.scan.source
            raise BindError(f"Can't join `{first}` with `{name}` since the number of partitions don't match. "
                            f"`{first}` partitions = {left}; `{name}` partitions = {right}. Please repartition "
                            "either one so that the number of partitions match.")


@dataclass(frozen=True)
class JoinAggregatePlan(AggregatePlan):
    """A GROUP BY over a join: the aggregate folds the joined rows of ``join`` (its ``pre`` reads
    the joined row's columns, ``ALIAS_COLUMN``, instead of decoding a topic)."""

    join: JoinPlan | None = None


def _plan_join_aggregate(query: Query, scope: _JoinScope, joined: Scope, join: JoinPlan,
                         con: duckdb.DuckDBPyConnection, scan_of: object, sink: Sink | None,
                         params: Mapping[str, object] | None, candidates: Sequence[str]) -> JoinAggregatePlan:
    """The aggregate of a join's rows: the query's names rewritten to the joined row's columns
    (``candidates``: the columns the join's key may be projected as)."""
    if join.window is not None and not (join.left.is_table and join.right.is_table):  # a table's GROUP BY re-keys
        _check_windowed_group_by(query, scope, candidates)
    select = query.select.copy()
    select.set("joins", None)
    aliases = AliasGenerator(c.name for s in scope.sources for c in s.source.schema.columns)
    items = []
    for item in select.expressions:
        node = item.this if isinstance(item, exp.Alias) else item
        if _star_qualifier(item) is not None:
            items.append(item)
            continue
        rewritten = scope.rewrite(node)
        name = _item_name(item, node, rewritten, aliases, scope)
        items.append(exp.alias_(rewritten, name, quoted=True))
    select.set("expressions", items)
    group = select.args.get("group")
    if group is not None:
        group.set("expressions", [scope.rewrite(n) for n in group.expressions])
    for clause in ("where", "having"):
        if select.args.get(clause) is not None:
            select.args[clause].set("this", scope.rewrite(select.args[clause].this))
    rows = _joined_rows(join, joined)
    planned = plan_aggregate(replace(query, select=select), rows, joined, con,
                             scan=scan_of(rows), sink=sink, params=params)  # type: ignore[operator]
    return JoinAggregatePlan(**{f.name: getattr(planned, f.name) for f in fields(planned)}, join=join)


def _joined_rows(join: JoinPlan, joined: Scope) -> Source:
    """The joined rows as the source an aggregate folds: a STREAM of them, or — for a join of tables —
    the changes of the TABLE the join is, keyed by its result key (``__jk``, or in a foreign-key join
    of two tables the left table's key columns), so that the aggregate retracts a key's previous row
    as it adds the new."""
    is_table = join.left.is_table and join.right.is_table
    by_left_key = join.foreign_key and not join.chain
    keys = set(join.left.key_columns) if by_left_key else set()
    columns = [Column(c.name, c.type, "KEY" if c.name in keys else "VALUE")
               for c in joined.columns if c.sql != quote(JOIN_KEY)]
    if is_table and not by_left_key:
        columns.append(Column(JOIN_KEY, join.key_type, "KEY"))
    left = join.left.scan
    return Source(name=f"{join.left.alias}_{join.right.alias}_JOIN", kind="TABLE" if is_table else "STREAM",
                  schema=LogicalSchema(tuple(columns)), topic=left.topic, key_format=left.key_format,
                  value_format="JSON")


def is_join_query(query: Query) -> bool:
    """Whether ``query`` joins sources."""
    return bool(query.select.args.get("joins"))


def join_sources(query: Query) -> tuple[str, ...]:
    """The names of the sources ``query`` reads, FROM first."""
    select = query.select
    from_ = select.args.get("from") or select.args.get("from_")
    tables = [from_.this if from_ is not None else None, *(j.this for j in select.args.get("joins") or [])]
    return tuple(t.name for t in tables if isinstance(t, exp.Table))


def join_produces_table(catalog: Catalog, query: Query) -> bool:
    """A join of tables produces a TABLE; any join with a stream, a STREAM."""
    return all(catalog.get(name).is_table for name in join_sources(query))


@dataclass(frozen=True)
class _Source:
    alias: str
    source: Source


def plan_join(query: Query, catalog: Catalog, con: duckdb.DuckDBPyConnection, *, scan_of: object,
              sink: Sink | None, params: Mapping[str, object] | None = None) -> JoinPlan | JoinAggregatePlan:
    """Plan the joining ``query`` (``scan_of``: the planner's Source → Scan function)."""
    select = query.select
    joins = [_unwrapped_on(j) for j in select.args["joins"]]
    from_ = select.args.get("from") or select.args.get("from_")
    if from_ is None:
        raise BindError("a query needs a FROM clause")
    sources = [_source(catalog, from_), *(_source(catalog, j) for j in joins)]
    if query.partition_by and all(s.source.is_table for s in sources):
        names = " and ".join(s.source.name for s in sources)
        raise BindError(f"PARTITION BY is only supported on streams, and the join of {names} is a table. "
                        "Use GROUP BY to re-key a table.")
    if len(joins) > 1:
        return _plan_chain(query, sources, joins, con, scan_of=scan_of, sink=sink, params=params)
    join = joins[0]
    left, right = sources
    if left.source.name == right.source.name:
        raise BindError(f"Can not join '{left.source.name}' to '{right.source.name}': self joins are not yet "
                        "supported.")
    kind = _kind(join)
    within: Within | None = join.meta.get("within")
    _check_order(left, right, kind, within)
    _check_formats([left, right])
    _check_windows(left, right)
    window = left.source.window
    if window is not None:
        _check_windowed_query(query, left.source)
    scope = _JoinScope([left, right], _pseudo_columns(query))
    on, operands, owners = _equality(scope, join)
    if owners[0] == owners[1]:
        raise BindError(f"Each side of the join comparison must contain references from exactly one source: "
                        f"{on.sql()}")
    if owners[0] != left.alias:
        operands.reverse()
    sides = [_side(s, operand, scope, con, scan_of, params) for s, operand in zip((left, right), operands,
                                                                                   strict=True)]
    key_types = [_key_type(s) for s in sides]
    if key_types[0] != key_types[1]:
        raise BindError(f"Invalid join condition: types don't match. Got {on.this.sql()}{{{key_types[0]}}} = "
                        f"{on.expression.sql()}{{{key_types[1]}}}.")
    foreign_key = left.source.is_table and right.source.is_table and _is_foreign_key(sides, operands, on, kind)
    if window is not None:
        _check_windowed_rekeying([left, right], sides, operands, foreign_key)
    if right.source.is_table and not left.source.is_table and not _is_key(sides[1], operands[1]):
        raise BindError(f"Cannot repartition a TABLE source. If this is a join, make sure that the criteria uses "
                        f"the TABLE's key column {' '.join(sides[1].key_columns)} instead of "
                        f"{operands[1].sql()}")
    if kind == "FULL" or not any(isinstance(o, exp.Column) for o in operands):
        scope.synthetic = _synthetic_name([left.source, right.source])
    candidates = [] if scope.synthetic else [o.name for o in operands if isinstance(o, exp.Column)]
    key_sql = quote(JOIN_KEY) if window is None else _key_field_sql(WINDOWED_KEY)
    result_key = _JoinKey(candidates, key_types[0], key_sql)
    if foreign_key:  # the result is keyed by the left table's primary key
        result_key = _left_key(sides[0], left)
    joined = scope.joined_scope(key_types[0], key_sql)
    if is_aggregate_query(query):
        join_plan = JoinPlan(left=sides[0], right=sides[1], kind=kind, columns=(), key_type=_join_key_type(sides[0]),
                             within=within, foreign_key=foreign_key, window=window)
        if kind == "RIGHT":
            join_plan = _swapped(join_plan)
        return _plan_join_aggregate(query, scope, joined, join_plan, con, scan_of, sink, params, candidates)
    compiler = ExpressionCompiler(joined, TypeProbe(con, joined), params=params)
    where, where_text = _where(select, scope, compiler)
    columns = _result_columns(query, scope, compiler, con, sink, result_key)
    plan = JoinPlan(left=sides[0], right=sides[1], kind=kind, columns=tuple(columns), key_type=_join_key_type(sides[0]),
                    where=where, where_expression=where_text, within=within, sink=sink,
                    emits_table=left.source.is_table and right.source.is_table,
                    limit=query.limit, foreign_key=foreign_key,
                    on_keys=all(_is_key(side, o) for side, o in zip(sides, operands, strict=True)), window=window)
    return _swapped(plan) if kind == "RIGHT" else plan


# -- multi-way joins ----------------------------------------------------------------------------


def _plan_chain(query: Query, sources: list[_Source], joins: list[exp.Join], con: duckdb.DuckDBPyConnection, *,
                scan_of: object, sink: Sink | None,
                params: Mapping[str, object] | None) -> JoinPlan | JoinAggregatePlan:
    """A multi-way join starting with a stream, ``s JOIN x1 [WITHIN …] ON … [LEFT|…] JOIN x2 [WITHIN …]
    ON …``, left-deep as in ksqlDB: each join's left input is the result of the joins before it, a
    stream. A table is looked up by its primary key, equal to an expression of a source joined
    before it (INNER or LEFT); a stream is joined in its own window (WITHIN, any kind) on an
    expression of it equal to an expression of one source joined before it. As in ksqlDB (nested
    joins, each repartitioned on its ON expression), the result is keyed by the last ON's expression
    (a synthetic key if the last join is a FULL OUTER one)."""
    if sources[0].source.is_table:
        return _plan_table_chain(query, sources, joins, con, scan_of=scan_of, sink=sink, params=params)
    _check_chain_sources(sources, joins)
    scope = _JoinScope(sources, _pseudo_columns(query))
    pairs = [_chain_operands(scope, join, sources[:i], table)
             for i, (table, join) in enumerate(zip(sources[1:], joins, strict=True), start=1)]
    stream = _side(sources[0], pairs[0][0], scope, con, scan_of, params)
    others = [_side(t, key, scope, con, scan_of, params) for t, (_, key) in zip(sources[1:], pairs, strict=True)]
    window = sources[0].source.window
    if window is not None:
        _check_windowed_query(query, sources[0].source)
        _check_windowed_chain(scope, sources, [stream, *others], joins, pairs)
    probes, key_type = _chain_probes(scope, joins, pairs, [stream, *others], con, params)
    kinds = [_kind(j) for j in joins]
    keys = {_JoinScope.renamed(s, c.name) for s in sources if len(s.source.schema.key) == 1
            for c in s.source.schema.key}
    plan = JoinPlan(left=stream, right=others[0], kind=kinds[0], columns=(), key_type=_join_key_type(others[-1]),
                    sink=sink, limit=query.limit, within=joins[0].meta.get("within"), window=window,
                    on_keys=all(isinstance(o, exp.Column) and o.name in keys for pair in pairs for o in pair),
                    chain=tuple(TableLookup(side, kind, probe, join.meta.get("within"))
                                for side, kind, probe, join in zip(others[1:], kinds[1:], probes[1:], joins[1:],
                                                                   strict=True)))
    if kinds[0] == "RIGHT":
        plan = _swapped(plan)
    candidates = _key_candidates(pairs, kinds)
    if not candidates:  # a FULL OUTER last join, or one on expressions equal to no column
        scope.synthetic = _synthetic_name([s.source for s in sources])
    key_sql = quote(JOIN_KEY) if window is None else _key_field_sql(WINDOWED_KEY)
    joined = scope.joined_scope(key_type, key_sql)
    if is_aggregate_query(query):
        return _plan_join_aggregate(query, scope, joined, plan, con, scan_of, sink, params, candidates)
    compiler = ExpressionCompiler(joined, TypeProbe(con, joined), params=params)
    where, where_text = _where(query.select, scope, compiler)
    result_key = _JoinKey(candidates, key_type, key_sql)
    columns = _result_columns(query, scope, compiler, con, sink, result_key)
    return replace(plan, columns=tuple(columns), where=where, where_expression=where_text)


def _chain_probes(scope: _JoinScope, joins: list[exp.Join], pairs: list[tuple[exp.Expression, exp.Expression]],
                  sides: list[JoinSide], con: duckdb.DuckDBPyConnection,
                  params: Mapping[str, object] | None) -> tuple[list[str], SqlType]:
    """The SQL over the joined row so far of each join's key — the stream's ``__jk`` for the first,
    then each ON's probe (:func:`_probe_sql`) — each of the type of the joined source's key (ksqlDB's
    message otherwise); and the type of the last one, the result's key."""
    probing = scope.joined_scope(BIGINT)
    prober = ExpressionCompiler(probing, TypeProbe(con, probing), params=params)
    compiled = [prober.compile(probe) for probe, _ in pairs[1:]]
    probe_types = [_key_type(sides[0]), *(prober.type_of(c) for c in compiled)]
    for join, side, probe_type in zip(joins, sides[1:], probe_types, strict=True):
        if probe_type != _key_type(side):
            on = join.args["on"]
            raise BindError(f"Invalid join condition: types don't match. Got {on.this.sql()}{{{probe_type}}} = "
                            f"{on.expression.sql()}{{{_key_type(side)}}}.")
    probes = [_probe_sql(scope, c.sql("duckdb"), t, join, probe)
              for c, t, join, (probe, _) in zip(compiled, probe_types[1:], joins[1:], pairs[1:], strict=True)]
    return [quote(JOIN_KEY), *probes], probe_types[-1]


def _probe_sql(scope: _JoinScope, probe_sql: str, probe_type: SqlType, join: exp.Join,
               probe: exp.Expression) -> str:
    """The SQL of a later join's key over the joined row so far: ``probe_sql``, or — if the source it
    reads is windowed — its windowed key (:func:`windowed_key_sql`) with that source's window."""
    owner = scope.source_of(scope.owner(probe, join.args["on"]))
    if owner.source.window is None:
        return probe_sql
    return windowed_key_sql(probe_sql, probe_type, owner.source.window, prefix=f"{owner.alias}_")[0]


def _check_windowed_chain(scope: _JoinScope, sources: list[_Source], sides: list[JoinSide], joins: list[exp.Join],
                          pairs: list[tuple[exp.Expression, exp.Expression]]) -> None:
    """Each join of a chain of windowed sources as ksqlDB's rules for two (:func:`_check_windowed_rekeying`):
    its left operand's source, and the source it joins, each on its whole key and in one key format."""
    side_of = {src.alias: side for src, side in zip(sources, sides, strict=True)}
    for source, join, (probe, key) in zip(sources[1:], joins, pairs, strict=True):
        owner = scope.source_of(scope.owner(probe, join.args["on"]))
        _check_windowed_rekeying([owner, source], [side_of[owner.alias], side_of[source.alias]], [probe, key],
                                 foreign_key=False)


def _plan_table_chain(query: Query, sources: list[_Source], joins: list[exp.Join], con: duckdb.DuckDBPyConnection,
                      *, scan_of: object, sink: Sink | None,
                      params: Mapping[str, object] | None) -> JoinPlan | JoinAggregatePlan:
    """A chain of TABLEs joined on their primary keys, ``t0 JOIN t1 ON t0.k = t1.k [LEFT] JOIN t2 ON
    t1.k = t2.k …``: every table is keyed alike, so the result is a TABLE of the same key, each row
    the nested join of the tables' rows of its key (ksqlDB's nested table-table joins). The first
    join may be a foreign-key join, ``t0 JOIN t1 ON e(t0) = t1.k``, keyed by t0's key as the rest."""
    _check_table_chain(sources, joins)
    scope = _JoinScope(sources, _pseudo_columns(query))
    pairs = [_chain_operands(scope, join, sources[:i], table)
             for i, (table, join) in enumerate(zip(sources[1:], joins, strict=True), start=1)]
    kinds = [_kind(j) for j in joins]
    sides = [_side(s, operand, scope, con, scan_of, params)
             for s, operand in zip(sources, [pairs[0][0], *(key for _, key in pairs)], strict=True)]
    foreign_key = _is_foreign_key(sides[:2], list(pairs[0]), joins[0].args["on"], kinds[0])
    window = sources[0].source.window
    if window is not None:
        if foreign_key:
            raise BindError("Foreign-key table-table joins are not supported on windowed tables.")
        _check_windowed_query(query, sources[0].source)
        _check_windowed_chain(scope, sources, sides, joins, pairs)
    _check_primary_key_chain(sources, joins, pairs, foreign_key)
    key_type = next(c.type for c in sides[0].pre.columns if c.name in sides[0].key_columns)
    probe_types = [_key_type(sides[0]), *(key_type for _ in joins[1:])]  # a foreign key, then the key
    for join, side, probe_type in zip(joins, sides[1:], probe_types, strict=True):
        if _key_type(side) != probe_type:
            on = join.args["on"]
            raise BindError(f"Invalid join condition: types don't match. Got {on.this.sql()}{{{probe_type}}} = "
                            f"{on.expression.sql()}{{{_key_type(side)}}}.")
    if kinds[-1] == "FULL":
        scope.synthetic = _synthetic_name([s.source for s in sources])
    key_sql = quote(JOIN_KEY) if window is None else _key_field_sql(WINDOWED_KEY)
    joined = scope.joined_scope(key_type, key_sql)
    plan = JoinPlan(left=sides[0], right=sides[1], kind=kinds[0], columns=(),
                    key_type=key_type if window is None else _join_key_type(sides[0]),
                    sink=sink, limit=query.limit, on_keys=not foreign_key, foreign_key=foreign_key, window=window,
                    chain=tuple(TableLookup(side, kind, quote(JOIN_KEY))
                                for side, kind in zip(sides[2:], kinds[1:], strict=True)))
    candidates = _key_candidates(pairs, kinds)
    if is_aggregate_query(query):
        return _plan_join_aggregate(query, scope, joined, plan, con, scan_of, sink, params, candidates)
    compiler = ExpressionCompiler(joined, TypeProbe(con, joined), params=params)
    where, where_text = _where(query.select, scope, compiler)
    columns = _result_columns(query, scope, compiler, con, sink, _JoinKey(candidates, key_type, key_sql))
    return replace(plan, columns=tuple(columns), where=where, where_expression=where_text, emits_table=True)


def _swapped(plan: JoinPlan) -> JoinPlan:
    """A RIGHT join as the LEFT join of the swapped sides (the projection reads columns by name, so
    the order of the sides does not show); a stream-stream join's window bounds swap too (a record of
    the right stream matches left records ``after`` before it and ``before`` after it)."""
    within = plan.within
    if within is not None:
        within = replace(within, before_ms=within.after_ms, after_ms=within.before_ms)
    return replace(plan, left=plan.right, right=plan.left, kind="LEFT", within=within)


def _check_table_chain(sources: list[_Source], joins: list[exp.Join]) -> None:
    """A chain of tables: joins of unwindowed tables (of any kind), each source once."""
    _check_distinct(sources)
    for table, join in zip(sources[1:], joins, strict=True):
        _check_order(sources[0], table, _kind(join), join.meta.get("within"))
        _check_windows(sources[0], table)
    _check_formats(sources)


def _check_primary_key_chain(sources: list[_Source], joins: list[exp.Join],
                             pairs: list[tuple[exp.Expression, exp.Expression]], foreign_key: bool) -> None:
    """Each ON of a chain of tables must compare the table's primary key with the primary key of a
    table joined before it: as in ksqlDB, every table of the chain is then keyed alike and each join
    matches the rows of one key, whatever the kinds of the joins before (a key column of a table
    absent from an outer join's row still names the row's key). A first foreign-key join keeps the
    first table's key (the second table's key is not the result's)."""
    keys = {_JoinScope.renamed(sources[0], c.name) for c in sources[0].source.schema.key}
    if len(keys) != 1:
        raise UnsupportedError(f"joins of a table with {len(keys)} key columns ({sources[0].source.name}) in a "
                               "chain of tables are not supported yet")
    for i, (join, (probe, key)) in enumerate(zip(joins, pairs, strict=True)):
        if i == 0 and foreign_key:
            continue
        on = join.args["on"]
        if foreign_key and isinstance(probe, exp.Column) and probe.name == pairs[0][1].name:
            raise UnsupportedError(f"{on.sql()}: after a foreign-key join, a join on the key of its right table "
                                   "is not supported (ksqlDB would join on the left table's key)")
        if not (isinstance(probe, exp.Column) and probe.name in keys):
            raise BindError("Invalid join condition: foreign-key table-table joins are not supported as part of "
                            f"n-way joins. Got {on.this.sql()} = {on.expression.sql()}.")
        keys.add(key.name)


def _check_distinct(sources: list[_Source]) -> None:
    """Each source of a join once, each with its own alias."""
    names = [s.source.name for s in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise BindError(f"Can not join '{name}' to '{name}': self joins are not yet supported.")
    aliases = [s.alias for s in sources]
    if len(set(aliases)) != len(aliases):
        raise BindError(f"Each source of a join needs its own alias: {', '.join(aliases)}")


def _check_chain_sources(sources: list[_Source], joins: list[exp.Join]) -> None:
    """A multi-way join starting with a stream: each source once, each join's left input (the
    joins before it) a stream, so each joined table is INNER or LEFT without WITHIN and each joined
    stream has a WITHIN (ksqlDB's rules and messages); a chain of tables is planned apart."""
    _check_distinct(sources)
    stream = sources[0]
    for source, join in zip(sources[1:], joins, strict=True):
        _check_order(stream, source, _kind(join), join.meta.get("within"))
        _check_windows(stream, source)
    _check_formats(sources)


def _unwrapped_on(join: exp.Join) -> exp.Join:
    """``join`` with its ON condition out of its parentheses: ``ON (a = b)`` is ``ON a = b``."""
    on = join.args.get("on")
    if not isinstance(on, exp.Paren):
        return join
    join = join.copy()
    while isinstance(on, exp.Paren):
        on = on.this
    join.set("on", on.copy())
    return join


def _equality(scope: _JoinScope, join: exp.Join) -> tuple[exp.EQ, list[exp.Expression], list[str]]:
    """A join's ON ``a = b``: the comparison, its two operands rewritten to renamed columns, and the
    alias of the source each reads (a BindError for any other kind of condition)."""
    on = join.args.get("on")
    if not isinstance(on, exp.EQ):
        raise BindError(f"Unsupported join expression: {on.sql() if on is not None else '(none)'}. "
                        "Only equality joins between a column of each source are supported.")
    operands = [scope.rewrite(on.this), scope.rewrite(on.expression)]
    return on, operands, [scope.owner(o, on) for o in operands]


def _chain_operands(scope: _JoinScope, join: exp.Join, earlier: list[_Source],
                    table: _Source) -> tuple[exp.Expression, exp.Expression]:
    """The (probe, table key) operands of one ON of a multi-way join, rewritten to renamed columns:
    the probe reads one earlier source, the other operand is the table's primary key (or, for the
    stream of a first stream-stream join, any expression of it)."""
    on, operands, owners = _equality(scope, join)
    if owners[1] != table.alias:
        operands.reverse()
        owners.reverse()
    if owners[1] != table.alias or owners[0] not in {s.alias for s in earlier}:
        raise BindError(f"Invalid join condition {on.sql()}: a JOIN of {table.source.name} must compare a column "
                        f"of {table.alias} with an expression of one source joined before it")
    key_columns = tuple(scope.renamed(table, c.name) for c in table.source.schema.key)
    key = operands[1]
    if table.source.is_table and not (isinstance(key, exp.Column) and key_columns == (key.name,)):
        raise BindError(f"Cannot repartition a TABLE source. If this is a join, make sure that the criteria uses "
                        f"the TABLE's key column {' '.join(key_columns)} instead of {key.sql()}")
    return operands[0], key


def _join_key_type(side: JoinSide) -> SqlType:
    """The type of the side's ``__jk`` (with a windowed key, the STRUCT of key and window)."""
    return next(c.type for c in side.pre.columns if c.name == JOIN_KEY)


def _key_type(side: JoinSide) -> SqlType:
    """The type of the side's join key (without its window)."""
    key_type = _join_key_type(side)
    return key_type.fields[0][1] if side.window is not None else key_type


def _key_candidates(pairs: list[tuple[exp.Expression, exp.Expression]], kinds: list[str]) -> list[str]:
    """The columns a multi-way join's result key may be projected as (ksqlDB's viable key columns):
    the last ON's columns, and the columns of earlier ONs on the same key (the later ON's probe is an
    expression already equal to the key). As in ksqlDB, no column equals the key of a FULL join
    (either side may be missing)."""
    group: list[exp.Expression] = []
    for (probe, key), kind in zip(pairs, kinds, strict=True):
        group = [*group, key] if probe in group else [probe, key]
        if kind == "FULL":
            group = []
    return [o.name for o in group if isinstance(o, exp.Column)]


# -- sources and join kind ----------------------------------------------------------------------


def _source(catalog: Catalog, node: exp.Expression) -> _Source:
    table = node.this
    if not isinstance(table, exp.Table):
        raise UnsupportedError(f"JOIN {table.sql()}: only a stream or table name can be joined")
    source = catalog.get(table.name)
    alias = table.alias or source.name
    return _Source(alias.upper() if not _quoted_alias(table) else alias, source)


def _quoted_alias(table: exp.Table) -> bool:
    alias = table.args.get("alias")
    return bool(alias is not None and isinstance(alias.this, exp.Identifier) and alias.this.quoted)


def _kind(join: exp.Join) -> str:
    side = (join.side or "").upper()
    if side in ("LEFT", "RIGHT"):
        return side
    if side == "FULL" or (join.kind or "").upper() == "OUTER":
        return "FULL"
    return "INNER"


def _check_order(left: _Source, right: _Source, kind: str, within: Within | None) -> None:
    lt, rt = left.source.is_table, right.source.is_table
    if lt and not rt:
        raise BindError(f"Invalid join order: table-stream joins are not supported; only stream-table joins. "
                        f"Got {left.source.name} {kind} JOIN {right.source.name}.")
    if not lt and rt and kind in ("FULL", "RIGHT"):
        word = "Full outer" if kind == "FULL" else "Right"
        raise BindError(f"{word} joins between streams and tables are not supported.")
    if not lt and not rt and within is None:
        raise BindError("Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn "
                        "about how to specify a WITHIN clause with a stream-stream join, please visit: "
                        "https://docs.confluent.io/current/ksql/docs/syntax-reference.html"
                        "#create-stream-as-select")
    if (lt or rt) and within is not None:
        raise BindError("A window definition was provided for a Stream-Table join. These joins are not "
                        "windowed. Please drop the window definition (ie, the WITHIN clause) and try to "
                        "re-execute your join.")


def _is_key(side: JoinSide, operand: exp.Expression) -> bool:
    """Whether ``operand`` is the side's whole key (its one key column)."""
    return isinstance(operand, exp.Column) and side.key_columns == (operand.name,)


def _check_formats(sources: list[_Source]) -> None:
    kafka = [s.source.name for s in sources if s.source.value_format.upper() == "KAFKA"]
    if kafka:
        raise BindError(f"Source(s) {', '.join(kafka)} are using the 'KAFKA' value format. This format does not yet "
                        "support JOIN.")


def _check_windows(left: _Source, right: _Source) -> None:
    """ksqlDB joins a windowed source only to a windowed one, a session-windowed one only to a
    session-windowed one (the keys' formats must then also match: :func:`_check_windowed_rekeying`)."""
    windows = [s.source.window for s in (left, right)]
    if windows[0] is None and windows[1] is None:
        return
    if windows[0] is None or windows[1] is None:
        windowed, plain = (left, right) if windows[0] is not None else (right, left)
        assert windowed.source.window is not None
        raise BindError(f"Can not join windowed source to non-windowed source.\n`{windowed.source.name}` is "
                        f"{windowed.source.window.kind} windowed\n`{plain.source.name}` is not windowed")
    kinds = [w.kind for w in windows if w is not None]
    if ("SESSION" in kinds) != (kinds[0] == kinds[1] == "SESSION"):
        raise BindError(f"Incompatible windowed sources.\nLeft source: {kinds[0]}\nRight source: {kinds[1]}\n"
                        "Session windowed sources can only be joined to other session windowed sources, and may "
                        "still not result in expected behaviour as session bounds must be an exact match for the "
                        "join to work\nHopping and tumbling windowed sources can only be joined to other hopping "
                        "and tumbling windowed sources")


def _check_windowed_query(query: Query, left: Source) -> None:
    """What a join of windowed sources cannot do: re-key its result (ksqlDB's ``selectKey`` refuses
    a windowed stream), or window its result by a time window of no size (its keys' window ends are
    their starts plus the size of the ``left`` source's). A GROUP BY re-keys it: see
    :func:`_check_windowed_group_by`."""
    assert left.window is not None
    if left.window.kind != "SESSION" and left.window.size_ms is None:
        raise BindError(f"{left.name} is {left.window.kind} windowed but declares no WINDOW_SIZE: a join of windowed "
                        "sources needs the size of its left source's windows")
    if query.partition_by:
        raise BindError(_REKEY_WINDOWED)


def _check_windowed_group_by(query: Query, scope: _JoinScope, candidates: Sequence[str]) -> None:
    """ksqlDB groups the rows of a join of windowed sources only by re-keying them: a GROUP BY of the
    join's key column alone fails (``SchemaKStream.groupByKey``: "Group by on windowed should always
    require rekey"). That column is the synthetic key, else the first of the ``candidates`` (the
    viable key columns) that the projection selects, else the first (``LogicalPlanner.buildJoinKey``)."""
    group = query.select.args.get("group")
    expressions = group.expressions if group is not None else []
    if len(expressions) != 1:
        return
    grouped = scope.rewrite(expressions[0])
    selected = {scope.rewrite(item.this if isinstance(item, exp.Alias) else item) for item in query.select.expressions
                if _star_qualifier(item) is None}
    key = scope.synthetic or next((c for c in candidates if exp.column(c, quoted=True) in selected),
                                  candidates[0] if candidates else None)
    if isinstance(grouped, exp.Column) and grouped.name == key:
        raise BindError("Group by on windowed should always require rekey")


def _check_windowed_rekeying(sources: list[_Source], sides: list[JoinSide], operands: list[exp.Expression],
                             foreign_key: bool) -> None:
    """ksqlDB never re-keys a windowed source for a join (``SchemaKStream.selectKey``): each stream
    must join on its whole key, in the left source's key format and window. A stream whose key
    format registers schemas is re-serialized into the left one's, keeping its key and window
    start (so a tumbling stream may join a hopping one); a windowed table never is. A table
    joined on another column is refused by the table rules that follow."""
    if foreign_key:
        raise BindError("Foreign-key table-table joins are not supported on windowed tables.")
    join_format = _windowed_key_format(sources[0].source)
    forced = join_format[0] in _SCHEMA_KEY_FORMATS
    for src, side, operand in zip(sources, sides, operands, strict=True):
        rekeyed = not _is_key(side, operand)
        changed = _windowed_key_format(src.source) != join_format
        if not src.source.is_table and (rekeyed or (changed and not forced)):
            raise BindError(_REKEY_WINDOWED)
        if src.source.is_table and not rekeyed and (changed or forced):
            raise BindError(_REKEY_WINDOWED + (" As a result, ksqlDB does not support joins on windowed sources with "
                                               "Schema-Registry-enabled key formats (AVRO, JSON_SR, PROTOBUF) at this "
                                               "time. Please repartition your sources to use a different key format "
                                               "before performing the join." if forced else ""))


def _windowed_key_format(source: Source) -> tuple[str, str, int | None]:
    """What ksqlDB compares of two windowed key formats: the format, the window type and size."""
    assert source.window is not None
    return source.key_format.upper(), source.window.kind, source.window.size_ms


def _is_foreign_key(sides: list[JoinSide], operands: list[exp.Expression], on: exp.EQ, kind: str) -> bool:
    """Whether a table-table join is a foreign-key join: the right table's primary key equals an
    expression of the left table other than its primary key (INNER and LEFT joins only)."""
    if not _is_key(sides[1], operands[1]):
        raise BindError(f"Invalid join condition: table-table joins require to join on the primary key of "
                        f"the right input table. Got {on.this.sql()} = {on.expression.sql()}.")
    if _is_key(sides[0], operands[0]):
        return False
    if kind not in ("INNER", "LEFT"):
        raise BindError(f"Invalid join type: {kind} OUTER join not supported for foreign key table-table join. "
                        "Got " + on.sql() + ".")
    return True


def _left_key(side: JoinSide, src: _Source) -> _JoinKey:
    """The key of a foreign-key join's result: the left table's primary key columns, each projected."""
    types = {c.name: c.type for c in side.pre.columns}
    columns = tuple(OutputColumn(name, types[name], quote(name), "KEY") for name in side.key_columns)
    key = columns[0]
    return _JoinKey([key.name], key.type, key.sql, foreign=columns, table=src.alias)


def _side(src: _Source, operand: exp.Expression, scope: _JoinScope, con: duckdb.DuckDBPyConnection,
          scan_of: object, params: Mapping[str, object] | None) -> JoinSide:
    """The decoding plan of one side: its renamed columns and its join key ``__jk``."""
    own = scope.own_scope(src)
    compiler = ExpressionCompiler(own, TypeProbe(con, own), params=params)
    compiled = compiler.compile(operand)
    key_type = compiler.type_of(compiled)
    if src.source.schema.key and not key_type:
        raise BindError(f"join key {operand.sql()} has no type")
    columns = [OutputColumn(scope.renamed(src, c.name), c.type, c.sql) for c in scope.carried(src)]
    key_sql, window = compiled.sql("duckdb"), src.source.window
    if window is not None:
        key_sql, key_type = windowed_key_sql(key_sql, key_type, window)
    columns.append(OutputColumn(JOIN_KEY, key_type, key_sql, expression=ksql_text(operand)))
    pre = StatelessPlan(scan=scan_of(src.source), columns=tuple(columns),  # type: ignore[operator]
                        emits_table=src.source.is_table)
    keys = tuple(scope.renamed(src, c.name) for c in src.source.schema.key)
    return JoinSide(src.alias, pre, src.source.is_table, keys, window)


# -- names --------------------------------------------------------------------------------------


class _JoinScope:
    """Resolves the names of a join: ``alias.column`` or an unambiguous ``column`` of one source,
    rewritten to the renamed column ``ALIAS_COLUMN``. ``pseudo``: the pseudo-columns the joined
    row carries for each source."""

    def __init__(self, sources: list[_Source], pseudo: tuple[str, ...] = ("ROWTIME",)) -> None:
        self.sources = sources
        self.pseudo = pseudo
        self._by_alias = {s.alias.upper(): s for s in sources}
        self._renamed: dict[str, _Source] = {}
        self.original: dict[str, str] = {}  # renamed column -> the source's column name
        self.synthetic: str | None = None  # the synthetic join key's name, if the join has one

    def source_of(self, alias: str) -> _Source:
        """The source of ``alias``."""
        return self._by_alias[alias.upper()]

    def is_unique(self, column: str) -> bool:
        """Whether only one source has a column named ``column``."""
        return sum(1 for s in self.sources if s.source.schema.find(column) is not None) == 1

    @staticmethod
    def renamed(src: _Source, column: str) -> str:
        return f"{src.alias}_{column}"

    def _columns(self, src: _Source) -> Scope:
        from nbstream.plan.planner import source_scope

        return source_scope(src.source)

    def own_scope(self, src: _Source) -> Scope:
        """The side's columns by their renamed names, read from its decoded relation."""
        return Scope([ScopeColumn(self.renamed(src, c.name), quote(c.name), c.type)
                      for c in self._columns(src).columns], source=src.source.name)

    def carried(self, src: _Source) -> list[ScopeColumn]:
        """The columns of ``src`` the joined row carries: its schema's, then its pseudo-columns
        (and a windowed source's window bounds)."""
        kept = {c.name for c in src.source.schema.columns} | set(self.pseudo)
        if src.source.window is not None:
            kept |= set(WINDOW_BOUNDS)
        return [c for c in self._columns(src).columns if c.name in kept]

    def joined_scope(self, key_type: SqlType, key_sql: str = quote(JOIN_KEY)) -> Scope:
        """The joined row's columns; the synthetic key, if any, is the join key (``key_sql``)."""
        cols = [ScopeColumn(self.renamed(s, c.name), quote(self.renamed(s, c.name)), c.type)
                for s in self.sources for c in self.carried(s)]
        if self.synthetic:
            cols.append(ScopeColumn(self.synthetic, key_sql, key_type))
        return Scope(cols)

    def row_schema(self, joined: Scope) -> LogicalSchema:
        """The joined row as ksqlDB's join schema lists it (what PARTITION BY re-keys): the synthetic
        key, if any, as the key column, then per source its value columns, pseudo-columns and key
        columns (``joined``: the joined row's scope, for the types)."""
        names = [self.synthetic] if self.synthetic else []
        for s in self.sources:
            schema = s.source.schema
            ordered = [c.name for c in schema.columns if c.role != "KEY"] + list(self.pseudo) + \
                [c.name for c in schema.key]
            names += [self.renamed(s, name) for name in ordered]
        return LogicalSchema(tuple(Column(n, joined.resolve(n).type, "KEY" if n == self.synthetic else "VALUE")
                                   for n in names))

    def resolve(self, column: exp.Column) -> tuple[_Source, str]:
        """The source and the column name a reference ``column`` reads."""
        qualifier = column.table
        if qualifier:
            src = self._by_alias.get(qualifier.upper())
            if src is None:
                raise UnknownNameError(f"Line: 1, Col: 1: '{qualifier}' is not a valid stream/table name or alias.")
            return src, self._columns(src).resolve(column.name).name
        found = []
        for src in self.sources:
            try:
                found.append((src, self._columns(src).resolve(column.name).name))
            except UnknownNameError:
                continue
        if not found:
            raise UnknownNameError(f"Column '{column.name}' cannot be resolved.")
        if len(found) > 1:
            names = " and ".join(f"{s.alias}.{n}" for s, n in found)
            raise BindError(f"Column '{column.name}' is ambiguous. Could be any of: {names}.")
        return found[0]

    def rewrite(self, node: exp.Expression) -> exp.Expression:
        """``node`` reading renamed columns (the synthetic key, if there is one, keeps its name)."""
        def replace(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column) and not isinstance(n.this, exp.Star):
                if self.synthetic and not n.table and n.name.upper() == self.synthetic:
                    return exp.column(self.synthetic, quoted=True)
                src, name = self.resolve(n)
                renamed = self.renamed(src, name)
                self._renamed[renamed] = src
                self.original[renamed] = name
                return exp.column(renamed, quoted=True)
            return n

        return node.copy().transform(replace)

    def owner(self, node: exp.Expression, on: exp.Expression) -> str:
        """The alias of the one source ``node`` (a rewritten join operand) reads."""
        owners = {self._renamed[c.name].alias for c in node.find_all(exp.Column) if c.name in self._renamed}
        if len(owners) != 1:
            raise BindError(f"Invalid comparison expression '{node.sql()}' in join '{on.sql()}'. Each side of the "
                            "join comparision must contain references from exactly one source.")
        return owners.pop()

    def star(self, qualifier: str | None) -> list[tuple[_Source, str]]:
        """The columns ``*`` (or ``alias.*``) selects, in order."""
        if qualifier is None:
            return [(s, name) for s in self.sources for name in _star_names(s.source)]
        src = self._by_alias.get(qualifier.upper())
        if src is None:
            raise UnknownNameError(f"'{qualifier}' is not a valid stream/table name or alias.")
        return [(src, name) for name in _star_names(src.source)]


def _star_names(source: Source) -> list[str]:
    """The columns ``*`` selects of one source of a join: its columns; a windowed source's window
    bounds after its key columns (ksqlDB lists them so, as values of the result)."""
    names = [c.name for c in source.schema.columns]
    if source.window is None:
        return names
    return [c.name for c in source.schema.key] + list(WINDOW_BOUNDS) + \
        [c.name for c in source.schema.columns if c.role != "KEY"]


def _pseudo_columns(query: Query) -> tuple[str, ...]:
    """The pseudo-columns a join carries for each source: ROWTIME, and ROWPARTITION and ROWOFFSET
    when the query may read them (PARTITION BY's ``SELECT *`` lists them, as in ksqlDB)."""
    offsets = {"ROWPARTITION", "ROWOFFSET"}
    if query.partition_by or any(c.name.upper() in offsets for c in query.select.find_all(exp.Column)):
        return PSEUDO_COLUMNS
    return ("ROWTIME",)


# -- WHERE and projection -----------------------------------------------------------------------


def _where(select: exp.Select, scope: _JoinScope, compiler: ExpressionCompiler) -> tuple[str | None, str | None]:
    """WHERE over the joined row as DuckDB SQL and as bound ksqlDB text (None, None without one)."""
    where = select.args.get("where")
    if where is None:
        return None, None
    rewritten = scope.rewrite(where.this)
    compiled = compiler.compile_filter(rewritten)
    if compiler.type_of(compiled).name not in ("BOOLEAN", "NULL"):
        raise BindError(f"WHERE must be a BOOLEAN expression: {where.this.sql()}")
    return compiled.sql("duckdb"), ksql_text(rewritten)


@dataclass(frozen=True)
class _JoinKey:
    """The key of a join's result: the columns it may be projected as, its type and its SQL — or, of
    a foreign-key join, ``foreign``: the left ``table``'s key columns, each a key column of the result."""

    candidates: list[str]
    type: SqlType
    sql: str = quote(JOIN_KEY)
    foreign: tuple[OutputColumn, ...] = ()
    table: str = ""

    def columns(self, chosen: str | None) -> dict[str, OutputColumn]:
        """The result's key columns by the joined row's column each projects: the foreign key's, or
        the ``chosen`` candidate (None: none was projected)."""
        if self.foreign:
            return {c.name: c for c in self.foreign}
        return {} if chosen is None else {chosen: OutputColumn(chosen, self.type, self.sql, "KEY")}

    def missing_error(self, missing: list[str], synthetic: str | None, sink_name: str | None) -> BindError:
        """ksqlDB's error for a projection without the result's key (``missing``: the key columns not
        projected, of a foreign-key join)."""
        if self.foreign:
            names = ", ".join(f"`{n.removeprefix(self.table + '_')}`" for n in missing)
            plural = "s" if len(missing) > 1 else ""
            return BindError(f"Primary key column{plural} missing in projection. For foreign-key table-table joins, "
                             "the projection must include all primary key columns from the left input table "
                             f"(`{self.table}`). Missing column{plural}: {names}.")
        candidates = self.candidates
        expected = synthetic if synthetic else " or ".join(c.replace("_", ".", 1) for c in candidates)
        target = f"`{sink_name}`" if sink_name else "the result"
        return BindError(f"Key missing from projection (ie, SELECT). The query used to build {target} must "
                         f"include the join expression{'s' if len(candidates) > 1 else ''} {expected} in its "
                         f"projection (eg, SELECT {expected.split(' or ')[0]}...).")


def _result_columns(query: Query, scope: _JoinScope, compiler: ExpressionCompiler, con: duckdb.DuckDBPyConnection,
                    sink: Sink | None, key: _JoinKey) -> list[OutputColumn]:
    """The result's columns: keyed by the join ``key``, or re-keyed by the query's PARTITION BY."""
    sink_name = None if sink is None else sink.name
    if query.partition_by:
        return _partitioned(query, scope, compiler, con, sink_name)
    return _project(query.select, scope, compiler, key, sink_name)


def _project(select: exp.Select, scope: _JoinScope, compiler: ExpressionCompiler, join_key: _JoinKey,
             sink_name: str | None) -> list[OutputColumn]:
    """The result's columns: the key column (the join key, named as projected), then the values.

    The key is the first projection of the left join column, else of the right one (or of the
    synthetic key); projecting it again is an error, projecting the other join column is a value."""
    synthetic = scope.synthetic
    aliases = AliasGenerator(c.name for s in scope.sources for c in s.source.schema.columns)
    items = [named for item in select.expressions for named in _named_items(item, scope, aliases)]
    projected = {n.name for _, n in items if isinstance(n, exp.Column)}
    chosen = synthetic or next((c for c in join_key.candidates if c in projected), None)
    keys = join_key.columns(chosen)
    found: dict[str, OutputColumn] = {}
    values: list[OutputColumn] = []
    for name, node in items:
        if isinstance(node, exp.Column) and node.name in keys:
            if node.name in found:
                raise BindError(f"The projection contains a key column (`{node.name}`) more than once, aliased as: "
                                f"{' and '.join(sorted([found[node.name].name, name]))}.")
            found[node.name] = replace(keys[node.name], name=name, expression=ksql_text(node))
            continue
        compiled = compiler.compile(node)
        values.append(OutputColumn(name, compiler.type_of(compiled), compiled.sql("duckdb"),
                                   expression=ksql_text(node)))
    missing = [k for k in keys if k not in found]
    if missing or not keys:
        raise join_key.missing_error(missing, synthetic, sink_name)
    return _checked([*found.values(), *values])


def _partitioned(query: Query, scope: _JoinScope, compiler: ExpressionCompiler, con: duckdb.DuckDBPyConnection,
                 sink_name: str | None) -> list[OutputColumn]:
    """The result's columns re-keyed by PARTITION BY, as for one source (see
    :mod:`nbstream.plan.repartition`) over the joined row: ``*`` selects the re-keyed row, and the
    item that is a PARTITION BY expression selects its key column."""
    relation = PartitionInput(scope.row_schema(compiler.scope), rewrite=scope.rewrite, tombstones=False)
    defined = {item.alias for item in query.select.expressions if isinstance(item, exp.Alias)}
    repartition = bind_partition_by(query.partition_by, relation, compiler, con, defined)
    aliases = AliasGenerator(c.name for s in scope.sources for c in s.source.schema.columns)
    items: list[Item] = []
    for item in query.select.expressions:
        if _star_qualifier(item) == "":
            items += [Item(c, from_star=True) for c in star_columns(relation, repartition, compiler.scope)]
            continue
        for name, node in _named_items(item, scope, aliases):
            compiled = compiler.compile(node)
            items.append(Item(OutputColumn(name, compiler.type_of(compiled), compiled.sql("duckdb"),
                                           expression=ksql_text(node))))
    return _checked(key_projection(items, repartition, sink_name))


def _checked(columns: list[OutputColumn]) -> list[OutputColumn]:
    """``columns``, each name once and at least one value column."""
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BindError(f"The projection contains a column more than once: {', '.join(dupes)}")
    if not any(c.role != "KEY" for c in columns):
        raise BindError("The projection contains no value columns.")
    return columns


def _named_items(item: exp.Expression, scope: _JoinScope,
                 aliases: AliasGenerator) -> list[tuple[str, exp.Expression]]:
    """The columns one projection item selects, each named, reading the joined row: ``*`` (the
    synthetic key first, if any) and ``alias.*`` expand to renamed columns."""
    star = _star_qualifier(item)
    if star is None:
        node = item.this if isinstance(item, exp.Alias) else item
        rewritten = scope.rewrite(node)
        return [(_item_name(item, node, rewritten, aliases, scope), rewritten)]
    named: list[tuple[str, exp.Expression]] = []
    if scope.synthetic and star == "":
        named.append((scope.synthetic, exp.column(scope.synthetic, quoted=True)))
    for src, name in scope.star(star or None):
        renamed = scope.renamed(src, name)
        named.append((renamed, exp.column(renamed, quoted=True)))
    return named


def _synthetic_name(sources: list[Source]) -> str:
    """ROWKEY, or ROWKEY_<n> past the largest ``n`` of the sources' ROWKEY[_n] columns."""
    taken = [0 if c.name == SYNTHETIC_KEY else int(c.name[len(SYNTHETIC_KEY) + 1:])
             for s in sources for c in s.schema.columns
             if c.name == SYNTHETIC_KEY or re.fullmatch(f"{SYNTHETIC_KEY}_[0-9]+", c.name)]
    return f"{SYNTHETIC_KEY}_{max(taken) + 1}" if taken else SYNTHETIC_KEY


def _star_qualifier(item: exp.Expression) -> str | None:
    """'' for ``*``, the alias for ``alias.*``, None if ``item`` is no star."""
    if isinstance(item, exp.Star):
        return ""
    if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
        return item.table or ""
    return None


def _item_name(item: exp.Expression, node: exp.Expression, rewritten: exp.Expression,
               aliases: AliasGenerator, scope: _JoinScope) -> str:
    """A column reference keeps its column's name if no other source has that name."""
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(node, exp.Column):
        original = scope.original.get(rewritten.name)
        return original if original is not None and scope.is_unique(original) else rewritten.name
    if isinstance(node, Dereference):
        return aliases.field(str(node.args["field"]))
    return aliases.next_generated()
