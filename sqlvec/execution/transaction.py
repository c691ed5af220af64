"""A session's uncommitted writes: buffered privately, visible to itself, committed atomically.

Inserted rows get provisional negative row ids so that a later UPDATE or DELETE in the same
transaction can find them; rows of committed data deleted by the transaction are remembered by
row id. Scans of a table the transaction touched read through `TableOverlay.merge`. COMMIT turns
the buffer into one list of storage ops, written as one WAL record.

Unique keys are checked as rows are buffered, against the transaction's own rows (an index of
their keys kept alongside) and, through the table's key index, against committed rows and
commits in flight; each check costs the rows it checks. The commit checks again under the
store's commit lock, which is what makes it final (23505 there, or 40001 for a deleted row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import SerializationFailure, SqlVecError, UniqueViolation
from sqlvec.execution.constraints import ROW_CHECKS
from sqlvec.storage.keys import MISSING, KeyIndex
from sqlvec.storage.row_locks import NO_KEY_UPDATE, UPDATE, LockHolder
from sqlvec.storage.schema import ROWID, KeyDef
from sqlvec.storage.table import Table, TableSnapshot, one_value_array
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp

_ROWID_TYPE = pa.int64()

# The parts of single-row statements a block appends are combined into one table (of one
# chunk) every this many (`TableOverlay.add`): COMMIT then concatenates one part per this many
# statements, not one per statement, and each row is copied once more as the block goes. A
# row deleted from a combined part costs filtering that part (this many rows).
COMBINE_EVERY = 64


@dataclass
class TableOverlay:
    """One table's uncommitted changes in a transaction: rows inserted (with provisional negative
    row ids), committed rows deleted, a truncation, and the keys inserted so far; scans merge it
    over the snapshot."""

    table: Table
    inserted: list[pa.Table] = field(default_factory=list)  # logical columns + _rowid (< 0)
    deleted: set[int] = field(default_factory=set)  # committed row ids
    truncated: bool = False
    # Per unique key of the table: key -> provisional row id of the inserted rows (None: to be
    # rebuilt from `inserted`, after some of them were deleted).
    _own_keys: list[KeyIndex] | None = None
    # False for a re-check's view (`NewestVersions.overlay`), whose inserted rows include
    # committed ones that `own_keys` does not hold: rows are then found by `merge` only.
    by_key: bool = True
    # Where each inserted row is (row id -> its part and offset), for `found_by_key`: kept up
    # to date as parts are appended or filtered here, rebuilt when the list of parts was
    # replaced otherwise; `_placed` is the list it describes and how many of its parts.
    _where: dict[int, tuple[pa.Table, int]] = field(default_factory=dict, repr=False)
    _placed: tuple[list | None, int] = (None, 0)
    # How many of the newest parts are small ones `add` appended since it last combined them.
    _loose: int = field(default=0, repr=False)
    # The DEFERRABLE unique keys (by position) of which a row inserted while deferred met
    # another row holding its value: PostgreSQL queued that row's re-check, a trigger event
    # pending until COMMIT or SET CONSTRAINTS ... IMMEDIATE, even once the rows differ again.
    rechecks: set[int] = field(default_factory=set)

    def add(self, rows: pa.Table) -> None:
        """Append a statement's inserted rows (with their row ids). Every `COMBINE_EVERY`
        small parts are combined into one, so that a block of single-row statements costs
        its COMMIT time linear in its rows; a big part is kept as it is."""
        if rows.num_rows >= COMBINE_EVERY:
            self._combine_loose()
            self.inserted.append(rows)
            return
        self.inserted.append(rows)
        self._loose += 1
        if self._loose >= COMBINE_EVERY:
            self._combine_loose()

    def _combine_loose(self) -> None:
        """The small parts appended since the last time as one table (in a new list: an
        undo keeps the old one, `Transaction._remember`), its rows placed anew."""
        count, self._loose = min(self._loose, len(self.inserted)), 0
        if count < 2:
            return
        self._positions()  # up to date before the list is replaced
        parts = [t for t in self.inserted[-count:] if t.num_rows]
        combined = pa.concat_tables(parts).combine_chunks() if parts else None
        self.inserted = self.inserted[:-count] + ([combined] if combined is not None else [])
        if combined is not None:
            self._place(combined)
        self._placed = (self.inserted, len(self.inserted))

    def inserted_table(self) -> pa.Table | None:
        """All rows inserted so far as one table, or None."""
        parts = [t for t in self.inserted if t.num_rows]
        if not parts:
            return None
        if len(parts) > 1:
            # Concatenated once and kept so: a transaction of many single-row statements
            # does not re-concatenate all its rows per statement.
            parts = [pa.concat_tables(parts)]
        self.inserted, self._loose = parts, 0
        return parts[0]

    def merge(self, parts: list[pa.Table], snapshot: TableSnapshot) -> list[pa.Table]:
        """Committed rows (as scanned) without our deletes, plus our inserts."""
        out = []
        if not self.truncated:
            dead = pa.array(sorted(self.deleted), pa.int64()) if self.deleted else None
            for part in parts:
                if dead is not None:
                    part = part.filter(pc.invert(pc.is_in(part.column(ROWID), value_set=dead)))
                out.append(part)
        ins = self.inserted_table()
        if ins is not None:
            schema = out[0].schema if out else None
            if schema is not None and not ins.schema.equals(schema):
                ins = ins.cast(schema)
            out.append(ins)
        return out

    def keyed(self, key: int) -> bool:
        """Whether rows found through unique key `key` can be merged by `found_by_key`: not
        where a DEFERRABLE key lets the transaction's own rows repeat a value, which
        `own_keys` holds once."""
        return self.by_key and not self.table.keys[key].def_.deferrable

    def found_by_key(self, parts: list[pa.Table], own: list[int]) -> list[pa.Table]:
        """`merge` of rows looked up by a unique key: the committed rows found (`parts`)
        without our deletes, plus our inserted rows `own` (row ids from `own_keys`), without
        reading the transaction's other rows, so a block's statement by key costs what an
        autocommit one does."""
        out = []
        if not self.truncated:
            for part in parts:
                if self.deleted:
                    live = [r not in self.deleted for r in part.column(ROWID).to_pylist()]
                    if not all(live):
                        part = part.filter(pa.array(live))
                out.append(part)
        where = self._positions()
        for rowid in own:
            if rowid in where:
                part, offset = where[rowid]
                row = part.slice(offset, 1)
                if out and not row.schema.equals(out[0].schema):
                    row = row.cast(out[0].schema)
                out.append(row)
        return out

    def own_row(self, rowid: int) -> tuple[InsertedPart, int] | None:
        """Where inserted row `rowid` is, read as segment data is (`InsertedPart`), and its
        position there; None when no live inserted row has that id."""
        found = self._positions().get(rowid)
        if found is None:
            return None
        return InsertedPart(found[0], self.table.def_), found[1]

    def _positions(self) -> dict[int, tuple[pa.Table, int]]:
        """`_where`, brought up to date with the parts appended since."""
        placed, count = self._placed
        if placed is not self.inserted:
            self._where, count = {}, 0
        for part in self.inserted[count:]:
            self._place(part)
        self._placed = (self.inserted, len(self.inserted))
        return self._where

    def _place(self, part: pa.Table) -> None:
        self._where.update((r, (part, i)) for i, r in enumerate(part.column(ROWID).to_pylist()))

    def drop_inserted(self, rowids: np.ndarray) -> None:
        """Drop inserted rows (by provisional row id): only the parts holding them are
        filtered (by the rows' places there, without a search), and the keys they held
        leave `own_keys`."""
        where = self._positions()
        doomed: dict[int, tuple[pa.Table, list[int]]] = {}
        for rowid in rowids.tolist():
            found = where.pop(rowid, None)
            if found is not None:
                doomed.setdefault(id(found[0]), (found[0], []))[1].append(found[1])
        if not doomed:
            return
        kept: dict[int, pa.Table] = {}
        dropped = []
        for key, (part, offsets) in doomed.items():
            dropped.append(self._rows_at(part, offsets))
            if len(offsets) == part.num_rows:  # a single-row statement's part: dropped whole
                kept[key] = part.slice(0, 0)
                continue
            keep = np.ones(part.num_rows, bool)
            keep[offsets] = False
            kept[key] = part.filter(pa.array(keep))
            self._place(kept[key])  # its rows' new places
        self.inserted = self._replaced(kept)
        self._placed = (self.inserted, len(self.inserted))
        self._forget_keys(pa.concat_tables(dropped) if len(dropped) > 1 else dropped[0])

    @staticmethod
    def _rows_at(part: pa.Table, offsets: list[int]) -> pa.Table:
        """The rows of `part` at `offsets` (a whole part and a single row without a take)."""
        if len(offsets) == part.num_rows:
            return part
        if len(offsets) == 1:
            return part.slice(offsets[0], 1)
        return part.take(pa.array(offsets, pa.int64()))

    def _replaced(self, kept: dict[int, pa.Table]) -> list[pa.Table]:
        """A new list of the inserted parts (the old one stays as it was: `_remember`) with
        the parts named in `kept` (by id) replaced; looked for from the newest, where a
        block's statement mostly finds the rows it changes."""
        inserted = list(self.inserted)
        left = dict(kept)
        for i in range(len(inserted) - 1, -1, -1):
            part = left.pop(id(inserted[i]), None)
            if part is not None:
                inserted[i] = part
                if not left:
                    break
        return inserted

    def _forget_keys(self, rows: pa.Table) -> None:
        """Take dropped inserted rows out of `own_keys` (rebuilt instead where a DEFERRABLE
        key may hold a value twice: another row may hold the dropped row's value)."""
        keys = self.table.keys
        if self._own_keys is None or len(self._own_keys) != len(keys) or \
                any(k.def_.deferrable for k in keys):
            self._own_keys = None
            return
        ids = rows.column(ROWID).to_numpy()
        for uk, index in zip(keys, self._own_keys):
            index.remove(*uk.held(rows, ids))

    def replace_inserted(self, rows: pa.Table | None) -> None:
        """The inserted rows in a table's new shape, after ALTER TABLE (same row ids)."""
        self.inserted, self._loose = ([rows] if rows is not None else []), 0
        self._own_keys = None  # rebuilt for the key columns if ever asked for

    def own_keys(self, key: int) -> KeyIndex:
        """Index of unique key `key` over this transaction's live inserted rows."""
        if self._own_keys is None or len(self._own_keys) != len(self.table.keys):
            self._own_keys = [self.table.new_key_index(i) for i in range(len(self.table.keys))]
            ins = self.inserted_table()
            if ins is not None:
                ids = ins.column(ROWID).to_numpy()
                for i, index in enumerate(self._own_keys):
                    index.insert(*self.table.keys[i].held(ins, ids))
        return self._own_keys[key]

    def committed_holder(self, value: object, key: int) -> int:
        """`committed_holders` of one key value (as the key's index holds it, not NULL)."""
        if self.truncated:
            return MISSING
        held = self.table.find_key(value, key)
        return MISSING if held in self.deleted else held

    def committed_holders(self, rows: pa.Table, key: int) -> np.ndarray:
        """Row ids of committed rows (or commits in flight) holding the rows' keys that this
        transaction has not deleted; MISSING elsewhere."""
        if self.truncated:
            return np.full(rows.num_rows, MISSING, np.int64)
        held = self.table.find_keys(rows, key)
        if self.deleted:
            gone = np.fromiter((r in self.deleted for r in held.tolist()), bool, held.size)
            held[gone] = MISSING
        return held


def _first_met_in(overlay: TableOverlay, keys: list[int]
                  ) -> tuple[int, int, Table, object] | None:
    """Of the rows a transaction inserted in a table, the first written (per row, `keys` in
    order) whose key a committed row or an earlier one holds: (when it was written, which key,
    the table, its value); None if there is none."""
    rows = overlay.inserted_table()
    if rows is None:
        return None
    rows = rows.take(pa.array(np.argsort(-rows.column(ROWID).to_numpy(), kind="stable")))
    written = -rows.column(ROWID).to_numpy()  # provisional ids count down as rows are written
    found = [(int(written[f[0]]), i, overlay.table, f[1])
             for i in keys for f in [_first_met(overlay, rows, i)] if f is not None]
    return min(found, key=lambda f: f[:2]) if found else None


def _first_met(overlay: TableOverlay, rows: pa.Table, key: int) -> tuple[int, object] | None:
    """The first of `rows` (a transaction's inserted rows, in the order written) whose value of
    unique key `key` a committed row (not deleted since) or an earlier one of them holds: its
    position and that value; None when the key's values are unique."""
    values, at = overlay.table.keys[key].held(rows, np.arange(rows.num_rows))
    met = (overlay.committed_holders(rows, key)[at] != MISSING) | _repeated(values)
    hit = np.flatnonzero(met)
    return (int(at[hit[0]]), values[hit[0]]) if hit.size else None


def _repeated(values: np.ndarray) -> np.ndarray:
    """Whether each value occurred earlier in `values`."""
    repeated = np.ones(values.size, bool)
    if values.dtype != object:
        repeated[np.unique(values, return_index=True)[1]] = False  # first occurrences
        return repeated
    seen: set = set()
    for i, value in enumerate(values.tolist()):
        if value not in seen:
            seen.add(value)
            repeated[i] = False
    return repeated


def _hold_deferred(overlay: TableOverlay, rows: pa.Table, ids: np.ndarray, key: int) -> None:
    """Add inserted rows' values of deferred unique key `key` to the transaction's own, noting
    (`TableOverlay.rechecks`) when one meets a committed row, an earlier row or another of
    them; once noted, the rows are only added."""
    values, at = overlay.table.keys[key].held(rows, ids)
    own = overlay.own_keys(key)
    if values.size and key not in overlay.rechecks and _meets(overlay, own, key, rows, values):
        overlay.rechecks.add(key)
    own.insert(values, at)


def _meets(overlay: TableOverlay, own: KeyIndex, key: int, rows: pa.Table,
           values: np.ndarray) -> bool:
    """Whether one of `values` (key `key` of `rows`, not NULL) is held by a committed row the
    transaction has not deleted, one it inserted, or an earlier one of them; a single row's
    (a block of one-row INSERTs) looked up by value."""
    if values.size == 1:
        value = values.tolist()[0]
        return own.get(value) != MISSING or overlay.committed_holder(value, key) != MISSING
    return bool((own.lookup(values) != MISSING).any() or _repeated(values).any()
                or (overlay.committed_holders(rows, key) != MISSING).any())


class InsertedPart:
    """A part of a transaction's inserted rows (logical columns) read as segment data is, by
    physical column name (`value`, `column`): what a single-row write by key reads of a row
    the transaction inserted."""

    def __init__(self, part: pa.Table, table_def) -> None:
        self.part = part
        self.names = {c.physical: c.name for c in table_def.columns}

    def value(self, physical: str, arrow_type: pa.DataType, missing: object,
              position: int) -> object:
        """One row's value of a column, as a segment's `value` reads it."""
        return self.part.column(self.names[physical])[position].as_py()

    def column(self, physical: str, arrow_type: pa.DataType,
               missing: object = None) -> pa.ChunkedArray:
        """A whole column, as a segment's `column` reads it."""
        return self.part.column(self.names[physical])


class NewestVersions:
    """The rows of a table a READ COMMITTED statement found changed by another commit when it
    came to lock or commit them (it waited for them, or they changed since its snapshot),
    replaced by their newest committed versions: PostgreSQL's EvalPlanQual re-check. The
    statement keeps its snapshot for every other row, so rows committed since that it never
    met stay unseen. Our storage keeps no link from a row to its next version: the newest
    version is the live row holding the old one's value of the table's primary key (else
    first unique key); none holding it means the row is gone. `follows` is False when the
    rows cannot be followed so (no unique key, a NULL in it, a definition changed since):
    the statement then runs again on a fresh snapshot."""

    def __init__(self, table: Table, snapshot: TableSnapshot) -> None:
        self.table = table
        self.snapshot = snapshot  # the statement's
        self.key = self.followed_key(table)
        self.follows = bool(table.keys) and table.def_ is snapshot.table_def
        self.waited: set[int] = set()  # row ids in `snapshot` found changed
        self.rows: pa.Table | None = None  # their newest versions (logical columns, row id)

    @staticmethod
    def followed_key(table: Table) -> int:
        """The unique key whose value leads from a row to its newest version: the primary
        key, else the first."""
        return next((i for i, k in enumerate(table.keys) if k.def_.primary), 0)

    def add(self, rowids: list[int]) -> bool:
        """Take in rows the statement was locking or deleting (ids in its snapshot or newest
        versions it read here) and find the newest version of each of those changed since
        (unless not `follows`); whether any had changed."""
        current = self.table.snapshot()
        ids = np.asarray(rowids, dtype=np.int64)
        gone = ids[current.locate(ids)[0] < 0]
        if not gone.size:
            return False
        if self.follows:
            old = self.snapshot.rows_by_id(gone, [], with_rowid=True).column(ROWID)
            self.waited.update(old.to_pylist())
            self.rows = self._newest(current)
        return True

    def _newest(self, current: TableSnapshot) -> pa.Table | None:
        """The live versions in `current` of the rows in `waited`, found by key."""
        uk = self.table.keys[self.key]
        old = self.snapshot.rows_by_id(np.fromiter(sorted(self.waited), np.int64),
                                       list(uk.def_.columns))
        if uk.valid(old) is not None:
            self.follows = False  # a NULL in the key: no way to tell its newest version
            return None
        _snap, held = self.table.lookup_keys(old, self.key, current)
        found = held[held != MISSING]
        return current.rows_by_id(found) if found.size else None

    def overlay(self, own: TableOverlay | None) -> TableOverlay:
        """The statement's own writes to the table with the waited rows' old versions
        hidden and their newest versions added (as committed rows, which it locks)."""
        if own is None:
            own = TableOverlay(self.table)
        inserted = list(own.inserted)
        if self.rows is not None:
            rows = self.rows
            if inserted and not rows.schema.equals(inserted[0].schema):
                rows = rows.cast(inserted[0].schema)
            inserted.append(rows)
        return TableOverlay(self.table, inserted, own.deleted | self.waited, own.truncated,
                            by_key=False)


@dataclass
class Rechecked:
    """A transaction's writes as a re-checking statement reads them (`ExecContext.overlay`):
    its target table's with the waited rows at their newest versions (`NewestVersions`)."""

    txn: Transaction
    newest: NewestVersions

    def table_overlay(self, table_id: int) -> TableOverlay | None:
        """The block's overlay of a table; for the target table after a wait, one that also
        hides the waited rows' old versions and adds their newest ones."""
        own = self.txn.table_overlay(table_id)
        if table_id != self.newest.table.id or not self.newest.waited:
            return own
        return self.newest.overlay(own)


class Transaction:
    """Buffered writes of one session.

    `early_checks=False` leaves every key check to the commit: for a statement that commits
    on its own with nothing to evaluate between its writes and its commit (no RETURNING, no
    ON CONFLICT), the commit's check under the commit lock gives the same outcome, and the
    early one would only repeat it."""

    def __init__(self, early_checks: bool = True, locks: LockHolder | None = None) -> None:
        self.overlays: dict[int, TableOverlay] = {}
        self._next_provisional = -1
        self.early_checks = early_checks
        # A block's row locks: committed rows it deletes are locked first (row_locks.py).
        self.locks = locks
        # Foreign keys (foreign_keys.py): while set, told of every batch of rows inserted
        # ("i", with row ids) and deleted ("d", the rows as they were); the checks deferred
        # to COMMIT; SET CONSTRAINTS modes by constraint name ("" for ALL).
        self.watch: Callable[[str, Table, pa.Table], None] | None = None
        self.deferred_checks: list = []
        self.constraint_modes: dict[str, bool] = {}
        # While a block's statement runs (`begin_statement`): how to undo each change it
        # buffered, newest last, and the deferred checks it found already.
        self._undo: list[Callable[[], None]] | None = None
        self._checks_before = 0
        # A block's: told each table's id when the transaction first writes it, and the id
        # of each table a foreign-key check or action reads (`on_read`: every time; the
        # receiver keeps what it knows).
        self.on_first_write: Callable[[int], None] | None = None
        self.on_read: Callable[[int], None] | None = None

    def begin_statement(self) -> None:
        """Record how to undo what the next statement buffers (`undo_statement`)."""
        self._undo = []
        self._checks_before = len(self.deferred_checks)

    def end_statement(self) -> None:
        """The statement is over: its changes stay, and no more are recorded."""
        self._undo = None

    def undo_statement(self) -> None:
        """Put the buffered writes back as they were when the statement began, so it can run
        again (a re-check after a row wait); the rows it locked stay locked, as PostgreSQL's
        re-check keeps them."""
        for step in reversed(self._undo or []):
            step()
        del self.deferred_checks[self._checks_before:]
        self.begin_statement()

    def _remember(self, table: Table, deleting: list[int] | None = None) -> None:
        """While a statement records: how to undo the change about to be made to `table`
        (its inserted rows as they are, and which of `deleting` it hides anew)."""
        overlay = self.overlays.get(table.id)
        if overlay is None:
            self._undo.append(lambda: self.overlays.pop(table.id, None))  # type: ignore[union-attr]
            return
        # The list of inserted parts is only appended to, or replaced by another: its first
        # `count` parts stay the rows inserted so far.
        inserted, count = overlay.inserted, len(overlay.inserted)
        hidden = [r for r in deleting or () if r not in overlay.deleted]

        def undo() -> None:
            overlay.inserted, overlay._loose = inserted[:count], 0
            overlay.deleted.difference_update(hidden)
            overlay._own_keys = None  # rebuilt from `inserted` if ever asked for
        self._undo.append(undo)  # type: ignore[union-attr]

    @property
    def empty(self) -> bool:
        return not any(o.inserted or o.deleted or o.truncated for o in self.overlays.values())

    def table_overlay(self, table_id: int) -> TableOverlay | None:
        """The table's overlay, or None when the transaction has not touched it (the scan then reads
        the snapshot as is)."""
        return self.overlays.get(table_id)

    def row_by_key(self, table: Table, key: int, value: object
                   ) -> tuple[int, object, int] | None:
        """The row holding `value` of unique key `key` (not DEFERRABLE; as the index holds
        it) as this transaction sees it now: one it inserted (provisional id, `InsertedPart`,
        position) or a committed one it has not deleted (row id, segment data, position);
        MISSING as the id when none does; None when the storage cannot say (the general
        path then answers)."""
        overlay = self.overlays.get(table.id)
        if overlay is not None:
            own = overlay.own_keys(key).get(value)
            if own != MISSING:
                found = overlay.own_row(own)
                return None if found is None else (own, *found)
            if overlay.truncated:
                return MISSING, None, 0
        rowid, data, position = table.row_of_key(value, key)
        if rowid == MISSING or (overlay is not None and rowid in overlay.deleted):
            return MISSING, None, 0
        return None if data is None else (rowid, data, position)

    def _overlay(self, table: Table) -> TableOverlay:
        overlay = self.overlays.get(table.id)
        if overlay is None:
            if self.on_first_write is not None:
                self.on_first_write(table.id)
            overlay = self.overlays[table.id] = TableOverlay(table)
        return overlay

    def insert(self, table: Table, rows: pa.Table, rerun_after_wait: bool = False) -> pa.Table:
        """Buffer rows (logical schema); returns them with their provisional row ids.

        In a block, the rows' key values are held first (`LockHolder.lock_keys`): one another
        open block inserted is waited for, then checked as usual (23505 if it committed).
        `rerun_after_wait` (ON CONFLICT, which chose its rows before the wait): a wait raises
        `RowChanged` instead, so the statement runs again on what the other block left."""
        if self._undo is not None:
            self._remember(table)
        overlay = self._overlay(table)
        n = rows.num_rows
        if table.def_.constraints:
            ROW_CHECKS(table.def_, rows)
        ids = np.arange(self._next_provisional, self._next_provisional - n, -1, dtype=np.int64)
        locks = self.locks if n and self.early_checks and table.keys else None
        mark = locks.mark() if locks is not None else None
        if n and self.early_checks:
            try:
                for i, uk in enumerate(table.keys):
                    if self.key_deferred(uk.def_):  # checked at COMMIT (the store's prepare)
                        _hold_deferred(overlay, rows, ids, i)
                        continue
                    values, valid = self._check_keys(
                        table, overlay, rows, i, hold=None if locks is None else rerun_after_wait)
                    overlay.own_keys(i).insert(values, ids if valid is None else ids[valid])
            except SqlVecError:
                if mark is not None:  # no other block waits for rows that never were
                    locks.release_since(mark)  # type: ignore[union-attr]
                raise
        elif n:
            overlay._own_keys = None  # rebuilt from `inserted` if ever asked for
        self._next_provisional -= n
        with_ids = rows.append_column(ROWID, pa.array(ids) if n != 1 else one_value_array(
            int(ids[0]), _ROWID_TYPE))  # (a single-row statement's: packed directly)
        overlay.add(with_ids)
        if self.watch is not None:
            self.watch("i", table, with_ids)
        return with_ids

    def _hold(self, table: Table, key: int, values: list, rerun_after_wait: bool) -> None:
        """Hold key values this block inserts (`LockHolder.lock_keys`) before they are
        checked against committed rows; after a wait, `rerun_after_wait` raises `RowChanged`
        (40001 if repeatable): the statement chose its rows before the other block ended."""
        locks = self.locks
        assert locks is not None
        if locks.lock_keys(table, key, values) and rerun_after_wait:
            raise locks.changed()  # (what it took goes with the failed insert's release)

    def key_deferred(self, key: KeyDef) -> bool:
        """Whether unique key `key` is checked at COMMIT in this transaction: DEFERRABLE and
        deferred (INITIALLY DEFERRED, or SET CONSTRAINTS, whose ALL is the mode named "")."""
        if not key.deferrable:
            return False
        modes = self.constraint_modes
        return modes.get(key.name, modes.get("", key.deferred))

    def rechecks_pending(self, table_id: int) -> bool:
        """Whether a DEFERRABLE unique key of the table has re-checks queued in this
        transaction (`TableOverlay.rechecks`)."""
        overlay = self.overlays.get(table_id)
        return overlay is not None and bool(overlay.rechecks)

    def check_own_keys(self, table: Table, key: int) -> None:
        """SET CONSTRAINTS ... IMMEDIATE: unique key `key` checked now over the rows this
        transaction inserted (among themselves, and against committed rows)."""
        overlay = self.overlays.get(table.id)
        rows = overlay.inserted_table() if overlay is not None else None
        if rows is not None and rows.num_rows:
            self._check_keys(table, overlay, rows.drop_columns([ROWID]), key, own=False)
        if overlay is not None:
            overlay.rechecks.discard(key)  # checked: no longer pending

    def reported_duplicate(self, exc: UniqueViolation, names: set[str] | None = None
                           ) -> UniqueViolation:
        """The 23505 PostgreSQL reports when the check of DEFERRABLE keys that raised `exc`
        (COMMIT, statement end, SET CONSTRAINTS ... IMMEDIATE; `names`: of these keys only)
        runs: its trigger queued each row written that met a row holding its key, in the
        order written (per row, the table's keys in order), and re-checks them in that order,
        so the first row written that still meets a committed row or one written before it
        is named. `exc` itself when it is about a key that is not DEFERRABLE. Called only
        once a check failed (`except UniqueViolation`): a commit that passes pays nothing."""
        checked = [(overlay, [i for i, uk in enumerate(overlay.table.keys)
                              if uk.def_.deferrable and (names is None or uk.def_.name in names)])
                   for overlay in self.overlays.values()]
        if not any(overlay.table.keys[i].def_.name == exc.constraint
                   for overlay, keys in checked for i in keys):
            return exc
        found = [f for overlay, keys in checked if keys
                 for f in [_first_met_in(overlay, keys)] if f is not None]
        if not found:
            return exc
        _, key, table, value = min(found, key=lambda f: f[:2])
        return table.duplicate_key(key, value)

    def check_update_order(self, table: Table, keys: list[int], rowids: np.ndarray,
                           new_rows: pa.Table) -> None:
        """UPDATE over unique keys that are not DEFERRABLE: PostgreSQL checks those as each
        row is written, in scan order, so a row taking a key that a later row still holds
        fails (`SET pos = pos + 1` over 1, 2, 3) though the statement's end state is unique.
        `rowids` and `new_rows` are the old row ids and new versions, in scan order."""
        if rowids.size < 2:
            return
        overlay = self.overlays.get(table.id) or TableOverlay(table)
        columns = sorted({c for i in keys for c in table.keys[i].def_.columns})
        if (rowids < 0).any():
            old = self._rows_of(table, overlay, rowids)
        else:
            old = table.snapshot().rows_by_id(rowids, columns)
        if old.num_rows != rowids.size:
            return  # a row is gone already: the commit fails on that (40001)
        positions = np.arange(rowids.size, dtype=np.int64)
        first = None
        for i in keys:
            uk = table.keys[i]
            old_keys, old_at = uk.held(old, positions)
            new_keys, new_at = uk.held(new_rows, positions)
            if old_keys.size == 0 or new_keys.size == 0:
                continue
            holders = uk.index.empty()
            holders.insert(old_keys, old_at)
            held_by = holders.lookup(new_keys)
            late = np.flatnonzero((held_by != MISSING) & (held_by > new_at))
            if late.size and (first is None or new_at[late[0]] < first[0]):
                first = (int(new_at[late[0]]), i, new_keys[late[0]])
        if first is not None:
            raise table.duplicate_key(first[1], first[2])

    def _check_keys(self, table: Table, overlay: TableOverlay, rows: pa.Table, key: int,
                    own: bool = True, hold: bool | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' keys the index holds, checked against the transaction's own rows and
        committed ones, and which rows those are (None: all; rows with a NULL in a key
        are not held, as NULLs are distinct). `own=False`: `rows` are the transaction's
        own rows, checked among themselves and against committed ones. `hold` (not None):
        the block holds the keys first (`_hold`; True: ON CONFLICT's re-run after a wait)."""
        # One row holding a key (no NULL in it): valid as it is.
        value = table.key_value_one(rows, key) if rows.num_rows == 1 else None
        valid = table.keys[key].valid(rows) if value is None else None
        if valid is not None:
            rows = rows.filter(pa.array(valid))
            if rows.num_rows == 0:
                return table.keys[key].no_keys(), valid
            value = table.key_value_one(rows, key) if rows.num_rows == 1 else None
        values = table.key_values(rows, key) if value is None else None
        if hold is not None:
            self._hold(table, key, [value] if value is not None else values.tolist(), hold)
        if value is not None:  # one row (not NULL): the same checks without NumPy
            dup = value if (own and overlay.own_keys(key).get(value) != MISSING) or \
                overlay.committed_holder(value, key) != MISSING else None
        else:
            dup = KeyIndex.first_duplicate(values)
        if value is None and dup is None:
            clash = overlay.committed_holders(rows, key) != MISSING
            if own:
                clash |= overlay.own_keys(key).lookup(values) != MISSING
            if clash.any():
                dup = values[np.flatnonzero(clash)[0]]
        if dup is not None:
            if overlay.deleted and not overlay.truncated and \
                    not table.still_live(np.fromiter(overlay.deleted, np.int64)):
                # A row this transaction deleted is gone already: a concurrent commit changed
                # it (and may hold its key now). The commit will fail on that; say so now.
                raise SerializationFailure("could not serialize access due to concurrent update")
            raise table.duplicate_key(key, dup)
        return (values if values is not None else table.keys[key].index.array_of(value)), valid

    def delete(self, table: Table, rowids: np.ndarray, keys_kept: np.ndarray | bool = False
               ) -> None:
        """Record deletes: committed row ids are hidden from later statements, provisional ones drop
        the rows this transaction inserted. In a block the committed rows are locked first,
        FOR UPDATE, or FOR NO KEY UPDATE where `keys_kept` (per row, or for all) says an
        UPDATE's new version keeps every unique-key value of the old."""
        rowids = np.asarray(rowids, dtype=np.int64)
        committed = rowids[rowids >= 0]
        provisional = rowids[rowids < 0]
        if self.locks is not None and committed.size:
            self._lock_rows(table, rowids, keys_kept)  # before anything is buffered
        if self._undo is not None:
            self._remember(table, committed.tolist())
        overlay = self._overlay(table)
        if self.watch is not None and rowids.size:
            self.watch("d", table, self._rows_of(table, overlay, rowids))
        overlay.deleted.update(committed.tolist())
        if provisional.size:
            overlay.drop_inserted(provisional)

    def _lock_rows(self, table: Table, rowids: np.ndarray, keys_kept: np.ndarray | bool
                   ) -> None:
        """Lock the committed ones of `rowids` for `delete`, each in its mode."""
        locks = self.locks
        assert locks is not None
        committed = rowids >= 0
        if type(keys_kept) is bool:  # one mode for all (a DELETE; an UPDATE of no key column)
            locks.lock(table, rowids[committed], mode=NO_KEY_UPDATE if keys_kept else UPDATE)
            return
        for mode, rows in ((NO_KEY_UPDATE, rowids[committed & keys_kept]),
                           (UPDATE, rowids[committed & ~keys_kept])):
            if rows.size:
                locks.lock(table, rows, mode=mode)

    @staticmethod
    def _rows_of(table: Table, overlay: TableOverlay, rowids: np.ndarray) -> pa.Table:
        """The rows about to be deleted (logical columns and row id, in the order of
        `rowids`), for `watch`."""
        committed = rowids[rowids >= 0]
        provisional = rowids[rowids < 0]
        parts = []
        if committed.size:
            parts.append(table.snapshot().rows_by_id(committed))
        ins = overlay.inserted_table() if provisional.size else None
        if ins is not None:
            parts.append(ins.filter(pc.is_in(ins.column(ROWID), value_set=pa.array(provisional))))
        if len(parts) == 1:
            return parts[0]
        schema = parts[0].schema
        rows = pa.concat_tables([p if p.schema.equals(schema) else p.cast(schema)
                                 for p in parts])
        place = {r: i for i, r in enumerate(rows.column(ROWID).to_pylist())}
        return rows.take(pa.array([place[r] for r in rowids.tolist() if r in place],
                                  pa.int64()))

    def truncate(self, table: Table) -> None:
        """TRUNCATE inside the transaction: earlier changes to the table are dropped and every
        committed row is hidden."""
        overlay = self._overlay(table)
        overlay.truncated = True
        overlay.inserted, overlay._loose = [], 0
        overlay.deleted = set()
        overlay._own_keys = None

    def ops(self) -> list:
        """The storage ops that commit this transaction."""
        ops: list = []
        for table_id, overlay in self.overlays.items():
            if overlay.truncated:
                ops.append(TruncateOp(table_id))
            if overlay.deleted:
                ops.append(DeleteOp(table_id, np.array(sorted(overlay.deleted), dtype=np.int64)))
            ins = overlay.inserted_table()
            if ins is not None:
                ops.append(InsertOp(table_id, ins.drop_columns([ROWID])))
        return ops
