"""ksqlDB's custom types: ``CREATE TYPE ADDRESS AS STRUCT<…>`` names a type for later statements.

As in ksqlDB (``TypeRegistryImpl``), a name is case-insensitive and stands for a type that is
resolved when it is registered: ``CREATE TYPE PERSON AS STRUCT<ADDRESS ADDRESS>`` keeps the
STRUCT that ``ADDRESS`` was then. A statement's references are resolved when it is bound, so a
stream keeps the columns it was created with whatever later becomes of the type — which is why
ksqlDB lets ``DROP TYPE`` drop a type that streams were declared with.
"""

from __future__ import annotations

from nbstream.catalog.types import SqlType
from nbstream.errors import Span, UnknownNameError, did_you_mean

#: The names ksqlDB reads as its own types before looking for a custom type.
BUILT_IN_NAMES = ("BOOLEAN", "INT", "INTEGER", "BIGINT", "DOUBLE", "STRING", "VARCHAR", "BYTES", "TIMESTAMP",
                  "DATE", "TIME", "DECIMAL", "ARRAY", "MAP", "STRUCT")


class TypeRegistry:
    """The custom types of a catalog: upper-case names → the (resolved) types they stand for."""

    def __init__(self) -> None:
        self._types: dict[str, SqlType] = {}

    def find(self, name: str) -> SqlType | None:
        """The type called ``name`` (any case), or None."""
        return self._types.get(name.upper())

    def register(self, name: str, sql_type: SqlType) -> bool:
        """Name ``sql_type`` (resolved) ``name``; False, changing nothing, if the name is taken."""
        if sql_type.has_custom:
            raise ValueError(f"register a resolved type, not {sql_type}")
        return self._types.setdefault(name.upper(), sql_type) is sql_type

    def drop(self, name: str) -> bool:
        """Forget the type called ``name``; False if there was none."""
        return self._types.pop(name.upper(), None) is not None

    def items(self) -> list[tuple[str, SqlType]]:
        """Every custom type as (name, type), by name."""
        return sorted(self._types.items())

    def resolve(self, sql_type: SqlType, span: Span | None = None) -> SqlType:
        """``sql_type`` with every custom type it names replaced by the type it stands for; an
        :class:`~nbstream.errors.UnknownNameError` naming the near miss for an unknown name."""
        if not sql_type.has_custom:
            return sql_type
        if sql_type.name == "CUSTOM":
            name = str(sql_type.custom_name)
            found = self._types.get(name)
            if found is None:
                hint = did_you_mean(name, [*BUILT_IN_NAMES, *self._types])
                raise UnknownNameError(f"Cannot resolve unknown type: {name}.{hint}".rstrip("."), span)
            return found
        if sql_type.name == "ARRAY":
            assert sql_type.element is not None
            return SqlType.array(self.resolve(sql_type.element, span))
        if sql_type.name == "MAP":
            assert sql_type.key is not None and sql_type.element is not None
            return SqlType.map(self.resolve(sql_type.key, span), self.resolve(sql_type.element, span))
        return SqlType.struct([(name, self.resolve(t, span)) for name, t in sql_type.fields])
