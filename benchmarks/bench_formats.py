"""Throughput of the formats' SQL: encode and decode of typical rows, one DuckDB thread.

Run: ``python benchmarks/bench_formats.py [rows]``. AVRO runs in DuckDB Arrow functions, one
Python call per vector of 2,048 records: decoding reads the vector's bodies with polars' Rust
Avro reader in one call, encoding builds the vector's bytes in numpy
(``nbstream/formats/avro_encode.py``); PROTOBUF decoding parses each record with upb inside one
call per vector and gathers its columns from C, encoding builds the bytes in numpy
(``nbstream/formats/protobuf_codec.py``); JSON, JSON_SR (JSON behind a 5-byte header, checked by
one Arrow call per vector) and DELIMITED are DuckDB SQL. Each measurement is one DuckDB query over an
in-memory table (best of three, in process CPU time so that other load on the machine matters
less), materialised with ``CREATE TEMP TABLE ... AS`` so DuckDB cannot
skip work; rows/s are printed per format and direction. Then, per registry format and JSON, a
persistent query decodes the rows from the durable log and filters them (the whole engine: log
reads, micro-batches, commits; in process CPU time too).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable

import duckdb

from nbstream import Engine
from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType, parse_type
from nbstream.formats import Format, codecs, format_for, register_udfs
from nbstream.formats.avro_schema import avro_schema_for
from nbstream.formats.base import let_relation
from nbstream.formats.json_schema import json_schema_for
from nbstream.formats.protobuf_schema import proto_schema_for
from nbstream.formats.registry import SchemaRegistry

#: A typical value schema: BIGINT, VARCHAR, DOUBLE, DECIMAL, BOOLEAN (+ TIMESTAMP for decode).
COLUMNS = tuple(
    Column(name, parse_type(t))
    for name, t in [
        ("ID", "BIGINT"),
        ("NAME", "VARCHAR"),
        ("PRICE", "DOUBLE"),
        ("AMOUNT", "DECIMAL(10, 2)"),
        ("OK", "BOOLEAN"),
        ("TS", "TIMESTAMP"),
    ]
)

_ROWS_SQL = """SELECT i::BIGINT AS "ID", 'name-' || (i % 1000) AS "NAME",
  (i % 100000) / 7.0 * (CASE WHEN i % 10 = 0 THEN 1e12 ELSE 1 END) AS "PRICE",
  ((i % 100000) / 100)::DECIMAL(10, 2) AS "AMOUNT", i % 2 = 0 AS "OK",
  make_timestamp(1700000000000000 + i * 1000) AS "TS"
FROM range({n}) r(i)"""


def _best(run: Callable[[], None], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def bench(con: duckdb.DuckDBPyConnection, fmt: Format, n: int) -> tuple[float, float]:
    """(encode rows/s, decode rows/s) of ``fmt`` over ``n`` typical rows."""
    enc = fmt.encode_sql([(c, f'"{c.name}"') for c in COLUMNS], wrap_single_value=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE blobs AS SELECT {enc} AS b FROM rows")

    def encode() -> None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE out AS SELECT {enc} AS b FROM rows")

    def decode() -> None:
        dec = fmt.decode_sql("b", COLUMNS, wrap_single_value=True)
        exprs = ", ".join([*dec.columns, dec.error or "false", dec.error_message or "NULL"])
        con.execute(f"CREATE OR REPLACE TEMP TABLE dec AS SELECT {exprs} FROM {let_relation('blobs', dec)}")

    return n / _best(encode), n / _best(decode)


def from_log(value_format: str, n: int) -> float:
    """Records/s of a persistent query decoding ``n`` records of ``value_format`` from the durable
    log and filtering them (1% pass; the sink writes JSON so that encoding weighs little)."""
    frame = duckdb.sql(_ROWS_SQL.format(n=n)).to_arrow_table()
    columns = ", ".join(f"{c.name} {c.type}" for c in COLUMNS)
    with tempfile.TemporaryDirectory() as state:
        eng = Engine(path=state)
        eng.execute(f"CREATE STREAM S ({columns}) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='{value_format}');")
        eng.produce_batch("s", frame)
        eng.execute("CREATE STREAM F WITH (VALUE_FORMAT='JSON') AS SELECT ID, PRICE FROM S WHERE ID % 100 = 0;")
        started = time.process_time()  # CPU time: the machine is shared, wall clock varies 2-3x
        eng.run_until_idle()
        elapsed = time.process_time() - started
        assert eng.log.require("F").size == n // 100
        eng.close()
    return n / elapsed


def main(n: int = 500_000) -> None:
    con = duckdb.connect()
    con.execute("SET threads=1")
    register_udfs(con)
    con.execute(f"CREATE TEMP TABLE rows AS {_ROWS_SQL.format(n=n)}")
    registry = SchemaRegistry(con)
    codecs.attach(con, registry)  # AVRO's encoder and decoder are Arrow functions bound to a registry
    schema_id = registry.register("bench-value", avro_schema_for(COLUMNS, wrapped=True))
    json_id = registry.register("bench-json-value", json_schema_for(COLUMNS, wrapped=True), "JSON")
    proto_id = registry.register("bench-proto-value", proto_schema_for(COLUMNS), "PROTOBUF")
    formats = {"JSON": format_for("JSON"), "DELIMITED": format_for("DELIMITED"),
               "AVRO": format_for("AVRO", {"SCHEMA_ID": schema_id}, registry=registry),
               "JSON_SR": format_for("JSON_SR", {"SCHEMA_ID": json_id}, registry=registry),
               "PROTOBUF": format_for("PROTOBUF", {"SCHEMA_ID": proto_id}, registry=registry)}
    for name, fmt in formats.items():
        enc, dec = bench(con, fmt, n)
        print(f"{name:10s} encode {enc / 1e6:6.2f}M rows/s   decode {dec / 1e6:6.2f}M rows/s")
    for name in ("JSON", "AVRO", "JSON_SR", "PROTOBUF"):
        figure = from_log(name, n)
        print(f"{name:10s} decode + filter from the durable log (engine, CPU time) {figure / 1e6:6.2f}M rows/s")
    _ = SqlType  # re-exported for ad-hoc experiments


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500_000)
