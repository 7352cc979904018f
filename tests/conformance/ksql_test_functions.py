"""The functions ksqlDB's query-validation tests call that exist only in ksqlDB's test suite.

ksqlDB runs its QTT files with test-only UDFs on its class path (``TEST_UDF``, ``TEST_UDTF``,
``BAD_UDF``, ``WHENCONDITION``…). This module declares equivalents with nbstream's public
``@nbstream.udf`` / ``@nbstream.udtf`` — so those cases also test the user-function machinery —
and exposes :class:`Engine` for the shared runner (``--engine ksql_test_functions:Engine`` with
this folder on ``PYTHONPATH``). Each function follows the contract its cases state: the overload
it picks names itself, a function that throws fails its row (the row goes to the processing log).

``BAD_UDF(STRING)`` returns NULL for every other row it is called with, counted across calls (ksqlDB's
``returnNull`` counts its invocations); each :class:`Engine` starts the count again, as ksqlDB compiles
a new instance of a UDF for each query. These are test fixtures: some of them look at values one
by one, which nbstream's own functions never do.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import nbstream
from nbstream.catalog.types import SqlType

__all__ = ["Engine"]


def _same(values: pa.Array, text: str) -> pa.Array:
    return pa.array([text] * len(values), type=pa.string())


# -- TEST_UDF: each overload returns its own name (ksqlDB's TestUdf) ----------------------------------

@nbstream.udf("TEST_UDF", params=["INT", "STRING"], returns="STRING")
def do_stuff_int_string(a: pa.Array, b: pa.Array) -> pa.Array:
    return _same(a, "doStuffIntString")


@nbstream.udf("TEST_UDF", params=["BIGINT", "STRING"], returns="STRING")
def do_stuff_long_string(a: pa.Array, b: pa.Array) -> pa.Array:
    return _same(a, "doStuffLongString")


@nbstream.udf("TEST_UDF", params=["BIGINT", "BIGINT", "STRING"], returns="STRING")
def do_stuff_long_long_string(a: pa.Array, b: pa.Array, c: pa.Array) -> pa.Array:
    return _same(a, "doStuffLongLongString")


@nbstream.udf("TEST_UDF", params=["BIGINT..."], returns="STRING")
def do_stuff_long_varargs(*longs: pa.Array) -> pa.Array:
    return _same(longs[0], "doStuffLongVarargs")


@nbstream.udf("TEST_UDF", params=[], returns="STRUCT<A STRING>")
def return_struct_stuff(rows: int) -> pa.Array:
    return pa.array([{"A": "foo"}] * rows, type=pa.struct([("A", pa.string())]))


@nbstream.udf("TEST_UDF", params=["STRUCT<A STRING>"], returns="STRING")
def do_stuff_struct(struct: pa.Array) -> pa.Array:
    return pc.struct_field(struct, "A")


@nbstream.udf("TOSTRUCT", params=["STRING"], returns="STRUCT<A STRING>")
def to_struct(values: pa.Array) -> pa.Array:
    return pa.StructArray.from_arrays([values], names=["A"])


# -- CASE laziness: a call that should not be evaluated throws ----------------------------------------

def _evaluated(should_be: pa.Array, what: str) -> None:
    if not all(v for v in should_be.to_pylist()):
        raise RuntimeError(f"{what} was evaluated but should not have been")


@nbstream.udf("WHENCONDITION", params=["BOOLEAN", "BOOLEAN"], returns="BOOLEAN", deterministic=False)
def when_condition(result: pa.Array, should_be_evaluated: pa.Array) -> pa.Array:
    _evaluated(should_be_evaluated, "WHENCONDITION")
    return result


@nbstream.udf("WHENRESULT", params=["INT", "BOOLEAN"], returns="INT", deterministic=False)
def when_result(result: pa.Array, should_be_evaluated: pa.Array) -> pa.Array:
    _evaluated(should_be_evaluated, "WHENRESULT")
    return result


# -- BAD_UDF: throws (ksqlDB's BadUdf) -------------------------------------------------------------------

@nbstream.udf("BAD_UDF", params=["INT"], returns="INT")
def bad_int(values: pa.Array) -> pa.Array:
    raise RuntimeError("boom!")


@nbstream.udf("BAD_UDF", params=["BOOLEAN"], returns="INT")
def bad_boolean(should_throw: pa.Array) -> pa.Array:
    if any(should_throw.to_pylist()):
        raise RuntimeError("boom!")
    return pa.array([0] * len(should_throw), type=pa.int32())


class _EveryOtherNull:
    """BAD_UDF(STRING) (ksqlDB's ``returnNull``): of all the rows it was called with, those at an even
    position are NULL, the others their argument."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, values: pa.Array) -> pa.Array:
        positions = pa.array(range(self.rows, self.rows + len(values)), type=pa.int64())
        self.rows += len(values)
        return pc.if_else(pc.equal(pc.bit_wise_and(positions, 1), 0), pa.scalar(None, type=pa.string()), values)


_every_other_null = _EveryOtherNull()
nbstream.udf("BAD_UDF", params=["STRING"], returns="STRING", deterministic=False)(_every_other_null)


#: ksqlDB's tests run on Kafka Streams' TopologyTestDriver, which commits after every record, so its
#: record cache writes every change: as nbstream does with the cache off.
QTT_PROPERTIES = {"cache.max.bytes.buffering": 0}


class Engine(nbstream.Engine):
    """nbstream's engine with the record cache off (:data:`QTT_PROPERTIES`, unless a case sets
    it); each one starts BAD_UDF(STRING)'s count again."""

    def __init__(self, *args: Any, properties: dict[str, Any] | None = None, **kwargs: Any) -> None:
        _every_other_null.rows = 0
        super().__init__(*args, properties={**QTT_PROPERTIES, **(properties or {})}, **kwargs)


# -- table functions ----------------------------------------------------------------------------------

def _one_each(values: pa.Array) -> pa.Array:
    """Each row's value as a one-element list."""
    return pa.ListArray.from_arrays(pa.array(range(len(values) + 1), type=pa.int32()), values)


for _type in ("INT", "BIGINT", "DOUBLE", "BOOLEAN", "STRING", "DECIMAL", "STRUCT<A VARCHAR>"):
    # ksqlDB's test UDTF widens a DECIMAL's precision by 10 digits (its schema provider)
    _returns: Any = _type if _type != "DECIMAL" else (
        lambda types: SqlType.decimal(min((types[0].precision or 0) + 10, 38), types[0].scale or 0))
    nbstream.udtf("TEST_UDTF", params=[_type], returns=_returns)(_one_each)


def _java_text(value: Any) -> str:
    """A value as Java's ``toString`` writes it (the 7-argument TEST_UDTF returns those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "Struct{" + ",".join(f"{k}={_java_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Decimal):
        return f"{value:.10f}"
    return str(value)


def _texts(*columns: pa.Array) -> pa.Array:
    """One list per row: the Java text of each argument (of each element of an ARRAY or MAP argument)."""
    rows = []
    for row in zip(*(c.to_pylist() for c in columns), strict=True):
        texts = []
        for value in row:
            if isinstance(value, list) and value and isinstance(value[0], tuple):  # a MAP: its values
                value = [v for _, v in value]
            texts += [_java_text(v) for v in (value if isinstance(value, list) else [value])]
        rows.append(texts)
    return pa.array(rows, type=pa.list_(pa.string()))


for _shape in ("{}", "ARRAY<{}>", "MAP<STRING, {}>"):
    _params = [_shape.format(t) for t in ("INT", "BIGINT", "DOUBLE", "BOOLEAN", "STRING", "DECIMAL(20, 10)",
                                          "STRUCT<A VARCHAR>")]
    nbstream.udtf("TEST_UDTF", params=_params, returns="STRING")(_texts)


@nbstream.udtf("THROWING_UDTF", params=["BOOLEAN"], returns="BOOLEAN")
def throwing_udtf(should_throw: pa.Array) -> pa.Array:
    if any(should_throw.to_pylist()):
        raise RuntimeError("boom!")
    return _one_each(should_throw)


# -- aggregate functions (ksqlDB's test UDAFs) ------------------------------------------------------------

def _row_totals(n: int, lists: tuple[pa.ListArray, ...]) -> pa.Array:
    """Per row: the sum of its numbers and of the lengths of its strings (nulls count 0)."""
    totals = pa.array([0] * n, type=pa.int64())
    for values in lists:
        flat = values.flatten()
        if pa.types.is_string(flat.type):
            flat = pc.utf8_length(flat)
        grouped = pa.table({"r": values.value_parent_indices(), "v": pc.cast(flat, pa.int64())})
        sums = grouped.group_by("r").aggregate([("v", "sum")])
        per_row = pa.table({"r": pa.array(range(n), type=pa.int64())}).join(sums, "r").sort_by("r")
        totals = pc.add(totals, pc.fill_null(per_row["v_sum"].combine_chunks(), 0))
    return totals


def _length_total(*literals: Any) -> int:
    """An initial state: the numbers plus the lengths of the strings."""
    return sum(len(v) if isinstance(v, str) else int(v) for v in literals)


class _Totals:
    """State: a BIGINT total of the numbers and string lengths of every column argument."""

    @staticmethod
    def aggregate(states: pa.Array, *lists: pa.ListArray) -> pa.Array:
        return pc.add(pc.fill_null(states, 0), _row_totals(len(states), lists))

    initial = staticmethod(_length_total)


for _name, _columns, _init in [
    ("MULTI_ARG", ["BIGINT", "STRING"], ["INT", "STRING..."]),
    ("FOUR_ARG", ["BIGINT", "STRING", "STRING", "STRING"], ["INT", "STRING..."]),
    ("FIVE_ARG", ["BIGINT", "STRING", "STRING", "STRING", "INT"], ["INT", "STRING..."]),
    ("VAR_ARG", ["BIGINT", "STRING..."], []),
    ("MID_VAR_ARG", ["BIGINT", "STRING..."], ["INT", "INT"]),
]:
    nbstream.udaf(_name, params=_columns, state="BIGINT", init=_init)(_Totals)


def _append_where_all_present(states: pa.ListArray, first: pa.ListArray, *others: pa.ListArray) -> pa.ListArray:
    """Each row's state (an empty list at first) with its ``first`` values appended where the
    same record's values of ``others`` are all non-null, in arrival order."""
    present = pc.is_valid(first.flatten())
    for values in others:
        present = pc.and_(present, pc.is_valid(values.flatten()))
    rows = np.concatenate([states.value_parent_indices().to_numpy(),
                           first.value_parent_indices().filter(present).to_numpy()])
    order = np.argsort(rows, kind="stable")  # a row's earlier values first, then its new ones
    values = pa.concat_arrays([states.flatten(), first.flatten().filter(present)]).take(pa.array(order))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(states)))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


@nbstream.udaf("GENERIC_VAR_ARG", params=["A", "B", "C..."], state="ARRAY<A>")
class _GenericVarArg:
    """ksqlDB's GenericVarArgUdaf: the first arguments of the records whose arguments are all non-null."""

    aggregate = staticmethod(_append_where_all_present)


@nbstream.udaf("OBJ_COL_ARG", params=["INT", "ANY..."], state="ARRAY<INT>")
class _ObjVarColArg:
    """ksqlDB's ObjVarColArgUdaf: the same, with an INT first argument and any others."""

    aggregate = staticmethod(_append_where_all_present)


@nbstream.udaf("TEST_UDAF", params=["BIGINT"], state="BIGINT")
class _TestUdafSum:
    """ksqlDB's TestUdaf.createSumLong, a TableUdaf: its undo subtracts."""

    @staticmethod
    def aggregate(states: pa.Array, values: pa.ListArray) -> pa.Array:
        return pc.add(pc.fill_null(states, 0), _row_totals(len(states), (values,)))

    @staticmethod
    def undo(states: pa.Array, values: pa.ListArray) -> pa.Array:
        return pc.subtract(pc.fill_null(states, 0), _row_totals(len(states), (values,)))


@nbstream.udaf("TEST_UDAF", params=["STRUCT<A INT, B INT>"], state="STRUCT<A INT, B INT>")
class _TestUdafStruct:
    @staticmethod
    def aggregate(states: pa.Array, values: pa.ListArray) -> pa.Array:
        n = len(states)
        fields = []
        for field in ("A", "B"):
            column = pa.ListArray.from_arrays(values.offsets, pc.struct_field(values.flatten(), field))
            before = pc.fill_null(pc.struct_field(states, field), 0)
            fields.append(pc.cast(pc.add(before, _row_totals(n, (column,))), pa.int32()))
        return pa.StructArray.from_arrays(fields, names=["A", "B"])
