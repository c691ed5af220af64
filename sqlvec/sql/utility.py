"""Statements sqlglot does not model (or models wrongly): session and utility commands.

sqlglot parses `SHOW`, `EXPLAIN`, `RESET`, `PREPARE`, `EXECUTE`, `CREATE EXTENSION`, cursors and
most `SET` forms as an opaque `Command`, and `START TRANSACTION`, `SAVEPOINT` and `DISCARD ALL`
as column aliases. They are recognised here, from the statement text, before sqlglot sees it;
everything else goes to the dialect. Each recognised statement is a `Utility` of one
`UtilityKind`; the session runs it through a handler table keyed by that kind.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from sqlvec.errors import SyntaxError_
from sqlvec.sql.statements import strip_comments


class UtilityKind(str, enum.Enum):
    """The utility statements the engine knows (a str: `kind == "begin"` reads as before)."""

    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"
    RELEASE = "release"
    ROLLBACK_TO = "rollback_to"
    SET = "set"
    RESET = "reset"
    SHOW = "show"
    DISCARD = "discard"
    PREPARE = "prepare"
    EXECUTE = "execute"
    DEALLOCATE = "deallocate"
    EXPLAIN = "explain"
    CREATE_EXTENSION = "create_extension"
    DROP_EXTENSION = "drop_extension"
    LISTEN = "listen"
    UNLISTEN = "unlisten"
    CHECKPOINT = "checkpoint"
    LOCK = "lock"
    VACUUM = "vacuum"
    ANALYZE = "analyze"
    DECLARE = "declare"
    FETCH = "fetch"
    CLOSE = "close"
    ALTER_SYSTEM = "alter_system"
    SET_CONSTRAINTS = "set_constraints"


K = UtilityKind


@dataclass(frozen=True)
class Utility:
    """A recognised utility statement: its kind and the parts the session needs."""

    kind: UtilityKind
    name: str | None = None
    value: str | None = None
    local: bool = False  # SET LOCAL; IF [NOT] EXISTS of extensions; WITH HOLD of cursors
    options: tuple = ()
    body: str | None = None


_W = r"\s+"
_NAME = r'(?P<name>"[^"]+"|[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)'

_PATTERNS: list[tuple[UtilityKind, re.Pattern]] = [
    (K.BEGIN, re.compile(r"(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?(?P<rest>.*)", re.I | re.S)),
    (K.COMMIT, re.compile(r"(?:COMMIT|END)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?", re.I)),
    (K.ROLLBACK_TO, re.compile(r"ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO\s+(?:SAVEPOINT\s+)?" + _NAME, re.I)),
    (K.ROLLBACK, re.compile(r"(?:ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?", re.I)),
    (K.SAVEPOINT, re.compile(r"SAVEPOINT\s+" + _NAME, re.I)),
    (K.RELEASE, re.compile(r"RELEASE(?:\s+SAVEPOINT)?\s+" + _NAME, re.I)),
    (K.SHOW, re.compile(r"SHOW\s+(?P<name>ALL|TRANSACTION\s+ISOLATION\s+LEVEL|TIME\s+ZONE|"
                        r"[A-Za-z_][\w.]*)", re.I)),
    (K.RESET, re.compile(r"RESET\s+(?P<name>ALL|TIME\s+ZONE|[A-Za-z_][\w.]*)", re.I)),
    (K.SET_CONSTRAINTS, re.compile(r"SET\s+CONSTRAINTS\s+(?P<names>.+?)\s+"
                                   r"(?P<mode>DEFERRED|IMMEDIATE)", re.I | re.S)),
    (K.SET, re.compile(r"SET(?:\s+(?P<scope>SESSION|LOCAL))?\s+(?P<name>TIME\s+ZONE|NAMES|"
                       r"SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION|TRANSACTION|"
                       r"[A-Za-z_][\w.]*)(?:\s*(?:=|\s+TO\s+|\s)\s*(?P<value>.*))?", re.I | re.S)),
    # ALTER SYSTEM SET name { = | TO } value | ALTER SYSTEM RESET { name | ALL }
    (K.ALTER_SYSTEM, re.compile(r"ALTER\s+SYSTEM\s+(?:(?P<set>SET)\s+(?P<name>[A-Za-z_][\w.]*)"
                                r"\s*(?:=|\s+TO\s|\s)\s*(?P<value>.+)|RESET\s+"
                                r"(?P<reset>ALL|[A-Za-z_][\w.]*))", re.I | re.S)),
    (K.DISCARD, re.compile(r"DISCARD\s+(?P<name>ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)", re.I)),
    (K.DEALLOCATE, re.compile(r"DEALLOCATE(?:\s+PREPARE)?\s+(?P<name>ALL|\"[^\"]+\"|[A-Za-z_][\w$]*)", re.I)),
    (K.PREPARE, re.compile(r"PREPARE\s+(?P<name>\"[^\"]+\"|[A-Za-z_][\w$]*)\s*(?:\((?P<types>[^)]*)\))?\s+AS\s+(?P<body>.+)", re.I | re.S)),
    (K.EXECUTE, re.compile(r"EXECUTE\s+(?P<name>\"[^\"]+\"|[A-Za-z_][\w$]*)\s*(?:\((?P<args>.*)\))?", re.I | re.S)),
    (K.EXPLAIN, re.compile(r"EXPLAIN(?P<rest>\s.+)", re.I | re.S)),
    (K.CREATE_EXTENSION, re.compile(r"CREATE\s+EXTENSION(?P<ine>\s+IF\s+NOT\s+EXISTS)?\s+" + _NAME + r"(?P<rest>.*)", re.I | re.S)),
    (K.DROP_EXTENSION, re.compile(r"DROP\s+EXTENSION(?P<ie>\s+IF\s+EXISTS)?\s+" + _NAME + r"(?P<rest>.*)", re.I | re.S)),
    # A session never listens (LISTEN is refused), so UNLISTEN always has nothing to undo.
    (K.UNLISTEN, re.compile(r"UNLISTEN\s+(?:\*|" + _NAME + r")\s*", re.I)),
    (K.LISTEN, re.compile(r"(?:LISTEN|UNLISTEN|NOTIFY)\s+.*", re.I | re.S)),
    (K.CHECKPOINT, re.compile(r"CHECKPOINT", re.I)),
    (K.LOCK, re.compile(r"LOCK(?:\s+TABLE)?\s+(?:ONLY\s+)?(?P<tables>.+?)"
                        r"(?:\s+IN\s+(?P<mode>[A-Z ]+?)\s+MODE)?(?P<nowait>\s+NOWAIT)?", re.I | re.S)),
    (K.VACUUM, re.compile(r"VACUUM\b.*", re.I | re.S)),
    (K.ANALYZE, re.compile(r"ANALY[SZ]E\b.*", re.I | re.S)),
]


def _unquote(name: str | None) -> str | None:
    if name is None:
        return None
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return name.lower()


def recognise(statement: str) -> Utility | None:
    """The utility statement `statement` is, or None if it is for the SQL parser."""
    text = strip_comments(statement).strip()
    cursor = _recognise_cursor(text)
    if cursor is not None:
        return cursor
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        groups = m.groupdict()
        if kind is K.BEGIN:
            return Utility(kind, body=groups["rest"].strip() or None)
        if kind is K.SET:
            name = " ".join(groups["name"].split()).lower()
            if name in ("transaction", "characteristics") or name.startswith("session characteristics"):
                return Utility(kind, name="transaction", value=(groups.get("value") or "").strip())
            value = groups.get("value")
            if value is None or not value.strip():
                raise SyntaxError_("syntax error at end of input", position=len(statement) + 1)
            return Utility(kind, name=name, value=value.strip(),
                           local=(groups.get("scope") or "").upper() == "LOCAL")
        if kind is K.SET_CONSTRAINTS:
            names = tuple(_unquote(n.strip().rpartition(".")[2])
                          for n in _split_commas(groups["names"]) if n.strip())
            return Utility(kind, value=groups["mode"].upper(), options=names)
        if kind is K.ALTER_SYSTEM:
            if groups["set"]:
                return Utility(kind, name=groups["name"].lower(), value=groups["value"].strip())
            reset = groups["reset"].lower()
            return Utility(kind, name=None if reset == "all" else reset)
        if kind in (K.SHOW, K.RESET, K.DISCARD):
            return Utility(kind, name=" ".join(groups["name"].split()).lower())
        if kind is K.PREPARE:
            types = tuple(t.strip() for t in _split_commas(groups["types"] or "") if t.strip())
            return Utility(kind, name=_unquote(groups["name"]), options=types,
                           body=groups["body"])
        if kind is K.EXECUTE:
            return Utility(kind, name=_unquote(groups["name"]), body=groups.get("args"))
        if kind is K.EXPLAIN:
            return Utility(kind, body=groups["rest"].strip())
        if kind is K.LOCK:
            tables = tuple(t.strip() for t in _split_commas(groups["tables"]) if t.strip())
            mode = " ".join((groups.get("mode") or "ACCESS EXCLUSIVE").upper().split())
            return Utility(kind, value=mode, options=tables)
        if kind in (K.CREATE_EXTENSION, K.DROP_EXTENSION):
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
    """Top-level comma-separated items (EXECUTE's arguments, SET's list values), trimmed."""
    return [p.strip() for p in _split_commas(text)]


def setting_value(text: str) -> str:
    """The value of `SET name TO ...` as the setting stores it: items unquoted, comma-joined."""
    cleaned = []
    for p in split_arguments(text):
        if len(p) >= 2 and p[0] == p[-1] == "'":
            p = p[1:-1].replace("''", "'")
        cleaned.append(p)
    return ", ".join(cleaned)


# Cursors: DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH HOLD] FOR query, FETCH, MOVE, CLOSE.
_CURSOR_NAME = r'(?P<name>"[^"]+"|[A-Za-z_][\w$]*)'
_DECLARE = re.compile(r"DECLARE\s+" + _CURSOR_NAME + r"\s+(?:(?:BINARY|INSENSITIVE|ASENSITIVE|"
                      r"NO\s+SCROLL|SCROLL)\s+)*CURSOR\s+(?:(?P<hold>WITH|WITHOUT)\s+HOLD\s+)?"
                      r"FOR\s+(?P<body>.+)", re.I | re.S)
_FETCH = re.compile(r"(?P<verb>FETCH|MOVE)\s+(?:(?P<dir>NEXT|PRIOR|FIRST|LAST|ALL|FORWARD\s+ALL|"
                    r"FORWARD\s+\d+|FORWARD|BACKWARD(?:\s+ALL|\s+\d+)?|ABSOLUTE\s+-?\d+|"
                    r"RELATIVE\s+-?\d+|-?\d+)\s+)?(?:(?:FROM|IN)\s+)?" + _CURSOR_NAME, re.I)
_CLOSE = re.compile(r"CLOSE\s+(?P<name>ALL|\"[^\"]+\"|[A-Za-z_][\w$]*)", re.I)


def _recognise_cursor(text: str) -> Utility | None:
    """DECLARE / FETCH / MOVE / CLOSE (`text` without comments, stripped); MOVE is a FETCH
    with the option "move"."""
    text = text.rstrip(";").strip()
    head = text[:8].upper()
    if not head.startswith(("DECLARE", "FETCH", "MOVE", "CLOSE")):
        return None
    m = _DECLARE.fullmatch(text)
    if m:
        return Utility(K.DECLARE, name=_cursor_name(m["name"]), body=m["body"],
                       local=(m["hold"] or "").upper() == "WITH")
    m = _FETCH.fullmatch(text)
    if m:
        return Utility(K.FETCH, name=_cursor_name(m["name"]), value=m["dir"] or "next",
                       options=("move",) if m["verb"].upper() == "MOVE" else ())
    m = _CLOSE.fullmatch(text)
    if m:
        name = m["name"]
        return Utility(K.CLOSE, name="all" if name.upper() == "ALL" else _cursor_name(name))
    return None


def _cursor_name(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name.lower()


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
