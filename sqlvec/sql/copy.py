"""The COPY statement: `COPY table [(columns)] FROM STDIN` and `COPY table|(query) TO STDOUT`
with their options, modern (`WITH (FORMAT csv, HEADER)`) and legacy (`CSV HEADER`) spellings.

The engine recognises COPY here (sqlglot does not model PostgreSQL's options); the session
prepares it as a statement of its own kind, and the front end that talks to the client (the
wire) moves the data in the formats `CopyOptions` describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlvec.errors import FeatureNotSupported, SqlVecError, SyntaxError_

_TOKEN = re.compile(r"""
    (?P<space>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<string>[eE]?'(?:[^'\\]|''|\\.)*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<number>[-+]?\d+(?:\.\d+)?)
  | (?P<punct>[(),.;*])
""", re.X | re.S)


@dataclass(frozen=True)
class CopyOptions:
    """How COPY data is laid out (the statement's options, with PostgreSQL's defaults)."""

    format: str = "text"  # text | csv | binary
    delimiter: str = "\t"
    null: str = "\\N"
    header: bool = False
    quote: str = '"'
    escape: str = '"'


@dataclass(frozen=True)
class CopyCommand:
    """A parsed `COPY table [(columns)] FROM STDIN` or `COPY table|(query) TO STDOUT`."""

    direction: str  # "from" | "to"
    table: str | None  # as written (quotes kept), None for COPY (query) TO
    columns: tuple[str, ...] | None  # as written, None when not listed
    query: str | None
    options: CopyOptions = field(default_factory=CopyOptions)

    @property
    def table_name(self) -> str | None:
        """The table as the engine names it: identifiers unquoted (or folded to lower case),
        schema-qualified as `schema.table` when written so."""
        if self.table is None:
            return None
        return ".".join(_unquote(part) for part in _split_qualified(self.table))

    @property
    def label(self) -> str:
        """What CONTEXT lines name: the table, unquoted."""
        return _unquote(_split_qualified(self.table)[-1]) if self.table else "query"

    def select_sql(self) -> str:
        """The query whose rows COPY TO writes, or whose columns COPY FROM fills."""
        if self.query is not None:
            return self.query
        cols = ", ".join(self.columns) if self.columns else "*"
        return f"SELECT {cols} FROM {self.table}"


def parse_copy(sql: str) -> CopyCommand:
    """Parse a COPY statement (modern `WITH (FORMAT csv, ...)` and legacy option spellings)."""
    text = sql.strip().rstrip(";").strip()
    lead = len(sql) - len(sql.lstrip())  # error positions count from the start of `sql`
    tokens = _tokenize(text)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, str, int]:
        return tokens[pos + offset] if pos + offset < len(tokens) else ("end", "", len(text))

    def take() -> tuple[str, str, int]:
        nonlocal pos
        token = peek()
        pos += 1
        return token

    def word() -> str:
        kind, value, _ = peek()
        return value.lower() if kind == "word" else ""

    def fail(message: str | None = None) -> SqlVecError:
        _, value, at = peek()
        return SyntaxError_(message or f'syntax error at or near "{value}"' if value
                            else "syntax error at end of input", position=lead + at + 1)

    if word() != "copy":
        raise fail()
    take()
    table = query = None
    columns = None
    if peek()[1] == "(":
        start = peek()[2]
        depth = 0
        while True:
            kind, value, at = take()
            if kind == "end":
                raise fail()
            if value == "(":
                depth += 1
            elif value == ")":
                depth -= 1
                if depth == 0:
                    query = text[start + 1:at].strip()
                    break
    else:
        parts = []
        while True:
            kind, value, _ = take()
            if kind not in ("word", "ident"):
                raise fail()
            parts.append(value)
            if peek()[1] != ".":
                break
            take()
        table = ".".join(parts)
        if peek()[1] == "(":
            take()
            names = []
            while True:
                kind, value, _ = take()
                if kind not in ("word", "ident"):
                    raise fail()
                names.append(value)
                sep = take()[1]
                if sep == ")":
                    break
                if sep != ",":
                    pos -= 1
                    raise fail()
            columns = tuple(names)
    direction = word()
    if direction not in ("from", "to"):
        raise fail()
    take()
    if query is not None and direction == "from":
        raise SyntaxError_("COPY (query) FROM is not supported; name a table")
    target = word()
    if direction == "from" and target != "stdin" or direction == "to" and target != "stdout":
        if peek()[0] == "string" or target == "program":
            raise FeatureNotSupported(
                f"COPY {direction.upper()} a file or program is not supported; use COPY "
                f"{direction.upper()} {'STDIN' if direction == 'from' else 'STDOUT'} "
                "(psql: \\copy)")
        raise fail()
    take()
    options = _parse_options(tokens[pos:], fail)
    return CopyCommand(direction, table, columns, query, options)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            tokens.append(("other", text[i], i))
            i += 1
            continue
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group(0), i))
        i = m.end()
    return tokens


def _string_value(token: str) -> str:
    if token[0] in "eE":
        body = token[2:-1].replace("''", "'")
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return token[1:-1].replace("''", "'")


def _parse_options(tokens: list[tuple[str, str, int]], fail) -> CopyOptions:
    values: dict[str, object] = {}
    words = [(k, v) for k, v, _ in tokens]
    if words and words[0][1].lower() == "with":
        words = words[1:]
    if words and words[0][1] == "(":
        if words[-1][1] != ")":
            raise fail()
        items: list[list[tuple[str, str]]] = [[]]
        for kind, value in words[1:-1]:
            if value == ",":
                items.append([])
            else:
                items[-1].append((kind, value))
        for item in items:
            if not item:
                raise fail()
            name = item[0][1].lower()
            arg = item[1] if len(item) > 1 else None
            values[name] = _option_value(name, arg)
    else:
        i = 0
        while i < len(words):
            kind, value = words[i]
            low = value.lower()
            if low in ("binary", "csv"):
                values["format"] = low
            elif low == "header":
                values["header"] = True
            elif low in ("delimiter", "null", "quote", "escape") and i + 1 < len(words):
                i += 1
                if words[i][1].lower() == "as" and i + 1 < len(words):
                    i += 1
                values[low] = _option_value(low, words[i])
            elif low in ("oids", "freeze"):
                pass
            else:
                raise FeatureNotSupported(f'COPY option "{value}" is not supported')
            i += 1
    fmt = str(values.get("format", "text")).lower()
    if fmt not in ("text", "csv", "binary"):
        raise SqlVecError(f'COPY format "{fmt}" not recognized', sqlstate="22023")
    csv = fmt == "csv"
    delimiter = str(values.get("delimiter", "," if csv else "\t"))
    null = str(values.get("null", "" if csv else "\\N"))
    quote = str(values.get("quote", '"'))
    escape = str(values.get("escape", quote))
    if len(delimiter) != 1:
        raise FeatureNotSupported("COPY delimiter must be a single one-byte character",
                                  sqlstate="0A000")
    if not csv and ("quote" in values or "escape" in values):
        raise FeatureNotSupported("COPY QUOTE and ESCAPE are available only in CSV mode")
    if fmt == "binary" and ("delimiter" in values or "null" in values):
        raise SqlVecError("cannot specify DELIMITER or NULL in BINARY mode", sqlstate="42601")
    header = values.get("header", False)
    if header == "match":
        header = True
    return CopyOptions(fmt, delimiter, null, bool(header), quote, escape)


def _option_value(name: str, arg: tuple[str, str] | None) -> object:
    if name in ("format",):
        if arg is None:
            raise SyntaxError_("COPY FORMAT needs a value")
        return arg[1].strip("'").lower()
    if name in ("header", "freeze"):
        if arg is None:
            return True
        low = arg[1].strip("'").lower()
        if low == "match":
            return "match"
        return low in ("true", "on", "1")
    if name in ("delimiter", "null", "quote", "escape"):
        if arg is None or arg[0] != "string":
            raise SyntaxError_(f"COPY {name.upper()} needs a quoted string")
        return _string_value(arg[1])
    if name == "encoding":
        value = (arg[1] if arg else "").strip("'").upper().replace("-", "")
        if value not in ("UTF8", "UNICODE"):
            raise FeatureNotSupported("COPY ENCODING other than UTF8 is not supported")
        return value
    raise FeatureNotSupported(f'COPY option "{name}" is not supported')


def _split_qualified(name: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r'"(?:[^"]|"")*"|[^."]+', name)]


def _unquote(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()
