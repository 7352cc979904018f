"""The embedded schema registry's REST API: the part of Confluent's that Kafka clients' serializers
and deserializers call, so that they read what nbstream writes and write what it reads.

:class:`SchemaRegistryApp` is an ASGI app over one :class:`~nbstream.formats.registry.SchemaRegistry`:

========  ======================================  ==================================================
method    path                                    answer
========  ======================================  ==================================================
GET       ``/schemas/ids/{id}``                   the schema (``schema``, ``schemaType``, ``references``)
GET       ``/subjects``                           the subjects
GET       ``/subjects/{subject}/versions``        its version numbers
GET       ``/subjects/{subject}/versions/{v}``    a version (``latest`` too): subject, version, id, schema
POST      ``/subjects/{subject}/versions``        register ``{"schema", "schemaType", "references"}``: ``{"id"}``
POST      ``/subjects/{subject}``                 look a schema up in the subject: its version, or 404
========  ======================================  ==================================================

Errors are Confluent's JSON (``error_code``, ``message``): 40401 subject not found, 40402 version
not found, 40403 schema not found, 42201 invalid schema, 50302 while the engine is opening.
``schemaType`` is left out for AVRO, as Confluent's registry does. Query strings (``?normalize=…``,
``?subject=…``) are accepted and ignored. ``nbstream serve --schema-registry-listen HOST:PORT``
serves it beside the ksqlDB API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from nbstream.errors import NbstreamError
from nbstream.formats.registry import RegisteredSchema, SchemaRegistry

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CONTENT_TYPE = b"application/vnd.schemaregistry.v1+json"
MAX_BODY = 16 * 1024 * 1024  # a schema, with its references' names


class RegistryError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _schema_json(found: RegisteredSchema) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": found.schema}
    if found.schema_type != "AVRO":
        out["schemaType"] = found.schema_type
    if found.references:
        out["references"] = [{"name": n, "subject": s, "version": v} for n, s, v in found.references]
    return out


class SchemaRegistryApp:
    """The ASGI app (see the module)."""

    def __init__(self, registry: SchemaRegistry | Callable[[], SchemaRegistry | None]) -> None:
        self._registry = registry

    @property
    def registry(self) -> SchemaRegistry:
        """The registry served (given, or asked for: None while the engine is opening, 503)."""
        found = self._registry if isinstance(self._registry, SchemaRegistry) else self._registry()
        if found is None:
            raise RegistryError(503, 50302, "Server initializing")
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            body = await _body(receive) if scope["method"] == "POST" else b""
            status, answer = self.answer(scope["method"], scope["path"], body)
        except RegistryError as e:
            status, answer = e.status, {"error_code": e.code, "message": e.message}
        data = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """The status and JSON answer of a request (``path`` without its query string)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        reg = self.registry
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            found = reg.by_id(int(parts[2]))
            if found is None:
                raise RegistryError(404, 40403, "Schema not found")
            return 200, _schema_json(found)
        if method == "GET" and parts == ["subjects"]:
            return 200, reg.subjects()
        if parts[:1] != ["subjects"] or len(parts) < 2:
            raise RegistryError(404, 404, f"No endpoint {method} {path}")
        subject = parts[1]
        if method == "GET" and parts[2:] == ["versions"]:
            return 200, self._versions(subject)
        if method == "GET" and len(parts) == 4 and parts[2] == "versions":
            versions = self._versions(subject)
            version = versions[-1] if parts[3] in ("latest", "-1") else int(parts[3]) if parts[3].isdigit() else 0
            found = reg.version(subject, version)
            if found is None:
                raise RegistryError(404, 40402, "Version not found")
            return 200, {"subject": subject, "version": version, "id": found.id, **_schema_json(found)}
        if method == "POST" and parts[2:] in ([], ["versions"]):
            request = _request(body)
            stype = str(request.get("schemaType") or "AVRO").upper()
            if parts[2:] == ["versions"]:
                try:
                    return 200, {"id": reg.register(subject, request["schema"], stype,
                                                     references=request.get("references"))}
                except NbstreamError as e:
                    raise RegistryError(422, 42201, f"Invalid schema: {e}") from None
            self._versions(subject)
            sid = reg.id_of(subject, request["schema"], stype)
            if sid is None:
                raise RegistryError(404, 40403, "Schema not found")
            version = next(v for v in reg.versions(subject) if (f := reg.version(subject, v)) and f.id == sid)
            found = reg.by_id(sid)
            assert found is not None
            return 200, {"subject": subject, "version": version, "id": sid, **_schema_json(found)}
        raise RegistryError(404, 404, f"No endpoint {method} {path}")

    def _versions(self, subject: str) -> list[int]:
        versions = self.registry.versions(subject)
        if not versions:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return versions


def _request(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise RegistryError(422, 42201, "Invalid schema: the body is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("schema"), str):
        raise RegistryError(422, 42201, "Invalid schema: expected {\"schema\": \"…\"}")
    return request


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise RegistryError(413, 413, "Request body too large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
