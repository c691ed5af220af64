"""vector vs halfvec HNSW and binary quantization + re-rank, in sqlvec and in pgvector, one run.

    python -m benchmarks quantization [--rows 100000] [--dim 768] [--clusters 1000]
                                      [--queries 200] [--fixed-ef 40]
                                      [--efs 10,20,40,64,100,160,256,400] [--candidates 40,100]
                                      [--rounds 3] [--no-postgres] [--out FILE.json]
    python -m benchmarks quantization --scan-vs-graph [--rows N] [--dim D]
    python -m benchmarks quantization --sparse-scan [--rows N]

Both servers are reached the same way (psycopg over loopback TCP, prepared statements, binary
vectors): the sqlvec server (`python -m sqlvec serve`) and PostgreSQL + pgvector 0.8 from the
pgserver package. Per server the table `items (id int8, emb vector(d))` is loaded with COPY,
then three indexes are built and measured one after another (each dropped before the next):

- `vector`:  `USING hnsw (emb vector_cosine_ops)`, queried `ORDER BY emb <=> $1 LIMIT 10`;
- `halfvec`: `USING hnsw ((emb::halfvec(d)) halfvec_cosine_ops)`, queried
  `ORDER BY emb::halfvec(d) <=> $1::halfvec(d) LIMIT 10` (pgvector's half-precision index);
- `bq`:      `USING hnsw ((binary_quantize(emb)::bit(d)) bit_hamming_ops)`, queried with
  pgvector's re-rank pattern: the nearest `c` rows by Hamming distance of the quantized bits,
  re-ranked by the exact cosine distance (`--candidates`, c ≥ 10).

Per index: build time (CREATE INDEX), index size (pgvector: pg_relation_size; sqlvec: the
per-segment structures' resident bytes from `sqlvec_indexes`), the server's RSS after the build
(sqlvec; PostgreSQL's shared buffers make a backend's RSS meaningless), and recall@10 (against
exact NumPy cosine ground truth) with queries per second (one client, one query at a time,
median of `--rounds` passes) at a fixed `hnsw.ef_search` and at the smallest ef of the ladder
whose recall reaches 0.95. The bq rows set `hnsw.ef_search = max(40, c)` (pgvector returns at
most ef_search rows from an HNSW scan without iterative scans). Data: the benchmarks' clustered
generator (datasets.Clustered); queries are fresh draws from the same mixture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.datasets import Clustered, load_items
from sqlvec.vectors import Metric, top_k_batch

K = 10
TARGET = 0.95


def variants(dim: int) -> dict[str, tuple[str, str]]:
    """name -> (index definition, search statement)."""
    return {
        "vector": ("USING hnsw (emb vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
                   "SELECT id FROM items ORDER BY emb <=> %(q)s LIMIT 10"),
        "halfvec": (f"USING hnsw ((emb::halfvec({dim})) halfvec_cosine_ops) "
                    "WITH (m = 16, ef_construction = 64)",
                    f"SELECT id FROM items ORDER BY emb::halfvec({dim}) <=> "
                    f"%(q)s::halfvec({dim}) LIMIT 10"),
        "bq": (f"USING hnsw ((binary_quantize(emb)::bit({dim})) bit_hamming_ops) "
               "WITH (m = 16, ef_construction = 64)",
               "SELECT id FROM (SELECT id, emb FROM items ORDER BY "
               f"binary_quantize(emb)::bit({dim}) <~> binary_quantize(%(q)s) LIMIT {{c}}) s "
               "ORDER BY emb <=> %(q)s LIMIT 10"),
    }


def rss_bytes(pid: int | None) -> int | None:
    """The process's resident set size (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def index_bytes(conn, postgres: bool) -> int:
    if postgres:
        return int(conn.execute("SELECT pg_relation_size('items_idx')").fetchone()[0])
    row = conn.execute("SELECT sum(memory_bytes) FROM sqlvec_indexes "
                       "WHERE indexname = 'items_idx'").fetchone()
    return int(row[0] or 0)


def measure(conn, sql: str, queries: np.ndarray, truth: list[set], rounds: int) -> dict:
    """Mean recall@10 and the median over `rounds` of queries per second (sequential, prepared,
    after one warm-up)."""
    conn.execute(sql, {"q": queries[0]}, prepare=True).fetchall()
    rates, hits = [], 0
    for _ in range(rounds):
        hits = 0
        started = time.perf_counter()
        for q, t in zip(queries, truth):
            found = [row[0] for row in conn.execute(sql, {"q": q}, prepare=True).fetchall()]
            hits += len(t.intersection(found))
        rates.append(len(queries) / (time.perf_counter() - started))
    return {"recall": hits / (K * len(queries)), "qps": statistics.median(rates),
            "qps_rounds": rates}


def run_server(label: str, dsn: str, pid: int | None, rows: np.ndarray, queries: np.ndarray,
               truth: list[set], args) -> dict:
    import psycopg

    postgres = label != "sqlvec"
    dim = rows.shape[1]
    out: dict = {"server": label, "indexes": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["load_seconds"] = load_items(conn, rows)
        if postgres:
            conn.execute("VACUUM ANALYZE items")
            conn.execute("SET maintenance_work_mem = '1GB'")  # the graph built in memory
        out["rss_loaded"] = rss_bytes(pid)
        for name, (ddl, sql) in variants(dim).items():
            print(f"{label}: {name} index …", file=sys.stderr, flush=True)
            block: dict = {}
            started = time.perf_counter()
            conn.execute(f"CREATE INDEX items_idx ON items {ddl}")
            block["build_seconds"] = time.perf_counter() - started
            block["index_bytes"] = index_bytes(conn, postgres)
            block["rss"] = rss_bytes(pid)
            if name == "bq":
                for c in args.candidates:
                    conn.execute(f"SET hnsw.ef_search = {max(args.fixed_ef, c)}")
                    block[f"c={c}"] = measure(conn, sql.format(c=c), queries, truth,
                                              args.rounds)
            else:
                conn.execute(f"SET hnsw.ef_search = {args.fixed_ef}")
                block["fixed"] = {"ef": args.fixed_ef, **measure(conn, sql, queries, truth,
                                                                  args.rounds)}
                for ef in args.efs:
                    conn.execute(f"SET hnsw.ef_search = {ef}")
                    got = measure(conn, sql, queries, truth, 1)
                    if got["recall"] >= TARGET:
                        block["target"] = {"ef": ef, **(got if ef == args.fixed_ef
                                                        else measure(conn, sql, queries, truth,
                                                                     args.rounds))}
                        break
            conn.execute("RESET hnsw.ef_search")
            conn.execute("DROP INDEX items_idx")
            out["indexes"][name] = block
        conn.execute("DROP TABLE items")
    return out


def scan_vs_graph(rows: np.ndarray, queries: np.ndarray, k: int = 40, ef: int = 40) -> dict:
    """In-process, no server (the graph built on 2 threads, searched on one): one segment's binary-quantized keys searched for the k nearest
    by Hamming distance (a) with the packed-bits scan sqlvec builds (exact) and (b) with an
    hnswlib graph (m=16, ef_construction=64) over the same keys as ±1 floats under inner
    product, which ranks exactly as Hamming distance does (hamming = (d - ip) / 2). Build
    seconds, milliseconds per query (median of 3 passes) and recall@k (a hit is a returned
    row whose Hamming distance is within the exact k-th: ties make any of them correct)."""
    import hnswlib

    from sqlvec.storage.bit_index import BitParams, PackedBitsIndex
    from sqlvec.vectors import Metric as M

    n, d = rows.shape
    packed = np.packbits(rows > 0, axis=1)
    q_packed = np.packbits(queries > 0, axis=1)
    out: dict = {"rows": n, "bits": d, "k": k}
    started = time.perf_counter()
    index = PackedBitsIndex.build(packed, BitParams(M.HAMMING))
    out["scan_build_seconds"] = time.perf_counter() - started
    signs = np.where(rows > 0, 1.0, -1.0).astype(np.float32)
    q_signs = np.where(queries > 0, 1.0, -1.0).astype(np.float32)
    started = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=d)
    graph.init_index(max_elements=n, M=16, ef_construction=64, random_seed=1)
    graph.add_items(signs, np.arange(n), num_threads=2)
    out["graph_build_seconds"] = time.perf_counter() - started
    graph.set_ef(max(ef, k))
    hamming = [(q_signs[i] != signs).sum(axis=1) for i in range(len(queries))]
    kth = [np.sort(h)[k - 1] for h in hamming]

    def timed(search) -> tuple[float, float]:
        passes, hits = [], 0
        for _ in range(3):
            hits = 0
            started = time.perf_counter()
            for i in range(len(queries)):
                found = search(i)
                hits += int((hamming[i][found] <= kth[i]).sum())
            passes.append((time.perf_counter() - started) / len(queries) * 1000)
        return statistics.median(passes), hits / (k * len(queries))

    out["scan_ms"], out["scan_recall"] = timed(
        lambda i: index.search(q_packed[i], k, ef=0)[0])
    out["graph_ms"], out["graph_recall"] = timed(
        lambda i: graph.knn_query(q_signs[i:i + 1], k=k, num_threads=1)[0][0].astype(np.int64))
    out["scan_bytes"], out["graph_bytes"] = index.memory_bytes, n * (d * 4 + 16 * 2 * 4)
    return out


def sparse_scan(n: int, dims: int = 30_000, nnz: int = 60, queries: int = 20,
                k: int = 10) -> dict:
    """In-process: one segment of `n` sparse vectors (`nnz` non-zeros among `dims`, Zipf-like
    dimension popularity as text embeddings have), inner product top-k through the inverted
    lists sqlvec builds vs the merge scan that answered before (every row's elements merged
    with the query's). Milliseconds per query, median of 3 passes; both exact."""
    from sqlvec.storage.sparse_index import SparseInvertedIndex, SparseParams, sparse_top_k
    from sqlvec.vectors import Metric as M
    from sqlvec.vectors import SparseRows

    rng = np.random.default_rng(5)
    weights = 1.0 / np.arange(1, dims + 1) ** 0.8
    weights /= weights.sum()

    def draw(count: int) -> SparseRows:
        idx = [np.sort(rng.choice(dims, nnz, replace=False, p=weights)) + 1
               for _ in range(count)]
        return SparseRows(np.full(count, dims), np.arange(count + 1) * nnz,
                          np.concatenate(idx), rng.random(count * nnz).astype(np.float32))

    rows, qs = draw(n), draw(queries)
    started = time.perf_counter()
    index = SparseInvertedIndex.build(rows, SparseParams(M.IP))
    out: dict = {"rows": n, "dims": dims, "nnz": nnz, "k": k,
                 "build_seconds": time.perf_counter() - started}

    def timed(search, count: int, rounds: int) -> float:
        passes = []
        for _ in range(rounds):
            started = time.perf_counter()
            for i in range(count):
                search(qs.take(np.array([i])))
            passes.append((time.perf_counter() - started) / count * 1000)
        return statistics.median(passes)

    out["inverted_ms"] = timed(lambda q: index.search(q, k, ef=0), queries, 3)
    few = 3  # the merge scan takes seconds per query at 100,000 rows: 3 queries, one pass
    out["merge_ms"] = timed(lambda q: sparse_top_k(M.IP, rows, q, k, None), few, 1)
    same = all(index.search(qs.take(np.array([i])), k, ef=0)[0].tolist() ==
               sparse_top_k(M.IP, rows, qs.take(np.array([i])), k, None)[0].tolist()
               for i in range(few))
    out["same_results"] = same
    return out


def render_scan(m: dict) -> str:
    return "\n".join([
        f"{m['rows']:,} keys of {m['bits']} bits, top-{m['k']} by Hamming distance, "
        "one thread, in-process", "",
        "| structure | build s | ms per query | recall | memory MB |", "|---|---|---|---|---|",
        f"| packed bits, popcount scan (sqlvec) | {m['scan_build_seconds']:.2f} | "
        f"{m['scan_ms']:.2f} | {m['scan_recall']:.3f} | {m['scan_bytes'] / 2**20:.1f} |",
        f"| hnswlib graph on ±1 floats, ef=40 | {m['graph_build_seconds']:.1f} | "
        f"{m['graph_ms']:.2f} | {m['graph_recall']:.3f} | ≈{m['graph_bytes'] / 2**20:.0f} |"])


def render(results: list[dict], args) -> str:
    lines = [f"{args.rows:,} x {args.dim}, {args.clusters} clusters (cosine), {args.queries} "
             f"queries, HNSW m=16 ef_construction=64, QPS median of {args.rounds}", "",
             "| index | server | build s | index MB | server RSS MB | search | recall@10 | QPS |",
             "|---|---|---|---|---|---|---|---|"]
    names = list(variants(args.dim))
    for name in names:
        for r in results:
            block = r["indexes"].get(name)
            if block is None:
                continue
            rss = f"{block['rss'] / 2**20:.0f}" if block.get("rss") else "–"
            head = (f"| {name} | {r['server']} | {block['build_seconds']:.1f} | "
                    f"{block['index_bytes'] / 2**20:.1f} | {rss} |")
            for key, m in block.items():
                if key == "fixed":
                    what = f"ef_search={m['ef']}"
                elif key == "target":
                    what = f"recall ≥ {TARGET}: ef_search={m['ef']}"
                elif key.startswith("c="):
                    what = f"{key.split('=')[1]} candidates, re-ranked"
                else:
                    continue
                lines.append(f"{head} {what} | {m['recall']:.3f} | {m['qps']:.0f} |")
            if name != "bq" and "target" not in block:
                lines.append(f"{head} recall ≥ {TARGET}: not reached by ef_search="
                             f"{args.efs[-1]} | – | – |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks quantization",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--fixed-ef", type=int, default=40)
    parser.add_argument("--efs", default="10,20,40,64,100,160,256,400")
    parser.add_argument("--candidates", default="40,100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlvec", action="store_true")
    parser.add_argument("--scan-vs-graph", action="store_true",
                        help="only the in-process packed-bits scan vs graph measurement")
    parser.add_argument("--sparse-scan", action="store_true",
                        help="only the in-process inverted lists vs merge scan measurement")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.sparse_scan:
        m = sparse_scan(args.rows)
        print(f"{m['rows']:,} sparse vectors, {m['nnz']} non-zeros of {m['dims']:,} dimensions, "
              f"inner product top-{m['k']}, in-process: inverted lists {m['inverted_ms']:.2f} ms "
              f"per query (build {m['build_seconds']:.1f} s), merge scan {m['merge_ms']:.1f} ms; "
              f"same results: {m['same_results']}")
        return 0
    args.efs = [int(e) for e in args.efs.split(",")]
    args.candidates = [int(c) for c in args.candidates.split(",")]
    gen = Clustered(args.rows, args.dim, clusters=args.clusters)
    rows, queries = gen.all(), gen.queries(args.queries)
    if args.scan_vs_graph:
        measured = scan_vs_graph(rows, queries)
        print(render_scan(measured))
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "scan_vs_graph": measured}, f, indent=2)
        return 0
    truth = [set(t[t >= 0].tolist()) for t in top_k_batch(Metric.COSINE, rows, queries, K)]

    from benchmarks.writes import postgres, sqlvec

    servers = ([] if args.no_sqlvec else [sqlvec]) + ([] if args.no_postgres else [postgres])
    results = []
    for server in servers:
        with tempfile.TemporaryDirectory(prefix="sqlvec-quant-bench-") as directory, \
                server(directory) as (dsn, pid, label):
            print(f"{label}: loading …", file=sys.stderr, flush=True)
            results.append(run_server(label, dsn, pid, rows, queries, truth, args))
    text = render(results, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
