"""Text datetimes compared with ``ROWTIME``, ``WINDOWSTART`` or ``WINDOWEND``, as ksqlDB reads them.

ksqlDB lets a filter bound these BIGINT columns with a datetime written as text
(``WHERE WINDOWSTART >= '2020-02-23T23:45'``): before typing, each string literal compared with one of
them (``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``, ``IS [NOT] DISTINCT FROM`` or a ``BETWEEN`` bound)
becomes the epoch milliseconds it names (``StatementRewriteForMagicPseudoTimestamp``). The text is
``yyyy-MM-dd'T'HH:mm:ss.SSS`` with an optional ``+hhmm``/``-hhmm`` offset or a trailing ``Z``, and may
stop early: a missing month or day is 1, a missing time part 0, and no offset means UTC
(``PartialStringToTimestampParser``). Only unqualified column references are rewritten, as ksqlDB's
``ColumnReferenceExp`` matches.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

from sqlglot import exp

from nbstream.errors import SqlTypeError

#: The columns whose comparisons with text are read as datetimes.
TIME_COLUMNS = frozenset({"ROWTIME", "WINDOWSTART", "WINDOWEND"})

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_TIME_PATTERN = "HH:mm:ss.SSS"
_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})")
_HELP = ("Required format is: \"yyyy-MM-dd'T'HH:mm:ss.SSS\", with an optional numeric 4-digit timezone, for "
         "example: '2020-05-26T23:59:58.000' or with tz: '2020-05-26T23:59:58.000+0200'. A trailing 'Z' "
         "instead of tz indicates the zero UTC offset. Partials are also supported, for example \"2020-05-26\"")


def rewrite_time_literals(node: exp.Expression) -> exp.Expression:
    """``node`` with every text datetime compared with a time column replaced by its epoch millis."""
    return node.transform(_rewrite_one, copy=True)


def parse_partial_timestamp(text: str) -> int:
    """The epoch milliseconds of ``text``, a possibly partial datetime; :class:`SqlTypeError` naming
    ``text`` when it is not one."""
    if "T" in text:
        date, rest = text.split("T", 1)
        zone = _zone_suffix(rest)
        time = _complete_time(re.sub("Z$", "", rest[:len(rest) - len(zone)]))
    else:
        date, time, zone = _complete_date(text), _complete_time(""), ""
    match = _DATE_TIME.fullmatch(f"{date}T{time}")
    if match is None:
        raise SqlTypeError(f"Failed to parse timestamp '{text}': it does not match the pattern.\n{_HELP}")
    return _epoch_millis(text, [int(part) for part in match.groups()], _offset(text, zone))


def _rewrite_one(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _COMPARISONS):
        if _is_time_column(node.this):
            node.set("expression", _as_millis(node.expression))
        elif _is_time_column(node.expression):
            node.set("this", _as_millis(node.this))
    elif isinstance(node, exp.Between) and _is_time_column(node.this):
        node.set("low", _as_millis(node.args["low"]))
        node.set("high", _as_millis(node.args["high"]))
    return node


def _is_time_column(node: exp.Expression) -> bool:
    if not isinstance(node, exp.Column) or node.table or not isinstance(node.this, exp.Identifier):
        return False
    return (node.name if node.this.quoted else node.name.upper()) in TIME_COLUMNS


def _as_millis(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Literal) and node.is_string:
        return exp.Literal.number(parse_partial_timestamp(node.this))
    return node


def _zone_suffix(time: str) -> str:
    for sign in "+-":
        if sign in time:
            return time[time.index(sign):]
    return ""


def _complete_date(date: str) -> str:
    parts = date.split("-")
    return date + {1: "-01-01", 2: "-01"}.get(len(parts), "")


def _complete_time(time: str) -> str:
    if len(time) >= len(_TIME_PATTERN):
        return time
    return time + re.sub("[a-zA-Z]", "0", _TIME_PATTERN[len(time):])


def _offset(text: str, zone: str) -> dt.timezone:
    if not zone.strip():
        return dt.UTC
    match = re.fullmatch(r"([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?", zone)
    if match is None:
        raise SqlTypeError(f"Failed to parse timestamp '{text}': Failed to parse timezone '{zone}'.\n{_HELP}")
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes, seconds = (int(part or 0) for part in match.groups()[1:])
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes, seconds=seconds))


def _epoch_millis(text: str, fields: list[int], zone: dt.timezone) -> int:
    """As Java's SMART resolver reads the fields: a day past the month's end is its last day, and
    ``24:00:00.000`` is the next day's midnight."""
    year, month, day, hour, minute, second, millis = fields
    next_day = hour == 24 and minute == second == millis == 0
    try:
        day = min(day, calendar.monthrange(year, month)[1]) if 1 <= month <= 12 and day <= 31 else day
        moment = dt.datetime(year, month, day, 0 if next_day else hour, minute, second, millis * 1000, zone)
    except ValueError as error:
        raise SqlTypeError(f"Failed to parse timestamp '{text}': {error}.\n{_HELP}") from None
    moment += dt.timedelta(days=1 if next_day else 0)
    return int((moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1))
