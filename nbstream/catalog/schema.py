"""Columns and logical schemas of streams and tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nbstream.catalog.types import SqlType, quote_identifier
from nbstream.errors import UnknownNameError, did_you_mean

Role = Literal["KEY", "VALUE", "HEADER", "HEADERS"]

#: Pseudo-columns every source has (ksqlDB's names), and their types.
PSEUDO_COLUMNS = ("ROWTIME", "ROWPARTITION", "ROWOFFSET")
WINDOW_BOUNDS = ("WINDOWSTART", "WINDOWEND")


@dataclass(frozen=True)
class Column:
    """A column of a source: its exact ``name``, ``type`` and where it lives in a record."""

    name: str
    type: SqlType
    role: Role = "VALUE"
    header_key: str | None = None  # the header a ``HEADER('k')`` column reads

    def __str__(self) -> str:
        suffix = {"VALUE": "", "KEY": " KEY", "HEADERS": " HEADERS"}.get(self.role, "")
        if self.role == "HEADER":
            suffix = f" HEADER('{self.header_key}')"
        return f"{quote_identifier(self.name)} {self.type}{suffix}"


@dataclass(frozen=True)
class LogicalSchema:
    """The ordered columns of a source: key columns, then value and header columns."""

    columns: tuple[Column, ...]

    @property
    def key(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role == "KEY")

    @property
    def value(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role == "VALUE")

    @property
    def headers(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role in ("HEADER", "HEADERS"))

    def find(self, name: str) -> Column | None:
        """The column called ``name``: exact match first, then case-insensitive."""
        for col in self.columns:
            if col.name == name:
                return col
        for col in self.columns:
            if col.name.upper() == name.upper():
                return col
        return None

    def get(self, name: str, *, source: str = "") -> Column:
        """Like :meth:`find`, but raises :class:`UnknownNameError` with a near-miss suggestion."""
        col = self.find(name)
        if col is None:
            where = f" in {source}" if source else ""
            hint = did_you_mean(name, [c.name for c in self.columns])
            raise UnknownNameError(f"column `{name}` cannot be resolved{where}.{hint}")
        return col

    def __str__(self) -> str:
        return ", ".join(str(c) for c in self.columns)
