"""Row locks of writers, compared with a real PostgreSQL at READ COMMITTED: a second writer of
a row another open transaction updated or deleted waits for that transaction's end, then
applies its statement to the row's latest committed version (or skips it: deleted, or no
longer matching its WHERE). Two transactions waiting for each other: one gets 40P01 and the
other goes on. lock_timeout (55P03), cancel (57014) end a wait; REPEATABLE READ gets 40001.
An executemany of UPDATEs beside an autocommit updater of the same row loses no update and
fails none. kill -9 while a writer waits loses nothing committed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor

import asyncpg
import psycopg
import pytest

from tests.e2e.conftest import beside_postgres, start_server

WAITING = 0.4  # seconds a statement not seen waiting on a lock must still be unfinished
SETTLE = 0.1  # seconds a statement seen waiting on a lock must still be unfinished after


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The URIs of PostgreSQL and of a sqlvec server (with workers: writes go to the primary)."""
    with beside_postgres(tmp_path_factory, "rowlocks") as (sqlvec, postgres):
        yield {"postgres": postgres, "sqlvec": sqlvec}


@pytest.fixture(params=["postgres", "sqlvec"])
def uri(request, servers) -> str:
    with psycopg.connect(servers[request.param], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS c")
        conn.execute("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO c VALUES (1, 0), (2, 0)")
    return servers[request.param]


def connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=True)


def begin(uri: str, *statements: str) -> psycopg.Connection:
    """A session with an open block that ran `statements`."""
    conn = connect(uri)
    conn.execute("BEGIN")
    for sql in statements:
        conn.execute(sql)
    return conn


def waiting(pool: ThreadPoolExecutor, conn: psycopg.Connection, sql: str) -> Future:
    """`sql` started on `conn` in another thread; it is still waiting a while later."""
    future = pool.submit(lambda: conn.execute(sql).rowcount)
    still_waiting(conn, future)
    return future


def still_waiting(conn: psycopg.Connection, future: Future) -> None:
    """Asserts that the statement `future` runs on `conn` waits: pg_stat_activity shows its
    session waiting on a lock (or, while it does not, it is unfinished after WAITING seconds),
    and it is still unfinished a moment later."""
    deadline = time.monotonic() + WAITING
    if not _seen_waiting(conn.info.dsn, conn.info.backend_pid, future, deadline):
        time.sleep(max(0.0, deadline - time.monotonic()))
    time.sleep(SETTLE)
    assert not future.done(), future.result()


def _seen_waiting(dsn: str, pid: int, future: Future, deadline: float) -> bool:
    """Whether pg_stat_activity shows session `pid` waiting on a lock before `deadline`. Its
    reads are bounded, should one wait after all (they answer while a block's schema changes
    are open: tests/e2e/test_ddl_operator_reads.py)."""
    with psycopg.connect(dsn, autocommit=True) as observer:
        observer.execute("SET statement_timeout = '200ms'")
        while time.monotonic() < deadline and not future.done():
            try:
                row = observer.execute("SELECT wait_event_type FROM pg_stat_activity "
                                       "WHERE pid = %s", (pid,)).fetchone()
            except psycopg.errors.QueryCanceled:
                return False
            if row is not None and row[0] == "Lock":
                return True
            time.sleep(0.01)
    return False


def counter(uri: str, key: int = 1) -> int | None:
    with connect(uri) as conn:
        row = conn.execute("SELECT n FROM c WHERE id = %s", (key,)).fetchone()
    return None if row is None else row[0]


def sqlstate(future: Future) -> str | None:
    try:
        future.result(timeout=30)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


@pytest.mark.parametrize("second_in_block", [True, False])
def test_second_writer_waits_then_updates_the_new_version(uri, second_in_block):
    first = begin(uri, "UPDATE c SET n = n + 1 WHERE id = 1")
    second = begin(uri) if second_in_block else connect(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        update = waiting(pool, second, "UPDATE c SET n = n + 1 WHERE id = 1")
        first.execute("COMMIT")
        assert update.result(timeout=30) == 1
        if second_in_block:
            assert second.execute("SELECT n FROM c WHERE id = 1").fetchone() == (2,)
            second.execute("COMMIT")
    assert counter(uri) == 2


@pytest.mark.parametrize("first_sql, end, second_sql, count, final", [
    # rolled back: the second updates the version it waited for
    ("UPDATE c SET n = n + 10 WHERE id = 1", "ROLLBACK", "UPDATE c SET n = n + 1 WHERE id = 1",
     1, (1, 0)),
    # deleted: nothing left to update
    ("DELETE FROM c WHERE id = 1", "COMMIT", "UPDATE c SET n = n + 1 WHERE id = 1", 0, (None, 0)),
    # the WHERE is checked again on the new version: row 1 no longer matches, row 2 does
    ("UPDATE c SET n = 5 WHERE id = 1", "COMMIT", "UPDATE c SET n = n + 1 WHERE n = 0", 1, (5, 1)),
    # a DELETE deletes the new version
    ("UPDATE c SET n = 7 WHERE id = 1", "COMMIT", "DELETE FROM c WHERE id = 1", 1, (None, 0)),
], ids=["rolled-back", "deleted", "no-longer-matching", "delete-new-version"])
def test_second_writer_acts_on_what_the_first_left(uri, first_sql, end, second_sql, count, final):
    first = begin(uri, first_sql)
    second = begin(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        write = waiting(pool, second, second_sql)
        first.execute(end)
        assert write.result(timeout=30) == count
        second.execute("COMMIT")
    assert (counter(uri), counter(uri, 2)) == final


@pytest.mark.parametrize("write, rows", [
    ("UPDATE c SET n = n + 1 WHERE id = {}", (1, 2)),  # row waits
    ("INSERT INTO c VALUES ({}, 1)", (5, 6)),  # key waits
])
def test_deadlock_fails_one_and_the_other_proceeds(uri, write, rows):
    first = begin(uri, write.format(rows[0]))
    second = begin(uri, write.format(rows[1]))
    with first, second, ThreadPoolExecutor(2) as pool:
        one = waiting(pool, first, write.format(rows[1]))
        other = pool.submit(lambda: second.execute(write.format(rows[0])))
        states = sorted([sqlstate(one), sqlstate(other)], key=str)
        assert states == ["40P01", None]
        for conn in (first, second):
            conn.execute("COMMIT")  # the failed one's rolls back
    assert [counter(uri, k) for k in rows] == [1, 1]  # the survivor's two writes


def test_deadlock_message(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = begin(uri, "UPDATE c SET n = 1 WHERE id = 2", "SET deadlock_timeout = '100ms'")
    with first, second, ThreadPoolExecutor(1) as pool:
        one = waiting(pool, first, "UPDATE c SET n = 2 WHERE id = 2")
        with pytest.raises(psycopg.errors.DeadlockDetected) as caught:
            second.execute("UPDATE c SET n = 2 WHERE id = 1")
        assert str(caught.value).startswith("deadlock detected")
        assert caught.value.diag.message_detail.count("waits for ShareLock on transaction") == 2
        second.execute("ROLLBACK")
        assert one.result(timeout=30) == 1
        first.execute("COMMIT")


def test_lock_timeout(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = begin(uri, "SET LOCAL lock_timeout = '200ms'")
    with first, second:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            second.execute("UPDATE c SET n = 2 WHERE id = 1")
        assert time.monotonic() - started >= 0.2
        assert str(caught.value).startswith("canceling statement due to lock timeout")
        second.execute("ROLLBACK")
        first.execute("COMMIT")
    assert counter(uri) == 1


def test_statement_timeout_and_cancel_end_a_wait(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = begin(uri, "SET LOCAL statement_timeout = '300ms'")
    third = connect(uri)
    with first, second, third, ThreadPoolExecutor(1) as pool:
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            second.execute("DELETE FROM c WHERE id = 1")
        assert "statement timeout" in str(caught.value)
        update = waiting(pool, third, "UPDATE c SET n = 3 WHERE id = 1")
        third.cancel()
        assert sqlstate(update) == "57014"
        first.execute("COMMIT")
    assert counter(uri) == 1


def test_a_repeated_prepared_update_ends_a_wait_by_timeout_cancel_and_terminate(uri):
    """A prepared autocommit UPDATE run again and again (in sqlvec compiled from its first
    repeat, wire/compiled.py's `CompiledWrite`) ends a row wait as PostgreSQL does:
    statement_timeout and cancel with 57014, the connection going on; pg_terminate_backend
    with 57P01, the connection ended."""
    sql = "UPDATE c SET n = n + 1 WHERE id = %s"
    writer, admin = connect(uri), connect(uri)
    for _ in range(3):
        assert writer.execute(sql, (2,), prepare=True).rowcount == 1
    first = begin(uri, "UPDATE c SET n = 10 WHERE id = 1")
    with first, writer, admin, ThreadPoolExecutor(1) as pool:
        writer.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            writer.execute(sql, (1,), prepare=True)
        assert "statement timeout" in str(caught.value)
        writer.execute("SET statement_timeout = 0")
        update = pool.submit(lambda: writer.execute(sql, (1,), prepare=True).rowcount)
        still_waiting(writer, update)
        writer.cancel()
        assert sqlstate(update) == "57014"
        assert writer.execute(sql, (2,), prepare=True).rowcount == 1
        update = pool.submit(lambda: writer.execute(sql, (1,), prepare=True).rowcount)
        still_waiting(writer, update)
        admin.execute("SELECT pg_terminate_backend(%s)", (writer.info.backend_pid,))
        assert sqlstate(update) == "57P01"
        first.execute("COMMIT")
    assert (counter(uri), counter(uri, 2)) == (10, 4)


def test_repeatable_read_gets_40001(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = connect(uri)
    second.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    with first, second, ThreadPoolExecutor(1) as pool:
        update = waiting(pool, second, "UPDATE c SET n = n + 1 WHERE id = 1")
        first.execute("COMMIT")
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            update.result(timeout=30)
        assert str(caught.value).startswith(
            "could not serialize access due to concurrent update")
        second.execute("ROLLBACK")
    assert counter(uri) == 1


def test_repeatable_read_proceeds_when_the_first_rolls_back(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = connect(uri)
    second.execute("BEGIN")
    second.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    with first, second, ThreadPoolExecutor(1) as pool:
        update = waiting(pool, second, "UPDATE c SET n = n + 5 WHERE id = 1")
        first.execute("ROLLBACK")
        assert update.result(timeout=30) == 1
        second.execute("COMMIT")
    assert counter(uri) == 5


def test_executemany_beside_an_autocommit_updater_loses_nothing(uri):
    """asyncpg's executemany (one implicit block) of UPDATEs of a row another session updates
    in autocommit at the same time: no error, and every increment lands."""
    batches, singles = asyncio.run(_contend(uri, seconds=1.5))
    assert batches > 0 and singles > 0
    assert counter(uri) == 3 * batches + singles


async def _contend(uri: str, seconds: float) -> tuple[int, int]:
    stop = time.monotonic() + seconds
    batcher = await asyncpg.connect(uri)
    single = await asyncpg.connect(uri)

    async def batches() -> int:
        done = 0
        while time.monotonic() < stop:
            await batcher.executemany("UPDATE c SET n = n + $1 WHERE id = 1", [(1,)] * 3)
            done += 1
        return done

    async def singles() -> int:
        done = 0
        while time.monotonic() < stop:
            await single.execute("UPDATE c SET n = n + 1 WHERE id = 1")
            done += 1
        return done

    try:
        return tuple(await asyncio.gather(batches(), singles()))  # type: ignore[return-value]
    finally:
        await batcher.close()
        await single.close()


def test_kill_9_while_a_writer_waits_loses_nothing_committed(tmp_path, reap):
    server = start_server(tmp_path / "server")
    reap(server)
    uri = server.conninfo()
    with connect(uri) as conn:
        conn.execute("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO c VALUES (1, 0), (2, 0)")
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1", "UPDATE c SET n = 1 WHERE id = 2")
    second = begin(uri)
    with ThreadPoolExecutor(1) as pool:
        update = waiting(pool, second, "UPDATE c SET n = 9 WHERE id = 1")
        with connect(uri) as third:
            third.execute("INSERT INTO c VALUES (3, 3)")
        server.stop(signal.SIGKILL)
        with pytest.raises(psycopg.OperationalError):  # the connection is gone
            update.result(timeout=30)
    for conn in (first, second):
        conn.close()
    again = start_server(tmp_path / "again", data_dir=server.data_dir)
    reap(again)
    try:
        with connect(again.conninfo()) as conn:
            assert conn.execute("SELECT id, n FROM c ORDER BY id").fetchall() == \
                [(1, 0), (2, 0), (3, 3)]
            conn.execute("UPDATE c SET n = n + 1 WHERE id = 1")  # no lock outlived the crash
    finally:
        assert again.stop() == 0, again.log()


def test_locks_of_one_block_do_not_stop_other_rows(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    with first, connect(uri) as other:
        assert other.execute("UPDATE c SET n = 2 WHERE id = 2").rowcount == 1
        assert other.execute("SELECT n FROM c WHERE id = 1").fetchone() == (0,)
        first.execute("COMMIT")
    assert (counter(uri), counter(uri, 2)) == (1, 2)



def set_config_effects(uri: str) -> list:
    """What set_config(..., is_local) answers and leaves behind, in and out of blocks."""
    seen: list = []
    with connect(uri) as conn:
        show = "SELECT current_setting('work_mem')"
        conn.execute("SET work_mem = '4MB'")  # (the servers' defaults differ)
        seen += conn.execute("SELECT set_config('work_mem', '2MB', true)").fetchall()
        seen += conn.execute(show).fetchall()  # outside a block: nothing lasts
        for end, local in (("COMMIT", True), ("COMMIT", False), ("ROLLBACK", True)):
            conn.execute("BEGIN")
            seen += conn.execute("SELECT set_config('work_mem', '5MB', %s)", (local,)).fetchall()
            seen += conn.execute(show).fetchall()
            conn.execute(end)
            seen += conn.execute(show).fetchall()
        with conn.pipeline():  # an implicit block: until its Sync
            during = [conn.execute("SELECT set_config('work_mem', '9MB', true)"),
                      conn.execute(show)]
        seen += [c.fetchall() for c in during] + conn.execute(show).fetchall()
        with pytest.raises(psycopg.errors.UndefinedFunction) as caught:
            conn.execute("SELECT set_config('work_mem', '3MB', is_local => true)")
        seen.append(str(caught.value).splitlines()[0])
    return seen


def test_set_config_is_local_acts_as_set_local(servers):
    assert set_config_effects(servers["sqlvec"]) == set_config_effects(servers["postgres"])


def test_select_for_update_waits_locks_and_sees_the_new_version(uri):
    first = begin(uri, "UPDATE c SET n = 5 WHERE id = 1")
    second = begin(uri)
    third = connect(uri)
    with first, second, third, ThreadPoolExecutor(2) as pool:
        read = pool.submit(lambda: second.execute(
            "SELECT id, n FROM c WHERE id = 1 FOR UPDATE").fetchall())
        still_waiting(second, read)
        first.execute("COMMIT")
        assert read.result(timeout=30) == [(1, 5)]
        update = waiting(pool, third, "UPDATE c SET n = n + 1 WHERE id = 1")  # its lock holds
        second.execute("UPDATE c SET n = n * 10 WHERE id = 1")
        second.execute("COMMIT")
        assert update.result(timeout=30) == 1
    assert counter(uri) == 51


def test_select_for_update_nowait(uri):
    first = begin(uri, "SELECT n FROM c WHERE id = 2 FOR UPDATE")
    second = begin(uri)
    with first, second:
        assert second.execute("SELECT n FROM c WHERE id = 1 FOR UPDATE NOWAIT").fetchall() == [(0,)]
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            second.execute("SELECT n FROM c WHERE n = 0 ORDER BY id FOR UPDATE NOWAIT")
        assert str(caught.value).startswith('could not obtain lock on row in relation "c"')
        second.execute("ROLLBACK")
        first.execute("COMMIT")


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM c FOR UPDATE",
    "SELECT DISTINCT n FROM c FOR SHARE",
    "SELECT n FROM c GROUP BY n FOR NO KEY UPDATE",
])
def test_locking_clauses_refused_as_postgres_refuses_them(uri, sql):
    with connect(uri) as conn, pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute(sql)
    assert str(caught.value).split(" is not allowed")[0] in sql


def test_skip_locked_hands_each_session_other_rows(uri):
    """The job queue: each worker takes the first rows nobody holds."""
    with connect(uri) as conn:
        conn.execute("INSERT INTO c VALUES (3, 0), (4, 0)")
    take = "SELECT id FROM c ORDER BY id LIMIT 2 FOR UPDATE SKIP LOCKED"
    first = begin(uri)
    second = begin(uri)
    with first, second:
        assert first.execute(take).fetchall() == [(1,), (2,)]
        assert second.execute(take).fetchall() == [(3,), (4,)]
        assert second.execute("SELECT id FROM c ORDER BY id OFFSET 1 FOR UPDATE SKIP LOCKED"
                              ).fetchall() == [(4,)]
        first.execute("ROLLBACK")
        assert second.execute(take).fetchall() == [(1,), (2,)]
        second.execute("COMMIT")


def test_rollback_to_savepoint_frees_the_rows_locked_since(uri):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 2", "SAVEPOINT a",
                  "UPDATE c SET n = 1 WHERE id = 1")
    other = connect(uri)
    with first, other, ThreadPoolExecutor(1) as pool:
        update = waiting(pool, other, "UPDATE c SET n = 7 WHERE id = 1")
        first.execute("ROLLBACK TO SAVEPOINT a")
        assert update.result(timeout=30) == 1
        other.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):  # locked before the savepoint
            other.execute("UPDATE c SET n = 7 WHERE id = 2")
        first.execute("COMMIT")
    assert (counter(uri), counter(uri, 2)) == (7, 1)


@pytest.mark.parametrize("second_in_block", [True, False])
def test_a_wait_shows_in_pg_locks_and_pg_stat_activity(uri, second_in_block):
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = begin(uri) if second_in_block else connect(uri)
    with first, second, connect(uri) as third, ThreadPoolExecutor(1) as pool:
        pid = second.execute("SELECT pg_backend_pid()").fetchone()[0]
        holder = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        update = waiting(pool, second, "UPDATE c SET n = 2 WHERE id = 1")
        locks = "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'transactionid' " \
                "AND pid IN (%s, %s) ORDER BY granted"
        assert third.execute(locks, (pid, holder)).fetchall()[:1] == [(pid, "ShareLock", False)]
        assert (holder, "ExclusiveLock", True) in third.execute(locks, (pid, holder)).fetchall()
        assert third.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity "
                             "WHERE pid = %s", (pid,)).fetchone() == ("Lock", "transactionid")
        first.execute("COMMIT")
        assert update.result(timeout=30) == 1
        if second_in_block:
            second.execute("COMMIT")
        assert third.execute(locks, (pid, holder)).fetchall() == []


# An INSERT of a key another open transaction inserted waits for it -------------------------

def error_of(future: Future) -> tuple[str | None, str, str | None]:
    """A waiting statement's SQLSTATE, message and DETAIL (None: it succeeded)."""
    try:
        future.result(timeout=30)
    except psycopg.Error as exc:
        return exc.sqlstate, str(exc).splitlines()[0], exc.diag.message_detail
    return None, "", None


@pytest.mark.parametrize("second_in_block", [True, False])
@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("returning", ["", " RETURNING id"])
def test_insert_of_a_key_another_block_inserted_waits(uri, end, second_in_block, returning):
    first = begin(uri, "INSERT INTO c VALUES (5, 1)")
    second = begin(uri) if second_in_block else connect(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        insert = waiting(pool, second, "INSERT INTO c VALUES (5, 2)" + returning)
        first.execute(end)
        if end == "COMMIT":
            assert error_of(insert) == (
                "23505", 'duplicate key value violates unique constraint "c_pkey"',
                "Key (id)=(5) already exists.")
        else:
            assert error_of(insert) == (None, "", None)
        if second_in_block:
            second.execute("COMMIT")
    assert counter(uri, 5) == (1 if end == "COMMIT" else 2)


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("action, final", [
    ("DO NOTHING", 1), ("(id) DO NOTHING", 1), ("(id) DO UPDATE SET n = c.n + 10", 11)])
def test_on_conflict_waits_then_skips_or_updates(uri, end, action, final):
    first = begin(uri, "INSERT INTO c VALUES (5, 1)")
    second = begin(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        insert = waiting(pool, second, f"INSERT INTO c VALUES (5, 2) ON CONFLICT {action}")
        first.execute(end)
        count = insert.result(timeout=30)
        second.execute("COMMIT")
    if end == "COMMIT":
        assert (count, counter(uri, 5)) == (0 if "NOTHING" in action else 1, final)
    else:
        assert (count, counter(uri, 5)) == (1, 2)


def test_executemany_batch_waits_for_a_block_with_the_same_key(uri):
    first = begin(uri, "INSERT INTO c VALUES (7, 1)")

    async def batch() -> None:
        conn = await asyncpg.connect(uri)
        try:
            await conn.executemany("INSERT INTO c VALUES ($1, 0)", [(6,), (7,), (8,)])
        finally:
            await conn.close()

    with first, ThreadPoolExecutor(1) as pool:
        future = pool.submit(asyncio.run, batch())
        time.sleep(WAITING)
        assert not future.done(), future.result()
        first.execute("COMMIT")
        with pytest.raises(asyncpg.UniqueViolationError) as caught:
            future.result(timeout=30)
    assert caught.value.detail == "Key (id)=(7) already exists."
    assert [counter(uri, k) for k in (6, 7, 8)] == [None, 1, None]


def test_copy_waits_for_a_block_with_the_same_key(uri):
    first = begin(uri, "INSERT INTO c VALUES (9, 1)")
    second = connect(uri)

    def copy() -> None:
        with second.cursor().copy("COPY c FROM STDIN") as copying:
            copying.write("9\t2\n10\t2\n")

    with first, second, ThreadPoolExecutor(1) as pool:
        future = pool.submit(copy)
        still_waiting(second, future)
        first.execute("ROLLBACK")
        future.result(timeout=30)
    assert [counter(uri, k) for k in (9, 10)] == [2, 2]


def test_lock_timeout_ends_a_key_wait(uri):
    first = begin(uri, "INSERT INTO c VALUES (5, 1)")
    second = begin(uri, "SET LOCAL lock_timeout = '200ms'")
    with first, second:
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            second.execute("INSERT INTO c VALUES (5, 2)")
        assert str(caught.value).startswith("canceling statement due to lock timeout")
        second.execute("ROLLBACK")
        first.execute("COMMIT")
    assert counter(uri, 5) == 1


# FOR SHARE / FOR KEY SHARE lock rows shared ------------------------------------------------

@pytest.mark.parametrize("strength", ["FOR SHARE", "FOR KEY SHARE"])
def test_shared_readers_do_not_wait_for_each_other(uri, strength):
    first = begin(uri, f"SELECT n FROM c WHERE id = 1 {strength}")
    second = begin(uri, "SET LOCAL lock_timeout = '2s'")
    with first, second:
        assert second.execute(f"SELECT n FROM c WHERE id = 1 {strength} NOWAIT").fetchall() == [(0,)]
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute("SELECT n FROM c WHERE id = 1 FOR UPDATE NOWAIT")
        second.execute("ROLLBACK")
        first.execute("COMMIT")


@pytest.mark.parametrize("writer_in_block", [True, False])
def test_a_writer_waits_for_every_shared_reader(uri, writer_in_block):
    readers = [begin(uri, "SELECT n FROM c WHERE id = 1 FOR SHARE") for _ in range(2)]
    writer = begin(uri) if writer_in_block else connect(uri)
    with readers[0], readers[1], writer, ThreadPoolExecutor(1) as pool:
        update = waiting(pool, writer, "UPDATE c SET n = n + 1 WHERE id = 1")
        readers[0].execute("COMMIT")
        still_waiting(writer, update)  # the other reader still holds it
        readers[1].execute("ROLLBACK")
        assert update.result(timeout=30) == 1
        if writer_in_block:
            writer.execute("COMMIT")
    assert counter(uri) == 1


def test_a_shared_reader_waits_for_a_writer(uri):
    writer = begin(uri, "UPDATE c SET n = 5 WHERE id = 1")
    reader = begin(uri)
    with writer, reader, ThreadPoolExecutor(1) as pool:
        read = pool.submit(lambda: reader.execute(
            "SELECT n FROM c WHERE id = 1 FOR SHARE").fetchall())
        still_waiting(reader, read)
        writer.execute("COMMIT")
        assert read.result(timeout=30) == [(5,)]
        reader.execute("COMMIT")



def test_a_block_holding_rows_goes_ahead_of_a_waiting_alter(uri):
    """A block holds a row, a second block's UPDATE waits for it, a third block's ALTER waits
    for that statement: the first block's next statements do not queue behind the ALTER (a
    cycle neither wait sees); it commits, and the others follow."""
    first = begin(uri, "UPDATE c SET n = 1 WHERE id = 1")
    second = begin(uri)
    third = begin(uri)
    with first, second, third, ThreadPoolExecutor(3) as pool:
        update = waiting(pool, second, "UPDATE c SET n = n + 1 WHERE id = 1")
        alter = waiting(pool, third, "ALTER TABLE c ADD COLUMN extra int")
        first.execute("SET LOCAL statement_timeout = '5s'")
        assert first.execute("SELECT n FROM c WHERE id = 1").fetchall() == [(1,)]
        first.execute("COMMIT")
        assert update.result(timeout=30) == 1
        commit = pool.submit(lambda: second.execute("COMMIT"))
        alter.result(timeout=30)
        third.execute("COMMIT")
        commit.result(timeout=30)
    assert counter(uri) == 2
    with connect(uri) as conn:
        assert conn.execute("SELECT extra FROM c WHERE id = 1").fetchall() == [(None,)]


# After a wait, only the rows waited on are checked again (PostgreSQL's EvalPlanQual): the
# statement keeps its snapshot for every other row.


def rows_of(uri: str, sql: str) -> list[tuple]:
    with connect(uri) as conn:
        return conn.execute(sql).fetchall()


def second_session(uri: str, in_block: bool) -> psycopg.Connection:
    return begin(uri) if in_block else connect(uri)


def finish(second: psycopg.Connection, in_block: bool) -> None:
    if in_block:
        second.execute("COMMIT")


def returned(pool: ThreadPoolExecutor, conn: psycopg.Connection, sql: str) -> Future:
    """`sql` (with RETURNING) started on `conn`, still waiting a while later; its rows, sorted."""
    future = pool.submit(lambda: sorted(conn.execute(sql).fetchall()))
    still_waiting(conn, future)
    return future


@pytest.mark.parametrize("second_in_block", [True, False])
def test_delete_where_hits_after_the_others_increment_deletes_nothing(uri, second_in_block):
    """The documentation's `DELETE FROM website WHERE hits = 10` after another transaction's
    `UPDATE website SET hits = hits + 1`: the row that was 10 is 11 when re-checked, and the
    row that became 10 was 9 in the DELETE's snapshot: neither is deleted."""
    with connect(uri) as conn:
        conn.execute("UPDATE c SET n = 9 + id - 1")  # hits 9 and 10
    first = begin(uri, "UPDATE c SET n = n + 1")
    second = second_session(uri, second_in_block)
    with first, second, ThreadPoolExecutor(1) as pool:
        delete = waiting(pool, second, "DELETE FROM c WHERE n = 10")
        first.execute("COMMIT")
        assert delete.result(timeout=30) == 0
        finish(second, second_in_block)
    assert rows_of(uri, "SELECT id, n FROM c ORDER BY id") == [(1, 10), (2, 11)]


@pytest.mark.parametrize("second_in_block", [True, False])
def test_a_row_inserted_while_waiting_is_not_updated(uri, second_in_block):
    """A multi-row UPDATE waits for one of its rows; a row another session inserts meanwhile
    matches its WHERE but is not in its snapshot: not updated. RETURNING gives the versions
    written, the waited row's computed from its newest version."""
    first = begin(uri, "UPDATE c SET n = n + 1 WHERE id = 1")
    second = second_session(uri, second_in_block)
    with first, second, ThreadPoolExecutor(1) as pool:
        update = returned(pool, second, "UPDATE c SET n = n + 10 WHERE n < 5 RETURNING id, n")
        with connect(uri) as third:
            third.execute("INSERT INTO c VALUES (3, 0)")
        first.execute("COMMIT")
        assert update.result(timeout=30) == [(1, 11), (2, 10)]
        finish(second, second_in_block)
    assert rows_of(uri, "SELECT id, n FROM c ORDER BY id") == [(1, 11), (2, 10), (3, 0)]


@pytest.mark.parametrize("second_in_block", [True, False])
def test_a_row_that_matches_only_after_the_others_commit_is_not_seen(uri, second_in_block):
    """Row 1 matches by its key and is waited for; row 2 matches only in the version the
    other transaction wrote (n = 1), after the snapshot: only row 1 is updated."""
    first = begin(uri, "UPDATE c SET n = n + 1")
    second = second_session(uri, second_in_block)
    with first, second, ThreadPoolExecutor(1) as pool:
        update = returned(pool, second,
                          "UPDATE c SET n = n + 100 WHERE id = 1 OR n = 1 RETURNING id, n")
        first.execute("COMMIT")
        assert update.result(timeout=30) == [(1, 101)]
        finish(second, second_in_block)
    assert rows_of(uri, "SELECT id, n FROM c ORDER BY id") == [(1, 101), (2, 1)]


def test_update_from_rechecks_the_target_with_the_joined_rows_as_read(uri):
    """UPDATE ... FROM: the waited target row at its newest version, joined with the other
    table's row as the statement read it (a later change to that one is not seen)."""
    with connect(uri) as conn:
        conn.execute("DROP TABLE IF EXISTS amounts")
        conn.execute("CREATE TABLE amounts (id int PRIMARY KEY, amount int)")
        conn.execute("INSERT INTO amounts VALUES (1, 10), (2, 20)")
    first = begin(uri, "UPDATE c SET n = n + 1 WHERE id = 2")
    second = begin(uri)
    with first, second, ThreadPoolExecutor(1) as pool:
        update = returned(pool, second, "UPDATE c SET n = n + a.amount FROM amounts a "
                                        "WHERE a.id = c.id RETURNING c.id, n, a.amount")
        with connect(uri) as third:
            third.execute("UPDATE amounts SET amount = 99")
        first.execute("COMMIT")
        assert update.result(timeout=30) == [(1, 10, 10), (2, 21, 20)]
        second.execute("COMMIT")
    assert rows_of(uri, "SELECT id, n FROM c ORDER BY id") == [(1, 10), (2, 21)]


def test_a_statement_with_writes_buffered_goes_on_after_a_wait(uri):
    """A DELETE whose cascade meets a row another block holds, after the statement buffered
    its own deletes: it waits, then goes on (it was 40001)."""
    with connect(uri) as conn:
        conn.execute("DROP TABLE IF EXISTS child")
        conn.execute("CREATE TABLE child (id int PRIMARY KEY, "
                     "parent int REFERENCES c ON DELETE CASCADE, n int)")
        conn.execute("INSERT INTO child VALUES (10, 1, 0), (20, 2, 0)")
    try:
        first = begin(uri, "UPDATE child SET n = 5 WHERE id = 20")
        second = begin(uri)
        with first, second, ThreadPoolExecutor(1) as pool:
            delete = waiting(pool, second, "DELETE FROM c")
            first.execute("COMMIT")
            assert delete.result(timeout=30) == 2
            second.execute("COMMIT")
        assert rows_of(uri, "SELECT count(*) FROM child") == [(0,)]
    finally:
        with connect(uri) as conn:
            conn.execute("DROP TABLE child")  # (the next test drops c)


@pytest.mark.parametrize("second_in_block", [True, False])
def test_a_table_without_a_key_updates_the_waited_rows_new_version(uri, second_in_block):
    """No key to follow a row to its newest version by: the statement runs again on a fresh
    snapshot, which for the rows waited on gives what PostgreSQL's re-check gives."""
    with connect(uri) as conn:
        conn.execute("DROP TABLE IF EXISTS k")
        conn.execute("CREATE TABLE k (id int, n int)")
        conn.execute("INSERT INTO k VALUES (1, 0), (2, 0)")
    first = begin(uri, "UPDATE k SET n = n + 1 WHERE id = 1")
    second = second_session(uri, second_in_block)
    with first, second, ThreadPoolExecutor(1) as pool:
        update = returned(pool, second, "UPDATE k SET n = n + 10 WHERE id = 1 RETURNING n")
        first.execute("COMMIT")
        assert update.result(timeout=30) == [(11,)]
        finish(second, second_in_block)
    assert rows_of(uri, "SELECT id, n FROM k ORDER BY id") == [(1, 11), (2, 0)]
