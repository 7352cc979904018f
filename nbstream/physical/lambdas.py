"""ksqlDB's lambda functions — TRANSFORM, FILTER and REDUCE over arrays and maps — as DuckDB list lambdas.

A lambda's body is compiled like any expression, with its parameters in scope as typed names
(the element type of the array, the key and value types of the map, the state's type), so typing
rules and functions inside it work as outside, and lambdas nest. Maps become lists of entries
(``map_entries``) and back (``map_from_entries``); a map lambda's key and value parameters read
the entry's fields.

ksqlDB semantics kept here, where DuckDB's differ:

* REDUCE of a NULL collection is the initial state (DuckDB gives NULL); the body's result is
  cast to the state's type;
* a map TRANSFORM whose key lambda gives two entries one key is NULL (ksqlDB's collector throws);
* arithmetic on a NULL inside a lambda fails in ksqlDB (Java unboxing), and the failure makes the
  whole function call NULL (``TRANSFORM([5, NULL], x => x + 5)`` is NULL, not ``[10, NULL]``).
  Each such call carries a *poison* condition — some numeric ``+ - * / %`` that ksqlDB would
  evaluate has a NULL operand — and is NULL where it holds. Conditions respect the evaluation
  order ksqlDB's generated Java has (AND/OR short-circuit, CASE branches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlglot import exp

from nbstream.catalog.casts import lam, sql
from nbstream.catalog.types import BOOLEAN, SqlType
from nbstream.errors import SqlTypeError

if TYPE_CHECKING:
    from nbstream.physical.expressions import ExpressionCompiler

_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)


def is_lambda_function(name: str) -> bool:
    return name.upper() in _COMPILERS


def compile_call(compiler: ExpressionCompiler, name: str, nodes: Sequence[exp.Expression]) -> exp.Expression:
    """``name(nodes…)`` (TRANSFORM, FILTER or REDUCE) compiled to one DuckDB expression."""
    return _COMPILERS[name.upper()](_Call(compiler, name.upper(), list(nodes)))


class _Call:
    """A call being compiled: its collection argument compiled and typed, its lambdas not yet."""

    def __init__(self, compiler: ExpressionCompiler, name: str, nodes: list[exp.Expression]) -> None:
        self.compiler, self.name, self.nodes = compiler, name, nodes
        if not nodes:
            raise SqlTypeError(f"Function '{name}' needs an ARRAY or MAP argument")
        self.collection = compiler.compile(nodes[0])
        self.type = compiler.type_of(self.collection)
        if self.type.name not in ("ARRAY", "MAP"):
            raise SqlTypeError(f"Function '{name}' does not accept parameters ({self.type}, …): "
                               "its first argument must be an ARRAY or a MAP")

    @property
    def is_map(self) -> bool:
        return self.type.name == "MAP"

    def lambda_at(self, i: int, arity: int) -> exp.Lambda:
        node = self.nodes[i] if i < len(self.nodes) else None
        if not isinstance(node, exp.Lambda) or len(node.expressions) != arity:
            what = "a map" if self.is_map else "an array"
            raise SqlTypeError(f"Function '{self.name}' of {what} needs a lambda of {arity} parameter(s) "
                               f"as argument {i + 1}")
        return node

    def expect_arity(self, n: int) -> None:
        if len(self.nodes) != n:
            raise SqlTypeError(f"Function '{self.name}' does not accept {len(self.nodes)} parameter(s) here")

    def element_types(self) -> list[SqlType]:
        """The lambda parameter types one element gives: the element, or the key and the value."""
        assert self.type.element is not None
        if self.is_map:
            assert self.type.key is not None
            return [self.type.key, self.type.element]
        return [self.type.element]


class _Body:
    """A lambda's body compiled with typed parameters, and its poison condition (None: cannot fail)."""

    def __init__(self, call: _Call, fn: exp.Lambda, types: Sequence[SqlType]) -> None:
        compiler = call.compiler
        self.names = [p.name for p in fn.expressions]
        with compiler.lambda_scope(dict(zip(self.names, types, strict=True))):
            self.body = compiler.compile(fn.this)
            self.type = compiler.type_of(self.body)
            self.poison = _poison(compiler, fn.this)
        self.vars = [compiler.lambda_column(n) for n in self.names]

    def bind(self, values: Sequence[exp.Expression], node: exp.Expression | None = None) -> exp.Expression:
        """The body (or ``node``, compiled in the same scope) with its parameters replaced by ``values``."""
        names = {v: value for v, value in zip(self.vars, values, strict=True)}

        def substitute(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column) and not n.table and n.name in names:
                return names[n.name].copy()
            return n

        return (self.body if node is None else node).copy().transform(substitute)


def _entry_names(call: _Call) -> tuple[str, exp.Expression, exp.Expression]:
    """A DuckDB lambda parameter for a map entry (unique per nesting depth), and its key and value."""
    name = f"__nbs_e{call.compiler.lambda_depth}"
    return name, sql(f"{name}.key"), sql(f"{name}.value")


def _any(conditions: Sequence[exp.Expression]) -> exp.Expression:
    """``c1 OR c2 OR …`` of one or more conditions."""
    result = conditions[0]
    for condition in conditions[1:]:
        result = exp.Or(this=result, expression=condition)
    return result


def _poisoned(condition: exp.Expression | None, result: exp.Expression) -> exp.Expression:
    if condition is None:
        return result
    return sql("CASE WHEN coalesce({0}, FALSE) THEN NULL ELSE {1} END", condition, result)


# -- TRANSFORM ------------------------------------------------------------------------------------


def _transform(call: _Call) -> exp.Expression:
    if not call.is_map:
        call.expect_arity(2)
        body = _Body(call, call.lambda_at(1, 1), call.element_types())
        x = body.vars[0]
        result = sql("list_transform({0}, {1})", call.collection, lam(body.body, x))
        poison = None if body.poison is None else \
            sql("list_bool_or(list_transform({0}, {1}))", call.collection, lam(body.poison, x))
        return _poisoned(poison, result)
    call.expect_arity(3)
    key = _Body(call, call.lambda_at(1, 2), call.element_types())
    value = _Body(call, call.lambda_at(2, 2), call.element_types())
    entry, k, v = _entry_names(call)
    pair = sql("{'key': {0}, 'value': {1}}", key.bind([k, v]), value.bind([k, v]))
    result = sql("map_from_entries(list_transform(map_entries({0}), {1}))", call.collection, lam(pair, entry))
    conditions = [b.bind([k, v], b.poison) for b in (key, value) if b.poison is not None]
    poisons = [] if not conditions else [sql("list_bool_or(list_transform(map_entries({0}), {1}))",
                                             call.collection, lam(_any(conditions), entry))]
    # Two entries given one key: ksqlDB's map collector throws, which makes the call NULL (DuckDB's
    # map_from_entries would fail the whole batch).
    keys = sql("list_transform(map_entries({0}), {1})", call.collection, lam(key.bind([k, v]), entry))
    duplicated = sql("len(list_distinct({0})) < len({0})", keys)
    return _poisoned(_any([*poisons, duplicated]), result)


# -- FILTER ---------------------------------------------------------------------------------------


def _filter(call: _Call) -> exp.Expression:
    call.expect_arity(2)
    arity = 2 if call.is_map else 1
    body = _Body(call, call.lambda_at(1, arity), call.element_types())
    if body.type.name not in ("BOOLEAN", "NULL"):
        raise SqlTypeError(f"Function 'FILTER' needs a lambda returning BOOLEAN, not {body.type}")
    if not call.is_map:
        x = body.vars[0]
        keep = lam(body.body, x)
        poison = None if body.poison is None else \
            sql("list_bool_or(list_transform({0}, {1}))", call.collection, lam(body.poison, x))
        return _poisoned(poison, sql("list_filter({0}, {1})", call.collection, keep))
    entry, k, v = _entry_names(call)
    result = sql("map_from_entries(list_filter(map_entries({0}), {1}))", call.collection, lam(body.bind([k, v]), entry))
    poison = None if body.poison is None else sql("list_bool_or(list_transform(map_entries({0}), {1}))",
                                                  call.collection, lam(body.bind([k, v], body.poison), entry))
    return _poisoned(poison, result)


# -- REDUCE ---------------------------------------------------------------------------------------


def _reduce(call: _Call) -> exp.Expression:
    call.expect_arity(3)
    compiler = call.compiler
    initial = compiler.compile(call.nodes[1])
    state = compiler.type_of(initial)
    if state.name == "NULL":
        raise SqlTypeError("Function 'REDUCE' needs a typed initial state: CAST it to a type")
    arity = 3 if call.is_map else 2
    body = _Body(call, call.lambda_at(2, arity), [state, *call.element_types()])
    step = body.body if body.type == state else _cast(compiler, body.body, body.type, state)
    acc = f"__nbs_s{compiler.lambda_depth}"
    entry, k, v = _entry_names(call)
    items = sql("map_entries({0})", call.collection) if call.is_map else call.collection
    item = exp.column(entry) if call.is_map else exp.column(body.vars[1])
    element = [k, v] if call.is_map else [item]
    if body.poison is None:
        fold = sql("list_reduce({0}, {1}, {2})", items, lam(body.bind([exp.column(acc), *element], step), acc,
                                                               item.name), initial)
    else:
        s = sql(f"{acc}.s")
        pair = sql(f"{{'s': {{0}}, 'p': {acc}.p OR coalesce({{1}}, FALSE)}}", body.bind([s, *element], step),
                   body.bind([s, *element], body.poison))
        folded = sql("list_reduce({0}, {1}, {'s': {2}, 'p': FALSE})", items, lam(pair, acc, item.name), initial)
        fold = sql("CASE WHEN struct_extract({0}, 'p') THEN NULL ELSE struct_extract({0}, 's') END", folded)
    return sql("CASE WHEN {0} IS NULL THEN {1} ELSE {2} END", call.collection, initial, fold)


def _cast(compiler: ExpressionCompiler, value: exp.Expression, source: SqlType, target: SqlType) -> exp.Expression:
    from nbstream.catalog.functions import compile_cast

    try:
        return compile_cast(value, source, target)
    except SqlTypeError as e:
        raise SqlTypeError(f"Function 'REDUCE': the lambda returns {source}, not the state's type {target}") from e


_COMPILERS: dict[str, Callable[[_Call], exp.Expression]] = {
    "TRANSFORM": _transform,
    "FILTER": _filter,
    "REDUCE": _reduce,
}


# -- poison: where ksqlDB's generated Java would fail on a NULL -------------------------------------


def _poison(compiler: ExpressionCompiler, body: exp.Expression) -> exp.Expression | None:
    """The compiled condition under which evaluating ``body`` (a ksqlDB expression) does numeric
    arithmetic on a NULL, or None if it does no numeric arithmetic."""
    terms: list[exp.Expression] = []
    _collect(compiler, body, [], terms)
    return _any(terms) if terms else None


def _collect(compiler: ExpressionCompiler, node: exp.Expression, guards: list[exp.Expression],
             terms: list[exp.Expression]) -> None:
    if isinstance(node, exp.Lambda):
        return  # a nested lambda function is NULL on its own failures
    if isinstance(node, exp.And | exp.Or):
        _collect(compiler, node.this, guards, terms)
        taken = node.this if isinstance(node, exp.And) else exp.Not(this=exp.Paren(this=node.this.copy()))
        _collect(compiler, node.expression, [*guards, taken], terms)
        return
    if isinstance(node, exp.Case) and node.args.get("this") is None:
        _collect_case(compiler, node, guards, terms)
        return
    if isinstance(node, _ARITHMETIC):
        term = _null_operand(compiler, node, guards)
        if term is not None:
            terms.append(term)
    for child in node.iter_expressions():
        _collect(compiler, child, guards, terms)


def _collect_case(compiler: ExpressionCompiler, node: exp.Case, guards: list[exp.Expression],
                  terms: list[exp.Expression]) -> None:
    missed: list[exp.Expression] = []
    for branch in node.args.get("ifs") or []:
        _collect(compiler, branch.this, [*guards, *missed], terms)
        _collect(compiler, branch.args["true"], [*guards, *missed, branch.this], terms)
        missed.append(exp.Not(this=exp.Paren(this=branch.this.copy())))
    default = node.args.get("default")
    if default is not None:
        _collect(compiler, default, [*guards, *missed], terms)


def _null_operand(compiler: ExpressionCompiler, node: exp.Expression, guards: list[exp.Expression]
                  ) -> exp.Expression | None:
    left, right = compiler.compile(node.this), compiler.compile(node.expression)
    if not (compiler.type_of(left).is_numeric and compiler.type_of(right).is_numeric):
        return None
    condition = sql("{0} IS NULL OR {1} IS NULL", left, right)
    for guard in guards:
        compiled = compiler.compile(guard)
        if compiler.type_of(compiled) not in (BOOLEAN, SqlType("NULL")):
            return condition
        condition = sql("coalesce({0}, FALSE) AND ({1})", compiled, condition)
    return condition
