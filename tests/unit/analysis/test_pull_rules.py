"""ksqlDB's rules for pull queries: the queries it refuses are refused, in its words, and the plan
kind it would pick (key lookup, range scan, table scan) decides what table scans being off refuses."""

from __future__ import annotations

import pytest

from nbstream import Engine
from nbstream.analysis.pull_rules import PullOptions, PullQueryError, check_clauses, check_where
from nbstream.sql import ast, parse

TABLES = """
CREATE TABLE users (userid VARCHAR PRIMARY KEY, name VARCHAR, level INT) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON');
CREATE TABLE pairs (a INT PRIMARY KEY, b INT PRIMARY KEY, v INT) WITH (KAFKA_TOPIC='p', FORMAT='JSON');
"""
DEFAULTS, NO_SCANS = PullOptions(), PullOptions(table_scans=False)


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine()
    eng.execute(TABLES)
    return eng


def query(sql: str) -> ast.Query:
    (statement,) = parse(sql)
    assert isinstance(statement, ast.Select)
    return statement.query


def kind(engine: Engine, sql: str, options: PullOptions = DEFAULTS) -> str:
    q = query(sql)
    return check_where(q, engine.catalog.get((q.select.args.get("from") or q.select.args["from_"]).this.name), options)


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM users u JOIN users v ON u.userid = v.userid;", "Pull queries don't support JOIN clauses."),
    ("SELECT userid, COUNT(*) FROM users GROUP BY userid;", "Pull queries don't support GROUP BY clauses."),
    ("SELECT * FROM users LIMIT -1;", "Pull queries don't support negative integers in the LIMIT clause."),
    ("SELECT ROWPARTITION FROM users;", "Pull queries don't support the following columns in SELECT clauses: "
                                        "`ROWPARTITION`\n See https://cnfl.io/queries"),
    ("SELECT * FROM users WHERE ROWOFFSET > 1;", "in WHERE clauses: `ROWOFFSET`"),
])
def test_clauses_ksqldb_refuses_in_a_pull_query(sql: str, message: str) -> None:
    with pytest.raises(PullQueryError) as refused:
        check_clauses(query(sql), PullOptions())
    assert message in str(refused.value)
    assert str(refused.value).endswith("Add EMIT CHANGES if you intended to issue a push query.")


def test_a_limit_is_refused_only_while_the_limit_clause_is_off() -> None:
    check_clauses(query("SELECT * FROM users LIMIT 2;"), PullOptions())
    with pytest.raises(PullQueryError, match="LIMIT clause in pull queries is currently disabled"):
        check_clauses(query("SELECT * FROM users LIMIT 2;"), PullOptions(limit_clause=False))


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM users WHERE userid = 'a';", "KEY_LOOKUP"),
    ("SELECT * FROM users WHERE userid IN ('a', 'b') AND level > 1;", "KEY_LOOKUP"),
    ("SELECT * FROM users WHERE userid > 'a';", "RANGE_SCAN"),
    ("SELECT * FROM users WHERE userid BETWEEN 'a' AND 'c';", "RANGE_SCAN"),  # on its first bound
    ("SELECT * FROM users WHERE level = 1;", "TABLE_SCAN"),
    ("SELECT * FROM users;", "TABLE_SCAN"),
    ("SELECT * FROM pairs WHERE a = 1 AND b = 2;", "KEY_LOOKUP"),
    ("SELECT * FROM pairs WHERE a = 1;", "TABLE_SCAN"),
    ("SELECT * FROM pairs WHERE a > 1;", "TABLE_SCAN"),  # ranges only on STRING and BYTES keys
])
def test_the_plan_ksqldb_would_pick(engine: Engine, sql: str, expected: str) -> None:
    assert kind(engine, sql) == expected


@pytest.mark.parametrize(("sql", "message", "with_scans"), [
    ("SELECT * FROM users;", "Query requires table scan to be enabled", "TABLE_SCAN"),
    ("SELECT * FROM users WHERE level = 1;", "WHERE clause missing key column for disjunct: (LEVEL = 1)", "TABLE_SCAN"),
    ("SELECT * FROM users WHERE userid <> 'a';", "Bound on key columns '[`USERID` STRING KEY]' must currently be '='",
     "TABLE_SCAN"),
    ("SELECT * FROM users WHERE userid = 'a' AND userid IN ('a', 'b');",
     "A comparison condition on the key column cannot be combined with other comparisons such as an IN predicate",
     "KEY_LOOKUP"),
    ("SELECT * FROM users WHERE userid = name;", "A comparison must be between a key column and a resolvable",
     "TABLE_SCAN"),
    ("SELECT * FROM pairs WHERE a = 1;", "Multi-column sources must specify every key in the WHERE clause. "
                                         "Specified: [`A`] Expected: [`A` INTEGER KEY, `B` INTEGER KEY]", "TABLE_SCAN"),
])
def test_without_table_scans_a_query_that_needs_one_is_refused_saying_why(engine: Engine, sql: str, message: str,
                                                                          with_scans: str) -> None:
    with pytest.raises(PullQueryError) as refused:
        kind(engine, sql, NO_SCANS)
    assert message in str(refused.value)
    assert kind(engine, sql) == with_scans


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM users WHERE userid IN (NULL);", "Primary key columns can not be NULL: (USERID = null)"),
    ("SELECT * FROM pairs WHERE a IN ('1', 2) AND b = 1;",
     "'1' can not be converted to the type of the key column: A INTEGER KEY"),
    ("SELECT * FROM pairs WHERE a = 2.5 AND b = 1;", "'2.5' can not be converted"),
])
def test_key_values_must_be_of_a_type_the_key_takes(engine: Engine, sql: str, message: str) -> None:
    with pytest.raises(PullQueryError) as refused:
        kind(engine, sql)
    assert message in str(refused.value)
