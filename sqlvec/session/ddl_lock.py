"""The database-wide lock that makes a transaction's schema changes private until it ends.

DDL inside a transaction block is applied to the database's state in memory and written to no
manifest until COMMIT (`Store.begin_deferred`). So that no other session sees it, or writes
against it, the transaction holds this lock exclusively from its first DDL statement to its
end, as PostgreSQL's ACCESS EXCLUSIVE lock on the objects it alters, here for the whole
database: every other session holds it shared while it plans or runs a statement that reads
or writes the database, and waits meanwhile (honouring cancel, statement_timeout and
lock_timeout: 55P03). Statements that touch no data (SET, SHOW, BEGIN, ROLLBACK, ...) never
wait. A session may hold it shared several times (statements inside statements) and, holding
it shared, take it exclusively once no other session holds it.

Per table, the lock also knows which open transaction blocks used it (read or wrote it, as
PostgreSQL's AccessShareLock / RowExclusiveLock held until the block ends), recorded at a
block's first use of the table (`use`). A schema change of a table waits for those blocks to
end (`await_users`: in the row locks' wait-for graph, so a cycle is 40P01; lock_timeout 55P03,
cancel 57014), as ALTER TABLE's AccessExclusiveLock does; CREATE INDEX waits only for blocks
that wrote the table (ShareLock). An autocommit change of a table's shape then holds this
lock exclusively while it runs (no statement runs beside it); while an autocommit CREATE INDEX
runs on a table (`running`), a block's first write of the table waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlvec.errors import SqlVecError
from sqlvec.session.per_database import PerDatabase
from sqlvec.storage.row_locks import LockHolder, Waiting, wait_for_end

# How often a waiting session looks for a cancel or its timeouts.
_POLL_SECONDS = 0.05


class DdlLock:
    """One database's lock: shared holds per session, one exclusive holder."""

    def __init__(self) -> None:
        # Every statement takes and drops a shared hold: they use the condition's lock
        # directly (the same lock, so waiting and notifying on the condition still work).
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._shared: dict[int, int] = {}  # session pid -> holds
        self.owner: int | None = None  # the session whose schema changes are open
        self._waiting_exclusive: set[int] = set()
        # Told True when a session asks for the lock exclusively (or holds it), False once no
        # session does: the server's worker processes answer no read meanwhile (they do not
        # share this lock), so reads wait here as they would in one process.
        self.on_change: Callable[[bool], None] | None = None
        self._told = False
        self._waiting_shared: set[int] = set()  # sessions waiting to hold it shared
        # Per table id: the open blocks that used it (holder -> whether it wrote the table),
        # and the autocommit schema change running on it (pid, whether readers may go on).
        self._users: dict[int, dict[LockHolder, bool]] = {}
        self._running: dict[int, tuple[int, bool]] = {}

    def shared(self, pid: int, waiting: Callable[[], tuple[Callable[[], None], int]],
               ahead: bool = False) -> _SharedHold:
        """Hold the lock shared for a `with` block: waits while another session holds it
        exclusively (or waits to: its schema changes go first, unless `ahead`: the session
        holds row locks that the statements the waiter waits for may be waiting on, a cycle
        no wait-for graph sees; PostgreSQL too lets a lock's holder ahead of the waiters it
        blocks). `waiting` is asked only when there is a wait: it returns the check for
        interrupts and the timeout in ms (0: none)."""
        return _SharedHold(self, pid, waiting, ahead)

    def _acquire_shared(self, pid: int, waiting: Callable[[], tuple[Callable[[], None], int]],
                        ahead: bool) -> None:
        with self._mutex:
            if not self._may_share(pid, ahead):
                check_interrupts, timeout_ms = waiting()
                deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
                self._waiting_shared.add(pid)
                try:
                    while not self._may_share(pid, ahead):
                        _wait(self._cond, check_interrupts, deadline)
                finally:
                    self._waiting_shared.discard(pid)
            self._shared[pid] = self._shared.get(pid, 0) + 1

    def _release_shared(self, pid: int) -> None:
        with self._mutex:
            left = self._shared.get(pid, 1) - 1
            if left:
                self._shared[pid] = left
            else:
                self._shared.pop(pid, None)
                if self._waiting_exclusive:
                    self._cond.notify_all()

    def _may_share(self, pid: int, ahead: bool = False) -> bool:
        if self.owner is not None:
            return self.owner == pid
        # A session waiting to hold it exclusively goes first, unless this one holds it
        # already (a statement inside its statement) or goes `ahead`.
        waiting = self._waiting_exclusive
        return ahead or pid in self._shared or not waiting or \
            (len(waiting) == 1 and pid in waiting)

    def acquire_exclusive(self, pid: int, check_interrupts: Callable[[], None],
                          timeout_ms: int = 0, set_aside: bool = False) -> None:
        """Hold the lock exclusively until `release`: waits until no other session holds it.
        Two sessions each holding it shared and waiting for it exclusively would wait for
        each other: the later one gets 40P01, as PostgreSQL's deadlock detector says, unless
        `set_aside`: the session's shared holds protect nothing yet (an autocommit schema
        change at its start), so they do not count while it waits."""
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        with self._cond:
            if self.owner == pid:
                return
            aside = self._shared.pop(pid, 0) if set_aside else 0
            if aside:
                self._cond.notify_all()
            if self._waiting_exclusive and pid in self._shared:
                raise SqlVecError("deadlock detected", sqlstate="40P01",
                                  detail="Another transaction is waiting to change the schema "
                                         "and for this session's statement to end.")
            self._waiting_exclusive.add(pid)
            self._tell()
            try:
                while self.owner is not None or any(p != pid for p in self._shared):
                    _wait(self._cond, check_interrupts, deadline)
                self.owner = pid
                if aside:  # (given back only as the owner: failing, its release is a no-op)
                    self._shared[pid] = aside
            finally:
                self._waiting_exclusive.discard(pid)
                self._tell()
                self._cond.notify_all()

    def release(self, pid: int) -> None:
        """End `pid`'s exclusive hold (its transaction ended); nothing if it has none."""
        with self._cond:
            if self.owner == pid:
                self.owner = None
                self._tell()
                self._cond.notify_all()

    def watch(self, callback: Callable[[bool], None] | None) -> None:
        """Set `on_change` (None: no more calls), telling it at once the lock's state."""
        with self._cond:
            self.on_change = callback
            self._told = self.owner is not None or bool(self._waiting_exclusive)
            if callback is not None:
                callback(self._told)

    def _tell(self) -> None:
        """Tell `on_change` whether the lock is held or awaited exclusively, when that
        changed (under the condition's lock: calls come in order)."""
        locked = self.owner is not None or bool(self._waiting_exclusive)
        callback = self.on_change
        if callback is not None and locked != self._told:
            callback(locked)
        self._told = locked

    # Per-table use by transaction blocks -------------------------------------------------------

    def use(self, holder: LockHolder, table_id: int, wrote: bool,
            waiting: Callable[[], tuple[Callable[[], None], int]]) -> None:
        """A block's first read (or first write) of a table: recorded until `forget`, after
        waiting for an autocommit schema change running on the table."""
        with self._mutex:
            if self._blocked(table_id, holder.pid, wrote):
                check_interrupts, timeout_ms = waiting()
                deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
                while self._blocked(table_id, holder.pid, wrote):
                    _wait(self._cond, check_interrupts, deadline)
            users = self._users.setdefault(table_id, {})
            users[holder] = users.get(holder, False) or wrote

    def _blocked(self, table_id: int, pid: int, wrote: bool) -> bool:
        running = self._running.get(table_id)
        return running is not None and running[0] != pid and (wrote or not running[1])

    def forget(self, holder: LockHolder, table_ids: list[int]) -> None:
        """The block ended: it no longer uses those tables."""
        with self._mutex:
            for table_id in table_ids:
                users = self._users.get(table_id)
                if users is not None:
                    users.pop(holder, None)
                    if not users:
                        del self._users[table_id]

    def await_users(self, table_ids: list[int], pid: int, waiter: LockHolder | None,
                    waiting: Waiting, writers_only: bool, run: bool) -> None:
        """Wait until no other open block uses the tables (`writers_only`: wrote them), each
        wait in the row locks' wait-for graph with `waiter`. `run`: then mark the tables
        changed by `pid` until `done` (new blocks' uses wait), at once under the mutex. A
        session holding the lock exclusively meets 40P01 when the block it waits for waits
        for that lock."""
        while True:
            with self._mutex:
                user = self._user(table_ids, pid, writers_only)
                if user is None:
                    if run:
                        for table_id in table_ids:
                            self._running[table_id] = (pid, writers_only)
                    return
            wait_for_end(user, waiter, self._watching(user, pid, waiting))

    def has_users(self, table_ids: list[int], pid: int, writers_only: bool) -> bool:
        """Whether another open block uses one of the tables (`writers_only`: wrote it)."""
        with self._mutex:
            return self._user(table_ids, pid, writers_only) is not None

    def _user(self, table_ids: list[int], pid: int, writers_only: bool) -> LockHolder | None:
        """An open block of another session using one of the tables (under the mutex)."""
        for table_id in table_ids:
            for holder, wrote in self._users.get(table_id, {}).items():
                if holder.pid != pid and not holder.ended and (wrote or not writers_only):
                    return holder
        return None

    def _watching(self, user: LockHolder, pid: int, waiting: Waiting) -> Waiting:
        """`waiting`, whose check also fails a wait by the lock's exclusive holder for a block
        that waits for that lock: neither could go on (a cycle the row locks' graph misses)."""
        def watched() -> tuple[Callable[[], None], int, int]:
            check, timeout_ms, deadlock_ms = waiting()

            def check_both() -> None:
                check()
                self.check_cycle(pid, user.pid, "AccessExclusiveLock on a relation")
            return check_both, timeout_ms, deadlock_ms
        return watched

    def check_cycle(self, pid: int, other: int, awaited: str) -> None:
        """40P01 when `pid`, holding this lock exclusively, waits (for `awaited`) for session
        `other` while `other` waits for this lock: neither could go on, a cycle the row
        locks' wait-for graph does not see."""
        if self.owner == pid and other in self._waiting_shared:
            raise SqlVecError(
                "deadlock detected", sqlstate="40P01",
                detail=f"Process {pid} waits for {awaited}; blocked by process {other}.\n"
                       f"Process {other} waits for the schema changes of process {pid}.",
                hint="See server log for query details.")

    def done(self, table_ids: list[int], pid: int) -> None:
        """The autocommit schema change of `pid` on the tables ended: blocks waiting to use
        them go on."""
        with self._cond:
            for table_id in table_ids:
                if self._running.get(table_id, (None,))[0] == pid:
                    del self._running[table_id]
            self._cond.notify_all()


class _SharedHold:
    """One shared hold of a `DdlLock`, as a context manager (no generator: it is taken for
    every statement)."""

    __slots__ = ("lock", "pid", "waiting", "ahead")

    def __init__(self, lock: DdlLock, pid: int,
                 waiting: Callable[[], tuple[Callable[[], None], int]], ahead: bool) -> None:
        self.lock, self.pid, self.waiting, self.ahead = lock, pid, waiting, ahead

    def __enter__(self) -> None:
        self.lock._acquire_shared(self.pid, self.waiting, self.ahead)

    def __exit__(self, *exc: object) -> None:
        self.lock._release_shared(self.pid)


def _wait(cond: threading.Condition, check_interrupts: Callable[[], None],
          deadline: float | None) -> None:
    check_interrupts()
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SqlVecError("canceling statement due to lock timeout", sqlstate="55P03")
        cond.wait(min(left, _POLL_SECONDS))
    else:
        cond.wait(_POLL_SECONDS)


_LOCKS: PerDatabase[DdlLock] = PerDatabase(DdlLock)


def ddl_lock_of(database: object, name: str) -> DdlLock:
    """The lock of database `name` of a server (`Database`)."""
    return _LOCKS.of(database, name)
