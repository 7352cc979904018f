"""A real IPython shell with ``%load_ext nbstream`` done, and a fresh in-memory engine per test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import CapturedIO, capture_output

from nbstream.notebook import session
from nbstream.notebook.background import NotebookEngine

T = TypeVar("T")


@pytest.fixture(scope="session")
def ipython() -> InteractiveShell:
    """IPython's test shell (one per process, as in a kernel)."""
    ip = get_ipython() or InteractiveShell.instance()  # None once started elsewhere
    ip.run_line_magic("load_ext", "nbstream")
    return ip


@pytest.fixture
def shell(ipython: InteractiveShell) -> Iterator[InteractiveShell]:
    ip = ipython
    session.connect("memory")
    yield ip
    session.disconnect()


@pytest.fixture
def engine(shell: InteractiveShell) -> NotebookEngine:
    return session.current_engine()


def run(shell: InteractiveShell, cell: str) -> tuple[ExecutionResult, CapturedIO]:
    """Run ``cell`` as the user would; its result and everything it printed or displayed."""
    with capture_output() as captured:
        result = shell.run_cell(cell)
    return result, captured


def eventually(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """``probe()``'s first truthy value, polled until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"no result within {timeout} s")


def displayed_text(captured: CapturedIO) -> str:
    """What the cell printed plus the text form of what it displayed."""
    shown: list[Any] = [o.data.get("text/plain", "") for o in captured.outputs]
    return captured.stdout + "\n".join(shown)
