"""How a call picks among a user function's overloads: ksqlDB's ``UdfIndex`` rules."""

from __future__ import annotations

import pytest

from nbstream.catalog.signatures import Signature, pick
from nbstream.catalog.types import parse_type
from nbstream.errors import SqlTypeError


def chosen(overloads: list[tuple[list[str], str]], *args: str) -> tuple[int, list[str], str]:
    """The overload index picked for arguments of types ``args``, its parameter types and return type."""
    signatures = [Signature.of(params, returns) for params, returns in overloads]
    index, matched = pick("F", signatures, [parse_type(a) for a in args])
    return index, [str(p) for p in matched.params], str(matched.returns())


NUMBERS = [(["BIGINT"], "BIGINT"), (["DOUBLE"], "DOUBLE"), (["INTEGER"], "INTEGER")]


def test_an_exact_match_wins_over_one_that_widens() -> None:
    assert chosen(NUMBERS, "INTEGER")[0] == 2
    assert chosen(NUMBERS, "DOUBLE")[0] == 1


def test_without_an_exact_match_the_fewest_widenings_win() -> None:
    assert chosen([(["DOUBLE"], "DOUBLE"), (["BIGINT"], "BIGINT")], "INTEGER")[:2] == (1, ["BIGINT"])
    assert chosen([(["DOUBLE"], "DOUBLE")], "DECIMAL(4, 2)")[1] == ["DOUBLE"]


def test_a_null_argument_fits_any_parameter() -> None:
    assert chosen([(["STRING"], "STRING")], "NULL")[1] == ["STRING"]


def test_a_fixed_arity_overload_wins_over_a_variadic_one() -> None:
    assert chosen([(["STRING..."], "STRING"), (["STRING"], "STRING")], "STRING")[0] == 1
    assert chosen([(["STRING..."], "STRING"), (["STRING"], "STRING")], "STRING", "STRING")[0] == 0
    assert chosen([(["INTEGER", "STRING..."], "STRING")], "INTEGER")[1] == ["INTEGER"]  # zero variadic args


def test_a_type_variable_binds_once_and_types_the_result() -> None:
    assert chosen([(["ARRAY<T>", "T"], "ARRAY<T>")], "ARRAY<STRING>", "STRING")[2] == "ARRAY<STRING>"
    with pytest.raises(SqlTypeError, match="does not accept parameters"):
        chosen([(["ARRAY<T>", "T"], "ARRAY<T>")], "ARRAY<STRING>", "INTEGER")


def test_no_match_lists_the_valid_alternatives_in_ksqldb_words() -> None:
    with pytest.raises(SqlTypeError, match=r"Function 'F' does not accept parameters \(BOOLEAN\)\.\n"
                                           r"Valid alternatives are:\nf\(BIGINT\)\nf\(DOUBLE\)\nf\(INTEGER\)"):
        chosen(NUMBERS, "BOOLEAN")


def test_only_the_last_parameter_may_be_variadic_and_a_return_variable_must_be_bound() -> None:
    with pytest.raises(SqlTypeError, match="only the last parameter may be variadic"):
        Signature.of(["STRING...", "INTEGER"], "STRING")
    with pytest.raises(SqlTypeError, match=r"type variable.*U"):
        Signature.of(["T"], "U")
