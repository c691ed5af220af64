"""A statement's text with its constants replaced by `$n`, as pg_stat_statements shows it, and
the query id derived from that text.

Statements that differ only in their constants (`WHERE id = 1` / `WHERE id = 2`, a vector
literal, `LIMIT 10`) are one entry. The text is scanned once, token by token as PostgreSQL's
lexer would see it: string constants (`'…'`, `E'…'`, `B'…'`, `X'…'`, `U&'…'`, dollar-quoted) and
numbers become parameters numbered after the statement's own highest `$n`; quoted identifiers,
comments, names and keywords stay as written.
"""

from __future__ import annotations

import hashlib
import re

_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<estring>[eE]'(?:[^'\\]|''|\\.)*')
  | (?P<string>(?:[bBxX]|[uU]&)?'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*|)\$(?s:.*?)\$(?P=tag)\$)
  | (?P<param>\$\d+)
  | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    """,
    re.VERBOSE | re.DOTALL,
)


def normalize(sql: str) -> str:
    """`sql` with every constant replaced by `$n` (n after the statement's own parameters)."""
    highest = max((int(m[1:]) for m in re.findall(r"\$\d+", sql)), default=0)
    out: list[str] = []
    pos = 0
    n = highest
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        if kind in ("string", "estring", "dollar", "number"):
            n += 1
            out.append(sql[pos:m.start()])
            out.append(f"${n}")
            pos = m.end()
    out.append(sql[pos:])
    return "".join(out).strip().rstrip(";").rstrip()


def query_id(normalized: str) -> int:
    """A stable 64-bit id of a normalized statement (signed, as PostgreSQL's queryid)."""
    digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
