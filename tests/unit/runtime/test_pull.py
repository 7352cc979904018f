"""Pull queries on materialized tables: point lookups, windowed tables, retention, plan caching."""

from __future__ import annotations

import pandas as pd
import pytest

from nbstream import Engine
from nbstream.analysis.pull_rules import PullQueryError
from nbstream.errors import SqlTypeError
from nbstream.runtime import pull

USERS = """
CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR, level INT)
  WITH (KAFKA_TOPIC='users', VALUE_FORMAT='JSON', PARTITIONS=1);
"""
CLICKS = """
CREATE STREAM clicks (userid VARCHAR KEY, amount INT)
  WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1);
"""
PER_SECOND = CLICKS + """
CREATE TABLE per_second AS SELECT userid, COUNT(*) AS n, SUM(amount) AS total FROM clicks
  WINDOW TUMBLING (SIZE 1 SECOND{options}) GROUP BY userid;
"""


@pytest.fixture
def users() -> Engine:
    eng = Engine()
    eng.execute(USERS)
    for key, name, level in [("u1", "ann", 1), ("u2", "bob", 2), ("o'neil", "pat", 3)]:
        eng.produce("users", {"name": name, "level": level}, key=key, timestamp=1)
    eng.run_until_idle()
    return eng


def clicks(eng: Engine, events: list[tuple[str, int, int]]) -> None:
    """Produce ``(user, amount, time)`` clicks and run the engine until idle."""
    for user, amount, ts in events:
        eng.produce("clicks", {"amount": amount}, key=user, timestamp=ts)
    eng.run_until_idle()


def test_a_point_lookup_returns_the_latest_row_of_the_key(users: Engine) -> None:
    users.produce("users", {"name": "ann", "level": 5}, key="u1", timestamp=2)
    users.run_until_idle()
    rows = users.query("SELECT * FROM users WHERE userid = 'u1'")
    assert rows.to_dict("records") == [{"USERID": "u1", "NAME": "ann", "LEVEL": 5}]


def test_a_tombstone_removes_the_key(users: Engine) -> None:
    users.produce("users", None, key="u2", timestamp=2)
    users.run_until_idle()
    assert users.query("SELECT * FROM users WHERE userid = 'u2'").empty
    assert sorted(users.query("SELECT userid FROM users")["USERID"]) == ["o'neil", "u1"]


def test_a_lookup_repeated_with_other_parameter_values_is_planned_once(users: Engine) -> None:
    sql = "SELECT name, level FROM users WHERE userid = :id"
    names = [users.query(sql, {"id": key})["NAME"].tolist() for key in ("u1", "u2", "o'neil", "nobody")]
    assert names == [["ann"], ["bob"], ["pat"], []]
    assert len(pull._caches[users]) == 1


def test_integer_parameters_are_bound_including_negative_ones(users: Engine) -> None:
    assert users.query("SELECT userid FROM users WHERE level = :l", {"l": 2})["USERID"].tolist() == ["u2"]
    assert users.query("SELECT userid FROM users WHERE level = :l", {"l": 3})["USERID"].tolist() == ["o'neil"]
    assert users.query("SELECT userid FROM users WHERE -level = :l", {"l": -1})["USERID"].tolist() == ["u1"]
    assert users.query("SELECT userid FROM users WHERE level = -:l", {"l": -1})["USERID"].tolist() == ["u1"]


def test_a_re_created_table_is_planned_anew(users: Engine) -> None:
    sql = "SELECT * FROM users WHERE userid = 'u1'"
    assert list(users.query(sql).columns) == ["USERID", "NAME", "LEVEL"]
    users.execute("DROP TABLE users; CREATE TABLE users (userid VARCHAR PRIMARY KEY, age INT) "
                  "WITH (KAFKA_TOPIC='users2', VALUE_FORMAT='JSON', PARTITIONS=1);")
    users.produce("users2", {"age": 40}, key="u1", timestamp=1)
    users.run_until_idle()
    assert users.query(sql).to_dict("records") == [{"USERID": "u1", "AGE": 40}]


def test_the_state_of_a_table_has_its_key_as_primary_key(users: Engine) -> None:
    [(columns,)] = users.con.execute("SELECT constraint_column_names FROM duckdb_constraints() "
                                     "WHERE table_name = 'state$USERS' AND constraint_type = 'PRIMARY KEY'").fetchall()
    assert columns == ["USERID"]


def test_a_windowed_table_is_materialized_per_key_and_window() -> None:
    eng = Engine()
    eng.execute(PER_SECOND.format(options=""))
    clicks(eng, [("a", 1, 100), ("a", 2, 900), ("b", 5, 1500), ("a", 3, 1999), ("a", 4, 2500)])
    rows = eng.query("SELECT * FROM per_second WHERE userid = 'a'")
    assert list(rows.columns) == ["USERID", "WINDOWSTART", "WINDOWEND", "N", "TOTAL"]
    assert rows.to_dict("records") == [
        {"USERID": "a", "WINDOWSTART": 0, "WINDOWEND": 1000, "N": 2, "TOTAL": 3},
        {"USERID": "a", "WINDOWSTART": 1000, "WINDOWEND": 2000, "N": 1, "TOTAL": 3},
        {"USERID": "a", "WINDOWSTART": 2000, "WINDOWEND": 3000, "N": 1, "TOTAL": 4},
    ]


def test_window_bounds_restrict_a_pull_query_on_a_windowed_table() -> None:
    eng = Engine()
    eng.execute(PER_SECOND.format(options=""))
    clicks(eng, [("a", 1, 100), ("a", 3, 1999), ("a", 4, 2500)])
    rows = eng.query("SELECT userid, WINDOWSTART, WINDOWEND, total FROM per_second "
                     "WHERE userid = :u AND WINDOWSTART >= :start AND WINDOWEND <= :end",
                     {"u": "a", "start": 1000, "end": 3000})
    assert rows.values.tolist() == [["a", 1000, 2000, 3], ["a", 2000, 3000, 4]]


def test_windows_older_than_the_retention_leave_the_state() -> None:
    eng = Engine()
    eng.execute(PER_SECOND.format(options=", RETENTION 3 SECONDS, GRACE PERIOD 0 SECONDS"))
    clicks(eng, [("a", 1, 100), ("b", 1, 1100), ("a", 1, 2100)])
    assert eng.query("SELECT userid, WINDOWSTART FROM per_second").values.tolist() == [["a", 0], ["a", 2000],
                                                                                      ["b", 1000]]
    clicks(eng, [("a", 1, 3100)])  # stream time 3100: the windows that started at or before 100 expire
    assert eng.query("SELECT WINDOWSTART FROM per_second")["WINDOWSTART"].tolist() == [2000, 3000, 1000]
    clicks(eng, [("a", 1, 4100)])  # and at 4100, those that started at or before 1100
    starts = eng.query("SELECT userid, WINDOWSTART FROM per_second").values.tolist()
    assert starts == [["a", 2000], ["a", 3000], ["a", 4000]]


def test_a_session_windowed_table_keeps_each_session_of_a_key() -> None:
    eng = Engine()
    eng.execute(CLICKS + "CREATE TABLE sessions AS SELECT userid, COUNT(*) AS n FROM clicks "
                         "WINDOW SESSION (5 SECONDS) GROUP BY userid;")
    clicks(eng, [("a", 1, 0), ("a", 1, 1000), ("a", 1, 20000)])
    rows = eng.query("SELECT WINDOWSTART, WINDOWEND, n FROM sessions WHERE userid = 'a'")
    assert rows.values.tolist() == [[0, 1000, 2], [20000, 20000, 1]]


def test_the_default_retention_is_the_window_size_plus_the_grace_period() -> None:
    eng = Engine()
    eng.execute(PER_SECOND.format(options=", GRACE PERIOD 1 SECOND"))
    assert eng.catalog.get("PER_SECOND").window.retention_ms == 2000  # type: ignore[union-attr]


def test_a_pull_query_on_a_stream_scans_its_records() -> None:
    eng = Engine()
    eng.execute(CLICKS)
    clicks(eng, [("a", 1, 100), ("b", 2, 200)])
    frame = eng.query("SELECT userid, amount FROM clicks WHERE amount > :min", {"min": 1})
    pd.testing.assert_frame_equal(frame, pd.DataFrame({"USERID": ["b"], "AMOUNT": [2]}), check_dtype=False)


def test_a_pull_query_cannot_aggregate(users: Engine) -> None:
    with pytest.raises(PullQueryError, match=r"Pull queries don.t support GROUP BY clauses\. See https://cnfl\.io"):
        users.query("SELECT level, COUNT(*) FROM users GROUP BY level")


def test_lookups_written_with_literals_share_one_plan(users: Engine) -> None:
    names = [users.query(f"SELECT name FROM users WHERE userid = '{key}'")["NAME"].tolist() for key in ("u1", "u2")]
    levels = [users.query(f"SELECT userid FROM users WHERE level >= {n}")["USERID"].tolist() for n in (3, 2)]
    assert names == [["ann"], ["bob"]] and sorted(levels[1]) == ["o'neil", "u2"] and levels[0] == ["o'neil"]
    assert len(pull._caches[users]) == 2


def test_a_query_with_lifted_literals_that_fails_reports_the_query_as_written(users: Engine) -> None:
    with pytest.raises(SqlTypeError, match=r"USERID \(STRING\) to 5 \(INTEGER\)"):
        users.query("SELECT * FROM users WHERE userid = 5")


@pytest.mark.parametrize(("sql", "template", "values"), [
    ("SELECT * FROM t WHERE id = 'k''1' AND n >= 10", "SELECT * FROM t WHERE id = :__lit0 AND n >= :__lit1",
     {"__lit0": "k'1", "__lit1": 10}),
    ("SELECT 'a = 1' AS x FROM t WHERE `b = 2` <> 3", "SELECT 'a = 1' AS x FROM t WHERE `b = 2` <> :__lit0",
     {"__lit0": 3}),
    ("SELECT * FROM t WHERE d = 1.5 AND e = -2 AND f = t1 LIMIT 4", "SELECT * FROM t WHERE d = 1.5 AND e = -2 "
     "AND f = t1 LIMIT 4", {}),
])
def test_only_string_and_integer_literals_after_a_comparison_are_lifted(
        sql: str, template: str, values: dict[str, object]) -> None:
    assert pull.lift_literals(sql) == (template, values)


def test_pull_rows_name_the_table_keys_in_the_projection_as_key_columns(users: Engine) -> None:
    result = pull.pull_rows(users, "SELECT level, userid FROM users WHERE userid = 'u1'", {})
    assert [(c.name, str(c.type), c.role) for c in result.columns] == [
        ("LEVEL", "INTEGER", "VALUE"), ("USERID", "STRING", "KEY")]
    assert result.rows == [(1, "u1")]


def test_pull_rows_of_a_windowed_table_have_the_window_bounds_as_key_columns() -> None:
    eng = Engine()
    eng.execute(PER_SECOND.format(options=""))
    clicks(eng, [("u1", 5, 1000), ("u1", 7, 1500)])
    result = pull.pull_rows(eng, "SELECT * FROM per_second WHERE userid = 'u1'", {})
    assert [(c.name, c.role) for c in result.columns] == [
        ("USERID", "KEY"), ("WINDOWSTART", "KEY"), ("WINDOWEND", "KEY"), ("N", "VALUE"), ("TOTAL", "VALUE")]
    assert result.rows == [("u1", 1000, 2000, 2, 12)]
