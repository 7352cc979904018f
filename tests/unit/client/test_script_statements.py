"""Scripts as a client splits them — by their first words, so that statements only a ksqlDB server
knows pass through — and parameters written into them as literal tokens."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from nbstream.client.remote import created_source
from nbstream.client.statements import split_script, sql_literal, with_literals
from nbstream.errors import ParseError, UnsupportedError


def test_statements_are_split_on_semicolons_outside_strings_and_comments_and_classified() -> None:
    script = """SELECT * FROM t WHERE a = ';';  -- a comment; with a semicolon
    SELECT * FROM s EMIT CHANGES; SELECT * FROM w EMIT FINAL LIMIT 3;
    PRINT 'topic' FROM BEGINNING; SET 'auto.offset.reset' = 'earliest'; UNSET 'auto.offset.reset';
    RUN SCRIPT '/tmp/x.sql'; CREATE TYPE ADDRESS AS STRUCT<street VARCHAR>; SHOW STREAMS"""
    statements = split_script(script)
    assert [s.kind for s in statements] == ["pull", "push", "push", "print", "set", "unset", "run_script",
                                            "statement", "statement"]
    assert statements[0].text == "SELECT * FROM t WHERE a = ';'"
    assert (statements[4].name, statements[4].value) == ("auto.offset.reset", "earliest")
    assert (statements[5].name, statements[5].value) == ("auto.offset.reset", None)
    assert statements[6].value == "/tmp/x.sql"
    assert statements[1].span is not None and (statements[1].span.line, statements[1].span.column) == (2, 5)


def test_emit_inside_a_string_does_not_make_a_push_query() -> None:
    (statement,) = split_script("SELECT * FROM t WHERE note = 'EMIT CHANGES'")
    assert statement.kind == "pull"


@pytest.mark.parametrize("script", ["SET 'a'", "UNSET 'a' = 'b'", "RUN SCRIPT x.sql"])
def test_a_malformed_client_command_is_a_parse_error_at_its_statement(script: str) -> None:
    with pytest.raises(ParseError):
        split_script("SHOW STREAMS;\n" + script)


def test_parameters_are_the_colon_names_and_become_literal_tokens() -> None:
    (statement,) = split_script("SELECT * FROM t WHERE u = :who AND note = ':not_me' AND n > :n AND u2 = :who")
    assert statement.parameters == ("who", "n")
    sql = with_literals(statement, {"who": "O'Brien'; DROP TABLE t; --", "n": 3})
    assert sql == ("SELECT * FROM t WHERE u = 'O''Brien''; DROP TABLE t; --' AND note = ':not_me' AND n > 3 "
                   "AND u2 = 'O''Brien''; DROP TABLE t; --'")
    assert [s.kind for s in split_script(sql)] == ["pull"]  # the quote cannot end the string


@pytest.mark.parametrize(("value", "literal"), [
    (None, "NULL"), (True, "TRUE"), (7, "7"), (2.5, "2.5"), (decimal.Decimal("1.10"), "1.10"),
    ("it's", "'it''s'"), (dt.date(2024, 5, 1), "'2024-05-01'"), ([1, "a"], "ARRAY[1, 'a']"),
])
def test_python_values_as_sql_literals(value: object, literal: str) -> None:
    assert sql_literal("p", value) == literal


@pytest.mark.parametrize("value", [float("nan"), {"a": 1}, object()])
def test_a_value_sql_cannot_hold_is_refused_naming_the_parameter(value: object) -> None:
    with pytest.raises(UnsupportedError, match=":p"):
        sql_literal("p", value)


@pytest.mark.parametrize(("sql", "created"), [
    ("CREATE STREAM s (v INT) WITH (KAFKA_TOPIC='s')", ("STREAM", "s")),
    ("create source table `My T` (k INT PRIMARY KEY) WITH (KAFKA_TOPIC='t')", ("TABLE", "`My T`")),
    ("CREATE TABLE t AS SELECT * FROM s", ("TABLE", "t")),
    ("CREATE OR REPLACE STREAM s AS SELECT * FROM x", None),
    ("CREATE STREAM IF NOT EXISTS s (v INT) WITH (KAFKA_TOPIC='s')", None),
    ("CREATE SOURCE CONNECTOR c WITH ('connector.class'='datagen')", None),
    ("SHOW STREAMS", None),
])
def test_a_plain_create_names_what_it_creates(sql: str, created: tuple[str, str] | None) -> None:
    (statement,) = split_script(sql)
    assert created_source(statement) == created
