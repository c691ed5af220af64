"""Functions that read session state: sequences, identity, the backend.

They are declared and compiled like any function (catalog/functions.py), but read their state at
run time from the statement's context (`frame.ctx.services` is the session), so plans stay
cacheable.
"""

from __future__ import annotations

import pyarrow as pa

from sqlvec.catalog.functions import scalar
from sqlvec.errors import Notice
from sqlvec.execution.expressions.calls import undefined_call
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


def regclass_of(c, value: Value) -> Value:
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


@scalar("nextval", "regclass -> int8", volatility="v")
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


@scalar("currval", "regclass -> int8", volatility="v")
def _currval(c, args, e):
    name = _text_arg(c, args[0])

    def fn(f):
        return pa.scalar(f.ctx.services.currval(str(name(f).as_py())), pa.int64())
    return Value(fn, INT8)


@scalar("lastval", "-> int8", volatility="v")
def _lastval(c, args, e):
    if args:
        raise undefined_call(c, "lastval", args)
    return Value(lambda f: pa.scalar(f.ctx.services.lastval(), pa.int64()), INT8)


@scalar("setval", "regclass, int8 -> int8", "regclass, int8, bool -> int8", volatility="v")
def _setval(c, args, e):
    name = _text_arg(c, args[0])
    value = c.compile_as(args[1], INT8)
    called = c.compile_as(args[2], BOOL) if len(args) > 2 else None

    def fn(f):
        session = f.ctx.services
        key = str(name(f).as_py())
        full = key if "." in key else f"{session.catalog.creation_schema(None, session.search_path)}.{key}"
        v = value(f).as_py()
        is_called = True if called is None else called(f).as_py()
        session.catalog.setval(full, v, is_called)
        oid = session.catalog.sequence(full)["oid"]
        session.sequence_caches.pop(oid, None)  # as PostgreSQL, its values cached go
        if is_called:  # currval() (and lastval() of this sequence) is the value set
            session.last_sequence_values[oid] = v
        return pa.scalar(v, pa.int64())
    return Value(fn, INT8)


def _const_text(getter):
    def compile_(c, args, e):
        return Value(lambda f: pa.scalar(getter(f.ctx.services), pa.string()), SqlType("name"))
    return compile_


@scalar("pg_backend_pid", "-> int4", volatility="s")
def _pg_backend_pid(c, args, e):
    return Value(lambda f: pa.scalar(f.ctx.services.pid, pa.int32()), INT4)


@scalar("pg_reload_conf", "-> bool", volatility="v")
def _pg_reload_conf(c, args, e):
    # Reads the configuration files again; sessions apply them before their next statement.
    return Value(lambda f: pa.scalar(f.ctx.services.reload_config(), pa.bool_()), BOOL)


scalar("current_database", "-> name", volatility="s")(_const_text(lambda s: s.database_name))
scalar("current_catalog", keyword=True, volatility="s")(_const_text(lambda s: s.database_name))
scalar("current_user session_user", "-> name", volatility="s")(_const_text(lambda s: s.user))
scalar("user current_role", keyword=True, volatility="s")(_const_text(lambda s: s.user))


# Advisory locks (held by the session: session/advisory_locks.py) ----------------------------------

# PostgreSQL's message when pg_advisory_unlock finds no hold of the session's (lock.c).
NOT_HELD = "you don't own a lock of type ExclusiveLock"


def _advisory_key(c, args) -> list[Value]:
    """The key arguments: one bigint, or two integers (a key space of its own)."""
    if len(args) == 1:
        return [c.compile_as(args[0], INT8)]
    return [c.compile_as(args[0], INT4), c.compile_as(args[1], INT4)]


def _per_row(keys: list[Value], out: SqlType, fn):
    """`fn(frame, key)` for each row's key, in row order (each call takes or drops one hold)."""
    arrow = out.to_arrow()

    def run(f):
        vals = [k(f) for k in keys]
        if all(is_scalar(v) for v in vals):
            py = [v.as_py() for v in vals]
            if any(p is None for p in py):
                return pa.scalar(None, arrow)
            return pa.scalar(fn(f, tuple(py)), arrow)
        cols = [as_array(v, f.n).to_pylist() for v in vals]
        return pa.array([None if any(p is None for p in row) else fn(f, tuple(row))
                         for row in zip(*cols)], arrow)
    return Value(run, out)


def _advisory_lock(xact: bool, wait: bool):
    out = TEXT if wait else BOOL  # PostgreSQL's void (printed empty) where it waits

    def compile_(c, args, e):
        def fn(f, key):
            got = f.ctx.services.advisory_lock(key, xact=xact, wait=wait,
                                               check_interrupts=f.ctx.check_interrupts)
            return "" if wait else got
        return _per_row(_advisory_key(c, args), out, fn)
    return compile_


def _advisory_unlock(c, args, e):
    def fn(f, key):
        if f.ctx.services.advisory_unlock(key):
            return True
        f.ctx.services.notice(Notice.warning(NOT_HELD))
        return False
    return _per_row(_advisory_key(c, args), BOOL, fn)


def _advisory_unlock_all(c, args, e):
    def fn(f):
        f.ctx.services.advisory_unlock(None)
        return pa.scalar("", pa.string())
    return Value(fn, TEXT)


_KEYS = ("int8 -> {0}", "int4, int4 -> {0}")
for _name, _xact, _wait in (("pg_advisory_lock", False, True),
                            ("pg_advisory_xact_lock", True, True),
                            ("pg_try_advisory_lock", False, False),
                            ("pg_try_advisory_xact_lock", True, False)):
    scalar(_name, *(k.format("text" if _wait else "bool") for k in _KEYS),
           volatility="v")(_advisory_lock(_xact, _wait))
scalar("pg_advisory_unlock", *(k.format("bool") for k in _KEYS), volatility="v")(
    _advisory_unlock)
scalar("pg_advisory_unlock_all", "-> text", volatility="v")(_advisory_unlock_all)

__all__ = ["regclass_of"]

