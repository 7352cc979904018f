"""``struct->*`` in a SELECT list: one column per field of the struct, named by the field
(ksqlDB's ``StructAll``), in persistent, push and pull queries."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import BindError, UnknownNameError
from nbstream.runtime.push import Batches

INPUT = ("CREATE STREAM INPUT (ID INT KEY, V STRUCT<A INT, `b c` STRUCT<X STRING, Y INT>>, N INT) "
         "WITH (kafka_topic='input', format='JSON');")


@pytest.fixture
def eng() -> Engine:
    engine = Engine()
    engine.execute(INPUT)
    return engine


def produce(eng: Engine) -> None:
    eng.produce("input", {"V": {"A": 1, "b c": {"X": "x", "Y": 2}}, "N": 3}, key=7)


def test_each_field_becomes_a_column_named_by_the_field(eng: Engine) -> None:
    eng.execute("CREATE STREAM OUTPUT AS SELECT ID, V->*, N FROM INPUT;")
    produce(eng)
    eng.run_until_idle()
    assert eng.describe_source("OUTPUT")["schema"] == \
        "`ID` INTEGER KEY, `A` INTEGER, `b c` STRUCT<`X` STRING, `Y` INTEGER>, `N` INTEGER"
    assert [r.value for r in eng.consume("OUTPUT")] == [{"A": 1, "b c": {"X": "x", "Y": 2}, "N": 3}]


def test_a_nested_struct_expands_to_its_own_fields(eng: Engine) -> None:
    eng.execute("CREATE STREAM OUTPUT AS SELECT ID, I.V->`b c`->* FROM INPUT I;")
    assert eng.describe_source("OUTPUT")["schema"] == "`ID` INTEGER KEY, `X` STRING, `Y` INTEGER"


def test_a_push_query_expands_it(eng: Engine) -> None:
    query = eng._push_query("SELECT V->`b c`->* FROM INPUT EMIT CHANGES;", properties={"auto.offset.reset": "earliest"})
    produce(eng)
    rows = query.subscribe(Batches())
    query.step()
    assert [row for batch in rows.take() for row in batch.select(["X", "Y"]).to_pylist()] == [{"X": "x", "Y": 2}]
    query.stop()
    query.close()


def test_a_pull_query_expands_it(eng: Engine) -> None:
    eng.execute("CREATE TABLE LATEST AS SELECT ID, LATEST_BY_OFFSET(V) AS V FROM INPUT GROUP BY ID;")
    produce(eng)
    eng.run_until_idle()
    rows = eng.query("SELECT ID, V->* FROM LATEST WHERE ID = 7;")
    assert list(rows.columns) == ["ID", "A", "b c"]
    assert rows.to_dict("records") == [{"ID": 7, "A": 1, "b c": {"X": "x", "Y": 2}}]


@pytest.mark.parametrize(("select", "error", "message"), [
    ("N->*", BindError, "Column N is not a STRUCT type."),
    ("V->A->*", BindError, "Field A is not a STRUCT type."),
    ("V->Z->*", UnknownNameError, "Field Z was not found on STRUCT."),
    ("NOPE->*", UnknownNameError, "Column 'NOPE' cannot be resolved."),
])
def test_the_base_must_be_a_struct_column_or_field(eng: Engine, select: str, error: type[Exception],
                                                   message: str) -> None:
    with pytest.raises(error, match=message):
        eng.execute(f"CREATE STREAM OUTPUT AS SELECT ID, {select} FROM INPUT;")


def test_it_is_a_whole_select_item(eng: Engine) -> None:
    with pytest.raises(BindError, match="may only be used as a whole item of the SELECT list"):
        eng.execute("CREATE STREAM OUTPUT AS SELECT ID, ARRAY[V->*] AS L FROM INPUT;")
