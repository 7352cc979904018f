"""Expanding ``struct->*`` SELECT items into one dereference per field (ksqlDB's ``StructAll``).

ksqlDB resolves ``base->*`` when it plans the projection (``SelectionUtil.resolveStructAll``): the
base is a column or a chain of dereferences of one, its type must be a STRUCT, and each field
``F`` becomes the column ``F`` computed as ``base->F``. :func:`expand_struct_stars` is that
rewrite as a pure function of the query and the catalog, run before any planner sees the query,
so stateless, aggregate, join and pull queries all plan plain dereferences.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from nbstream.catalog.catalog import Catalog, Source
from nbstream.catalog.types import SqlType
from nbstream.errors import BindError, UnknownNameError, did_you_mean
from nbstream.sql import ast
from nbstream.sql.printer import ksql_text


def expand_struct_stars(query: ast.Query, catalog: Catalog) -> ast.Query:
    """``query`` with each ``base->*`` SELECT item replaced by ``base->F AS F`` for every field ``F``
    of the struct ``base``, in the struct's order; ``query`` itself if it has none."""
    select = query.select
    _check_placement(select)
    if not any(isinstance(item, ast.StructStar) for item in select.expressions):
        return query
    sources = _sources(select, catalog)
    items: list[exp.Expression] = []
    for item in select.expressions:
        items += _fields(item, sources) if isinstance(item, ast.StructStar) else [item]
    return replace(query, select=select.copy().select(*items, append=False))


def _check_placement(select: exp.Select) -> None:
    """``->*`` is a SELECT item of its own: not aliased, not inside an expression or another clause."""
    top = {id(item) for item in select.expressions}
    for node in select.find_all(ast.StructStar):
        if id(node) not in top:
            raise BindError(f"`{ksql_text(node)}`: '->*' may only be used as a whole item of the SELECT list")


def _sources(select: exp.Select, catalog: Catalog) -> dict[str, Source]:
    """The FROM and JOIN sources, by name and by alias."""
    named: dict[str, Source] = {}
    from_ = select.args.get("from") or select.args.get("from_")
    tables = [from_.this] if from_ is not None else []
    tables += [join.this for join in select.args.get("joins") or ()]
    for table in tables:
        if isinstance(table, exp.Table):
            source = catalog.get(table.name)
            named[source.name] = source
            if table.alias:
                named[table.alias] = source
    return named


def _fields(item: ast.StructStar, sources: dict[str, Source]) -> list[exp.Expression]:
    base = item.this
    struct = _struct_type(base, sources)
    return [exp.Alias(this=ast.Dereference(this=base.copy(), field=name), alias=exp.to_identifier(name, quoted=True))
            for name, _ in struct.fields]


def _struct_type(base: exp.Expression, sources: dict[str, Source]) -> SqlType:
    """The STRUCT type of ``base``, or an error naming the column or field that is not a struct."""
    if isinstance(base, exp.Column):
        name, sql_type = _column_type(base, sources)
        if sql_type.name != "STRUCT":
            raise BindError(f"Column {name} is not a STRUCT type.")
        return sql_type
    if isinstance(base, ast.Dereference):
        field = str(base.args["field"])
        field_type = _struct_type(base.this, sources).field(field)
        if field_type is None:
            raise UnknownNameError(f"Field {field} was not found on STRUCT.")
        if field_type.name != "STRUCT":
            raise BindError(f"Field {field} is not a STRUCT type.")
        return field_type
    raise BindError(f"`{ksql_text(base)}->*`: the base of '->*' must be a STRUCT column or a field of one")


def _column_type(column: exp.Column, sources: dict[str, Source]) -> tuple[str, SqlType]:
    """The name and type of ``column`` among ``sources`` (by its qualifier if it has one)."""
    distinct = {s.name: s for s in sources.values()}
    candidates = [sources[column.table]] if column.table in sources else list(distinct.values())
    found = [(s, c) for s in candidates if (c := s.schema.find(column.name)) is not None]
    if len(found) > 1:
        raise BindError(f"Column '{column.name}' is ambiguous: qualify it with its source")
    if not found:
        names = [c.name for s in candidates for c in s.schema.columns]
        raise UnknownNameError(f"Column '{column.name}' cannot be resolved.{did_you_mean(column.name, names)}")
    return found[0][1].name, found[0][1].type
