"""CPU time per prepared binary top-10 round trip of a checkout's server, against a baseline's.

One thread drives the server's own `Connection` over a socketpair (the `profile` harness:
Bind, Describe, Execute, Sync of `SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10`, 20,000 x
128 clustered vectors, HNSW, ef_search 40) and counts process CPU time, which the other work
on a shared machine moves less than wall time. The two checkouts take turns, one process
each per turn, on the same copy of one data directory (an index built once: a graph built
again would search another way), pinned to one CPU (`--cpu`) so a turn does not depend on
where the scheduler puts it.

    python -m benchmarks top-k-cpu --baseline <checkout> --turns 6

`--instructions`: instructions executed per round trip instead (valgrind's callgrind, counted
only around the measured round trips; the search's distance computations included), which
other work on the machine does not move: a cut of a few per cent shows in one turn where CPU
time needs dozens. Valgrind runs the code ~50 times slower, so a turn measures
`--round-trips` (default 500) once.

    python -m benchmarks top-k-cpu --baseline <checkout> --turns 1 --instructions
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


def measure(source: str, reps: int, round_trips: int = ROUND_TRIPS,
            counted: bool = False) -> list[float]:
    """us of CPU per round trip, `reps` times, in this process (the checkout on sys.path);
    `counted`: this process runs under callgrind, told to count only while the round trips
    run (`callgrind_control`), and the figures are nothing but the rounds' order."""
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
            if counted:
                _callgrind("on")
            start = time.process_time()
            for i in range(round_trips):
                h.round_trip(trips[i % len(trips)], 4)
            out.append((time.process_time() - start) / round_trips * 1e6)
            if counted:
                _callgrind("off")
        h.close()
        db.close()
        return out
    finally:
        shutil.rmtree(tmp)


def _callgrind(state: str) -> None:
    """Turn callgrind's counting of this process on or off."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                   capture_output=True)


def _instructions(out_file: str) -> int:
    """The instructions a callgrind run counted (its output's totals)."""
    with open(out_file) as f:
        for line in f:
            if line.startswith("totals:"):  # (its `summary:` line may read 0)
                return int(line.split()[1])
    raise SystemExit(f"no totals in {out_file}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks top-k-cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", default=os.getcwd(), help="the checkout measured (default: here)")
    p.add_argument("--baseline", required=True, help="the checkout it is compared with")
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--reps", type=int, default=3, help="measurements per turn (median kept)")
    p.add_argument("--cpu", type=int, default=1, help="the CPU both are pinned to")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per round trip under callgrind instead")
    p.add_argument("--round-trips", type=int, default=500,
                   help="round trips a turn counts with --instructions")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # (a turn's child: its data copy)
    args = p.parse_args(argv)
    if args.measure:
        figures = measure(args.measure, 1, args.round_trips, True) if args.instructions \
            else measure(args.measure, args.reps)
        print(" ".join(f"{x:.2f}" for x in figures))
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
                              "--round-trips", str(args.round_trips), "--measure",
                              f"{source}/data"] + (["--instructions"] if args.instructions
                                                   else [])
                child = (f"import runpy, sys; sys.argv = {child_argv!r}; "
                         f"runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
                command = [sys.executable, "-c", child]
                counts = f"{source}/callgrind.out"
                if args.instructions:  # (the interpreter itself: `python` may be a shim)
                    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                               f"--callgrind-out-file={counts}",
                               os.path.realpath(sys.executable), "-c", child]
                done = subprocess.run(
                    ["taskset", "-c", str(args.cpu), *command],
                    cwd=checkout, capture_output=True, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": checkout})
                if args.instructions:
                    per_trip = _instructions(counts) / args.round_trips
                    turns[label].append(per_trip)
                    print(f"turn {turn + 1} {label}: {per_trip:,.0f} instructions per round "
                          f"trip", flush=True)
                    continue
                reps = [float(x) for x in done.stdout.split()]
                turns[label].append(statistics.median(reps))
                print(f"turn {turn + 1} {label}: {reps} us CPU per round trip", flush=True)
        before, after = statistics.median(turns["before"]), statistics.median(turns["after"])
        unit = "instructions" if args.instructions else "us"
        print(f"median of turns: before {before:,.1f} {unit}, after {after:,.1f} {unit}, "
              f"after / before {after / before:.3f}")
    finally:
        shutil.rmtree(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
