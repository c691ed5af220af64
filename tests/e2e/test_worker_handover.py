"""A connection whose traffic is writes is moved from its worker to the primary.

After `wire.worker.HANDOVER_AFTER` round trips that change data, relayed in a row with no read
answered in the worker between them, or at a pipeline of writes longer than
`wire.worker.MAX_BATCH` messages, the worker hands the client's socket itself to the
primary, which serves it from the next round trip on as a connection of a one-process server
(`wire.worker.Relay._hand_over`, `wire.workers.RelayedConnection._adopt`). The setting
`sqlvec.worker` is set only in a worker's sessions, so `current_setting('sqlvec.worker', true)`
says where a statement ran: the worker's index there, NULL in the primary.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import psycopg
import pytest

from tests.e2e.conftest import (
    RawClient,
    RunningServer,
    beside_postgres,
    run_in_thread,
    serve_while_used,
    start_server,
    startup_packet,
)
from wire.codec import frame
from wire.worker import HANDOVER_AFTER, MAX_BATCH

WHERE_RUN = "SELECT current_setting('sqlvec.worker', true)"


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    yield from serve_while_used(tmp_path_factory, "sqlvec-handover", "--workers", "2")


def connect(server: RunningServer) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(), autocommit=True)


def where(conn: psycopg.Connection) -> str | None:
    """The worker that answered (its index), None for the primary."""
    return conn.execute(WHERE_RUN).fetchone()[0]


def write_streak(conn: psycopg.Connection, table: str, first: int) -> list[int]:
    """HANDOVER_AFTER inserts in a row: the connection's next round trip moves it."""
    ids = list(range(first, first + HANDOVER_AFTER))
    for i in ids:
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"r{i}"))
    return ids


def active(server: RunningServer, pid: int) -> bool:
    with connect(server) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone() == (1,)


def test_a_writing_connection_moves_to_the_primary_and_answers_the_same(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        pid = conn.info.backend_pid
        assert where(conn) is not None
        # Settings, DDL and reads answered in the worker do not count; a read there starts
        # the count again.
        for _ in range(HANDOVER_AFTER):
            conn.execute("SET application_name = 'handover'")
        write_streak(conn, table, 0)
        assert where(conn) is None  # this round trip went to the primary with the socket
        assert conn.execute(f"SELECT s FROM {table} WHERE id = 1").fetchone() == ("r1",)
        assert conn.execute(f"INSERT INTO {table} VALUES (100, 'x') RETURNING id, s"
                            ).fetchall() == [(100, "x")]
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == \
            (HANDOVER_AFTER + 1,)
        assert conn.execute("SHOW application_name").fetchone() == ("handover",)
        with conn.cursor().copy(f"COPY {table} (id, s) FROM STDIN") as copy:
            for i in range(200, 300):
                copy.write_row((i, "c"))
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE s = 'c'").fetchone() == (100,)
        conn.execute(f"DELETE FROM {table} WHERE s = 'c'")
        assert conn.info.backend_pid == pid
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
        # Its commits are seen at once by connections still served by a worker.
        with connect(pool_server) as other:
            assert where(other) is not None
            conn.execute(f"DELETE FROM {table} WHERE id = 100")
            assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == \
                (HANDOVER_AFTER,)


def test_reads_between_writes_keep_a_connection_in_its_worker(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        for n in range(3):
            for i in range(HANDOVER_AFTER - 1):
                conn.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (10 * n + i,))
            assert where(conn) is not None


def test_prepared_statements_made_in_the_worker_work_after_the_move(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        conn.execute(f"INSERT INTO {table} VALUES (-1, 'first')")
        read = f"SELECT s, ({WHERE_RUN}) FROM {table} WHERE id = %s"
        assert conn.execute(read, (-1,), prepare=True).fetchone()[1] is not None
        count = f"SELECT count(*) FROM {table} WHERE id >= %s"
        assert conn.execute(count, (0,), prepare=True).fetchone() == (0,)
        insert = f"INSERT INTO {table} VALUES (%s, %s)"
        for i in range(HANDOVER_AFTER):
            conn.execute(insert, (i, f"r{i}"), prepare=True)
        # Both reads were prepared in the worker only: the primary has them too now.
        assert conn.execute(read, (1,), prepare=True).fetchone() == ("r1", None)
        assert conn.execute(count, (0,), prepare=True).fetchone() == (HANDOVER_AFTER,)
        conn.execute(insert, (50, "r50"), prepare=True)
        assert conn.execute(read, (50,), prepare=True).fetchone() == ("r50", None)
        conn.execute("DEALLOCATE ALL")
        assert conn.execute(read, (-1,)).fetchone() == ("first", None)


def test_asyncpg_prepared_statements_and_executemany_across_the_move(pool_server, table):
    async def run() -> None:
        conn = await asyncpg.connect(host=pool_server.host, port=pool_server.port,
                                     user="postgres", database="postgres", ssl=False)
        try:
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
            await conn.execute(f"INSERT INTO {table} VALUES (-1, 'first')")
            read = await conn.prepare(f"SELECT s, ({WHERE_RUN}) FROM {table} WHERE id = $1")
            assert (await read.fetchrow(-1))[0] == "first"
            for i in range(HANDOVER_AFTER):
                await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", i, f"r{i}")
            assert tuple(await read.fetchrow(1)) == ("r1", None)
            await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)",
                                   [(i, f"m{i}") for i in range(100, 400)])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == \
                1 + HANDOVER_AFTER + 300
            assert tuple(await read.fetchrow(399)) == ("m399", None)
        finally:
            await conn.close()

    asyncio.run(run())


def test_an_executemany_connection_moves_and_keeps_its_errors(tmp_path, reap):
    """psycopg's executemany pipelines more messages than a worker holds before Sync (relayed
    in pieces, it would leave messages unsynced at each Sync) after a Flush of their own:
    the move happens at the first pieces of the first one, before any of it is relayed; a
    duplicate key in that very round trip still fails it whole."""
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    rows = MAX_BATCH * 2

    def executemany(conn: psycopg.Connection, first: int, duplicate: int | None = None) -> None:
        ids = list(range(first, first + rows))
        if duplicate is not None:
            ids[rows // 2] = duplicate
        conn.cursor().executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"m{i}") for i in ids])

    with connect(server) as conn:
        assert where(conn) == "0"  # the first connection of a fresh server
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        with pytest.raises(psycopg.errors.UniqueViolation) as failed:
            executemany(conn, 0, duplicate=5)
        assert failed.value.diag.message_detail == "Key (id)=(5) already exists."
        with connect(server) as second:
            assert where(second) == "0"  # the first one moved: worker 0 serves none
        assert conn.execute(f"SELECT count(*), ({WHERE_RUN}) FROM t").fetchone() == (0, None)
        executemany(conn, 0)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (rows,)
        executemany(conn, 2000)
        assert conn.execute("SELECT count(*), max(s) FROM t WHERE id >= 2000").fetchone() == \
            (rows, f"m{2000 + rows - 1}")
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def with_postgres(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """PostgreSQL's URI, then a `serve --workers 2`'s."""
    with beside_postgres(tmp_path_factory, "handover-pg", "--workers", "2") as (ours, pg):
        yield [pg, ours]


def block_executemany(uri: str, duplicate_at: int | None) -> tuple:
    """On a fresh connection, BEGIN, an executemany of 1,000 INSERTs (one of them repeating
    an earlier key at `duplicate_at`), COMMIT. Returns the error, the transaction status
    after it, the table's rows, and where the connection was served at first and where a
    second connection, opened while the block is open, is served (`WHERE_RUN`): on the
    worker the first was on only if that one moved (each goes to the least loaded)."""
    rows = [(i, f"r{i}") for i in range(1000)]
    if duplicate_at is not None:
        rows[duplicate_at] = (3, "again")
    with psycopg.connect(uri, autocommit=True) as conn:
        first = where(conn)
        conn.execute("DROP TABLE IF EXISTS bm")
        conn.execute("CREATE TABLE bm (id int PRIMARY KEY, s text NOT NULL)")
        conn.execute("BEGIN")
        error = None
        try:
            conn.cursor().executemany("INSERT INTO bm VALUES (%s, %s)", rows)
        except psycopg.Error as exc:
            error = (exc.sqlstate, exc.diag.message_primary, exc.diag.message_detail)
        status = conn.info.transaction_status
        with psycopg.connect(uri, autocommit=True) as other:
            second = where(other)
        conn.execute("COMMIT")
        table = conn.execute("SELECT count(*), min(s), max(s), sum(id) FROM bm").fetchone()
        return (error, status, table), (first, second)


@pytest.mark.parametrize("duplicate_at", [None, 10, 700])
def test_a_blocks_executemany_moves_at_once_and_answers_as_postgresql(with_postgres,
                                                                      duplicate_at):
    """A block's executemany on a fresh connection (no write streak: BEGIN does not count)
    moves the connection at its first MAX_BATCH messages, the block open; a row failing
    in them or after fails the block as on PostgreSQL."""
    (postgres, _), (ours, (first, second)) = [block_executemany(uri, duplicate_at)
                                              for uri in with_postgres]
    assert first is not None and second == first  # the first left its worker
    assert ours == postgres
    assert postgres[2][0] == (0 if duplicate_at is not None else 1000)


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK", "error"])
def test_a_transaction_block_open_across_the_move(pool_server, table, end):
    with connect(pool_server) as conn, connect(pool_server) as other:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        conn.execute("BEGIN")
        write_streak(conn, table, 0)
        if end == "error":  # the move's round trip fails: the block is in error, status E
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(f"INSERT INTO {table} VALUES (0, 'again')")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            conn.execute("ROLLBACK")
            expected = 0
        else:
            assert conn.execute(f"SELECT count(*), ({WHERE_RUN}) FROM {table}").fetchone() == \
                (HANDOVER_AFTER, None)
            assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
            conn.execute(end)
            expected = HANDOVER_AFTER if end == "COMMIT" else 0
        assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)
        assert conn.execute(f"SELECT count(*), ({WHERE_RUN}) FROM {table}").fetchone() == \
            (expected, None)


def test_pipelined_round_trips_received_by_the_worker_are_not_lost(pool_server, table):
    """Round trips the client sent before the first answer came back: the worker has them
    in its receive buffer when it hands the socket over; the primary reads them first."""
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
    client = RawClient(pool_server).ready()
    try:
        for i in range(HANDOVER_AFTER):
            client.send(frame(b"Q", f"INSERT INTO {table} VALUES ({i}, 'q')\0".encode()))
            assert [m.TYPE for m in client.messages()] == [b"C", b"Z"]
        batch = [f"INSERT INTO {table} VALUES ({i}, 'p')" for i in range(100, 140)]
        batch.append(f"{WHERE_RUN}, count(*) FROM {table}")
        client.send(b"".join(frame(b"Q", sql.encode() + b"\0") for sql in batch))
        answers = [client.messages() for _ in batch]
        assert all(m[-1].TYPE == b"Z" for m in answers)
        assert [m.TYPE for a in answers[:-1] for m in a] == [b"C", b"Z"] * 40
        rows = [m for m in answers[-1] if m.TYPE == b"D"]
        assert [r.values for r in rows] == [(None, str(HANDOVER_AFTER + 40).encode())]
    finally:
        client.close()
    # psycopg's pipeline mode: a dozen statements and one Sync, the round trip that moves.
    with connect(pool_server) as conn:
        write_streak(conn, table, 1000)
        with conn.pipeline():
            cursors = [conn.execute(f"INSERT INTO {table} VALUES (%s, 'x') RETURNING id",
                                    (i,)) for i in range(2000, 2012)]
        assert [c.fetchone()[0] for c in cursors] == list(range(2000, 2012))
        assert conn.execute(f"SELECT count(*), ({WHERE_RUN}) FROM {table}").fetchone() == \
            (2 * HANDOVER_AFTER + 52, None)


def _wait_active(server: RunningServer, pid: int) -> None:
    with connect(server) as admin:
        deadline = time.monotonic() + 30
        while admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s",
                            (pid,)).fetchone() != ("active",):
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_cancel_reaches_a_statement_of_a_moved_connection(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        write_streak(conn, table, 0)
        assert where(conn) is None
        started = time.monotonic()
        thread, outcome = run_in_thread(conn, "SELECT pg_sleep(100)")
        _wait_active(pool_server, conn.info.backend_pid)
        conn.cancel()
        thread.join(30)
        assert not thread.is_alive()
        assert isinstance(outcome[0], psycopg.errors.QueryCanceled), outcome
        assert time.monotonic() - started < 60
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (HANDOVER_AFTER,)


def test_terminate_ends_a_moved_connection(pool_server, table):
    with connect(pool_server) as admin:
        admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
        # Idle: its next statement meets the FATAL error.
        idle = connect(pool_server)
        write_streak(idle, table, 0)
        assert where(idle) is None
        pid = idle.info.backend_pid
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        idle.close()
        # Running: ended at once.
        busy = connect(pool_server)
        write_streak(busy, table, 10)
        assert where(busy) is None
        thread, outcome = run_in_thread(busy, "SELECT pg_sleep(60)")
        _wait_active(pool_server, busy.info.backend_pid)
        assert admin.execute("SELECT pg_terminate_backend(%s)",
                             (busy.info.backend_pid,)).fetchone() == (True,)
        thread.join(20)
        assert not thread.is_alive()
        assert isinstance(outcome[0], psycopg.errors.AdminShutdown), outcome
        busy.close()
        deadline = time.monotonic() + 10
        while active(pool_server, pid) or active(pool_server, busy.info.backend_pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_client_gone_right_after_the_move_leaves_no_session(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, s text)")
    pids = []
    for n in range(3):
        client = RawClient(pool_server)
        client.send(startup_packet())
        pids.append(next(m.pid for m in client.messages() if m.TYPE == b"K"))
        for i in range(HANDOVER_AFTER):
            client.send(frame(b"Q", f"INSERT INTO {table} VALUES ({10 * n + i}, 'q')\0"
                              .encode()))
            assert [m.TYPE for m in client.messages()] == [b"C", b"Z"]
        assert active(pool_server, pids[-1])
        # The move's round trip, then: gone before its answer, gone after it, Terminate.
        client.send(frame(b"Q", b"SELECT 1\0"))
        if n == 1:
            client.messages()
        elif n == 2:
            client.messages()
            client.send(frame(b"X"))
        client.close()
    deadline = time.monotonic() + 15
    while any(active(pool_server, pid) for pid in pids):
        assert time.monotonic() < deadline, "a session outlived its client"
        time.sleep(0.05)


def test_shutdown_ends_moved_connections_cleanly(tmp_path, reap):
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    idle, in_block = connect(server), connect(server)
    for conn in (idle, in_block):
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, s text)")
    write_streak(idle, "t", 0)
    assert where(idle) is None
    in_block.execute("BEGIN")
    write_streak(in_block, "t", 100)
    assert in_block.execute(f"SELECT count(*), ({WHERE_RUN}) FROM t").fetchone() == \
        (2 * HANDOVER_AFTER, None)
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()
    for conn in (idle, in_block):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
    # The block never committed; the rest did.
    again = start_server(tmp_path, "--workers", "2", data_dir=server.data_dir)
    reap(again)
    with connect(again) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (HANDOVER_AFTER,)
    assert again.stop() == 0


def test_a_moved_connection_no_longer_counts_for_its_worker(tmp_path, reap):
    """The pool hands each new connection to the least loaded worker: one that moved to the
    primary is not counted any more."""
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    with connect(server) as first:
        assert where(first) == "0"  # the first connection of a fresh server
        first.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        write_streak(first, "t", 0)
        assert where(first) is None
        with connect(server) as second:
            assert where(second) == "0"
    assert server.stop() == 0, server.log()
