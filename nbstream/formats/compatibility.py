"""BACKWARD compatibility of two schemas compared as the ksqlDB types they read as: can a reader
of the new schema read what the old one wrote? Used for JSON and PROTOBUF schemas (AVRO has
Avro's own schema resolution, :func:`nbstream.formats.avro_schema.backward_incompatibility`).

A field of both keeps its type or widens it (INTEGER to BIGINT or DOUBLE, BIGINT to DOUBLE:
what JSON numbers and Protobuf varints allow); a STRUCT's, ARRAY's and MAP's inner types follow
the same rule; a new field is optional unless ``required`` names it; a field only the old schema
has is ignored (JSON objects are open, Protobuf skips unknown fields). The reason names the field.
"""

from __future__ import annotations

from collections.abc import Mapping

from nbstream.catalog.types import SqlType

#: What a reader of each type also reads.
_WIDER: Mapping[str, tuple[str, ...]] = {"INTEGER": ("BIGINT", "DOUBLE"), "BIGINT": ("DOUBLE",)}


def type_incompatibility(reader: SqlType, writer: SqlType, required: frozenset[str] = frozenset(),
                         path: str = "") -> str | None:
    """Why a reader of ``reader`` cannot read values of ``writer`` (see the module), naming the field
    by its ``path``; None when it can. ``required``: the reader STRUCT's fields that must be there."""
    if reader.name == "STRUCT" and writer.name == "STRUCT":
        written = dict(writer.fields)
        for name, rtype in reader.fields:
            where = f"{path}.{name}" if path else name
            if name not in written:
                if name in required:
                    return f"field '{where}' is new and required"
                continue
            why = type_incompatibility(rtype, written[name], frozenset(), where)
            if why:
                return why
        return None
    if reader.name == writer.name and reader.name in ("ARRAY", "MAP"):
        assert reader.element is not None and writer.element is not None
        inner = path + ("[]" if reader.name == "ARRAY" else "{}")
        return type_incompatibility(reader.element, writer.element, frozenset(), inner)
    if reader == writer or reader.name in _WIDER.get(writer.name, ()):
        return None
    return f"field '{path or '<value>'}' changed type from {writer} to {reader}"
