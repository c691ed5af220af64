"""Multiple-column SET from a sub-SELECT, and nextval with and without CACHE: one checkout's
server against another's, turn by turn.

`UPDATE t SET (a, b, c) = (SELECT x, y, z FROM src ...)` over `--rows` rows: correlated
through an equality (the keyed form: one run, hash-joined), correlated otherwise (one run per
outer value, over 200 of the rows), and uncorrelated (one run); then `--calls` single `SELECT nextval(...)`
statements on a sequence with CACHE 1 and one with CACHE 20 (each a round trip).

    python -m benchmarks row_sources --checkout <after> --baseline <before> --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.suite import connect, in_turns, turn_arguments

UPDATES = {
    "SET (a,b,c) keyed": "UPDATE t SET (a, b, c) = (SELECT x, y, z FROM src WHERE src.k = t.k)",
    "SET (a,b,c) per value": "UPDATE t SET (a, b, c) = (SELECT x, y, z FROM src "
                             "WHERE src.k = t.k OR src.k = -t.k) WHERE t.k <= 200",
    "SET (a,b,c) once": "UPDATE t SET (a, b, c) = (SELECT x, y, z FROM src WHERE src.k = 7)",
}


def measure(dsn: str, rows: int, calls: int) -> dict[str, float]:
    """Seconds per statement of each case (median of 3; per call for nextval)."""
    out: dict[str, float] = {}
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE t (k int PRIMARY KEY, a int, b text, c float8)")
        conn.execute("CREATE TABLE src (k int, x int, y text, z float8)")
        conn.execute(f"INSERT INTO t SELECT g, 0, '', 0 FROM generate_series(1, {rows}) g")
        conn.execute("INSERT INTO src SELECT g, g * 2, 'v' || g, g / 3.0 "
                     f"FROM generate_series(1, {rows}) g")
        for name, sql in UPDATES.items():
            out[name] = _median_seconds(lambda sql=sql: conn.execute(sql))
        for cache in (1, 20):
            conn.execute(f"CREATE SEQUENCE s{cache} CACHE {cache}")
            sql = f"SELECT nextval('s{cache}')"
            out[f"nextval CACHE {cache}"] = _median_seconds(
                lambda sql=sql: [conn.execute(sql).fetchone() for _ in range(calls)]) / calls
    return out


def _median_seconds(run, times: int = 3) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks row_sources")
    turn_arguments(parser)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args(argv)
    runs = in_turns(args.rounds, {"before": args.baseline, "after": args.checkout},
                    lambda dsn: measure(dsn, args.rows, args.calls))
    print(f"median of {args.rounds} rounds, {args.rows} rows, {args.calls} nextval calls")
    print(f"  {'case':<22} {'before':>10} {'after':>10} {'ratio':>6}")
    for case in runs["before"][0]:
        before = statistics.median(r[case] for r in runs["before"])
        after = statistics.median(r[case] for r in runs["after"])
        unit = 1e6 if case.startswith("nextval") else 1e3
        print(f"  {case:<22} {before * unit:10.2f} {after * unit:10.2f} {after / before:6.2f}")
    print("  (UPDATE cases in ms per statement, nextval in µs per call)")
    return 0
