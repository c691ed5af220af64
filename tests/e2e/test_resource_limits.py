"""No query takes the server down: a statement past its memory limit (work_mem) fails with
53200 before it allocates, long joins, cross products and sorts stop at statement_timeout and
at cancel requests within moments, other clients are served meanwhile, and the memory of a
failed statement goes back to the system.

The server is one of its own (started like the shared one) so that its memory, read from
/proc for each of its processes, is this file's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.e2e.conftest import run_asyncpg, server_processes, start_server

# Rows of the two tables whose join on `x % 1` pairs every row with every row (1e9 pairs:
# 24 GB of output; the unbounded server reached 12 GB of RSS within 49 s).
SMALL, LARGE = 10_000, 100_000
COLLIDING = "SELECT count(*) FROM a JOIN b ON a.x % 1 = b.x % 1"
# Long queries that stay within the memory limit: minutes of work unless interrupted.
LONG_JOIN = "SELECT count(*) FROM a JOIN b ON a.x % 1 = b.x % 1 AND a.x + b.x < 0"
LONG_CROSS = "SELECT count(*) FROM a, b WHERE a.x * b.x < 0"
# 1e7 joined rows (about 240 MB, built in 1 s), then sorted: some 6 s of sorting, in buckets.
LONG_SORT = ("SELECT count(*) FROM (SELECT * FROM a JOIN b ON a.x % 100 = b.x % 100 "
             "ORDER BY b.x DESC, a.x) s")
# Seconds an interrupted statement may take past its deadline or cancel request (one block of
# work, on a shared machine).
PROMPT = 2.5
# How much a statement that fails with 53200 may add to the server's peak resident memory.
OOM_GROWTH_MB = 200
# Resident memory a failed statement may leave behind, over what the server held before it.
LEFT_BEHIND_MB = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("limits"), "--log-level", "info")
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE a (x int)")
        conn.execute("CREATE TABLE b (x int)")
        conn.execute(f"INSERT INTO a SELECT g FROM generate_series(1, {SMALL}) g")
        conn.execute(f"INSERT INTO b SELECT g FROM generate_series(1, {LARGE}) g")
    yield running
    assert running.stop() == 0, running.log()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        yield connection


def memory_mb(server) -> dict[str, int]:
    """Of all the server's processes (a statement may run in a worker of `--workers`), in MB:
    the sums of VmRSS (resident now), VmHWM (peak resident) and Pss (resident, pages shared
    by forked processes counted once in all)."""
    out = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    for pid in server_processes(server):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # a worker that just ended
            continue
        for line in (*status.splitlines(), *rollup.splitlines()):
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value.split()[0])
    return {key: kb // 1024 for key, kb in out.items()}


def reset_peak(server) -> None:
    """Start VmHWM over from the current RSS, in every process of the server (Linux: `5` to
    /proc/<pid>/clear_refs)."""
    for pid in server_processes(server):
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def timed_failure(conn, sql: str) -> tuple[psycopg.Error, float]:
    start = time.monotonic()
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    return caught.value, time.monotonic() - start


# Memory ----------------------------------------------------------------------------------------


def test_a_join_with_colliding_keys_fails_fast_within_bounded_memory(server, conn):
    conn.execute("SELECT count(*) FROM a JOIN b ON a.x = b.x")  # warm the server up
    reset_peak(server)
    before = memory_mb(server)["VmRSS"]
    err, seconds = timed_failure(conn, COLLIDING)
    assert isinstance(err, errors.OutOfMemory) and err.sqlstate == "53200"
    assert err.diag.message_primary == "out of memory"
    detail = err.diag.message_detail
    assert detail.startswith("Failed on request of size 24000000000 bytes in Hash Join "
                             f"({SMALL * LARGE} rows of 24 bytes)"), detail
    assert "work_mem" in detail
    assert seconds < 5
    assert memory_mb(server)["VmHWM"] - before < OOM_GROWTH_MB
    assert conn.execute("SELECT count(*) FROM a JOIN b ON a.x = b.x").fetchone() == (SMALL,)


def test_work_mem_bounds_a_sort_and_raising_it_lets_the_sort_run(conn):
    conn.execute("SET work_mem = '1MB'")
    err, _ = timed_failure(conn, "SELECT x FROM b ORDER BY x DESC")
    assert err.sqlstate == "53200" and "in Sort (" in err.diag.message_detail
    assert "its limit (work_mem) is 1MB" in err.diag.message_detail
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SET work_mem = '10mb'")  # units are case-sensitive, as in PostgreSQL
    conn.execute("SET work_mem = '64MB'")
    assert conn.execute("SHOW work_mem").fetchone() == ("64MB",)
    assert conn.execute("SELECT x FROM b ORDER BY x DESC LIMIT 2").fetchall() == [(LARGE,), (LARGE - 1,)]


def test_the_memory_of_a_cancelled_statement_goes_back(server, conn):
    conn.execute("SELECT 1")
    reset_peak(server)
    before = memory_mb(server)
    conn.execute("SET work_mem = '4GB'")
    conn.execute("SET statement_timeout = '3s'")
    err, _ = timed_failure(conn, LONG_SORT)  # stopped by the timeout mid-sort
    assert err.sqlstate == "57014"
    after = memory_mb(server)
    assert after["VmHWM"] - before["VmRSS"] > 100  # the statement did hold a lot
    assert after["Pss"] - before["Pss"] < LEFT_BEHIND_MB, (before, after)


# Interrupts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, timeout", [(LONG_JOIN, 0.5), (LONG_CROSS, 0.5), (LONG_SORT, 2.0)],
                         ids=["join", "cross-product", "sort"])
def test_statement_timeout_stops_a_long_statement_promptly(conn, sql, timeout):
    conn.execute(f"SET statement_timeout = '{int(timeout * 1000)}ms'")
    err, seconds = timed_failure(conn, sql)
    assert isinstance(err, errors.QueryCanceled)
    assert err.diag.message_primary == "canceling statement due to statement timeout"
    assert seconds < timeout + PROMPT
    conn.execute("SET statement_timeout = 0")
    assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("sql", [LONG_JOIN, LONG_CROSS], ids=["join", "cross-product"])
def test_a_cancel_request_stops_a_long_statement_promptly(conn, sql):
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    try:
        err, seconds = timed_failure(conn, sql)
    finally:
        timer.cancel()
    assert isinstance(err, errors.QueryCanceled)
    assert err.diag.message_primary == "canceling statement due to user request"
    assert seconds < 0.5 + PROMPT
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_an_asyncpg_timeout_cancels_the_statement(server):
    async def body(conn):
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval(LONG_JOIN, timeout=0.5)
        # asyncpg sent a cancel request; the connection is usable once the server stopped.
        assert await conn.fetchval("SELECT 3") == 3
        return time.monotonic() - start

    assert run_asyncpg(server, body) < 0.5 + PROMPT


def test_other_clients_are_served_while_a_long_statement_runs(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as slow:
        slow.execute("SET statement_timeout = '4s'")
        outcome: list = []

        def run() -> None:
            try:
                slow.execute(LONG_JOIN)
            except psycopg.Error as exc:
                outcome.append(exc.sqlstate)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            time.sleep(0.3)
            with psycopg.connect(server.conninfo(), autocommit=True) as fast:
                for _ in range(5):
                    start = time.monotonic()
                    assert fast.execute("SELECT count(*) FROM a WHERE x <= 10").fetchone() == (10,)
                    assert time.monotonic() - start < 2
                    err, _ = timed_failure(fast, COLLIDING)  # and the limit holds meanwhile
                    assert err.sqlstate == "53200"
            assert thread.is_alive()  # the answers came while the long statement ran
        finally:
            thread.join()
        assert outcome == ["57014"]


def test_asyncpg_sees_53200_with_its_detail(server):
    async def body(conn):
        with pytest.raises(asyncpg.exceptions.OutOfMemoryError) as caught:
            await conn.fetchval(COLLIDING)
        return caught.value.detail

    assert "in Hash Join (" in run_asyncpg(server, body)
