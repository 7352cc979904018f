"""Running notebook cells in IPython's test shell, for the unit and the integration tests alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import CapturedIO, capture_output

T = TypeVar("T")


def nbstream_shell() -> InteractiveShell:
    """IPython's test shell (one per process, as in a kernel) with ``%load_ext nbstream`` done."""
    ip = get_ipython() or InteractiveShell.instance()  # get_ipython() is None once started elsewhere
    ip.run_line_magic("load_ext", "nbstream")
    return ip


def run(shell: InteractiveShell, cell: str) -> tuple[ExecutionResult, CapturedIO]:
    """Run ``cell`` as the user would; its result and everything it printed or displayed."""
    with capture_output() as captured:
        result = shell.run_cell(cell)
    return result, captured


def displayed_text(captured: CapturedIO) -> str:
    """What the cell printed plus the text form of what it displayed."""
    shown: list[Any] = [o.data.get("text/plain", "") for o in captured.outputs]
    return captured.stdout + "\n".join(shown)


def eventually(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """``probe()``'s first truthy value, polled until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"no result within {timeout} s")
