"""halfvec over the wire: pgvector's binary format (uint16 dim, uint16 unused, big-endian float16
values) both ways through psycopg and asyncpg with the `pgvector` package's HalfVector, its text
form, COPY, and nearest-neighbour search with a halfvec parameter."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from sqlvec.types import HALFVEC_ARRAY_OID, HALFVEC_OID
from tests.e2e.conftest import pgvector_class, run_asyncpg, start_server

HalfVector = pgvector_class("HalfVector")

ROWS = np.array([[1, 2, 3], [0.1, 0.2, 0.3], [-1, 0, 65504], [4, 5, 6]], np.float16)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("halfvec"))
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, embedding halfvec(3))")
    yield running
    assert running.stop() == 0, running.log()


def test_psycopg_binary_round_trip_with_halfvector(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        info = psycopg.types.TypeInfo.fetch(conn, "halfvec")
        assert (info.oid, info.array_oid) == (HALFVEC_OID, HALFVEC_ARRAY_OID)
        register_vector(conn)
        conn.execute("DELETE FROM items")
        with conn.cursor(binary=True) as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s)",
                            [(i, HalfVector(v)) for i, v in enumerate(ROWS)])
            got = cur.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
        assert [i for i, _ in got] == [0, 1, 2, 3]
        for (_, value), want in zip(got, ROWS):
            assert isinstance(value, HalfVector)
            assert (value.to_numpy().dtype.kind, value.to_numpy().dtype.itemsize) == ("f", 2)
            assert np.array_equal(value.to_numpy(), want)
        # Text results: pgvector prints each half as the shortest float that reads back.
        text = conn.execute("SELECT embedding::text FROM items WHERE id = 1").fetchone()[0]
        assert text == "[0.099975586,0.19995117,0.30004883]"
        nearest = conn.execute(
            "SELECT id FROM items ORDER BY embedding <-> %s LIMIT 1",
            (HalfVector([4, 5, 5.5]),), binary=True).fetchone()[0]
        assert nearest == 3


def test_psycopg_rejects_wrong_dimensions_and_bad_values(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        register_vector(conn)
        with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2"):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (9, HalfVector([1, 2])),
                         binary=True)
        with pytest.raises(psycopg.errors.NumericValueOutOfRange,
                           match='"70000" is out of range for type halfvec'):
            conn.execute("SELECT '[70000]'::halfvec")


def test_asyncpg_binary_round_trip_with_halfvector(srv):
    from pgvector.asyncpg import register_vector

    async def body(conn):
        await register_vector(conn)
        await conn.execute("DELETE FROM items")
        await conn.executemany("INSERT INTO items VALUES ($1, $2)",
                               [(i, HalfVector(v)) for i, v in enumerate(ROWS)])
        rows = await conn.fetch("SELECT id, embedding FROM items ORDER BY id")
        distance = await conn.fetchval("SELECT embedding <#> $1 FROM items WHERE id = 0",
                                       HalfVector([1, 1, 1]))
        return [(r["id"], r["embedding"]) for r in rows], distance
    rows, distance = run_asyncpg(srv, body)
    assert [i for i, _ in rows] == [0, 1, 2, 3]
    for (_, value), want in zip(rows, ROWS):
        assert np.array_equal(value.to_numpy(), want)
    assert distance == -6.0


def test_copy_text_and_binary(srv):
    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM items")
        with conn.cursor().copy("COPY items FROM STDIN") as copy:
            copy.write("1\t[1,2.5,0.1]\n2\t\\N\n")
        with conn.cursor().copy("COPY items TO STDOUT") as copy:
            out = b"".join(bytes(chunk) for chunk in copy).decode()
        assert out == "1\t[1,2.5,0.099975586]\n2\t\\N\n"
        with conn.cursor().copy("COPY items TO STDOUT (FORMAT binary)") as copy:
            raw = b"".join(bytes(chunk) for chunk in copy)
        conn.execute("DELETE FROM items")
        with conn.cursor().copy("COPY items FROM STDIN (FORMAT binary)") as copy:
            copy.write(raw)
        got = conn.execute("SELECT id, embedding::text FROM items ORDER BY id").fetchall()
        assert got == [(1, "[1,2.5,0.099975586]"), (2, None)]
        # The binary cell is pgvector's: dim 3, unused 0, three big-endian halves.
        cell = np.array([1, 2.5, 0.1], ">f2").tobytes()
        assert b"\x00\x00\x00\x0a\x00\x03\x00\x00" + cell in raw
