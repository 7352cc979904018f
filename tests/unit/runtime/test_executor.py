"""Statement handlers: the catalog rules ksqlDB enforces, with its messages."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import BindError, CatalogError, UnknownNameError
from nbstream.runtime.executor import HANDLERS
from nbstream.sql import ast

SOURCE = ("CREATE SOURCE TABLE input (k INT PRIMARY KEY, text STRING) "
          "WITH (kafka_topic='t', value_format='DELIMITED');")
PLAIN = "CREATE TABLE input (k INT PRIMARY KEY, text STRING) WITH (kafka_topic='t', value_format='DELIMITED');"
REPLACE = PLAIN.replace("CREATE TABLE", "CREATE OR REPLACE TABLE")
REPLACE_SOURCE = REPLACE.replace("REPLACE TABLE", "REPLACE SOURCE TABLE")


@pytest.mark.parametrize("script", [REPLACE_SOURCE, SOURCE + REPLACE, PLAIN + REPLACE_SOURCE])
def test_create_or_replace_never_touches_source_tables(script: str) -> None:
    with pytest.raises(CatalogError, match="CREATE OR REPLACE is not supported on source tables"):
        Engine().execute(script)


def test_create_or_replace_replaces_plain_tables() -> None:
    eng = Engine()
    eng.execute(PLAIN + REPLACE)
    assert eng.describe_source("INPUT") is not None


def test_drop_delete_topic_rejects_source_tables() -> None:
    eng = Engine()
    eng.execute(SOURCE)
    with pytest.raises(CatalogError, match="Cannot delete topic for read-only source: INPUT"):
        eng.execute("DROP TABLE input DELETE TOPIC;")
    eng.execute("DROP TABLE input;")
    assert "t" in eng.list_topics()


def test_describe_renders_table_keys_as_primary_key() -> None:
    eng = Engine()
    eng.execute(SOURCE + "CREATE STREAM s (k INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON');")
    assert eng.describe_source("INPUT")["schema"] == "`K` INTEGER PRIMARY KEY, `TEXT` STRING"
    assert eng.describe_source("S")["schema"] == "`K` INTEGER KEY, `V` STRING"


def test_wrap_single_values_config_is_the_default_of_wrap_single_value() -> None:
    eng = Engine(properties={"ksql.persistence.wrap.single.values": "false"})
    eng.execute("CREATE STREAM i (k STRING KEY, foo STRING) WITH (kafka_topic='i', value_format='JSON');"
                "CREATE STREAM o AS SELECT k, foo, foo AS foo2 FROM i;"
                "CREATE STREAM o1 AS SELECT k, foo FROM i;"
                "CREATE STREAM d (k STRING KEY, foo STRING) WITH (kafka_topic='d', value_format='DELIMITED');")
    eng.produce("i", "bar", key="a")
    eng.run_until_idle()
    assert [r.value for r in eng.consume("O")] == [{"FOO": "bar", "FOO2": "bar"}]
    assert [r.value for r in eng.consume("O1")] == ["bar"]


def test_a_string_sink_timestamp_is_parsed_with_timestamp_format() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM t (k STRING KEY, id BIGINT, ts VARCHAR) WITH (kafka_topic='t', value_format='JSON');"
                "CREATE STREAM o WITH (timestamp='ts', timestamp_format='yyyy-MM-dd''T''HH:mm:ssX') "
                "AS SELECT k, id, ts FROM t;")
    eng.produce("t", {"ID": 1, "TS": "2018-05-11T21:58:33Z"}, timestamp=10)
    eng.produce("t", {"ID": 2, "TS": "not a timestamp"}, timestamp=10)
    eng.run_until_idle()
    assert [(r.value["ID"], r.timestamp) for r in eng.consume("O")] == [(1, 1526075913000)]
    assert len(eng.consume("KSQL_PROCESSING_LOG")) == 1


def test_a_sink_timestamp_column_must_be_a_time() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM t (k STRING KEY, id BIGINT, ts INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(BindError, match="Timestamp column, `TS`, should be LONG"):
        eng.execute("CREATE STREAM o WITH (timestamp='ts') AS SELECT k, id, ts FROM t;")


def test_an_aggregation_makes_a_table_not_a_stream() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM t (k STRING KEY, v INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(BindError, match="Your SELECT query produces a TABLE"):
        eng.execute("CREATE STREAM o AS SELECT k, COUNT(*) FROM t GROUP BY k;")


def test_a_record_without_key_keeps_no_key_through_a_projection() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM i (k1 STRING KEY, k2 STRING KEY, v INT) WITH (kafka_topic='i', format='DELIMITED');"
                "CREATE STREAM o WITH (key_format='JSON') AS SELECT * FROM i;")
    eng.produce("i", "0", key="foo,bar")
    eng.produce("i", "1")
    eng.run_until_idle()
    assert [r.key for r in eng.consume("O")] == [{"K1": "foo", "K2": "bar"}, None]


def test_a_sink_delimiter_overrides_the_inherited_one() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM t (k STRING KEY, id BIGINT, name STRING) "
                "WITH (kafka_topic='t', value_format='DELIMITED', value_delimiter='|');"
                "CREATE STREAM s1 AS SELECT * FROM t;"
                "CREATE STREAM s2 WITH (value_delimiter='$') AS SELECT * FROM t;")
    eng.produce("t", "0|zero", key="0")
    eng.run_until_idle()
    assert [r.value for r in eng.consume("S1")] == ["0|zero"]
    assert [r.value for r in eng.consume("S2")] == ["0$zero"]


def test_a_pull_query_run_by_execute_binds_its_parameters() -> None:
    eng = Engine()
    eng.execute("CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON');")
    eng.produce("t", {"V": 1}, key="a")
    eng.produce("t", {"V": 2}, key="b")
    eng.run_until_idle()
    [result] = eng.execute("SELECT v FROM t WHERE k = :key;", {"key": "b"})
    assert result.rows == ((2,),)


def test_every_kind_of_statement_has_a_handler() -> None:
    kinds = {cls for cls in vars(ast).values() if isinstance(cls, type) and issubclass(cls, ast.Statement)}
    assert set(HANDLERS) == kinds - {ast.Statement}


def test_parameters_belong_to_one_call_of_execute() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM s (k INT KEY, v VARCHAR) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');")
    eng.execute("INSERT INTO s (k, v) VALUES (:k, 'a');", {"k": 1})
    with pytest.raises(UnknownNameError, match="no value bound for parameter :k"):
        eng.execute("INSERT INTO s (k, v) VALUES (:k, 'b');")
    assert [r.key for r in eng.consume("s")] == [1]
