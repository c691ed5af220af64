"""The DDL lock: shared per statement, exclusive for a block's schema changes, and the per-table
claims of autocommit ones that statements on those tables queue behind."""

from __future__ import annotations

import threading
import time

import pytest

from sqlvec.errors import QueryCanceled, SqlVecError
from sqlvec.session.ddl_lock import DdlLock
from sqlvec.storage.row_locks import LockHolder


def never() -> None:
    pass


def waiting(timeout_ms: int = 0, check=never):
    """What a session answers when its wait begins: its interrupt check and lock_timeout."""
    return lambda: (check, timeout_ms)


def test_exclusive_holder_keeps_other_sessions_out_until_released():
    lock = DdlLock()
    lock.acquire_exclusive(1, never)
    with lock.shared(1, waiting()):  # the holder's own statements pass
        pass
    with pytest.raises(SqlVecError) as err:
        with lock.shared(2, waiting(50)):
            pass
    assert err.value.sqlstate == "55P03"
    assert err.value.message == "canceling statement due to lock timeout"
    entered = threading.Event()

    def other() -> None:
        with lock.shared(2, waiting()):
            entered.set()
    thread = threading.Thread(target=other)
    thread.start()
    assert not entered.is_set()
    lock.release(1)
    thread.join(10)
    assert entered.is_set()


def test_exclusive_waits_for_other_sessions_statements_not_its_own():
    lock = DdlLock()
    with lock.shared(1, waiting()):
        lock.acquire_exclusive(1, never)  # its own shared hold does not block it
    lock.release(1)
    with lock.shared(2, waiting()):
        with pytest.raises(SqlVecError) as err:
            lock.acquire_exclusive(1, never, timeout_ms=50)
        assert err.value.sqlstate == "55P03"
    lock.acquire_exclusive(1, never)
    assert lock.owner == 1
    lock.release(1)
    assert lock.owner is None


def test_waiting_is_interrupted_by_cancel():
    lock = DdlLock()
    lock.acquire_exclusive(1, never)

    def cancelled() -> None:
        raise QueryCanceled("canceling statement due to user request")
    with pytest.raises(QueryCanceled):
        with lock.shared(2, waiting(check=cancelled)):
            pass
    lock.release(1)


def test_two_sessions_upgrading_at_once_is_a_deadlock_for_the_second():
    lock = DdlLock()
    got = threading.Event()
    with lock.shared(1, waiting()):
        with lock.shared(2, waiting()):
            waiter = threading.Thread(target=lambda: (lock.acquire_exclusive(1, never),
                                                      got.set()))
            waiter.start()
            while not lock._waiting_exclusive:
                time.sleep(0.01)
            with pytest.raises(SqlVecError) as err:
                lock.acquire_exclusive(2, never)
            assert err.value.sqlstate == "40P01"
    waiter.join(10)
    assert got.is_set() and lock.owner == 1


def test_upgrades_setting_their_shared_holds_aside_take_turns():
    """Autocommit schema changes: each statement's shared hold does not count while it waits,
    so two at once both get the lock in turn (no 40P01), their holds given back."""
    lock = DdlLock()
    both = threading.Barrier(2)
    owners: list[int] = []

    def change(pid: int) -> None:
        with lock.shared(pid, waiting()):
            both.wait(10)
            lock.acquire_exclusive(pid, never, set_aside=True)
            owners.append(pid)
            assert lock._shared.get(pid) == 1
            lock.release(pid)
    threads = [threading.Thread(target=change, args=(pid,)) for pid in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(owners) == [1, 2]
    assert lock._shared == {} and lock.owner is None


def test_a_failed_upgrade_setting_its_hold_aside_leaves_nothing_held():
    """A timeout leaves the failing statement holding nothing: its hold is not given back."""
    lock = DdlLock()
    with lock.shared(3, waiting()):  # another statement that goes on running
        with lock.shared(2, waiting()):
            with pytest.raises(SqlVecError) as err:
                lock.acquire_exclusive(2, never, timeout_ms=200, set_aside=True)
            assert err.value.sqlstate == "55P03"
            assert lock._shared == {3: 1} and lock.owner is None
        assert lock._shared == {3: 1}
    assert lock._shared == {}


def test_a_watcher_is_told_while_the_lock_is_held_or_awaited_exclusively():
    """What the server's worker processes go by: told True from the moment a session asks
    for the lock exclusively (waiting behind a statement included), False once none holds or
    awaits it; shared holds tell nothing."""
    lock = DdlLock()
    told: list[bool] = []
    lock.watch(told.append)
    assert told == [False]
    with lock.shared(2, waiting()):
        assert told == [False]
        thread = threading.Thread(target=lock.acquire_exclusive, args=(1, never))
        thread.start()
        for _ in range(200):
            if len(told) > 1:
                break
            time.sleep(0.01)
        assert told == [False, True]  # awaited: reads must queue behind it
    thread.join(5)
    assert lock.owner == 1 and told == [False, True]
    lock.release(1)
    assert told == [False, True, False]
    lock.acquire_exclusive(3, never)
    lock.watch(None)
    lock.release(3)
    assert told == [False, True, False, True]


def row_waiting(timeout_ms: int = 0):
    """What a schema change answers when it waits: interrupt check, lock_timeout and
    deadlock_timeout."""
    return lambda: (never, timeout_ms, 1000)


def refused(lock: DdlLock, pid: int, tables: set[int]) -> str | None:
    """The SQLSTATE a statement of `pid` on `tables` meets within 50 ms (None: it ran)."""
    try:
        with lock.shared(pid, waiting(50), tables=frozenset(tables)):
            return None
    except SqlVecError as error:
        return error.sqlstate


def test_a_running_claim_stops_only_statements_on_the_tables_it_reaches():
    """A change of table 10 (referenced by 11) stops statements on 10 and 11, not on 20."""
    lock = DdlLock()
    told: list[bool] = []
    lock.watch(told.append)
    claim = lock.claim(1, [10], [11], waiting())
    lock.await_claim(claim, None, row_waiting())
    assert claim.running and told == [False, True]  # worker processes leave reads here
    assert refused(lock, 2, {20}) is None
    assert refused(lock, 2, {10}) == "55P03"
    assert refused(lock, 2, {11, 20}) == "55P03"
    with lock.shared(1, waiting(50), tables=frozenset({10})):  # the change's own statements
        pass
    lock.unclaim(claim)
    assert refused(lock, 2, {10, 11}) is None and told == [False, True, False]


def test_a_claim_queues_new_statements_and_runs_once_those_holding_its_table_end():
    lock = DdlLock()
    running = threading.Event()
    with lock.shared(3, waiting(), tables=frozenset({10})):  # under way on 10
        claim = lock.claim(1, [10], [11], waiting())
        assert refused(lock, 2, {10}) == "55P03"  # queued behind the change
        assert refused(lock, 2, {11}) is None  # reached through a foreign key: not yet
        with lock.shared(3, waiting(50), tables=frozenset({10, 11})):  # its own go on
            pass
        thread = threading.Thread(target=lambda: (lock.await_claim(claim, None, row_waiting()),
                                                  running.set()))
        thread.start()
        assert not running.wait(0.1)  # it waits for session 3's statement
    thread.join(5)
    assert running.is_set()
    assert refused(lock, 2, {11}) == "55P03"
    lock.unclaim(claim)
    assert lock._holding == {} and lock._claims == []


def test_a_statement_under_way_goes_ahead_of_a_waiting_claim_not_a_running_one():
    """A statement planned again reading another table (`extend`), and a block holding row
    locks, go ahead of a claim still waiting: it may be waiting for them; not of a change
    under way."""
    lock = DdlLock()
    claim = lock.claim(1, [10], [], waiting())
    with lock.shared(2, waiting(50), tables=frozenset({20})) as hold:
        hold.extend(frozenset({10}))
        assert lock._holding == {2: [frozenset({20}), frozenset({10})]}
    with lock.shared(2, waiting(50), tables=frozenset({10}), rows_held=True):
        pass
    claim.running = claim.changing = True
    with lock.shared(2, waiting(50), tables=frozenset({20})) as hold:
        with pytest.raises(SqlVecError) as err:
            hold.extend(frozenset({10}))
        assert err.value.sqlstate == "55P03"
    lock.unclaim(claim)
    assert lock._holding == {}


def test_a_statement_prepared_behind_a_waiting_change_gets_the_new_shape(db):
    """Parse of a statement on a table an ALTER waits to change queues behind the ALTER (its
    columns are the new ones, cached plan or not); another table's is prepared at once."""
    block, altering, reading = db.connect(), db.connect(), db.connect()
    block.execute_one("CREATE TABLE t (id int, n int)")
    block.execute_one("CREATE TABLE u (id int)")
    reading.prepare("SELECT * FROM t")  # cached against the old shape
    block.execute_one("BEGIN")
    block.execute_one("SELECT count(*) FROM t")
    done: dict[str, list[str]] = {}
    alter = threading.Thread(target=altering.execute_one,
                             args=("ALTER TABLE t ADD COLUMN x int",))
    alter.start()
    while not db.connect()._ddl_lock._claims:
        time.sleep(0.01)
    prepare = threading.Thread(target=lambda: done.setdefault(
        "t", [c.name for c in reading.prepare("SELECT * FROM t").columns]))
    prepare.start()
    try:
        assert [c.name for c in db.connect().prepare("SELECT * FROM u").columns] == ["id"]
        prepare.join(0.2)
        assert "t" not in done  # queued behind the ALTER
    finally:
        block.execute_one("COMMIT")
    alter.join(10)
    prepare.join(10)
    assert done["t"] == ["id", "n", "x"]


def test_a_block_s_claim_lets_statements_inside_statements_go_ahead():
    """A block's change takes the lock exclusively, so it waits for every statement under
    way: one of those reaching its table (a function's query) goes ahead rather than wait
    for it. An autocommit change waits only for statements holding its tables: theirs
    queue."""
    lock = DdlLock()
    for block, expected in ((True, None), (False, "55P03")):
        claim = lock.claim(1, [10], [], waiting(), block=block)
        with lock.shared(2, waiting(50), tables=frozenset({20})):  # under way on 20
            assert refused(lock, 2, {10}) == expected
        assert refused(lock, 3, {10}) == "55P03"  # a new statement queues either way
        lock.unclaim(claim)


def test_a_block_s_claim_goes_ahead_of_a_claim_waiting_for_that_block():
    """Session 2's change of 10 waits for session 1's block, which used 10: session 1's own
    change of 10 does not wait for session 2's claim (neither could go on)."""
    lock = DdlLock()
    holder = LockHolder(1, row_waiting())
    lock.use(holder, 10, False, waiting())
    earlier = lock.claim(2, [10], [], waiting())
    with pytest.raises(SqlVecError):  # a session not using 10 waits for it
        lock.claim(3, [10], [], waiting(50), block=True)
    claim = lock.claim(1, [10], [], waiting(50), block=True)
    lock.unclaim(claim)
    lock.unclaim(earlier)
    assert lock._claims == []


def test_rollback_to_before_the_first_schema_change_lets_the_ddl_lock_go(db):
    """As PostgreSQL releases the locks taken since the savepoint: other sessions' statements
    run again, while the block goes on (its writes before the savepoint kept)."""
    block, other = db.connect(), db.connect()
    block.execute_one("CREATE TABLE t (id int)")
    for sql in ("BEGIN", "INSERT INTO t VALUES (1)", "SAVEPOINT a",
                "ALTER TABLE t ADD COLUMN x int", "SAVEPOINT b", "DROP TABLE t"):
        block.execute_one(sql)
    block.execute_one("ROLLBACK TO b")  # after the first change: the lock stays
    assert block.ddl_open and block._ddl_lock.owner == block.pid
    block.execute_one("ROLLBACK TO a")
    assert not block.ddl_open and block._ddl_lock.owner is None
    assert other.execute_one("SELECT count(*) FROM t").table.column(0).to_pylist() == [0]
    block.execute_one("COMMIT")
    assert [c.name for c in other.prepare("SELECT * FROM t").columns] == ["id"]
    assert other.execute_one("SELECT count(*) FROM t").table.column(0).to_pylist() == [1]


def test_tables_held_from_parse_to_the_batch_s_end_hold_a_claim_back():
    """Session 2 parsed a statement of 10 in a batch not yet synced: a claim of 10 waits for
    the batch's end, and session 2's statements go ahead of it meanwhile."""
    lock = DdlLock()
    lock.hold_parsed(2, frozenset({10}), waiting())
    claim = lock.claim(1, [10], [], waiting())
    running = threading.Event()
    thread = threading.Thread(target=lambda: (lock.await_claim(claim, None, row_waiting()),
                                              running.set()))
    thread.start()
    assert not running.wait(0.1)  # it waits for session 2's batch
    assert claim.running and not claim.changing
    assert refused(lock, 2, {10}) is None  # the parsed statement runs
    assert refused(lock, 3, {10}) == "55P03"
    lock.let_go_parsed(2)  # Sync
    thread.join(5)
    assert running.is_set() and claim.changing
    lock.unclaim(claim)
    lock.let_go_parsed(2, last=True)  # the session ends
    assert lock._holding == {} and lock._parsed == {}


def test_a_claim_takes_its_tables_in_turn():
    """A change of 10 then 20 waits for the block that used 20 holding 10: that block's next
    statement on 10 is 40P01 (neither could go on), another block's waits; a statement
    under way that holds 10 goes on."""
    lock = DdlLock()
    holder = LockHolder(2, row_waiting())
    lock.use(holder, 20, False, waiting())
    claim = lock.claim(1, [10, 20], [], waiting())
    thread = threading.Thread(target=lambda: lock.await_claim(claim, None, row_waiting()))
    with lock.shared(2, waiting(50), tables=frozenset({20, 10})):  # under way, on 10 too
        thread.start()
        deadline = time.monotonic() + 5
        while claim.granted != {10} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert claim.granted == {10}
        lock.use(holder, 10, False, waiting(50))  # its statement holds 10: it goes on
    with pytest.raises(SqlVecError) as err:
        lock.use(LockHolder(3, row_waiting()), 10, False, waiting(50))
    assert err.value.sqlstate == "55P03"  # another block waits for the change
    assert refused(lock, 2, {10}) == "40P01"
    lock.forget(holder, [10, 20])  # the block ends
    holder.release()
    thread.join(5)
    assert claim.granted == {10, 20} and claim.changing
    lock.unclaim(claim)
