"""A prepared top-k query run again and again while the table changes (psycopg, real server):
each execution answers for the table as it is then — a new row found at once, a deleted one
never returned, exactly k rows — and its distances are pgvector's, as computed exactly."""

from __future__ import annotations

import numpy as np
import psycopg

from sqlvec.vectors import Metric, distances
from tests.e2e.conftest import vector_text

DIM = 8
OPS = {"<->": Metric.L2, "<#>": Metric.IP, "<=>": Metric.COSINE}
OPCLASSES = ("vector_l2_ops", "vector_ip_ops", "vector_cosine_ops")


def vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(DIM)[None, :]
    return np.sin(x * 12.9898 + j * 78.233 + x * j * 0.618).astype(np.float32)


def nearest(live: dict[int, np.ndarray], q: np.ndarray, k: int, metric: Metric):
    ids = np.array(sorted(live))
    d = distances(metric, np.stack([live[i] for i in ids]), q)
    order = np.lexsort((ids, d))[:k]
    return ids[order].tolist(), d[order].tolist()


def test_prepared_top_k_follows_inserts_and_deletes(server, table):
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, emb vector({DIM}))")
        live = {}
        with conn.cursor() as cur:
            for i, v in enumerate(vectors(range(300))):
                live[i] = v
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)",
                            [(i, vector_text(v)) for i, v in live.items()])
        for opclass in OPCLASSES:
            conn.execute(f"CREATE INDEX ON {table} USING hnsw (emb {opclass})")
        conn.execute("SET hnsw.ef_search = 1000")  # at least the rows: the graphs' answers are exact
        sql = {op: f"SELECT id, emb {op} %s AS d FROM {table} ORDER BY emb {op} %s LIMIT 5"
               for op in OPS}
        q = vectors([1_000])[0]
        text = vector_text(q)

        def check() -> None:
            for op, metric in OPS.items():
                for _ in range(2):  # the second run reuses what the first planned
                    got = conn.execute(sql[op], (text, text), prepare=True).fetchall()
                    ids, dists = nearest(live, q, 5, metric)
                    assert [r[0] for r in got] == ids, op
                    assert [r[1] for r in got] == dists, op

        check()
        conn.execute(f"INSERT INTO {table} VALUES (1000, %s)", (text,))
        live[1000] = q
        check()
        victims = nearest(live, q, 3, Metric.L2)[0]
        conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (victims,))
        for i in victims:
            del live[i]
        check()
        conn.execute(f"DROP TABLE {table}")


def test_prepared_top_k_in_a_transaction_sees_its_own_writes(server, table):
    with psycopg.connect(server.conninfo()) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, emb vector({DIM}))")
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (emb vector_l2_ops)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)",
                            [(i, vector_text(v)) for i, v in enumerate(vectors(range(100)))])
        conn.commit()
        q = vector_text(vectors([500])[0])
        sql = f"SELECT id FROM {table} ORDER BY emb <-> %s LIMIT 3"
        before = [r[0] for r in conn.execute(sql, (q,), prepare=True).fetchall()]
        conn.execute(f"DELETE FROM {table} WHERE id = %s", (before[0],))
        conn.execute(f"INSERT INTO {table} VALUES (500, %s)", (q,))
        inside = [r[0] for r in conn.execute(sql, (q,), prepare=True).fetchall()]
        assert inside == [500, *before[1:]]
        conn.rollback()
        assert [r[0] for r in conn.execute(sql, (q,), prepare=True).fetchall()] == before
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
