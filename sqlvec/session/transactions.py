"""Transaction blocks and savepoints: BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
ROLLBACK TO.

A block buffers its writes in one `Transaction` (execution/transaction.py) and commits them as
one WAL record at COMMIT. A savepoint is a copy of the buffered writes as they were, and
where the block's row locks stood; ROLLBACK TO puts that copy back and releases the rows
locked since.

DDL in a block is transactional, as in PostgreSQL: its first DDL statement takes the database's
DDL lock (ddl_lock.py) and opens the store's deferred schema changes (`Store.begin_deferred`),
made in memory and written to no manifest; COMMIT writes them with the block's writes as one
manifest version, ROLLBACK (or COMMIT of a failed block, or the session's end) puts the
state from before them back, and ROLLBACK TO SAVEPOINT the state the savepoint saw.

Outside an explicit block, statements sent together run in an implicit block, as in
PostgreSQL: the statements of a simple Query of several, and those an extended-protocol batch
executes before its Sync (`begin_implicit`). The block is a transaction block like BEGIN's, but
ends by itself: committed at the end of the Query or at Sync (`end_implicit`), rolled back at
the first error (`abort_implicit`), the statements after the error skipped. In it BEGIN turns
it into an explicit block holding what came before, COMMIT and ROLLBACK end it (with
PostgreSQL's warning) and the next statement starts another, SAVEPOINT is 25P01, and the
statements that cannot run in a block are 25001 (`refuse_in_block`), but for the first
statement of an extended-protocol batch, which PostgreSQL commits at once on its own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlvec.errors import ActiveSqlTransaction, Notice, SqlVecError, UniqueViolation
from sqlvec.execution.foreign_keys import check_deferred
from sqlvec.execution.transaction import TableOverlay, Transaction
from sqlvec.session.results import PreparedStatement, Result
from sqlvec.sql.utility import Utility

if TYPE_CHECKING:
    from sqlvec.session.core import Session

_REPEATABLE = re.compile(r"\b(?:repeatable\s+read|serializable)\b", re.I)

# PostgreSQL's warnings for transaction control out of place (xact.c).
ALREADY_IN_PROGRESS = Notice.warning("there is already a transaction in progress", "25001")
NOT_IN_PROGRESS = Notice.warning("there is no transaction in progress", "25P01")


def begin(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """BEGIN: starts an explicit transaction; inside one it only warns, as PostgreSQL does."""
    if session.implicit:  # the statements before it are the explicit block's
        session.implicit = False
        return Result("BEGIN")
    if session.explicit:
        return Result("BEGIN", notices=[ALREADY_IN_PROGRESS])
    session.explicit = True
    session.txn = session.block_transaction(is_repeatable(u.body or ""))
    return Result("BEGIN")


def commit(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """COMMIT (END); in a failed block it rolls back, as PostgreSQL's does. In an implicit
    block it commits what came before, with the warning of COMMIT outside a block."""
    if not session.explicit or session.implicit:
        end_implicit(session)
        return Result("COMMIT", notices=[NOT_IN_PROGRESS])
    return Result(_end_block(session))


def _end_block(session: Session) -> str:
    """Close the open block: commit its writes and schema changes, or roll it back if it
    failed; the tag COMMIT answers with. A commit that fails (a deferred check) rolls back."""
    failed = session.failed
    txn = session.txn
    session.explicit, session.implicit, session.failed, session.txn = False, False, False, None
    try:
        tag = _commit(session, txn, failed)
    except BaseException:
        end_of_block(session, True)
        raise
    end_of_block(session, failed)
    return tag


def _commit(session: Session, txn: Transaction | None, failed: bool) -> str:
    if failed:
        session.close_schema_changes(None)
        return "ROLLBACK"
    if txn is not None and txn.deferred_checks:
        try:  # 23503 here: the block is rolled back
            check_deferred(session.store, txn)
        except BaseException:
            session.close_schema_changes(None)
            raise
    try:
        if session.ddl_open:
            session.close_schema_changes(txn.ops() if txn is not None else [])
        elif txn is not None and not txn.empty:
            session.store.commit(txn.ops(), session.lock_holder)
    except UniqueViolation as exc:  # a deferred key's: the duplicate PostgreSQL names
        raise (txn.reported_duplicate(exc) if txn is not None else exc) from None
    return "COMMIT"


def rollback(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """ROLLBACK: drops the transaction's writes and undoes its schema changes (in an implicit
    block, those of the statements before it, with the warning of ROLLBACK outside a block)."""
    if not session.explicit or session.implicit:
        abort_implicit(session)
        return Result("ROLLBACK", notices=[NOT_IN_PROGRESS])
    _drop_block(session)
    return Result("ROLLBACK")


def _drop_block(session: Session) -> None:
    """Close the open block rolled back: its writes dropped, its schema changes undone."""
    session.explicit, session.implicit, session.failed, session.txn = False, False, False, None
    session.pending = None
    end_of_block(session, True)
    session.close_schema_changes(None)


def begin_implicit(session: Session, first_alone: bool) -> None:
    """Open an implicit block for the statements sent together that follow (module docstring).
    `first_alone`: the next statement, the first of an extended-protocol batch, may still be
    one that runs only outside a block (`refuse_in_block`)."""
    session.explicit = session.implicit = True
    session.xact_started = None  # (its first statement's start: `Session._statement_began`)
    session.first_alone = first_alone
    session.gathering = False  # (set by the front end's `Session.begin_implicit`)
    session.txn = session.block_transaction()


def end_implicit(session: Session) -> None:
    """The end of the statements sent together: an implicit block still open commits (its
    gathered rows first: an error in them rolls it back)."""
    if session.implicit:
        try:
            session.apply_pending()
        except BaseException:
            _drop_block(session)
            raise
        _end_block(session)


def abort_implicit(session: Session) -> None:
    """An error (or ROLLBACK) in an implicit block: it is rolled back whole."""
    if session.implicit:
        _drop_block(session)


def is_repeatable(isolation: str) -> bool:
    """Whether a BEGIN's or SET TRANSACTION's modes (or default_transaction_isolation) ask
    for REPEATABLE READ or SERIALIZABLE: a row changed by a concurrent commit is then 40001,
    not re-read (row_locks.py)."""
    return _REPEATABLE.search(isolation) is not None


def refuse_in_block(session: Session, what: str) -> None:
    """25001 for a statement PostgreSQL runs only outside a transaction block. The first
    statement of an extended-protocol batch is not in one yet: PostgreSQL runs and commits it
    on its own, and so does this (the implicit block opened for it is left, still empty)."""
    if not session.in_block:
        if session.explicit:  # the first statement of a batch: on its own
            _drop_block(session)
        return
    raise ActiveSqlTransaction(f"{what} cannot run inside a transaction block")


def savepoint(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """SAVEPOINT: remembers the transaction's state to return to; outside a transaction block it is
    25P01."""
    _require_explicit(session, "SAVEPOINT")
    schema = session.store.image() if session.ddl_open else None
    session.savepoints.append((u.name or "", txn_state(session.txn), schema,
                               session.settings_state()))
    return Result("SAVEPOINT")


def release(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """RELEASE SAVEPOINT: forgets the savepoint and those after it, keeping their changes."""
    _require_explicit(session, "RELEASE SAVEPOINT")
    del session.savepoints[_savepoint_index(session, u.name or ""):]
    return Result("RELEASE")


def rollback_to(session: Session, u: Utility, prepared: PreparedStatement,
                params: list) -> Result:
    """ROLLBACK TO SAVEPOINT: the block's buffered writes as they were at the savepoint. Back
    to before the block's first schema change, the changes are closed and the DDL lock let
    go, as PostgreSQL releases the locks taken since the savepoint: statements queued
    behind them go on."""
    _require_explicit(session, "ROLLBACK TO SAVEPOINT")
    i = _savepoint_index(session, u.name or "")
    schema = session.savepoints[i][2]  # the schema as the savepoint saw it
    if session.ddl_open and schema is None:  # (before any change)
        session.close_schema_changes(None)
    elif session.ddl_open:
        session.store.restore(schema)
        session._plan_cache.clear()
    session.txn = txn_restore(session.txn, session.savepoints[i][1])
    session.restore_settings(session.savepoints[i][3])  # type: ignore[arg-type]
    del session.savepoints[i + 1:]
    session.failed = False
    return Result("ROLLBACK")


def end_of_block(session: Session, aborted: bool) -> None:
    """Transaction end: cursors without HOLD close (and all cursors declared in an aborted
    block, which this simplification treats alike); savepoints and transaction-level advisory
    locks go."""
    if session.cursors:
        session.cursors = {k: c for k, c in session.cursors.items() if c.hold and not
                           (aborted and not c.hold)}
    session.savepoints = []
    session.release_xact_locks()
    session.end_settings(aborted)


def _require_explicit(session: Session, what: str) -> None:
    """25P01 for savepoint commands outside an explicit block (an implicit one too)."""
    if not session.explicit or session.implicit:
        raise SqlVecError(f"{what} can only be used in transaction blocks", sqlstate="25P01")


def _savepoint_index(session: Session, name: str) -> int:
    for i in range(len(session.savepoints) - 1, -1, -1):
        if session.savepoints[i][0] == name:
            return i
    raise SqlVecError(f'savepoint "{name}" does not exist', sqlstate="3B001")


def txn_state(txn: Transaction | None) -> object:
    """A copy of a transaction's buffered writes, and where its row locks stand (SAVEPOINT)."""
    if txn is None:
        return None
    return ({tid: _overlay_copy(o) for tid, o in txn.overlays.items()},
            txn._next_provisional, txn.locks.mark() if txn.locks is not None else None,
            list(txn.deferred_checks))


def txn_restore(txn: Transaction | None, state: object) -> Transaction | None:
    """The transaction's buffered writes put back as `txn_state` copied them (ROLLBACK TO
    SAVEPOINT; gathered INSERTs replayed one by one after their batch failed)."""
    if txn is None or state is None:
        return txn
    overlays, provisional, locks, checks = state  # type: ignore[misc]
    txn.overlays = {tid: _overlay_copy(o) for tid, o in overlays.items()}
    txn._next_provisional = provisional
    txn.deferred_checks = list(checks)  # the checks deferred since are dropped with the rows
    if locks is not None and txn.locks is not None:
        txn.locks.release_since(locks)  # the rows locked since are free again
    return txn


def _overlay_copy(overlay: TableOverlay) -> TableOverlay:
    """A table's buffered writes as they are now, apart from later changes to them."""
    return TableOverlay(overlay.table, list(overlay.inserted), set(overlay.deleted),
                        overlay.truncated, rechecks=set(overlay.rechecks))
