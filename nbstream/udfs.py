"""User-defined functions in Python: ``@nbstream.udf``, ``@nbstream.udtf`` and ``@nbstream.udaf``.

They are nbstream's answer to ksqlDB's Java UDFs: each declares its SQL types, and nbstream calls
it on whole Arrow arrays — never once per row. A function registered here can be called from any
query (persistent, push or pull) of every engine in the process, and SHOW FUNCTIONS / DESCRIBE
FUNCTION list it. Declaring the same name again with other parameter types adds an overload; with
the same types it replaces the earlier one (re-running a notebook cell) for the queries planned
from then on.

Types are ksqlDB's spellings: ``"BIGINT"``, ``"DECIMAL(10, 2)"``, ``"ARRAY<STRING>"``,
``"STRUCT<A VARCHAR>"``. A single capital letter is a type variable (``params=["ARRAY<T>"],
returns="T"``), ``"ANY"`` accepts any type, ``"DECIMAL"`` any decimal, and ``"BIGINT..."`` as the
last parameter takes any number of arguments (each passed as its own array). Arguments widen as in
ksqlDB (INTEGER → BIGINT → DECIMAL → DOUBLE) when no overload matches exactly.

A scalar UDF::

    import pyarrow.compute as pc

    @nbstream.udf(params=["DOUBLE", "DOUBLE"], returns="DOUBLE")
    def hypot(x, y):                          # x, y: pyarrow arrays of one vector of rows
        return pc.sqrt(pc.add(pc.multiply(x, x), pc.multiply(y, y)))

It returns one value per row (an Arrow array, a NumPy array or a list); nulls are passed in as
nulls. A UDF without parameters (``params=[]``) is called with the number of rows instead, and
returns that many values. An exception fails the rows it was called with: nbstream narrows the batch down to the
record that fails and sends that record to the processing log (``KSQL_PROCESSING_LOG``), as ksqlDB
does with a UDF that throws.

A table function (UDTF) returns a list per row; ``SELECT k, SPLIT_WORDS(line) FROM s`` emits one
record per element, like EXPLODE::

    @nbstream.udtf(params=["STRING"], returns="STRING")
    def split_words(lines):
        return pc.split_pattern(lines, " ")

An aggregate function (UDAF) folds each group's values into a state, vectorised: ``aggregate``
gets one state per row (null before the first value) and, per parameter, an Arrow ``ListArray``
of the values to fold into it, in arrival order; ``result`` (optional) maps states to values::

    @nbstream.udaf(params=["DOUBLE"], state="STRUCT<N BIGINT, TOTAL DOUBLE>", returns="DOUBLE")
    class mean:
        def aggregate(states, values):        # states: StructArray, values: ListArray of doubles
            n = pc.add(pc.coalesce(pc.struct_field(states, "N"), 0), pc.list_value_length(values))
            ...                               # return the new states, one per row
        def result(states):
            return pc.divide(pc.struct_field(states, "TOTAL"), pc.struct_field(states, "N"))

It can be called in any GROUP BY query (persistent or push; pull queries read the tables they
build). Over a TABLE it needs ``undo(states, values)``, the states with the values taken out again
(a table row's old value, when the row changes or is deleted), as ksqlDB's ``TableUdaf``::

        def undo(states, values):             # for a sum: subtract each row's values
            return pc.subtract(states, pc.fill_null(pc.list_sum(values), 0))

A bad registration — a name of one of ksqlDB's functions or not an identifier, a type nbstream
does not know, a Python function that cannot take the declared parameters — raises
:class:`~nbstream.errors.UdfError` at once, naming the function.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from nbstream.catalog import user_functions
from nbstream.catalog.signatures import Signature
from nbstream.catalog.user_aggregates import AggregateImpl
from nbstream.catalog.user_functions import Overload, ReturnTypeOf
from nbstream.errors import NbstreamError, UdfError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["udaf", "udf", "udtf"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def udf(name: str | None = None, *, params: Sequence[str] | None = None, returns: str | ReturnTypeOf | None = None,
        description: str = "", deterministic: bool = True) -> Callable[[F], F]:
    """Register the decorated function as scalar function ``name`` (default: its own name).

    ``returns`` is a type, or a function of the concrete parameter types returning one (ksqlDB's
    schema provider). ``deterministic=False`` for a function whose result is not determined by its
    arguments (DuckDB then never folds a call of constants)."""
    return _decorator("scalar", name, params, returns, description, deterministic)


def udtf(name: str | None = None, *, params: Sequence[str] | None = None,
         returns: str | ReturnTypeOf | None = None, description: str = "", deterministic: bool = True
         ) -> Callable[[F], F]:
    """Register the decorated function as table function ``name``: it returns a list of
    ``returns`` values for each row (an Arrow list array, or a list of lists)."""
    return _decorator("table", name, params, returns, description, deterministic)


def udaf(name: str | None = None, *, params: Sequence[str] | None = None, state: str | None = None,
         returns: str | None = None, init: Sequence[str] = (), description: str = "") -> Callable[[F], F]:
    """Register the decorated class (or object) as aggregate function ``name`` (default: its own
    name). It has ``aggregate(states, *value_lists)`` and optionally ``result(states)`` and
    ``undo(states, *value_lists)`` (see the module's docstring); ``state`` is the SQL type of its
    state, ``returns`` of its value (default: the state's type, when there is no ``result``); both
    may use the parameters' type variables (``params=["A", "ANY..."], state="ARRAY<A>"``: an array
    of the first argument's type). ``init``: the types of literal parameters a call ends with
    (ksqlDB's UDAF factory arguments, the last may be ``"STRING..."``), given to its
    ``initial(*literals)``, which returns the state every group starts from."""
    def decorate(cls: F) -> F:
        sql_name: str = name or str(getattr(cls, "__name__", ""))
        where = f"UDAF {sql_name or cls!r}"
        if params is None or state is None:
            raise UdfError(f"{where}: @nbstream.udaf needs its SQL types: params=[...], state=...")
        aggregate, result = getattr(cls, "aggregate", None), getattr(cls, "result", None)
        undo = getattr(cls, "undo", None)
        if not callable(aggregate):
            raise UdfError(f"{where}: needs an aggregate(states, *value_lists) function")
        if undo is not None and not callable(undo):
            raise UdfError(f"{where}: undo must be an undo(states, *value_lists) function")
        if result is None and returns is not None and returns.upper() != state.upper():
            raise UdfError(f"{where}: returns {returns} differs from its state {state}: give it a result(states)")
        if not _IDENTIFIER.fullmatch(sql_name):
            raise UdfError(f"{where}: a function name must be an identifier (letters, digits, _)")
        try:
            signature = Signature.of(list(params), returns or state)
            Signature.of(list(params), state)  # its type variables must be the parameters'
        except NbstreamError as e:
            raise UdfError(f"{where}: {e}") from e
        initial = getattr(cls, "initial", None)
        if init and not callable(initial):
            raise UdfError(f"{where}: literal parameters (init=...) need an initial(*literals) function")
        if signature.variadic and any(t.endswith("...") for t in init):
            raise UdfError(f"{where}: either the columns or the literal parameters may be variadic, not both")
        impl = AggregateImpl(state, aggregate, result if callable(result) else None, tuple(init),
                             initial if callable(initial) else None, undo)
        overload = Overload(signature, impl, description or (cls.__doc__ or "").strip())
        try:
            user_functions.add(sql_name, "aggregate", overload, overload.description)
        except NbstreamError as e:
            raise UdfError(f"{where}: {e}") from e
        return cls

    return decorate


def _decorator(kind: str, name: str | None, params: Sequence[str] | None, returns: str | ReturnTypeOf | None,
               description: str, deterministic: bool) -> Callable[[F], F]:
    if callable(name) or params is None or returns is None:  # @nbstream.udf without its types
        decorator = "udf" if kind == "scalar" else "udtf"
        raise UdfError(f"@nbstream.{decorator} needs its SQL types: @nbstream.{decorator}(params=[...], returns=...)")

    def decorate(fn: F) -> F:
        sql_name: str = name or str(getattr(fn, "__name__", ""))
        where = f"{'UDF' if kind == 'scalar' else 'UDTF'} {sql_name or fn!r}"
        if not callable(fn):
            raise UdfError(f"{where}: only a function can be registered, not {type(fn).__name__}")
        if not _IDENTIFIER.fullmatch(sql_name):
            raise UdfError(f"{where}: a function name must be an identifier (letters, digits, _)")
        if isinstance(params, str):
            raise UdfError(f"{where}: params is a list of types, one per parameter: params=[{params!r}]")
        try:
            signature = Signature.of(list(params), returns if isinstance(returns, str) else None)
        except NbstreamError as e:
            raise UdfError(f"{where}: {e}") from e
        _check_arity(where, fn, signature)
        overload = Overload(signature, fn, description or (fn.__doc__ or "").strip(),
                            None if isinstance(returns, str) else returns, deterministic=deterministic)
        try:
            user_functions.add(sql_name, kind, overload, overload.description)
        except NbstreamError as e:
            raise UdfError(f"{where}: {e}") from e
        return fn

    return decorate


def _check_arity(where: str, fn: Callable[..., Any], signature: Signature) -> None:
    """``fn`` must accept as many positional arguments as the signature passes."""
    try:
        spec = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C function: nothing to check
    n = len(signature.params)
    counts = (n - 1, n + 1) if signature.variadic else (n or 1,)  # variadic: 0 or more; none: the row count
    try:
        for count in counts:
            spec.bind(*[None] * count)
    except TypeError as e:
        if n == 0:
            raise UdfError(f"{where}: a function without parameters is called with the row count, one "
                           f"argument: {e}") from e
        declared = f"{n}{' or more' if signature.variadic else ''}"
        raise UdfError(f"{where}: the Python function cannot take the {declared} declared parameter(s) "
                       f"({signature}): {e}") from e
