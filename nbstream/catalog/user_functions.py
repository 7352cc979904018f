"""The registry of user-defined functions: Python UDFs and UDTFs with declared SQL types.

The decorators in :mod:`nbstream.udfs` add overloads here; the expression compiler looks a name up
(:func:`lookup`) after ksqlDB's built-in functions and picks the overload for the argument types
(:func:`~nbstream.catalog.signatures.pick`). The registry is process-wide, as ksqlDB's extension
directory is server-wide: every engine sees every function registered so far.

How a call runs: each distinct (overload, concrete parameter types) is one DuckDB Arrow function
(an :class:`Instance`, named ``nbs_udf_<name>_<n>``), registered on every DuckDB connection an
engine configures (:func:`attach`), those made before the Instance too. DuckDB hands it whole
Arrow arrays — a vector of up to 2,048 rows at a time, never one Python call per row — and checks
nothing: the wrapper converts what the Python function returns to the declared type and length. A
Python exception becomes DuckDB's ``InvalidInputException``, which the runtime treats as a bad
record: it splits the batch until the record is alone and sends it to the processing log.

A UDTF is an Instance returning one ARRAY per row, which the plan unnests like EXPLODE (see
:mod:`nbstream.physical.table_functions`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from nbstream.catalog import duck_functions
from nbstream.catalog.signatures import Match, Signature, pick
from nbstream.catalog.types import SqlType
from nbstream.errors import BindError, SqlTypeError

#: A schema provider: the return type computed from the concrete parameter types.
ReturnTypeOf = Callable[[Sequence[SqlType]], SqlType]

KINDS = ("scalar", "table", "aggregate")


@dataclass(frozen=True)
class Overload:
    """One declared signature of a user function and the Python function implementing it;
    ``returns_of`` replaces a declared return type that depends on the arguments."""

    signature: Signature
    impl: Callable[..., Any]
    description: str = ""
    returns_of: ReturnTypeOf | None = None
    deterministic: bool = True

    def return_type(self, matched: Match) -> SqlType:
        if self.returns_of is not None:
            return self.returns_of(list(matched.params))
        returned = matched.returns()
        if returned is None:
            raise SqlTypeError("a user function needs a return type (returns=...)")
        return returned

    @property
    def rendered(self) -> str:
        return f"({self.signature})"


@dataclass
class UserFunction:
    """A user function: its name, kind (scalar or table) and overloads in declaration order."""

    name: str
    kind: str
    description: str = ""
    overloads: list[Overload] = field(default_factory=list)

    @property
    def signatures(self) -> list[str]:
        """Each overload as DESCRIBE FUNCTION lists it: ``NAME(TYPE, …) -> TYPE``."""
        rendered = []
        for o in self.overloads:
            returns = "" if o.signature.returns is None else f" -> {o.signature.returns}"
            rendered.append(f"{self.name}{o.rendered}{returns}")
        return rendered


_FUNCTIONS: dict[str, UserFunction] = {}
_LOCK = threading.Lock()


def add(name: str, kind: str, overload: Overload, description: str = "") -> UserFunction:
    """Register ``overload`` of function ``name`` (upper-cased). An overload with the same
    parameters replaces the earlier one (a notebook cell run again), others are added."""
    key = name.upper()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    from nbstream.catalog import functions  # the built-in functions import this module

    if functions.is_builtin(key):
        raise BindError(f"`{key}` is one of ksqlDB's built-in functions: give the user function another name")
    with _LOCK:
        function = _FUNCTIONS.get(key)
        if function is None or function.kind != kind:
            function = _FUNCTIONS[key] = UserFunction(key, kind, description)
        same = [i for i, o in enumerate(function.overloads) if _same_params(o, overload)]
        if same:
            function.overloads[same[0]] = overload
        else:
            function.overloads.append(overload)
        function.description = description or function.description
    return function


def _same_params(a: Overload, b: Overload) -> bool:
    return str(a.signature) == str(b.signature)


def remove(name: str) -> None:
    """Forget user function ``name`` (tests; a notebook may also drop one)."""
    with _LOCK:
        _FUNCTIONS.pop(name.upper(), None)


def lookup(name: str) -> UserFunction | None:
    """The user function called ``name`` (any case), or None."""
    return _FUNCTIONS.get(name.upper())


def names() -> list[str]:
    """The user functions' names (upper case), sorted."""
    return sorted(_FUNCTIONS)


# ---------------------------------------------------------------------------------------------
# Instances: one DuckDB function per overload and concrete parameter types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """A DuckDB Arrow function standing for one overload at concrete types."""

    duck_name: str
    params: tuple[SqlType, ...]
    returns: SqlType
    call: Callable[..., pa.Array] = field(compare=False, repr=False)
    side_effects: bool = False


_INSTANCES: dict[tuple[Any, ...], Instance] = {}
_OVERLOADS_KEPT: list[Overload] = []
_COUNTER = itertools.count()
#: Every DuckDB connection an engine configured and has not closed: new Instances go to each.
_CONNECTIONS: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def instance(name: str, overload: Overload, params: Sequence[SqlType], returns: SqlType) -> Instance:
    """The Instance calling the overload's function with arrays of ``params``, returning
    ``returns`` (the same object for the same overload and types), registered on every attached
    connection."""
    cache_key = (id(overload), tuple(params), returns)
    with _LOCK:
        found = _INSTANCES.get(cache_key)
        if found is not None:
            return found
        duck_name = f"nbs_udf_{name.lower()}_{next(_COUNTER)}"
        wrapped = _arrow_call(overload.impl, returns, duck_name, len(params))
        found = _INSTANCES[cache_key] = Instance(duck_name, tuple(params), returns, wrapped,
                                                 side_effects=not overload.deterministic)
        _OVERLOADS_KEPT.append(overload)  # ids in the cache keys stay unique while the cache lives
        connections = list(_CONNECTIONS)
    for con in connections:
        register(con, found)
    return found


#: The DuckDB type of the one argument a function without parameters is called with (:func:`_arrow_call`):
#: DuckDB tells an Arrow function how many rows it is called for only through its arguments.
ROWS_ARGUMENT_TYPE = "BOOLEAN"


def _arrow_call(fn: Callable[..., Any], returns: SqlType, name: str, arity: int) -> Callable[..., pa.Array]:
    """``fn`` as DuckDB calls an Arrow UDF: ``arity`` arrays in, one array of ``returns`` values out.
    A function without parameters gets the vector's row count instead, from a constant argument
    (:data:`ROWS_ARGUMENT_TYPE`) that every call passes."""
    target = arrow_type(returns)

    def call(*chunked: pa.ChunkedArray) -> pa.Array:
        arrays = [_array(a) for a in chunked]
        rows = len(arrays[0]) if arrays else None
        return to_arrow(fn(*arrays) if arity else fn(rows), target, rows, name)

    # DuckDB counts the parameters of the Python function it is given
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"a{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(max(arity, 1))])
    return call


def _array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The one Arrow array a UDF is given (DuckDB passes a vector as a chunked array)."""
    if isinstance(values, pa.Array):
        return values
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def to_arrow(result: Any, target: pa.DataType, rows: int | None, name: str) -> pa.Array:
    """``result`` (an Arrow array, NumPy array or sequence) as an Arrow array of ``target`` with
    ``rows`` values; a ValueError naming the function otherwise."""
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    array = result if isinstance(result, pa.Array) else pa.array(result, type=target)
    if array.type != target:
        array = array.cast(target)
    if rows is not None and len(array) != rows:
        raise ValueError(f"{name} returned {len(array)} values for {rows} rows")
    return array


_TYPES_CON: duckdb.DuckDBPyConnection | None = None


@functools.lru_cache(maxsize=256)
def arrow_type(t: SqlType) -> pa.DataType:
    """The Arrow type DuckDB exchanges values of ``t`` as."""
    global _TYPES_CON
    if _TYPES_CON is None:
        _TYPES_CON = duckdb.connect()
    return _TYPES_CON.sql(f"SELECT NULL::{t.duckdb()} AS v").to_arrow_table().schema.field(0).type


def register(con: duckdb.DuckDBPyConnection, inst: Instance) -> None:
    """Make ``inst`` callable on ``con`` and every connection to its database, committed at once
    (:func:`~nbstream.catalog.duck_functions.create`; ``_INSTANCES`` keeps its callable alive)."""
    params = [t.duckdb() for t in inst.params] or [ROWS_ARGUMENT_TYPE]
    duck_functions.create(con, inst.duck_name, inst.call, params, inst.returns.duckdb(), side_effects=inst.side_effects)


def attach(con: duckdb.DuckDBPyConnection) -> None:
    """Make every Instance callable on ``con`` (a connection or cursor an engine configures), those
    made later too."""
    with _LOCK:
        _CONNECTIONS.add(con)
        instances = list(_INSTANCES.values())
    if not instances:
        return
    present = duck_functions.present(con, "nbs_udf_")
    for inst in instances:
        if inst.duck_name not in present:
            register(con, inst)


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------


def scalar_instance(function: UserFunction, args: Sequence[SqlType]) -> Instance:
    """The Instance a call of the UDF or UDTF ``function`` with arguments of ``args`` types runs
    (a UDTF's returns an ARRAY of its declared element type)."""
    index, matched = pick(function.name, [o.signature for o in function.overloads], args)
    overload = function.overloads[index]
    returns = overload.return_type(matched)
    if function.kind == "table":
        returns = SqlType.array(returns)
    return instance(function.name, overload, matched.params, returns)
