"""Schema changes wait for the open transactions that use the table, compared with a real
PostgreSQL: an ALTER TABLE / DROP TABLE / TRUNCATE of a table another open block read, wrote
or locked rows of waits for that block's end (then applies to what it committed), a block's
foreign-key checks and actions included (the referenced table of a row it inserted, the
referencing table of a row it deleted), and so does CREATE INDEX for a block that wrote the
table (not for one that only read it); so do DROP INDEX (for the index's table), DROP SCHEMA
... CASCADE (its tables) and the tables a CASCADE reaches through foreign keys. VALIDATE CONSTRAINT, ALTER INDEX and COMMENT ON do not wait, nor
does a schema change of another table. A later statement on the table (autocommit, or a
block's first use of it) queues behind the waiting change and then sees the new shape, while
statements on other tables, and the block already using the table, go on; lock_timeout and
statement_timeout end its wait. Behind a change inside a block it waits on until that block
ends (42P01 after a DROP), or until ROLLBACK TO a savepoint before the change. lock_timeout (55P03) and cancel (57014) end the change's wait,
lock_timeout counting once for a change waiting for several blocks (a row's waits get it each);
a cycle through the waiting change is 40P01 in one of the two.
"""

from __future__ import annotations

import select
import time
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from psycopg import pq

from tests.e2e.conftest import beside_postgres
from tests.e2e.test_row_locks import begin, connect, sqlstate, still_waiting, waiting


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The URIs of PostgreSQL and of a sqlvec server (with workers: DDL goes to the primary)."""
    with beside_postgres(tmp_path_factory, "ddlwaits") as (sqlvec, postgres):
        yield {"postgres": postgres, "sqlvec": sqlvec}


@pytest.fixture(params=["postgres", "sqlvec"])
def uri(request, servers) -> str:
    with psycopg.connect(servers[request.param], autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS s CASCADE")
        conn.execute("DROP TABLE IF EXISTS c, t, u CASCADE")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
        conn.execute("INSERT INTO u VALUES (1, 1)")
    return servers[request.param]


def rows(uri: str, sql: str) -> list[tuple]:
    with connect(uri) as conn:
        return conn.execute(sql).fetchall()


BLOCK_USES = {
    "insert": "INSERT INTO t VALUES (3, 3)",
    "update": "UPDATE t SET n = 10 WHERE id = 1",
    "delete": "DELETE FROM t WHERE id = 2",
    "for-update": "SELECT n FROM t WHERE id = 1 FOR UPDATE",
    "select": "SELECT count(*) FROM t",
}
# What t holds once the block committed, by what the block did.
COMMITTED = {"insert": [(1, 1), (2, 2), (3, 3)], "update": [(1, 10), (2, 2)],
             "delete": [(1, 1)], "for-update": [(1, 1), (2, 2)], "select": [(1, 1), (2, 2)]}


@pytest.mark.parametrize("use", BLOCK_USES)
def test_add_column_waits_for_the_block_then_its_rows_have_the_column(uri, use):
    block = begin(uri, BLOCK_USES[use])
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        alter = waiting(pool, other, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
        assert block.execute("SELECT id, n FROM t ORDER BY id").fetchall() == COMMITTED[use]
        block.execute("COMMIT")
        alter.result(timeout=30)
    assert rows(uri, "SELECT id, n, x FROM t ORDER BY id") == \
        [(*row, 7) for row in COMMITTED[use]]


@pytest.mark.parametrize("use", ["insert", "update", "for-update"])
@pytest.mark.parametrize("ddl, after", [
    ("DROP TABLE t", "SELECT count(*) FROM pg_class WHERE relname = 't'"),
    ("TRUNCATE t", "SELECT count(*) FROM t"),
])
def test_drop_and_truncate_wait_for_the_block(uri, use, ddl, after):
    block = begin(uri, BLOCK_USES[use])
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        change = waiting(pool, other, ddl)
        block.execute("INSERT INTO t VALUES (4, 4)")  # the block goes on meanwhile
        block.execute("COMMIT")
        change.result(timeout=30)
    assert rows(uri, after) == [(0,)]


def test_a_block_rolled_back_lets_the_change_go_on(uri):
    block = begin(uri, "INSERT INTO t VALUES (3, 3)")
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        alter = waiting(pool, other, "ALTER TABLE t DROP COLUMN n")
        block.execute("ROLLBACK")
        alter.result(timeout=30)
    assert rows(uri, "SELECT * FROM t ORDER BY id") == [(1,), (2,)]


def test_a_change_inside_a_block_waits_too(uri):
    block = begin(uri, "UPDATE t SET n = 10 WHERE id = 1")
    other = begin(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        alter = waiting(pool, other, "ALTER TABLE t ALTER COLUMN n TYPE bigint")
        block.execute("COMMIT")
        alter.result(timeout=30)
        other.execute("INSERT INTO t VALUES (5, 5000000000)")
        other.execute("COMMIT")
    assert rows(uri, "SELECT n FROM t ORDER BY id") == [(10,), (2,), (5000000000,)]


def test_create_index_waits_for_writers_not_readers(uri):
    reader = begin(uri, "SELECT count(*) FROM t")
    writer = begin(uri, "INSERT INTO t VALUES (3, 3)")
    other = connect(uri)
    with reader, writer, other, ThreadPoolExecutor(1) as pool:
        create = waiting(pool, other, "CREATE INDEX t_n ON t (n)")
        writer.execute("COMMIT")
        create.result(timeout=30)
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (3,)
        reader.execute("COMMIT")
    assert rows(uri, "SELECT indexname FROM pg_indexes WHERE tablename = 't' "
                     "AND indexname = 't_n'") == [("t_n",)]


def test_a_change_of_another_table_does_not_wait(uri):
    block = begin(uri, "UPDATE t SET n = 10 WHERE id = 1")
    other = connect(uri)
    with block, other:
        other.execute("SET lock_timeout = '1s'")
        other.execute("ALTER TABLE u ADD COLUMN x int")
        other.execute("TRUNCATE u")
        block.execute("COMMIT")
    assert rows(uri, "SELECT n FROM t WHERE id = 1") == [(10,)]


def test_lock_timeout_ends_the_wait(uri):
    block = begin(uri, "INSERT INTO t VALUES (3, 3)")
    other = connect(uri)
    with block, other:
        other.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            other.execute("ALTER TABLE t ADD COLUMN x int")
        assert str(caught.value).startswith("canceling statement due to lock timeout")
        block.execute("COMMIT")
    assert rows(uri, "SELECT count(*) FROM t") == [(3,)]
    assert rows(uri, "SELECT count(*) FROM information_schema.columns "
                     "WHERE table_name = 't' AND column_name = 'x'") == [(0,)]


def two_blocks_end_in_turn(uri: str, hold: str, statement: str, in_block: bool) -> str | None:
    """Two blocks run `hold`; `statement` (lock_timeout 0.7s) is sent, the first block
    commits 0.4s later and the second 0.5s after it: its SQLSTATE (None: it went
    through)."""
    first, second, other = begin(uri, hold), begin(uri, hold), connect(uri)
    with first, second, other, ThreadPoolExecutor(1) as pool:
        other.execute("SET lock_timeout = '700ms'")
        if in_block:
            other.execute("BEGIN")
        sent = time.monotonic()
        done = waiting(pool, other, statement)
        time.sleep(max(0.0, sent + 0.4 - time.monotonic()))
        first.execute("COMMIT")
        time.sleep(0.5)
        second.execute("COMMIT")
        state = sqlstate(done)
        if in_block:
            other.execute("ROLLBACK")
    return state


@pytest.mark.parametrize("in_block", [True, False])
@pytest.mark.parametrize("hold, statement, expected", [
    # a schema change waits for one lock the two blocks hold: one lock_timeout for both
    ("SELECT count(*) FROM t", "ALTER TABLE t ADD COLUMN x int", "55P03"),
    ("INSERT INTO t SELECT 2 + n, 0 FROM t WHERE false", "CREATE INDEX t_n ON t (n)", "55P03"),
    # a row's waits are for each holder's transaction in turn: a lock_timeout each
    ("SELECT * FROM t WHERE id = 1 FOR SHARE", "UPDATE t SET n = 5 WHERE id = 1", None),
], ids=["alter", "create-index", "row"])
def test_lock_timeout_counts_per_lock_not_per_holder(uri, hold, statement, expected,
                                                     in_block):
    assert two_blocks_end_in_turn(uri, hold, statement, in_block) == expected


def test_cancel_ends_the_wait(uri):
    block = begin(uri, "DELETE FROM t WHERE id = 1")
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        drop = waiting(pool, other, "DROP TABLE t")
        other.cancel_safe()
        assert sqlstate(drop) == "57014"
        block.execute("COMMIT")
    assert rows(uri, "SELECT id FROM t") == [(2,)]


def one_of_two_fails_with_40p01(uri: str, first_use: str, second_use: str,
                                second_change: str, first_then: str) -> None:
    """Two blocks use what the other then waits for: the second's `second_change` waits for
    the first, whose `first_then` waits for the second; one of them fails with 40P01 and
    both commit (the failed one's rolls back)."""
    first, second = begin(uri, first_use), begin(uri, second_use)
    with first, second, ThreadPoolExecutor(2) as pool:
        for conn in (first, second):
            conn.execute("SET deadlock_timeout = '200ms'")
        change = waiting(pool, second, second_change)
        then = pool.submit(lambda: first.execute(first_then))
        assert sorted([sqlstate(change), sqlstate(then)], key=str) == ["40P01", None]
        for conn in (first, second):
            conn.execute("COMMIT")


def test_deadlock_through_the_waiting_change_fails_one(uri):
    one_of_two_fails_with_40p01(uri, "UPDATE t SET n = 10 WHERE id = 1",
                                "UPDATE u SET n = 10 WHERE id = 1",
                                "ALTER TABLE t ADD COLUMN x int",
                                "UPDATE u SET n = 20 WHERE id = 1")
    survived = rows(uri, "SELECT n FROM u")
    assert survived in ([(10,)], [(20,)])
    assert rows(uri, "SELECT n FROM t WHERE id = 1") == ([(10,)] if survived == [(20,)]
                                                        else [(1,)])


def commit_beside_change(uri: str, use: str, ddl: str) -> None:
    """A block runs `use`; `ddl` from another session waits for it until it commits, then
    succeeds."""
    block = begin(uri, use)
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        change = waiting(pool, other, ddl)
        block.execute("COMMIT")
        change.result(timeout=30)


def with_child(uri: str) -> None:
    """c references t (its row 1); s.w is a table in schema s; t_n an index of t."""
    with connect(uri) as conn:
        conn.execute("CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES t)")
        conn.execute("INSERT INTO c VALUES (1, 1)")
        conn.execute("CREATE SCHEMA s")
        conn.execute("CREATE TABLE s.w (id int)")
        conn.execute("CREATE INDEX t_n ON t (n)")


@pytest.mark.parametrize("ddl, after", [
    ("TRUNCATE t CASCADE", "SELECT count(*) FROM c"),
    ("DROP TABLE t CASCADE", "SELECT count(*) FROM pg_constraint WHERE conname = 'c_p_fkey'"),
])
def test_a_cascade_waits_for_blocks_using_the_tables_it_reaches(uri, ddl, after):
    with_child(uri)
    commit_beside_change(uri, "SELECT count(*) FROM c", ddl)
    assert rows(uri, after) == [(0,)]


@pytest.mark.parametrize("use, ddl", [
    ("SELECT count(*) FROM t", "DROP INDEX t_n"),
    ("INSERT INTO s.w VALUES (1)", "DROP SCHEMA s CASCADE"),
])
def test_drop_index_and_schema_wait_for_blocks_using_their_tables(uri, use, ddl):
    with_child(uri)
    commit_beside_change(uri, use, ddl)
    assert rows(uri, "SELECT count(*) FROM pg_class WHERE relname IN ('t_n', 'w')") == [(1,)]


@pytest.mark.parametrize("ddl", [
    "ALTER TABLE t VALIDATE CONSTRAINT t_pos",
    "ALTER INDEX t_n RENAME TO t_m",
    "COMMENT ON TABLE t IS 'numbers'",
    "COMMENT ON COLUMN t.n IS 'a number'",
])
def test_changes_no_reader_or_writer_conflicts_with_do_not_wait(uri, ddl):
    with_child(uri)
    with connect(uri) as conn:
        conn.execute("ALTER TABLE t ADD CONSTRAINT t_pos CHECK (n > 0) NOT VALID")
    block = begin(uri, "INSERT INTO t VALUES (3, 3)")
    other = connect(uri)
    with block, other:
        other.execute("SET lock_timeout = '1s'")
        other.execute(ddl)
        block.execute("COMMIT")
    assert rows(uri, "SELECT count(*) FROM t") == [(3,)]


def test_an_autocommit_insert_beside_a_waiting_change_gets_the_new_column(uri):
    block = begin(uri, "SELECT count(*) FROM t")
    altering, inserting = connect(uri), connect(uri)
    with block, altering, inserting, ThreadPoolExecutor(2) as pool:
        alter = waiting(pool, altering, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
        insert = pool.submit(lambda: inserting.execute("INSERT INTO t VALUES (3, 3)"))
        block.execute("COMMIT")
        alter.result(timeout=30)
        insert.result(timeout=30)
    assert rows(uri, "SELECT id, n, x FROM t ORDER BY id") == [(1, 1, 7), (2, 2, 7), (3, 3, 7)]


def still_unfinished(future: Future) -> None:
    """Asserts that a statement queued behind a block's schema change still waits once the
    change is done (not watched through pg_stat_activity: sqlvec answers no catalog query
    while a block's schema changes are open)."""
    time.sleep(0.2)
    assert not future.done(), future.result()


@pytest.mark.parametrize("altering_in_block", [False, True], ids=["autocommit", "in-block"])
@pytest.mark.parametrize("queued_in_block", [False, True])
def test_a_statement_after_a_waiting_change_queues_behind_it(uri, queued_in_block,
                                                             altering_in_block):
    block = begin(uri, "SELECT count(*) FROM t")
    altering = begin(uri) if altering_in_block else connect(uri)
    queued = begin(uri, "SELECT n FROM u") if queued_in_block else connect(uri)
    with block, altering, queued, ThreadPoolExecutor(2) as pool:
        alter = waiting(pool, altering, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
        select = pool.submit(lambda: queued.execute("SELECT * FROM t ORDER BY id").fetchall())
        with connect(uri) as other:  # another table's statement does not wait
            other.execute("SET lock_timeout = '1s'")
            assert other.execute("SELECT n FROM u").fetchall() == [(1,)]
        assert block.execute("SELECT count(*) FROM t").fetchone() == (2,)  # it holds t
        still_waiting(queued, select)
        block.execute("COMMIT")
        alter.result(timeout=30)
        if altering_in_block:  # the change holds t until its block ends
            still_unfinished(select)
            altering.execute("COMMIT")
        assert select.result(timeout=30) == [(1, 1, 7), (2, 2, 7)]  # the new shape
        if queued_in_block:
            queued.execute("COMMIT")


@pytest.mark.parametrize("end, outcome", [
    ("COMMIT", "42P01"),
    ("ROLLBACK TO a", [(1, 1), (2, 2)]),  # the locks taken since the savepoint go with it
    ("ROLLBACK", [(1, 1), (2, 2)]),
])
def test_a_block_s_drop_queues_statements_until_the_block_ends(uri, end, outcome):
    block = begin(uri, "SELECT count(*) FROM t")
    dropping, queued = begin(uri, "SAVEPOINT a"), connect(uri)
    with block, dropping, queued, ThreadPoolExecutor(2) as pool:
        drop = waiting(pool, dropping, "DROP TABLE t")
        select = pool.submit(lambda: queued.execute("SELECT * FROM t ORDER BY id").fetchall())
        still_waiting(queued, select)
        block.execute("COMMIT")
        drop.result(timeout=30)
        dropping.execute(end)
        if outcome == "42P01":
            assert sqlstate(select) == "42P01"
        else:
            assert select.result(timeout=30) == outcome
        dropping.execute("COMMIT")  # (after ROLLBACK TO: the block is still open)


def test_two_blocks_changing_what_the_other_used_fail_one(uri):
    one_of_two_fails_with_40p01(uri, "SELECT count(*) FROM t", "SELECT n FROM u",
                                "ALTER TABLE t ADD COLUMN x int",
                                "ALTER TABLE u ADD COLUMN y int")
    assert rows(uri, "SELECT count(*) FROM information_schema.columns WHERE "
                     "column_name IN ('x', 'y')") == [(1,)]


@pytest.mark.parametrize("in_block", [False, True], ids=["autocommit", "block"])
def test_timeouts_end_a_statement_queued_behind_a_change(uri, in_block):
    block = begin(uri, "SELECT count(*) FROM t")
    altering, queued = begin(uri) if in_block else connect(uri), connect(uri)
    with block, altering, queued, ThreadPoolExecutor(1) as pool:
        alter = waiting(pool, altering, "ALTER TABLE t ADD COLUMN x int")
        queued.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            queued.execute("INSERT INTO t VALUES (3, 3)")
        queued.execute("SET lock_timeout = 0")
        queued.execute("SET statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            queued.execute("SELECT count(*) FROM t")
        block.execute("COMMIT")
        alter.result(timeout=30)
        if in_block:
            altering.execute("ROLLBACK")
    kept = [(1, 1), (2, 2)] if in_block else [(1, 1, None), (2, 2, None)]
    assert rows(uri, "SELECT * FROM t ORDER BY id") == kept


def with_referencing(uri: str, action: str = "") -> None:
    """c references t (its row 1) with `action`; t_n and c_p are indexes of t and c."""
    with connect(uri) as conn:
        conn.execute(f"CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES t {action})")
        conn.execute("INSERT INTO c VALUES (1, 1)")
        conn.execute("CREATE INDEX t_n ON t (n)")
        conn.execute("CREATE INDEX c_p ON c (p)")


@pytest.mark.parametrize("use", ["INSERT INTO c VALUES (2, 2)", "UPDATE c SET p = 2"])
@pytest.mark.parametrize("ddl", ["DROP INDEX t_n", "ALTER TABLE t ADD COLUMN x int DEFAULT 7"])
def test_a_foreign_key_check_uses_the_referenced_table(uri, use, ddl):
    with_referencing(uri)
    commit_beside_change(uri, use, ddl)  # its only contact with t: the check of c's new key
    assert rows(uri, "SELECT max(p) FROM c") == [(2,)]
    assert rows(uri, "SELECT count(*) FROM pg_class WHERE relname = 't_n'") == \
        [(0 if ddl.startswith("DROP") else 1,)]


def test_truncating_the_referenced_table_waits_then_fails(uri):
    with_referencing(uri)
    block = begin(uri, "INSERT INTO c VALUES (2, 2)")
    other = connect(uri)
    with block, other, ThreadPoolExecutor(1) as pool:
        truncate = waiting(pool, other, "TRUNCATE t")
        block.execute("COMMIT")
        assert sqlstate(truncate) == "0A000"
    assert rows(uri, "SELECT count(*) FROM t") == [(2,)]


@pytest.mark.parametrize("action, left", [
    ("ON DELETE CASCADE", []),
    ("ON DELETE SET NULL", [(1, None)]),
    ("", [(1, 1)]),  # NO ACTION: the check looks for rows referencing the deleted key
])
@pytest.mark.parametrize("ddl", ["DROP INDEX c_p", "ALTER TABLE c ADD COLUMN x int"])
def test_a_delete_s_foreign_key_action_uses_the_referencing_table(uri, action, left, ddl):
    with_referencing(uri, action)
    key = 2 if action == "" else 1  # (NO ACTION may delete only an unreferenced key)
    commit_beside_change(uri, f"DELETE FROM t WHERE id = {key}", ddl)
    assert rows(uri, "SELECT id, p FROM c") == left
    assert rows(uri, "SELECT id FROM t") == [(3 - key,)]


def test_a_waiting_change_shows_as_waiting_for_a_relation_lock(uri):
    block = begin(uri, "SELECT count(*) FROM t")
    other = connect(uri)
    queued = connect(uri)
    with block, other, queued, connect(uri) as observer, ThreadPoolExecutor(2) as pool:
        alter = waiting(pool, other, "ALTER TABLE t ADD COLUMN x int")
        select = waiting(pool, queued, "SELECT count(*) FROM t")
        pid = other.info.backend_pid
        for waiter in (pid, queued.info.backend_pid):  # the statement queued behind it too
            assert observer.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity "
                                    "WHERE pid = %s", (waiter,)).fetchone() == \
                ("Lock", "relation")
        assert observer.execute("SELECT locktype, mode FROM pg_locks WHERE pid = %s AND NOT "
                                "granted", (pid,)).fetchall() == [("relation",
                                                                   "AccessExclusiveLock")]
        block.execute("COMMIT")
        alter.result(timeout=30)
        select.result(timeout=30)
        # Idle, it waits for its client (PostgreSQL says so once its backend reads again).
        deadline = time.monotonic() + 5
        while (event := observer.execute("SELECT wait_event_type, wait_event FROM "
                                         "pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
               ) != ("Client", "ClientRead") and time.monotonic() < deadline:
            assert event[0] != "Lock", event
            time.sleep(0.01)
        assert event == ("Client", "ClientRead")


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result of a pipeline (None between one statement's results and the next's)."""
    deadline = time.monotonic() + 30
    while pgconn.is_busy():
        assert time.monotonic() < deadline, "no answer"
        select.select([pgconn.socket], [], [], 0.05)
        pgconn.consume_input()
    return pgconn.get_result()


def parse_in_batch(conn: psycopg.Connection, name: bytes, sql: str, sync: bool) -> None:
    """Parse `sql` as statement `name` in a pipeline (libpq's batch: no Sync unless `sync`),
    and wait for its ParseComplete."""
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    pgconn.send_prepare(name, sql.encode())
    if sync:
        pgconn.pipeline_sync()
    else:
        pgconn.send_flush_request()
    pgconn.flush()
    assert _next_result(pgconn).status == pq.ExecStatus.COMMAND_OK  # type: ignore[union-attr]
    assert _next_result(pgconn) is None
    if sync:
        assert _next_result(pgconn).status == pq.ExecStatus.PIPELINE_SYNC  # type: ignore
    pgconn.flush()


def execute_and_sync(conn: psycopg.Connection, name: bytes) -> tuple[list[bytes], int]:
    """Bind and Execute statement `name`, then Sync (ending the pipeline): the result's column
    names and row count."""
    pgconn = conn.pgconn
    pgconn.send_query_prepared(name, [])
    pgconn.pipeline_sync()
    pgconn.flush()
    result = _next_result(pgconn)
    assert result is not None and result.status == pq.ExecStatus.TUPLES_OK, \
        result.error_message if result is not None else None
    assert _next_result(pgconn) is None
    assert _next_result(pgconn).status == pq.ExecStatus.PIPELINE_SYNC  # type: ignore
    pgconn.exit_pipeline_mode()
    return [result.fname(i) for i in range(result.nfields)], result.ntuples


@pytest.mark.parametrize("name, in_block", [(b"", False), (b"s", False), (b"s", True)],
                         ids=["unnamed", "named", "named-in-block"])
def test_a_change_waits_for_the_batch_that_parsed_a_statement_of_the_table(uri, name,
                                                                           in_block):
    """PostgreSQL's Parse locks the tables it reads until its transaction ends (the batch's
    Sync, or the block's end): the Execute after it runs the plan Parse made."""
    parsing, altering = connect(uri), connect(uri)
    with parsing, altering, ThreadPoolExecutor(1) as pool:
        if in_block:
            parsing.execute("BEGIN")
        parse_in_batch(parsing, name, "SELECT * FROM t ORDER BY id", sync=in_block)
        alter = waiting(pool, altering, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
        assert execute_and_sync(parsing, name) == ([b"id", b"n"], 2)
        if in_block:
            still_waiting(altering, alter)
            parsing.execute("COMMIT")
        alter.result(timeout=30)
    assert rows(uri, "SELECT * FROM t ORDER BY id") == [(1, 1, 7), (2, 2, 7)]


@pytest.mark.parametrize("statement, changed, waits", [
    ("INSERT INTO c VALUES (2, 2)", "t", True),  # its check looks the key up in t
    ("UPDATE c SET p = 2", "t", True),
    ("UPDATE c SET id = 2", "t", False),  # no key of t changed: no check
    ("DELETE FROM t WHERE id = 2", "c", True),  # its check looks for rows referencing 2
    ("UPDATE t SET id = 5 WHERE id = 2", "c", True),
    ("UPDATE t SET n = 5 WHERE id = 2", "c", False),
])
def test_an_autocommit_write_s_foreign_key_check_queues_behind_a_waiting_change(
        uri, statement, changed, waits):
    """PostgreSQL's check locks the other table (RowShareLock), queueing behind the change's
    AccessExclusiveLock request while that waits for a block; a write whose keys stay as
    they were checks nothing and goes on."""
    with_referencing(uri)
    block = begin(uri, f"SELECT count(*) FROM {changed}")
    altering, writing = connect(uri), connect(uri)
    with block, altering, writing, ThreadPoolExecutor(2) as pool:
        alter = waiting(pool, altering, f"ALTER TABLE {changed} ADD COLUMN x int DEFAULT 7")
        if waits:
            write = waiting(pool, writing, statement)
        else:
            writing.execute("SET lock_timeout = '1s'")
            assert writing.execute(statement).rowcount == 1
        block.execute("COMMIT")
        alter.result(timeout=30)
        if waits:
            assert write.result(timeout=30) == 1
    assert rows(uri, f"SELECT count(x) FROM {changed}") == [(2 if changed == "t" else 1,)]


@pytest.mark.parametrize("in_block", [False, True], ids=["autocommit", "in-block"])
@pytest.mark.parametrize("change, fails, after", [
    ("DROP TABLE t, u", True, "SELECT count(*) FROM pg_class WHERE relname IN ('t', 'u')"),
    ("TRUNCATE t, u", True, "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM u)"),
    ("DROP TABLE u, t", False, "SELECT count(*) FROM pg_class WHERE relname IN ('t', 'u')"),
])
def test_a_change_of_several_tables_takes_them_in_turn(uri, change, fails, after, in_block):
    """PostgreSQL locks the tables one after the other: t is the change's while it waits for
    the block that used u, so that block's read of t closes a cycle (40P01, and its locks go
    at once); named after u, t is not locked yet and the block reads it."""
    block = begin(uri, "SET deadlock_timeout = '200ms'", "SELECT count(*) FROM u")
    changing = begin(uri) if in_block else connect(uri)
    with block, changing, ThreadPoolExecutor(1) as pool:
        done = waiting(pool, changing, change)
        if fails:
            with pytest.raises(psycopg.errors.DeadlockDetected):
                block.execute("SELECT count(*) FROM t")
            done.result(timeout=30)
            block.execute("ROLLBACK")
        else:
            assert block.execute("SELECT count(*) FROM t").fetchone() == (2,)
            still_waiting(changing, done)
            block.execute("COMMIT")
            done.result(timeout=30)
        if in_block:
            changing.execute("COMMIT")
    with begin(uri) as reading:  # (a block's read: the primary answers it)
        assert reading.execute(after).fetchall() == [(0,)]
