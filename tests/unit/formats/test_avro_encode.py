"""Specifications of AVRO's vectorised encoder (nbstream/formats/avro_encode.py): for the rows
DuckDB hands a sink's encoder function, it writes what fastavro's writer writes record by record
(the reference: a writer nbstream did not write), and ksqlDB's shortest bytes for decimals."""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import duckdb
import fastavro
import numpy as np
import pyarrow as pa
import pytest

from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.formats.avro_encode import encoder_for, varints, zigzag_varints
from nbstream.formats.avro_schema import avro_schema_for
from nbstream.formats.codecs import _AvroEncoder
from nbstream.formats.registry import SchemaRegistry
from nbstream.log.base import execute_arrow

COLUMNS = (
    "B BOOLEAN", "I INTEGER", "L BIGINT", "D DOUBLE", "S STRING", "RAW BYTES", "AT TIMESTAMP", "DAY DATE",
    "TOD TIME", "TAGS ARRAY<STRING>", "COUNTS MAP<STRING, INTEGER>", "INNER STRUCT<X DOUBLE, DEEP ARRAY<BIGINT>>",
)
ROWS = [
    "(true, 1, 0, 0.5, 'a', '\\x00\\xFF'::BLOB, TIMESTAMP '2024-03-01 12:00:00.123', DATE '2024-03-01', "
    "TIME '12:00:00.5', ['x', NULL, ''], MAP {'k': 1, 'j': NULL}, {'X': 1.5, 'DEEP': [1, -2]})",
    "(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(false, -2147483648, -9223372036854775808, -1e300, 'ünïcödé ✓', ''::BLOB, TIMESTAMP '1969-12-31 23:59:59.999', "
    "DATE '1900-01-01', TIME '00:00:00', [], MAP {}, {'X': NULL, 'DEEP': []})",
    "(true, 2147483647, 9223372036854775807, 1e-300, '', '\\x01'::BLOB, TIMESTAMP '2262-01-01 00:00:00', "
    "DATE '9999-12-31', TIME '23:59:59.999', NULL, MAP {'only': -5}, NULL)",
]


def columns(*specs: str) -> tuple[Column, ...]:
    return tuple(Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs)


def rows_of(cols: Sequence[Column], values: Sequence[str]) -> pa.Array:
    """The rows as DuckDB passes them to a sink's encoder: one STRUCT of the columns per row."""
    names = [f"c{i}" for i in range(len(cols))]
    struct = ", ".join(f"'{c.name}': CAST({n} AS {c.type.duckdb()})" for c, n in zip(cols, names, strict=True))
    sql = f"SELECT {{{struct}}} AS r FROM (VALUES {', '.join(values)}) v({', '.join(names)})"
    return execute_arrow(duckdb.connect(), sql).column("r").combine_chunks()


def encoder(cols: Sequence[Column], *, wrapped: bool = True, schema: Any = None) -> _AvroEncoder:
    registry = SchemaRegistry(duckdb.connect())
    sid = registry.register("t-value", schema or avro_schema_for(cols, wrapped=wrapped))
    return _AvroEncoder(registry, tuple(cols), wrapped, sid)


def decoded(schema: Any, blobs: list[bytes | None]) -> list[Any]:
    parsed = fastavro.parse_schema(schema)
    return [None if b is None else fastavro.schemaless_reader(io.BytesIO(b[5:]), parsed, parsed) for b in blobs]


def test_every_type_nbstream_writes_is_encoded_as_fastavro_writes_it_record_by_record() -> None:
    cols = columns(*COLUMNS)
    encode = encoder(cols)
    rows = rows_of(cols, ROWS)
    vectorised = encode(rows)
    assert not encode.record_by_record
    assert vectorised.to_pylist() == encode._one_by_one(rows).to_pylist()


def test_a_slice_of_a_vector_is_encoded_from_its_own_rows() -> None:
    cols = columns(*COLUMNS)
    encode = encoder(cols)
    rows = rows_of(cols, ROWS * 3).slice(5, 6)
    assert encode(rows).to_pylist() == encode._one_by_one(rows).to_pylist()


@pytest.mark.parametrize("decimal_type", ["DECIMAL(6, 2)", "DECIMAL(30, 4)"])
def test_decimals_are_ksqldbs_shortest_twos_complement_bytes(decimal_type: str) -> None:
    cols = columns(f"P {decimal_type}")
    texts = ["0", "1.27", "-1.28", "1.28", "-1.29", None, "-9999.99", "9999.99"]
    if decimal_type == "DECIMAL(30, 4)":
        texts += ["12345678901234567890123456.7891", "-12345678901234567890123456.7891"]
    encode = encoder(cols)
    blobs = encode(rows_of(cols, [f"('{t}'::{decimal_type})" if t else "(NULL)" for t in texts])).to_pylist()
    expected = [None if t is None else Decimal(t) for t in texts]
    schema = avro_schema_for(cols, wrapped=True)
    assert [None if r is None else r["P"] for r in decoded(schema, blobs)] == expected
    # -1.28 is -128 unscaled at scale 2: one byte, 0x80, as Java's BigInteger.toByteArray() gives it
    # (after the union's branch 1 and the length 1); at scale 4, -12800: two bytes, 0xCE00
    shortest = {"DECIMAL(6, 2)": b"\x02\x02\x80", "DECIMAL(30, 4)": b"\x02\x04\xce\x00"}[decimal_type]
    assert blobs[2] is not None and blobs[2][5:] == shortest


def test_an_unwrapped_value_is_null_where_the_row_is() -> None:
    cols = columns("V STRING")
    encode = encoder(cols, wrapped=False)
    rows = rows_of(cols, ["('a')", "(NULL)", "('')"])
    blobs = encode(rows).to_pylist()
    assert blobs[1] is None
    assert blobs == encode._one_by_one(rows).to_pylist()


def test_a_writer_schema_registered_outside_nbstream_with_other_types_is_written_alike() -> None:
    cols = columns("ID BIGINT", "SCORE DOUBLE", "NAME STRING")
    schema = {"type": "record", "name": "theirs", "namespace": "com.example", "fields": [
        {"name": "name", "type": "string"}, {"name": "score", "type": ["null", "float"]},
        {"name": "id", "type": {"type": "int"}}]}
    encode = encoder(cols, schema=schema)
    rows = rows_of(cols, ["(1, 0.25, 'a')", "(-7, NULL, 'b')"])
    assert encode(rows).to_pylist() == encode._one_by_one(rows).to_pylist()
    assert not encode.record_by_record


def test_an_enum_in_the_writer_schema_is_written_record_by_record() -> None:
    cols = columns("KIND STRING")
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "kind", "type": {"type": "enum", "name": "k", "symbols": ["A", "B"]}}]}
    encode = encoder(cols, schema=schema)
    blobs = encode(rows_of(cols, ["('B')", "('A')"])).to_pylist()
    assert encode.record_by_record
    assert decoded(schema, blobs) == [{"kind": "B"}, {"kind": "A"}]


def test_a_null_where_the_writer_schema_allows_none_is_an_error() -> None:
    cols = columns("ID BIGINT")
    schema = {"type": "record", "name": "r", "fields": [{"name": "ID", "type": "long"}]}
    with pytest.raises(ValueError, match="not nullable"):
        encoder(cols, schema=schema)(rows_of(cols, ["(1)", "(NULL)"]))


def test_varints_match_the_avro_specifications_examples() -> None:
    # the Avro specification's table: 0 → 00, -1 → 01, 1 → 02, -2 → 03, 2 → 04, -64 → 7f, 64 → 80 01
    encoded = zigzag_varints(np.array([0, -1, 1, -2, 2, -64, 64]))
    assert encoded.lengths.tolist() == [1, 1, 1, 1, 1, 1, 2]
    assert bytes(encoded.data) == bytes.fromhex("00 01 02 03 04 7f 80 01")
    largest = varints(np.array([2**64 - 1], np.uint64))
    assert bytes(largest.data) == b"\xff" * 9 + b"\x01"


def test_encoder_for_refuses_a_union_of_two_types() -> None:
    from nbstream.formats.avro_encode import NotVectorizable

    with pytest.raises(NotVectorizable, match="union"):
        encoder_for(["null", "string", "long"])


def test_a_writer_field_the_rows_lack_is_written_as_its_default() -> None:
    cols = columns("ID STRING")
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "ID", "type": "string"}, {"name": "opt", "type": "string", "default": "foo"},
        {"name": "n", "type": ["null", "long"], "default": None}]}
    encode = encoder(cols, schema=schema)
    rows = rows_of(cols, ["('a')", "('b')"])
    blobs = encode(rows).to_pylist()
    assert not encode.record_by_record
    assert blobs == encode._one_by_one(rows).to_pylist()
    assert decoded(schema, blobs) == [{"ID": "a", "opt": "foo", "n": None}, {"ID": "b", "opt": "foo", "n": None}]


def test_a_null_in_a_required_field_with_a_default_is_written_as_the_default() -> None:
    cols = columns("ID STRING", "N BIGINT")
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "ID", "type": "string"}, {"name": "N", "type": "long", "default": 7}]}
    blobs = encoder(cols, schema=schema)(rows_of(cols, ["('a', 1)", "('b', NULL)", "('c', -1)"])).to_pylist()
    assert decoded(schema, blobs) == [{"ID": "a", "N": 1}, {"ID": "b", "N": 7}, {"ID": "c", "N": -1}]
