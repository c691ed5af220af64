"""Statements sqlglot does not model (or models wrongly): session and utility commands.

sqlglot parses `SHOW`, `EXPLAIN`, `RESET`, `PREPARE`, `EXECUTE`, `CREATE EXTENSION` and most
`SET` forms as an opaque `Command`, and `START TRANSACTION`, `SAVEPOINT` and `DISCARD ALL` as
column aliases. They are recognised here, from the statement text, before sqlglot sees it;
everything else goes to the dialect. `split` cuts a query string into statements with the
dialect's tokenizer, so semicolons inside literals, identifiers and comments are respected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from sqlvec.errors import SyntaxError_
from sqlvec.sql.dialect import SqlVec

_TOKENIZER_DIALECT = SqlVec()


def split(sql: str) -> list[str]:
    """The statements of a query string, each without its semicolon; empty ones dropped."""
    return [text for _, text in split_with_offsets(sql)]


def split_with_offsets(sql: str) -> list[tuple[int, str]]:
    """`split`, with where each statement starts in `sql` (error positions count from the
    start of the whole query string, as PostgreSQL's do)."""
    try:
        tokens = _TOKENIZER_DIALECT.tokenize(sql)
    except TokenError:
        # Let the parser report the tokenizer error with PostgreSQL's wording.
        return [(0, sql)] if sql.strip() else []
    out: list[tuple[int, str]] = []
    start = 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            out.append((start, sql[start : token.start]))
            start = token.end + 1
    out.append((start, sql[start:]))
    return [(at, s) for at, s in out if _strip_comments(s).strip()]


def _strip_comments(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


@dataclass(frozen=True)
class Utility:
    """A recognised utility statement: its kind and the parts the session needs."""

    kind: str  # begin | commit | rollback | savepoint | release | rollback_to | set | reset |
    # show | prepare | execute | deallocate | discard | explain | create_extension |
    # drop_extension | listen | checkpoint | vacuum | analyze
    name: str | None = None
    value: str | None = None
    local: bool = False
    options: tuple = ()
    body: str | None = None


_W = r"\s+"
_NAME = r'(?P<name>"[^"]+"|[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)'

_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("begin", re.compile(r"(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?(?P<rest>.*)", re.I | re.S)),
    ("commit", re.compile(r"(?:COMMIT|END)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?", re.I)),
    ("rollback_to", re.compile(r"ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO\s+(?:SAVEPOINT\s+)?" + _NAME, re.I)),
    ("rollback", re.compile(r"(?:ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?", re.I)),
    ("savepoint", re.compile(r"SAVEPOINT\s+" + _NAME, re.I)),
    ("release", re.compile(r"RELEASE(?:\s+SAVEPOINT)?\s+" + _NAME, re.I)),
    ("show", re.compile(r"SHOW\s+(?P<name>ALL|TRANSACTION\s+ISOLATION\s+LEVEL|TIME\s+ZONE|"
                        r"[A-Za-z_][\w.]*)", re.I)),
    ("reset", re.compile(r"RESET\s+(?P<name>ALL|TIME\s+ZONE|[A-Za-z_][\w.]*)", re.I)),
    ("set", re.compile(r"SET(?:\s+(?P<scope>SESSION|LOCAL))?\s+(?P<name>TIME\s+ZONE|NAMES|"
                       r"SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION|TRANSACTION|"
                       r"[A-Za-z_][\w.]*)(?:\s*(?:=|\s+TO\s+|\s)\s*(?P<value>.*))?", re.I | re.S)),
    ("discard", re.compile(r"DISCARD\s+(?P<name>ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)", re.I)),
    ("deallocate", re.compile(r"DEALLOCATE(?:\s+PREPARE)?\s+(?P<name>ALL|\"[^\"]+\"|[A-Za-z_][\w$]*)", re.I)),
    ("prepare", re.compile(r"PREPARE\s+(?P<name>\"[^\"]+\"|[A-Za-z_][\w$]*)\s*(?:\((?P<types>[^)]*)\))?\s+AS\s+(?P<body>.+)", re.I | re.S)),
    ("execute", re.compile(r"EXECUTE\s+(?P<name>\"[^\"]+\"|[A-Za-z_][\w$]*)\s*(?:\((?P<args>.*)\))?", re.I | re.S)),
    ("explain", re.compile(r"EXPLAIN(?P<rest>\s.+)", re.I | re.S)),
    ("create_extension", re.compile(r"CREATE\s+EXTENSION(?P<ine>\s+IF\s+NOT\s+EXISTS)?\s+" + _NAME + r"(?P<rest>.*)", re.I | re.S)),
    ("drop_extension", re.compile(r"DROP\s+EXTENSION(?P<ie>\s+IF\s+EXISTS)?\s+" + _NAME + r"(?P<rest>.*)", re.I | re.S)),
    # A session never listens (LISTEN is refused), so UNLISTEN always has nothing to undo.
    ("unlisten", re.compile(r"UNLISTEN\s+(?:\*|" + _NAME + r")\s*", re.I)),
    ("listen", re.compile(r"(?:LISTEN|UNLISTEN|NOTIFY)\s+.*", re.I | re.S)),
    ("checkpoint", re.compile(r"CHECKPOINT", re.I)),
    ("vacuum", re.compile(r"VACUUM\b.*", re.I | re.S)),
    ("analyze", re.compile(r"ANALY[SZ]E\b.*", re.I | re.S)),
]


def _unquote(name: str | None) -> str | None:
    if name is None:
        return None
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return name.lower()


def recognise(statement: str) -> Utility | None:
    """The utility statement `statement` is, or None if it is for the SQL parser."""
    text = _strip_comments(statement).strip()
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        groups = m.groupdict()
        if kind == "begin":
            return Utility("begin", body=groups["rest"].strip() or None)
        if kind == "set":
            name = " ".join(groups["name"].split()).lower()
            if name in ("transaction", "characteristics") or name.startswith("session characteristics"):
                return Utility("set", name="transaction", value=(groups.get("value") or "").strip())
            value = groups.get("value")
            if value is None or not value.strip():
                raise SyntaxError_("syntax error at end of input", position=len(statement) + 1)
            return Utility("set", name=name, value=value.strip(),
                           local=(groups.get("scope") or "").upper() == "LOCAL")
        if kind in ("show", "reset", "discard"):
            return Utility(kind, name=" ".join(groups["name"].split()).lower())
        if kind == "prepare":
            types = tuple(t.strip() for t in _split_commas(groups["types"] or "") if t.strip())
            return Utility("prepare", name=_unquote(groups["name"]), options=types,
                           body=groups["body"])
        if kind == "execute":
            return Utility("execute", name=_unquote(groups["name"]), body=groups.get("args"))
        if kind == "explain":
            return Utility("explain", body=groups["rest"].strip())
        if kind in ("create_extension", "drop_extension"):
            return Utility(kind, name=_unquote(groups["name"]),
                           local=bool(groups.get("ine") or groups.get("ie")),
                           body=(groups.get("rest") or "").strip() or None)
        return Utility(kind, name=_unquote(groups.get("name")))
    return None


def _split_commas(text: str) -> list[str]:
    """Split on top-level commas (not inside parentheses or quotes)."""
    parts, depth, current, quote = [], 0, [], None
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current:
        parts.append("".join(current))
    return parts


def split_arguments(text: str) -> list[str]:
    return [p.strip() for p in _split_commas(text)]


_EXPLAIN_OPTIONS = re.compile(r"\(\s*(?P<opts>[^)]*)\)\s*(?P<body>.+)", re.S)


def explain_options(body: str) -> tuple[dict[str, str], str]:
    """Split `EXPLAIN` options from the statement: `(ANALYZE, FORMAT JSON) SELECT ...` or the
    old `ANALYZE VERBOSE SELECT ...` form."""
    m = _EXPLAIN_OPTIONS.fullmatch(body.strip())
    options: dict[str, str] = {}
    if m:
        for item in _split_commas(m["opts"]):
            words = item.split()
            if words:
                options[words[0].lower()] = " ".join(words[1:]).lower() or "true"
        return options, m["body"]
    words = body.split(None, 1)
    while words and words[0].upper() in ("ANALYZE", "ANALYSE", "VERBOSE"):
        options["analyze" if words[0].upper().startswith("ANALY") else "verbose"] = "true"
        words = words[1].split(None, 1) if len(words) > 1 else []
    return options, " ".join(words)
