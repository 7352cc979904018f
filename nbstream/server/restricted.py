"""Restricted mode: the REST API of a running job (``nbstream run``), read-only.

ksqlDB's headless mode turns its REST API off; its users asked for a read-only one instead. A job's
API answers pull and push queries, ``SHOW``, ``DESCRIBE``, ``EXPLAIN``, ``/metrics`` and the health
checks, and refuses (403, error 40300) every statement that would change the job's topology: only
its ``queries.sql`` does that (edit it, restart with ``nbstream run --upgrade``). Inserts
(``/inserts-stream``, ``INSERT … VALUES``) go only into the streams and tables over the topics the
job expects to be fed from outside (``[inputs] external`` of its ``nbstream-job.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nbstream.server.errors import FORBIDDEN, KsqlError
from nbstream.sql import ast

#: Statements that read and never change the job.
READ_ONLY = (ast.Show, ast.Describe, ast.DescribeFunction, ast.DescribeConnector, ast.Explain, ast.SetProperty,
             ast.UnsetProperty, ast.Select, ast.PrintTopic)


@dataclass(frozen=True)
class Restricted:
    """The job ``job`` served read-only; ``writable``: the streams and tables that take inserts."""

    job: str
    writable: frozenset[str] = frozenset()

    def check_statement(self, statement: ast.Statement) -> None:
        """Refuse (40300) a statement that is neither read-only nor an insert into a writable source."""
        if isinstance(statement, READ_ONLY):
            return
        if isinstance(statement, ast.InsertValues):
            self.check_insert(statement.target)
            return
        words = " ".join(statement.text.split()[:3])
        raise KsqlError(FORBIDDEN, f"This server runs the job '{self.job}' (nbstream run), read-only: '{words} …' "
                                   "would change it. Change the job's queries.sql and restart it with "
                                   "nbstream run --upgrade.")

    def check_insert(self, target: str) -> None:
        """Refuse (40300) inserts into anything but the job's inputs fed from outside."""
        if target.upper() in {w.upper() for w in self.writable}:
            return
        inputs = ", ".join(sorted(self.writable)) or "none"
        raise KsqlError(FORBIDDEN, f"This server runs the job '{self.job}' (nbstream run), read-only: only the "
                                   f"job's inputs fed from outside take inserts ({inputs}), and {target} is not one.")
