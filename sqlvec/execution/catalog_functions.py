"""Catalog functions, casts and operators that drivers, psql and BI tools send.

Named functions (`fn(c, args, e) -> Value`) and the set-returning functions of a select list
(the `ProjectSet` operator: unnest, generate_subscripts, generate_series,
information_schema._pg_expandarray, pg_get_keywords) are declared in the function catalog
(catalog/functions.py; "Declarations" below). `compile_extensions()` (database.functions) holds
the rest: casts to and from the reg* types (`::regclass`, `regtype::text`) and expression forms
the compiler hands over by class (`expr:BitwiseAnd`, `expr:Dot` for `(record).field`,
`expr:ArrayConcat`).

Every function reads the catalog through one `CatalogObjects` per statement (catalog/objects.py),
so OIDs agree with the pg_catalog tables. Values are computed per distinct input where the input is
a column (catalog tables are small); nothing here scales with user-table size.
"""

from __future__ import annotations

import itertools
import json
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog import objects as O
from sqlvec.catalog.functions import scalar, set_returning
from sqlvec.catalog.settings import CANONICAL, VERSION_TEXT, validate
from sqlvec.catalog.virtual import table_oid
from sqlvec.errors import FeatureNotSupported, Notice, SqlVecError, UndefinedObject, UndefinedTable
from sqlvec.execution import values as V
from sqlvec.execution.expressions import Frame
from sqlvec.execution.expressions.calls import no_such_function, undefined_call
from sqlvec.execution.kernels import table_of
from sqlvec.execution.operators import Operator
from sqlvec.execution.session_functions import regclass_of
from sqlvec.execution.table_functions import series_bounds, series_table, unnest_table
from sqlvec.execution.values import (
    BOOL,
    FLOAT8,
    INT4,
    INT8,
    TEXT,
    Value,
    as_array,
    is_scalar,
)
from sqlvec.sql.binder import Field
from sqlvec.sql.calls import call_of
from sqlvec.types import ALIASES, REG_TYPES, TYPES_BY_NAME, SqlType, record_fields, record_type

NAME = SqlType("name")
OID = SqlType("oid")
INT2 = SqlType("int2")
JSON = SqlType("json")
_txids = itertools.count(1000)


# Helpers -------------------------------------------------------------------------------------------


def objects(f) -> O.CatalogObjects:
    """The statement's catalog model (built once per statement)."""
    cache = f.ctx.cache
    model = cache.get("catalog_objects")
    if model is None:
        session = f.ctx.services
        model = cache["catalog_objects"] = O.CatalogObjects(session.database, session)
    return model


def _map(args: list[Value], fn, out: SqlType, *, strict: bool = True) -> Value:
    """An element-wise Python function of several values (catalog-sized inputs)."""
    arrow = out.to_arrow()

    def run(f):
        vals = [a(f) for a in args]
        if all(is_scalar(v) for v in vals):
            py = [v.as_py() for v in vals]
            if strict and any(p is None for p in py):
                return pa.scalar(None, arrow)
            return pa.scalar(fn(f, *py), arrow)
        cols = [as_array(v, f.n).to_pylist() for v in vals]
        memo: dict = {}
        result = []
        for row in zip(*cols):
            if strict and any(p is None for p in row):
                result.append(None)
                continue
            key = tuple(tuple(p) if isinstance(p, list) else p for p in row)
            if key not in memo:
                memo[key] = fn(f, *row)
            result.append(memo[key])
        return pa.array(result, arrow)
    return Value(run, out, all(a.const for a in args) and False)


def _arg(c, e, t: SqlType) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown" or (t.name != "unknown" and V.is_numeric(t) and V.is_numeric(v.type)
                                    and v.type != t):
        return c.compile_as(e, t)
    return v


def _args_as(c, args, *types: SqlType) -> list[Value]:
    return [_arg(c, a, t) for a, t in zip(args, types)]


def _const(value, t: SqlType) -> Value:
    scalar = pa.scalar(value, t.to_arrow())
    return Value(lambda f: scalar, t, True)


def _session_value(getter, t: SqlType):
    def compile_(c, args, e):
        arrow = t.to_arrow()
        return Value(lambda f: pa.scalar(getter(f), arrow), t)
    return compile_


def _search_path(f) -> list[str]:
    return f.ctx.services.search_path


def _true(*types: SqlType):
    """has_*_privilege and friends: every object is accessible to every role here."""
    def compile_(c, args, e):
        vals = [c.compile(a) for a in args]
        vals = [c.coerce(v, TEXT) if v.type.name == "unknown" else v for v in vals]
        return _map(vals, lambda f, *xs: True, BOOL)
    return compile_


# Identity and settings ----------------------------------------------------------------------------


def _current_schema(f) -> str | None:
    session = f.ctx.services
    return next((p for p in session.search_path if session.catalog.has_schema(p)), None)


def _current_schemas(c, args, e):
    implicit = c.compile_as(args[0], BOOL) if args else _const(False, BOOL)
    out = NAME.array_of()

    def fn(f):
        session = f.ctx.services
        path = [p for p in session.search_path if session.catalog.has_schema(p)]
        if implicit(f).as_py() and "pg_catalog" not in path:
            path = ["pg_catalog"] + path
        return pa.scalar(path, out.to_arrow())
    return Value(fn, out)


def _version(c, args, e):
    return _const(VERSION_TEXT, TEXT)


def _current_setting(c, args, e):
    name = c.compile_as(args[0], TEXT)
    missing_ok = c.compile_as(args[1], BOOL) if len(args) > 1 else None

    def fn(f, key, ok=False):
        session = f.ctx.services
        canon = CANONICAL.get(key.lower(), key)
        if canon not in session.settings:
            if ok:
                return None
            raise UndefinedObject(f'unrecognized configuration parameter "{key}"')
        return session.settings[canon]
    return _map([name] + ([missing_ok] if missing_ok else []), fn, TEXT)


def _set_config(c, args, e):
    if any(isinstance(a, exp.Kwarg) for a in args):  # its parameters have no names
        raise undefined_call(c, "set_config", args)
    name = c.compile_as(args[0], TEXT)
    value = c.compile_as(args[1], TEXT)
    is_local = c.compile_as(args[2], BOOL)

    def fn(f, n, v, local):
        if n is None:
            raise SqlVecError("SET requires parameter name", sqlstate="42601")
        session = f.ctx.services
        v = v if v is not None else ""
        if local:  # SET LOCAL, without its warning: outside a block it changes nothing
            session.set_local(n, v)
            if not session.explicit:
                return validate(n, v)[1]
        else:
            session.set(n, v)
        return session.settings.get(CANONICAL.get(n.lower(), n), v)
    # Row by row: the name and value may be columns (pg_dump: `FROM pg_settings WHERE ...`).
    return _map([name, value, is_local], fn, TEXT, strict=False)


# Visibility and names ------------------------------------------------------------------------------


def _table_is_visible(c, args, e):
    oid = _arg(c, args[0], OID)

    def fn(f, o):
        model = objects(f)
        rel = model.relation(o)
        return None if rel is None else model.visible(rel, _search_path(f))
    return _map([oid], fn, BOOL)


def _type_is_visible(c, args, e):
    oid = _arg(c, args[0], OID)

    def fn(f, o):
        info = O.type_name_of(o)
        if info is None:
            return None
        if info.typname in ("vector", "_vector", "halfvec", "_halfvec", "sparsevec",
                            "_sparsevec"):
            return "public" in _search_path(f)
        return True
    return _map([oid], fn, BOOL)


def _function_is_visible(c, args, e):
    """pg_function_is_visible: its schema is pg_catalog or on the search path."""
    oid = _arg(c, args[0], OID)

    def fn(f, o):
        p = F.procs_by_oid().get(o)
        if p is None:
            return None
        name = objects(f).nsp_by_oid.get(p.namespace)
        return name == "pg_catalog" or name in _search_path(f)
    return _map([oid], fn, BOOL)


def _always_visible(c, args, e):
    oid = _arg(c, args[0], OID)
    return _map([oid], lambda f, o: True, BOOL)


def _format_type(c, args, e):
    oid = _arg(c, args[0], OID)
    mod = _arg(c, args[1], INT4) if len(args) > 1 else _const(None, INT4)

    def fn(f, o, m):
        return O.format_type(o, m)

    def run(f):
        o, m = oid(f), mod(f)
        if is_scalar(o) and is_scalar(m):
            return pa.scalar(None if not o.is_valid else O.format_type(o.as_py(), m.as_py()))
        os_, ms = as_array(o, f.n).to_pylist(), as_array(m, f.n).to_pylist()
        return pa.array([None if x is None else O.format_type(x, y) for x, y in zip(os_, ms)],
                        pa.string())
    return Value(run, TEXT)


def _get_userbyid(c, args, e):
    oid = _arg(c, args[0], OID)
    return _map([oid], lambda f, o: objects(f).role_name(o) or f"unknown (OID={o})", NAME)


def _get_indexdef(c, args, e):
    vals = _args_as(c, args, OID, INT4, BOOL)
    return _map(vals, lambda f, o, col=0, pretty=False: objects(f).index_definition(
        o, col or 0, bool(pretty)), TEXT)


def _get_constraintdef(c, args, e):
    vals = _args_as(c, args, OID, BOOL)
    return _map(vals, lambda f, o, pretty=False: objects(f).constraint_definition(
        o, bool(pretty)), TEXT)


def _get_viewdef(c, args, e):
    """A view's text by OID or by name (NULL for anything that is not a view)."""
    first = c.compile(args[0])
    if first.type.name in ("text", "unknown", "varchar", "name"):
        vals = [c.coerce(first, TEXT)] + _args_as(c, args[1:], BOOL)

        def by_name(f, name, pretty=False):
            model = objects(f)
            rel = model.find_relation(name, model.session.search_path)
            return rel.definition if rel is not None else None
        return _map(vals, by_name, TEXT)
    vals = _args_as(c, args, OID, BOOL)

    def by_oid(f, o, pretty=False):
        rel = objects(f).relation(o)
        return rel.definition if rel is not None else None
    return _map(vals, by_oid, TEXT)


def _get_expr(c, args, e):
    vals = [c.compile_as(args[0], TEXT)] + _args_as(c, args[1:], OID, BOOL)
    return _map(vals, lambda f, text, *rest: text, TEXT)


def _null_of(t: SqlType):
    """A function that is NULL for every row (what sqlvec has nothing to say about), of type t."""
    def compile_(c, args, e):
        vals = [c.compile(a) for a in args]
        vals = [c.coerce(v, TEXT) if v.type.name == "unknown" else v for v in vals]
        return _map(vals, lambda f, *xs: None, t, strict=False)
    return compile_


_null_text = _null_of(TEXT)
# acldefault: NULL, every object has its owner's default privileges (pg_dump then leaves them out).
_no_acl = _null_of(TEXT.array_of())


def _false(c, args, e):
    vals = [c.compile(a) for a in args]
    vals = [c.coerce(v, TEXT) if v.type.name == "unknown" else v for v in vals]
    return _map(vals, lambda f, *xs: False, BOOL)


def _get_serial_sequence(c, args, e):
    table, column = _args_as(c, args, TEXT, TEXT)

    def fn(f, t, col):
        model = objects(f)
        rel = model.find_relation(t, _search_path(f))
        if rel is None:
            raise UndefinedTable(f'relation "{t}" does not exist')
        for colum in rel.columns:
            if colum.name == col and colum.default:
                m = re.match(r"nextval\('([^']+)'::regclass\)", colum.default)
                if m:
                    seq = model.find_relation(m.group(1), [rel.schema] + _search_path(f))
                    if seq is not None:
                        return f"{O.quote_ident(seq.schema)}.{O.quote_ident(seq.name)}"
        # A sequence the column owns (ALTER SEQUENCE … OWNED BY), as PostgreSQL's dependency.
        owner = f"{rel.table_id}.{col}"
        for seq in model.relations:
            if seq.kind == "S" and (seq.sequence or {}).get("owned_by") == owner:
                return f"{O.quote_ident(seq.schema)}.{O.quote_ident(seq.name)}"
        return None
    return _map([table, column], fn, TEXT)


def _function_result(c, args, e):
    oid = _arg(c, args[0], OID)

    def fn(f, o):
        p = F.procs_by_oid().get(o)
        return None if p is None else p.result()
    return _map([oid], fn, TEXT)


def _function_arguments(identity: bool):
    """pg_get_function_arguments / pg_get_function_identity_arguments."""
    def compile_(c, args, e):
        oid = _arg(c, args[0], OID)

        def fn(f, o):
            p = F.procs_by_oid().get(o)
            return None if p is None else p.arguments(identity)
        return _map([oid], fn, TEXT)
    return compile_


# Descriptions --------------------------------------------------------------------------------------


def _obj_description(c, args, e):
    oid = _arg(c, args[0], OID)
    catalog = c.compile_as(args[1], TEXT) if len(args) > 1 else _const("pg_class", TEXT)

    def fn(f, o, cat):
        model = objects(f)
        classoid = table_oid(cat.split(".")[-1])
        text = model.comment(classoid, o)
        if text is None and classoid == O.PG_EXTENSION_OID:
            names = {oid: n for oid, n, _v, _ns in model.extensions()}
            text = {"plpgsql": "PL/pgSQL procedural language",
                    "vector": "vector data type and ivfflat and hnsw access methods"}.get(
                names.get(o, ""))
        if text is None and classoid == O.PG_NAMESPACE_OID and model.nsp_by_oid.get(o) == "public":
            text = "standard public schema"
        return text
    return _map([oid, catalog], fn, TEXT)


def _col_description(c, args, e):
    oid, attnum = _args_as(c, args, OID, INT4)
    return _map([oid, attnum], lambda f, o, n: objects(f).comment(O.PG_CLASS_OID, o, n), TEXT)


def _shobj_description(c, args, e):
    oid = _arg(c, args[0], OID)
    catalog = c.compile_as(args[1], TEXT)

    def fn(f, o, cat):
        if cat == "pg_database" and o == O.database_oid("postgres"):
            return "default administrative connection database"
        return None
    return _map([oid, catalog], fn, TEXT)


# Sizes ---------------------------------------------------------------------------------------------

_WIDTH = {"bool": 1, "int2": 2, "int4": 4, "int8": 8, "float4": 4, "float8": 8, "date": 4,
          "timestamp": 8, "timestamptz": 8, "time": 8, "uuid": 16, "oid": 4, "interval": 16}


def relation_size(model: O.CatalogObjects, oid: int, which: str) -> int | None:
    """Estimated bytes of a relation: rows times column widths, at least one 8 kB page."""
    rel = model.relation(oid)
    if rel is None:
        return None
    if rel.kind not in "ri" or rel.table_id is None and rel.index is None:
        return 0 if rel.kind != "S" else 8192

    def table_bytes(r: O.Relation) -> int:
        width = 24
        for col in r.columns:
            t = col.type
            if t.is_vector:
                width += 8 + np.dtype(t.vector_dtype).itemsize * (t.dims or 0)
            else:
                width += _WIDTH.get(t.name, 16)
        rows = max(int(r.tuples), 0)
        return max(8192, -(-rows * width // 8192) * 8192)

    if rel.kind == "i":
        return table_bytes(rel)
    size = table_bytes(rel)
    if which in ("total", "indexes"):
        idx = sum(table_bytes(model.by_oid[ix.oid]) for ix in rel.indexes if ix.oid in
                  model.by_oid)
        return idx if which == "indexes" else size + idx
    return size


def _size_function(which: str):
    def compile_(c, args, e):
        v = c.compile(args[0])
        if v.type.name == "unknown" or V.is_string(v.type):
            v = regclass_of(c, v)
        return _map([v], lambda f, o: relation_size(objects(f), o, which), INT8)
    return compile_


def _zero(c, args, e):
    v = _arg(c, args[0], OID)
    return _map([v], lambda f, o: 0, INT8)


def _database_size(c, args, e):
    v = c.compile(args[0])

    def fn(f, _x):
        model = objects(f)
        return sum(relation_size(model, r.oid, "total") or 0 for r in model.relations
                   if r.kind == "r" and r.table_id is not None) + 7_500_000
    return _map([v if v.type.name != "unknown" else c.coerce(v, TEXT)], fn, INT8)


def size_pretty(size: int) -> str:
    """PostgreSQL's pg_size_pretty."""
    def half_rounded(x: int) -> int:
        return (x + (1 if x >= 0 else -1)) // 2 if x >= 0 else -((-x + 1) // 2)

    limit = 10 * 1024
    limit2 = limit * 2 - 1
    if abs(size) < limit:
        return f"{size} bytes"
    size >>= 9
    for unit in ("kB", "MB", "GB", "TB"):
        if abs(size) < limit2:
            return f"{half_rounded(size)} {unit}"
        size >>= 10
    return f"{half_rounded(size)} PB"


def _size_pretty(c, args, e):
    v = c.compile(args[0])
    if v.type.name == "unknown":
        v = c.coerce(v, INT8)
    return _map([v], lambda f, x: size_pretty(int(x)), TEXT)


# Strings and arrays --------------------------------------------------------------------------------


def _quote_ident(c, args, e):
    v = c.compile_as(args[0], TEXT)
    return _map([v], lambda f, s: O.quote_ident(s), TEXT)


def quote_literal(s: str) -> str:
    """A string as a SQL literal, as PostgreSQL's quote_literal writes it: E'' form when it holds a
    backslash."""
    body = s.replace("'", "''")
    if "\\" in s:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return f"'{body}'"


def _quote_literal(nullable: bool):
    def compile_(c, args, e):
        v = c.compile(args[0])
        v = c.coerce(v, TEXT) if v.type.name == "unknown" else v
        src = v.type

        def run(f):
            x = v(f)
            text = V.to_text(x, src, f.n)
            if is_scalar(text):
                s = text.as_py()
                return pa.scalar("NULL" if s is None and nullable else
                                 None if s is None else quote_literal(s), pa.string())
            return pa.array(["NULL" if s is None and nullable else None if s is None
                             else quote_literal(s) for s in text.to_pylist()], pa.string())
        return Value(run, TEXT, v.const)
    return compile_


def _array_arg(c, e) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown":
        v = c.coerce(v, TEXT.array_of())
    return v


def _array_to_string(c, args, e):
    arr = _array_arg(c, args[0])
    sep = c.compile_as(args[1], TEXT)
    null = c.compile_as(args[2], TEXT) if len(args) > 2 else None
    elem = arr.type.element if arr.type.is_array else TEXT

    def fn(f, items, s, n=None):
        parts = []
        for item in items:
            if item is None:
                if n is not None:
                    parts.append(n)
                continue
            parts.append(item if isinstance(item, str) else V.format_value(item, elem))
        return s.join(parts)
    return _map([arr, sep] + ([null] if null else []), fn, TEXT)


def _string_to_array(c, args, e):
    s = c.compile_as(args[0], TEXT)
    sep = c.compile_as(args[1], TEXT)
    null = c.compile_as(args[2], TEXT) if len(args) > 2 else None

    def fn(f, text, d, n=None):
        if text == "":
            return []
        parts = list(text) if d is None else text.split(d) if d != "" else [text]
        return [None if n is not None and p == n else p for p in parts]
    return _map([s, sep] + ([null] if null else []), fn, TEXT.array_of(), strict=False)


def _array_bound(c, args, e):
    """array_upper / array_lower / array_length (one-dimensional arrays)."""
    kind = str(e.this).lower().removeprefix("array_")
    arr = _array_arg(c, args[0])
    dim = c.compile_as(args[1], INT4) if len(args) > 1 else _const(1, INT4)

    def fn(f, items, d):
        if d != 1 or not items:
            return None
        return {"upper": len(items), "lower": 1, "length": len(items)}[kind]
    return _map([arr, dim], fn, INT4)


def _cardinality(c, args, e):
    arr = _array_arg(c, args[0])
    return _map([arr], lambda f, items: len(items), INT4)


def _array_remove(c, args, e):
    """array_remove(a, x): `a` without the elements equal to `x` (NULL removes NULLs)."""
    arr = _array_arg(c, args[0])
    x = c.coerce(c.compile(args[1]), arr.type.element)

    def fn(f, items, value):
        return None if items is None else [v for v in items if v != value]
    return _map([arr, x], fn, arr.type, strict=False)


def _array_concat(c, e):
    a, b = c.compile(e.this), c.compile(e.expression)
    t = a.type if a.type.is_array else b.type
    a = c.coerce(a, t) if a.type.name == "unknown" else a
    b = c.coerce(b, t) if b.type.name == "unknown" else b

    def fn(f, x, y):
        left = x if isinstance(x, list) else ([] if x is None else [x])
        right = y if isinstance(y, list) else ([] if y is None else [y])
        if x is None and y is None:
            return None
        return left + right
    return _map([a, b], fn, t, strict=False)


def _array_cat(c, args, e):
    """array_cat(a, b): `a || b` of two arrays."""
    if len(args) != 2:
        raise no_such_function("array_cat", [c.compile(a) for a in args])
    return _array_concat(c, exp.DPipe(this=args[0], expression=args[1]))


def _json_build_object(c, args, e):
    """json_build_object / jsonb_build_object: jsonb orders its keys as PostgreSQL stores them
    (shorter first, then bytewise) and prints `"k": v`; json keeps them and prints `"k" : v`."""
    name = str(e.this).lower()
    binary = name == "jsonb_build_object"
    if len(args) % 2:
        raise SqlVecError("argument list must have even number of elements", sqlstate="22023",
                          hint=f"The arguments of {name}() must consist of alternating "
                               "keys and values.")
    vals = [c.compile(a) for a in args]
    vals = [c.coerce(v, TEXT) if v.type.name == "unknown" else v for v in vals]
    types = [v.type for v in vals]

    def fn(f, *items):
        out = {}
        for i in range(0, len(items), 2):
            key, value = items[i], items[i + 1]
            t = types[i + 1]
            if value is not None and not isinstance(value, (bool, int, float, str, list)):
                value = V.format_value(value, t)
            out[str(key)] = value
        if binary:
            out = dict(sorted(out.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode())))
            return json.dumps(out, separators=(", ", ": "))
        return json.dumps(out, separators=(", ", " : "))
    return _map(vals, fn, SqlType("jsonb") if binary else JSON, strict=False)


def _json_build_array(c, args, e):
    vals = [c.compile(a) for a in args]
    vals = [c.coerce(v, TEXT) if v.type.name == "unknown" else v for v in vals]
    return _map(vals, lambda f, *items: json.dumps(list(items), separators=(", ", ": ")), JSON,
                strict=False)


def _encoding_to_char(c, args, e):
    v = _arg(c, args[0], INT4)
    return _map([v], lambda f, n: {6: "UTF8", 0: "SQL_ASCII"}.get(n, ""), NAME)


# Transactions and backends -------------------------------------------------------------------------


def _txid_current(c, args, e):
    def fn(f):
        cache = f.ctx.cache
        if "txid" not in cache:
            cache["txid"] = next(_txids)
        return pa.scalar(cache["txid"], pa.int64())
    return Value(fn, INT8)


def _pg_sleep(c, args, e):
    seconds = c.compile_as(args[0], FLOAT8)

    def fn(f):
        end = time.monotonic() + float(seconds(f).as_py() or 0)
        while time.monotonic() < end:
            f.ctx.check_interrupts()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return pa.scalar(None, pa.string())
    return Value(fn, SqlType("text"))


def _signal_backend(terminate: bool):
    def compile_(c, args, e):
        pid = c.compile_as(args[0], INT4)

        def fn(f, p):
            session = f.ctx.services
            target = session.database.sessions.get(p)
            if target is None:
                session.notice(Notice.warning(f"PID {p} is not a PostgreSQL backend process"))
                return False
            if terminate:
                target.terminate()  # the front end closes it: FATAL 57P01 to its client
            else:
                target.cancel()
            return True
        return _map([pid], fn, BOOL)
    return compile_


def _blocking_pids(c, args, e):
    """pg_blocking_pids(pid): the sessions the statement of session `pid` waits for (an empty
    array for one that waits for nothing, or no session)."""
    pid = c.compile_as(args[0], INT4)

    def fn(f, p):
        target = f.ctx.services.database.sessions.get(p)
        return [] if target is None else target.blocking_pids()
    return _map([pid], fn, INT4.array_of())


def _pg_stat_statements_reset(c, args, e):
    """Forget pg_stat_statements' counters: all, or those of a user, database or query id
    (a zero argument matches any)."""
    given = [c.compile_as(a, INT8) for a in args]

    def fn(f):
        values = [int(v(f).as_py() or 0) for v in given] + [0, 0, 0]
        database = f.ctx.services.database
        gather = getattr(database, "gather_statistics", None)
        if gather is not None:  # what other processes counted before the reset goes too
            gather()
        database.statement_stats.reset(*values[:3])
        return pa.scalar(None, pa.string())
    return Value(fn, SqlType("text"))


# reg* casts ----------------------------------------------------------------------------------------


def _type_oid_by_name(text: str) -> int | None:
    name = text.strip()
    array = name.endswith("[]")
    if array:
        name = name[:-2].strip()
    schema, base = O.split_qualified(name) if '"' in name or "." in name else (None, name.lower())
    if schema not in (None, "pg_catalog", "public"):
        return None
    base = re.sub(r"\(.*\)", "", base).strip()
    base = ALIASES.get(" ".join(base.split()), base)
    if base == '"char"' or base == "char" and '"' in text:
        base = "char"
    info = TYPES_BY_NAME.get(base)
    if info is None:
        for extra in O.EXTRA_TYPES:
            if extra.typname == base:
                info = extra
    if info is None:
        return None
    return info.array_oid if array else info.oid


def _reg_input(kind: str):
    """`x::regclass` etc.: names to OIDs (numbers pass through)."""
    out = SqlType(kind)

    def resolve(f, text: str) -> int | None:
        s = text.strip()
        if s.isdigit():
            return int(s)
        if s == "-":
            return 0
        model = objects(f)
        if kind == "regclass":
            rel = model.find_relation(s, _search_path(f))
            if rel is None:
                raise UndefinedTable(f'relation "{s}" does not exist')
            return rel.oid
        if kind == "regtype":
            oid = _type_oid_by_name(s)
            if oid is None:
                raise UndefinedObject(f'type "{s}" does not exist')
            return oid
        if kind in ("regproc", "regprocedure"):
            name = O.split_qualified(re.sub(r"\(.*\)$", "", s))[1]
            oid = F.proc_oids().get(name)
            if oid is not None:
                return oid
            raise UndefinedObject(f'function "{s}" does not exist', sqlstate="42883")
        if kind == "regnamespace":
            oid = model.nsp_by_name.get(O.split_qualified(s)[1])
            if oid is None:
                raise UndefinedObject(f'schema "{s}" does not exist', sqlstate="3F000")
            return oid
        if kind == "regrole":
            name = O.split_qualified(s)[1]
            if name not in model.state.get("roles", {}):
                raise UndefinedObject(f'role "{s}" does not exist')
            return model.role_oid(name)
        raise FeatureNotSupported(f"{kind} input is not supported")

    def compile_(c, value: Value) -> Value:
        if V.is_numeric(value.type) or value.type.name in ("regclass", "regtype", "regproc",
                                                           "regnamespace", "regrole",
                                                           "regprocedure"):
            return Value(lambda f: V.cast(value(f), value.type, INT8, f.n), out, value.const)
        text = c.coerce(value, TEXT) if value.type.name == "unknown" else value
        return _map([text], resolve, out)
    return compile_


def reg_name(kind: str, oid: int, model: O.CatalogObjects, search_path: list[str]) -> str:
    """What PostgreSQL's regclassout, regtypeout, … print for `oid`: the object's name,
    schema-qualified only when the search path would not find it; the number when no object
    has that OID; `-` for 0."""
    if oid == 0:
        return "-"
    if kind == "regclass":
        rel = model.relation(oid)
        if rel is None:
            return str(oid)
        if model.visible(rel, search_path):
            return O.quote_ident(rel.name)
        return f"{O.quote_ident(rel.schema)}.{O.quote_ident(rel.name)}"
    if kind == "regtype":
        return O.format_type(oid, -1) if O.type_name_of(oid) else str(oid)
    if kind in ("regproc", "regprocedure"):
        p = F.procs_by_oid().get(oid)
        if p is None:
            return str(oid)
        if kind == "regprocedure":
            return f"{p.name}({','.join(O.format_type(t, -1) for t in p.argtypes)})"
        return p.name
    if kind == "regnamespace":
        name = model.nsp_by_oid.get(oid)
        return O.quote_ident(name) if name else str(oid)
    if kind == "regrole":
        return model.role_name(oid) or str(oid)
    return str(oid)


def _reg_output(kind: str):
    """`regclass::text` etc.: OIDs to names, as PostgreSQL prints them."""
    def name_of(f, oid: int) -> str:
        return reg_name(kind, oid, objects(f), _search_path(f))

    def compile_(c, value: Value) -> Value:
        return _map([value], name_of, TEXT)
    return compile_


def _to_reg(kind: str):
    cast = _reg_input(kind)

    def compile_(c, args, e):
        text = c.compile_as(args[0], TEXT)
        inner = cast(c, text)

        def run(f):
            try:
                return inner(f)
            except SqlVecError:
                return pa.scalar(None, pa.int64())
        return Value(run, SqlType(kind))
    return compile_


# Expression forms ----------------------------------------------------------------------------------


def _bitwise(op: str):
    def compile_(c, e):
        a = c.compile(e.this)
        b = c.compile(e.expression) if e.args.get("expression") is not None else None
        if b is None:
            a = c.coerce(a, INT4) if a.type.name == "unknown" else a
            return Value(lambda f: pc.bit_wise_not(a(f)), a.type, a.const)
        if a.type.name == "unknown":
            a = c.coerce(a, b.type if V.is_numeric(b.type) else INT4)
        if b.type.name == "unknown":
            b = c.coerce(b, a.type)
        a, b, t = c.unify(a, b)
        fn = {"and": pc.bit_wise_and, "or": pc.bit_wise_or, "xor": pc.bit_wise_xor,
              "shl": pc.shift_left, "shr": pc.shift_right}[op]
        return Value(lambda f: fn(a(f), b(f)), t, a.const and b.const)
    return compile_


def _field_access(c, e: exp.Dot) -> Value:
    """`(record).field` / `(f(x)).n`."""
    inner = e.this.this if isinstance(e.this, exp.Paren) else e.this
    field = e.expression.name if isinstance(e.expression, (exp.Identifier, exp.Column)) else None
    if field is None:
        raise FeatureNotSupported(f"{e.sql()} is not supported")
    v = c.compile(inner)
    fields = record_fields(v.type)
    names = [n.lower() for n, _ in fields]
    if field.lower() not in names:
        if v.type.name != "record":
            raise SqlVecError(f"column notation .{field} applied to type {v.type.format()}, "
                              "which is not a composite type", sqlstate="42809")
        raise SqlVecError(f'could not identify column "{field}" in record data type',
                          sqlstate="42703")
    index = names.index(field.lower())
    t = fields[index][1]

    def run(f):
        x = v(f)
        if is_scalar(x):
            return x[fields[index][0]] if x.is_valid else pa.scalar(None, t.to_arrow())
        arr = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
        return pc.struct_field(arr, [index])
    return Value(run, t, v.const)


# Set-returning functions ---------------------------------------------------------------------------
#
# Each returns (Value giving one list per input row, element type). In a select list the
# ProjectSet operator expands the lists in lockstep; in FROM (table_functions.py) the same lists
# are produced for the single (outer) row, unless the declaration names a FROM form of its own.


def _srf_unnest(c, args):
    arr = _array_arg(c, args[0])
    if arr.type.is_vector:
        return Value(lambda f: V.cast(arr(f), arr.type, SqlType("float4").array_of(), f.n),
                     SqlType("float4").array_of()), SqlType("float4")
    if not arr.type.is_array:
        raise SqlVecError(f"function unnest({arr.type.format()}) does not exist", sqlstate="42883")
    return arr, arr.type.element


def _srf_subscripts(c, args):
    arr = _array_arg(c, args[0])
    dim = c.compile_as(args[1], INT4) if len(args) > 1 else _const(1, INT4)
    rev = c.compile_as(args[2], BOOL) if len(args) > 2 else _const(False, BOOL)

    def fn(f, items, d, r):
        if d != 1 or not items:
            return []
        out = list(range(1, len(items) + 1))
        return out[::-1] if r else out
    return _map([arr, dim, rev], fn, INT4.array_of()), INT4


def _srf_series(c, args):
    """generate_series in a select list: each input row's series built as in FROM
    (table_functions.py), one vectorized kernel call per row."""
    bounds, t, kernel = series_bounds(c, args)
    arrow = t.array_of().to_arrow()

    def run(f):
        values = [b(f) for b in bounds]
        if all(is_scalar(v) for v in values):
            items = kernel(f.ctx, *values) if all(v.is_valid for v in values) else None
            return pa.scalar(None if items is None else items.to_pylist(), arrow)
        columns = [as_array(v, f.n) for v in values]
        pieces, offsets = [], [0]
        for i in range(f.n):
            row = [col[i] for col in columns]
            items = kernel(f.ctx, *row) if all(v.is_valid for v in row) else None
            if items is not None:
                pieces.append(items)
            offsets.append(offsets[-1] + (0 if items is None else len(items)))
        flat = pa.concat_arrays(pieces) if pieces else pa.array([], t.to_arrow())
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat.cast(t.to_arrow()))
    return Value(run, t.array_of()), t


def _srf_expandarray(c, args):
    arr = _array_arg(c, args[0])
    elem = arr.type.element if arr.type.is_array else TEXT
    rec = record_type([("x", elem), ("n", INT4)])

    def fn(f, items):
        return [{"x": x, "n": i + 1} for i, x in enumerate(items)]
    return _map([arr], fn, rec.array_of()), rec


OPTION_RECORD = record_type([("option_name", TEXT), ("option_value", TEXT)])


def _srf_options(c, args):
    """pg_options_to_table(options): each `name=value` of a reloptions-style array."""
    arr = _array_arg(c, args[0])

    def fn(f, items):
        return [dict(zip(("option_name", "option_value"), (*item.split("=", 1), None)[:2]))
                for item in items if item is not None]
    return _map([arr], fn, OPTION_RECORD.array_of()), OPTION_RECORD


KEYWORDS_RECORD = record_type([("word", TEXT), ("catcode", SqlType("char")),
                               ("barelabel", BOOL), ("catdesc", TEXT), ("baredesc", TEXT)])


def _srf_keywords(c, args):
    rows = [{"word": w, "catcode": code, "barelabel": True, "catdesc": desc,
             "baredesc": "can be bare label"} for w, code, desc in O.keywords()]
    keywords = pa.scalar(rows, KEYWORDS_RECORD.array_of().to_arrow())
    return Value(lambda f: keywords, KEYWORDS_RECORD.array_of(), True), KEYWORDS_RECORD


def _srf_partition_ancestors(c, args):
    """pg_partition_ancestors(rel): a partition's ancestors; no table is partitioned here,
    so none (psql's \\d asks it for a table's foreign keys)."""
    regclass = SqlType("regclass")
    rel = c.compile(args[0])
    if rel.type.name == "unknown":  # a number is an OID, as `'16384'::regclass` reads it
        rel = c.compile(exp.Cast(this=args[0], to=exp.DataType.build("regclass",
                                                                      udt=True)))
    return _map([rel], lambda f, r: [], regclass.array_of()), regclass


def _srf_call(c, call: exp.Expression):
    """A set-returning call of a select list: (lists per input row, element type)."""
    if isinstance(call, exp.Dot):
        call = call.expression
    name, args = call_of(call)  # type: ignore[misc]
    return F.lookup(name).kernel(c, args)  # type: ignore[union-attr]


def build_project_set(builder, node, outer):
    """The ProjectSet operator: the child's rows, repeated and extended with SRF results."""
    child = builder.build(node.child, outer)
    c = builder.compiler(child.fields, child.types, outer)
    specs = [_srf_call(c, call) for call in node.functions]
    types = list(child.types) + [t for _, t in specs]
    fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]

    class ProjectSetOp(Operator):
        def __init__(self) -> None:
            self.fields, self.types, self.children = fields, types, [child]

        def run(self, ctx, outer_frame):
            table = child.execute(ctx, outer_frame)
            frame = Frame(table, ctx, outer_frame)
            n = table.num_rows
            lists = []
            for value, elem in specs:
                arr = as_array(value(frame), n)
                if isinstance(arr, pa.ChunkedArray):
                    arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
                lists.append((arr, elem))
            lengths = [np.asarray(pc.fill_null(pc.list_value_length(a), 0), dtype=np.int64)
                       if n else np.zeros(0, np.int64) for a, _ in lists]
            counts = np.maximum.reduce(lengths) if lengths else np.zeros(n, np.int64)
            rows = np.repeat(np.arange(n), counts)
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            pos = np.arange(len(rows)) - starts
            columns = [table.column(i).take(pa.array(rows, pa.int64()))
                       for i in range(table.num_columns)]
            for (arr, elem), length in zip(lists, lengths):
                offsets = np.asarray(arr.offsets, dtype=np.int64)[:-1] if n else \
                    np.zeros(0, np.int64)
                valid = pos < length[rows]
                index = pa.array(np.where(valid, offsets[rows] + pos, 0), pa.int64(),
                                 mask=~valid)
                values = arr.values
                columns.append(values.take(index) if len(values) else
                               pa.nulls(len(rows), elem.to_arrow()))
            return table_of(columns, len(rows))

    return ProjectSetOp()


def _escape(c, e) -> Value:
    """`x LIKE p ESCAPE 'c'` parsed as Escape(Like): move the escape into the pattern."""
    like = e.this
    if not isinstance(like, (exp.Like, exp.ILike)):
        raise FeatureNotSupported(f"{e.sql()} is not supported")
    rebuilt = like.copy()
    rebuilt.set("expression", exp.Escape(this=like.expression.copy(),
                                         expression=e.expression.copy()))
    return c.compile(rebuilt)


# Declarations ---------------------------------------------------------------------------------------
#
# Each function's names and pg_proc signatures (catalog/functions.py), with its kernel above.

_STABLE = {"volatility": "s"}


def _declare(names: str, *signatures: str, **options):
    return scalar(names, *signatures, **{**_STABLE, **options})


# Identity and settings.
_declare("version", "-> text")(_version)
_declare("current_schema", "-> name")(_session_value(_current_schema, NAME))
_declare("current_schemas", "bool -> name[]")(_current_schemas)
_declare("current_setting", "text -> text", "text, bool -> text")(_current_setting)
_declare("set_config", "text, text, bool -> text", volatility="v", strict=False)(_set_config)
_declare("current_query", "-> text", volatility="v", strict=False)(
    _session_value(lambda f: f.ctx.services.current_query, TEXT))
_declare("pg_postmaster_start_time", "-> timestamptz")(_session_value(
    lambda f: getattr(f.ctx.services.database, "started", None) or f.ctx.services.started,
    SqlType("timestamptz")))
_declare("pg_conf_load_time", "-> timestamptz")(
    _session_value(lambda f: f.ctx.services.started, SqlType("timestamptz")))
_declare("pg_is_in_recovery", "-> bool", volatility="v")(_session_value(lambda f: False, BOOL))
# PostgreSQL's inet_*_addr return inet, which is not a type here: text carries the same NULL.
_declare("inet_server_addr inet_client_addr", "-> text", strict=False)(
    _session_value(lambda f: None, TEXT))
_declare("inet_server_port inet_client_port", "-> int4", strict=False)(
    _session_value(lambda f: None, INT4))
_declare("pg_my_temp_schema", "-> oid")(_session_value(lambda f: 0, OID))
_declare("pg_is_other_temp_schema", "oid -> bool")(_false)
_declare("pg_jit_available", "-> bool", volatility="v")(_session_value(lambda f: False, BOOL))
# Visibility, names, definitions.
_declare("pg_table_is_visible", "oid -> bool")(_table_is_visible)
_declare("pg_type_is_visible", "oid -> bool")(_type_is_visible)
_declare("pg_function_is_visible", "oid -> bool")(_function_is_visible)
_declare("pg_collation_is_visible pg_opclass_is_visible pg_operator_is_visible "
         "pg_conversion_is_visible pg_ts_config_is_visible pg_statistics_obj_is_visible",
         "oid -> bool")(_always_visible)
_declare("format_type", "oid, int4 -> text", strict=False)(_format_type)
_declare("pg_get_userbyid", "oid -> name")(_get_userbyid)
_declare("pg_get_indexdef", "oid -> text", "oid, int4, bool -> text")(_get_indexdef)
_declare("pg_get_constraintdef", "oid -> text", "oid, bool -> text")(_get_constraintdef)
_declare("pg_get_expr", "pg_node_tree, oid -> text", "pg_node_tree, oid, bool -> text")(
    _get_expr)
_declare("pg_get_serial_sequence", "text, text -> text")(_get_serial_sequence)
_declare("pg_get_function_result", "oid -> text")(_function_result)
_declare("pg_get_function_arguments", "oid -> text")(_function_arguments(False))
_declare("pg_get_function_identity_arguments", "oid -> text")(_function_arguments(True))
_declare("pg_get_triggerdef pg_get_ruledef", "oid -> text", "oid, bool -> text")(_null_text)
_declare("pg_get_viewdef", "oid -> text", "oid, bool -> text", "text -> text",
         "text, bool -> text")(_get_viewdef)
_declare("pg_get_partkeydef pg_get_statisticsobjdef_columns pg_get_functiondef "
         "pg_get_function_sqlbody pg_tablespace_location", "oid -> text")(_null_text)
_declare("pg_describe_object", "oid, oid, int4 -> text")(_null_text)
_declare("pg_relation_is_publishable", "regclass -> bool")(_false)
_declare("obj_description", "oid -> text", "oid, name -> text")(_obj_description)
_declare("col_description", "oid, int4 -> text")(_col_description)
_declare("shobj_description", "oid, name -> text")(_shobj_description)
_declare("pg_encoding_to_char", "int4 -> name")(_encoding_to_char)
_declare("pg_stat_get_numscans", "oid -> int8")(_zero)
# Privileges: all granted.
_declare("acldefault", "char, oid -> text[]", volatility="i")(_no_acl)
_PRIVILEGE_SIGNATURES = ("name, text, text -> bool", "name, oid, text -> bool",
                         "oid, text, text -> bool", "oid, oid, text -> bool",
                         "text, text -> bool", "oid, text -> bool")
for _kind in ("schema", "table", "database", "any_column", "sequence", "function",
              "tablespace", "type", "language", "foreign_data_wrapper", "server"):
    _declare(f"has_{_kind}_privilege", *_PRIVILEGE_SIGNATURES)(_true())
_declare("has_column_privilege", *(f"{who}{table}{column}, text -> bool"
                                   for who in ("name, ", "oid, ", "")
                                   for table in ("text, ", "oid, ")
                                   for column in ("text", "int2")))(_true())
_declare("pg_has_role", "name, name, text -> bool", "name, oid, text -> bool",
         "oid, name, text -> bool", "oid, oid, text -> bool", "name, text -> bool",
         "oid, text -> bool")(_true())
# Sizes.
_declare("pg_relation_size", "regclass -> int8", "regclass, text -> int8", volatility="v")(
    _size_function("table"))
_declare("pg_table_size", "regclass -> int8", volatility="v")(_size_function("table"))
_declare("pg_total_relation_size", "regclass -> int8", volatility="v")(_size_function("total"))
_declare("pg_indexes_size", "regclass -> int8", volatility="v")(_size_function("indexes"))
_declare("pg_database_size", "name -> int8", "oid -> int8", volatility="v")(_database_size)
scalar("pg_size_pretty", "int8 -> text", "numeric -> text")(_size_pretty)
# Strings, arrays, json.
scalar("quote_ident", "text -> text")(_quote_ident)
scalar("quote_literal", "text -> text", "anyelement -> text [stable]")(_quote_literal(False))
scalar("quote_nullable", "text -> text", "anyelement -> text [stable]", strict=False)(
    _quote_literal(True))
_declare("array_to_string", "anyarray, text -> text", "anyarray, text, text -> text [not strict]")(
    _array_to_string)
scalar("string_to_array", "text, text -> text[]", "text, text, text -> text[]", strict=False)(
    _string_to_array)
scalar("array_upper array_lower array_length", "anyarray, int4 -> int4")(_array_bound)
scalar("cardinality", "anyarray -> int4")(_cardinality)
scalar("array_remove", "anycompatiblearray, anycompatible -> anycompatiblearray",
       strict=False)(_array_remove)
scalar("array_cat", "anycompatiblearray, anycompatiblearray -> anycompatiblearray",
       strict=False)(_array_cat)
_declare("json_build_object", "-> json", "variadic any -> json", strict=False)(
    _json_build_object)
_declare("jsonb_build_object", "-> jsonb", "variadic any -> jsonb", strict=False)(
    _json_build_object)
_declare("json_build_array", "-> json", "variadic any -> json", strict=False)(_json_build_array)
# Transactions and backends.
# PostgreSQL's pg_current_xact_id returns xid8, and pg_sleep void: neither is a type here.
_declare("txid_current txid_current_if_assigned pg_current_xact_id", "-> int8")(_txid_current)
_declare("pg_sleep", "float8 -> text", volatility="v")(_pg_sleep)
# pg_stat_statements' reset, in the extension's schema (public) as the extension installs it
# (PostgreSQL 16's returns void, not a type here: NULL text).
_declare("pg_stat_statements_reset", "userid oid = 0, dbid oid = 0, queryid int8 = 0 -> text",
         volatility="v", extension="pg_stat_statements")(_pg_stat_statements_reset)
_declare("pg_cancel_backend", "int4 -> bool", volatility="v")(_signal_backend(False))
_declare("pg_blocking_pids", "int4 -> int4[]", volatility="v")(_blocking_pids)
_declare("pg_terminate_backend", "pid int4, timeout int8 = 0 -> bool", volatility="v")(
    _signal_backend(True))
# reg* conversions.
for _kind in ("regclass", "regtype", "regproc", "regprocedure", "regnamespace", "regrole"):
    _declare(f"to_{_kind}", f"text -> {_kind}")(_to_reg(_kind))
# Set-returning functions of a select list (their FROM form: table_functions.py).
set_returning("unnest", "anyarray -> setof anyelement", table=unnest_table)(_srf_unnest)
set_returning("generate_subscripts", "anyarray, int4 -> setof int4",
              "anyarray, int4, bool -> setof int4")(_srf_subscripts)
set_returning("generate_series", "int4, int4 -> setof int4", "int4, int4, int4 -> setof int4",
              "int8, int8 -> setof int8", "int8, int8, int8 -> setof int8",
              "numeric, numeric -> setof numeric", "numeric, numeric, numeric -> setof numeric",
              "timestamp, timestamp, interval -> setof timestamp",
              "timestamptz, timestamptz, interval -> setof timestamptz [stable]",
              table=series_table)(_srf_series)
set_returning("_pg_expandarray", "anyarray -> setof record(x anyelement, n int4)",
              schema="information_schema")(_srf_expandarray)
set_returning("pg_options_to_table", "text[] -> setof record(option_name text, "
              "option_value text)", volatility="s")(_srf_options)
set_returning("pg_partition_ancestors", "partitionid regclass -> setof record(relid regclass)",
              volatility="v")(_srf_partition_ancestors)
set_returning("pg_get_keywords", "-> setof record(word text, catcode char, barelabel bool, "
              "catdesc text, baredesc text)", volatility="s")(_srf_keywords)


def compile_extensions() -> dict:
    """Operator forms and reg* casts the compiler looks up by key (CompileEnv.functions):
    `expr:<sqlglot class>` for operators catalog queries use, `::<regtype>` for casts to reg*
    types, `<regtype>::text` for their output."""
    out = {
        "expr:BitwiseAnd": _bitwise("and"),
        "expr:BitwiseOr": _bitwise("or"),
        "expr:BitwiseXor": _bitwise("xor"),
        "expr:BitwiseNot": _bitwise("not"),
        "expr:BitwiseLeftShift": _bitwise("shl"),
        "expr:BitwiseRightShift": _bitwise("shr"),
        "expr:Dot": _field_access,
        "expr:Escape": _escape,
        "expr:ArrayConcat": _array_concat,
    }
    for kind in REG_TYPES:
        out[f"::{kind}"] = _reg_input(kind)
        out[f"{kind}::text"] = _reg_output(kind)
    return out


__all__ = ["compile_extensions", "build_project_set", "size_pretty", "quote_literal", "INT2",
           "reg_name", "relation_size", "objects"]
