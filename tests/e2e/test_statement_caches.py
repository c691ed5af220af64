"""What the server keeps from one run of a statement to the next, seen through psycopg: a
constant query's result (and its encoded rows), a simple query's split text and its
RowDescription. Each must answer as if nothing were kept: in text and binary, under other
names, after DDL and SET search_path, for volatile functions, and in a failed transaction."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

CONSTANT = "SELECT 1 AS a, 'x' AS b, NULL AS c, -2.5 AS d, true AS e"
ROW = (1, "x", None, Decimal("-2.5"), True)


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        yield connection


def run(conn, sql: str, prepare: bool | None, binary: bool = False) -> tuple[list, list[str]]:
    cur = conn.cursor(binary=binary)
    cur.execute(sql, prepare=prepare)
    return cur.fetchall(), [d.name for d in cur.description]


def test_a_constant_query_answers_alike_in_every_protocol_and_format(conn):
    """Prepared (Bind/Describe/Execute), unprepared (Parse each time), simple (Query), and the
    result in text or binary, taking turns: each answer is encoded for its own formats."""
    names = ["a", "b", "c", "d", "e"]
    for _ in range(3):
        for prepare, binary in ((True, False), (True, True), (False, False), (None, True),
                                (False, True), (True, False)):
            assert run(conn, CONSTANT, prepare, binary) == ([ROW], names)


def test_simple_queries_describe_their_own_columns(conn):
    for _ in range(3):
        for name in ("first", "second"):
            assert run(conn, f"SELECT 1 AS {name}", False) == ([(1,)], [name])
        cur = conn.execute("SELECT 1 AS a; SELECT 'b' AS b, 2 AS c", prepare=False)
        assert [d.name for d in cur.description] == ["a"] and cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert [d.name for d in cur.description] == ["b", "c"]
        assert cur.fetchall() == [("b", 2)]


@pytest.mark.parametrize("prepare", [True, False])
def test_volatile_and_session_dependent_queries_are_computed_each_time(conn, table, prepare):
    assert len({run(conn, "SELECT random()", prepare)[0][0][0] for _ in range(5)}) > 1
    conn.execute(f"CREATE SCHEMA {table}")
    try:
        for path, expected in (("public", "public"), (table, table), ("public", "public")):
            conn.execute(f"SET search_path = {path}")
            assert run(conn, "SELECT current_schema()", prepare)[0] == [(expected,)]
            assert run(conn, "SELECT 1", prepare)[0] == [(1,)]
    finally:
        conn.execute("SET search_path = public")
        conn.execute(f"DROP SCHEMA {table}")


@pytest.mark.parametrize("prepare", [True, False])
def test_ddl_between_runs(conn, table, prepare):
    assert run(conn, "SELECT 1", prepare)[0] == [(1,)]
    conn.execute(f"CREATE TABLE {table} (v int)")
    try:
        assert run(conn, "SELECT 1", prepare)[0] == [(1,)]
        assert run(conn, f"SELECT count(*) FROM {table}", prepare)[0] == [(0,)]
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert run(conn, f"SELECT count(*) FROM {table}", prepare)[0] == [(1,)]
        conn.execute(f"ALTER TABLE {table} ADD COLUMN w text")
        assert run(conn, "SELECT 1", prepare)[0] == [(1,)]
    finally:
        conn.execute(f"DROP TABLE {table}")
    assert run(conn, "SELECT 1", prepare)[0] == [(1,)]


def test_a_failed_transaction_refuses_a_constant_query(server):
    with psycopg.connect(server.conninfo()) as conn:  # not autocommit: a block
        for prepare in (True, False, True):
            assert run(conn, "SELECT 1", prepare)[0] == [(1,)]
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        for prepare in (True, False):
            with pytest.raises(errors.InFailedSqlTransaction):
                run(conn, "SELECT 1", prepare)
        conn.rollback()
        assert run(conn, "SELECT 1", True)[0] == [(1,)]


@pytest.mark.parametrize("prepare", [True, False])
def test_errors_are_reported_on_every_run(conn, prepare):
    for _ in range(3):
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1 / 0", prepare=prepare)
        assert run(conn, "SELECT 1", prepare)[0] == [(1,)]


def test_runs_of_a_constant_query_are_counted(conn):
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    text = "SELECT 4321 AS counted"

    def calls() -> int:
        rows = conn.execute("SELECT sum(calls) FROM pg_stat_statements "
                            "WHERE query LIKE 'SELECT $1 AS counted%'").fetchall()
        return int(rows[0][0] or 0)

    before = calls()
    for prepare in (True, True, False, True):
        assert run(conn, text, prepare)[0] == [(4321,)]
    assert calls() == before + 4
