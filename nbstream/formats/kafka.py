"""ksqlDB's ``KAFKA`` format: one primitive serialized as Kafka's own serdes do.

INTEGER is 4 bytes and BIGINT 8 bytes big-endian two's complement, DOUBLE 8 bytes IEEE 754
big-endian, STRING UTF-8, BYTES as is. DuckDB reinterprets bytes through its ``BIT`` type
(``blob::BIT::INTEGER`` reads big-endian), so no user-defined function is needed.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.errors import FormatError
from nbstream.formats.base import Decoded, check_unwrapped_only, sql_str

#: Fixed-width types: byte size, Kafka deserializer name (for error text), struct code.
_FIXED = {"INTEGER": (4, "Integer", ">i"), "BIGINT": (8, "Long", ">q"), "DOUBLE": (8, "Double", ">d")}
_SUPPORTED = ("INTEGER", "BIGINT", "DOUBLE", "STRING", "BYTES")


class KafkaFormat:
    """The ``KAFKA`` format: zero or one column of INTEGER, BIGINT, DOUBLE, STRING or BYTES."""

    name = "KAFKA"

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        check_unwrapped_only(self.name, wrap_single_value)
        if len(columns) > 1:
            got = ", ".join(str(c) for c in columns)
            raise FormatError(f"The '{self.name}' format only supports a single field. Got: [{got}]")
        for col in columns:
            if col.type.name not in _SUPPORTED:
                raise FormatError(f"The '{self.name}' format does not support type '{col.type.name}'")

    def decode_sql(
        self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool
    ) -> Decoded:
        if not columns:
            return Decoded(())
        t = _single(columns).type
        if t.name in _FIXED:
            size, serde, _ = _FIXED[t.name]
            fits = f"octet_length({blob}) = {size}"
            value = f"CASE WHEN {fits} THEN ({blob}::BIT)::{t.duckdb()} END"
            message = sql_str(f"Size of data received by {serde}Deserializer is not {size}")
            return Decoded((value,), f"({blob} IS NOT NULL AND NOT {fits})", message)
        if t.name == "STRING":
            value = f"TRY(decode({blob}))"
            return Decoded((value,), f"({blob} IS NOT NULL AND {value} IS NULL)", "'Invalid UTF-8 text'")
        return Decoded((blob,))

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        if not columns:
            return "NULL::BLOB"
        col, expr = columns[0]
        if col.type.name in _FIXED:
            return f"(({expr})::{col.type.duckdb()}::BIT)::BLOB"
        if col.type.name == "STRING":
            return f"encode({expr})"
        return f"({expr})::BLOB"

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        if value is None or not columns:
            return None
        t = _single(columns).type
        if t.name in _FIXED:
            number = float(value) if t.name == "DOUBLE" else int(value)
            return struct.pack(_FIXED[t.name][2], number)
        if t.name == "BYTES":
            return _bytes(value)
        return str(value).encode()

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        if data is None or not columns:
            return None
        t = _single(columns).type
        if t.name in _FIXED:
            return struct.unpack(_FIXED[t.name][2], data)[0]
        return data if t.name == "BYTES" else data.decode()


def _single(columns: Sequence[Column]) -> Column:
    if len(columns) != 1:
        raise FormatError(f"The 'KAFKA' format only supports a single field. Got: {len(columns)}")
    return columns[0]


def _bytes(value: Any) -> bytes:
    """BYTES given in a test file: base64 text (as ksqlDB's tests write it), else raw bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()
