"""Where the hybrid planner's crossovers come from: per-query time and recall of each way to
answer a filtered top-k on one indexed segment, at a range of selectivities, in one run.

Strategies measured on the same segment and queries:
- exact: BLAS over the eligible rows (sqlvec.vectors.top_k with the mask);
- hnsw-postfilter: the graph over-queried for k / selectivity x 2 and filtered in NumPy,
  widened until k survive (what sqlvec runs);
- hnsw-callback: hnswlib's own filter, a Python callable per visited node;
and what the planner chose (its cost model) for each selectivity.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from benchmarks.datasets import Clustered
    from sqlvec.storage.hnsw import HnswIndex, HnswParams
    from sqlvec.storage.search import SearchPolicy
    from sqlvec.vectors import Metric

    p = argparse.ArgumentParser(prog="python -m benchmarks hybrid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ef", type=int, default=40)
    args = p.parse_args(argv)
    data = Clustered(args.rows, args.dim)
    X = data.all()
    Q = data.queries(args.queries)
    index = HnswIndex.build(X, HnswParams(Metric.L2, 16, 64))
    rng = np.random.default_rng(0)
    policy = SearchPolicy()
    print(f"{args.rows:,} x {args.dim}, k={args.k}, ef={args.ef}, {args.queries} queries; "
          "median ms per query (recall@k vs exact)")
    print(f"{'selectivity':>11} {'eligible':>9} {'exact':>16} {'hnsw-postfilter':>16} "
          f"{'hnsw-callback':>16}  planner")
    for s in (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 0.5, 1.0):
        print(one_selectivity(s, X, Q, index, args, policy, rng))
    return 0


def one_selectivity(s, X, Q, index, args, policy, rng) -> str:
    """One table row: each strategy's median time (and recall) at selectivity `s`."""
    from sqlvec.vectors import Metric, top_k

    raw = index._index
    k = args.k
    mask = rng.random(args.rows) < s
    eligible = int(mask.sum())
    truth = [set(top_k(Metric.L2, X, q, k, mask)[0].tolist()) for q in Q]

    def measure(fn):
        times, recalls = [], []
        for q, t in zip(Q, truth):
            start = time.perf_counter()
            got = fn(q)
            times.append(time.perf_counter() - start)
            if t:
                recalls.append(len(t & set(np.asarray(got).tolist())) / len(t))
        return f"{np.median(times) * 1e3:7.3f} ({np.mean(recalls) if recalls else 1:.3f})"

    def exact(q):
        return top_k(Metric.L2, X, q, k, mask)[0]

    def postfilter(q):
        ask = min(args.rows, max(k, int(np.ceil(k / max(eligible / args.rows, 1e-9) * 2))))
        while True:
            found = index.search(q, ask, ef=max(args.ef, ask))
            if found is None:  # the graph came back short: sqlvec finishes exactly
                return exact(q)
            kept = found[0][mask[found[0]]]
            if kept.size >= min(k, eligible) or ask >= args.rows:
                return kept[:k]
            ask = min(args.rows, ask * 4)

    def callback(q):
        raw.set_ef(args.ef)
        try:
            labels, _ = raw.knn_query(q, k=min(k, eligible), filter=lambda label: mask[label])
            return labels[0]
        except RuntimeError:
            return []

    exact_cost = eligible * policy.exact_row_cost
    hnsw_cost = policy.index_label_cost * policy.overquery_factor * k / max(s, 1e-9)
    choice = "exact" if exact_cost <= hnsw_cost or eligible <= k else "hnsw-postfilter"
    if eligible == args.rows:
        choice = "hnsw"
    cb = measure(callback) if eligible >= 100 else "        (slow)"
    pf = measure(postfilter) if eligible >= k else "             -"
    return f"{s:>11.2%} {eligible:>9} {measure(exact):>16} {pf:>16} {cb:>16}  {choice}"


if __name__ == "__main__":
    sys.exit(main())
