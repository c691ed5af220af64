"""Writers of the same row at once: asyncpg `executemany` of `UPDATE k SET v = v + 1 WHERE id =
$1` for ids 1, 2, 3 (one implicit transaction a call) in a loop, beside a psycopg connection
running the same UPDATE of id 1 in autocommit. Per server, taking turns: the batches and single
updates a second, the errors of each kind, and whether the final values equal the committed
increments (no update lost, none applied twice).

    python -m benchmarks contention --seconds 4 --rounds 3 --baseline <checkout>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter

from benchmarks.writes import postgres, sqlvec, sqlvec_baseline

IDS = (1, 2, 3)


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS k")
        conn.execute("CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO k VALUES (1, 0), (2, 0), (3, 0)")


def one_turn(dsn: str, seconds: float) -> dict:
    """Both writers for `seconds`; their counts, errors by SQLSTATE, and the check."""
    import psycopg

    reset(dsn)
    stop = time.monotonic() + seconds
    errors: Counter = Counter()
    singles = [0]

    def autocommit_updater() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < stop:
                try:
                    conn.execute("UPDATE k SET v = v + 1 WHERE id = 1")
                    singles[0] += 1
                except psycopg.Error as exc:
                    errors[f"single {exc.sqlstate}"] += 1

    thread = threading.Thread(target=autocommit_updater)
    thread.start()
    batches = asyncio.run(_batches(dsn, stop, errors))
    thread.join()
    with psycopg.connect(dsn, autocommit=True) as conn:
        values = dict(conn.execute("SELECT id, v FROM k").fetchall())
    exact = values == {1: batches + singles[0], 2: batches, 3: batches}
    return {"batches_s": batches / seconds, "singles_s": singles[0] / seconds,
            "errors": dict(errors), "exact": exact}


async def _batches(dsn: str, stop: float, errors: Counter) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    done = 0
    try:
        while time.monotonic() < stop:
            try:
                await conn.executemany("UPDATE k SET v = v + 1 WHERE id = $1",
                                       [(i,) for i in IDS])
                done += 1
            except asyncpg.PostgresError as exc:
                errors[f"batch {exc.sqlstate}"] += 1
    finally:
        await conn.close()
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks contention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="per turn (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="turns per server (default 3)")
    parser.add_argument("--baseline", default=None, metavar="CHECKOUT",
                        help="also the sqlvec of this checkout, in the same rounds")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="contention-")
    runs: dict[str, list[dict]] = {}
    try:
        with contextlib.ExitStack() as stack:
            servers = {"sqlvec": stack.enter_context(sqlvec(os.path.join(directory, "s")))}
            if args.baseline:
                servers["baseline"] = stack.enter_context(
                    sqlvec_baseline(os.path.join(directory, "b"), args.baseline))
            if not args.no_postgres:
                servers["postgres"] = stack.enter_context(
                    postgres(os.path.join(directory, "pg")))
            for _ in range(args.rounds):
                for name, (dsn, _pid, _label) in servers.items():
                    runs.setdefault(name, []).append(one_turn(dsn, args.seconds))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("| server | batches/s | autocommit updates/s | errors (all turns) | exact |")
    print("|---|---|---|---|---|")
    for name, turns in runs.items():
        errors: Counter = Counter()
        for t in turns:
            errors.update(t["errors"])
        print(f"| {name} | {statistics.median(t['batches_s'] for t in turns):,.0f} | "
              f"{statistics.median(t['singles_s'] for t in turns):,.0f} | "
              f"{dict(errors) or 'none'} | {all(t['exact'] for t in turns)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
