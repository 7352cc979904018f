"""A CREATE OR REPLACE of a schema-registry sink must stay backward compatible: readers of the new
schema read what the old one wrote (AVRO by Avro's resolution, JSON_SR and PROTOBUF as the ksqlDB
types their schemas read as), and the error names the field."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.errors import NbstreamError
from nbstream.formats import json_schema


def engine_with_sink(fmt: str) -> Engine:
    """An engine whose query writes ``T`` (K, A INT, B STRUCT<X INT>) in ``fmt``."""
    eng = Engine()
    eng.execute(f"""CREATE STREAM S (K STRING KEY, A INT, B STRUCT<X INT>)
                      WITH (KAFKA_TOPIC='s', VALUE_FORMAT='{fmt}');
                    CREATE STREAM T AS SELECT K, A, B FROM S;""")
    return eng


@pytest.fixture(params=["AVRO", "JSON_SR", "PROTOBUF"])
def sink(request: pytest.FixtureRequest) -> tuple[Engine, str]:
    return engine_with_sink(request.param), request.param


TYPE_CHANGE = {"AVRO": "field 'A' changed type from int to string",
               "JSON_SR": "field 'A' changed type from INTEGER to STRING",
               "PROTOBUF": "field 'A' changed type from INTEGER to STRING"}


def test_a_changed_type_is_refused_naming_the_field(sink: tuple[Engine, str]) -> None:
    eng, fmt = sink
    with pytest.raises(NbstreamError, match=TYPE_CHANGE[fmt]):
        eng.execute("CREATE OR REPLACE STREAM T AS SELECT K, CAST(A AS STRING) AS A, B FROM S;")


@pytest.mark.parametrize("fmt", ["JSON_SR", "PROTOBUF"])  # (Avro's resolution names the nested field alone)
def test_a_nested_field_is_named_by_its_path(fmt: str) -> None:
    eng = engine_with_sink(fmt)
    with pytest.raises(NbstreamError, match=r"field 'B\.X' changed type from INTEGER to BOOLEAN"):
        eng.execute("CREATE OR REPLACE STREAM T AS SELECT K, A, STRUCT(X := B->X > 0) AS B FROM S;")


def test_a_widened_type_and_a_new_column_are_a_new_version(sink: tuple[Engine, str]) -> None:
    eng, _ = sink
    eng.execute("CREATE OR REPLACE STREAM T AS SELECT K, CAST(A AS BIGINT) AS A, B, 1 AS NEW FROM S;")
    assert eng.schema_registry.versions("T-value") == [1, 2]


def test_protobuf_refuses_a_field_number_that_changes_name() -> None:
    eng = Engine()
    eng.execute("""CREATE STREAM S (K STRING KEY, A INT, B INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='PROTOBUF');
                   CREATE STREAM T AS SELECT K, A, B FROM S;""")
    with pytest.raises(NbstreamError, match="field number 1 was 'A' and is now 'B'"):
        eng.execute("CREATE OR REPLACE STREAM T AS SELECT K, B, A FROM S;")  # the bytes carry numbers, not names


def test_a_new_required_json_field_cannot_read_what_was_written() -> None:
    old = {"type": "object", "properties": {"a": {"type": "integer"}}}
    new = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["b"]}
    assert json_schema.backward_incompatibility(new, old) == "field 'B' is new and required"
    assert json_schema.backward_incompatibility(old, new) is None  # a dropped field is ignored
