"""Driver-side type introspection against sqlvec: asyncpg's introspection query (what it runs
for a type OID it does not know, here pgvector's), pgvector's asyncpg and psycopg adapters
(which look `vector` up in pg_type), psycopg's TypeInfo.fetch, asyncpg's copy_from_query, and
server-side cursors."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg.types import TypeInfo

from sqlvec.types import VECTOR_ARRAY_OID, VECTOR_OID
from tests.e2e.conftest import run_asyncpg, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("catalog-drivers"))
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE docs (id int8 PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO docs VALUES (1, '[1,2,3]'), (2, '[4,5,6]')")
    yield running
    assert running.stop() == 0, running.log()




def test_asyncpg_introspects_unknown_vector_type(srv):
    async def body(conn):
        # No codec registered: asyncpg introspects OID 16385 through pg_type and reads text.
        rows = await conn.fetch("SELECT id, embedding FROM docs ORDER BY id")
        return [(r["id"], r["embedding"]) for r in rows]
    assert run_asyncpg(srv, body) == [(1, "[1,2,3]"), (2, "[4,5,6]")]


def test_asyncpg_pgvector_codec(srv):
    from pgvector.asyncpg import register_vector

    async def body(conn):
        await register_vector(conn)
        row = await conn.fetchrow("SELECT embedding FROM docs WHERE id = $1", 2)
        nearest = await conn.fetchval("SELECT id FROM docs ORDER BY embedding <-> $1 LIMIT 1",
                                      np.array([4, 5, 5.5], dtype=np.float32))
        return row["embedding"], nearest
    embedding, nearest = run_asyncpg(srv, body)
    assert np.allclose(embedding.to_numpy(), [4, 5, 6]) and nearest == 2


def test_asyncpg_copy_from_query(srv, tmp_path):
    async def body(conn):
        await conn.copy_from_query("SELECT id FROM docs ORDER BY id", output=str(tmp_path / "o"))
        return await conn.fetchval('SELECT quote_literal($1::"pg_catalog"."int4"::text)', 5)
    assert run_asyncpg(srv, body) == "'5'"
    assert (tmp_path / "o").read_text() == "1\n2\n"


def test_psycopg_typeinfo_and_pgvector_adapter(srv):
    from pgvector.psycopg import register_vector

    with psycopg.connect(srv.conninfo(), autocommit=True) as conn:
        info = TypeInfo.fetch(conn, "vector")
        assert (info.name, info.oid, info.array_oid) == ("vector", VECTOR_OID, VECTOR_ARRAY_OID)
        assert TypeInfo.fetch(conn, "no_such_type") is None
        register_vector(conn)
        got = conn.execute("SELECT embedding FROM docs ORDER BY id").fetchall()
        value = got[0][0]
        assert np.allclose(value.to_numpy() if hasattr(value, "to_numpy") else value, [1, 2, 3])


def test_sql_cursors_over_the_wire(srv):
    with psycopg.connect(srv.conninfo()) as conn:
        conn.execute("DECLARE c CURSOR FOR SELECT id FROM docs ORDER BY id")
        assert conn.execute("SELECT name, is_holdable FROM pg_cursors").fetchall() == \
            [("c", False)]
        assert conn.execute("FETCH 1 FROM c").fetchall() == [(1,)]
        assert conn.execute("FETCH ALL FROM c").fetchall() == [(2,)]
        conn.execute("CLOSE c")
        conn.commit()


def test_psycopg_named_cursor(srv):
    with psycopg.connect(srv.conninfo()) as conn:
        with conn.cursor(name="big") as cur:
            cur.itersize = 1
            cur.execute("SELECT id FROM docs ORDER BY id")
            assert [r[0] for r in cur] == [1, 2]
