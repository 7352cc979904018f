"""User-defined aggregate functions (``@nbstream.udaf``) as aggregate slots.

A UDAF declares its parameter types, the type of its state and of its result, and two vectorised
Python functions (see :func:`nbstream.udfs.udaf`):

* ``aggregate(states, *values)``: ``states`` holds one state per row (null: no value folded yet)
  and ``values`` one Arrow ``ListArray`` per parameter — the values to fold into that row's state,
  in arrival order (possibly none). It returns the new states, one per row;
* ``result(states)`` (optional): the function's value of each state (default: the state itself);
* ``undo(states, *values)`` (optional): like ``aggregate``, the states with the listed values
  taken out again. With it the UDAF can aggregate a TABLE, as ksqlDB's ``TableUdaf``.

It runs as one slot of :mod:`nbstream.physical.aggregates`, typed ``STRUCT(v <args>, s <state>)[]``:
the batch's rows of a group are collected with DuckDB's ``list`` (a running list per row for EMIT
CHANGES), and the merge calls ``aggregate`` through a DuckDB Arrow function with the stored state
and that list, keeping the new state as the list's one element. So Python sees whole Arrow arrays,
never one call per record. A batch's k rows of one group pass k·(k+1)/2 values in all for EMIT
CHANGES (each row's running list), k for EMIT FINAL. A UDAF without ``undo`` cannot aggregate a
TABLE, as ksqlDB's plain ``Udaf``.

Over a TABLE, a row's batch list holds signed values: +1 a table row's value added, -1 one
retracted. They are folded in order, as ksqlDB calls ``aggregate`` and ``undo`` record by record,
but by rounds over all rows at once: round r takes each row's r-th run of values of one sign, and
passes its added ones to ``aggregate``, its retracted ones to ``undo`` (other rows get empty lists).
A batch takes as many rounds as a row of it has runs: two per change of a table row in its group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbstream.catalog import user_functions
from nbstream.catalog.signatures import Signature, parse_pattern, pick, substitute
from nbstream.catalog.types import INTEGER, SqlType, parse_type
from nbstream.catalog.user_functions import Overload, UserFunction
from nbstream.errors import BindError


@dataclass(frozen=True)
class AggregateImpl:
    """What ``@nbstream.udaf`` declares beside the signature: the state type and the two functions."""

    state: str
    aggregate: Callable[..., Any]
    result: Callable[[pa.Array], Any] | None = None
    #: Types of the literal parameters a call ends with (the last may end in ``...``), and the
    #: function making the initial state of them (``initial(*literals)`` → one state value).
    init: tuple[str, ...] = ()
    initial: Callable[..., Any] | None = None
    #: ``undo(states, *values)``: the states with the values taken out (None: it cannot aggregate a TABLE)
    undo: Callable[..., Any] | None = None

    def __call__(self, states: pa.Array, *values: pa.ListArray) -> Any:
        """The overload's function: ``aggregate``."""
        return self.aggregate(states, *values)


def _impl(overload: Overload) -> AggregateImpl:
    impl = overload.impl
    assert isinstance(impl, AggregateImpl), f"not an aggregate function: {impl!r}"
    return impl


@dataclass(frozen=True)
class UserAggregateCall:
    """A UDAF resolved for concrete argument types: the slot's SQL pieces."""

    name: str
    params: tuple[SqlType, ...]
    slot_type: str  # DuckDB type of the slot
    batch: str  # ``list(…)`` over the call's argument ``{0}``
    merge: str  # ``{s}``, ``{b}`` → the slot
    result: str  # ``{s0}`` → the value
    returns: SqlType
    #: Over a TABLE (a UDAF with ``undo``): the batch of signed values, its type, and its merge
    signed_batch: str | None = None
    signed_type: str | None = None
    signed_merge: str | None = None


def column_count(function: UserFunction, operands: int) -> int:
    """How many of a call's ``operands`` are column arguments: the first overload's parameters, or
    with a variable number of them, every operand but the literal parameters (``init``)."""
    overload = function.overloads[0]
    if overload.signature.variadic:
        return max(operands - len(_impl(overload).init), 1)
    return len(overload.signature.params)


def _initial_state(function: UserFunction, impl: AggregateImpl, literals: list[object]) -> Any:
    """The state a group starts from: ``initial(*literals)``, checked against the declared ``init``."""
    fixed = [t for t in impl.init if not t.endswith("...")]
    variadic = len(fixed) < len(impl.init)
    if len(literals) < len(fixed) or (len(literals) > len(fixed) and not variadic):
        declared = ", ".join(impl.init) or "none"
        raise BindError(f"{function.name} takes literal parameters ({declared}) after its columns, "
                        f"not {len(literals)}")
    for i, value in enumerate(literals):
        expected = parse_type((impl.init[min(i, len(impl.init) - 1)]).removesuffix("..."))
        if not _fits(value, expected):
            raise BindError(f"{function.name}: literal parameter {i + 1} must be {expected}, not {value!r}")
    if impl.initial is None:
        return None
    return impl.initial(*literals)


def _fits(value: object, expected: SqlType) -> bool:
    if expected.name in ("INTEGER", "BIGINT"):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected.name in ("DOUBLE", "DECIMAL"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected.name == "STRING":
        return isinstance(value, str)
    if expected.name == "BOOLEAN":
        return isinstance(value, bool)
    return False


def state_is_nested(function: UserFunction) -> bool:
    """Whether the UDAF's declared state is a STRUCT, ARRAY or MAP (ksqlDB's intermediate type)."""
    state = parse_pattern(_impl(function.overloads[0]).state)
    return state.kind in ("array", "map") or (state.type is not None and state.type.name in ("STRUCT", "ARRAY", "MAP"))


def resolve(function: UserFunction, args: list[SqlType], literals: list[object]) -> UserAggregateCall:
    """The slot of ``function`` called with columns of ``args`` types (ksqlDB's overload rules) and
    the ``literals`` that follow them."""
    index, matched = pick(function.name, [o.signature for o in function.overloads], args)
    overload = function.overloads[index]
    impl = _impl(overload)
    state = substitute(parse_pattern(impl.state), matched.bindings)
    initial = _initial_state(function, impl, literals)
    returns = overload.return_type(matched)
    params = matched.params
    value = params[0] if len(params) == 1 else SqlType.struct([(f"a{i}", t) for i, t in enumerate(params)])
    slot = SqlType.array(SqlType.struct([("v", value), ("s", state)]))
    fold = user_functions.instance(function.name, _fold_overload(overload, params, initial), [slot, slot], slot)
    cast = (f"CAST({{0}} AS {value.duckdb()})" if len(params) == 1 else
            "{" + ", ".join(f"'a{i}': CAST({{0}}.a{i} AS {t.duckdb()})" for i, t in enumerate(params)) + "}")
    batch = f"list({{'v': {cast}, 's': NULL::{state.duckdb()}}} ORDER BY __ord)"
    final = "(({s0})[1]).s"
    if impl.result is not None:
        mapped = user_functions.instance(function.name, _result_overload(overload), [state], returns)
        final = f"{mapped.duck_name}({final})"
    call = UserAggregateCall(function.name, tuple(params), slot.duckdb(), batch,
                             f"{fold.duck_name}({{s}}, {{b}})", final, returns)
    if impl.undo is None:
        return call
    signed = SqlType.array(SqlType.struct([("v", value), ("s", state), ("n", INTEGER)]))
    replay = user_functions.instance(function.name, _fold_overload(overload, params, initial, signed=True),
                                     [slot, signed], slot)
    return replace(call, signed_batch=f"list({{'v': {cast}, 's': NULL::{state.duckdb()}, 'n': __sign}} "
                                      "ORDER BY __ord)",
                   signed_type=signed.duckdb(), signed_merge=f"{replay.duck_name}({{s}}, {{b}})")


#: The DuckDB-side Overloads made for each UDAF overload (kept beside it: ids are unique while it lives).
_FOLDS: dict[tuple[int, tuple[SqlType, ...], str, bool], tuple[Overload, Overload]] = {}
_RESULTS: dict[int, tuple[Overload, Overload]] = {}


def _fold_overload(overload: Overload, params: tuple[SqlType, ...], initial: Any, *, signed: bool = False
                   ) -> Overload:
    """An Overload whose function merges a slot's stored and batch lists — of signed values when
    ``signed`` (a TABLE's) — (one object per UDAF overload, parameter types, initial state and
    kind of batch, so :func:`user_functions.instance` reuses its DuckDB function)."""
    key = (id(overload), params, repr(initial), signed)
    if key not in _FOLDS or _FOLDS[key][0] is not overload:
        impl = _impl(overload)
        arity = len(params)

        def fold(stored: pa.Array, batch: pa.Array) -> pa.Array:
            states = _first_states(stored, initial)
            new = _replay(impl, arity, states, batch) if signed else \
                impl.aggregate(states, *_value_lists(batch, arity))
            return _slot_of(stored, batch, new)

        _FOLDS[key] = (overload, Overload(Signature.of(["ANY", "ANY"], None), fold))
    return _FOLDS[key][1]


def _result_overload(overload: Overload) -> Overload:
    """An Overload calling the UDAF's ``result`` (see :func:`_fold_overload`)."""
    if id(overload) not in _RESULTS or _RESULTS[id(overload)][0] is not overload:
        result = _impl(overload).result
        assert result is not None
        _RESULTS[id(overload)] = (overload, Overload(Signature.of(["ANY"], None), result))
    return _RESULTS[id(overload)][1]


def _slot_of(stored: pa.Array, batch: pa.Array, new: Any) -> pa.Array:
    """The new states ``new`` as one-element slot lists (null where both ``stored`` and ``batch`` are)."""
    target = stored.type.value_type.field("s").type
    new = user_functions.to_arrow(new, target, len(stored), "UDAF aggregate")
    empty = pa.nulls(len(new), type=stored.type.value_type.field("v").type)
    element = pa.StructArray.from_arrays([empty, new], fields=list(stored.type.value_type))
    offsets = pa.array(range(len(new) + 1), type=pa.int32())
    both_null = pc.and_(pc.is_null(stored), pc.is_null(batch))
    return pa.ListArray.from_arrays(offsets, element, mask=both_null)


def _first_states(stored: pa.Array, initial: Any) -> pa.Array:
    """The state held by each stored slot (``initial`` where there is none yet)."""
    state_type = stored.type.value_type.field("s").type
    if len(stored) == 0:
        return pa.array([], type=state_type)
    first = pc.list_element(pc.if_else(pc.is_null(stored), pa.scalar([None], type=stored.type), stored), 0)
    states = pc.struct_field(first, "s")
    return states if initial is None else pc.fill_null(states, pa.scalar(initial, type=states.type))


def _batch_lists(batch: pa.Array) -> pa.ListArray:
    """``batch`` as one ListArray whose offsets start at 0 (an empty list for a null batch)."""
    filled = pc.if_else(pc.is_null(batch), pa.scalar([], type=batch.type), batch)
    lists = filled.combine_chunks() if isinstance(filled, pa.ChunkedArray) else filled
    return pa.ListArray.from_arrays(pc.subtract(lists.offsets, lists.offsets[0]), lists.flatten())


def _value_lists(batch: pa.Array, arity: int) -> list[pa.ListArray]:
    """One ListArray per parameter: each row's batch values (an empty list for a null batch)."""
    lists = _batch_lists(batch)
    return _parameter_lists(lists.offsets, pc.struct_field(lists.values, "v"), arity)


def _parameter_lists(offsets: pa.Array, values: pa.Array, arity: int) -> list[pa.ListArray]:
    """The rows' ``values`` (delimited by ``offsets``) as one ListArray per parameter."""
    columns = [values] if arity == 1 else [pc.struct_field(values, f"a{i}") for i in range(arity)]
    return [pa.ListArray.from_arrays(offsets, c) for c in columns]


def _replay(impl: AggregateImpl, arity: int, states: pa.Array, batch: pa.Array) -> pa.Array:
    """``states`` with each row's signed batch values folded in order: by rounds of one run of
    values of one sign per row, added ones through ``aggregate``, retracted ones through ``undo``."""
    assert impl.undo is not None
    lists = _batch_lists(batch)
    parents = lists.value_parent_indices().to_numpy()
    signs = pc.struct_field(lists.values, "n").to_numpy(zero_copy_only=False)
    rounds = _run_numbers(parents, signs, lists.offsets.to_numpy())
    values = pc.struct_field(lists.values, "v")
    for number in range(int(rounds.max(initial=-1)) + 1):
        for fold, sign in ((impl.aggregate, 1), (impl.undo, -1)):
            chosen = (rounds == number) & (signs == sign)
            counts = np.bincount(parents[chosen], minlength=len(states))
            offsets = pa.array(np.concatenate(([0], np.cumsum(counts))), type=pa.int32())
            new = fold(states, *_parameter_lists(offsets, values.filter(pa.array(chosen)), arity))
            states = user_functions.to_arrow(new, states.type, len(states), "UDAF aggregate")
    return states


def _run_numbers(parents: np.ndarray, signs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """For each value of the rows' lists (its row ``parents``, its sign ``signs``): the number, in
    its row, of its run of values of one sign (0 for the row's first run)."""
    starts = np.ones(len(parents), dtype=bool)
    starts[1:] = (parents[1:] != parents[:-1]) | (signs[1:] != signs[:-1])
    runs = np.cumsum(starts) - 1
    return runs - runs[offsets[parents]] if len(parents) else runs
