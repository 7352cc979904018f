"""Binding a statement's custom type names (``CREATE TYPE``) to the types they stand for.

The parser reads a name that is not one of ksqlDB's types as a reference
(:meth:`~nbstream.catalog.types.SqlType.custom`), because a script may create a type and use it in
its next statement; ksqlDB too resolves type names statement by statement, when it prepares one
(``SqlTypeParser``). These pure functions return the statement's parts with every reference
replaced by the registry's type, or raise ``Cannot resolve unknown type: NAME`` with the near miss.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from nbstream.catalog.custom_types import TypeRegistry
from nbstream.sql import ast
from nbstream.sql.dialect import cast_to


def resolve_columns(columns: tuple[ast.ColumnDef, ...], types: TypeRegistry) -> tuple[ast.ColumnDef, ...]:
    """``columns`` (of a CREATE STREAM/TABLE) with their types resolved."""
    return tuple(replace(c, type=types.resolve(c.type, c.span)) if c.type.has_custom else c for c in columns)


def resolve_expression(expression: exp.Expression, types: TypeRegistry) -> exp.Expression:
    """``expression`` with the types of its CASTs resolved: itself if it names no custom type,
    else a copy (statements are immutable)."""
    if not any(_names_custom(cast) for cast in expression.find_all(exp.Cast)):
        return expression
    resolved = expression.transform(lambda node: _resolved_cast(node, types) if _names_custom(node) else node)
    assert isinstance(resolved, exp.Expression)  # (a resolved CAST is one too)
    return resolved


def resolve_query(query: ast.Query, types: TypeRegistry) -> ast.Query:
    """``query`` with the types of the CASTs in its SELECT and PARTITION BY resolved."""
    select = resolve_expression(query.select, types)
    partition_by = tuple(resolve_expression(e, types) for e in query.partition_by)
    if select is query.select and all(a is b for a, b in zip(partition_by, query.partition_by, strict=True)):
        return query
    assert isinstance(select, exp.Select)
    return replace(query, select=select, partition_by=partition_by)


def _names_custom(node: exp.Expr) -> bool:
    sql_type = node.meta.get("ksql_type") if isinstance(node, exp.Cast) else None
    return sql_type is not None and sql_type.has_custom


def _resolved_cast(cast: exp.Expr, types: TypeRegistry) -> exp.Expr:
    assert isinstance(cast, exp.Cast)
    resolved = cast_to(cast.this, types.resolve(cast.meta["ksql_type"]))
    resolved.meta.update({k: v for k, v in cast.meta.items() if k != "ksql_type"})
    return resolved
