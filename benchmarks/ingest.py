"""COPY FROM STDIN throughput, end to end through psycopg: sqlvec beside PostgreSQL + pgvector.

    python -m benchmarks copy --rows 100000 --rounds 3 --pgserver /tmp/pg-copy  # both systems
    python -m benchmarks copy --rows 100000 --rounds 3 --dsn postgresql://...   # any PostgreSQL
    python -m benchmarks copy --rows 100000 --only sqlvec                       # sqlvec alone

The table is `(id bigint, category int, embedding vector(DIM))`. Each round COPYs the same rows
into a fresh table on each system, one after the other (text, then binary), so a noisy machine
hits both alike; the report gives every round and the median rows/s per system and format.

`--mode stream` (default) prepares the COPY data before the clock starts (the text format as
PostgreSQL's `COPY ... TO STDOUT` would write it, the binary format as psycopg's binary dumpers
would) and writes it with `copy.write` in 1 MiB pieces, so the figure is the server's: first
byte sent to CommandComplete. After each COPY (outside the clock) a CHECKPOINT lets the work it
set off finish (sqlvec sealing the rows into a segment, PostgreSQL writing dirty pages), so one
run does not slow the next. `--mode rows` times psycopg's `write_row` per row with pgvector's
dumpers instead, where the client's Python (about 54 µs a row to format a 128-d vector as text)
dominates for both systems.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.suite import sqlvec_server

CHUNK = 1 << 20


def make_rows(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64)
    category = rng.integers(0, 100, n).astype(np.int32)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return ids, category, vectors


def text_stream(ids: np.ndarray, category: np.ndarray, vectors: np.ndarray) -> bytes:
    """The rows in COPY's text format: `id<TAB>category<TAB>[v1,v2,...]` per line, floats in
    shortest round-trip form."""
    n, d = vectors.shape
    floats = pc.cast(pa.array(vectors.reshape(-1)), pa.string())
    lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), floats)
    vec = pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    lines = pc.binary_join_element_wise(pc.cast(pa.array(ids), pa.string()),
                                        pc.cast(pa.array(category), pa.string()), vec, "\t")
    return ("\n".join(lines.to_pylist()) + "\n").encode()


def binary_stream(ids: np.ndarray, category: np.ndarray, vectors: np.ndarray) -> bytes:
    """The rows in COPY's binary format, as one NumPy structured array."""
    n, d = vectors.shape
    rec = np.zeros(n, dtype=[("count", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                             ("cat", ">i4"), ("l3", ">i4"), ("dim", ">u2"), ("unused", ">u2"),
                             ("v", ">f4", (d,))])
    rec["count"], rec["l1"], rec["id"], rec["l2"], rec["cat"] = 3, 8, ids, 4, category
    rec["l3"], rec["dim"], rec["v"] = 4 + 4 * d, d, vectors
    return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rec.tobytes() + b"\xff\xff"


def copy_once(dsn: str, fmt: str, mode: str, dim: int, data: bytes,
              rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """COPY the rows into a fresh table; rows/s from the first byte sent to CommandComplete."""
    import psycopg
    from pgvector.psycopg import register_vector

    table = f"copy_{fmt}"
    ids, category, vectors = rows
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id bigint, category int, embedding vector({dim}))")
        options = " WITH (FORMAT BINARY)" if fmt == "binary" else ""
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN{options}") as copy:
            if mode == "stream":
                view = memoryview(data)
                for at in range(0, len(view), CHUNK):
                    copy.write(view[at:at + CHUNK])
            else:
                if fmt == "binary":
                    copy.set_types(["int8", "int4", "vector"])
                for i in range(len(ids)):
                    copy.write_row((int(ids[i]), int(category[i]), vectors[i]))
        elapsed = time.perf_counter() - start
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        if count != len(ids):
            raise RuntimeError(f"{dsn}: {count} rows after COPY, expected {len(ids)}")
        conn.execute("CHECKPOINT")  # the background work COPY set off (sqlvec seals the rows
        conn.execute(f"DROP TABLE {table}")  # into a segment), done before the next run
    return len(ids) / elapsed


def run(args: argparse.Namespace) -> dict:
    rows = make_rows(args.rows, args.dim, args.seed)
    formats = args.formats.split(",")
    streams = {}
    if args.mode == "stream":
        streams = {"text": text_stream(*rows) if "text" in formats else b"",
                   "binary": binary_stream(*rows) if "binary" in formats else b""}
    results: dict = {"sqlvec": {f: [] for f in formats}, "postgresql": {f: [] for f in formats}}
    systems = [s for s in ("sqlvec", "postgresql") if args.only in (None, s)]
    if "postgresql" in systems and not (args.dsn or args.pgserver):
        systems.remove("postgresql")
    with tempfile.TemporaryDirectory(prefix="sqlvec-copy-") as tmp, contextlib.ExitStack() as stack:
        dsn = stack.enter_context(sqlvec_server(tmp))[0] if "sqlvec" in systems else None
        if args.pgserver and "postgresql" in systems:  # PostgreSQL over loopback TCP, as sqlvec
            from benchmarks.writes import postgres

            args.dsn = stack.enter_context(postgres(args.pgserver))[0]
        for round_ in range(args.rounds):
            for system in systems:
                target = dsn if system == "sqlvec" else args.dsn
                for fmt in formats:
                    rate = copy_once(target, fmt, args.mode, args.dim, streams.get(fmt, b""),
                                     rows)
                    results[system][fmt].append(rate)
                    print(f"round {round_ + 1} {system} {fmt}: {rate:,.0f} rows/s",
                          file=sys.stderr)
    return {"params": vars(args), "results": results,
            "bytes": {f: len(streams.get(f, b"")) for f in formats}}


def markdown(report: dict) -> str:
    p = report["params"]
    res = report["results"]
    lines = [f"COPY FROM STDIN, {p['rows']:,} rows x (id bigint, category int, "
             f"embedding vector({p['dim']})), mode {p['mode']}, median of {p['rounds']} rounds",
             "", "| format | sqlvec rows/s | PostgreSQL rows/s | ratio | rounds (sqlvec / PostgreSQL) |",
             "|---|---|---|---|---|"]
    for fmt in p["formats"].split(","):
        ours, theirs = res["sqlvec"][fmt], res["postgresql"][fmt]
        a = statistics.median(ours) if ours else None
        b = statistics.median(theirs) if theirs else None
        ratio = f"{a / b:.2f}" if a and b else "—"
        each = " / ".join(", ".join(f"{x / 1000:.0f}k" for x in xs) or "—" for xs in (ours, theirs))
        lines.append(f"| {fmt} | {a or 0:,.0f} | {b or 0:,.0f} | {ratio} | {each} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks copy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--formats", default="text,binary", help="comma-separated: text,binary")
    p.add_argument("--mode", choices=["stream", "rows"], default="stream")
    p.add_argument("--dsn", help="PostgreSQL + pgvector to compare with")
    p.add_argument("--pgserver", metavar="DIR",
                   help="start PostgreSQL + pgvector from the pgserver package in DIR (over "
                        "loopback TCP) to compare with")
    p.add_argument("--only", choices=["sqlvec", "postgresql"])
    p.add_argument("--seed", type=int, default=42)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    print(markdown(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
