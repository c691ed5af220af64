"""SQL-layer overhead, in process (no wire): what parsing, planning, execution and Arrow
shaping add on top of the raw work, measured against that raw work in the same run.

1. A cached `SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10` over N x d rows in one sealed,
   HNSW-indexed segment, via Session.run, against hnswlib's knn_query on the very same index
   object at the same ef: median microseconds added per query.
2. `SELECT count(*), category FROM t GROUP BY category` over M rows, against pyarrow's own
   Table.group_by on the same Arrow table: median time ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa


def median_us(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def vector_overhead(rows: int, dim: int, queries: int, ef: int) -> dict:
    from benchmarks.datasets import Clustered
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    data = Clustered(rows, dim)
    vectors = data.all()
    qs = data.queries(queries)
    tmp = tempfile.mkdtemp(prefix="sqlvec-overhead-")
    try:
        db = Database.open(tmp, options=StoreOptions(seal_rows=rows + 1, background=False))
        s = db.connect()
        s.execute_one(f"CREATE TABLE t (id bigint PRIMARY KEY, emb vector({dim}))")
        s.copy_in("t", None, pa.table({
            "id": np.arange(rows, dtype=np.int64),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)}))
        s.execute_one("CREATE INDEX t_emb ON t USING hnsw (emb vector_l2_ops)")
        s.execute_one(f"SET hnsw.ef_search = {ef}")
        prepared = s.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10")
        index = db.store().tables[1].snapshot().sealed[0].data.index("t_emb")
        raw = index._index  # the very same hnswlib object the engine searches
        raw.set_ef(ef)
        ours, theirs = [], []
        for q in qs:
            ours.append(median_us(lambda q=q: s.run(prepared, [q]), 3))
            theirs.append(median_us(lambda q=q: raw.knn_query(q, k=10, num_threads=1), 3))
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sqlvec_us": float(np.median(ours)), "hnswlib_us": float(np.median(theirs)),
            "added_us": float(np.median(np.array(ours) - np.array(theirs)))}


def group_by_ratio(rows: int) -> dict:
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    rng = np.random.default_rng(1)
    table = pa.table({"id": np.arange(rows, dtype=np.int64),
                      "category": rng.integers(0, 100, rows).astype(np.int32)})
    tmp = tempfile.mkdtemp(prefix="sqlvec-groupby-")
    try:
        db = Database.open(tmp, options=StoreOptions(seal_rows=rows + 1, background=False))
        s = db.connect()
        s.execute_one("CREATE TABLE t (id bigint, category int)")
        s.copy_in("t", None, table)
        s.execute_one("CHECKPOINT")
        prepared = s.prepare("SELECT count(*), category FROM t GROUP BY category")
        ours = median_us(lambda: s.run(prepared, []), 7)
        theirs = median_us(lambda: table.group_by("category").aggregate([([], "count_all")]), 7)
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sqlvec_ms": ours / 1e3, "pyarrow_ms": theirs / 1e3, "ratio": ours / theirs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks sql", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--ef", type=int, default=40)
    p.add_argument("--group-rows", type=int, default=1_000_000)
    args = p.parse_args(argv)
    v = vector_overhead(args.rows, args.dim, args.queries, args.ef)
    print(f"vector top-10 ({args.rows:,} x {args.dim}, ef {args.ef}): Session.run median "
          f"{v['sqlvec_us']:.0f} us, hnswlib knn_query {v['hnswlib_us']:.0f} us, "
          f"added {v['added_us']:.0f} us per query")
    g = group_by_ratio(args.group_rows)
    print(f"GROUP BY over {args.group_rows:,} rows: sqlvec {g['sqlvec_ms']:.1f} ms, pyarrow "
          f"{g['pyarrow_ms']:.1f} ms, ratio {g['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
