"""The Kafka log places keyed records where the Java client's default partitioner does."""

from __future__ import annotations

import ctypes

import pytest
from aiokafka.partitioner import murmur2

from nbstream.log.kafka import java_partition

#: murmur2 of these keys as the Java client computes it (Kafka's UtilsTest.testMurmur2).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
def test_murmur2_matches_the_java_client(key: bytes, java_hash: int) -> None:
    assert ctypes.c_int32(murmur2(key)).value == java_hash


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
def test_partition_is_the_positive_hash_modulo_the_partition_count(key: bytes, java_hash: int) -> None:
    for partitions in (1, 3, 7, 12):
        assert java_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions
