"""``--to migrations``: a ksql-migrations project (``ksql-migrations.properties`` and
``migrations/V000001__<name>.sql``, …).

**One migration per notebook cell**: the statements of a cell ran together, so they are applied
together; a cell whose statements all left the job (dropped, left out) gives no file, and if the
dependency order interleaves cells, each run of consecutive statements of one cell is a file. A
file is named after what its statements create (``V000002__views_per_user.sql``), as the tool
turns ``_`` into spaces for the migration's description.

ksql-migrations scopes ``SET`` to one file, so each file starts with the properties in force at
that point of the job: ``auto.offset.reset`` = ``earliest`` (nbstream's persistent queries read
their inputs from the beginning), the job's properties (``--property``: a migrations project has
no server properties file, so this is where they apply), then what the job's ``SET``/``UNSET``
statements before the file changed. Statements are written as for ``--to ksqldb`` (columns written
out for streams declared without them; connectors ksqlDB can run as ``CREATE SOURCE CONNECTOR``,
nbstream's own reported); the tool also applies ``INSERT … VALUES``, so ``--include-inserts`` keeps
them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nbstream.export.sandbox import PlannedJob
from nbstream.export.selection import Selected
from nbstream.export.to_ksqldb import OFFSET_RESET, KsqlExport, connector_text, ksql_text, nbstream_only, readme
from nbstream.sql import ast
from nbstream.sql.params import sql_literal

PROPERTIES_FILE = "ksql-migrations.properties"
FOLDER = "migrations"
NAME_LENGTH = 60


@dataclass(frozen=True)
class _Group:
    """Consecutive statements of one cell: one migration."""

    cell: int | None
    statements: tuple[Selected, ...]


def migrations_files(planned: PlannedJob) -> KsqlExport:
    """The files of ``--to migrations`` (see the module docstring)."""
    out = KsqlExport()
    out.files[PROPERTIES_FILE] = (f"# ksql-migrations project of {planned.selection.name!r}, exported by nbstream.\n"
                                  "ksql.server.url=http://localhost:8088\n")
    properties = {"auto.offset.reset": OFFSET_RESET, **{k: str(v) for k, v in planned.properties.items()}}
    version = 0
    for group in _groups(planned.selection.statements):
        lines, names = [], []
        for selected in group.statements:
            text = _text(selected, planned, out)
            if text is not None:
                lines.append(f"-- {selected.sourced.origin}\n{text};\n")
                names += _created(selected.statement)
        if not lines:
            continue
        version += 1
        sets = [f"SET {sql_literal(k)}={sql_literal(v)};\n" for k, v in properties.items()]
        out.files[f"{FOLDER}/V{version:06d}__{_name(names, version)}.sql"] = "".join(sets) + "\n" + "\n".join(lines)
        properties = _after(properties, group.statements)
    out.files["README.md"] = readme(planned, MIGRATION_STEPS, out.notes)
    return out


#: How to apply ``--to migrations``' project.
MIGRATION_STEPS = """Set `ksql.server.url` in `ksql-migrations.properties`, then:

```sh
ksql-migrations --config-file ksql-migrations.properties initialize-metadata   # once
ksql-migrations --config-file ksql-migrations.properties apply --all
```

One migration per notebook cell (its statements ran together); each file starts with the `SET`
statements in force at that point of the notebook (the export's properties among them), since the
tool scopes `SET` to one file. A stream
declared over a connector's topic needs the topic to exist: if the connector has not created it yet
when its migration is applied, apply again."""


def _groups(statements: tuple[Selected, ...]) -> list[_Group]:
    groups: list[_Group] = []
    for selected in statements:
        cell = selected.sourced.origin.cell
        if groups and groups[-1].cell == cell:
            groups[-1] = _Group(cell, (*groups[-1].statements, selected))
        else:
            groups.append(_Group(cell, (selected,)))
    return groups


def _text(selected: Selected, planned: PlannedJob, out: KsqlExport) -> str | None:
    statement = selected.statement
    if isinstance(statement, ast.CreateConnector):
        text = connector_text(selected)
        if text is None:
            out.notes.append(f"{selected.sourced.origin}: left out {selected.sourced.summary}: "
                             f"{nbstream_only(statement)}")
        return text
    return ksql_text(selected, planned.sources)


def _created(statement: ast.Statement) -> list[str]:
    if isinstance(statement, ast.CreateSource | ast.CreateAsSelect | ast.CreateConnector):
        return [statement.name.lower()]
    if isinstance(statement, ast.InsertInto | ast.InsertValues):
        return [f"insert_into_{statement.target.lower()}"]
    return []


def _name(names: list[str], version: int) -> str:
    """The migration's name: what it creates, in the characters the tool's file pattern keeps."""
    name = re.sub(r"[^a-z0-9]+", "_", "_".join(names)).strip("_")
    if len(name) > NAME_LENGTH:
        name = name[:NAME_LENGTH].rstrip("_") + "_and_more"
    return name or f"migration_{version}"


def _after(properties: dict[str, str], statements: tuple[Selected, ...]) -> dict[str, str]:
    """The properties in force after ``statements`` ran."""
    now = dict(properties)
    for selected in statements:
        statement = selected.statement
        if isinstance(statement, ast.SetProperty):
            now[statement.name] = statement.value
        elif isinstance(statement, ast.UnsetProperty):
            now.pop(statement.name, None)
    return now
