"""What a worker process pays to show a transaction block that changed the schema and wrote
to a large table: such a block commits by a manifest alone (no WAL record), so the worker
loads the table afresh from it. A table of --rows rows in sealed segments; then, --blocks
times, a block `CREATE TABLE z<i> (k int); <write>; COMMIT` where the write is one row's
DELETE (--write delete) or UPDATE (--write update), and right after it the first read of
the table by a worker (an autocommit `SELECT count(*)`, which waits for the worker to load
what the block committed). Per checkout, taking turns: medians of the COMMIT's time and of
that first read, and whether the worker's count was right every time.

    python -m benchmarks block_follow --rows 200000 --blocks 10 --rounds 3 --write delete \
        --checkout . --baseline <checkout>
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.suite import in_turns, turn_arguments

WRITES = {"delete": "DELETE FROM t WHERE id = {i}",
          "update": "UPDATE t SET n = -n WHERE id = {i}"}


def one_round(dsn: str, rows: int, blocks: int, write: str) -> tuple[list[float], list[float],
                                                                     bool]:
    """(each COMMIT's seconds, each first read's seconds, whether every count was right)."""
    import psycopg

    commits, reads, right = [], [], True
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        conn.execute(f"INSERT INTO t SELECT g, g FROM generate_series(1, {rows}) g")
        conn.execute("CHECKPOINT")
        expected = conn.execute("SELECT count(*) FROM t WHERE n > 0").fetchone()[0]
        for i in range(1, blocks + 1):
            conn.execute("BEGIN")
            conn.execute(f"CREATE TABLE z{i} (k int)")
            conn.execute(WRITES[write].format(i=i))
            started = time.perf_counter()
            conn.execute("COMMIT")
            committed = time.perf_counter()
            got = conn.execute("SELECT count(*) FROM t WHERE n > 0").fetchone()[0]
            reads.append(time.perf_counter() - committed)
            commits.append(committed - started)
            expected -= 1
            right = right and got == expected
    return commits, reads, right


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--write", choices=sorted(WRITES), default="delete")
    turn_arguments(parser)
    args = parser.parse_args(argv)
    results = in_turns(args.rounds, {"baseline": args.baseline, "checkout": args.checkout},
                       lambda dsn: one_round(dsn, args.rows, args.blocks, args.write))
    print(f"block: CREATE TABLE + {WRITES[args.write].format(i='i')} on {args.rows} sealed "
          f"rows; medians over {args.rounds} rounds x {args.blocks} blocks (ms)")
    print(f"{'':10} {'COMMIT':>9} {'1st read':>9} {'worker right':>13}")
    for name, got in results.items():
        commit = statistics.median(s for c, _r, _ok in got for s in c)
        read = statistics.median(s for _c, r, _ok in got for s in r)
        print(f"{name:10} {commit * 1000:9.1f} {read * 1000:9.1f} "
              f"{str(all(ok for _c, _r, ok in got)):>13}")


if __name__ == "__main__":
    main()
