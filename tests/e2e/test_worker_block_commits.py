"""A transaction block with schema changes commits through a manifest alone, no WAL record
(`Store.commit_deferred`): the worker processes must see what it committed exactly as the
primary does.

An autocommit read is answered by the connection's worker process (a follower of the writer's
directory); a read inside a block is answered by the primary. Each case runs a block of one
shape, then compares the two answers, again after an autocommit write that the worker takes
from the log, and again after a CHECKPOINT.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.conftest import RunningServer, serve_while_used


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    yield from serve_while_used(tmp_path_factory, "sqlvec-block-commits", "--workers", "2")


ROWS = "INSERT INTO {t} (id, n) SELECT g, g FROM generate_series(1, 100) g"
SEALED = [ROWS, "CHECKPOINT"]  # the rows in a sealed segment, none in the growing one
GROWING = [ROWS]  # the rows only in the growing segment (the log)
DDL = "CREATE TABLE {z} (k int)"

# name: (setup, statements of the block, whether the block is one (False: each autocommit))
SHAPES = {
    "truncate growing": (GROWING, ["TRUNCATE {t}"], True),
    "truncate sealed": (SEALED, ["TRUNCATE {t}"], True),
    "truncate growing and sealed": (SEALED + ["INSERT INTO {t} VALUES (500, 5)"],
                                    ["TRUNCATE {t}"], True),
    "ddl then delete growing": (GROWING, [DDL, "DELETE FROM {t} WHERE id <= 40"], True),
    "ddl then delete sealed": (SEALED, [DDL, "DELETE FROM {t} WHERE id <= 40"], True),
    "ddl then delete sealed twice": (SEALED + ["DELETE FROM {t} WHERE id > 90"],
                                     [DDL, "DELETE FROM {t} WHERE id <= 40"], True),
    "ddl then update growing": (GROWING, [DDL, "UPDATE {t} SET n = -n WHERE id % 3 = 0"], True),
    "ddl then update sealed": (SEALED, [DDL, "UPDATE {t} SET n = -n WHERE id % 3 = 0"], True),
    "ddl then insert": (GROWING, [DDL, "INSERT INTO {t} VALUES (200, 2), (201, 3)"], True),
    "truncate then insert": (SEALED + ["INSERT INTO {t} VALUES (500, 5)"],
                             ["TRUNCATE {t}", "INSERT INTO {t} VALUES (7, 7)"], True),
    "truncate restart identity": (
        ["INSERT INTO {t} (n) SELECT g FROM generate_series(1, 10) g"],
        ["TRUNCATE {t} RESTART IDENTITY", "INSERT INTO {t} (n) VALUES (42)"], True),
    "drop and create the same name": (
        GROWING, ["DROP TABLE {t}", "CREATE TABLE {t} (id int PRIMARY KEY, n int)",
                  "INSERT INTO {t} VALUES (1, 1)"], True),
    "rollback to savepoint": (
        GROWING, [DDL, "SAVEPOINT s", "TRUNCATE {t}", "ROLLBACK TO SAVEPOINT s",
                  "DELETE FROM {t} WHERE id > 70"], True),
    "alter add column then delete": (
        GROWING, ["ALTER TABLE {t} ADD COLUMN extra int DEFAULT 9",
                  "DELETE FROM {t} WHERE id <= 10"], True),
    "alter type rewrites": (
        SEALED + ["INSERT INTO {t} VALUES (500, 5)", "DELETE FROM {t} WHERE id <= 5"],
        ["ALTER TABLE {t} ALTER COLUMN n TYPE bigint", "DELETE FROM {t} WHERE id > 95"], True),
    "autocommit truncate (control)": (GROWING, ["TRUNCATE {t}"], False),
    "autocommit delete sealed (control)": (SEALED, ["DELETE FROM {t} WHERE id <= 40"], False),
}


def _rows(conn: psycopg.Connection, t: str, in_block: bool) -> list[tuple]:
    query = f"SELECT * FROM {t} ORDER BY id"
    if not in_block:
        return conn.execute(query).fetchall()  # answered by the worker
    with conn.transaction():  # answered by the primary
        return conn.execute(query).fetchall()


def _same_on_worker_and_primary(conn: psycopg.Connection, t: str) -> list[tuple]:
    on_primary = _rows(conn, t, in_block=True)
    on_worker = _rows(conn, t, in_block=False)
    assert on_worker == on_primary
    return on_primary


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_blocks_commit_is_what_a_worker_reads(pool_server, table, shape):
    setup, block, is_block = SHAPES[shape]
    names = {"t": table, "z": table + "_z"}
    with psycopg.connect(pool_server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, n int)")
        for sql in setup:
            conn.execute(sql.format(**names))
        before = _same_on_worker_and_primary(conn, table)
        if is_block:
            with conn.transaction():
                for sql in block:
                    conn.execute(sql.format(**names))
        else:
            for sql in block:
                conn.execute(sql.format(**names))
        after = _same_on_worker_and_primary(conn, table)
        assert after != before
        conn.execute(f"INSERT INTO {table} (id, n) VALUES (1000, 1)")
        assert len(_same_on_worker_and_primary(conn, table)) == len(after) + 1
        conn.execute("CHECKPOINT")
        _same_on_worker_and_primary(conn, table)

