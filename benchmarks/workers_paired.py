"""Workers' CPU per prepared binary top-10, two checkouts' servers side by side, in turns.

`workers --qps` starts each server afresh in every round, so a round's figure carries that
start (a cold graph, the other work of the machine at that moment) and the rounds spread
widely. Here both servers (`serve --workers N`, each on its own copy of DATA: one data
directory takes one server) start once and stay up; the clients (threads of this process,
connected to both and warmed up before the first turn) load one server for SECONDS, then the
other, in turns, the order alternating. Per turn and server: the CPU time its workers used per
query (user + system, /proc/PID/stat) and the QPS; then the medians, and the median of the
turns' paired ratios (after / before), the steadier figure on a busy machine.

    python -m benchmarks workers-paired --data-dir DIR --baseline CHECKOUT [--code CHECKOUT]
        [--turns 12] [--seconds 3] [--connections 4] [--workers 2] [--ef 40] [--dim 128]

DIR holds the table `workers --dataset clustered` builds (`items`, HNSW on `emb`); the query
vectors are that command's (the suite's clustered queries, sent in binary, uncast).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

from benchmarks.workers import BINARY_SQL, cpu_seconds, processes, queries_of, role_of, start

WARM_UP = 50  # queries each connection runs before the first turn


def connect(port: int, ef: int, queries: list):
    """A psycopg connection to the server on `port`, at hnsw.ef_search `ef`, warmed up."""
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                           autocommit=True)
    register_vector(conn)
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    for q in queries[:WARM_UP]:
        conn.execute(BINARY_SQL, (q,), prepare=True).fetchall()
    return conn


def load(root: int, connections: list, queries: list, seconds: float) -> tuple[float, float]:
    """Every connection running the prepared top-10 over `queries` (each from its own
    offset) for `seconds`: the workers' CPU µs per query, and the QPS."""
    workers = [pid for pid in processes(root) if role_of(pid, root) == "workers"]
    stop = time.monotonic() + seconds
    counts: list[int] = []

    def client(conn, offset: int) -> None:
        done = 0
        while time.monotonic() < stop:
            for q in queries[offset:offset + WARM_UP]:
                conn.execute(BINARY_SQL, (q,), prepare=True).fetchall()
            done += WARM_UP
            offset = (offset + WARM_UP) % (len(queries) - WARM_UP)
        counts.append(done)

    before = sum(cpu_seconds(pid) for pid in workers)
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(conn, 200 * i % len(queries)))
               for i, conn in enumerate(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in workers) - before
    count = sum(counts)
    return cpu * 1e6 / count, count / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks workers-paired", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--code", default=os.getcwd(), help="the checkout measured (default: here)")
    p.add_argument("--baseline", required=True, help="the checkout it is compared with")
    p.add_argument("--turns", type=int, default=12)
    p.add_argument("--seconds", type=float, default=3.0, help="of load per server and turn")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ef", type=int, default=40, help="hnsw.ef_search")
    p.add_argument("--dim", type=int, default=128, help="the table's dimensions")
    args = p.parse_args(argv)
    copies = tempfile.mkdtemp(prefix="sqlvec-workers-paired-")
    servers = {}
    try:
        queries = queries_of(1000, args.dim, "clustered", binary=True)
        for label, checkout in (("before", args.baseline), ("after", args.code)):
            shutil.copytree(args.data_dir, f"{copies}/{label}")
            server, port = start(checkout, f"{copies}/{label}", args.workers)
            servers[label] = server
            servers[label, "connections"] = [connect(port, args.ef, queries)
                                             for _ in range(args.connections)]
        figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for turn in range(args.turns):
            for label in ("before", "after") if turn % 2 == 0 else ("after", "before"):
                figures[label].append(load(servers[label].pid, servers[label, "connections"],
                                           queries, args.seconds))
            (b_cpu, b_qps), (a_cpu, a_qps) = figures["before"][-1], figures["after"][-1]
            print(f"turn {turn + 1}: before {b_cpu:.1f} us/query {b_qps:,.0f} QPS, after "
                  f"{a_cpu:.1f} us/query {a_qps:,.0f} QPS, after / before {a_cpu / b_cpu:.3f}",
                  flush=True)
        before = statistics.median(cpu for cpu, _ in figures["before"])
        after = statistics.median(cpu for cpu, _ in figures["after"])
        paired = statistics.median(a[0] / b[0] for a, b in zip(figures["after"],
                                                                 figures["before"]))
        print(f"workers' CPU us per query, median of {args.turns} turns: before {before:.1f}, "
              f"after {after:.1f} (after / before {after / before:.3f}); median of the turns' "
              f"ratios {paired:.3f}")
        print("QPS, median: before {:,.0f}, after {:,.0f}".format(
            statistics.median(q for _, q in figures["before"]),
            statistics.median(q for _, q in figures["after"])))
    finally:
        for label in ("before", "after"):
            for conn in servers.get((label, "connections"), []):
                conn.close()
            server = servers.get(label)
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(120)
        shutil.rmtree(copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
