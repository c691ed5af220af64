"""One connection's prepared top-10, servers side by side: the suite's query, before and after.

The statement and client are the suite's (`SELECT id FROM t ORDER BY emb <-> %s LIMIT 10`,
psycopg `prepare=True`, the query a NumPy array sent in pgvector's binary format through
`register_vector`), over the same clustered vectors in every server: `python -m sqlvec serve`
of each `--checkout` (its own copy of one data directory, one sealed segment with its HNSW
graph, m=16, ef_construction=64) and, with `--pgserver DIR`, PostgreSQL + pgvector (pgserver,
loopback TCP, the same index parameters). The servers take turns by blocks of queries, so a
noisy machine weighs on all of them alike; each reports the median µs per query, QPS (queries
over the time they took) and recall@10 against exact NumPy neighbours, at each ef_search.

    python -m benchmarks vector_qps --checkout ../main --checkout . --pgserver DIR

With `--copies N` every server loads the table itself instead, as the suite does (N COPY
statements then CREATE INDEX, timed, one server after the other), so each checkout's own
segment layout is what it searches.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.datasets import Clustered
from benchmarks.ground_truth import exact_top10, recall_at_10

SQL = "SELECT id FROM t ORDER BY emb <-> %s LIMIT 10"


def load_postgres(dsn: str, vectors: np.ndarray, copies: int = 1) -> float:
    """The vectors as t(id bigint, emb vector(d)) with pgvector's HNSW index (m 16, ef_c 64),
    loaded by `copies` COPY statements of equal size; returns the CREATE INDEX seconds."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t (id bigint PRIMARY KEY, emb vector({vectors.shape[1]}))")
        step = -(-len(vectors) // max(1, copies))
        for start in range(0, len(vectors), step):
            with conn.cursor().copy("COPY t (id, emb) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                for i in range(start, min(start + step, len(vectors))):
                    copy.write_row((i, vectors[i]))
        conn.execute("SET maintenance_work_mem = '1GB'")
        t0 = time.perf_counter()
        conn.execute("CREATE INDEX ON t USING hnsw (emb vector_l2_ops) "
                     "WITH (m = 16, ef_construction = 64)")
        seconds = time.perf_counter() - t0
        conn.execute("ANALYZE t")
        return seconds


def sqlvec_segments(dsn: str) -> int:
    """How many sealed segments hold t's HNSW index (one graph search each per top-k)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return len(conn.execute("SELECT segment FROM sqlvec_indexes WHERE tablename = 't'")
                   .fetchall())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks vector_qps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkout", action="append", default=[],
                   help="a source tree whose server to run (repeatable; default: this one)")
    p.add_argument("--pgserver", metavar="DIR", help="also PostgreSQL + pgvector (pgserver)")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ef", default="40", help="sqlvec's ef_search values, comma-separated")
    p.add_argument("--pg-ef", default="40,80", help="PostgreSQL's, comma-separated")
    p.add_argument("--workers", default=None, help="serve --workers N for the sqlvec servers")
    p.add_argument("--copies", type=int, default=0,
                   help="load each server itself through this many COPY statements and a "
                        "CREATE INDEX (timed), as the suite does, instead of one prepared "
                        "data directory")
    args = p.parse_args(argv)

    import psycopg
    from pgvector.psycopg import register_vector

    from benchmarks import suite
    from benchmarks.wire_overhead import build_directory

    if args.workers is not None:
        suite.SERVER_ARGS[:] = ["--workers", str(args.workers)]
    data = Clustered(args.rows, args.dim)
    vectors = data.all()
    queries = data.queries(args.queries, seed=7)
    truth = exact_top10(vectors, queries)
    checkouts = [os.path.abspath(c) for c in (args.checkout or ["."])]
    tmp = tempfile.mkdtemp(prefix="sqlvec-vector-qps-")
    try:
        if not args.copies:
            build_directory(f"{tmp}/data", vectors)
        loads: list[tuple[str, float, int | None]] = []  # (label, CREATE INDEX s, segments)
        with contextlib.ExitStack() as stack:
            targets: list[tuple[str, str, list[int]]] = []  # (label, dsn, efs)
            for i, code in enumerate(checkouts):
                copy = f"{tmp}/data-{i}"
                if args.copies:
                    os.makedirs(copy)
                else:
                    shutil.copytree(f"{tmp}/data", copy)
                dsn, _pid = stack.enter_context(suite.sqlvec_server(copy, code))
                label = f"sqlvec {os.path.basename(code) or code}"
                if args.copies:
                    loads.append((label, load_postgres(dsn, vectors, args.copies),
                                  sqlvec_segments(dsn)))
                targets.append((label, dsn, [int(x) for x in args.ef.split(",")]))
            if args.pgserver:
                from benchmarks.writes import postgres

                dsn, _pid, label = stack.enter_context(postgres(args.pgserver))
                loads.append((label, load_postgres(dsn, vectors, max(1, args.copies)), None))
                targets.append((label, dsn, [int(x) for x in args.pg_ef.split(",")]))
            runs = []  # (label, ef, connection)
            for label, dsn, efs in targets:
                for ef in efs:
                    conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
                    register_vector(conn)
                    conn.execute(f"SET hnsw.ef_search = {ef}")
                    runs.append((label, ef, conn))
            times: dict[tuple[str, int], list[float]] = {(r[0], r[1]): [] for r in runs}
            found: dict[tuple[str, int], dict[int, list[int]]] = {(r[0], r[1]): {} for r in runs}
            for _label, _ef, conn in runs:  # warm up: plans, caches, pages
                for q in queries[:50]:
                    conn.execute(SQL, (q,), prepare=True).fetchall()
            for _round in range(args.rounds):
                for start in range(0, len(queries), args.block):
                    for label, ef, conn in runs:
                        cur = conn.cursor()
                        for i in range(start, min(start + args.block, len(queries))):
                            t0 = time.perf_counter()
                            cur.execute(SQL, (queries[i],), prepare=True)
                            rows = cur.fetchall()
                            times[(label, ef)].append(time.perf_counter() - t0)
                            found[(label, ef)][i] = [r[0] for r in rows]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.rows:,} x {args.dim}, {args.queries} queries x {args.rounds} rounds, "
          f"blocks of {args.block}, one connection each\n")
    if args.copies:
        print(f"Loaded by {args.copies} COPY statements, then CREATE INDEX:\n")
        print("| server | CREATE INDEX s | segments searched |")
        print("|---|---|---|")
        for label, seconds, segments in loads:
            print(f"| {label} | {seconds:.1f} | {'-' if segments is None else segments} |")
        print()
    print("| server | ef_search | recall@10 | median µs | QPS |")
    print("|---|---|---|---|---|")
    for (label, ef), ts in times.items():
        recall = recall_at_10(found[(label, ef)].items(), truth)
        print(f"| {label} | {ef} | {recall:.3f} | {statistics.median(ts) * 1e6:,.0f} | "
              f"{len(ts) / sum(ts):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
