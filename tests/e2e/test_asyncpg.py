"""asyncpg against a running server: binary results everywhere, named prepared statements."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import numpy as np
import pytest

from sqlvec.session import Session
from tests.e2e.conftest import run_asyncpg

needs_copy_in = pytest.mark.skipif(not hasattr(Session, "copy_in"),
                                   reason="Session.copy_in is not available yet")


def test_fetch_fetchrow_fetchval(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int8 PRIMARY KEY, name text, "
                           "score float8, price numeric(10,2), day date, at timestamptz)")
        await conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 0.5, 9.99, '2024-01-01', "
                           "'2024-01-01 12:00:00+00'), (2, 'b', NULL, NULL, NULL, NULL)")
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY id")
        assert [tuple(r) for r in rows] == [
            (1, "a", 0.5, Decimal("9.99"), dt.date(2024, 1, 1),
             dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)),
            (2, "b", None, None, None, None)]
        row = await conn.fetchrow(f"SELECT name, score FROM {table} WHERE id = $1", 1)
        assert row["name"] == "a" and row["score"] == 0.5
        assert await conn.fetchval("SELECT $1::int4 + $2::int4", 40, 2) == 42
        assert await conn.fetchval("SELECT $1::text || '!'", "hi") == "hi!"
        assert await conn.fetchval("SELECT count(*) FROM " + table) == 2

    run_asyncpg(server, body)


def test_executemany_and_prepared_statements(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int4, note text)")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)",
                               [(i, None if i % 4 == 0 else f"n{i}") for i in range(40)])
        statement = await conn.prepare(f"SELECT id, note FROM {table} WHERE id >= $1 ORDER BY id")
        assert [a.name for a in statement.get_attributes()] == ["id", "note"]
        assert [tuple(r) for r in await statement.fetch(37)] == [(37, "n37"), (38, "n38"),
                                                                   (39, "n39")]
        assert await statement.fetchval(39) == 39
        async with conn.transaction():
            # An iterable cursor: a named portal resumed by Execute with a row limit.
            seen = [r["id"] async for r in statement.cursor(0, prefetch=7)]
            assert seen == list(range(40))
            cursor = await statement.cursor(30)
            assert [r["id"] for r in await cursor.fetch(4)] == [30, 31, 32, 33]
            assert (await cursor.fetchrow())["id"] == 34

    run_asyncpg(server, body)


def test_transactions(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY)")
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (2)")
                raise RuntimeError("roll back")
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
        assert not conn.is_in_transaction()

    run_asyncpg(server, body)


def test_exception_classes(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY)")
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("SELECT * FROM no_such_table_here")
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await conn.fetch("SELECT FROM WHERE")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conn.fetchval("SELECT 1 / $1::int4", 0)
        tx = conn.transaction()
        await tx.start()
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conn.execute("SELECT 1 / 0")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await conn.fetchval("SELECT 1")
        await tx.rollback()
        assert await conn.fetchval("SELECT 5") == 5

    run_asyncpg(server, body)


def test_vectors_as_text(server, table):
    # Parameters typed text, results cast to text: asyncpg needs no codec for OID 16385 (what
    # it does for an unknown OID, introspection, is tested in test_catalog_drivers).
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int4, v vector(3))")
        await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2::text::vector)",
                               [(1, "[1,2,3]"), (2, "[4,5,6]")])
        nearest = await conn.fetchval(
            f"SELECT id FROM {table} ORDER BY v <-> $1::text::vector LIMIT 1", "[4,5,7]")
        assert nearest == 2
        assert await conn.fetchval(f"SELECT v::text FROM {table} WHERE id = 1") == "[1,2,3]"

    run_asyncpg(server, body)


def test_register_vector(server, table):
    from pgvector.asyncpg import register_vector

    async def body(conn):
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await register_vector(conn)
        await conn.execute(f"CREATE TABLE {table} (id int4, v vector(3))")
        vec = np.array([1, 2, 3], dtype=np.float32)
        await conn.execute(f"INSERT INTO {table} VALUES (1, $1)", vec)
        got = await conn.fetchval(f"SELECT v FROM {table} ORDER BY v <-> $1 LIMIT 1", vec)
        np.testing.assert_array_equal(got.to_numpy() if hasattr(got, "to_numpy") else got, vec)

    run_asyncpg(server, body)


@needs_copy_in
def test_copy_records_to_table(server, table):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int8, name text, score float8)")
        result = await conn.copy_records_to_table(
            table, records=[(i, f"r{i}", i * 1.5) for i in range(1000)],
            columns=["id", "name", "score"])
        assert result == "COPY 1000"
        assert await conn.fetchval(f"SELECT sum(score) FROM {table}") == 1.5 * 999 * 1000 / 2

    run_asyncpg(server, body)


def test_copy_from_query(server, table, tmp_path):
    async def body(conn):
        await conn.execute(f"CREATE TABLE {table} (id int4, name text)")
        await conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, NULL)")
        out = tmp_path / "out.csv"
        await conn.copy_from_query(f"SELECT * FROM {table} ORDER BY id", output=str(out),
                                   format="csv")
        assert out.read_text() == "1,a\n2,\n"

    run_asyncpg(server, body)
