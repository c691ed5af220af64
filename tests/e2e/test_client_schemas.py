"""What real application clients (Django, SQLAlchemy, langchain-postgres, pgvector-python) send,
over psycopg against a running server: each case works the same on PostgreSQL + pgvector."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield connection


def test_django_save_updates_zero_rows_with_a_vector_parameter(conn, table):
    """Django's save() first tries an UPDATE by primary key; no row matching is `UPDATE 0`,
    after which it INSERTs."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector(3), name text)")
    vec = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    cur = conn.execute(f"UPDATE {table} SET embedding = %s, name = %s WHERE id = %s",
                       (vec, "a", 1))
    assert cur.rowcount == 0 and cur.statusmessage == "UPDATE 0"
    conn.execute(f"INSERT INTO {table} (id, embedding, name) VALUES (%s, %s, %s)", (1, vec, "a"))
    cur = conn.execute(f"UPDATE {table} SET embedding = %s WHERE id = %s", (vec * 2, 1))
    assert cur.statusmessage == "UPDATE 1"
    (got,) = conn.execute(f"SELECT embedding FROM {table} WHERE id = 1").fetchone()
    got = got.to_numpy() if hasattr(got, "to_numpy") else got
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), vec * 2)
    cur = conn.execute(f"DELETE FROM {table} WHERE embedding = %s", (vec,))
    assert cur.statusmessage == "DELETE 0"


def test_advisory_locks_are_shared_by_the_connections_of_a_database(server):
    """langchain-postgres takes an advisory lock around its schema work on every call."""
    with psycopg.connect(server.conninfo(), autocommit=True) as a, \
            psycopg.connect(server.conninfo(), autocommit=True) as b:
        assert a.execute("SELECT pg_advisory_lock(%s)", (1573678846307946496,)).fetchone() == ("",)
        assert b.execute("SELECT pg_try_advisory_lock(1573678846307946496)").fetchone() == (False,)
        b.execute("SET statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            b.execute("SELECT pg_advisory_lock(1573678846307946496)")
        with a.transaction():
            a.execute("SELECT pg_advisory_xact_lock(2)")
            assert b.execute("SELECT pg_try_advisory_lock(2)").fetchone() == (False,)
        assert b.execute("SELECT pg_try_advisory_lock(2)").fetchone() == (True,)
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        # a's session ends when the server sees the connection close: its locks go then.
        deadline = time.monotonic() + 30
        while c.execute("SELECT pg_try_advisory_lock(1573678846307946496)").fetchone() != (True,):
            assert time.monotonic() < deadline, "the closed session's lock was never released"
            time.sleep(0.05)


# PostgreSQL 16 sends these for the same statements (dropcmds.c: NOTICE, 00000).
@pytest.mark.parametrize("sql, expected", [
    ("DROP TABLE IF EXISTS {t}", ['table "{t}" does not exist, skipping']),
    ("DROP TABLE IF EXISTS {t}, {t}_2",
     ['table "{t}" does not exist, skipping', 'table "{t}_2" does not exist, skipping']),
    ("DROP TABLE IF EXISTS {t}.x", ['schema "{t}" does not exist, skipping']),
    ("DROP INDEX IF EXISTS {t}", ['index "{t}" does not exist, skipping']),
    ("DROP SEQUENCE IF EXISTS {t}", ['sequence "{t}" does not exist, skipping']),
    ("DROP SCHEMA IF EXISTS {t}", ['schema "{t}" does not exist, skipping']),
    ("DROP EXTENSION IF EXISTS {t}", ['extension "{t}" does not exist, skipping']),
    ("DROP VIEW IF EXISTS {t}", ['view "{t}" does not exist, skipping']),
])
def test_drop_if_exists_of_a_missing_object_sends_postgresqls_notice(conn, table, sql, expected):
    notices = []  # a notice's fields are readable only inside the handler
    conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
    conn.execute(sql.format(t=table))
    assert notices == [("NOTICE", "00000", m.format(t=table)) for m in expected]


def test_drop_if_exists_of_an_existing_object_sends_nothing(conn, table):
    conn.execute(f"CREATE TABLE {table} (a int)")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert notices == []
    assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
