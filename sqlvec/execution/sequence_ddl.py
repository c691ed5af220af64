"""CREATE SEQUENCE and ALTER SEQUENCE's options, and an identity column's (ALTER TABLE ...
ALTER COLUMN ... RESTART | SET option | ADD GENERATED ... AS IDENTITY), read from the statement
text as PostgreSQL's grammar (SeqOptElem) has them: sqlglot keeps only some of them, and reads
NO CYCLE as CYCLE.

The rules the options obey are the catalog's (catalog/sequences.py); what is read here but not
supported (temporary sequences) is 0A000, never ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.sequences import TYPE_NAMES, TYPE_RANGES, SequenceOptions
from sqlvec.errors import (
    FeatureNotSupported,
    InvalidTextRepresentation,
    Notice,
    NumericValueOutOfRange,
    SqlVecError,
    UndefinedColumn,
)

NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
QUALIFIED = rf"(?P<name>{NAME}(?:\s*\.\s*{NAME})?)"
_CREATE = re.compile(rf"\s*CREATE\s+(?P<kind>(?:TEMP|TEMPORARY|UNLOGGED)\s+)?SEQUENCE\s+"
                     rf"(?P<exists>IF\s+NOT\s+EXISTS\s+)?{QUALIFIED}(?P<options>.*?)\s*;?\s*$",
                     re.I | re.S)
_TOKEN = re.compile(r'\s*("(?:[^"]|"")+"|[A-Za-z_][\w$]*|[-+]?\s*\d[\w.]*(?:[eE][-+]?\d+)?'
                    r"|'(?:[^']|'')*'|\S)", re.S)
INT8_RANGE = TYPE_RANGES["int8"]


def ident(text: str) -> str:
    """An identifier as PostgreSQL folds it: quoted kept, unquoted lower-cased."""
    text = text.strip()
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def name_parts(text: str) -> list[str]:
    """A possibly qualified, possibly quoted name's parts, folded as identifiers are."""
    return [ident(p) for p in re.findall(NAME, text)]


def recognise_create(sql: str) -> exp.Command | None:
    """CREATE SEQUENCE as a `Command` holding its text (sqlglot would lose options)."""
    if _CREATE.match(sql) is None:
        return None
    return exp.Command(this="CREATE", expression=exp.Literal.string(sql.strip()))


@dataclass
class _Tokens:
    items: list[str]
    at: int = 0

    def peek(self) -> str | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def word(self) -> str:
        token = self.peek()
        return token.upper() if token is not None else ""

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise syntax_error(None)
        self.at += 1
        return token

    def skip(self, word: str) -> bool:
        if self.word() == word:
            self.at += 1
            return True
        return False

    def number(self) -> int:
        """A bigint option value: PostgreSQL's errors for a fraction, a huge one, a string."""
        token = self.take()
        text = re.sub(r"\s+", "", token)
        if not re.fullmatch(r"[-+]?\d[\w.]*", text):
            raise syntax_error(token)
        if not re.fullmatch(r"[-+]?\d+", text):
            raise InvalidTextRepresentation(f'invalid input syntax for type bigint: "{text}"')
        value = int(text)
        if not INT8_RANGE[0] <= value <= INT8_RANGE[1]:
            raise NumericValueOutOfRange(f'value "{text.lstrip("+")}" is out of range for type '
                                         "bigint")
        return value


def syntax_error(token: str | None) -> SqlVecError:
    """PostgreSQL's 42601 at `token`, or at the end of the input when there is none."""
    if token is None:
        return SqlVecError("syntax error at end of input", sqlstate="42601")
    return SqlVecError(f'syntax error at or near "{token}"', sqlstate="42601")


def parse_options(text: str, *, altering: bool) -> SequenceOptions:
    """The option list of CREATE SEQUENCE or (`altering`) ALTER SEQUENCE."""
    return _collect(text, lambda tokens: _option(tokens, altering))


def parse_identity_options(text: str) -> SequenceOptions:
    """An identity column's: `RESTART [[WITH] n]` and `SET <sequence option>`, any number."""
    def one(tokens: _Tokens) -> tuple[str, object]:
        if tokens.word() == "RESTART":
            return _option(tokens, True)
        if not tokens.skip("SET"):
            raise syntax_error(tokens.peek())
        if tokens.skip("GENERATED"):
            if tokens.skip("ALWAYS"):
                return "generated", "always"
            if tokens.skip("BY") and tokens.skip("DEFAULT"):
                return "generated", "by default"
            raise syntax_error(tokens.peek())
        return _option(tokens, False)
    return _collect(text, one)


def _collect(text: str, option) -> SequenceOptions:
    """The options `option` reads one by one from `text`; one given twice is 42601."""
    tokens = _Tokens(_TOKEN.findall(text))
    given: dict = {}
    while tokens.peek() is not None:
        name, value = option(tokens)
        if name in given:
            raise SqlVecError("conflicting or redundant options", sqlstate="42601")
        given[name] = value
    return SequenceOptions(given)


def _option(tokens: _Tokens, altering: bool, naming: bool = False) -> tuple[str, object]:
    """One option: its name in `SequenceOptions` and its value; SEQUENCE NAME only where an
    identity column is added (`naming`)."""
    word = tokens.take().upper()
    if word == "AS":
        type_name = TYPE_NAMES.get(ident(tokens.take()))
        if type_name is None:
            raise SqlVecError("sequence type must be smallint, integer, or bigint",
                              sqlstate="22023")
        return "type", type_name
    if word == "INCREMENT":
        tokens.skip("BY")
        return "increment", tokens.number()
    if word in ("MINVALUE", "MAXVALUE", "CACHE"):
        return {"MINVALUE": "min", "MAXVALUE": "max", "CACHE": "cache"}[word], tokens.number()
    if word == "START":
        tokens.skip("WITH")
        return "start", tokens.number()
    if word == "RESTART":
        if tokens.skip("WITH") or _is_number(tokens.peek()):
            return "restart", tokens.number()
        return "restart", None
    if word == "CYCLE":
        return "cycle", True
    if word == "NO":  # (what follows NO is where PostgreSQL's syntax error is)
        which = tokens.take().upper()
        if which not in ("MINVALUE", "MAXVALUE", "CYCLE"):
            raise syntax_error(tokens.items[tokens.at - 1])
        return {"MINVALUE": "min", "MAXVALUE": "max", "CYCLE": "cycle"}[which], \
            (False if which == "CYCLE" else None)
    if word == "OWNED" and tokens.skip("BY"):
        return "owned_by", _owner(tokens)
    if word == "SET" and tokens.peek() is None:
        raise syntax_error(None)
    if word == "SET" and altering and tokens.word() in ("LOGGED", "UNLOGGED"):
        return "persistence", _persistence(tokens)
    if word == "SEQUENCE" and tokens.skip("NAME"):
        if not naming:
            raise SqlVecError("invalid sequence option SEQUENCE NAME", sqlstate="42601")
        return "name", _qualified_name(tokens)
    raise syntax_error(tokens.items[tokens.at - 1])


def _persistence(tokens: _Tokens) -> str:
    """ALTER SEQUENCE's SET LOGGED ('p') or SET UNLOGGED ('u'), pg_class.relpersistence: a
    statement of its own, not an option among others (42601 as PostgreSQL's grammar)."""
    if tokens.at != 1:
        raise syntax_error(tokens.items[tokens.at - 1])
    persistence = "p" if tokens.take().upper() == "LOGGED" else "u"
    if tokens.peek() is not None:
        raise syntax_error(tokens.peek())
    return persistence


def _is_number(token: str | None) -> bool:
    return token is not None and re.match(r"[-+]?\s*\d", token) is not None


def _qualified_name(tokens: _Tokens, first: str | None = None) -> list[str]:
    """A dotted name's parts, folded as PostgreSQL folds identifiers."""
    parts = [ident(first or tokens.take())]
    while tokens.peek() == ".":
        tokens.take()
        parts.append(ident(tokens.take()))
    return parts


def _owner(tokens: _Tokens) -> list[str] | None:
    """OWNED BY's [schema.]table.column, or None for NONE."""
    first = tokens.take()
    if first.upper() == "NONE":
        return None
    parts = _qualified_name(tokens, first)
    if len(parts) < 2:
        raise SqlVecError("invalid OWNED BY option", sqlstate="42601",
                          hint="Specify OWNED BY table.column or OWNED BY NONE.")
    return parts


def owner_of(catalog: Catalog, parts: list[str] | None, schema: str,
             search_path: list[str]) -> str | None:
    """OWNED BY as the catalog keeps it (`table id.column`), checked as PostgreSQL does."""
    if parts is None:
        return None
    column, table_parts = parts[-1], parts[:-1]
    table = catalog.table(table_parts[-1], table_parts[0] if len(table_parts) > 1 else None,
                          search_path)
    if not table.def_.has_column(column):
        raise UndefinedColumn(f'column "{column}" of relation "{table.def_.name}" does not exist')
    if table.def_.schema != schema:
        raise SqlVecError("sequence must be in same schema as table it is linked to",
                          sqlstate="55000")
    return f"{table.def_.id}.{column}"


def create(text: str, catalog: Catalog, search_path: list[str]) -> str:
    """CREATE SEQUENCE: the tag, or "NOTICE" when IF NOT EXISTS finds the name taken."""
    m = _CREATE.match(text)
    assert m is not None
    kind = (m["kind"] or "").strip().upper()
    if kind in ("TEMP", "TEMPORARY"):
        raise FeatureNotSupported(f"CREATE {kind} SEQUENCE is not supported",
                                  hint="Temporary objects (tables, sequences) are not "
                                       "supported; create an ordinary one and drop it.")
    parts = name_parts(m["name"])
    schema = catalog.creation_schema(parts[0] if len(parts) > 1 else None, search_path)
    if m["exists"] and catalog.relation_exists(parts[-1], schema):
        return "NOTICE"
    options = parse_options(m["options"], altering=False)
    owned_by = owner_of(catalog, options.given.pop("owned_by", None), schema, search_path)
    catalog.create_sequence(parts[-1], schema, options, owned_by=owned_by,
                            persistence="u" if kind == "UNLOGGED" else "p")
    return "CREATE SEQUENCE"


def created_name(text: str) -> str:
    """The name CREATE SEQUENCE gives (for IF NOT EXISTS's notice)."""
    m = _CREATE.match(text)
    assert m is not None
    return name_parts(m["name"])[-1]


def alter(key: str, options: SequenceOptions, catalog: Catalog, search_path: list[str]) -> None:
    """ALTER SEQUENCE's options (`parse_options`) applied to the sequence `key`."""
    if not options.given:
        raise syntax_error(None)
    extra = {}
    if options.has("persistence"):
        extra["persistence"] = options.given.pop("persistence")
    if options.has("owned_by"):
        identity = _identity_owner(catalog, key)
        if identity is not None:
            raise FeatureNotSupported(
                "cannot change ownership of identity sequence",
                detail=f'Sequence "{key.split(".", 1)[1]}" is linked to table '
                       f'"{identity[0].def_.name}".')
        extra["owned_by"] = owner_of(catalog, options.given.pop("owned_by"),
                                     key.split(".", 1)[0], search_path)
    catalog.alter_sequence(key, options, **extra)


def owning_column(catalog: Catalog, key: str) -> tuple[object, str] | None:
    """The table and column that own sequence `key` (OWNED BY, a serial or an identity
    column), or None."""
    table_id, _, column = str(catalog.sequence(key).get("owned_by") or "").partition(".")
    table = catalog.store.tables.get(int(table_id)) if table_id.isdigit() else None
    return None if table is None or not table.def_.has_column(column) else (table, column)


def _identity_owner(catalog: Catalog, key: str) -> tuple[object, str] | None:
    """The table and identity column whose sequence `key` is, or None."""
    owner = owning_column(catalog, key)
    if owner is None or owner[0].def_.column(owner[1]).identity not in ("always", "by default"):
        return None
    return owner


def check_droppable(catalog: Catalog, key: str) -> None:
    """DROP SEQUENCE refuses an identity column's sequence, CASCADE or not (2BP01): the column
    requires it, as PostgreSQL's internal dependency does."""
    owner = _identity_owner(catalog, key)
    if owner is None:
        return
    table, column = owner[0].def_.name, owner[1]
    raise SqlVecError(f"cannot drop sequence {key.split('.', 1)[1]} because column {column} of "
                      f"table {table} requires it", sqlstate="2BP01",
                      hint=f"You can drop column {column} of table {table} instead.")


# A call of nextval() in a column default as stored: its sequence's name (quotes doubled).
NEXTVAL_CALL = re.compile(r"nextval\('((?:[^']|'')+)'(?:::regclass)?\)", re.IGNORECASE)


def default_reference(key: str) -> str:
    """How a column default names sequence `schema.name` in `nextval('...'::regclass)`: bare
    in public, qualified elsewhere (as PostgreSQL prints it)."""
    schema, name = key.split(".", 1)
    return name if schema == "public" else key


def _default_dependents(catalog: Catalog, keys: list[str]) -> list[tuple[str, object, str]]:
    """(sequence key, table, column) of each column default that calls nextval() on one of
    `keys`: PostgreSQL records that dependency, so DROP SEQUENCE without CASCADE refuses."""
    named = {default_reference(key): key for key in keys}
    found: dict[str, list[tuple[str, object, str]]] = {key: [] for key in keys}
    for t in catalog.store.tables.values():
        for c in t.def_.columns:
            calls = {named.get(call.group(1).replace("''", "'"))
                     for call in NEXTVAL_CALL.finditer(c.default or "")}
            for key in calls - {None}:
                found[key].append((key, t, c.name))
    return [dependent for key in keys for dependent in found[key]]


def drop_sequences(catalog: Catalog, keys: list[str], cascade: bool,
                   notices: list[Notice]) -> None:
    """DROP SEQUENCE of existing sequences `keys`, all or none: an identity column's is
    refused; one a column default calls is 2BP01 without CASCADE, and with CASCADE the
    defaults go with it (a NOTICE names them), as PostgreSQL's dependency walk does."""
    for key in keys:
        check_droppable(catalog, key)
    dependents = _default_dependents(catalog, keys)
    what = [f"default value for column {column} of table {t.def_.name}"
            for _, t, column in dependents]
    if dependents and not cascade:
        subject = (f"sequence {keys[0].split('.', 1)[1]} because other objects depend on it"
                   if len(keys) == 1 else "desired object(s) because other objects depend on them")
        raise SqlVecError(f"cannot drop {subject}", sqlstate="2BP01", detail="\n".join(
            f"{w} depends on sequence {key.split('.', 1)[1]}"
            for w, (key, _, _) in zip(what, dependents)),
            hint="Use DROP ... CASCADE to drop the dependent objects too.")
    if len(what) == 1:
        notices.append(Notice.notice(f"drop cascades to {what[0]}"))
    elif what:
        notices.append(Notice.notice(f"drop cascades to {len(what)} other objects",
                                     detail="\n".join(f"drop cascades to {w}" for w in what)))
    _drop_with_defaults(catalog, keys, dependents)


def _drop_with_defaults(catalog: Catalog, keys: list[str],
                        dependents: list[tuple[str, object, str]]) -> None:
    """The sequences removed from the catalog together with the last table whose defaults
    called them (one manifest version when a single table depended on them)."""
    def drop(c: dict) -> dict:
        return {**c, "sequences": {k: v for k, v in c["sequences"].items() if k not in keys}}
    tables = {t.def_.id: {col for _, d, col in dependents if d.def_.id == t.def_.id}
              for _, t, _ in dependents}
    if not tables:
        catalog.store.update_catalog(drop)
        return
    last = list(tables)[-1]
    for table_id, columns in tables.items():
        catalog.store.alter_table(table_id, lambda x, columns=columns: x.with_changes(
            columns=tuple(replace(c, default=None) if c.name in columns else c
                          for c in x.columns)), catalog=drop if table_id == last else None)


def _identity_sequence(catalog: Catalog, table, column: str) -> str | None:
    """The key of the sequence of identity column `column`; None when it is not one (42703
    when the table has no such column)."""
    d = table.def_
    if not d.has_column(column):
        raise UndefinedColumn(f'column "{column}" of relation "{d.name}" does not exist')
    owned = f"{d.id}.{column}"
    key = next((k for k, v in catalog.state["sequences"].items() if v.get("owned_by") == owned),
               None)
    return key if d.column(column).identity in ("always", "by default") else None


def _not_identity(table, column: str) -> str:
    return f'column "{column}" of relation "{table.def_.name}" is not an identity column'


def alter_identity(catalog: Catalog, table, column: str, text: str) -> None:
    """ALTER TABLE ... ALTER COLUMN c RESTART | SET GENERATED ... | SET option ...: the
    identity column's kind and its sequence's options, as PostgreSQL's, written together."""
    options = parse_identity_options(text)
    d = table.def_
    key = _identity_sequence(catalog, table, column)
    if key is None:
        raise SqlVecError(_not_identity(table, column), sqlstate="55000")
    generated = options.given.pop("generated", None)
    if generated is None:
        catalog.alter_sequence(key, options)
        return
    catalog.alter_sequence(key, options, lambda change: catalog.store.alter_table(
        d.id, lambda x: x.with_changes(columns=tuple(
            replace(c, identity=generated) if c.name == column else c for c in x.columns)),
        catalog=change))


def _identity_options(text: str | None) -> SequenceOptions:
    """An identity column's `(options)`: CREATE SEQUENCE's, SEQUENCE NAME among them."""
    return _collect(text or "", lambda tokens: _option(tokens, False, naming=True))


def column_options(type_name: str, item: exp.ColumnDef | None = None) -> SequenceOptions:
    """The options of a serial or identity column's sequence: its type follows the column's
    (`serial` is an integer sequence), and an identity column's own `(options)`, SEQUENCE NAME
    among them, as PostgreSQL reads them (AS is its column's type: 42601 when given)."""
    identity = item.find(exp.GeneratedAsIdentityColumnConstraint) if item is not None else None
    text = None if identity is None else identity.meta.get("sequence_options")
    if text is not None and not text.strip():
        raise syntax_error(")")
    options = _identity_options(text)
    if "type" in options.given:
        raise SqlVecError("conflicting or redundant options", sqlstate="42601")
    options.given.pop("owned_by", None)  # PostgreSQL's identity sequence is the column's
    options.given["type"] = TYPE_NAMES.get(type_name, "int8")
    return options


def named_sequence(options: SequenceOptions, schema: str) -> str | None:
    """An identity column's SEQUENCE NAME (taken out of `options`), or None; one in another
    schema than the table's is 0A000."""
    name = options.given.pop("name", None)
    if name and len(name) > 1 and name[-2] != schema:
        raise FeatureNotSupported("an identity column's sequence in another schema than its "
                                  "table's is not supported")
    return name[-1] if name else None


def check_identity_type(type_name: str) -> None:
    """An identity column is a smallint, an integer or a bigint (22023), as PostgreSQL's."""
    if type_name not in ("int2", "int4", "int8"):
        raise SqlVecError("identity column type must be smallint, integer, or bigint",
                          sqlstate="22023")


def add_identity(catalog: Catalog, table, column: str, kind: str, text: str | None) -> None:
    """ALTER TABLE ... ALTER COLUMN c ADD GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY [(options,
    SEQUENCE NAME)], as pg_dump restores identity columns: the column's sequence is created
    with the options and the column made an identity column in one manifest version, with
    PostgreSQL's checks."""
    options = _identity_options(text)
    d = table.def_
    if not d.has_column(column):
        raise UndefinedColumn(f'column "{column}" of relation "{d.name}" does not exist')
    col = d.column(column)
    where = f'column "{column}" of relation "{d.name}"'
    if col.identity in ("always", "by default"):
        raise SqlVecError(f"{where} is already an identity column", sqlstate="55000")
    if not col.not_null:
        raise SqlVecError(f"{where} must be declared NOT NULL before identity can be added",
                          sqlstate="55000")
    if col.default is not None:
        raise SqlVecError(f"{where} already has a default value", sqlstate="55000")
    check_identity_type(col.type.name)
    name = [named_sequence(options, d.schema) or f"{d.name}_{column}_seq"]
    options.given.setdefault("type", column_options(col.type.name).get("type"))
    reference = default_reference(f"{d.schema}.{name[-1]}")

    def change(x):
        return x.with_changes(columns=tuple(
            replace(c, identity=kind, default=f"nextval('{reference}'::regclass)")
            if c.name == column else c for c in x.columns))
    catalog.create_sequence(name[-1], d.schema, options, owned_by=f"{d.id}.{column}",
                            write=lambda created: catalog.store.alter_table(
                                d.id, change, catalog=created))


def drop_identity(catalog: Catalog, table, column: str, missing_ok: bool,
                  notices: list[Notice]) -> None:
    """ALTER TABLE ... ALTER COLUMN c DROP IDENTITY [IF EXISTS]: an ordinary column again (NOT
    NULL stays), its sequence dropped with it, in one manifest version."""
    key = _identity_sequence(catalog, table, column)
    if key is None:
        if not missing_ok:
            raise SqlVecError(_not_identity(table, column), sqlstate="55000")
        notices.append(Notice.notice(f"{_not_identity(table, column)}, skipping"))
        return
    catalog.store.alter_table(table.def_.id, lambda x: x.with_changes(columns=tuple(
        replace(c, identity=None, default=None) if c.name == column else c
        for c in x.columns)), catalog=lambda c: {**c, "sequences": {
            k: v for k, v in c["sequences"].items() if k != key}})
