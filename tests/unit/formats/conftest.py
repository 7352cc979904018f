"""Shared fixture: a DuckDB connection with the format macros (the round-trip helpers are in rows.py)."""

from __future__ import annotations

import duckdb
import pytest

from nbstream.formats import register_udfs


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    register_udfs(connection)
    return connection
