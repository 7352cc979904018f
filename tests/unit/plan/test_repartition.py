"""PARTITION BY re-keys a stream by expressions of its input (ksqlDB semantics)."""

from __future__ import annotations

import pytest

from nbstream.errors import BindError, NbstreamError
from nbstream.runtime.engine import Engine

SOURCE = ("CREATE STREAM INPUT (ID INT KEY, NAME STRING, AGE INT) "
          "WITH (kafka_topic='input', value_format='JSON', partitions=1);")


def run(query: str, *records: tuple[object, object]) -> tuple[Engine, list[tuple[object, object]]]:
    eng = Engine()
    eng.execute(SOURCE)
    eng.execute(query)
    for key, value in records:
        eng.produce("input", value, key=key, timestamp=7)
    eng.run_until_idle()
    return eng, [(r.key, r.value) for r in eng.consume("OUTPUT")]


def test_a_value_column_becomes_the_key_and_the_old_key_moves_into_the_value() -> None:
    eng, out = run("CREATE STREAM OUTPUT AS SELECT * FROM INPUT PARTITION BY NAME;", (10, {"NAME": "bob", "AGE": 22}))
    assert out == [("bob", {"AGE": 22, "ID": 10})]
    assert eng.describe_source("OUTPUT")["schema"] == "`NAME` STRING KEY, `AGE` INTEGER, `ID` INTEGER"


def test_the_projection_item_equal_to_the_expression_is_the_key_and_keeps_its_alias() -> None:
    eng, out = run("CREATE STREAM OUTPUT AS SELECT ID, UCASE(NAME) AS K FROM INPUT PARTITION BY UCASE(NAME);",
                   (1, {"NAME": "bob", "AGE": 3}))
    assert out == [("BOB", {"ID": 1})]
    assert str(eng.catalog.get("OUTPUT").schema.key[0].name) == "K"


def test_tombstones_keep_their_key_columns_and_stay_tombstones() -> None:
    _, out = run("CREATE STREAM OUTPUT AS SELECT ID + 1 AS K, NAME FROM INPUT PARTITION BY ID + 1;", (1, None))
    assert out == [(2, None)]


def test_partition_by_null_gives_a_keyless_result_with_key_format_none() -> None:
    eng, out = run("CREATE STREAM OUTPUT AS SELECT ID, NAME FROM INPUT PARTITION BY NULL;", (1, {"NAME": "a"}))
    assert out == [(None, {"ID": 1, "NAME": "a"})]
    assert eng.describe_source("OUTPUT")["key_format"] == "NONE"


@pytest.mark.parametrize(("query", "message"), [
    ("SELECT ID, NAME FROM INPUT PARTITION BY AGE", "must include the partitioning expression INPUT.AGE"),
    ("SELECT NAME, NAME AS N2, ID FROM INPUT PARTITION BY NAME", "key column (`NAME`) more than once"),
    ("SELECT AGE AS X, ID FROM INPUT PARTITION BY X", "PARTITION BY column 'X' cannot be resolved"),
    ("SELECT * FROM INPUT PARTITION BY NULL, ID", "multiple columns including NULL"),
    ("SELECT * FROM INPUT PARTITION BY ()", "at least one expression"),
    ("SELECT * FROM INPUT PARTITION BY NAME AND AGE", "Syntax Error"),
])
def test_invalid_partition_by_is_rejected(query: str, message: str) -> None:
    eng = Engine()
    eng.execute(SOURCE)
    with pytest.raises(NbstreamError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eng.execute(f"CREATE STREAM OUTPUT AS {query};")


def test_a_map_cannot_be_a_key() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM M (ID INT KEY, V MAP<STRING, INT>) WITH (kafka_topic='m', format='JSON', partitions=1);")
    with pytest.raises(BindError, match="Map keys"):
        eng.execute("CREATE STREAM OUTPUT AS SELECT * FROM M PARTITION BY V;")


def test_on_tombstones_only_key_only_expressions_keep_their_key_part() -> None:
    _, out = run("CREATE STREAM OUTPUT AS SELECT * FROM INPUT PARTITION BY UCASE(NAME);", (1, None))
    assert out == [(None, None)]
    _, out = run("CREATE STREAM OUTPUT WITH (key_format='JSON') AS SELECT * FROM INPUT PARTITION BY ID, NAME;",
                 (1, None))
    assert out == [({"ID": 1, "NAME": None}, None)]
