"""Cutting a query string into statements, once, for the whole server.

A simple Query message may hold several statements separated by semicolons; a semicolon
inside a string constant (standard `'...'` or escaped `E'...'`), a quoted identifier, a
dollar-quoted string or a comment does not end a statement. `split_with_offsets` keeps where
each statement starts, because PostgreSQL counts an error's position from the start of the
whole query string. The scan looks only at the characters that can open a quote or a comment,
so a large INSERT costs one pass of `re.search`, not a tokenizer run.
"""

from __future__ import annotations

import functools
import re

_INTERESTING = re.compile(r"['\"$;]|--|/\*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def split_with_offsets(sql: str) -> list[tuple[int, str]]:
    """Split on semicolons outside quotes, dollar quotes and comments: (offset, text) per
    statement, empty ones (only blanks and comments) dropped. Short texts (the ones a client
    sends again and again) are split once and remembered."""
    if len(sql) <= REMEMBERED_TEXT:
        return list(_split_remembered(sql))
    return _split(sql)


REMEMBERED_TEXT = 1024  # characters: a text up to this long is split once


@functools.lru_cache(maxsize=1024)
def _split_remembered(sql: str) -> tuple[tuple[int, str], ...]:
    return tuple(_split(sql))


def _split(sql: str) -> list[tuple[int, str]]:
    out, start, i, n = [], 0, 0, len(sql)
    while True:
        m = _INTERESTING.search(sql, i)
        if m is None:
            break
        i = m.start()
        token = m.group(0)
        if token == ";":
            out.append((start, sql[start:i]))
            start = i + 1
            i += 1
        elif token == "'":
            escaped = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word_char(sql[i - 2]))
            i = _end_of_string(sql, i + 1, escaped)
        elif token == '"':
            end = sql.find('"', i + 1)
            i = n if end < 0 else end + 1
        elif token == "--":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif token == "/*":
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:  # "$": a dollar quote, unless part of an identifier or a parameter ($1)
            d = _DOLLAR.match(sql, i)
            if d and (i == 0 or not _word_char(sql[i - 1])):
                end = sql.find(d.group(0), d.end())
                i = n if end < 0 else end + len(d.group(0))
            else:
                i += 1
    out.append((start, sql[start:]))
    return [(offset, text) for offset, text in out if strip_comments(text).strip()]


def _end_of_string(sql: str, i: int, escaped: bool) -> int:
    """The index after the quote closing a string literal whose body starts at i ('' is a
    quote inside; in E'' strings a backslash escapes the next character)."""
    n = len(sql)
    while i < n:
        if escaped:
            ch = sql[i]
            if ch == "\\":
                i += 2
                continue
            if ch != "'":
                i += 1
                continue
            j = i
        else:
            j = sql.find("'", i)
            if j < 0:
                return n
        if j + 1 < n and sql[j + 1] == "'":
            i = j + 2
            continue
        return j + 1
    return n


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def strip_comments(sql: str) -> str:
    """`sql` without its `--` and `/* */` comments."""
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.S)


def first_word(sql: str) -> str:
    """The statement's first keyword, lower case (what kind of statement it is)."""
    m = re.match(r"\s*([A-Za-z]+)", strip_comments(sql))
    return m.group(1).lower() if m else ""


def split(sql: str) -> list[str]:
    """The statements of a query string, each without its semicolon; empty ones dropped."""
    return [text for _, text in split_with_offsets(sql)]
