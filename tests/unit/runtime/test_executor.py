"""Statement handlers: the catalog rules ksqlDB enforces, with its messages."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import CatalogError

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
