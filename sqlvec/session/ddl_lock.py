"""The database-wide lock that makes a transaction's schema changes private until it ends.

DDL inside a transaction block is applied to the database's state in memory and written to no
manifest until COMMIT (`Store.begin_deferred`). So that no other session sees it, or writes
against it, the transaction holds this lock exclusively from its first DDL statement to its
end, as PostgreSQL's ACCESS EXCLUSIVE lock on the objects it alters, here for the whole
database: every other session holds it shared while it plans or runs a statement that reads
or writes the database, and waits meanwhile (honouring cancel, statement_timeout and
lock_timeout: 55P03). Statements that touch no data (SET, SHOW, BEGIN, ROLLBACK, ...) never
wait, nor do queries of the server's live state (pg_stat_activity, ...: live_reads.py). A
session may hold it shared several times (statements inside statements) and, holding it
shared, take it exclusively once no other session holds it.

Per table, the lock also knows which open transaction blocks used it (read or wrote it, as
PostgreSQL's AccessShareLock / RowExclusiveLock held until the block ends), recorded at a
block's first use of the table (`use`). A schema change of a table waits for those blocks to
end (`await_users`: in the row locks' wait-for graph, so a cycle is 40P01; lock_timeout 55P03,
cancel 57014), as ALTER TABLE's AccessExclusiveLock does; CREATE INDEX waits only for blocks
that wrote the table (ShareLock); while an autocommit CREATE INDEX runs on a table
(`running`), a block's first write of the table waits for it.

An autocommit change of a table's shape claims its tables (`claim`), as PostgreSQL's queued
AccessExclusiveLock request: from then on a statement that reads or writes one of them (its
shared hold names the tables its plan resolved) waits behind the change, unless its block
already used one of them or holds row locks (it goes ahead, and the change waits for it).
Once no other block uses the tables, the claim runs (`await_claim`): it also covers the
tables reached through foreign keys, waits for the statements holding any of them to end,
and keeps new ones out until the change is done (`unclaim`). Statements on other tables never
wait for it. A change inside a block claims its tables too while it waits for the blocks
using them (`Claim.block`), until it holds the lock exclusively. A claim is granted its
tables one after the other, as PostgreSQL locks them: a block using a later one that then
uses a granted one fails with 40P01. The tables a statement parsed in an extended-protocol
batch reads stay held until the batch ends (`hold_parsed`), as a statement's do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlvec.errors import SqlVecError
from sqlvec.session.per_database import PerDatabase
from sqlvec.storage.row_locks import LockHolder, Waiting, wait_for_end

# How often a waiting session looks for a cancel or its timeouts.
_POLL_SECONDS = 0.05


@dataclass(eq=False)
class Claim:
    """An autocommit schema change's claim on the tables it changes (`named`), and on those it
    reaches through foreign keys or CASCADE (`reach`, which includes `named`)."""

    pid: int
    named: frozenset[int]
    reach: frozenset[int]
    # `named` in the statement's order, and those of them no other block uses any more: as
    # PostgreSQL locks a statement's tables one after the other, each waiting for its users,
    # a block using a later one fails (40P01) rather than use a table granted already.
    order: tuple[int, ...] = ()
    granted: frozenset[int] = frozenset()
    running: bool = False  # past the wait for blocks: statements on `reach` queue too
    changing: bool = False  # no statement holds a table of `reach`: the change is under way
    # A change inside a transaction block: it goes on by taking the lock exclusively, which
    # waits for every statement under way, so none of those queues behind it.
    block: bool = False


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
        self._waiting_tables: set[int] = set()  # sessions waiting behind a claim otherwise
        # Per session waiting behind claims, the tables its statement uses and whether it
        # holds row locks (`_queued`'s arguments): which claims queue it (`blockers`).
        self._queued_on: dict[int, tuple[frozenset[int], bool]] = {}
        # Per table id: the open blocks that used it (holder -> whether it wrote the table),
        # and the autocommit schema change running on it (pid, whether readers may go on).
        self._users: dict[int, dict[LockHolder, bool]] = {}
        self._running: dict[int, tuple[int, bool]] = {}
        # The autocommit schema changes' claims, and per session the table sets its running
        # statements hold (what a claim waits to end before it runs).
        self._claims: list[Claim] = []
        self._holding: dict[int, list[frozenset[int]]] = {}
        # Per session, the table sets of the statements its extended-protocol batch parsed,
        # held until the batch ends (`hold_parsed`).
        self._parsed: dict[int, list[frozenset[int]]] = {}

    def shared(self, pid: int, waiting: Callable[[], tuple[Callable[[], None], int]],
               ahead: bool = False, tables: frozenset[int] = frozenset(),
               rows_held: bool = False) -> SharedHold:
        """Hold the lock shared for a `with` block, and `tables` against claims: waits while
        another session holds it exclusively (or waits to: its schema changes go first, unless
        `ahead`: the session holds row locks that the statements the waiter waits for may be
        waiting on, a cycle no wait-for graph sees; PostgreSQL too lets a lock's holder ahead
        of the waiters it blocks), and while another session's claim queues one of `tables`
        (`rows_held`: the session's block holds row locks, and goes ahead as above). `waiting`
        is asked only when there is a wait: it returns the check for interrupts and the
        timeout in ms (0: none)."""
        return SharedHold(self, pid, waiting, ahead, tables, rows_held)

    def _acquire_shared(self, hold: SharedHold) -> None:
        pid, ahead = hold.pid, hold.ahead
        with self._mutex:
            if (self.owner is not None or self._waiting_exclusive or self._claims) and (
                    not self._may_share(pid, ahead) or (
                    self._claims and self._queued(pid, hold.tables, hold.rows_held))):
                self._wait_while(pid, lambda: not self._may_share(pid, ahead) or self._queued(
                    pid, hold.tables, hold.rows_held), hold.waiting, self._waiting_shared,
                    (hold.tables, hold.rows_held))
            self._shared[pid] = self._shared.get(pid, 0) + 1
            if hold.tables:
                held = self._holding.get(pid)
                if held is None:
                    self._holding[pid] = [hold.tables]
                else:
                    held.append(hold.tables)

    def _extend(self, hold: SharedHold, tables: frozenset[int]) -> None:
        """`hold` covers `tables` too (a statement planned again reads other tables): it goes
        ahead of claims still waiting (the statement is under way: they may wait for it), and
        waits while a change is under way."""
        with self._mutex:
            self._wait_while(hold.pid, lambda: self._queued(hold.pid, tables, True), hold.waiting,
                             queued_on=(tables, True))
            self._holding.setdefault(hold.pid, []).append(tables)
            hold.extra.append(tables)

    def _release_shared(self, hold: SharedHold) -> None:
        pid = hold.pid
        with self._mutex:
            if hold.tables:
                holding = self._holding[pid]
                if holding[-1] is hold.tables and not hold.extra and not self._claims:
                    holding.pop()  # (the common case, inline: holds end as they began)
                    if not holding:
                        del self._holding[pid]
                else:
                    self._let_go_tables(pid, [hold.tables, *hold.extra])
            elif hold.extra:
                self._let_go_tables(pid, hold.extra)
            hold.extra = []
            left = self._shared.get(pid, 1) - 1
            if left:
                self._shared[pid] = left
            else:
                self._shared.pop(pid, None)
                if self._waiting_exclusive:
                    self._cond.notify_all()

    def hold_parsed(self, pid: int, tables: frozenset[int],
                    waiting: Callable[[], tuple[Callable[[], None], int]]) -> None:
        """Hold `tables` against claims from a statement's Parse until the extended-protocol
        batch ends (`let_go_parsed`), as PostgreSQL's Parse locks the tables it reads until
        its implicit transaction ends: a claim made meanwhile waits for the batch, whose
        statements go ahead of it. Waits while a change of one of them is under way (the
        statement is then planned again).

        Without the mutex once the session's list exists (only the session changes it): the
        tables are added before the claims are looked at, so a claim made after that look
        sees them when it looks for holders, and one made before is waited for here."""
        held = self._parsed.get(pid)
        if held is None:
            with self._mutex:  # (claims iterate the dict under the mutex)
                held = self._parsed[pid] = []
        held.append(tables)
        if self._claims:
            with self._mutex:
                self._wait_while(pid, lambda: self._queued(pid, tables, True), waiting,
                                 queued_on=(tables, True))

    def let_go_parsed(self, pid: int, last: bool = False) -> None:
        """The session's batch ended (Sync): the tables its Parses held go (`last`: the
        session ends)."""
        held = self._parsed.get(pid)
        if held:
            held.clear()
            if self._claims:
                with self._cond:
                    self._cond.notify_all()
        if last and held is not None:
            with self._mutex:
                del self._parsed[pid]

    def _let_go_tables(self, pid: int, sets: list[frozenset[int]]) -> None:
        """The session's statement no longer holds those table sets (under the mutex): a
        claim waiting for it is told."""
        holding = self._holding.get(pid, [])
        for tables in sets:
            for i, held in enumerate(holding):
                if held is tables:
                    del holding[i]
                    break
        if not holding:
            self._holding.pop(pid, None)
        if self._claims:
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
            self._told = self._locked()
            if callback is not None:
                callback(self._told)

    def _tell(self) -> None:
        """Tell `on_change` whether the lock is held or awaited exclusively, or tables are
        claimed, when that changed (under the condition's lock: calls come in order)."""
        locked = self._locked()
        callback = self.on_change
        if callback is not None and locked != self._told:
            callback(locked)
        self._told = locked

    def _locked(self) -> bool:
        return self.owner is not None or bool(self._waiting_exclusive) or bool(self._claims)

    # Per-table use by transaction blocks -------------------------------------------------------

    def use(self, holder: LockHolder, table_id: int, wrote: bool,
            waiting: Callable[[], tuple[Callable[[], None], int]]) -> None:
        """A block's first read (or first write) of a table: recorded until `forget`, after
        waiting for an autocommit schema change running on the table, or claiming it (as a
        statement's shared hold: foreign-key checks reach tables their plan does not name)."""
        with self._mutex:
            self._wait_while(holder.pid, lambda: self._blocked(table_id, holder, wrote), waiting,
                             queued_on=(frozenset((table_id,)), bool(holder.held)))
            users = self._users.setdefault(table_id, {})
            users[holder] = users.get(holder, False) or wrote

    def _blocked(self, table_id: int, holder: LockHolder, wrote: bool) -> bool:
        running = self._running.get(table_id)
        if running is not None and running[0] != holder.pid and (wrote or not running[1]):
            return True
        return self._queued(holder.pid, frozenset((table_id,)), bool(holder.held))

    # Claims of autocommit schema changes ----------------------------------------------------------

    def claim(self, pid: int, named: Iterable[int], reach: Iterable[int],
              waiting: Callable[[], tuple[Callable[[], None], int]],
              block: bool = False) -> Claim:
        """Queue later statements on the `named` tables behind a schema change of them (until
        `unclaim`), after waiting for an earlier claim of any of the tables to end, unless
        that claim waits for the end of this session's block (`block`: the change is in a
        block; it goes first, as PostgreSQL lets a lock's holder ahead of its waiters)."""
        order = tuple(dict.fromkeys(named))
        named = frozenset(order)
        reach = named | frozenset(reach)
        with self._mutex:
            self._wait_while(pid, lambda: self._overlaps(pid, reach), waiting)
            claim = Claim(pid, named, reach, order, block=block)
            self._claims.append(claim)
            self._tell()
            return claim

    def _overlaps(self, pid: int, reach: frozenset[int]) -> bool:
        return any(c.pid != pid and c.reach & reach and not self._uses_any(pid, c.named)
                   for c in self._claims)

    def await_claim(self, claim: Claim, waiter: LockHolder | None, waiting: Waiting) -> None:
        """Wait until no other open block uses the claimed tables (`await_users`), then run
        the claim: statements on any table it reaches wait from then on, and those holding
        one are waited for. A block that started to use a table meanwhile (its statement was
        under way) is waited for again, the claim queued again meanwhile."""
        while True:
            self.await_users(list(claim.order), claim.pid, waiter, waiting, False, False,
                             claim)
            with self._mutex:
                if self._user(claim.named, claim.pid, False) is not None:
                    continue
                claim.running = True
                self._wait_while(claim.pid, lambda: self._held_by_others(claim.pid, claim.reach),
                                 lambda: waiting()[:2])
                if self._user(claim.named, claim.pid, False) is None:
                    claim.changing = True
                    return
                claim.running = False
                self._cond.notify_all()

    def unclaim(self, claim: Claim) -> None:
        """The change ended (or failed): the statements queued behind it go on."""
        with self._cond:
            if claim in self._claims:
                self._claims.remove(claim)
            self._tell()
            self._cond.notify_all()

    def await_unqueued(self, pid: int, tables: frozenset[int], rows_held: bool,
                       waiting: Callable[[], tuple[Callable[[], None], int]]) -> bool:
        """Wait while a claim queues a statement of `pid` on `tables` (as `shared`, but
        holding nothing: a statement just planned, to be planned again after the change, as
        PostgreSQL's parser waits for the lock of each table it opens); True if it waited. A
        statement under way (the session holds the lock) waits only for a change under way."""
        if not self._claims:  # (a claim made meanwhile queues the statement when it runs)
            return False
        with self._mutex:
            ahead = rows_held or pid in self._shared
            return self._wait_while(pid, lambda: self._queued(pid, tables, ahead), waiting,
                                    queued_on=(tables, ahead))

    def _wait_while(self, pid: int, blocked: Callable[[], bool],
                    waiting: Callable[[], tuple[Callable[[], None], int]],
                    shown_in: set[int] | None = None,
                    queued_on: tuple[frozenset[int], bool] | None = None) -> bool:
        """Under the mutex: wait while `blocked()` (`pid` shown waiting meanwhile in
        `shown_in`, by default behind a claim: `waits`), `waiting` asked for the interrupt
        check and lock_timeout only if it is; True if it waited. `queued_on`: the tables and
        row-locks flag `blocked` asks claims about, kept meanwhile for `blockers`."""
        if not blocked():
            return False
        check_interrupts, timeout_ms = waiting()
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        shown = self._waiting_tables if shown_in is None else shown_in
        shown.add(pid)
        if queued_on is not None:
            self._queued_on[pid] = queued_on
        try:
            while blocked():
                _wait(self._cond, check_interrupts, deadline)
        finally:
            shown.discard(pid)
            self._queued_on.pop(pid, None)
        return True

    def contended(self, pid: int) -> bool:
        """Whether another session holds the lock exclusively, or waits to (read without the
        mutex: a statement deciding whether to plan without it, which is safe either way)."""
        owner, waiting = self.owner, self._waiting_exclusive
        return (owner is not None and owner != pid) or \
            len(waiting) > 1 or (bool(waiting) and pid not in waiting)

    def blockers(self, pid: int) -> set[int]:
        """The sessions a statement of `pid` waits for here (pg_blocking_pids): the lock's
        exclusive holder (or, none yet, those waiting to hold it), the schema changes whose
        claims or runs queue it (those of the tables it waits for), the statements a wait to
        hold it exclusively waits for, and the blocks using the tables its own claim
        changes."""
        with self._mutex:
            out: set[int] = set()
            if pid in self._waiting_shared or pid in self._waiting_tables:
                if self.owner is not None:
                    out.add(self.owner)
                elif pid in self._waiting_shared:
                    out |= self._waiting_exclusive
                out |= self._queuing(pid)
            if pid in self._waiting_exclusive:
                out |= set(self._shared)
                if self.owner is not None:
                    out.add(self.owner)
            for claim in self._claims:
                if claim.pid == pid:
                    out |= {holder.pid for table_id in claim.named
                            for holder in self._users.get(table_id, {}) if not holder.ended}
            out.discard(pid)
            return out

    def _queuing(self, pid: int) -> set[int]:
        """The sessions whose claims or running changes keep `pid` waiting (under the mutex):
        of the tables it waits for when it is known, of any otherwise."""
        queued_on = self._queued_on.get(pid)
        if queued_on is None:
            return {claim.pid for claim in self._claims} | \
                {running[0] for running in self._running.values()}
        tables, rows_held = queued_on
        return {claim.pid for claim in self._claims if self._queues(claim, pid, tables,
                                                                    rows_held)} | \
            {self._running[t][0] for t in tables if t in self._running}

    def waits(self, pid: int) -> bool:
        """Whether a statement of `pid` waits for this lock or behind a claim, as one waiting
        for a lock on a relation in PostgreSQL (pg_stat_activity)."""
        return pid in self._waiting_shared or pid in self._waiting_tables

    def _queued(self, pid: int, tables: frozenset[int], rows_held: bool) -> bool:
        """Whether another session's claim keeps a statement of `pid` on `tables` waiting (under
        the mutex). A claim waiting for blocks queues statements on the tables it changes,
        one waiting for statements those on every table it reaches; the change under way
        keeps them all out. Until then a session goes ahead if it may be what the change waits
        for: its statement holds a table of the claim, or its block holds row locks (a cycle
        no wait-for graph sees), or used a table the change waits for the end of."""
        if not self._claims or not tables:
            return False
        for claim in self._claims:
            if not claim.running and claim.pid != pid and tables & claim.granted:
                self._check_granted(pid, tables & claim.granted, claim)
            if self._queues(claim, pid, tables, rows_held):
                return True
        return False

    def _queues(self, claim: Claim, pid: int, tables: frozenset[int], rows_held: bool) -> bool:
        """Whether `claim` keeps a statement of `pid` on `tables` waiting (`_queued`)."""
        if claim.pid == pid or not tables & (claim.reach if claim.running else claim.named):
            return False
        return claim.changing or not (rows_held or self._holds_any(pid, claim.reach) or (
            not claim.running and self._uses_any(pid, claim.named)) or (
            claim.block and pid in self._shared))

    def _check_granted(self, pid: int, granted: frozenset[int], claim: Claim) -> None:
        """40P01 for a statement of `pid` that would use tables granted to `claim` while the
        claim waits (or is to wait) for the end of `pid`'s block, which used a later table of
        it: neither could go on, as PostgreSQL's deadlock detector finds. A statement under
        way that holds those tables already goes on (the claim waits for it)."""
        if self._uses_any(pid, claim.named - claim.granted) and \
                not self._holds_any(pid, granted):
            raise SqlVecError(
                "deadlock detected", sqlstate="40P01",
                detail=f"Process {pid} waits for AccessShareLock on a relation; blocked by "
                       f"process {claim.pid}.\nProcess {claim.pid} waits for "
                       f"AccessExclusiveLock on a relation; blocked by process {pid}.",
                hint="See server log for query details.")

    def _holds_any(self, pid: int, tables: frozenset[int]) -> bool:
        return any(held & tables for held in self._holding.get(pid, ())) or \
            any(held & tables for held in self._parsed.get(pid, ()))

    def _held_by_others(self, pid: int, tables: frozenset[int]) -> bool:
        return any(p != pid and any(held & tables for held in sets)
                   for holds in (self._holding, self._parsed) for p, sets in holds.items())

    def _uses_any(self, pid: int, tables: frozenset[int]) -> bool:
        return any(holder.pid == pid and not holder.ended
                   for table_id in tables for holder in self._users.get(table_id, {}))

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
                    waiting: Waiting, writers_only: bool, run: bool,
                    claim: Claim | None = None) -> None:
        """Wait until no other open block uses the tables (`writers_only`: wrote them), each
        wait in the row locks' wait-for graph with `waiter`. `run`: then mark the tables
        changed by `pid` until `done` (new blocks' uses wait), at once under the mutex. A
        session holding the lock exclusively meets 40P01 when the block it waits for waits
        for that lock. `claim`: the tables are its own, granted to it in order (`_grant`)."""
        while True:
            with self._mutex:
                user = self._user(table_ids, pid, writers_only) if claim is None else \
                    self._grant(claim)
                if user is None:
                    if run:
                        for table_id in table_ids:
                            self._running[table_id] = (pid, writers_only)
                    return
            wait_for_end(user, waiter, self._watching(user, pid, waiting))

    def _grant(self, claim: Claim) -> LockHolder | None:
        """Grant `claim` its tables in order up to the first one another open block uses, and
        return that block (under the mutex); None once all are granted."""
        for table_id in claim.order:
            user = self._user((table_id,), claim.pid, False)
            if user is not None:
                return user
            if table_id not in claim.granted:
                claim.granted = claim.granted | {table_id}
        return None

    def has_users(self, table_ids: list[int], pid: int, writers_only: bool) -> bool:
        """Whether another open block uses one of the tables (`writers_only`: wrote it)."""
        with self._mutex:
            return self._user(table_ids, pid, writers_only) is not None

    def _user(self, table_ids: Iterable[int], pid: int,
              writers_only: bool) -> LockHolder | None:
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


class SharedHold:
    """One shared hold of a `DdlLock`, with the tables it holds against claims, as a context
    manager (no generator: it is taken for every statement)."""

    __slots__ = ("lock", "pid", "waiting", "ahead", "tables", "rows_held", "extra")

    def __init__(self, lock: DdlLock, pid: int,
                 waiting: Callable[[], tuple[Callable[[], None], int]], ahead: bool,
                 tables: frozenset[int], rows_held: bool) -> None:
        self.lock, self.pid, self.waiting, self.ahead = lock, pid, waiting, ahead
        self.tables, self.rows_held = tables, rows_held
        self.extra: list[frozenset[int]] = []  # (`extend`: rare)

    def __enter__(self) -> SharedHold:
        self.lock._acquire_shared(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock._release_shared(self)

    def extend(self, tables: frozenset[int]) -> None:
        """Hold `tables` too, from now to the hold's end (`DdlLock._extend`)."""
        missing = tables - self.tables
        if missing and not any(missing <= held for held in self.extra):
            self.lock._extend(self, frozenset(missing))


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
