"""Reads of another table while an autocommit schema change rewrites a table: `ALTER TABLE t
ALTER COLUMN n TYPE bigint` (--change type) or `TRUNCATE t` (--change truncate) of --rows
rows, beside a connection reading `SELECT n FROM u` in a loop. Per checkout, taking turns:
the change's time and the latencies of the reads that overlapped it (p50, p99, max; what a
change holding more than its table costs other tables' readers), medians over --rounds.

    python -m benchmarks ddl_beside --rows 400000 --rounds 3 --change type \
        --checkout . --baseline <checkout>
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from benchmarks.suite import in_turns, turn_arguments

CHANGES = {"type": "ALTER TABLE t ALTER COLUMN n TYPE bigint", "truncate": "TRUNCATE t"}


def one_round(dsn: str, rows: int, change: str) -> tuple[float, list[float]]:
    """(the change's seconds, the seconds of each read of u that overlapped it)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t, u")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO u VALUES (1, 1)")
        conn.execute(f"INSERT INTO t SELECT g, g FROM generate_series(1, {rows}) g")
        conn.execute("CHECKPOINT")
    done = threading.Event()
    reads: list[tuple[float, float]] = []  # (start, end)

    def read() -> None:
        with psycopg.connect(dsn, autocommit=True) as reader:
            while not done.is_set():
                started = time.perf_counter()
                reader.execute("SELECT n FROM u").fetchall()
                reads.append((started, time.perf_counter()))
    thread = threading.Thread(target=read)
    with psycopg.connect(dsn, autocommit=True) as conn:
        thread.start()
        time.sleep(0.2)
        started = time.perf_counter()
        conn.execute(CHANGES[change])
        ended = time.perf_counter()
    done.set()
    thread.join()
    return ended - started, [e - s for s, e in reads if e > started and s < ended]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(rounds: list[tuple[float, list[float]]]) -> tuple[float, float, float, float, int]:
    """Medians over the rounds of: the change's s, the overlapping reads' p50, p99, max (s),
    and their count."""
    return (statistics.median(r[0] for r in rounds),
            statistics.median(percentile(r[1], 0.5) for r in rounds),
            statistics.median(percentile(r[1], 0.99) for r in rounds),
            statistics.median(max(r[1], default=0.0) for r in rounds),
            int(statistics.median(len(r[1]) for r in rounds)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--change", choices=sorted(CHANGES), default="type")
    turn_arguments(parser)
    args = parser.parse_args(argv)
    results = in_turns(args.rounds, {"baseline": args.baseline, "checkout": args.checkout},
                       lambda dsn: one_round(dsn, args.rows, args.change))
    print(f"{CHANGES[args.change]}, {args.rows} rows; reads of u overlapping it (ms)")
    print(f"{'':10} {'change s':>9} {'p50':>8} {'p99':>8} {'max':>8} {'reads':>6}")
    for name, got in results.items():
        took, p50, p99, top, count = summary(got)
        print(f"{name:10} {took:9.3f} {p50 * 1000:8.2f} {p99 * 1000:8.2f} {top * 1000:8.2f} "
              f"{count:6d}")
    print("raw:", {name: [(round(t, 3), round(max(r, default=0.0), 3), len(r)) for t, r in got]
                   for name, got in results.items()})


if __name__ == "__main__":
    main()
