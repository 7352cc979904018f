"""What a query's batch decodes: its plan without the JSON STRING columns nothing reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from nbstream.catalog.schema import LogicalSchema
from nbstream.physical.compile import wraps_single_value
from nbstream.physical.expressions import quote
from nbstream.plan.logical import StatelessPlan


def decoding_plan(pre: StatelessPlan, unread: Sequence[str] = ()) -> StatelessPlan:
    """``pre`` without the STRING columns of a JSON value that nothing reads: neither its WHERE, its
    table functions nor its columns, but for those in ``unread`` (quoted names of columns ``pre``
    passes through that nothing after it reads, as a join's unpicked columns). Any JSON value
    converts to a STRING (a number or an object as its text), so such a column never puts a record
    in error: leaving it out changes no value and no error, and spares decoding it. Columns of
    other types are decoded, read or not: a bad value in any is the record's error. At least one
    value column stays, so a record that is not a JSON object is still found out."""
    scan = pre.scan
    if scan.value_format.upper() != "JSON" or not wraps_single_value(scan.value_properties):
        return pre
    reads = " ".join([*(c.sql for c in pre.columns if quote(c.name) not in unread), pre.where or "",
                      *(f.sql for f in pre.table_functions)])
    dropped = {quote(c.name) for c in scan.schema.value
               if c.type.name == "STRING" and c.name != scan.timestamp and quote(c.name) not in reads}
    values = [c for c in scan.schema.value if quote(c.name) not in dropped]
    if not dropped or not values:
        return pre
    schema = LogicalSchema(tuple(c for c in scan.schema.columns if quote(c.name) not in dropped))
    columns = tuple(c for c in pre.columns if c.sql not in dropped)
    return replace(pre, scan=replace(scan, schema=schema), columns=columns)
