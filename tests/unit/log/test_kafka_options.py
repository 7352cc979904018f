"""Kafka client options: names checked with a near-miss suggestion, secrets by ``env:``/``file:``
reference resolved when each client is created, SSL contexts from certificate files, OAUTHBEARER
token providers, ``kafka://`` URLs; and the aiokafka clients a KafkaLog creates receive them all
(the clients are replaced by recorders: the test broker has no SASL or TLS listener)."""

from __future__ import annotations

import asyncio
import inspect
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient

from nbstream.errors import LogError
from nbstream.log import kafka
from nbstream.log.kafka import KafkaLog
from nbstream.log.kafka_options import (
    check_client_options,
    describe,
    literal_secrets,
    parse_kafka_url,
    resolve_client_options,
    token_provider,
)

SCRAM: dict[str, Any] = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_plain_username": "svc", "sasl_plain_password": "env:TEST_KAFKA_PASSWORD"}


# -- names ----------------------------------------------------------------------------------------
def test_an_unknown_option_is_refused_with_the_nearest_known_name() -> None:
    with pytest.raises(LogError, match=r"`sasl_plain_pasword`: Did you mean `sasl_plain_password`\?") as error:
        check_client_options({"sasl_plain_pasword": "env:X"})
    assert "request_timeout_ms" in str(error.value)  # the accepted names are listed


def test_options_nbstream_sets_itself_are_refused() -> None:
    with pytest.raises(LogError, match="group_id, isolation_level are set by nbstream"):
        check_client_options({"isolation_level": "read_uncommitted", "group_id": "mine"})


def test_an_unknown_option_far_from_any_name_says_so() -> None:
    with pytest.raises(LogError, match=r"`zzz`: no close match"):
        check_client_options({"zzz": 1})


def test_a_misspelt_mechanism_or_protocol_is_refused_with_a_suggestion() -> None:
    with pytest.raises(LogError, match=r"Did you mean `SCRAM-SHA-256`\?"):
        check_client_options({**SCRAM, "sasl_mechanism": "SCRAM-SHA256"})
    with pytest.raises(LogError, match=r"Did you mean `SASL_SSL`\?"):
        check_client_options({**SCRAM, "security_protocol": "SASL-SSL"})


def test_sasl_mechanisms_need_their_credentials() -> None:
    with pytest.raises(LogError, match="SCRAM-SHA-512 needs sasl_plain_password"):
        check_client_options({k: v for k, v in SCRAM.items() if k != "sasl_plain_password"})
    with pytest.raises(LogError, match="OAUTHBEARER needs sasl_oauth_token_provider"):
        check_client_options({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"})


def test_sasl_options_without_a_sasl_protocol_are_refused_rather_than_ignored() -> None:
    with pytest.raises(LogError, match="security_protocol is PLAINTEXT"):
        check_client_options({k: v for k, v in SCRAM.items() if k != "security_protocol"})


def test_ssl_files_with_a_plaintext_protocol_are_refused() -> None:
    with pytest.raises(LogError, match="SSL options are given but security_protocol is SASL_PLAINTEXT"):
        check_client_options({**SCRAM, "security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "/ca.pem"})


# -- references -----------------------------------------------------------------------------------
def test_env_and_file_references_are_resolved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_KAFKA_USER", "svc-user")
    (tmp_path / "password").write_text("s3cret\n")
    resolved = resolve_client_options({**SCRAM, "security_protocol": "SASL_PLAINTEXT",
                                       "sasl_plain_username": "env:TEST_KAFKA_USER",
                                       "sasl_plain_password": f"file:{tmp_path / 'password'}"})
    assert (resolved["sasl_plain_username"], resolved["sasl_plain_password"]) == ("svc-user", "s3cret")


def test_a_missing_variable_or_file_names_the_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TEST_KAFKA_PASSWORD", raising=False)
    with pytest.raises(LogError, match="sasl_plain_password: the environment variable TEST_KAFKA_PASSWORD is not set"):
        resolve_client_options({**SCRAM, "security_protocol": "SASL_PLAINTEXT"})
    with pytest.raises(LogError, match=r"sasl_plain_password: cannot read '.*nothing-here'"):
        resolve_client_options({**SCRAM, "security_protocol": "SASL_PLAINTEXT",
                                "sasl_plain_password": f"file:{tmp_path / 'nothing-here'}"})
    with pytest.raises(LogError, match="sasl_plain_password: 'env:' names no variable"):
        resolve_client_options({**SCRAM, "security_protocol": "SASL_PLAINTEXT", "sasl_plain_password": "env:"})


def test_only_literal_secrets_are_reported_and_they_are_never_shown() -> None:
    options = {**SCRAM, "ssl_password": "hunter2"}
    assert literal_secrets(options) == ["ssl_password"]
    shown = describe(options)
    assert "hunter2" not in shown
    assert "sasl_plain_password=env:TEST_KAFKA_PASSWORD" in shown and "ssl_password=<hidden>" in shown


# -- SSL ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate (CN nbstream-test) and its key, encrypted with the
    passphrase ``keypass``."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=nbstream-test",
                    "-keyout", str(key), "-out", str(cert), "-passout", "pass:keypass"],
                   check=True, capture_output=True)
    return cert, key


def test_ssl_files_build_the_ssl_context_and_imply_the_ssl_protocol(
        certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    monkeypatch.setenv("TEST_KEY_PASSWORD", "keypass")
    resolved = resolve_client_options({"ssl_cafile": str(cert), "ssl_certfile": str(cert), "ssl_keyfile": str(key),
                                       "ssl_password": "env:TEST_KEY_PASSWORD"})
    context = resolved["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert resolved["security_protocol"] == "SSL"
    subjects = [c["subject"] for c in context.get_ca_certs()]
    assert subjects == [((("commonName", "nbstream-test"),),)]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert not {"ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"} & set(resolved)  # not aiokafka's


def test_a_wrong_key_password_is_a_clear_error(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    monkeypatch.setenv("TEST_KEY_PASSWORD", "wrong")
    with pytest.raises(LogError, match=r"cannot build the SSL context from ssl_certfile=.*cert.pem"):
        resolve_client_options({"ssl_certfile": str(cert), "ssl_keyfile": str(key),
                                "ssl_password": "env:TEST_KEY_PASSWORD"})


def test_sasl_ssl_without_files_trusts_the_system_cas() -> None:
    resolved = resolve_client_options({**SCRAM, "sasl_plain_password": "literal"})
    assert isinstance(resolved["ssl_context"], ssl.SSLContext)
    assert resolved["ssl_context"].verify_mode == ssl.CERT_REQUIRED


# -- OAUTHBEARER ----------------------------------------------------------------------------------
def tokens(provider: AbstractTokenProvider, n: int, between: Callable[[int], object]) -> list[str]:
    """``n`` tokens asked of ``provider``, calling ``between(i)`` before the i-th."""
    async def ask() -> list[str]:
        got = []
        for i in range(n):
            between(i)
            got.append(await provider.token())
        return got
    return asyncio.run(ask())


def test_a_token_file_is_read_again_for_every_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    provider = token_provider(f"file:{token}")
    assert tokens(provider, 2, lambda i: token.write_text(f"token-{i}\n")) == ["token-0", "token-1"]


def test_a_token_comes_from_a_variable_or_a_callable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KAFKA_TOKEN", "from-env")
    assert tokens(token_provider("env:TEST_KAFKA_TOKEN"), 1, lambda i: None) == ["from-env"]
    assert tokens(token_provider(lambda: "from-callable"), 1, lambda i: None) == ["from-callable"]
    with pytest.raises(LogError, match="returned NoneType, not a token"):
        tokens(token_provider(lambda: None), 1, lambda i: None)


def test_a_literal_token_provider_string_is_refused() -> None:
    with pytest.raises(LogError, match="must be env:NAME, file:PATH, a callable"):
        token_provider("eyJhbGciOi")


# -- URLs -----------------------------------------------------------------------------------------
def test_a_kafka_url_gives_the_bootstrap_servers_and_typed_options() -> None:
    bootstrap, options = parse_kafka_url(
        "kafka://b1:9093,b2:9093?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_plain_username=svc"
        "&sasl_plain_password=file:/run/secrets/kafka&request_timeout_ms=5000&enable_idempotence=false")
    assert bootstrap == "b1:9093,b2:9093"
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "svc",
                       "sasl_plain_password": "file:/run/secrets/kafka", "request_timeout_ms": 5000,
                       "enable_idempotence": False}


@pytest.mark.parametrize(("url", "message"), [
    ("http://b1:9092", "is not a Kafka address"),
    ("kafka://", "is not a Kafka address"),
    ("kafka://b1:9092?request_timeout_ms=soon", "request_timeout_ms: 'soon' is not an integer"),
    ("kafka://b1:9092?enable_idempotence=maybe", "enable_idempotence: 'maybe' is not true or false"),
    ("kafka://b1:9092?client_id=a&client_id=b", "client_id is given twice"),
])
def test_a_malformed_kafka_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(LogError, match=message):
        parse_kafka_url(url)


# -- every client a KafkaLog creates --------------------------------------------------------------
class _Recorder:
    """Stands for an aiokafka client: records its keyword arguments, starts and stops."""

    created: list[tuple[str, dict[str, Any]]]

    def __init__(self, *topics: str, **options: Any) -> None:
        self.created.append((type(self).__name__, options))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The (client class, keyword arguments) of every aiokafka client KafkaLogs create."""
    log: list[tuple[str, dict[str, Any]]] = []
    for real in (AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer):
        recorder = type(real.__name__, (_Recorder,), {"created": log, "__signature__": inspect.signature(real)})
        monkeypatch.setattr(kafka, real.__name__, recorder)
    yield log


def test_every_client_gets_the_security_options_with_secrets_resolved_at_creation(
        created: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "first-secret")
    with KafkaLog("b1:9093", **SCRAM) as log:
        monkeypatch.setenv("TEST_KAFKA_PASSWORD", "rotated-secret")
        log._group_consumer("nbstream-q1")  # made later, when a query first commits
        assert "secret" not in repr(vars(log)) and "secret" not in log.describe()
        assert log.describe() == ("kafka://b1:9093 (sasl_mechanism=SCRAM-SHA-512, "
                                  "sasl_plain_password=env:TEST_KAFKA_PASSWORD, sasl_plain_username=svc, "
                                  "security_protocol=SASL_SSL)")
    assert [name for name, _ in created] == ["AIOKafkaAdminClient", "AIOKafkaProducer", "AIOKafkaConsumer",
                                             "AIOKafkaConsumer"]
    for _name, options in created:
        assert {k: options[k] for k in ("bootstrap_servers", "security_protocol", "sasl_mechanism",
                                        "sasl_plain_username")} == {
            "bootstrap_servers": "b1:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "svc"}
        assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert [o["sasl_plain_password"] for _n, o in created] == ["first-secret"] * 3 + ["rotated-secret"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_plain_and_scram_256_reach_the_clients(created: list[tuple[str, dict[str, Any]]], mechanism: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "pw")
    KafkaLog("b1:9092", **{**SCRAM, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism}).close()
    assert {(o["security_protocol"], o["sasl_mechanism"], o["sasl_plain_password"]) for _n, o in created} == {
        ("SASL_PLAINTEXT", mechanism, "pw")}
    assert all("ssl_context" not in o for _n, o in created)


def test_oauthbearer_clients_get_a_token_provider(created: list[tuple[str, dict[str, Any]]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KAFKA_TOKEN", "jwt")
    KafkaLog("b1:9093", security_protocol="SASL_SSL", sasl_mechanism="oauthbearer",
             sasl_oauth_token_provider="env:TEST_KAFKA_TOKEN").close()
    providers = [o["sasl_oauth_token_provider"] for _n, o in created]
    assert len(providers) == 3 and all(isinstance(p, AbstractTokenProvider) for p in providers)
    assert {o["sasl_mechanism"] for _n, o in created} == {"OAUTHBEARER"}
    assert tokens(providers[0], 1, lambda i: None) == ["jwt"]


def test_a_kafka_log_refuses_unknown_options_before_connecting(created: list[tuple[str, dict[str, Any]]]) -> None:
    with pytest.raises(LogError, match="Did you mean `request_timeout_ms`"):
        KafkaLog("b1:9092", request_timout_ms=100)
    assert created == []
