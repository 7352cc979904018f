"""Lowering of a plan to the DuckDB SQL of one micro-batch.

A micro-batch is one SELECT over a relation of raw records (``RECORD_COLUMNS_SQL``): it decodes
keys and values, computes ROWTIME, filters, projects and encodes the output — all inside DuckDB,
so no record passes through Python. :func:`result_sql` yields typed rows (what a transient query
returns); :func:`encoded_sql` turns them into records for a sink topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from nbstream.catalog.functions import java_format_to_strptime
from nbstream.catalog.schema import Column
from nbstream.errors import PlanError
from nbstream.formats import Decoded, format_for
from nbstream.formats.base import let_relation
from nbstream.physical.expressions import quote
from nbstream.physical.table_functions import SUB_ROW, unnest_sql
from nbstream.plan.logical import OutputColumn, Scan, Sink, StatelessPlan

#: How a TIMESTAMP column's value becomes ROWTIME (epoch ms), by the column's type.
_ROWTIME_OF = {
    "BIGINT": "{col}",
    "INTEGER": "{col}::BIGINT",
    "TIMESTAMP": "epoch_ms({col})",
}


#: The processing-log message of a record with an invalid (NULL or negative) timestamp.
_INVALID_TS = "'Invalid timestamp: the record time is NULL or negative'"


def decode_select(scan: Scan, relation: str, *, keep: Sequence[str] = (), fast: bool = False) -> str:
    """SELECT decoding ``relation`` into the scan's columns plus pseudo- and control columns, and
    the record columns ``keep`` of ``relation`` as they are, named ``__raw_<column>``. With
    ``fast``, the formats' fast paths decode (:attr:`Decoded.fast`): ``__err`` then also marks the
    records that need the full decoding, and only a result without ``__err`` is the decoding's."""
    key = _decode_side(scan.key_format, scan.key_properties, '"key"', scan.schema.key, is_key=True)
    value = _decode_side(scan.value_format, scan.value_properties, '"value"', scan.schema.value, is_key=False)
    if fast:
        key, value = key.fast or key, value.fast or value
    parts = ['"partition" AS "ROWPARTITION"', '"offset" AS "ROWOFFSET"', "ts AS __ts",
             'headers AS __headers', '"value" IS NULL AS __tomb', '"key" IS NULL AS __key_null',
             *(f"{quote(name)} AS {quote('__raw_' + name)}" for name in keep)]
    if scan.windowed:
        parts += ['win_start AS "WINDOWSTART"', 'win_end AS "WINDOWEND"', "win_type AS __wtype"]
    for col, sql in zip(scan.schema.key, key.columns, strict=True):
        parts.append(f"{sql} AS {quote(col.name)}")
    for col, sql in zip(scan.schema.value, value.columns, strict=True):
        parts.append(f"{sql} AS {quote(col.name)}")  # formats decode a NULL blob to NULL columns
    for col in scan.schema.headers:
        parts.append(f"{_header_sql(col)} AS {quote(col.name)}")
    failures = [(f"coalesce({e}, FALSE)", m or "'deserialization error'")
                for e, m in ((key.error, key.error_message), (value.error, value.error_message)) if e]
    if failures:
        parts.append(f"({' OR '.join(e for e, _ in failures)}) AS __err")
        cases = " ".join(f"WHEN {e} THEN {m}" for e, m in failures)
        parts.append(f"CASE {cases} END AS __errmsg")
    else:
        parts.append("FALSE AS __err")
        parts.append("NULL::VARCHAR AS __errmsg")
    return f"SELECT {', '.join(parts)} FROM {let_relation(relation, key, value)}"


def _decode_side(name: str, props: Mapping[str, Any], blob: str, columns: Sequence[Column], *,
                 is_key: bool) -> Decoded:
    if not columns:
        return Decoded((), None, None)
    fmt = format_for(name, props, is_key=is_key)
    return fmt.decode_sql(blob, columns, wrap_single_value=not is_key and wraps_single_value(props))


def wraps_single_value(props: Mapping[str, Any]) -> bool:
    """Whether a value format's single column is a field of an object (``WRAP_SINGLE_VALUE``, true unless set false)."""
    wrap = props.get("WRAP_SINGLE_VALUE")
    return True if wrap is None else bool(wrap)


def _header_sql(col: Column) -> str:
    if col.role == "HEADERS":  # the log's (key, value) structs, named as the column declares its fields
        names = [name for name, _ in col.type.element.fields] if col.type.element is not None else []
        if len(names) != 2:
            return "headers"
        fields = ", ".join(f"'{n.replace(chr(39), chr(39) * 2)}': h.{part}" for n, part in zip(names, ("key", "value"),
                                                                                           strict=True))
        return f"list_transform(headers, lambda h: {{{fields}}})"
    key = col.header_key.replace("'", "''") if col.header_key else ""
    return f"list_filter(headers, lambda h: h.key = '{key}')[-1].value"


def rowtime_sql(scan: Scan) -> str:
    """ROWTIME over the decoded relation: the record time, or the TIMESTAMP column's value."""
    if scan.timestamp is None:
        return "__ts"
    col = scan.schema.get(scan.timestamp, source=scan.source)
    name = quote(col.name)
    if col.type.name == "STRING":
        return string_ts_sql(name, scan.timestamp_format)
    template = _ROWTIME_OF.get(col.type.name)
    if template is None:
        raise PlanError(f"TIMESTAMP column {col.name} has type {col.type}; it must be BIGINT, TIMESTAMP or STRING")
    return template.format(col=name)


def string_ts_sql(value: str, timestamp_format: str | None) -> str:
    """Epoch ms of the STRING ``value`` parsed with the Java ``timestamp_format`` (NULL if it does
    not parse)."""
    if not timestamp_format:
        return f"epoch_ms(TRY_CAST({value} AS TIMESTAMP))"

    fmt = java_format_to_strptime(timestamp_format).replace("'", "''")
    if "%z" in fmt or "%Z" in fmt:  # Java's X accepts 'Z' for UTC; strptime's %z wants digits
        return f"epoch_ms(timezone('UTC', TRY_STRPTIME(regexp_replace({value}, 'Z$', '+0000'), '{fmt}')))"
    return f"epoch_ms(TRY_STRPTIME({value}, '{fmt}'))"


def result_sql(plan: StatelessPlan, relation: str, *, fast: bool = False, raw: Sequence[str] = ()) -> str:
    """The micro-batch SELECT of a stateless plan over ``relation``, with typed output columns
    (``fast``: decoded on the formats' fast paths, as :func:`decode_select` says; ``raw``: record
    columns of ``relation`` passed through as they are, named ``__raw_<column>``).

    Besides the plan's columns (named as in the result) it yields ``__err``/``__errmsg``,
    ``__in_partition``/``__in_offset``, ``__ts`` (the output record time) and ``__deleted``
    (the output is a tombstone: a deleted or filtered-out table row); with table functions, also
    ``__in_sub``, the row's place among the rows its input record became.
    """
    scan = plan.scan
    where = f"coalesce({plan.where}, FALSE)" if plan.where else "TRUE"
    outputs = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in plan.columns)
    # A record whose time (ROWTIME from a TIMESTAMP column, or the sink's TIMESTAMP column) is
    # NULL or negative is invalid: it goes to the processing log, as in ksqlDB.
    bad_ts = '("ROWTIME" IS NULL OR "ROWTIME" < 0)' if scan.timestamp else "FALSE"
    out_ts = _output_ts(plan)
    out_err, out_errmsg = "__err", "__errmsg"
    if plan.sink is not None and plan.sink.timestamp is not None:
        out_bad = f"({out_ts} IS NULL OR {out_ts} < 0)"
        out_err = f"(__err OR {out_bad})"
        out_errmsg = f"CASE WHEN __err THEN __errmsg WHEN {out_bad} THEN {_INVALID_TS} END"
    if scan.is_table:
        deleted, keep = f"(__tomb OR NOT {where})", f"__err OR ({_key_present(scan)})"
    else:
        # A stream's tombstone passes through a projection as a tombstone; a WHERE drops it.
        deleted, keep = "__tomb", (f"__err OR (NOT __tomb AND {where})" if plan.where else "TRUE")
    relation_out, sub = "__d", ""
    if plan.table_functions:  # one row per element (a stream only: no deletes, no table keys)
        relation_out, sub = f"({unnest_sql(plan.table_functions, '__d', keep)})", f" {SUB_ROW},"
        keep = "TRUE"
    # MATERIALIZED: decode once; otherwise DuckDB inlines the decoding into every later use.
    kept = "".join(f" {quote('__raw_' + name)}," for name in raw)
    return f"""WITH __d0 AS MATERIALIZED ({decode_select(scan, relation, keep=raw, fast=fast)}),
__d1 AS (SELECT *, {rowtime_sql(scan)} AS "ROWTIME" FROM __d0),
__d AS (SELECT * REPLACE (__err OR {bad_ts} AS __err,
                          CASE WHEN __err THEN __errmsg WHEN {bad_ts} THEN {_INVALID_TS} END AS __errmsg),
               {bad_ts} AS __bad_ts FROM __d1)
SELECT {out_err} AS __err, {out_errmsg} AS __errmsg, __bad_ts,
       "ROWPARTITION" AS __in_partition, "ROWOFFSET" AS __in_offset,
       {out_ts} AS __ts, {deleted} AS __deleted, __key_null, __headers,{kept}{_input_window(plan)}{sub} {outputs}
FROM {relation_out} WHERE {keep}"""


def _input_window(plan: StatelessPlan) -> str:
    """The input key's window (``__ws``, ``__we``, ``__wtype``) kept for the output key, when the
    source is windowed and the result keeps its key (a projection of a windowed table or stream)."""
    if not (plan.scan.windowed and plan.key_from_source):
        return ""
    return ' "WINDOWSTART" AS __ws, "WINDOWEND" AS __we, __wtype,'


def encoded_sql(plan: StatelessPlan, result: str) -> str:
    """SELECT turning the rows of ``result`` (see :func:`result_sql`) into sink records, keeping the
    control columns (``__err``, ``__errmsg``, ``__bad_ts``, ``__deleted``, ``__in_partition``,
    ``__in_offset``): the runner materializes this once, appends the rows without ``__err`` and
    logs the others, so the typed result is never stored on its own."""
    if plan.sink is None:
        raise PlanError("a query without a sink has nothing to encode")
    null_key = "__key_null" if plan.key_from_source else None
    window = "__wtype" if plan.scan.windowed and plan.key_from_source else None
    return encode_rows_sql(plan.sink, plan.columns, result, null_key=null_key, control=CONTROL_COLUMNS,
                           window_type=window, order=order_sql(plan))


#: The order of output rows: input partition, then offset, as one number (no sort needed: offsets
#: stay below 2^40 per partition).
SEQ_SQL = "(__in_partition::BIGINT << 40) + __in_offset"


def order_sql(plan: StatelessPlan) -> str:
    """The output order of a stateless plan's rows as one distinct BIGINT: :data:`SEQ_SQL`, or,
    when table functions make several rows of one record, their rank in (record, ``__in_sub``)."""
    if not plan.table_functions:
        return SEQ_SQL
    return f"row_number() OVER (ORDER BY __in_partition, __in_offset, {SUB_ROW})"


def order_by_sql(plan: StatelessPlan) -> str:
    """The ORDER BY list putting a stateless plan's result rows in output order."""
    return f"__in_partition, __in_offset, {SUB_ROW}" if plan.table_functions else "__in_partition, __in_offset"


#: The columns of a result that say what to do with each row, besides writing it.
CONTROL_COLUMNS = ("__err", "__errmsg", "__bad_ts", "__deleted", "__in_partition", "__in_offset")


def encode_rows_sql(sink: Sink, columns: Sequence[OutputColumn], result: str, *, null_key: str | None = None,
                    control: Sequence[str] = (), window_type: str | None = None, order: str = SEQ_SQL) -> str:
    """SELECT encoding rows of ``result`` — named ``columns`` plus ``__ts``, ``__deleted``,
    ``__headers``, ``__err`` and an ``order`` (by default ``__in_partition``, ``__in_offset``) — for
    ``sink``.

    ``null_key``: a condition of ``result`` under which the record key is NULL whatever its columns
    (the input record had no key: its key columns are NULL, but it is not a key of NULL columns).
    With ``control`` columns, they are kept and rows in error too; without, those rows are dropped.
    With ``window_type`` (SQL giving 'TIME' or 'SESSION') the keys are windowed by ``__ws``/``__we``."""
    refs = [replace(c, sql=quote(c.name)) for c in columns]
    key_blob = _encode_side(sink.key_format, sink.key_properties, [c for c in refs if c.role == "KEY"], is_key=True)
    if null_key is not None and key_blob != "NULL::BLOB":
        key_blob = f"CASE WHEN {null_key} THEN NULL ELSE {key_blob} END"
    value_blob = _encode_side(sink.value_format, sink.value_properties, [c for c in refs if c.role != "KEY"],
                              is_key=False)
    kept = "".join(f"{c}, " for c in control)
    return f"""SELECT {kept}NULL::INTEGER AS "partition", __ts AS ts, {key_blob} AS "key",
       CASE WHEN __deleted THEN NULL ELSE {value_blob} END AS "value", __headers AS headers,
       {_window_sql(window_type)},
       {order} AS __seq
FROM {result}{"" if control else " WHERE NOT __err"}"""


def _window_sql(window_type: str | None) -> str:
    if window_type is None:
        return "NULL::BIGINT AS win_start, NULL::BIGINT AS win_end, NULL::VARCHAR AS win_type"
    return f"__ws AS win_start, __we AS win_end, {window_type} AS win_type"


def _key_present(scan: Scan) -> str:
    if not scan.schema.key:
        return "TRUE"
    return " AND ".join(f"{quote(c.name)} IS NOT NULL" for c in scan.schema.key)


def _encode_side(name: str, props: Mapping[str, Any], cols: Sequence[OutputColumn], *, is_key: bool) -> str:
    if not cols:
        return "NULL::BLOB"
    fmt = format_for(name, props, is_key=is_key)
    pairs = [(c.column(), f"({c.sql})") for c in cols]
    return fmt.encode_sql(pairs, wrap_single_value=not is_key and wraps_single_value(props))


def _output_ts(plan: StatelessPlan) -> str:
    sink = plan.sink
    if sink is None or sink.timestamp is None:
        return '"ROWTIME"'
    col = next((c for c in plan.columns if c.name == sink.timestamp), None) or \
        next((c for c in plan.columns if c.name.upper() == sink.timestamp.upper()), None)
    if col is None:
        raise PlanError(f"TIMESTAMP column {sink.timestamp} is not in the result of the query")
    if col.type.name == "TIMESTAMP":
        return f"epoch_ms({col.sql})"
    if col.type.name == "STRING":
        return string_ts_sql(f"({col.sql})", sink.timestamp_format)
    if col.type.name not in ("BIGINT", "INTEGER"):
        raise PlanError(f"TIMESTAMP column {col.name} has type {col.type}; it must be BIGINT, TIMESTAMP or STRING")
    return f"({col.sql})::BIGINT"
