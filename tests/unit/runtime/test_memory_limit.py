"""The engine properties that are DuckDB settings: the memory limit (a notebook-sized default) and the
checkpoint threshold."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from nbstream import Engine
from nbstream.errors import PlanError
from nbstream.runtime.engine import default_memory_limit


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])


def _mib(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"MiB": 1, "GiB": 1024}[unit]


def test_the_default_is_a_quarter_of_memory_at_most_1_gib() -> None:
    assert 0 < int(default_memory_limit().removesuffix("MiB")) <= 1024
    eng = Engine()
    assert _mib(_limit(eng.con)) == int(default_memory_limit().removesuffix("MiB"))


def test_a_property_sets_the_limit_of_every_connection_of_the_engine() -> None:
    eng = Engine(properties={"nbstream.duckdb.memory.limit": "300MiB"})
    cursor = eng.con.cursor()  # as pull queries and Kafka consumes use
    assert _limit(eng.con) == _limit(cursor) == "300.0 MiB"


def test_set_applies_at_once_unset_restores_the_default_and_a_bad_value_changes_nothing(tmp_path: Path) -> None:
    eng = Engine(path=tmp_path)
    eng.execute("SET 'nbstream.duckdb.memory.limit'='256MiB';")
    assert _limit(eng.con) == "256.0 MiB"
    with pytest.raises(PlanError, match=r"nbstream\.duckdb\.memory\.limit 'lots' is not a memory size"):
        eng.execute("SET 'nbstream.duckdb.memory.limit'='lots';")
    assert _limit(eng.con) == "256.0 MiB" and eng.property("nbstream.duckdb.memory.limit") == "256MiB"
    eng.close()
    reopened = Engine(path=tmp_path)  # the SET is replayed
    assert _limit(reopened.con) == "256.0 MiB"
    reopened.execute("UNSET 'nbstream.duckdb.memory.limit';")
    assert _mib(_limit(reopened.con)) == int(default_memory_limit().removesuffix("MiB"))


def _threshold(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.sql("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0])


def test_the_checkpoint_threshold_is_64_mb_unless_the_property_says_otherwise(tmp_path: Path) -> None:
    eng = Engine(path=tmp_path)
    assert _threshold(eng.con) == "61.0 MiB"  # DuckDB shows 64 MB (10^6 bytes) in MiB
    eng.execute("SET 'nbstream.duckdb.checkpoint.threshold'='16MB';")
    assert _threshold(eng.con) == "15.2 MiB"
    with pytest.raises(PlanError, match=r"nbstream\.duckdb\.checkpoint\.threshold 'often' is not a size"):
        eng.execute("SET 'nbstream.duckdb.checkpoint.threshold'='often';")
    assert _threshold(eng.con) == "15.2 MiB"
