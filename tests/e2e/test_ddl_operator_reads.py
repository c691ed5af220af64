"""What an operator runs while a transaction block's schema change is open, compared with a real
PostgreSQL: with a block holding an ALTER TABLE (as Alembic runs every migration) and a SELECT
of the table waiting behind it, pg_stat_activity, pg_locks, pg_settings, pg_blocking_pids, SHOW,
current_setting, pg_backend_pid, version() and the progress views answer at once (through the server's workers too:
the default server runs them), while reads of a user table or of pg_class still wait. The
operator finds the blocker with pg_blocking_pids and ends it with pg_terminate_backend: the
block's change is rolled back and the waiting SELECT completes with the old shape.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.e2e.conftest import beside_postgres, start_server
from tests.e2e.test_row_locks import begin, connect, still_waiting, waiting

# A statement of the operator that must not wait answers within this (PostgreSQL: at once).
BOUND = 2.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """PostgreSQL, a sqlvec server with its default worker processes, and one without."""
    with beside_postgres(tmp_path_factory, "ddlreads") as (sqlvec, postgres):
        single = start_server(tmp_path_factory.mktemp("ddlreads-single"), "--workers", "0")
        try:
            yield {"postgres": postgres, "sqlvec": sqlvec,
                   "sqlvec-single": f"postgresql://postgres@{single.host}:{single.port}/postgres"}
        finally:
            assert single.stop() == 0, single.log()


@pytest.fixture(params=["postgres", "sqlvec", "sqlvec-single"])
def uri(request, servers) -> str:
    with psycopg.connect(servers[request.param], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t, u CASCADE")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
    return servers[request.param]


@pytest.fixture
def sqlvec_uri(servers) -> str:
    return servers["sqlvec"]


def operator(uri: str) -> psycopg.Connection:
    """A session whose statements give up after a while instead of hanging the test."""
    conn = connect(uri)
    conn.execute(f"SET statement_timeout = '{int(BOUND * 5)}s'")
    return conn


def answers_at_once(conn: psycopg.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    started = time.monotonic()
    rows = conn.execute(sql, params).fetchall()
    assert time.monotonic() - started < BOUND, sql
    return rows


def still_waits(conn: psycopg.Connection, sql: str) -> None:
    """`sql` is cancelled by a short statement_timeout: it waited for the schema change."""
    conn.execute("SET statement_timeout = '300ms'")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(sql)
    finally:
        conn.execute(f"SET statement_timeout = '{int(BOUND * 5)}s'")


def test_operator_statements_answer_while_a_block_alters_a_table(uri):
    block = begin(uri, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
    reader, watcher = connect(uri), operator(uri)
    with ThreadPoolExecutor(1) as pool, reader, block, watcher:
        read = waiting(pool, reader, "SELECT * FROM t ORDER BY id")
        blocker, waiter = block.info.backend_pid, reader.info.backend_pid
        activity = dict((pid, rest) for pid, *rest in answers_at_once(
            watcher, "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity "
                     "WHERE pid IN (%s, %s)", (blocker, waiter)))
        assert activity[blocker][0] == "idle in transaction"
        assert activity[waiter][1:] == ["Lock", "relation"]
        assert answers_at_once(watcher, "SELECT pg_blocking_pids(%s)", (waiter,)) == [([blocker],)]
        assert answers_at_once(watcher, "SELECT pg_blocking_pids(pg_backend_pid())") == [([],)]
        assert (waiter, False) in answers_at_once(
            watcher, "SELECT pid, granted FROM pg_catalog.pg_locks WHERE pid IS NOT NULL")
        assert answers_at_once(watcher, "SHOW lock_timeout") == [("0",)]
        assert answers_at_once(watcher, "SELECT current_setting('lock_timeout'), "
                                        "pg_backend_pid() = %s, version() LIKE 'PostgreSQL%%'",
                               (watcher.info.backend_pid,)) == [("0", True, True)]
        assert answers_at_once(watcher, "SELECT setting FROM pg_settings "
                                        "WHERE name = 'lock_timeout'") == [("0",)]
        assert answers_at_once(watcher, "SELECT count(*) FROM pg_stat_progress_create_index, "
                                        "pg_stat_progress_copy") == [(0,)]
        assert not read.done()
        block.execute("ROLLBACK")
        assert read.result(timeout=30) == 2


def test_the_operator_finds_the_blocker_and_terminates_it(uri):
    block = begin(uri, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
    reader, watcher = connect(uri), operator(uri)
    with ThreadPoolExecutor(1) as pool, reader, block, watcher:
        cursor = reader.cursor()
        read = pool.submit(lambda: (cursor.execute("SELECT * FROM t ORDER BY id").fetchall(),
                                    [c.name for c in cursor.description]))
        waiter = reader.info.backend_pid
        deadline = time.monotonic() + 10
        blocked: list[tuple] = []
        while not blocked and time.monotonic() < deadline:
            blocked = answers_at_once(
                watcher, "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity "
                         "WHERE cardinality(pg_blocking_pids(pid)) > 0")
        assert blocked == [(waiter, [block.info.backend_pid])]
        assert answers_at_once(watcher, "SELECT pg_terminate_backend(%s)",
                               (block.info.backend_pid,)) == [(True,)]
        assert read.result(timeout=30) == ([(1, 1), (2, 2)], ["id", "n"])
        with pytest.raises(psycopg.OperationalError):
            block.execute("SELECT 1")
    with connect(uri) as conn:
        assert [c.name for c in conn.execute("SELECT * FROM t").description] == ["id", "n"]


def test_reads_of_tables_and_of_the_catalog_still_wait(sqlvec_uri):
    """Only the live state goes ahead: a user table (a sequence, through a function, a cast
    to regclass) and the catalog's relations may be what the block changes."""
    with connect(sqlvec_uri) as conn:
        conn.execute("DROP SEQUENCE IF EXISTS s")
        conn.execute("CREATE SEQUENCE s")
    block = begin(sqlvec_uri, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
    watcher = operator(sqlvec_uri)
    with block, watcher:
        for sql in ("SELECT count(*) FROM t", "SELECT relname FROM pg_class",
                    "SELECT * FROM pg_stat_activity, t", "SELECT nextval('s')",
                    "SELECT 't'::regclass", "SELECT * FROM pg_stat_user_tables",
                    "WITH a AS (SELECT pid FROM pg_stat_activity) SELECT * FROM a"):
            still_waits(watcher, sql)
        answers_at_once(watcher, "SELECT count(*) FROM pg_stat_activity")
        block.execute("ROLLBACK")


def test_live_reads_beside_a_block_changing_many_tables(sqlvec_uri):
    """pg_stat_activity and pg_locks read again and again while a block creates and drops
    tables (its changes, then their rollback, change the tables and the catalog meanwhile):
    every read answers, none fails."""
    errors: list[BaseException] = []
    done = threading.Event()

    def watch() -> None:
        with operator(sqlvec_uri) as conn:
            while not done.is_set():
                try:
                    conn.execute("SELECT count(*) FROM pg_stat_activity, pg_locks").fetchall()
                except BaseException as exc:  # (reported by the test)
                    errors.append(exc)
                    return

    thread = threading.Thread(target=watch)
    with connect(sqlvec_uri) as block:
        thread.start()
        try:
            for round_ in range(3):
                block.execute("BEGIN")
                for i in range(15):
                    block.execute(f"CREATE TABLE live_{i} (id int PRIMARY KEY, v text)")
                    block.execute(f"SELECT * FROM live_{i}")
                block.execute("ALTER TABLE t ADD COLUMN x int")
                block.execute("ROLLBACK" if round_ % 2 == 0 else "COMMIT")
                if round_ % 2:
                    for i in range(15):
                        block.execute(f"DROP TABLE live_{i}")
                    block.execute("ALTER TABLE t DROP COLUMN x")
        finally:
            done.set()
            thread.join(30)
    assert not errors, errors


def test_pg_blocking_pids_names_the_block_holding_a_row(uri):
    block = begin(uri, "UPDATE t SET n = 10 WHERE id = 1")
    writer, watcher = connect(uri), operator(uri)
    with ThreadPoolExecutor(1) as pool, writer, block, watcher:
        update = waiting(pool, writer, "UPDATE t SET n = 20 WHERE id = 1")
        assert answers_at_once(watcher, "SELECT pg_blocking_pids(%s)",
                               (writer.info.backend_pid,)) == [([block.info.backend_pid],)]
        block.execute("COMMIT")
        assert update.result(timeout=30) == 1
        assert answers_at_once(watcher, "SELECT pg_blocking_pids(%s)",
                               (writer.info.backend_pid,)) == [([],)]


def _prepared(conn: psycopg.Connection, sql: str) -> int:
    return conn.execute(sql, prepare=True).rowcount


def _parsed_alone(conn: psycopg.Connection, sql: str) -> int:
    conn.pgconn.prepare(b"parsed", sql.encode())  # Parse and Sync, no Execute
    return 0


@pytest.mark.parametrize("send", [None, _prepared, _parsed_alone],
                         ids=["simple", "prepared", "parse-alone"])
def test_a_statement_waiting_to_be_planned_shows_active_with_its_text(uri, send):
    """A statement waiting for a block's schema change before it is planned is the session's
    active statement: its text, started when it was sent, waiting on a relation's lock."""
    block = begin(uri, "ALTER TABLE t ADD COLUMN x int DEFAULT 7")
    reader, watcher = connect(uri), operator(uri)
    sql = "SELECT n FROM t WHERE id = 1"
    with ThreadPoolExecutor(1) as pool, reader, block, watcher:
        reader.execute("SELECT 'before'")
        (sent,), = answers_at_once(watcher, "SELECT now()")
        future = pool.submit(lambda: (send or (lambda c, s: c.execute(s).rowcount))(reader, sql))
        still_waiting(reader, future)
        rows = answers_at_once(
            watcher, "SELECT state, query, wait_event_type, wait_event, query_start >= %s, "
                     "state_change >= %s FROM pg_stat_activity WHERE pid = %s",
            (sent, sent, reader.info.backend_pid))
        assert rows == [("active", sql, "Lock", "relation", True, True)]
        block.execute("ROLLBACK")
        future.result(timeout=30)
        assert answers_at_once(watcher, "SELECT state, query FROM pg_stat_activity "
                                        "WHERE pid = %s", (reader.info.backend_pid,)) == \
            [("idle", sql)]


def test_pg_stat_activity_times_are_set_as_postgresql_sets_them(uri):
    """Another session's times: query_start NULL before its first statement; while one runs,
    its start, also the start of its transaction and of its active state; once it ended,
    idle since then and no transaction; in a block, the block's start."""
    conn, watcher = connect(uri), operator(uri)
    sql = "SELECT 'times' FROM pg_sleep(0.3)"

    def times() -> tuple:
        return watcher.execute("SELECT state, query_start, state_change, xact_start "
                               "FROM pg_stat_activity WHERE pid = %s",
                               (conn.info.backend_pid,)).fetchone()

    with ThreadPoolExecutor(1) as pool, conn, watcher:
        state, query_start, state_change, xact_start = times()
        assert (state, query_start, xact_start) == ("idle", None, None)
        assert state_change is not None
        (sent,), = watcher.execute("SELECT clock_timestamp()").fetchall()
        running = pool.submit(lambda: conn.execute(sql).fetchall())
        deadline = time.monotonic() + BOUND
        while (active := times())[0] != "active":  # (a worker reports it after 50 ms)
            assert time.monotonic() < deadline and not running.done()
            time.sleep(0.01)
        _, query_start, state_change, xact_start = active
        assert sent <= query_start == xact_start <= state_change
        assert running.result(timeout=30) == [("times",)]
        state, ended_start, state_change, xact_start = times()
        assert (state, ended_start, xact_start) == ("idle", query_start, None)
        assert state_change - query_start >= dt.timedelta(seconds=0.3)
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
        state, query_start, state_change, xact_start = times()
        assert state == "idle in transaction"
        assert ended_start < xact_start < query_start <= state_change
        conn.execute("COMMIT")
        assert times()[3] is None


def test_pg_blocking_pids_names_only_the_claims_a_statement_waits_behind(uri):
    """Two schema changes each wait for a block using both their tables; a read of one table
    waits behind that table's change only."""
    with connect(uri) as conn:
        conn.execute("CREATE TABLE u (id int PRIMARY KEY)")
    block = begin(uri, "SELECT * FROM t", "SELECT * FROM u")
    alter_t, alter_u, reader, watcher = connect(uri), connect(uri), connect(uri), operator(uri)
    with ThreadPoolExecutor(3) as pool, alter_t, alter_u, reader, block, watcher:
        changes = [waiting(pool, alter_t, "ALTER TABLE t ADD COLUMN x int"),
                   waiting(pool, alter_u, "ALTER TABLE u ADD COLUMN x int")]
        read = waiting(pool, reader, "SELECT n FROM t ORDER BY id")
        pids = [c.info.backend_pid for c in (alter_t, alter_u, reader)]
        assert answers_at_once(
            watcher, "SELECT pg_blocking_pids(%s), pg_blocking_pids(%s), pg_blocking_pids(%s)",
            pids) == [([block.info.backend_pid], [block.info.backend_pid], [pids[0]])]
        block.execute("COMMIT")
        for change in changes:
            change.result(timeout=30)
        assert read.result(timeout=30) == 2
