"""Specifications of the serialization formats: SQL round trips in DuckDB, errors, renderings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nbstream.catalog.schema import Column
from nbstream.catalog.types import parse_type
from nbstream.errors import FormatError
from nbstream.formats import Decoded, format_for
from nbstream.formats.base import let_relation

from .rows import decode_rows, encode_rows


def cols(*specs: str) -> list[Column]:
    """Columns from ``"NAME TYPE"`` strings."""
    return [Column(s.split(" ", 1)[0], parse_type(s.split(" ", 1)[1])) for s in specs]


# -- format_for -----------------------------------------------------------------------------------


def test_format_for_names_and_errors() -> None:
    assert format_for("json").name == "JSON"
    assert format_for("Delimited", {"value_delimiter": "TAB"}).delimiter == "\t"
    with pytest.raises(FormatError, match="Unknown format: FOO"):
        format_for("FOO")
    with pytest.raises(FormatError, match="Did you mean `JSON`"):
        format_for("JSNO")
    assert format_for("protobuf").name == "PROTOBUF"
    with pytest.raises(FormatError, match=r"PROTOBUF_NOSR does not support the following configs: \[fullSchemaName\]"):
        format_for("PROTOBUF_NOSR", {"SCHEMA_FULL_NAME": "a.B"})
    with pytest.raises(FormatError, match="Delimiter must be a single character"):
        format_for("DELIMITED", {"VALUE_DELIMITER": "<~>"})
    with pytest.raises(FormatError, match="Delimiter cannot be empty"):
        format_for("DELIMITED", {"VALUE_DELIMITER": " "})
    with pytest.raises(FormatError, match=r"JSON does not support the following configs: \[delimiter\]"):
        format_for("JSON", {"VALUE_DELIMITER": "|"})


@pytest.mark.parametrize(
    ("fmt", "specs", "is_key", "wrap", "message"),
    [
        ("KAFKA", ["K BOOLEAN"], True, None, "The 'KAFKA' format does not support type 'BOOLEAN'"),
        ("KAFKA", ["A INT", "B INT"], False, None, "only supports a single field"),
        ("DELIMITED", ["K ARRAY<DOUBLE>"], True, None, "does not support type 'ARRAY', column: `K`"),
        ("DELIMITED", ["F STRUCT<A INT>"], False, None, "does not support type 'STRUCT'"),
        ("DELIMITED", ["F INT"], False, True, "does not support 'WRAP_SINGLE_VALUE' set to 'true'"),
        ("JSON", ["A STRING", "B STRING"], False, False, "only valid for single-field value schemas"),
        ("JSON", ["K MAP<STRING, INT>"], True, None, "Map keys, including types that contain maps"),
        ("NONE", ["K STRING"], True, None, "can only be used when no columns are defined"),
    ],
)
def test_check_columns_rejects(
    fmt: str, specs: list[str], is_key: bool, wrap: bool | None, message: str
) -> None:
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace("[", r"\[")):
        format_for(fmt).check_columns(cols(*specs), is_key=is_key, wrap_single_value=wrap)


def test_check_columns_accepts() -> None:
    format_for("KAFKA").check_columns(cols("K STRING"), is_key=True, wrap_single_value=None)
    format_for("DELIMITED").check_columns(
        cols("A INT", "B DECIMAL(4,2)"), is_key=False, wrap_single_value=None
    )
    format_for("JSON").check_columns(cols("S STRUCT<A ARRAY<INT>>"), is_key=False, wrap_single_value=False)
    format_for("NONE").check_columns([], is_key=True, wrap_single_value=None)


# -- JSON -----------------------------------------------------------------------------------------

ALL = cols(
    "ID BIGINT",
    "NAME STRING",
    "D DOUBLE",
    "M DECIMAL(4,2)",
    "S STRUCT<A INT, B ARRAY<STRING>>",
    "TS TIMESTAMP",
    "DT DATE",
    "TM TIME",
    "BY BYTES",
    "MP MAP<STRING, DECIMAL(3,1)>",
    "OK BOOLEAN",
)
ALL_SQL = (
    "SELECT 1::BIGINT AS ID, 'a\"b' AS NAME, 1e10::DOUBLE AS D, 1.5::DECIMAL(4,2) AS M,"
    " {'A': 1, 'B': ['x', NULL]} AS S, epoch_ms(1000::BIGINT) AS TS, DATE '1970-01-03' AS DT,"
    " TIME '00:00:01.5' AS TM, 'hi'::BLOB AS \"BY\", MAP {'k': 1.2::DECIMAL(3,1)} AS MP, true AS OK"
)


def test_json_encode_renders_like_ksqldb(con) -> None:
    (blob,) = encode_rows(con, format_for("JSON"), ALL_SQL, ALL)
    assert blob == (
        b'{"ID":1,"NAME":"a\\"b","D":1.0E10,"M":1.50,"S":{"A":1,"B":["x",null]},"TS":1000,"DT":2,'
        b'"TM":1500,"BY":"aGk=","MP":{"k":1.2},"OK":true}'
    )


def test_json_round_trip(con) -> None:
    fmt = format_for("JSON")
    blobs = encode_rows(con, fmt, ALL_SQL, ALL)
    (row,) = decode_rows(con, fmt, blobs, ALL)
    expected = con.sql(ALL_SQL).fetchall()[0]
    assert row[:-2] == expected
    assert row[-2] is False


def test_json_keys_match_case_insensitively(con) -> None:
    columns = [*cols("ID BIGINT", "NAME STRING"), Column("q", parse_type("INT"))]
    blobs = [b'{"id": 1, "Name": "x", "q": 7}', b'{"ID": 2, "NAME": "y", "Q": 8}', None]
    rows = decode_rows(con, format_for("JSON"), blobs, columns)
    assert [r[:3] for r in rows] == [(1, "x", 7), (2, "y", None), (None, None, None)]
    assert [r[3] for r in rows] == [False, False, False]


def test_json_nested_struct_fields_case_insensitive(con) -> None:
    columns = cols("S STRUCT<A INT, B STRING>")
    (row,) = decode_rows(con, format_for("JSON"), [b'{"s": {"a": 1, "B": "z"}}'], columns)
    assert row[0] == {"A": 1, "B": "z"}


def test_json_coercions_and_errors(con) -> None:
    columns = cols("I INT", "S STRING", "M DECIMAL(4,2)")
    blobs = [b'{"I": "1", "S": 5, "M": "1.5"}', b'{"I": "abc"}', b"not json", b"[1]", b'{"S": {"x": 1}}']
    rows = decode_rows(con, format_for("JSON"), blobs, columns)
    assert rows[0][:4] == (1, "5", Decimal("1.50"), False)
    assert rows[1][3] is True
    assert rows[1][4] == "Can't coerce string to type. targetType: INTEGER, path: $.I"
    assert rows[2][3] is True and rows[3][3] is True
    assert rows[4][1] == '{"x":1}'


def test_json_numbers_truncate_into_integers(con) -> None:
    columns = cols("I INT", "L BIGINT")
    rows = decode_rows(con, format_for("JSON"), [b'{"I": 1.7, "L": -2.9}', b'{"I": 1e2, "L": 12}'], columns)
    assert [r[:3] for r in rows] == [(1, -2, False), (100, 12, False)]


def test_json_strings_parse_like_java(con) -> None:
    columns = cols("I INT", "D DOUBLE", "M DECIMAL(4,2)")
    good = b'{"I": "-12", "D": "1e3", "M": "1.255"}'
    rows = decode_rows(con, format_for("JSON"), [good, b'{"I": "1.5"}', b'{"I": " 1"}', b'{"D": "x"}'], columns)
    assert rows[0][:4] == (-12, 1000.0, Decimal("1.26"), False)
    assert [r[3] for r in rows[1:]] == [True, True, True]
    assert rows[3][4] == "Can't coerce string to type. targetType: DOUBLE, path: $.D"


@pytest.mark.parametrize(
    ("value", "node"), [(b"1", "LongNode"), (b"1.5", "DecimalNode"), (b'"true"', "TextNode"), (b"[]", "ArrayNode")]
)
def test_json_boolean_accepts_only_booleans(con, value: bytes, node: str) -> None:
    rows = decode_rows(con, format_for("JSON"), [b'{"B": ' + value + b"}", b'{"B": false}'], cols("B BOOLEAN"))
    assert rows[0][1] is True
    assert rows[0][2] == f"Can't convert type. sourceType: {node}, requiredType: BOOLEAN, path: $.B"
    assert rows[1][:2] == (False, False)


def test_json_booleans_and_objects_do_not_convert_to_numbers(con) -> None:
    columns = cols("I INT", "D DOUBLE", "M DECIMAL(4,2)")
    for value in (b"true", b"{}", b"[1]"):
        rows = decode_rows(con, format_for("JSON"), [b'{"I": ' + value + b"}", b'{"D": ' + value + b"}"], columns)
        assert [r[3] for r in rows] == [True, True]


def test_json_any_value_converts_to_string(con) -> None:
    blobs = [b'{"S": 1.5}', b'{"S": true}', b'{"S": {"a": [1, "x"]}}', b'{"S": ["a", 1, null]}', b'{"S": null}']
    rows = decode_rows(con, format_for("JSON"), blobs, cols("S STRING"))
    assert [r[0] for r in rows] == ["1.5", "true", '{"a":[1,"x"]}', "[a, 1, null]", None]
    assert not any(r[1] for r in rows)


def test_json_nested_element_errors_fail_the_record(con) -> None:
    columns = cols("A ARRAY<INT>", "M MAP<STRING, BOOLEAN>", "S STRUCT<X DOUBLE>")
    blobs = [b'{"A": [1, "x"]}', b'{"M": {"k": 1}}', b'{"S": {"x": "y"}}', b'{"A": [1, null], "M": {"k": true}}']
    rows = decode_rows(con, format_for("JSON"), blobs, columns)
    assert [r[3] for r in rows] == [True, True, True, False]
    assert rows[3][:3] == ([1, None], {"k": True}, None)


def test_json_unwrapped_single_value(con) -> None:
    fmt = format_for("JSON")
    columns = cols("FOO STRING")
    assert encode_rows(con, fmt, "SELECT 'bar' AS FOO UNION ALL SELECT NULL", columns, wrap=False) == [
        b'"bar"',
        None,
    ]
    rows = decode_rows(con, fmt, [b'"bar"', None], columns, wrap=False)
    assert [r[:2] for r in rows] == [("bar", False), (None, False)]


def test_json_python_side() -> None:
    fmt = format_for("JSON")
    columns = cols("M DECIMAL(4,2)", "D DOUBLE", "BY BYTES")
    assert fmt.encode_python({"M": Decimal("1.50"), "x": [1, None]}, columns) == b'{"M":1.50,"x":[1,null]}'
    assert fmt.encode_python(None, columns) is None
    value = fmt.decode_python(b'{"M":1.5,"D":1,"BY":"aGk="}', columns, wrap_single_value=True)
    assert value == {"M": Decimal("1.50"), "D": 1.0, "BY": b"hi"}
    assert str(value["M"]) == "1.50" and isinstance(value["D"], float)
    assert fmt.decode_python(b'{"a":1.25}', [], wrap_single_value=True) == {"a": Decimal("1.25")}


# -- Java double rendering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "java"),
    [
        ("1.0", "1.0"),
        ("0.0", "0.0"),
        ("-0.0", "-0.0"),
        ("1e10", "1.0E10"),
        ("1e7", "1.0E7"),
        ("9999999.0", "9999999.0"),
        ("0.001", "0.001"),
        ("0.0001", "1.0E-4"),
        ("123.456", "123.456"),
        ("-1e-5", "-1.0E-5"),
        ("4.9E-324", "4.9E-324"),
        ("1.7976931348623157E308", "1.7976931348623157E308"),
        ("2.2250738585072014E-308", "2.2250738585072014E-308"),
        ("100.0", "100.0"),
        ("1.5e300", "1.5E300"),
        ("'nan'", "NaN"),
        ("'inf'", "Infinity"),
        ("'-inf'", "-Infinity"),
    ],
)
def test_java_double_rendering(con, value: str, java: str) -> None:
    assert con.sql(f"SELECT nbs_java_double({value}::DOUBLE)").fetchall()[0][0] == java


# -- DELIMITED ------------------------------------------------------------------------------------

DCOLS = cols("A INT", "B STRING", "C DOUBLE", "E DECIMAL(33,16)")


def test_delimited_encode_quoting_and_rendering(con) -> None:
    sql = (
        "SELECT -1 AS A, 'a,\"b' AS B, 1e-5::DOUBLE AS C, -12345.12::DECIMAL(33,16) AS E"
        " UNION ALL SELECT 2, NULL, 0.0, NULL UNION ALL SELECT 3, '#x', 1.0, 0"
    )
    assert encode_rows(con, format_for("DELIMITED"), sql, DCOLS) == [
        b'"-1","a,""b",1.0E-5,-12345.1200000000000000',
        b"2,,0.0,",
        b'3,"#x",1.0,0.0000000000000000',
    ]


@pytest.mark.parametrize("spec, value, line", [
    ("D DATE", "DATE '1969-12-31'", b'"-1"'),
    ("D DATE", "DATE '1970-01-11'", b"10"),
    ("T TIME", "TIME '00:00:01'", b"1000"),
    ("TS TIMESTAMP", "TIMESTAMP '1969-12-31 23:59:59'", b'"-1000"'),
])
def test_delimited_first_temporal_field_quotes_a_negative_epoch(con, spec: str, value: str, line: bytes) -> None:
    column = cols(spec, "X INT")
    sql = f'SELECT {value} AS "{column[0].name}", 1 AS X'
    assert encode_rows(con, format_for("DELIMITED"), sql, column) == [line + b",1"]


def test_delimited_decode_and_errors(con) -> None:
    blobs = [b"1,x,0.0,.12", b'2,"a,""b",,"-12345.12"', b"3,x", b"x,y,z,1", b"1.5,y,1,1", None]
    rows = decode_rows(con, format_for("DELIMITED"), blobs, DCOLS)
    assert rows[0][:5] == (1, "x", 0.0, Decimal("0.12"), False)
    assert rows[1][:5] == (2, 'a,"b', None, Decimal("-12345.12"), False)
    assert rows[2][4] is True and "csvFields:2" in rows[2][5]
    assert rows[3][4] is True and rows[4][4] is True
    assert rows[5][4] is False


def test_delimited_quoted_fields_and_empty_fields(con) -> None:
    columns = cols("A STRING", "B STRING", "C INT")
    blobs = [b'"x,y","say ""hi""",3', b'"",,', b'a,"",1']
    rows = decode_rows(con, format_for("DELIMITED"), blobs, columns)
    assert [r[:4] for r in rows] == [("x,y", 'say "hi"', 3, False), (None, None, None, False), ("a", None, 1, False)]


def test_delimited_booleans_parse_like_java(con) -> None:
    rows = decode_rows(con, format_for("DELIMITED"), [b"TRUE", b"yes", b"false"], cols("B BOOLEAN"))
    assert [r[:2] for r in rows] == [(True, False), (False, False), (False, False)]


def test_delimited_custom_delimiter_round_trip(con) -> None:
    fmt = format_for("DELIMITED", {"VALUE_DELIMITER": "TAB"})
    columns = cols("ID BIGINT", "NAME STRING")
    blobs = encode_rows(con, fmt, "SELECT 0::BIGINT AS ID, 'zero' AS NAME", columns)
    assert blobs == [b"0\tzero"]
    assert decode_rows(con, fmt, blobs, columns)[0][:3] == (0, "zero", False)


def test_delimited_single_null_key_is_null() -> None:
    fmt = format_for("DELIMITED")
    assert fmt.encode_sql([(cols("K STRING")[0], "k")], wrap_single_value=False).startswith(
        "CASE WHEN k IS NOT NULL"
    )
    assert fmt.decode_python(b"a,b", [], wrap_single_value=False) == "a,b"


# -- KAFKA and NONE -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "sql_value", "python_value"),
    [
        ("K INT", "-2", -2),
        ("K BIGINT", "998877665544332211", 998877665544332211),
        ("K DOUBLE", "1.5", 1.5),
        ("K STRING", "'héllo'", "héllo"),
        ("K BYTES", "'\\x01\\x02'::BLOB", b"\x01\x02"),
    ],
)
def test_kafka_round_trip(con, spec: str, sql_value: str, python_value: object) -> None:
    fmt = format_for("KAFKA")
    columns = cols(spec)
    blobs = encode_rows(con, fmt, f"SELECT {sql_value}::{columns[0].type.duckdb()} AS K", columns)
    assert blobs == [fmt.encode_python(python_value, columns)]
    assert decode_rows(con, fmt, blobs, columns)[0][:2] == (python_value, False)
    assert fmt.decode_python(blobs[0], columns, wrap_single_value=False) == python_value


def test_kafka_wrong_size_is_an_error(con) -> None:
    rows = decode_rows(con, format_for("KAFKA"), [b"\x01", None], cols("K INT"))
    assert rows[0][1:] == (True, "Size of data received by IntegerDeserializer is not 4")
    assert rows[1][:2] == (None, False)


def test_kafka_bytes_given_as_base64_text() -> None:
    assert format_for("KAFKA").encode_python("aGk=", cols("K BYTES")) == b"hi"


def test_none_format() -> None:
    fmt = format_for("NONE")
    assert fmt.decode_sql("b", [], wrap_single_value=False).columns == ()
    assert fmt.encode_python("x", []) is None and fmt.decode_python(b"x", [], wrap_single_value=False) is None


def test_a_null_double_is_written_as_json_null() -> None:
    import duckdb

    from nbstream.catalog.schema import Column
    from nbstream.catalog.types import DOUBLE
    from nbstream.formats import format_for, register_udfs

    con = duckdb.connect()
    register_udfs(con)
    blob = format_for("JSON").encode_sql([(Column("D", DOUBLE), "NULL::DOUBLE")], wrap_single_value=True)
    assert con.execute(f"SELECT decode({blob})").fetchall() == [('{"D":null}',)]


@pytest.mark.parametrize("sql_type", ["ARRAY<INTEGER>", "MAP<STRING, INTEGER>", "BYTES"])
def test_null_nested_and_bytes_values_are_written_as_json_null(sql_type: str) -> None:
    import duckdb

    from nbstream.catalog.schema import Column
    from nbstream.catalog.types import parse_type
    from nbstream.formats import format_for, register_udfs

    con = duckdb.connect()
    register_udfs(con)
    t = parse_type(sql_type)
    blob = format_for("JSON").encode_sql([(Column("V", t), f"NULL::{t.duckdb()}")], wrap_single_value=True)
    assert con.execute(f"SELECT decode({blob})").fetchall() == [('{"V":null}',)]


def test_json_fields_match_per_record_and_paths_agree(con) -> None:
    # Records on the fast path (exact names, natural kinds) and on the slow path in one batch.
    columns = cols("ID BIGINT", "BY BYTES", "S STRING")
    blobs = [b'{"ID": 5, "BY": "aGk=", "S": "a"}', b'{"Id": 1, "iD": 2}', b'{"id": 7, "ID": null, "BY": null}',
             b'{"ID": 1.7, "S": 3}', b'{"ID": true, "S": "x"}']
    rows = decode_rows(con, format_for("JSON"), blobs, columns)
    assert [r[:4] for r in rows[:4]] == [(5, b"hi", "a", False), (2, None, None, False), (None, None, None, False),
                                         (1, None, "3", False)]
    assert rows[4][3] is True
    assert rows[4][4] == "Can't convert type. sourceType: BooleanNode, requiredType: BIGINT, path: $.ID"


def test_json_key_and_value_lets_do_not_clash(con) -> None:
    # decode_select evaluates both sides over one relation: each names its lets after its blob.
    fmt = format_for("JSON")
    key = fmt.decode_sql('"key"', cols("K STRING"), wrap_single_value=False)
    value = fmt.decode_sql('"value"', cols("K STRING", "V INT"), wrap_single_value=True)
    assert key.lets and value.lets
    assert not {n for layer in key.lets for n, _ in layer} & {n for layer in value.lets for n, _ in layer}
    con.execute("""CREATE OR REPLACE TEMP TABLE kv AS SELECT * FROM (VALUES
        (encode('"a"'), encode('{"K": "b", "V": 1}')),
        (encode('"c"'), encode('{"k": "d", "v": "x"}'))) t("key", "value")""")
    exprs = [*key.columns, *value.columns, value.error or "false", value.error_message or "NULL"]
    rows = con.sql(f"SELECT {', '.join(exprs)} FROM {let_relation('kv', key, value)} ORDER BY 1").fetchall()
    assert rows == [("a", "b", 1, False, None),
                    ("c", "d", None, True, "Can't coerce string to type. targetType: INTEGER, path: $.V")]


def test_let_relation_nests_one_select_per_layer() -> None:
    first = Decoded(("a",), lets=((("__x", "1"),), (("__y", "__x + 1"),)))
    second = Decoded(("b",), lets=((("__z", "2"),),))
    assert let_relation("t", Decoded(())) == "t"
    assert let_relation("t", first, second) == "(SELECT *, __x + 1 AS __y FROM (SELECT *, 1 AS __x, 2 AS __z FROM t))"
