"""Custom types (``CREATE TYPE``, ``DROP TYPE``, ``SHOW TYPES``), specified as ksqlDB 0.29 behaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbstream import Engine
from nbstream.catalog.custom_types import TypeRegistry
from nbstream.catalog.types import INTEGER, STRING, SqlType
from nbstream.errors import CatalogError, UnknownNameError

ADDRESS = SqlType.struct([("NUMBER", INTEGER), ("STREET", STRING)])
TYPES = """CREATE TYPE ADDRESS AS STRUCT<number INTEGER, street VARCHAR>;
           CREATE TYPE PERSON AS STRUCT<name VARCHAR, home ADDRESS>;"""
PEOPLE = """CREATE STREAM people (id INT KEY, person PERSON, past ARRAY<ADDRESS>, by_tag MAP<STRING, ADDRESS>)
              WITH (KAFKA_TOPIC='people', VALUE_FORMAT='JSON', PARTITIONS=1);"""
JAY = {"person": {"name": "jay", "home": {"number": 899, "street": "Evelyn"}},
       "past": [{"number": 1, "street": "Main"}], "by_tag": {"work": {"number": 2, "street": "Castro"}}}


def test_a_registry_resolves_references_nested_anywhere() -> None:
    types = TypeRegistry()
    assert types.register("address", ADDRESS)
    assert not types.register("ADDRESS", STRING)  # taken: unchanged
    written = SqlType.map(STRING, SqlType.array(SqlType.struct([("A", SqlType.custom("Address"))])))
    assert types.resolve(written) == SqlType.map(STRING, SqlType.array(SqlType.struct([("A", ADDRESS)])))
    assert types.items() == [("ADDRESS", ADDRESS)]
    assert types.drop("Address") and not types.drop("ADDRESS")


def test_create_type_names_a_type_that_columns_casts_and_other_types_use() -> None:
    eng = Engine()
    created = eng.execute(TYPES + PEOPLE + """
        CREATE STREAM homes AS SELECT id, CAST(person->home AS ADDRESS) AS home, past[1] AS first FROM people;""")
    assert created[0].message == ("Registered custom type with name 'ADDRESS' and SQL type "
                                  "STRUCT<`NUMBER` INTEGER, `STREET` STRING>")
    person = SqlType.struct([("NAME", STRING), ("HOME", ADDRESS)])
    assert [c.type for c in eng.catalog.get("PEOPLE").schema.value] == [
        person, SqlType.array(ADDRESS), SqlType.map(STRING, ADDRESS)]
    eng.produce("people", JAY, key=1)
    eng.execute("INSERT INTO people (id, person) VALUES (2, CAST(STRUCT(name := 'al') AS PERSON));")
    eng.run_until_idle()
    assert [r.value for r in eng.consume("HOMES")] == [
        {"HOME": {"NUMBER": 899, "STREET": "Evelyn"}, "FIRST": {"NUMBER": 1, "STREET": "Main"}},
        {"HOME": None, "FIRST": None}]
    [shown] = eng.execute("SHOW TYPES;")
    assert shown.columns == ("Type Name", "Schema")
    assert shown.rows == (("ADDRESS", str(ADDRESS)), ("PERSON", str(person)))


def test_types_survive_a_restart_of_a_durable_engine(tmp_path: Path) -> None:
    first = Engine(path=tmp_path)
    first.execute(TYPES + PEOPLE + "CREATE TYPE GONE AS INT; DROP TYPE GONE;")
    first.produce("people", JAY, key=1)
    first.close()

    second = Engine(path=tmp_path)
    assert [name for name, _ in second.catalog.types.items()] == ["ADDRESS", "PERSON"]
    second.execute("CREATE STREAM streets AS SELECT id, person->home->street AS street FROM people;"
                   "CREATE STREAM moved (id INT KEY, at ADDRESS) WITH (KAFKA_TOPIC='moved', VALUE_FORMAT='JSON');")
    second.run_until_idle()
    assert [r.value for r in second.consume("STREETS")] == [{"STREET": "Evelyn"}]
    assert second.catalog.get("MOVED").schema.value[0].type == ADDRESS


def test_dropping_a_type_in_use_is_allowed_and_its_users_keep_their_types() -> None:
    """ksqlDB resolves a type name when a statement is prepared, so DROP TYPE checks no user."""
    eng = Engine()
    eng.execute(TYPES + PEOPLE)
    [dropped] = eng.execute("DROP TYPE address;")
    assert dropped.message == "Dropped type 'ADDRESS'"
    assert eng.catalog.types.find("PERSON") == SqlType.struct([("NAME", STRING), ("HOME", ADDRESS)])
    assert eng.catalog.get("PEOPLE").schema.value[1].type == SqlType.array(ADDRESS)
    with pytest.raises(UnknownNameError, match="Cannot resolve unknown type: ADDRESS"):
        eng.execute("CREATE STREAM again (a ADDRESS) WITH (KAFKA_TOPIC='again', VALUE_FORMAT='JSON');")


def test_create_type_of_a_taken_name_fails_unless_if_not_exists() -> None:
    eng = Engine()
    eng.execute(TYPES)
    with pytest.raises(CatalogError, match="Cannot register custom type 'ADDRESS' since it is already registered "
                                           "with type: STRUCT<`NUMBER` INTEGER, `STREET` STRING>"):
        eng.execute("CREATE TYPE Address AS INT;")
    [kept] = eng.execute("CREATE TYPE IF NOT EXISTS ADDRESS AS INT;")
    assert kept.message.startswith("ADDRESS is already registered with type STRUCT<")
    assert eng.catalog.types.find("ADDRESS") == ADDRESS
    with pytest.raises(CatalogError, match="type 'VARCHAR': VARCHAR is one of ksqlDB's own types"):
        eng.execute("CREATE TYPE varchar AS INT;")


@pytest.mark.parametrize(("sql", "error"), [
    ("CREATE STREAM s (a ARRAY<ADRESS>) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');",
     "line 1, column 18: Cannot resolve unknown type: ADRESS. Did you mean `ADDRESS`?"),
    ("CREATE STREAM s (a INTEGR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');",
     "line 1, column 18: Cannot resolve unknown type: INTEGR. Did you mean `INTEGER`?"),
    ("CREATE TYPE T AS STRUCT<x PERSN>;", "Cannot resolve unknown type: PERSN. Did you mean `PERSON`?"),
    ("CREATE STREAM s AS SELECT CAST(person AS PERSONS) AS p FROM people;",
     "Cannot resolve unknown type: PERSONS. Did you mean `PERSON`?"),
    ("DROP TYPE ADRESS;", "Type ADRESS does not exist. Did you mean `ADDRESS`?"),
])
def test_an_unknown_type_name_is_an_error_naming_the_near_miss(sql: str, error: str) -> None:
    eng = Engine()
    eng.execute(TYPES + PEOPLE)
    with pytest.raises(UnknownNameError) as caught:
        eng.execute(sql)
    assert error in str(caught.value)
    assert "S" not in eng.catalog.sources and eng.catalog.types.find("T") is None


def test_drop_type_if_exists_of_an_unknown_type_says_so() -> None:
    [result] = Engine().execute("DROP TYPE IF EXISTS nothing;")
    assert result.message == "Type 'NOTHING' does not exist"
