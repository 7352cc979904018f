"""A job on Kafka: exported with ``--kafka``, run by ``nbstream run`` against a real broker, its input
written by a plain Kafka producer (the world outside the job), its table read over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiokafka import AIOKafkaProducer
from job_harness import eventually, start_job  # type: ignore[import-not-found]
from notebook_files import write_notebook  # type: ignore[import-not-found]

from nbstream.cli import main as cli
from nbstream.export.job import load_job

NOTEBOOK = """%%stream
CREATE STREAM orders (id VARCHAR KEY, amount INT) WITH (KAFKA_TOPIC='job-orders', VALUE_FORMAT='JSON', PARTITIONS=2);
CREATE TABLE totals AS SELECT id, SUM(amount) AS total, COUNT(*) AS n FROM orders GROUP BY id;
"""


async def produce(bootstrap: str, records: list[tuple[str, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for key, amount in records:
            await producer.send_and_wait("job-orders", json.dumps({"AMOUNT": amount}).encode(), key=key.encode())
    finally:
        await producer.stop()


def test_a_job_exported_for_kafka_runs_on_the_cluster(kafka_bootstrap: str, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "orders.ipynb", NOTEBOOK)
    assert cli(["export", str(notebook), "-o", str(tmp_path / "job"), "--kafka", kafka_bootstrap,
                "--kafka-option", "enable_idempotence=false"]) == 0
    config = load_job(tmp_path / "job").config
    assert (config.log.backend, config.log.bootstrap, dict(config.log.options)) == \
        ("kafka", kafka_bootstrap, {"enable_idempotence": False})
    job = start_job(tmp_path / "job", tmp_path / "state")
    try:
        records = [(k, n) for n in range(1, 21) for k in ("a", "b", "c")]
        asyncio.run(produce(kafka_bootstrap, records))
        expected = sorted([k, sum(n for key, n in records if key == k), 20] for k in ("a", "b", "c"))
        eventually(lambda: sorted(job.pull("SELECT * FROM TOTALS;")[1]) == expected, 60, 0.5)
    finally:
        assert job.stop() == 0
    assert "log=kafka" in job.output()
