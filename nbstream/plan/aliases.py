"""Names ksqlDB gives to unaliased expressions: ``KSQL_COL_<n>``, or a dereferenced field's name.

Generated names never clash with the source's columns: every source column ``NAME`` or
``NAME_<n>`` reserves its number for the base ``NAME``; a struct field ``F`` selected through
``S->F`` is called ``F`` if no source column is, else ``F_1``, ``F_2``, … (the first free number).
``KSQL_COL_<n>`` always carries its number, starting at 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GENERATED_PREFIX = "KSQL_COL"

#: ``NAME_26`` → (``NAME``, 26); ``NAME`` → (``NAME``, 0).
_NUMBERED = re.compile(r"(?P<name>.*?)(?:_(?P<number>\d+))?")


def _split(name: str) -> tuple[str, int]:
    match = _NUMBERED.fullmatch(name)
    assert match is not None  # the pattern matches every string
    number = match.group("number")
    return match.group("name"), 0 if number is None else int(number)


class AliasGenerator:
    """Generates the names of a projection's unaliased expressions, in projection order."""

    def __init__(self, source_columns: Iterable[str]) -> None:
        self._used: dict[str, set[int]] = {}
        for column in source_columns:
            base, number = _split(column)
            self._used.setdefault(base, set()).add(number)

    def next_generated(self) -> str:
        """The next ``KSQL_COL_<n>``."""
        return f"{GENERATED_PREFIX}_{self._take(GENERATED_PREFIX)}"

    def field(self, field_name: str) -> str:
        """The name of a dereference ``s->field_name``."""
        base, _ = _split(field_name)
        number = self._take(base)
        return base if number == 0 and base != GENERATED_PREFIX else f"{base}_{number}"

    def _take(self, base: str) -> int:
        used = self._used.setdefault(base, set())
        number = 0
        while number in used:
            number += 1
        used.add(number)
        return number
