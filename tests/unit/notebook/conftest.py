"""A real IPython shell with ``%load_ext nbstream`` done, and a fresh in-memory engine per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import nbstream_shell

from nbstream.notebook import session
from nbstream.runtime.service import EngineService


@pytest.fixture(scope="session")
def ipython() -> InteractiveShell:
    """IPython's test shell (one per process, as in a kernel)."""
    return nbstream_shell()


@pytest.fixture
def shell(ipython: InteractiveShell) -> Iterator[InteractiveShell]:
    ip = ipython
    session.connect("memory")
    yield ip
    session.disconnect()


@pytest.fixture
def engine(shell: InteractiveShell) -> EngineService:
    return session.current_engine()
