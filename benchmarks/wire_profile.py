"""Where a prepared statement's fixed per-query cost goes inside the server.

An in-process server (its own thread, as `python -m sqlvec serve` runs it) serves a psycopg
client looping prepared statements; `Connection.dispatch` is wrapped in cProfile on the
connection's thread, so the profile holds the server's work only (not the client's, not the
socket wait). Printed per statement: microseconds of server work per round trip (cProfile's
own overhead included: compare runs of this tool with each other, not with wall-clock figures)
and the top functions by cumulative time per round trip with their call counts.

    python -m benchmarks profile                       # SELECT 1, vector top-10, INSERT
    python -m benchmarks profile --rounds 5000 --top 30
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
import threading

import numpy as np

from benchmarks.datasets import Clustered

VECTOR_SQL = "SELECT id FROM t ORDER BY emb <-> %s LIMIT 10"


def start_server(path: str):
    """A Server on an ephemeral port in a background thread; returns (server, port, stop)."""
    from sqlvec.database import Database
    from wire.server import Server

    db = Database.open(path)
    server = Server(db, port=0)
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        _, holder["port"] = loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)

    def stop() -> None:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)
        db.close()

    return server, holder["port"], stop


def profiled(fn, rounds: int, top: int, label: str) -> None:
    from wire.connection import Connection

    profile = cProfile.Profile()
    original = Connection.dispatch

    def dispatch(self, message):
        profile.enable()
        try:
            return original(self, message)
        finally:
            profile.disable()

    for i in range(200):  # warm up: plans cached, first-use imports done
        fn(i)
    Connection.dispatch = dispatch
    try:
        for i in range(rounds):
            fn(i)
    finally:
        Connection.dispatch = original
    stats = pstats.Stats(profile)
    total = stats.total_tt / rounds * 1e6  # type: ignore[attr-defined]
    print(f"\n== {label}: {total:,.1f} us of server work per round trip (under cProfile)")
    rows = []
    for func, (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((ct, tt, nc, func))
    rows.sort(reverse=True)
    print(f"{'cum us/rt':>10} {'own us/rt':>10} {'calls/rt':>9}  function")
    for ct, tt, nc, (file, line, name) in rows[:top]:
        short = "/".join(file.split("/")[-2:])
        print(f"{ct / rounds * 1e6:10.1f} {tt / rounds * 1e6:10.1f} {nc / rounds:9.1f}  "
              f"{short}:{line}({name})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--only", default="select1,vector,insert")
    args = p.parse_args(argv)
    only = set(args.only.split(","))

    import psycopg
    from pgvector.psycopg import register_vector

    from benchmarks.wire_overhead import build_directory

    data = Clustered(args.rows, args.dim)
    queries = data.queries(200)
    tmp = tempfile.mkdtemp(prefix="sqlvec-profile-")
    try:
        build_directory(f"{tmp}/data", data.all())
        _server, port, stop = start_server(f"{tmp}/data")
        try:
            conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                                   autocommit=True)
            register_vector(conn)
            conn.execute("SET hnsw.ef_search = 40")
            cur = conn.cursor()
            if "select1" in only:
                profiled(lambda i: cur.execute("SELECT 1", prepare=True).fetchall(),
                         args.rounds, args.top, "SELECT 1 (prepared)")
            if "vector" in only:
                profiled(lambda i: cur.execute(VECTOR_SQL, (queries[i % len(queries)],),
                                               prepare=True).fetchall(),
                         args.rounds, args.top, "vector top-10 (prepared)")
            if "insert" in only:
                conn.execute("CREATE TABLE w (id bigint PRIMARY KEY, v integer)")
                ids = iter(range(1, 1 << 62))
                profiled(lambda i: cur.execute("INSERT INTO w VALUES (%s, %s)",
                                               (next(ids), i), prepare=True),
                         args.rounds, args.top, "single-row INSERT (prepared)")
            conn.close()
        finally:
            stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())
