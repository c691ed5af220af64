"""Single-row statements by primary key inside one transaction block, against autocommit.

What every ORM session does: BEGIN, many `UPDATE t SET v = v + 1 WHERE id = $1` (or SELECT /
DELETE by key), COMMIT. The block's statements read through its buffered writes
(`TableOverlay`), which must not make each of them cost what the block wrote so far.

`cpu` (in process, through `Session.run` as `writes --only engine`: no wire, no fsync): CPU µs
per prepared statement on a table `(id bigint PRIMARY KEY, v int, s text)` of each `--sizes`,
`--statements` of each kind in autocommit, then as many in one block (rolled back; each kind
after the writes of the kinds before): UPDATE and SELECT of random ids, DELETE of distinct
ids (the block's others than autocommit's); and `own update`, UPDATEs of rows a block inserted itself (each inserted, then updated). With `--baseline CHECKOUT` the same is run in a process of that checkout, the
two taking turns `--rounds` times (medians).

`commit` (in process, no fsync): wall ms of the COMMIT of one block of each `--blocks` single-row
statements by key, of each kind: UPDATEs of distinct rows, INSERTs, DELETEs of distinct rows,
and a mix cycling through the three; with `--baseline`, taking turns `--rounds` times.

`server`: rows/s of `--statements` single-row UPDATEs in one block (prepared, psycopg, over
loopback TCP, then COMMIT), sqlvec beside `--baseline` and PostgreSQL (pgserver), taking
turns `--rounds` times (medians), and the server's CPU per statement (sqlvec's processes,
PostgreSQL's backend). `--kinds update,insert,delete,executemany` measures prepared
INSERTs and DELETEs, and one executemany of INSERTs, in the block too.

    python -m benchmarks block_writes --only cpu --sizes 10000,100000 --baseline ../before
    python -m benchmarks block_writes --only server --sizes 100000 --pgserver /tmp/pg
    python -m benchmarks block_writes --only commit --blocks 1000,20000 --baseline ../before
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import writes

UPDATE = "UPDATE t SET v = v + 1 WHERE id = $1"


# In process ---------------------------------------------------------------------------------------


def block_cpu(rows: int, statements: int) -> dict[str, dict[str, float]]:
    """CPU µs per statement, autocommit and in one block, per kind (see the module's text)."""
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="block-writes-")
    out: dict[str, dict[str, float]] = {}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            s = writes._loaded(db, rows)
            rng = random.Random(0)
            cases = {
                "update": (s.prepare(UPDATE, [20]), lambda i: [rng.randrange(rows)]),
                "select": (s.prepare("SELECT v FROM t WHERE id = $1", [20]),
                           lambda i: [rng.randrange(rows)]),
                "delete": (s.prepare("DELETE FROM t WHERE id = $1", [20]), lambda i: [i]),
            }
            for kind, (prepared, params) in cases.items():
                out[kind] = {"autocommit": _cpu_us(s, prepared, params, statements)}
            s.execute_one("BEGIN")  # each kind meets the block's writes of the kinds before
            for kind, (prepared, params) in cases.items():
                if kind == "delete":  # ids autocommit did not delete already
                    params = lambda i, p=params: p(statements + i)  # noqa: E731
                out[kind]["block"] = _cpu_us(s, prepared, params, statements)
            s.execute_one("ROLLBACK")
            out["own update"] = {"block": _own_updates_us(s, rows, statements)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _cpu_us(s, prepared, params, statements: int) -> float:
    """CPU µs per run of `prepared`, `statements` times."""
    start = time.process_time()
    for i in range(statements):
        s.run(prepared, params(i))
    return (time.process_time() - start) / statements * 1e6


def _own_updates_us(s, rows: int, statements: int) -> float:
    """CPU µs per UPDATE by key of a row the block inserted (each row inserted, then updated)."""
    insert = s.prepare("INSERT INTO t VALUES ($1, 0, 'y')", [20])
    update = s.prepare(UPDATE, [20])
    s.execute_one("BEGIN")
    spent = 0.0
    for i in range(statements):
        s.run(insert, [rows + i])
        start = time.process_time()
        s.run(update, [rows + i])
        spent += time.process_time() - start
    s.execute_one("ROLLBACK")
    return spent / statements * 1e6


def _cpu_in(checkout: str, rows: int, statements: int) -> dict:
    """`block_cpu` run by a process importing `checkout`'s sqlvec."""
    return _run_in(checkout, f"block_cpu({rows}, {statements})")


def _run_in(checkout: str, call: str) -> dict:
    """`call` (of this module, returning JSON) run by a process importing `checkout`'s sqlvec
    (this file loaded by path: an older checkout lacks it)."""
    code = ("import importlib.util, json, sys; "
            "spec = importlib.util.spec_from_file_location('block_writes', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            f"print(json.dumps(m.{call}))")
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout)}
    done = subprocess.run([sys.executable, "-c", code, os.path.abspath(__file__)], env=env,
                          cwd=checkout, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


COMMIT_KINDS = ("update", "insert", "delete", "mix")


def commit_ms(blocks: list[int], kinds: tuple[str, ...] = COMMIT_KINDS
              ) -> dict[str, dict[int, float]]:
    """Wall ms of the COMMIT of one block of `n` single-row statements, per kind and `n` of
    `blocks` (in process, no fsync): UPDATEs by key of distinct rows, INSERTs of new rows,
    DELETEs by key of distinct rows, or a mix cycling through the three."""
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    rows = max(blocks) + 2 * sum(blocks)  # updated ids below max(blocks), deleted ones above
    directory = tempfile.mkdtemp(prefix="block-commit-")
    out: dict[str, dict[int, float]] = {kind: {} for kind in kinds}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            s = writes._loaded(db, rows)
            statements = {
                "update": s.prepare(UPDATE, [20]),
                "insert": s.prepare("INSERT INTO t VALUES ($1, 0, 'y')", [20]),
                "delete": s.prepare("DELETE FROM t WHERE id = $1", [20]),
            }
            fresh = iter(range(rows, 1 << 40))  # ids no row holds
            doomed = iter(range(rows - 1, -1, -1))  # ids no block deleted yet
            for n in blocks:
                for kind in kinds:
                    steps = _block_steps(kind, n, fresh, doomed)
                    s.execute_one("BEGIN")
                    for name, key in steps:
                        s.run(statements[name], [key])
                    start = time.perf_counter()
                    s.execute_one("COMMIT")
                    out[kind][n] = (time.perf_counter() - start) * 1e3
                    s.execute_one("CHECKPOINT")  # the next block starts from a clean table
                    db.wait_idle()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _block_steps(kind: str, n: int, fresh, doomed) -> list[tuple[str, int]]:
    """The (statement, id) pairs of a block of `n` statements of `kind` (see `commit_ms`):
    distinct updated ids below `n`, new ids from `fresh`, deleted ones from `doomed`, each in
    a random order."""
    rng = random.Random(n)
    updated = rng.sample(range(n), n)
    deleted = [next(doomed) for _ in range(n if kind == "delete" else n // 3 + 1)]
    rng.shuffle(deleted)
    if kind != "mix":
        ids = {"update": updated, "delete": deleted}.get(kind) or [next(fresh) for _ in range(n)]
        return [(kind, i) for i in ids]
    cycle = ("insert", "update", "delete")
    return [(cycle[i % 3], next(fresh) if i % 3 == 0 else updated[i] if i % 3 == 1
             else deleted[i // 3]) for i in range(n)]


def measure_cpu(sizes: list[int], statements: int, rounds: int, baseline: str | None) -> dict:
    """Medians over `rounds` turns of this checkout (and `baseline`) per size."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {"sqlvec": here, **({"baseline": baseline} if baseline else {})}
    out: dict = {}
    for rows in sizes:
        runs: dict[str, list[dict]] = {name: [] for name in checkouts}
        for _ in range(rounds):
            for name, checkout in checkouts.items():
                runs[name].append(_cpu_in(checkout, rows, statements))
        out[rows] = {name: {kind: {mode: statistics.median(r[kind][mode] for r in rs)
                                   for mode in rs[0][kind]} for kind in rs[0]}
                     for name, rs in runs.items()}
    return out


def measure_commit(blocks: list[int], rounds: int, baseline: str | None
                   ) -> dict[str, dict[str, dict[int, float]]]:
    """`commit_ms` medians over `rounds` turns of this checkout (and `baseline`)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {"sqlvec": here, **({"baseline": baseline} if baseline else {})}
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(rounds):
        for name, checkout in checkouts.items():
            runs[name].append(_run_in(checkout, f"commit_ms({blocks})"))
    return {name: {kind: {n: statistics.median(r[kind][str(n)] for r in rs) for n in blocks}
                   for kind in rs[0]} for name, rs in runs.items()}


# Through servers ----------------------------------------------------------------------------------


KINDS = ("update", "insert", "delete", "executemany")
INSERT = "INSERT INTO t VALUES (%s, %s, %s)"


def block_rate(dsn: str, rows: int, statements: int, seed: int,
               pid: int | None = None, kind: str = "update") -> tuple[float, float]:
    """Rows/s of `statements` single-row statements of `kind` in one block, COMMIT included:
    prepared UPDATEs or DELETEs of random distinct ids (each round its own, for DELETE),
    prepared INSERTs of new ids, or one executemany of as many INSERTs. And the server's CPU
    µs per row meanwhile: sqlvec's processes (`pid` and descendants), or PostgreSQL's
    backend serving the connection (`pid` None)."""
    import psycopg

    from benchmarks.suite import cpu_of

    ids = random.Random(seed).sample(range(rows), statements) if kind == "update" else \
        [seed * statements + i for i in range(statements)] if kind == "delete" else \
        [rows + (2 * seed + (kind == "executemany")) * statements + i for i in range(statements)]
    with psycopg.connect(dsn) as conn:
        if pid is None:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            conn.commit()
        cpu = (lambda: cpu_of(pid)) if pid is not None else (lambda: _process_cpu(backend))
        before = cpu()
        start = time.perf_counter()
        with conn.transaction():
            if kind == "executemany":
                conn.cursor().executemany(INSERT, [(i, 1, "y") for i in ids])
            else:
                sql = INSERT if kind == "insert" else "DELETE FROM t WHERE id = %s" \
                    if kind == "delete" else writes.UPDATE.format(t="t")
                for i in ids:
                    conn.execute(sql, (i, 1, "y") if kind == "insert" else (i,), prepare=True)
        rate = statements / (time.perf_counter() - start)
        return rate, (cpu() - before) / statements * 1e6


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) one process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_server(sizes: list[int], statements: int, rounds: int, baseline: str | None,
                   pgserver: str | None, kinds: tuple[str, ...] = ("update",)) -> dict:
    """Medians of `block_rate` per size, kind and server, the servers taking turns."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="block-writes-") as directory, \
            contextlib.ExitStack() as stack:
        running = {"sqlvec": stack.enter_context(writes.sqlvec(os.path.join(directory, "a")))}
        if baseline:
            running["baseline"] = stack.enter_context(
                writes.sqlvec_baseline(os.path.join(directory, "b"), baseline))
        running["postgres"] = stack.enter_context(
            writes.postgres(pgserver or os.path.join(directory, "pg")))
        for rows in sizes:
            for name, (dsn, _pid, _label) in running.items():
                writes.load(dsn, "t", rows, True, name == "postgres")
            for kind in kinds:
                runs: dict[str, list[tuple[float, float]]] = {name: [] for name in running}
                for turn in range(rounds):
                    for name, (dsn, pid, _label) in running.items():
                        runs[name].append(block_rate(dsn, rows, statements, turn, pid, kind))
                out[(rows, kind)] = {name: (statistics.median(r for r, _ in rs),
                                            statistics.median(c for _, c in rs))
                                     for name, rs in runs.items()}
    return out


def _print_commit(by_name: dict[str, dict[str, dict[int, float]]]) -> None:
    print("COMMIT ms of a block of n single-row statements (medians):")
    for kind, by_n in by_name["sqlvec"].items():
        for n, ms in by_n.items():
            cells = ", ".join(f"{name} {figures[kind][n]:.1f}" for name, figures in by_name.items())
            ratio = (f" (baseline/sqlvec {by_name['baseline'][kind][n] / ms:.1f}x)"
                     if "baseline" in by_name else "")
            print(f"  {kind} n={n:,}: {cells}{ratio}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks block_writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="table sizes (rows)")
    parser.add_argument("--statements", type=int, default=1000, help="per block (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="turns per checkout (default 3)")
    parser.add_argument("--only", choices=("cpu", "server", "commit"), default=None)
    parser.add_argument("--blocks", default="1000,5000,20000,50000",
                        help="commit: statements per block")
    parser.add_argument("--kinds", default="update",
                        help=f"server: statements in the block, of {','.join(KINDS)}")
    parser.add_argument("--baseline", default=None, metavar="CHECKOUT",
                        help="also measure the sqlvec of this checkout, taking turns")
    parser.add_argument("--pgserver", default=None, metavar="DIR",
                        help="PostgreSQL's data directory (pgserver; default: a temporary one)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.only in (None, "cpu"):
        for rows, by_name in measure_cpu(sizes, args.statements, args.rounds,
                                         args.baseline).items():
            print(f"CPU µs per statement, {rows:,} rows, {args.statements} statements:")
            for kind in by_name["sqlvec"]:
                cells = "; ".join(f"{name}: " + ", ".join(
                    f"{mode} {us:.0f}" for mode, us in figures[kind].items())
                    for name, figures in by_name.items())
                print(f"  {kind}: {cells}")
    if args.only == "commit":
        _print_commit(measure_commit([int(n) for n in args.blocks.split(",")], args.rounds,
                                     args.baseline))
    if args.only in (None, "server"):
        kinds = tuple(args.kinds.split(","))
        for (rows, kind), rates in measure_server(sizes, args.statements, args.rounds,
                                                  args.baseline, args.pgserver, kinds).items():
            ratios = ", ".join(f"{name}/PostgreSQL {rates[name][0] / rates['postgres'][0]:.2f}"
                               for name in rates if name != "postgres")
            print(f"rows/s, {args.statements} rows by {kind} in one block, {rows:,} rows: " +
                  ", ".join(f"{name} {rate:,.0f}" for name, (rate, _cpu) in rates.items()) +
                  f" ({ratios}); server CPU µs per row: " +
                  ", ".join(f"{name} {cpu:.0f}" for name, (_rate, cpu) in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
