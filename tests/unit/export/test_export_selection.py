"""Which statements make the job: kind decides, DROP and TERMINATE are applied, tags override, the
job comes out in dependency order, and what cannot be exported is named by cell and line."""

from __future__ import annotations

from typing import Any

import pytest

from nbstream.errors import ExportError
from nbstream.export.notebook_reader import read_cells
from nbstream.export.origin import Contents
from nbstream.export.selection import Options, Selection, select

S = "CREATE STREAM s (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
T = "CREATE TABLE t AS SELECT id, COUNT(*) AS c FROM s GROUP BY id;"


def cells(*sources: str | tuple[str, tuple[str, ...]]) -> Contents:
    """A notebook of %%stream cells (a source, or a source with its tags)."""
    def cell(item: str | tuple[str, tuple[str, ...]]) -> dict[str, Any]:
        source, tags = (item, ()) if isinstance(item, str) else item
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": "%%stream\n" + source, "outputs": []}
    return read_cells([cell(s) for s in sources], name="nb", described="nb.ipynb")


def texts(selection: Selection) -> list[str]:
    return [s.text for s in selection.statements]


def test_kind_decides_what_a_job_keeps() -> None:
    selection = select(cells(
        "SET 'auto.offset.reset'='earliest';", S, "SELECT * FROM s EMIT CHANGES;", "DESCRIBE s;",
        "INSERT INTO s (id, n) VALUES ('a', 1);", T, "SELECT * FROM t WHERE id = 'a';", "SHOW QUERIES;",
        "CREATE STREAM big AS SELECT * FROM s WHERE n > 10;", "INSERT INTO big SELECT * FROM s WHERE n < -10;"))
    assert [t.split(" (")[0].split(" AS")[0] for t in texts(selection)] == [
        "SET 'auto.offset.reset'='earliest'", "CREATE STREAM s", "CREATE TABLE t", "CREATE STREAM big",
        "INSERT INTO big SELECT * FROM s WHERE n < -10"]
    assert [n.split(" (")[-1] for n in selection.notes] == [
        "a push query)", "not part of a job)", "sample data: --include-inserts keeps it)", "a pull query)",
        "not part of a job)"]
    assert selection.notes[0].startswith("cell 3, line 2: left out SELECT * FROM s EMIT CHANGES")


def test_include_inserts_keeps_sample_data_and_a_job_tag_keeps_a_cells() -> None:
    insert = "INSERT INTO s (id, n) VALUES ('a', 1);"
    assert insert[:-1] in texts(select(cells(S, T, insert), Options(include_inserts=True)))
    assert insert[:-1] in texts(select(cells(S, T, (insert, ("nbstream-job",)))))


def test_a_skip_tag_leaves_a_cell_out() -> None:
    selection = select(cells(S, (T, ("nbstream-skip",)), "CREATE STREAM big AS SELECT * FROM s WHERE n > 10;"))
    assert not any(t.startswith("CREATE TABLE t") for t in texts(selection))
    assert "tagged nbstream-skip" in selection.notes[0]


def test_drop_and_terminate_are_applied_the_job_holds_the_final_topology() -> None:
    selection = select(cells(
        S, T, "CREATE STREAM big AS SELECT * FROM s WHERE n > 10;", "INSERT INTO big SELECT * FROM s WHERE n < -10;",
        "TERMINATE INSERTQUERY_2;", "TERMINATE CTAS_T_0; DROP TABLE t;",
        "CREATE TABLE t AS SELECT id, SUM(n) AS total FROM s GROUP BY id;"))
    assert [t.split(" AS")[0] for t in texts(selection)][1:] == ["CREATE STREAM big", "CREATE TABLE t"]
    assert "SUM(n)" in texts(selection)[2]


def test_a_terminated_query_whose_table_stays_cannot_be_exported() -> None:
    with pytest.raises(ExportError) as raised:
        select(cells(S, T, "TERMINATE CTAS_T_0;"))
    assert raised.value.problems == ("cell 3, line 2: TERMINATE CTAS_T_0 leaves T (cell 2, line 2) without the query "
                                     "that fills it, which a job cannot hold: drop it too, or tag the cell "
                                     "nbstream-skip",)


def test_a_changed_create_replaces_the_earlier_one_and_the_job_stays_in_dependency_order() -> None:
    selection = select(cells(
        S, T, "CREATE STREAM big AS SELECT * FROM s WHERE n > 10;",
        "CREATE OR REPLACE STREAM s (id VARCHAR KEY, n INT, m INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');",
        S.replace("CREATE STREAM s", "CREATE STREAM IF NOT EXISTS s")))
    assert [str(s.sourced.origin) for s in selection.statements] == ["cell 4, line 2", "cell 2, line 2",
                                                                     "cell 3, line 2"]


def test_an_identical_create_run_twice_is_kept_once() -> None:
    assert len(select(cells(S, T, S, T)).statements) == 2


def test_a_parameter_needs_a_value_which_is_written_into_the_statement() -> None:
    query = "CREATE STREAM big AS SELECT * FROM s WHERE n > :limit AND id <> :who;"
    with pytest.raises(ExportError) as raised:
        select(cells(S, query))
    assert raised.value.problems == ("cell 2, line 2: CREATE STREAM big AS SELECT * FROM s WHERE n > :limit AND i… "
                                     "uses the notebook variables :limit, :who; a job has none: give the values "
                                     "(--param limit=VALUE --param who=VALUE)",)
    selection = select(cells(S, query), Options(params={"limit": 10, "who": "o'neil"}))
    assert texts(selection)[1] == "CREATE STREAM big AS SELECT * FROM s WHERE n > 10 AND id <> 'o''neil'"


def test_a_job_without_a_persistent_query_is_refused() -> None:
    with pytest.raises(ExportError, match="no persistent query or connector is left to run"):
        select(cells(S, "SELECT * FROM s EMIT CHANGES;"))


def test_terminate_finds_the_query_by_the_id_the_engine_gave_it() -> None:
    selection = select(cells(S, T, T.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"),
                             "CREATE STREAM big AS SELECT * FROM s WHERE n > 10;",
                             "INSERT INTO big SELECT * FROM s WHERE n < -10;", "TERMINATE INSERTQUERY_2;"))
    assert not any(t.startswith("INSERT") for t in texts(selection))


def test_custom_types_stay_in_the_job_before_what_uses_them() -> None:
    u = "CREATE STREAM u (id VARCHAR KEY, a A) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON', PARTITIONS=1);"
    v = "CREATE STREAM v AS SELECT id, CAST(a AS A) AS b FROM u;"
    selection = select(cells("CREATE TYPE A AS STRUCT<x INT>; CREATE TYPE GONE AS INT;", u, "DROP TYPE GONE;",
                             "SHOW TYPES;", v))
    assert texts(selection) == ["CREATE TYPE A AS STRUCT<x INT>", "CREATE TYPE GONE AS INT", u[:-1], "DROP TYPE GONE",
                                v[:-1]]
