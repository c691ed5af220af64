"""sql/statements.py: cutting a query string into statements, once for the whole server."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sqlvec.sql.statements import first_word, split, split_with_offsets, strip_comments


def test_split_with_offsets():
    sql = "select 1; select ';' ; -- c;\nselect $$a;b$$; /* ; */ select E'\\';'; select 'it''s;'"
    pieces = split_with_offsets(sql)
    assert [text.strip() for _, text in pieces] == [
        "select 1", "select ';'", "-- c;\nselect $$a;b$$", "/* ; */ select E'\\';'",
        "select 'it''s;'"]
    for offset, text in pieces:
        assert sql[offset:offset + len(text)] == text
    assert split_with_offsets(" ; -- nothing\n;") == []
    assert split_with_offsets("select $1; select a$b$c") == [(0, "select $1"),
                                                                (10, " select a$b$c")]


@given(st.lists(st.text(alphabet="abc ;'\"$-*/\n", max_size=12), max_size=6))
def test_split_never_loses_text(parts):
    sql = ";".join(parts)
    for offset, text in split_with_offsets(sql):
        assert sql[offset:offset + len(text)] == text


def test_first_word_skips_comments():
    assert first_word("  /* c */ -- d\n copy t from stdin") == "copy"
    assert first_word("-- only a comment") == ""
    assert strip_comments("a /* -- */ b -- c") == "a  b "


def test_backslashes_escape_only_in_e_strings():
    # standard_conforming_strings is on: '\' is a backslash, the quote after it ends the string
    assert split("select 'a\\'; select 2") == ["select 'a\\'", " select 2"]
    assert split("select E'a\\'; select 2'") == ["select E'a\\'; select 2'"]


def test_parameters_next_to_dollars_do_not_open_a_dollar_quote():
    assert split_with_offsets("select $1::int,$2::int; select 2") == [
        (0, "select $1::int,$2::int"), (23, " select 2")]


def test_a_remembered_split_is_handed_out_as_a_fresh_list():
    """Short texts are split once and remembered: a caller changing its list changes no one
    else's answer."""
    sql = "SELECT 1; SELECT 'a;b'"
    first = split_with_offsets(sql)
    assert first == [(0, "SELECT 1"), (9, " SELECT 'a;b'")]
    first.clear()
    assert split_with_offsets(sql) == [(0, "SELECT 1"), (9, " SELECT 'a;b'")]
    long = "SELECT 1;" * 200  # past the remembered length: split every time, the same way
    assert len(split_with_offsets(long)) == 200
