"""Async bulk load with asyncpg's copy_records_to_table, then concurrent queries."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from _connection import database_url, fail

ROWS, DIM = 20_000, 64


async def main() -> int:
    import asyncpg
    from pgvector.asyncpg import register_vector

    try:
        conn = await asyncpg.connect(database_url())
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"cannot connect to {database_url()}: {exc}")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(conn)
    await conn.execute("DROP TABLE IF EXISTS bulk_items")
    await conn.execute(f"CREATE TABLE bulk_items (id bigint PRIMARY KEY, embedding vector({DIM}))")
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    loaded = await conn.copy_records_to_table(
        "bulk_items", records=[(i, vectors[i]) for i in range(ROWS)],
        columns=["id", "embedding"])
    print(loaded)
    await conn.execute("CREATE INDEX ON bulk_items USING hnsw (embedding vector_l2_ops)")
    await conn.close()

    pool = await asyncpg.create_pool(database_url(), min_size=4, max_size=4,
                                     init=register_vector)

    async def nearest(q):
        async with pool.acquire() as c:
            return await c.fetch("SELECT id FROM bulk_items ORDER BY embedding <-> $1 LIMIT 5", q)

    results = await asyncio.gather(*(nearest(vectors[i]) for i in range(0, 400, 4)))
    await pool.close()
    correct = sum(1 for i, rows in zip(range(0, 400, 4), results) if rows and rows[0]["id"] == i)
    print(f"{len(results)} concurrent queries, {correct} found their own row first")
    if correct < len(results) * 0.9:
        fail("too few queries found their own row")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
