"""Persistent-query projections: key columns, their order, and the planner switch."""

from __future__ import annotations

import pytest

from nbstream.errors import BindError, UnsupportedError
from nbstream.runtime.engine import Engine

SOURCE = ("CREATE STREAM INPUT (ID INT KEY, AGE INT KEY, NAME STRING) "
          "WITH (kafka_topic='input', format='JSON');")
NEW_PLANNER = {"ksql.new.query.planner.enabled": "true"}


def schema_of(query: str, properties: dict[str, str] | None = None) -> str:
    eng = Engine(properties=properties)
    eng.execute(SOURCE + query)
    return eng.describe_source("OUTPUT")["schema"]


def test_old_planner_keeps_the_source_key_order_and_puts_keys_first() -> None:
    schema = schema_of("CREATE STREAM OUTPUT AS SELECT NAME, AGE, ID FROM INPUT;")
    assert schema == "`ID` INTEGER KEY, `AGE` INTEGER KEY, `NAME` STRING"


def test_new_planner_keeps_the_projection_key_order() -> None:
    schema = schema_of("CREATE STREAM OUTPUT AS SELECT AGE, ID, NAME FROM INPUT;", NEW_PLANNER)
    assert schema == "`AGE` INTEGER KEY, `ID` INTEGER KEY, `NAME` STRING"


def test_old_planner_requires_the_key_columns() -> None:
    with pytest.raises(BindError, match="must include the key columns ID and AGE"):
        schema_of("CREATE STREAM OUTPUT AS SELECT NAME FROM INPUT;")


def test_new_planner_lets_a_stream_drop_its_key() -> None:
    eng = Engine(properties=NEW_PLANNER)
    eng.execute(SOURCE + "CREATE STREAM OUTPUT AS SELECT NAME FROM INPUT;")
    eng.produce("input", {"NAME": "a"}, key={"ID": 1, "AGE": 2}, timestamp=5)
    eng.run_until_idle()
    assert [(r.key, r.value) for r in eng.consume("OUTPUT")] == [(None, {"NAME": "a"})]
    assert eng.describe_source("OUTPUT")["schema"] == "`NAME` STRING"


@pytest.mark.parametrize("clause", ["WHERE NAME = 'a'", "PARTITION BY NAME"])
def test_new_planner_rejects_what_it_cannot_plan(clause: str) -> None:
    with pytest.raises(UnsupportedError, match="New query planner does not support"):
        schema_of(f"CREATE STREAM OUTPUT AS SELECT * FROM INPUT {clause};", NEW_PLANNER)
