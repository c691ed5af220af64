"""Values (`sqlvec.execution.values`): PostgreSQL's json errors, recorded from
PostgreSQL 16 (DETAIL and CONTEXT of `SELECT '<text>'::json`), and casts to the vector types."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError
from sqlvec.execution.values import json_error, parse_text
from sqlvec.types import SqlType

JSON_ERRORS = [
    ("{", "The input string ended unexpectedly.", "JSON data, line 1: {"),
    ('{"a":}', 'Expected JSON value, but found "}".', 'JSON data, line 1: {"a":}'),
    ("{bad", 'Token "bad" is invalid.', "JSON data, line 1: {bad"),
    ("[}", 'Expected JSON value, but found "}".', "JSON data, line 1: [}"),
    ("[1 2]", 'Expected "," or "]", but found "2".', "JSON data, line 1: [1 2..."),
    ('{"a" 1}', 'Expected ":", but found "1".', 'JSON data, line 1: {"a" 1...'),
    ("{1:2}", 'Expected string or "}", but found "1".', "JSON data, line 1: {1..."),
    ('{"a":1,}', 'Expected string, but found "}".', 'JSON data, line 1: {"a":1,}'),
    ("1 2", 'Expected end of input, but found "2".', "JSON data, line 1: 1 2"),
    ('"abc', 'Token ""abc" is invalid.', 'JSON data, line 1: "abc'),
    ('"a\\x"', 'Escape sequence "\\x" is invalid.', 'JSON data, line 1: "a\\x...'),
    ("01", 'Token "01" is invalid.', "JSON data, line 1: 01"),
    ("1.", 'Token "1." is invalid.', "JSON data, line 1: 1."),
    ("NaN", 'Token "NaN" is invalid.', "JSON data, line 1: NaN"),
    ('"a\nb"', "Character with value 0x0a must be escaped.", 'JSON data, line 1: "a'),
    ("[1,\n2,\nx]", 'Token "x" is invalid.', "JSON data, line 3: x..."),
    ("", "The input string ended unexpectedly.", "JSON data, line 1: "),
]


@pytest.mark.parametrize(("text", "detail", "context"), JSON_ERRORS)
def test_json_errors_as_postgresql(text, detail, context):
    assert json_error(text) == (detail, context)
    with pytest.raises(SqlVecError) as info:
        parse_text(text, SqlType("jsonb"))
    assert (info.value.sqlstate, info.value.message, info.value.detail, info.value.where) == (
        "22P02", "invalid input syntax for type json", detail, context)


def test_json_context_of_a_long_line_is_cut_before_the_error():
    text = '{"' + "a" * 60 + '": x, "b": 1}'
    assert json_error(text)[1] == 'JSON data, line 1: ...' + "a" * 45 + '": x...'  # PostgreSQL's


def test_valid_json_has_no_error():
    assert json_error('{"a": [1, 2.5e3, true, null, "x\\u00e9"]}') == (None, None)


# Casts to the vector types: the dimension limit is per value, not per column ---------------------

_MANY_ARRAYS = "SELECT array[g, g, g, g, g, g, g, g]::real[] AS a FROM generate_series(1, 3000) g"


@pytest.fixture
def wide_table(session):
    """3,000 vectors of 8 dimensions: 24,000 elements in all, more than one value may hold."""
    session.execute_one("CREATE TABLE t (id int, emb vector(8))")
    session.execute_one("INSERT INTO t SELECT g, array[g, g, g, g, g, g, g, g]::real[]::vector "
                        "FROM generate_series(1, 3000) g")
    return session


@pytest.mark.parametrize("target", ["vector", "halfvec", "sparsevec", "vector(8)", "halfvec(8)"])
def test_many_arrays_cast_to_a_vector_type(session, target):
    got = session.execute_one(f"SELECT count(*) FROM ({_MANY_ARRAYS}) s "
                              f"WHERE a::{target} IS NOT NULL").rows()
    assert got == [(3000,)]


@pytest.mark.parametrize("target", ["halfvec", "sparsevec", "vector"])
def test_many_vectors_cast_and_inserted(wide_table, target):
    wide_table.execute_one(f"CREATE TABLE h (id int, emb {target}(8))")
    wide_table.execute_one(f"INSERT INTO h SELECT id, emb::{target} FROM t")
    assert wide_table.execute_one("SELECT count(*), sum(id) FROM h").rows() == [(3000, 4501500)]
    assert wide_table.execute_one("SELECT emb::vector::text FROM h WHERE id = 7").rows() == [
        ("[7,7,7,7,7,7,7,7]",)]


@pytest.mark.parametrize("target", ["vector", "halfvec"])
def test_one_value_over_the_limit_still_fails(session, target):
    with pytest.raises(SqlVecError) as caught:
        session.execute_one("SELECT (SELECT array_agg(1::real) FROM generate_series(1, 16001))"
                            f"::{target}")
    assert caught.value.sqlstate == "54000"
    assert str(caught.value) == f"{target} cannot have more than 16000 dimensions"
