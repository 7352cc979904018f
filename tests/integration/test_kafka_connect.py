"""Connecting to Kafka for real: ``%stream connect kafka://…`` in an IPython shell switches the
notebook to an engine on the test broker, which then creates, inserts, aggregates and prints; and an
engine given SASL options passes them to every aiokafka client it creates while its state directory
never holds the secret.

The test broker (Tansu 0.6) is started without SASL or TLS listeners, so the SASL test lets the
clients record the options they get and then connect in PLAINTEXT; the SSL, PLAIN, SCRAM and
OAUTHBEARER plumbing is tested at the client boundary in tests/unit/log/test_kafka_options."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import displayed_text, eventually, nbstream_shell, run
from kafka_reader import read_all

from nbstream import Engine
from nbstream.log import kafka
from nbstream.notebook import session
from nbstream.runtime.engine import DATABASE_FILE

_runs = itertools.count()


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    yield nbstream_shell()
    session.disconnect()


def count_of(shell: InteractiveShell, table: str, user: str) -> int | None:
    result, _ = run(shell, f"%%stream counts <<\nSELECT n FROM {table} WHERE userid = '{user}';")
    assert result.success, result.error_in_exec
    frame = shell.user_ns["counts"]
    return int(frame["N"].iloc[0]) if len(frame) else None


def test_stream_connect_kafka_runs_the_notebook_on_the_cluster(shell: InteractiveShell, kafka_bootstrap: str) -> None:
    n = next(_runs)
    before = session.current_engine()
    # Tansu refuses idempotent producers (see test_kafka_log), hence enable_idempotence=false.
    connected, out = run(shell, f"%stream connect kafka://{kafka_bootstrap}?enable_idempotence=false"
                                "&request_timeout_ms=10000")
    assert connected.success, connected.error_in_exec
    assert (f"Connected to kafka://{kafka_bootstrap} (request_timeout_ms=10000); "
            "state in memory.") in out.stdout
    assert not before.background.running  # the previous engine's background work stopped
    _, out = run(shell, "%stream status")
    assert f"engine: kafka://{kafka_bootstrap} (" in out.stdout and "background loop: running" in out.stdout

    created, out = run(shell, f"""%%stream
CREATE STREAM clicks_{n} (userid VARCHAR KEY, page VARCHAR)
  WITH (KAFKA_TOPIC='clicks-connect-{n}', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE TABLE per_user_{n} AS SELECT userid, COUNT(*) AS n FROM clicks_{n} GROUP BY userid EMIT CHANGES;
INSERT INTO clicks_{n} (userid, page) VALUES ('u1', 'home');
INSERT INTO clicks_{n} (userid, page) VALUES ('u2', 'cart');
INSERT INTO clicks_{n} (userid, page) VALUES ('u1', 'cart');
""")
    assert created.success, created.error_in_exec

    assert eventually(lambda: count_of(shell, f"per_user_{n}", "u1") == 2, timeout=30)
    assert count_of(shell, f"per_user_{n}", "u2") == 1
    printed, out = run(shell, f"%stream PRINT 'clicks-connect-{n}' FROM BEGINNING LIMIT 3;")
    assert printed.success, printed.error_in_exec
    assert displayed_text(out).count('"PAGE":"cart"') == 2
    records = read_all(kafka_bootstrap, f"clicks-connect-{n}", 2)  # really in Kafka, keyed
    assert sorted((m.key, json.loads(m.value)["PAGE"]) for m in records) == [
        (b"u1", "cart"), (b"u1", "home"), (b"u2", "cart")]


#: SASL options the recording clients take out before connecting to the PLAINTEXT test broker.
_SASL = ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """(client class, options) of every aiokafka client KafkaLogs create; the clients are real but
    connect in PLAINTEXT."""
    log: list[tuple[str, dict[str, Any]]] = []
    for real in (AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer):
        def __init__(self: Any, *topics: str, _real: Any = real, **options: Any) -> None:
            log.append((_real.__name__, dict(options)))
            _real.__init__(self, *topics, **{k: v for k, v in options.items() if k not in _SASL})
        recording = type(real.__name__, (real,), {"__init__": __init__, "__signature__": inspect.signature(real)})
        monkeypatch.setattr(kafka, real.__name__, recording)
    return log


def test_sasl_options_reach_every_client_and_the_secret_never_reaches_the_state_directory(
        kafka_bootstrap: str, tmp_path: Path, received: list[tuple[str, dict[str, Any]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = next(_runs)
    secret = f"pa55-{n}-never-stored"
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", secret)
    with Engine(tmp_path, kafka=kafka_bootstrap, enable_idempotence=False, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="svc",
                sasl_plain_password="env:TEST_KAFKA_PASSWORD") as engine:
        engine.execute(f"""
            CREATE STREAM orders_{n} (id VARCHAR KEY, amount INT)
              WITH (KAFKA_TOPIC='orders-connect-{n}', VALUE_FORMAT='JSON', PARTITIONS=2);
            CREATE STREAM big_{n} WITH (KAFKA_TOPIC='big-connect-{n}') AS SELECT * FROM orders_{n} WHERE amount > 1;
            INSERT INTO orders_{n} (id, amount) VALUES ('a', 5);""")
        assert engine.run_until_idle() > 0  # the query committed offsets with its group's consumer
        assert secret not in engine.location()
        assert "sasl_plain_password=env:TEST_KAFKA_PASSWORD" in engine.location()

    assert {name for name, _ in received} == {"AIOKafkaAdminClient", "AIOKafkaProducer", "AIOKafkaConsumer"}
    assert any(o.get("group_id") for _n, o in received)  # a query's group consumer was made too
    assert {tuple(o[k] for k in _SASL) for _n, o in received} == {
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", "svc", secret)}

    with duckdb.connect(str(tmp_path / DATABASE_FILE), read_only=True) as con:
        statements = " ".join(sql for (sql,) in con.execute("SELECT sql FROM __statements").fetchall())
        assert f"ORDERS_{n}".lower() in statements.lower()  # the durable metadata is there
        text_columns = con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE data_type IN ('VARCHAR', 'BLOB')").fetchall()
        for table, column in text_columns:
            hits = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                               [f"%{secret}%"]).fetchall()[0][0]
            assert hits == 0, f"{table}.{column} holds the secret"
    for file in tmp_path.rglob("*"):
        assert not file.is_file() or secret.encode() not in file.read_bytes(), file
