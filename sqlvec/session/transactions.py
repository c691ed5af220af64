"""Transaction blocks and savepoints: BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
ROLLBACK TO.

A block buffers its writes in one `Transaction` (execution/transaction.py) and commits them as
one WAL record at COMMIT. A savepoint is a copy of the buffered writes as they were; ROLLBACK
TO puts that copy back.

DDL in a block is transactional, as in PostgreSQL: its first DDL statement takes the database's
DDL lock (ddl_lock.py) and opens the store's deferred schema changes (`Store.begin_deferred`),
made in memory and written to no manifest; COMMIT writes them with the block's writes as one
manifest version, ROLLBACK (or COMMIT of a failed block, or the session's end) puts the
state from before them back, and ROLLBACK TO SAVEPOINT the state the savepoint saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlvec.errors import Notice, SqlVecError
from sqlvec.execution.foreign_keys import check_deferred
from sqlvec.execution.transaction import TableOverlay, Transaction
from sqlvec.session.results import PreparedStatement, Result
from sqlvec.sql.utility import Utility

if TYPE_CHECKING:
    from sqlvec.session.core import Session

# PostgreSQL's warnings for transaction control out of place (xact.c).
ALREADY_IN_PROGRESS = Notice.warning("there is already a transaction in progress", "25001")
NOT_IN_PROGRESS = Notice.warning("there is no transaction in progress", "25P01")


def begin(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """BEGIN: starts an explicit transaction; inside one it only warns, as PostgreSQL does."""
    if session.explicit:
        return Result("BEGIN", notices=[ALREADY_IN_PROGRESS])
    session.explicit = True
    session.txn = Transaction()
    return Result("BEGIN")


def commit(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """COMMIT (END); in a failed block it rolls back, as PostgreSQL's does."""
    if not session.explicit:
        return Result("COMMIT", notices=[NOT_IN_PROGRESS])
    failed = session.failed
    txn = session.txn
    session.explicit, session.failed, session.txn = False, False, None
    end_of_block(session, failed)
    if session.ddl_open:
        session.close_schema_changes(None if failed else txn.ops() if txn is not None else [])
        return Result("ROLLBACK" if failed else "COMMIT")
    if failed:
        return Result("ROLLBACK")
    if txn is not None and txn.deferred_checks:
        check_deferred(session.store, txn)  # 23503 here: the block is rolled back
    if txn is not None and not txn.empty:
        session.store.commit(txn.ops())
    return Result("COMMIT")


def rollback(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """ROLLBACK: drops the transaction's writes and undoes its schema changes."""
    if not session.explicit:
        return Result("ROLLBACK", notices=[NOT_IN_PROGRESS])
    session.explicit, session.failed, session.txn = False, False, None
    end_of_block(session, True)
    session.close_schema_changes(None)
    return Result("ROLLBACK")


def savepoint(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """SAVEPOINT: remembers the transaction's state to return to; outside a transaction block it is
    25P01."""
    if not session.explicit:
        raise SqlVecError("SAVEPOINT can only be used in transaction blocks", sqlstate="25P01")
    schema = session.store.image() if session.ddl_open else None
    session.savepoints.append((u.name or "", _txn_state(session.txn), schema))
    return Result("SAVEPOINT")


def release(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """RELEASE SAVEPOINT: forgets the savepoint and those after it, keeping their changes."""
    del session.savepoints[_savepoint_index(session, u.name or ""):]
    return Result("RELEASE")


def rollback_to(session: Session, u: Utility, prepared: PreparedStatement,
                params: list) -> Result:
    """ROLLBACK TO SAVEPOINT: the block's buffered writes as they were at the savepoint."""
    if not session.explicit:
        raise SqlVecError("ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
                          sqlstate="25P01")
    i = _savepoint_index(session, u.name or "")
    if session.ddl_open:  # the schema as the savepoint saw it (None: before any change)
        session.store.restore(session.savepoints[i][2])
        session._plan_cache.clear()
    session.txn = _txn_restore(session.txn, session.savepoints[i][1])
    del session.savepoints[i + 1:]
    session.failed = False
    return Result("ROLLBACK")


def end_of_block(session: Session, aborted: bool) -> None:
    """Transaction end: cursors without HOLD close (and all cursors declared in an aborted
    block, which this simplification treats alike); savepoints go."""
    session.cursors = {k: c for k, c in session.cursors.items() if c.hold and not
                       (aborted and not c.hold)}
    session.savepoints = []


def _savepoint_index(session: Session, name: str) -> int:
    for i in range(len(session.savepoints) - 1, -1, -1):
        if session.savepoints[i][0] == name:
            return i
    raise SqlVecError(f'savepoint "{name}" does not exist', sqlstate="3B001")


def _txn_state(txn: Transaction | None) -> object:
    """A copy of a transaction's buffered writes (SAVEPOINT)."""
    if txn is None:
        return None
    return ({tid: TableOverlay(o.table, list(o.inserted), set(o.deleted), o.truncated)
             for tid, o in txn.overlays.items()}, txn._next_provisional)


def _txn_restore(txn: Transaction | None, state: object) -> Transaction | None:
    if txn is None or state is None:
        return txn
    overlays, provisional = state  # type: ignore[misc]
    txn.overlays = {tid: TableOverlay(o.table, list(o.inserted), set(o.deleted), o.truncated)
                    for tid, o in overlays.items()}
    txn._next_provisional = provisional
    return txn
