"""ksqlDB's SQL dialect: ``parse`` a script into :mod:`.ast` statements, ``parse_expression`` one
expression. Both raise :class:`nbstream.errors.ParseError` with a span into the text."""

from nbstream.sql.parser import parse_expression
from nbstream.sql.statements import parse

__all__ = ["parse", "parse_expression"]
