"""Row comparisons written out as scalar conditions: the shapes PostgreSQL's definitions give,
and its errors."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError
from sqlvec.plan import row_values
from sqlvec.sql.dialect import parse_one, to_sql


def expanded(sql: str) -> str:
    out = row_values.expand(parse_one(f"SELECT {sql}").expressions[0])
    assert out is not None
    return to_sql(out)


def test_equality_is_the_and_of_the_pairs():
    assert expanded("(a, b) = (1, 2)") == "(a = 1 AND b = 2)"
    assert expanded("ROW(a, b) = ROW(c, d)") == "(a = c AND b = d)"


def test_inequality_is_the_or_of_the_pairs():
    assert expanded("(a, b) <> (1, 2)") == "(a <> 1 OR b <> 2)"


def test_ordering_is_lexicographic_and_stops_at_the_first_unequal_pair():
    assert expanded("(a, b, c) < (x, y, z)") == \
        "(a < x OR (a = x AND (b < y OR (b = y AND c < z))))"
    # <= and >= use the strict comparison for every pair but the last.
    assert expanded("(a, b) <= (x, y)") == "(a < x OR (a = x AND b <= y))"
    assert expanded("(a, b) >= (x, y)") == "(a > x OR (a = x AND b >= y))"


def test_null_tests_and_distinctness():
    assert expanded("(a, b) IS NULL") == "(a IS NULL AND b IS NULL)"
    assert expanded("(a, b) IS NOT NULL") == "(a IS NOT NULL AND b IS NOT NULL)"
    assert expanded("(a, b) IS DISTINCT FROM (1, 2)") == \
        "(a IS DISTINCT FROM 1 OR b IS DISTINCT FROM 2)"


def test_in_a_list_of_rows_is_the_or_of_equalities():
    # Each `=` is itself a row comparison, expanded when the planner visits it.
    out = row_values.expand(parse_one("SELECT (a, b) IN ((1, 2), (3, 4))").expressions[0])
    assert to_sql(out) == "((a, b) = (1, 2) OR (a, b) = (3, 4))"


def test_scalar_comparisons_are_left_alone():
    assert row_values.expand(parse_one("SELECT a = 1").expressions[0]) is None
    assert row_values.expand(parse_one("SELECT a IN (1, 2)").expressions[0]) is None


@pytest.mark.parametrize("sql, sqlstate, message", [
    ("(1, 2) = (1, 2, 3)", "42601", "unequal number of entries in row expressions"),
    ("(1, 2) < (1, 2, 3)", "42601", "unequal number of entries in row expressions"),
    ("(1, 2) = 1", "42883", "operator does not exist: record = integer"),
    ("(1, 2) IN ((1, 2), 3)", "42883", "operator does not exist: record = integer"),
    ("ROW() = ROW()", "0A000", "cannot compare rows of zero length"),
])
def test_errors_as_postgresql(sql, sqlstate, message):
    with pytest.raises(SqlVecError) as caught:
        row_values.expand(parse_one(f"SELECT {sql}").expressions[0])
    assert caught.value.sqlstate == sqlstate
    assert message in caught.value.message


def test_a_row_subquery_is_left_to_the_planner():
    x = parse_one("SELECT (a, b) = (SELECT 1, 2)").expressions[0]
    assert row_values.is_row_subquery_comparison(x)
    assert row_values.expand(x) is None
    assert not row_values.is_row_subquery_comparison(parse_one("SELECT a = (SELECT 1)")
                                                     .expressions[0])


def test_subquery_width_must_match_the_row():
    row = parse_one("SELECT (a, b)").expressions[0]
    row_values.check_subquery_width(row, 2)
    with pytest.raises(SqlVecError, match="too many columns"):
        row_values.check_subquery_width(row, 3)
    with pytest.raises(SqlVecError, match="too few columns"):
        row_values.check_subquery_width(row, 1)
    with pytest.raises(SqlVecError, match="too many columns"):
        row_values.check_subquery_width(parse_one("SELECT a").expressions[0], 2)
