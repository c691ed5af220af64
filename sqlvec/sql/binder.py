"""Name resolution and type names: what the planner and the expression compiler share.

A `Scope` is the list of columns a relation offers (with their table qualifiers); resolving a
column reference gives its position, with PostgreSQL's errors for unknown (42703) and ambiguous
(42702) names. `sql_type` maps a sqlglot DataType to our SqlType.

PostgreSQL's system columns (`ctid`, `xmin`, `tableoid`...) are not fields of their own: a name
that is no real column resolves to the hidden row id of its table, and the expression compiler
derives the value from that (`system_column` says which one is meant).

A column reference's name is looked up once per statement: the first lookup (`resolve`, as
the planner checks the statement) records on the column node the `Field` it names, and the
later questions about it (which side of a join, is it a column of this scan, where is it in
the input of the node it ended up in) find that field in their scope by identity instead of
by name; a copy of the expression carries the field along. `Scope.bind` gives a column
reference its `ColumnRef` (how many queries up, which position, the field it is; the `ref`
arg of the sqlglot column, which still prints as written), and the expression compiler reads
that position without looking the name up again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError, UndefinedColumn, UndefinedObject
from sqlvec.storage.schema import ROWID
from sqlvec.types import SqlType


@dataclass(frozen=True)
class Field:
    """One output column of a relation."""

    name: str
    table: str | None = None  # the qualifier it can be referenced by
    type: SqlType | None = None  # known for base columns; operators compute the rest
    source: tuple[int, int] = (0, 0)  # (table OID, attnum) for RowDescription, else zeros
    hidden: bool = False  # internal helper column, not expanded by `*`

    def __deepcopy__(self, memo: dict) -> Field:
        return self  # immutable; a copied expression names the same field (`resolve`)


class AmbiguousColumn(SqlVecError):
    """A column name more than one relation in scope has (42702)."""

    sqlstate = "42702"


@dataclass(frozen=True)
class SystemColumn:
    """A column every user table has without declaring it (`SELECT ctid, xmin FROM t`)."""

    name: str
    attnum: int  # pg_attribute.attnum: negative, as RowDescription reports it
    type: SqlType


SYSTEM_COLUMNS: dict[str, SystemColumn] = {c.name: c for c in (
    SystemColumn("ctid", -1, SqlType("tid")),
    SystemColumn("xmin", -2, SqlType("xid")),
    SystemColumn("cmin", -3, SqlType("cid")),
    SystemColumn("xmax", -4, SqlType("xid")),
    SystemColumn("cmax", -5, SqlType("cid")),
    SystemColumn("tableoid", -6, SqlType("oid")),
)}


def system_column(f: Field, name: str) -> SystemColumn | None:
    """The system column `name` refers to when it resolved to `f`, a table's hidden row id
    (None for ordinary columns, and for the row id itself)."""
    if f.name == ROWID and f.hidden and name != ROWID:
        return SYSTEM_COLUMNS.get(name)
    return None


@dataclass(frozen=True)
class ColumnRef:
    """What a column reference resolved to: the `index`-th field of the scope `level` queries
    up (0: the expression's own input), that `field`, and the system column derived from it
    (`ctid`, ...) when the name was one."""

    level: int
    index: int
    field: Field
    system: SystemColumn | None = None

    def __deepcopy__(self, memo: dict) -> ColumnRef:
        return self  # immutable: copies of a bound expression share it

    @property
    def type(self) -> SqlType | None:
        """The column's type where the plan knows it (base and system columns); computed
        columns are typed by the operator that makes them."""
        return self.system.type if self.system is not None else self.field.type


def bound_ref(x: exp.Expression) -> ColumnRef | None:
    """The resolution a column reference carries once bound (`Scope.bind`), else None."""
    return x.args.get("ref") if isinstance(x, exp.Column) else None


def is_column_reference(x: exp.Expression) -> bool:
    """Whether `x` is a name the binder resolves: a column, not `t.*` nor the collation name
    of `COLLATE pg_catalog.default` (which sqlglot parses as a column)."""
    return isinstance(x, exp.Column) and not isinstance(x.this, exp.Star) and not (
        isinstance(x.parent, exp.Collate) and x.arg_key == "expression")


# The meta key of a column node under which `resolve` records the Field it names.
RESOLVED = "field"


def resolve(scope: Scope, column: exp.Column) -> tuple[int, int]:
    """(levels up, position) of a column reference in `scope`, as `Scope.resolve`: where the
    field the column was resolved to before is, found by identity; else looked up by name
    (with its errors) and the field it names recorded on the column for the next time."""
    known = column.meta.get(RESOLVED) if column._meta is not None else None
    if known is not None:
        found = scope.locate(known)
        if found is not None:
            return found
    level, index = scope.resolve(column)
    column.meta[RESOLVED] = scope.up(level).fields[index]
    return level, index


def find(scope: Scope, column: exp.Column) -> int | None:
    """The position of a column reference among `scope`'s own fields, or None (an outer
    query's column, or none at all), as `Scope.find`: by the field it was resolved to when
    there is one, else by name."""
    known = column.meta.get(RESOLVED) if column._meta is not None else None
    if known is not None:
        index = scope.position(known)
        if index is not None:
            return index
    return scope.find(column.name, column.table or None)


def resolved(column: exp.Column, f: Field) -> exp.Column:
    """`column`, recorded as naming `f` (a reference the planner makes to a field it holds)."""
    column.meta[RESOLVED] = f
    return column


@dataclass
class Scope:
    """The columns visible to an expression, and the enclosing query's scope (correlation)."""

    fields: list[Field]
    parent: Scope | None = None
    correlated: list = field(default_factory=list)

    def find(self, name: str, table: str | None = None) -> int | None:
        """The index of the field a column reference names, or None. A system column (ctid, ...)
        resolves to its table's row id; among several matches a single visible one wins, else
        the reference is ambiguous (42702)."""
        matches = self._matches(name, table)
        if not matches and name in SYSTEM_COLUMNS:
            matches = self._matches(ROWID, table)  # derived from the row id of its table
        if len(matches) > 1:
            visible = [i for i in matches if not self.fields[i].hidden]
            if len(visible) == 1:
                return visible[0]
            raise AmbiguousColumn(f'column reference "{name}" is ambiguous')
        return matches[0] if matches else None

    def _matches(self, name: str, table: str | None) -> list[int]:
        return [i for i, f in enumerate(self.fields)
                if f.name == name and (table is None or f.table == table)]

    def position(self, f: Field) -> int | None:
        """Where the field `f` itself (not one of its name) is among this scope's own fields;
        None when it is not there, or is there twice (then only its name can tell)."""
        positions = self.__dict__.get("_positions")
        if positions is None or positions[0] != len(self.fields):
            index: dict[int, int | None] = {}
            for i, g in enumerate(self.fields):
                index[id(g)] = None if id(g) in index else i
            positions = self._positions = (len(self.fields), index)
        i = positions[1].get(id(f))
        if i is not None:
            self.found(i)
        return i

    def locate(self, f: Field) -> tuple[int, int] | None:
        """(levels up, position) of the field `f` itself in this scope or an enclosing one."""
        scope: Scope | None = self
        level = 0
        while scope is not None:
            index = scope.position(f)
            if index is not None:
                return level, index
            scope = scope.parent
            level += 1
        return None

    def up(self, level: int) -> Scope:
        """The scope `level` queries up (0: this one)."""
        scope = self
        for _ in range(level):
            scope = scope.parent  # type: ignore[assignment]
        return scope

    def found(self, index: int) -> None:
        """A reference resolved to field `index` here (LateralScope notes it)."""

    def resolve(self, column: exp.Column) -> tuple[int, int]:
        """(levels up, position) of a column reference by its name: 0 for this scope, 1 for its
        parent... (`resolve` the function: once per column)."""
        name = column.name
        table = column.table or None
        scope: Scope | None = self
        level = 0
        while scope is not None:
            index = scope.find(name, table)
            if index is not None:
                return level, index
            scope = scope.parent
            level += 1
        if table is not None:
            if not any(f.table == table for f in self.fields) and not self._has_table_above(table):
                raise UndefinedObject(
                    f'missing FROM-clause entry for table "{table}"', sqlstate="42P01")
            raise UndefinedColumn(f"column {table}.{name} does not exist")
        raise UndefinedColumn(f'column "{name}" does not exist')

    def bind(self, column: exp.Column) -> ColumnRef:
        """What a column reference resolves to, in full (`resolve`'s errors when nothing);
        the plan binder (plan/bind.py) sets it as the column's `ref` arg."""
        level, index = resolve(self, column)
        f = self.up(level).fields[index]
        return ColumnRef(level, index, f, system_column(f, column.name))

    def _has_table_above(self, table: str) -> bool:
        scope = self.parent
        while scope is not None:
            if any(f.table == table for f in scope.fields):
                return True
            scope = scope.parent
        return False

    def has_table(self, table: str) -> bool:
        """Whether a relation name (alias) is in this scope."""
        return any(f.table == table for f in self.fields)


_DTYPE_NAMES: dict[str, str] = {
    "BOOLEAN": "bool", "TINYINT": "int2", "SMALLINT": "int2", "INT": "int4", "MEDIUMINT": "int4",
    "BIGINT": "int8", "SERIAL": "int4", "SMALLSERIAL": "int2", "BIGSERIAL": "int8",
    "FLOAT": "float4", "DOUBLE": "float8", "DECIMAL": "numeric", "BIGDECIMAL": "numeric",
    "MONEY": "numeric", "TEXT": "text", "VARCHAR": "varchar", "NVARCHAR": "varchar",
    "CHAR": "bpchar", "NCHAR": "bpchar", "NAME": "name", "BINARY": "bytea", "VARBINARY": "bytea",
    "BLOB": "bytea", "DATE": "date", "TIME": "time", "TIMESTAMP": "timestamp",
    "DATETIME": "timestamp", "TIMESTAMPTZ": "timestamptz", "TIMESTAMPLTZ": "timestamptz",
    "INTERVAL": "interval", "JSON": "json", "JSONB": "jsonb", "UUID": "uuid", "VECTOR": "vector",
    "BIT": "bit", "UINT256": "varbit",  # `bit varying` (the dialect's token for it)
    "OBJECT_IDENTIFIER": "oid", "USERDEFINED": "text", "UNKNOWN": "unknown",
}

# Type names sqlglot does not know (parsed as USERDEFINED), quoted ones included.
_USERDEFINED = {"regclass", "regtype", "regproc", "regprocedure", "regnamespace", "regrole",
                "oid", "xid", "cid", "tid", "name", '"char"', "char", "int2", "int4", "int8",
                "float4", "float8", "text", "bool", "varchar", "bpchar", "numeric", "date", "timestamp",
                "timestamptz", "interval", "bytea", "json", "jsonb", "jsonpath", "uuid", "vector", "time",
                "halfvec", "sparsevec", "varbit", "bit"}

_SERIAL = {"SERIAL": "serial", "SMALLSERIAL": "serial", "BIGSERIAL": "serial"}


def sql_type(datatype: exp.DataType | exp.ObjectIdentifier) -> SqlType:
    """Our SqlType for a sqlglot type node (`vector(3)`, `varchar(10)`, `int[]`, `regclass`)."""
    if isinstance(datatype, exp.ObjectIdentifier):
        return SqlType.of(datatype.name.lower())
    kind = datatype.this
    key = kind.name if hasattr(kind, "name") else str(kind)
    if key == "ARRAY":
        inner = datatype.expressions[0] if datatype.expressions else None
        if inner is None:
            raise FeatureNotSupported("array types without an element type are not supported")
        return sql_type(inner).array_of()
    if key == "USERDEFINED":
        kind = datatype.args.get("kind")
        if isinstance(kind, exp.Dot) and kind.this.name.lower() == "pg_catalog":
            kind = kind.expression  # "pg_catalog"."int4"
        if isinstance(kind, exp.Identifier):
            kind = kind.name if kind.quoted else kind.name.lower()
        name = (kind if isinstance(kind, str) else "").lower()
        if name in _USERDEFINED:
            return SqlType.of(name.strip('"'), *_modifiers(datatype))
        raise UndefinedObject(f'type "{name}" does not exist')
    if key not in _DTYPE_NAMES:
        raise FeatureNotSupported(f"type {datatype.sql(dialect='postgres')} is not supported")
    name = _DTYPE_NAMES[key]
    mods = _modifiers(datatype)
    if name == "timestamp" and datatype.args.get("kind") == "WITH TIME ZONE":
        name = "timestamptz"
    if name == "bit" and not mods:
        mods = [1]  # `bit` as a type name is bit(1), as in PostgreSQL
    return SqlType.of(name, *mods)


def _modifiers(datatype: exp.DataType) -> list[int]:
    """The numeric type modifiers of a type node: `(3)` in `halfvec(3)`."""
    mods = []
    for param in datatype.expressions:
        value = param.this if isinstance(param, exp.DataTypeParam) else param
        if isinstance(value, exp.Literal) and not value.is_string:
            mods.append(int(value.this))
    return mods


def serial_kind(datatype: exp.DataType) -> str | None:
    """Whether a declared type is serial, bigserial or smallserial ("serial"), or None: a serial
    column gets a sequence and a default."""
    kind = datatype.this
    return _SERIAL.get(kind.name if hasattr(kind, "name") else str(kind))
