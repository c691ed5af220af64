"""Foreign keys made final at commit: the check repeated under the store's commit lock.

The checks at the end of each statement (foreign_keys.py) read the committed state of that
moment. Two transactions can each pass them and still, together, leave an orphan: one deletes
a parent row while the other inserts a child row referencing it. PostgreSQL prevents that
with row locks (the child's check takes FOR KEY SHARE on the parent row, the parent's DELETE
takes FOR UPDATE; whoever comes second waits for the other's transaction to end).

sqlvec takes those locks too (foreign_keys.py, `Enforcer._key_share`), so mostly the second
waits and then fails at its statement, as in PostgreSQL. What the locks leave open (an
autocommit statement's check holds no lock until its commit; TRUNCATE bypasses them) is
closed here: the store decides conflicts when it prepares a commit, under its
commit lock (23505 for a unique key, 40001 for a row already deleted), and foreign keys join
that decision. `check_commit` runs
under the commit lock, before the commit's ops are prepared, on exactly what the commit
writes:

- each inserted row of a referencing table must find its key in the referenced table as it
  will be once this commit applies: committed rows and commits in flight (the key index
  counts them), minus the rows this commit deletes, plus the rows it inserts. Index lookups
  only: the cost of the rows written.
- each key a commit removes from a referenced table (a deleted row whose key no row of the
  table holds afterwards) must be referenced by no row of the referencing table as it will
  be. That scan needs every earlier commit applied, so such a commit first waits for the
  commits in flight (under the lock, no new one can start).

Only one commit is prepared at a time, so of two commits that together would orphan a row,
the second sees the first and fails: with 23503, as PostgreSQL's waiting transaction does,
when the constraint's action is NO ACTION or RESTRICT; with 40001 when the action (CASCADE,
SET NULL, SET DEFAULT) would have dealt with the new referencing rows had it seen them, so
that running the statement again (which autocommit UPDATE and DELETE do by themselves) gives
PostgreSQL's outcome. In those races (no lock waited for) the first to commit wins, where
PostgreSQL's order is the order the rows were locked in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa

from sqlvec.errors import SerializationFailure
from sqlvec.execution.foreign_keys import (
    Enforcer,
    as_child,
    complete_keys,
    fitting,
    fk_tables,
    still_referenced,
)
from sqlvec.execution.transaction import TableOverlay, Transaction
from sqlvec.storage.schema import ROWID, ConstraintDef
from sqlvec.storage.store import Store
from sqlvec.storage.table import Table
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp


def install(store: Store) -> None:
    """Make every commit of `store` run `check_commit` under its commit lock."""
    store.commit_check = lambda ops, drain: check_commit(store, ops, drain)


def check_commit(store: Store, ops: Sequence, drain: Callable[[], None]) -> None:
    """Refuse a commit whose writes break a foreign key against the state it commits onto
    (see the module docstring). `drain` waits until every commit in flight is applied."""
    children, parents = fk_tables(store)
    if not children:
        return
    touched = {op.table_id for op in ops}
    if touched.isdisjoint(children) and touched.isdisjoint(parents):
        return
    txn = _as_transaction(store, ops)
    removes = [t for t in txn.overlays.values() if t.table.id in parents and
               (t.deleted or t.truncated)]
    if removes:
        drain()
    enforcer = Enforcer(store, txn, True)
    for overlay in list(txn.overlays.values()):
        table = overlay.table
        rows = overlay.inserted_table()
        if table.id in children and rows is not None:
            old = table.snapshot().rows_by_id(np.fromiter(overlay.deleted, np.int64)) \
                if overlay.deleted else None
            for con in table.def_.constraints:
                if con.kind == "f" and con.ref_table in store.tables:
                    enforcer.check_present(table.def_, con, _moved(con, rows, old))
    for overlay in removes:
        _check_removed(store, enforcer, overlay)


def _as_transaction(store: Store, ops: Sequence) -> Transaction:
    """The commit's ops as a transaction's overlays, so the statement checks' lookups (which
    see a transaction's own writes) answer for the state after the commit."""
    txn = Transaction()
    provisional = -1
    for op in ops:
        table = store.tables.get(op.table_id)
        if table is None:
            continue
        overlay = txn.overlays.get(table.id)
        if overlay is None:
            overlay = txn.overlays[table.id] = TableOverlay(table)
        if isinstance(op, TruncateOp):
            overlay.truncated, overlay.inserted, overlay.deleted = True, [], set()
        elif isinstance(op, DeleteOp):
            overlay.deleted.update(np.asarray(op.rowids, np.int64).reshape(-1).tolist())
        elif isinstance(op, InsertOp):
            batch = op.batch
            rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) \
                else batch
            ids = np.arange(provisional, provisional - rows.num_rows, -1, dtype=np.int64)
            provisional -= rows.num_rows
            overlay.inserted.append(rows.append_column(ROWID, pa.array(ids)))
    return txn


def _moved(con: ConstraintDef, rows: pa.Table, old: pa.Table | None) -> pa.Table:
    """The inserted `rows` whose key no row the commit deletes from the same table held: an
    UPDATE that keeps a row's key is not checked again, as in PostgreSQL (a NOT VALID
    constraint's old rows stay as they are). Safe to skip: while the old version stood, no
    commit could remove its referenced key."""
    if old is None or old.num_rows == 0:
        return rows
    names = list(con.columns)
    held = old.select(names).group_by(names).aggregate([])
    positioned = rows.select(names).append_column(
        "__fk_row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    kept = positioned.join(held, keys=names, join_type="left anti")
    return rows.take(pa.array(np.sort(np.asarray(kept.column("__fk_row")))))


def _check_removed(store: Store, enforcer: Enforcer, overlay: TableOverlay) -> None:
    """Keys the commit removes from referenced table `overlay.table`: no referencing row may
    hold one once the commit applies."""
    parent = overlay.table
    refs = [(t, c) for t in list(store.tables.values()) for c in t.def_.constraints
            if c.kind == "f" and c.ref_table == parent.id]
    if not refs:
        return
    if overlay.truncated:
        old = None  # every row goes: a referencing row with a complete key is an orphan
    else:
        old = parent.snapshot().rows_by_id(np.fromiter(overlay.deleted, np.int64))
        if old.num_rows == 0:
            return
    for child, con in refs:
        if old is None:
            found = _any_referencing(enforcer, child, con)
        else:
            keys, _ = complete_keys(con_as_parent(con), old)
            fits = fitting(keys, con.columns, child.def_)
            if fits is not None:  # a key too wide for the referencing columns: unreferenced
                keys = keys.filter(pa.array(fits))
            if keys.num_rows == 0:
                continue
            keys = as_child(keys, con, child.def_)
            keys = keys.filter(pa.array(~enforcer.present(parent, con, keys)))
            if keys.num_rows == 0:
                continue
            found = enforcer.referencing_rows(child, con, keys, [])
        if found.num_rows == 0:
            continue
        # (The ops do not tell a DELETE from an UPDATE that changed the key: both actions
        # must be checks for the error to be PostgreSQL's 23503.)
        if con.on_delete in ("a", "r") and con.on_update in ("a", "r"):
            raise still_referenced(parent.def_, con, child.def_,
                                   found.select(list(con.columns)))
        # The action would have rewritten these rows had the statement seen them: a concurrent
        # commit added them. Run again, the statement does (autocommit DML retries 40001).
        raise SerializationFailure("could not serialize access due to concurrent update")


def con_as_parent(con: ConstraintDef) -> ConstraintDef:
    """The constraint seen from the referenced side: its key columns are the referenced
    ones (for `complete_keys` over the referenced table's rows)."""
    return replace(con, columns=con.ref_columns)


def _any_referencing(enforcer: Enforcer, child: Table, con: ConstraintDef) -> pa.Table:
    """Rows of `child` (as the commit leaves it) with a complete key: after a TRUNCATE of the
    referenced table every one of them is an orphan."""
    overlay = enforcer.txn.table_overlay(child.id)
    parts = []
    if overlay is None or not overlay.truncated:
        for part in child.snapshot().scan(list(con.columns), with_rowid=True):
            if overlay is not None and overlay.deleted:
                keep = ~np.isin(part.column(ROWID).to_numpy(),
                                np.fromiter(overlay.deleted, np.int64))
                part = part.filter(pa.array(keep))
            parts.append(part.select(list(con.columns)))
    ins = overlay.inserted_table() if overlay is not None else None
    if ins is not None:
        parts.append(ins.select(list(con.columns)))
    for part in parts:
        keys, _ = complete_keys(con, part)
        if keys.num_rows:
            return keys
    return pa.table({c: pa.array([], pa.int64()) for c in con.columns})
