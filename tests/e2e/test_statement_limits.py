"""Deeply nested and very wide statements through the real server, over both protocols:
right answers up to PostgreSQL-scale depth and width, 54001 beyond, no traceback logged."""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.conftest import start_server

DEPTH = 1_000
WIDTH = 10_000
ROWS = 20_000


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory):
    running = start_server(tmp_path_factory.mktemp("limits"), "--log-level", "debug")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def conn(limits_server):
    with psycopg.connect(limits_server.conninfo(), autocommit=True) as connection:
        connection.execute("CREATE TABLE numbers (a int, b text)")
        connection.execute(f"INSERT INTO numbers SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g")
        yield connection


def test_deep_nesting_answers_over_both_protocols(conn):
    parens = "SELECT " + "(" * DEPTH + "1 + 1" + ")" * DEPTH
    assert conn.execute(parens).fetchone() == (2,)  # simple query protocol
    with_param = "SELECT " + "(" * DEPTH + "%s::int + 1" + ")" * DEPTH
    assert conn.execute(with_param, (41,)).fetchone() == (42,)  # Parse/Bind/Execute
    nested = "SELECT " + "coalesce(" * DEPTH + "NULL::int" + ", NULL)" * (DEPTH - 1) + ", %s)"
    assert conn.execute(nested, (7,)).fetchone() == (7,)
    functions = "SELECT " + "abs(" * DEPTH + "-5" + ")" * DEPTH
    assert conn.execute(functions).fetchone() == (5,)


def test_wide_or_over_a_table_returns_the_matching_rows(conn, limits_server):
    wanted = list(range(0, 3 * WIDTH, 3))  # multiples of 3 below 30,000: 6,666 of the rows
    sql = "SELECT a FROM numbers WHERE " + " OR ".join(f"a = {v}" for v in wanted) + " ORDER BY a"
    expected = [(v,) for v in wanted if 1 <= v <= ROWS]
    assert conn.execute(sql).fetchall() == expected
    assert conn.execute(sql, prepare=True).fetchall() == expected  # Parse/Bind/Execute
    plan = conn.execute("EXPLAIN " + sql).fetchall()
    assert plan[0] == ("Sort",) and any("Filter" in line for (line,) in plan)
    params = "SELECT count(*) FROM numbers WHERE " + " OR ".join(["a = %s"] * 1000)
    assert conn.execute(params, list(range(1000))).fetchone() == (999,)


def test_wide_lists_chains_and_unions(conn):
    values = ", ".join(str(v) for v in range(0, 2 * WIDTH, 2))
    assert conn.execute(f"SELECT count(*) FROM numbers WHERE a IN ({values})").fetchone() == \
        (WIDTH - 1,)
    conjuncts = " AND ".join(f"a <> {v}" for v in range(1, WIDTH + 1))
    assert conn.execute(f"SELECT count(*), min(a) FROM numbers WHERE {conjuncts}").fetchone() == \
        (ROWS - WIDTH, WIDTH + 1)
    total = " + ".join("a" for _ in range(WIDTH))
    assert conn.execute(f"SELECT sum({total}) FROM numbers WHERE a <= 3").fetchone() == \
        (6 * WIDTH,)
    union = " UNION ALL ".join(f"SELECT {v} AS x" for v in range(WIDTH))
    assert conn.execute(f"SELECT count(*), sum(x) FROM ({union}) s").fetchone() == \
        (WIDTH, WIDTH * (WIDTH - 1) // 2)


def test_too_deep_is_54001_and_the_connection_goes_on(conn, limits_server):
    too_deep = "SELECT " + "(" * 20_000 + "1" + ")" * 20_000
    for prepare in (False, True):  # simple, then extended protocol (Parse)
        with pytest.raises(psycopg.errors.StatementTooComplex) as caught:
            conn.execute(too_deep, prepare=prepare)
        assert caught.value.sqlstate == "54001"
        assert str(caught.value).startswith("stack depth limit exceeded")
        assert "max_stack_depth" in caught.value.diag.message_hint
    assert conn.execute("SELECT count(*) FROM numbers").fetchone() == (ROWS,)
    log = limits_server.log()
    assert "Traceback" not in log, log[-5000:]
    assert "RecursionError" not in log
