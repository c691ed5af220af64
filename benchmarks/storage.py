"""Storage engine benchmark: ingest, seal + HNSW build and memory, against raw hnswlib.

Each side runs in its own child process so that peak RSS belongs to it alone:
- sqlvec: append N rows (id int8 + vector) in batches through the embedded API with fsync on,
  then CREATE INDEX (seals the growing segment into Parquet and builds its HNSW graph);
- hnswlib: the same vectors, the same M / ef_construction and thread count, `add_items`.
Data are generated chunk by chunk from a seed on both sides (benchmarks/datasets.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_sqlvec(args: argparse.Namespace) -> dict:
    import pyarrow as pa

    from benchmarks.datasets import Clustered
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    data = Clustered(args.rows, args.dim)
    directory = tempfile.mkdtemp(prefix="sqlvec-bench-", dir=args.tmp)
    try:
        options = StoreOptions(seal_rows=args.rows + 1, seal_bytes=1 << 40,
                               index_threads=args.threads)
        db = Database.open(directory, options=options)
        baseline = rss_bytes()
        table = db.create_table("items", {"id": "int8", "embedding": f"vector({args.dim})"})
        batches = []
        next_id = 0
        for chunk in data.chunks(args.batch):
            ids = pa.array(np.arange(next_id, next_id + len(chunk), dtype=np.int64))
            emb = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), args.dim)
            batches.append(pa.table({"id": ids, "embedding": emb}))
            next_id += len(chunk)
        start = time.perf_counter()
        for batch in batches:
            table.insert(batch)
        ingest = time.perf_counter() - start
        del batches
        start = time.perf_counter()
        table.seal()
        seal = time.perf_counter() - start
        start = time.perf_counter()
        table.create_index("embedding", m=args.m, ef_construction=args.ef_construction)
        build = time.perf_counter() - start
        index_bytes = sum(r["memory_bytes"] for r in db.store().index_status())
        rss = rss_bytes()
        db.close()
        return {
            "ingest_rows_per_s": args.rows / ingest,
            "seal_s": seal,
            "index_build_s": build,
            "rss_bytes": rss,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak_rss_bytes(),
            "hnsw_bytes": index_bytes,
            "disk_bytes": _du(directory),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_hnswlib(args: argparse.Namespace) -> dict:
    import hnswlib

    from benchmarks.datasets import Clustered

    vectors = Clustered(args.rows, args.dim).all()
    index = hnswlib.Index(space="l2", dim=args.dim)
    before = rss_bytes()
    start = time.perf_counter()
    index.init_index(max_elements=args.rows, M=args.m, ef_construction=args.ef_construction)
    index.add_items(vectors, np.arange(args.rows), num_threads=args.threads or -1)
    build = time.perf_counter() - start
    return {"index_build_s": build, "rss_bytes": rss_bytes(), "peak_rss_bytes": peak_rss_bytes(),
            "vector_bytes": vectors.nbytes, "index_bytes": rss_bytes() - before}


def _du(directory: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _child(side: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.storage", "--side", side, *argv],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks storage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="hnswlib threads (0 = all cores)")
    p.add_argument("--repeat", type=int, default=1, help="runs per side; medians are reported")
    p.add_argument("--tmp", default=None, help="directory for the temporary data directory")
    p.add_argument("--side", choices=["sqlvec", "hnswlib"], help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.side:
        result = run_sqlvec(args) if args.side == "sqlvec" else run_hnswlib(args)
        print(json.dumps(result))
        return 0
    ours, theirs = [], []
    for i in range(args.repeat):
        print(f"[{i + 1}/{args.repeat}] sqlvec: {args.rows:,} x {args.dim} ...", file=sys.stderr)
        ours.append(_child("sqlvec", argv))
        print(f"[{i + 1}/{args.repeat}] raw hnswlib ...", file=sys.stderr)
        theirs.append(_child("hnswlib", argv))
    med = lambda rows, key: float(np.median([r[key] for r in rows]))  # noqa: E731
    # The limit: the raw vectors plus the memory raw hnswlib's index takes for the same data.
    limit = med(theirs, "vector_bytes") + med(theirs, "index_bytes")
    held = med(ours, "rss_bytes") - med(ours, "baseline_rss_bytes")
    report = {
        "rows": args.rows, "dim": args.dim, "m": args.m, "ef_construction": args.ef_construction,
        "sqlvec": ours, "hnswlib": theirs,
        "ingest_rows_per_s": med(ours, "ingest_rows_per_s"),
        "seal_s": med(ours, "seal_s"),
        "index_build_s": med(ours, "index_build_s"),
        "hnswlib_build_s": med(theirs, "index_build_s"),
        "build_ratio": (med(ours, "seal_s") + med(ours, "index_build_s")) / med(theirs, "index_build_s"),
        "rss_ratio": held / limit,
        "rss_above_baseline_bytes": held,
        "raw_vector_plus_graph_bytes": limit,
    }
    print(f"ingest into growing segment: {report['ingest_rows_per_s']:,.0f} rows/s (fsync on)")
    print(f"seal: {report['seal_s']:.2f} s; index build: {report['index_build_s']:.2f} s; "
          f"raw hnswlib build: {report['hnswlib_build_s']:.2f} s; "
          f"(seal+build)/hnswlib = {report['build_ratio']:.2f}")
    print(f"sqlvec RSS {med(ours, 'rss_bytes') / 2**20:,.0f} MiB, of which "
          f"{held / 2**20:,.0f} MiB above the empty database's "
          f"{med(ours, 'baseline_rss_bytes') / 2**20:,.0f} MiB = {report['rss_ratio']:.2f} x "
          f"(vectors + hnswlib index = {limit / 2**20:,.0f} MiB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
