"""Python aggregate functions (``@nbstream.udaf``): vectorised folds over Arrow list arrays, merged
with the stored state across batches, in persistent, windowed and pull queries; listed by
SHOW/DESCRIBE FUNCTION; a TABLE source and a bad registration refused."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

import nbstream
from nbstream import Engine
from nbstream.catalog import user_functions
from nbstream.errors import BindError, UdfError

PTS = ("CREATE STREAM pts (id STRING KEY, x INT, w DOUBLE) "
       "WITH (KAFKA_TOPIC='pts', VALUE_FORMAT='{f}', PARTITIONS=1);")
CALLS: list[int] = []


@pytest.fixture(autouse=True)
def udafs() -> Iterator[None]:
    """``TOTAL`` (a sum) and ``WMEAN`` (a weighted mean: two columns, a struct state and a result)."""
    @nbstream.udaf(params=["BIGINT"], state="BIGINT")
    class total:
        """The sum of the values."""

        @staticmethod
        def aggregate(states: pa.Array, values: pa.ListArray) -> pa.Array:
            assert isinstance(values, pa.ListArray)
            CALLS.append(len(states))
            sums = _per_row(len(states), values.value_parent_indices(), values.flatten(), pa.int64())
            return pc.add(pc.fill_null(states, 0), sums)

    @nbstream.udaf(params=["DOUBLE", "DOUBLE"], state="STRUCT<S DOUBLE, W DOUBLE>", returns="DOUBLE")
    class wmean:
        @staticmethod
        def aggregate(states: pa.Array, xs: pa.ListArray, ws: pa.ListArray) -> pa.Array:
            weighted = pc.multiply(xs.flatten(), ws.flatten())
            rows = xs.value_parent_indices()
            s = _per_row(len(states), rows, weighted)
            w = _per_row(len(states), rows, ws.flatten())
            old_s = pc.fill_null(pc.struct_field(states, "S"), 0.0)
            old_w = pc.fill_null(pc.struct_field(states, "W"), 0.0)
            return pa.StructArray.from_arrays([pc.add(old_s, s), pc.add(old_w, w)], names=["S", "W"])

        @staticmethod
        def result(states: pa.Array) -> pa.Array:
            return pc.divide(pc.struct_field(states, "S"), pc.struct_field(states, "W"))

    before = {"TOTAL", "WMEAN"}
    yield
    for name in before:
        user_functions.remove(name)


def _per_row(n: int, rows: pa.Array, values: pa.Array, kind: pa.DataType | None = None) -> pa.Array:
    """The sum of ``values`` per row index (0 for a row without values)."""
    table = pa.table({"r": rows, "v": values}).group_by("r").aggregate([("v", "sum")])
    zeros = pa.table({"r": pa.array(range(n), type=rows.type)})
    joined = zeros.join(table, "r").sort_by("r")
    return pc.fill_null(joined["v_sum"].combine_chunks(), 0).cast(kind or pa.float64())


def _engine(sql: str, batches: list[list[tuple[str, dict[str, object]]]], fmt: str = "JSON") -> Engine:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(PTS.format(f=fmt) + sql)
    for batch in batches:
        for key, value in batch:
            eng.produce("pts", value, key=key)
        eng.run_until_idle()
    return eng


def test_a_udaf_folds_each_record_into_the_stored_state_across_batches() -> None:
    CALLS.clear()
    eng = _engine("CREATE TABLE t AS SELECT id, TOTAL(x) AS s FROM pts GROUP BY id;",
                  [[("a", {"x": 1}), ("b", {"x": 2}), ("a", {"x": 3})], [("a", {"x": None}), ("a", {"x": 10})]])
    assert [(r.key, r.value["S"]) for r in eng.consume("T")] == [("a", 1), ("b", 2), ("a", 4), ("a", 4), ("a", 14)]
    assert len(CALLS) <= 4  # called per batch of rows, not per record


def test_a_udaf_of_two_columns_keeps_a_struct_state_and_maps_it_to_its_result() -> None:
    eng = _engine("CREATE TABLE t AS SELECT id, WMEAN(x, w) AS m FROM pts GROUP BY id;",
                  [[("a", {"x": 1, "w": 1.0}), ("a", {"x": 4, "w": 2.0})], [("a", {"x": 10, "w": 1.0})]])
    assert [r.value["M"] for r in eng.consume("T")] == pytest.approx([1.0, 3.0, 4.75])


def test_a_udaf_in_a_windowed_emit_final_query_and_read_by_a_pull_query() -> None:
    eng = _engine("CREATE TABLE t AS SELECT id, TOTAL(x) AS s FROM pts WINDOW TUMBLING (SIZE 10 SECONDS) "
                  "GROUP BY id EMIT FINAL;", [])
    for x, ts in [(1, 0), (2, 5_000), (5, 12_000), (0, 25_000)]:
        eng.produce("pts", {"x": x}, key="a", timestamp=ts)
    eng.run_until_idle()
    assert [(r.window, r.value["S"]) for r in eng.consume("T")] == [((0, 10_000), 3), ((10_000, 20_000), 5)]
    live = _engine("CREATE TABLE live AS SELECT id, TOTAL(x) AS s FROM pts GROUP BY id;",
                   [[("a", {"x": 1}), ("a", {"x": 2}), ("b", {"x": 7})]])
    pulled = live.query("SELECT id, s FROM live WHERE id = 'a';")
    assert pulled.to_dict("records") == [{"ID": "a", "S": 3}]


def test_show_and_describe_function_list_a_udaf() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    assert ("TOTAL", "AGGREGATE") in eng.execute("SHOW FUNCTIONS;")[0].rows
    described = dict(eng.execute("DESCRIBE FUNCTION total;")[0].rows)
    assert described["description"] == "The sum of the values."
    assert described["signatures"] == "['TOTAL(BIGINT) -> BIGINT']"


TB = "CREATE TABLE tb (id STRING PRIMARY KEY, g STRING, x INT) WITH (KAFKA_TOPIC='tb', VALUE_FORMAT='JSON');"


def _table_changes(query: str, batches: list[list[tuple[str, dict[str, object] | None]]]) -> list[object]:
    """(group, value of ``R``) for each record ``query`` writes over ``tb`` fed ``batches``."""
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(TB + query)
    for batch in batches:
        for key, value in batch:
            eng.produce("tb", value, key=key)
        eng.run_until_idle()
    return [(r.key, None if r.value is None else r.value["R"]) for r in eng.consume("T")]


def test_a_udaf_with_undo_aggregates_a_table_taking_out_a_changed_or_deleted_rows_value() -> None:
    @nbstream.udaf(params=["BIGINT"], state="BIGINT")
    class net:
        @staticmethod
        def aggregate(states: pa.Array, values: pa.ListArray) -> pa.Array:
            return pc.add(pc.fill_null(states, 0), _sums(states, values))

        @staticmethod
        def undo(states: pa.Array, values: pa.ListArray) -> pa.Array:
            return pc.subtract(pc.fill_null(states, 0), _sums(states, values))

    changes = _table_changes("CREATE TABLE t AS SELECT g, NET(x) AS r FROM tb GROUP BY g;", [
        [("a", {"g": "eu", "x": 1}), ("b", {"g": "eu", "x": 2})],
        [("a", {"g": "us", "x": 5}), ("b", None)]])
    assert changes == [("eu", 1), ("eu", 3), ("eu", 2), ("us", 5), ("eu", 0)]


def test_a_udafs_additions_and_undos_are_folded_in_the_tables_order() -> None:
    @nbstream.udaf(params=["STRING"], state="STRING")
    class trail:
        """Each call's values, marked + (aggregate) or - (undo)."""

        @staticmethod
        def aggregate(states: pa.Array, values: pa.ListArray) -> pa.Array:
            return _marked(states, values, "+")

        @staticmethod
        def undo(states: pa.Array, values: pa.ListArray) -> pa.Array:
            return _marked(states, values, "-")

    changes = _table_changes("CREATE TABLE t AS SELECT g, TRAIL(id) AS r FROM tb GROUP BY g;", [
        [("a", {"g": "eu"}), ("a", {"g": "eu"}), ("b", {"g": "eu"}), ("a", None)]])  # one batch
    assert changes == [("eu", "+a"), ("eu", "+a-a+a"), ("eu", "+a-a+a+b"), ("eu", "+a-a+a+b-a")]


def _sums(states: pa.Array, values: pa.ListArray) -> pa.Array:
    return _per_row(len(states), values.value_parent_indices(), values.flatten(), pa.int64())


def _marked(states: pa.Array, values: pa.ListArray, mark: str) -> pa.Array:
    return pa.array([(state or "") + "".join(mark + v for v in row)
                     for state, row in zip(states.to_pylist(), values.to_pylist(), strict=True)], type=pa.string())


def test_a_udaf_without_undo_cannot_aggregate_a_table_nor_take_literals_it_does_not_declare() -> None:
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(TB)
    with pytest.raises(BindError, match="cannot be applied to a table source"):
        eng.execute("CREATE TABLE t AS SELECT g, TOTAL(x) AS s FROM tb GROUP BY g;")
    with pytest.raises(BindError, match=r"takes literal parameters \(none\) after its columns, not 1"):
        _engine("CREATE TABLE t AS SELECT id, TOTAL(x, 3) AS s FROM pts GROUP BY id;", [])


def test_a_delimited_source_holds_a_scalar_state_but_not_a_struct_one() -> None:
    eng = _engine("CREATE TABLE t AS SELECT id, TOTAL(x) AS s FROM pts GROUP BY id;", [[("a", "2,1.0")]], "DELIMITED")
    assert [r.value for r in eng.consume("T")] == ["2"]
    with pytest.raises(BindError, match="intermediate type"):
        _engine("CREATE TABLE u AS SELECT id, WMEAN(x, w) AS m FROM pts GROUP BY id;", [], "DELIMITED")


def test_a_bad_udaf_registration_is_refused_naming_it() -> None:
    with pytest.raises(UdfError, match=r"nothing.*needs an aggregate"):
        nbstream.udaf("nothing", params=["BIGINT"], state="BIGINT")(object)
    with pytest.raises(UdfError, match="give it a result"):
        @nbstream.udaf("mismatch", params=["BIGINT"], state="BIGINT", returns="STRING")
        class mismatch:
            aggregate = staticmethod(lambda states, values: states)
    with pytest.raises(UdfError, match="need an initial"):
        @nbstream.udaf("uninitialised", params=["BIGINT"], state="BIGINT", init=["INT"])
        class uninitialised:
            aggregate = staticmethod(lambda states, values: states)
    with pytest.raises(UdfError, match="not both"):
        @nbstream.udaf("many", params=["BIGINT..."], state="BIGINT", init=["INT..."])
        class many:
            aggregate = staticmethod(lambda states, *values: states)
            initial = staticmethod(lambda *literals: 0)


def test_a_variadic_udaf_with_literal_parameters_starts_each_group_from_its_initial_state() -> None:
    @nbstream.udaf("count_from", params=["BIGINT..."], state="BIGINT", init=["INT"])
    class count_from:
        @staticmethod
        def aggregate(states: pa.Array, *lists: pa.ListArray) -> pa.Array:
            return pc.add(states, pc.list_value_length(lists[0]))

        @staticmethod
        def initial(start: int) -> int:
            return start

    try:
        eng = _engine("CREATE TABLE t AS SELECT id, COUNT_FROM(x, x, 100) AS n FROM pts GROUP BY id;",
                      [[("a", {"x": 1}), ("b", {"x": 2})], [("a", {"x": 3})]])
        assert [(r.key, r.value["N"]) for r in eng.consume("T")] == [("a", 101), ("b", 101), ("a", 102)]
        with pytest.raises(BindError, match="literal parameter 1 must be INTEGER"):
            _engine("CREATE TABLE u AS SELECT id, COUNT_FROM(x, 'one') AS n FROM pts GROUP BY id;", [])
    finally:
        user_functions.remove("COUNT_FROM")


def test_a_generic_udaf_states_its_type_with_the_parameters_type_variables() -> None:
    @nbstream.udaf("firsts", params=["A", "ANY..."], state="ARRAY<A>")
    class firsts:
        """The first arguments, in arrival order."""

        @staticmethod
        def aggregate(states: pa.ListArray, first: pa.ListArray, *others: pa.ListArray) -> pa.ListArray:
            olds = states.to_pylist()
            news = first.to_pylist()
            return pa.array([(old or []) + new for old, new in zip(olds, news, strict=True)], type=states.type)

    try:
        eng = _engine("CREATE TABLE t AS SELECT id, FIRSTS(w, x) AS ws, FIRSTS(x) AS xs FROM pts GROUP BY id;",
                      [[("a", {"x": 1, "w": 0.5}), ("a", {"x": 2, "w": 1.5})], [("a", {"x": 3, "w": None})]])
        assert [(r.value["WS"], r.value["XS"]) for r in eng.consume("T")] == [
            ([0.5], [1]), ([0.5, 1.5], [1, 2]), ([0.5, 1.5, None], [1, 2, 3])]
        described = dict(eng.execute("DESCRIBE FUNCTION firsts;")[0].rows)
        assert described["signatures"] == "['FIRSTS(A, ANY...) -> ARRAY<A>']"
        with pytest.raises(UdfError, match="type variable"):
            nbstream.udaf("unbound", params=["A"], state="ARRAY<B>")(firsts)
    finally:
        user_functions.remove("FIRSTS")
