"""The columns of a push query in the order ksqlDB returns them: its SELECT's order.

A push query's rows (:class:`~nbstream.runtime.query.ResultShape`) hold the key columns first, and a
windowed result its ``WINDOWSTART``/``WINDOWEND`` after them — what a live view keys its rows by.
ksqlDB's push query returns exactly what its SELECT lists, in that order: ``*`` as the source's key
columns, its window bounds when it is windowed, then its other columns; the window bounds of a
windowed aggregation only where selected. :func:`selected_columns` names those columns.
"""

from __future__ import annotations

from sqlglot import exp

from nbstream.catalog.catalog import Catalog
from nbstream.catalog.schema import WINDOW_BOUNDS
from nbstream.plan.aliases import GENERATED_PREFIX
from nbstream.sql import ast


def selected_columns(query: ast.Query, result: tuple[str, ...], catalog: Catalog) -> tuple[str, ...]:
    """The names of ``result``'s columns as ``query``'s SELECT lists them; () where the names do not
    tell (a join's qualified names, a field without an alias): the result's own order stands then."""
    select = query.select
    from_ = select.args.get("from") or select.args.get("from_")
    if select.args.get("joins") or from_ is None or not isinstance(from_.this, exp.Table):
        return ()
    source = catalog.find(from_.this.name)
    if source is None:
        return ()
    generated = iter(name for name in result if name.startswith(GENERATED_PREFIX))
    names: list[str] = []
    for item in select.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            bounds = list(WINDOW_BOUNDS) if source.window is not None else []
            names += [c.name for c in source.schema.key] + bounds + \
                [c.name for c in source.schema.columns if c.role != "KEY"]
        elif isinstance(item, exp.Alias):
            names.append(item.alias)
        elif isinstance(item, exp.Column) and not item.table:
            found = source.schema.find(item.name)
            names.append(found.name if found is not None else item.name)
        elif isinstance(item, exp.Column | ast.Dereference | ast.StructStar):  # qualified, or named by fields
            return ()
        else:
            names.append(next(generated, ""))
    if len(set(names)) != len(names) or not set(names) <= set(result):
        return ()
    return tuple(names)
