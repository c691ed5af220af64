"""Table definitions as the storage engine persists them.

Columns are stored under *physical* names (`c<attnum>`) rather than their SQL names, so that
RENAME COLUMN is a manifest change only and DROP COLUMN leaves old segments readable. Every
segment also carries the hidden `_rowid` column: a per-table int64 assigned at insert, never
reused, by which deletes, the key indexes and the WAL address rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import pyarrow as pa

from sqlvec.types import SqlType

ROWID = "_rowid"


@dataclass(frozen=True)
class ColumnDef:
    """One column. `attnum` is stable for the column's life (pg_attribute.attnum)."""

    name: str
    type: SqlType
    attnum: int
    not_null: bool = False
    default: str | None = None  # SQL text of the DEFAULT expression, evaluated above storage
    # Value older segments read for a column added after they were written (ADD COLUMN ...
    # DEFAULT <constant>); None reads as NULL.
    missing_value: object = None
    identity: str | None = None  # "serial" | "always" | "by default" (sequence-backed)

    @functools.cached_property
    def physical(self) -> str:
        """The column's name in segments and log batches: its attnum, which a rename keeps."""
        return f"c{self.attnum}"

    @functools.cached_property
    def arrow(self) -> pa.DataType:
        """The Arrow type of the column's values, worked out once (a single-row write reads
        it per value)."""
        return self.type.to_arrow()

    def to_json(self) -> dict:
        """The column as the manifest stores it."""
        data = {
            "name": self.name,
            "type": self.type.to_json(),
            "attnum": self.attnum,
            "not_null": self.not_null,
            "default": self.default,
            "identity": self.identity,
        }
        if self.missing_value is not None:
            data["missing_value"] = self.missing_value
        return data

    @classmethod
    def from_json(cls, data: dict) -> ColumnDef:
        """Read a column back from the manifest; keys added later have defaults, so older manifests
        still load."""
        return cls(
            name=data["name"],
            type=SqlType.from_json(data["type"]),
            attnum=int(data["attnum"]),
            not_null=bool(data.get("not_null", False)),
            default=data.get("default"),
            missing_value=data.get("missing_value"),
            identity=data.get("identity"),
        )


@dataclass(frozen=True)
class IndexDef:
    """A secondary index. `method` is a vector access method (access_methods.py: one index
    per sealed segment) or "btree" (nothing stored: each sealed segment sorts the key on first
    use, btree.py). Manifests written before `method` was recorded hold HNSW indexes."""

    name: str
    oid: int
    columns: tuple[str, ...]  # SQL column names at creation; kept in step with renames
    method: str = "hnsw"
    opclass: str | None = None  # the method's operator class, e.g. vector_cosine_ops
    options: dict = field(default_factory=dict)  # WITH (...) as given: {"m": 16}
    # CREATE UNIQUE INDEX: the table keeps a unique key over `columns` (storage/keys.py).
    unique: bool = False
    nulls_not_distinct: bool = False
    # An expression index (one key, `CREATE INDEX ON t ((expr))`): `columns` names the columns
    # the expression reads; `expression` is its text as psql's \d shows it, `expression_sql`
    # as pg_get_indexdef does. `key_type` is the vector type ("halfvec", "vector", "bit") of an
    # expression a vector method indexes: a cast of the one vector column in `columns`, which
    # storage evaluates over each segment's column without any SQL (vectors.cast_matrix).
    expression: str | None = None
    expression_sql: str | None = None
    key_type: str | None = None

    def to_json(self) -> dict:
        """The index as the manifest stores it."""
        data = {
            "name": self.name,
            "oid": self.oid,
            "columns": list(self.columns),
            "method": self.method,
            "opclass": self.opclass,
            "options": dict(self.options),
        }
        if list(self.options) != sorted(self.options):
            # The manifest's JSON sorts keys; WITH (...) is shown in the order it was given.
            data["option_order"] = list(self.options)
        if self.unique:
            data["unique"] = True
            data["nulls_not_distinct"] = self.nulls_not_distinct
        if self.expression is not None:
            data["expression"] = self.expression
            data["expression_sql"] = self.expression_sql
            data["key_type"] = self.key_type
        return data

    @classmethod
    def from_json(cls, data: dict) -> IndexDef:
        """Read an index back from the manifest; a missing method is hnsw, the only one older
        manifests had."""
        options = dict(data.get("options") or {})
        order = [k for k in data.get("option_order") or () if k in options]
        options = {**{k: options[k] for k in order}, **options}
        return cls(
            name=data["name"],
            oid=int(data["oid"]),
            columns=tuple(data["columns"]),
            method=data.get("method", "hnsw"),
            opclass=data.get("opclass"),
            options=options,
            unique=bool(data.get("unique", False)),
            nulls_not_distinct=bool(data.get("nulls_not_distinct", False)),
            expression=data.get("expression"),
            expression_sql=data.get("expression_sql"),
            key_type=data.get("key_type"),
        )


@dataclass(frozen=True)
class ConstraintDef:
    """A table constraint other than NOT NULL, as pg_constraint describes it.

    `kind` is pg_constraint.contype: "p" primary key, "u" unique, "c" check, "f" foreign key.
    Column lists hold SQL names (kept in step with renames). A unique or primary key is
    enforced through a unique key of the table (`TableDef.unique_keys`) whose index OID is
    `index_oid`; a check holds its expression as SQL text, evaluated above storage. The
    foreign-key fields (`ref_*`, actions, match) follow pg_constraint's confrelid/confkey/
    confupdtype/confdeltype/confmatchtype and are unused by the other kinds."""

    name: str
    kind: str
    oid: int
    columns: tuple[str, ...] = ()
    expression: str | None = None  # CHECK: the condition's SQL text, as pg_get_constraintdef
    pretty: str | None = None  # CHECK: the condition as pg_get_constraintdef(oid, true)
    nulls_not_distinct: bool = False
    index_oid: int = 0
    validated: bool = True  # false after ADD CONSTRAINT ... NOT VALID
    deferrable: bool = False
    deferred: bool = False
    ref_table: int | None = None  # FOREIGN KEY: referenced table id
    ref_columns: tuple[str, ...] = ()
    on_update: str = "a"  # a no action, r restrict, c cascade, n set null, d set default
    on_delete: str = "a"
    match: str = "s"  # s simple, f full
    delete_set_columns: tuple[str, ...] = ()  # ON DELETE SET NULL/DEFAULT (cols): confdelsetcols

    def to_json(self) -> dict:
        """The constraint as the manifest stores it (fields at their defaults left out)."""
        data: dict = {"name": self.name, "kind": self.kind, "oid": self.oid,
                      "columns": list(self.columns)}
        for key, default in _CONSTRAINT_DEFAULTS.items():
            value = getattr(self, key)
            if value != default:
                data[key] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: dict) -> ConstraintDef:
        """Read a constraint back from the manifest."""
        extra = {k: (tuple(data[k]) if isinstance(d, tuple) else data[k])
                 for k, d in _CONSTRAINT_DEFAULTS.items() if k in data}
        return cls(name=data["name"], kind=data["kind"], oid=int(data["oid"]),
                   columns=tuple(data.get("columns") or ()), **extra)


_CONSTRAINT_DEFAULTS = {
    "expression": None, "pretty": None, "nulls_not_distinct": False, "index_oid": 0, "validated": True,
    "deferrable": False, "deferred": False, "ref_table": None, "ref_columns": (),
    "on_update": "a", "on_delete": "a", "match": "s", "delete_set_columns": (),
}


@dataclass(frozen=True)
class KeyDef:
    """A unique key of a table: its constraint (or unique index) name and columns (SQL
    names). NULLs make a key distinct from every other unless `nulls_not_distinct`; a primary
    key has none (its columns are NOT NULL)."""

    name: str
    columns: tuple[str, ...]
    primary: bool = False
    nulls_not_distinct: bool = False
    # DEFERRABLE: checked at the end of the statement (INITIALLY IMMEDIATE) or at COMMIT
    # (deferred); a key that is not is checked row by row, as PostgreSQL's.
    deferrable: bool = False
    deferred: bool = False


@dataclass(frozen=True)
class TableDef:
    """A table: identity, columns (in attnum order, dropped ones removed), key and indexes."""

    id: int
    oid: int
    name: str
    schema: str
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[IndexDef, ...] = ()
    next_attnum: int = 0
    # UNIQUE, CHECK and FOREIGN KEY constraints, in creation order. The primary key is
    # `primary_key` (named `primary_key_name`, else <table>_pkey).
    constraints: tuple[ConstraintDef, ...] = ()
    primary_key_name: str | None = None
    primary_key_oid: int = 0  # the primary key's index OID when given one (else derived)
    primary_key_deferrable: bool = False  # PRIMARY KEY ... DEFERRABLE
    primary_key_deferred: bool = False  # ... INITIALLY DEFERRED

    # Lookups --------------------------------------------------------------------------------

    def column(self, name: str) -> ColumnDef:
        """The column named `name`; KeyError when there is none (callers resolve names first)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def has_column(self, name: str) -> bool:
        """Whether the table has a column called `name`."""
        return any(col.name == name for col in self.columns)

    @property
    def column_names(self) -> list[str]:
        return [col.name for col in self.columns]

    @property
    def unique_keys(self) -> tuple[KeyDef, ...]:
        """The keys whose values must be unique among live rows: the primary key first, then
        the unique constraints, then the unique indexes."""
        keys = []
        if self.primary_key:
            keys.append(KeyDef(self.pkey_name, self.primary_key, primary=True,
                               deferrable=self.primary_key_deferrable,
                               deferred=self.primary_key_deferred))
        keys += [KeyDef(c.name, c.columns, nulls_not_distinct=c.nulls_not_distinct,
                        deferrable=c.deferrable, deferred=c.deferred)
                 for c in self.constraints if c.kind == "u"]
        keys += [KeyDef(ix.name, ix.columns, nulls_not_distinct=ix.nulls_not_distinct)
                 for ix in self.indexes if ix.unique]
        return tuple(keys)

    @property
    def pkey_name(self) -> str:
        """The primary key constraint's (and its index's) name."""
        return self.primary_key_name or f"{self.name}_pkey"

    def constraint(self, name: str) -> ConstraintDef | None:
        """The UNIQUE, CHECK or FOREIGN KEY constraint called `name`, or None."""
        return next((c for c in self.constraints if c.name == name), None)

    def arrow_schema(self) -> pa.Schema:
        """The logical schema scans return (SQL names, declared types); built once per
        definition (a definition never changes: ALTER makes a new one), so that every write
        gets the same schema object."""
        schema = self.__dict__.get("_arrow_schema")
        if schema is None:
            schema = pa.schema([pa.field(c.name, c.type.to_arrow(), nullable=not c.not_null)
                                for c in self.columns])
            object.__setattr__(self, "_arrow_schema", schema)
        return schema

    def physical_schema(self) -> pa.Schema:
        """The schema of batches in the WAL and of segments written now (built once)."""
        schema = self.__dict__.get("_physical_schema")
        if schema is None:
            fields = [pa.field(ROWID, pa.int64(), nullable=False)]
            fields += [pa.field(c.physical, c.type.to_arrow()) for c in self.columns]
            schema = pa.schema(fields)
            object.__setattr__(self, "_physical_schema", schema)
        return schema

    # Changes --------------------------------------------------------------------------------

    def with_changes(self, **changes) -> TableDef:
        """A copy with some fields replaced: definitions are immutable, so ALTER makes a new one."""
        return replace(self, **changes)

    def to_json(self) -> dict:
        """The table definition as the manifest stores it."""
        return {
            "id": self.id,
            "oid": self.oid,
            "name": self.name,
            "schema": self.schema,
            "columns": [c.to_json() for c in self.columns],
            "primary_key": list(self.primary_key),
            "indexes": [ix.to_json() for ix in self.indexes],
            "next_attnum": self.next_attnum,
            **({"constraints": [c.to_json() for c in self.constraints]}
               if self.constraints else {}),
            **({"primary_key_name": self.primary_key_name} if self.primary_key_name else {}),
            **({"primary_key_oid": self.primary_key_oid} if self.primary_key_oid else {}),
            **({"primary_key_deferrable": True} if self.primary_key_deferrable else {}),
            **({"primary_key_deferred": True} if self.primary_key_deferred else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> TableDef:
        """Read a table definition back from the manifest."""
        return cls(
            id=int(data["id"]),
            oid=int(data["oid"]),
            name=data["name"],
            schema=data["schema"],
            columns=tuple(ColumnDef.from_json(c) for c in data["columns"]),
            primary_key=tuple(data.get("primary_key") or ()),
            indexes=tuple(IndexDef.from_json(ix) for ix in data.get("indexes") or ()),
            next_attnum=int(data.get("next_attnum", 0)),
            constraints=tuple(ConstraintDef.from_json(c) for c in data.get("constraints") or ()),
            primary_key_name=data.get("primary_key_name"),
            primary_key_oid=int(data.get("primary_key_oid", 0)),
            primary_key_deferrable=bool(data.get("primary_key_deferrable", False)),
            primary_key_deferred=bool(data.get("primary_key_deferred", False)),
        )
