"""EXPLAIN shows a query's topology: every input, the joins, filter, grouping, window, HAVING,
the columns and where the rows go."""

from __future__ import annotations

from nbstream import Engine

SOURCES = """
CREATE STREAM clicks (userid VARCHAR KEY, page VARCHAR, ms INT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
CREATE TABLE users (userid VARCHAR PRIMARY KEY, region VARCHAR) WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON');
"""


def _steps(eng: Engine, statement: str) -> list[tuple[str, str]]:
    [result] = eng.execute(statement)
    assert result.columns == ("step", "detail")
    return [tuple(row) for row in result.rows]  # type: ignore[misc]


def test_explain_of_a_filter_shows_source_filter_columns_and_output() -> None:
    eng = Engine()
    eng.execute(SOURCES)
    kinds = [kind for kind, _ in _steps(eng, "EXPLAIN SELECT page FROM clicks WHERE ms > 10 EMIT CHANGES;")]
    assert kinds == ["statement", "source", "filter", "column", "output"]


def test_explain_of_a_windowed_aggregation_shows_its_group_window_aggregates_and_having() -> None:
    eng = Engine()
    eng.execute(SOURCES)
    steps = dict(_steps(eng, "EXPLAIN SELECT page, COUNT(*) AS n, SUM(ms) AS total FROM clicks "
                             "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, GRACE PERIOD 1 SECOND) "
                             "GROUP BY page HAVING COUNT(*) > 2 EMIT FINAL;"))
    assert steps["group by"] == '"PAGE"'
    assert steps["window"] == "HOPPING size 10000 ms, advance 5000 ms, grace 1000 ms, " \
                              "EMIT FINAL: once per window when it closes"
    assert steps["aggregate"] == 'COUNT(*), SUM("MS")'
    assert "having" in steps


def test_explain_of_a_running_join_aggregation_shows_both_inputs_and_the_lookup() -> None:
    eng = Engine()
    eng.execute(SOURCES + "CREATE TABLE per_region AS SELECT region, COUNT(*) AS n FROM clicks c "
                          "LEFT JOIN users u ON c.userid = u.userid GROUP BY region;")
    steps = _steps(eng, "EXPLAIN CTAS_PER_REGION_0;")
    assert [d for k, d in steps if k == "source"] == ["CLICKS AS C (topic clicks, JSON)",
                                                       "USERS AS U (topic users, JSON)"]
    assert ("join", "LEFT lookup of table U by the join key") in steps
    assert steps[-1] == ("sink", "PER_REGION (topic PER_REGION, JSON)")


def test_explain_of_a_chain_of_tables_after_a_foreign_key_join_shows_each_join() -> None:
    eng = Engine()
    eng.execute("CREATE TABLE members (id INT PRIMARY KEY, region_id INT) WITH (KAFKA_TOPIC='members', "
                "VALUE_FORMAT='JSON'); CREATE TABLE regions (id INT PRIMARY KEY, rname VARCHAR) WITH "
                "(KAFKA_TOPIC='regions', VALUE_FORMAT='JSON'); CREATE TABLE addrs (id INT PRIMARY KEY, "
                "city VARCHAR) WITH (KAFKA_TOPIC='addrs', VALUE_FORMAT='JSON');")
    steps = _steps(eng, "EXPLAIN SELECT ROWKEY, rname, city FROM members m LEFT JOIN regions r ON m.region_id = r.id "
                        "FULL JOIN addrs a ON m.id = a.id EMIT CHANGES;")
    assert [d for k, d in steps if k == "join"] == [
        "LEFT table-table join of M and R on the left table's foreign key",
        "FULL table-table join of the result and A on the left table's key"]


def test_explain_of_a_stream_stream_join_shows_its_window() -> None:
    eng = Engine()
    eng.execute(SOURCES + "CREATE STREAM views (userid VARCHAR KEY, page VARCHAR) "
                          "WITH (KAFKA_TOPIC='views', VALUE_FORMAT='JSON');")
    steps = dict(_steps(eng, "EXPLAIN SELECT c.userid, c.page FROM clicks c JOIN views v WITHIN 1 MINUTE "
                             "ON c.userid = v.userid EMIT CHANGES;"))
    assert steps["join"] == ("INNER stream-stream join of C and V on their key, within 60000 ms before and "
                             "60000 ms after")
