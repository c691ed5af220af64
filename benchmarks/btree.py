"""Btree index lookups against the scan, beside PostgreSQL, in one run.

A table of `--rows` rows (id bigint, k int: a permutation of the ids, ts timestamp: one
second per row in shuffled order, payload text) with btree indexes on k and ts, loaded by COPY
into a sqlvec server (`python -m wire serve`, sealed by CHECKPOINT) and into PostgreSQL
(pgserver), both reached by psycopg over a Unix socket / loopback with prepared statements.
Cases: a point lookup `WHERE k = $1` and a 0.1% range `WHERE ts >= $1 AND ts < $2`, each
through the index and with `SET enable_indexscan = off` (PostgreSQL: and enable_bitmapscan
off) forcing the scan. Reported: median and p95 latency over `--repeat` runs of random
parameters, and sqlvec's first lookup, which builds the per-segment sorted keys (once per
process; storage/btree.py).

    python -m benchmarks btree                   # 1M rows, both servers
    python -m benchmarks btree --rows 100000 --only sqlvec
    python -m benchmarks btree --only crossover   # in process: index vs scan per selectivity
    python -m benchmarks btree --only crossover --dim 128 --rows 300000   # wide rows
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BASE = dt.datetime(2024, 1, 1)


def _csv(rows: int) -> bytes:
    rng = np.random.default_rng(1)
    k = rng.permutation(rows)
    secs = rng.permutation(rows)
    out = io.StringIO()
    for i in range(rows):
        ts = BASE + dt.timedelta(seconds=int(secs[i]))
        out.write(f"{i},{k[i]},{ts.isoformat(sep=' ')},payload-{i % 1000}\n")
    return out.getvalue().encode()


@contextlib.contextmanager
def sqlvec_server(directory: str):
    """A sqlvec server on an ephemeral loopback port: yields its libpq URI."""
    log_path = os.path.join(directory, "server.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wire", "serve", "--data-dir",
                                 os.path.join(directory, "data"), "--port", "0"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.search(r"listening on (\S+):(\d+)", open(log_path).read())
            if m:
                yield f"postgresql://postgres@{m.group(1)}:{m.group(2)}/postgres"
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("sqlvec did not start:\n" + open(log_path).read())
    finally:
        proc.terminate()
        proc.wait(60)


@contextlib.contextmanager
def postgres(directory: str):
    """PostgreSQL from the pgserver package: yields its URI."""
    import pgserver

    server = pgserver.get_server(directory)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def load(uri: str, data: bytes, sqlvec: bool) -> float:
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bt")
        conn.execute("CREATE TABLE bt (id bigint PRIMARY KEY, k int, ts timestamp, "
                     "payload text)")
        with conn.cursor().copy("COPY bt FROM STDIN (FORMAT csv)") as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        conn.execute("CREATE INDEX bt_k_idx ON bt (k)")
        conn.execute("CREATE INDEX bt_ts_idx ON bt (ts)")
        conn.execute("CHECKPOINT" if sqlvec else "VACUUM ANALYZE bt")
    return time.perf_counter() - start


def measure(uri: str, rows: int, repeat: int, sqlvec: bool) -> dict:
    import psycopg

    rng = np.random.default_rng(7)
    width = max(1, rows // 1000)  # 0.1% of the rows
    cases = {
        "point k = $1": ("SELECT * FROM bt WHERE k = %s",
                         lambda: (int(rng.integers(rows)),)),
        "range 0.1% ts": ("SELECT * FROM bt WHERE ts >= %s AND ts < %s",
                          lambda: _range(rng, rows, width)),
    }
    out = {}
    with psycopg.connect(uri, autocommit=True, prepare_threshold=0) as conn:
        if sqlvec:
            sql, params = cases["point k = $1"]
            start = time.perf_counter()
            conn.execute(sql, params()).fetchall()
            out["first lookup (builds sorted keys)"] = {"index": time.perf_counter() - start}
            sql, params = cases["range 0.1% ts"]
            conn.execute(sql, params()).fetchall()
        for name, (sql, params) in cases.items():
            result = {}
            for mode in ("index", "scan"):
                off = mode == "scan"
                conn.execute(f"SET enable_indexscan = {'off' if off else 'on'}")
                if not sqlvec:
                    conn.execute(f"SET enable_bitmapscan = {'off' if off else 'on'}")
                # A text of its own per mode: PostgreSQL keeps a prepared statement's plan
                # across SET, so the scan must not reuse the index's statement.
                sql_mode = f"{sql} /* {mode} */"
                plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql_mode, params()))
                times, got = [], 0
                for _ in range(repeat if not off else max(3, repeat // 10)):
                    p = params()
                    start = time.perf_counter()
                    got = len(conn.execute(sql_mode, p).fetchall())
                    times.append(time.perf_counter() - start)
                times.sort()
                result[mode] = statistics.median(times)
                result[mode + " p95"] = times[int(len(times) * 0.95) - 1 if len(times) > 1 else 0]
                result[mode + " plan"] = plan.splitlines()[0]
                result["rows"] = got
            out[name] = result
    return out


def crossover(rows: int, repeat: int, dim: int) -> None:
    """In process (no wire): `SELECT count(*) ... WHERE k < $1` (every column read, one row
    sent) through the index (the planner's threshold lifted) and by the scan, per
    selectivity: where the index stops paying."""
    import pyarrow as pa

    from sqlvec.database import Database
    from sqlvec.execution import index_scan

    directory = tempfile.mkdtemp(prefix="btree-crossover-")
    db = Database.open(directory)
    try:
        s = db.connect()
        vector = f", emb vector({dim})" if dim else ""
        s.execute_one("CREATE TABLE bt (id bigint PRIMARY KEY, k int, ts timestamp, "
                      f"payload text{vector})")
        rng = np.random.default_rng(1)
        columns = {
            "id": np.arange(rows), "k": rng.permutation(rows).astype(np.int32),
            "ts": pa.array(rng.permutation(rows) * 1_000_000, pa.timestamp("us")),
            "payload": pa.array([f"payload-{i % 1000}" for i in range(rows)])}
        if dim:
            columns["emb"] = pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(rows * dim, np.float32)), dim)
        s.copy_in("bt", None, pa.table(columns))
        s.execute_one("CREATE INDEX ON bt (k)")
        s.execute_one("CHECKPOINT")
        db.wait_idle()
        prepared = s.prepare("SELECT count(*) FROM bt WHERE k < $1", [23])
        s.run(prepared, [1], None).rows()
        wide = f" with vector({dim})" if dim else ""
        print(f"in process, {rows:,} rows{wide}, "
              "SELECT count(*) FROM bt WHERE k < $1 (median ms):")
        for share in (0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
            bound = int(rows * share)
            result = {}
            for mode in ("index", "scan"):
                index_scan.MAX_FRACTION = 1.0 if mode == "index" else -1.0
                times = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    s.run(prepared, [bound], None).rows()
                    times.append(time.perf_counter() - start)
                result[mode] = statistics.median(times) * 1000
            print(f"  {share:>7.2%}: index {result['index']:.2f}, scan {result['scan']:.2f}")
        s.close()
    finally:
        db.close()
        shutil.rmtree(directory, ignore_errors=True)


def _version(uri: str) -> str:
    import psycopg

    with psycopg.connect(uri) as conn:
        return conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]


def _range(rng, rows: int, width: int) -> tuple:
    lo = int(rng.integers(rows - width))
    return (BASE + dt.timedelta(seconds=lo), BASE + dt.timedelta(seconds=lo + width))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks btree", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=100)
    p.add_argument("--only", choices=("sqlvec", "postgres", "crossover"))
    p.add_argument("--dim", type=int, default=0,
                   help="crossover: add a vector(DIM) column to the rows read")
    args = p.parse_args(argv)
    if args.only == "crossover":
        crossover(args.rows, max(3, args.repeat // 10), args.dim)
        return 0
    data = _csv(args.rows)
    work = tempfile.mkdtemp(prefix="btree-bench-")
    try:
        servers = [("sqlvec", sqlvec_server), ("postgres", postgres)]
        for label, server in servers:
            if args.only and args.only != label:
                continue
            directory = os.path.join(work, label)
            os.makedirs(directory)
            with server(directory) as uri:
                seconds = load(uri, data, label == "sqlvec")
                print(f"{label} ({_version(uri)}): {args.rows:,} rows loaded and indexed in "
                      f"{seconds:.1f} s")
                for case, r in measure(uri, args.rows, args.repeat, label == "sqlvec").items():
                    if "scan" not in r:
                        print(f"  {case}: {r['index'] * 1000:.1f} ms")
                        continue
                    print(f"  {case} ({r['rows']} rows): index {r['index'] * 1000:.2f} ms "
                          f"(p95 {r['index p95'] * 1000:.2f}) [{r['index plan']}], "
                          f"scan {r['scan'] * 1000:.2f} ms (p95 {r['scan p95'] * 1000:.2f}) "
                          f"[{r['scan plan']}], speed-up x{r['scan'] / r['index']:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
