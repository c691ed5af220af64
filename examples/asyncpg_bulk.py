"""Async bulk load with asyncpg's copy_records_to_table, then concurrent queries from a pool.

    python examples/asyncpg_bulk.py             # DATABASE_URL overrides the server address
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from _connection import cannot_connect, database_url, fail, run

ROWS, DIM, QUERIES = 20_000, 64, 200


async def main() -> int:
    import asyncpg
    from pgvector.asyncpg import register_vector

    url = database_url()
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        cannot_connect(url, exc)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(conn)
    await conn.execute("DROP TABLE IF EXISTS bulk_items")
    await conn.execute(f"CREATE TABLE bulk_items (id bigint PRIMARY KEY, embedding vector({DIM}))")
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)

    started = time.perf_counter()
    status = await conn.copy_records_to_table(
        "bulk_items", records=[(i, vectors[i]) for i in range(ROWS)],
        columns=["id", "embedding"])
    print(f"{status} in {time.perf_counter() - started:.2f}s")
    # Seal the loaded rows into a Parquet segment now (the server does so by itself every
    # 65,536 rows), so that the index below is built over them.
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    await conn.execute("CREATE INDEX ON bulk_items USING hnsw (embedding vector_l2_ops)")
    print(f"CREATE INDEX (hnsw) in {time.perf_counter() - started:.2f}s")
    plan = await conn.fetch("EXPLAIN SELECT id FROM bulk_items ORDER BY embedding <-> $1 "
                            "LIMIT 5", vectors[0])
    print("plan:", next((r[0].strip() for r in plan if "segment 1" in r[0]), plan[-1][0]))
    await conn.close()

    pool = await asyncpg.create_pool(url, min_size=4, max_size=4, init=register_vector)
    try:
        async def nearest(i: int):
            async with pool.acquire() as c:
                return i, await c.fetch(
                    "SELECT id FROM bulk_items ORDER BY embedding <-> $1 LIMIT 5", vectors[i])

        started = time.perf_counter()
        picks = rng.choice(ROWS, QUERIES, replace=False)
        results = await asyncio.gather(*(nearest(int(i)) for i in picks))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    correct = sum(1 for i, rows in results if rows and rows[0]["id"] == i)
    print(f"{len(results)} concurrent queries on 4 connections in {elapsed:.2f}s, "
          f"{correct} found their own row first")
    if correct < len(results) * 0.9:
        fail(f"only {correct} of {len(results)} queries found their own row first")
    return 0


if __name__ == "__main__":
    run(lambda: asyncio.run(main()))
