"""Fixtures of the server tests: one server per test module (each module names its own streams)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An in-memory engine served on a free loopback port."""
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"
