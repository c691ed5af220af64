"""The vector top-k's query vector as a prepared statement's parameter through psycopg, in
pgvector's binary format (`register_vector`, as the benchmark suite sends it) and as text:
the same rows as the literal query, and pgvector's errors for vectors it refuses."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from tests.e2e.conftest import vector_text

DIM = 16
SQL = "SELECT id FROM {t} ORDER BY emb <-> %s LIMIT 5"


@pytest.fixture
def conn(server, table):
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(c)
        c.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, emb vector({DIM}))")
        rows = np.random.default_rng(4).standard_normal((500, DIM)).astype(np.float32)
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)",
                            [(i, vector_text(v)) for i, v in enumerate(rows)])
        c.execute(f"CREATE INDEX ON {table} USING hnsw (emb vector_l2_ops)")
        c.execute("SET hnsw.ef_search = 100")
        yield c


def test_binary_and_text_parameters_find_what_the_literal_finds(conn, table):
    sql = SQL.format(t=table)
    for q in np.random.default_rng(8).standard_normal((5, DIM)).astype(np.float32):
        literal = conn.execute(sql.replace("%s", f"'{vector_text(q)}'")).fetchall()
        binary = conn.execute(sql, (q,), prepare=True).fetchall()
        # A text parameter with spaces and exponents, as a hand-written client sends it.
        text = "[ " + " , ".join(f"{x:.8e}" for x in q.astype(np.float64)) + " ]"
        typed = conn.execute(sql.replace("%s", "%s::vector"), (text,), prepare=True).fetchall()
        assert binary == literal == typed
        assert len(binary) == 5


@pytest.mark.parametrize("bad, sqlstate, message", [
    (np.ones(DIM - 1, np.float32), "22000", f"different vector dimensions {DIM} and {DIM - 1}"),
    (np.ones(22000, np.float32), "54000", "vector cannot have more than 16000 dimensions"),
    (np.array([np.nan] + [0.0] * (DIM - 1), np.float32), "22000", "NaN not allowed in vector"),
    (np.array([np.inf] + [0.0] * (DIM - 1), np.float32), "22000",
     "infinite value not allowed in vector"),
])
def test_refused_binary_vectors(conn, table, bad, sqlstate, message):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(SQL.format(t=table), (bad,), prepare=True).fetchall()
    assert info.value.sqlstate == sqlstate
    assert message in str(info.value)
    assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("text, sqlstate", [
    ("[1,nan" + ",0" * (DIM - 2) + "]", "22000"),
    ("[1_0" + ",0" * (DIM - 1) + "]", "22P02"),
    ("[1e" + ",0" * (DIM - 1) + "]", "22P02"),
    ("[1e39" + ",0" * (DIM - 1) + "]", "22003"),
])
def test_refused_text_vectors(conn, table, text, sqlstate):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(SQL.format(t=table).replace("%s", "%s::vector"), (text,),
                     prepare=True).fetchall()
    assert info.value.sqlstate == sqlstate


def test_float_filter_bound_as_a_binary_parameter_keeps_nan_above_every_bound(server, table):
    """A filtered top-k whose float8 bound is a prepared statement's binary parameter: NaN
    prices are greater than every bound, Infinity included, and equal to a NaN bound, as in
    PostgreSQL."""
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        register_vector(c)
        c.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, price float8, "
                  f"emb vector({DIM}))")
        prices = [float("nan"), 5.0, float("inf"), -1.0, None, float("nan")]
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                            [(i, p, np.full(DIM, i, np.float32)) for i, p in enumerate(prices)])
        sql = f"SELECT id FROM {table} WHERE price {{}} %s ORDER BY emb <-> %s LIMIT 4"
        origin = np.zeros(DIM, np.float32)
        for op, bound, want in [(">", 1.0, [0, 1, 2, 5]), (">", float("inf"), [0, 5]),
                                ("=", float("nan"), [0, 5]), ("<", float("nan"), [1, 2, 3])]:
            got = c.execute(sql.format(op), (bound, origin), prepare=True, binary=True)
            assert [r[0] for r in got.fetchall()] == want, (op, bound)
