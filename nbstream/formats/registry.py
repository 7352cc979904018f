"""The embedded schema registry: subjects → versions → schemas, as a Confluent registry keeps them.

A :class:`SchemaRegistry` lives in the engine's DuckDB database (tables ``__sr_schemas`` and
``__sr_versions``), so a durable engine (``Engine(path=…)``) keeps its schema ids across restarts
and exported jobs see the ids their records carry. Every schema is also held in memory: the
decoders that run inside DuckDB statements look ids up without touching the database (a query
on the connection that runs the statement would deadlock).

Contract, as in Confluent's registry:

* a schema (type ``AVRO``, ``PROTOBUF`` or ``JSON``, its text normalized) has one id, whatever the
  subjects it is registered under; registering the same schema again under a subject returns the
  id it has, without a new version;
* ``register(…, schema_id=n)`` keeps a given id (QTT topics and imports name theirs); a given id
  that already names a different schema is an error;
* :meth:`SchemaRegistry.check_compatible` applies the subject's compatibility (BACKWARD, the
  default): a reader of the new schema must read what the latest version wrote.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from nbstream.errors import FormatError

#: The schema types a registry holds (Confluent's names).
SCHEMA_TYPES = ("AVRO", "PROTOBUF", "JSON")
#: The first id of schemas registered as the inline references of another (QTT topics give them
#: so): far from the ids a test names, which it registers afterwards.
INLINE_REFERENCE_IDS = 1 << 30


@dataclass(frozen=True)
class RegisteredSchema:
    """One schema of the registry: its id, type, canonical text and references."""

    id: int
    schema_type: str
    schema: str
    references: tuple[tuple[str, str, int], ...] = ()  # (name, subject, version)

    def parsed(self) -> Any:
        """The schema as data: a dict/list/str for AVRO and JSON, the ``.proto`` text for PROTOBUF."""
        return self.schema if self.schema_type == "PROTOBUF" else json.loads(self.schema)


class Registry(Protocol):
    """What the engine asks of a schema registry: the embedded :class:`SchemaRegistry`, or a
    Confluent-compatible one over its REST API (:mod:`nbstream.formats.registry_client`)."""

    def by_id(self, schema_id: int) -> RegisteredSchema | None: ...

    def latest(self, subject: str) -> RegisteredSchema | None: ...

    def version(self, subject: str, version: int) -> RegisteredSchema | None: ...

    def subjects(self) -> list[str]: ...

    def versions(self, subject: str) -> list[int]: ...

    def id_of(self, subject: str, schema: Any, schema_type: str = "AVRO") -> int | None: ...

    def register(self, subject: str, schema: Any, schema_type: str = "AVRO", schema_id: int | None = None,
                 references: Sequence[Mapping[str, Any]] | None = None) -> int: ...

    def delete_subject(self, subject: str) -> list[int]: ...

    def check_compatible(self, subject: str, schema: Any, schema_type: str = "AVRO") -> None: ...

    def close(self) -> None: ...


class SchemaRegistry:
    """A schema registry kept in the DuckDB database of ``con`` (see the module's contract)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._lock = threading.RLock()
        self._cur = con.cursor()
        self._cur.execute("CREATE TABLE IF NOT EXISTS __sr_schemas (id INTEGER PRIMARY KEY, schema_type VARCHAR, "
                          "schema VARCHAR, refs VARCHAR)")
        self._cur.execute("CREATE TABLE IF NOT EXISTS __sr_versions (subject VARCHAR, version INTEGER, id INTEGER, "
                          "PRIMARY KEY (subject, version))")
        self._by_id: dict[int, RegisteredSchema] = {}
        self._versions: dict[str, list[int]] = {}
        for sid, stype, text, refs in self._cur.execute("SELECT * FROM __sr_schemas").fetchall():
            self._by_id[sid] = RegisteredSchema(sid, stype, text, tuple(tuple(r) for r in json.loads(refs or "[]")))
        for subject, _, sid in self._cur.execute("SELECT * FROM __sr_versions ORDER BY subject, version").fetchall():
            self._versions.setdefault(subject, []).append(sid)

    # -- reads (safe inside a running DuckDB statement: memory only) -------------------------------
    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema with ``schema_id``, or None."""
        return self._by_id.get(schema_id)

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest version of ``subject``, or None when the subject has none."""
        ids = self._versions.get(subject)
        return self._by_id[ids[-1]] if ids else None

    def version(self, subject: str, version: int) -> RegisteredSchema | None:
        """Version ``version`` (1-based) of ``subject``, or None."""
        ids = self._versions.get(subject) or []
        return self._by_id[ids[version - 1]] if 0 < version <= len(ids) else None

    def subjects(self) -> list[str]:
        """The subjects that have at least one version, sorted."""
        return sorted(s for s, ids in self._versions.items() if ids)

    def versions(self, subject: str) -> list[int]:
        """The version numbers of ``subject`` (1, 2, …)."""
        return list(range(1, len(self._versions.get(subject) or []) + 1))

    def id_of(self, subject: str, schema: Any, schema_type: str = "AVRO") -> int | None:
        """The id of ``schema`` if it is a version of ``subject``."""
        text = canonical(schema, schema_type)
        for sid in self._versions.get(subject) or []:
            found = self._by_id[sid]
            if found.schema == text and found.schema_type == schema_type.upper():
                return sid
        return None

    # -- writes ----------------------------------------------------------------------------------
    def register(self, subject: str, schema: Any, schema_type: str = "AVRO", schema_id: int | None = None,
                 references: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Register ``schema`` under ``subject`` (a new version unless it is one already); its id."""
        stype = schema_type.upper()
        if stype not in SCHEMA_TYPES:
            raise FormatError(f"Unknown schema type {schema_type!r}: expected one of {', '.join(SCHEMA_TYPES)}")
        text = canonical(schema, stype)
        with self._lock:
            existing = self.id_of(subject, text, stype)
            if existing is not None and (schema_id is None or schema_id == existing):
                return existing
            sid = schema_id if schema_id is not None else self._id_for(text, stype)
            found = self._by_id.get(sid)
            if found is not None and (found.schema != text or found.schema_type != stype):
                raise FormatError(f"Schema id {sid} is already registered for another schema "
                                  f"(subject {subject!r})")
            if found is None:
                self._by_id[sid] = RegisteredSchema(sid, stype, text)  # its id taken before its references'
                refs = tuple(self._reference(r, stype) for r in references or ())
                self._by_id[sid] = RegisteredSchema(sid, stype, text, refs)
                self._cur.execute("INSERT INTO __sr_schemas VALUES (?, ?, ?, ?)",
                                  [sid, stype, text, json.dumps([list(r) for r in refs])])
            versions = self._versions.setdefault(subject, [])
            versions.append(sid)
            self._cur.execute("INSERT INTO __sr_versions VALUES (?, ?, ?)", [subject, len(versions), sid])
            return sid

    def _reference(self, ref: Mapping[str, Any], schema_type: str) -> tuple[str, str, int]:
        """``(name, subject, version)`` of a reference; one that carries its schema (as QTT topics
        give them: name, format, schema) registers it first under the subject ``name``."""
        name = str(ref.get("name"))
        if ref.get("schema") is not None and ref.get("subject") is None:
            ref_type = str(ref.get("format") or schema_type).upper()
            ref_type = {"JSON_SR": "JSON", "PROTOBUF_NOSR": "PROTOBUF"}.get(ref_type, ref_type)
            text = canonical(ref["schema"], ref_type)
            sid = self.register(name, text, ref_type, self._id_for(text, ref_type, floor=INLINE_REFERENCE_IDS))
            return name, name, self._versions[name].index(sid) + 1
        return name, str(ref.get("subject")), int(ref.get("version") or 1)

    def _id_for(self, text: str, stype: str, floor: int = 1) -> int:
        """The id a new registration of ``text`` gets: the schema's own when it has one already,
        else the next id from ``floor`` on."""
        for sid, found in self._by_id.items():
            if found.schema == text and found.schema_type == stype:
                return sid
        ceiling = INLINE_REFERENCE_IDS if floor < INLINE_REFERENCE_IDS else 1 << 31
        return max((sid for sid in self._by_id if floor <= sid < ceiling), default=floor - 1) + 1

    def close(self) -> None:
        """Nothing to release: the registry's tables close with the engine's database."""

    def delete_subject(self, subject: str) -> list[int]:
        """Forget the versions of ``subject`` (its schemas keep their ids); the versions deleted."""
        with self._lock:
            versions = self.versions(subject)
            self._versions.pop(subject, None)
            self._cur.execute("DELETE FROM __sr_versions WHERE subject = ?", [subject])
            return versions

    def check_compatible(self, subject: str, schema: Any, schema_type: str = "AVRO") -> None:
        """Raise :class:`FormatError` naming the field when ``schema`` cannot read what the latest
        version of ``subject`` wrote (BACKWARD compatibility)."""
        latest = self.latest(subject)
        stype = schema_type.upper()
        if latest is None or latest.schema_type != stype:
            return
        from nbstream.formats import avro_schema, json_schema, protobuf_schema

        if stype == "PROTOBUF":
            why = protobuf_schema.backward_incompatibility(canonical(schema, stype), latest.schema)
        else:
            module = avro_schema if stype == "AVRO" else json_schema
            why = module.backward_incompatibility(json.loads(canonical(schema, stype)), latest.parsed())
        if why is not None:
            raise FormatError(f"Schema for subject '{subject}' is incompatible with its latest version "
                              f"(id {latest.id}): {why}")


def canonical(schema: Any, schema_type: str) -> str:
    """The text a registry stores for ``schema``: compact JSON (AVRO, JSON), the text (PROTOBUF)."""
    if schema_type.upper() == "PROTOBUF":
        return schema if isinstance(schema, str) else str(schema)
    if isinstance(schema, str):
        with contextlib.suppress(ValueError):  # an Avro primitive name such as "string" stays
            schema = json.loads(schema)
    return json.dumps(schema, separators=(",", ":"), sort_keys=False)
