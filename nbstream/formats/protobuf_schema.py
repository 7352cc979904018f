"""Protobuf schemas ↔ ksqlDB types, as ksqlDB has them (``ProtobufSchemaTranslator`` over Kafka
Connect's ``ProtobufData``).

*Parsing.* A ``.proto`` text is compiled by ``protoc`` itself — the one in ``grpcio-tools``
(``grpc_tools._protoc_compiler``), into a ``FileDescriptorSet`` with its imports — and the set is
loaded into a :class:`~google.protobuf.descriptor_pool.DescriptorPool` of its own, from which
:mod:`google.protobuf.message_factory` makes message classes (upb, C). protoc was chosen over a
pure-Python parser (``proto-schema-parser``) because it *is* the language's reference: name
resolution, nested and imported types, ``map<>``, ``optional``, proto2/proto3 and option syntax
(Confluent's ``[(confluent.field_meta) = {…}]``) come out exactly, with protoc's error text, and a
schema is compiled once per text (≈10 ms), never per record. The imports Confluent's schemas use
that protoc does not ship — ``confluent/meta.proto``, ``confluent/type/decimal.proto``,
``google/type/date.proto``, ``google/type/timeofday.proto`` — are written beside the schema from
:data:`BUILTIN_FILES`; references (``import "event.proto"``) from the registry's referenced
schemas. A schema registered as a base64 ``FileDescriptorProto`` (confluent-kafka's Python
serializer registers that form) is read as such.

*Protobuf → SQL* (schema inference, Connect's ``toConnectSchema``): ``int32``/``sint32``/
``sfixed32`` INTEGER; ``int64``/``uint32``/``uint64``/``sint64``/``fixed32``/``fixed64``/
``sfixed64`` BIGINT; ``float``/``double`` DOUBLE; ``bool``, ``string``, ``bytes``; an enum STRING;
``repeated`` ARRAY; ``map<>`` MAP; a message STRUCT; the wrappers (``google.protobuf.Int32Value``
…) their primitive; ``google.protobuf.Timestamp`` TIMESTAMP, ``google.type.Date`` DATE,
``google.type.TimeOfDay`` TIME, ``confluent.type.Decimal`` DECIMAL (precision and scale from the
field's ``confluent.field_meta`` params). Field names are upper-cased, as ksqlDB's inferred
columns are, except when the schema was named by id (ksqlDB's ``ORIGINAL_FIELD_NAME``). Members
of a ``oneof`` are read as fields of the message (Connect nests them in a STRUCT: not done).

*SQL → Protobuf* (what a sink registers, Connect's ``fromConnectSchema``): ``syntax = "proto3"``,
a message ``ConnectDefault1`` (or the ``*_SCHEMA_FULL_NAME``, its package the name's prefix)
whose fields are the columns, tags 1, 2, …; nested STRUCTs are nested messages
``ConnectDefault2``, …; TIMESTAMP/DATE/TIME/DECIMAL the message types above. ksqlDB's
``*_PROTOBUF_NULLABLE_REPRESENTATION``: by default scalars are plain proto3 fields (a NULL is
written as the type's default, 0, "" or false, and read back so); ``OPTIONAL`` marks them
``optional`` (presence kept); ``WRAPPER`` uses the ``google.protobuf`` wrapper messages.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message

from nbstream.catalog.schema import Column
from nbstream.catalog.types import SqlType
from nbstream.errors import FormatError
from nbstream.formats.compatibility import type_incompatibility

DEFAULT_NAME = "ConnectDefault"
WRAPPERS = {
    "google.protobuf.DoubleValue": "DOUBLE", "google.protobuf.FloatValue": "DOUBLE",
    "google.protobuf.Int64Value": "BIGINT", "google.protobuf.UInt64Value": "BIGINT",
    "google.protobuf.Int32Value": "INTEGER", "google.protobuf.UInt32Value": "BIGINT",
    "google.protobuf.BoolValue": "BOOLEAN", "google.protobuf.StringValue": "STRING",
    "google.protobuf.BytesValue": "BYTES",
}
#: The wrapper a nullable scalar of each ksqlDB type is written as (``WRAPPER`` representation).
WRAPPER_OF = {"INTEGER": "google.protobuf.Int32Value", "BIGINT": "google.protobuf.Int64Value",
              "DOUBLE": "google.protobuf.DoubleValue", "BOOLEAN": "google.protobuf.BoolValue",
              "STRING": "google.protobuf.StringValue", "BYTES": "google.protobuf.BytesValue"}
TIMESTAMP, DATE, TIME, DECIMAL = ("google.protobuf.Timestamp", "google.type.Date", "google.type.TimeOfDay",
                                  "confluent.type.Decimal")
_LOGICAL = {TIMESTAMP: "TIMESTAMP", DATE: "DATE", TIME: "TIME"}
_IMPORT_OF = {TIMESTAMP: "google/protobuf/timestamp.proto", DATE: "google/type/date.proto",
              TIME: "google/type/timeofday.proto", DECIMAL: "confluent/type/decimal.proto",
              **{w: "google/protobuf/wrappers.proto" for w in WRAPPERS}}

#: The imports of Confluent's schemas that protoc does not ship (the definitions Confluent's
#: libraries compile in).
BUILTIN_FILES = {
    "confluent/meta.proto": """syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
message Meta { string doc = 1; map<string, string> params = 2; repeated string tags = 3; }
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
""",
    "confluent/type/decimal.proto": """syntax = "proto3";
package confluent.type;
import public "confluent/meta.proto";  // Confluent's parser takes field_meta without the import
message Decimal { bytes value = 1; uint32 precision = 2; int32 scale = 3; }
""",
    "google/type/date.proto": """syntax = "proto3";
package google.type;
message Date { int32 year = 1; int32 month = 2; int32 day = 3; }
""",
    "google/type/timeofday.proto": """syntax = "proto3";
package google.type;
message TimeOfDay { int32 hours = 1; int32 minutes = 2; int32 seconds = 3; int32 nanos = 4; }
""",
    # reads a field's confluent.field_meta out of its serialized FieldOptions (extension 1088)
    "nbstream/field_meta.proto": """syntax = "proto3";
package nbstream;
import "confluent/meta.proto";
message FieldMeta { confluent.Meta field_meta = 1088; }
""",
}
_MAIN = "__nbstream_schema.proto"
_LOCK = threading.Lock()


# -- compiling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtoSchema:
    """A compiled ``.proto`` schema: its file and the pool its message classes come from."""

    pool: DescriptorPool
    file: FileDescriptor

    @property
    def messages(self) -> tuple[Descriptor, ...]:
        """The top-level messages, in the order of the text (message index 0, 1, …)."""
        return tuple(self.file.message_types_by_name[p.name] for p in self._proto().message_type)

    def _proto(self) -> descriptor_pb2.FileDescriptorProto:
        return descriptor_pb2.FileDescriptorProto.FromString(self.file.serialized_pb)

    def message(self, full_name: str | None = None) -> Descriptor:
        """The message named ``full_name`` (with or without the package), else the first one;
        :class:`FormatError` as ksqlDB words it when there is no such message."""
        messages = self.messages
        if not messages:
            raise FormatError("The Protobuf schema defines no message")
        if full_name is None:
            return messages[0]
        for found in messages:
            if full_name in (found.full_name, found.name):
                return found
        nested = self._nested(full_name)
        if nested is not None:
            return nested
        raise FormatError(f"Schema for message values on topic does not contain the message '{full_name}'. "
                          f"Known messages: {', '.join(m.full_name for m in messages)}")

    def _nested(self, full_name: str) -> Descriptor | None:
        try:
            return self.pool.FindMessageTypeByName(full_name)
        except KeyError:
            return None

    def indexes(self, message: Descriptor) -> list[int]:
        """Confluent's message indexes of ``message``: its position among its parent's messages,
        from the file down."""
        path: list[int] = []
        current: Descriptor | None = message
        while current is not None:
            parent = current.containing_type
            siblings = parent.nested_types if parent is not None else self.messages
            path.append([s.full_name for s in siblings].index(current.full_name))
            current = parent
        return path[::-1]

    def by_indexes(self, indexes: Sequence[int]) -> Descriptor:
        """The message at Confluent's ``indexes`` (IndexError when there is none)."""
        found = self.messages[indexes[0]]
        for i in indexes[1:]:
            found = found.nested_types[i]
        return found


@functools.lru_cache(maxsize=512)
def compile_schema(text: str, references: tuple[tuple[str, str], ...] = ()) -> ProtoSchema:
    """The compiled schema of the ``.proto`` ``text`` (or base64 ``FileDescriptorProto``), with
    ``references`` as ``(import name, .proto text)``; :class:`FormatError` with protoc's message."""
    serialized = _serialized_descriptor(text)
    if serialized is not None:
        return _from_descriptor(serialized, references)
    files = _compile({**BUILTIN_FILES, **dict(references), _MAIN: text}, _MAIN)
    return _load(files, _MAIN)


def _serialized_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """``text`` as a base64 ``FileDescriptorProto`` (Confluent's "serialized" form), if it is one."""
    if "{" in text or ";" in text:
        return None
    try:
        found = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, DecodeError):
        return None
    return found if found.message_type else None


def _from_descriptor(proto: descriptor_pb2.FileDescriptorProto,
                     references: tuple[tuple[str, str], ...]) -> ProtoSchema:
    imports = "".join(f'import "{d}";\n' for d in proto.dependency)
    stub = f'syntax = "proto3";\n{imports}'
    files = _compile({**BUILTIN_FILES, **dict(references), _MAIN: stub}, _MAIN)
    files = [f for f in files if f.name != _MAIN and f.name != proto.name] + [proto]
    return _load(files, proto.name)


def _compile(sources: Mapping[str, str], main: str) -> list[descriptor_pb2.FileDescriptorProto]:
    """protoc's descriptors of ``main`` and everything it imports (``sources``: name → text)."""
    import grpc_tools
    from grpc_tools import _protoc_compiler

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="nbs-proto-") as tmp:
        for name, source in sources.items():
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(source)
        out = os.path.join(tmp, "__out.pb")
        try:
            _protoc_compiler.get_protos(main.encode(), [tmp.encode(), include.encode()])
        except _protoc_compiler.ProtocErrors as e:
            raise FormatError(f"Invalid Protobuf schema: {e}") from None
        args = [b"", f"-I{tmp}".encode(), f"-I{include}".encode(), f"--descriptor_set_out={out}".encode(),
                b"--include_imports", main.encode()]
        with _LOCK:  # protoc's command line is not known to be reentrant
            code = _protoc_compiler.run_main(args)
        if code != 0:
            raise FormatError("Invalid Protobuf schema (protoc failed)")
        with open(out, "rb") as fh:
            return list(descriptor_pb2.FileDescriptorSet.FromString(fh.read()).file)


def _load(files: Sequence[descriptor_pb2.FileDescriptorProto], main: str) -> ProtoSchema:
    pool = DescriptorPool()
    for proto in files:
        pool.Add(proto)
    return ProtoSchema(pool, pool.FindFileByName(main))


@functools.lru_cache(maxsize=1)
def _field_meta_class() -> type[Message]:
    schema = compile_schema('syntax = "proto3";\nimport "nbstream/field_meta.proto";\n'
                            "message Holder { nbstream.FieldMeta meta = 1; }")
    return message_factory.GetMessageClass(schema.pool.FindMessageTypeByName("nbstream.FieldMeta"))


def field_params(field: FieldDescriptor) -> dict[str, str]:
    """The ``(confluent.field_meta).params`` of ``field`` (empty without them)."""
    options = field.GetOptions().SerializeToString()
    if not options:
        return {}
    meta = _field_meta_class().FromString(options)
    return dict(meta.field_meta.params)  # type: ignore[attr-defined]


def message_class(message: Descriptor) -> type[Message]:
    """The (upb) class of ``message``."""
    return message_factory.GetMessageClass(message)


# -- Protobuf → SQL -------------------------------------------------------------------------------

_SCALARS = {
    FieldDescriptor.TYPE_INT32: "INTEGER", FieldDescriptor.TYPE_SINT32: "INTEGER",
    FieldDescriptor.TYPE_SFIXED32: "INTEGER", FieldDescriptor.TYPE_INT64: "BIGINT",
    FieldDescriptor.TYPE_UINT32: "BIGINT", FieldDescriptor.TYPE_UINT64: "BIGINT",
    FieldDescriptor.TYPE_SINT64: "BIGINT", FieldDescriptor.TYPE_FIXED32: "BIGINT",
    FieldDescriptor.TYPE_FIXED64: "BIGINT", FieldDescriptor.TYPE_SFIXED64: "BIGINT",
    FieldDescriptor.TYPE_FLOAT: "DOUBLE", FieldDescriptor.TYPE_DOUBLE: "DOUBLE",
    FieldDescriptor.TYPE_BOOL: "BOOLEAN", FieldDescriptor.TYPE_STRING: "STRING",
    FieldDescriptor.TYPE_BYTES: "BYTES", FieldDescriptor.TYPE_ENUM: "STRING",
}


def is_map(field: FieldDescriptor) -> bool:
    """Whether ``field`` is a map: a ``map<>``, or (Connect's rule, ``isMapDescriptor``) a repeated
    message ``…Entry`` of two singular fields ``key`` and ``value``, as Connect writes a map whose
    values carry options (DECIMAL)."""
    entry = field.message_type
    if not field.is_repeated or entry is None:
        return False
    names = [f.name for f in entry.fields]
    return entry.GetOptions().map_entry or (
        entry.name.endswith("Entry") and names == ["key", "value"] and not any(f.is_repeated for f in entry.fields))


def field_sql_type(field: FieldDescriptor, *, upper: bool = True, seen: tuple[str, ...] = ()) -> SqlType:
    """The ksqlDB type of ``field`` (see the module docstring)."""
    if is_map(field):
        entry = field.message_type
        return SqlType.map(field_sql_type(entry.fields_by_name["key"], upper=upper, seen=seen),
                           field_sql_type(entry.fields_by_name["value"], upper=upper, seen=seen))
    base = _single_type(field, upper, seen)
    return SqlType.array(base) if field.is_repeated else base


def _single_type(field: FieldDescriptor, upper: bool, seen: tuple[str, ...]) -> SqlType:
    if field.message_type is None:
        return SqlType(_SCALARS[field.type])
    name = field.message_type.full_name
    if name in WRAPPERS:
        return SqlType(WRAPPERS[name])
    if name in _LOGICAL:
        return SqlType(_LOGICAL[name])
    if name == DECIMAL:
        params = field_params(field)
        return SqlType.decimal(int(params.get("precision", 64)), int(params.get("scale", 0)))
    return message_sql_type(field.message_type, upper=upper, seen=seen)


def message_sql_type(message: Descriptor, *, upper: bool = True, seen: tuple[str, ...] = ()) -> SqlType:
    """The STRUCT of ``message``'s fields (a recursive message is an error: ksqlDB has no such type)."""
    if message.full_name in seen:
        raise FormatError(f"The Protobuf message {message.full_name} is recursive, which ksqlDB cannot represent")
    inner = (*seen, message.full_name)
    return SqlType.struct([(f.name.upper() if upper else f.name, field_sql_type(f, upper=upper, seen=inner))
                           for f in message.fields])


def columns_of(schema: ProtoSchema, role: str, *, single_name: str, unwrapped: bool = False,
               full_name: str | None = None, original_names: bool = False) -> list[Column]:
    """Columns inferred from a subject's schema: the fields of its message ``full_name`` (else
    its first); ``unwrapped``: one column ``single_name`` of the message's wrapped type."""
    message = schema.message(full_name)
    upper = not original_names
    if unwrapped and message.full_name in WRAPPERS:
        return [Column(single_name, SqlType(WRAPPERS[message.full_name]), role)]  # type: ignore[arg-type]
    t = message_sql_type(message, upper=upper)
    if unwrapped:
        return [Column(single_name, t, role)]  # type: ignore[arg-type]
    return [Column(n, ft, role) for n, ft in t.fields]  # type: ignore[arg-type]


def backward_incompatibility(reader: str, writer: str) -> str | None:
    """Why a reader of the ``.proto`` ``reader`` cannot read what ``writer`` wrote, naming the field;
    None when it can. Their first messages are compared field number by field number (what the
    bytes carry), each as the ksqlDB type it reads as (:mod:`nbstream.formats.compatibility`)."""
    new, old = compile_schema(reader).message(), compile_schema(writer).message()
    written = {f.number: f for f in old.fields}
    for field in new.fields:
        before = written.get(field.number)
        if before is None:
            continue
        if before.name.upper() != field.name.upper():
            return f"field number {field.number} was '{before.name}' and is now '{field.name}'"
        why = type_incompatibility(field_sql_type(field), field_sql_type(before), path=field.name.upper())
        if why:
            return why
    return None


# -- SQL → Protobuf -------------------------------------------------------------------------------


def proto_schema_for(columns: Sequence[Column], *, full_name: str | None = None,
                     nullable: str | None = None) -> str:
    """The ``.proto`` text ksqlDB registers for ``columns`` (a message of them, see the module
    docstring). ``nullable``: ``OPTIONAL``, ``WRAPPER`` or None (ksqlDB's default)."""
    package, _, name = (full_name or "").rpartition(".")
    if not name or name.startswith(DEFAULT_NAME):  # ksqlDB ignores a default name given
        package, name = "", f"{DEFAULT_NAME}1"
    writer = _Writer((nullable or "").upper())
    body = writer.message(name, [(c.name, c.type) for c in columns], "")
    head = ['syntax = "proto3";', ""]
    if package:
        head += [f"package {package};", ""]
    if writer.imports:
        head += [*(f'import "{i}";' for i in sorted(writer.imports)), ""]
    return "\n".join(head + body) + "\n"


class _Writer:
    """Writes messages in ksqlDB's (Connect's) shape; nested messages are ``ConnectDefault<n>``."""

    def __init__(self, nullable: str) -> None:
        self.nullable = nullable
        self.imports: set[str] = set()
        self.names = itertools.count(2)

    def message(self, name: str, fields: Sequence[tuple[str, SqlType]], pad: str) -> list[str]:
        lines, nested = [f"{pad}message {name} {{"], []
        for tag, (field_name, t) in enumerate(fields, 1):
            decl, extra = self.field(field_name, t, tag, pad + "  ")
            lines.append(decl)
            nested += extra
        return [*lines, *nested, f"{pad}}}"]

    def field(self, name: str, t: SqlType, tag: int, pad: str) -> tuple[str, list[str]]:
        nested: list[str] = []
        if t.name == "ARRAY" and t.element is not None:
            if t.element.name in ("ARRAY", "MAP"):
                raise FormatError(f"Protobuf cannot carry {t}: an array of arrays or maps (column `{name}`)")
            label, type_text = "repeated ", self.type_text(t.element, name, pad, nested, element=True)
        elif t.name == "MAP" and t.key is not None and t.element is not None:
            check_map_keys(t)
            if t.element.name in ("ARRAY", "MAP"):
                raise FormatError(f"Protobuf cannot carry {t}: a map of arrays or maps (column `{name}`)")
            value = self.type_text(t.element, name, pad, nested, element=True)
            label, type_text = "", f"map<string, {value}>"
            if t.element.name == "DECIMAL":  # the value's options need an entry message of our own
                entry = f"{DEFAULT_NAME}{next(self.names)}Entry"
                body = self.message(entry, [("value", t.element)], pad)
                value_line = body[1].replace(" = 1", " = 2", 1)
                nested += [body[0], f"{pad}  string key = 1;", value_line, *body[2:]]
                label, type_text = "repeated ", entry
        else:
            scalar = t.name in WRAPPER_OF
            label = "optional " if scalar and self.nullable == "OPTIONAL" else ""
            type_text = self.type_text(t, name, pad, nested, element=False)
        options = ""
        if t.name == "DECIMAL":
            self.imports.add("confluent/meta.proto")
            options = (f' [(confluent.field_meta) = {{ params: [{{ key: "precision", value: "{t.precision}" }}, '
                       f'{{ key: "scale", value: "{t.scale}" }}] }}]')
        return f"{pad}{label}{type_text} {name} = {tag}{options};", nested

    def type_text(self, t: SqlType, name: str, pad: str, nested: list[str], *, element: bool) -> str:
        if t.name == "STRUCT":
            message = f"{DEFAULT_NAME}{next(self.names)}"
            nested += self.message(message, t.fields, pad)
            return message
        if t.name in WRAPPER_OF and self.nullable == "WRAPPER":
            return self._import(WRAPPER_OF[t.name])
        known = {"INTEGER": "int32", "BIGINT": "int64", "DOUBLE": "double", "BOOLEAN": "bool",
                 "STRING": "string", "BYTES": "bytes"}
        if t.name in known:
            return known[t.name]
        logical = {"TIMESTAMP": TIMESTAMP, "DATE": DATE, "TIME": TIME, "DECIMAL": DECIMAL}
        if t.name in logical:
            return self._import(logical[t.name])
        raise FormatError(f"The 'PROTOBUF' format does not support type '{t.name}' (column `{name}`)")

    def _import(self, full_name: str) -> str:
        self.imports.add(_IMPORT_OF[full_name])
        return full_name


def check_map_keys(t: SqlType) -> None:
    """ksqlDB's rule: every MAP in ``t`` has STRING keys."""
    if t.name == "MAP" and t.key is not None and t.key.name != "STRING":
        raise FormatError("PROTOBUF format only supports MAP types with STRING keys. "
                          "See https://github.com/confluentinc/ksql/issues/6177.")
    for inner in (t.element, t.key, *(ft for _, ft in t.fields)):
        if inner is not None:
            check_map_keys(inner)
