"""Shared fixtures: a DuckDB connection with the format macros, an embedded schema registry, and a
connection whose schema-registry codecs use it (the round-trip helpers are in rows.py)."""

from __future__ import annotations

import duckdb
import pytest

from nbstream.formats import codecs, register_udfs
from nbstream.formats.registry import SchemaRegistry


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    register_udfs(connection)
    return connection


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry(duckdb.connect())


@pytest.fixture
def sr_con(con: duckdb.DuckDBPyConnection, registry: SchemaRegistry) -> duckdb.DuckDBPyConnection:
    """``con`` with the schema-registry formats' codecs bound to ``registry``."""
    codecs.attach(con, registry)
    return con
