"""E'...' and U&'...' constants: decoded once, as PostgreSQL decodes them, into plain literals
that print back to SQL meaning the same. (tests/sql/literals.test checks the same against a
real PostgreSQL.)"""

from __future__ import annotations

import pytest
from sqlglot import exp

from sqlvec.errors import SqlVecError
from sqlvec.sql import literals
from sqlvec.sql.dialect import parse_one, to_sql
from sqlvec.types import decode_utf8


def value(sql: str) -> str:
    node = parse_one(sql).expressions[0]
    assert isinstance(node, exp.Literal) and node.is_string
    return node.this


@pytest.mark.parametrize("sql, expected", [
    (r"SELECT E'C:\\new\\table'", "C:\\new\\table"),  # one backslash each, once
    (r"SELECT E'\b\f\n\r\t\v\q'", "\b\f\n\r\tvq"),  # \v is v (PostgreSQL 16)
    (r"SELECT E'\101\x42\u0043\U00000044\7\18'", "ABCD\x07\x018"),
    (r"SELECT E'\xc3\xa9\303\251'", "éé"),  # byte escapes are UTF-8 bytes
    (r"SELECT E'\777'", None),  # 0o777 wraps to the byte 0xff: not UTF-8
    (r"SELECT E'\x\xg'", "xxg"),  # \x without hex digits is x
    (r"SELECT E'it''s \'quoted\''", "it's 'quoted'"),
    (r"SELECT E'\uD83D\uDE00\uD83D\U0000DE00'", "😀😀"),
    ("SELECT E'a'\n  'b\\n'", "ab\n"),  # continued across a newline, escapes and all
    ("SELECT E'\\xc3' -- split\n'\\xa9'", "é"),  # bytes of one character in two pieces
    (r"SELECT U&'d\0061t\+000061 \\'", "data \\"),
    (r"SELECT U&'d!0061t!!' UESCAPE '!'", "dat!"),
    (r"SELECT U&'\D83D\DE00'", "😀"),
    (r"SELECT 'C:\new'", "C:\\new"),  # a standard string keeps its backslashes
])
def test_values(sql, expected):
    if expected is None:
        with pytest.raises(SqlVecError) as error:
            value(sql)
        assert error.value.sqlstate == "22021"
        return
    assert value(sql) == expected


@pytest.mark.parametrize("sql", [r"SELECT E'a\tb\\c\'d\n'", r"SELECT U&'\00e9''x'",
                                 "SELECT E'line\\none'"])
def test_decoded_literals_print_back_to_the_same_value(sql):
    printed = to_sql(parse_one(sql))
    assert value(printed) == value(sql)
    assert "E'" not in printed and "U&'" not in printed


@pytest.mark.parametrize("sql, sqlstate, message, position", [
    (r"SELECT E'\0'", "22021", 'invalid byte sequence for encoding "UTF8": 0x00', None),
    (r"SELECT E'ok\xe2\x82'", "22021", 'invalid byte sequence for encoding "UTF8": 0xe2 0x82',
     None),
    (r"SELECT E'\u0000'", "42601", 'invalid Unicode escape value at or near "\\u0000"', 10),
    (r"SELECT E'x\u12'", "22025", "invalid Unicode escape", 11),
    (r"SELECT E'\uDC00'", "42601", 'invalid Unicode surrogate pair at or near "\\uDC00"', 10),
    (r"SELECT E'\uD83Dz'", "42601", 'invalid Unicode surrogate pair at or near "z"', 16),
    (r"SELECT E'\uD83D'", "42601", "invalid Unicode surrogate pair at or near \"'\"", 16),
    (r"SELECT U&'\+110000'", "42601", "invalid Unicode escape value", 11),
    (r"SELECT U&'ab\'", "42601", "invalid Unicode escape", 13),
    (r"SELECT U&'\D83Dz'", "42601", "invalid Unicode surrogate pair", 16),
    (r"SELECT U&'x' UESCAPE 'a'", "42601", "invalid Unicode escape character at or near \"'a'\"",
     22),
    (r"SELECT 1; SELECT E'\u1'", "22025", "invalid Unicode escape", 20),
])
def test_errors(sql, sqlstate, message, position):
    from sqlvec.sql.dialect import parse

    with pytest.raises(SqlVecError) as error:
        parse(sql)
    assert (error.value.sqlstate, error.value.message, error.value.position) == \
        (sqlstate, message, position)


def test_pieces_and_positions_of_escape_string():
    assert literals.escape_string([("a\\n", 9), ("b''", 20)]) == "a\nb'"
    with pytest.raises(SqlVecError) as error:
        literals.escape_string([("ok", 9), ("\\uD800", 20)])
    assert error.value.position == 27  # the closing quote of the last piece


@pytest.mark.parametrize("data, shown", [
    (b"a\0b", "0x00"), (b"\xff", "0xff"), (b"ab\xc3\x28", "0xc3 0x28"),
    (b"\xf0\x9f\x98", "0xf0 0x9f 0x98"), (b"\xed\xa0\x80", "0xed 0xa0 0x80"),
    (b"\xc0\x80", "0xc0 0x80"), (b"\x80abc", "0x80"), (b"\xc3\xa9\0", "0x00"),
])
def test_decode_utf8_names_the_first_bad_character(data, shown):
    with pytest.raises(SqlVecError) as error:
        decode_utf8(data)
    assert (error.value.sqlstate, error.value.message) == \
        ("22021", f'invalid byte sequence for encoding "UTF8": {shown}')
    assert decode_utf8("é€😀".encode()) == "é€😀"
