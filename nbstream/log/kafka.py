"""The Kafka event log: topics of a Kafka cluster behind the :class:`~nbstream.log.base.Log` contract.

``KafkaLog("host:port", **client_options)`` talks to the cluster with aiokafka. aiokafka is
asynchronous and the engine's API is synchronous, so the log owns one background thread running an
event loop; every method submits a coroutine to that loop and waits for its result. The admin
client, the producer and the reading consumer all live on that loop.

Client options (``security_protocol``, ``ssl_cafile``/``ssl_certfile``/``ssl_keyfile`` or
``ssl_context``, ``sasl_mechanism`` = PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER,
``sasl_plain_username``/``sasl_plain_password``, ``sasl_oauth_token_provider``, ``client_id``,
``request_timeout_ms``, …) are checked by :mod:`nbstream.log.kafka_options` (an unknown name is an
error naming the nearest one) and passed to each aiokafka client that accepts them. The log keeps
them as given: ``env:``/``file:`` secret references are resolved each time a client is created.

Writing: records are produced with ``acks=all`` by an idempotent producer (unless
``enable_idempotence=False`` is passed, for brokers without InitProducerId) and :meth:`append`
returns once the broker acknowledged every record. A record without a partition goes where the Java
client's default partitioner puts it: ``murmur2(key) & 0x7fffffff % partitions`` (aiokafka's
``murmur2`` is a port of the Java one), so other Kafka clients agree; records with a null key are
spread round-robin (the Java client's sticky partitioner also spreads them, not necessarily alike).
Windowed keys are serialized as Kafka Streams does: the key's bytes then the window start as an
8-byte big-endian integer (TUMBLING/HOPPING), or the window end then its start (SESSION), and
routed by the key without its window (Kafka Streams' ``WindowedStreamPartitioner``). Reading
splits them back for the topics :meth:`declare_window` named (a time window's end is its start
plus the size, which is not in the bytes).

Transactions (``processing.guarantee`` exactly_once_v2): :meth:`start_transactions` starts a
transactional producer, refused with the broker's reason by a broker without transactions;
:meth:`append_transaction` produces a batch and commits a consumer group's offsets in one
transaction.

Reading: :meth:`read` assigns the partitions to a consumer without a group, seeks, and collects
``getmany`` batches until each partition reaches its end (or ``limit``); only committed records
are returned (``read_committed``). Key and value bytes are kept as they are — decoding happens in
SQL over the whole batch.

Broker differences handled here (checked against Tansu 0.6, the test broker): its ListOffsets
answers ``base offset of the last record batch + 1`` instead of the log end offset when the last
produce held several records, so end offsets are confirmed by the high watermark of a one-record
fetch at the listed offset - 1 (correct on Apache Kafka too, at the cost of a fetch). Tansu refuses
idempotent and transactional producers (InitProducerId fails with error -1), so tests run with
``enable_idempotence=False`` and check that exactly_once_v2 is refused.

A broker that does not answer (connection refused or reset, request timed out, no answer within
``call_timeout_s``) raises :class:`BrokerUnavailable`, a LogError the query runners treat as a
stall to retry rather than a failure; for ``retry_after_s`` after that, every call raises it at
once, so a stalled engine retries about once a second instead of waiting a timeout per query.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from nbstream.errors import LogError, did_you_mean
from nbstream.log.base import RECORD_SCHEMA, TopicInfo, check_existing_topic, check_topic_request
from nbstream.log.kafka_options import check_client_options, describe, resolve_client_options

T = TypeVar("T")

#: Kafka's error code for "topic already exists" in a CreateTopics response.
TOPIC_ALREADY_EXISTS = 36

#: Seconds to wait for any one call to the cluster before giving up with a LogError.
CALL_TIMEOUT_S = 60.0

#: Seconds after the cluster was found unreachable during which calls fail at once.
RETRY_AFTER_S = 1.0

#: How long the reading consumer lets the broker hold a fetch (the test broker holds it this long
#: even when data arrives), unless ``fetch_max_wait_ms`` is passed.
READ_FETCH_MAX_WAIT_MS = 10

#: Seconds a topic's partition count is trusted by :meth:`KafkaLog.append` without asking the cluster
#: (counts only grow, and any failed call forgets them at once): a micro-batch's produce then needs
#: no listing and no end offsets. Reads list the topics each time (a deleted topic is seen at once).
PARTITION_COUNT_TTL_S = 1.0

#: Bytes of one producer batch and of one partition's share of a fetch, unless ``max_batch_size``
#: or ``max_partition_fetch_bytes`` is passed: micro-batches move 10^5 records at a time, and
#: aiokafka's defaults (16 KiB, 1 MiB) cost a produce request per ~200 records and a fetch round
#: trip per ~10^4 (measured: 10-15% of nbstream's CPU time and half the test broker's). A
#: batch stays within a broker's default ``max.message.bytes`` (1 MiB + 12).
PRODUCE_BATCH_BYTES = 1 << 20
READ_PARTITION_FETCH_BYTES = 16 << 20


class BrokerUnavailable(LogError):
    """The cluster did not answer: the call may succeed once it is back (nothing was done, or a
    produce may have been partly acknowledged)."""


def _unreachable(error: KafkaError) -> bool:
    """Whether ``error`` says the broker could not be reached in time (rather than refusing)."""
    if isinstance(error, UnknownTopicOrPartitionError):
        return False
    return isinstance(error, KafkaTimeoutError) or bool(getattr(error, "retriable", False))


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for a non-null ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _accepted(client: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that ``client``'s constructor accepts."""
    names = inspect.signature(client).parameters
    return {k: v for k, v in options.items() if k in names}


class KafkaLog:
    """The :class:`~nbstream.log.base.Log` over the Kafka cluster at ``bootstrap`` ("host:port[,…]").

    Call :meth:`close` (or use it as a context manager) to stop its clients and thread.
    """

    def __init__(self, bootstrap: str, *, enable_idempotence: bool = True, call_timeout_s: float = CALL_TIMEOUT_S,
                 retry_after_s: float = RETRY_AFTER_S, **client_options: Any) -> None:
        self.bootstrap = bootstrap
        self.call_timeout_s = call_timeout_s
        self.retry_after_s = retry_after_s
        self._unreachable: tuple[float, str] | None = None  # (until when, why): see _call
        self._windows: dict[str, tuple[str, int | None]] = {}
        check_client_options(client_options)
        self.client_options = dict(client_options)  # as given: secrets stay references
        options = {"bootstrap_servers": bootstrap, **client_options}
        self._options = options
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._prefetcher: AIOKafkaConsumer | None = None  # the consumer of prefetch, made on first use
        self._prefetched: Prefetch | None = None  # the one fetch in flight ahead of its read
        self._transactional: dict[str, AIOKafkaProducer] = {}
        self._counts: dict[str, int] = {}  # partition counts of the last listing: see _partition_count
        self._counted_at = -float("inf")
        self._lock = threading.RLock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nbstream-kafka {bootstrap}",
                                        daemon=True)
        self._thread.start()
        self._admin = self._construct(AIOKafkaAdminClient, options)
        self._producer = self._construct(AIOKafkaProducer, {
            "max_batch_size": PRODUCE_BATCH_BYTES, **options, "acks": "all",
            "enable_idempotence": enable_idempotence})
        self._consumer = self._construct(AIOKafkaConsumer, self._reader_options())
        try:
            self._call(self._admin.start(), "connect")
            self._call(self._producer.start(), "start the producer" + (
                " (an idempotent producer needs InitProducerId; pass enable_idempotence=False "
                "for a broker without it, accepting duplicates on retried sends)" if enable_idempotence else ""))
            self._call(self._consumer.start(), "start the consumer")
        except BaseException:
            self.close()
            raise

    def _reader_options(self) -> dict[str, Any]:
        """The options of a consumer that reads ranges (no group, read_committed)."""
        return {"fetch_max_wait_ms": READ_FETCH_MAX_WAIT_MS, "max_partition_fetch_bytes": READ_PARTITION_FETCH_BYTES,
                **self._options, "group_id": None, "enable_auto_commit": False, "isolation_level": "read_committed"}

    def _construct(self, client: Callable[..., T], options: Mapping[str, Any]) -> T:
        """Create an aiokafka client on the log's loop (they bind the running loop)."""
        resolved = resolve_client_options(options)

        async def make() -> T:
            return client(**_accepted(client, resolved))
        return self._call(make(), "create a client")

    def describe(self) -> str:
        """``kafka://bootstrap`` and the client options, secrets shown only as references."""
        options = describe(self.client_options)
        return f"kafka://{self.bootstrap}" + (f" ({options})" if options else "")

    def _call(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` on the log's loop and wait for it; Kafka errors become LogError. For
        ``retry_after_s`` after the cluster was found unreachable, calls fail at once with the
        same :class:`BrokerUnavailable` (so the queries of a stalled engine do not each wait for
        a timeout)."""
        if self._unreachable is not None and time.monotonic() < self._unreachable[0]:
            coro.close()
            raise BrokerUnavailable(self._unreachable[1])
        try:
            result = self._wait(coro, what)
        except BrokerUnavailable as e:
            self._unreachable = (time.monotonic() + self.retry_after_s, str(e))
            self._counted_at = -float("inf")
            raise
        except BaseException:
            self._counted_at = -float("inf")  # a topic may have gone: list the topics again
            raise
        self._unreachable = None
        return result

    def _wait(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        return self._result(asyncio.run_coroutine_threadsafe(coro, self._loop), what)

    def _result(self, future: concurrent.futures.Future[T], what: str) -> T:
        """The result of ``future`` (a call running on the log's loop), its errors as :meth:`_wait` says."""
        try:
            return future.result(self.call_timeout_s)
        except TimeoutError as e:
            future.cancel()
            raise BrokerUnavailable(f"Kafka at {self.bootstrap}: no answer within {self.call_timeout_s:g} s "
                                    f"to {what}") from e
        except KafkaError as e:
            if _unreachable(e):
                raise BrokerUnavailable(f"Kafka at {self.bootstrap}: could not {what}: "
                                        f"{type(e).__name__} {e}".rstrip()) from e
            raise LogError(f"Kafka at {self.bootstrap}: could not {what}: {e}") from e

    def close(self) -> None:
        """Stop the clients and the loop thread (idempotent)."""
        if not self._loop.is_running():
            return
        self._drop_prefetch()
        clients = [*self._groups.values(), *self._transactional.values(),
                   *(getattr(self, n, None) for n in ("_consumer", "_producer", "_admin", "_prefetcher"))]
        for client in clients:
            stop: Callable[[], Awaitable[None]] | None = getattr(client, "stop", None) or getattr(client, "close", None)
            if stop is not None:  # best effort: a client that never started may refuse to stop
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(stop(), self._loop).result(CALL_TIMEOUT_S)  # type: ignore[arg-type]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> KafkaLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics ---------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1, replicas: int = 1,
                     retention_ms: int | None = None) -> TopicInfo:
        """Create ``name`` with ``partitions``, ``replicas`` and ``retention_ms`` (the topic's
        ``retention.ms``; None: the cluster's default) or, if it exists, check its partition count
        and return it."""
        check_topic_request(name, partitions, replicas, retention_ms)
        configs = {} if retention_ms is None else {"retention.ms": str(retention_ms)}
        with self._lock:
            existing = self.topic(name)
            if existing is None:
                new = NewTopic(name, partitions, replicas, topic_configs=configs)
                response = self._call(self._admin.create_topics([new]), f"create topic '{name}'")
                for _topic, code, message in response.topic_errors:
                    if code not in (0, TOPIC_ALREADY_EXISTS):
                        raise LogError(f"Kafka at {self.bootstrap}: could not create topic '{name}' "
                                       f"with {partitions} partitions and {replicas} replicas: "
                                       f"error {code} {message or ''}".rstrip())
                existing = self.require(name)
            return check_existing_topic(existing, partitions)

    def delete_expired(self, now_ms: int) -> int:
        """Nothing: the cluster deletes what its topics' retention lets go."""
        return 0

    def delete_topic(self, name: str) -> None:
        with self._lock:
            self.require(name)
            response = self._call(self._admin.delete_topics([name]), f"delete topic '{name}'")
            self._counted_at = -float("inf")
            for _topic, code, *_ in response.topic_error_codes:
                if code != 0:
                    raise LogError(f"Kafka at {self.bootstrap}: could not delete topic '{name}': error {code}")

    def _partition_counts(self) -> dict[str, int]:
        """Partition count of every topic that is not internal (one metadata request, which never
        creates topics, unlike a metadata request naming one)."""
        described = self._call(self._admin.describe_topics(), "list topics")
        self._counts = {t["topic"]: len(t["partitions"]) for t in described if not t["is_internal"]}
        self._counted_at = time.monotonic()
        return dict(self._counts)

    def _partition_count(self, name: str) -> int | None:
        """The partition count of topic ``name`` (None: no such topic), from the last listing if it
        is younger than PARTITION_COUNT_TTL_S and knows the topic."""
        if name not in self._counts or time.monotonic() - self._counted_at > PARTITION_COUNT_TTL_S:
            self._partition_counts()
        return self._counts.get(name)

    def partition_count(self, name: str) -> int:
        """The partition count of topic ``name`` (trusted for PARTITION_COUNT_TTL_S since the last
        listing), or a :class:`LogError` naming the near miss."""
        count = self._partition_count(name)
        if count is None:
            self.require(name)  # the error naming the near miss
        assert count is not None
        return count

    def topic(self, name: str) -> TopicInfo | None:
        """The topic ``name`` with its end offsets, or None."""
        with self._lock:
            partitions = self._partition_counts().get(name)  # always listed: a deleted topic is seen at once
            if partitions is None:
                return None
            return TopicInfo(name, partitions, self._end_offsets(name, partitions))

    def require(self, name: str) -> TopicInfo:
        """The topic ``name``, or a :class:`LogError` naming the near miss."""
        info = self.topic(name)
        if info is None:
            names = self._partition_counts()
            raise LogError(f"topic '{name}' does not exist in Kafka at {self.bootstrap}.{did_you_mean(name, names)}")
        return info

    def topics(self) -> Sequence[TopicInfo]:
        with self._lock:
            counts = self._partition_counts()
            return [TopicInfo(n, counts[n], self._end_offsets(n, counts[n])) for n in sorted(counts)]

    def _end_offsets(self, name: str, partitions: int) -> dict[int, int]:
        tps = [TopicPartition(name, p) for p in range(partitions)]
        listed = self._call(self._consumer.end_offsets(tps), f"read the end offsets of '{name}'")
        return self._call(self._confirm_ends(listed), f"read the end offsets of '{name}'")

    async def _confirm_ends(self, listed: Mapping[TopicPartition, int]) -> dict[int, int]:
        """The high watermark of each non-empty partition, from a fetch at its listed end - 1."""
        probe = [tp for tp, end in listed.items() if end > 0]
        ends = {tp.partition: end for tp, end in listed.items()}
        if not probe:
            return ends
        consumer = self._consumer
        consumer.assign(probe)
        for tp in probe:
            consumer.seek(tp, listed[tp] - 1)
        pending = set(probe)
        while pending:
            await consumer.getmany(*pending, timeout_ms=1000, max_records=1)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp.partition] = max(highwater, listed[tp])
                    pending.discard(tp)
        consumer.assign([])
        return ends

    # -- writing --------------------------------------------------------------------------------
    def append(self, topic: str, batch: pa.Table) -> dict[int, int]:
        """Produce the records of ``batch`` (``RECORD_SCHEMA`` columns, ``offset`` ignored) and
        wait until the broker acknowledged them all; returns the records written per partition."""
        with self._lock:
            count = self.partition_count(topic)
            if batch.num_rows == 0:
                return {}
            partitions = self._route(topic, batch, count)
            self._call(self._produce(topic, batch, partitions), f"produce to '{topic}'")
            return {p: partitions.count(p) for p in sorted(set(partitions))}

    @staticmethod
    def _route(topic: str, batch: pa.Table, partitions: int) -> list[int]:
        """The partition of every record: its own, murmur2 of its key, or round-robin for a null
        key. murmur2 runs once per distinct key."""
        explicit = batch.column("partition")
        given = pc.drop_null(explicit)
        if len(given) and not pc.all(pc.and_(pc.less(given, partitions), pc.greater_equal(given, 0))).as_py():
            raise LogError(f"topic '{topic}' has {partitions} partitions; no partition "
                           f"{pc.max(given).as_py() if pc.max(given).as_py() >= partitions else pc.min(given).as_py()}")
        keys = batch.column("key")
        distinct = pc.unique(pc.drop_null(keys))
        by_key = pa.array([java_partition(k, partitions) for k in distinct.to_pylist()], pa.int32())
        hashed = pc.take(by_key, pc.index_in(keys, value_set=distinct))
        spread = pa.array([i % partitions for i in range(batch.num_rows)], pa.int32())
        chosen = pc.coalesce(explicit.cast(pa.int32()), hashed, spread)
        return chosen.to_pylist()  # type: ignore[no-any-return]

    # -- transactions ---------------------------------------------------------------------------
    def start_transactions(self, transactional_id: str) -> None:
        """Start the transactional producer ``transactional_id`` (idempotent, ``acks=all``): its
        InitProducerId fences a previous producer of that id and aborts its open transaction. A
        LogError naming the broker's refusal if the broker has no transactions (never a fallback)."""
        with self._lock:
            if transactional_id in self._transactional:
                return
            producer = self._construct(AIOKafkaProducer, {
                "max_batch_size": PRODUCE_BATCH_BYTES, **self._options, "acks": "all",
                "enable_idempotence": True, "transactional_id": transactional_id})
            try:
                self._call(producer.start(), f"start the transactional producer '{transactional_id}'")
            except BrokerUnavailable:
                raise
            except LogError as e:
                with contextlib.suppress(Exception):
                    self._wait(producer.stop(), "stop a producer")
                raise LogError(f"Kafka at {self.bootstrap} refused a transactional producer "
                               f"('{transactional_id}': its InitProducerId failed: {e.__cause__ or e}); "
                               "processing.guarantee 'exactly_once_v2' needs a broker with transactions — "
                               "use 'at_least_once' on this one") from e
            self._transactional[transactional_id] = producer

    def append_transaction(self, transactional_id: str, topic: str, batch: pa.Table, group: str,
                           offsets: Mapping[str, Mapping[int, int]]) -> dict[int, int]:
        """In one Kafka transaction of producer ``transactional_id`` (see :meth:`start_transactions`):
        produce ``batch`` to ``topic`` and commit ``offsets`` {topic: {partition: next offset}} for
        consumer group ``group``. Either both are committed or neither (the transaction is aborted
        on an error; a crash leaves it to be aborted by the producer's next start)."""
        with self._lock:
            producer = self._transactional[transactional_id]
            info = self.require(topic)
            partitions = self._route(topic, batch, info.partitions) if batch.num_rows else []
            group_offsets = {TopicPartition(t, p): o for t, per in offsets.items() for p, o in per.items()}
            self._call(self._transact(producer, topic, batch, partitions, group, group_offsets),
                       f"produce to '{topic}' in transaction '{transactional_id}'")
            return {p: partitions.count(p) for p in sorted(set(partitions))}

    async def _transact(self, producer: AIOKafkaProducer, topic: str, batch: pa.Table, partitions: list[int],
                        group: str, offsets: Mapping[TopicPartition, int]) -> None:
        await producer.begin_transaction()
        try:
            if batch.num_rows:
                await self._produce(topic, batch, partitions, producer)
            if offsets:
                await producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}, group)
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise

    async def _produce(self, topic: str, batch: pa.Table, partitions: list[int],
                       producer: AIOKafkaProducer | None = None) -> None:
        """Send the records grouped into producer batches per partition, in order (with the log's
        producer unless ``producer`` is given)."""
        producer = producer or self._producer
        rows = zip(partitions, batch.column("ts").to_pylist(), _windowed_keys(batch),
                   batch.column("value").to_pylist(), _header_pairs(batch.column("headers")), strict=True)
        sent = []
        for partition, records in itertools.groupby(sorted(rows, key=lambda r: r[0]), key=lambda r: r[0]):
            builder = producer.create_batch()
            for _p, ts, key, value, pairs in records:
                while builder.append(key=key, value=value, timestamp=ts, headers=pairs) is None:
                    if builder.record_count() == 0:
                        raise LogError(f"a record of {len(value or b'') + len(key or b'')} bytes does not fit "
                                       f"in a producer batch for '{topic}' (raise max_batch_size)")
                    builder.close()
                    sent.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
            builder.close()
            sent.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*sent)

    # -- reading --------------------------------------------------------------------------------
    def declare_window(self, topic: str, kind: str, size_ms: int | None) -> None:
        """Read the keys of ``topic`` as windowed keys of window type ``kind`` (TUMBLING, HOPPING or
        SESSION) and size ``size_ms`` (time windows): their window goes to ``win_start``/``win_end``."""
        self._windows[topic] = ("SESSION" if kind == "SESSION" else "TIME", size_ms)

    def read(self, topic: str, start: Mapping[int, int] | None = None, limit: int | None = None) -> pa.Table:
        """Committed records of ``topic`` from ``start[partition]`` (missing: 0) up to the end
        offsets at the call, at most ``limit`` per partition, ordered by partition and offset."""
        with self._lock:
            info = self.require(topic)
            start = start or {}
            bounds = {p: (start.get(p, 0), end if limit is None else min(end, start.get(p, 0) + limit))
                      for p, end in info.end_offsets.items()}
            return self.read_ranges(topic, bounds)

    def read_ranges(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> pa.Table:
        """The records of ``topic`` in ``ranges`` {partition: (start, end)}, which must lie below
        the end offsets, ordered by partition and offset: those a :meth:`prefetch` of the same
        ranges fetched, else fetched now."""
        with self._lock:
            prefetched = self._take_prefetch(topic, ranges)
            if prefetched is not None:
                return self._result(prefetched, f"read '{topic}'")
            records = self._call(self._fetch(topic, ranges), f"read '{topic}'")
        return _to_arrow(records, self._windows.get(topic))

    def prefetch(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> None:
        """Start fetching the records of ``topic`` in ``ranges`` (below the end offsets) on the
        log's loop, with a consumer of its own, and return at once: a query evaluates its batch in
        DuckDB while the next one is fetched and decoded into Arrow. The next :meth:`read_ranges`
        of exactly these ranges takes them; any other read, or another prefetch, drops them (one
        prefetch is in flight at a time). Errors surface in the read that takes them, as the
        read's own would; none is raised here, and nothing is fetched while the cluster is away."""
        wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
        with self._lock:
            current = self._prefetched
            if current is not None and current.topic == topic and current.ranges == wanted:
                return
            self._drop_prefetch()
            if not wanted or self._unreachable is not None:
                return
            future = asyncio.run_coroutine_threadsafe(self._fetch_arrow(topic, wanted), self._loop)
            self._prefetched = Prefetch(topic, wanted, future)

    def _take_prefetch(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> concurrent.futures.Future[
            pa.Table] | None:
        """The prefetch of exactly ``ranges`` of ``topic``, taken (None: none; another is dropped)."""
        current = self._prefetched
        if current is None:
            return None
        if current.topic == topic and current.ranges == {p: r for p, r in ranges.items() if r[1] > r[0]}:
            self._prefetched = None
            return current.future
        self._drop_prefetch()
        return None

    def _drop_prefetch(self) -> None:
        if self._prefetched is not None:
            self._prefetched.future.cancel()
            self._prefetched = None

    async def _fetch_arrow(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> pa.Table:
        """:meth:`read_ranges`'s table, fetched by the prefetch consumer (started on first use)."""
        if self._prefetcher is None:
            consumer = AIOKafkaConsumer(**_accepted(AIOKafkaConsumer, resolve_client_options(self._reader_options())))
            await consumer.start()
            self._prefetcher = consumer
        records = await self._fetch(topic, ranges, self._prefetcher)
        return _to_arrow(records, self._windows.get(topic))

    # -- consumer groups ------------------------------------------------------------------------
    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """The offsets consumer group ``group`` committed for the partitions of ``topic``."""
        with self._lock:
            info = self.require(topic)
            tps = [TopicPartition(topic, p) for p in range(info.partitions)]
            consumer = self._group_consumer(group)
            committed = {tp.partition: self._call(consumer.committed(tp), f"read the offsets of group '{group}'")
                         for tp in tps}
        return {p: o for p, o in committed.items() if o is not None}

    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets`` {partition: next offset to read} of ``topic`` for ``group``."""
        if not offsets:
            return
        with self._lock:
            consumer = self._group_consumer(group)
            self._call(_commit(consumer, {TopicPartition(topic, p): o for p, o in offsets.items()}),
                       f"commit the offsets of group '{group}'")

    def replicas(self) -> dict[str, int]:
        """The replica count of every topic that is not internal (its largest partition's)."""
        described = self._call(self._admin.describe_topics(), "list topics")
        return {t["topic"]: max((len(p["replicas"]) for p in t["partitions"]), default=0)
                for t in described if not t["is_internal"]}

    def consumer_groups(self, partitions: Mapping[str, int]) -> dict[str, list[str]]:
        """For each topic of ``partitions`` {topic: partition count}, the consumer groups that
        committed an offset for one of its partitions (the test broker cannot list a group's
        offsets without naming the partitions, so they are named)."""
        tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        readers: dict[str, list[str]] = {t: [] for t in partitions}
        with self._lock:
            groups = self._call(self._admin.list_consumer_groups(), "list consumer groups")
            for group, _protocol in sorted(groups):
                committed = self._call(self._admin.list_consumer_group_offsets(group, partitions=tps),
                                       f"read the offsets of group '{group}'")
                for topic in sorted({tp.topic for tp, o in committed.items() if o.offset >= 0}):
                    readers[topic].append(group)
        return readers

    def _group_consumer(self, group: str) -> AIOKafkaConsumer:
        """A consumer of ``group`` that only commits and looks up offsets (it never joins)."""
        consumer = self._groups.get(group)
        if consumer is None:
            consumer = self._construct(AIOKafkaConsumer, {
                **self._options, "group_id": group, "enable_auto_commit": False})
            self._call(consumer.start(), f"start a consumer of group '{group}'")
            self._groups[group] = consumer
        return consumer

    async def _fetch(self, topic: str, bounds: Mapping[int, tuple[int, int]],
                     consumer: AIOKafkaConsumer | None = None) -> list[ConsumerRecord]:
        """The records of ``bounds``, by the log's reading consumer unless ``consumer`` is given."""
        consumer = consumer or self._consumer
        wanted = {TopicPartition(topic, p): (a, b) for p, (a, b) in bounds.items() if b > a}
        consumer.assign(list(wanted))
        for tp, (a, _b) in wanted.items():
            consumer.seek(tp, a)
        fetched: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in wanted}
        pending = set(wanted)
        while pending:
            got = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in got.items():
                fetched[tp].extend(m for m in messages if m.offset < wanted[tp][1])
            pending = {tp for tp in pending if await consumer.position(tp) < wanted[tp][1]}
        consumer.assign([])
        return [m for tp in sorted(fetched, key=lambda t: t.partition) for m in fetched[tp]]


@dataclass(frozen=True)
class Prefetch:
    """A fetch started ahead of its read (:meth:`KafkaLog.prefetch`): its topic, ranges and table."""

    topic: str
    ranges: Mapping[int, tuple[int, int]]
    future: concurrent.futures.Future[pa.Table]


async def _commit(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``consumer``'s group: aiokafka commits only assigned partitions, so
    they are assigned first, paused (nothing is fetched)."""
    if not set(offsets) <= consumer.assignment():
        consumer.assign(sorted({*consumer.assignment(), *offsets}))
        consumer.pause(*consumer.assignment())
    await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})


def _header_pairs(headers: pa.ChunkedArray) -> list[list[tuple[str, bytes | None]]]:
    """Each record's headers as the (key, value) pairs aiokafka takes, built from the flat key and
    value columns (a dict per header, as ``to_pylist`` makes, costs three times as much)."""
    lists = headers.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    entries = lists.flatten()  # a null list contributes nothing, whatever backs it
    pairs = list(zip(entries.field("key").to_pylist(), entries.field("value").to_pylist(), strict=True))
    return [pairs[a:b] for a, b in itertools.pairwise(bounds)]


def _windowed_keys(batch: pa.Table) -> list[bytes | None]:
    """The key bytes to produce: a windowed key gets its window appended as Kafka Streams'
    windowed serializers write it (TIME: start; SESSION: end, start; 8-byte big-endian each)."""
    keys = batch.column("key").combine_chunks()
    starts = batch.column("win_start").combine_chunks()
    if starts.null_count == len(starts):
        return keys.to_pylist()  # type: ignore[no-any-return]
    ends = batch.column("win_end").combine_chunks()
    session = pc.fill_null(pc.equal(batch.column("win_type").combine_chunks(), "SESSION"), False)
    suffix = pc.if_else(session, pc.binary_join_element_wise(_long_bytes(ends), _long_bytes(starts), b""),
                        _long_bytes(starts))
    windowed = pc.binary_join_element_wise(keys, suffix, b"")
    return pc.if_else(pc.is_null(starts), keys, windowed).to_pylist()  # type: ignore[no-any-return]


def _long_bytes(values: pa.Array) -> pa.Array:
    """Each integer of ``values`` as 8 big-endian bytes (a null as zeros)."""
    longs = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(">i8")
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), len(values), [None, pa.py_buffer(longs.tobytes())])
    return fixed.cast(pa.binary())


def _longs(values: pa.Array) -> pa.Array:
    """The 8 big-endian bytes of each element of ``values`` (all of length 8) as int64."""
    fixed = values.cast(pa.binary(8))
    return pa.array(np.frombuffer(fixed.buffers()[1], dtype=">i8", count=len(fixed), offset=fixed.offset * 8)
                    .astype(np.int64))


def _split_windows(keys: pa.Array, window: tuple[str, int | None]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Windowed keys as :func:`_windowed_keys` wrote them, split into (key, window start, window
    end); a key too short to hold a window is kept whole, without one."""
    kind, size = window
    width = 16 if kind == "SESSION" else 8
    holds = pc.fill_null(pc.greater_equal(pc.binary_length(keys), width), False)
    padding = pa.scalar(b"\0" * width, pa.binary())
    padded = pc.if_else(holds, keys, padding)
    starts = _longs(pc.binary_slice(padded, -8))
    if kind == "SESSION":
        ends = _longs(pc.binary_slice(padded, -16, -8))
    else:
        ends = pa.nulls(len(keys), pa.int64()) if size is None else pc.add(starts, size)
    no_window = pa.scalar(None, pa.int64())
    return (pc.if_else(holds, pc.binary_slice(padded, 0, -width), keys),
            pc.if_else(holds, starts, no_window), pc.if_else(holds, ends, no_window))


def _to_arrow(records: Sequence[ConsumerRecord], window: tuple[str, int | None] | None = None) -> pa.Table:
    """Fetched records as a ``RECORD_SCHEMA`` table: bytes untouched but for a windowed key
    (``window``: its kind and size), whose window is split off into the window columns."""
    n = len(records)
    keys = pa.array([m.key for m in records], pa.binary())
    starts = ends = pa.nulls(n, pa.int64())
    kinds = pa.nulls(n, pa.string())
    if window is not None:
        keys, starts, ends = _split_windows(keys, window)
        kinds = pc.if_else(pc.is_null(starts), pa.scalar(None, pa.string()), pa.scalar(window[0], pa.string()))
    columns = {
        "partition": [m.partition for m in records],
        "offset": [m.offset for m in records],
        "ts": [m.timestamp for m in records],
        "key": keys,
        "value": [m.value for m in records],
        "headers": _headers(records),
        "win_start": starts,
        "win_end": ends,
        "win_type": kinds,
    }
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def _headers(records: Sequence[ConsumerRecord]) -> pa.Array:
    """The headers of ``records`` as one list array, built from flat columns (no Python list or
    dict per record: most records have no headers, and 10^5 small containers cost seconds of GC)."""
    offsets = [0, *itertools.accumulate(len(m.headers) for m in records)]
    pairs = [h for m in records if m.headers for h in m.headers]
    entries = pa.StructArray.from_arrays(
        [pa.array([k for k, _v in pairs], pa.string()), pa.array([v for _k, v in pairs], pa.binary())],
        names=["key", "value"])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), entries)
