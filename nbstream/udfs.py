"""User-defined functions in Python: ``@nbstream.udf`` and ``@nbstream.udtf``.

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
nulls. An exception fails the rows it was called with: nbstream narrows the batch down to the
record that fails and sends that record to the processing log (``KSQL_PROCESSING_LOG``), as ksqlDB
does with a UDF that throws.

A table function (UDTF) returns a list per row; ``SELECT k, SPLIT_WORDS(line) FROM s`` emits one
record per element, like EXPLODE::

    @nbstream.udtf(params=["STRING"], returns="STRING")
    def split_words(lines):
        return pc.split_pattern(lines, " ")

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
from nbstream.catalog.user_functions import Overload, ReturnTypeOf
from nbstream.errors import NbstreamError, UdfError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["udf", "udtf"]

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
    counts = (n - 1, n + 1) if signature.variadic else (n,)  # a variadic parameter takes 0 or more
    try:
        for count in counts:
            spec.bind(*[None] * count)
    except TypeError as e:
        declared = f"{n}{' or more' if signature.variadic else ''}"
        raise UdfError(f"{where}: the Python function cannot take the {declared} declared parameter(s) "
                       f"({signature}): {e}") from e
