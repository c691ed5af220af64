"""sparsevec over the wire: pgvector's binary format (int32 dim, nnz, unused, then 0-based int32
indices and big-endian float4 values) both ways through psycopg and asyncpg with the `pgvector`
package's SparseVector, its text form, COPY, and nearest-neighbour search with a sparse
parameter."""

from __future__ import annotations

import psycopg
import pytest

from sqlvec.types import SPARSEVEC_ARRAY_OID, SPARSEVEC_OID
from tests.e2e.conftest import pgvector_class, run_asyncpg, start_server

SparseVector = pgvector_class("SparseVector")

ROWS = [SparseVector({0: 1.5, 2: 3.5}, 5), SparseVector([0, 0, 0, 0, 2]),
        SparseVector({}, 5), SparseVector({1: -0.25, 4: 0.125}, 5)]


def _contents(values: list) -> list:
    """What a SparseVector holds (older pgvector packages compare them by identity only)."""
    return [(v.dimensions(), list(v.indices()), list(v.values())) for v in values]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("sparsevec"))
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, embedding sparsevec(5))")
    yield running
    assert running.stop() == 0, running.log()


def test_psycopg_binary_round_trip_with_sparsevector(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        info = psycopg.types.TypeInfo.fetch(conn, "sparsevec")
        assert (info.oid, info.array_oid) == (SPARSEVEC_OID, SPARSEVEC_ARRAY_OID)
        register_vector(conn)
        conn.execute("DELETE FROM items")
        with conn.cursor(binary=True) as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s)", list(enumerate(ROWS)))
            got = cur.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
        assert _contents([value for _, value in got]) == _contents(ROWS)
        text = conn.execute("SELECT embedding::text FROM items WHERE id = 3").fetchone()[0]
        assert text == "{2:-0.25,5:0.125}/5"
        nearest = conn.execute("SELECT id FROM items ORDER BY embedding <-> %s LIMIT 1",
                               (SparseVector({4: 1.9}, 5),), binary=True).fetchone()[0]
        assert nearest == 1


def test_psycopg_rejects_bad_binary_values(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        register_vector(conn)
        with pytest.raises(psycopg.errors.DataException, match="expected 5 dimensions, not 3"):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (9, SparseVector({0: 1}, 3)),
                         binary=True)
        with pytest.raises(psycopg.errors.DataException, match="cannot contain zero values"):
            conn.execute("SELECT %s::sparsevec", (SparseVector.from_binary(
                b"\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 8),),
                binary=True)


def test_asyncpg_binary_round_trip_with_sparsevector(srv):
    from pgvector.asyncpg import register_vector

    async def body(conn):
        await register_vector(conn)
        await conn.execute("DELETE FROM items")
        await conn.executemany("INSERT INTO items VALUES ($1, $2)", list(enumerate(ROWS)))
        rows = await conn.fetch("SELECT id, embedding FROM items ORDER BY id")
        distance = await conn.fetchval("SELECT embedding <#> $1 FROM items WHERE id = 0",
                                       SparseVector({0: 2, 2: 1}, 5))
        return [r["embedding"] for r in rows], distance
    rows, distance = run_asyncpg(srv, body)
    assert _contents(rows) == _contents(ROWS)
    assert distance == -6.5


def test_copy_text_and_binary(srv):
    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM items")
        with conn.cursor().copy("COPY items FROM STDIN") as copy:
            copy.write("1\t{3:2.5,1:1}/5\n2\t\\N\n")
        with conn.cursor().copy("COPY items TO STDOUT") as copy:
            out = b"".join(bytes(chunk) for chunk in copy).decode()
        assert out == "1\t{1:1,3:2.5}/5\n2\t\\N\n"
        with conn.cursor().copy("COPY items TO STDOUT (FORMAT binary)") as copy:
            raw = b"".join(bytes(chunk) for chunk in copy)
        # The binary cell is pgvector's: dim 5, nnz 2, unused 0, indices 0 and 2, values.
        assert bytes.fromhex("00000005" "00000002" "00000000" "00000000" "00000002"
                             "3f800000" "40200000") in raw
        conn.execute("DELETE FROM items")
        with conn.cursor().copy("COPY items FROM STDIN (FORMAT binary)") as copy:
            copy.write(raw)
        got = conn.execute("SELECT id, embedding::text FROM items ORDER BY id").fetchall()
        assert got == [(1, "{1:1,3:2.5}/5"), (2, None)]


def test_hnsw_nonzero_limit_on_every_write_path(srv):
    from pgvector.psycopg import register_vector

    wide = SparseVector({i: 1.0 for i in range(1001)}, 2000)
    limit = "sparsevec cannot have more than 1000 non-zero elements for hnsw index"
    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE wide (id int, v sparsevec(2000))")
        conn.execute("CREATE INDEX ON wide USING hnsw (v sparsevec_l2_ops)")
        conn.execute("INSERT INTO wide VALUES (1, '{1:1}/2000')")
        for binary in (False, True):
            with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=limit):
                conn.execute("INSERT INTO wide VALUES (%s, %s)", (2, wide), binary=binary)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=limit):
            with conn.cursor().copy("COPY wide FROM STDIN") as copy:
                copy.write("2\t" + wide.to_text() + "\n")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=limit):
            conn.execute("UPDATE wide SET v = %s WHERE id = 1", (wide,))
        assert conn.execute("SELECT count(*) FROM wide").fetchone()[0] == 1
        conn.execute("DROP TABLE wide")
