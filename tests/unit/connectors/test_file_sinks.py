"""Sink connectors: Parquet and JSON-lines files and DuckDB tables holding the decoded rows of a
stream or table, with offsets committed so that a restart does not duplicate."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from nbstream import Engine
from nbstream.errors import CatalogError

STOCK_TABLE = "CREATE TABLE stock (item VARCHAR PRIMARY KEY, qty INT) WITH (KAFKA_TOPIC='stock', VALUE_FORMAT='JSON')"


def sink(name: str, connector_class: str, **props: str) -> str:
    body = ", ".join(f"'{k}'='{v}'" for k, v in {"connector.class": connector_class, **props}.items())
    return f"CREATE SINK CONNECTOR {name} WITH ({body})"


def engine_with_orders(path: Path | None = None) -> Engine:
    eng = Engine(path)
    eng.execute("CREATE STREAM orders (id VARCHAR KEY, item VARCHAR, qty INT, price DOUBLE) "
                "WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2)")
    return eng


def produce_orders(eng: Engine, first: int, count: int) -> None:
    for n in range(first, first + count):
        eng.produce("orders", {"item": f"item{n % 4}", "qty": n, "price": n / 2}, key=f"o{n}")


def sorted_rows(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return sorted(rows, key=repr)


def stream_rows(eng: Engine, source: str = "orders") -> list[tuple[object, ...]]:
    return sorted_rows([tuple(r) for r in eng.query(f"SELECT * FROM {source}").itertuples(index=False)])


# -- Parquet and JSON-lines files ------------------------------------------------------------------


def test_parquet_files_read_back_with_duckdb_equal_the_streams_rows(tmp_path: Path) -> None:
    eng = engine_with_orders()
    produce_orders(eng, 0, 30)
    eng.execute(sink("pq", "parquet", source="orders", path=str(tmp_path / "out"), **{"rotate.interval.ms": "0"}))
    eng.run_until_idle()
    produce_orders(eng, 30, 10)
    eng.run_until_idle()
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 4 and all(f.startswith("PQ-p") and f.endswith(".parquet") for f in files)
    written = duckdb.sql(f"SELECT * FROM '{tmp_path / 'out'}/*.parquet'").fetchall()
    assert sorted_rows(written) == stream_rows(eng) and len(written) == 40
    assert eng.execute("SHOW CONNECTORS")[0].rows == (("PQ", "SINK", "parquet", "RUNNING", "orders", 40),)


def test_a_trickle_of_records_makes_a_file_per_rotate_interval_not_one_per_step(tmp_path: Path) -> None:
    eng = engine_with_orders()
    clock = iter(range(1_000, 100_000, 400))  # each run of the engine is 400 ms after the last
    eng.connectors.clock = lambda: next(clock)
    eng.execute(sink("pq", "parquet", source="orders", path=str(tmp_path), **{"flush.size": "5"}))
    written = []
    for n in range(8):
        produce_orders(eng, n, 1)
        eng.run_until_idle()
        written.append(len(duckdb.sql(f"SELECT * FROM '{tmp_path}/*.parquet'").fetchall()))
    assert written == [1, 1, 1, 4, 4, 4, 7, 7]  # the first at once, then a batch per 1000 ms (every third run)
    produce_orders(eng, 8, 12)  # at least 6 in one of the 2 partitions: flush.size are waiting
    eng.run_until_idle()  # 800 ms after the last files
    assert len(duckdb.sql(f"SELECT * FROM '{tmp_path}/*.parquet'").fetchall()) >= 7 + 5


def test_json_lines_sink_writes_the_rows_of_a_query_result_by_topic(tmp_path: Path) -> None:
    eng = engine_with_orders()
    eng.execute("CREATE STREAM big AS SELECT id, item, qty * price AS total FROM orders WHERE qty >= 5")
    eng.execute(sink("js", "file", topics="BIG", path=str(tmp_path)))
    produce_orders(eng, 0, 8)
    eng.run_until_idle()
    written = duckdb.sql(f"SELECT ID, ITEM, TOTAL FROM read_json('{tmp_path}/*.jsonl')").fetchall()
    assert sorted_rows(written) == stream_rows(eng, "big") and len(written) == 3


def test_a_tables_parquet_files_are_its_changelog_with_deletes_marked(tmp_path: Path) -> None:
    eng = Engine()
    eng.execute(STOCK_TABLE)
    eng.execute(sink("pq", "parquet", source="stock", path=str(tmp_path)))
    eng.produce("stock", {"qty": 1}, key="a")
    eng.produce("stock", {"qty": 2}, key="a")
    eng.produce("stock", None, key="a")
    eng.run_until_idle()
    assert duckdb.sql(f"SELECT * FROM '{tmp_path}/*.parquet'").fetchall() == [
        ("a", 1, False), ("a", 2, False), ("a", None, True)]


def test_restart_of_a_parquet_sink_writes_each_record_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    eng = engine_with_orders(tmp_path / "state")
    eng.execute(sink("pq", "parquet", source="orders", path=str(out)))
    produce_orders(eng, 0, 20)
    eng.run_until_idle()
    eng.close()
    eng = Engine(tmp_path / "state")
    produce_orders(eng, 20, 20)
    eng.run_until_idle()
    written = duckdb.sql(f"SELECT ID FROM '{out}/*.parquet'").fetchall()
    assert sorted(written) == sorted((f"o{n}",) for n in range(40))
    eng.close()


def test_a_file_written_but_not_committed_before_a_crash_is_replaced_not_duplicated(tmp_path: Path) -> None:
    out = tmp_path / "out"
    eng = engine_with_orders(tmp_path / "state")
    eng.execute(sink("pq", "parquet", source="orders", path=str(out)))
    produce_orders(eng, 0, 10)
    eng.run_until_idle()
    eng.close()
    # A crash after writing the next batch's files and before committing its offsets: the files
    # are there, the offsets are not; more records arrived before the restart.
    eng = Engine(tmp_path / "state")
    produce_orders(eng, 10, 5)
    eng.connectors.get("PQ").connector.step(lambda progress: None, 0)  # written; progress not stored
    eng.close()
    eng = Engine(tmp_path / "state")
    produce_orders(eng, 15, 5)
    eng.run_until_idle()
    written = duckdb.sql(f"SELECT ID FROM '{out}/*.parquet'").fetchall()
    assert sorted(written) == sorted((f"o{n}",) for n in range(20))
    eng.close()


def test_undecodable_records_go_to_the_processing_log_not_the_files(tmp_path: Path) -> None:
    eng = engine_with_orders()
    eng.execute(sink("pq", "parquet", source="orders", path=str(tmp_path)))
    produce_orders(eng, 0, 2)
    eng.produce("orders", "not an object", key="bad")
    eng.run_until_idle()
    assert len(duckdb.sql(f"SELECT * FROM '{tmp_path}/*.parquet'").fetchall()) == 2
    logged = eng.query("SELECT LOGGER, MESSAGE->TOPIC AS topic FROM KSQL_PROCESSING_LOG")
    assert [tuple(r) for r in logged.itertuples(index=False)] == [("PQ", "orders")]


def test_the_processing_log_itself_can_be_written_to_files(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{oops\n')
    eng = Engine()
    eng.execute(f"CREATE SOURCE CONNECTOR src WITH ('connector.class'='file', 'kafka.topic'='t', "
                f"'path'='{tmp_path / 'in.jsonl'}');"
                f"CREATE SINK CONNECTOR errors WITH ('connector.class'='file', 'topics'='KSQL_PROCESSING_LOG', "
                f"'path'='{tmp_path / 'errors'}')")
    eng.run_until_idle()
    logged = duckdb.sql(f"SELECT LOGGER, MESSAGE.ERRORMESSAGE FROM read_json('{tmp_path}/errors/*.jsonl')").fetchall()
    assert logged == [("SRC", f"{tmp_path / 'in.jsonl'} record 2: not valid JSON: {{oops")]


# -- DuckDB tables ---------------------------------------------------------------------------------


def test_duckdb_table_mirrors_a_ksqldb_table_through_updates_and_deletes() -> None:
    eng = engine_with_orders()
    eng.execute("CREATE TABLE per_item AS SELECT item, COUNT(*) AS n, SUM(qty) AS total FROM orders GROUP BY item")
    eng.execute(sink("mirror", "duckdb", source="per_item", table="item_totals"))
    eng.execute(STOCK_TABLE)
    eng.execute(sink("stock_mirror", "duckdb", source="stock", table="stock_now"))

    def mirrored(table: str) -> list[tuple[object, ...]]:
        return sorted_rows(eng.con.sql(f"SELECT * FROM {table}").fetchall())

    for batch in range(3):
        produce_orders(eng, batch * 10, 10)
        eng.run_until_idle()
        assert mirrored("item_totals") == stream_rows(eng, "per_item")
    eng.produce("stock", {"qty": 5}, key="a")
    eng.produce("stock", {"qty": 7}, key="b")
    eng.run_until_idle()
    eng.produce("stock", {"qty": 6}, key="a")
    eng.produce("stock", None, key="b")  # a tombstone deletes the row
    eng.produce("stock", {"qty": 1}, key="c")
    eng.run_until_idle()
    assert mirrored("stock_now") == [("a", 6), ("c", 1)] == stream_rows(eng, "stock")


def test_duckdb_table_mirrors_a_windowed_table_per_key_and_window() -> None:
    eng = engine_with_orders()
    eng.execute("CREATE TABLE per_minute AS SELECT item, COUNT(*) AS n FROM orders "
                "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY item")
    eng.execute(sink("mirror", "duckdb", source="per_minute", table="per_minute"))
    for seconds in (0, 10, 70, 80, 90):
        eng.produce("orders", {"item": "a", "qty": 1, "price": 1.0}, key="o",
                    timestamp=1_700_000_000_000 + seconds * 1000)
        eng.run_until_idle()
    assert eng.con.sql("SELECT * FROM per_minute ORDER BY WINDOWSTART").fetchall() == sorted_rows(
        [tuple(r) for r in eng.query("SELECT * FROM per_minute").itertuples(index=False)])
    assert [n for *_, n in eng.con.sql("SELECT * FROM per_minute ORDER BY WINDOWSTART").fetchall()] == [2, 3]


def test_duckdb_sink_appends_a_stream_into_another_database_file(tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    eng = engine_with_orders()
    eng.execute(sink("to_db", "duckdb", source="orders", table="orders", database=str(target)))
    produce_orders(eng, 0, 12)
    eng.run_until_idle()
    described = dict(eng.execute("DESCRIBE CONNECTOR to_db")[0].rows)
    assert (described["writes"], described["rows written"]) == ("appends", 12)
    eng.close()
    with duckdb.connect(str(target)) as con:
        assert sorted_rows(con.sql("SELECT * FROM orders").fetchall()) == sorted_rows(
            [(f"o{n}", f"item{n % 4}", n, n / 2) for n in range(12)])


def test_restart_of_a_duckdb_sink_does_not_duplicate(tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    eng = engine_with_orders(tmp_path / "state")
    eng.execute(sink("to_db", "duckdb", source="orders", table="orders", database=str(target)))
    produce_orders(eng, 0, 10)
    eng.run_until_idle()
    eng.close()
    eng = Engine(tmp_path / "state")
    produce_orders(eng, 10, 10)
    eng.run_until_idle()
    eng.close()
    with duckdb.connect(str(target)) as con:
        assert con.sql("SELECT count(*), count(DISTINCT ID) FROM orders").fetchall() == [(20, 20)]


def test_a_duckdb_sink_that_crashed_after_its_database_committed_resumes_from_the_offsets_there(
        tmp_path: Path) -> None:
    target = tmp_path / "analytics.duckdb"
    eng = engine_with_orders(tmp_path / "state")
    eng.execute(sink("to_db", "duckdb", source="orders", table="orders", database=str(target)))
    produce_orders(eng, 0, 10)

    def crash(progress: str) -> None:
        raise RuntimeError("the engine's commit did not happen")

    with pytest.raises(RuntimeError):
        eng.connectors.get("TO_DB").connector.step(crash, 0)  # the target committed, the engine did not
    eng.close()
    eng = Engine(tmp_path / "state")
    eng.run_until_idle()
    eng.close()
    with duckdb.connect(str(target)) as con:
        assert con.sql("SELECT count(*), count(DISTINCT ID) FROM orders").fetchall() == [(10, 10)]


def test_dropping_a_sink_stops_it(tmp_path: Path) -> None:
    eng = engine_with_orders()
    eng.execute(sink("pq", "parquet", source="orders", path=str(tmp_path)))
    produce_orders(eng, 0, 3)
    eng.run_until_idle()
    assert eng.execute("DROP CONNECTOR pq")[0].message == "Dropped connector PQ"
    produce_orders(eng, 3, 3)
    eng.run_until_idle()
    assert len(duckdb.sql(f"SELECT * FROM '{tmp_path}/*.parquet'").fetchall()) == 3
    assert eng.execute("SHOW CONNECTORS")[0].rows == ()


# -- errors ----------------------------------------------------------------------------------------


def test_an_unknown_source_name_is_an_error_with_the_near_miss(tmp_path: Path) -> None:
    eng = engine_with_orders()
    with pytest.raises(CatalogError, match=r"connector PQ: no stream or table called ordrs\. Did you mean `ORDERS`\?"):
        eng.execute(sink("pq", "parquet", source="ordrs", path=str(tmp_path)))


def test_a_topic_without_a_stream_or_table_is_an_error(tmp_path: Path) -> None:
    eng = engine_with_orders()
    with pytest.raises(CatalogError, match=r"over topic 'order', and there is none: declare one first\. "
                                           r"Did you mean `orders`\?"):
        eng.execute(sink("pq", "parquet", topics="order", path=str(tmp_path)))


def test_a_sink_needs_exactly_one_of_source_and_topics(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="with 'source' \\(its name\\) or 'topics' \\(its topic\\), one of the two"):
        engine_with_orders().execute(sink("pq", "parquet", path=str(tmp_path)))


def test_a_duckdb_sink_needs_a_table_and_a_parquet_sink_a_folder(tmp_path: Path) -> None:
    eng = engine_with_orders()
    with pytest.raises(CatalogError, match="'table' is missing: the DuckDB table to write to"):
        eng.execute(sink("d", "duckdb", source="orders"))
    (tmp_path / "file").write_text("")
    with pytest.raises(CatalogError, match="is a file, not a folder"):
        eng.execute(sink("pq", "parquet", source="orders", path=str(tmp_path / "file")))


# -- in the notebook's background loop -----------------------------------------------------------


def test_the_background_loop_tails_files_through_a_query_into_a_duckdb_table(tmp_path: Path) -> None:
    from nbstream.runtime.service import EngineService

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "1.jsonl").write_text('{"user": "u1", "n": 1}\n{"user": "u2", "n": 2}\n')
    eng = EngineService()
    try:
        eng.execute(f"""
          CREATE SOURCE CONNECTOR clicks_in WITH ('connector.class'='file', 'kafka.topic'='clicks',
            'path'='{tmp_path / "in"}', 'mode'='tail', 'key'='user');
          CREATE STREAM clicks WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
          CREATE TABLE per_user AS SELECT user, SUM(n) AS total FROM clicks GROUP BY user;
          CREATE SINK CONNECTOR out WITH ('connector.class'='duckdb', 'source'='per_user', 'table'='totals');""")
        eng.background.start()
        (tmp_path / "in" / "2.jsonl").write_text('{"user": "u1", "n": 10}\n')

        def totals() -> list[tuple[object, ...]]:
            with eng.lock:
                return sorted(eng.con.sql("SELECT * FROM totals").fetchall())

        deadline = time.monotonic() + 20
        while totals() != [("u1", 11), ("u2", 2)]:
            assert time.monotonic() < deadline, f"timed out with {totals()}"
            time.sleep(0.05)
        assert eng.background.failures == []
    finally:
        eng.close()
