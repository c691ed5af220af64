"""Functions that read session or catalog state: sequences, settings, identity.

They are compiled like any named function, but read their state at run time from the
statement's context (`frame.ctx.services` is the session), so plans stay cacheable.
"""

from __future__ import annotations

import pyarrow as pa

from sqlvec.execution.values import BOOL, INT4, INT8, TEXT, Value, as_array, is_scalar
from sqlvec.types import SqlType


def _text_arg(c, e):
    """A relation given as text or as regclass (an OID): the text form for lookups."""
    v = c.compile(e)
    if v.type.name in ("regclass", "oid"):
        def fn(f):
            oid = v(f)
            name = f.ctx.services.relation_name(oid.as_py()) if oid.is_valid else None
            return pa.scalar(name, pa.string())
        return Value(fn, TEXT)
    return c.coerce(v, TEXT) if v.type.name == "unknown" else v


def _to_regclass(c, value: Value) -> Value:
    """`'name'::regclass`: the OID of a relation, looked up along the search path."""
    if value.type.name in ("oid", "regclass", "int4", "int8"):
        return Value(value.fn, SqlType("regclass"), value.const)
    text = c.coerce(value, TEXT) if value.type.name == "unknown" else value

    def fn(f):
        name = text(f)
        if is_scalar(name):
            if not name.is_valid:
                return pa.scalar(None, pa.int64())
            return pa.scalar(f.ctx.services.relation_oid(name.as_py()), pa.int64())
        return pa.array([None if x is None else f.ctx.services.relation_oid(x)
                         for x in name.to_pylist()], pa.int64())
    return Value(fn, SqlType("regclass"))


def _nextval(c, args, e):
    name = _text_arg(c, args[0])

    def fn(f):
        seq = name(f)
        if not is_scalar(seq):  # a sequence name per row: one value from each row's sequence
            return pa.array([None if s is None else f.ctx.services.nextval(str(s))[0]
                             for s in seq.to_pylist()], pa.int64())
        if not seq.is_valid:
            return pa.scalar(None, pa.int64())
        values = f.ctx.services.nextval(str(seq.as_py()), max(f.n, 1))
        return pa.array(values, pa.int64()) if f.n > 1 else pa.scalar(values[0], pa.int64())
    return Value(fn, INT8)


def _currval(c, args, e):
    name = _text_arg(c, args[0])

    def fn(f):
        from sqlvec.errors import SqlVecError

        session = f.ctx.services
        key = str(name(f).as_py())
        values = getattr(session, "last_sequence_values", {})
        for k, v in values.items():
            if k == key or k.endswith("." + key):
                return pa.scalar(v, pa.int64())
        raise SqlVecError(f'currval of sequence "{key}" is not yet defined in this session',
                          sqlstate="55000")
    return Value(fn, INT8)


def _setval(c, args, e):
    name = _text_arg(c, args[0])
    value = c.compile_as(args[1], INT8)
    called = c.compile_as(args[2], BOOL) if len(args) > 2 else None

    def fn(f):
        session = f.ctx.services
        key = str(name(f).as_py())
        full = key if "." in key else f"{session.catalog.creation_schema(None, session.search_path)}.{key}"
        v = value(f).as_py()
        session.catalog.setval(full, v, True if called is None else called(f).as_py())
        return pa.scalar(v, pa.int64())
    return Value(fn, INT8)


def _const_text(getter):
    def compile_(c, args, e):
        return Value(lambda f: pa.scalar(getter(f.ctx.services), pa.string()), SqlType("name"))
    return compile_


def _version(c, args, e):
    from sqlvec.catalog.settings import VERSION_TEXT

    return Value(lambda f: pa.scalar(VERSION_TEXT), TEXT, True)


def _current_setting(c, args, e):
    name = c.compile_as(args[0], TEXT)
    missing_ok = c.compile_as(args[1], BOOL) if len(args) > 1 else None

    def fn(f):
        from sqlvec.catalog.settings import CANONICAL as _CANONICAL
        from sqlvec.errors import UndefinedObject

        session = f.ctx.services
        key = name(f).as_py()
        canon = _CANONICAL.get(key.lower(), key)
        if canon not in session.settings:
            if missing_ok is not None and missing_ok(f).as_py():
                return pa.scalar(None, pa.string())
            raise UndefinedObject(f'unrecognized configuration parameter "{key}"')
        return pa.scalar(session.settings[canon], pa.string())
    return Value(fn, TEXT)


def _set_config(c, args, e):
    name = c.compile_as(args[0], TEXT)
    value = c.compile_as(args[1], TEXT)

    def fn(f):
        session = f.ctx.services
        session.set(name(f).as_py(), value(f).as_py())
        return pa.scalar(value(f).as_py(), pa.string())
    return Value(fn, TEXT)


def _pg_backend_pid(c, args, e):
    return Value(lambda f: pa.scalar(f.ctx.services.pid, pa.int32()), INT4)


def _pg_advisory_unlock_all(c, args, e):
    # Advisory locks cannot be taken here, so there is never one to release. PostgreSQL's
    # result is void, printed as an empty string; text carries the same value to clients.
    return Value(lambda f: pa.scalar("", pa.string()), TEXT)


def session_functions() -> dict:
    from sqlvec.execution.catalog_functions import catalog_functions

    return {
        "::regclass": _to_regclass,
        "nextval": _nextval,
        "currval": _currval,
        "setval": _setval,
        "current_database": _const_text(lambda s: s.database_name),
        "current_catalog": _const_text(lambda s: s.database_name),
        "current_user": _const_text(lambda s: s.user),
        "session_user": _const_text(lambda s: s.user),
        "user": _const_text(lambda s: s.user),
        "current_role": _const_text(lambda s: s.user),
        "current_schema": _const_text(lambda s: next(
            (p for p in s.search_path if s.catalog.has_schema(p)), None)),
        "version": _version,
        "current_setting": _current_setting,
        "set_config": _set_config,
        "pg_backend_pid": _pg_backend_pid,
        "pg_advisory_unlock_all": _pg_advisory_unlock_all,
        **catalog_functions(),
    }


__all__ = ["session_functions", "as_array"]
