"""Avro schemas ↔ ksqlDB types, by ksqlDB's rules (``AvroSchemas``, ``ConnectSchemaTranslator``).

* SQL → Avro (what a sink registers): a value is a record ``KsqlDataSourceSchema`` in namespace
  ``io.confluent.ksql.avro_schemas``, every field optional (``["null", T]``, default ``null``);
  nested STRUCTs are records named ``KsqlDataSourceSchema_<FIELD>``; DECIMAL is ``bytes`` with the
  ``decimal`` logical type; TIMESTAMP ``long``/``timestamp-millis``; DATE ``int``/``date``; TIME
  ``int``/``time-millis``; MAP a ``map`` (string keys).
* Avro → SQL (schema inference): ``int``/``long``/``float``/``double``/``string``/``boolean``/
  ``bytes`` as INTEGER/BIGINT/DOUBLE/DOUBLE/STRING/BOOLEAN/BYTES, the logical types as above (and
  ``time-micros``/``timestamp-micros``), ``enum`` as STRING, ``["null", T]`` as T, ``record`` as
  STRUCT with upper-cased field names (as ksqlDB's inferred columns are), a union of several types
  as a STRUCT of one field per branch, named as Kafka Connect names them (``INT``, ``STRING``, a
  record's name), of which a record sets the one it holds.
* :func:`reader_view`: a writer schema rewritten so that decoding it yields the *reader's* column
  names (matched exactly, then case-insensitively), named types inlined — the binary form does
  not depend on names, so one C decode call produces rows keyed as the Arrow result wants them.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import itertools
import re
from collections.abc import Sequence
from typing import Any

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError

NAMESPACE = "io.confluent.ksql.avro_schemas"
RECORD_NAME = "KsqlDataSourceSchema"

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_EPOCH_DATE = datetime.date(1970, 1, 1)


# -- SQL → Avro ---------------------------------------------------------------------------------


def avro_schema_for(columns: Sequence[Column], *, wrapped: bool, full_name: str | None = None) -> Any:
    """The Avro schema ksqlDB writes ``columns`` with: a record, or (unwrapped) the one column's type."""
    name = full_name or f"{NAMESPACE}.{RECORD_NAME}"
    if not wrapped:
        if len(columns) != 1:
            raise FormatError("an unwrapped Avro schema needs exactly one column")
        return _optional(avro_type(columns[0].type, name))
    return _record(name, [(c.name, c.type) for c in columns])


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_names(columns: Sequence[Column]) -> None:
    """Raise :class:`FormatError` for a column or STRUCT field name Avro cannot carry."""
    def check(name: str) -> None:
        if not _NAME.fullmatch(name):
            why = "Illegal initial character" if not _NAME.match(name) else "Illegal character in"
            raise FormatError(f"Schema is not compatible with Avro: {why}: {name}")

    def walk(t: SqlType) -> None:
        for n, ft in t.fields:
            check(n)
            walk(ft)
        for inner in (t.element, t.key):
            if inner is not None:
                walk(inner)

    for col in columns:
        check(col.name)
        walk(col.type)


def check_full_name(full_name: str | None) -> None:
    """ksqlDB's rule: a given full schema name is not blank."""
    if full_name is not None and not full_name.strip():
        raise FormatError("fullSchemaName cannot be empty. Format configuration: "
                          f"{{fullSchemaName={full_name.strip()}}}")


def _record(full_name: str, fields: Sequence[tuple[str, SqlType]]) -> dict[str, Any]:
    namespace, _, name = full_name.rpartition(".")
    record: dict[str, Any] = {"type": "record", "name": name}
    if namespace:
        record["namespace"] = namespace
    record["fields"] = [{"name": n, "type": _optional(avro_type(t, f"{full_name}_{n}")), "default": None}
                        for n, t in fields]
    return record


def _optional(t: Any) -> Any:
    return ["null", t]


def avro_type(t: SqlType, name: str) -> Any:
    """The Avro type of ``t``; ``name`` names a record made for a STRUCT."""
    simple = {"BOOLEAN": "boolean", "INTEGER": "int", "BIGINT": "long", "DOUBLE": "double",
              "STRING": "string", "BYTES": "bytes"}
    if t.name in simple:
        return simple[t.name]
    if t.name == "DECIMAL":
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if t.name == "TIMESTAMP":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if t.name == "DATE":
        return {"type": "int", "logicalType": "date"}
    if t.name == "TIME":
        return {"type": "int", "logicalType": "time-millis"}
    if t.name == "ARRAY":
        assert t.element is not None
        return {"type": "array", "items": _optional(avro_type(t.element, name))}
    if t.name == "MAP":
        assert t.key is not None and t.element is not None
        if t.key.name != "STRING":
            raise FormatError(f"Avro maps have STRING keys, not {t.key}")
        return {"type": "map", "values": _optional(avro_type(t.element, name))}
    if t.name == "STRUCT":
        return _record(name, t.fields)
    raise FormatError(f"The 'AVRO' format does not support type '{t.name}'")


# -- Avro → SQL ---------------------------------------------------------------------------------


def sql_type_of(schema: Any, named: dict[str, Any] | None = None) -> SqlType:
    """The ksqlDB type of the Avro ``schema`` (see the module docstring)."""
    named = {} if named is None else named
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1:
            return sql_type_of(branches[0], named)
        return SqlType.struct([(union_member_name(b, named).upper(), sql_type_of(b, named)) for b in branches])
    if isinstance(schema, str):
        if schema in named:
            return sql_type_of(named[schema], named)
        simple = {"boolean": "BOOLEAN", "int": "INTEGER", "long": "BIGINT", "float": "DOUBLE",
                  "double": "DOUBLE", "string": "STRING", "bytes": "BYTES"}
        if schema not in simple:
            raise FormatError(f"Unsupported Avro type: {schema}")
        return SqlType(simple[schema])
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind in ("record", "enum", "fixed") and "name" in schema:
        named[schema["name"]] = schema
        if schema.get("namespace"):
            named[f"{schema['namespace']}.{schema['name']}"] = schema
    if logical == "decimal":
        return SqlType.decimal(int(schema["precision"]), int(schema.get("scale", 0)))
    if logical in ("timestamp-millis", "timestamp-micros"):
        return SqlType("TIMESTAMP")
    if logical == "date":
        return SqlType("DATE")
    if logical in ("time-millis", "time-micros"):
        return SqlType("TIME")
    if kind == "record":
        return SqlType.struct([(f["name"].upper(), sql_type_of(f["type"], named)) for f in schema["fields"]])
    if kind == "array":
        return SqlType.array(sql_type_of(schema["items"], named))
    if kind == "map":
        return SqlType.map(SqlType("STRING"), sql_type_of(schema["values"], named))
    if kind == "enum":
        return SqlType("STRING")
    if kind == "fixed":
        return SqlType("BYTES")
    return sql_type_of(kind, named)


def union_member_name(branch: Any, named: dict[str, Any] | None = None) -> str:
    """The name of a union branch's field in the STRUCT a union of several types reads as (Kafka
    Connect's ``AvroData.unionMemberFieldName``): a record's, enum's or fixed's simple name, else
    the Avro type's name (``int``, ``string``; a logical type's underlying one)."""
    if isinstance(branch, str):
        found = (named or {}).get(branch)
        return union_member_name(found, named) if found is not None else branch.rsplit(".", 1)[-1]
    if isinstance(branch, list):
        raise FormatError(f"An Avro union cannot hold another union: {branch}")
    kind = branch.get("type")
    if kind in ("record", "enum", "fixed"):
        return str(branch["name"]).rsplit(".", 1)[-1]
    return union_member_name(kind, named) if isinstance(kind, dict | list) else str(kind)


def columns_of(schema: Any, role: str, *, single_name: str, unwrapped: bool = False) -> list[Column]:
    """Columns inferred from a subject's schema: a record's fields, else (or when ``unwrapped``)
    one column ``single_name``."""
    bare = _non_null(schema)
    if not unwrapped and isinstance(bare, dict) and bare.get("type") == "record":
        t = sql_type_of(bare)
        return [Column(n, ft, role) for n, ft in t.fields]  # type: ignore[arg-type]
    return [Column(single_name, sql_type_of(schema), role)]  # type: ignore[arg-type]


def _non_null(schema: Any) -> Any:
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return branches[0] if len(branches) == 1 else schema
    return schema


# -- reading with a writer schema -----------------------------------------------------------------


def reader_view(writer: Any, reader: SqlType | None) -> Any:
    """``writer`` with named types inlined (uniquely renamed) and record fields renamed to the
    field names of the ``reader`` STRUCT that match them (exactly, else case-insensitively);
    fields the reader lacks keep their names. ``reader`` None renames nothing."""
    counter = itertools.count()
    named: dict[str, Any] = {}

    def walk(s: Any, r: SqlType | None, space: str) -> Any:
        if isinstance(s, list) and len([b for b in s if b != "null"]) > 1:
            return [b if b == "null" else member(b, r, space) for b in s]
        if isinstance(s, list):
            return [walk(b, r, space) for b in s]
        if isinstance(s, str):
            full = s if "." in s or not space else f"{space}.{s}"
            found = named.get(full) or named.get(s)
            return walk(found, r, space) if found is not None else s
        kind = s.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = s.get("namespace", space)
            full = s["name"] if "." in s["name"] or not ns else f"{ns}.{s['name']}"
            named.setdefault(full, s)
            named.setdefault(s["name"], s)
            copy = dict(s, name=f"nbs{next(counter)}")
            copy.pop("namespace", None)
            if kind == "record":
                copy["fields"] = [_field(f, r, lambda t, ft, _ns=ns: walk(ft, t, _ns)) for f in s["fields"]]
            return copy
        if kind == "array":
            return dict(s, items=walk(s["items"], r.element if r is not None and r.name == "ARRAY" else None, space))
        if kind == "map":
            return dict(s, values=walk(s["values"], r.element if r is not None and r.name == "MAP" else None, space))
        if isinstance(kind, list | dict):
            return dict(s, type=walk(kind, r, space))
        return s

    def member(branch: Any, r: SqlType | None, space: str) -> dict[str, Any]:
        """A branch of a union of several types as a record of one field named after the branch:
        the same bytes (a record is its fields' encodings), decoded as the STRUCT the union reads as."""
        field = {"name": union_member_name(branch, named), "type": branch}
        return {"type": "record", "name": f"nbs{next(counter)}",
                "fields": [_field(field, r, lambda t, ft: walk(ft, t, space))]}

    return walk(writer, reader, "")


def _field(f: dict[str, Any], reader: SqlType | None, walk: Any) -> dict[str, Any]:
    name, ftype = f["name"], None
    if reader is not None and reader.name == "STRUCT":
        for rn, rt in reader.fields:
            if rn == name:
                name, ftype = rn, rt
                break
        else:
            for rn, rt in reader.fields:
                if rn.upper() == f["name"].upper():
                    name, ftype = rn, rt
                    break
    out = dict(f, name=name, type=walk(ftype, f["type"]))
    out.pop("aliases", None)
    return out


# -- Python values ↔ Avro datums --------------------------------------------------------------------


def to_datum(value: Any, schema: Any) -> Any:
    """The logical content ``value`` (as in ksqlDB's QTT files: epoch ms, base64 bytes, numbers)
    as a datum of the (parsed or plain) Avro ``schema``; record fields are looked up exactly,
    then case-insensitively."""
    if value is None:
        return None
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return to_datum(value, branches[0]) if len(branches) == 1 else value
    if isinstance(schema, str):
        return _primitive(value, schema, None)
    kind = schema.get("type")
    if isinstance(kind, list | dict):
        return to_datum(value, kind)
    if kind == "record":
        if not isinstance(value, dict):
            return value
        upper = {str(k).upper(): v for k, v in value.items()}
        out = {}
        for f in schema["fields"]:
            if f["name"] in value:
                out[f["name"]] = to_datum(value[f["name"]], f["type"])
            elif f["name"].upper() in upper:
                out[f["name"]] = to_datum(upper[f["name"].upper()], f["type"])
        return out
    if kind == "array":
        return [to_datum(v, schema["items"]) for v in value] if isinstance(value, list) else value
    if kind == "map":
        return {str(k): to_datum(v, schema["values"]) for k, v in value.items()} if isinstance(value, dict) else value
    return _primitive(value, kind, schema.get("logicalType"), schema)


def _primitive(value: Any, kind: str, logical: str | None, schema: Any = None) -> Any:
    if logical == "decimal":
        return decimal.Decimal(str(value))
    if kind == "string" and not isinstance(value, str):
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return base64.b64decode(value)
    if kind in ("float", "double") and isinstance(value, int | decimal.Decimal) and not isinstance(value, bool):
        return float(value)
    if kind in ("int", "long") and isinstance(value, float | decimal.Decimal) and value == int(value):
        return int(value)
    if kind in ("int", "long") and isinstance(value, str) and value.lstrip("+-").isdigit():
        return int(value)  # QTT files give DATE, TIME and TIMESTAMP values as numbers in strings
    return value


def dates_as_days(schema: Any) -> Any:
    """``schema`` with its ``date`` logical types dropped: a reader then returns DATEs as the
    epoch days they hold, not as Python dates (whose range is smaller than DuckDB's and ksqlDB's)."""
    if isinstance(schema, list):
        return [dates_as_days(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("logicalType") == "date":
        return {k: v for k, v in schema.items() if k != "logicalType"}
    return {k: dates_as_days(v) if k in ("type", "fields", "items", "values") else v for k, v in schema.items()}


def from_datum(value: Any) -> Any:
    """A decoded Avro datum as ksqlDB's logical content: TIMESTAMP as epoch ms, DATE as epoch
    days, TIME as ms of the day; DECIMAL, bytes, records (dicts) and lists kept."""
    if isinstance(value, dict):
        return {k: from_datum(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_datum(v) for v in value]
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return (aware - _EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, datetime.date):
        return (value - _EPOCH_DATE).days
    if isinstance(value, datetime.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
    return value


# -- compatibility ----------------------------------------------------------------------------------

_PROMOTIONS = {"int": {"int", "long", "float", "double"}, "long": {"long", "float", "double"},
               "float": {"float", "double"}, "string": {"string", "bytes"}, "bytes": {"bytes", "string"}}


def backward_incompatibility(reader: Any, writer: Any, path: str = "") -> str | None:
    """Why a reader of ``reader`` cannot read data written with ``writer`` (Avro schema
    resolution), naming the field; None when it can."""
    r, w = _non_null(reader), _non_null(writer)
    if isinstance(w, list):  # a union writer: each branch must be readable
        return next((why for b in w if b != "null" and (why := backward_incompatibility(reader, b, path))), None)
    rk, wk = _kind(r), _kind(w)
    if rk == "record" and wk == "record":
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            where = f"{path}.{f['name']}" if path else f["name"]
            if f["name"] not in wfields:
                if "default" not in f:
                    return f"field '{where}' is new and has no default"
                continue
            why = backward_incompatibility(f["type"], wfields[f["name"]]["type"], where)
            if why:
                return why
        return None
    if rk == "array" and wk == "array":
        return backward_incompatibility(r["items"], w["items"], path + "[]")
    if rk == "map" and wk == "map":
        return backward_incompatibility(r["values"], w["values"], path + "{}")
    if rk == wk or (wk in _PROMOTIONS and rk in _PROMOTIONS[wk]):
        return None
    return f"field '{path or '<value>'}' changed type from {wk} to {rk}"


def _kind(s: Any) -> str:
    if isinstance(s, str):
        return s
    if isinstance(s, dict):
        kind = s.get("type")
        return kind if isinstance(kind, str) else _kind(kind)
    return "union"
