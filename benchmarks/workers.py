"""Server start and memory with `--workers N`: how long `sqlvec serve` takes to listen, and the
memory of all its processes, on a table with an HNSW index.

    python -m benchmarks workers --data-dir DIR [--rows 100000] [--dim 128] [--workers 0 2]
        [--rounds 3] [--code CHECKOUT]

Builds the table (`items`, `id int, emb vector(DIM)`, HNSW on `emb`) in DIR if DIR does not hold
one yet, then per round and per worker count starts `python -m wire serve` (from CHECKOUT when
given, to compare versions), times it until it logs that it listens, sums Pss and Rss of the
server and every descendant (/proc/<pid>/smaps_rollup; forked processes share pages, which Pss
counts once in all and Rss once per process), runs one top-10 search on each of 4 connections,
measures again and stops the server (timed too).

    python -m benchmarks workers --data-dir DIR --qps [--workers 0 2] [--connections 1 4]
        [--queries 300] [--rounds 3] [--pgserver PGDIR]

Total QPS instead: per round and per worker count, a server on DIR, then each of
`--connections` clients (one thread each) running the same prepared top-10 search
(`ORDER BY emb <-> $1 LIMIT 10`, hnsw.ef_search 40) for `--queries` query vectors, after a
warm-up; the servers are started one after the other on the same directory, so the figures are
interleaved. `--pgserver PGDIR` adds PostgreSQL + pgvector (pgserver) holding the same rows and
index (m 16, ef_construction 64), measured in each round too.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time


def build(path: str, rows: int, dim: int) -> None:
    """The table and its index (only when the directory has no table yet)."""
    import numpy as np

    from sqlvec.database import Database

    with Database.open(path) as db:
        if db.store().find_table("items") is not None:
            return
        table = db.create_table("items", {"id": "int", "emb": f"vector({dim})"})
        rng = np.random.default_rng(0)
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            table.insert({"id": np.arange(start, start + n),
                          "emb": rng.standard_normal((n, dim)).astype(np.float32)})
        table.create_index("emb", opclass="vector_l2_ops")
        db.wait_idle(3600)


def processes(root: int) -> list[int]:
    """`root` and its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out = [root]
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if ancestor:
            out.append(pid)
    return out


def memory(root: int) -> tuple[int, float, float]:
    """(processes, Pss MB, Rss MB) of `root` and its descendants."""
    pss = rss = 0
    pids = processes(root)
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
        pss += int(re.search(r"^Pss:\s+(\d+)", text, re.MULTILINE).group(1))
        rss += int(re.search(r"^Rss:\s+(\d+)", text, re.MULTILINE).group(1))
    return len(pids), pss / 1024, rss / 1024


def measure(code: str, path: str, workers: int, dim: int) -> dict:
    import psycopg

    env = {**os.environ, "PYTHONPATH": code}
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "wire", "serve", "--data-dir", path, "--port", "0",
         "--workers", str(workers)], cwd=code, env=env, stderr=subprocess.PIPE, text=True)
    port = None
    assert server.stderr is not None
    for line in server.stderr:
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        raise SystemExit(f"the server did not start (status {server.wait()})")
    start_s = time.monotonic() - started
    count, pss, rss = memory(server.pid)
    query = "[" + ",".join(["0.1"] * dim) + "]"
    conns = [psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                             autocommit=True) for _ in range(4)]
    for conn in conns:
        conn.execute("SELECT id FROM items ORDER BY emb <-> %s LIMIT 10", (query,)).fetchall()
    _, pss_after, rss_after = memory(server.pid)
    for conn in conns:
        conn.close()
    stopping = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(120)
    return {"workers": workers, "start_s": start_s, "stop_s": time.monotonic() - stopping,
            "processes": count, "pss_mb": pss, "rss_mb": rss, "pss_after_mb": pss_after,
            "rss_after_mb": rss_after}


def start(code: str, path: str, workers: int) -> tuple[subprocess.Popen, int]:
    """`python -m wire serve --workers N` on DIR: the process and its port."""
    env = {**os.environ, "PYTHONPATH": code}
    server = subprocess.Popen(
        [sys.executable, "-m", "wire", "serve", "--data-dir", path, "--port", "0",
         "--workers", str(workers)], cwd=code, env=env, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            return server, int(m.group(1))
    raise SystemExit(f"the server did not start (status {server.wait()})")


def queries_of(count: int, dim: int) -> list[str]:
    """The query vectors (text), the same in every run."""
    import numpy as np

    rng = np.random.default_rng(1)
    return ["[" + ",".join(f"{x:.4f}" for x in v) + "]"
            for v in rng.standard_normal((count, dim)).astype(np.float32)]


def total_qps(dsn: str, connections: int, queries: list[str]) -> float:
    """Queries per second of `connections` clients each running every query once, prepared,
    at hnsw.ef_search 40 (after each ran 20 to warm up)."""
    import psycopg

    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(connections)]
    sql = "SELECT id FROM items ORDER BY emb <-> %s::vector LIMIT 10"
    for conn in conns:
        conn.execute("SET hnsw.ef_search = 40")
        for q in queries[:20]:
            conn.execute(sql, (q,), prepare=True).fetchall()
    barrier = threading.Barrier(connections + 1)

    def client(conn) -> None:
        barrier.wait()
        for q in queries:
            conn.execute(sql, (q,), prepare=True).fetchall()

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return connections * len(queries) / elapsed


def load_postgres(dsn: str, rows: int, dim: int) -> None:
    """The same table and index in PostgreSQL + pgvector (m 16, ef_construction 64)."""
    import numpy as np
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(f"CREATE TABLE items (id int, emb vector({dim}))")
        rng = np.random.default_rng(0)
        with conn.cursor().copy("COPY items (id, emb) FROM STDIN") as copy:
            for start in range(0, rows, 10_000):
                n = min(10_000, rows - start)
                block = rng.standard_normal((n, dim)).astype(np.float32)
                for i, v in enumerate(block):
                    copy.write_row((start + i, "[" + ",".join(map(repr, map(float, v))) + "]"))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("CREATE INDEX ON items USING hnsw (emb vector_l2_ops) "
                     "WITH (m = 16, ef_construction = 64)")
        conn.execute("ANALYZE items")


def qps_main(args: argparse.Namespace) -> int:
    import statistics

    code = os.path.abspath(args.code)
    queries = queries_of(args.queries, args.dim)
    results: dict[str, dict[int, list[float]]] = {}
    pg = None
    if args.pgserver:
        from benchmarks.writes import postgres

        pg = postgres(args.pgserver)
        pg_dsn, _pid, label = pg.__enter__()
        load_postgres(pg_dsn, args.rows, args.dim)
    try:
        for round_ in range(args.rounds):
            for workers in args.workers:
                server, port = start(code, args.data_dir, workers)
                dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
                try:
                    for c in args.connections:
                        q = total_qps(dsn, c, queries)
                        results.setdefault(f"sqlvec --workers {workers}", {}) \
                            .setdefault(c, []).append(q)
                        print(f"round {round_ + 1}: --workers {workers}, {c} connections: "
                              f"{q:,.0f} QPS", flush=True)
                finally:
                    server.send_signal(signal.SIGTERM)
                    server.wait(120)
            if pg is not None:
                for c in args.connections:
                    q = total_qps(pg_dsn, c, queries)
                    results.setdefault(label, {}).setdefault(c, []).append(q)
                    print(f"round {round_ + 1}: {label}, {c} connections: {q:,.0f} QPS",
                          flush=True)
    finally:
        if pg is not None:
            pg.__exit__(None, None, None)
    first, last = args.connections[0], args.connections[-1]
    print("\n| server | " + " | ".join(f"{c} connection{'s' * (c > 1)}: total QPS (median)"
                                        for c in args.connections)
          + f" | {last} / {first} |")
    print("|---|" + "---|" * (len(args.connections) + 1))
    for name, by in results.items():
        medians = [statistics.median(by[c]) for c in args.connections]
        print(f"| {name} | " + " | ".join(f"{m:,.0f} ({', '.join(f'{x:,.0f}' for x in by[c])})"
                                          for m, c in zip(medians, args.connections))
              + f" | {medians[-1] / medians[0]:.2f} × |")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks workers")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", default=os.getcwd(),
                        help="the checkout whose server is started (default: this one)")
    parser.add_argument("--qps", action="store_true",
                        help="measure total QPS of concurrent top-10 searches instead")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--queries", type=int, default=300, help="per connection (--qps)")
    parser.add_argument("--pgserver", metavar="DIR",
                        help="also PostgreSQL + pgvector from the pgserver package in DIR (--qps)")
    args = parser.parse_args(argv)
    build(args.data_dir, args.rows, args.dim)
    if args.qps:
        return qps_main(args)
    print("| workers | start (s) | stop (s) | processes | Pss MB | Rss MB "
          "| Pss MB after 4 searches |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for workers in args.workers:
            r = measure(os.path.abspath(args.code), args.data_dir, workers, args.dim)
            print(f"| {r['workers']} | {r['start_s']:.2f} | {r['stop_s']:.2f} | "
                  f"{r['processes']} | {r['pss_mb']:.0f} | {r['rss_mb']:.0f} | "
                  f"{r['pss_after_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
