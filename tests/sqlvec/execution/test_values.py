"""Text input of values (`sqlvec.execution.values`): PostgreSQL's json errors, recorded from
PostgreSQL 16 (DETAIL and CONTEXT of `SELECT '<text>'::json`)."""

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
