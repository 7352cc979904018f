"""``--to ksqldb``: a queries file for ksqlDB's headless mode, its server properties, and the
connectors for Kafka Connect (or ``CREATE CONNECTOR`` on an interactive server).

ksqlDB's headless mode runs only ``SET``/``UNSET``, ``CREATE STREAM/TABLE`` with columns,
``CREATE TYPE``, ``CREATE … AS SELECT`` and ``INSERT INTO … SELECT``
(``StandaloneExecutor``), so:

- a stream or table declared without columns over a connector's topic gets its columns written
  out (those the connector gave it in the sandbox);
- connectors go to ``connectors.sql`` (``CREATE SOURCE CONNECTOR`` statements) and
  ``connectors.json`` (Kafka Connect's ``POST /connectors`` bodies): nbstream's ``datagen`` becomes
  kafka-connect-datagen's ``DatagenConnector`` (JSON values, string keys, as nbstream writes them)
  for the quickstarts both have; nbstream's own quickstarts (``stocks``, ``rides``) and its file,
  Parquet and DuckDB connectors exist nowhere else and are reported, statement by statement;
- ``INSERT … VALUES`` is reported (headless mode refuses it);
- ``ksql-server.properties`` sets ``ksql.queries.file``, ``ksql.service.id``, the job's properties
  and ``auto.offset.reset=earliest`` (nbstream's persistent queries read their inputs from the
  beginning; ksqlDB's default is the end) — each name once, a job property overriding a default.

:func:`ksql_text` gives a statement as ksqlDB reads it; the migrations writer uses it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot.tokens import TokenType

from nbstream.catalog.catalog import Source
from nbstream.export.sandbox import PlannedJob
from nbstream.export.selection import Selected
from nbstream.settings import STREAMS_PREFIX
from nbstream.sql import ast
from nbstream.sql.dialect import DIALECT

QUERIES_FILE = "queries.sql"
PROPERTIES_FILE = "ksql-server.properties"

#: kafka-connect-datagen's connector class, and the quickstarts it has that nbstream's datagen has too.
DATAGEN_CLASS = "io.confluent.kafka.connect.datagen.DatagenConnector"
DATAGEN_QUICKSTARTS = frozenset({"pageviews", "users", "orders"})

#: How nbstream's datagen writes records, in Kafka Connect's words.
DATAGEN_CONVERTERS = {
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
}

#: Headless mode's statements (ksqlDB's StandaloneExecutor).
HEADLESS = (ast.SetProperty, ast.UnsetProperty, ast.CreateSource, ast.CreateAsSelect, ast.InsertInto)

#: nbstream's persistent queries read from the beginning of their inputs; ksqlDB's from the end.
OFFSET_RESET = "earliest"


@dataclass
class KsqlExport:
    """What a ksqlDB target writes, and what it could not carry over (``notes``, per statement)."""

    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def ksqldb_files(planned: PlannedJob, service_id: str) -> KsqlExport:
    """The files of ``--to ksqldb`` (see the module docstring)."""
    out = KsqlExport()
    queries, connectors = [], []
    for selected in planned.selection.statements:
        statement = selected.statement
        if isinstance(statement, ast.CreateConnector):
            connector = connector_text(selected)
            if connector is None:
                out.notes.append(f"{selected.sourced.origin}: left out {selected.sourced.summary}: "
                                 f"{nbstream_only(statement)}")
            else:
                connectors.append((selected, connector))
        elif isinstance(statement, HEADLESS):
            queries.append(f"-- {selected.sourced.origin}\n{ksql_text(selected, planned.sources)};\n")
        else:
            out.notes.append(f"{selected.sourced.origin}: left out {selected.sourced.summary}: ksqlDB's headless "
                             "mode runs no INSERT … VALUES (use --to migrations, or feed the topic)")
    header = f"-- ksqlDB headless queries of {planned.selection.name!r} ({planned.selection.described}), by nbstream.\n"
    out.files[QUERIES_FILE] = header + "\n" + "\n".join(queries)
    out.files[PROPERTIES_FILE] = server_properties(planned, service_id)
    if connectors:
        out.files["connectors.sql"] = "\n".join(f"-- {s.sourced.origin}\n{text};\n" for s, text in connectors)
        configs = [connector_config(s.statement) for s, _ in connectors if isinstance(s.statement, ast.CreateConnector)]
        out.files["connectors.json"] = json.dumps(configs, indent=1) + "\n"
    out.files["README.md"] = readme(planned, HEADLESS_STEPS, out.notes)
    return out


#: How to deploy ``--to ksqldb``'s files.
HEADLESS_STEPS = """Run the connectors first, so that their topics exist: `connectors.json` holds Kafka Connect's
`POST /connectors` bodies (`curl -X POST -H 'Content-Type: application/json' -d @- http://connect:8083/connectors`
with one element at a time), or run `connectors.sql` on an interactive ksqlDB server. Then start every
headless server of the cluster with the same files:

```sh
ksql-server-start ksql-server.properties        # reads queries.sql; set bootstrap.servers first
# or: docker run -v $PWD:/job -e KSQL_BOOTSTRAP_SERVERS=broker:9092 -e KSQL_KSQL_SERVICE_ID=… \\
#       -e KSQL_KSQL_QUERIES_FILE=/job/queries.sql confluentinc/ksqldb-server:0.29.0
```

Headless mode has no REST API: check its health on the JMX port."""


def readme(planned: PlannedJob, steps: str, notes: list[str]) -> str:
    """A README for a ksqlDB target: how to deploy, and what the export left out."""
    left = [*planned.selection.notes, *notes]
    listed = "\n".join(f"- {note}" for note in left) or "- nothing"
    return (f"# {planned.selection.name} for ksqlDB\n\nExported by nbstream from {planned.selection.described}. "
            "Every statement is preceded by the notebook cell it came from. nbstream's persistent queries read "
            "their inputs from the beginning, so `auto.offset.reset` is `earliest` here too, unless the job's "
            "properties say otherwise.\n\n"
            f"## Deploy\n\n{steps}\n\n## Not exported\n\n{listed}\n")


def server_properties(planned: PlannedJob, service_id: str) -> str:
    """The server's properties: the defaults above, each overridden by the job's property of the
    same name (``auto.offset.reset`` is ``ksql.streams.auto.offset.reset``), then the job's others;
    every name once. ``ksql.queries.file`` is always the exported file."""
    values = {"bootstrap.servers": "localhost:9092", "ksql.service.id": service_id,
              "ksql.queries.file": QUERIES_FILE, "ksql.streams.auto.offset.reset": OFFSET_RESET}
    values |= {_property_name(k): str(v) for k, v in sorted(planned.properties.items())}
    values["ksql.queries.file"] = QUERIES_FILE
    lines = [f"# ksqlDB headless server for {planned.selection.name!r}, exported by nbstream.",
             "# Every server of the cluster must get the same queries file. Headless mode has no REST API.",
             *(f"{k}={v}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def _property_name(name: str) -> str:
    return name if name.startswith("ksql.") else STREAMS_PREFIX + name


# -- statements ---------------------------------------------------------------------------------------


def ksql_text(selected: Selected, sources: Mapping[str, Source]) -> str:
    """The statement as ksqlDB reads it: a CREATE without columns gets the columns nbstream gave it."""
    statement = selected.statement
    if not isinstance(statement, ast.CreateSource) or statement.columns:
        return selected.text
    source = sources.get(statement.name)
    if source is None:
        return selected.text
    text = selected.text
    at = next(t.start for t in DIALECT.tokenize(text) if t.token_type == TokenType.WITH)
    return f"{text[:at].rstrip()} ({column_list(source)}) {text[at:]}"


def column_list(source: Source) -> str:
    """The columns of ``source`` as a CREATE statement declares them."""
    def declared(column: Any) -> str:
        text = str(column)
        return text.removesuffix(" KEY") + " PRIMARY KEY" if source.is_table and column.role == "KEY" else text
    return ", ".join(declared(c) for c in source.schema.columns)


# -- connectors ---------------------------------------------------------------------------------------


def nbstream_only(statement: ast.CreateConnector) -> str | None:
    """Why ksqlDB and Kafka Connect cannot run the connector (None: they can)."""
    props = _lower(statement.properties)
    cls = str(props.get("connector.class", ""))
    if cls.lower() in ("datagen", "datagensource", DATAGEN_CLASS.lower()):
        quickstart = str(props.get("quickstart", "")).lower()
        if quickstart in DATAGEN_QUICKSTARTS:
            return None
        return (f"datagen's quickstart '{quickstart}' is nbstream's own (kafka-connect-datagen has "
                f"{', '.join(sorted(DATAGEN_QUICKSTARTS))} of nbstream's): feed topic '{props.get('kafka.topic')}' "
                "another way")
    return f"'{cls}' is a connector of nbstream's own (it runs in nbstream only)"


def connector_config(statement: ast.CreateConnector) -> dict[str, Any]:
    """Kafka Connect's ``POST /connectors`` body for a connector ksqlDB can run."""
    props = {k: str(v) for k, v in _lower(statement.properties).items()}
    props["connector.class"] = DATAGEN_CLASS
    props.pop("random.seed", None)  # nbstream's; kafka-connect-datagen takes no seed
    return {"name": statement.name, "config": {**DATAGEN_CONVERTERS, **props}}


def connector_text(selected: Selected) -> str | None:
    """The ``CREATE SOURCE CONNECTOR`` statement for ksqlDB (None: nbstream-only)."""
    statement = selected.statement
    assert isinstance(statement, ast.CreateConnector)
    if nbstream_only(statement) is not None:
        return None
    config = connector_config(statement)["config"]
    properties = ",\n  ".join(f"{_string(k)}={_string(v)}" for k, v in config.items())
    exists = " IF NOT EXISTS" if statement.if_not_exists else ""
    return f"CREATE {statement.kind} CONNECTOR{exists} {statement.name} WITH (\n  {properties})"


def _lower(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in properties.items()}


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
