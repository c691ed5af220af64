"""COPY FROM STDIN throughput, end to end through psycopg: sqlvec beside PostgreSQL + pgvector.

    python -m benchmarks copy --rows 100000 --rounds 3 --pgserver /tmp/pg-copy  # both systems
    python -m benchmarks copy --rows 100000 --rounds 3 --dsn postgresql://...   # any PostgreSQL
    python -m benchmarks copy --rows 100000 --only sqlvec                       # sqlvec alone
    python -m benchmarks copy --pgserver /tmp/pg-copy --baseline ../main         # before/after

Two table shapes (`--schema`, both by default): `basic` is `(id bigint, category int,
embedding vector(DIM))`; `suite` is the suite's COPY table, `(id bigint PRIMARY KEY, category
int, price float8, tag text, embedding vector(DIM))`, so its key check and its float and
variable-width text columns are measured too. Each round COPYs the same rows into a fresh
table on each system, one after the other (each shape, text then binary), so a noisy machine
hits both alike; the report gives every round and the median rows/s per system, shape and
format.

`--mode stream` (default) prepares the COPY data before the clock starts (the text format as
PostgreSQL's `COPY ... TO STDOUT` would write it, the binary format as psycopg's binary dumpers
would) and writes it with `copy.write` in 1 MiB pieces, so the figure is the server's: first
byte sent to CommandComplete. After each COPY (outside the clock) a CHECKPOINT lets the work it
set off finish (sqlvec sealing the rows into a segment, PostgreSQL writing dirty pages), so one
run does not slow the next. `--mode rows` times psycopg's `write_row` per row with pgvector's
dumpers instead, where the client's Python (about 54 µs a row to format a 128-d vector as text)
dominates for both systems. `--floats psycopg` writes the stream's vectors as that dumper does
(each float4 as Python's float: 17 digits, 2,546 bytes a suite row against 1,429), and
`--write-size 32768` sends it in CopyData of write_row's size, so the server's side of a
`write_row` COPY can be measured without the client's formatting. `--like-suite` runs the
suite's own sequence instead (fresh servers, one connection, text then binary; see
`benchmarks/copy_sequence.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import struct
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.suite import cpu_of, sqlvec_server

CHUNK = 1 << 20

# shape -> the table's columns as (name, SQL type, psycopg binary type); `{dim}` is the vector's
SCHEMAS = {
    "basic": [("id", "bigint", "int8"), ("category", "int", "int4"),
              ("embedding", "vector({dim})", "vector")],
    "suite": [("id", "bigint PRIMARY KEY", "int8"), ("category", "int", "int4"),
              ("price", "float8", "float8"), ("tag", "text", "text"),
              ("embedding", "vector({dim})", "vector")],
}
TAGS = ["red", "green", "blue", "black", "white"]  # as the suite's dataset


def make_rows(n: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """Every column any shape takes; a shape uses those it names."""
    rng = np.random.default_rng(seed)
    return {"id": np.arange(n, dtype=np.int64),
            "category": rng.integers(0, 100, n).astype(np.int32),
            "price": rng.random(n) * 1000,
            "tag": np.array(TAGS)[rng.integers(0, len(TAGS), n)],
            "embedding": rng.standard_normal((n, dim)).astype(np.float32)}


def _text_field(name: str, values: np.ndarray, floats: str = "shortest") -> pa.Array:
    if name == "embedding":
        n, d = values.shape
        flat = pa.array(values.reshape(-1))
        if floats == "psycopg":  # each float4 as the float8 holding it: 17 digits
            flat = flat.cast(pa.float64())
        floats = pc.cast(flat, pa.string())
        lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), floats)
        return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    return pc.cast(pa.array(values), pa.string())


def text_stream(rows: dict[str, np.ndarray], schema: str, floats: str = "shortest") -> bytes:
    """The rows in COPY's text format, tab-separated, floats in shortest round-trip form (as
    PostgreSQL's `COPY ... TO STDOUT` writes them), or the vectors' as pgvector's psycopg
    dumper writes them (`floats="psycopg"`: each float4 as Python's float, 17 digits)."""
    fields = [_text_field(name, rows[name], floats) for name, _, _ in SCHEMAS[schema]]
    lines = pc.binary_join_element_wise(*fields, "\t")
    return ("\n".join(lines.to_pylist()) + "\n").encode()


def _binary_field(name: str, values: np.ndarray) -> pa.Array:
    """Each row's field in COPY's binary format (size word, then the value) as large_binary."""
    n = len(values)
    if name == "tag":
        text = pa.array(values.tolist(), pa.large_binary())
        sizes = pc.binary_length(text).to_numpy().astype(">i4")
        words = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), n, [None, pa.py_buffer(
            sizes.tobytes())]).cast(pa.large_binary())
        return pc.binary_join_element_wise(words, text, pa.scalar(b"", pa.large_binary()))
    if name == "embedding":
        d = values.shape[1]
        rec = np.zeros(n, dtype=[("size", ">i4"), ("dim", ">u2"), ("unused", ">u2"),
                                 ("v", ">f4", (d,))])
        rec["size"], rec["dim"], rec["v"] = 4 + 4 * d, d, values
    else:
        kind = {"id": ">i8", "category": ">i4", "price": ">f8"}[name]
        rec = np.zeros(n, dtype=[("size", ">i4"), ("v", kind)])
        rec["size"], rec["v"] = rec.dtype["v"].itemsize, values
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(rec.dtype.itemsize), n, [
        None, pa.py_buffer(rec.tobytes())]).cast(pa.large_binary())


def binary_stream(rows: dict[str, np.ndarray], schema: str) -> bytes:
    """The rows in COPY's binary format, as psycopg's binary dumpers write them."""
    columns = SCHEMAS[schema]
    count = pa.scalar(struct.pack("!h", len(columns)), pa.large_binary())
    lines = pc.binary_join_element_wise(
        count, *[_binary_field(name, rows[name]) for name, _, _ in columns],
        pa.scalar(b"", pa.large_binary()))
    body = b"".join(lines.to_pylist())
    return b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + body + b"\xff\xff"


def copy_once(dsn: str, schema: str, fmt: str, mode: str, dim: int, data: bytes,
              rows: dict[str, np.ndarray], pid: int | None = None,
              write_size: int = CHUNK) -> tuple[float, float | None]:
    """COPY the rows into a fresh table; (rows/s from the first byte sent to CommandComplete,
    the CPU seconds the server `pid` used meanwhile, None without a pid)."""
    import psycopg
    from pgvector.psycopg import register_vector

    table = f"copy_{schema}_{fmt}"
    columns = SCHEMAS[schema]
    n = len(rows["id"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ("
                     + ", ".join(f"{name} {sql.format(dim=dim)}" for name, sql, _ in columns)
                     + ")")
        options = " WITH (FORMAT BINARY)" if fmt == "binary" else ""
        names = ", ".join(name for name, _, _ in columns)
        if mode == "rows":  # as the suite's loop hands them to psycopg
            values = [rows[name].tolist() if name != "embedding" else list(rows[name])
                      for name, _, _ in columns]
        cpu = cpu_of(pid) if pid is not None else None
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN{options}") \
                as copy:
            if mode == "stream":
                view = memoryview(data)
                for at in range(0, len(view), write_size):
                    copy.write(view[at:at + write_size])
            else:
                if fmt == "binary":
                    copy.set_types([kind for _, _, kind in columns])
                for row in zip(*values):
                    copy.write_row(row)
        elapsed = time.perf_counter() - start
        if cpu is not None:
            cpu = cpu_of(pid) - cpu
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        if count != n:
            raise RuntimeError(f"{dsn}: {count} rows after COPY, expected {n}")
        conn.execute("CHECKPOINT")  # the background work COPY set off (sqlvec seals the rows
        conn.execute(f"DROP TABLE {table}")  # into a segment), done before the next run
    return n / elapsed, cpu


def run(args: argparse.Namespace) -> dict:
    rows = make_rows(args.rows, args.dim, args.seed)
    formats = args.formats.split(",")
    schemas = args.schema.split(",")
    cases = [f"{schema} {fmt}" for schema in schemas for fmt in formats]
    streams = {}
    if args.mode == "stream":
        make = {"text": lambda r, s: text_stream(r, s, args.floats), "binary": binary_stream}
        streams = {case: make[case.split()[1]](rows, case.split()[0]) for case in cases}
    results: dict = {s: {c: [] for c in cases} for s in ("baseline", "sqlvec", "postgresql")}
    cpu: dict = {s: {c: [] for c in cases} for s in ("baseline", "sqlvec")}
    systems = [s for s in ("sqlvec", "postgresql") if args.only in (None, s)]
    if "postgresql" in systems and not (args.dsn or args.pgserver):
        systems.remove("postgresql")
    if args.baseline and "sqlvec" in systems:
        systems.insert(0, "baseline")
    with tempfile.TemporaryDirectory(prefix="sqlvec-copy-") as tmp, contextlib.ExitStack() as stack:
        targets, pids = {}, {}
        if "sqlvec" in systems:
            targets["sqlvec"], pids["sqlvec"] = stack.enter_context(sqlvec_server(f"{tmp}/sqlvec"))
        if "baseline" in systems:
            targets["baseline"], pids["baseline"] = stack.enter_context(
                sqlvec_server(f"{tmp}/baseline", args.baseline))
        if args.pgserver and "postgresql" in systems:  # PostgreSQL over loopback TCP, as sqlvec
            from benchmarks.writes import postgres

            args.dsn = stack.enter_context(postgres(args.pgserver))[0]
        targets["postgresql"] = args.dsn
        for round_ in range(args.rounds):
            for system in systems:
                target = targets[system]
                for case in cases:
                    schema, fmt = case.split()
                    rate, seconds = copy_once(target, schema, fmt, args.mode, args.dim,
                                              streams.get(case, b""), rows, pids.get(system),
                                              args.write_size)
                    results[system][case].append(rate)
                    if seconds is not None:
                        cpu[system][case].append(seconds)
                    print(f"round {round_ + 1} {system} {case}: {rate:,.0f} rows/s"
                          + ("" if seconds is None else f", server CPU {seconds:.2f} s"),
                          file=sys.stderr)
    return {"params": vars(args), "results": results, "cpu": cpu, "cases": cases,
            "bytes": {c: len(streams.get(c, b"")) for c in cases}}


def markdown(report: dict) -> str:
    p = report["params"]
    res = report["results"]
    baseline = bool(p.get("baseline"))
    median = {s: {c: statistics.median(xs) if xs else None for c, xs in per.items()}
              for s, per in res.items()}
    lines = [f"COPY FROM STDIN, {p['rows']:,} rows, vector({p['dim']}), mode {p['mode']}, "
             f"median of {p['rounds']} rounds (basic: id, category, embedding; suite: id "
             "PRIMARY KEY, category, price float8, tag text, embedding)", ""]
    head = ["shape, format"] + (["baseline rows/s"] if baseline else []) + [
        "sqlvec rows/s", "PostgreSQL rows/s"] + (["sqlvec / baseline", "baseline / PostgreSQL"]
                                                 if baseline else []) + [
        "sqlvec / PostgreSQL", "rounds (" + ("baseline / " if baseline else "")
        + "sqlvec / PostgreSQL)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    systems = (["baseline"] if baseline else []) + ["sqlvec", "postgresql"]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a and b else "—"

    for case in report["cases"]:
        m = {s: median[s][case] for s in systems}
        cells = [case] + [f"{m[s] or 0:,.0f}" for s in systems]
        if baseline:
            cells += [ratio(m["sqlvec"], m["baseline"]), ratio(m["baseline"], m["postgresql"])]
        cells.append(ratio(m["sqlvec"], m["postgresql"]))
        cells.append(" / ".join(", ".join(f"{x / 1000:.0f}k" for x in res[s][case]) or "—"
                                for s in systems))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _cpu_table(report))


def _cpu_table(report: dict) -> list[str]:
    """The servers' CPU per COPY (process and workers, while the rows arrived and were
    committed), median and rounds, per sqlvec system measured."""
    cpu = report.get("cpu", {})
    systems = [s for s in ("baseline", "sqlvec") if any(cpu.get(s, {}).values())]
    if not systems:
        return []
    lines = ["", "Server CPU per COPY (user + system, s; median, then rounds):", "",
             "| shape, format | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for case in report["cases"]:
        cells = [f"{statistics.median(cpu[s][case]):.2f} ("
                 + ", ".join(f"{x:.2f}" for x in cpu[s][case]) + ")" for s in systems]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks copy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--formats", default="text,binary", help="comma-separated: text,binary")
    p.add_argument("--schema", default="basic,suite",
                   help="comma-separated table shapes: basic,suite (see above)")
    p.add_argument("--mode", choices=["stream", "rows"], default="stream")
    p.add_argument("--floats", choices=["shortest", "psycopg"], default="shortest",
                   help="--mode stream, text: the vectors' numbers in shortest form, or as "
                        "pgvector's psycopg dumper writes them (17 digits, what --mode rows sends)")
    p.add_argument("--write-size", type=int, default=CHUNK,
                   help="--mode stream: bytes per copy.write, each one CopyData (psycopg's "
                        "write_row sends about 32 KiB at a time)")
    p.add_argument("--dsn", help="PostgreSQL + pgvector to compare with")
    p.add_argument("--pgserver", metavar="DIR",
                   help="start PostgreSQL + pgvector from the pgserver package in DIR (over "
                        "loopback TCP) to compare with")
    p.add_argument("--only", choices=["sqlvec", "postgresql"])
    p.add_argument("--baseline", metavar="CHECKOUT",
                   help="also run the sqlvec of another source tree (say, main's), taking turns "
                        "with this one, to measure a change before and after in one run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--like-suite", action="store_true",
                   help="the suite's sequence on a fresh server per round and system: SELECT "
                        "round trips, text COPY, DROP, binary COPY on one connection through "
                        "write_row, each piece timed (benchmarks/copy_sequence.py)")
    p.add_argument("--text-rows", type=int,
                   help="--like-suite: rows of the text COPY (the suite's: --rows up to 100k)")
    p.add_argument("--select-rounds", type=int, default=5000,
                   help="--like-suite: SELECT %%s::int round trips first, as the suite")
    p.add_argument("--between", choices=["nothing", "checkpoint"], default="nothing",
                   help="--like-suite: CHECKPOINT between the DROP and the binary COPY")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.like_suite:
        from benchmarks import copy_sequence

        print(copy_sequence.markdown(copy_sequence.run(args)))
        return 0
    print(markdown(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
