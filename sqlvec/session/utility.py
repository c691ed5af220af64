"""Utility statements, run through one handler table keyed by `UtilityKind`.

    HANDLERS[kind](session, utility, prepared, params) -> Result

A new utility statement is a `UtilityKind` and its pattern in `sql/utility.py`, plus one
handler here (or in the module of its family: transactions.py, cursors.py). EXPLAIN is the one
kind without a handler: it is planned as a statement of its own (`StatementKind.EXPLAIN`).
`tests/sqlvec/session/test_utility.py` checks that every other kind has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.catalog.server_config import check_alter_system
from sqlvec.catalog.settings import CANONICAL, SETTINGS
from sqlvec.errors import (
    FeatureNotSupported,
    Notice,
    SqlVecError,
    UndefinedObject,
)
from sqlvec.execution import foreign_keys
from sqlvec.execution.ddl import skipping_notice
from sqlvec.execution.transaction import Transaction
from sqlvec.session import cursors, transactions
from sqlvec.session.prepare import SHOW_ALIASES
from sqlvec.session.results import PreparedStatement, Result
from sqlvec.sql.dialect import parse_one
from sqlvec.sql.utility import Utility, UtilityKind, setting_value, split_arguments

if TYPE_CHECKING:
    from sqlvec.session.core import Session

Handler = Callable[["Session", Utility, PreparedStatement, list], Result]


def run_utility(session: Session, prepared: PreparedStatement, params: list,
                max_rows: int) -> Result:
    """Run a utility statement (SET, SHOW, transaction control, cursors, ...) by its handler; a kind
    without one is 0A000."""
    u = prepared.utility
    assert u is not None
    handler = HANDLERS.get(u.kind)
    if handler is None:
        raise FeatureNotSupported(f"{u.kind.value} is not supported")
    return handler(session, u, prepared, params)


# Settings -----------------------------------------------------------------------------------------


def _set(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    if u.name == "transaction":
        # Snapshots are the statement's at any level; REPEATABLE READ and SERIALIZABLE differ
        # in failing with 40001 on a row a concurrent commit changed (row_locks.py).
        if session.lock_holder is not None:
            session.lock_holder.repeatable = transactions.is_repeatable(u.value or "")
        return Result("SET")
    value = setting_value(u.value or "")
    name = {"time zone": "TimeZone", "names": "client_encoding"}.get(u.name or "", u.name or "")
    if u.local:
        return Result("SET", notices=session.set_local(
            name, None if value.upper() == "DEFAULT" else value))
    if value.upper() == "DEFAULT":
        session.reset(name)
    else:
        session.set(name, value)
    return Result("SET")


def _alter_system(session: Session, u: Utility, prepared: PreparedStatement,
                  params: list) -> Result:
    """ALTER SYSTEM SET / RESET: rewrite sqlvec.auto.conf (superusers, outside a transaction
    block, as PostgreSQL); sessions see it after pg_reload_conf() or a restart."""
    transactions.refuse_in_block(session, "ALTER SYSTEM")
    if not session.database.is_superuser(session.user):
        what = f'parameter "{u.name}"' if u.name else "all parameters"
        raise SqlVecError(f"permission denied to set {what}", sqlstate="42501")
    value = setting_value(u.value) if u.value is not None else None
    if u.name is not None:
        check_alter_system(u.name)
        if value is not None and value.upper() == "DEFAULT":
            value = None
    session.database.config.alter_system(u.name, value)
    return Result("ALTER SYSTEM")


def _reset(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    session.reset({"time zone": "TimeZone"}.get(u.name or "", u.name or ""))
    return Result("RESET")


def _show(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    name = u.name or ""
    if name == "all":
        names = sorted(session.settings)
        table = pa.table({"name": names, "setting": [session.settings[n] for n in names],
                          "description": [SETTINGS[n].description if n in SETTINGS else ""
                                          for n in names]})
        return Result("SHOW", prepared.columns, table)
    key = SHOW_ALIASES.get(name, name)
    key = CANONICAL.get(key.lower(), key)
    if key not in session.settings:
        raise UndefinedObject(f'unrecognized configuration parameter "{name}"')
    table = pa.table({prepared.columns[0].name: [session.settings[key]]})  # type: ignore[index]
    return Result("SHOW", prepared.columns, table)


def _discard(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    transactions.refuse_in_block(session, "DISCARD ALL")
    session.prepared.clear()
    session._plan_cache.clear()
    session.reset("all")
    if u.name in ("all", "sequences"):
        session.discard_sequences()
    if u.name == "all":
        if session.on_discard_all is not None:
            session.on_discard_all()  # the front end's statements and portals
        return Result("DISCARD ALL")
    return Result(f"DISCARD {(u.name or '').upper()}")


# PREPARE, EXECUTE, DEALLOCATE -----------------------------------------------------------------


def _prepare(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    name = u.name or ""
    if name in session.prepared:
        raise SqlVecError(f'prepared statement "{name}" already exists', sqlstate="42P05")
    from sqlvec.sql.binder import sql_type

    oids = []
    for spelling in u.options:
        t = sql_type(parse_one(f"SELECT CAST(NULL AS {spelling})").expressions[0].args["to"])
        oids.append(t.oid)
    body = u.body or ""
    try:
        session.prepared[name] = session.prepare(body, oids)
    except SqlVecError as error:  # positions count from the start of PREPARE's own text
        offset = prepared.sql.rfind(body) if body else -1
        if error.position is not None and offset > 0:
            error.position += offset
        raise
    return Result("PREPARE")


def _execute(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    stmt = session.prepared.get(u.name or "")
    if stmt is None:
        raise UndefinedObject(f'prepared statement "{u.name}" does not exist', sqlstate="26000")
    args = split_arguments(u.body) if u.body else []
    if len(args) != len(stmt.param_types):
        raise SqlVecError(f"wrong number of parameters for prepared statement \"{u.name}\"",
                          sqlstate="42601",
                          detail=f"Expected {len(stmt.param_types)} parameters but got {len(args)}.")
    values = []
    for text, t in zip(args, stmt.param_types):
        r = session.execute_one(f"SELECT CAST({text} AS {t.format()})")
        values.append(r.rows()[0][0])
    if not session.plan_is_current(stmt):
        # Planned again after a catalog change, as PostgreSQL re-plans after DDL; a result of
        # another shape is refused as there (plancache.c).
        again = session.prepare(stmt.sql, list(stmt.given_oids))
        if [(c.name, c.type) for c in again.columns or []] != \
                [(c.name, c.type) for c in stmt.columns or []]:
            raise FeatureNotSupported("cached plan must not change result type")
        session.prepared[u.name or ""] = stmt = again
    return session.run(stmt, values)


def _deallocate(session: Session, u: Utility, prepared: PreparedStatement,
                params: list) -> Result:
    """DEALLOCATE name | ALL: SQL-level statements and the front end's protocol-level ones
    share one namespace, as in PostgreSQL."""
    hook = session.on_deallocate
    if u.name == "all":
        session.prepared.clear()
        if hook is not None:
            hook(None)
        return Result("DEALLOCATE ALL")
    if hook is not None and hook(u.name):
        return Result("DEALLOCATE")
    if session.prepared.pop(u.name or "", None) is None:
        raise UndefinedObject(f'prepared statement "{u.name}" does not exist',
                              sqlstate="26000")
    return Result("DEALLOCATE")


# Extensions and maintenance ---------------------------------------------------------------------


def _create_extension(session: Session, u: Utility, prepared: PreparedStatement,
                      params: list) -> Result:
    exists = u.name in session.catalog.state.get("extensions", {})
    if session.explicit:
        session.open_schema_changes()
    session.catalog.create_extension(u.name, if_not_exists=u.local)
    # PostgreSQL's IF NOT EXISTS notice (extension.c): 42710, duplicate object.
    notices = [Notice.notice(f'extension "{u.name}" already exists, skipping', "42710")] \
        if exists else []
    return Result("CREATE EXTENSION", notices=notices)


def _drop_extension(session: Session, u: Utility, prepared: PreparedStatement,
                    params: list) -> Result:
    exists = u.name in session.catalog.state.get("extensions", {})
    if session.explicit:
        session.open_schema_changes()
    session.catalog.drop_extension(u.name, if_exists=u.local)
    notices = [] if exists else [skipping_notice("extension", u.name or "")]
    return Result("DROP EXTENSION", notices=notices)


def _checkpoint(session: Session, u: Utility, prepared: PreparedStatement,
                params: list) -> Result:
    session.store.checkpoint()
    return Result("CHECKPOINT")


# Modes that conflict only with ACCESS EXCLUSIVE (DDL): a statement here always reads one
# consistent snapshot and DDL waits for no one, so holding them changes nothing.
_SHARED_LOCK_MODES = ("ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE")


def _lock(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """LOCK TABLE: the weak modes pg_dump and applications take are granted at once (after
    the tables are checked to exist); stronger modes are refused."""
    if not session.in_block:
        raise SqlVecError("LOCK TABLE can only be used in transaction blocks", sqlstate="25P01")
    if u.value not in _SHARED_LOCK_MODES:
        raise FeatureNotSupported(f"LOCK TABLE … IN {u.value} MODE is not supported")
    for name in u.options:
        session.prepare(f"SELECT 1 FROM {name} LIMIT 0")  # 42P01 for a missing table
    return Result("LOCK TABLE")


def _set_constraints(session: Session, u: Utility, prepared: PreparedStatement,
                     params: list) -> Result:
    """SET CONSTRAINTS {ALL | name, ...} {DEFERRED | IMMEDIATE}: for the rest of the
    transaction block (outside one, PostgreSQL's warning and nothing else)."""
    names = [] if [n.lower() for n in u.options] == ["all"] else list(u.options)
    if not session.in_block or session.txn is None:
        # The names are still looked up (42704, 42809), as PostgreSQL does after its warning.
        foreign_keys.set_constraints(session.store, Transaction(), names, True)
        return Result("SET CONSTRAINTS", notices=[Notice.warning(
            "SET CONSTRAINTS can only be used in transaction blocks", "25P01")])
    foreign_keys.set_constraints(session.store, session.txn, names, u.value == "DEFERRED")
    return Result("SET CONSTRAINTS")


def _accepted(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """VACUUM, ANALYZE and UNLISTEN have nothing to do: the store keeps its own statistics
    and compacts in the background, and a session never listens (LISTEN is refused)."""
    return Result(u.kind.value.upper())


def _vacuum(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """VACUUM: nothing to do (see `_accepted`), but refused in a transaction block as in
    PostgreSQL (25001)."""
    transactions.refuse_in_block(session, "VACUUM")
    return _accepted(session, u, prepared, params)


def _listen(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    raise FeatureNotSupported("LISTEN/NOTIFY is not supported")


K = UtilityKind

HANDLERS: dict[UtilityKind, Handler] = {
    K.BEGIN: transactions.begin,
    K.COMMIT: transactions.commit,
    K.ROLLBACK: transactions.rollback,
    K.SAVEPOINT: transactions.savepoint,
    K.RELEASE: transactions.release,
    K.ROLLBACK_TO: transactions.rollback_to,
    K.DECLARE: cursors.declare,
    K.FETCH: cursors.fetch,
    K.CLOSE: cursors.close,
    K.SET: _set,
    K.RESET: _reset,
    K.ALTER_SYSTEM: _alter_system,
    K.SHOW: _show,
    K.DISCARD: _discard,
    K.PREPARE: _prepare,
    K.EXECUTE: _execute,
    K.DEALLOCATE: _deallocate,
    K.CREATE_EXTENSION: _create_extension,
    K.DROP_EXTENSION: _drop_extension,
    K.CHECKPOINT: _checkpoint,
    K.LOCK: _lock,
    K.SET_CONSTRAINTS: _set_constraints,
    K.VACUUM: _vacuum,
    K.ANALYZE: _accepted,
    K.UNLISTEN: _accepted,
    K.LISTEN: _listen,
}
