"""Row locks: what makes a second writer of a row wait for the first, as PostgreSQL's READ
COMMITTED does, instead of failing the later commit with 40001.

A transaction block's UPDATE and DELETE lock each committed row they are about to delete (an
UPDATE deletes the old version) before buffering anything (`Transaction.delete`); the locks are
held until the block ends (`LockHolder.release`, after its commit is applied, so a waiter wakes
to the new version). Each table keeps its locked rows (`Table.row_locks`, row id -> holder)
under the table's lock, the lock under which a commit registers the rows it deletes
(`Table.prepare`): a row is either locked first (the commit then meets the lock: `RowLocked`) or
claimed first (the locker then finds it gone: `RowChanged`), never both.

- A block meeting a row locked by another open block waits for that block's end (its
  statement's cancel, statement_timeout and lock_timeout end the wait). If the other block
  rolled back, the row is locked and the statement goes on; if it committed a new version (or
  a commit changed the row since the statement's snapshot), `RowChanged` names the rows it
  was locking, and the statement re-checks those at their newest versions, keeping its
  snapshot for every other row (PostgreSQL's EvalPlanQual, `session/writes.py`); at
  REPEATABLE READ and SERIALIZABLE it is 40001.
- An autocommit write locks nothing: its commit meets the lock (`RowLocked`), waits for the
  holder's end and runs again.
- A block's INSERT registers the unique-key values of its rows (`LockHolder.lock_keys`,
  `Table.key_locks`, under the table's lock, before checking them against committed rows): a
  second block inserting one of them waits for the first's end, then checks again (23505 if
  it committed, on if it rolled back); an autocommit commit meeting one (`Table.prepare`)
  raises `KeyLocked`, waits and runs again, as for a row.
- SELECT ... FOR SHARE / FOR KEY SHARE lock rows shared (`SharedLock`): such readers do not
  wait for each other; a writer waits for all of them.
- Waits form a wait-for graph (each holder waits for at most one other); a waiter still waiting
  after deadlock_timeout looks for a cycle through itself and, finding one, fails with 40P01.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from sqlvec.errors import SerializationFailure, SqlVecError

# How often a waiter looks at its interrupts (cancel, statement_timeout) and timeouts.
_POLL_SECONDS = 0.05

# A wait's interrupt check (raises to end it), its lock_timeout and deadlock_timeout in ms.
Waiting = Callable[[], tuple[Callable[[], None], int, int]]

_ids = itertools.count(1000)
_ended = threading.Condition()  # notified whenever a holder ends (its locks released)


class LockedTable(Protocol):
    """What locking rows needs of a table (storage/table.py's, which imports this module)."""

    id: int
    row_locks: dict[int, object]
    key_locks: dict[tuple[int, object], object]
    lock: threading.RLock
    def_: object

    def still_live(self, rowids: np.ndarray) -> bool:
        """Whether the rows are live and no commit in flight deletes them."""


class RowChanged(SerializationFailure):
    """A row to lock was changed by a commit after the statement's snapshot: at READ
    COMMITTED the statement re-checks the rows it was locking (`rowids` of `table`, None when
    not rows: a key value waited for) at their newest versions; anywhere else this is the
    40001 PostgreSQL gives."""

    def __init__(self, table: LockedTable | None = None,
                 rowids: list[int] | None = None) -> None:
        super().__init__("could not serialize access due to concurrent update")
        self.table = table
        self.rowids = rowids


class RowLocked(SerializationFailure):
    """A commit deletes a row another open block holds locked: the committer waits for the
    holder's end and runs again (left unhandled, it is the 40001 of a lost race)."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__("could not serialize access due to concurrent update")
        self.holder = holder


class KeyLocked(RowLocked):
    """A commit inserts a unique-key value another open block has inserted: the committer
    waits for that block's end and runs again (23505 then if it committed)."""


class LockHolder:
    """The row locks of one transaction block, and what its waits check."""

    def __init__(self, pid: int, waiting: Waiting, repeatable: bool = False) -> None:
        self.pid = pid
        self.xid = next(_ids)  # the transaction number deadlock reports name
        self.waiting = waiting
        self.repeatable = repeatable  # REPEATABLE READ or SERIALIZABLE: no re-run, 40001
        # Per table, what this block holds, in the order taken: row ids (`lock`) and, as
        # (key number, value) pairs, the unique-key values of its inserted rows (`lock_keys`).
        self.held: dict[LockedTable, list] = {}
        self.waits_for: LockHolder | None = None
        self.ended = False
        self.releases = 0  # ROLLBACK TOs that released some of the locks (`release_since`)

    def lock(self, table: LockedTable, rowids: np.ndarray, nowait: bool = False,
             shared: bool = False) -> None:
        """Lock committed rows `rowids` of `table` until this block ends, waiting for other
        blocks holding them (`shared`, FOR SHARE: only for those holding them exclusively).
        Raises `RowChanged` (40001 if repeatable) when a row is no longer the version read,
        55P03 with `nowait` for a row another block holds."""
        self._take(table, table.row_locks, rowids.tolist(), shared, nowait)

    def lock_keys(self, table: LockedTable, key: int, values: list) -> bool:
        """Hold the values of unique key `key` this block inserts until it ends, waiting for
        other blocks that inserted one of them; whether it waited. Called before the values
        are checked against committed rows, so a holder's commit is either seen by that
        check or waited for."""
        locks = table.key_locks
        if len(values) == 1:  # a single-row INSERT's value no one holds: taken at once
            entry = (key, values[0])
            with table.lock:
                if entry not in locks:
                    locks[entry] = self
                    self.held.setdefault(table, []).append(entry)
                    return False
        return self._take(table, locks, [(key, v) for v in values], False)

    def _take(self, table: LockedTable, locks: dict, entries: list, shared: bool,
              nowait: bool = False) -> bool:
        """Hold `entries` of `locks` (row ids are checked live first), waiting for the
        blocks holding them in a conflicting mode; whether it waited."""
        wanted = [e for e in entries if not self._holds(locks.get(e), shared)]
        waited = False
        while wanted:
            with table.lock:
                blocker = next((b for b in (conflicting(locks.get(e), self, shared)
                                            for e in wanted) if b is not None), None)
                if blocker is None:
                    if locks is table.row_locks and \
                            not table.still_live(np.asarray(wanted, dtype=np.int64)):
                        raise self.changed(table, wanted)
                    for entry in wanted:
                        self._grant(locks, entry, shared)
                    self.held.setdefault(table, []).extend(wanted)
                    return waited
            if nowait:
                raise SqlVecError(
                    f'could not obtain lock on row in relation "{table.def_.name}"',  # type: ignore[attr-defined]
                    sqlstate="55P03")
            wait_for_end(blocker, self, self.waiting)
            waited = True
        return waited

    def _holds(self, entry: object, shared: bool) -> bool:
        """Whether this block holds a lock entry in the mode asked for (or a stronger one)."""
        return entry is self or \
            (shared and type(entry) is SharedLock and self in entry.holders)  # type: ignore[union-attr]

    def _grant(self, locks: dict, entry: object, shared: bool) -> None:
        held = locks.get(entry)
        if not shared:
            locks[entry] = self  # an upgrade of this block's shared lock too
        elif held is None:
            locks[entry] = SharedLock(self)
        elif type(held) is SharedLock and self not in held.holders:
            held.holders.append(self)

    def lock_free(self, table: LockedTable, rowids: np.ndarray, most: int | None,
                  shared: bool = False) -> list[int]:
        """SKIP LOCKED: lock, in order, those of `rowids` no other block holds (in a mode
        conflicting with `shared`), until `most` are this block's; their positions in
        `rowids`. A row changed since the snapshot raises as `lock` does."""
        locks = table.row_locks
        taken: list[int] = []
        with table.lock:
            for position, rowid in enumerate(rowids.tolist()):
                if most is not None and len(taken) == most:
                    break
                entry = locks.get(rowid)
                if conflicting(entry, self, shared) is not None:
                    continue
                if not self._holds(entry, shared):
                    if not table.still_live(np.array([rowid], dtype=np.int64)):
                        raise self.changed(table, [rowid])
                    self._grant(locks, rowid, shared)
                    self.held.setdefault(table, []).append(rowid)
                taken.append(position)
        return taken

    def changed(self, table: LockedTable | None = None,
                rowids: list[int] | None = None) -> SerializationFailure:
        """A row to lock changed since the snapshot (one of `rowids` of `table`, those it was
        locking): re-checked at READ COMMITTED, else 40001."""
        if self.repeatable:
            return SerializationFailure("could not serialize access due to concurrent update")
        return RowChanged(table, rowids)

    def mark(self) -> dict[LockedTable, int]:
        """Where the block's locks stand (at a SAVEPOINT), for `release_since`."""
        return {table: len(rowids) for table, rowids in self.held.items()}

    def release_since(self, mark: dict[LockedTable, int]) -> None:
        """ROLLBACK TO SAVEPOINT: the locks taken since `mark` go, as those of PostgreSQL's
        rolled-back subtransaction; waiters look at their rows again."""
        self._free({table: rowids[mark.get(table, 0):] for table, rowids in self.held.items()})
        self.held = {table: rowids[:mark[table]] for table, rowids in self.held.items()
                     if mark.get(table)}
        with _ended:
            self.releases += 1
            _ended.notify_all()

    def release(self) -> None:
        """The block ended (its commit applied, or rolled back): its rows are free, and those
        waiting for it wake."""
        self._free(self.held)
        self.held = {}
        with _ended:
            self.ended = True
            _ended.notify_all()

    def _free(self, held: dict[LockedTable, list]) -> None:
        for table, entries in held.items():
            with table.lock:
                for entry in entries:
                    locks = table.key_locks if type(entry) is tuple else table.row_locks
                    lock = locks.get(entry)
                    if lock is self:
                        del locks[entry]
                    elif type(lock) is SharedLock and self in lock.holders:
                        lock.holders.remove(self)
                        if not lock.holders:
                            del locks[entry]


class SharedLock:
    """A row locked FOR SHARE (or FOR KEY SHARE) by one or more blocks at once: they do not
    wait for each other; a writer (or FOR UPDATE) waits for all of them."""

    __slots__ = ("holders",)

    def __init__(self, holder: LockHolder) -> None:
        self.holders = [holder]


def conflicting(entry: object, me: object, shared: bool) -> LockHolder | None:
    """Another block whose lock `entry` (a `LockHolder`, a `SharedLock` or None) keeps `me`
    from taking it, shared or not; None when `me` may."""
    if entry is None or entry is me:
        return None
    if type(entry) is SharedLock:
        return None if shared else next((h for h in entry.holders if h is not me), None)
    return entry  # type: ignore[return-value]


def wait_for_end(holder: LockHolder, waiter: LockHolder | None, waiting: Waiting) -> None:
    """Wait until `holder` ends or releases some of its locks. `waiter` (None: an autocommit statement, which holds no lock
    and so closes no cycle) is in the wait-for graph meanwhile; after deadlock_timeout it looks
    for a cycle through itself (40P01). The interrupt check ends the wait (57014), and so does
    lock_timeout (55P03)."""
    check, timeout_ms, deadlock_ms = waiting()
    start = time.monotonic()
    deadline = start + timeout_ms / 1000 if timeout_ms else None
    checked = waiter is None
    with _ended:
        if waiter is not None:
            waiter.waits_for = holder
        releases = holder.releases
        try:
            while not holder.ended and holder.releases == releases:
                check()
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise SqlVecError("canceling statement due to lock timeout",
                                      sqlstate="55P03")
                if not checked and now - start >= deadlock_ms / 1000:
                    checked = True
                    _raise_if_deadlocked(waiter)  # type: ignore[arg-type]
                _ended.wait(_POLL_SECONDS)
        finally:
            if waiter is not None:
                waiter.waits_for = None


def _raise_if_deadlocked(waiter: LockHolder) -> None:
    """40P01 when the wait-for graph leads from `waiter` back to it (under `_ended`)."""
    chain = [waiter]
    node = waiter.waits_for
    while node is not None and node is not waiter and node not in chain:
        chain.append(node)
        node = node.waits_for
    if node is not waiter:
        return
    lines = [f"Process {a.pid} waits for ShareLock on transaction {b.xid}; "
             f"blocked by process {b.pid}."
             for a, b in zip(chain, chain[1:] + chain[:1])]
    raise SqlVecError("deadlock detected", sqlstate="40P01", detail="\n".join(lines),
                      hint="See server log for query details.")
