"""Running INSERT, UPDATE and DELETE: the general path and the single-row fast paths.

Outside a transaction block a write commits on its own; inside, its inserts and deletes are
buffered in the session's Transaction until COMMIT. In the implicit block of a pipeline, the
rows of consecutive runs of one single-row INSERT are gathered (`PendingInserts`) and enter the
Transaction together, their keys checked once, when anything else needs them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sqlvec.errors import QueryCanceled, SerializationFailure, SqlVecError, UniqueViolation
from sqlvec.execution import foreign_keys
from sqlvec.execution.constraints import ROW_CHECKS, describe_failing_row
from sqlvec.execution.context import ExecContext
from sqlvec.execution.dml import WritePlan, eval_returning
from sqlvec.execution.transaction import NewestVersions, Rechecked, Transaction
from sqlvec.execution.values import typed_params
from sqlvec.session import transactions
from sqlvec.session.results import PreparedStatement, Result, renamed
from sqlvec.storage.keys import MISSING
from sqlvec.storage.row_locks import KeyLocked, RowChanged, RowLocked, wait_for_end

if TYPE_CHECKING:
    from sqlvec.session.core import Session
    from sqlvec.storage.table import Table

# Times an autocommit INSERT ... ON CONFLICT, UPDATE or DELETE is run when it loses a race
# at commit.
UPSERT_ATTEMPTS = 10


@dataclass
class PendingInserts:
    """Rows of one single-row INSERT statement run again and again in a batch's block
    (executemany), not yet in `txn`, in order: one-row batches its own path built (NOT NULL
    and CHECK checked as they came) and rows of parameter values the front end took without
    running the statement (`take_rows`: built and checked together at apply). Their keys are
    checked when the rows are applied (`apply_pending`); an error is the first failing row's,
    as one by one."""
    txn: Transaction
    write: WritePlan
    sql: str  # the statement's text (an error in the rows is logged under it)
    # Per row a pa.RecordBatch or its values; or a `ValueColumns` of many rows.
    rows: list = field(default_factory=list)
    count: int = 0  # rows held


@dataclass
class ValueColumns:
    """Rows the front end took column-wise (`FastInsert.columns_of`: the parameter columns'
    arrays), built and checked with the others at apply."""
    arrays: list[pa.Array]

    def __len__(self) -> int:
        return len(self.arrays[0])


def apply_pending(session: Session) -> None:
    """Put the gathered rows into the block's transaction, before anything that could see
    them or end the block; rows of a block already gone are dropped with it. An error is the
    first failing row's, as running them one by one gives it, with `gathered_row` (its
    position among them) and `gathered` (the `PendingInserts`) set."""
    pending = session.pending
    if pending is None:
        return
    session.pending = None
    txn = pending.txn
    if txn is not session.txn:
        return
    table = pending.write.table
    before = transactions.txn_state(txn) if pending.count > 1 else None
    try:
        txn.insert(table, _together(session, pending))
    except SqlVecError as exc:
        row, error = 0, exc
        if before is not None:  # the block is rolled back: the replay may use up `txn`
            row, error = _first_failing(session, transactions.txn_restore(txn, before),
                                        pending)
            _give_back(session, pending, row)
        describe_failing_row(error)
        error.gathered_row, error.gathered = row, pending  # type: ignore[attr-defined]
        raise error from None


def _together(session: Session, pending: PendingInserts) -> pa.Table:
    """The gathered rows as one table, those given as values built and checked."""
    fast = pending.write.fast
    context = _context_of(session)
    parts, taken = [], False
    for kind, run in itertools.groupby(pending.rows, key=_kind):
        if kind is pa.RecordBatch:
            parts.extend(run)
        elif kind is ValueColumns:
            parts.extend(fast.columns_batch(block.arrays, context)  # type: ignore[union-attr]
                         for block in run)
            taken = True
        else:
            parts.append(fast.batch_of(list(run), context))  # type: ignore[union-attr]
            taken = True
    rows = pa.Table.from_batches(parts)
    table_def = pending.write.table.def_
    if taken and table_def.constraints:
        ROW_CHECKS(table_def, rows)
    return rows


def _first_failing(session: Session, txn: Transaction,
                   pending: PendingInserts) -> tuple[int, SqlVecError]:
    """Which of the rows fails first, built, checked and inserted one by one, and its error."""
    table = pending.write.table
    context = _context_of(session)
    for row, part in enumerate(_one_by_one(pending.rows)):
        try:
            if not _is_batch(part):
                fast = pending.write.fast
                part = fast.columns_batch(part.arrays, context) if type(part) is ValueColumns \
                    else fast.batch_of([part], context)  # type: ignore[union-attr]
                if table.def_.constraints:
                    ROW_CHECKS(table.def_, part)
            txn.insert(table, pa.Table.from_batches([part]))
        except SqlVecError as exc:
            return row, exc
    raise AssertionError("the rows failed together but not one by one")


def _one_by_one(rows: list):
    """The gathered rows one at a time (a `ValueColumns` of many as one-row ones)."""
    for part in rows:
        if type(part) is ValueColumns:
            for i in range(len(part)):
                yield ValueColumns([array.slice(i, 1) for array in part.arrays])
        else:
            yield part


def _give_back(session: Session, pending: PendingInserts, failing: int) -> None:
    """The sequence values the rows after the failing one took: one by one, they never ran,
    so never took them. Each sequence goes back to the failing row's value, unless another
    session took a value since (then the gap stays, as sequences leave gaps anyway); a
    cached one's values go back to the session's cache (`Session.give_back`)."""
    sequences = pending.write.fast.sequences  # type: ignore[union-attr]
    if not sequences or failing + 1 >= pending.count:
        return
    first, after = pending.rows[failing], pending.rows[failing + 1:]
    for column, name in sequences.items():
        session.give_back(name, [_taken(pending, row, column) for row in after],
                          _taken(pending, first, column))


def _taken(pending: PendingInserts, row: object, column: int) -> int:
    """The value a gathered row's sequence default `column` took."""
    if _is_batch(row):
        return row.column(column)[0].as_py()  # type: ignore[attr-defined]
    fast = pending.write.fast
    at = sum(kind == "param" for kind, *_ in fast.columns) + \
        list(fast.sequences).index(column)  # type: ignore[union-attr]
    return row[at]  # type: ignore[index]


def _kind(row: object) -> type:
    """What a gathered part is: a batch, rows column-wise, or (any other type) one row's
    values."""
    kind = type(row)
    return kind if kind is pa.RecordBatch or kind is ValueColumns else list


def _is_batch(row: object) -> bool:
    return type(row) is pa.RecordBatch


def _context_of(session: Session) -> Callable[[bool], ExecContext]:
    """`FastInsert`'s context argument for rows without parameters of their own."""
    contexts: list[ExecContext] = []

    def context(_typed: bool) -> ExecContext:
        if not contexts:
            contexts.append(session._context([]))
        return contexts[0]
    return context


def takes_rows(session: Session, write: WritePlan) -> bool:
    """Whether the front end may give the gathered rows of `write` more rows as parameter
    values (`take_rows`): the rows gathered last are its, in the open block."""
    pending = session.pending
    return pending is not None and pending.write is write and pending.txn is session.txn \
        and session.explicit and session.gathering and not session.failed \
        and write.fast is not None and write.fast.takes_values


def take_rows(session: Session, rows: list) -> None:
    """Add rows (each its parameter columns' converted values, `FastInsert.values`) to the
    gathered ones (`takes_rows` said yes): built, checked and applied with them."""
    pending = session.pending
    assert pending is not None
    sequences = pending.write.fast.sequences  # type: ignore[union-attr]
    if sequences:  # taken now, in the rows' order, as running them takes them
        taken = [session.nextval(name, len(rows)) for name in sequences.values()]
        rows = [(*row, *values) for row, values in zip(rows, zip(*taken))]
    pending.rows.extend(rows)
    _counted(pending, len(rows))


def take_columns(session: Session, params: list) -> int:
    """Add rows given column-wise (each parameter's values decoded together, as
    `FastInsert.columns_of` takes them) to the gathered ones (`takes_rows` said yes): how
    many, or 0 when a value needs the rows' own path (or the statement takes sequence values:
    then they are not taken column-wise)."""
    pending = session.pending
    assert pending is not None
    arrays = pending.write.fast.columns_of(params)  # type: ignore[union-attr]
    if not arrays:
        return 0
    block = ValueColumns(arrays)
    pending.rows.append(block)
    _counted(pending, len(block))
    return len(block)


def _counted(pending: PendingInserts, n: int) -> None:
    pending.count += n
    # pg_stat_user_tables counts the rows of every write, committed or not, as PostgreSQL.
    pending.write.table.stats.wrote("INSERT", n)


def _gatherable(session: Session, write: WritePlan) -> bool:
    """Whether this run of a single-row INSERT may join the gathered rows: in a block, among
    the statements an extended batch sends together (an implicit block's, or an explicit
    one's: `Session.gathering`; not a Query's, whose statements after a failing one must not
    have answered), no RETURNING, nothing watching its rows (foreign keys)."""
    txn = session.txn
    return session.explicit and session.gathering and write.returning is None \
        and txn is not None and txn.watch is None \
        and not foreign_keys.references_others(write.table)


def _gather(session: Session, prepared: PreparedStatement, batch: pa.RecordBatch) -> None:
    """Hold a row for `apply_pending`, after the checks that concern it alone."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    pending = session.pending
    if pending is None or pending.write is not write or pending.txn is not session.txn:
        apply_pending(session)
        pending = session.pending = PendingInserts(  # type: ignore[arg-type]
            session.txn, write, prepared.sql)
    if write.table.def_.constraints:
        _after_gathered(session, lambda: ROW_CHECKS(write.table.def_, batch))
    pending.rows.append(batch)
    pending.count += 1


def _after_gathered(session: Session, step: Callable[[], object]) -> object:
    """Run a step of a row that may fail: an error in the rows gathered before it is
    theirs to report first (one by one, they ran first)."""
    try:
        return step()
    except SqlVecError:
        apply_pending(session)
        raise


def run_write(session: Session, prepared: PreparedStatement, params: list,
              max_rows: int) -> Result:
    """Run INSERT, UPDATE or DELETE by the cheapest path that keeps its meaning: the single-row
    insert, the key write (autocommit, or a block's), or the general plan."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    result = None
    # Foreign keys are enforced at the end of the statement, over its transaction's record
    # of writes: the general path, or the single-row INSERT checking its one row.
    if write.fast is not None:
        result = _fast_insert(session, prepared, params)
    if result is None:
        apply_pending(session)  # the rows gathered before it come first
    key_path = result is None and write.by_key is not None and not session.explicit and \
        not foreign_keys.involved(session.store, write.table)
    if key_path:
        scalar = write.by_key.scalar  # type: ignore[union-attr]
        if scalar is not None and scalar.ready:
            result = _scalar_key_write(session, prepared, params)
    elif result is None and write.by_key is not None and _block_keyed(session, write):
        result = _block_key_write(session, prepared, params)
    if result is None:
        typed = typed_params(prepared.param_types, params)
        if key_path:
            result = _key_write(session, prepared, typed)
        else:
            result = _general_write(session, prepared, typed)
    # pg_stat_user_tables counts the rows of every write, committed or not, as PostgreSQL.
    write.table.stats.wrote(write.kind, int(result.tag.rpartition(" ")[2]))
    return result


def _general_write(session: Session, prepared: PreparedStatement, params: list) -> Result:
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    autocommit = not session.explicit
    # An autocommit INSERT ... ON CONFLICT that loses a race at commit (a concurrent commit
    # took its key, or changed the row it updates) runs again on the new state, as
    # PostgreSQL's re-check does: an upsert does not fail with 23505 or 40001.
    upsert = autocommit and getattr(write, "conflict", None) is not None
    # Likewise an autocommit UPDATE or DELETE whose rows a concurrent commit changed first runs
    # again on the new versions, as READ COMMITTED re-checks them (never 40001 there).
    retry = upsert or (autocommit and write.kind in ("UPDATE", "DELETE"))
    # Nothing runs between the writes of a statement that commits on its own and its
    # commit, unless it returns rows or resolves conflicts: the commit checks its keys.
    early = not autocommit or upsert or write.returning is not None
    attempt = 0
    newest: NewestVersions | None = None  # the rows it re-checks, after a row wait
    first: ExecContext | None = None  # the context whose snapshots a re-check keeps
    while True:
        txn = session.txn if session.txn is not None else Transaction(early_checks=early)
        ctx = session._context(params)
        ctx.overlay = txn
        if newest is None:
            first = ctx
        else:
            ctx.read_as(first)  # type: ignore[arg-type]
            ctx.overlay = Rechecked(txn, newest)
        if not autocommit:
            txn.begin_statement()
        try:
            if foreign_keys.involved(session.store, write.table):
                count, returning = foreign_keys.run_statement(
                    session.store, txn, lambda ctx=ctx, txn=txn: write.run(ctx, txn), autocommit,
                    session.lock_waiting)
            else:
                count, returning = write.run(ctx, txn)
            if autocommit:
                try:
                    session.store.commit(txn.ops())
                except UniqueViolation as exc:  # a deferred key's: the one PostgreSQL names
                    raise txn.reported_duplicate(exc) from None
            break
        except (UniqueViolation, SerializationFailure) as exc:
            waited = _waited_for_row(session, exc)
            if waited or isinstance(exc, RowChanged):
                # READ COMMITTED: the rows it met changed (or were held) by another
                # transaction; what it buffered goes, and it runs again, re-checking them.
                if not autocommit:
                    txn.undo_statement()
                session.store.settle()
                newest = _recheck(session, write, ctx, newest, exc, txn, lost_race=False)
                continue
            attempt += 1
            if not (upsert or (retry and isinstance(exc, SerializationFailure))) or \
                    attempt == UPSERT_ATTEMPTS:
                raise
            session.store.settle()  # the commit it lost to is applied before it runs again
            newest = _recheck(session, write, ctx, newest, exc, txn, lost_race=True)
        finally:
            if not autocommit:
                txn.end_statement()
    if not autocommit:
        session.txn = txn
    tag = {"INSERT": f"INSERT 0 {count}", "UPDATE": f"UPDATE {count}",
           "DELETE": f"DELETE {count}"}[write.kind]
    if returning is not None:
        returning = renamed(returning, list(range(returning.num_columns)), prepared.columns)
    return Result(tag, prepared.columns, returning)


def _recheck(session: Session, write: WritePlan, ctx: ExecContext,
             newest: NewestVersions | None, exc: SqlVecError, txn: Transaction,
             lost_race: bool) -> NewestVersions | None:
    """The rows an UPDATE or DELETE re-checks at their newest versions when it runs again,
    keeping its snapshot for the others (PostgreSQL's EvalPlanQual): those it was locking
    (`RowChanged`), or, committing on its own, those it deleted. None: it runs again on a
    fresh snapshot (an INSERT, rows it cannot follow to a newer version, another table's
    rows, or a race lost to something else than a changed row)."""
    if write.kind == "INSERT":
        return None
    table = session.store.table(write.table.id)
    if isinstance(exc, RowChanged):
        rowids = exc.rowids if exc.table is not None and exc.table.id == table.id else None
    else:
        own = txn.table_overlay(table.id)
        rowids = list(own.deleted) if own is not None else None
    if not rowids:
        return None
    if newest is None:
        newest = NewestVersions(table, ctx.snapshot(table.id))
    changed = newest.add(rowids)
    return newest if newest.follows and (changed or not lost_race) else None


def _fast_insert(session: Session, prepared: PreparedStatement, params: list) -> Result | None:
    """A single-row INSERT through `FastInsert` (dml.py); None when its values need the
    general path. Autocommit without RETURNING commits the row directly: the commit checks
    its keys (23505) as the transaction's early check would."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    contexts: list[ExecContext] = []

    def context(typed: bool) -> ExecContext:
        if not contexts:
            contexts.append(session._context(
                typed_params(prepared.param_types, params) if typed else []))
        return contexts[0]

    checked = foreign_keys.references_others(write.table)
    if not session.explicit and write.returning is None:
        op = write.fast.op(params, context)  # type: ignore[union-attr]
        if op is None:
            return None
        recheck = parents_checker(session, write.table, pa.Table.from_batches([op.batch])) \
            if checked else None
        if recheck is not None:
            recheck()
        commit_inserts(session, [op], recheck)
        return Result("INSERT 0 1", prepared.columns, None)
    nextval_calls = session.nextval_calls
    batch = _after_gathered(session, lambda: write.fast.row(  # type: ignore[union-attr]
        params, context))
    if batch is None:
        return None
    # A row that took sequence values is gathered only when they are its defaults': the
    # rows after a failing one give theirs back (`_give_back`: PostgreSQL never builds them).
    if (session.nextval_calls == nextval_calls or write.fast.takes_values) and \
            _gatherable(session, write):
        _gather(session, prepared, batch)
        return Result("INSERT 0 1", prepared.columns, None)
    apply_pending(session)  # the rows gathered before it come first
    txn = session.txn if session.txn is not None else Transaction()
    rows = pa.Table.from_batches([batch])
    if checked:
        with_ids = foreign_keys.run_statement(session.store, txn,
                                              lambda: txn.insert(write.table, rows),
                                              not session.explicit, session.lock_waiting)
    else:
        with_ids = txn.insert(write.table, rows)
    returning = None
    if write.returning is not None:
        ctx = context(True)  # converted already: `bind` marks RETURNING as reading them
        ctx.overlay = txn
        returning = eval_returning(write, ctx, with_ids)
        returning = renamed(returning, list(range(returning.num_columns)), prepared.columns)
    if session.explicit:
        session.txn = txn
    else:
        commit_inserts(session, txn.ops(),
                       parents_checker(session, write.table, rows) if checked else None)
    return Result("INSERT 0 1", prepared.columns, returning)


def _scalar_key_write(session: Session, prepared: PreparedStatement,
                      params: list) -> Result | None:
    """An autocommit UPDATE or DELETE of one row by key over Python values (`ScalarKeyWrite`,
    dml.py); None when a value needs `KeyWrite` (nothing happened then)."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    scalar = write.by_key.scalar  # type: ignore[union-attr]
    if len(params) != len(prepared.param_types):
        return None
    if session._cancel.is_set():
        raise QueryCanceled("canceling statement due to user request")
    table = session.store.table(write.table.id)
    if table.def_ is not write.table.def_:
        return None
    # The row is located afresh per attempt; None (on a retry too: nothing of the lost attempt
    # remains) hands the statement to the general path.
    ops = _commit_retrying(session, lambda: scalar.ops(table, params))  # type: ignore[union-attr]
    if ops is None:
        return None
    return Result(f"{write.kind} {1 if ops else 0}", prepared.columns, None)


def _block_keyed(session: Session, write: WritePlan) -> bool:
    """Whether a block's UPDATE or DELETE may take `_block_key_write`: its scalar form is
    ready, no foreign key watches the table, and its key is not DEFERRABLE and is the one
    a re-check after a row wait follows (`NewestVersions`), so that a fresh look-up by it
    after the wait finds what the re-check would."""
    scalar = write.by_key.scalar  # type: ignore[union-attr]
    txn = session.txn
    if scalar is None or not scalar.ready or not session.explicit or txn is None or \
            txn.locks is None or txn.watch is not None:
        return False
    table = write.table
    key = write.source.key  # type: ignore[attr-defined]
    return key == NewestVersions.followed_key(table) and \
        not table.keys[key].def_.deferrable and \
        not foreign_keys.involved(session.store, table)


def _block_key_write(session: Session, prepared: PreparedStatement,
                     params: list) -> Result | None:
    """A block's UPDATE or DELETE of one row by key over Python values (`ScalarKeyWrite`):
    the row is found through the key's index and the block's index of its own keys, then
    locked and buffered by `Transaction.delete` and `insert` as the general path's are, with
    no scan, expression evaluation or parameter conversion over one-row tables. None
    (nothing buffered) hands the statement to the general path: a value it cannot take, or
    a row changed by a commit it waited for (whose re-check the general path runs)."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    scalar = write.by_key.scalar  # type: ignore[union-attr]
    if len(params) != len(prepared.param_types):
        return None
    inputs = scalar.inputs(params)
    if inputs is None:
        return None
    if session._cancel.is_set():
        raise QueryCanceled("canceling statement due to user request")
    table = session._table_used(write.table.id)
    txn: Transaction = session.txn  # type: ignore[assignment]
    if table.def_ is not write.table.def_:
        return None
    key_no = write.source.key  # type: ignore[attr-defined]
    found = txn.row_by_key(table, key_no, inputs[0])
    if found is None:
        return None
    rowid, data, position = found
    if rowid == MISSING:
        _count_lookup(table, write, 0)
        return Result(f"{write.kind} 0", prepared.columns, None)
    new, kept = None, False
    if write.kind == "UPDATE":
        new = scalar.new_row(table, inputs, data, position, params)
        kept = scalar.keeps_keys(table, data, position, new) if new is not None else None
        if kept is None:
            return None
    _count_lookup(table, write, 1)
    try:
        txn.delete(table, np.array([rowid], np.int64), kept)
    except RowChanged:
        return None  # (the lock is taken before anything is buffered)
    if new is not None:
        txn.insert(table, pa.Table.from_batches([new]))
    return Result(f"{write.kind} 1", prepared.columns, None)


def _count_lookup(table: Table, write: WritePlan, found: int) -> None:
    """pg_stat_user_tables: `_block_key_write`'s look-up counted as the Index Scan's, before
    the row is locked and written (a statement failing there has scanned)."""
    table.stats.index_scanned(write.source.key_name, found, found)  # type: ignore[attr-defined]


def _key_write(session: Session, prepared: PreparedStatement, params: list) -> Result:
    """An autocommit UPDATE or DELETE of one row by key (`KeyWrite`, dml.py)."""
    write: WritePlan = prepared.compiled  # type: ignore[assignment]
    # A fresh context (and snapshot) per attempt.
    ops = _commit_retrying(session, lambda: write.by_key.ops(  # type: ignore[union-attr]
        session._context(params)))
    count = 1 if ops else 0
    return Result(f"{write.kind} {count}", prepared.columns, None)


def _commit_retrying(session: Session, make_ops: Callable[[], list | None]) -> list | None:
    """Commit the ops `make_ops` builds for a one-row autocommit write; when a concurrent
    commit changed the row first, build them again on its new version, as READ COMMITTED
    does. None when `make_ops` gives up."""
    attempt = 0
    while True:
        ops = make_ops()
        if ops is None:
            return None
        try:
            if ops:
                session.store.commit(ops)
            return ops
        except SerializationFailure as exc:
            if not _waited_for_row(session, exc):
                attempt += 1
                if attempt == UPSERT_ATTEMPTS:
                    raise
            session.store.settle()  # the commit it lost to is applied before it runs again


def commit_inserts(session: Session, ops: list, recheck: Callable[[], None] | None = None
                   ) -> int:
    """Commit inserts that lock nothing (autocommit); one of whose key values an open block
    inserted waits for that block's end and is committed again (23505 if it committed).
    `recheck`, the rows' foreign-key check, runs again after such a wait, as PostgreSQL's
    runs after the insert's key wait: it waits in turn for a block deleting a parent row."""
    while True:
        try:
            return session.store.commit(ops)
        except KeyLocked as exc:
            _waited_for_row(session, exc)
            if recheck is not None:
                recheck()


def parents_checker(session: Session, table: Table, rows: pa.Table) -> Callable[[], None]:
    """The foreign-key check of rows an autocommit statement inserts (`commit_inserts`)."""
    return lambda: foreign_keys.check_new_rows(session.store, table, rows,
                                               session.lock_waiting)


def _waited_for_row(session: Session, exc: SqlVecError) -> bool:
    """Whether a commit failed on a row an open block holds locked, and that block has
    ended since (the statement then runs again on what it left, never counted as a lost
    race): an autocommit write waits for the block, as PostgreSQL's does for its row lock."""
    if not isinstance(exc, RowLocked):
        return False
    session.row_lock_wait = exc.holder  # (pg_locks, pg_stat_activity)
    try:
        wait_for_end(exc.holder, None, session.lock_waiting)
    finally:
        session.row_lock_wait = None
    return True
