"""Reads of another table while an autocommit ALTER TABLE rewrites a table: `ALTER TABLE t
ALTER COLUMN n TYPE bigint` of --rows rows, beside a connection reading `SELECT n FROM u` in a
loop. Per checkout, taking turns: the ALTER's time and the slowest read meanwhile (what a shape
change holding the database's DDL lock costs other tables' readers), medians of --rounds.

    python -m benchmarks ddl_beside --rows 300000 --rounds 3 --checkout . --baseline <checkout>
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time

from benchmarks.suite import sqlvec_server


def one_round(dsn: str, rows: int) -> tuple[float, float]:
    """(ALTER seconds, slowest read of u during it in seconds)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t, u")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO u VALUES (1, 1)")
        conn.execute(f"INSERT INTO t SELECT g, g FROM generate_series(1, {rows}) g")
        conn.execute("CHECKPOINT")
    done = threading.Event()
    slowest = [0.0]

    def read() -> None:
        with psycopg.connect(dsn, autocommit=True) as reader:
            while not done.is_set():
                started = time.perf_counter()
                reader.execute("SELECT n FROM u").fetchall()
                slowest[0] = max(slowest[0], time.perf_counter() - started)
    thread = threading.Thread(target=read)
    with psycopg.connect(dsn, autocommit=True) as conn:
        thread.start()
        time.sleep(0.2)
        started = time.perf_counter()
        conn.execute("ALTER TABLE t ALTER COLUMN n TYPE bigint")
        took = time.perf_counter() - started
    done.set()
    thread.join()
    return took, slowest[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkout", default=".")
    parser.add_argument("--baseline", required=True)
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "checkout": []}
    for _ in range(args.rounds):
        for name, path in (("baseline", args.baseline), ("checkout", args.checkout)):
            data = tempfile.mkdtemp()
            try:
                with sqlvec_server(data, path) as (dsn, _pid):
                    results[name].append(one_round(dsn, args.rows))
            finally:
                shutil.rmtree(data, ignore_errors=True)
    print(f"{'':10} {'ALTER s':>9} {'slowest read of u s':>20}")
    for name, got in results.items():
        print(f"{name:10} {statistics.median(g[0] for g in got):9.3f} "
              f"{statistics.median(g[1] for g in got):20.3f}")
    print("raw:", results)
