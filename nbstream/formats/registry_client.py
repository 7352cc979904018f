"""A Confluent-compatible schema registry over its REST API: the engine's registry when
``ksql.schema.registry.url`` is set (else it keeps its own, :mod:`nbstream.formats.registry`).

:class:`RemoteSchemaRegistry` answers the calls of :class:`~nbstream.formats.registry.Registry`
with Confluent's endpoints (``/schemas/ids/{id}``, ``/subjects/{s}/versions[/{v}]``, lookup
``POST /subjects/{s}``, ``/compatibility/subjects/{s}/versions/latest``, ``DELETE /subjects/{s}``)
over one keep-alive httpx client. A schema id names one schema for good, so schemas by id are
kept once fetched: the decoders that run inside DuckDB statements ask again only for ids they have
not seen (an unknown id is asked again at most once a second).

Properties (ksqlDB's names; a value may be an ``env:NAME`` or ``file:PATH`` reference, resolved
when the client is made and never stored):

- ``ksql.schema.registry.url``: the registry's URL, or several separated by commas (tried in turn);
- ``ksql.schema.registry.basic.auth.user.info`` (``user:password``) with
  ``….basic.auth.credentials.source`` ``USER_INFO`` (the default), or ``URL`` for the user info
  of the URL itself;
- ``ksql.schema.registry.ssl.ca.location``, ``….ssl.certificate.location``,
  ``….ssl.key.location``, ``….ssl.key.password``: PEM files (Java's keystores are refused with
  the PEM property to use instead).

Failures never lose a record: an unreachable registry, a 5xx or refused credentials raise
:class:`RegistryUnavailable`, whose message starts with :data:`UNAVAILABLE`; a query meeting it
(DuckDB carries only the message out of a decoder) stalls and retries instead of logging records
as bad (:func:`is_outage`). Other refusals (an incompatible or invalid schema) are a
:class:`~nbstream.errors.FormatError` with the registry's own message.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from nbstream.errors import ExecutionError, FormatError, did_you_mean
from nbstream.formats.registry import RegisteredSchema, canonical
from nbstream.log.kafka_options import is_reference, resolve_reference

#: The prefix of every outage's message (see :func:`is_outage`).
UNAVAILABLE = "Schema registry unavailable"

URL = "ksql.schema.registry.url"
#: The prefix of the registry's properties (read when the engine starts).
REGISTRY_PROPERTIES = _PREFIX = "ksql.schema.registry."
_OPTIONS = ("url", "basic.auth.user.info", "basic.auth.credentials.source", "ssl.ca.location",
            "ssl.certificate.location", "ssl.key.location", "ssl.key.password")
_JAVA_STORES = {"ssl.truststore.location": "ssl.ca.location", "ssl.keystore.location": "ssl.certificate.location"}
_NOT_FOUND = (40401, 40402, 40403)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailable(ExecutionError):
    """The registry did not answer, or refused the engine's credentials: retry later."""


def is_outage(message: str) -> bool:
    """Whether an error ``message`` (a DuckDB error's included) comes from :class:`RegistryUnavailable`."""
    return UNAVAILABLE in message


def remote_registry(properties: Mapping[str, Any]) -> RemoteSchemaRegistry | None:
    """The registry ``ksql.schema.registry.*`` in ``properties`` configure, or None without a URL."""
    options = {k[len(_PREFIX):]: v for k, v in properties.items() if k.startswith(_PREFIX)}
    if not options.get("url"):
        if options:
            raise FormatError(f"{_PREFIX}{next(iter(options))} is set but {URL} is not")
        return None
    _check_options(options)
    auth = _credentials(options)
    urls = [u.strip() for u in str(options["url"]).split(",") if u.strip()]
    return RemoteSchemaRegistry([_without_user_info(u) for u in urls], auth=auth, verify=_tls(options))


def _check_options(options: Mapping[str, Any]) -> None:
    for name in options:
        if name in _JAVA_STORES:
            raise FormatError(f"{_PREFIX}{name}: Java keystores cannot be read here; give a PEM file as "
                              f"{_PREFIX}{_JAVA_STORES[name]} instead")
        if name not in _OPTIONS:
            raise FormatError(f"Unknown schema registry property {_PREFIX}{name}."
                              + did_you_mean(_PREFIX + name, [_PREFIX + o for o in _OPTIONS]))


def _resolved(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if is_reference(value):
        return resolve_reference(_PREFIX + name, str(value), what="schema registry property", error=FormatError)
    return str(value)


def _credentials(options: Mapping[str, Any]) -> tuple[str, str] | None:
    source = str(options.get("basic.auth.credentials.source") or "USER_INFO").upper()
    if source == "URL":
        parts = urlsplit(str(options["url"]).split(",")[0].strip())
        return (parts.username or "", parts.password or "") if parts.username else None
    if source != "USER_INFO":
        raise FormatError(f"{_PREFIX}basic.auth.credentials.source: '{source}' is not supported (USER_INFO or URL)")
    user_info = _resolved(options, "basic.auth.user.info")
    if user_info is None:
        return None
    user, sep, password = user_info.partition(":")
    if not sep:
        raise FormatError(f"{_PREFIX}basic.auth.user.info must be 'user:password'")
    return user, password


def _tls(options: Mapping[str, Any]) -> ssl.SSLContext | bool:
    ca, cert = _resolved(options, "ssl.ca.location"), _resolved(options, "ssl.certificate.location")
    if ca is None and cert is None:
        return True
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, _resolved(options, "ssl.key.location"),
                                    _resolved(options, "ssl.key.password"))
    except (OSError, ssl.SSLError) as e:
        raise FormatError(f"schema registry TLS: cannot load {ca or cert}: {e}") from None
    return context


def _without_user_info(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FormatError(f"{URL}: '{url}' is not an http:// or https:// URL")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class RemoteSchemaRegistry:
    """A Confluent-compatible registry at ``urls`` (see the module's contract)."""

    def __init__(self, urls: Sequence[str], *, auth: tuple[str, str] | None = None,
                 verify: ssl.SSLContext | bool = True, timeout: float = 5.0, retry_after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = list(urls)
        self._client = httpx.Client(auth=auth, verify=verify, timeout=timeout,
                                    headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE})
        self._retry_after, self._clock = retry_after, clock
        self._lock = threading.Lock()
        self._by_id: dict[int, RegisteredSchema] = {}
        self._unknown: dict[int, float] = {}  # id → when it was found unknown
        self._down_until = 0.0

    def close(self) -> None:
        self._client.close()

    # -- reads -------------------------------------------------------------------------------------
    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema with ``schema_id``, or None (asked again at most once per ``retry_after``)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        if self._clock() - self._unknown.get(schema_id, float("-inf")) < self._retry_after:
            return None
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        if answer is None:
            self._unknown[schema_id] = self._clock()
            return None
        return self._kept(schema_id, answer)

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest version of ``subject``, or None."""
        return self._version(subject, "latest")

    def version(self, subject: str, version: int) -> RegisteredSchema | None:
        """Version ``version`` of ``subject``, or None."""
        return self._version(subject, str(version)) if version > 0 else None

    def subjects(self) -> list[str]:
        return sorted(self._call("GET", "/subjects") or [])

    def versions(self, subject: str) -> list[int]:
        return list(self._call("GET", f"/subjects/{quote(subject, safe='')}/versions") or [])

    def id_of(self, subject: str, schema: Any, schema_type: str = "AVRO") -> int | None:
        """The id of ``schema`` if it is a version of ``subject``."""
        answer = self._call("POST", f"/subjects/{quote(subject, safe='')}", _body(schema, schema_type))
        return None if answer is None else int(answer["id"])

    # -- writes ------------------------------------------------------------------------------------
    def register(self, subject: str, schema: Any, schema_type: str = "AVRO", schema_id: int | None = None,
                 references: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Register ``schema`` under ``subject`` (the registry checks its compatibility); its id."""
        body = _body(schema, schema_type, references)
        if schema_id is not None:
            body["id"] = schema_id
        answer = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", body)
        if answer is None:
            raise FormatError(f"The schema registry at {self.urls[0]} did not register subject '{subject}'")
        return int(answer["id"])

    def delete_subject(self, subject: str) -> list[int]:
        return list(self._call("DELETE", f"/subjects/{quote(subject, safe='')}") or [])

    def check_compatible(self, subject: str, schema: Any, schema_type: str = "AVRO") -> None:
        """Raise :class:`FormatError` with the registry's reasons when ``schema`` is not compatible
        with the latest version of ``subject``."""
        answer = self._call("POST", f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest?verbose=true",
                            _body(schema, schema_type))
        if answer is not None and not answer.get("is_compatible", True):
            why = "; ".join(answer.get("messages") or []) or "the registry says so"
            raise FormatError(f"Schema for subject '{subject}' is incompatible with its latest version: {why}")

    # -- the wire ----------------------------------------------------------------------------------
    def _version(self, subject: str, version: str) -> RegisteredSchema | None:
        answer = self._call("GET", f"/subjects/{quote(subject, safe='')}/versions/{version}")
        return None if answer is None else self._kept(int(answer["id"]), answer)

    def _kept(self, schema_id: int, answer: Mapping[str, Any]) -> RegisteredSchema:
        stype = str(answer.get("schemaType") or "AVRO").upper()
        refs = tuple((str(r["name"]), str(r["subject"]), int(r["version"])) for r in answer.get("references") or ())
        found = RegisteredSchema(schema_id, stype, canonical(answer["schema"], stype), refs)
        self._by_id[schema_id] = found
        return found

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The JSON answer, None for Confluent's not-found codes; raises :class:`RegistryUnavailable`
        (fast, without a request, for ``retry_after`` once the registry failed) or :class:`FormatError`."""
        with self._lock:
            if self._clock() < self._down_until:
                raise RegistryUnavailable(f"{UNAVAILABLE}: {self.urls[0]} failed less than "
                                          f"{self._retry_after:g} s ago; retrying")
            try:
                response = self._send(method, path, body)
            except RegistryUnavailable:
                self._down_until = self._clock() + self._retry_after
                raise
        return _answer(response, f"{method} {path}")

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None) -> httpx.Response:
        error: Exception | None = None
        for url in self.urls:
            try:
                response = self._client.request(method, url + path, json=body)
            except httpx.HTTPError as e:
                error = e
                continue
            if response.status_code in (401, 403) or response.status_code >= 500:
                raise RegistryUnavailable(f"{UNAVAILABLE}: {url} answered {response.status_code} "
                                          f"{_message(response)}")
            return response
        raise RegistryUnavailable(f"{UNAVAILABLE}: {', '.join(self.urls)}: {error}")


def _body(schema: Any, schema_type: str, references: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    stype = schema_type.upper()
    body: dict[str, Any] = {"schema": canonical(schema, stype)}
    if stype != "AVRO":
        body["schemaType"] = stype
    if references:
        body["references"] = [dict(r) for r in references]
    return body


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.reason_phrase)
    except ValueError:
        return response.reason_phrase


def _answer(response: httpx.Response, request: str) -> Any:
    if response.is_success:
        return response.json()
    try:
        code = int(response.json().get("error_code"))
    except (ValueError, TypeError, AttributeError):
        code = response.status_code
    if response.status_code == 404 and code in _NOT_FOUND:
        return None
    raise FormatError(f"The schema registry refused {request}: {_message(response)} (error {code})")
