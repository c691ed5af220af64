"""`python -m benchmarks copy --like-suite`: the suite's COPYs as the suite runs them.

The suite measures COPY on one connection right after the server started: 5,000 prepared
`SELECT %s::int` round trips, a text COPY of the rows into `items_text`, `DROP TABLE
items_text`, then a binary COPY into `items`, each through psycopg's `write_row` (the suite's
own `ingest`). The `copy` benchmark's rounds instead COPY into a fresh table of a warm server
and CHECKPOINT between COPYs. This mode runs the suite's sequence on a fresh server of each
system per round (sqlvec, the `--baseline` checkout, PostgreSQL restarted), the systems taking
turns, and times its pieces: each COPY's wall time to CommandComplete and its tail (the last
row handed to psycopg to CommandComplete: the last CopyData, the server's last piece and its
commit with the WAL fsync), the client's CPU, the server's CPU split between the process that
runs the COPY (sqlvec's primary, PostgreSQL's backend) and the others (sqlvec's workers, one
of which relays the connection, and its fork server; PostgreSQL's walwriter, checkpointer
...), and the server's CPU between the two COPYs (background work the text COPY set off).
`--between checkpoint` runs CHECKPOINT after the DROP, so the binary COPY starts with that
work done, to tell how much of the binary figure it accounts for.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import sys
import tempfile
import time

from benchmarks.suite import (
    Dataset,
    connect,
    cpu_by_process,
    ingest,
    make_dataset,
    select_one,
    sqlvec_server,
    try_execute,
)

STAGES = ("start", "sent", "done")


class Probe:
    """Snapshots of the clocks at each stage of a COPY: wall, the client's CPU (user, system:
    over loopback TCP the kernel's receive work is partly the sender's), the server's CPU per
    process (the process running the COPY is `main`)."""

    def __init__(self, family_root: int, main: int) -> None:
        self.family_root, self.main = family_root, main
        self.marks: dict[str, tuple[float, float, dict[int, float]]] = {}

    def __call__(self, stage: str) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.marks[stage] = (time.perf_counter(), (usage.ru_utime, usage.ru_stime),
                             cpu_by_process(self.family_root))

    def server_cpu(self, first: str, last: str) -> tuple[float, float]:
        """(the main process's, the other processes') CPU seconds between two stages."""
        return split_cpu(self.marks[first][2], self.marks[last][2], self.main)

    def figures(self, rows: int) -> dict:
        (t0, c0, cpu0), (t1, _, _), (t2, c2, cpu2) = (self.marks[s] for s in STAGES)
        main, others = self.server_cpu("start", "done")
        tail_main, _ = self.server_cpu("sent", "done")
        return {"rows_per_s": rows / (t2 - t0), "wall_s": t2 - t0, "tail_s": t2 - t1,
                "client_cpu_s": sum(c2) - sum(c0), "client_system_cpu_s": c2[1] - c0[1],
                "main_cpu_s": main, "others_cpu_s": others,
                "tail_main_cpu_s": tail_main,
                "by_process": {f"{_comm(pid)}:{pid}": round(cpu, 3)
                               for pid, cpu in _spent(cpu0, cpu2).items()}}


def _spent(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process used between two snapshots (a process started since: all)."""
    return {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}


def split_cpu(before: dict[int, float], after: dict[int, float],
              main: int) -> tuple[float, float]:
    """(process `main`'s, all others') CPU seconds between two snapshots."""
    spent = _spent(before, after)
    return spent.pop(main, 0.0), sum(spent.values())


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _processes(conn, pid: int | None) -> tuple[int, int]:
    """(the root of the server's processes, the process serving this connection's COPY)."""
    if pid is not None:  # sqlvec: the primary runs every COPY (the worker relays it)
        return pid, pid
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with open(f"/proc/{backend}/stat") as f:
        postmaster = int(f.read().rsplit(")", 1)[1].split()[1])
    return postmaster, backend


def sequence(dsn: str, pid: int | None, ds: Dataset, text: Dataset, between: str,
             select_rounds: int) -> dict:
    """The suite's opening on one connection: SELECT rounds, text COPY, DROP, binary COPY."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as boot:
        try_execute(boot, "CREATE EXTENSION IF NOT EXISTS vector")
    with connect(dsn) as conn:
        root, main = _processes(conn, pid)
        if select_rounds:
            select_one(conn, select_rounds)
        out = {}
        text_probe = Probe(root, main)
        if text.n:
            ingest(conn, text, "items_text", "text", text_probe)
            out["text"] = text_probe.figures(text.n)
            conn.execute("DROP TABLE items_text")
            if between == "checkpoint":
                conn.execute("CHECKPOINT")
        probe = Probe(root, main)
        ingest(conn, ds, "items", "binary", probe)
        out["binary"] = probe.figures(ds.n)
        if text.n:  # what the server did from the text COPY's end to the binary one's start
            (ended, _, before), (started, _, after) = \
                text_probe.marks["done"], probe.marks["start"]
            binary = out["binary"]
            binary["gap_main_cpu_s"], binary["gap_others_cpu_s"] = split_cpu(before, after, main)
            binary["gap_s"] = started - ended
        return out


@contextlib.contextmanager
def fresh_server(system: str, args):
    """(dsn, sqlvec's primary pid or None) of a server started for this turn alone."""
    if system == "postgresql":
        from benchmarks.writes import postgres

        with postgres(args.pgserver) as (dsn, _pid, _label):
            yield dsn, None
        return
    data = tempfile.mkdtemp(prefix="sqlvec-copy-suite-")
    try:
        with sqlvec_server(data, args.baseline if system == "baseline" else None) as served:
            yield served
    finally:
        shutil.rmtree(data, ignore_errors=True)


def run(args: argparse.Namespace) -> dict:
    ds = make_dataset(args.rows, args.dim, 1, args.seed)
    n_text = args.text_rows if args.text_rows is not None else min(ds.n, 100_000)
    text = Dataset(ds.vectors[:n_text], ds.queries, ds.category, ds.price, ds.tag)
    systems = (["baseline"] if args.baseline else []) + [
        s for s in ("sqlvec", "postgresql")
        if args.only in (None, s) and (s == "sqlvec" or args.pgserver)]
    rounds: dict[str, list[dict]] = {s: [] for s in systems}
    for round_ in range(args.rounds):
        for system in systems:
            with fresh_server(system, args) as (dsn, pid):
                figures = sequence(dsn, pid, ds, text, args.between, args.select_rounds)
            rounds[system].append(figures)
            print(f"round {round_ + 1} {system}: " + "; ".join(
                f"{fmt} {f['rows_per_s']:,.0f} rows/s, tail {f['tail_s'] * 1e3:.0f} ms, "
                f"client CPU {f['client_cpu_s']:.2f} s, server {f['main_cpu_s']:.2f} + "
                f"{f['others_cpu_s']:.2f} s {f['by_process']}" for fmt, f in figures.items()),
                file=sys.stderr)
    return {"params": vars(args), "like_suite": rounds}


FIELDS = [("rows_per_s", "rows/s", "{:,.0f}"), ("wall_s", "wall s", "{:.3f}"),
          ("tail_s", "tail ms", "{:.0f}"), ("client_cpu_s", "client CPU s", "{:.2f}"),
          ("client_system_cpu_s", "client CPU s, of it in the kernel", "{:.2f}"),
          ("main_cpu_s", "server CPU s: primary / backend", "{:.2f}"),
          ("others_cpu_s", "server CPU s: other processes", "{:.2f}"),
          ("tail_main_cpu_s", "primary / backend CPU in the tail, s", "{:.3f}"),
          ("gap_main_cpu_s", "primary / backend CPU between the COPYs, s", "{:.2f}"),
          ("gap_others_cpu_s", "other processes' CPU between the COPYs, s", "{:.2f}"),
          ("gap_s", "between the COPYs, s", "{:.2f}")]


def markdown(report: dict) -> str:
    """Per format and measure: the median of the rounds per system, then every round."""
    p, per = report["params"], report["like_suite"]
    systems = list(per)
    lines = [f"The suite's sequence on a fresh server per round, {p['rows']:,} rows, "
             f"vector({p['dim']}), between the COPYs: {p['between']}; median of "
             f"{p['rounds']} rounds (rounds in brackets)", ""]
    head = ["COPY, measure"] + systems
    if "postgresql" in systems:
        head += [f"{s} / postgresql" for s in systems if s != "postgresql"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scale = {"tail_s": 1e3}
    for fmt in ("text", "binary"):
        for key, label, form in FIELDS:
            values = {s: [r[fmt][key] * scale.get(key, 1) for r in per[s]
                          if fmt in r and key in r[fmt]] for s in systems}
            if not all(values.values()):
                continue
            med = {s: statistics.median(v) for s, v in values.items()}
            cells = [f"{fmt}: {label}"] + [
                form.format(med[s]) + " (" + ", ".join(form.format(x) for x in values[s]) + ")"
                for s in systems]
            if "postgresql" in systems:
                cells += [f"{med[s] / med['postgresql']:.2f}" if med["postgresql"] else "—"
                          for s in systems if s != "postgresql"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
