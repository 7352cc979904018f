"""Serialization formats: ksqlDB's JSON, DELIMITED, KAFKA and NONE as vectorised DuckDB SQL.

>>> format_for("json").name
'JSON'
>>> format_for("delimited", {"VALUE_DELIMITER": "TAB"}).delimiter
'\\t'

Formats over a schema registry (AVRO, JSON_SR, PROTOBUF; PROTOBUF_NOSR needs none) take the
engine's :class:`~nbstream.formats.registry.Registry` for their Python-side calls; their SQL
calls the codecs of :mod:`nbstream.formats.codecs`. Call :func:`register_udfs` and
:func:`nbstream.formats.codecs.attach` on each DuckDB connection that evaluates format SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nbstream.errors import FormatError, did_you_mean
from nbstream.formats.avro import AvroFormat
from nbstream.formats.base import Decoded, Format, register_udfs
from nbstream.formats.delimited import DelimitedFormat, parse_delimiter
from nbstream.formats.json import JsonFormat
from nbstream.formats.json_sr import JsonSrFormat
from nbstream.formats.kafka import KafkaFormat
from nbstream.formats.none import NoneFormat
from nbstream.formats.protobuf import ProtobufFormat
from nbstream.formats.registry import Registry

__all__ = ["FORMATS", "Decoded", "Format", "format_for", "register_udfs"]

#: The formats nbstream serializes itself.
FORMATS = ("JSON", "DELIMITED", "KAFKA", "NONE")
#: ksqlDB formats that need a schema registry.
REGISTRY_FORMATS = ("AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR")
#: The registry formats nbstream serializes.
SUPPORTED_REGISTRY_FORMATS = ("AVRO", "JSON_SR", "PROTOBUF", "PROTOBUF_NOSR")


def format_for(name: str, properties: Mapping[str, Any] | None = None, *, is_key: bool = False,
               registry: Registry | None = None) -> Format:
    """The format called ``name`` (case-insensitive), configured by the source's WITH ``properties``.

    ``properties`` keys are case-insensitive; DELIMITED reads ``KEY_DELIMITER`` when ``is_key``,
    else ``VALUE_DELIMITER`` (a single character, ``TAB`` or ``SPACE``; default ``,``). Other
    formats reject that property as ksqlDB does. ``registry`` serves the Python-side calls of the
    registry formats (encode_python/decode_python)."""
    upper = name.upper()
    props = {k.upper(): v for k, v in (properties or {}).items()}
    prop = "KEY_DELIMITER" if is_key else "VALUE_DELIMITER"
    if upper == "DELIMITED":
        return DelimitedFormat(parse_delimiter(props[prop], prop) if props.get(prop) is not None else ",")
    if upper == "AVRO" and props.get(prop) is None:
        return AvroFormat(props, registry)
    if upper == "JSON_SR" and props.get(prop) is None and props.get("SCHEMA_FULL_NAME") is None:
        return JsonSrFormat(props, registry)
    if upper in ("PROTOBUF", "PROTOBUF_NOSR") and props.get(prop) is None and \
            (upper == "PROTOBUF" or props.get("SCHEMA_FULL_NAME") is None):
        return ProtobufFormat(props, registry, registry_framed=upper == "PROTOBUF", is_key=is_key)
    if upper not in FORMATS + SUPPORTED_REGISTRY_FORMATS:
        raise FormatError(f"Unknown format: {name}.{did_you_mean(name, FORMATS)}")
    if props.get(prop) is not None:
        raise FormatError(f"{upper} does not support the following configs: [delimiter]")
    if props.get("SCHEMA_FULL_NAME") is not None and upper not in ("AVRO", "PROTOBUF"):
        raise FormatError(f"{upper} does not support the following configs: [fullSchemaName]")
    simple: dict[str, Callable[[], Format]] = {"JSON": JsonFormat, "KAFKA": KafkaFormat, "NONE": NoneFormat}
    return simple[upper]()
