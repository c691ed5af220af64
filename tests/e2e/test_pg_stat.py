"""Statistics and progress views seen by a real client while the work happens, on a real server:
pg_stat_progress_create_index and sqlvec_indexes sampled from a second connection during a
CREATE INDEX, pg_stat_progress_copy during a COPY, the table and index counters, and
pg_stat_statements."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import start_server

ROWS = 40_000
DIM = 32
PHASES = ["initializing", "building index: loading tuples", "building index: measuring recall",
          "building index: writing index file"]
STATES = ["pending", "building", "calibrating", "saving", "ready"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("pg-stat"))
    yield running
    assert running.stop() == 0, running.log()


def copy_rows(conn, table: str, ids: range, hold: threading.Event | None = None,
              sent: threading.Event | None = None) -> None:
    rng = np.random.default_rng(7)
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, v) FROM STDIN") as copy:
        for n, i in enumerate(ids):
            v = rng.standard_normal(DIM).astype(np.float32)
            copy.write_row((i, "[" + ",".join(f"{x:.5f}" for x in v) + "]"))
            if hold is not None and n == len(ids) // 2:
                copy.write(b"")  # hand what is buffered to the server
                conn.pgconn.flush()
                sent.set()
                hold.wait(30)


def test_copy_progress_and_table_counters(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn, \
            psycopg.connect(server.conninfo(), autocommit=True) as watcher:
        conn.execute(f"CREATE TABLE copied (id int PRIMARY KEY, v vector({DIM}))")
        oid = watcher.execute("SELECT 'copied'::regclass::oid").fetchone()[0]
        hold, sent = threading.Event(), threading.Event()
        writer = threading.Thread(target=copy_rows, args=(conn, "copied", range(2000), hold,
                                                          sent))
        writer.start()
        try:
            assert sent.wait(30)
            deadline = time.monotonic() + 30
            row = None
            while time.monotonic() < deadline:  # until the server has read some of it
                row = watcher.execute(
                    "SELECT relid, command, type, bytes_processed, bytes_total, "
                    "tuples_processed, tuples_excluded, datname "
                    "FROM pg_stat_progress_copy").fetchone()
                if row is not None and row[3] > 0:
                    break
                time.sleep(0.02)
            assert row is not None and row[:3] == (oid, "COPY FROM", "PIPE")
            assert row[3] > 0 and row[4:7] == (0, 0, 0) and row[7] == "postgres"
        finally:
            hold.set()
            writer.join()
        assert watcher.execute("SELECT count(*) FROM pg_stat_progress_copy").fetchone()[0] == 0

        conn.execute("UPDATE copied SET v = v WHERE id < 10")
        conn.execute("DELETE FROM copied WHERE id >= 1990")
        assert conn.execute("SELECT count(*) FROM copied WHERE id % 2 = 0").fetchone()[0] == 995
        assert conn.execute("SELECT id FROM copied WHERE id = 7").fetchone() == (7,)
        stats = watcher.execute(
            "SELECT seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, n_tup_ins, n_tup_upd, "
            "n_tup_del, n_live_tup FROM pg_stat_user_tables WHERE relname = 'copied'").fetchone()
        # seq scans: UPDATE (by key: an index scan), DELETE and the count read the table.
        assert stats[4:] == (2000, 10, 10, 1990)
        assert stats[0] >= 2 and stats[1] >= 1990 + 2000
        assert stats[2] >= 1 and stats[3] >= 1
        index = watcher.execute(
            "SELECT relname, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes "
            "WHERE indexrelname = 'copied_pkey'").fetchone()
        assert index[0] == "copied" and index[1] >= 1 and index[3] >= 1
        assert watcher.execute(
            "SELECT count(*) FROM pg_stat_all_tables WHERE relname = 'copied'").fetchone() == (1,)


def test_create_index_progress_is_monotonic(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn, \
            psycopg.connect(server.conninfo(), autocommit=True) as watcher:
        conn.execute(f"CREATE TABLE big (id int PRIMARY KEY, v vector({DIM}))")
        copy_rows(conn, "big", range(ROWS))
        oid = watcher.execute("SELECT 'big'::regclass::oid").fetchone()[0]
        failure: list[BaseException] = []

        def build() -> None:
            try:
                conn.execute("CREATE INDEX big_v ON big USING hnsw (v vector_l2_ops)")
            except BaseException as exc:
                failure.append(exc)

        builder = threading.Thread(target=build)
        builder.start()
        samples, states = [], {}
        while builder.is_alive():
            row = watcher.execute(
                "SELECT relid, index_relid, command, phase, blocks_total, blocks_done, "
                "tuples_total, tuples_done, lockers_total, partitions_total "
                "FROM pg_stat_progress_create_index").fetchone()
            if row is not None:
                samples.append(row)
            for seg, state, done, total in watcher.execute(
                    "SELECT segment, state, rows_indexed, rows_total FROM sqlvec_indexes "
                    "WHERE indexname = 'big_v'"):
                states.setdefault(seg, []).append((STATES.index(state), done, total))
            time.sleep(0.01)
        builder.join()
        assert not failure, failure
        assert samples, "the view was never seen during the build"
        index_oid = watcher.execute("SELECT 'big_v'::regclass::oid").fetchone()[0]
        for relid, index_relid, command, phase, *_rest in samples:
            assert (relid, index_relid, command) == (oid, index_oid, "CREATE INDEX")
            assert phase in PHASES
        for earlier, later in zip(samples, samples[1:]):
            assert later[5] >= earlier[5] and later[7] >= earlier[7]  # blocks, tuples done
        for row in samples:
            blocks_total, blocks_done, tuples_total, tuples_done = row[4:8]
            assert blocks_done <= blocks_total and tuples_done <= tuples_total
            assert row[8] == 0 and row[9] == 0
            if row[3] != "initializing":
                assert tuples_total == ROWS
        # Per segment, sqlvec_indexes only moves forward until the index is ready.
        for seg, seen in states.items():
            for (s1, d1, _t), (s2, d2, _t2) in zip(seen, seen[1:]):
                assert (s2, d2) >= (s1, d1), (seg, seen)
        assert watcher.execute("SELECT count(*) FROM pg_stat_progress_create_index"
                               ).fetchone()[0] == 0
        final = watcher.execute("SELECT state, sum(rows_indexed), sum(rows_total) "
                                "FROM sqlvec_indexes WHERE indexname = 'big_v' GROUP BY state"
                                ).fetchall()
        assert final == [("ready", ROWS, ROWS)]


def test_pg_stat_statements(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stmts (id int PRIMARY KEY, name text)")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("INSERT INTO stmts VALUES (1, 'a'), (2, 'b')")
        conn.execute("INSERT INTO stmts VALUES (3, 'c')")
        for i in (1, 2, 3):
            conn.execute(f"SELECT name FROM stmts WHERE id = {i}")
        conn.execute("SELECT name FROM stmts WHERE id > %s", (0,))
        rows = conn.execute(
            "SELECT query, calls, rows, total_exec_time >= mean_exec_time, mean_exec_time > 0,"
            " userid = (SELECT oid FROM pg_roles WHERE rolname = current_user), "
            " dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "FROM pg_stat_statements WHERE query LIKE '%stmts%' ORDER BY query").fetchall()
        by_query = {r[0]: r[1:] for r in rows}
        assert by_query["SELECT name FROM stmts WHERE id = $1"] == (3, 3, True, True, True, True)
        assert by_query["SELECT name FROM stmts WHERE id > $1"][:2] == (1, 3)
        assert by_query["INSERT INTO stmts VALUES ($1, $2), ($3, $4)"][:2] == (1, 2)
        assert by_query["INSERT INTO stmts VALUES ($1, $2)"][:2] == (1, 1)
        ids = conn.execute("SELECT count(DISTINCT queryid) FROM pg_stat_statements "
                           "WHERE query LIKE '%stmts%'").fetchone()[0]
        assert ids == len(rows)
        conn.execute("SELECT pg_stat_statements_reset()")
        left = conn.execute("SELECT query FROM pg_stat_statements").fetchall()
        assert left == [("SELECT pg_stat_statements_reset()",)]
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = "
                            "'pg_stat_statements'").fetchone() == ("pg_stat_statements",)


COUNTERS = ("SELECT seq_scan, seq_tup_read, n_tup_ins, n_tup_upd, n_tup_del FROM "
            "pg_stat_user_tables WHERE relname = 'kept'")
CALLS = ("SELECT calls, rows FROM pg_stat_statements WHERE query = "
         "'SELECT count(*) FROM kept WHERE id > $1'")


def _counters(running) -> tuple:
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        return conn.execute(COUNTERS).fetchone(), conn.execute(CALLS).fetchone()


def test_counters_survive_a_clean_shutdown_not_a_crash(tmp_path):
    """As PostgreSQL keeps its cumulative statistics across a clean shutdown and discards them
    after a crash."""
    import signal

    data = tmp_path / "data"
    first = start_server(tmp_path, data_dir=data)
    with psycopg.connect(first.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE TABLE kept (id int, v vector(2))")
        conn.execute("INSERT INTO kept SELECT g, '[1,1]' FROM generate_series(1, 10) g")
        conn.execute("UPDATE kept SET v = '[2,2]' WHERE id <= 3")
        conn.execute("DELETE FROM kept WHERE id = 10")
        for _ in range(3):
            conn.execute("SELECT count(*) FROM kept WHERE id > 0")
    before = _counters(first)
    assert before[0][2:] == (10, 3, 1) and before[1] == (3, 3)
    assert first.stop() == 0, first.log()
    assert (data / "pg_stat" / "postgres.json").exists()

    second = start_server(tmp_path, data_dir=data)
    try:
        assert _counters(second) == before
        assert not (data / "pg_stat" / "postgres.json").exists()  # taken back at the start
        with psycopg.connect(second.conninfo(), autocommit=True) as conn:
            conn.execute("INSERT INTO kept VALUES (11, '[0,1]')")  # counting goes on
        assert _counters(second)[0][2] == 11
    finally:
        second.stop(signal.SIGKILL)

    third = start_server(tmp_path, data_dir=data)
    try:
        (seq_scan, seq_read, inserted, updated, deleted), calls = _counters(third)
        assert (inserted, updated, deleted) == (0, 0, 0) and calls is None  # after a crash: zero
    finally:
        assert third.stop() == 0, third.log()
