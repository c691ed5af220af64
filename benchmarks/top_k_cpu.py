"""CPU time per prepared binary top-10 round trip of a checkout's server, against a baseline's.

One thread drives the server's own `Connection` over a socketpair (the `profile` harness:
Bind, Describe, Execute, Sync of `SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10`, 20,000 x
128 clustered vectors, HNSW, ef_search 40) and counts process CPU time, which the other work
on a shared machine moves less than wall time. The two checkouts take turns, one process
each per turn, on the same copy of one data directory (an index built once: a graph built
again would search another way), pinned to one CPU (`--cpu`) so a turn does not depend on
where the scheduler puts it.

    python -m benchmarks top-k-cpu --baseline <checkout> --turns 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROUND_TRIPS = 2000


def measure(source: str, reps: int) -> list[float]:
    """us of CPU per round trip, `reps` times, in this process (the checkout on sys.path)."""
    from benchmarks.datasets import Clustered
    from benchmarks.wire_profile import VECTOR_SQL, Harness, prepared_round_trip
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions
    from wire.messages import Parse, Query, Sync

    tmp = tempfile.mkdtemp(prefix="sqlvec-topk-cpu-")
    try:
        shutil.copytree(source, f"{tmp}/data")
        db = Database.open(f"{tmp}/data", options=StoreOptions(fsync=False))
        h = Harness(db)
        h.round_trip(Query("SET hnsw.ef_search = 40").encode(), 1)
        h.round_trip(Parse("v", VECTOR_SQL, (0,)).encode() + Sync().encode(), 2)
        trips = [prepared_round_trip("v", (struct.pack("!HH", q.size, 0)
                                           + q.astype(">f4").tobytes(),))
                 for q in Clustered(20_000, 128).queries(100)]
        for i in range(500):
            h.round_trip(trips[i % len(trips)], 4)
        out = []
        for _ in range(reps):
            start = time.process_time()
            for i in range(ROUND_TRIPS):
                h.round_trip(trips[i % len(trips)], 4)
            out.append((time.process_time() - start) / ROUND_TRIPS * 1e6)
        h.close()
        db.close()
        return out
    finally:
        shutil.rmtree(tmp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks top-k-cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", default=os.getcwd(), help="the checkout measured (default: here)")
    p.add_argument("--baseline", required=True, help="the checkout it is compared with")
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--reps", type=int, default=3, help="measurements per turn (median kept)")
    p.add_argument("--cpu", type=int, default=1, help="the CPU both are pinned to")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # (a turn's child: its data copy)
    args = p.parse_args(argv)
    if args.measure:
        print(" ".join(f"{x:.2f}" for x in measure(args.measure, args.reps)))
        return 0
    from benchmarks.datasets import Clustered
    from benchmarks.wire_overhead import build_directory

    source = tempfile.mkdtemp(prefix="sqlvec-topk-cpu-src-")
    try:
        build_directory(f"{source}/data", Clustered(20_000, 128).all())
        turns: dict[str, list[float]] = {"after": [], "before": []}
        for turn in range(args.turns):
            for label, checkout in (("before", args.baseline), ("after", args.code)):
                # This file's `measure`, over the checkout's packages (the baseline may not
                # have this benchmark).
                child_argv = ["top-k-cpu", "--baseline", "-", "--reps", str(args.reps),
                              "--measure", f"{source}/data"]
                child = (f"import runpy, sys; sys.argv = {child_argv!r}; "
                         f"runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
                done = subprocess.run(
                    ["taskset", "-c", str(args.cpu), sys.executable, "-c", child],
                    cwd=checkout, capture_output=True, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": checkout})
                reps = [float(x) for x in done.stdout.split()]
                turns[label].append(statistics.median(reps))
                print(f"turn {turn + 1} {label}: {reps} us CPU per round trip", flush=True)
        before, after = statistics.median(turns["before"]), statistics.median(turns["after"])
        print(f"median of turns: before {before:.1f} us, after {after:.1f} us, "
              f"after / before {after / before:.2f}")
    finally:
        shutil.rmtree(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
