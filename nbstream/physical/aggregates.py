"""ksqlDB's aggregate functions as DuckDB SQL over micro-batches merged with stored state.

An aggregate keeps one or more *slots* per group (COUNT one, AVG a sum and a count). A slot is:

* ``batch``: a DuckDB aggregate (cast to ``type`` by the caller) over the batch's rows of a group
  (``{0}``, ``{1}``… are the call's arguments, ``__ord`` the arrival order). The same text runs
  as a running aggregate ``… OVER (PARTITION BY group ORDER BY __ord)`` — one value per input
  row, what EMIT CHANGES emits — or once per group with GROUP BY (EMIT FINAL);
* ``merge``: the slot of the rows stored before (``{s}``) combined with the batch's (``{b}``);
  either may be NULL (a new group, a batch without rows of the group);
* ``running`` (optional): the running form, read ``… OVER (… ORDER BY __ord)`` instead of ``batch``
  where a window function computes it more cheaply than the aggregate over every frame;
* ``signed`` (TABLE input only): like ``batch`` for rows carrying ``__sign`` -1 (a retracted row
  of a table) or +1 (an added one). A function without it cannot aggregate a TABLE, as in ksqlDB.
  Its batch slot is merged by ``signed_merge`` where given (HISTOGRAM's marks each value with its
  sign), by ``merge`` otherwise, and is of ``signed_type`` where given (COLLECT_LIST's is the list
  of the batch's signed values, replayed in order on the stored list), of ``type`` otherwise;

``result`` turns the merged slots (``{s0}``, ``{s1}``…) into the function's value. Placeholders
are replaced textually (:func:`fill`), so braces of DuckDB struct and map literals need no escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nbstream.catalog import user_aggregates, user_functions
from nbstream.catalog.types import BIGINT, DOUBLE, SqlType, parse_type
from nbstream.catalog.user_functions import UserFunction
from nbstream.errors import BindError, SqlTypeError

ADD = "CASE WHEN {s} IS NULL THEN {b} WHEN {b} IS NULL THEN {s} ELSE {s} + {b} END"
#: ksqlDB's COLLECT_LIST/COLLECT_SET keep at most this many values (ksql.functions.collect_*.limit).
COLLECT_LIMIT = 1000


@dataclass(frozen=True)
class Slot:
    batch: str
    merge: str
    type: str  # DuckDB type of the stored slot; "{t}" is the first argument's type
    signed: str | None = None
    running: str | None = None
    #: ``merge`` for a TABLE's input, where ``signed`` gives a batch slot of another form
    signed_merge: str | None = None
    #: ``type`` of the batch slot ``signed`` gives, where it is not that of the stored slot
    signed_type: str | None = None

    def merge_for(self, table_input: bool) -> str:
        """The merge of stored and batch slots, for a TABLE's input or a stream's."""
        return self.signed_merge if table_input and self.signed_merge is not None else self.merge

    def batch_type(self, table_input: bool) -> str:
        """The DuckDB type of the batch slot, for a TABLE's input or a stream's."""
        return self.signed_type if table_input and self.signed_type is not None else self.type


@dataclass(frozen=True)
class Aggregate:
    """A resolved aggregate call: slots, result and type, with its arguments bound."""

    name: str
    slots: tuple[Slot, ...]
    result: str
    type: SqlType


@dataclass(frozen=True)
class _Function:
    slots: Callable[[SqlType, Sequence[object]], tuple[Slot, ...]]
    result: str
    type: Callable[[SqlType], SqlType]
    arity: tuple[int, ...] = (1,)  # column arguments accepted (literal parameters follow)
    accepts: Callable[[SqlType], bool] = lambda t: True
    #: Column arguments: above one, they reach the slots packed in one struct ``{a0, a1, …}``.
    columns: int = 1
    #: Whether ksqlDB keeps a STRUCT, ARRAY or MAP between records (DELIMITED cannot hold it).
    nested_state: bool = False


def _numeric(t: SqlType) -> bool:
    return t.name in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")


def _sum_type(t: SqlType) -> SqlType:
    return t


def _comparable(t: SqlType) -> bool:
    return t.name not in ("ARRAY", "MAP", "STRUCT", "BYTES") or t.name == "BYTES"


def _count_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    return (Slot("count({0})", ADD, "BIGINT", "sum(CASE WHEN {0} IS NULL THEN 0 ELSE __sign END)"),)


def _sum_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    return (Slot("sum({0})", ADD, "{t}", "sum(__sign * {0})"),)


def _avg_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    return (Slot("sum({0}::DOUBLE)", ADD, "DOUBLE", "sum(__sign * {0}::DOUBLE)"),
            Slot("count({0})", ADD, "BIGINT", "sum(CASE WHEN {0} IS NULL THEN 0 ELSE __sign END)"))


def _moment_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    """Count, sum and sum of squares. Integers sum exactly as HUGEINT, so that the variance of large
    values does not cancel out (:data:`_VARIANCE`)."""
    exact = "HUGEINT" if t.name in ("INTEGER", "BIGINT") else "DOUBLE"
    return (Slot(f"sum({{0}}::{exact})", ADD, exact, f"sum(__sign * {{0}}::{exact})"),
            Slot("count({0})", ADD, "BIGINT", "sum(CASE WHEN {0} IS NULL THEN 0 ELSE __sign END)"),
            Slot(f"sum({{0}}::{exact} * {{0}})", ADD, exact, f"sum(__sign * {{0}}::{exact} * {{0}})"))


#: The sample variance of the moments (0 below two values): n·Σx² - (Σx)² is exact for integers,
#: unless it overflows HUGEINT, when it is computed in DOUBLE.
_SPREAD = "coalesce(TRY({s1} * {s2} - {s0} * {s0})::DOUBLE, {s1}::DOUBLE * {s2} - {s0}::DOUBLE * {s0})"
_VARIANCE = f"CASE WHEN coalesce({{s1}}, 0) < 2 THEN 0 ELSE greatest(({_SPREAD}) / ({{s1}} * ({{s1}} - 1)), 0) END"


def _pair(i: int) -> str:
    """Column ``i`` of a two-column call (a struct ``{a0, a1}``) as DOUBLE; NULL if either is NULL."""
    return f"(CASE WHEN {{0}}.a0 IS NOT NULL AND {{0}}.a1 IS NOT NULL THEN {{0}}.a{i}::DOUBLE END)"


def _correlation_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    """CORRELATION(x, y): Σx, Σy, Σx², Σy², Σxy and the count of rows where neither is NULL."""
    x, y = _pair(0), _pair(1)
    terms = (x, y, f"{x} * {x}", f"{y} * {y}", f"{x} * {y}")
    return (*(Slot(f"sum({term})", ADD, "DOUBLE", f"sum(__sign * {term})") for term in terms),
            Slot(f"count({x})", ADD, "BIGINT", f"sum(CASE WHEN {x} IS NULL THEN 0 ELSE __sign END)"))


#: Pearson's coefficient; NaN (as ksqlDB's doubles give 0/0) when either column does not vary.
_CORRELATION = ("CASE WHEN coalesce(least({s5} * {s2} - {s0} * {s0}, {s5} * {s3} - {s1} * {s1}), 0) <= 0 "
                "THEN 'NaN'::DOUBLE ELSE ({s5} * {s4} - {s0} * {s1}) / "
                "(sqrt({s5} * {s2} - {s0} * {s0}) * sqrt({s5} * {s3} - {s1} * {s1})) END")


def _extreme_slots(op: str) -> Callable[[SqlType, Sequence[object]], tuple[Slot, ...]]:
    def slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
        return (Slot(f"{op}({{0}})", f"{'least' if op == 'min' else 'greatest'}({{s}}, {{b}})", "{t}"),)
    return slots


def _offset_slots(latest: bool) -> Callable[[SqlType, Sequence[object]], tuple[Slot, ...]]:
    """LATEST_BY_OFFSET / EARLIEST_BY_OFFSET (col [, n] [, ignore_nulls]): one value, or the n
    latest/earliest as a list."""
    def slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
        n = params[0] if params and not isinstance(params[0], bool) else None
        ignore_nulls = params[-1] if params and isinstance(params[-1], bool) else True
        keep = "WHERE {0} IS NOT NULL" if ignore_nulls else "WHERE TRUE"
        if n is None:
            pick = "arg_max" if latest else "arg_min"
            merge = "CASE WHEN {b} IS NULL THEN {s} ELSE {b} END" if latest else \
                "CASE WHEN {s} IS NULL THEN {b} ELSE {s} END"
            # a struct wraps the value, so a NULL value kept (ignore_nulls false) differs from "none";
            # running, the newest (oldest) wrapped value kept so far is a value function's: no aggregate
            # over every frame (twice as fast on LATEST_BY_OFFSET of five columns)
            kept = "{0} IS NOT NULL" if ignore_nulls else "TRUE"
            value = "last_value" if latest else "first_value"
            return (Slot(f"{pick}({{'v': {{0}}}}, __ord) FILTER ({keep})", merge, "STRUCT(v {t})",
                         running=f"{value}(CASE WHEN {kept} THEN {{'v': {{0}}}} END IGNORE NULLS)"),)
        both = "list_concat(coalesce({s}, []), coalesce({b}, []))"
        merge = f"nbs_last_n({both}, {n})" if latest else f"list_slice({both}, 1, {n})"
        return (Slot(f"list({{0}} ORDER BY __ord) FILTER ({keep})", merge, "{t}[]"),)
    return slots


def _collect_slots(distinct: bool) -> Callable[[SqlType, Sequence[object]], tuple[Slot, ...]]:
    """COLLECT_LIST/COLLECT_SET: the first values, at most ``{limit}`` of them.

    Over a TABLE (COLLECT_LIST only: ksqlDB's ``CollectSetUdaf`` cannot undo), the batch is its rows'
    values with their signs, replayed in order on the stored list (``nbs_collect_replay``): an added
    value is appended while the list is below the limit, a retracted one removes the value's last
    occurrence, if any (``CollectListUdaf.undo``)."""
    def slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
        both = "list_concat(coalesce({s}, []), coalesce({b}, []))"
        unique = "nbs_distinct_maps_in_order" if t.name == "MAP" else "nbs_distinct_in_order"
        merged = f"{unique}({both})" if distinct else both
        if distinct:
            return (Slot("list({0} ORDER BY __ord)", f"list_slice({merged}, 1, {{limit}})", "{t}[]"),)
        return (Slot("list({0} ORDER BY __ord)", f"list_slice({merged}, 1, {{limit}})", "{t}[]",
                     signed="list({'v': {0}, 's': __sign} ORDER BY __ord)",
                     signed_merge="nbs_collect_replay({s}, {b}, {limit})", signed_type="STRUCT(v {t}, s INTEGER)[]"),)
    return slots


def _topk_slots(distinct: bool) -> Callable[[SqlType, Sequence[object]], tuple[Slot, ...]]:
    def slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
        if not params or not isinstance(params[0], int) or params[0] < 1:
            raise BindError("TOPK needs a positive integer literal as its last argument")
        both = "list_concat(coalesce({s}, []), coalesce({b}, []))"
        values = f"list_distinct({both})" if distinct else both
        if t.name == "STRUCT":  # TOPK(sort_col, col…, k): by sort_col, ties in arrival order
            ranked = (f"[x.v FOR x IN list_reverse_sort(list_transform({values}, "
                      "lambda v, i: {'k': v.sort_col, 'n': -i, 'v': v}))]")
            return (Slot("list({0} ORDER BY __ord) FILTER (WHERE {0}.sort_col IS NOT NULL)",
                         f"list_slice({ranked}, 1, {params[0]})", "{t}[]"),)
        return (Slot("list({0}) FILTER (WHERE {0} IS NOT NULL)",
                     f"list_slice(list_reverse_sort({values}), 1, {params[0]})", "{t}[]"),)
    return slots


def _sum_list_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    return (Slot("sum(list_sum({0}))", ADD, "{e}", "sum(__sign * list_sum({0}))"),)


def _histogram_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    """Counts per value; over a TABLE a retracted row counts -1 and a value whose count falls to
    zero leaves the map (ksqlDB's ``Histogram.undo``)."""
    return (Slot("histogram({0})", "nbs_map_add({s}, {b})", "MAP(VARCHAR, BIGINT)",
                 signed="histogram(CASE WHEN __sign < 0 THEN '-' ELSE '+' END || {0})",
                 signed_merge="nbs_map_add({s}, nbs_unsigned_counts({b}))"),)


def _count_distinct_slots(t: SqlType, params: Sequence[object]) -> tuple[Slot, ...]:
    return (Slot("list(DISTINCT {0}) FILTER (WHERE {0} IS NOT NULL)",
                 "list_distinct(list_concat(coalesce({s}, []), coalesce({b}, [])))", "{t}[]"),)


_FUNCTIONS: dict[str, _Function] = {
    "COUNT": _Function(_count_slots, "coalesce({s0}, 0)", lambda t: BIGINT, arity=(0, 1)),
    "SUM": _Function(_sum_slots, "coalesce({s0}, 0)", _sum_type, accepts=_numeric),
    "AVG": _Function(_avg_slots, "CASE WHEN coalesce({s1}, 0) = 0 THEN 0 ELSE {s0} / {s1} END", lambda t: DOUBLE,
                     accepts=_numeric, nested_state=True),
    # ksqlDB's STDDEV_SAMP gives the sample variance (its tests say so); STDDEV_SAMPLE the deviation
    "STDDEV_SAMP": _Function(_moment_slots, _VARIANCE, lambda t: DOUBLE, accepts=_numeric, nested_state=True),
    "STDDEV_SAMPLE": _Function(_moment_slots, f"sqrt({_VARIANCE})", lambda t: DOUBLE, accepts=_numeric,
                               nested_state=True),
    "CORRELATION": _Function(_correlation_slots, _CORRELATION, lambda t: DOUBLE, columns=2,
                             accepts=lambda t: all(_numeric(f) for _, f in t.fields), nested_state=True),
    "MIN": _Function(_extreme_slots("min"), "{s0}", lambda t: t, accepts=_comparable),
    "MAX": _Function(_extreme_slots("max"), "{s0}", lambda t: t, accepts=_comparable),
    "LATEST_BY_OFFSET": _Function(_offset_slots(True), "{s0}", lambda t: t, nested_state=True),
    "EARLIEST_BY_OFFSET": _Function(_offset_slots(False), "{s0}", lambda t: t, nested_state=True),
    "COLLECT_LIST": _Function(_collect_slots(False), "coalesce({s0}, [])", lambda t: SqlType.array(t),
                              nested_state=True),
    "COLLECT_SET": _Function(_collect_slots(True), "coalesce({s0}, [])", lambda t: SqlType.array(t), nested_state=True),
    "TOPK": _Function(_topk_slots(False), "coalesce({s0}, [])", lambda t: SqlType.array(t), nested_state=True),
    "TOPKDISTINCT": _Function(_topk_slots(True), "coalesce({s0}, [])", lambda t: SqlType.array(t), nested_state=True),
    "SUM_LIST": _Function(_sum_list_slots, "coalesce({s0}, 0)", lambda t: t.element or t,
                          accepts=lambda t: t.name == "ARRAY" and t.element is not None and _numeric(t.element)),
    "HISTOGRAM": _Function(_histogram_slots, "coalesce({s0}, MAP {})", lambda t: parse_type("MAP<STRING, BIGINT>"),
                           accepts=lambda t: t.name == "STRING", nested_state=True),
    "COUNT_DISTINCT": _Function(_count_distinct_slots, "len(coalesce({s0}, []))::BIGINT", lambda t: BIGINT,
                                nested_state=True),
}

#: Functions whose single value is wrapped in a struct slot (see _offset_slots) and unwrapped here.
_UNWRAP = {"LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET"}


def resolve(name: str, arg_type: SqlType | None, params: Sequence[object],
            properties: Mapping[str, object] | None = None, *, columns: int = 1) -> Aggregate:
    """The aggregate ``name`` applied to a column of ``arg_type`` (None: ``COUNT(*)``), with the
    literal ``params`` that follow the column; a :class:`BindError` for what ksqlDB rejects.
    ``properties``: the ksqlDB configuration (``ksql.functions.<name>.limit``)."""
    function = _FUNCTIONS.get(name.upper())
    user = user_functions.lookup(name) if function is None else None
    if user is not None and user.kind == "aggregate":
        return _user_aggregate(user, arg_type, params, columns)
    if function is None:
        raise BindError(f"Unknown aggregate function {name}")
    if arg_type is None:
        if 0 not in function.arity:
            raise BindError(f"{name} needs an argument")
        arg_type = BIGINT
    elif not function.accepts(arg_type):
        raise SqlTypeError(f"Function '{name}' does not accept parameters ({arg_type}).")
    t = arg_type.duckdb()
    element = arg_type.element.duckdb() if arg_type.name == "ARRAY" and arg_type.element else t
    limit = str(_limit(name, properties or {}))
    slots = tuple(_bound(s, t=t, e=element, limit=limit) for s in function.slots(arg_type, params))
    result = function.result
    result_type = function.type(arg_type)
    if name.upper() in _UNWRAP and not (params and not isinstance(params[0], bool)):
        result = "({s0}).v"
    elif name.upper() in _UNWRAP:
        result, result_type = "coalesce({s0}, [])", SqlType.array(arg_type)
    return Aggregate(name.upper(), slots, result, result_type)


def _bound(slot: Slot, **values: str) -> Slot:
    """``slot`` with its placeholders ``{t}`` (the argument's type), ``{e}`` (its element's) and
    ``{limit}`` replaced by ``values``."""
    def bind(template: str | None) -> str | None:
        return None if template is None else fill(template, **values)
    return Slot(fill(slot.batch, **values), fill(slot.merge, **values), fill(slot.type, **values),
                bind(slot.signed), bind(slot.running), bind(slot.signed_merge), bind(slot.signed_type))


def _user_aggregate(user: UserFunction, arg_type: SqlType | None, params: Sequence[object], columns: int
                    ) -> Aggregate:
    """A ``@nbstream.udaf`` call of ``columns`` column arguments (packed in a struct when more than
    one) and the literal ``params`` that follow: one slot (see :mod:`nbstream.catalog.user_aggregates`)."""
    if arg_type is None:
        raise BindError(f"{user.name} needs a column argument")
    args = [t for _, t in arg_type.fields] if columns > 1 else [arg_type]
    call = user_aggregates.resolve(user, args, list(params))
    slot = Slot(call.batch, call.merge, call.slot_type, signed=call.signed_batch, signed_merge=call.signed_merge,
                signed_type=call.signed_type)
    return Aggregate(user.name, (slot,), call.result, call.returns)


def column_count(name: str, operands: int) -> int:
    """How many of a call's ``operands`` the aggregate ``name`` reads as columns (the literal
    parameters follow)."""
    function = _FUNCTIONS.get(name.upper())
    if function is None:
        user = user_functions.lookup(name)
        if user is not None and user.kind == "aggregate":
            return user_aggregates.column_count(user, operands)
        return 1
    return function.columns


def keeps_nested_state(name: str) -> bool:
    """Whether ksqlDB's ``name`` keeps a STRUCT, ARRAY or MAP between records (its intermediate
    type); a user's aggregate when its declared state is one of those."""
    function = _FUNCTIONS.get(name.upper())
    if function is None:
        user = user_functions.lookup(name)
        return user is not None and user.kind == "aggregate" and user_aggregates.state_is_nested(user)
    return function.nested_state


def _limit(name: str, properties: Mapping[str, object]) -> int:
    value = properties.get(f"ksql.functions.{name.lower()}.limit", COLLECT_LIMIT)
    try:
        return int(str(value))
    except ValueError:
        raise BindError(f"ksql.functions.{name.lower()}.limit must be an integer, not {value!r}") from None


def fill(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` replaced by ``values[name]`` (``{0}`` as ``_0``)."""
    for name, value in values.items():
        template = template.replace("{" + name.removeprefix("_") + "}", value)
    return template


def names() -> list[str]:
    """ksqlDB's aggregate functions the engine can run (user aggregates are in ``user_functions``)."""
    return sorted(_FUNCTIONS)


#: DuckDB macros the slots use; registered on every connection with the scalar UDFs.
MACROS = (
    "CREATE OR REPLACE TEMP MACRO nbs_distinct_in_order(l) AS "
    "list_filter(l, lambda x, i: list_position(l, x) = i)",
    "CREATE OR REPLACE TEMP MACRO nbs_distinct_maps_in_order(l) AS "  # maps are equal whatever their order
    "list_filter(l, lambda x, i: list_position(list_transform(l, lambda y: list_sort(map_entries(y))), "
    "list_sort(map_entries(x))) = i)",
    "CREATE OR REPLACE TEMP MACRO nbs_last_n(l, n) AS list_slice(l, greatest(len(l) - n + 1, 1), len(l))",
    # l without its last occurrence of v (NULL matches NULL), l itself if v is not in it
    "CREATE OR REPLACE TEMP MACRO nbs_remove_last(l, v) AS CASE WHEN list_position(l, v) IS NULL THEN l ELSE "
    "list_concat(list_slice(l, 1, len(l) - list_position(list_reverse(l), v)), "
    "list_slice(l, len(l) + 2 - list_position(list_reverse(l), v), len(l))) END",
    # the list l after the signed values ops in order: +v appended below n values, -v's last removed
    "CREATE OR REPLACE TEMP MACRO nbs_collect_replay(l, ops, n) AS CASE WHEN ops IS NULL THEN l ELSE "
    "list_reduce(ops, lambda acc, op: CASE WHEN op.s < 0 THEN nbs_remove_last(acc, op.v) "
    "WHEN len(acc) < n THEN list_append(acc, op.v) ELSE acc END, coalesce(l, [])) END",
    # counts added key by key; a count of zero (every row of the value retracted) leaves the map
    "CREATE OR REPLACE TEMP MACRO nbs_map_add(a, b) AS CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE "
    "map_from_entries(list_filter(list_transform(list_distinct(list_concat(map_keys(a), map_keys(b))), "
    "lambda k: {'key': k, 'value': coalesce(a[k], 0) + coalesce(b[k], 0)}), lambda e: e.value <> 0)) END",
    # counts of values marked '+' (added) or '-' (retracted) as counts of the values: added less retracted
    "CREATE OR REPLACE TEMP MACRO nbs_unsigned_counts(m) AS map_from_entries(list_filter(list_transform("
    "list_distinct(list_transform(map_keys(m), lambda k: k[2:])), lambda v: {'key': v, "
    "'value': coalesce(m['+' || v], 0) - coalesce(m['-' || v], 0)}), lambda e: e.value <> 0))",
)
