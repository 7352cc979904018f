"""Pull queries: a SELECT answered once from the current state, returned as a DataFrame.

On a TABLE the query reads the table's materialized state (the latest row per key); on a STREAM
it scans every record of the stream's topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from nbstream.errors import ExecutionError, UnsupportedError
from nbstream.physical.compile import result_sql
from nbstream.physical.expressions import quote
from nbstream.plan.logical import StatelessPlan
from nbstream.plan.planner import plan_query
from nbstream.runtime.materialize import state_table
from nbstream.sql.ast import Query

if TYPE_CHECKING:
    from nbstream.runtime.engine import Engine


def run_pull_query(engine: Engine, query: Query, params: Mapping[str, object]) -> pd.DataFrame:
    """Evaluate ``query`` against the engine's current state."""
    con = engine.con
    plan = plan_query(query, engine.catalog, con, params=params)
    if not isinstance(plan, StatelessPlan):
        raise UnsupportedError("Pull queries don't support GROUP BY clauses or aggregate functions.")
    outputs = ", ".join(f"{c.sql} AS {quote(c.name)}" for c in plan.columns)
    limit = f" LIMIT {plan.limit}" if plan.limit is not None else ""
    if plan.scan.is_table:
        where = f" WHERE {plan.where}" if plan.where else ""
        sql = f"SELECT {outputs} FROM {state_table(plan.scan.source)}{where}{limit}"
    else:
        info = engine.log.require(plan.scan.topic)
        relation = engine.log.relation(plan.scan.topic, {p: (0, e) for p, e in info.end_offsets.items()})
        names = ", ".join(quote(c.name) for c in plan.columns)
        sql = (f"SELECT {names} FROM ({result_sql(plan, relation)}) "
               f"WHERE NOT __err ORDER BY __in_partition, __in_offset{limit}")
    try:
        return con.execute(sql).df()
    except duckdb.Error as e:
        raise ExecutionError(f"pull query failed: {e}") from e
