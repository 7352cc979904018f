"""ksqlDB's ``NONE`` format: the key or value carries no columns and nothing is serialized."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.errors import FormatError
from nbstream.formats.base import Decoded


class NoneFormat:
    """The ``NONE`` format: no columns; records are written with a null key/value."""

    name = "NONE"

    def check_columns(
        self, columns: Sequence[Column], *, is_key: bool, wrap_single_value: bool | None
    ) -> None:
        if columns:
            got = ", ".join(str(c) for c in columns)
            raise FormatError(f"The 'NONE' format can only be used when no columns are defined. Got: [{got}]")
        if wrap_single_value is not None:
            raise FormatError("Format 'NONE' does not support 'WRAP_SINGLE_VALUE'.")

    def decode_sql(
        self, blob: str, columns: Sequence[Column], *, wrap_single_value: bool
    ) -> Decoded:
        return Decoded(())

    def encode_sql(self, columns: Sequence[tuple[Column, str]], *, wrap_single_value: bool) -> str:
        return "NULL::BLOB"

    def encode_python(self, value: Any, columns: Sequence[Column]) -> bytes | None:
        return None

    def decode_python(self, data: bytes | None, columns: Sequence[Column], *, wrap_single_value: bool) -> Any:
        return None
