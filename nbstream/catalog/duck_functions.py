"""Python functions in a DuckDB database's catalog: how nbstream creates them, safely.

DuckDB keeps a Python (Arrow) function in the catalog of the database, so every connection and
cursor of that database can call it once it is created on one of them. Two facts shape the contract:

* Creating a function is a catalog change of the transaction it runs in. Created on a connection
  that is inside a micro-batch's transaction, it would vanish if that batch rolled back (as a
  batch with a bad record does before it is split), while the process-wide caches that name it
  would still say it exists: "Scalar Function with name nbs_… does not exist". So :func:`create`
  runs it on a cursor of its own, committed at once (a transaction already open sees it).
* The connection that creates it holds the only reference to the Python callable: a function
  created through a cursor that is then closed must be kept alive by its caller for as long as
  the database may call it (DuckDB would call freed memory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb
from duckdb.func import ARROW, SPECIAL


def create(con: duckdb.DuckDBPyConnection, name: str, call: Callable[..., Any], params: Sequence[str],
           returns: str, *, side_effects: bool = False) -> None:
    """Create the Arrow function ``name`` (DuckDB type names ``params`` → ``returns``) in the
    database of ``con`` through a cursor of its own, committed at once; a no-op if the database
    has it already (or another connection is creating it now) or ``con`` is closed. The caller
    keeps ``call`` alive (see the module docstring)."""
    try:
        cursor = con.cursor()
    except duckdb.ConnectionException:
        return  # a closed connection runs nothing
    try:
        cursor.create_function(name, call, list(params), returns, type=ARROW, null_handling=SPECIAL,
                               side_effects=side_effects)
    except (duckdb.NotImplementedException, duckdb.CatalogException, duckdb.TransactionException) as e:
        if "already" not in str(e) and "write-write conflict" not in str(e):
            raise
    finally:
        cursor.close()


def present(con: duckdb.DuckDBPyConnection, prefix: str) -> set[str]:
    """The names of the functions starting with ``prefix`` that the database of ``con`` has (one
    catalog lookup: a cursor of a configured connection shares its database and its functions)."""
    rows = con.execute("SELECT function_name FROM duckdb_functions() WHERE starts_with(function_name, ?)",
                       [prefix]).fetchall()
    return {name for (name,) in rows}
