"""The job folder (``nbstream export --to nbstream``): what ``nbstream run`` reads.

``queries.sql``
    The job's statements in dependency order, each preceded by a comment naming the notebook cell
    and line it came from. Any ksqlDB statement nbstream runs may be written here by hand too.
``nbstream-job.toml``
    ``[job]`` name, the nbstream version that exported it, the notebook; ``[properties]`` ksqlDB
    configuration for every statement; ``[log]`` the backend (``embedded``, or ``kafka`` with
    ``bootstrap`` and ``[log.kafka_options]`` — secrets only as ``env:NAME``/``file:PATH``
    references, never values); ``[http] listen`` (``none``: no REST API); ``[inputs] external``,
    the topics the job expects to be fed from outside. TOML because people edit it, it has
    comments, and Python reads it without a dependency (``tomllib``).
``plans.json``
    ``{"nbstream_version", "plan_version", "properties", "statements": [...], "queries": [{"id",
    "sink", "statement", "origin", "plan"}]}``: every persistent query's plan
    (:mod:`nbstream.plan.serde`), and the statements and properties it was planned from.
    ``nbstream run`` plans those statements again and compares.
``udfs.py`` (when the notebook defines Python UDFs its queries call)
    The notebook's import statements and the definitions of its ``@nbstream.udf``/``udtf``
    functions, as written in its cells (source code, never pickled objects): ``nbstream run``
    imports it before it plans ``queries.sql`` (:func:`import_udfs`).
``Dockerfile``, ``README.md``
    How to build, run and query it (:mod:`nbstream.export.to_nbstream` writes them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from nbstream.errors import ExportError
from nbstream.export.sandbox import PlannedJob
from nbstream.log.kafka_options import is_reference, literal_secrets
from nbstream.plan.logical import PLAN_VERSION
from nbstream.sql import ast

JOB_FILE = "nbstream-job.toml"
QUERIES_FILE = "queries.sql"
PLANS_FILE = "plans.json"
UDFS_FILE = "udfs.py"
DEFAULT_LISTEN = "127.0.0.1:8088"


def nbstream_version() -> str:
    """The version of nbstream that is running."""
    try:
        return version("nbstream")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


@dataclass(frozen=True)
class LogConfig:
    """Where the job keeps its topics: the embedded log (in the state directory) or a Kafka cluster."""

    backend: str = "embedded"  # embedded | kafka
    bootstrap: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # aiokafka options; secrets as references


@dataclass(frozen=True)
class JobConfig:
    """``nbstream-job.toml``."""

    name: str
    nbstream_version: str
    exported_from: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)
    log: LogConfig = field(default_factory=LogConfig)
    listen: str = DEFAULT_LISTEN
    external_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_no_secrets(self.log.options)


def check_no_secrets(options: Mapping[str, Any]) -> None:
    """Refuse Kafka options holding a secret's value instead of an ``env:``/``file:`` reference."""
    literal = literal_secrets(options)
    if literal:
        raise ExportError([f"Kafka option {name} must be a reference, env:NAME or file:PATH: a job's files never "
                           "hold a secret" for name in literal])


#: Property names that hold secrets (connector and ksqlDB properties): their values must be references.
_SECRET_NAME = re.compile(r"password|secret|token|credential|jaas|api[._]?key|private[._]?key", re.IGNORECASE)


def secret_properties(properties: Mapping[str, Any]) -> list[str]:
    """The properties whose name says they hold a secret and whose value is not an ``env:``/``file:``
    reference."""
    return sorted(k for k, v in properties.items() if _SECRET_NAME.search(str(k))
                  and not (isinstance(v, str) and is_reference(v)))


def check_no_secret_statements(statements: Iterable[ast.Statement]) -> None:
    """Refuse a connector statement holding a secret: the job's queries.sql would hold it."""
    problems = [f"connector {s.name}: property {name} holds a secret; give it as 'env:NAME' or 'file:PATH'"
                for s in statements if isinstance(s, ast.CreateConnector) for name in secret_properties(s.properties)]
    if problems:
        raise ExportError(problems)


@dataclass(frozen=True)
class Job:
    """A job folder, read: its config, its statements' text and its stored plans."""

    folder: Path
    config: JobConfig
    queries_sql: str
    plans: Mapping[str, Any]


# -- nbstream-job.toml -------------------------------------------------------------------------------


def config_toml(config: JobConfig) -> str:
    """``config`` as the text of ``nbstream-job.toml``."""
    lines = ["# An nbstream job: `nbstream run .` runs queries.sql (see README.md).", "",
             "[job]", f"name = {_toml(config.name)}", f"nbstream_version = {_toml(config.nbstream_version)}",
             f"exported_from = {_toml(config.exported_from)}", "",
             "# ksqlDB configuration for every statement (SET statements in queries.sql add to it).",
             "[properties]", *(f"{_key(k)} = {_toml(v)}" for k, v in sorted(config.properties.items())), "",
             "# Where topics live: \"embedded\" (the state directory) or \"kafka\" (with bootstrap).",
             "[log]", f"backend = {_toml(config.log.backend)}"]
    if config.log.bootstrap is not None:
        lines.append(f"bootstrap = {_toml(config.log.bootstrap)}")
    if config.log.options:
        lines += ["", "# aiokafka client options; secrets only as env:NAME or file:PATH references.",
                  "[log.kafka_options]", *(f"{_key(k)} = {_toml(v)}" for k, v in sorted(config.log.options.items()))]
    lines += ["", "# The REST API (ksqlDB's, read-only): HOST:PORT, or \"none\".", "[http]",
              f"listen = {_toml(config.listen)}", "",
              "# Topics the job reads that something outside it feeds (on the embedded log: through the",
              "# REST API's /inserts-stream or INSERT … VALUES, allowed into these topics only).",
              "[inputs]", f"external = [{', '.join(_toml(t) for t in config.external_inputs)}]", ""]
    return "\n".join(lines)


def read_config(text: str, where: str = JOB_FILE) -> JobConfig:
    """The config in ``nbstream-job.toml``'s text; an :class:`ExportError` naming what is wrong."""
    try:
        data = tomllib.loads(text)
        job, log = data["job"], data.get("log", {})
        options = dict(log.get("kafka_options", {}))
        return JobConfig(
            name=str(job["name"]), nbstream_version=str(job.get("nbstream_version", "")),
            exported_from=str(job.get("exported_from", "")), properties=dict(data.get("properties", {})),
            log=LogConfig(str(log.get("backend", "embedded")), log.get("bootstrap"), options),
            listen=str(data.get("http", {}).get("listen", DEFAULT_LISTEN)),
            external_inputs=tuple(str(t) for t in data.get("inputs", {}).get("external", [])),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ExportError([f"{where}: not a valid job file ({type(error).__name__}: {error})"]) from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml(value: Any) -> str:
    """A TOML value (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


# -- plans.json ---------------------------------------------------------------------------------------


def plans_json(planned: PlannedJob) -> str:
    """``plans.json`` (and a state's ``job-plans.json``): the plans of ``planned``'s persistent
    queries, with every statement of the job and its properties, so that another nbstream can plan
    the very same job again and compare."""
    queries = [{"id": q.id, "sink": q.sink, "statement": q.statement.text, "origin": str(q.statement.sourced.origin),
                "plan": q.plan["plan"]} for q in planned.queries]
    return json.dumps({"nbstream_version": nbstream_version(), "plan_version": PLAN_VERSION,
                       "properties": dict(planned.properties),
                       "statements": [s.text for s in planned.selection.statements], "queries": queries},
                      indent=1, sort_keys=True) + "\n"


def stored_plans(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The plan documents of a ``plans.json`` by their statement's text (whitespace normalized)."""
    return {normal(q["statement"]): {"version": document.get("plan_version"), "plan": q["plan"], "id": q["id"]}
            for q in document.get("queries", [])}


def normal(sql: str) -> str:
    return " ".join(sql.split())


# -- reading a folder -----------------------------------------------------------------------------------


def load_job(folder: Path) -> Job:
    """The job in ``folder``; an :class:`ExportError` naming a missing or invalid file."""
    try:
        config = read_config((folder / JOB_FILE).read_text(encoding="utf-8"), str(folder / JOB_FILE))
        queries = (folder / QUERIES_FILE).read_text(encoding="utf-8")
        plans_path = folder / PLANS_FILE
        plans = json.loads(plans_path.read_text(encoding="utf-8")) if plans_path.exists() else {}
    except OSError as error:
        raise ExportError([f"{folder} is not an nbstream job folder: {error}"]) from None
    except json.JSONDecodeError as error:
        raise ExportError([f"{folder / PLANS_FILE}: not JSON ({error})"]) from None
    return Job(folder, config, queries, plans)


# -- udfs.py ---------------------------------------------------------------------------------------------


def udfs_module(imports: Iterable[str], definitions: Iterable[str], described: str) -> str:
    """The text of ``udfs.py``: the notebook's import statements, then its UDFs' definitions."""
    head = [f'"""The Python UDFs of {described}, as its cells define them: nbstream run imports this module',
            'before it plans queries.sql (the functions register themselves with their SQL types)."""', ""]
    return "\n".join([*head, *imports, "", *("\n" + d for d in definitions)]).rstrip() + "\n"


def import_udfs(path: Path) -> None:
    """Run the UDF module ``path`` (its functions register themselves); an :class:`ExportError`
    naming the file if it fails."""
    name = "nbstream_job_udfs_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError([f"{path}: not a Python module"])
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code: any failure is reported as the module's
        raise ExportError([f"{path}: the UDF module fails when imported: {type(error).__name__}: {error}"]) from None
