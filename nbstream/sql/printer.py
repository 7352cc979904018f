"""Expressions back as ksqlDB text: what a plan keeps beside each expression's DuckDB lowering.

``ksql_text(node)`` prints a parsed (and normalized) expression in ksqlDB's syntax — ``a->b``,
``ARRAY[…]``, ``x => e``, ``STRUCT(n := v)``, ``MAP(k := v)``, ``CAST(x AS ksqlDB type)`` — with
names as the parser resolved them (unquoted ones upper-cased). Plans store it so that a stored plan
says, in the user's terms, which expression a changed lowering belongs to.
"""

from __future__ import annotations

import re
from typing import Any

from sqlglot import exp

from nbstream.sql.ast import Dereference, StructStar
from nbstream.sql.dialect import Ksql


def _dereference(gen: Any, node: Dereference) -> str:
    return f"{gen.sql(node, 'this')}->{node.args['field']}"


def _struct_star(gen: Any, node: StructStar) -> str:
    return f"{gen.sql(node, 'this')}->*"


def _array(gen: Any, node: exp.Array) -> str:
    return f"ARRAY[{gen.expressions(node, flat=True)}]"


def _lambda(gen: Any, node: exp.Lambda) -> str:
    names = [gen.sql(e) for e in node.expressions]
    params = names[0] if len(names) == 1 else f"({', '.join(names)})"
    return f"{params} => {gen.sql(node, 'this')}"


def _struct(gen: Any, node: exp.Struct) -> str:
    fields = [f"{gen.sql(e, 'this')} := {gen.sql(e, 'expression')}" for e in node.expressions]
    return f"STRUCT({', '.join(fields)})"


def _map(gen: Any, node: exp.VarMap) -> str:
    keys, values = node.args["keys"].expressions, node.args["values"].expressions
    return f"MAP({', '.join(f'{gen.sql(k)} := {gen.sql(v)}' for k, v in zip(keys, values, strict=True))})"


def _cast(gen: Any, node: exp.Cast) -> str:
    ksql_type = node.meta.get("ksql_type")
    to = str(ksql_type) if ksql_type is not None else gen.sql(node, "to")
    return f"CAST({gen.sql(node, 'this')} AS {to})"


def _not(gen: Any, node: exp.Not) -> str:
    inner = node.this
    if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
        return f"{gen.sql(inner, 'this')} IS NOT NULL"
    return f"NOT {gen.sql(node, 'this')}"


def _identifier(gen: Any, node: exp.Identifier) -> str:
    name = node.name
    if not node.quoted or _BARE.fullmatch(name):
        return name
    return "`" + name.replace("`", "``") + "`"


#: A name that reads the same unquoted (ksqlDB upper-cases unquoted names).
_BARE = re.compile(r"[A-Z_][A-Z0-9_]*")


class _KsqlText(Ksql):
    class Generator(Ksql.Generator):  # type: ignore[name-defined,misc,valid-type]
        TRANSFORMS = {
            **Ksql.Generator.TRANSFORMS,  # type: ignore[attr-defined]
            Dereference: _dereference, StructStar: _struct_star, exp.Array: _array, exp.Lambda: _lambda,
            exp.Struct: _struct,
            exp.VarMap: _map, exp.Cast: _cast, exp.Not: _not, exp.Identifier: _identifier,
        }


_DIALECT = _KsqlText()


def ksql_text(node: exp.Expression) -> str:
    """``node`` as ksqlDB expression text (see the module docstring)."""
    return node.sql(dialect=_DIALECT)
