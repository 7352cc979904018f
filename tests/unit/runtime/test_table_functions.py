"""Table functions (EXPLODE, CUBE_EXPLODE) in a query's SELECT list: one input record becomes one
output record per element, as in ksqlDB (``KudtfFlatMapper``; cases after ksqlDB's explode, cube
and table-functions query-validation tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest

from nbstream import Engine
from nbstream.errors import NbstreamError
from nbstream.plan.logical import StatelessPlan
from nbstream.plan.serde import plan_from_json, plan_to_json
from nbstream.runtime.explain import explain_plan

ORDERS = ("CREATE STREAM orders (id STRING KEY, items ARRAY<STRING>, qty ARRAY<INT>, note STRING) "
          "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);")


def run(query: str, *values: Mapping[str, object]) -> list[tuple[Any, Any]]:
    """The (key, value) records ``CREATE STREAM out AS <query>`` writes for orders ``values``
    (keys k0, k1, …)."""
    eng = Engine()
    eng.execute(ORDERS)
    eng.execute(f"CREATE STREAM out AS {query}")
    for i, value in enumerate(values):
        eng.produce("orders", value, key=f"k{i}")
    eng.run_until_idle()
    return [(r.key, r.value) for r in eng.consume("OUT")]


def test_explode_makes_one_record_per_element_with_the_other_columns_repeated() -> None:
    assert run("SELECT id, EXPLODE(items) AS item, note FROM orders;",
               {"items": ["a", "b"], "note": "n"}, {"items": ["c"], "note": "m"}) == [
        ("k0", {"ITEM": "a", "NOTE": "n"}), ("k0", {"ITEM": "b", "NOTE": "n"}), ("k1", {"ITEM": "c", "NOTE": "m"})]


def test_a_null_or_empty_list_makes_no_record() -> None:
    assert run("SELECT id, EXPLODE(items) AS item FROM orders;",
               {"items": None}, {"items": []}, {"items": ["x"]}) == [("k2", {"ITEM": "x"})]


def test_several_table_functions_zip_their_elements_and_pad_the_shorter_with_null() -> None:
    assert run("SELECT id, EXPLODE(items) AS item, EXPLODE(qty) AS n FROM orders;",
               {"items": ["a", "b", "c"], "qty": [1, 2]}) == [
        ("k0", {"ITEM": "a", "N": 1}), ("k0", {"ITEM": "b", "N": 2}), ("k0", {"ITEM": "c", "N": None})]


def test_an_expression_over_the_element_is_computed_per_output_record() -> None:
    assert run("SELECT id, EXPLODE(qty) * 10 AS tens, UCASE(EXPLODE(items)) AS up FROM orders;",
               {"items": ["a", "b"], "qty": [1, 2]}) == [
        ("k0", {"TENS": 10, "UP": "A"}), ("k0", {"TENS": 20, "UP": "B"})]


def test_where_filters_the_input_records_before_they_explode() -> None:
    assert run("SELECT id, EXPLODE(items) AS item FROM orders WHERE note = 'keep';",
               {"items": ["a", "b"], "note": "drop"}, {"items": ["c"], "note": "keep"}) == [("k1", {"ITEM": "c"})]


def test_an_unaliased_table_function_gets_a_generated_name() -> None:
    assert run("SELECT id, EXPLODE(items) FROM orders;", {"items": ["a"]}) == [("k0", {"KSQL_COL_0": "a"})]


def test_cube_explode_yields_every_combination_of_the_values_and_null_once_in_ksqldb_order() -> None:
    assert [v["C"] for _, v in run("SELECT id, CUBE_EXPLODE(qty) AS c FROM orders;", {"qty": [1, 2]})] == [
        [None, None], [None, 2], [1, None], [1, 2]]
    assert [v["C"] for _, v in run("SELECT id, CUBE_EXPLODE(qty) AS c FROM orders;", {"qty": [1, None]})] == [
        [None, None], [1, None]]


def test_records_keep_the_order_of_the_input_across_a_batch() -> None:
    values = [{"items": [f"{i}a", f"{i}b"]} for i in range(50)]
    items = [v["ITEM"] for _, v in run("SELECT id, EXPLODE(items) AS item FROM orders;", *values)]
    assert items == [f"{i}{s}" for i in range(50) for s in "ab"]


def test_a_push_query_explodes_too() -> None:
    eng = Engine()
    eng.execute(ORDERS)
    eng.produce("orders", {"items": ["a", "b"]}, key="k")
    frame = eng.query("SELECT id, EXPLODE(items) AS item FROM orders;")
    pd.testing.assert_frame_equal(frame, pd.DataFrame({"ID": ["k", "k"], "ITEM": ["a", "b"]}), check_dtype=False)


@pytest.mark.parametrize(("statement", "message"), [
    ("CREATE TABLE t AS SELECT id, COUNT(*) AS n, EXPLODE(items) AS i FROM orders GROUP BY id;",
     "Table functions cannot be used with aggregations"),
    ("CREATE STREAM o2 AS SELECT id, note FROM orders WHERE ARRAY_LENGTH(ARRAY[EXPLODE(items)]) > 0;",
     "can only be used in the SELECT list"),
    ("CREATE STREAM o3 AS SELECT id, EXPLODE(EXPLODE(ARRAY[items])) AS i FROM orders;",
     "can only be used in the SELECT list"),
    ("CREATE STREAM o4 AS SELECT id, EXPLODE(note) AS i FROM orders;",
     r"Function 'explode' does not accept parameters \(STRING\)"),
])
def test_table_functions_are_refused_where_ksqldb_refuses_them(statement: str, message: str) -> None:
    eng = Engine()
    eng.execute(ORDERS)
    with pytest.raises(NbstreamError, match=message):
        eng.execute(statement)


def test_a_table_source_is_not_supported_with_table_functions() -> None:
    eng = Engine()
    eng.execute("CREATE TABLE carts (id STRING PRIMARY KEY, items ARRAY<STRING>) "
                "WITH (KAFKA_TOPIC='carts', VALUE_FORMAT='JSON', PARTITIONS=1);")
    with pytest.raises(NbstreamError, match="Table source is not supported with table functions"):
        eng.execute("CREATE TABLE t AS SELECT id, EXPLODE(items) AS i FROM carts;")


def test_the_plan_keeps_the_ksqldb_call_beside_its_lowering_and_survives_json() -> None:
    eng = Engine()
    eng.execute(ORDERS)
    (result,) = eng.execute("CREATE STREAM out AS SELECT id, EXPLODE(items) AS item FROM orders;")
    assert result.query_id is not None
    plan = eng.queries.runner(result.query_id).query_plan
    assert isinstance(plan, StatelessPlan)
    [call] = plan.table_functions
    assert (call.name, call.sql, call.expression) == ("__tf0", '"ITEMS"', "EXPLODE(ITEMS)")
    assert plan_from_json(plan_to_json(plan)) == plan
    assert ("flat map", "__tf0 := each element of EXPLODE(ITEMS)") in explain_plan(plan)
