"""ksqlDB's error responses: ``{"@type": "generic_error", "error_code": …, "message": …}``, and for a
statement ``{"@type": "statement_error", …, "statementText": …, "entities": […]}``.

An error code is the HTTP status times 100 plus n (ksqlDB's ``Errors.java``); :class:`KsqlError` carries
both, and whatever a handler raises reaches the client as one of these bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BAD_REQUEST = 40000
BAD_STATEMENT = 40001
QUERY_ENDPOINT = 40002
MAX_PUSH_QUERIES = 40003
HTTP2_ONLY = 40004
UNAUTHORIZED = 40100
FORBIDDEN = 40300
NOT_FOUND = 40400
NOT_ACCEPTABLE = 40600
TOO_LARGE = 41300
SERVER_ERROR = 50000
NOT_READY = 50302
SHUTTING_DOWN = 50303


@dataclass
class KsqlError(Exception):
    """An error answered with ``error_code // 100`` as the HTTP status; with ``statement`` set it
    is a ``statement_error`` about that statement, carrying the ``entities`` of the statements of
    the request that ran before it."""

    error_code: int
    message: str
    statement: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.error_code // 100

    def body(self) -> dict[str, Any]:
        """The error as ksqlDB serializes it."""
        if self.statement is None:
            return generic_error(self.error_code, self.message)
        return {"@type": "statement_error", "error_code": self.error_code, "message": self.message,
                "statementText": self.statement, "entities": self.entities}


def generic_error(error_code: int, message: str) -> dict[str, Any]:
    return {"@type": "generic_error", "error_code": error_code, "message": message}
