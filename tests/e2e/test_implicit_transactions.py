"""Implicit transaction blocks, compared with a real PostgreSQL: the statements of a simple
Query of several, and those an extended-protocol batch executes before its Sync (psycopg's
pipeline and executemany, asyncpg's executemany), are one transaction. An error rolls back
every statement before it and skips the rest; BEGIN, COMMIT and ROLLBACK in the middle, the
statements that cannot run in a block (25001), SAVEPOINT (25P01), sequences and the statuses
of ReadyForQuery behave as there. Each case runs on PostgreSQL, on a server with worker
processes (writes go to the primary) and on a one-process server, and must give the same
error, status, notices and rows on all three.

An acknowledged batch (its Sync answered) survives kill -9; a failed one leaves nothing.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import asyncpg
import psycopg
import pytest
from psycopg import pq

from tests.e2e.conftest import RawClient, beside_postgres, start_server
from wire.messages import Bind, Execute, Flush, Parse, ReadyForQuery, Sync

STATUS = {pq.TransactionStatus.IDLE: "I", pq.TransactionStatus.INTRANS: "T",
          pq.TransactionStatus.INERROR: "E"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """PostgreSQL's URI, then those of a sqlvec server with workers and of one without."""
    with beside_postgres(tmp_path_factory, "implicit") as (sqlvec, postgres):
        alone = start_server(tmp_path_factory.mktemp("implicit-alone"), "--workers", "0")
        try:
            yield [postgres, sqlvec, f"postgresql://postgres@{alone.host}:{alone.port}/postgres"]
        finally:
            assert alone.stop() == 0, alone.log()


def pipeline(*statements: str) -> Callable[[psycopg.Connection], list]:
    """The statements in one psycopg pipeline (one Sync at its end); what each SELECT read."""
    def run(conn: psycopg.Connection) -> list:
        with conn.pipeline():
            cursors = [conn.execute(sql) for sql in statements]
        return [cur.fetchall() for sql, cur in zip(statements, cursors)
                if sql.startswith("SELECT")]
    return run


def query(text: str) -> Callable[[psycopg.Connection], list]:
    """`text` as one simple Query message, however many statements it holds."""
    def run(conn: psycopg.Connection) -> list:
        result = conn.pgconn.exec_(text.encode())
        if result.status == pq.ExecStatus.FATAL_ERROR:
            state = result.error_field(pq.DiagnosticField.SQLSTATE).decode()
            raise psycopg.errors.lookup(state)(result.error_message.decode())
        return []
    return run


def executemany(*keys: int) -> Callable[[psycopg.Connection], list]:
    def run(conn: psycopg.Connection) -> list:
        conn.cursor().executemany("INSERT INTO t VALUES (%s)", [(k,) for k in keys])
        return []
    return run


def outcome(uri: str, action: Callable[[psycopg.Connection], list]) -> tuple:
    """(SQLSTATE of the error or None, transaction status after it, warnings, rows of t,
    what the action read, whether t2 exists, the sequence's last value, whether work_mem
    changed, application_name as SHOW and as the last ParameterStatus gave it)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t, t2, c, p")
        conn.execute("DROP SEQUENCE IF EXISTS s")
        conn.execute("CREATE TABLE t (x int PRIMARY KEY)")
        conn.execute("CREATE TABLE p (id int PRIMARY KEY)")  # c's keys are checked at commit
        conn.execute("CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED)")
        conn.execute("CREATE SEQUENCE s")
        work_mem = conn.execute("SHOW work_mem").fetchone()[0]
        notices: list = []
        conn.add_notice_handler(lambda d: notices.append(d.sqlstate))
        error, read = None, []
        try:
            read = action(conn)
        except psycopg.Error as exc:
            error = exc.sqlstate
        status = STATUS[conn.info.transaction_status]
        if status != "I":
            conn.execute("ROLLBACK")
        rows = [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")]
        t2 = conn.execute("SELECT count(*) FROM pg_class WHERE relname = 't2'").fetchone()[0]
        last = conn.execute("SELECT last_value, is_called FROM s").fetchone()
        settings = (conn.execute("SHOW work_mem").fetchone()[0] != work_mem,
                    conn.execute("SHOW application_name").fetchone()[0],
                    conn.info.parameter_status("application_name"))
        return error, status, notices, rows, read, t2, last, settings


CASES = {
    "pipeline: an error rolls back the statements before it": pipeline(
        "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"),
    "pipeline: committed at Sync": pipeline("INSERT INTO t VALUES (1)",
                                            "INSERT INTO t VALUES (2)"),
    "pipeline: a read sees the batch's writes": pipeline(
        "INSERT INTO t VALUES (7)", "SELECT count(*) FROM t", "UPDATE t SET x = 8",
        "SELECT x FROM t"),
    "pipeline: an error after a read": pipeline("INSERT INTO t VALUES (7)",
                                                "SELECT count(*) FROM t", "SELECT 1/0"),
    "pipeline: nextval is not rolled back": pipeline(
        "SELECT nextval('s')", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"),
    "pipeline: BEGIN makes the block explicit": pipeline(
        "INSERT INTO t VALUES (1)", "BEGIN", "INSERT INTO t VALUES (2)"),
    "pipeline: COMMIT in the middle": pipeline(
        "INSERT INTO t VALUES (1)", "COMMIT", "INSERT INTO t VALUES (1)"),
    "pipeline: ROLLBACK in the middle": pipeline(
        "INSERT INTO t VALUES (1)", "ROLLBACK", "INSERT INTO t VALUES (2)"),
    "pipeline: an error in an explicit block fails it": pipeline(
        "BEGIN", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"),
    "pipeline: DDL rolled back with the batch": pipeline(
        "CREATE TABLE t2 (a int)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"),
    "pipeline: VACUUM after a statement": pipeline("INSERT INTO t VALUES (1)", "VACUUM"),
    "pipeline: VACUUM first runs on its own": pipeline("VACUUM", "INSERT INTO t VALUES (1)"),
    "pipeline: CREATE DATABASE after a statement": pipeline(
        "SELECT 1", "CREATE DATABASE implicit_never"),
    "pipeline: LOCK TABLE first is outside a block": pipeline(
        "LOCK TABLE t IN ACCESS SHARE MODE", "INSERT INTO t VALUES (1)"),
    "pipeline: LOCK TABLE after a statement": pipeline(
        "INSERT INTO t VALUES (1)", "LOCK TABLE t IN ACCESS SHARE MODE"),
    "pipeline: DECLARE first is outside a block": pipeline(
        "DECLARE c CURSOR FOR SELECT 1", "INSERT INTO t VALUES (1)"),
    "pipeline: SET CONSTRAINTS after a statement": pipeline(
        "INSERT INTO t VALUES (1)", "SET CONSTRAINTS ALL DEFERRED"),
    "pipeline: DISCARD ALL after a statement": pipeline("INSERT INTO t VALUES (1)",
                                                        "DISCARD ALL"),
    "pipeline: DISCARD ALL first": pipeline("DISCARD ALL", "INSERT INTO t VALUES (1)"),
    "pipeline: SET rolled back with the batch": pipeline(
        "SET work_mem = '7MB'", "SET application_name = 'piped'", "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1)"),
    "pipeline: SET kept with the batch": pipeline(
        "SET work_mem = '7MB'", "SET application_name = 'piped'", "INSERT INTO t VALUES (1)"),
    "pipeline: SET LOCAL until Sync": pipeline(
        "SET LOCAL work_mem = '9MB'", "SELECT current_setting('work_mem')"),
    "pipeline: SET LOCAL in an explicit block": pipeline(
        "BEGIN", "SET LOCAL application_name = 'local'",
        "SELECT current_setting('application_name')",
        "COMMIT"),
    "pipeline: SET then SET LOCAL then an error in a block": pipeline(
        "BEGIN", "SET application_name = 'kept'", "SET LOCAL work_mem = '9MB'", "SELECT 1/0",
        "COMMIT"),
    "statement: SET LOCAL outside a block": query("SET LOCAL work_mem = '9MB'"),
    "pipeline: ROLLBACK TO SAVEPOINT puts settings back": pipeline(
        "BEGIN", "SET application_name = 'a'", "SAVEPOINT s", "SET application_name = 'b'",
        "SET LOCAL work_mem = '9MB'", "ROLLBACK TO s", "COMMIT"),
    "query: ROLLBACK puts settings back": query(
        "BEGIN; SET application_name = 'gone'; SET work_mem = '9MB'; ROLLBACK"),
    "pipeline: a deferred check met before Sync": pipeline(
        "INSERT INTO c VALUES (9)", "INSERT INTO p VALUES (9)", "INSERT INTO t VALUES (1)"),
    "executemany: a duplicate rolls back the batch": executemany(1, 2, 2, 3),
    "executemany: committed": executemany(*range(10)),
    "query: an error rolls back the statements before it": query(
        "INSERT INTO t VALUES (5); INSERT INTO t VALUES (5)"),
    "query: committed at its end": query("INSERT INTO t VALUES (5); INSERT INTO t VALUES (6)"),
    "query: an error after the writes": query("INSERT INTO t VALUES (3); SELECT 1/0"),
    "query: nextval is not rolled back": query(
        "SELECT nextval('s'); INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)"),
    "query: BEGIN makes the block explicit": query(
        "INSERT INTO t VALUES (1); BEGIN; INSERT INTO t VALUES (2)"),
    "query: an error after BEGIN fails the block": query(
        "INSERT INTO t VALUES (1); BEGIN; INSERT INTO t VALUES (1)"),
    "query: COMMIT in the middle": query(
        "INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (1)"),
    "query: ROLLBACK in the middle": query(
        "INSERT INTO t VALUES (1); ROLLBACK; INSERT INTO t VALUES (2)"),
    "query: BEGIN ... COMMIT then an error": query(
        "BEGIN; INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (1)"),
    "query: DDL rolled back with the query": query(
        "CREATE TABLE t2 (a int); INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)"),
    "query: VACUUM": query("INSERT INTO t VALUES (1); VACUUM"),
    "query: VACUUM first": query("VACUUM; INSERT INTO t VALUES (1)"),
    "query: VACUUM alone": query("VACUUM"),
    "query: CREATE DATABASE": query("INSERT INTO t VALUES (1); CREATE DATABASE implicit_never"),
    "query: ALTER SYSTEM": query("SELECT 1; ALTER SYSTEM SET work_mem = '4MB'"),
    "query: CREATE INDEX CONCURRENTLY": query(
        "SELECT 1; CREATE INDEX CONCURRENTLY t_x ON t (x)"),
    "query: SAVEPOINT needs an explicit block": query(
        "INSERT INTO t VALUES (1); SAVEPOINT a; INSERT INTO t VALUES (2)"),
    "query: SET rolled back with the query": query(
        "SET application_name = 'q'; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)"),
    "query: SET LOCAL until its end": query(
        "SET LOCAL application_name = 'q'; INSERT INTO t VALUES (1)"),
    "query: a check deferred to the commit fails at its end": query(
        "INSERT INTO t VALUES (1); INSERT INTO c VALUES (9)"),
    "query: LOCK TABLE in the block": query(
        "LOCK TABLE t IN ACCESS SHARE MODE; INSERT INTO t VALUES (1)"),
}


@pytest.mark.parametrize("name", CASES)
def test_outcome_matches_postgresql(servers, name):
    postgres, *ours = [outcome(uri, CASES[name]) for uri in servers]
    for got in ours:
        assert got == postgres


def test_asyncpg_executemany_is_one_transaction(servers):
    """asyncpg's executemany sends its rows in one batch: a duplicate leaves none of them, and
    so does a check deferred to the commit, which fails at Sync. (psycopg's pipeline does not
    take an error at Sync: it is left busy, PostgreSQL's too.)"""
    async def run(uri: str) -> tuple:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute("DROP TABLE IF EXISTS t, c, p; CREATE TABLE t (x int PRIMARY KEY);"
                               "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (pid int "
                               "REFERENCES p DEFERRABLE INITIALLY DEFERRED)")
            errors = []
            for sql, rows in (("INSERT INTO t VALUES ($1)", [(1,), (2,), (2,), (3,)]),
                              ("INSERT INTO c VALUES ($1)", [(9,), (8,)])):
                try:
                    await conn.executemany(sql, rows)
                    errors.append(None)
                except asyncpg.PostgresError as exc:
                    errors.append(exc.sqlstate)
            await conn.executemany("INSERT INTO t VALUES ($1)", [(4,), (5,)])
            return (errors, [r[0] for r in await conn.fetch("SELECT x FROM t ORDER BY x")],
                    await conn.fetchval("SELECT count(*) FROM c"), conn.is_in_transaction())
        finally:
            await conn.close()

    results = [asyncio.run(run(uri)) for uri in servers]
    assert results[0] == (["23505", "23503"], [4, 5], 0, False)
    assert results[1:] == results[:1] * 2


def test_a_batch_is_committed_at_its_sync(server, table):
    """Executed and answered (a Flush asked for the answers), a batch's write is not visible
    to others until its Sync, then it is, with ReadyForQuery saying I: as PostgreSQL answers
    the same messages."""
    other = psycopg.connect(server.conninfo(), autocommit=True)
    other.execute(f"CREATE TABLE {table} (x int PRIMARY KEY)")
    raw = RawClient(server).ready()
    try:
        insert = Parse("", f"INSERT INTO {table} VALUES (1)").encode() + Bind().encode()
        raw.send(insert + Execute().encode() + Flush().encode())
        assert [m.TYPE for m in raw.messages(until=b"C")] == [b"1", b"2", b"C"]
        assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        raw.send(Sync().encode())
        assert [(m.TYPE, m.status) for m in raw.messages() if isinstance(m, ReadyForQuery)] \
            == [(b"Z", "I")]
        assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
    finally:
        raw.close()
        other.close()


def test_an_acknowledged_batch_survives_kill_9(tmp_path, reap):
    """Sync's ReadyForQuery comes after the batch's commit is durable: after SIGKILL and a
    restart the acknowledged batches are there whole, the failed one not at all."""
    running = start_server(tmp_path / "s0", data_dir=tmp_path / "data")
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int PRIMARY KEY, tag text)")
        conn.cursor().executemany("INSERT INTO t VALUES (%s, 'many')",
                                  [(k,) for k in range(500)])
        with conn.pipeline():
            conn.execute("UPDATE t SET tag = 'piped' WHERE x < 10")
            conn.execute("DELETE FROM t WHERE x >= 490")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.cursor().executemany("INSERT INTO t VALUES (%s, 'failed')",
                                      [(k,) for k in range(1000, 1100)] + [(0,)])
    running.stop(signal.SIGKILL)
    again = start_server(tmp_path / "s1", data_dir=tmp_path / "data")
    reap(again)
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        rows = conn.execute("SELECT x, tag FROM t ORDER BY x").fetchall()
    assert rows == [(k, "piped" if k < 10 else "many") for k in range(490)]
    assert again.stop() == 0
