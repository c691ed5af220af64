"""The objects of one database as PostgreSQL's system catalogs number and describe them.

`CatalogObjects(database, session)` is built per statement from the live catalog: namespaces,
relations (tables, indexes, sequences and the virtual catalog tables themselves), their columns,
constraints, defaults and types, each with the OID PostgreSQL clients expect to join on. The
virtual tables (pg_catalog.py, information_schema.py) and the catalog functions
(`pg_get_indexdef`, `format_type`, `'name'::regclass`, ...) read this one model, so a table
created through SQL shows up, with the same OIDs, everywhere at once.

OIDs:
    tables, indexes, sequences, schemas, extensions    allocated by the store (16400 and up)
    primary-key index / constraint, NOT NULL, defaults  derived from the table OID (`derived_oid`)
    pg_catalog / information_schema tables              `table_oid(name)` (PostgreSQL's where known)
    types                                               sqlvec.types (vector is 16385)
    vector access methods and their operator classes    fixed by their declarations, below
                                                        FIRST_OID (HNSW: 16387..16395 and
                                                        16360..16367; IVFFlat: 16320..16332;
                                                        sparsevec: 16340..16350; bits: 16370..16375)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa

from sqlvec.catalog.catalog import (
    BOOTSTRAP_SUPERUSER_OID,
    INFORMATION_SCHEMA_OID,
    PG_CATALOG_OID,
    PUBLIC_OID,
    VECTOR_EXTENSION_VERSION,
)
from sqlvec.catalog.views import all_views
from sqlvec.catalog.virtual import LIVE, TABLES, parse_type, table_oid
from sqlvec.errors import UndefinedObject
from sqlvec.storage import access_methods
from sqlvec.types import TYPES_BY_NAME, TYPES_BY_OID, VECTOR_DTYPES, SqlType, TypeInfo

PG_TOAST_OID = 99
HEAP_AM = 2
BTREE_AM = 403
DEFAULT_COLLATION = 100
C_COLLATION = 950
PG_DEFAULT_TABLESPACE = 1663
PG_GLOBAL_TABLESPACE = 1664
PG_DATABASE_OWNER_OID = 6171
PLPGSQL_EXTENSION_OID = 13500
VECTOR_EXTENSION_OID = 16399
PG_CLASS_OID = 1259
PG_TYPE_OID = 1247
PG_PROC_OID = 1255
PG_AM_OID = 2601
PG_NAMESPACE_OID = 2615
PG_EXTENSION_OID = 3079
PG_DATABASE_OID = 1262

# btree default operator classes of the built-in scalar types (PostgreSQL's OIDs).
BTREE_OPCLASSES = {
    "bool": (424, "bool_ops"), "bytea": (428, "bytea_ops"), "char": (429, "char_ops"),
    "name": (1986, "name_ops"), "int8": (3124, "int8_ops"), "int2": (1979, "int2_ops"),
    "int4": (1978, "int4_ops"), "text": (3126, "text_ops"), "oid": (1981, "oid_ops"),
    "float4": (1970, "float4_ops"), "float8": (1971, "float8_ops"),
    "bpchar": (426, "bpchar_ops"), "varchar": (3126, "text_ops"), "date": (3122, "date_ops"),
    "time": (1989, "time_ops"), "timestamp": (3128, "timestamp_ops"),
    "timestamptz": (3127, "timestamptz_ops"), "interval": (1982, "interval_ops"),
    "numeric": (3125, "numeric_ops"), "uuid": (2968, "uuid_ops"), "jsonb": (4033, "jsonb_ops"),
    "vector": (16396, "vector_ops"), "halfvec": (16368, "halfvec_ops"),
    "sparsevec": (16342, "sparsevec_ops"),
    "bit": (423, "bit_ops"), "varbit": (2002, "varbit_ops"),
}


# GIN (PostgreSQL's OIDs): indexes recorded in the catalogs, their queries answered by scans.
GIN_AM = 2742
# name -> (pg_opclass oid, pg_opfamily oid, input type oid, default for it)
GIN_OPCLASSES = {
    "jsonb_ops": (10090, 4036, 3802, True),
    "jsonb_path_ops": (10091, 4037, 3802, False),
    "array_ops": (10064, 2745, 2277, True),
}


def am_oid(method: str) -> int:
    """pg_am.oid of an index's access method: a vector method's own, else btree's."""
    if method == "gin":
        return GIN_AM
    vector = access_methods.find(method)
    return vector.am_oid if vector is not None else BTREE_AM


def derived_oid(table_oid: int, kind: int) -> int:
    """OIDs of objects sqlvec does not store separately (a table's primary-key index and
    constraint, NOT NULL constraints, column defaults), stable for the table's life."""
    return 1_000_000_000 + table_oid * 8192 + kind


def database_oid(name: str) -> int:
    """A database's OID, stable across restarts and servers without being stored: postgres is 5 as
    in PostgreSQL, others derive from the name."""
    return 5 if name == "postgres" else 100_000 + zlib.crc32(name.encode()) % 1_000_000


def _reloption(value: object) -> str:
    """An index option's value as pg_get_indexdef prints it: quoted unless a plain name."""
    text = str(value)
    return text if quote_ident(text) == text and not text[:1].isdigit() else f"'{text}'"


# Types ---------------------------------------------------------------------------------------------

_IO = {
    "bool": "bool", "bytea": "bytea", "char": "char", "name": "name", "int8": "int8",
    "int2": "int2", "int4": "int4", "regproc": "regproc", "text": "text", "oid": "oid",
    "float4": "float4", "float8": "float8", "unknown": "unknown", "bpchar": "bpchar",
    "varchar": "varchar", "regclass": "regclass", "regtype": "regtype",
    "regnamespace": "regnamespace", "regrole": "regrole", "regprocedure": "regprocedure",
}
_IO_UNDERSCORE = {"json", "date", "time", "timestamp", "timestamptz", "interval", "numeric",
                  "uuid", "jsonb", "jsonpath", "vector", "halfvec", "sparsevec", "record", "bit", "varbit"}
_STORAGE = {"bytea": "x", "text": "x", "json": "x", "jsonb": "x", "jsonpath": "x", "bpchar": "x", "varchar": "x",
            "numeric": "m", "vector": "e", "halfvec": "e", "sparsevec": "e",
            "varbit": "x", "bit": "x"}
_ALIGN = {"bool": "c", "char": "c", "name": "c", "uuid": "c", "int2": "s", "tid": "s",
          "int8": "d", "float8": "d", "time": "d", "timestamp": "d", "timestamptz": "d", "interval": "d"}
_PREFERRED = {"bool", "text", "float8", "oid", "timestamptz", "interval"}
_TYPMODIN = {"varchar": "varchartypmodin", "bpchar": "bpchartypmodin",
             "numeric": "numerictypmodin", "timestamp": "timestamptypmodin",
             "timestamptz": "timestamptztypmodin", "time": "timetypmodin",
             "interval": "intervaltypmodin", "vector": "vector_typmod_in",
             "halfvec": "halfvec_typmod_in",
             "sparsevec": "sparsevec_typmod_in", "bit": "bittypmodin",
             "varbit": "varbittypmodin"}
_COLLATABLE = {"text", "varchar", "bpchar", "name"}


@dataclass(frozen=True)
class TypeRow:
    """One pg_type row."""

    info: TypeInfo
    namespace: int
    byval: bool
    align: str
    storage: str
    elem: int
    array: int
    input: str
    output: str
    receive: str
    send: str
    modin: str
    modout: str
    analyze: str
    collation: int
    preferred: bool
    delim: str = ","


def _type_row(info: TypeInfo) -> TypeRow:
    name = info.typname
    if name.startswith("_"):
        elem = TYPES_BY_NAME[name[1:]]
        base = _type_row(elem)
        return TypeRow(info, base.namespace, False, "d" if base.align == "d" else "i", "x",
                       elem.oid, 0, "array_in", "array_out", "array_recv", "array_send",
                       base.modin, base.modout, "array_typanalyze", base.collation, False)
    if name in _PSEUDO and name != "record":
        io = (f"{name}_in", f"{name}_out") + ((f"{name}_recv", f"{name}_send")
                                              if name in _PSEUDO_BINARY else ("-", "-"))
    else:
        stem = f"{name}_" if name in _IO_UNDERSCORE else _IO.get(name, name)
        io = (f"{stem}in", f"{stem}out", f"{stem}recv", f"{stem}send")
    modin = _TYPMODIN.get(name, "-")
    modout = modin.replace("typmod_in", "typmod_out").replace("typmodin", "typmodout")
    byval = info.typlen in (1, 2, 4, 8) and name not in ("name",)
    collation = (C_COLLATION if name == "name" else DEFAULT_COLLATION) if name in _COLLATABLE else 0
    return TypeRow(info, PUBLIC_OID if name in EXTENSION_TYPES else PG_CATALOG_OID, byval,
                   _ALIGN.get(name, "i"), _STORAGE.get(name, "p"), 0, info.array_oid, *io,
                   modin, modout, "-", collation, name in _PREFERRED)


# pgvector's types: they live in the extension's schema (public), not pg_catalog.
EXTENSION_TYPES = frozenset(VECTOR_DTYPES) | {"sparsevec"}


# Pseudo and extra types clients look up by OID; not usable as column types here.
EXTRA_TYPES: tuple[TypeInfo, ...] = (
    TypeInfo("int2vector", 22, 1006, -1, "A", "int2vector"),
    TypeInfo("oidvector", 30, 1013, -1, "A", "oidvector"),
    TypeInfo("pg_node_tree", 194, 0, -1, "Z", "pg_node_tree"),
    TypeInfo("aclitem", 1033, 1034, 12, "U", "aclitem"),
    TypeInfo("inet", 869, 1041, -1, "I", "inet"),
    TypeInfo("bit", 1560, 1561, -1, "V", "bit"),
    TypeInfo("varbit", 1562, 1563, -1, "V", "bit varying"),
    TypeInfo("void", 2278, 0, 4, "P", "void"),
    TypeInfo("anyelement", 2283, 0, 4, "P", "anyelement"),
    TypeInfo("anyarray", 2277, 0, -1, "P", "anyarray"),
    TypeInfo("internal", 2281, 0, 8, "P", "internal"),
    TypeInfo("trigger", 2279, 0, 4, "P", "trigger"),
    TypeInfo("cstring", 2275, 1263, -2, "P", "cstring"),
    # Pseudo-types of function signatures (pg_proc.proargtypes), as psql prints them.
    TypeInfo("any", 2276, 0, 4, "P", '"any"'),
    TypeInfo("anynonarray", 2776, 0, 4, "P", "anynonarray"),
    TypeInfo("anycompatible", 5077, 0, 4, "P", "anycompatible"),
    TypeInfo("anycompatiblearray", 5078, 0, -1, "P", "anycompatiblearray"),
)
_PSEUDO = {"record", "void", "anyelement", "anyarray", "internal", "trigger", "cstring", "any",
           "anynonarray", "anycompatible", "anycompatiblearray"}
# Arrays of pseudo-types that PostgreSQL has (typmod input functions take cstring[]).
_PSEUDO_ARRAYS = {"cstring"}
# Pseudo-types with binary I/O functions (the others have typreceive/typsend '-').
_PSEUDO_BINARY = {"void", "cstring", "anyarray", "anycompatiblearray"}


@lru_cache(maxsize=1)
def type_rows() -> tuple[TypeRow, ...]:
    """The pg_type rows (fixed: built once)."""
    rows = [_type_row(t) for t in TYPES_BY_OID.values() if not t.typname.startswith("_")]
    rows += [_type_row(t) for t in TYPES_BY_OID.values() if t.typname.startswith("_")]
    known = {r.info.oid for r in rows}
    for extra in EXTRA_TYPES:
        if extra.oid in known:
            continue
        row = _type_row(extra)
        if extra.typname in ("int2vector", "oidvector"):
            elem = TYPES_BY_NAME["int2" if extra.typname == "int2vector" else "oid"].oid
            row = TypeRow(extra, PG_CATALOG_OID, False, "i", "p", elem, extra.array_oid,
                          f"{extra.typname}in", f"{extra.typname}out", f"{extra.typname}recv",
                          f"{extra.typname}send", "-", "-", "-", 0, False)
        rows.append(row)
        if extra.array_oid and extra.array_oid not in known and (
                extra.typname not in _PSEUDO or extra.typname in _PSEUDO_ARRAYS):
            arr = TypeInfo("_" + extra.typname, extra.array_oid, 0, -1, "A", extra.display + "[]")
            rows.append(TypeRow(arr, PG_CATALOG_OID, False, "i", "x", extra.oid, 0, "array_in",
                                "array_out", "array_recv", "array_send", "-", "-",
                                "array_typanalyze", 0, False))
    return tuple(rows)


def type_kind(row: TypeRow) -> str:
    """pg_type.typtype of a type row: pseudo-types are "p", everything else a base type."""
    return "p" if row.info.typname in _PSEUDO else "b"


def type_name_of(oid: int) -> TypeInfo | None:
    """The type an OID names, built-in or registered (arrays, catalog row types); None when unknown,
    so regtype output can fall back to the number."""
    info = TYPES_BY_OID.get(oid)
    if info is not None:
        return info
    row = _type_rows_by_oid().get(oid)
    return None if row is None else row.info


@lru_cache(maxsize=1)
def _type_rows_by_oid() -> dict[int, TypeRow]:
    return {r.info.oid: r for r in type_rows()}


def format_type(oid: int | None, typmod: int | None) -> str | None:
    """PostgreSQL's format_type(oid, typmod)."""
    if oid is None:
        return None
    info = type_name_of(oid)
    if info is None:
        return "???"
    mod = -1 if typmod is None else typmod
    if info.typname in TYPES_BY_NAME:
        if info.typname.startswith("_"):
            return format_type(TYPES_BY_NAME[info.typname[1:]].oid, mod) + "[]"
        try:
            text = SqlType(info.typname, mod).format()
        except Exception:  # a typmod that does not fit the type
            text = info.display
        if info.typname == "bpchar" and mod < 0:
            return "bpchar" if typmod is None else "character"
        return text
    return info.display


# Relations -----------------------------------------------------------------------------------------

@dataclass
class Column:
    """A column as pg_attribute shows it."""

    name: str
    type: SqlType
    attnum: int
    not_null: bool = False
    default: str | None = None
    identity: str | None = None


@dataclass
class Index:
    """An index as pg_index and pg_class show it, with its access method and operator classes."""

    oid: int
    name: str
    table_oid: int
    method: str  # btree or a vector access method (hnsw)
    attnums: list[int]
    opclasses: list[int]
    options: dict
    primary: bool = False
    unique: bool = False
    opclass_names: list[str | None] = field(default_factory=list)
    nulls_not_distinct: bool = False
    # An expression index (attnums [0], as pg_index.indkey has it): the expression's text as
    # pg_get_indexdef(oid, n, true) and psql print it, and as pg_get_indexdef(oid) does.
    expression: str | None = None
    expression_sql: str | None = None
    expression_columns: list[int] = field(default_factory=list)  # the columns it reads
    key_type: SqlType | None = None  # its type, where known (a vector cast)


@dataclass
class Relation:
    """Anything with a pg_class row (table, index, sequence, view), with its columns, indexes and
    constraints, so every catalog view derives from one model."""

    oid: int
    name: str
    namespace: int
    schema: str
    kind: str  # r | i | S | v | m (materialized view)
    columns: list[Column] = field(default_factory=list)
    am: int = 0
    tuples: float = -1.0
    indexes: list[Index] = field(default_factory=list)  # of a table
    index: Index | None = None  # of an index
    table_id: int | None = None
    sequence: dict | None = None
    primary_key: tuple[str, ...] = ()
    definition: str | None = None  # of a view: pg_get_viewdef's text
    owner: str = "postgres"
    populated: bool = True  # false for a materialized view created WITH NO DATA


@dataclass
class Constraint:
    """A pg_constraint row: primary key (p), unique (u), check (c), foreign key (f) or NOT
    NULL (n)."""

    oid: int
    name: str
    namespace: int
    type: str  # p | u | c | f | n
    relation: int
    index: int
    keys: list[int]
    check: str | None = None  # c: the condition as pg_get_constraintdef prints it
    check_pretty: str | None = None  # c: and in its pretty form
    validated: bool = True
    deferrable: bool = False
    deferred: bool = False
    nulls_not_distinct: bool = False
    ref_relation: int = 0  # f: confrelid
    ref_keys: list[int] = field(default_factory=list)  # f: confkey
    on_update: str = " "  # f: confupdtype (a r c n d)
    on_delete: str = " "
    match: str = " "
    delete_set_keys: list[int] = field(default_factory=list)  # f: confdelsetcols


@dataclass
class Default:
    """A column default as pg_attrdef stores it: the expression's text."""

    oid: int
    relation: int
    attnum: int
    text: str


class LiveObjects:
    """What the tables of the server's live state read (`virtual.LIVE`): the database, the
    session and the catalog's state as it is now (replaced, never changed in place, by each
    change: safe to read while another transaction's schema changes go on), with none of the
    relations another session's schema change may be changing."""

    def __init__(self, database, session) -> None:
        self.database = database
        self.session = session
        self.state = session.catalog.state

    def role_oid(self, name: str) -> int:
        """A role's OID; unknown names map to the bootstrap superuser, whom everything is owned
        by."""
        role = self.state.get("roles", {}).get(name)
        return int(role["oid"]) if role else BOOTSTRAP_SUPERUSER_OID


class CatalogObjects(LiveObjects):
    """A consistent model of the database's catalog objects for one statement."""

    def __init__(self, database, session) -> None:
        super().__init__(database, session)
        catalog = session.catalog
        state = self.state
        self.namespaces: list[tuple[int, str, int]] = [
            (PG_CATALOG_OID, "pg_catalog", BOOTSTRAP_SUPERUSER_OID),
            (PG_TOAST_OID, "pg_toast", BOOTSTRAP_SUPERUSER_OID),
            (INFORMATION_SCHEMA_OID, "information_schema", BOOTSTRAP_SUPERUSER_OID),
        ]
        for name, entry in state.get("schemas", {}).items():
            owner = PG_DATABASE_OWNER_OID if name == "public" and entry.get("oid") == PUBLIC_OID \
                else self.role_oid(entry.get("owner") or "postgres")
            self.namespaces.append((int(entry["oid"]), name, owner))
        self.nsp_by_name = {name: oid for oid, name, _ in self.namespaces}
        self.nsp_by_oid = {oid: name for oid, name, _ in self.namespaces}
        self.relations: list[Relation] = []
        self.constraints: list[Constraint] = []
        self.defaults: list[Default] = []
        self._foreign_keys: list = []  # (table def, namespace, ConstraintDef, attnums)
        store = catalog.store
        self._matviews: dict = state.get("matviews", {})
        for table in list(store.tables.values()):
            self._add_table(table)
        self._add_foreign_keys(store)
        for key, seq in state.get("sequences", {}).items():
            schema, _, name = key.partition(".")
            self.relations.append(Relation(
                int(seq["oid"]), name, self.nsp_by_name.get(schema, PUBLIC_OID), schema, "S",
                columns=[Column("last_value", SqlType("int8"), 1, True),
                         Column("log_cnt", SqlType("int8"), 2, True),
                         Column("is_called", SqlType("bool"), 3, True)],
                # The live value (the stored one only moves when a block is reserved).
                sequence={**seq, "value": catalog.currval_of(key)}))
        for view in all_views(catalog):
            self.relations.append(Relation(
                view.oid, view.name, self.nsp_by_name.get(view.schema, PUBLIC_OID), view.schema,
                "v", [Column(n, t, i + 1) for i, (n, t) in enumerate(view.columns)],
                definition=view.definition_for(session.search_path), owner=view.owner))
        self.relations += _catalog_relations()
        self.by_oid = {r.oid: r for r in self.relations}

    # Building ------------------------------------------------------------------------------------

    def _add_table(self, table) -> None:
        d = table.def_
        nsp = self.nsp_by_name.get(d.schema, PUBLIC_OID)
        try:
            tuples = float(table.snapshot().row_count)
        except Exception:  # a table being dropped under us
            tuples = 0.0
        columns = [Column(c.name, c.type, c.attnum, c.not_null, c.default, c.identity)
                   for c in d.columns]
        mat = self._matviews.get(str(d.id))
        rel = Relation(d.oid, d.name, nsp, d.schema, "r" if mat is None else "m", columns,
                       HEAP_AM, tuples, table_id=d.id, primary_key=tuple(d.primary_key),
                       definition=None if mat is None else _matview_text(
                           mat, getattr(self.session, "search_path", ["public"])),
                       populated=mat is None or bool(mat.get("populated")))
        by_name = {c.name: c for c in columns}
        def key_index(oid: int, name: str, cols, primary: bool = False,
                      nulls_not_distinct: bool = False) -> Index:
            return Index(oid, name, d.oid, "btree", [by_name[k].attnum for k in cols],
                         [BTREE_OPCLASSES.get(by_name[k].type.name, (0, ""))[0] for k in cols],
                         {}, primary=primary, unique=True, opclass_names=[None] * len(cols),
                         nulls_not_distinct=nulls_not_distinct)
        if d.primary_key:
            ix = key_index(d.primary_key_oid or derived_oid(d.oid, 1), d.pkey_name,
                           d.primary_key, primary=True)
            rel.indexes.append(ix)
            self.constraints.append(Constraint(derived_oid(d.oid, 2), ix.name, nsp, "p", d.oid,
                                               ix.oid, ix.attnums,
                                               deferrable=d.primary_key_deferrable,
                                               deferred=d.primary_key_deferred))
        for con in d.constraints:
            attnums = [by_name[k].attnum for k in con.columns if k in by_name]
            if con.kind == "u":
                ix = key_index(con.index_oid, con.name, con.columns,
                               nulls_not_distinct=con.nulls_not_distinct)
                rel.indexes.append(ix)
                self.constraints.append(Constraint(
                    con.oid, con.name, nsp, "u", d.oid, ix.oid, attnums,
                    deferrable=con.deferrable, deferred=con.deferred,
                    nulls_not_distinct=con.nulls_not_distinct))
            elif con.kind == "c":
                self.constraints.append(Constraint(
                    con.oid, con.name, nsp, "c", d.oid, 0, attnums, check=con.expression,
                    check_pretty=con.pretty or con.expression, validated=con.validated))
            elif con.kind == "f":
                self._foreign_keys.append((d, nsp, con, attnums))
        for ixdef in d.indexes:
            attnums = [by_name[c].attnum for c in ixdef.columns if c in by_name]
            method = access_methods.find(ixdef.method)
            if method is not None:
                try:
                    match = access_methods.opclass(method, ixdef.opclass)
                except UndefinedObject:
                    match = None
                opclasses = [match.oid if match else 0]
                names = [None if match is not None and match.default else ixdef.opclass]
            elif ixdef.method == "gin":
                gin = GIN_OPCLASSES.get(ixdef.opclass or "", (0, 0, "", True))
                opclasses, names = [gin[0]], [None if gin[3] else ixdef.opclass]
            else:
                opclasses = [BTREE_OPCLASSES.get(by_name[c].type.name, (0, ""))[0]
                             for c in ixdef.columns if c in by_name]
                names = [None] * len(opclasses)
            extra: dict = {}
            if ixdef.expression is not None:
                col = by_name.get(ixdef.columns[0]) if ixdef.columns else None
                extra = dict(expression=ixdef.expression, expression_sql=ixdef.expression_sql,
                             expression_columns=attnums,
                             key_type=SqlType(ixdef.key_type, col.type.typmod)
                             if ixdef.key_type and col is not None else None)
                attnums = [0]
                if method is None and ixdef.method != "gin":
                    opclasses, names = [0], [None]
            rel.indexes.append(Index(ixdef.oid, ixdef.name, d.oid, ixdef.method, attnums,
                                     opclasses, dict(ixdef.options), opclass_names=names,
                                     unique=ixdef.unique,
                                     nulls_not_distinct=ixdef.nulls_not_distinct, **extra))
        for c in columns:
            if c.not_null:
                self.constraints.append(Constraint(derived_oid(d.oid, 2048 + c.attnum),
                                                   f"{d.name}_{c.name}_not_null", nsp, "n",
                                                   d.oid, 0, [c.attnum]))
            if c.default is not None and c.identity not in ("always", "by default"):
                # An identity column's nextval is no default to PostgreSQL (attidentity):
                # pg_dump would otherwise restore both.
                self.defaults.append(Default(derived_oid(d.oid, 4096 + c.attnum), d.oid,
                                             c.attnum, display_default(c.default, c.type)))
        self.relations.append(rel)
        for ix in rel.indexes:
            if ix.expression is not None:  # named after the column it reads, typed as it is
                base = next((c for c in columns if c.attnum in ix.expression_columns), None)
                cols = [Column(base.name if base else "expr",
                               ix.key_type or (base.type if base else SqlType("text")), 1)]
            else:
                cols = [next(c for c in columns if c.attnum == a) for a in ix.attnums]
            self.relations.append(Relation(
                ix.oid, ix.name, nsp, d.schema, "i",
                [Column(c.name, c.type, i + 1) for i, c in enumerate(cols)],
                am_oid(ix.method), tuples, index=ix))

    def _add_foreign_keys(self, store) -> None:
        """pg_constraint rows of FOREIGN KEY constraints, once every table (and so every
        referenced key's index) is known: conindid is the referenced key's index."""
        for d, nsp, con, attnums in self._foreign_keys:
            target = store.tables.get(con.ref_table)
            if target is None:
                continue
            ref = target.def_
            ref_attnums = [ref.column(c).attnum for c in con.ref_columns if ref.has_column(c)]
            index = 0
            for rel in self.relations:
                if rel.oid == ref.oid:
                    index = next((ix.oid for ix in rel.indexes if ix.unique
                                  and sorted(ix.attnums) == sorted(ref_attnums)), 0)
            self.constraints.append(Constraint(
                con.oid, con.name, nsp, "f", d.oid, index, attnums, validated=con.validated,
                deferrable=con.deferrable, deferred=con.deferred, ref_relation=ref.oid,
                ref_keys=ref_attnums, on_update=con.on_update, on_delete=con.on_delete,
                match=con.match, delete_set_keys=[d.column(c).attnum for c in
                                                  con.delete_set_columns if d.has_column(c)]))

    # Lookups -------------------------------------------------------------------------------------

    def role_name(self, oid: int) -> str | None:
        """The name of a role OID (pg_get_userbyid, owner columns), or None."""
        if oid == PG_DATABASE_OWNER_OID:
            return "pg_database_owner"
        for name, role in self.state.get("roles", {}).items():
            if int(role["oid"]) == oid:
                return name
        return None

    def relation(self, oid: int | None) -> Relation | None:
        """The relation with OID `oid`, or None (regclass output and catalog joins look up
        freely)."""
        return None if oid is None else self.by_oid.get(int(oid))

    def table_of(self, rel: Relation) -> Relation | None:
        """The table an index belongs to, or None for a relation that is not an index."""
        if rel.index is None:
            return None
        return self.by_oid.get(rel.index.table_oid)

    def find_relation(self, name: str, search_path: list[str]) -> Relation | None:
        """`[schema.]name` as PostgreSQL resolves it (pg_catalog first when unqualified)."""
        schema, name = split_qualified(name)
        schemas = [schema] if schema else ["pg_catalog"] + [s for s in search_path
                                                             if s != "pg_catalog"]
        for s in schemas:
            for rel in self.relations:
                if rel.name == name and rel.schema == s:
                    return rel
        return None

    def visible(self, rel: Relation, search_path: list[str]) -> bool:
        """pg_table_is_visible: the first relation of that name along the path is this one."""
        found = self.find_relation(rel.name, search_path)
        return found is not None and found.oid == rel.oid

    def constraint(self, oid: int | None) -> Constraint | None:
        """The constraint with OID `oid`, or None."""
        if oid is None:
            return None
        for con in self.constraints:
            if con.oid == oid:
                return con
        return None

    def index_definition(self, oid: int, column: int = 0, pretty: bool = False) -> str | None:
        """pg_get_indexdef(oid, column, pretty): the CREATE INDEX statement, or one column of
        it; an expression key in its pretty form (`embedding::halfvec(3)`, as psql's \\d
        shows it) or not (`(embedding)::halfvec(3)`)."""
        rel = self.relation(oid)
        if rel is None or rel.index is None:
            return None
        ix = rel.index
        table = self.by_oid[ix.table_oid]
        names = {c.attnum: c.name for c in table.columns}
        parts = []
        for attnum, opclass in zip(ix.attnums, ix.opclass_names or [None] * len(ix.attnums)):
            part = quote_ident(names.get(attnum, "?")) if attnum else \
                _expression_key((ix.expression if pretty else ix.expression_sql) or "")
            if opclass:
                part += f" {opclass}"
            parts.append(part)
        if column:
            if not 1 <= column <= len(ix.attnums):
                return ""
            attnum = ix.attnums[column - 1]
            return quote_ident(names.get(attnum, "?")) if attnum else \
                _expression_key((ix.expression if pretty else ix.expression_sql) or "")
        text = (f"CREATE {'UNIQUE ' if ix.unique else ''}INDEX {quote_ident(rel.name)} ON "
                f"{quote_ident(table.schema)}.{quote_ident(table.name)} USING {ix.method} "
                f"({', '.join(parts)})")
        if ix.nulls_not_distinct:
            text += " NULLS NOT DISTINCT"
        if ix.options:
            text += " WITH (" + ", ".join(f"{k}={_reloption(v)}" for k, v in ix.options.items()) \
                + ")"
        return text

    def constraint_definition(self, oid: int, pretty: bool = False) -> str | None:
        """pg_get_constraintdef's text (`PRIMARY KEY (id)`), which ORMs parse."""
        con = self.constraint(oid)
        if con is None:
            return None
        table = self.by_oid.get(con.relation)
        names = {c.attnum: c.name for c in table.columns} if table else {}
        cols = ", ".join(quote_ident(names.get(k, "?")) for k in con.keys)
        suffix = (" DEFERRABLE" + (" INITIALLY DEFERRED" if con.deferred else "")
                  if con.deferrable else "") + ("" if con.validated else " NOT VALID")
        if con.type == "p":
            return f"PRIMARY KEY ({cols}){suffix}"
        if con.type == "u":
            nulls = "NULLS NOT DISTINCT " if con.nulls_not_distinct else ""
            return f"UNIQUE {nulls}({cols}){suffix}"
        if con.type == "c":
            return f"CHECK ({con.check_pretty if pretty else con.check}){suffix}"
        if con.type == "f":
            ref = self.by_oid.get(con.ref_relation)
            ref_names = {c.attnum: c.name for c in ref.columns} if ref else {}
            ref_cols = ", ".join(quote_ident(ref_names.get(k, "?")) for k in con.ref_keys)
            target = quote_ident(ref.name) if ref else "?"
            # Qualified unless the search path finds it, as PostgreSQL prints it (pg_dump
            # empties the path, so its ALTER TABLE ... REFERENCES names the schema).
            path = getattr(self.session, "search_path", ["public"])
            if ref is not None and not self.visible(ref, path):
                target = f"{quote_ident(ref.schema)}.{target}"
            text = f"FOREIGN KEY ({cols}) REFERENCES {target}({ref_cols})"
            if con.match == "f":
                text += " MATCH FULL"
            actions = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
            if con.on_update in actions:
                text += f" ON UPDATE {actions[con.on_update]}"
            if con.on_delete in actions:
                text += f" ON DELETE {actions[con.on_delete]}"
                if con.delete_set_keys:
                    text += " (" + ", ".join(quote_ident(names.get(k, "?"))
                                             for k in con.delete_set_keys) + ")"
            return text + suffix
        return f"NOT NULL {cols}"

    def extensions(self) -> list[tuple[int, str, str, int]]:
        """(oid, name, version, namespace oid) of the installed extensions."""
        out = [(PLPGSQL_EXTENSION_OID, "plpgsql", "1.0", PG_CATALOG_OID)]
        entry = self.state.get("extensions", {}).get("vector")
        out.append((int(entry["oid"]) if entry else VECTOR_EXTENSION_OID, "vector",
                    entry["version"] if entry else VECTOR_EXTENSION_VERSION,
                    self.nsp_by_name.get((entry or {}).get("schema", "public"), PUBLIC_OID)))
        stat = self.state.get("extensions", {}).get("pg_stat_statements")
        if stat is not None:  # listed once created, as in PostgreSQL
            out.append((int(stat["oid"]), "pg_stat_statements", stat["version"],
                        self.nsp_by_name.get(stat.get("schema", "public"), PUBLIC_OID)))
        return out

    def comment(self, classoid: int, objoid: int, subid: int = 0) -> str | None:
        """The COMMENT ON text of an object, keyed as pg_description is."""
        return self.state.get("comments", {}).get(f"{classoid}:{objoid}:{subid}")


def _catalog_relations() -> list[Relation]:
    """The pg_catalog and information_schema tables as relations (fixed after import: built
    once, shared read-only by every statement's model)."""
    global _CATALOG_RELATIONS
    if _CATALOG_RELATIONS is None:
        nsp = {"pg_catalog": PG_CATALOG_OID, "information_schema": INFORMATION_SCHEMA_OID}
        out = []
        for key, (columns, _fn) in TABLES.items():
            schema, _, name = key.rpartition(".")
            schema = schema or "pg_catalog"
            out.append(Relation(
                table_oid(key), name, nsp[schema], schema,
                "v" if schema == "information_schema" or name.startswith("pg_stat")
                or name in _CATALOG_VIEWS else "r",
                columns=[Column(c, parse_type(t), i + 1) for i, (c, t) in enumerate(columns)],
                am=HEAP_AM if schema == "pg_catalog" and name not in _CATALOG_VIEWS else 0))
        _CATALOG_RELATIONS = out
    return _CATALOG_RELATIONS


_CATALOG_RELATIONS: list[Relation] | None = None

_CATALOG_VIEWS = {"pg_roles", "pg_user", "pg_settings", "pg_tables", "pg_views", "pg_matviews",
                  "pg_indexes", "pg_sequences", "sqlvec_indexes"}

_KEYWORDS_RESERVED = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case",
    "cast", "check", "collate", "column", "constraint", "create", "current_catalog",
    "current_date", "current_role", "current_time", "current_timestamp", "current_user",
    "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch",
    "for", "foreign", "from", "grant", "group", "having", "in", "initially", "intersect", "into",
    "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on",
    "only", "or", "order", "placing", "primary", "references", "returning", "select",
    "session_user", "some", "symmetric", "table", "then", "to", "trailing", "true", "union",
    "unique", "user", "using", "variadic", "when", "where", "window", "with",
}
_KEYWORDS_COLNAME = {
    "between", "bigint", "bit", "boolean", "char", "character", "coalesce", "dec", "decimal",
    "exists", "extract", "float", "greatest", "grouping", "inout", "int", "integer", "interval",
    "least", "national", "nchar", "none", "nullif", "numeric", "out", "overlay", "position",
    "precision", "real", "row", "setof", "smallint", "substring", "time", "timestamp", "treat",
    "trim", "values", "varchar", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
    "xmlforest", "xmlparse", "xmlpi", "xmlroot", "xmlserialize",
}
_KEYWORDS_TYPEFUNC = {
    "authorization", "binary", "collation", "concurrently", "cross", "current_schema", "freeze",
    "full", "ilike", "inner", "is", "isnull", "join", "left", "like", "natural", "notnull",
    "outer", "overlaps", "right", "similar", "tablesample", "verbose",
}
_KEYWORDS_UNRESERVED = {
    "abort", "absolute", "access", "action", "add", "admin", "after", "aggregate", "also",
    "alter", "always", "assertion", "assignment", "at", "attach", "attribute", "backward",
    "before", "begin", "by", "cache", "call", "called", "cascade", "cascaded", "catalog", "chain",
    "characteristics", "checkpoint", "class", "close", "cluster", "columns", "comment",
    "comments", "commit", "committed", "configuration", "conflict", "connection", "constraints",
    "content", "continue", "conversion", "copy", "cost", "csv", "cube", "current", "cursor",
    "cycle", "data", "database", "day", "deallocate", "declare", "defaults", "deferred",
    "definer", "delete", "delimiter", "delimiters", "depends", "detach", "dictionary", "disable",
    "discard", "document", "domain", "double", "drop", "each", "enable", "encoding", "encrypted",
    "enum", "escape", "event", "exclude", "excluding", "exclusive", "execute", "explain",
    "expression", "extension", "external", "family", "filter", "first", "following", "force",
    "forward", "function", "functions", "generated", "global", "granted", "groups", "handler",
    "header", "hold", "hour", "identity", "if", "immediate", "immutable", "implicit", "import",
    "include", "including", "increment", "index", "indexes", "inherit", "inherits", "inline",
    "input", "insensitive", "insert", "instead", "invoker", "isolation", "key", "label",
    "language", "large", "last", "leakproof", "level", "listen", "load", "local", "location",
    "lock", "locked", "logged", "mapping", "match", "materialized", "maxvalue", "method",
    "minute", "minvalue", "mode", "month", "move", "name", "names", "new", "next", "no",
    "nothing", "notify", "nowait", "nulls", "object", "of", "off", "oids", "old", "operator",
    "option", "options", "ordinality", "others", "over", "overriding", "owned", "owner",
    "parallel", "parser", "partial", "partition", "passing", "password", "plans", "policy",
    "preceding", "prepare", "prepared", "preserve", "prior", "privileges", "procedural",
    "procedure", "procedures", "program", "publication", "quote", "range", "read", "reassign",
    "recheck", "recursive", "ref", "referencing", "refresh", "reindex", "relative", "release",
    "rename", "repeatable", "replace", "replica", "reset", "restart", "restrict", "return",
    "returns", "revoke", "role", "rollback", "rollup", "routine", "routines", "rows", "rule",
    "savepoint", "schema", "schemas", "scroll", "search", "second", "security", "sequence",
    "sequences", "serializable", "server", "session", "set", "sets", "share", "show", "simple",
    "skip", "snapshot", "sql", "stable", "standalone", "start", "statement", "statistics",
    "stdin", "stdout", "storage", "stored", "strict", "strip", "subscription", "support",
    "sysid", "system", "tables", "tablespace", "temp", "template", "temporary", "text", "ties",
    "transaction", "transform", "trigger", "truncate", "trusted", "type", "types", "unbounded",
    "uncommitted", "unencrypted", "unknown", "unlisten", "unlogged", "until", "update", "vacuum",
    "valid", "validate", "validator", "value", "varying", "version", "view", "views",
    "volatile", "whitespace", "within", "without", "work", "wrapper", "write", "xml", "year",
    "yes", "zone",
}


def keywords() -> list[tuple[str, str, str]]:
    """pg_get_keywords(): (word, catcode, catdesc)."""
    cats = (("U", "unreserved", _KEYWORDS_UNRESERVED), ("C", "unreserved (cannot be function or "
            "type name)", _KEYWORDS_COLNAME), ("T", "reserved (can be function or type name)",
            _KEYWORDS_TYPEFUNC), ("R", "reserved", _KEYWORDS_RESERVED))
    out = [(w, code, desc) for code, desc, words in cats for w in words]
    return sorted(out)


def display_default(text: str, t: SqlType) -> str:
    """A column default as pg_get_expr prints it: `now()`, `'x'::text`, `42`."""
    stripped = text.strip()
    if stripped.upper() in ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP()", "NOW()"):
        return "now()"
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == "'" and "'" not in \
            stripped[1:-1].replace("''", ""):
        name = t.info.display if t.name not in ("varchar", "bpchar") else t.info.display
        return f"{stripped}::{name}"
    return stripped


def quote_ident(name: str) -> str:
    """PostgreSQL's quote_ident: quote unless a lower-case identifier that is not reserved."""
    simple = bool(name) and (name[0].isalpha() and name[0].islower() or name[0] == "_") and all(
        ch.islower() or ch.isdigit() or ch == "_" for ch in name if ch.isascii()) and \
        name.isascii()
    if simple and name not in _KEYWORDS_RESERVED and name not in _KEYWORDS_COLNAME and \
            name not in _KEYWORDS_TYPEFUNC:
        return name
    return '"' + name.replace('"', '""') + '"'


def split_qualified(name: str) -> tuple[str | None, str]:
    """`schema.name` / `"Schema"."Name"` / `name` into (schema or None, name)."""
    parts, current, quoted, i = [], [], False, 0
    text = name.strip()
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and i + 1 < len(text) and text[i + 1] == '"':
                current.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch.lower())
        i += 1
    parts.append("".join(current))
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[0]


def _matview_text(entry: dict, search_path: list[str]) -> str:
    """A materialized view's pg_get_viewdef text under a search_path, as a view's
    (`View.definition_for`)."""
    if not entry.get("qualified") or all(s in search_path for s in entry.get("schemas", ())):
        return entry.get("definition") or ""
    return entry["qualified"]


def build_virtual_table(database, session, name: str) -> pa.Table:
    """The rows of the virtual catalog table `name`, as Arrow, from the live catalog."""
    key = name.split(".", 1)[1] if name.startswith("pg_catalog.") else name
    columns, fn = TABLES[key]
    data = fn((LiveObjects if key in LIVE else CatalogObjects)(database, session))
    arrays = []
    n = max((len(v) for v in data.values()), default=0)
    for col, t in columns:
        values = data.get(col)
        arrow = parse_type(t).to_arrow()
        if values is None:
            arrays.append(pa.nulls(n, arrow))
        else:
            arrays.append(pa.array(values, arrow))
    return pa.Table.from_arrays(arrays, names=[c for c, _ in columns])


def _expression_key(text: str) -> str:
    """An expression as one key of an index definition: parenthesised unless a function call
    (`lower(category)`), as PostgreSQL's pg_get_indexdef prints it."""
    head = text.split("(", 1)[0]
    if head.isidentifier() and text.endswith(")") and _balanced_call(text, len(head)):
        return text
    return f"({text})"


def _balanced_call(text: str, start: int) -> bool:
    """Whether the parenthesis at `start` closes at the end of `text` (`f(a)`, not `f(a)::t`)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i == len(text) - 1
    return False
