"""Filters on a float column, with and without NaN among its values, two checkouts in turns.

    python -m benchmarks float_filters [--rows 1000000] [--reps 15] [--rounds 3]
                                       [--checkout DIR] [--baseline DIR]

Each checkout runs in its own process (its code on PYTHONPATH) holding an in-process database
with two tables of `--rows` rows (id int, price float8): in one no price is NaN, in the other
1% are. The parent asks the processes in turns, `--rounds` times, to run each query `--reps`
times (prepared, bound with $1) and prints each checkout's median milliseconds per query and
the ratio: what PostgreSQL's NaN order (a NaN mask on top of Arrow's comparison, only where a
float operand holds a NaN) costs a scan's filter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUERIES = {
    "int  id > $1": ("plain", "SELECT count(*) FROM plain WHERE id > $1", 10),
    "float price > $1, no NaN": ("plain", "SELECT count(*) FROM plain WHERE price > $1", 0.5),
    "float price > $1, 1% NaN": ("nans", "SELECT count(*) FROM nans WHERE price > $1", 0.5),
    "float BETWEEN, 1% NaN": ("nans", "SELECT count(*) FROM nans WHERE price BETWEEN $1::float8 "
                              "AND 0.9", 0.5),
}


def _serve(rows: int, reps: int) -> None:
    """The child: load the tables, then answer each request line with median ms per query."""
    import numpy as np
    import pyarrow as pa

    from sqlvec.database import Database

    db = Database.open(tempfile.mkdtemp(prefix="float-filters-"))
    s = db.connect()
    prices = np.random.default_rng(1).random(rows)
    for name, nan_every in (("plain", 0), ("nans", 100)):
        s.execute_one(f"CREATE TABLE {name} (id int, price float8)")
        values = prices.copy()
        if nan_every:
            values[::nan_every] = np.nan
        s.copy_in(name, None, pa.table({"id": np.arange(rows, dtype=np.int32), "price": values}))
    statements = {label: (s.prepare(sql), bound) for label, (_, sql, bound) in QUERIES.items()}
    print("ready", flush=True)
    for _ in sys.stdin:
        out = {}
        for label, (statement, bound) in statements.items():
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                s.run(statement, [bound]).rows()
                times.append((time.perf_counter() - start) * 1000)
            out[label] = statistics.median(times)
        print(json.dumps(out), flush=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks float_filters")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--checkout", default=".")
    p.add_argument("--baseline")
    args = p.parse_args(argv)
    dirs = {"baseline": args.baseline, "checkout": args.checkout} if args.baseline \
        else {"checkout": args.checkout}
    children = {name: subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", str(args.rows), str(args.reps)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=checkout,
        env=dict(os.environ, PYTHONPATH=os.path.abspath(checkout))) for name, checkout in dirs.items()}
    for child in children.values():
        assert child.stdout.readline().strip() == "ready"
    results: dict[str, dict[str, list[float]]] = {name: {} for name in children}
    for _ in range(args.rounds):
        for name, child in children.items():
            child.stdin.write("go\n")
            child.stdin.flush()
            for label, ms in json.loads(child.stdout.readline()).items():
                results[name].setdefault(label, []).append(ms)
    for child in children.values():
        child.stdin.close()
        child.wait()
    print(f"{args.rows} rows, medians of {args.rounds} rounds x {args.reps} runs (ms per query)")
    print("| query | " + " | ".join(children) + (" | ratio |" if len(children) == 2 else " |"))
    for label in QUERIES:
        medians = {name: statistics.median(results[name][label]) for name in children}
        ratio = f" {medians['checkout'] / medians['baseline']:.2f} |" if len(children) == 2 else ""
        print(f"| {label} | " + " | ".join(f"{m:.2f}" for m in medians.values()) + f" |{ratio}")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    del sys.path[0]  # this file's directory: the checkout's packages come from PYTHONPATH
    _serve(int(sys.argv[2]), int(sys.argv[3]))
elif __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
