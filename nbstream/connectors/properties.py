"""Checking the ``WITH (…)`` properties of a connector: known keys, required and enumerated values.

Every error is a :class:`CatalogError` naming the connector and the property, with the nearest
known key or value when the user's is a near miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nbstream.errors import CatalogError, did_you_mean
from nbstream.sql.ast import PropertyValue


def checked(name: str, class_name: str, properties: Mapping[str, PropertyValue],
            known: Iterable[str]) -> dict[str, PropertyValue]:
    """``properties`` with lower-cased keys; an error for a key not in ``known``."""
    props = {k.lower(): v for k, v in properties.items()}
    allowed = list(known)
    for key in props:
        if key not in allowed:
            raise CatalogError(f"connector {name}: unknown {class_name} property '{key}'."
                               f"{did_you_mean(key, allowed)}".rstrip("."))
    return props


def text(name: str, props: Mapping[str, PropertyValue], key: str, what: str) -> str:
    """The required string property ``key`` (``what`` says what it is for)."""
    value = props.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"connector {name}: '{key}' is missing: {what}")
    return value


def optional_text(name: str, props: Mapping[str, PropertyValue], key: str) -> str | None:
    value = props.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CatalogError(f"connector {name}: '{key}' must be a non-empty string, not {value!r}")
    return value


def choice(name: str, props: Mapping[str, PropertyValue], key: str, options: Iterable[str],
           default: str | None) -> str | None:
    """The lower-cased value of ``key``, one of ``options`` (``default`` if absent)."""
    value = props.get(key, default)
    if value is None:
        return None
    allowed = list(options)
    if not isinstance(value, str) or value.lower() not in allowed:
        raise CatalogError(f"connector {name}: unknown {key} '{value}' (known: {', '.join(allowed)})."
                           f"{did_you_mean(str(value), allowed)}".rstrip("."))
    return value.lower()


def integer(name: str, props: Mapping[str, PropertyValue], key: str, default: int, minimum: int = 0) -> int:
    value = props.get(key, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CatalogError(f"connector {name}: '{key}' must be an integer of at least {minimum}, not {value!r}")
    return value
