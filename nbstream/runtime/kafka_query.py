"""A persistent query between Kafka topics, with its input offsets in a consumer group.

It is the SQL micro-batch path of :class:`~nbstream.runtime.query.QueryRunner` unchanged: each
batch is fetched from Kafka into a DuckDB temporary table (:class:`~nbstream.log.staged.StagedKafkaLog`),
evaluated, and its output produced to the sink topic (acks=all) before the batch's DuckDB
transaction commits; then the next input offsets are committed to the query's consumer group
``nbstream-<query id>``.

Delivery is **at-least-once**: a crash (or a failed batch that is retried) after the output was
produced but before the offsets were committed produces that output again when the query resumes.
Output is not transactional (the test broker refuses transactional and idempotent producers).
"""

from __future__ import annotations

import duckdb

from nbstream.log.staged import StagedKafkaLog
from nbstream.plan.logical import StatelessPlan
from nbstream.runtime.query import QueryRunner


def consumer_group(query_id: str) -> str:
    """The consumer group holding the committed input offsets of query ``query_id``."""
    return f"nbstream-{query_id}"


class KafkaQueryRunner(QueryRunner):
    """Runs a stateless persistent query from one Kafka topic to another (at-least-once)."""

    def __init__(self, query_id: str, plan: StatelessPlan, con: duckdb.DuckDBPyConnection,
                 log: StagedKafkaLog) -> None:
        self.kafka = log.kafka
        self.group = consumer_group(query_id)
        super().__init__(query_id, plan, con, log)

    def _load_offsets(self) -> dict[int, int]:
        """The group's committed offsets; offsets the engine's own database holds take precedence
        (they are committed first, so they are never behind the group's)."""
        committed = self.kafka.committed_offsets(self.group, self.plan.scan.topic)
        return {**committed, **super()._load_offsets()}

    def step(self) -> int:
        """One micro-batch; its input offsets are committed to the group once its output is in Kafka."""
        consumed = super().step()
        if consumed:
            self.kafka.commit_offsets(self.group, self.plan.scan.topic, self.offsets)
        return consumed
