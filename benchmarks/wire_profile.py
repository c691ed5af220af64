"""Where a prepared statement's fixed per-query cost goes inside the server, in one thread.

A `Connection` (the server's own, as `python -m sqlvec serve` runs it) is driven over a
socketpair in the measuring thread: the client's bytes are written, the connection reads and
dispatches them as it does when serving, its answer is read back. No client library, no
second process or thread: what is timed is the server's own work per round trip (socket
system calls included), and it can be timed per layer and profiled with exact call counts,
free of the thread hand-offs that a client in the same process would add.

Statements, each sent as psycopg sends a prepared statement (Bind, Describe portal, Execute,
Sync): `SELECT 1` (also as a simple Query, as psql sends it); `SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10` over --rows x --dim
vectors with an HNSW index (ef_search 40); a single-row INSERT (the database opened without
fsync, so the disk's flush is not timed: it is the same for any per-statement cost); and a
read of one row by key sent with its Parse each time (the unnamed statement, as a driver that
does not keep it prepared sends it).

    python -m benchmarks profile                  # median us per layer
    python -m benchmarks profile --profile 30     # and the top 30 functions of each, by
                                                  # cumulative time, with calls per round trip
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import socket
import struct
import sys
import tempfile
import time

import numpy as np

from benchmarks.datasets import Clustered

VECTOR_SQL = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10"


class Harness:
    """One server connection over a socketpair, driven from the calling thread."""

    def __init__(self, db) -> None:
        from wire.connection import Connection
        from wire.messages import PROTOCOL_3_0, StartupMessage
        from wire.server import Server

        self.server = Server(db, port=0)
        self.ours, self.client = socket.socketpair()
        self.conn = Connection(self.server, self.ours)
        self.client.sendall(StartupMessage(PROTOCOL_3_0, {"user": "postgres"}).encode())
        self.conn._startup()
        self.client.setblocking(False)
        self.drain()

    def drain(self) -> bytes:
        out = bytearray()
        try:
            while chunk := self.client.recv(1 << 20):
                out += chunk
        except BlockingIOError:
            pass
        return bytes(out)

    def round_trip(self, data: bytes, messages: int) -> bytes:
        """Send `data` (`messages` messages, received at once), let the connection handle
        them as it does when serving, read its answer."""
        self.client.sendall(data)
        conn = self.conn
        conn.serve_next()
        while conn.stream.buffered:
            conn.serve_next()
        answer = self.drain()
        if b"E" == answer[:1]:
            raise RuntimeError(f"server error: {answer!r}")
        return answer

    def close(self) -> None:
        self.ours.close()
        self.client.close()


def prepared_round_trip(name: str, params: tuple[bytes, ...] = (), binary: bool = True) -> bytes:
    from wire.messages import Bind, Describe, Execute, Sync

    formats = (1,) if binary else ()
    return (Bind("", name, (1,) * len(params), params, formats).encode()
            + Describe("P", "").encode() + Execute("", 0).encode() + Sync().encode())


def median_us(fn, rounds: int, warmup: int = 100) -> float:
    for _ in range(warmup):
        fn()
    times = np.empty(rounds)
    for i in range(rounds):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times)) * 1e6


def top_functions(fn, rounds: int, top: int, label: str) -> None:
    profile = cProfile.Profile()
    for _ in range(100):
        fn()
    profile.enable()
    for _ in range(rounds):
        fn()
    profile.disable()
    stats = pstats.Stats(profile)
    rows = sorted(((ct, tt, nc, func) for func, (_cc, nc, tt, ct, _callers)
                   in stats.stats.items()), reverse=True)  # type: ignore[attr-defined]
    print(f"\n== {label}: top {top} by cumulative time (us per round trip under cProfile)")
    print(f"{'cum':>8} {'own':>8} {'calls':>6}  function")
    for ct, tt, nc, (file, line, name) in rows[:top]:
        short = "/".join(file.split("/")[-2:])
        print(f"{ct / rounds * 1e6:8.1f} {tt / rounds * 1e6:8.1f} {nc / rounds:6.1f}  "
              f"{short}:{line}({name})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="also print the TOP functions of each statement under cProfile")
    args = p.parse_args(argv)

    from benchmarks.wire_overhead import build_directory
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions
    from wire.messages import Parse, Query, Sync

    data = Clustered(args.rows, args.dim)
    queries = data.queries(100)
    tmp = tempfile.mkdtemp(prefix="sqlvec-profile-")
    try:
        build_directory(f"{tmp}/data", data.all())
        db = Database.open(f"{tmp}/data", options=StoreOptions(fsync=False))
        h = Harness(db)
        session = h.conn.session
        try:
            h.round_trip(Query("SET hnsw.ef_search = 40; "
                               "CREATE TABLE w (id bigint PRIMARY KEY, v integer)").encode(), 1)
            for name, sql, oids in (("s1", "SELECT 1", ()), ("v", VECTOR_SQL, (0,)),
                                    ("i", "INSERT INTO w VALUES ($1, $2)", (20, 23))):
                h.round_trip(Parse(name, sql, oids).encode() + Sync().encode(), 2)
            select1 = prepared_round_trip("s1")
            vectors = [prepared_round_trip("v", (struct.pack("!HH", q.size, 0)
                                                 + q.astype(">f4").tobytes(),))
                       for q in queries]
            ids = iter(range(1, 1 << 62))

            def insert() -> None:
                i = next(ids)
                h.round_trip(prepared_round_trip(
                    "i", (struct.pack("!q", i), struct.pack("!i", i & 0x7FFFFFFF))), 4)

            counter = iter(range(1 << 62))

            def vector() -> None:
                h.round_trip(vectors[next(counter) % len(vectors)], 4)

            def select() -> None:
                h.round_trip(select1, 4)

            by_key = Parse("", "SELECT v FROM w WHERE id = 1").encode() + prepared_round_trip("")

            def parsed() -> None:
                h.round_trip(by_key, 5)

            p1 = session.prepare("SELECT 1")
            pv = session.prepare(VECTOR_SQL)
            pi = session.prepare("INSERT INTO w VALUES ($1, $2)", [20, 23])
            from wire.messages import Bind, Describe

            bind = Bind("", "s1", (), (), (1,)).encode()
            query = Query("SELECT 1").encode()
            layers = {
                "socket floor: Sync alone (ReadyForQuery back)":
                    lambda: h.round_trip(Sync().encode(), 1),
                "SELECT 1: Bind + Sync": lambda: h.round_trip(bind + Sync().encode(), 2),
                "SELECT 1: Bind + Describe + Sync":
                    lambda: h.round_trip(bind + Describe("P", "").encode() + Sync().encode(), 3),
                "SELECT 1: Bind + Describe + Execute + Sync": select,
                "SELECT 1: Session.run in process": lambda: session.run(p1, []),
                "SELECT 1: simple Query (as psql sends it)": lambda: h.round_trip(query, 1),
                "vector top-10: Bind + Describe + Execute + Sync": vector,
                "vector top-10: Session.run in process":
                    lambda: session.run(pv, [queries[next(counter) % len(queries)]]),
                "INSERT one row: Bind + Describe + Execute + Sync": insert,
                "INSERT one row: Session.run in process":
                    lambda: session.run(pi, [-next(ids), 0]),
                "row by key: Parse + Bind + Describe + Execute + Sync": parsed,
            }
            print(f"{'median us per round trip':>26}  layer")
            for label, fn in layers.items():
                print(f"{median_us(fn, args.rounds):26.1f}  {label}")
            if args.profile:
                for label, fn in (("SELECT 1", select), ("vector top-10", vector),
                                  ("INSERT one row", insert), ("row by key, parsed", parsed)):
                    top_functions(fn, args.rounds, args.profile, label)
        finally:
            h.close()
            db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
