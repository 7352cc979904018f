"""PARTITION BY: re-keying a stream by expressions of its input, as ksqlDB does.

ksqlDB applies PARTITION BY to the *input* of the projection. The repartitioned relation has

* key columns: one per PARTITION BY expression, named after the column it reads (``NAME``), the
  struct field it dereferences (``ADDRESS->TOWN`` → ``TOWN``) or ``KSQL_COL_<n>`` otherwise;
* value columns: the source's value columns (minus those now in the key), then the source's old
  key columns (minus those now in the key) — the old key moves into the value.

``SELECT *`` expands to exactly that. In an explicit projection the item whose expression *is* a
PARTITION BY expression selects that key column (keeping the item's name); every other item is a
value. A persistent query must select each key column exactly once. ``PARTITION BY NULL`` gives a
result without key columns (a null record key).

The key is computed for every record, tombstones included. As in ksqlDB's results, an expression
that reads only key columns is computed from the record key (a tombstone keeps that key part);
any other expression is computed from the value, so on a tombstone (no value) its key part is NULL.

The relation re-keyed is a :class:`PartitionInput`: a source's decoded records, or a join's
joined rows (whose ``SELECT *`` lists each source's value, pseudo- and key columns, as ksqlDB's
join schema does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import duckdb
from sqlglot import exp

from nbstream.catalog.catalog import Source
from nbstream.catalog.schema import Column, LogicalSchema
from nbstream.catalog.types import SqlType
from nbstream.errors import BindError, ParseError, UnknownNameError
from nbstream.physical.expressions import ExpressionCompiler, Scope
from nbstream.plan.logical import OutputColumn
from nbstream.sql.ast import Dereference

#: Top-level nodes ksqlDB's grammar rejects in PARTITION BY (conditions, not value expressions).
_CONDITIONS = (exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is,
               exp.Like, exp.ILike, exp.Between, exp.In, exp.NullSafeEQ, exp.NullSafeNEQ)


def _unchanged(node: exp.Expression) -> exp.Expression:
    return node


@dataclass(frozen=True)
class PartitionInput:
    """The relation PARTITION BY re-keys.

    ``schema``: its columns (``SELECT *`` lists its value columns in this order, then its key
    columns). ``name``: qualifies unqualified columns in messages. ``rewrite``: a user's
    expression in the names of the compiler's scope (a join reads ``L.B`` as ``L_B``), raising
    :class:`UnknownNameError` for a column it cannot resolve. ``tombstones``: whether its rows may
    be tombstones (a source's records may; a stream join's rows never are)."""

    schema: LogicalSchema
    name: str = ""
    rewrite: Callable[[exp.Expression], exp.Expression] = _unchanged
    tombstones: bool = True

    @staticmethod
    def of(source: Source) -> PartitionInput:
        """The decoded records of ``source``."""
        return PartitionInput(source.schema, source.name)


@dataclass(frozen=True)
class PartitionKey:
    """One key column of the repartitioned relation."""

    name: str  # its name in the repartitioned schema (what SELECT * calls it)
    type: SqlType
    sql: str  # DuckDB SQL of the key over the decoded relation (tombstone-safe)
    match: str  # DuckDB SQL of the expression in the source scope: a projection item equal to it selects the key
    text: str  # the expression as the user wrote it
    column: str | None = None  # the source column, when the expression is a bare column reference


@dataclass(frozen=True)
class Repartition:
    """The bound PARTITION BY clause: its key columns (none for ``PARTITION BY NULL``)."""

    keys: tuple[PartitionKey, ...]

    @property
    def moved(self) -> set[str]:
        """Source columns that became key columns."""
        return {k.column for k in self.keys if k.column is not None}


def _reads_key_only(node: exp.Expression, relation: PartitionInput, scope: Scope) -> bool:
    """Whether every column a PARTITION BY expression reads is a key column of ``relation``: the key
    part is then computed from the record key, otherwise from the value (NULL on tombstones)."""
    keys = {c.name for c in relation.schema.key}
    lambda_vars = {p.name for lam in node.find_all(exp.Lambda) for p in lam.expressions}
    return all(scope.resolve(col.name).name in keys for col in node.find_all(exp.Column)
               if not isinstance(col.this, exp.Star) and col.name not in lambda_vars)


def bind_partition_by(exprs: tuple[exp.Expression, ...], relation: PartitionInput, compiler: ExpressionCompiler,
                      con: duckdb.DuckDBPyConnection, aliases: set[str]) -> Repartition:
    """Bind PARTITION BY ``exprs`` over ``relation`` (``aliases``: names the projection defines)."""
    flat = _flatten(exprs)
    if not flat:
        raise BindError("PARTITION BY requires at least one expression")
    for node in flat:
        if isinstance(node, _CONDITIONS):
            raise ParseError("Syntax Error: PARTITION BY takes value expressions, not a condition: "
                             f"{expression_text(node)}")
    if any(isinstance(node, exp.Null) for node in flat):
        if len(flat) > 1:
            raise BindError("Cannot PARTITION BY multiple columns including NULL")
        return Repartition(())
    for node in flat:
        _check_resolvable(node, relation.rewrite, compiler.scope, aliases)
    taken = {c.name for c in relation.schema.columns}
    keys: list[PartitionKey] = []
    for written in flat:
        node = relation.rewrite(written)
        match = compiler.compile(node)
        sql_type = compiler.type_of(match)
        _check_key_type(written, sql_type)
        column = compiler.scope.resolve(node.name).name if isinstance(node, exp.Column) else None
        name = column or _field_name(node, sql_type, compiler) or _generated_name(taken)
        taken.add(name)
        sql = match.sql("duckdb")
        guarded = relation.tombstones and not _reads_key_only(node, relation, compiler.scope)
        key_sql = f"CASE WHEN __tomb THEN NULL ELSE {sql} END" if guarded else sql
        keys.append(PartitionKey(name, sql_type, key_sql, sql, expression_text(written, relation.name), column))
    return Repartition(tuple(keys))


def expression_text(node: exp.Expression, source: str | None = None) -> str:
    """``node`` as ksqlDB SQL text (``a->b`` included; columns qualified by ``source``), for messages."""
    def render(n: exp.Expression) -> exp.Expression:
        if isinstance(n, Dereference):
            return exp.Var(this=f"{expression_text(n.this, source)}->{n.args['field']}")
        if source and isinstance(n, exp.Column) and not n.table and not isinstance(n.this, exp.Star):
            return exp.column(n.this.copy(), table=source)
        return n

    return node.transform(render, copy=True).sql()


def _flatten(exprs: tuple[exp.Expression, ...]) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    for node in exprs:
        out += list(node.expressions) if isinstance(node, exp.Tuple) else [node]
    return out


def _check_resolvable(node: exp.Expression, rewrite: Callable[[exp.Expression], exp.Expression], scope: Scope,
                      aliases: set[str]) -> None:
    lambda_vars = {p.name for lam in node.find_all(exp.Lambda) for p in lam.expressions}
    for col in node.find_all(exp.Column):
        if isinstance(col.this, exp.Star) or col.name in lambda_vars:
            continue
        try:
            scope.resolve(rewrite(col).name)
        except UnknownNameError:
            name = col.name.upper() if not col.this.args.get("quoted") else col.name
            hint = ""
            if col.name in aliases or name in aliases:
                hint = (f" '{name}' must be a column in the source schema since PARTITION BY is applied "
                        "on the input.")
            raise BindError(f"PARTITION BY column '{name}' cannot be resolved.{hint}") from None


def _check_key_type(node: exp.Expression, sql_type: SqlType) -> None:
    if _contains_map(sql_type):
        raise BindError(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected "
            f"behavior due to inconsistent serialization. Key column name: `{expression_text(node)}`. "
            f"Column type: {sql_type}."
        )
    if sql_type.name == "NULL":
        raise BindError(f"cannot infer a type for PARTITION BY `{expression_text(node)}`: CAST it to a type")


def _contains_map(sql_type: SqlType | None) -> bool:
    if sql_type is None:
        return False
    if sql_type.name == "MAP":
        return True
    return _contains_map(sql_type.element) or any(_contains_map(t) for _, t in sql_type.fields)


def _field_name(node: exp.Expression, sql_type: SqlType, compiler: ExpressionCompiler) -> str | None:
    if not isinstance(node, Dereference):
        return None
    struct = compiler.type_of(compiler.compile(node.this))
    wanted = str(node.args["field"])
    return next((n for n, _ in struct.fields if n == wanted), None) or \
        next((n for n, _ in struct.fields if n.upper() == wanted.upper()), wanted)


def _generated_name(taken: set[str]) -> str:
    n = 0
    while f"KSQL_COL_{n}" in taken:
        n += 1
    return f"KSQL_COL_{n}"


# -- the projection over the repartitioned relation ---------------------------------------------------


def star_columns(relation: PartitionInput, repartition: Repartition, scope: Scope) -> list[OutputColumn]:
    """What ``SELECT *`` selects after PARTITION BY: new key columns, values, then old keys
    (``scope``: where the relation's columns are read)."""
    moved = repartition.moved
    keys = [OutputColumn(k.name, k.type, k.sql, "KEY", k.text) for k in repartition.keys]
    values = [_value(c, scope) for c in relation.schema.columns if c.role != "KEY" and c.name not in moved]
    old_keys = [_value(c, scope) for c in relation.schema.key if c.name not in moved]
    return keys + values + old_keys


def _value(column: Column, scope: Scope) -> OutputColumn:
    return OutputColumn(column.name, column.type, scope.resolve(column.name).sql, "VALUE")


@dataclass(frozen=True)
class Item:
    """One projected column and whether it came from expanding ``*``."""

    column: OutputColumn
    from_star: bool = False
    source_column: str | None = None  # the source column a bare column reference selects


def key_projection(items: list[Item], repartition: Repartition, sink: str | None) -> list[OutputColumn]:
    """Roles and order of the projection after PARTITION BY: key columns (in PARTITION BY order)
    first, then the values in projection order. ``sink``: the persistent query's result, which must
    select every key column exactly once."""
    keys: list[OutputColumn] = []
    taken: set[int] = set()
    missing: list[PartitionKey] = []
    for key in repartition.keys:
        hits = [i for i, item in enumerate(items) if _selects(item, key)]
        if len(hits) > 1:
            names = " and ".join(items[i].column.name for i in hits)
            raise BindError(f"The projection contains a key column (`{key.name}`) more than once, "
                            f"aliased as: {names}.")
        if not hits:
            missing.append(key)
            continue
        taken.add(hits[0])
        chosen = items[hits[0]].column
        keys.append(OutputColumn(chosen.name, key.type, key.sql, "KEY", key.text))
    if missing and sink is not None:
        _raise_missing(list(repartition.keys), sink)
    values = [replace(it.column, role="VALUE") for i, it in enumerate(items) if i not in taken]
    return keys + values


def _selects(item: Item, key: PartitionKey) -> bool:
    if item.from_star:
        return item.column.role == "KEY" and item.column.name == key.name
    return item.column.sql == key.match


def _raise_missing(missing: list[PartitionKey], sink: str) -> None:
    texts = [k.text for k in missing]
    plural = len(texts) > 1
    listed = " and ".join(texts) if plural else texts[0]
    raise BindError(
        f"The query used to build `{sink}` must include the "
        f"partitioning expression{'s' if plural else ''} {listed} in its projection "
        f"(eg, SELECT {', '.join(texts)}...)."
    )
