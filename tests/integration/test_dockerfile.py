"""The Dockerfile of an exported job, as far as this machine can run it (Docker cannot run here): its
``pip install`` in a fresh virtual environment — nbstream's wheel built from this tree, the
dependencies from the package index — then its ``CMD`` in a copy of the ``COPY``-ed files, checked by
its ``HEALTHCHECK`` command and a pull query, and stopped by SIGTERM as ``docker stop`` does."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

from job_harness import NOTEBOOKS, REPO, RunningJob, eventually  # type: ignore[import-not-found]

from nbstream.cli import main as cli


def instructions(dockerfile: Path) -> dict[str, list[str]]:
    """Each instruction's arguments, by instruction (continuation lines joined; comments dropped)."""
    found: dict[str, list[str]] = {}
    for line in dockerfile.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.setdefault(keyword, []).append(rest)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_dockerfiles_pip_install_and_cmd_run_the_job_in_a_fresh_environment(tmp_path: Path) -> None:
    job = tmp_path / "job"
    assert cli(["export", str(NOTEBOOKS / "quickstart.ipynb"), "-o", str(job)]) == 0
    docker = instructions(job / "Dockerfile")
    (install,) = [r for r in docker["RUN"] if r.startswith("pip install")]
    assert "nbstream==" in install

    source = tmp_path / "source"  # a copy, so that building leaves nothing in the tree
    shutil.copytree(REPO / "nbstream", source / "nbstream", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
                   check=True, timeout=300)
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    bin_ = fresh / "bin"
    # The Dockerfile's command, with nbstream's wheel from this tree (it is not on PyPI).
    subprocess.run([str(bin_ / "pip"), *shlex.split(install)[1:], "--find-links", str(wheels)],
                   check=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})

    container = tmp_path / "container"
    workdir = container / docker["WORKDIR"][0].strip("/")
    *copied, _ = docker["COPY"][0].split()
    workdir.mkdir(parents=True)
    for name in copied:
        shutil.copy(job / name, workdir / name)
    state = docker["VOLUME"][0]
    port = free_port()
    command = [a.replace(state, str(container / state.strip("/"))).replace("0.0.0.0:8088", f"127.0.0.1:{port}")
               for a in json.loads(docker["CMD"][0])]
    assert command[:3] == ["nbstream", "run", "."]
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})
    running = RunningJob(process, log, port)
    try:
        healthcheck = json.loads(docker["HEALTHCHECK"][0].split(" CMD ", 1)[1])
        assert healthcheck[0] == "python"
        probe = [str(bin_ / "python"), *(a.replace(":8088/", f":{port}/") for a in healthcheck[1:])]
        eventually(lambda: subprocess.run(probe, capture_output=True, timeout=10).returncode == 0, 60, 0.5)
        rows = eventually(lambda: running.pull("SELECT * FROM VIEWS_PER_USER;")[1], 30)
        assert len(rows[0]) == 3
        started = time.monotonic()
        assert running.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (container / state.strip("/") / "nbstream.duckdb").exists(), "the state is in the volume"
