"""The ksqlDB statements nbstream parses, written as specifications."""

from __future__ import annotations

import pytest
from sqlglot import exp

from nbstream.catalog.types import BIGINT, INTEGER, STRING, SqlType
from nbstream.errors import ParseError
from nbstream.sql import ast, parse


def one(sql: str) -> ast.Statement:
    (statement,) = parse(sql)
    return statement


class TestScripts:
    def test_statements_split_on_semicolons_outside_strings_and_comments(self) -> None:
        script = "SET 'a'='x;y'; -- one; two\n/* three; */ UNSET 'a'"
        first, second = parse(script)
        assert first == ast.SetProperty(name="a", value="x;y", text="SET 'a'='x;y'", span=first.span)
        assert isinstance(second, ast.UnsetProperty)
        assert second.text == "UNSET 'a'"

    def test_each_statement_knows_where_it_starts(self) -> None:
        script = "SHOW STREAMS;\n\n  DROP TABLE t;"
        _, drop = parse(script)
        assert drop.span is not None
        assert (drop.span.line, drop.span.column) == (3, 3)

    def test_empty_statements_and_a_missing_final_semicolon_are_fine(self) -> None:
        assert len(parse(";;SHOW TABLES;;LIST TOPICS")) == 2
        assert parse("  -- only a comment\n") == []


class TestCreateSource:
    def test_columns_keys_headers_and_properties(self) -> None:
        stmt = one("""CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR KEY, `Page` STRING,
                        h BYTES HEADER('trace'), hs ARRAY<STRUCT<`key` STRING, `value` BYTES>> HEADERS)
                      WITH (kafka_topic='pv', VALUE_FORMAT='JSON', PARTITIONS=2, wrap_single_value=false,
                            TIMESTAMP='viewtime');""")
        assert isinstance(stmt, ast.CreateSource)
        assert (stmt.kind, stmt.name, stmt.is_source) == ("STREAM", "PAGEVIEWS", False)
        assert [(c.name, c.type, c.role, c.header_key) for c in stmt.columns[:4]] == [
            ("VIEWTIME", BIGINT, "VALUE", None),
            ("USERID", STRING, "KEY", None),
            ("Page", STRING, "VALUE", None),
            ("H", SqlType("BYTES"), "HEADER", "trace"),
        ]
        assert stmt.columns[4].role == "HEADERS"
        assert stmt.properties == {"KAFKA_TOPIC": "pv", "VALUE_FORMAT": "JSON", "PARTITIONS": 2,
                                   "WRAP_SINGLE_VALUE": False, "TIMESTAMP": "viewtime"}

    def test_or_replace_source_table_if_not_exists_with_primary_key(self) -> None:
        stmt = one("CREATE OR REPLACE SOURCE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v DECIMAL(4, 2))"
                   " WITH (KAFKA_TOPIC='t', FORMAT='JSON')")
        assert isinstance(stmt, ast.CreateSource)
        assert (stmt.kind, stmt.or_replace, stmt.is_source, stmt.if_not_exists) == ("TABLE", True, True, True)
        assert stmt.columns[0].role == "PRIMARY KEY"
        assert stmt.columns[0].type == INTEGER
        assert stmt.columns[1].type == SqlType.decimal(4, 2)

    def test_nested_types_close_with_a_double_angle(self) -> None:
        stmt = one("CREATE STREAM s (m MAP<STRING, ARRAY<INT>>, n STRUCT<a STRUCT<b INT>>) WITH (X='s')")
        assert isinstance(stmt, ast.CreateSource)
        assert stmt.columns[0].type == SqlType.map(STRING, SqlType.array(INTEGER))
        assert stmt.columns[1].type == SqlType.struct([("A", SqlType.struct([("B", INTEGER)]))])

    def test_property_values_are_python_literals(self) -> None:
        stmt = one("CREATE STREAM s (a INT) WITH (KAFKA_TOPIC='s', PARTITIONS=3, REPLICAS=-1, X=1.5, "
                   "Y=true, Z=NULL, value_delimiter='|')")
        assert isinstance(stmt, ast.CreateSource)
        assert stmt.properties == {"KAFKA_TOPIC": "s", "PARTITIONS": 3, "REPLICAS": -1, "X": 1.5,
                                   "Y": True, "Z": None, "VALUE_DELIMITER": "|"}

    def test_no_columns_is_allowed(self) -> None:
        stmt = one("CREATE TABLE t WITH (KAFKA_TOPIC='t', FORMAT='AVRO')")
        assert isinstance(stmt, ast.CreateSource)
        assert stmt.columns == ()


class TestPersistentQueries:
    def test_create_as_select(self) -> None:
        stmt = one("CREATE STREAM home WITH (KAFKA_TOPIC='home') AS SELECT userid FROM pageviews "
                   "WHERE pageid LIKE 'home%' PARTITION BY userid EMIT CHANGES")
        assert isinstance(stmt, ast.CreateAsSelect)
        assert (stmt.kind, stmt.name, stmt.properties) == ("STREAM", "HOME", {"KAFKA_TOPIC": "home"})
        assert stmt.query.emit == "CHANGES"
        assert [e.sql() for e in stmt.query.partition_by] == ["USERID"]
        assert stmt.query.select.sql() == "SELECT USERID FROM PAGEVIEWS WHERE PAGEID LIKE 'home%'"

    def test_insert_into_select(self) -> None:
        stmt = one("INSERT INTO out WITH (QUERY_ID='q1') SELECT * FROM s")
        assert isinstance(stmt, ast.InsertInto)
        assert (stmt.target, stmt.properties) == ("OUT", {"QUERY_ID": "q1"})

    def test_insert_values_with_and_without_columns(self) -> None:
        stmt = one("INSERT INTO s (ROWTIME, `id`, v) VALUES (1, 'a', ARRAY[1, 2])")
        assert isinstance(stmt, ast.InsertValues)
        assert stmt.columns == ("ROWTIME", "id", "V")
        assert [v.sql() for v in stmt.values[:2]] == ["1", "'a'"]
        assert isinstance(stmt.values[2], exp.Array)
        bare = one("INSERT INTO s VALUES (1)")
        assert isinstance(bare, ast.InsertValues)
        assert bare.columns is None


class TestQueries:
    def test_windows_are_lifted_with_durations_in_ms(self) -> None:
        tumbling = one("SELECT k, COUNT(*) FROM s WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 2 DAYS, "
                       "GRACE PERIOD 10 SECONDS) GROUP BY k EMIT FINAL")
        assert isinstance(tumbling, ast.Select)
        assert tumbling.query.window == ast.WindowSpec("TUMBLING", 60_000, None, 10_000, 172_800_000)
        assert tumbling.query.emit == "FINAL"
        assert tumbling.query.select.sql() == "SELECT K, COUNT(*) FROM S GROUP BY K"

    def test_hopping_and_session_windows(self) -> None:
        hopping = one("SELECT * FROM s WINDOW HOPPING (SIZE 30 SECONDS, ADVANCE BY 500 MILLISECONDS) "
                      "WHERE x > 1 EMIT CHANGES")
        assert isinstance(hopping, ast.Select)
        assert hopping.query.window == ast.WindowSpec("HOPPING", 30_000, advance_ms=500)
        session = one("SELECT * FROM s WINDOW SESSION (5 MINUTES, GRACE PERIOD 1 HOUR) EMIT CHANGES")
        assert isinstance(session, ast.Select)
        assert session.query.window == ast.WindowSpec("SESSION", 300_000, grace_ms=3_600_000)

    def test_join_within_is_carried_on_the_join(self) -> None:
        stmt = one("SELECT * FROM a JOIN b WITHIN (1 HOUR, 2 MINUTES) GRACE PERIOD 1 SECOND ON a.id = b.id "
                   "LEFT OUTER JOIN c WITHIN 10 SECONDS ON a.id = c.id FULL OUTER JOIN t ON a.id = t.id "
                   "EMIT CHANGES")
        assert isinstance(stmt, ast.Select)
        joins = stmt.query.select.args["joins"]
        assert joins[0].meta["within"] == ast.Within(3_600_000, 120_000, 1_000)
        assert joins[1].meta["within"] == ast.Within(10_000, 10_000)
        assert "within" not in joins[2].meta
        assert [j.side for j in joins] == ["", "LEFT", "FULL"]

    def test_group_by_having_limit(self) -> None:
        stmt = one("SELECT k, SUM(v) AS total FROM s GROUP BY k HAVING SUM(v) > 10 EMIT CHANGES LIMIT 5")
        assert isinstance(stmt, ast.Select)
        assert stmt.query.limit == 5
        assert stmt.query.select.sql() == "SELECT K, SUM(V) AS TOTAL FROM S GROUP BY K HAVING SUM(V) > 10"

    def test_a_pull_query_has_no_emit(self) -> None:
        stmt = one("SELECT * FROM users WHERE userid = 'u1'")
        assert isinstance(stmt, ast.Select)
        assert stmt.query.emit is None


class TestCommands:
    @pytest.mark.parametrize(("sql", "expected"), [
        ("SHOW STREAMS", ast.Show("STREAMS")),
        ("LIST TABLES EXTENDED", ast.Show("TABLES", extended=True)),
        ("SHOW TOPICS", ast.Show("TOPICS")),
        ("SHOW QUERIES", ast.Show("QUERIES")),
        ("SHOW FUNCTIONS", ast.Show("FUNCTIONS")),
        ("SHOW PROPERTIES", ast.Show("PROPERTIES")),
        ("SHOW CONNECTORS", ast.Show("CONNECTORS")),
        ("DESCRIBE s", ast.Describe("S")),
        ("DESCRIBE EXTENDED `s`", ast.Describe("s", extended=True)),
        ("DESCRIBE STREAMS EXTENDED", ast.Describe(None, extended=True, all_of="STREAMS")),
        ("DESCRIBE TABLES", ast.Describe(None, all_of="TABLES")),
        ("DESCRIBE FUNCTION ucase", ast.DescribeFunction("UCASE")),
        ("DESCRIBE CONNECTOR c", ast.DescribeConnector("C")),
        ("EXPLAIN CSAS_OUT_1", ast.Explain(query_id="CSAS_OUT_1")),
        ("DROP STREAM s", ast.Drop("STREAM", "S")),
        ("DROP TABLE IF EXISTS t DELETE TOPIC", ast.Drop("TABLE", "T", if_exists=True, delete_topic=True)),
        ("DROP CONNECTOR IF EXISTS c", ast.DropConnector("C", if_exists=True)),
        ("DROP TYPE address", ast.DropType("ADDRESS")),
        ("DROP TYPE IF EXISTS `Address`", ast.DropType("Address", if_exists=True)),
        ("SHOW TYPES", ast.Show("TYPES")),
        ("LIST TYPES", ast.Show("TYPES")),
        ("TERMINATE ALL", ast.Terminate(None)),
        ("TERMINATE CSAS_OUT_1", ast.Terminate("CSAS_OUT_1")),
        ("SET 'auto.offset.reset' = 'earliest'", ast.SetProperty("auto.offset.reset", "earliest")),
        ("UNSET 'auto.offset.reset'", ast.UnsetProperty("auto.offset.reset")),
        ("PRINT 'my-topic' FROM BEGINNING INTERVAL 2 LIMIT 10", ast.PrintTopic("my-topic", True, 2, 10)),
        ("PRINT pageviews", ast.PrintTopic("PAGEVIEWS")),
    ])
    def test_command(self, sql: str, expected: ast.Statement) -> None:
        stmt = one(sql)
        assert stmt.text == sql
        assert stmt == type(expected)(**{**expected.__dict__, "text": sql, "span": stmt.span})

    def test_explain_a_statement(self) -> None:
        stmt = one("EXPLAIN SELECT * FROM s EMIT CHANGES")
        assert isinstance(stmt, ast.Explain)
        assert isinstance(stmt.statement, ast.Select)
        assert stmt.statement.text == "SELECT * FROM s EMIT CHANGES"

    def test_connectors_keep_the_case_of_their_keys(self) -> None:
        stmt = one("CREATE SINK CONNECTOR IF NOT EXISTS sink WITH ('connector.class'='x', 'tasks.max'=1)")
        assert stmt == ast.CreateConnector("SINK", "SINK", {"connector.class": "x", "tasks.max": 1},
                                           if_not_exists=True, text=stmt.text, span=stmt.span)


class TestCustomTypes:
    def test_create_type_reads_the_type_as_written(self) -> None:
        stmt = one("CREATE TYPE IF NOT EXISTS person AS STRUCT<name VARCHAR, address Address, tags ARRAY<tag>>")
        assert stmt == ast.CreateType("PERSON", SqlType.struct([
            ("NAME", STRING), ("ADDRESS", SqlType.custom("ADDRESS")), ("TAGS", SqlType.array(SqlType.custom("TAG"))),
        ]), if_not_exists=True, text=stmt.text, span=stmt.span)

    def test_a_name_that_is_no_ksqldb_type_is_a_custom_type_wherever_a_type_is_written(self) -> None:
        create, select = parse("""CREATE STREAM s (k INTEGR KEY, m MAP<STRING, address>) WITH (KAFKA_TOPIC='s');
                                  SELECT CAST(m['a'] AS address) FROM s EMIT CHANGES""")
        assert isinstance(create, ast.CreateSource) and isinstance(select, ast.Select)
        assert [c.type for c in create.columns] == [SqlType.custom("INTEGR"),
                                                    SqlType.map(STRING, SqlType.custom("ADDRESS"))]
        cast = select.query.select.find(exp.Cast)
        assert cast is not None and cast.meta["ksql_type"] == SqlType.custom("ADDRESS")
        assert str(SqlType.custom("address")) == "ADDRESS" and SqlType.custom("x").has_custom

    @pytest.mark.parametrize("sql", [
        "CREATE TYPE a", "CREATE TYPE a STRUCT<x INT>", "CREATE TYPE a AS", "CREATE OR REPLACE TYPE a AS INT",
        "CREATE TYPE a AS INT WITH (x=1)", "DROP TYPE", "DROP TYPE a b",
    ])
    def test_malformed_type_statements_are_parse_errors(self, sql: str) -> None:
        with pytest.raises(ParseError):
            parse(sql)


class TestErrors:
    def test_the_span_points_into_the_script_of_three_statements(self) -> None:
        script = "SHOW STREAMS;\nCREATE STREAM s (a INT) WITH (KAFKA_TOPIC='s');\nSELECT * FROM s FORM t;"
        with pytest.raises(ParseError) as caught:
            parse(script)
        error = caught.value
        assert error.span is not None
        assert (error.span.line, error.span.column) == (3, 22)
        assert "mismatched input 't'" in error.message or "mismatched input 'FORM'" in error.message
        assert "line 3" in str(error)

    def test_a_misspelled_first_word_gets_a_suggestion(self) -> None:
        with pytest.raises(ParseError) as caught:
            parse("SHOW TABLES;\nSELEC * FROM s")
        assert "mismatched input 'SELEC'" in caught.value.message
        assert "Did you mean `SELECT`?" in caught.value.message
        assert caught.value.span is not None
        assert (caught.value.span.line, caught.value.span.column) == (2, 1)

    def test_a_bad_type_names_the_token(self) -> None:
        with pytest.raises(ParseError) as caught:
            parse("CREATE STREAM s (a MAP<STRING INT>) WITH (KAFKA_TOPIC='s')")
        assert caught.value.message == "mismatched input 'INT' expecting ','"
        assert caught.value.span is not None
        assert caught.value.span.column == 31

    @pytest.mark.parametrize("sql", [
        "SELECT * FROM", "SELECT (1", "CREATE STREAM", "CREATE STREAM s (a ARRAY<INT) WITH (X=1)",
        "SELECT 'unterminated", "INSERT INTO s VALUES (1", "SELECT * FROM s WINDOW TUMBLING (SIZE 1 YEAR)",
        "DROP", "SET 'a'", "SELECT CAST(x AS) FROM s", "SELECT a-> FROM s",
        "CREATE STREAM s (a DECIMAL(0, 0))",
    ])
    def test_only_parse_errors_escape(self, sql: str) -> None:
        with pytest.raises(ParseError):
            parse(sql)
