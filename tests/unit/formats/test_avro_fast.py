"""Specifications of the AVRO decoder's fast path: a vector's bodies read by polars' Rust reader
give exactly what fastavro gives record by record, or the vector falls back to fastavro."""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import duckdb
import fastavro
import pyarrow as pa
import pytest

from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.catalog.user_functions import arrow_type
from nbstream.formats.avro_arrow import polars_schema, varint
from nbstream.formats.codecs import _AvroDecoder, decoded_type
from nbstream.formats.registry import SchemaRegistry


def cols(*specs: str) -> tuple[Column, ...]:
    return tuple(Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs)


def record(*fields: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "r", "fields": [{"name": n, "type": t} for n, t in fields]}


def body(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return buf.getvalue()


class Decoding:
    """A decoder over a fresh registry, counting the records fastavro decoded one by one."""

    def __init__(self, columns: Sequence[Column], *, wrapped: bool = True) -> None:
        self.registry = SchemaRegistry(duckdb.connect())
        self.decoder = _AvroDecoder(self.registry, tuple(columns), wrapped, arrow_type(decoded_type(columns)))
        self.slow_records = 0
        slow = self.decoder._slow

        def counting(blobs: pa.Array) -> pa.Array:
            self.slow_records += len(blobs)
            return slow(blobs)

        self.decoder._slow = counting  # type: ignore[method-assign]
        self.reference = slow

    def framed(self, schema: Any, *datums: Any) -> list[bytes]:
        sid = self.registry.register(f"s{len(self.registry.subjects())}-value", schema)
        return [b"\x00" + sid.to_bytes(4, "big") + body(schema, d) for d in datums]

    def check(self, blobs: Sequence[bytes | None]) -> list[dict[str, Any] | None]:
        """The decoded rows, after checking that they equal fastavro's, record by record."""
        array = pa.array(blobs, pa.binary())
        fast = self.decoder(array)
        assert fast.to_pylist() == self.reference(array).to_pylist()
        return fast.to_pylist()


EVERYTHING = record(
    ("id", "long"), ("n", ["null", "int"]), ("name", ["string", "null"]), ("f", "float"),
    ("price", {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}),
    ("maybe_price", ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}]),
    ("at", {"type": "long", "logicalType": "timestamp-millis"}),
    ("at_us", {"type": "long", "logicalType": "timestamp-micros"}),
    ("day", {"type": "int", "logicalType": "date"}),
    ("tod", {"type": "int", "logicalType": "time-millis"}),
    ("tod_us", {"type": "long", "logicalType": "time-micros"}),
    ("raw", "bytes"), ("fx", {"type": "fixed", "name": "three", "size": 3}),
    ("kind", {"type": "enum", "name": "kind", "symbols": ["A", "B"]}),
    ("tags", ["null", {"type": "array", "items": ["null", "string"]}]),
    ("inner", ["null", {"type": "record", "name": "inner", "fields": [
        {"name": "x", "type": ["null", "double"]}, {"name": "deep", "type": {"type": "array", "items": "long"}}]}]),
)
EVERYTHING_COLUMNS = cols(
    "ID BIGINT", "N INT", "NAME STRING", "F DOUBLE", "PRICE DECIMAL(6, 2)", "MAYBE_PRICE DECIMAL(4, 1)",
    "AT TIMESTAMP", "AT_US TIMESTAMP", "DAY DATE", "TOD TIME", "TOD_US TIME", "RAW BYTES", "FX BYTES", "KIND STRING",
    "TAGS ARRAY<STRING>", "INNER STRUCT<X DOUBLE, DEEP ARRAY<BIGINT>, ABSENT STRING>", "MISSING STRING",
)


def everything(i: int) -> dict[str, Any]:
    return {"id": i, "n": None if i % 3 == 0 else i, "name": None if i % 4 == 0 else f"n{i}", "f": i / 4,
            "price": Decimal(i) / 100, "maybe_price": None if i % 2 else Decimal(-i) / 10,
            "at": 1_700_000_000_000 + i, "at_us": 1_700_000_000_000_123 + i, "day": 19_000 + i,
            "tod": 3_600_000 + i, "tod_us": 3_600_000_001 + i, "raw": bytes([i % 256, 0]), "fx": b"abc",
            "kind": "AB"[i % 2], "tags": None if i % 5 == 0 else ["t", None],
            "inner": None if i % 6 == 0 else {"x": i * 1.5, "deep": [i, -i]}}


def test_logical_nullable_and_nested_types_decode_on_the_fast_path_as_fastavro_does() -> None:
    d = Decoding(EVERYTHING_COLUMNS)
    rows = d.check([*d.framed(EVERYTHING, *(everything(i) for i in range(300))), None])
    assert d.slow_records == 0
    assert rows[7] is not None and rows[7]["PRICE"] == Decimal("0.07") and rows[7]["INNER"]["ABSENT"] is None
    assert rows[-1] is None


def test_a_bare_value_is_read_as_one_column() -> None:
    d = Decoding(cols("V DECIMAL(4, 2)"), wrapped=False)
    schema = ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}]
    assert d.check(d.framed(schema, Decimal("1.25"), None)) == [
        {"V": Decimal("1.25"), "__error": None}, {"V": None, "__error": None}]
    assert d.slow_records == 0


def test_ksqldb_coercions_that_arrow_casts_alike_stay_fast() -> None:
    d = Decoding(cols("A STRING", "B STRING", "C BIGINT", "D DOUBLE"))
    schema = record(("a", "int"), ("b", "boolean"), ("c", "string"), ("d", "int"))
    assert d.check(d.framed(schema, {"a": 10, "b": True, "c": "12", "d": 3})) == [
        {"A": "10", "B": "true", "C": 12, "D": 3.0, "__error": None}]
    assert d.slow_records == 0


@pytest.mark.parametrize(("schema", "columns", "datum"), [
    (record(("m", {"type": "map", "values": "int"})), cols("M MAP<STRING, INT>"), {"m": {"a": 1}}),
    (record(("u", ["null", "int", "string"])), cols("U STRING"), {"u": "x"}),
    (record(("f", "double")), cols("F STRING"), {"f": 1e20}),  # Java, Python and Arrow print it otherwise
], ids=["map", "union of two types", "double as text"])
def test_what_polars_cannot_read_or_arrow_would_convert_otherwise_falls_back(schema: Any, columns: tuple[Column, ...],
                                                                           datum: Any) -> None:
    d = Decoding(columns)
    d.check(d.framed(schema, datum, datum))
    assert d.slow_records == 2


def test_a_vector_of_several_ids_decodes_each_group_and_keeps_the_order() -> None:
    d = Decoding(cols("ID BIGINT", "M MAP<STRING, INT>"))
    fast = record(("id", "long"))
    slow = record(("id", "long"), ("m", {"type": "map", "values": "int"}))
    a, b = d.framed(fast, {"id": 1}, {"id": 3}), d.framed(slow, {"id": 2, "m": {"k": 1}})
    rows = d.check([a[0], b[0], None, b"not avro", a[1], b"\x00\x00\x00\x03\xe7\x02"])
    assert [r and r["ID"] for r in rows] == [1, 2, None, None, 3, None]
    assert [r and r["__error"] for r in rows][3:] == [
        "Unknown magic byte!", None, "Schema not found: no Avro schema has id 999"]
    assert d.slow_records == 3  # the map's record and the two bad headers


def test_a_body_with_trailing_bytes_cannot_shift_the_others() -> None:
    d = Decoding(cols("A BIGINT", "B BIGINT"))
    schema = record(("a", "long"), ("b", "long"))
    blobs = d.framed(schema, *({"a": i, "b": -i} for i in range(5)))
    blobs[2] += varint(7)  # fastavro ignores it; concatenated, it would be read as the next record's a
    rows = d.check(blobs)
    assert [r["A"] for r in rows if r] == [0, 1, 2, 3, 4]
    assert d.slow_records == 5


def test_a_truncated_body_falls_back_and_gets_its_own_error() -> None:
    d = Decoding(cols("A BIGINT", "S STRING"))
    blobs = d.framed(record(("a", "long"), ("s", "string")), {"a": 1, "s": "hello"}, {"a": 2, "s": "world"})
    rows = d.check([blobs[0], blobs[1][:-3]])
    assert rows[0] == {"A": 1, "S": "hello", "__error": None}
    assert rows[1] is not None and rows[1]["__error"].startswith("Error deserializing Avro message")


def test_polars_reads_no_maps_nor_wider_unions() -> None:
    assert polars_schema(record(("m", {"type": "map", "values": "int"})), None) is None
    assert polars_schema(record(("u", ["int", "string"])), None) is None
    assert polars_schema("long", None) is None  # a bare value needs a column to be read into
    assert polars_schema("long", "V") == record(("V", "long")) | {"name": "nbs_single"}
    assert polars_schema(record(("x", "int")), "V") == record(("V", record(("x", "int")))) | {"name": "nbs_single"}


def test_a_record_read_into_one_struct_column_is_that_columns_value() -> None:
    d = Decoding(cols("ROWVAL STRUCT<F0 INT>"), wrapped=False)
    assert d.check(d.framed(record(("F0", "int")), {"F0": 1})) == [{"ROWVAL": {"F0": 1}, "__error": None}]
    assert d.slow_records == 0
