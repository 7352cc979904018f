"""CREATE STREAM/TABLE checks ksqlDB makes on header columns and on a SESSION window's size, and
INSERT INTO's implicit numeric widening to the sink's types, and the prefix of result topics' names."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import BindError


@pytest.mark.parametrize("column, message", [
    ("H BYTES HEADERS", r"Invalid type for HEADERS column: expected ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>>, "
                        r"got BYTES"),
    ("H INT HEADER('key')", r"Invalid type for HEADER\('key'\) column: expected BYTES, got INTEGER"),
])
def test_a_header_column_must_have_the_headers_type(column: str, message: str) -> None:
    with pytest.raises(BindError, match=message):
        Engine().execute(f"CREATE STREAM s (k STRING KEY, {column}, v BIGINT) "
                         "WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');")


def test_header_columns_of_the_right_types_are_accepted() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM s (k STRING KEY, hs ARRAY<STRUCT<key STRING, value BYTES>> HEADERS, "
                "h BYTES HEADER('x'), v BIGINT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');")
    assert eng.describe_source("S") is not None


def test_a_session_window_has_no_size() -> None:
    with pytest.raises(BindError, match="'WINDOW_SIZE' should not be set for SESSION windows"):
        Engine().execute("CREATE TABLE t (k STRING PRIMARY KEY, v BIGINT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', "
                         "WINDOW_TYPE='Session', WINDOW_SIZE='30 seconds');")


def test_insert_into_casts_numbers_that_widen_to_the_sinks_types() -> None:
    eng = Engine()
    eng.execute("CREATE STREAM src (ignored VARCHAR) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON');"
                "CREATE STREAM dst (c1 DECIMAL(5, 2), c2 DOUBLE) WITH (KAFKA_TOPIC='dst', VALUE_FORMAT='JSON');"
                "INSERT INTO dst SELECT 1 AS c1, 2.5 AS c2 FROM src;")
    eng.produce("src", {"ignored": "x"})
    eng.run_until_idle()
    assert [r.value for r in eng.consume("dst")] == [{"C1": 1.0, "C2": 2.5}]
    with pytest.raises(BindError, match="Incompatible schema between results and sink"):
        eng.execute("INSERT INTO dst SELECT 'one' AS c1, 2.5 AS c2 FROM src;")


def test_a_result_topic_is_named_after_the_result_behind_the_configured_prefix() -> None:
    eng = Engine(properties={"ksql.output.topic.name.prefix": "team-"})
    eng.execute("CREATE STREAM src (v VARCHAR) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON');"
                "CREATE STREAM out AS SELECT * FROM src;"
                "CREATE STREAM named WITH (KAFKA_TOPIC='given') AS SELECT * FROM src;")
    assert {"team-OUT", "given"} <= set(eng.list_topics())
