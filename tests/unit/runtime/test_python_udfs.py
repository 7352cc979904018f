"""Python UDFs and UDTFs (``@nbstream.udf``, ``@nbstream.udtf``) called from SQL: on whole Arrow
arrays, with ksqlDB's overload and widening rules, listed by SHOW/DESCRIBE FUNCTION, a failing
record sent to the processing log, and a bad registration refused at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from produced import EVERY_CHANGE  # type: ignore[import-not-found]

import nbstream
from nbstream import Engine
from nbstream.catalog import user_functions
from nbstream.errors import SqlTypeError, UdfError

POINTS = ("CREATE STREAM pts (id STRING KEY, x INT, y DOUBLE, line STRING, xs ARRAY<BIGINT>) "
          "WITH (KAFKA_TOPIC='pts', VALUE_FORMAT='JSON', PARTITIONS=1);")


@pytest.fixture(autouse=True)
def forget_user_functions() -> Iterator[None]:
    before = set(user_functions.names())
    yield
    for name in set(user_functions.names()) - before:
        user_functions.remove(name)


def engine(*values: Mapping[str, object]) -> Engine:
    """An engine with the stream ``pts`` holding ``values`` (keys k0, k1, …)."""
    eng = Engine(properties=EVERY_CHANGE)
    eng.execute(POINTS)
    eng.execute("SET 'auto.offset.reset' = 'earliest';")
    for i, value in enumerate(values):
        eng.produce("pts", value, key=f"k{i}")
    return eng


def output(eng: Engine, query: str) -> list[Any]:
    """The values ``CREATE STREAM out AS <query>`` writes."""
    eng.execute(f"CREATE STREAM out AS {query}")
    eng.run_until_idle()
    return [r.value for r in eng.consume("OUT")]


def test_a_udf_is_called_on_arrow_arrays_and_its_result_typed_as_declared() -> None:
    @nbstream.udf(params=["DOUBLE", "DOUBLE"], returns="DOUBLE")
    def hypot(x: pa.Array, y: pa.Array) -> pa.Array:
        assert isinstance(x, pa.Array) and isinstance(y, pa.Array)
        return pc.sqrt(pc.add(pc.multiply(x, x), pc.multiply(y, y)))

    eng = engine({"x": 3, "y": 4.0}, {"x": 5, "y": 12.0}, {"x": None, "y": 1.0})
    assert output(eng, "SELECT id, HYPOT(x, y) AS h FROM pts;") == [{"H": 5.0}, {"H": 13.0}, {"H": None}]


def test_a_udf_runs_once_per_vector_of_rows_not_once_per_row() -> None:
    calls: list[int] = []

    @nbstream.udf(params=["BIGINT"], returns="BIGINT")
    def twice(x: pa.Array) -> pa.Array:
        calls.append(len(x))
        return pc.multiply(x, 2)

    eng = engine(*({"x": i} for i in range(5000)))
    assert [v["T"] for v in output(eng, "SELECT id, TWICE(x) AS t FROM pts;")] == [2 * i for i in range(5000)]
    assert sum(calls) == 5000 and len(calls) <= 5000 // 2048 + 1


def test_a_grouping_udf_sees_each_record_once_and_the_records_it_keys_null_are_dropped() -> None:
    seen: list[str] = []

    @nbstream.udf(params=["STRING"], returns="STRING", deterministic=False)
    def every_other_null(lines: pa.Array) -> pa.Array:  # ksqlDB's BadUdf.returnNull, counting rows
        first = len(seen)
        seen.extend(lines.to_pylist())
        return pa.array([None if (first + i) % 2 == 0 else v for i, v in enumerate(lines.to_pylist())],
                        type=pa.string())

    eng = engine(*({"line": line} for line in ("d1", "d2", "d1", "d2", "d1")))
    eng.execute("CREATE TABLE out AS SELECT EVERY_OTHER_NULL(line), COUNT(*) FROM pts "
                "GROUP BY EVERY_OTHER_NULL(line);")
    eng.run_until_idle()
    assert seen == ["d1", "d2", "d1", "d2", "d1"]
    assert [(r.key, r.value) for r in eng.consume("OUT")] == [("d2", {"KSQL_COL_1": 1}), ("d2", {"KSQL_COL_1": 2})]


def test_a_udf_may_return_a_list_or_numpy_values() -> None:
    @nbstream.udf(params=["STRING"], returns="INTEGER")
    def word_count(lines: pa.Array) -> list[int | None]:
        return [None if line is None else len(line.split()) for line in lines.to_pylist()]

    eng = engine({"line": "a b c"}, {"line": None})
    assert output(eng, "SELECT id, WORD_COUNT(line) AS n FROM pts;") == [{"N": 3}, {"N": None}]


def test_the_overload_is_picked_as_ksqldb_does_exact_first_then_widening() -> None:
    @nbstream.udf("describe_arg", params=["INTEGER"], returns="STRING")
    def of_int(x: pa.Array) -> list[str]:
        return ["int"] * len(x)

    @nbstream.udf("describe_arg", params=["DOUBLE"], returns="STRING")
    def of_double(x: pa.Array) -> list[str]:
        return ["double"] * len(x)

    eng = engine({"x": 1, "y": 1.0})
    assert output(eng, "SELECT id, DESCRIBE_ARG(x) AS a, DESCRIBE_ARG(y) AS b, "
                       "DESCRIBE_ARG(CAST(x AS BIGINT)) AS c FROM pts;") == [{"A": "int", "B": "double", "C": "double"}]


def test_a_type_variable_binds_the_return_type_to_the_arguments() -> None:
    @nbstream.udf(params=["ARRAY<T>"], returns="T")
    def first(xs: pa.Array) -> pa.Array:
        return pc.list_element(xs, 0)

    eng = engine({"xs": [7, 8]})
    assert output(eng, "SELECT id, FIRST(xs) AS f, FIRST(ARRAY['a']) AS g FROM pts;") == [{"F": 7, "G": "a"}]


def test_arguments_no_overload_accepts_are_refused_with_the_alternatives() -> None:
    @nbstream.udf(params=["BIGINT"], returns="BIGINT")
    def plus_one(x: pa.Array) -> pa.Array:
        return pc.add(x, 1)

    eng = engine()
    with pytest.raises(SqlTypeError, match=r"Function 'PLUS_ONE' does not accept parameters \(STRING\)\.\n"
                                           r"Valid alternatives are:\nplus_one\(BIGINT\)"):
        eng.execute("CREATE STREAM out AS SELECT id, PLUS_ONE(line) AS p FROM pts;")


def test_a_record_the_udf_fails_on_goes_to_the_processing_log_and_the_others_through() -> None:
    @nbstream.udf(params=["BIGINT"], returns="BIGINT")
    def hundred_over(x: pa.Array) -> pa.Array:
        if pc.any(pc.equal(x, 0)).as_py():
            raise ZeroDivisionError("division by zero")
        return pc.divide(100, x)

    eng = engine({"x": 4}, {"x": 0}, {"x": 5})
    assert output(eng, "SELECT id, HUNDRED_OVER(x) AS q FROM pts;") == [{"Q": 25}, {"Q": 20}]
    [logged] = [r.value for r in eng.consume("KSQL_PROCESSING_LOG")]
    assert logged["MESSAGE"]["OFFSET"] == 1
    assert "ZeroDivisionError: division by zero" in logged["MESSAGE"]["ERRORMESSAGE"]


def test_a_udtf_emits_one_record_per_element_like_explode() -> None:
    @nbstream.udtf(params=["STRING"], returns="STRING")
    def split_words(lines: pa.Array) -> pa.Array:
        return pc.split_pattern(lines, " ")

    eng = engine({"line": "a b"}, {"line": None}, {"line": "c"})
    assert output(eng, "SELECT id, SPLIT_WORDS(line) AS w FROM pts;") == [{"W": "a"}, {"W": "b"}, {"W": "c"}]


def test_push_and_pull_queries_call_udfs_too() -> None:
    @nbstream.udf(params=["INTEGER"], returns="INTEGER")
    def negate(x: pa.Array) -> pa.Array:
        return pc.negate(x)

    eng = engine({"x": 1}, {"x": 2})
    pd.testing.assert_frame_equal(eng.query("SELECT NEGATE(x) AS n FROM pts;"), pd.DataFrame({"N": [-1, -2]}),
                                  check_dtype=False)
    runner = eng._transient_runner("SELECT NEGATE(x) AS n FROM pts EMIT CHANGES;", properties={
        "auto.offset.reset": "earliest"})
    rows = runner.fetch_rows()
    runner.con.close()
    assert rows is not None and rows.column("N").to_pylist() == [-1, -2]


def test_a_udf_defined_while_a_connection_is_busy_is_callable_everywhere() -> None:
    """A notebook cell defines a function while a push query's batch runs on its cursor: DuckDB
    refuses a busy connection any other call, so the function goes in through a cursor of its own."""
    eng = engine({"x": 1})
    busy = eng.con.cursor()
    user_functions.attach(busy)
    busy.execute("SELECT * FROM range(1000000)")  # a result not yet fetched: the connection is busy

    @nbstream.udf(params=["INTEGER"], returns="INTEGER")
    def twice(x: pa.Array) -> pa.Array:
        return pc.multiply(x, 2)

    assert eng.query("SELECT TWICE(x) AS y FROM pts;")["Y"].tolist() == [2]
    busy.close()


def test_show_and_describe_function_list_user_functions() -> None:
    @nbstream.udf(params=["STRING", "INTEGER..."], returns="STRING")
    def pad(s: pa.Array, *widths: pa.Array) -> pa.Array:
        """Pads a string."""
        return s

    eng = engine()
    assert ("PAD", "SCALAR") in eng.execute("SHOW FUNCTIONS;")[0].rows
    described = dict(eng.execute("DESCRIBE FUNCTION pad;")[0].rows)
    assert described["signatures"] == "['PAD(STRING, INTEGER...) -> STRING']"
    assert described["description"] == "Pads a string."


def test_registering_again_with_the_same_types_replaces_the_function() -> None:
    @nbstream.udf("version", params=["INTEGER"], returns="INTEGER")
    def v1(x: pa.Array) -> pa.Array:
        return pc.add(x, 1)

    @nbstream.udf("version", params=["INTEGER"], returns="INTEGER")
    def v2(x: pa.Array) -> pa.Array:
        return pc.add(x, 2)

    assert output(engine({"x": 0}), "SELECT id, VERSION(x) AS v FROM pts;") == [{"V": 2}]


@pytest.mark.parametrize(("register", "message"), [
    (lambda: nbstream.udf("abs", params=["INTEGER"], returns="INTEGER")(lambda x: x),
     "`ABS` is one of ksqlDB's built-in functions"),
    (lambda: nbstream.udf("my-fn", params=["INTEGER"], returns="INTEGER")(lambda x: x),
     "a function name must be an identifier"),
    (lambda: nbstream.udf("f", params=["INTEGR"], returns="INTEGER")(lambda x: x), "INTEGR"),
    (lambda: nbstream.udf("f", params="INTEGER", returns="INTEGER")(lambda x: x), "params is a list of types"),
    (lambda: nbstream.udf("f", params=["INTEGER", "INTEGER"], returns="INTEGER")(lambda x: x),
     "cannot take the 2 declared parameter"),
    (lambda: nbstream.udf("f", params=["ARRAY<T>"], returns="U")(lambda x: x), "type variable.*U"),
    (lambda: nbstream.udf(lambda x: x), "needs its SQL types"),  # type: ignore[arg-type]
])
def test_a_bad_registration_is_refused_at_once_naming_the_function(register: object, message: str) -> None:
    with pytest.raises(UdfError, match=message):
        register()  # type: ignore[operator]


def test_a_udf_without_parameters_is_called_with_the_row_count() -> None:
    calls: list[int] = []

    @nbstream.udf(params=[], returns="BIGINT", deterministic=False)
    def serial(rows: int) -> pa.Array:
        calls.append(rows)
        start = sum(calls) - rows
        return pa.array(range(start, start + rows), type=pa.int64())

    eng = engine({"x": 1}, {"x": 2}, {"x": 3})
    assert [v["N"] for v in output(eng, "SELECT id, SERIAL() AS n FROM pts;")] == [0, 1, 2]
    assert calls == [3]
    assert eng.query("SELECT SERIAL() AS n FROM pts;")["N"].tolist() == [3, 4, 5]
    with pytest.raises(UdfError, match="without parameters is called with the row count"):
        nbstream.udf("nothing", params=[], returns="BIGINT")(lambda: 1)
