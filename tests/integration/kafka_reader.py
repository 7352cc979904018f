"""Reading a whole topic with a plain aiokafka consumer: the independent check of what nbstream wrote."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


def read_all(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic`` (aiokafka ``ConsumerRecord``s), each partition read up to its high
    watermark; an AssertionError if that does not happen within ~10 s."""
    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[Any] = []
            for _ in range(50):
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(messages)
                highwaters = [consumer.highwater(tp) for tp in tps]
                if None not in highwaters and all([await consumer.position(tp) >= hw
                                                   for tp, hw in zip(tps, highwaters, strict=True)]):
                    return out
            raise AssertionError(f"could not read {topic} to its end")
        finally:
            await consumer.stop()
    return asyncio.run(run())
