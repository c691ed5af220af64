"""IVFFlat beside HNSW, in sqlvec and in PostgreSQL + pgvector, on the same data in one run.

    python -m benchmarks ivfflat [--rows 50000] [--dim 128] [--clusters 1000] [--lists 100]
                                 [--queries 200]
                                 [--probes 1,4,10,20] [--ef 40,100] [--no-postgres]
                                 [--out FILE.json]

Both servers are reached the same way (psycopg over loopback TCP, prepared statements, binary
vectors): the sqlvec server (`python -m wire serve`) and PostgreSQL 16 + pgvector 0.8 from the
pgserver package. Per server: the table is loaded with COPY, then `CREATE INDEX … USING ivfflat
(emb vector_l2_ops) WITH (lists)` is timed, recall@10 (against exact NumPy ground truth) and
queries per second (one client, one query at a time) are measured at each `ivfflat.probes`; the
index is dropped and an HNSW index (m=16, ef_construction=64) is timed and measured at each
`hnsw.ef_search` the same way. Data: the benchmarks' clustered generator (datasets.Clustered,
`--clusters` Gaussian clusters: fewer clusters than lists makes lists cut through clusters, the
harder case for IVFFlat), L2; queries are fresh draws from the same mixture.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time

import numpy as np

from benchmarks.datasets import Clustered, load_items
from sqlvec.vectors import Metric, top_k_batch

K = 10
SEARCH = "SELECT id FROM items ORDER BY emb <-> %s LIMIT 10"


def run_server(label: str, dsn: str, rows: np.ndarray, queries: np.ndarray, truth: np.ndarray,
               lists: int, probes: list[int], efs: list[int]) -> dict:
    import psycopg

    out: dict = {"server": label, "ivfflat": {}, "hnsw": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["load_seconds"] = load_items(conn, rows)
        with contextlib.suppress(psycopg.Error):
            conn.execute("VACUUM ANALYZE items")  # PostgreSQL's statistics; sqlvec refuses
        for method, ddl, setting, knobs in (
                ("ivfflat", f"USING ivfflat (emb vector_l2_ops) WITH (lists = {lists})",
                 "ivfflat.probes", probes),
                ("hnsw", "USING hnsw (emb vector_l2_ops) WITH (m = 16, ef_construction = 64)",
                 "hnsw.ef_search", efs)):
            started = time.perf_counter()
            conn.execute(f"CREATE INDEX items_idx ON items {ddl}")
            out[method]["build_seconds"] = time.perf_counter() - started
            for knob in knobs:
                conn.execute(f"SET {setting} = {knob}")
                out[method][str(knob)] = measure(conn, queries, truth)
            conn.execute(f"RESET {setting}")
            conn.execute("DROP INDEX items_idx")
        conn.execute("DROP TABLE items")
    return out


def measure(conn, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Mean recall@10 and queries per second (sequential, prepared, after one warm-up)."""
    conn.execute(SEARCH, (queries[0],), prepare=True).fetchall()
    hits = 0
    started = time.perf_counter()
    for q, t in zip(queries, truth):
        found = [r[0] for r in conn.execute(SEARCH, (q,), prepare=True).fetchall()]
        hits += len(set(found) & set(t.tolist()))
    seconds = time.perf_counter() - started
    return {"recall": hits / (K * len(queries)), "qps": len(queries) / seconds}


def render(results: list[dict], args) -> str:
    lines = [f"{args.rows:,} x {args.dim}, {args.clusters} clusters (L2), {args.queries} queries, "
             f"lists={args.lists}, HNSW m=16 ef_construction=64", "",
             "| server | index | build s | knob | recall@10 | QPS |", "|---|---|---|---|---|---|"]
    for r in results:
        for method, knob_name in (("ivfflat", "probes"), ("hnsw", "ef_search")):
            block = r[method]
            for knob, m in block.items():
                if knob == "build_seconds":
                    continue
                lines.append(f"| {r['server']} | {method} | {block['build_seconds']:.1f} | "
                             f"{knob_name}={knob} | {m['recall']:.3f} | {m['qps']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ivfflat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--probes", default="1,4,10,20")
    parser.add_argument("--ef", default="40,100")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    probes = [int(p) for p in args.probes.split(",")]
    efs = [int(e) for e in args.ef.split(",")]
    gen = Clustered(args.rows, args.dim, clusters=args.clusters)
    rows, queries = gen.all(), gen.queries(args.queries)
    truth = top_k_batch(Metric.L2, rows, queries, K)

    from benchmarks.writes import postgres, sqlvec

    servers = [sqlvec] + ([] if args.no_postgres else [postgres])
    results = []
    for server in servers:
        with tempfile.TemporaryDirectory(prefix="sqlvec-ivf-bench-") as directory, \
                server(directory) as (dsn, _pid, label):
            print(f"{label}: loading and indexing …", file=sys.stderr)
            results.append(run_server(label, dsn, rows, queries, truth, args.lists, probes, efs))
    text = render(results, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
