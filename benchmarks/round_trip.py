"""The fixed cost of one statement through real servers, side by side in one run.

Servers: `python -m sqlvec serve` of each checkout given (`--checkout DIR`, repeatable: the
code a server runs is the checkout's, through PYTHONPATH; default: this one), and, with
`--pgserver DIR`, PostgreSQL from the pgserver package (over loopback TCP, as sqlvec). Each is
asked `SELECT 1` (or `--sql`) by three clients: psycopg with a prepared statement
(`prepare=True`: Bind, Describe, Execute, Sync per round trip), psycopg in the simple protocol
(`prepare=False`: one Query message, as psql sends it), a bare socket client sending the prepared statement's
messages pre-encoded (`wire_overhead.RawClient`, no driver in the way) and the same client
sending the statement's Parse too each time (`parse`: the unnamed statement, as a driver that
does not keep it prepared does). `--setup` runs once on each server first (a table to read). Servers and clients take turns
by blocks of rounds, so all meet the same load on a shared machine. With `--param VALUE`
(repeatable: $1, $2, ...; a Python literal, else a string) the statement's parameters are
bound as psycopg binds them: psycopg is given `%s` for each `$n`, the bare client sends the
type OIDs, bytes and formats psycopg's adapters make of the values (`SELECT $1::int` with
`--param 1` is the suite's `cur.execute("SELECT %s::int", (1,), prepare=True)`); psycopg's
`simple` client then sends the unnamed statement's Parse each time, as a driver does for
parameters outside `prepare=True`. `--vary N`: $1 (an integer) takes N values in turn, one
more each round trip, so no answer is the one before.

Reported per server and client: median and 10th percentile microseconds per round trip (the
latter the least disturbed by other processes taking the CPU), round trips per second,
the server's CPU time per round trip (the run time of the serving process and its worker
processes, all their threads, from /proc/PID/task/*/schedstat; the median over blocks): what a round trip costs the server
itself, the figure least disturbed by other work on the machine, and the time the server's
threads spent runnable but waiting for a CPU (the same accounts, median over blocks): what
other work on a shared machine adds. Each turn starts with 20 round trips whose server CPU is
reported apart: the first after a pause, in caches the other servers have filled.

    python -m benchmarks round_trip --pgserver /tmp/pg
    python -m benchmarks round_trip --checkout ../main --checkout . --pgserver /tmp/pg
    python -m benchmarks round_trip --checkout ../main --checkout . --workers 0
    python -m benchmarks round_trip --checkout ../main --checkout . --workers 0 \
        --setup "CREATE TABLE t (id int PRIMARY KEY, n int); INSERT INTO t VALUES (1, 1)" \
        --sql "SELECT n FROM t WHERE id = 1"
    python -m benchmarks round_trip --checkout ../main --checkout . --sql 'SELECT $1::int' \
        --param 1
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from benchmarks.suite import SERVER_ARGS, sqlvec_server
from benchmarks.wire_overhead import RawClient

WARM = 20  # untimed round trips at the start of each turn
CLIENTS = ("psycopg", "simple", "raw", "parse")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: a server's worker processes (`--workers`) answer reads
    themselves, so their run time is the server's as much as the primary's."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(parents.get(tree[-1], ()))
    return tree


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """Seconds the processes (all their threads) ran on a CPU, and seconds their threads
    waited for one while runnable: the scheduler's own accounts (/proc/PID/task/*/schedstat),
    with nanoseconds' resolution."""
    ran = waited = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:  # a process that just ended
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    fields = f.read().split()
            except FileNotFoundError:  # a thread that just ended
                continue
            ran += int(fields[0])
            waited += int(fields[1])
    return ran / 1e9, waited / 1e9


def backend_pid(raw: RawClient) -> int:
    from wire.messages import Query

    for kind, body in raw.run(Query("SELECT pg_backend_pid()").encode()):
        if kind == b"D":
            return int(body[6:])
    raise RuntimeError("no backend pid")


def literal(text: str) -> object:
    """A `--param` value: a Python literal (`1`, `2.5`, `None`, `'x'`), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def as_psycopg(sql: str, params: list) -> tuple[str, tuple]:
    """`sql` with each `$n` written as psycopg's `%s`, and the values in that order."""
    order: list[int] = []

    def placeholder(match: re.Match) -> str:
        order.append(int(match.group(1)) - 1)
        return "%s"

    return re.sub(r"\$(\d+)", placeholder, sql.replace("%", "%%")), \
        tuple(params[i] for i in order)


def psycopg_binding(conn, params: list) -> tuple[tuple[int, ...], list, tuple[int, ...]]:
    """The parameters as psycopg binds them: their type OIDs, bytes and format codes."""
    from psycopg.adapt import PyFormat, Transformer

    tx = Transformer.from_context(conn)
    values = tx.dump_sequence(params, [PyFormat.AUTO] * len(params))
    return tuple(tx.types or ()), [None if v is None else bytes(v) for v in values], \
        tuple(int(f) for f in tx.formats or ())


def bound_round_trip(name: str, values: list, formats: tuple[int, ...]) -> bytes:
    """Bind (results in binary), Describe portal, Execute, Sync: a bare client's run."""
    from wire.messages import Bind, Describe, Execute, Sync

    return (Bind("", name, formats, tuple(values), (1,)).encode() + Describe("P", "").encode()
            + Execute("", 0).encode() + Sync().encode())


class Target:
    """One server and its two clients."""

    def __init__(self, label: str, dsn: str, pid: int | None, sql: str = "SELECT 1",
                 setup: str = "", params: list | None = None, vary: int = 1) -> None:
        import psycopg

        from wire.messages import Parse

        self.label = label
        params = params or []
        # Each round trip binds the next of these ($1, an integer, stepping by one: `--vary`).
        bindings = [[params[0] + k, *params[1:]] for k in range(vary)] if vary > 1 else \
            [params]
        self.sql = as_psycopg(sql, params)[0] if params else sql
        self.params = [as_psycopg(sql, p)[1] if p else None for p in bindings]
        self.turn = 0
        self.conn = psycopg.connect(dsn, autocommit=True)
        if setup:
            self.conn.execute(setup.encode())  # (bytes: several statements, one Query)
        self.cur = self.conn.cursor()
        host, port = dsn.rsplit("@", 1)[1].split("/")[0].split(":")
        self.raw = RawClient(host, int(port))
        # PostgreSQL serves each connection from a process of its own: that process is timed.
        self.pids = {"psycopg": pid, "simple": pid, "raw": pid} if pid is not None else {
            "psycopg": self.conn.execute("SELECT pg_backend_pid()").fetchone()[0],
            "raw": backend_pid(self.raw)}
        self.pids["simple"] = self.pids["psycopg"]
        self.pids["parse"] = self.pids["raw"]
        oids = psycopg_binding(self.conn, params)[0]
        self.raw.prepare("s1", sql, oids)
        self.raw_bytes, self.parse_bytes = [], []
        for p in bindings:  # as psycopg sends them
            _, values, formats = psycopg_binding(self.conn, p)
            self.raw_bytes.append(bound_round_trip("s1", values, formats))
            self.parse_bytes.append(Parse("", sql, oids).encode()
                                    + bound_round_trip("", values, formats))
        self.times: dict[str, list[np.ndarray]] = {c: [] for c in CLIENTS}
        # Per block: the server's CPU seconds and its seconds waiting for a CPU.
        self.cpu: dict[str, list[float]] = {c: [] for c in CLIENTS}
        self.waited: dict[str, list[float]] = {c: [] for c in CLIENTS}
        self.cold: dict[str, list[float]] = {c: [] for c in CLIENTS}  # first WARM
        self.wall: dict[str, float] = {c: 0.0 for c in CLIENTS}

    def next_turn(self) -> int:
        """Which binding the next round trip sends (always the first without `--vary`)."""
        self.turn = (self.turn + 1) % len(self.params)
        return self.turn

    def psycopg_once(self) -> None:
        self.cur.execute(self.sql, self.params[self.next_turn()], prepare=True)
        self.cur.fetchall()

    def simple_once(self) -> None:
        self.cur.execute(self.sql, self.params[self.next_turn()], prepare=False)
        self.cur.fetchall()

    def raw_once(self) -> None:
        self.raw.run(self.raw_bytes[self.next_turn()])

    def parse_once(self) -> None:
        self.raw.run(self.parse_bytes[self.next_turn()])

    def block(self, client: str, rounds: int) -> None:
        """`rounds` timed round trips, after WARM untimed ones: the server has sat idle while
        the others took their turns, and its first round trips after a pause run in caches
        the others have filled (their CPU is kept apart, as `cold`)."""
        fn = {"psycopg": self.psycopg_once, "simple": self.simple_once,
              "raw": self.raw_once, "parse": self.parse_once}[client]
        times = np.empty(rounds)
        pids = process_tree(self.pids[client])
        cold0 = cpu_seconds(pids)[0]
        for _ in range(WARM):
            fn()
        cpu0, wall0 = cpu_seconds(pids), time.perf_counter()
        self.cold[client].append((cpu0[0] - cold0) / WARM)
        for i in range(rounds):
            start = time.perf_counter()
            fn()
            times[i] = time.perf_counter() - start
        self.wall[client] += time.perf_counter() - wall0
        ran, waited = cpu_seconds(pids)
        self.cpu[client].append((ran - cpu0[0]) / rounds)
        self.waited[client].append((waited - cpu0[1]) / rounds)
        self.times[client].append(times)

    def close(self) -> None:
        self.raw.close()
        self.conn.close()


def run(targets: list[Target], rounds: int, block: int) -> str:
    for target in targets:  # warm up: plans cached, code paths hot
        for client in CLIENTS:
            target.block(client, 200)
            target.times[client].clear()
            target.cpu[client].clear()
            target.waited[client].clear()
            target.cold[client].clear()
            target.wall[client] = 0.0
    for _ in range(max(1, rounds // block)):
        for target in targets:
            for client in CLIENTS:
                target.block(client, block)
    lines = ["| server | client | median µs | p10 µs | round trips/s | server CPU µs per round "
             f"trip | the same, first {WARM} after a pause | server waiting for a CPU, µs per "
             "round trip |", "|---|---|---|---|---|---|---|---|"]
    for target in targets:
        for client in CLIENTS:
            times = np.concatenate(target.times[client])
            lines.append(f"| {target.label} | {client} | {np.median(times) * 1e6:,.0f} | "
                         f"{np.percentile(times, 10) * 1e6:,.0f} | "
                         f"{len(times) / target.wall[client]:,.0f} | "
                         f"{np.median(target.cpu[client]) * 1e6:,.1f} | "
                         f"{np.median(target.cold[client]) * 1e6:,.1f} | "
                         f"{np.median(target.waited[client]) * 1e6:,.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks round_trip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkout", action="append", default=[],
                   help="a source tree whose server to run (repeatable; default: this one)")
    p.add_argument("--pgserver", metavar="DIR", help="also PostgreSQL from pgserver in DIR")
    p.add_argument("--rounds", type=int, default=10_000, help="round trips per server and client")
    p.add_argument("--block", type=int, default=500, help="round trips per turn")
    p.add_argument("--sql", default="SELECT 1",
                   help="the statement (no parameters) every client runs: `SELECT 1 + 1`, say, "
                        "for one a server must run each time")
    p.add_argument("--param", action="append", default=[], type=literal, metavar="VALUE",
                   help="a parameter of the statement ($1, then $2, ...), bound as psycopg "
                        "binds it: a Python literal, else a string")
    p.add_argument("--vary", type=int, default=1, metavar="N",
                   help="$1 (an integer) takes N values in turn, one more each round trip")
    p.add_argument("--setup", default="",
                   help="statements run once on each server first (a table the statement reads)")
    p.add_argument("--workers", default=None, metavar="N",
                   help="serve --workers N (or auto) for the sqlvec servers (default: theirs)")
    args = p.parse_args(argv)
    if args.workers is not None:
        SERVER_ARGS[:] = ["--workers", str(args.workers)]
    checkouts = args.checkout or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    tmp = tempfile.mkdtemp(prefix="sqlvec-round-trip-")
    try:
        with contextlib.ExitStack() as stack:
            targets = []
            for i, checkout in enumerate(checkouts):
                dsn, pid = stack.enter_context(sqlvec_server(f"{tmp}/{i}", checkout))
                label = f"sqlvec ({os.path.basename(os.path.abspath(checkout))})" if len(checkouts) > 1 else "sqlvec"
                targets.append(stack.enter_context(contextlib.closing(
                    Target(label, dsn, pid, args.sql, args.setup, args.param, args.vary))))
            if args.pgserver:
                from benchmarks.writes import postgres

                dsn, _pid, label = stack.enter_context(postgres(args.pgserver))
                targets.append(stack.enter_context(contextlib.closing(
                    Target(label, dsn, None, args.sql, args.setup, args.param, args.vary))))
            print(run(targets, args.rounds, args.block))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
