"""Declared SQL signatures of user-defined functions, and ksqlDB's rules for picking an overload.

A signature is written as ksqlDB's function reference writes it: parameter types such as
``"BIGINT"``, ``"ARRAY<T>"`` or ``"MAP<STRING, STRUCT<A VARCHAR>>"``, the last one optionally
variadic (``"STRING..."``). A single upper-case letter (``T``, ``A``…) is a *type variable*: every
argument it stands for must have the same type, and a return type may use it (``"ARRAY<A>"``).
``ANY`` matches any type without binding (Java's ``Object``).

:func:`pick` chooses among a function's overloads as ksqlDB's ``UdfIndex`` does: an overload whose
parameters the argument types match exactly wins over one that needs implicit widening (INTEGER →
BIGINT → DECIMAL → DOUBLE), and among those the one widening least (to the nearer types);
``NULL`` fits any parameter; a variadic overload loses to a fixed one.
No match is a :class:`~nbstream.errors.SqlTypeError` listing the valid alternatives, in ksqlDB's words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nbstream.catalog.types import SqlType, parse_type
from nbstream.errors import SqlTypeError

#: The numeric types an argument may widen to, in order (ksqlDB's implicit casts for UDF calls).
_WIDENS_TO = {
    "INTEGER": ("BIGINT", "DECIMAL", "DOUBLE"),
    "BIGINT": ("DECIMAL", "DOUBLE"),
    "DECIMAL": ("DOUBLE",),
}
_VARIABLE = re.compile(r"[A-Z]")


@dataclass(frozen=True)
class Pattern:
    """A parameter type: a concrete type, a type variable, ``ANY``, or ARRAY/MAP of patterns."""

    kind: str  # concrete | var | any | array | map | decimal
    type: SqlType | None = None
    name: str = ""
    element: Pattern | None = None
    key: Pattern | None = None

    def __str__(self) -> str:
        if self.kind == "concrete":
            return str(self.type)
        if self.kind == "array":
            return f"ARRAY<{self.element}>"
        if self.kind == "map":
            return f"MAP<{self.key}, {self.element}>"
        return self.name

    @property
    def variables(self) -> set[str]:
        if self.kind == "var":
            return {self.name}
        inner = [p for p in (self.element, self.key) if p is not None]
        return set().union(*(p.variables for p in inner)) if inner else set()


def parse_pattern(text: str) -> Pattern:
    """A parameter or return type as declared: ``"BIGINT"``, ``"ARRAY<T>"``, ``"ANY"``, ``"DECIMAL"``."""
    text = text.strip()
    upper = text.upper()
    if upper == "ANY":
        return Pattern("any", name="ANY")
    if _VARIABLE.fullmatch(text):
        return Pattern("var", name=text)
    if upper == "DECIMAL":  # any precision and scale
        return Pattern("decimal", name="DECIMAL")
    for word in ("ARRAY", "MAP"):
        if upper.startswith(word + "<") and text.endswith(">"):
            inner = text[len(word) + 1 : -1]
            parts = [parse_pattern(p) for p in ([inner] if word == "ARRAY" else _split_top(inner))]
            if all(p.kind == "concrete" for p in parts):
                break
            if word == "ARRAY":
                return Pattern("array", element=parts[0], name=word)
            return Pattern("map", key=parts[0], element=parts[1], name=word)
    return Pattern("concrete", type=parse_type(text))


def _split_top(text: str) -> tuple[str, str]:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "<("
        depth -= ch in ">)"
        if ch == "," and depth == 0:
            return text[:i], text[i + 1 :]
    raise SqlTypeError(f"MAP type needs a key and a value type: MAP<{text}>")


@dataclass(frozen=True)
class Signature:
    """One overload: parameter patterns (the last variadic if ``variadic``) and a return type.

    ``returns`` is a pattern over the parameters' type variables, or None when the function
    computes its return type from the argument types (see :class:`Match`)."""

    params: tuple[Pattern, ...]
    variadic: bool = False
    returns: Pattern | None = None

    @classmethod
    def of(cls, params: Sequence[str], returns: str | None) -> Signature:
        """A signature from declared type strings (``"STRING..."`` marks the last one variadic)."""
        variadic = bool(params) and params[-1].rstrip().endswith("...")
        patterns = [parse_pattern(p.rstrip().removesuffix("...")) for p in params]
        if any(p.rstrip().endswith("...") for p in params[:-1]):
            raise SqlTypeError("only the last parameter may be variadic ('...')")
        result = None if returns is None else parse_pattern(returns)
        if result is not None:
            unbound = result.variables - set().union(*(p.variables for p in patterns)) if patterns else result.variables
            if unbound:
                raise SqlTypeError(f"return type {returns} uses type variable(s) no parameter binds: "
                                   f"{', '.join(sorted(unbound))}")
        return cls(tuple(patterns), variadic, result)

    def __str__(self) -> str:
        parts = [str(p) for p in self.params]
        if self.variadic:
            parts[-1] += "..."
        return ", ".join(parts)

    def arity_ok(self, n: int) -> bool:
        return n >= len(self.params) - 1 if self.variadic else n == len(self.params)

    def param_for(self, i: int) -> Pattern:
        return self.params[min(i, len(self.params) - 1)]


@dataclass(frozen=True)
class Match:
    """A signature matched against argument types: the concrete parameter types (one per
    argument, NULL arguments taking the parameter's type), the bindings of type variables, and
    how many implicit widenings it took."""

    signature: Signature
    params: tuple[SqlType, ...]
    bindings: Mapping[str, SqlType] = field(default_factory=dict)
    widenings: int = 0

    def returns(self) -> SqlType | None:
        """The return type the signature declares, with its type variables bound."""
        return None if self.signature.returns is None else substitute(self.signature.returns, self.bindings)


def match(signature: Signature, args: Sequence[SqlType], *, widen: bool) -> Match | None:
    """``signature`` applied to arguments of ``args`` types, or None if they do not fit."""
    if not signature.arity_ok(len(args)):
        return None
    bindings: dict[str, SqlType] = {}
    params: list[SqlType] = []
    widenings = 0
    for i, arg in enumerate(args):
        fitted = _fit(signature.param_for(i), arg, bindings, widen=widen)
        if fitted is None:
            return None
        concrete, cost = fitted
        params.append(concrete)
        widenings += cost
    if any(p.name == "NULL" for p in params):  # a NULL argument bound to a variable bound later
        params = [substitute_null(p, signature.param_for(i), bindings) for i, p in enumerate(params)]
    return Match(signature, tuple(params), bindings, widenings)


def _fit(pattern: Pattern, arg: SqlType, bindings: dict[str, SqlType], *, widen: bool
         ) -> tuple[SqlType, int] | None:
    """The parameter type ``arg`` is passed as under ``pattern``, and the widenings it takes."""
    if pattern.kind == "any":
        return arg, 0
    if arg.name == "NULL":
        if pattern.kind == "var" and pattern.name not in bindings:
            return arg, 0
        return (substitute(pattern, bindings), 0) if not pattern.variables - set(bindings) else (arg, 0)
    if pattern.kind == "var":
        bound = bindings.get(pattern.name)
        if bound is None:
            bindings[pattern.name] = arg
            return arg, 0
        return (bound, 0) if bound == arg else None
    if pattern.kind == "decimal":
        if arg.name == "DECIMAL":
            return arg, 0
        return (SqlType.decimal(19 if arg.name == "BIGINT" else 10, 0), 1) \
            if widen and arg.name in ("INTEGER", "BIGINT") else None
    if pattern.kind == "array":
        assert pattern.element is not None
        if arg.name != "ARRAY" or arg.element is None:
            return None
        inner = _fit(pattern.element, arg.element, bindings, widen=False)
        return None if inner is None else (SqlType.array(inner[0]), 0)
    if pattern.kind == "map":
        assert pattern.key is not None and pattern.element is not None
        if arg.name != "MAP" or arg.key is None or arg.element is None:
            return None
        key = _fit(pattern.key, arg.key, bindings, widen=False)
        value = _fit(pattern.element, arg.element, bindings, widen=False)
        return None if key is None or value is None else (SqlType.map(key[0], value[0]), 0)
    assert pattern.type is not None
    return _fit_concrete(pattern.type, arg, widen=widen)


def _fit_concrete(param: SqlType, arg: SqlType, *, widen: bool) -> tuple[SqlType, int] | None:
    if param == arg or (param.name == arg.name == "STRUCT" and _same_struct(param, arg)):
        return param, 0
    wider = _WIDENS_TO.get(arg.name, ())
    if widen and param.name in wider:
        return param, 1 + wider.index(param.name)  # the nearer type costs less
    return None


def _same_struct(a: SqlType, b: SqlType) -> bool:
    """STRUCT types match by field names (case-insensitively) and field types."""
    return len(a.fields) == len(b.fields) and all(
        n1.upper() == n2.upper() and t1 == t2 for (n1, t1), (n2, t2) in zip(a.fields, b.fields, strict=True))


def substitute(pattern: Pattern, bindings: Mapping[str, SqlType]) -> SqlType:
    """The concrete type ``pattern`` stands for under ``bindings``."""
    if pattern.kind == "concrete":
        assert pattern.type is not None
        return pattern.type
    if pattern.kind == "var":
        if pattern.name not in bindings:
            raise SqlTypeError(f"type variable {pattern.name} is not bound by the arguments")
        return bindings[pattern.name]
    if pattern.kind == "array":
        assert pattern.element is not None
        return SqlType.array(substitute(pattern.element, bindings))
    if pattern.kind == "map":
        assert pattern.key is not None and pattern.element is not None
        return SqlType.map(substitute(pattern.key, bindings), substitute(pattern.element, bindings))
    raise SqlTypeError(f"{pattern} is not a concrete type")


def substitute_null(arg: SqlType, pattern: Pattern, bindings: Mapping[str, SqlType]) -> SqlType:
    """A NULL argument's parameter type, once every variable is bound (STRING if nothing says)."""
    if arg.name != "NULL":
        return arg
    if pattern.kind in ("any", "decimal") or pattern.variables - set(bindings):
        return SqlType("STRING") if pattern.kind != "decimal" else SqlType.decimal(38, 18)
    return substitute(pattern, bindings)


def pick(name: str, signatures: Sequence[Signature], args: Sequence[SqlType]) -> tuple[int, Match]:
    """The overload of ``name`` that ksqlDB calls for arguments of ``args`` types, and its match.

    Exact matches first, then matches with implicit widening (fewest widenings), fixed arity
    before variadic, declaration order last."""
    for widen in (False, True):
        found = [(i, m) for i, s in enumerate(signatures) if (m := match(s, args, widen=widen)) is not None]
        if found:
            return min(found, key=lambda im: (im[1].widenings, im[1].signature.variadic, im[0]))
    alternatives = "\n".join(f"{name.lower()}({s})" for s in signatures)
    rendered = ", ".join("null" if t.name == "NULL" else str(t) for t in args)
    raise SqlTypeError(f"Function '{name}' does not accept parameters ({rendered}).\n"
                       f"Valid alternatives are:\n{alternatives}")
