"""`serve --workers N`: connections served by several processes, one writer.

Each connection lands on the least loaded worker, so two connections opened one after the
other land on different workers (`SHOW sqlvec.worker` is answered by the worker that ran it,
proving the read ran there). Results and visibility must be the same as with one process.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tests.e2e.conftest import (
    RunningServer,
    on_two_workers,
    run_in_thread,
    serve_while_used,
    server_processes,
    start_server,
)


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    yield from serve_while_used(tmp_path_factory, "sqlvec-workers", "--workers", "2")


def connect(server: RunningServer, **kwargs) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(), autocommit=True, **kwargs)


def worker_of(conn: psycopg.Connection) -> str:
    return conn.execute("SHOW sqlvec.worker").fetchone()[0]


def two_workers(server: RunningServer) -> tuple[psycopg.Connection, psycopg.Connection]:
    """Two connections served by different workers."""
    return on_two_workers(lambda: connect(server))


def test_commit_on_one_worker_is_read_at_once_on_another(pool_server, table):
    a, b = two_workers(pool_server)
    with a, b:
        a.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector(2))")
        for i in range(20):
            a.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"[{i},0]"))
            assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (i + 1,)
            assert b.execute(f"SELECT id FROM {table} WHERE id = %s", (i,)).fetchall() == [(i,)]
        # A transaction's rows are seen by no one else before COMMIT, by everyone after.
        a.execute("BEGIN")
        a.execute(f"INSERT INTO {table} VALUES (100, '[1,1]')")
        assert a.execute(f"SELECT count(*) FROM {table}").fetchone() == (21,)
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (20,)
        a.execute("COMMIT")
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (21,)
        a.execute(f"DELETE FROM {table} WHERE id < 10")
        assert b.execute(f"SELECT min(id) FROM {table}").fetchone() == (10,)


def test_ddl_on_one_worker_is_used_on_another(pool_server, table):
    a, b = two_workers(pool_server)
    with a, b:
        a.execute(f"CREATE TABLE {table} (id int, v vector(3))")
        a.execute(f"INSERT INTO {table} SELECT g, array[g, g, g]::vector FROM "
                  "generate_series(1, 50) g")
        a.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops)")
        rows = b.execute(f"SELECT id FROM {table} ORDER BY v <-> '[7,7,7]' LIMIT 3").fetchall()
        assert [r[0] for r in rows] == [7, 6, 8] or [r[0] for r in rows] == [7, 8, 6]
        a.execute(f"ALTER TABLE {table} ADD COLUMN note text DEFAULT 'x'")
        assert b.execute(f"SELECT note FROM {table} WHERE id = 1").fetchall() == [("x",)]
        a.execute(f"DROP TABLE {table}")
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute(f"SELECT * FROM {table}")


def test_a_transactions_ddl_reaches_workers_only_at_commit(pool_server, table):
    a, b = two_workers(pool_server)
    with a, b:
        a.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        a.execute(f"INSERT INTO {table} VALUES (1)")
        a.execute("BEGIN")
        a.execute(f"ALTER TABLE {table} ADD COLUMN note text DEFAULT 'x'")
        a.execute(f"CREATE TABLE {table}_2 (id int)")
        a.execute(f"INSERT INTO {table}_2 VALUES (7)")
        # As in one process, a read of another session waits for the transaction (its
        # lock_timeout ends the wait), whichever worker holds the connection: it never
        # reads the old shape while the new one is pending.
        b.execute("SET lock_timeout = '200ms'")
        for query in (f"SELECT * FROM {table}", f"SELECT * FROM {table}_2"):
            with pytest.raises(psycopg.errors.LockNotAvailable):
                b.execute(query)
        a.execute("COMMIT")
        assert b.execute(f"SELECT * FROM {table}").fetchall() == [(1, "x")]
        assert b.execute(f"SELECT * FROM {table}_2").fetchall() == [(7,)]


def test_settings_and_prepared_statements_follow_the_session(pool_server, table):
    a, b = two_workers(pool_server)
    with a, b:
        a.execute("CREATE SCHEMA IF NOT EXISTS wk")
        a.execute(f"CREATE TABLE wk.{table} (id int)")
        a.execute(f"INSERT INTO wk.{table} VALUES (1), (2)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute(f"SELECT * FROM {table}")
        b.execute("SET search_path = wk, public")
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        b.execute("RESET search_path")
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute(f"SELECT * FROM {table}")
        # Prepared here, then needed by the writer inside a transaction block, then here again.
        query = f"SELECT id FROM wk.{table} WHERE id = %s"
        for _ in range(6):
            assert b.execute(query, (1,), prepare=True).fetchall() == [(1,)]
        with b.transaction():
            b.execute(f"INSERT INTO wk.{table} VALUES (3)")
            assert b.execute(query, (3,), prepare=True).fetchall() == [(3,)]
        assert b.execute(query, (3,), prepare=True).fetchall() == [(3,)]
        b.execute("DEALLOCATE ALL")
        assert b.execute(query, (2,), prepare=True).fetchall() == [(2,)]


def test_vector_search_settings_are_the_sessions_in_the_worker(pool_server, table):
    """The same EXPLAIN in a worker (autocommit) and in the primary (inside a block)."""
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, v vector(4))")
        conn.execute(f"INSERT INTO {table} SELECT g, array[g % 7, g % 11, g % 13, g]::vector "
                     "FROM generate_series(1, 500) g")
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops)")
        explain = f"EXPLAIN SELECT id FROM {table} ORDER BY v <-> '[1,2,3,4]' LIMIT 10"

        def both() -> tuple[list, list]:
            here = conn.execute(explain).fetchall()
            with conn.transaction():
                there = conn.execute(explain).fetchall()
            return here, there

        here, there = both()
        assert here == there  # the default: a recall target, not a knob
        conn.execute("SET hnsw.ef_search = 17")
        here, there = both()
        assert here == there and "ef=17" in str(here)
        conn.execute("RESET hnsw.ef_search")
        assert both()[0] == both()[1] and "ef=17" not in str(both()[0])


def test_asyncpg_prepared_statements_inside_and_outside_transactions(pool_server, table):
    async def run() -> None:
        conns = [await asyncpg.connect(host=pool_server.host, port=pool_server.port,
                                       user="postgres", database="postgres") for _ in range(2)]
        a, b = conns
        await a.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector(2))")
        stmt = await b.prepare(f"SELECT count(*) FROM {table} WHERE id >= $1")
        for i in range(5):
            await a.execute(f"INSERT INTO {table} VALUES ($1, $2)", i, f"[{i},1]")
            assert await stmt.fetchval(0) == i + 1
        async with b.transaction():
            await b.execute(f"INSERT INTO {table} VALUES (99, '[0,0]')")
            assert await stmt.fetchval(0) == 6
        assert await stmt.fetchval(99) == 1
        for conn in conns:
            await conn.close()

    asyncio.run(run())


def _cancel_until_done(target: psycopg.Connection, sql: str) -> BaseException | None:
    """Run `sql` on `target` in a thread and send cancel requests until it ends."""
    thread, outcome = run_in_thread(target, sql)
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        target.cancel()
        thread.join(0.2)
    assert not thread.is_alive(), "the statement was never cancelled"
    return outcome[0]


def test_cancel_request_reaches_a_read_in_a_worker_and_a_transaction(pool_server):
    with connect(pool_server) as conn:
        started = time.monotonic()
        # Outside a transaction block: the worker runs it.
        assert isinstance(_cancel_until_done(conn, "SELECT pg_sleep(100)"),
                          psycopg.errors.QueryCanceled)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Inside one: the primary runs it.
        conn.execute("BEGIN")
        assert isinstance(_cancel_until_done(conn, "SELECT pg_sleep(100)"),
                          psycopg.errors.QueryCanceled)
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 2").fetchone() == (2,)
        assert time.monotonic() - started < 90


def _wait_active(watcher: psycopg.Connection, pid: int) -> None:
    """Until pg_stat_activity shows `pid` running a statement (a worker reports it)."""
    deadline = time.monotonic() + 30
    while watcher.execute("SELECT state FROM pg_stat_activity WHERE pid = %s",
                          (pid,)).fetchone() != ("active",):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_pg_cancel_backend_from_a_session_on_another_worker(pool_server):
    """A session served by one worker cancels another worker's session's statement with
    pg_cancel_backend: 57014 there, in a read its worker runs and inside a transaction block
    (which the primary runs); the cancelled session goes on."""
    victim, admin = two_workers(pool_server)
    with victim, admin:
        pid = victim.info.backend_pid
        for block in (False, True):
            if block:
                victim.execute("BEGIN")
            thread, outcome = run_in_thread(victim, f"SELECT pg_sleep(60), {WHERE_RUN}")
            _wait_active(admin, pid)
            assert admin.execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone() == (True,)
            thread.join(20)  # well before the sleep would end
            assert not thread.is_alive()
            assert isinstance(outcome[0], psycopg.errors.QueryCanceled), outcome
            if block:
                assert victim.info.transaction_status.name == "INERROR"
                victim.execute("ROLLBACK")
            assert victim.execute("SELECT pg_backend_pid()").fetchone() == (pid,)


def test_terminate_ends_a_connection_whose_read_runs_in_a_worker(pool_server):
    """pg_terminate_backend ends the connection at once with 57P01, as in one process, and
    does not wait for the read its worker runs."""
    victim, admin = connect(pool_server), connect(pool_server)
    outcome: dict = {}

    def run() -> None:
        try:
            victim.execute(f"SELECT pg_sleep(60), {WHERE_RUN}")
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    pid = victim.info.backend_pid
    _wait_active(admin, pid)
    assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    thread.join(20)  # well before the sleep would end
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.AdminShutdown), outcome
    assert admin.execute("SELECT 1").fetchone() == (1,)
    victim.close()
    admin.close()


def test_pg_stat_activity_lists_sessions_of_every_worker(pool_server):
    a, b = two_workers(pool_server)
    with a, b:
        pids = {a.info.backend_pid, b.info.backend_pid}
        rows = a.execute("SELECT pid FROM pg_stat_activity").fetchall()
        assert pids <= {r[0] for r in rows}
        assert b.execute("SELECT pg_backend_pid()").fetchone() == (b.info.backend_pid,)


ACTIVITY = ("SELECT state, query, query_start, state_change, xact_start FROM pg_stat_activity "
            "WHERE pid = %s")


def _activity_after(watcher: psycopg.Connection, conn: psycopg.Connection, sql: str,
                    times: int = 1, **kwargs) -> tuple:
    """`sql` run `times` on `conn` (answered by its worker), then its row of pg_stat_activity
    as another session reads it, with the time before the last run was sent."""
    for _ in range(times - 1):
        conn.execute(sql, **kwargs)
    (before,) = watcher.execute("SELECT clock_timestamp()").fetchone()
    conn.execute(sql, **kwargs)
    return before, watcher.execute(ACTIVITY, (conn.info.backend_pid,)).fetchone()


def test_pg_stat_activity_times_of_reads_answered_in_a_worker(pool_server):
    """As PostgreSQL's: query_start is NULL before the first statement, then the last one's
    start, state_change its end, xact_start NULL outside a block; a read its worker answered
    (run, or a kept answer sent again) shows with its own times, and a block's statements
    with the block's start."""
    conn, watcher = two_workers(pool_server)  # (which each ran SHOW sqlvec.worker)
    with conn, watcher, connect(pool_server) as fresh:
        state, query, query_start, _, xact_start = watcher.execute(
            ACTIVITY, (fresh.info.backend_pid,)).fetchone()
        assert (state, query, query_start, xact_start) == ("idle", "", None, None)
        last = None
        for sql, prepare in [("SELECT 41", False), ("SELECT 42", True),
                             ("SELECT 42", True)]:
            # (run 3 times in a row: the last ones are answered with the answer kept)
            before, row = _activity_after(watcher, conn, sql, 3, prepare=prepare)
            state, query, query_start, state_change, xact_start = row
            assert (state, query, xact_start) == ("idle", sql, None)
            assert before <= query_start <= state_change
            assert last is None or query_start > last
            last = query_start
        before, row = _activity_after(watcher, conn, "BEGIN")
        _, row = _activity_after(watcher, conn, "SELECT 3")
        state, query, query_start, state_change, xact_start = row
        assert (state, query) == ("idle in transaction", "SELECT 3")
        assert before <= xact_start < query_start <= state_change
        conn.execute("COMMIT")
        assert watcher.execute(ACTIVITY, (conn.info.backend_pid,)).fetchone()[4] is None


def test_pg_stat_activity_shows_a_worker_s_pipeline_by_its_last_statement(pool_server):
    """As PostgreSQL's: after a pipeline of reads its worker answered, the session shows the
    last statement it ran, not the first."""
    conn, watcher = two_workers(pool_server)
    with conn, watcher:
        with conn.pipeline():
            conn.execute("SELECT 1 AS first")
            conn.execute("SELECT 2 AS last")
        state, query = watcher.execute(ACTIVITY, (conn.info.backend_pid,)).fetchone()[:2]
        assert (state, query) == ("idle", "SELECT 2 AS last")


def test_pg_stat_activity_has_no_xact_start_in_an_aborted_block(pool_server):
    """As PostgreSQL's: a block that failed is idle in transaction (aborted) with no
    transaction start (the transaction is over; only its block waits for ROLLBACK)."""
    conn, watcher = two_workers(pool_server)
    with conn, watcher:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        row = watcher.execute(ACTIVITY, (conn.info.backend_pid,)).fetchone()
        assert (row[0], row[4]) == ("idle in transaction (aborted)", None)
        conn.execute("ROLLBACK")


def _workers_of(server: RunningServer) -> dict[str, int]:
    """Worker index -> process id, from /proc: the server's descendants named
    `sqlvec-worker-N` (forked by its fork server, `wire.workers.ForkServer`)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        names[int(entry)] = stat[stat.index("(") + 1:stat.rindex(")")]
    out = {}
    for pid, name in names.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != server.process.pid:
            ancestor = parents.get(ancestor)
        if ancestor and name.startswith("sqlvec-worker-"):
            out[name.removeprefix("sqlvec-worker-")] = pid
    return out


def test_a_killed_worker_takes_only_its_connections_and_is_restarted(tmp_path, reap):
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    a, b = two_workers(server)
    a.execute("CREATE TABLE k (id int)")
    victims = _workers_of(server)
    assert set(victims) == {"0", "1"}
    victim = worker_of(a)
    os.kill(victims[victim], signal.SIGKILL)
    with pytest.raises(psycopg.OperationalError):
        a.execute("SELECT 1")
    # The other worker's connection keeps working, reads and writes.
    b.execute("INSERT INTO k VALUES (1)")
    assert b.execute("SELECT count(*) FROM k").fetchone() == (1,)
    # The primary starts the worker again; new connections are served by both.
    deadline = time.monotonic() + 60
    seen: set[str] = set()
    conns = []
    while seen != {"0", "1"} and time.monotonic() < deadline:
        conn = connect(server)
        conns.append(conn)
        seen.add(worker_of(conn))
        assert conn.execute("SELECT count(*) FROM k").fetchone() == (1,)
    assert seen == {"0", "1"}
    now = _workers_of(server)
    assert set(now) == {"0", "1"} and now[victim] != victims[victim]
    for conn in [b, *conns]:
        conn.close()
    assert server.stop() == 0, server.log()
    assert "starting it again" in server.log()


def test_sixteen_connections_of_reads_and_writes_lose_no_acknowledged_row(pool_server, table):
    with connect(pool_server) as admin:
        admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, owner int, v vector(4))")
    acknowledged: list[set[int]] = [set() for _ in range(16)]
    deleted: list[set[int]] = [set() for _ in range(16)]
    errors: list[BaseException] = []

    def client(n: int) -> None:
        rng = random.Random(n)
        try:
            with connect(pool_server) as conn:
                for i in range(40):
                    key = n * 1000 + i
                    choice = rng.random()
                    if choice < 0.5:
                        conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                                     (key, n, f"[{n},{i},0,1]"))
                        acknowledged[n].add(key)
                    elif choice < 0.6 and acknowledged[n] - deleted[n]:
                        gone = min(acknowledged[n] - deleted[n])
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (gone,))
                        deleted[n].add(gone)
                    elif choice < 0.7:
                        with conn.transaction():
                            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                                         (key, n, f"[{n},{i},1,1]"))
                        acknowledged[n].add(key)
                    # Every read sees exactly this client's acknowledged, undeleted rows.
                    rows = conn.execute(f"SELECT id FROM {table} WHERE owner = %s",
                                        (n,)).fetchall()
                    assert {r[0] for r in rows} == acknowledged[n] - deleted[n]
                    near = conn.execute(
                        f"SELECT id FROM {table} WHERE owner = %s ORDER BY v <-> %s LIMIT 5",
                        (n, f"[{n},{i},0,1]")).fetchall()
                    assert {r[0] for r in near} <= acknowledged[n] - deleted[n]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    assert not errors, errors[:3]
    with connect(pool_server) as conn:
        rows = {r[0] for r in conn.execute(f"SELECT id FROM {table}").fetchall()}
    expected = set().union(*acknowledged) - set().union(*deleted)
    assert rows == expected
    assert "internal error" not in pool_server.log()


def _vector(rng: random.Random, dim: int) -> str:
    return "[" + ",".join(f"{rng.gauss(0, 1):.3f}" for _ in range(dim)) + "]"


WHERE_RUN = "current_setting('sqlvec.worker', true)"  # the worker's index; NULL in the primary


def test_ef_search_is_used_by_reads_in_a_worker_right_after_create_index(pool_server, table):
    """A read in a worker searches with the session's hnsw.ef_search exactly, as the primary
    does (the same rows as inside a transaction block, which the primary answers), from the
    first statement after CREATE INDEX on; prepared or not."""
    rng = random.Random(7)
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, v vector(16))")
        with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
            for i in range(3000):
                copy.write_row((i, _vector(rng, 16)))
        # A small graph, so that ef_search changes the answers.
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops) "
                     "WITH (m = 4, ef_construction = 8)")
        queries = [_vector(rng, 16) for _ in range(5)]
        sql = f"SELECT id, {WHERE_RUN} FROM {table} ORDER BY v <-> %s LIMIT 10"
        answers = {}
        for ef in (10, 400):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            for prepare in (True, False):
                here = [conn.execute(sql, (q,), prepare=prepare).fetchall() for q in queries]
                assert {row[1] for rows in here for row in rows} == {worker_of(conn)}
                with conn.transaction():
                    there = [conn.execute(sql, (q,)).fetchall() for q in queries]
                assert {row[1] for rows in there for row in rows} == {None}
                ids = [[row[0] for row in rows] for rows in here]
                assert ids == [[row[0] for row in rows] for rows in there]
                answers.setdefault(ef, ids)
                assert answers[ef] == ids
        assert answers[10] != answers[400]


def test_a_read_with_a_notice_is_answered_by_the_worker_once(pool_server, table):
    """A NOTICE (an unreachable recall target) is part of a read's answer, not a failure: the
    worker answers, and the client gets it once."""
    rng = random.Random(8)
    notices: list[str] = []
    with connect(pool_server) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(f"CREATE TABLE {table} (id int, v vector(16))")
        with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
            for i in range(2000):
                copy.write_row((i, _vector(rng, 16)))
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops) "
                     "WITH (m = 2, ef_construction = 4)")
        conn.execute("SET sqlvec.max_ef_search = 10")
        notices.clear()
        rows = conn.execute(f"SELECT id, {WHERE_RUN} FROM {table} ORDER BY v <-> %s LIMIT 5",
                            (_vector(rng, 16),)).fetchall()
        assert len(rows) == 5 and {r[1] for r in rows} == {worker_of(conn)}
        assert len(notices) == 1 and "recall target" in notices[0]


def test_reloaded_configuration_reaches_reads_in_every_worker(tmp_path, reap):
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    a, b = two_workers(server)
    shown = f"SELECT current_setting('work_mem'), {WHERE_RUN}"
    source = f"SELECT setting, source, {WHERE_RUN} FROM pg_settings WHERE name = 'work_mem'"
    with a, b:
        before = b.execute(shown).fetchone()
        a.execute("ALTER SYSTEM SET work_mem = '12MB'")
        assert b.execute(shown).fetchone() == before  # at the next reload, as PostgreSQL
        assert a.execute("SELECT pg_reload_conf()").fetchone() == (True,)
        for conn in (a, b):
            for _ in range(2):  # (the first read after a reload may be the primary's)
                value = conn.execute(shown).fetchone()[0]
            assert conn.execute(shown).fetchone() == ("12MB", worker_of(conn))
            assert conn.execute(source).fetchone() == ("12288", "configuration file",
                                                       worker_of(conn))
        # A value the session SET itself outlives reloads, in the worker too.
        b.execute("SET work_mem = '1MB'")
        (server.data_dir / "sqlvec.conf").write_text("work_mem = '20MB'\n")
        a.execute("ALTER SYSTEM RESET ALL")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while value != "20MB" and time.monotonic() < deadline:
            value = a.execute(shown).fetchone()[0]
        assert a.execute(shown).fetchone() == ("20MB", worker_of(a))
        assert b.execute(shown).fetchone()[0] == "1MB"  # (the primary's, after a reload)
        assert b.execute(shown).fetchone() == ("1MB", worker_of(b))
        assert b.execute(source).fetchone() == ("1024", "session", worker_of(b))
    assert server.stop() == 0, server.log()


def _counters(conn: psycopg.Connection, table: str) -> tuple:
    """What the primary counted for `table`: pg_stat_statements calls and rows of the reads
    below, pg_stat_user_tables' and pg_stat_user_indexes' scans (a pg_stat view is always
    answered by the primary)."""
    calls = conn.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements "
        f"WHERE query LIKE 'SELECT id, current_setting%FROM {table}%'").fetchone()
    scans = conn.execute(
        "SELECT seq_scan, seq_tup_read, idx_scan, idx_tup_fetch FROM pg_stat_user_tables "
        "WHERE relname = %s", (table,)).fetchone()
    index = conn.execute("SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes "
                         "WHERE relname = %s", (table,)).fetchone()
    return tuple(int(v) for v in (*calls, *scans, *index))


def test_statistics_of_reads_in_workers_are_counted_by_the_primary(pool_server, table):
    """Reads answered in two workers are counted in the primary's pg_stat_statements and
    table/index scan counters exactly as the same reads answered by the primary (inside a
    transaction block) are."""
    rng = random.Random(3)
    a, b = two_workers(pool_server)
    with a, b:
        a.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        a.execute(f"CREATE TABLE {table} (id int, v vector(4))")
        with a.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
            for i in range(200):
                copy.write_row((i, _vector(rng, 4)))
        a.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops)")
        scan = f"SELECT id, {WHERE_RUN} FROM {table} WHERE id < 50"
        search = f"SELECT id, {WHERE_RUN} FROM {table} ORDER BY v <-> %s LIMIT 3"
        vector = _vector(rng, 4)

        def reads(conn: psycopg.Connection) -> set:
            ran = set()
            for _ in range(3):
                ran |= {r[1] for r in conn.execute(scan).fetchall()}
                ran |= {r[1] for r in conn.execute(search, (vector,)).fetchall()}
            return ran

        def settled(expected: tuple) -> tuple:
            deadline = time.monotonic() + 30
            while (got := _counters(a, table)) != expected and time.monotonic() < deadline:
                time.sleep(0.05)
            return got

        before = _counters(a, table)  # (only the primary has read the table so far)
        with a.transaction():  # answered by the primary
            assert reads(a) == {None}
        primary = _counters(a, table)
        step = tuple(p - q for p, q in zip(primary, before))
        assert step[0] == 6 and step[1] == 3 * 50 + 3 * 3, step
        assert step[2] >= 3 and step[4] >= 3 and step[6] >= 3, step
        assert reads(a) == {worker_of(a)} and reads(b) == {worker_of(b)}
        expected = tuple(p + 2 * s for p, s in zip(primary, step))
        assert settled(expected) == expected


def test_what_a_launcher_adds_to_the_engine_is_in_forked_workers(tmp_path, reap):
    """A launcher module that registers an access method before running the command line
    (tests/e2e/test_index_access_method.py's "flat") has it in its workers too: its setting
    is known to a read answered in a worker, and the worker searches with its index."""
    from tests.e2e.test_index_access_method import MODULE

    server = start_server(tmp_path, "--workers", "1", module=MODULE)
    reap(server)
    rng = random.Random(5)
    with connect(server) as conn:
        conn.execute("CREATE TABLE f (id int, v vector(4))")
        with conn.cursor().copy("COPY f (id, v) FROM STDIN") as copy:
            for i in range(200):
                copy.write_row((i, _vector(rng, 4)))
        conn.execute("CHECKPOINT")
        conn.execute("CREATE INDEX ON f USING flat (v vector_cosine_ops)")
        # (an unknown setting would fail in the worker, and the primary would answer: NULL)
        assert conn.execute(f"SELECT current_setting('flat.probes'), {WHERE_RUN}").fetchone() \
            == ("1", "0")
        sql = f"SELECT id, {WHERE_RUN} FROM f ORDER BY v <=> %s LIMIT 5"
        vector = _vector(rng, 4)
        here = conn.execute(sql, (vector,)).fetchall()
        assert {row[1] for row in here} == {"0"}
        with conn.transaction():
            there = conn.execute(sql, (vector,)).fetchall()
        assert [row[0] for row in here] == [row[0] for row in there]
    assert server.stop() == 0, server.log()
    assert "does not have" not in server.log() and "Traceback" not in server.log()


def test_statistics_of_a_read_in_a_worker_are_counted_when_its_answer_arrives(pool_server,
                                                                               table):
    """A worker queues a read's statistics before it sends the answer, and reading a
    statistics view first asks every worker for its counts: right after an answer, on the
    same connection or on another worker's, pg_stat_statements and pg_stat_user_tables count
    it, with no wait (as with one process)."""
    a, b = two_workers(pool_server)
    with a, b:
        a.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        a.execute(f"CREATE TABLE {table} (id int, v vector(2))")
        a.execute(f"INSERT INTO {table} SELECT g, '[1,1]' FROM generate_series(1, 5) g")
        scan = f"SELECT id, {WHERE_RUN} FROM {table} WHERE id > 2"

        def counted(conn: psycopg.Connection) -> tuple:
            calls = conn.execute(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements "
                f"WHERE query LIKE 'SELECT id, current_setting%FROM {table}%'").fetchone()
            scans = conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s",
                                 (table,)).fetchone()
            return (*calls, *scans)

        start = counted(a)[2]
        for i in range(1, 13):
            reader = (a, b)[i % 2]
            assert {r[1] for r in reader.execute(scan).fetchall()} == {worker_of(reader)}
            watcher = (a, b)[(i // 2) % 2]  # the reader, or the other worker's connection
            assert counted(watcher) == (i, 3 * i, start + i)


def test_a_read_in_any_worker_waits_for_another_sessions_uncommitted_ddl(pool_server, table):
    """While a transaction block's schema changes are open, a read of another connection,
    whichever worker holds it, simple or prepared, waits for the transaction as in one process
    (lock_timeout ends the wait with 55P03) and then reads the committed shape; reads are
    answered in the workers again once the transaction ended."""
    a, b = two_workers(pool_server)
    with a, b:
        a.execute(f"CREATE TABLE {table} (id int)")
        a.execute(f"INSERT INTO {table} VALUES (1)")
        point = f"SELECT id, {WHERE_RUN} FROM {table} WHERE id = %s"
        for _ in range(2):  # prepared in b's worker, and answered there
            assert b.execute(point, (1,), prepare=True).fetchone() == (1, worker_of(b))
        a.execute("BEGIN")
        a.execute(f"ALTER TABLE {table} ADD COLUMN note text DEFAULT 'x'")
        b.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            b.execute(f"SELECT * FROM {table}")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            b.execute(point, (1,), prepare=True)
        b.execute("SET lock_timeout = 0")
        outcome: dict = {}

        def read() -> None:
            try:
                outcome["rows"] = b.execute(f"SELECT * FROM {table}").fetchall()
            except psycopg.Error as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not outcome  # waiting for the transaction
        a.execute("COMMIT")
        thread.join(20)
        assert outcome == {"rows": [(1, "x")]}
        assert b.execute(f"SELECT note, {WHERE_RUN} FROM {table}").fetchone() == \
            ("x", worker_of(b))
        assert b.execute(point, (1,), prepare=True).fetchone() == (1, worker_of(b))


def test_the_default_is_one_worker_per_core_and_workers_0_is_one_process(tmp_path, reap):
    """`sqlvec serve` with no --workers (nor SQLVEC_WORKERS) serves from one worker per core
    the server may run on; `--workers 0` serves everything from the one server process."""
    environment = {"SQLVEC_WORKERS": ""}
    default = start_server(tmp_path / "default", env=environment)
    reap(default)
    single = start_server(tmp_path / "single", "--workers", "0", env=environment)
    reap(single)
    cores = len(os.sched_getaffinity(0))
    assert set(_workers_of(default)) == {str(i) for i in range(cores)}
    with connect(default) as conn:
        assert worker_of(conn) in {str(i) for i in range(cores)}
    assert _workers_of(single) == {} and server_processes(single) == [single.process.pid]
    with connect(single) as conn:
        conn.execute("CREATE TABLE t (id int)")
        assert conn.execute(f"SELECT count(*), {WHERE_RUN} FROM t").fetchone() == (0, None)
    for server in (default, single):
        assert server.stop() == 0, server.log()


def test_a_new_index_is_loaded_by_every_worker_before_a_read_there_needs_it(tmp_path, reap):
    """A worker loads each new manifest (here CREATE INDEX's) as soon as the primary
    publishes it, not at its next read: the other worker's connection, idle since, finds the
    index loaded, and its first read is answered there with the graph the primary searches
    (a small graph at ef_search 10, whose answers differ from an exact search's)."""
    server = start_server(tmp_path, "--workers", "2", "--log-level", "debug")
    reap(server)
    a, b = two_workers(server)
    rng = random.Random(11)
    a.execute("CREATE TABLE g (id int, v vector(16))")
    with a.cursor().copy("COPY g (id, v) FROM STDIN") as copy:
        for i in range(3000):
            copy.write_row((i, _vector(rng, 16)))
    since = len(server.log())
    a.execute("CREATE INDEX ON g USING hnsw (v vector_l2_ops) WITH (m = 4, ef_construction = 8)")
    idle = worker_of(b)
    loaded = re.compile(rf"worker {idle} loaded manifest version \d+")
    deadline = time.monotonic() + 60
    while not loaded.search(server.log()[since:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loaded.search(server.log()[since:]), server.log()
    sql = f"SELECT id, {WHERE_RUN} FROM g ORDER BY v <-> %s LIMIT 10"
    queries = [_vector(rng, 16) for _ in range(5)]
    for conn in (a, b):
        conn.execute("SET hnsw.ef_search = 10")
    here = [b.execute(sql, (q,)).fetchall() for q in queries]
    assert {row[1] for rows in here for row in rows} == {idle}
    with a.transaction():  # answered by the primary
        there = [a.execute(sql, (q,)).fetchall() for q in queries]
    assert [[r[0] for r in rows] for rows in here] == [[r[0] for r in rows] for rows in there]
    exact = [b.execute(sql.replace("ORDER BY v <-> %s", "ORDER BY (v <-> %s) + 0"),
                       (q,)).fetchall() for q in queries]
    assert [[r[0] for r in rows] for rows in here] != [[r[0] for r in rows] for rows in exact]
    for conn in (a, b):
        conn.close()
    assert server.stop() == 0, server.log()


def test_connections_are_spread_evenly_over_the_workers(tmp_path, reap):
    """Each connection goes to the worker serving the fewest: eight connections opened one
    after the other are four per worker, and a closed one's place is taken by the next."""
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    conns = [connect(server) for _ in range(8)]
    placed = [worker_of(conn) for conn in conns]
    assert sorted(placed) == ["0"] * 4 + ["1"] * 4
    gone = placed[0]
    conns[0].close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the primary notices the end of the closed one
        conn = connect(server)
        if worker_of(conn) == gone:
            conns.append(conn)
            break
        conn.close()
        time.sleep(0.05)
    else:
        pytest.fail("a closed connection's place was never taken")
    for conn in conns[1:]:
        conn.close()
    assert server.stop() == 0, server.log()


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _settling(pid: int) -> bool:
    """Whether the process's thread count changed in the last half second."""
    before = _threads(pid)
    time.sleep(0.5)
    return _threads(pid) != before


def _two_sealed_segments(path: Path) -> None:
    """A table of two sealed segments of 5,000 rows each and no index: a top-k query scans
    both, each big enough to be worth another thread."""
    import numpy as np

    from sqlvec.database import Database

    rng = np.random.default_rng(3)
    with Database.open(str(path)) as db:
        table = db.create_table("items", {"id": "int", "v": "vector(4)"})
        for start in (0, 5000):
            table.insert({"id": np.arange(start, start + 5000),
                          "v": rng.standard_normal((5000, 4)).astype(np.float32)})
            table.seal()


def test_a_worker_spreads_a_query_over_threads_only_while_cores_are_free(tmp_path, reap):
    """With as many connections as cores, the other connections keep the cores busy: a query
    of two segments searches both in its own thread (the worker starts no search thread).
    With one connection left, it hands one segment to another thread (one is started)."""
    from wire.workers import cores

    if cores() < 2:
        pytest.skip("one core: a query never has another core to spread over")
    data = tmp_path / "data"
    _two_sealed_segments(data)
    server = start_server(tmp_path, "--workers", "1", data_dir=data)
    reap(server)
    worker = next(pid for pid in server_processes(server)
                  if Path(f"/proc/{pid}/comm").read_text().startswith("sqlvec-worker"))
    query = "SELECT id FROM items ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5"
    conns = [connect(server) for _ in range(cores())]
    for conn in conns:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    expected = conns[0].execute(query).fetchall()
    before = _threads(worker)
    for conn in conns:
        for _ in range(5):
            assert conn.execute(query).fetchall() == expected
    assert _threads(worker) == before
    for conn in conns[1:]:
        conn.close()
    left = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    deadline = time.monotonic() + 30
    while conns[0].execute(left).fetchone() != (1,) or _settling(worker):
        assert time.monotonic() < deadline, "the closed connections never ended"
    before = _threads(worker)
    assert conns[0].execute(query).fetchall() == expected
    assert _threads(worker) > before
    conns[0].close()
    assert server.stop() == 0, server.log()


def _binary_copy(matrix) -> bytes:
    """COPY's binary format of rows (id bigint, v vector(d)), ids 0..n-1."""
    import numpy as np

    n, dim = matrix.shape
    rec = np.zeros(n, dtype=[("count", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                             ("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (dim,))])
    rec["count"], rec["l1"], rec["id"], rec["l2"], rec["dim"] = 2, 8, np.arange(n), 4 + 4 * dim, \
        dim
    rec["v"] = matrix
    return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rec.tobytes() + b"\xff\xff"


def test_copy_data_relayed_by_a_worker_arrives_whole_and_a_half_sent_message_loads_nothing(
        pool_server, table):
    """A worker passes CopyData on as it arrives: messages of several MiB (larger than any
    receive buffer) reach the primary byte for byte, and a client gone in the middle of one
    ends its COPY with nothing loaded while the worker goes on serving."""
    import numpy as np

    from tests.e2e.conftest import RawClient
    from wire.messages import CopyData, CopyDone, Query

    matrix = np.random.default_rng(11).standard_normal((12000, 128)).astype(np.float32)
    data = _binary_copy(matrix)
    piece = 3 << 20
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, v vector(128))")
        client = RawClient(pool_server).ready()
        client.send(Query(f"COPY {table} FROM STDIN (FORMAT binary)").encode())
        assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
        for at in range(0, len(data), piece):
            client.send(CopyData(data[at:at + piece]).encode())
        client.send(CopyDone().encode())
        tags = [getattr(m, "tag", None) for m in client.messages(until=b"Z", timeout=60)]
        assert "COPY 12000" in tags
        client.close()
        rows = conn.cursor(binary=True).execute(f"SELECT v FROM {table} ORDER BY id").fetchall()
        got = np.stack([np.frombuffer(raw, ">f4", offset=4) for (raw,) in rows])
        np.testing.assert_array_equal(got, matrix)
        # Gone halfway through a message that claims 3 MiB, on each worker in turn.
        for _ in range(4):
            client = RawClient(pool_server).ready()
            client.send(Query(f"COPY {table} FROM STDIN (FORMAT binary)").encode())
            assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
            client.send(CopyData(data[:piece]).encode()[:piece // 2])
            client.close()
        for _ in range(4):  # every worker still relays a COPY
            with connect(pool_server) as other:
                with other.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                    copy.write(_binary_copy(matrix[:10]))
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (12040,)


def test_repeated_round_trips_in_a_worker_see_commits_and_fail_as_the_first(pool_server, table):
    """A worker answers a round trip that repeats the previous one (but for its parameter
    values) without reading it message by message: each run still sees every commit made
    on another worker, fails and recovers as the first did, and a transaction block between
    runs goes to the primary and back."""
    a, b = two_workers(pool_server)
    with a, b:
        worker = worker_of(b)
        a.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        query = f"SELECT note FROM {table} WHERE id = %s"
        for i in range(8):
            a.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"n{i}"))
            for _ in range(2):  # the same values, then others
                assert b.execute(query, (i,), prepare=True).fetchall() == [(f"n{i}",)]
            for _ in range(2):  # a simple Query, the same bytes each time
                assert b.execute(f"SELECT count(*) FROM {table}",
                                 prepare=False).fetchone() == (i + 1,)
        for divisor, answer in ((1, 10), (2, 5), (0, None), (0, None), (5, 2)):
            if answer is None:
                with pytest.raises(psycopg.errors.DivisionByZero):
                    b.execute("SELECT 10 / %s::int", (divisor,), prepare=True)
            else:
                assert b.execute("SELECT 10 / %s::int", (divisor,),
                                 prepare=True).fetchone() == (answer,)
        with b.transaction():
            b.execute(f"INSERT INTO {table} VALUES (100, 'in a block')")
            assert b.execute(query, (100,), prepare=True).fetchall() == [("in a block",)]
            assert a.execute(query, (100,)).fetchall() == []
        assert b.execute(query, (100,), prepare=True).fetchall() == [("in a block",)]
        a.execute(f"ALTER TABLE {table} RENAME COLUMN note TO remark")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            b.execute(query, (1,), prepare=True)
        a.execute(f"DROP TABLE {table}")
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute(query, (1,), prepare=True)
        assert b.execute("SELECT 1", prepare=False).fetchone() == (1,)
        assert worker_of(b) == worker


def test_pipelined_and_split_repeated_round_trips_get_every_answer(pool_server):
    """Round trips of one prepared statement, two in one packet, or one arriving in pieces,
    are each answered in order (a worker recognises a repeated round trip only when all of
    it has arrived)."""
    from tests.e2e.conftest import RawClient
    from wire.messages import Bind, Describe, Execute, Parse, Sync

    def run(value: int) -> bytes:
        return (Bind("", "s", (), (str(value).encode(),), ()).encode()
                + Describe("P", "").encode() + Execute("", 0).encode() + Sync().encode())

    def answers(client: RawClient, count: int) -> list[bytes]:
        rows: list[bytes] = []
        for _ in range(count):
            messages = client.messages()
            assert [x.TYPE for x in messages] == [b"2", b"T", b"D", b"C", b"Z"], messages
            rows.append(messages[2].values[0])
        return rows

    client = RawClient(pool_server).ready()
    try:
        client.send(Parse("s", "SELECT $1::int + 1", ()).encode() + Sync().encode())
        assert [x.TYPE for x in client.messages()] == [b"1", b"Z"]
        client.send(run(1))
        assert answers(client, 1) == [b"2"]
        client.send(run(1) + run(1) + run(41))
        assert answers(client, 3) == [b"2", b"2", b"42"]
        whole = run(7)
        for cut in (3, 12, len(whole) - 2):
            client.send(whole[:cut])
            time.sleep(0.05)
            client.send(whole[cut:])
            assert answers(client, 1) == [b"8"]
        # Another shape (a second Execute of the portal, done already): read message by message.
        client.send(run(1)[:-5] + Execute("", 0).encode() + Sync().encode())
        messages = client.messages()
        assert [x.TYPE for x in messages] == [b"2", b"T", b"D", b"C", b"C", b"Z"]
        client.send(run(2))
        assert answers(client, 1) == [b"3"]
    finally:
        client.close()


def _select_one_calls(conn: psycopg.Connection, text: str) -> tuple:
    return conn.execute("SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) "
                        "FROM pg_stat_statements WHERE query = %s", (text,)).fetchone()


def test_a_constant_prepared_statement_repeated_is_answered_and_counted_each_time(pool_server):
    """A worker sends a repeated constant statement (`SELECT 1`, prepared or a simple Query)
    the answer it kept from its last run: the same rows and status, each run counted in
    pg_stat_statements; inside a
    transaction block, failed or not, the primary answers with that block's status."""
    conn, admin = connect(pool_server), connect(pool_server)
    with conn, admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        sql = "SELECT 7 AS seven, 'kept' AS word, NULL AS nothing"
        before = _select_one_calls(admin, "SELECT $1 AS seven, $2 AS word, NULL AS nothing")
        for prepare in (True, False):  # (False: a simple Query, the same bytes each time)
            for _ in range(25):
                assert conn.execute(sql, prepare=prepare).fetchall() == [(7, "kept", None)]
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        after = _select_one_calls(admin, "SELECT $1 AS seven, $2 AS word, NULL AS nothing")
        assert (after[0] - before[0], after[1] - before[1]) == (50, 50)
        conn.execute("BEGIN")
        assert conn.execute(sql, prepare=True).fetchone() == (7, "kept", None)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        for _ in range(2):
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute(sql, prepare=True)
        conn.execute("ROLLBACK")
        for _ in range(3):
            assert conn.execute(sql, prepare=True).fetchone() == (7, "kept", None)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_kept_answer_is_not_sent_after_a_setting_changes_or_a_deallocate(pool_server):
    """After SET (here one that logs each statement's duration) a repeated constant statement
    runs again, each run logged; after DEALLOCATE its name is unknown, and a new statement
    under the name answers its own rows."""
    from tests.e2e.conftest import RawClient
    from wire.messages import Bind, Describe, Execute, Parse, Query, Sync

    run = (Bind("", "s", (), (), ()).encode() + Describe("P", "").encode()
           + Execute("", 0).encode() + Sync().encode())
    client = RawClient(pool_server).ready()
    try:
        client.send(Parse("s", "SELECT 'a marker of kept answers'", ()).encode()
                    + Sync().encode())
        assert [x.TYPE for x in client.messages()] == [b"1", b"Z"]
        answers = []
        for _ in range(4):
            client.send(run)
            answers.append(client.messages())
        assert all(a == answers[0] for a in answers)
        assert [x.TYPE for x in answers[0]] == [b"2", b"T", b"D", b"C", b"Z"]
        assert answers[0][2].values == (b"a marker of kept answers",)
        simple = Query("SELECT 'a simple marker'").encode()
        for _ in range(3):
            client.send(simple)
            assert [x.TYPE for x in client.messages()] == [b"T", b"D", b"C", b"Z"]
        client.send(Query("SET log_min_duration_statement = 0").encode())
        assert client.messages()[-1].TYPE == b"Z"
        for _ in range(3):
            client.send(run)
            assert client.messages() == answers[0]
        for _ in range(3):
            client.send(simple)
            assert [x.values for x in client.messages() if x.TYPE == b"D"] == [
                (b"a simple marker",)]
        client.send(Query("RESET log_min_duration_statement").encode())
        client.messages()
        client.send(Query("DEALLOCATE s").encode())
        assert [x.TYPE for x in client.messages()] == [b"C", b"Z"]
        client.send(run)
        error = client.messages()
        assert [x.TYPE for x in error] == [b"E", b"Z"]
        assert dict(error[0].fields)["C"] == "26000"
        client.send(Parse("s", "SELECT 2", ()).encode() + Sync().encode())
        client.messages()
        for _ in range(3):
            client.send(run)
            assert [x.values for x in client.messages() if x.TYPE == b"D"] == [(b"2",)]
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while pool_server.log().count("statement: SELECT 'a marker of kept answers'") < 3 \
            or pool_server.log().count("statement: SELECT 'a simple marker'") < 3:
        assert time.monotonic() < deadline, pool_server.log()[-2000:]
        time.sleep(0.05)


def test_terminate_reaches_a_connection_repeating_a_constant_statement(pool_server):
    """pg_terminate_backend of a connection whose repeats of `SELECT 1` are answered from the
    kept answer: its next one gets 57P01, not the kept answer."""
    victim, admin = connect(pool_server), connect(pool_server)
    with admin:
        for _ in range(5):
            assert victim.execute("SELECT 1", prepare=True).fetchone() == (1,)
        assert admin.execute("SELECT pg_terminate_backend(%s)",
                             (victim.info.backend_pid,)).fetchone() == (True,)
        with pytest.raises(psycopg.errors.AdminShutdown):
            victim.execute("SELECT 1", prepare=True)
        victim.close()


def test_index_after_loads_in_several_copies_is_one_segment_read_alike_by_workers(pool_server,
                                                                                    table):
    """Two COPY statements each seal a segment of their own; CREATE INDEX merges them first,
    and every worker then reads the merged segment: every row once, the same nearest rows."""
    rows_per_copy = 70_000  # each COPY above the server's 65,536-row seal threshold
    writer, reader = two_workers(pool_server)
    writer.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v vector(2))")
    for part in range(2):
        ids = range(part * rows_per_copy, (part + 1) * rows_per_copy)
        text = "".join(f"{i}\t[{i % 1000},{i // 1000}]\n" for i in ids)
        with writer.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
            copy.write(text)
    writer.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops) "
                   "WITH (m = 4, ef_construction = 8)")
    segments = writer.execute("SELECT segment, rows_total FROM sqlvec_indexes "
                              "WHERE tablename = %s", (table,)).fetchall()
    assert len(segments) == 1 and segments[0][1] == 2 * rows_per_copy
    for conn in (writer, reader):
        assert conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone() \
            == (2 * rows_per_copy, 2 * rows_per_copy)
        nearest = conn.execute(f"SELECT id FROM {table} ORDER BY v <-> '[500,100]' LIMIT 1")
        assert nearest.fetchone() == (100_500,)
    writer.close()
    reader.close()


def _wake_ups(pid: int) -> int:
    """Times the threads of process `pid` have gone to sleep and been woken (voluntary
    context switches, from /proc)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def test_a_worker_serving_no_client_sleeps(pool_server):
    """A worker serving no client (every writer's connection moves to the primary) does not
    wake at a period: the watch that reports long reads to pg_stat_activity waits for a
    client, the manifest follower for the primary's announcement of a new manifest (before,
    40 and 50 wake-ups a second). The least woken of the pool's workers is the one looked at
    (another test's client may linger)."""
    with connect(pool_server) as conn:
        conn.execute("SELECT pg_sleep(0.06)")  # watched while it runs
    time.sleep(1.5)  # the ended client's memory handed back (at most a second after it ended)
    workers = list(_workers_of(pool_server).values())
    before = [_wake_ups(pid) for pid in workers]
    time.sleep(1.0)
    assert min(_wake_ups(pid) - woken for pid, woken in zip(workers, before)) < 10
