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
DELETE    ``/subjects/{subject}``                 forget the subject's versions: their numbers
POST      ``/compatibility/subjects/{subject}/``  whether a schema may become the next version
          ``versions/latest``                     (``is_compatible``; ``messages`` say why not)
========  ======================================  ==================================================

Errors are Confluent's JSON (``error_code``, ``message``): 40401 subject not found, 40402 version
not found, 40403 schema not found, 42201 invalid schema, 50302 while the engine is opening.
``schemaType`` is left out for AVRO, as Confluent's registry does. Query strings (``?normalize=…``,
``?subject=…``) are accepted and ignored. ``nbstream serve --schema-registry-listen HOST:PORT``
serves it beside the ksqlDB API, behind the same ``--auth`` users (HTTP Basic, as Confluent's
registry; 401 without them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from nbstream.errors import NbstreamError
from nbstream.formats.registry import RegisteredSchema, Registry
from nbstream.server.auth import Users

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

    def __init__(self, registry: Registry | Callable[[], Registry | None], users: Users | None = None) -> None:
        self._registry = registry
        self._users = users

    @property
    def registry(self) -> Registry:
        """The registry served (given, or asked for: None while the engine is opening, 503)."""
        found = self._registry() if callable(self._registry) else self._registry
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
        headers = [(b"content-type", CONTENT_TYPE)]
        try:
            await self._authenticate(scope)
            body = await _body(receive) if scope["method"] == "POST" else b""
            status, answer = self.answer(scope["method"], scope["path"], body)
        except RegistryError as e:
            status, answer = e.status, {"error_code": e.code, "message": e.message}
            if e.status == 401:
                headers.append((b"www-authenticate", b'Basic realm="nbstream"'))
        data = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def _authenticate(self, scope: Scope) -> None:
        if self._users is None:
            return
        header = dict(scope.get("headers") or []).get(b"authorization")
        user = None if header is None else await asyncio.to_thread(self._users.check, header.decode("latin-1"))
        if user is None:
            raise RegistryError(401, 401, "Unauthorized")

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """The status and JSON answer of a request (``path`` without its query string)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        reg = self.registry
        if parts[:1] == ["compatibility"]:
            return self._compatibility(method, parts, body)
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
        if method == "DELETE" and len(parts) == 2:
            self._versions(subject)
            return 200, reg.delete_subject(subject)
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

    def _compatibility(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        """``POST /compatibility/subjects/{subject}/versions/latest``: a subject without versions
        takes any schema."""
        if method != "POST" or len(parts) != 5 or parts[1] != "subjects" or parts[3:] != ["versions", "latest"]:
            raise RegistryError(404, 404, f"No endpoint {method} /{'/'.join(parts)}")
        request = _request(body)
        try:
            self.registry.check_compatible(parts[2], request["schema"], str(request.get("schemaType") or "AVRO"))
        except NbstreamError as e:
            return 200, {"is_compatible": False, "messages": [str(e)]}
        return 200, {"is_compatible": True}

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
