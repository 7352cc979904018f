"""Kafka client options: checked by name, secrets given by reference, resolved per client.

The options of ``Engine(kafka=…, **options)``, of ``%stream connect kafka://host:port?name=value&…``
and of ``%config StreamMagic.kafka_options`` are aiokafka's client options (``security_protocol``,
``sasl_mechanism``, ``request_timeout_ms``, …) plus these of nbstream:

- ``ssl_cafile``, ``ssl_capath``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_password`` (the key's
  password): the ``ssl_context`` is built from them with :func:`aiokafka.helpers.create_ssl_context`.
  SSL and SASL_SSL without any of them use the system's trusted CAs.
- ``enable_idempotence``, ``call_timeout_s``, ``retry_after_s``: see :class:`~nbstream.log.kafka.KafkaLog`.

**Secrets by reference.** ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_password`` and
``sasl_oauth_token_provider`` accept ``"env:NAME"`` (the environment variable ``NAME``) or
``"file:PATH"`` (the file's text, without its trailing newline). A reference is resolved each time
a client is created, and only the reference is kept: the secret is never in a notebook or in the
engine's state. The notebook's ``%stream connect`` accepts secrets only as references.
``sasl_oauth_token_provider`` may also be a callable returning the token or an aiokafka
``AbstractTokenProvider``; a reference to a token is read again for every token the client asks for.

:func:`check_client_options` refuses unknown names (with the nearest known one) and inconsistent
security settings before anything connects; :func:`resolve_client_options` turns the options into
the keyword arguments of an aiokafka client.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from nbstream.errors import LogError, NbstreamError, did_you_mean

#: The aiokafka clients a Kafka log creates; an option is valid if one of them accepts it.
CLIENTS: tuple[Callable[..., Any], ...] = (AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer)

#: Constructor parameters that nbstream sets itself (consumer groups are one per query, reads
#: are read_committed, records are bytes, produced to the partition nbstream picks).
_RESERVED = frozenset({"loop", "bootstrap_servers", "topics", "group_id", "group_instance_id", "enable_auto_commit",
                       "isolation_level", "acks", "partitioner", "transactional_id", "key_serializer",
                       "value_serializer", "key_deserializer", "value_deserializer"})

#: nbstream's SSL options and the :func:`create_ssl_context` argument each one becomes.
SSL_FILE_OPTIONS = {"ssl_cafile": "cafile", "ssl_capath": "capath", "ssl_certfile": "certfile",
                    "ssl_keyfile": "keyfile", "ssl_password": "password"}

#: Keyword options of :class:`~nbstream.log.kafka.KafkaLog` itself, with their types.
LOG_OPTIONS: dict[str, type] = {"enable_idempotence": bool, "call_timeout_s": float, "retry_after_s": float}

_LOG_ONLY = frozenset(LOG_OPTIONS) - {"enable_idempotence"}  # not aiokafka's

#: Options whose value may (and in a notebook must) be an ``env:`` or ``file:`` reference.
REFERENCE_OPTIONS = frozenset({"sasl_plain_username", "sasl_plain_password", "ssl_password",
                               "sasl_oauth_token_provider"})

#: Options holding a secret: never shown, and never given literally in a notebook.
SECRET_OPTIONS = REFERENCE_OPTIONS - {"sasl_plain_username"}

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_REFERENCE_KINDS = ("env:", "file:")


def _client_defaults() -> dict[str, Any]:
    """Every aiokafka client option nbstream passes through, with its default."""
    defaults: dict[str, Any] = {}
    for client in CLIENTS:
        for name, parameter in inspect.signature(client).parameters.items():
            if name not in _RESERVED:
                defaults.setdefault(name, parameter.default)
    return defaults


_DEFAULTS = _client_defaults()

#: Every option name accepted, sorted.
OPTION_NAMES: tuple[str, ...] = tuple(sorted({*_DEFAULTS, *SSL_FILE_OPTIONS, *LOG_OPTIONS}))


def is_reference(value: object) -> bool:
    """Whether ``value`` is an ``env:NAME`` or ``file:PATH`` reference."""
    return isinstance(value, str) and value.startswith(_REFERENCE_KINDS)


def resolve_reference(option: str, reference: str, *, what: str = "Kafka option",
                      error: type[NbstreamError] = LogError) -> str:
    """The text ``reference`` (``env:NAME`` or ``file:PATH``) stands for; a missing variable or
    unreadable file is an ``error`` naming ``option`` (a ``what``)."""
    kind, _, where = reference.partition(":")
    if not where:
        raise error(f"{what} {option}: '{reference}' names no {'variable' if kind == 'env' else 'file'}")
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise error(f"{what} {option}: the environment variable {where} is not set")
        return value
    try:
        return Path(where).expanduser().read_text().rstrip("\r\n")
    except OSError as e:
        raise error(f"{what} {option}: cannot read '{where}': {e.strerror or e}") from None


def check_client_options(options: Mapping[str, Any]) -> None:
    """Refuse an unknown option name (naming the nearest known one and listing them all) and
    security settings that cannot work, before anything connects."""
    reserved = sorted(_RESERVED & set(options))
    if reserved:
        raise LogError(f"Kafka option(s) {', '.join(reserved)} are set by nbstream and cannot be given")
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        hints = "".join(f" `{name}`:{did_you_mean(name, OPTION_NAMES) or ' no close match.'}" for name in unknown)
        raise LogError(f"unknown Kafka client option(s){hints} Known options: {', '.join(OPTION_NAMES)}")
    if "ssl_context" in options and SSL_FILE_OPTIONS.keys() & set(options):
        raise LogError("give either ssl_context or ssl_cafile/ssl_certfile/ssl_keyfile, not both")
    protocol = security_protocol(options)
    mechanism = str(options.get("sasl_mechanism", "PLAIN")).upper()
    if mechanism not in SASL_MECHANISMS:
        raise LogError(f"sasl_mechanism '{options['sasl_mechanism']}' is not one of "
                       f"{', '.join(SASL_MECHANISMS)}.{did_you_mean(mechanism, SASL_MECHANISMS)}")
    if protocol.startswith("SASL_"):
        _check_sasl(mechanism, options)
    elif {"sasl_mechanism", *REFERENCE_OPTIONS - {"ssl_password"}} & set(options):
        raise LogError(f"SASL options are given but security_protocol is {protocol}: "
                       "set security_protocol to SASL_SSL (or SASL_PLAINTEXT) to use them")
    if not protocol.endswith("SSL") and ({"ssl_context", *SSL_FILE_OPTIONS} & set(options)):
        raise LogError(f"SSL options are given but security_protocol is {protocol}: "
                       "set it to SSL or SASL_SSL (or leave it out)")


def _check_sasl(mechanism: str, options: Mapping[str, Any]) -> None:
    if mechanism == "OAUTHBEARER":
        if "sasl_oauth_token_provider" not in options:
            raise LogError("sasl_mechanism OAUTHBEARER needs sasl_oauth_token_provider "
                           "(env:NAME, file:PATH, a callable or an AbstractTokenProvider)")
    elif mechanism != "GSSAPI":
        missing = [n for n in ("sasl_plain_username", "sasl_plain_password") if n not in options]
        if missing:
            raise LogError(f"sasl_mechanism {mechanism} needs {' and '.join(missing)}")


def security_protocol(options: Mapping[str, Any]) -> str:
    """The security protocol ``options`` ask for: ``security_protocol`` if given, else SSL when
    SSL options are given (SASL_SSL with a ``sasl_mechanism``), else PLAINTEXT."""
    given = options.get("security_protocol")
    if given is not None:
        protocol = str(given).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise LogError(f"security_protocol '{given}' is not one of {', '.join(SECURITY_PROTOCOLS)}."
                           f"{did_you_mean(protocol, SECURITY_PROTOCOLS)}")
        return protocol
    if {"ssl_context", *SSL_FILE_OPTIONS} & set(options):
        return "SASL_SSL" if "sasl_mechanism" in options else "SSL"
    return "PLAINTEXT"


def resolve_client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for an aiokafka client: references resolved, ``ssl_context`` built
    from the SSL file options, the OAUTHBEARER token provider made, ``security_protocol`` set.
    Call it when a client is created (a rotated secret is then picked up), and keep only its
    input."""
    resolved = {k: v for k, v in options.items() if k not in SSL_FILE_OPTIONS and k not in _LOG_ONLY}
    for name in (REFERENCE_OPTIONS - {"sasl_oauth_token_provider"}) & set(resolved):
        if is_reference(resolved[name]):
            resolved[name] = resolve_reference(name, resolved[name])
    protocol = security_protocol(options)
    resolved["security_protocol"] = protocol
    if protocol.endswith("SSL") and resolved.get("ssl_context") is None:
        resolved["ssl_context"] = ssl_context(options)
    if "sasl_mechanism" in resolved:
        resolved["sasl_mechanism"] = str(resolved["sasl_mechanism"]).upper()
    if "sasl_oauth_token_provider" in resolved:
        resolved["sasl_oauth_token_provider"] = token_provider(resolved["sasl_oauth_token_provider"])
    return resolved


def ssl_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """An SSL context from the SSL file options (the system's CAs when none is given)."""
    arguments = {SSL_FILE_OPTIONS[k]: v for k, v in options.items() if k in SSL_FILE_OPTIONS}
    if is_reference(arguments.get("password")):
        arguments["password"] = resolve_reference("ssl_password", arguments["password"])
    try:
        return create_ssl_context(**arguments)
    except (OSError, ssl.SSLError) as e:
        given = ", ".join(f"{k}={v}" for k, v in options.items() if k in SSL_FILE_OPTIONS and k != "ssl_password")
        raise LogError(f"cannot build the SSL context from {given or 'the system defaults'}: {e}") from None


class _CallableTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """An OAUTHBEARER token provider asking ``source`` for each token (in a worker thread, as it
    may block)."""

    def __init__(self, source: Callable[[], str]) -> None:
        self._source = source

    async def token(self) -> str:
        token = await asyncio.get_running_loop().run_in_executor(None, self._source)
        if not isinstance(token, str) or not token:
            raise LogError(f"the OAUTHBEARER token provider returned {type(token).__name__}, not a token")
        return token


def token_provider(value: Any) -> AbstractTokenProvider:
    """An aiokafka token provider from ``value``: a provider, a callable returning the token, or
    an ``env:``/``file:`` reference to it (read again for each token)."""
    if isinstance(value, AbstractTokenProvider):
        return value
    if is_reference(value):
        return _CallableTokenProvider(lambda: resolve_reference("sasl_oauth_token_provider", value))
    if callable(value):
        return _CallableTokenProvider(value)
    raise LogError("sasl_oauth_token_provider must be env:NAME, file:PATH, a callable returning the token "
                   f"or an aiokafka AbstractTokenProvider, not {type(value).__name__}")


def literal_secrets(options: Mapping[str, Any]) -> list[str]:
    """The secret options of ``options`` given as a literal value instead of a reference."""
    return sorted(k for k in SECRET_OPTIONS & set(options)
                  if isinstance(options[k], str) and not is_reference(options[k]))


def describe(options: Mapping[str, Any]) -> str:
    """``options`` as ``name=value, …`` for display: references shown, literal secrets hidden."""
    def shown(name: str, value: Any) -> str:
        if name in SECRET_OPTIONS and not is_reference(value):
            return "<hidden>"
        return value if isinstance(value, str) else repr(value)
    return ", ".join(f"{k}={shown(k, v)}" for k, v in sorted(options.items()))


def parse_option_value(name: str, text: str) -> Any:
    """The value of option ``name`` written as ``text`` (in a URL): a bool, int or float when
    the option's default is one, else the text."""
    kind = LOG_OPTIONS.get(name) or type(_DEFAULTS.get(name))
    if kind is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise LogError(f"Kafka option {name}: '{text}' is not true or false")
        return lowered in ("true", "1", "yes")
    if kind is int or (kind is type(None) and name.endswith(("_ms", "_records", "_bytes"))):
        try:
            return int(text)
        except ValueError:
            raise LogError(f"Kafka option {name}: '{text}' is not an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise LogError(f"Kafka option {name}: '{text}' is not a number") from None
    return text


def parse_kafka_url(url: str) -> tuple[str, dict[str, Any]]:
    """``kafka://host:port[,host:port…][?name=value&…]`` as (bootstrap servers, options); option
    values are typed by :func:`parse_option_value`."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "kafka" or not parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise LogError(f"'{url}' is not a Kafka address: expected kafka://host:port[?option=value&…]")
    options: dict[str, Any] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        if name in options:
            raise LogError(f"Kafka option {name} is given twice in '{url}'")
        options[name] = parse_option_value(name, text)
    return parts.netloc, options
