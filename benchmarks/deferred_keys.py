"""CPU cost of writes in a block to a table with a DEFERRABLE INITIALLY DEFERRED unique key,
one checkout against another, turn by turn.

Such a key is checked at COMMIT, but each inserted row's value is still looked up as it is
buffered, to note whether it meets another (PostgreSQL queues its re-check then: a pending
trigger event that refuses TRUNCATE, ALTER TABLE, ... of the table). Cases, in one block
over a table of `--rows` committed rows: single-row INSERTs, an INSERT ... SELECT of 10,000
rows, single-row UPDATEs by key; each followed by a query, which runs INSERTs gathered so far.

    python -m benchmarks deferred_keys --checkout <after> --baseline <before> --turns 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FLUSH = "SELECT count(*) FROM u WHERE k = -5"  # (runs the INSERTs gathered so far)


def measure(rows: int, statements: int) -> dict[str, float]:
    """CPU ms of each case in this process's checkout."""
    import numpy as np
    import pyarrow as pa

    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="deferred-keys-bench-")
    out: dict[str, float] = {}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            s = db.connect()
            s.execute_one("CREATE TABLE u (id bigint, k bigint UNIQUE DEFERRABLE "
                          "INITIALLY DEFERRED)")
            ids = np.arange(rows)
            s.copy_in("u", None, pa.table({"id": ids, "k": ids}))
            s.execute_one("CHECKPOINT")
            db.wait_idle()
            insert = s.prepare("INSERT INTO u VALUES ($1, $2)", [20, 20])
            out["insert 1 row"] = _per_statement(
                s, statements, lambda i: s.run(insert, [rows + i, rows + i]))
            update = s.prepare("UPDATE u SET id = id + 1 WHERE k = $1", [20])
            out["update 1 row"] = _per_statement(s, statements, lambda i: s.run(update, [i]))
            many = s.prepare("INSERT INTO u SELECT g, g FROM generate_series($1, $2) g",
                             [20, 20])
            out["insert 10k rows"] = statistics.median(_per_statement(
                s, 1, lambda _i, r=r: s.run(many, [rows + r * 10_000, rows + r * 10_000 + 9_999]))
                for r in range(5))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _per_statement(s, statements: int, run) -> float:
    """CPU ms per statement of `run(i)` for i < statements in a block (rolled back)."""
    s.execute_one("BEGIN")
    start = time.process_time()
    for i in range(statements):
        run(i)
    s.execute_one(FLUSH)
    spent = time.process_time() - start
    s.execute_one("ROLLBACK")
    return spent / statements * 1e3


def _in_checkout(checkout: str, rows: int, statements: int) -> dict[str, float]:
    """`measure` run by a Python process importing sqlvec from `checkout` (this file runs
    as a script there: a baseline need not have it)."""
    env = dict(os.environ, PYTHONPATH=checkout)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure",
                           "--rows", str(rows), "--statements", str(statements)],
                          cwd=checkout, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks deferred_keys")
    parser.add_argument("--checkout", help="the checkout measured (after)")
    parser.add_argument("--baseline", help="the checkout compared with (before)")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.rows, args.statements)))
        return 0
    if not args.checkout or not args.baseline:
        parser.error("--checkout and --baseline are required")
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.turns):  # turn by turn, so both see the same load
        runs["before"].append(_in_checkout(args.baseline, args.rows, args.statements))
        runs["after"].append(_in_checkout(args.checkout, args.rows, args.statements))
    print(f"CPU ms per statement, median of {args.turns} turns ({args.rows} committed rows)")
    print(f"  {'case':<16} {'before':>8} {'after':>8} {'ratio':>6}")
    for case in runs["before"][0]:
        before = statistics.median(r[case] for r in runs["before"])
        after = statistics.median(r[case] for r in runs["after"])
        print(f"  {case:<16} {before:8.3f} {after:8.3f} {after / before:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
