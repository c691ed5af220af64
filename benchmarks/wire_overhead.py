"""What the PostgreSQL wire adds: the same queries through a real server and in process.

The server (`python -m sqlvec serve`, its own process) and an in-process `Database` open two
copies of one data directory (100k x 128 vectors in HNSW-indexed segments, as COPY and CREATE
INDEX leave them), and in the same run:

1. `SELECT 1` and `SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10` (hnsw.ef_search 40), each
   as a prepared statement: median microseconds per round trip through psycopg, through a bare
   socket client that sends pre-encoded Bind/Execute/Sync (the server alone), and via
   `Session.run` in process, taking turns by blocks of 100 rounds (so all three meet the same
   machine load); the difference of medians is what the wire adds. Recall@10 of the vector
   query against exact NumPy search.
   The vector query is also split into layers, each timed on the same queries in the same
   rounds: the graph searches alone (hnswlib on each segment's index), the storage search
   (per-segment planning, parallel graph search, exact rescoring, Arrow rows), SQL execution
   (Session.run of the cached plan), encoding the result as DataRows, the server behind a
   socket, and psycopg; plus parse + bind + plan of a statement text not seen before.
2. Total QPS of the vector query with 1, 4 and 8 psycopg connections (one thread each).
3. COPY ... FROM STDIN (FORMAT BINARY) of rows x (id bigint, emb vector(d)) and of the suite's
   mixed rows (id, category, price, tag text, embedding), pre-encoded so the client costs
   nothing: rows/s end to end (first byte to CommandComplete), beside `Session.copy_in` of
   the already-decoded Arrow table in process.

    python -m benchmarks wire                     # everything, 100k x 128
    python -m benchmarks wire --only select1,vector
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

from benchmarks.datasets import Clustered
from wire.messages import PROTOCOL_3_0, Bind, Execute, Parse, Query, StartupMessage, Sync

K = 10
VECTOR_SQL = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10"
PARTS = ("select1", "vector", "concurrency", "copy")


# Data --------------------------------------------------------------------------------------------


def build_directory(path: str, vectors: np.ndarray) -> None:
    """A data directory holding t(id, emb) with an HNSW index, laid out as the server would
    (default seal threshold, so several sealed segments each with its own graph)."""
    from sqlvec.database import Database

    n, dim = vectors.shape
    db = Database.open(path)
    try:
        s = db.connect()
        s.execute_one(f"CREATE TABLE t (id bigint PRIMARY KEY, emb vector({dim}))")
        for start in range(0, n, 50_000):
            chunk = vectors[start:start + 50_000]
            s.copy_in("t", None, pa.table({
                "id": np.arange(start, start + len(chunk), dtype=np.int64),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), dim)}))
        s.execute_one("CREATE INDEX t_emb ON t USING hnsw (emb vector_l2_ops)")
        db.store().wait_idle()
        s.close()
    finally:
        db.close()


def exact_top_k(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    norms = (vectors * vectors).sum(axis=1)
    out = np.empty((len(queries), K), np.int64)
    for start in range(0, len(queries), 100):
        q = queries[start:start + 100]
        d = norms[None, :] - 2 * q @ vectors.T
        part = np.argpartition(d, K, axis=1)[:, :K]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        out[start:start + len(q)] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))


# A bare protocol client: no driver in the way -------------------------------------------------


class RawClient:
    """Speaks just enough of the protocol to time the server: startup (trust), one Parse, then
    pre-encoded Bind/Execute/Sync round trips read up to ReadyForQuery."""

    def __init__(self, host: str, port: int) -> None:

        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sock.sendall(StartupMessage(PROTOCOL_3_0, {"user": "postgres"}).encode())
        self.until_ready()

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        messages = []
        while True:
            while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack_from("!i", self.buf, 1)[0]:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            length = struct.unpack_from("!i", self.buf, 1)[0]
            kind, body = bytes(self.buf[:1]), bytes(self.buf[5:1 + length])
            del self.buf[:1 + length]
            if kind == b"E":
                raise RuntimeError(f"server error: {body!r}")
            messages.append((kind, body))
            if kind == b"Z":
                return messages

    def prepare(self, name: str, sql: str, oids: tuple[int, ...] = ()) -> None:
        self.sock.sendall(Parse(name, sql, oids).encode() + Sync().encode())
        self.until_ready()

    @staticmethod
    def round_trip_bytes(name: str, params: tuple[bytes | None, ...] = (),
                         binary: bool = True) -> bytes:
        formats = (1,) if binary else ()
        return (Bind("", name, (1,) * len(params), params, formats).encode()
                + Execute("", 0).encode() + Sync().encode())

    def run(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.sock.sendall(data)
        return self.until_ready()

    def close(self) -> None:
        self.sock.close()


def vector_param(q: np.ndarray) -> bytes:
    return struct.pack("!HH", q.size, 0) + q.astype(">f4").tobytes()


def ids_of(messages: list[tuple[bytes, bytes]]) -> list[int]:
    return [struct.unpack_from("!q", body, 6)[0] for kind, body in messages if kind == b"D"]


# Timing -----------------------------------------------------------------------------------------


def interleaved(ways: dict, items: list, block: int = 100, warmup: int = 50) -> dict:
    """Time every way on every item (microseconds per call), taking turns by blocks of items:
    the ways meet the same machine load over the run (others' work on a shared machine), and
    each block runs warm (two processes holding copies of one index evict each other's cache
    lines when they alternate call by call)."""
    for item in items[:warmup]:
        for fn in ways.values():
            fn(item)
    times = {name: np.empty(len(items)) for name in ways}
    results: dict[str, list] = {name: [None] * len(items) for name in ways}
    for first in range(0, len(items), block):
        for name, fn in ways.items():
            for i in range(first, min(first + block, len(items))):
                start = time.perf_counter()
                results[name][i] = fn(items[i])
                times[name][i] = (time.perf_counter() - start) * 1e6
    return {"times": times, "results": results}


def connect(dsn: str, ef: int):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    conn.execute(f"SET hnsw.ef_search = {ef}")
    return conn


# Parts ------------------------------------------------------------------------------------------


def bench_select1(session, dsn: str, host: str, port: int, rounds: int) -> dict:
    prepared = session.prepare("SELECT 1")
    conn = connect(dsn, 40)
    cur = conn.cursor()
    raw = RawClient(host, port)
    raw.prepare("s1", "SELECT 1")
    data = RawClient.round_trip_bytes("s1")

    def psycopg_once(_):
        cur.execute("SELECT 1", prepare=True)
        return cur.fetchall()

    run = interleaved({"in_process": lambda _: session.run(prepared, []),
                       "psycopg": psycopg_once, "raw": lambda _: raw.run(data)},
                      list(range(rounds)))
    raw.close()
    conn.close()
    return run["times"]


def bench_vector(session, dsn: str, host: str, port: int, queries: np.ndarray,
                 truth: np.ndarray, ef: int) -> dict:
    session.execute_one(f"SET hnsw.ef_search = {ef}")
    prepared = session.prepare(VECTOR_SQL)
    conn = connect(dsn, ef)
    cur = conn.cursor()
    sql = VECTOR_SQL.replace("$1", "%s")
    raw = RawClient(host, port)
    raw.run(Query(f"SET hnsw.ef_search = {ef}").encode())
    raw.prepare("v", VECTOR_SQL, (0,))

    def psycopg_once(q):
        cur.execute(sql, (q,), prepare=True)
        return [r[0] for r in cur.fetchall()]

    run = interleaved({
        "in_process": lambda q: session.run(prepared, [q]).table.column(0).to_pylist(),
        "psycopg": psycopg_once,
        "raw": lambda q: ids_of(raw.run(RawClient.round_trip_bytes("v", (vector_param(q),)))),
    }, list(queries))
    raw.close()
    conn.close()
    return {**run["times"],
            "recall": {name: recall(found, truth) for name, found in run["results"].items()}}


def bench_layers(db, session, dsn: str, host: str, port: int, queries: np.ndarray,
                 ef: int) -> dict:
    """Microseconds per vector query at each layer, innermost first (see the module doc)."""
    from sqlvec.vectors import Metric
    from wire.connection import encode_rows

    session.execute_one(f"SET hnsw.ef_search = {ef}")
    prepared = session.prepare(VECTOR_SQL)
    table = next(iter(db.store().tables.values()))
    graphs = [view.data.index("t_emb")._index for view in table.snapshot().sealed]
    for graph in graphs:
        graph.set_ef(ef)
    result_types = [c.type for c in prepared.columns]
    conn = connect(dsn, ef)
    cur = conn.cursor()
    sql = VECTOR_SQL.replace("$1", "%s")
    raw = RawClient(host, port)
    raw.run(Query(f"SET hnsw.ef_search = {ef}").encode())
    raw.prepare("v", VECTOR_SQL, (0,))
    result = session.run(prepared, [queries[0]]).table

    def graph_only(q):
        for graph in graphs:
            graph.knn_query(q, k=K, num_threads=1)

    def psycopg_once(q):
        cur.execute(sql, (q,), prepare=True)
        return cur.fetchall()

    counter = iter(range(10**9))
    run = interleaved({
        "graph": graph_only,
        "storage": lambda q: table.snapshot().search("emb", Metric.L2, q, K, ef=ef,
                                                     columns=["id"]),
        "execution": lambda q: session.run(prepared, [q]),
        "encoding": lambda q: encode_rows(result, result_types, [1], 1, 0, result.num_rows),
        "server": lambda q: raw.run(RawClient.round_trip_bytes("v", (vector_param(q),))),
        "psycopg": psycopg_once,
        "parse_plan": lambda q: session.prepare(f"{VECTOR_SQL} -- {next(counter)}"),
    }, list(queries))
    raw.close()
    conn.close()
    return {name: float(np.median(t)) for name, t in run["times"].items()}


LAYERS = (
    ("graph", "graph search: hnswlib on each segment's index, one after another"),
    ("storage", "+ storage search: per-segment plan, parallel search, exact rescoring, rows"),
    ("execution", "+ SQL execution: parameters, operator tree, result table (Session.run)"),
    ("server", "+ protocol: Bind/Execute/Sync decode, encoding, socket I/O (bare client)"),
    ("psycopg", "+ driver: psycopg dumping the vector and parsing the rows"),
)


def layers_table(layers: dict) -> str:
    lines = ["| layer | median µs per query | added µs |", "|---|---|---|"]
    previous = 0.0
    for key, label in LAYERS:
        lines.append(f"| {label} | {layers[key]:,.0f} | {layers[key] - previous:+,.0f} |")
        previous = layers[key]
    lines.append(f"| (inside the protocol layer) encoding the 10 result rows as DataRows | "
                 f"{layers['encoding']:,.0f} | |")
    lines.append(f"| (once per statement text) parse + bind + plan; prepared and cached "
                 f"statements skip it | {layers['parse_plan']:,.0f} | |")
    return "\n".join(lines)


def bench_concurrency(dsn: str, queries: np.ndarray, ef: int, clients: tuple[int, ...],
                      seconds: float) -> dict:
    return {count: clients_qps(dsn, queries, ef, count, seconds) for count in clients}


def clients_qps(dsn: str, queries: np.ndarray, ef: int, count: int, seconds: float) -> float:
    """Total QPS of `count` connections, one thread each, running the vector query."""
    sql = VECTOR_SQL.replace("$1", "%s")
    conns = [connect(dsn, ef) for _ in range(count)]
    for c in conns:  # prepare and warm up
        for q in queries[:20]:
            c.execute(sql, (q,), prepare=True).fetchall()
    barrier = threading.Barrier(count + 1)
    stop = threading.Event()
    done = [0] * count

    def client(i: int) -> None:
        cur = conns[i].cursor()
        j = i * 97
        barrier.wait()
        while not stop.is_set():
            cur.execute(sql, (queries[j % len(queries)],), prepare=True)
            cur.fetchall()
            done[i] += 1
            j += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return sum(done) / elapsed


def binary_copy_bytes(columns: list[tuple[str, object]]) -> bytes:
    """A whole binary COPY stream of (type, values) columns: int8, int4, float8, vector (an
    (n, d) float32 matrix) and text. Fixed-width rows are one NumPy structured array; rows with
    text are joined one by one."""
    n = len(columns[0][1])  # type: ignore[arg-type]
    codes = {"int8": ">i8", "int4": ">i4", "float8": ">f8"}
    cells = []  # per column: an (n, width) byte matrix, or a list of bytes for text
    for kind, values in columns:
        if kind == "text":
            encoded = [v.encode() for v in values]  # type: ignore[attr-defined]
            cells.append([struct.pack("!i", len(v)) + v for v in encoded])
            continue
        if kind == "vector":
            matrix = np.asarray(values, np.float32)
            d = matrix.shape[1]
            dtype = [("len", ">i4"), ("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (d,))]
            rec = np.zeros(n, dtype=dtype)
            rec["len"], rec["dim"], rec["v"] = 4 + 4 * d, d, matrix
        else:
            rec = np.zeros(n, dtype=[("len", ">i4"), ("v", codes[kind])])
            rec["len"], rec["v"] = np.dtype(codes[kind]).itemsize, values
        cells.append(rec.view(np.uint8).reshape(n, -1))
    count = np.full((n, 1), len(columns), ">i2").view(np.uint8).reshape(n, 2)
    if all(isinstance(c, np.ndarray) for c in cells):
        body = np.hstack([count, *cells]).tobytes()
    else:
        head = count.tobytes()
        rows = [[head[2 * r:2 * r + 2]] for r in range(n)]
        for c in cells:
            for r in range(n):
                rows[r].append(c[r] if isinstance(c, list) else c[r].tobytes())
        body = b"".join(b"".join(r) for r in rows)
    return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + body + b"\xff\xff"


def bench_copy(dsn: str, session, vectors: np.ndarray, repeat: int) -> dict:
    n, dim = vectors.shape
    rng = np.random.default_rng(3)
    ids = np.arange(n, dtype=np.int64)
    category = rng.integers(0, 100, n).astype(np.int32)
    price = rng.random(n) * 1000
    tag = [("red", "green", "blue", "black", "white")[i % 5] for i in range(n)]
    layouts = {
        "vectors": (f"(id bigint PRIMARY KEY, emb vector({dim}))",
                    [("int8", ids), ("vector", vectors)],
                    {"id": ids, "emb": pa.FixedSizeListArray.from_arrays(
                        pa.array(vectors.ravel()), dim)}),
        "mixed": (f"(id bigint PRIMARY KEY, category int, price float8, tag text, "
                  f"embedding vector({dim}))",
                  [("int8", ids), ("int4", category), ("float8", price), ("text", tag),
                   ("vector", vectors)],
                  {"id": ids, "category": category, "price": price, "tag": tag,
                   "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                                  dim)}),
    }
    out = {}
    conn = connect(dsn, 40)
    for name, (ddl, columns, arrow) in layouts.items():
        data = binary_copy_bytes(columns)
        wire_rates, local_rates = [], []
        for i in range(repeat):
            table = f"copy_{name}_{i}"
            conn.execute(f"CREATE TABLE {table} {ddl}")
            start = time.perf_counter()
            with conn.cursor() as cur:
                with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
                    for at in range(0, len(data), 1 << 20):
                        copy.write(data[at:at + (1 << 20)])
            wire_rates.append(n / (time.perf_counter() - start))
            conn.execute("CHECKPOINT")  # the seal COPY set off, done before the next run
            conn.execute(f"DROP TABLE {table}")
            session.execute_one(f"CREATE TABLE {table} {ddl}")
            rows = pa.table(arrow)
            start = time.perf_counter()
            session.copy_in(table, None, rows)
            local_rates.append(n / (time.perf_counter() - start))
            session.execute_one("CHECKPOINT")
            session.execute_one(f"DROP TABLE {table}")
        out[name] = {"wire": float(np.median(wire_rates)),
                     "in_process": float(np.median(local_rates)),
                     "bytes": len(data)}
    conn.close()
    return out


# The run ----------------------------------------------------------------------------------------


def summary(name: str, parts: dict) -> str:
    base = float(np.median(parts["in_process"]))
    line = [f"{name}: in process {base:,.0f} us"]
    for label in ("psycopg", "raw"):
        med = float(np.median(parts[label]))
        p99 = float(np.percentile(parts[label], 99))
        line.append(f"{label} {med:,.0f} us (+{med - base:,.0f}, p99 {p99:,.0f}, "
                    f"{1e6 / np.mean(parts[label]):,.0f}/s)")
    return "; ".join(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks wire", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5000, help="SELECT 1 round trips")
    p.add_argument("--ef", type=int, default=40)
    p.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    p.add_argument("--copy-repeat", type=int, default=3)
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    p.add_argument("--cache", action="store_true",
                   help="keep the indexed data directory in benchmarks/.cache between runs")
    args = p.parse_args(argv)
    only = set(args.only.split(","))

    from benchmarks.suite import sqlvec_server
    from sqlvec.database import Database

    data = Clustered(args.rows, args.dim)
    vectors = data.all()
    queries = data.queries(args.queries)
    tmp = tempfile.mkdtemp(prefix="sqlvec-wire-")
    source = os.path.join(os.path.dirname(__file__), ".cache",
                          f"wire-{args.rows}x{args.dim}") if args.cache else \
        os.path.join(tmp, "source")
    if not os.path.exists(os.path.join(source, "done")):
        shutil.rmtree(source, ignore_errors=True)
        started = time.perf_counter()
        build_directory(source, vectors)
        open(os.path.join(source, "done"), "w").close()
        print(f"built {args.rows:,} x {args.dim} with HNSW in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    served, local = os.path.join(tmp, "served"), os.path.join(tmp, "local")
    shutil.copytree(source, served)
    shutil.copytree(source, local)
    try:
        with sqlvec_server(served) as (dsn, _pid):
            host, port = dsn.rsplit("@", 1)[1].split("/")[0].split(":")
            db = Database.open(local)
            session = db.connect()
            try:
                if "select1" in only:
                    print(summary("SELECT 1", bench_select1(session, dsn, host, int(port),
                                                            args.rounds)))
                if "vector" in only:
                    truth = exact_top_k(vectors, queries)
                    v = bench_vector(session, dsn, host, int(port), queries, truth, args.ef)
                    print(summary(f"vector top-{K} ef {args.ef}", v))
                    print("  recall@10: " + ", ".join(f"{k} {r:.3f}"
                                                      for k, r in v["recall"].items()))
                    print(layers_table(bench_layers(db, session, dsn, host, int(port), queries,
                                                    args.ef)))
                if "concurrency" in only:
                    qps = bench_concurrency(dsn, queries, args.ef, (1, 4, 8), args.seconds)
                    print("vector QPS by connections: " + ", ".join(
                        f"{c}: {q:,.0f}" for c, q in qps.items()))
                if "copy" in only:
                    copies = bench_copy(dsn, session, vectors, args.copy_repeat)
                    for name, r in copies.items():
                        print(f"COPY binary {name} ({args.rows:,} rows, {r['bytes'] / 2**20:.0f}"
                              f" MiB): wire {r['wire']:,.0f} rows/s, Session.copy_in "
                              f"{r['in_process']:,.0f} rows/s")
            finally:
                session.close()
                db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
