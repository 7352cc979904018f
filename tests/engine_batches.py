"""A micro-batch in flight, for tests of what does not wait for one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from nbstream.runtime.service import EngineService


@contextmanager
def batch_in_flight(engine: EngineService, statement: str) -> Iterator[None]:
    """While the block runs, another thread holds ``engine``'s lock inside a transaction that ran
    ``statement`` and has not committed — what a background micro-batch does for its duration. The
    transaction is rolled back when the block ends."""
    started, may_end = threading.Event(), threading.Event()

    def batch() -> None:
        with engine.lock:
            engine.con.execute("BEGIN")
            engine.con.execute(statement)
            started.set()
            may_end.wait(10)
            engine.con.execute("ROLLBACK")

    worker = threading.Thread(target=batch)
    worker.start()
    started.wait(5)
    try:
        yield
    finally:
        may_end.set()
        worker.join()
