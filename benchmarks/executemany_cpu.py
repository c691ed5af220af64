"""Server CPU per row of executemany, and per single prepared INSERT, of two checkouts.

Both checkouts' servers run side by side (`--workers 0` unless `--workers N` says otherwise:
one process holds all the work) and take turns, the order swapped every round. Per round and
server, into `(id bigint PRIMARY KEY, v int, s text)`: 3 (`--calls`) psycopg `executemany`
calls of 1,000 rows, as many asyncpg `executemany` calls of 1,000 rows (each client on a
connection of its own, opened for the round), then `--singles` prepared autocommit
single-row INSERTs. CPU is the server process's user + system time (`/proc`; with workers,
of all its processes: a connection a worker relays costs both) over each part; reported:
medians of the rounds, per row (per statement for the single INSERTs), with the psycopg
calls' rate and the client's own CPU per row. CPU time, unlike rates, is little moved by
other work on a shared machine.

    python -m benchmarks executemany_cpu --checkout . --baseline ../main --rounds 9
    python -m benchmarks executemany_cpu --checkout . --baseline ../main --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time

from benchmarks import suite

INSERT = "INSERT INTO t VALUES ({}, {}, {})"
CALLS, ROWS = 3, 1000  # calls a round (`--calls`), rows a call
_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the server used so far: its process, and with workers
    its descendants too."""
    if suite.SERVER_ARGS != ["--workers", "0"]:
        return suite.cpu_of(pid)
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _psycopg_round(dsn: str, pid: int, first: int, calls: int) -> dict:
    """On a connection of its own, as asyncpg's: one that only runs executemany."""
    import psycopg

    sql = INSERT.format("%s", "%s", "%s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        cpu, wall, client = server_cpu(pid), time.perf_counter(), time.process_time()
        for k in range(calls):
            conn.cursor().executemany(sql, [(first + k * ROWS + i, 1, "y")
                                            for i in range(ROWS)])
    rows = calls * ROWS
    return {"psycopg executemany, server µs/row": (server_cpu(pid) - cpu) / rows * 1e6,
            "psycopg executemany, client µs/row": (time.process_time() - client) / rows * 1e6,
            "psycopg executemany, rows/s": rows / (time.perf_counter() - wall)}


def _asyncpg_round(dsn: str, pid: int, first: int, calls: int) -> float:
    import asyncpg

    async def run() -> float:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT 1")
            cpu = server_cpu(pid)
            for k in range(calls):
                await conn.executemany(INSERT.format("$1", "$2", "$3"), [
                    (first + k * ROWS + i, 1, "y") for i in range(ROWS)])
            return (server_cpu(pid) - cpu) / (calls * ROWS) * 1e6
        finally:
            await conn.close()
    return asyncio.run(run())


def _singles_round(conn, pid: int, first: int, count: int) -> float:
    sql = INSERT.format("%s", "%s", "%s")
    cpu = server_cpu(pid)
    for i in range(count):
        conn.execute(sql, (first + i, 1, "y"), prepare=True)
    return (server_cpu(pid) - cpu) / count * 1e6


def measure(checkouts: dict[str, str], rounds: int, singles: int,
            workers: int = 0, calls: int = CALLS) -> dict[str, dict]:
    import psycopg

    suite.SERVER_ARGS[:] = ["--workers", str(workers)]
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(suite.sqlvec_server(tempfile.mkdtemp(), path))
                   for name, path in checkouts.items()}
        conns = {}
        for name, (dsn, _pid) in servers.items():
            conn = conns[name] = stack.enter_context(psycopg.connect(dsn, autocommit=True))
            conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, v int, s text)")
            conn.execute(INSERT.format("%s", "%s", "%s"), (0, 0, "w"), prepare=True)
        parts: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
        order, next_id = list(servers), 1
        for _ in range(rounds):
            order.reverse()
            for name in order:
                dsn, pid = servers[name]
                got = _psycopg_round(dsn, pid, next_id, calls)
                got["asyncpg executemany, server µs/row"] = _asyncpg_round(
                    dsn, pid, next_id + calls * ROWS, calls)
                got["single INSERT, server µs/statement"] = _singles_round(
                    conns[name], pid, next_id + 2 * calls * ROWS, singles)
                for key, value in got.items():
                    parts[name].setdefault(key, []).append(value)
            next_id += 2 * calls * ROWS + singles
    return {name: {key: statistics.median(values) for key, values in got.items()}
            for name, got in parts.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks executemany_cpu",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", default=".", help="the checkout measured (after)")
    parser.add_argument("--baseline", required=True, help="the checkout compared (before)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--singles", type=int, default=900,
                        help="single-row INSERTs per round (default 900)")
    parser.add_argument("--workers", type=int, default=0,
                        help="the servers' worker processes (default 0)")
    parser.add_argument("--calls", type=int, default=CALLS,
                        help=f"executemany calls of {ROWS:,} rows per round and client "
                             f"(default {CALLS}; CPU is counted in 10 ms ticks)")
    args = parser.parse_args(argv)
    got = measure({"after": args.checkout, "before": args.baseline}, args.rounds, args.singles,
                  args.workers, args.calls)
    print(f"| medians of {args.rounds} rounds | after | before | after / before |")
    print("|---|---|---|---|")
    for key in got["after"]:
        after, before = got["after"][key], got["before"][key]
        print(f"| {key} | {after:,.1f} | {before:,.1f} | {after / before:.2f} |")
    return 0
