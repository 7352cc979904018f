"""``%stream connect kafka://…`` through a real IPython shell: the URL and ``%config
StreamMagic.kafka_options`` give the options, checked before the current engine is replaced, and
secrets only as references. Connecting to a real broker: tests/integration/test_kafka_connect."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import run

from nbstream.log.kafka import BrokerUnavailable
from nbstream.notebook import session
from nbstream.runtime.service import EngineService


@pytest.fixture
def connections(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every engine ``%stream connect`` makes (an in-memory engine
    stands in for the cluster's)."""
    made: list[dict[str, Any]] = []

    def engine(path: Any = None, **options: Any) -> EngineService:
        made.append(options)
        return EngineService(path)

    monkeypatch.setattr(session, "EngineService", engine)
    shell.run_line_magic("config", "StreamMagic.kafka_options = {}")
    return made


def test_connect_passes_the_url_and_configured_options_to_the_new_engine(
        shell: InteractiveShell, connections: list[dict[str, Any]]) -> None:
    run(shell, "%config StreamMagic.kafka_options = {'sasl_mechanism': 'PLAIN', 'client_id': 'notebook', "
               "'request_timeout_ms': 9000}")

    result, _ = run(shell, "%stream connect kafka://b1:9093,b2:9093?security_protocol=SASL_SSL&sasl_mechanism="
                           "SCRAM-SHA-512&sasl_plain_username=svc&sasl_plain_password=env:KAFKA_PASSWORD"
                           "&request_timeout_ms=5000&enable_idempotence=false")

    assert result.success
    assert connections == [{
        "kafka": "b1:9093,b2:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "client_id": "notebook", "sasl_plain_username": "svc", "sasl_plain_password": "env:KAFKA_PASSWORD",
        "request_timeout_ms": 5000, "enable_idempotence": False}]


def test_a_misspelt_option_is_refused_and_the_engine_is_kept(
        shell: InteractiveShell, connections: list[dict[str, Any]]) -> None:
    before = session.current_engine()

    result, _ = run(shell, "%stream connect kafka://b1:9092?requst_timeout_ms=100")

    assert "Did you mean `request_timeout_ms`?" in str(result.error_in_exec)
    assert connections == [] and session.current_engine() is before and before.background.running


def test_a_cluster_that_cannot_be_reached_leaves_the_current_engine_in_place(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    before = session.current_engine()

    def unreachable(path: Any = None, **options: Any) -> EngineService:
        raise BrokerUnavailable("Kafka at b1:9092: could not connect: KafkaConnectionError")

    monkeypatch.setattr(session, "EngineService", unreachable)
    result, _ = run(shell, "%stream connect kafka://b1:9092")

    assert "could not connect" in str(result.error_in_exec)
    assert session.current_engine() is before and before.background.running


@pytest.mark.parametrize("setup", [
    "%stream connect kafka://b1:9092?security_protocol=SASL_SSL&sasl_plain_username=svc&sasl_plain_password=pw",
    "%config StreamMagic.kafka_options = {'security_protocol': 'SASL_SSL', 'sasl_plain_username': 'svc', "
    "'sasl_plain_password': 'pw'}\n%stream connect kafka://b1:9092",
])
def test_a_literal_secret_is_refused_so_it_stays_out_of_the_notebook(
        shell: InteractiveShell, connections: list[dict[str, Any]], setup: str) -> None:
    result, _ = run(shell, setup)

    assert "sasl_plain_password must be a reference, env:NAME or file:PATH" in str(result.error_in_exec)
    assert connections == []


def test_a_malformed_url_is_refused(shell: InteractiveShell, connections: list[dict[str, Any]]) -> None:
    result, _ = run(shell, "%stream connect kafka://b1:9092?enable_idempotence=perhaps")
    assert "enable_idempotence: 'perhaps' is not true or false" in str(result.error_in_exec)
    assert connections == []
