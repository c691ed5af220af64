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
- Rows are locked in PostgreSQL's four modes (`KEY_SHARE` < `SHARE` < `NO_KEY_UPDATE` <
  `UPDATE`) with its conflict table: a DELETE and an UPDATE changing a unique key take FOR
  UPDATE, any other UPDATE FOR NO KEY UPDATE, so a FOR KEY SHARE holder (a foreign key's
  check of its referenced row) keeps a row from losing its key but not from other changes.
  A row held by several blocks, or in a mode weaker than FOR UPDATE, is a `RowLock`.
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

# PostgreSQL's row lock modes, weakest first (SELECT ... FOR KEY SHARE, FOR SHARE, FOR NO
# KEY UPDATE, FOR UPDATE).
KEY_SHARE, SHARE, NO_KEY_UPDATE, UPDATE = 1, 2, 3, 4

# The held modes each mode conflicts with (PostgreSQL's "Conflicting Row-Level Locks" table).
# A stronger mode conflicts with all a weaker one does, so a block holding a row in two modes
# holds it in the stronger.
_CONFLICTS = {
    KEY_SHARE: frozenset({UPDATE}),
    SHARE: frozenset({NO_KEY_UPDATE, UPDATE}),
    NO_KEY_UPDATE: frozenset({SHARE, NO_KEY_UPDATE, UPDATE}),
    UPDATE: frozenset({KEY_SHARE, SHARE, NO_KEY_UPDATE, UPDATE}),
}

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
        # Per table, what this block holds, in the order taken: row ids (`lock`; an `_Upgrade`
        # for a row locked again in a stronger mode) and, as (key number, value) pairs, the
        # unique-key values of its inserted rows (`lock_keys`).
        self.held: dict[LockedTable, list] = {}
        self.waits_for: LockHolder | None = None
        self.ended = False
        self.releases = 0  # ROLLBACK TOs that released some of the locks (`release_since`)
        self._alone: dict[int, RowLock] = {}  # `alone`

    def lock(self, table: LockedTable, rowids: np.ndarray, nowait: bool = False,
             mode: int = UPDATE) -> None:
        """Lock committed rows `rowids` of `table` in `mode` until this block ends, waiting
        for other blocks holding them in a conflicting mode. Raises `RowChanged` (40001 if
        repeatable) when a row is no longer the version read, 55P03 with `nowait` for a row
        another block holds so."""
        self._take(table, table.row_locks, rowids.tolist(), mode, nowait)

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
        return self._take(table, locks, [(key, v) for v in values], UPDATE)

    def _take(self, table: LockedTable, locks: dict, entries: list, mode: int,
              nowait: bool = False) -> bool:
        """Hold `entries` of `locks` in `mode` (row ids are checked live first), waiting for
        the blocks holding them in a conflicting mode; whether it waited."""
        get = locks.get
        wanted = entries if locks.keys().isdisjoint(entries) else \
            [e for e in entries
             if (h := get(e)) is None or (h is not self and held_mode(h, self) < mode)]
        waited = False
        while wanted:
            with table.lock:
                free = locks.keys().isdisjoint(wanted)  # (the many rows of a bulk check)
                blocker = None if free else _blocker(locks, wanted, self, mode)
                if blocker is None:
                    if locks is table.row_locks and \
                            not table.still_live(np.asarray(wanted, dtype=np.int64)):
                        raise self.changed(table, wanted)
                    taken = self.held.setdefault(table, [])
                    fresh = self if mode == UPDATE else self.alone(mode)
                    if free:
                        locks.update(dict.fromkeys(wanted, fresh))
                        taken.extend(wanted)
                        return waited
                    for entry in wanted:
                        if get(entry) is None:  # (most rows: `_grant` without a call)
                            locks[entry] = fresh
                            taken.append(entry)
                        else:
                            taken.append(self._grant(locks, entry, mode))
                    return waited
            if nowait:
                raise SqlVecError(
                    f'could not obtain lock on row in relation "{table.def_.name}"',  # type: ignore[attr-defined]
                    sqlstate="55P03")
            wait_for_end(blocker, self, self.waiting)
            waited = True
        return waited

    def _grant(self, locks: dict, entry: object, mode: int) -> object:
        """Hold `entry` in `mode` (stronger than any this block holds it in); what `held`
        records: the entry, or an `_Upgrade` saying the mode it had before."""
        held = locks.get(entry)
        if held is None:  # the common case, without building a mode table
            locks[entry] = self if mode == UPDATE else self.alone(mode)
            return entry
        before = held_mode(held, self)
        self._set_mode(locks, entry, mode)
        return entry if not before else _Upgrade(entry, before)

    def _set_mode(self, locks: dict, entry: object, mode: int) -> None:
        """This block's mode on `entry` becomes `mode` (0: none); others' stay."""
        held = locks.get(entry)
        modes = dict(held.modes) if type(held) is RowLock else \
            {} if held is None else {held: UPDATE}
        if mode:
            modes[self] = mode
        elif modes.pop(self, None) is None:
            return  # (not this block's)
        _put(locks, entry, modes)

    def _drop_all(self, table: LockedTable, entries: list) -> None:
        """`_drop` of every entry of `held[table]` (the block's end; under the table's lock):
        a row only this block holds, the most common, goes without a call."""
        mine = (self, *self._alone.values())
        rows, keys = table.row_locks, table.key_locks
        for entry in entries:
            if type(entry) is _Upgrade:
                continue
            locks = keys if type(entry) is tuple else rows
            if locks.get(entry) in mine:
                del locks[entry]
            else:
                self._drop(locks, entry)
        entries.clear()

    def _drop(self, locks: dict, entry: object) -> None:
        """This block no longer holds `entry` (`_set_mode` to none, faster for a row no
        other block holds)."""
        held = locks.get(entry)
        if held is self or (type(held) is RowLock and len(held.modes) == 1
                            and self in held.modes):
            del locks[entry]
        else:
            self._set_mode(locks, entry, 0)

    def alone(self, mode: int) -> RowLock:
        """The lock of a row only this block holds, in `mode` (weaker than FOR UPDATE): one
        object for all such rows (a `RowLock` is never changed, only replaced)."""
        lock = self._alone.get(mode)
        if lock is None:
            lock = self._alone[mode] = RowLock({self: mode})
        return lock

    def lock_free(self, table: LockedTable, rowids: np.ndarray, most: int | None,
                  mode: int = UPDATE) -> list[int]:
        """SKIP LOCKED: lock in `mode`, in order, those of `rowids` no other block holds in a
        conflicting mode, until `most` are this block's; their positions in `rowids`. A row
        changed since the snapshot raises as `lock` does."""
        locks = table.row_locks
        taken: list[int] = []
        with table.lock:
            for position, rowid in enumerate(rowids.tolist()):
                if most is not None and len(taken) == most:
                    break
                entry = locks.get(rowid)
                if conflicting(entry, self, mode) is not None:
                    continue
                if held_mode(entry, self) < mode:
                    if not table.still_live(np.array([rowid], dtype=np.int64)):
                        raise self.changed(table, [rowid])
                    self.held.setdefault(table, []).append(self._grant(locks, rowid, mode))
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
        rolled-back subtransaction, and a row held before it in a weaker mode is held in that
        mode again; waiters look at their rows again."""
        for table, entries in list(self.held.items()):
            with table.lock:  # (`pass_on` edits the lists under it)
                for entry in reversed(entries[mark.get(table, 0):]):
                    if type(entry) is _Upgrade:
                        self._set_mode(table.row_locks, entry.rowid, entry.before)
                    else:
                        self._drop(_locks_of(table, entry), entry)
                del entries[mark.get(table, 0):]
                if not entries:
                    del self.held[table]
        with _ended:
            self.releases += 1
            _ended.notify_all()

    def release(self) -> None:
        """The block ended (its commit applied, or rolled back): its rows are free, and those
        waiting for it wake."""
        for table, entries in list(self.held.items()):
            with table.lock:
                self._drop_all(table, entries)
        self.held = {}
        with _ended:
            self.ended = True
            _ended.notify_all()


def pass_on(table: LockedTable, rowid: int, new: int, writer: object) -> None:
    """A commit of `writer` (a block's holder, or None) replaces row `rowid` by `new` keeping
    its key: the other blocks holding it (FOR KEY SHARE, all a no-key update leaves beside
    it) hold `new` instead, as PostgreSQL carries such locks to a row's new version. Under
    the table's lock."""
    locks = table.row_locks
    entry = locks.get(rowid)
    if type(entry) is not RowLock:
        return
    others = {h: m for h, m in entry.modes.items() if h is not writer}
    if not others:
        return
    for holder in others:
        entries = holder.held.get(table, [])
        for i, taken in enumerate(entries):
            if taken == rowid:
                entries[i] = new
            elif type(taken) is _Upgrade and taken.rowid == rowid:
                entries[i] = _Upgrade(new, taken.before)
    _put(locks, rowid, {h: m for h, m in entry.modes.items() if h is writer})
    _put(locks, new, others)


def _put(locks: dict, entry: object, modes: dict) -> None:
    """Make `modes` (holder -> mode) the lock of `entry`: none, a holder alone FOR UPDATE, a
    holder's `alone` lock, or a new `RowLock`."""
    if not modes:
        locks.pop(entry, None)
    elif len(modes) > 1:
        locks[entry] = RowLock(modes)
    else:
        [(holder, mode)] = modes.items()
        locks[entry] = holder if mode == UPDATE else holder.alone(mode)


def _locks_of(table: LockedTable, entry: object) -> dict:
    """The table's key locks for a (key number, value) entry, its row locks for a row id."""
    return table.key_locks if type(entry) is tuple else table.row_locks


class _Upgrade:
    """In `LockHolder.held`: a row this block already held, in mode `before`, locked in a
    stronger mode since (what ROLLBACK TO gives back)."""

    __slots__ = ("rowid", "before")

    def __init__(self, rowid: object, before: int) -> None:
        self.rowid = rowid
        self.before = before


class RowLock:
    """A row held by several blocks at once, or by one in a mode weaker than FOR UPDATE:
    each holder's mode (a row held FOR UPDATE by one block is that `LockHolder` alone).
    Never changed once made: a change of modes puts a new one (`_put`)."""

    __slots__ = ("modes",)

    def __init__(self, modes: dict[LockHolder, int]) -> None:
        self.modes = modes


def held_mode(entry: object, holder: object) -> int:
    """The mode `holder` holds lock `entry` (a `LockHolder`, a `RowLock` or None) in; 0: none."""
    if entry is holder:
        return UPDATE
    if type(entry) is RowLock:
        return entry.modes.get(holder, 0)  # type: ignore[arg-type]
    return 0


def _blocker(locks: dict, entries: list, me: object, mode: int) -> LockHolder | None:
    """The first block keeping `me` from holding one of `entries` in `mode` (under the
    table's lock); None when none does."""
    get = locks.get
    for held in [h for e in entries if (h := get(e)) is not None and h is not me]:
        blocker = conflicting(held, me, mode)
        if blocker is not None:
            return blocker
    return None


def wait_unlocked(table: LockedTable, rowids: list, mode: int, waiting: Waiting) -> bool:
    """An autocommit statement's wait for the blocks holding any of `rowids` in a mode
    conflicting with `mode` (it locks nothing: its commit is checked against what they
    committed); whether it waited."""
    waited = False
    while True:
        with table.lock:
            blocker = _blocker(table.row_locks, rowids, None, mode)
        if blocker is None:
            return waited
        wait_for_end(blocker, None, waiting)
        waited = True


def conflicting(entry: object, me: object, mode: int = UPDATE) -> LockHolder | None:
    """Another block whose lock `entry` (a `LockHolder`, a `RowLock` or None) keeps `me`
    from taking it in `mode`; None when `me` may."""
    if entry is None or entry is me:
        return None
    if type(entry) is RowLock:
        conflicts = _CONFLICTS[mode]
        return next((h for h, m in entry.modes.items() if h is not me and m in conflicts),
                    None)
    return entry  # type: ignore[return-value]


def one_deadline(waiting: Waiting) -> Waiting:
    """`waiting` for waits that together are one lock acquisition (a schema change waiting
    for each block using its table in turn): their lock_timeout counts from the first wait,
    as PostgreSQL's for a lock several transactions hold, rather than anew for each."""
    deadline: float | None = None

    def left() -> tuple[Callable[[], None], int, int]:
        nonlocal deadline
        check, timeout_ms, deadlock_ms = waiting()
        if not timeout_ms:
            return check, 0, deadlock_ms
        now = time.monotonic()
        if deadline is None:
            deadline = now + timeout_ms / 1000
        return check, max(1, round((deadline - now) * 1000)), deadlock_ms
    return left


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
