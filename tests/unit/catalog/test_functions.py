"""ksqlDB's scalar functions, evaluated in DuckDB.

Each case reads as a specification: ``FUNCTION(args) = expected``. Arguments are DuckDB SQL (the
form the compiler hands to ``compile_function``); cases come from ksqlDB's query-validation tests
(``/work/shared/conformance/ksql-qtt``: concat, instr, regex, replace, split, string-lpad-rpad,
substring, url, to_json_string, greatest, math, timestampformat, create_map, map, array, cast)
and from ksqlDB's function reference.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from nbstream.catalog.functions import (
    DuckDBTypeOracle,
    compile_function,
    describe_function,
    function_names,
    is_aggregate,
    java_pattern,
    register_udfs,
)
from nbstream.errors import SqlTypeError, UnknownNameError

NULL_STR = "CAST(NULL AS VARCHAR)"
NULL_INT = "CAST(NULL AS INTEGER)"


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    register_udfs(connection)
    register_udfs(connection)  # idempotent
    return connection


def arg(value: str | exp.Expression) -> exp.Expression:
    return value if isinstance(value, exp.Expression) else sqlglot.parse_one(value, read="duckdb")


def evaluate(con: duckdb.DuckDBPyConnection, name: str, *args: str | exp.Expression) -> object:
    compiled = compile_function(name, [arg(a) for a in args], DuckDBTypeOracle(con))
    row = con.execute(f"SELECT {compiled.sql('duckdb')}").fetchone()
    assert row is not None
    return row[0]


def b(text: str) -> bytes:
    return text.encode()


CASES: list[tuple[str, tuple[str | exp.Expression, ...], object]] = [
    # -- concat.json -----------------------------------------------------------------------------
    ("CONCAT", ("'prefix-'", "'s1'", "'-postfix'"), "prefix-s1-postfix"),
    ("CONCAT", ("'\"'", "'foo\\'"), '"foo\\'),
    ("CONCAT", ("CAST('yes' AS BLOB)", "NULL", "CAST('no' AS BLOB)"), b"yesno"),
    ("CONCAT_WS", ("'SEP'", "'foo'", "'bar'", "'baz'", "NULL", "'literal'"), "fooSEPbarSEPbazSEPliteral"),
    ("CONCAT_WS", ("'SEP'", "'foo'", NULL_STR, "'baz'", "NULL", "'literal'"), "fooSEPbazSEPliteral"),
    ("CONCAT_WS", ("'SEP'", NULL_STR, NULL_STR, NULL_STR, "NULL", "'literal'"), "literal"),
    ("CONCAT_WS", (NULL_STR, "'foo'", "'bar'"), None),
    (
        "CONCAT_WS",
        ("CAST('a' AS BLOB)", "CAST('b' AS BLOB)", "CAST('yes' AS BLOB)", "NULL", "CAST('no' AS BLOB)"),
        b"bayesano",
    ),
    ("CONCAT_WS", ("CAST('a' AS BLOB)", "CAST(NULL AS BLOB)", "NULL"), b""),
    # -- instr.json ------------------------------------------------------------------------------
    ("INSTR", ("'corporate floor'", "'or'"), 2),
    ("INSTR", ("'should I stay or should I go'", "'or'"), 15),
    ("INSTR", ("'no substring'", "'or'"), 0),
    ("INSTR", ("'corporate floor'", "'or'", "4"), 5),
    ("INSTR", ("'corporate floor'", "'or'", "4", "2"), 14),
    ("INSTR", ("'short'", "'or'", "4", "2"), 0),
    ("INSTR", ("'corporate floor'", "'or'", "-4"), 5),
    ("INSTR", ("'corporate floor'", "'or'", "-4", "2"), 2),
    ("INSTR", ("'short'", "'or'", "-4"), 0),
    ("INSTR", (NULL_STR, "'or'"), None),
    # -- regex.json / replace.json ---------------------------------------------------------------
    ("REGEXP_EXTRACT", ("'test.'", "'some_test_string'"), "test_"),
    ("REGEXP_EXTRACT", ("'test.'", "'anothertest'"), None),
    ("REGEXP_EXTRACT", ("'(.*) (.*)'", "'steven zhang'", "2"), "zhang"),
    ("REGEXP_EXTRACT", ("'(.*) (.*)'", "'agavra'", "2"), None),
    ("REGEXP_EXTRACT", ("'test.'", NULL_STR), None),
    ("REGEXP_EXTRACT_ALL", ("'test.'", "'some_test_string_testabab'"), ["test_", "testa"]),
    ("REGEXP_EXTRACT_ALL", ("'test.'", "'nothing'"), []),
    ("REGEXP_EXTRACT_ALL", ("'(\\w+) (\\w*)'", "'apurva mehta agavra '", "2"), ["mehta", ""]),
    ("REGEXP_EXTRACT_ALL", ("'test.'", NULL_STR), None),
    ("REPLACE", ("'anaconda'", "'a'", "'o'"), "onocondo"),
    ("REPLACE", ("'anaconda'", "NULL", "'o'"), None),
    ("REPLACE", ("'anaconda'", "'a'", "NULL"), None),
    ("REGEXP_REPLACE", ("'baababaa'", "'(ab)+'", "'cat'"), "bacataa"),
    ("REGEXP_REPLACE", ("'baabbabaa'", "'(ab)+'", "'cat'"), "bacatbcataa"),
    ("REGEXP_REPLACE", ("'john smith'", "'(\\w+) (\\w+)'", "'$2, $1'"), "smith, john"),
    ("REGEXP_REPLACE", ("'baababaa'", NULL_STR, "'cat'"), None),
    # -- split.json ------------------------------------------------------------------------------
    ("SPLIT", ("'a.b.c'", "'.'"), ["a", "b", "c"]),
    ("SPLIT", ("'..a..'", "'.'"), ["", "", "a", "", ""]),
    ("SPLIT", ("''", "'.'"), [""]),
    ("SPLIT", ("'a$$b.c'", "'$$'"), ["a", "b.c"]),
    ("SPLIT", ("'a.b.c'", "''"), ["a", ".", "b", ".", "c"]),
    ("SPLIT", ("''", "''"), [""]),
    ("SPLIT", ("CAST('.abc.' AS BLOB)", "CAST('.' AS BLOB)"), [b"", b"abc", b""]),
    ("SPLIT", ("CAST('abc' AS BLOB)", "CAST('' AS BLOB)"), [b"a", b"b", b"c"]),
    ("SPLIT", ("CAST('' AS BLOB)", "CAST('' AS BLOB)"), [b""]),
    ("REGEXP_SPLIT_TO_ARRAY", ("'aabcda'", "'(ab|cd)'"), ["a", "", "a"]),
    ("REGEXP_SPLIT_TO_ARRAY", ("'zxy'", "'(ab|cd)'"), ["zxy"]),
    ("REGEXP_SPLIT_TO_ARRAY", ("'zxy'", NULL_STR), None),
    ("SPLIT_TO_MAP", ("'apple:green/banana:yellow'", "'/'", "':'"), {"apple": "green", "banana": "yellow"}),
    ("SPLIT_TO_MAP", ("'a:b'", "''", "':'"), None),  # an empty delimiter: null, as ksqlDB
    # -- string-lpad-rpad.json -------------------------------------------------------------------
    ("LPAD", ("'foo'", "7", "'Bar'"), "BarBfoo"),
    ("LPAD", ("'foo'", "5", "'Bar'"), "Bafoo"),
    ("LPAD", ("'foo'", "2", "'Bar'"), "fo"),
    ("LPAD", ("'foo'", "-1", "'Bar'"), None),
    ("LPAD", ("'foo'", "5", NULL_STR), None),
    ("LPAD", ("'foo'", NULL_INT, "'Bar'"), None),
    ("LPAD", ("'foo'", "5", "''"), None),
    ("RPAD", ("'foo'", "7", "'Bar'"), "fooBarB"),
    ("RPAD", ("'foo'", "2", "'Bar'"), "fo"),
    ("RPAD", ("CAST('foo' AS BLOB)", "5", "CAST('Ba' AS BLOB)"), b"fooBa"),
    # -- substring.json --------------------------------------------------------------------------
    ("SUBSTRING", ("'some_string'", "6"), "string"),
    ("SUBSTRING", ("'another'", "6"), "er"),
    ("SUBSTRING", ("'short'", "6"), ""),
    ("SUBSTRING", (NULL_STR, "1"), None),
    ("SUBSTRING", ("'some_string'", NULL_INT), None),
    ("SUBSTRING", ("'some_string'", "6", "3"), "str"),
    ("SUBSTRING", ("'some_string'", "6", NULL_INT), None),
    ("SUBSTRING", ("'some string'", "0", "2"), "so"),
    ("SUBSTRING", ("'some_string'", "-6", "3"), "str"),
    ("SUBSTRING", ("'abc'", "-6"), "abc"),
    ("SUBSTRING", ("CAST('some_string' AS BLOB)", "6", "3"), b"str"),
    ("SUBSTRING", ("CAST('another' AS BLOB)", "6"), b"er"),
    # -- other strings ---------------------------------------------------------------------------
    ("UCASE", ("'aBc'",), "ABC"),
    ("LCASE", ("'aBc'",), "abc"),
    ("TRIM", ("'  a b  '",), "a b"),
    ("TRIM", ("'\t a \n'",), "a"),  # Java's trim: control characters too
    ("LEN", ("'héllo'",), 5),
    ("LEN", ("CAST('abc' AS BLOB)",), 3),
    ("INITCAP", ("'the FOX jumps'",), "The Fox Jumps"),
    ("CHR", ("75",), "K"),
    ("MASK", ("'Abc-12'",), "Xxx-nn"),
    ("MASK", ("'Abc-12'", "'U'", "'l'", "'#'", "NULL"), "Ull-##"),
    ("MASK_KEEP_LEFT", ("'Abc-12'", "2"), "Abx-nn"),
    ("MASK_KEEP_RIGHT", ("'Abc-12'", "2"), "Xxx-12"),
    ("MASK_LEFT", ("'Abc-12'", "2"), "Xxc-12"),
    ("MASK_RIGHT", ("'Abc-12'", "2"), "Abc-nn"),
    ("TO_BYTES", ("'IQ=='", "'base64'"), b"!"),
    ("FROM_BYTES", ("CAST('hi' AS BLOB)", "'hex'"), "6869"),
    ("FROM_BYTES", ("unhex('ab')", "'hex'"), "AB"),  # upper-case digits, as ksqlDB
    ("FROM_BYTES", ("CAST('hi' AS BLOB)", "'utf8'"), "hi"),
    ("ENCODE", ("'hi'", "'utf8'", "'base64'"), "aGk="),
    ("ENCODE", ("'6869'", "'hex'", "'ascii'"), "hi"),
    ("ELT", ("2", "'a'", "'b'"), "b"),
    ("ELT", ("3", "'a'", "'b'"), None),
    ("FIELD", ("'b'", "'a'", "'b'"), 2),
    ("FIELD", ("'c'", "'a'", "'b'"), 0),
    ("AS_VALUE", ("'k'",), "k"),
    # -- url.json --------------------------------------------------------------------------------
    ("URL_ENCODE_PARAM", ("'?foo $bar'",), "%3Ffoo+%24bar"),
    ("URL_ENCODE_PARAM", ("'hello&world'",), "hello%26world"),
    ("URL_DECODE_PARAM", ("'%3Ffoo+%24bar'",), "?foo $bar"),
    ("URL_EXTRACT_FRAGMENT", ("'http://www.test.com/?query#fragment'",), "fragment"),
    ("URL_EXTRACT_FRAGMENT", ("'http://www.nofragment.com'",), None),
    ("URL_EXTRACT_HOST", ("'http://www.test.com/?query#fragment'",), "www.test.com"),
    ("URL_EXTRACT_HOST", ("'http://test@confluent.io:8080'",), "confluent.io"),
    ("URL_EXTRACT_PARAMETER", ("'http://www.test.com/?one=a&two=b&three'", "'one'"), "a"),
    ("URL_EXTRACT_PARAMETER", ("'http://www.test.com/?one=a&two=b&three'", "'two'"), "b"),
    ("URL_EXTRACT_PARAMETER", ("'http://www.test.com/?one=a&two=b&three'", "'four'"), None),
    ("URL_EXTRACT_PATH", ("'http://www.test.com?query#fragment'",), ""),
    ("URL_EXTRACT_PATH", ("'http://test@confluent.io:8080/nested/path?query&jobs'",), "/nested/path"),
    ("URL_EXTRACT_PORT", ("'http://test@confluent.io'",), None),
    ("URL_EXTRACT_PORT", ("'http://test@confluent.io:8080/nested/path?query&jobs'",), 8080),
    ("URL_EXTRACT_PROTOCOL", ("'https://test@confluent.io:8080/nested/path?query&jobs'",), "https"),
    ("URL_EXTRACT_PROTOCOL", ("'www.confluent.io'",), None),
    ("URL_EXTRACT_QUERY", ("'http://www.test.com?query#fragment'",), "query"),
    ("URL_EXTRACT_QUERY", ("'http://www.test.com/path?q1&q2'",), "q1&q2"),
    ("URL_EXTRACT_QUERY", ("'http://test@confluent.io:8080/path'",), None),
    # -- to_json_string.json ---------------------------------------------------------------------
    ("TO_JSON_STRING", ("1",), "1"),
    ("TO_JSON_STRING", (NULL_INT,), "null"),
    ("TO_JSON_STRING", ("'abc'",), '"abc"'),
    ("TO_JSON_STRING", ("TRUE",), "true"),
    ("TO_JSON_STRING", ("123.456::DOUBLE",), "123.456"),
    ("TO_JSON_STRING", ("123.456::DECIMAL(6,3)",), "123.456"),
    ("TO_JSON_STRING", ("CAST('!' AS BLOB)",), '"IQ=="'),
    ("TO_JSON_STRING", ("TIME '16:43:40'",), '"16:43:40"'),
    ("TO_JSON_STRING", ("DATE '1972-09-27'",), '"1972-09-27"'),
    ("TO_JSON_STRING", ("epoch_ms(60220000000)",), '"1971-11-28T23:46:40.000"'),
    ("TO_JSON_STRING", ("[1, 2, 3]",), "[1,2,3]"),
    ("TO_JSON_STRING", ("{'ID': 1, 'NAME': 'Alice'}",), '{"ID":1,"NAME":"Alice"}'),
    ("TO_JSON_STRING", ("MAP {'id': [1, 2, 3]}",), '{"id":[1,2,3]}'),
    ("TO_JSON_STRING", ("{'T': [epoch_ms(0)]}",), '{"T":["1970-01-01T00:00:00.000"]}'),
    # -- greatest.json ---------------------------------------------------------------------------
    ("GREATEST", ("2147483647", "CAST(-2147483648 AS INTEGER)", NULL_INT, "NULL", "5"), 2147483647),
    ("GREATEST", ("123456.789::DECIMAL(9,3)", "-987654.321::DECIMAL(9,3)", "NULL"), Decimal("123456.789")),
    (
        "GREATEST",
        ("-1", "1000000000000::BIGINT", "99999.99999::DECIMAL(30,18)", "CAST(NULL AS DOUBLE)", "NULL"),
        1000000000000.0,
    ),
    ("GREATEST", ("1234567.89::DECIMAL(9,2)", "0.123456::DECIMAL(7,6)"), Decimal("1234567.890000")),
    ("GREATEST", ("'apple'", "'banana'", "'aardvark'", NULL_STR, "NULL", "NULL", "'hello'"), "hello"),
    ("GREATEST", ("DATE '2022-03-20'", "CAST(NULL AS DATE)", "'2022-06-14'"), dt.date(2022, 6, 14)),
    ("GREATEST", ("TIME '09:15:59.999'", "'09:16:00'"), dt.time(9, 16)),
    ("GREATEST", ("epoch_ms(1657756800000)", "'2022-06-14'"), dt.datetime(2022, 7, 14)),
    ("LEAST", ("3", "NULL", "1", "2"), 1),
    # -- math.json -------------------------------------------------------------------------------
    ("EXP", ("1",), 2.718281828459045),
    ("EXP", ("-3.0::DOUBLE",), 0.049787068367863944),
    ("EXP", (NULL_INT,), None),
    ("LN", ("2",), 0.6931471805599453),
    ("LN", ("0",), -math.inf),
    ("SQRT", ("2",), 1.4142135623730951),
    ("SIGN", ("-3.0::DOUBLE",), -1),
    ("SIGN", ("0",), 0),
    ("FLOOR", ("1.7::DOUBLE",), 1.0),
    ("FLOOR", ("1",), 1),
    ("CEIL", ("1.1::DOUBLE",), 2.0),
    ("CEIL", ("1.1::DECIMAL(2,1)",), Decimal("2")),
    ("ABS", ("-3.2::DECIMAL(2,1)",), Decimal("3.2")),
    ("ABS", ("-2::BIGINT",), 2),
    ("ROUND", ("1.5::DOUBLE",), 2),
    ("ROUND", ("1.2::DOUBLE",), 1),
    ("ROUND", ("1.5::DOUBLE", "0"), 2.0),
    ("ROUND", ("1.234567::DOUBLE", "2"), 1.23),
    ("ROUND", ("1.7::DOUBLE", "-1"), 0.0),
    ("ROUND", ("-1.5::DOUBLE",), -1),
    ("ROUND", ("-1.5::DOUBLE", "0"), -1.0),
    ("ROUND", ("-1.5::DOUBLE", "-1"), 0.0),
    ("ROUND", ("1.25::DECIMAL(3,2)", "1"), Decimal("1.30")),
    ("ROUND", ("3",), 3),
    ("ROUND", ("12345678987654321.2345678987654321::DECIMAL(33,16)",), Decimal("12345678987654321")),
    (
        "ROUND",
        ("12345678987654321.2345678987654321::DECIMAL(33,16)", "2"),
        Decimal("12345678987654321.2300000000000000"),
    ),
    (
        "ROUND",
        ("12345678987654321.2345678987654321::DECIMAL(33,16)", "-1"),
        Decimal("12345678987654320.0000000000000000"),
    ),
    ("TRUNC", ("1.7::DOUBLE",), 1),
    ("TRUNC", ("-1.7::DOUBLE",), -1),
    ("TRUNC", ("1.234567::DOUBLE", "2"), 1.23),
    ("TRUNC", ("1.234567::DECIMAL(7,6)", "2"), Decimal("1.230000")),
    ("TRUNC", ("111",), 111),
    ("CBRT", ("-8",), -2.0),
    ("POWER", ("15", "-1"), 0.06666666666666667),
    ("POWER", ("0", "0"), 1.0),
    ("POWER", (NULL_INT, "13"), None),
    ("LOG", ("13",), 2.5649493574615367),  # ksqlDB's LOG(x) is Math.log: the natural logarithm
    ("LOG", ("0",), -math.inf),
    ("LOG", ("15", "13"), 0.9471572411831843),
    ("LOG", ("15", "0"), -math.inf),
    ("LOG", (NULL_INT, "13"), None),
    ("LOG", ("15", NULL_INT), None),
    ("COT", ("0",), math.inf),
    ("PI", (), math.pi),
    ("GEO_DISTANCE", ("0", "0", "0", "1"), 6371 * math.pi / 180),
    ("GEO_DISTANCE", ("0", "0", "1", "0", "'MILES'"), 3959 * math.pi / 180),
    ("ATAN2", ("-2", "0"), -1.5707963267949),
    # -- arrays, maps (array.json, map.json, create_map.json) -------------------------------------
    ("ARRAY_LENGTH", ("[1, 2]",), 2),
    ("ARRAY_LENGTH", ("CAST(NULL AS INTEGER[])",), None),
    ("ARRAY_CONTAINS", ("[1, 2]", "2"), True),
    ("ARRAY_CONTAINS", ("[1, NULL]", "NULL"), True),
    ("ARRAY_CONTAINS", ("CAST(NULL AS INTEGER[])", "2"), False),
    ("ARRAY_DISTINCT", ("[1, NULL, 2, 1, NULL]",), [1, None, 2]),
    ("ARRAY_EXCEPT", ("[1, 2, 3, 2]", "[2]"), [1, 3]),
    ("ARRAY_INTERSECT", ("[1, 2, 3, 2]", "[2, 3, 4]"), [2, 3]),
    ("ARRAY_UNION", ("[1, 2]", "[2, 3]"), [1, 2, 3]),
    ("ARRAY_JOIN", ("[1, NULL, 3]",), "1,null,3"),
    ("ARRAY_JOIN", ("['a', 'b']", "'|'"), "a|b"),
    ("ARRAY_MAX", ("[1, NULL, 3]",), 3),
    ("ARRAY_MIN", ("['b', 'a']",), "a"),
    ("ARRAY_REMOVE", ("[1, 2, 1, NULL]", "1"), [2, None]),
    ("ARRAY_SORT", ("['foo', 'bar', NULL, 'baz']",), ["bar", "baz", "foo", None]),
    ("ARRAY_SORT", ("[1, NULL, 3]", "'DESC'"), [3, 1, None]),
    ("ARRAY_CONCAT", ("[1]", "[2, 3]"), [1, 2, 3]),
    ("ARRAY_CONCAT", ("CAST(NULL AS INT[])", "CAST(NULL AS INT[])"), None),
    ("ARRAY_CONCAT", ("CAST(NULL AS INT[])", "[2]"), [2]),
    ("SLICE", ("[1, 2, 3, 4]", "2", "3"), [2, 3]),
    ("GENERATE_SERIES", ("0", "3"), [0, 1, 2, 3]),
    ("GENERATE_SERIES", ("4", "0"), [4, 3, 2, 1, 0]),
    ("GENERATE_SERIES", ("-2", "1", "2"), [-2, 0]),
    ("GENERATE_SERIES", ("9", "0", "-3"), [9, 6, 3, 0]),
    ("ENTRIES", ("MAP {'K2': 2, 'K1': 1}", "TRUE"), [{"K": "K1", "V": 1}, {"K": "K2", "V": 2}]),
    ("MAP_KEYS", ("MAP {'foo': 10, 'bar': 20}",), ["foo", "bar"]),
    ("MAP_VALUES", ("MAP {'foo': 10, 'bar': NULL}",), [10, None]),
    (
        "MAP_UNION",
        ("MAP {'foo': 10, 'bar': 20}", "MAP {'foo': 99, 'apple': -1}"),
        {"foo": 99, "bar": 20, "apple": -1},
    ),
    ("MAP_UNION", ("MAP {'foo': 10, 'bar': 20}", "MAP {'foo': NULL}"), {"foo": None, "bar": 20}),
    ("MAP_UNION", ("CAST(NULL AS MAP(VARCHAR, INTEGER))", "MAP {'foo': NULL::INTEGER}"), {"foo": None}),
    ("AS_MAP", ("['a', 'b']", "[1, 2, 3]"), {"a": 1, "b": 2}),
    ("AS_MAP", ("['a', 'b', 'c']", "[1, 2]"), {"a": 1, "b": 2, "c": None}),
    # lambdas (TRANSFORM, FILTER, REDUCE): tests/unit/physical/test_lambdas.py
    # -- json ------------------------------------------------------------------------------------
    ("EXTRACTJSONFIELD", ('\'{"city": "London"}\'', "'$.city'"), "London"),
    ("EXTRACTJSONFIELD", ('\'{"a": {"b": [1, 2]}}\'', "'$.a.b[1]'"), "2"),
    ("EXTRACTJSONFIELD", ("'not json'", "'$.city'"), None),
    ("EXTRACTJSONFIELD", ('\'{"a": [1, 2]}\'', "'$.a[-1]'"), None),  # no index from the end
    ("IS_JSON_STRING", ("'[1, 2]'",), True),
    ("IS_JSON_STRING", ("'abc'",), False),
    ("JSON_ARRAY_LENGTH", ("'[1, 2, 3]'",), 3),
    ("JSON_ARRAY_LENGTH", ("'{}'",), None),
    ("JSON_ARRAY_CONTAINS", ("'[1, 2, 3]'", "2"), True),
    ("JSON_ARRAY_CONTAINS", ("'[\"a\", null]'", "'a'"), True),
    ("JSON_ARRAY_CONTAINS", ("'[1, 2]'", "5"), False),
    ("JSON_ITEMS", ("'[1, {\"a\": 2}]'",), ["1", '{"a":2}']),
    ("JSON_KEYS", ('\'{"a": 1, "b": 2}\'',), ["a", "b"]),
    ("JSON_RECORDS", ('\'{"a": 1, "b": "x", "c": {"d": [true]}}\'',),
     {"a": "1", "b": "x", "c": '{"d":[true]}'}),  # strings unquoted, as ksqlDB
    ("JSON_CONCAT", ("'{\"a\": 1}'", "'{\"b\": 2}'"), '{"a":1,"b":2}'),
    ("JSON_CONCAT", ("'[1, 2]'", "'[3]'"), "[1,2,3]"),
    ("JSON_CONCAT", ("'{\"a\": {\"x\": 1}}'", "'{\"a\": {\"y\": 2}}'"), '{"a":{"y":2}}'),  # shallow
    ("JSON_CONCAT", ("'[1, 2]'", "'{\"a\": 1}'"), '[1,2,{"a":1}]'),
    # -- dates and times (timestampformat.json and the reference) --------------------------------
    ("STRINGTOTIMESTAMP", ("'2018-05-11T21:58:33Z'", "'yyyy-MM-dd''T''HH:mm:ssX'"), 1526075913000),
    ("STRINGTOTIMESTAMP", ("'2019-08-27T13:31:09.2+0000'", "'yyyy-MM-dd''T''HH:mm:ss.SX'"), 1566912669200),
    (
        "STRINGTOTIMESTAMP",
        ("'2019-08-27 13:31'", "'yyyy-MM-dd HH:mm'", "'America/Los_Angeles'"),
        1566937860000,
    ),
    ("STRINGTOTIMESTAMP", ("'not a timestamp'", "'yyyy-MM-dd'"), None),
    ("TIMESTAMPTOSTRING", ("1526075913000", "'yyyy-MM-dd HH:mm:ss.SSS'"), "2018-05-11 21:58:33.000"),
    ("TIMESTAMPTOSTRING", ("1526075913000", "'yyyy-MM-dd HH:mm'", "'Europe/Paris'"), "2018-05-11 23:58"),
    ("PARSE_TIMESTAMP", ("'11/05/2018 21:58'", "'dd/MM/yyyy HH:mm'"), dt.datetime(2018, 5, 11, 21, 58)),
    (
        "FORMAT_TIMESTAMP",
        ("TIMESTAMP '2018-05-11 21:58:33'", "'yyyy-MM-dd''T''HH:mm:ss'"),
        "2018-05-11T21:58:33",
    ),
    ("PARSE_DATE", ("'2022-02-02'", "'yyyy-MM-dd'"), dt.date(2022, 2, 2)),
    ("PARSE_DATE", ("'abcd'", "'yyyy-MM-dd'"), None),
    # ksqlDB parses with FastDateFormat: trailing text is ignored, missing fields default
    ("PARSE_DATE", ("'2003-12-24-01-01'", "'yyyy-MM-dd'"), dt.date(2003, 12, 24)),
    ("PARSE_DATE", ("'2004'", "'yyyy-MM-dd'"), None),
    ("PARSE_DATE", ("'2004'", "'yyyy'"), dt.date(2004, 1, 1)),
    ("PARSE_DATE", ("'20220304x'", "'yyyyMMdd'"), dt.date(2022, 3, 4)),
    ("PARSE_DATE", ("'2018-05-11Lit'", "'yyyy-MM-dd''Lit'''"), dt.date(2018, 5, 11)),
    ("PARSE_DATE", ("'01-JAN-2022'", "'dd-MMM-yyyy'"), dt.date(2022, 1, 1)),
    ("PARSE_DATE", ("'2022-01-01 10:00'", "'yyyy-MM-dd HH:mm'"), None),  # has a time of day
    ("PARSE_DATE", (NULL_STR, "'yyyy-MM-dd'"), None),
    ("FORMAT_DATE", ("DATE '2022-02-02'", "'dd.MM.yyyy'"), "02.02.2022"),
    ("PARSE_TIME", ("'10:11:12'", "'HH:mm:ss'"), dt.time(10, 11, 12)),
    ("FORMAT_TIME", ("TIME '10:11:12'", "'HH.mm'"), "10.11"),
    ("STRINGTODATE", ("'2022-06-14'", "'yyyy-MM-dd'"), 19157),
    ("DATETOSTRING", ("19157", "'yyyy-MM-dd'"), "2022-06-14"),
    ("UNIX_TIMESTAMP", ("epoch_ms(1526075913000)",), 1526075913000),
    ("UNIX_DATE", ("DATE '2022-06-14'",), 19157),
    ("FROM_UNIXTIME", ("1526075913000",), dt.datetime(2018, 5, 11, 21, 58, 33)),
    ("DATEADD", ("DAYS", "3", "DATE '2022-06-14'"), dt.date(2022, 6, 17)),
    ("DATESUB", ("DAYS", "14", "DATE '2022-06-14'"), dt.date(2022, 5, 31)),
    ("TIMESTAMPADD", ("HOURS", "2", "TIMESTAMP '2022-06-14 23:00'"), dt.datetime(2022, 6, 15, 1)),
    (
        "TIMESTAMPSUB",
        ("MILLISECONDS", "500", "TIMESTAMP '2022-06-14 00:00:01'"),
        dt.datetime(2022, 6, 14, 0, 0, 0, 500000),
    ),
    ("TIMEADD", ("MINUTES", "30", "TIME '23:45'"), dt.time(0, 15)),
    (
        "CONVERT_TZ",
        ("TIMESTAMP '2022-06-14 12:00'", "'UTC'", "'America/New_York'"),
        dt.datetime(2022, 6, 14, 8),
    ),
    # -- null handling ---------------------------------------------------------------------------
    ("IFNULL", (NULL_STR, "'1900-01-01'"), "1900-01-01"),
    ("COALESCE", ("NULL", NULL_INT, "3", "4"), 3),
    ("NULLIF", ("1", "1"), None),
]


@pytest.mark.parametrize(
    ("name", "args", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_function(con: duckdb.DuckDBPyConnection, name: str, args: tuple, expected: object) -> None:
    result = evaluate(con, name, *args)
    if isinstance(expected, float) and isinstance(result, float):
        assert result == pytest.approx(expected, rel=1e-12, abs=1e-12) or (
            math.isinf(expected) and result == expected
        )
    else:
        assert result == expected


def test_nan_results(con: duckdb.DuckDBPyConnection) -> None:
    cases = [("LN", ("-1",)), ("SQRT", ("-2",)), ("ACOS", ("2",)), ("LOG", ("15", "-13")), ("LOG", ("-13",))]
    cases += [("LOG", (base, "13")) for base in ("-15", "0", "1", "CAST(0.0 AS DOUBLE)")]
    for name, args in cases:
        assert math.isnan(evaluate(con, name, *args)), name


def test_uuid_and_random(con: duckdb.DuckDBPyConnection) -> None:
    assert len(evaluate(con, "UUID")) == 36
    assert 0 <= evaluate(con, "RANDOM") < 1


def test_unknown_function_suggests_a_name(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown function `FLOR`\. Did you mean `FLOOR`"):
        compile_function("FLOR", [arg("1")], DuckDBTypeOracle(con))


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("SUBSTRING", ("'abc'", "'x'"), "SUBSTRING.*argument 2 must be INT, got STRING"),
        ("SUBSTRING", ("'abc'",), "does not accept 1 parameter"),
        ("GREATEST", (), "does not accept 0 parameter"),
        ("GREATEST", ("1", "2::BIGINT"), r"ambiguous method parameters \(INTEGER, BIGINT\)"),
        ("GREATEST", ("NULL", "NULL"), r"ambiguous method parameters \(null, null\)"),
        ("GREATEST", ("'a'", "1"), r"does not accept parameters \(STRING, INTEGER\)"),
        ("CONCAT", ("'a'", "CAST('b' AS BLOB)"), "all arguments must be STRING or all BYTES"),
        ("TO_BYTES", ("'a'", "'ebcdic'"), "unknown encoding"),
    ],
)
def test_type_errors_name_the_function_and_argument(
    con: duckdb.DuckDBPyConnection, name: str, args: tuple, message: str
) -> None:
    with pytest.raises(SqlTypeError, match=message):
        compile_function(name, [arg(a) for a in args], DuckDBTypeOracle(con))


def test_function_catalog() -> None:
    names = function_names()
    assert {"SUBSTRING", "COUNT", "EXPLODE", "URL_EXTRACT_HOST", "MASK_LEFT"} <= set(names)
    assert is_aggregate("latest_by_offset") and is_aggregate("TOPK") and not is_aggregate("ABS")
    described = describe_function("substring")
    assert described["kind"] == "scalar"
    assert described["signatures"] == ["SUBSTRING(STRING|BYTES, INT, [INT]) -> STRING|BYTES"]
    assert describe_function("COUNT")["kind"] == "aggregate"


@pytest.mark.parametrize(
    ("java", "parse", "expected"),
    [
        ("yyyy-MM-dd'T'HH:mm:ss.SSSX", False, "%Y-%m-%dT%H:%M:%S.%g%z"),
        ("hh 'o''clock' a", False, "%I o'clock %p"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSX", True, "%Y-%m-%dT%H:%M:%S.%f%z"),
        ("d MMM yyyy '100%'", False, "%-d %b %Y 100%%"),
    ],
)
def test_java_patterns_translate_to_strftime(java: str, parse: bool, expected: str) -> None:
    assert java_pattern(java, parse=parse) == expected
