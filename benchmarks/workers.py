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
        [--queries 300] [--rounds 3] [--pgserver PGDIR] [--clients threads processes]
        [--dataset normal|clustered] [--baseline CHECKOUT] [--in-process]
        [--ef 40[,...]] [--pg-ef 40[,...]]

Total QPS instead: per round and per worker count, a server on DIR, then each of
`--connections` clients running the same prepared top-10 search (`ORDER BY emb <-> $1 LIMIT
10`) for `--queries` query vectors, after a warm-up, at each hnsw.ef_search of `--ef` (sqlvec)
and `--pg-ef` (PostgreSQL), 40 by default, `default` meaning not set (sqlvec's calibrated
recall target, pgvector's 40); the servers are started one after the other on the same
directory, so the figures are interleaved. Beside each figure, the recall@10 of the answers
the clients got, against exact neighbours (NumPy brute force on the table's vectors): servers
compared at one ef_search need not be compared at one recall. `--pgserver PGDIR`
adds PostgreSQL + pgvector (pgserver) holding the same rows and index (m 16, ef_construction
64), measured in each round too; `--baseline CHECKOUT` adds that checkout's server, taking
turns with this one. The clients are threads of this process (as the suite's), or one process
each (`--clients processes`: no GIL shared between them). Beside each figure: the CPU time
per query of each kind of process (user + system, /proc/PID/stat, over the measured queries):
the client, the server's primary, its workers and fork server, PostgreSQL's backends. On a
busy machine the CPU per query is the steadier figure: with every core busy, total QPS is the
cores divided by it. `--dataset clustered`: the suite's clustered mixture instead of
independent Gaussian coordinates (a DIR of its own). `--binary`: the query vector sent in binary by pgvector's adapter, uncast (`ORDER BY emb <->
$1`, the suite's statement) instead of text with `::vector`. `--in-process`: in each round, the same
searches also served one at a time by the server's connection code in this process's thread
(no worker, no client threads), the reference for what concurrency adds to a query's CPU;
with `--baseline`, each checkout's code in a process of its own, one after the other.
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


def blocks(rows: int, dim: int, dataset: str):
    """The table's vectors, 10,000 rows at a time: `normal` (independent Gaussian
    coordinates, the hardest case for a graph) or `clustered` (the suite's mixture, which
    behaves like real embeddings)."""
    import numpy as np

    if dataset == "clustered":
        from benchmarks.datasets import Clustered

        yield from Clustered(rows, dim, clusters=1000, seed=42).chunks(10_000)
        return
    rng = np.random.default_rng(0)
    for start in range(0, rows, 10_000):
        yield rng.standard_normal((min(10_000, rows - start), dim)).astype(np.float32)


def build(path: str, rows: int, dim: int, dataset: str = "normal") -> None:
    """The table and its index (only when the directory has no table yet)."""
    import numpy as np

    from sqlvec.database import Database

    with Database.open(path) as db:
        if db.store().find_table("items") is not None:
            return
        table = db.create_table("items", {"id": "int", "emb": f"vector({dim})"})
        start = 0
        for block in blocks(rows, dim, dataset):
            table.insert({"id": np.arange(start, start + len(block)), "emb": block})
            start += len(block)
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


def queries_of(count: int, dim: int, dataset: str = "normal", binary: bool = False) -> list:
    """The query vectors, the same in every run (for `clustered`: drawn from the mixture, not
    rows of the table, as the suite's): text, or float32 arrays when `binary`."""
    import numpy as np

    if dataset == "clustered":
        from benchmarks.datasets import Clustered

        vectors = Clustered(count, dim, clusters=1000, seed=42).queries(count, seed=44)
    else:
        vectors = np.random.default_rng(1).standard_normal((count, dim)).astype(np.float32)
    if binary:
        return list(vectors)
    return ["[" + ",".join(f"{x:.4f}" for x in v) + "]" for v in vectors]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def role_of(pid: int, root: int) -> str:
    """What a server process is, by its name: the primary (`root`), a worker, the fork
    server, a PostgreSQL backend..."""
    if pid == root:
        return "primary"
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
    except OSError:
        return "other"
    if name.startswith("sqlvec-worker"):
        return "workers"
    if name.startswith("sqlvec-forks"):
        return "fork server"
    if name.startswith("postgres") or name.startswith("postmaster"):
        return "backends"
    return name


TEXT_SQL = "SELECT id FROM items ORDER BY emb <-> %s::vector LIMIT 10"
BINARY_SQL = "SELECT id FROM items ORDER BY emb <-> %s LIMIT 10"


def _client(dsn: str, queries: list, barrier, done, ef: int | None = 40) -> None:
    """One client: its connection warmed up, then every query once, prepared, at hnsw.ef_search
    `ef` (None: not set), its answers' ids put on `done`; its connection stays open until
    every client is done and measured (a server process that ends with it would take its CPU
    time along). Text queries are sent as text with `::vector`; NumPy arrays in binary through
    pgvector's adapter, uncast (the suite's statement)."""
    import psycopg

    binary = not isinstance(queries[0], str)
    sql = BINARY_SQL if binary else TEXT_SQL
    with psycopg.connect(dsn, autocommit=True) as conn:
        if binary:
            from pgvector.psycopg import register_vector

            register_vector(conn)
        if ef is not None:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        for q in queries[:20]:
            conn.execute(sql, (q,), prepare=True).fetchall()
        barrier.wait()
        answers = [[row[0] for row in conn.execute(sql, (q,), prepare=True).fetchall()]
                   for q in queries]
        done.put(answers)
        barrier.wait()


def total_qps(dsn: str, connections: int, queries: list, root: int | None = None,
              clients: str = "threads", ef: int | None = 40
              ) -> tuple[float, dict[str, float], list[list[list[int]]]]:
    """Queries per second of `connections` clients each running every query once, prepared,
    at hnsw.ef_search `ef` (None: not set; after each ran 20 to warm up), the CPU
    milliseconds per query of each kind of process (the server's, below `root`, and the
    client's), and each client's answers (the ids per query). `clients`: threads of this
    process (psycopg releases the GIL only while it waits) or one process each."""
    import multiprocessing
    import queue as queues

    if clients == "processes":
        context = multiprocessing.get_context("spawn")
        barrier, done = context.Barrier(connections + 1), context.Queue()
        workers = [context.Process(target=_client, args=(dsn, queries, barrier, done, ef))
                   for _ in range(connections)]
    else:
        barrier, done = threading.Barrier(connections + 1), queues.Queue()
        workers = [threading.Thread(target=_client, args=(dsn, queries, barrier, done, ef))
                   for _ in range(connections)]
    for w in workers:
        w.start()
    barrier.wait()
    server = processes(root) if root else []
    client = [w.pid for w in workers] if clients == "processes" else [os.getpid()]
    before = {pid: cpu_seconds(pid) for pid in [*server, *client]}
    started = time.perf_counter()
    answers = [done.get() for _ in workers]
    elapsed = time.perf_counter() - started
    after = {pid: cpu_seconds(pid) for pid in before}
    roles = {pid: "client" if pid in client else role_of(pid, root or 0) for pid in before}
    barrier.wait()
    for w in workers:
        w.join()
    count = connections * len(queries)
    cpu: dict[str, float] = {}
    for pid in before:
        if not after[pid]:  # ended meanwhile (a PostgreSQL helper): its CPU went with it
            continue
        role = roles[pid]
        cpu[role] = cpu.get(role, 0.0) + (after[pid] - before[pid]) * 1000 / count
    return count / elapsed, cpu, answers


def in_process(path: str, queries: list[str]) -> tuple[float, dict[str, float]]:
    """The same prepared top-10 searches served one at a time in this thread: the server's
    `Connection` over a socketpair (`benchmarks profile`'s harness) on DIR, the parameters in
    text as psycopg sends them, each query once after 20 to warm up, no fan-out of a query's
    segments (as a worker serving as many connections as cores). What a query costs the
    server's code alone, to set beside its workers' CPU per query under concurrent clients:
    QPS and the thread's CPU milliseconds per query."""
    from benchmarks.wire_profile import Harness
    from sqlvec.database import Database, allow_fan_out
    from wire.messages import Bind, Describe, Execute, Parse, Query, Sync

    sql = "SELECT id FROM items ORDER BY emb <-> $1::vector LIMIT 10"
    trips = [Bind("", "q", (0,), (q.encode(),), (1,)).encode() + Describe("P", "").encode()
             + Execute("", 0).encode() + Sync().encode() for q in queries]
    allow_fan_out(lambda: False)
    try:
        with Database.open(path) as db:
            harness = Harness(db)
            try:
                harness.round_trip(Query("SET hnsw.ef_search = 40").encode(), 1)
                harness.round_trip(Parse("q", sql, ()).encode() + Sync().encode(), 2)
                for trip in trips[:20]:
                    harness.round_trip(trip, 4)
                cpu, started = time.thread_time(), time.perf_counter()
                for trip in trips:
                    harness.round_trip(trip, 4)
                elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
            finally:
                harness.close()
    finally:
        allow_fan_out(None)
    return len(trips) / elapsed, {"in process": cpu * 1000 / len(trips)}


def in_process_of(checkout: str, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """`in_process` run by `checkout`'s code, in a process of its own (each checkout's
    servers and in-process figures then take turns in every round)."""
    import json

    script = ("import json, sys\n"
              "from benchmarks.workers import in_process, queries_of\n"
              "q, cpu = in_process(sys.argv[1], queries_of(int(sys.argv[2]), int(sys.argv[3]), "
              "sys.argv[4]))\n"
              "print(json.dumps([q, cpu]))\n")
    out = subprocess.run(
        [sys.executable, "-c", script, os.path.abspath(args.data_dir), str(args.queries),
         str(args.dim), args.dataset], cwd=checkout, env={**os.environ, "PYTHONPATH": checkout},
        check=True, capture_output=True, text=True).stdout
    q, cpu = json.loads(out.strip().splitlines()[-1])
    return q, cpu


def load_postgres(dsn: str, rows: int, dim: int, dataset: str = "normal") -> None:
    """The same table and index in PostgreSQL + pgvector (m 16, ef_construction 64); kept
    from a previous run when it holds the same rows (the table's comment names the dataset)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        if _loaded(conn, rows, dim, dataset):
            return
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(f"CREATE TABLE items (id int, emb vector({dim}))")
        start = 0
        with conn.cursor().copy("COPY items (id, emb) FROM STDIN") as copy:
            for block in blocks(rows, dim, dataset):
                for i, v in enumerate(block):
                    copy.write_row((start + i, "[" + ",".join(map(repr, map(float, v))) + "]"))
                start += len(block)
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("CREATE INDEX ON items USING hnsw (emb vector_l2_ops) "
                     "WITH (m = 16, ef_construction = 64)")
        conn.execute("ANALYZE items")
        conn.execute(f"COMMENT ON TABLE items IS '{dataset}'")


def _loaded(conn, rows: int, dim: int, dataset: str) -> bool:
    """Whether PostgreSQL holds the table already (a previous run's), with its index."""
    found = conn.execute("SELECT format_type(atttypid, atttypmod), "
                         "obj_description(attrelid, 'pg_class') FROM pg_attribute "
                         "WHERE attrelid = to_regclass('items') AND attname = 'emb'").fetchone()
    if found is None or tuple(found) != (f"vector({dim})", dataset):
        return False
    indexed = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'items'")
    return indexed.fetchone()[0] == 1 and \
        conn.execute("SELECT count(*) FROM items").fetchone()[0] == rows


def ef_list(text: str) -> list[int | None]:
    """`--ef`'s comma-separated hnsw.ef_search values; `default` is None (not set)."""
    values: list[int | None] = []
    for item in text.split(","):
        item = item.strip()
        if item == "default":
            values.append(None)
        elif item.isdigit() and int(item) > 0:
            values.append(int(item))
        else:
            raise argparse.ArgumentTypeError(
                f"{item!r}: an ef_search is a positive integer or `default`")
    return values


def ef_label(ef: int | None) -> str:
    return "default" if ef is None else str(ef)


def truth_of(args: argparse.Namespace, queries: list):
    """The exact top 10 of each query vector as sent (text is rounded) among the table's."""
    import json

    import numpy as np

    from benchmarks.ground_truth import exact_top10

    sent = np.asarray([json.loads(q) if isinstance(q, str) else q for q in queries],
                      dtype=np.float32)
    return exact_top10(np.concatenate(list(blocks(args.rows, args.dim, args.dataset))), sent)


Result = tuple[float, dict[str, float], float | None]  # QPS, CPU ms per query, recall@10


def qps_main(args: argparse.Namespace) -> int:
    from benchmarks.ground_truth import recall_at_10

    codes = [("", os.path.abspath(args.code))]
    if args.baseline:
        codes = [(" (this code)", codes[0][1]), (" (baseline)", os.path.abspath(args.baseline))]
    queries = queries_of(args.queries, args.dim, args.dataset, args.binary)
    truth = truth_of(args, queries)
    results: dict[tuple[str, int], list[Result]] = {}
    pg = None
    if args.pgserver:
        from benchmarks.writes import postgres

        pg = postgres(args.pgserver)
        pg_dsn, _pid, label = pg.__enter__()
        load_postgres(pg_dsn, args.rows, args.dim, args.dataset)

    def measure_all(name: str, dsn: str, root: int | None, round_: int,
                    efs: list[int | None]) -> None:
        for clients in args.clients:
            for ef in efs:
                for c in args.connections:
                    q, cpu, answers = total_qps(dsn, c, queries, root, clients, ef)
                    recall = recall_at_10(
                        ((i, ids) for client in answers for i, ids in enumerate(client)), truth)
                    case = f"{name}, client {clients}, ef_search {ef_label(ef)}"
                    results.setdefault((case, c), []).append((q, cpu, recall))
                    print(f"round {round_ + 1}: {case}, {c} connections: {q:,.0f} QPS, "
                          f"recall@10 {recall:.3f}; CPU ms/query " + ", ".join(
                              f"{role} {ms:.3f}" for role, ms in sorted(cpu.items())),
                          flush=True)

    try:
        for round_ in range(args.rounds):
            for workers in args.workers:
                for name, checkout in codes:
                    server, port = start(checkout, args.data_dir, workers)
                    try:
                        measure_all(f"sqlvec{name} --workers {workers}",
                                    f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                                    server.pid, round_, args.ef)
                    finally:
                        server.send_signal(signal.SIGTERM)
                        server.wait(120)
            if pg is not None:
                measure_all(label, pg_dsn, postmaster(args.pgserver), round_, args.pg_ef)
            if args.in_process:
                for name, checkout in codes:
                    q, cpu = in_process_of(checkout, args)
                    results.setdefault((f"sqlvec{name} in process, one thread", 1),
                                       []).append((q, cpu, None))
                    print(f"round {round_ + 1}: sqlvec{name} in process, one thread: "
                          f"{q:,.0f} QPS; CPU ms/query {cpu['in process']:.3f}", flush=True)
    finally:
        if pg is not None:
            pg.__exit__(None, None, None)
    print_table(results)
    return 0


def postmaster(directory: str) -> int | None:
    """The process id of the PostgreSQL server whose data directory is `directory`."""
    try:
        with open(os.path.join(directory, "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def print_table(results: dict[tuple[str, int], list[Result]]) -> None:
    """Per server, client kind, ef_search and connection count: the median recall@10, the
    median total QPS (every round's figure beside it) and the median CPU milliseconds per
    query of each kind of process."""
    import statistics

    print("\n| server, client, ef_search | connections | recall@10 | total QPS, median (rounds) "
          "| CPU ms per query, median: by process kind; total |")
    print("|---|---|---|---|---|")
    for (name, c), runs in results.items():
        qps = [q for q, _, _ in runs]
        recalls = [r for _, _, r in runs if r is not None]
        recall = f"{statistics.median(recalls):.3f}" if recalls else "-"
        roles = sorted({role for _, cpu, _ in runs for role in cpu})
        cpu = {role: statistics.median(r.get(role, 0.0) for _, r, _ in runs) for role in roles}
        print(f"| {name} | {c} | {recall} | {statistics.median(qps):,.0f} "
              f"({', '.join(f'{x:,.0f}' for x in qps)}) | "
              + ", ".join(f"{role} {ms:.3f}" for role, ms in cpu.items())
              + f"; {sum(cpu.values()):.3f} |")


def parser_of() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks workers")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dataset", choices=["normal", "clustered"], default="normal",
                        help="the vectors: independent Gaussian (default) or the suite's "
                             "clustered mixture (a new DIR per dataset)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", default=os.getcwd(),
                        help="the checkout whose server is started (default: this one)")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also the server of this checkout, taking turns with --code's "
                             "(--qps)")
    parser.add_argument("--qps", action="store_true",
                        help="measure total QPS of concurrent top-10 searches instead")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--queries", type=int, default=300, help="per connection (--qps)")
    parser.add_argument("--clients", nargs="+", choices=["threads", "processes"],
                        default=["threads"],
                        help="the clients: threads of this process or one process each (--qps)")
    parser.add_argument("--in-process", action="store_true",
                        help="also the same searches served one at a time in this process's "
                             "thread, no server process (--qps): a query's CPU alone")
    parser.add_argument("--binary", action="store_true",
                        help="send the query vector in binary through pgvector's adapter, "
                             "uncast, as the suite does (--qps; default: text with ::vector)")
    parser.add_argument("--ef", type=ef_list, default=[40], metavar="LIST",
                        help="sqlvec's hnsw.ef_search per case, comma-separated; `default`: "
                             "not set, the calibrated recall target (--qps; default 40)")
    parser.add_argument("--pg-ef", type=ef_list, default=[40], metavar="LIST",
                        help="PostgreSQL's hnsw.ef_search per case, comma-separated (--qps; "
                             "default 40)")
    parser.add_argument("--pgserver", metavar="DIR",
                        help="also PostgreSQL + pgvector from the pgserver package in DIR (--qps)")
    return parser


def main(argv: list[str]) -> int:
    parser = parser_of()
    args = parser.parse_args(argv)
    if args.binary and args.in_process:
        parser.error("--in-process sends text; `python -m benchmarks profile` times the binary "
                     "statement in process")
    build(args.data_dir, args.rows, args.dim, args.dataset)
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
