"""bit over the wire: PostgreSQL's binary format (int32 bit count, packed bytes, first bit
highest) both ways through psycopg and asyncpg with the `pgvector` package's Bit, and pgvector's
Hamming / Jaccard search over a bit column (an exact popcount scan)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import pgvector_class, run_asyncpg, start_server

Bit = pgvector_class("Bit")

ROWS = ["101", "111", "000", "110"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("bit"))
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, b bit(3))")
    yield running
    assert running.stop() == 0, running.log()


def test_psycopg_binary_round_trip_with_bit(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DELETE FROM items")
        with conn.cursor(binary=True) as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s)",
                            [(i, Bit(b)) for i, b in enumerate(ROWS)])
            got = cur.execute("SELECT id, b FROM items ORDER BY id").fetchall()
        # pgvector's adapter dumps Bit; psycopg hands the binary bit value back as bytes.
        assert [Bit.from_binary(b).to_text() for _, b in got] == ROWS
        text = conn.execute("SELECT b::text FROM items WHERE id = 3").fetchone()[0]
        assert text == "110"
        nearest = conn.execute("SELECT id, b <~> %s FROM items ORDER BY b <~> %s, id LIMIT 2",
                               (Bit("001"), Bit("001")), binary=True).fetchall()
        assert nearest == [(0, 1.0), (2, 1.0)]
        with pytest.raises(psycopg.errors.StringDataLengthMismatch,
                           match="bit string length 4 does not match type bit"):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (9, Bit("1011")), binary=True)


def test_asyncpg_binary_round_trip(srv):
    async def body(conn):
        await conn.execute("DELETE FROM items")
        await conn.executemany("INSERT INTO items VALUES ($1, $2::text::bit(3))",
                               [(i, b) for i, b in enumerate(ROWS)])
        rows = await conn.fetch("SELECT id, b, b <%> B'011' AS j FROM items ORDER BY id")
        quantized = await conn.fetchval("SELECT binary_quantize($1::vector)",
                                        "[1,-2,0,3,0.5,-1,2,2,1]")
        return [(r["id"], r["b"], r["j"]) for r in rows], quantized
    rows, quantized = run_asyncpg(srv, body)
    assert [b.as_string() for _, b, _ in rows] == ROWS
    assert [j for _, _, j in rows] == [1 - 1 / 3, 1 - 2 / 3, 1.0, 1 - 1 / 3]
    assert quantized.as_string().replace(" ", "") == "100110111"  # asyncpg groups by 4


def test_hamming_top_k_matches_numpy(srv):
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2, (2000, 64)).astype(bool)
    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE codes (id int8, b bit(64))")
        with conn.cursor().copy("COPY codes FROM STDIN") as copy:
            for i, row in enumerate(bits):
                copy.write(f"{i}\t{''.join('1' if x else '0' for x in row)}\n")
        query = "".join("1" if x else "0" for x in bits[7])
        got = conn.execute("SELECT id, b <~> %s::bit(64) FROM codes "
                           "ORDER BY b <~> %s::bit(64), id LIMIT 10", (query, query)).fetchall()
    dist = (bits != bits[7]).sum(axis=1)
    order = np.lexsort((np.arange(2000), dist))[:10]
    assert got == [(int(i), float(dist[i])) for i in order]
