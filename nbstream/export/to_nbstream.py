"""``--to nbstream``: the files of a job folder (:mod:`nbstream.export.job` describes the format).

:func:`job_files` turns a planned job into ``queries.sql``, ``nbstream-job.toml``, ``plans.json``,
a ``Dockerfile`` (a slim Python image installing this nbstream version, a non-root user, the state
in a volume, ``HEALTHCHECK`` on ``/chc/ready``, ``CMD nbstream run .``) and a short ``README.md``.
"""

from __future__ import annotations

from nbstream.export.job import JOB_FILE, PLANS_FILE, QUERIES_FILE, UDFS_FILE, JobConfig, config_toml, plans_json
from nbstream.export.sandbox import PlannedJob
from nbstream.export.selection import Selected

#: Where the container keeps its state (a volume), and the port its REST API listens on.
CONTAINER_STATE = "/var/lib/nbstream"
CONTAINER_PORT = 8088
BASE_IMAGE = "python:3.11-slim"


def job_files(planned: PlannedJob, config: JobConfig, udfs: str | None = None) -> dict[str, str]:
    """The job folder's files, by name; ``udfs``: the text of its ``udfs.py``, if it has one."""
    files = {
        QUERIES_FILE: queries_sql(planned, config),
        JOB_FILE: config_toml(config),
        PLANS_FILE: plans_json(planned),
        "Dockerfile": dockerfile(config, with_udfs=udfs is not None),
        "README.md": readme(planned, config),
    }
    if udfs is not None:
        files[UDFS_FILE] = udfs
    return files


def queries_sql(planned: PlannedJob, config: JobConfig) -> str:
    header = [f"-- The nbstream job {config.name!r}, exported from {config.exported_from or 'a running engine'} "
              f"by nbstream {config.nbstream_version}.",
              "-- `nbstream run .` runs these statements; each comes from the notebook cell named above it.", ""]
    return "\n".join(header + [_statement(s) for s in planned.selection.statements])


def _statement(selected: Selected) -> str:
    return f"-- {selected.sourced.origin}\n{selected.text};\n"


def dockerfile(config: JobConfig, with_udfs: bool = False) -> str:
    return f"""# The nbstream job {config.name!r} in a container (see README.md).
FROM {BASE_IMAGE}
RUN pip install --no-cache-dir nbstream=={config.nbstream_version}
RUN useradd --create-home --uid 10001 nbstream && mkdir -p {CONTAINER_STATE} && chown nbstream {CONTAINER_STATE}
WORKDIR /job
COPY {QUERIES_FILE} {JOB_FILE} {PLANS_FILE}{f" {UDFS_FILE}" if with_udfs else ""} /job/
USER nbstream
VOLUME {CONTAINER_STATE}
EXPOSE {CONTAINER_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/chc/ready', timeout=2)"]
# The container's network is the boundary: publish the port only where the API may be read, or add
# --auth /run/secrets/users (a users file: nbstream serve --hash-password NAME) instead of --insecure.
CMD ["nbstream", "run", ".", "--state", "{CONTAINER_STATE}", "--listen", "0.0.0.0:{CONTAINER_PORT}", "--insecure"]
"""  # noqa: E501 (the HEALTHCHECK line is one instruction)


def readme(planned: PlannedJob, config: JobConfig) -> str:
    tables = [q.sink for q in planned.queries]
    example = tables[0] if tables else "SOME_TABLE"
    external = ", ".join(f"`{t}`" for t in config.external_inputs)
    feed = (f"\nThe job reads {external} from outside: on the embedded log, write into them through the API "
            "(`/inserts-stream`, or `INSERT … VALUES` on `/ksql`); nothing else may be written.\n"
            if config.external_inputs else "")
    return f"""# {config.name}

An nbstream job exported from `{config.exported_from or 'a running engine'}` by nbstream {config.nbstream_version}:
`queries.sql` (the statements, each with the notebook cell it came from), `nbstream-job.toml` (its
configuration), `plans.json` (the plan of every persistent query, checked when it starts).

## Run it

```sh
pip install nbstream=={config.nbstream_version}
nbstream run . --state ./state          # Ctrl-C or SIGTERM stops it cleanly; it resumes where it stopped
```

Its REST API (ksqlDB's, read-only: pull and push queries, SHOW, DESCRIBE, EXPLAIN, `/metrics`)
listens on `{config.listen}`:

```sh
curl -s http://{config.listen}/query-stream -d '{{"sql": "SELECT * FROM {example};"}}'
curl -s http://{config.listen}/ksql -d '{{"ksql": "SHOW QUERIES;"}}'
curl -s http://{config.listen}/metrics
```
{feed}
After editing `queries.sql`, `nbstream run . --upgrade` rebuilds the changed queries from their inputs.

## In a container

```sh
docker build -t {config.name.lower()} .
docker run -p {CONTAINER_PORT}:{CONTAINER_PORT} -v {config.name.lower()}-state:{CONTAINER_STATE} {config.name.lower()}
```

(Docker builds could not run where this exporter is tested; the Dockerfile's `pip install` and `CMD` are
exercised in a fresh virtual environment instead.)
"""
