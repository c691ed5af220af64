"""Single-row writes through a real server, beside PostgreSQL in the same run.

Tables `(id bigint [PRIMARY KEY], v int, s text)` of 10k and 1M rows, with and without the
primary key, loaded by COPY, then for `--seconds` each:

- INSERT: `INSERT INTO t VALUES ($1, $2, $3)` with fresh ids;
- UPDATE: `UPDATE t SET v = v + 1 WHERE id = $1` with random existing ids (by key with a
  primary key; a scan of the table without one, on both servers);

with one connection and with `--writers` connections at once (one thread each), every
statement prepared (psycopg `prepare=True`) and committed on its own (autocommit); and with
`--executemany N`, psycopg's and asyncpg's `executemany` of the INSERT with N rows a call, one
connection (its rows pipelined, one Sync: one transaction a call; the rate counts rows). Both servers
run side by side and take turns (`--rounds` slices of each case), so they meet the same machine:
on a shared one the disk's fsync latency alone moves by 5x within minutes. Both servers
make each commit durable before answering: sqlvec fsyncs its WAL (group commit), PostgreSQL runs
with fsync and synchronous_commit on. Reported: statements per second, median latency (and
p90, p99), the ratio to PostgreSQL, and per statement the CPU time the server's processes took
and their time runnable but waiting for a CPU (the scheduler's accounts: on a shared machine
that wait, not the server's own work, is most of a slow statement). Both are reached over loopback TCP: pgserver starts
PostgreSQL on a Unix socket only, so it is restarted listening on 127.0.0.1 too
(`--postgres-socket` keeps the socket, whose round trip is cheaper). `--profile` records the
sqlvec server with py-spy (`--gil`: the thread holding the interpreter lock) during each case
and prints its interpreter time per statement by layer (wire, session, statement, commit
steps) and the frames with the most own time.

`--busy-cpus [SERVERS]` keeps every CPU busy with `nice -n 19` loops during the turns of the
named servers (all of them when none is named), started and stopped around each turn: on this
kind of virtual machine a process sleeping in fdatasync while the CPUs idle can be woken
milliseconds late, and which servers that slows differs from day to day (a PostgreSQL backend
has also been seen slow only beside busy loops). Every turn probes the p50 of a bare
`pwrite` + `fdatasync` first; each server's probe, the CPU the loops took and its own p50 show
the regime it met.

`log` (in process, no server) times the WAL alone: single-row commits (an UPDATE's 367-byte
record, one sync each) into this checkout's log and, with `--baseline`, the baseline's beside it
taking turns (`--rounds` turns of 250 commits each): p50 to p99.9, and the mean of the commits
whose record starts a new 4 KiB block of the file against the others'.

`index` (in process, no server) compares the key index with the dict it replaced at 1M integer
keys: memory and build time. `engine` (in process) reports the CPU time of one prepared INSERT,
UPDATE (of sealed rows, then of the same ids again: rows the first pass wrote) and DELETE by key
through `Session.run` (no wire, no fsync): the engine's own cost per statement, which a shared
machine disturbs far less than round trips. With `--baseline`, this checkout's engine and the
baseline's run in two processes, each with its table loaded, taking turns in `--rounds` slices
of 500 statements per case: medians, and the ratio.

    python -m benchmarks writes                       # everything (PostgreSQL via pgserver)
    python -m benchmarks writes --sizes 10000 --seconds 2 --only sqlvec
    python -m benchmarks writes --only index
    python -m benchmarks writes --only engine --sizes 1000000
    python -m benchmarks writes --only engine --sizes 1000000 --rounds 30 --baseline ../before
    python -m benchmarks writes --only log --rounds 120 --baseline ../before
    python -m benchmarks writes --sizes 1000000 --keys pk --baseline ../before  # A/B, one run
    python -m benchmarks writes --sizes 10000 --keys pk --only sqlvec --executemany 1000
    python -m benchmarks writes --sizes 1000000 --keys pk --busy-cpus --pgserver /tmp/pg
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np

from benchmarks.round_trip import cpu_seconds, process_tree

INSERT = "INSERT INTO {t} VALUES (%s, %s, %s)"
UPDATE = "UPDATE {t} SET v = v + 1 WHERE id = %s"
LOAD_CHUNK = 100_000


# Servers -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(directory: str, tcp: bool = True):
    """PostgreSQL from the pgserver package: yields (dsn, None, label).

    pgserver starts the server on a Unix socket only; with `tcp` it is restarted listening on
    loopback TCP as well (its own pg_ctl, the same options plus `-h 127.0.0.1 -p <port>`), so
    that both servers are reached the same way: a Unix socket round trip is cheaper."""
    import pgserver
    import psycopg
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(directory)
    restarted = False
    try:
        uri = server.get_uri()
        if tcp:
            port = _free_port()
            pg_ctl(["-w", "-l", str(server.log), "-o",
                    f"-h 127.0.0.1 -p {port} -k {server.pgdata}", "restart"],
                   pgdata=server.pgdata, user=server.system_user, timeout=60)
            restarted = True
            uri = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(uri, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        yield uri, None, f"PostgreSQL {version}"
    finally:
        if restarted:  # pgserver's cleanup stops the process it started, gone since
            with contextlib.suppress(Exception):
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,
                       user=server.system_user, timeout=60)
        server.cleanup()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def sqlvec(directory: str):
    from benchmarks.suite import sqlvec_server

    with sqlvec_server(directory) as (dsn, pid):
        yield dsn, pid, "sqlvec"


@contextlib.contextmanager
def sqlvec_baseline(directory: str, checkout: str):
    """The sqlvec of another checkout (`--baseline`), imported from there: before and after a
    change measured in the same rounds as the rest (and profiled as ours with `--profile`)."""
    from benchmarks.suite import sqlvec_server

    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = os.path.abspath(checkout)
    os.chdir(checkout)  # `python -m` puts the working directory first on the path
    try:
        server = sqlvec_server(os.path.abspath(directory))
        dsn, pid = server.__enter__()
    finally:
        os.chdir(cwd)
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        yield dsn, pid, "sqlvec (baseline)"
    finally:
        server.__exit__(None, None, None)


# Workloads -----------------------------------------------------------------------------------------


def load(dsn: str, table: str, rows: int, primary_key: bool, postgres: bool) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        key = " PRIMARY KEY" if primary_key else ""
        conn.execute(f"CREATE TABLE {table} (id bigint{key}, v int, s text)")
        for start in range(0, rows, LOAD_CHUNK):
            with conn.cursor().copy(f"COPY {table} (id, v, s) FROM STDIN") as copy:
                for i in range(start, min(rows, start + LOAD_CHUNK)):
                    copy.write_row((i, i % 100, "x"))
        conn.execute("CHECKPOINT")  # sqlvec: seal now, not in the middle of a measurement
        if postgres:
            conn.execute(f"VACUUM ANALYZE {table}")


def run_case(dsn: str, table: str, rows: int, kind: str, writers: int, seconds: float,
             offset: int, batch: int = 1, pid: int | None = None) -> dict:
    """`writers` connections issuing `kind` statements for `seconds` (`executemany`: calls of
    `batch` INSERTs); rate and latency, of statements (of calls for `executemany`), and the
    seconds the server's processes (`pid`'s tree; None: PostgreSQL's) ran and waited for a
    CPU meanwhile."""
    import psycopg

    if kind == "asyncpg executemany":
        return _asyncpg_executemany(dsn, table, seconds, offset, batch)
    sql = (UPDATE if kind == "update" else INSERT).format(t=table)
    latencies: list[list[float]] = [[] for _ in range(writers)]
    errors: collections.Counter = collections.Counter()
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(writers)]
    for j, conn in enumerate(conns):  # prepare (and warm) before the clock starts
        params = (offset + j * 10_000_000, 0, "w") if kind != "update" else (0,)
        conn.execute(sql, params, prepare=True)
    barrier = threading.Barrier(writers + 1)
    deadline = [0.0]

    def work(j: int) -> None:
        conn, rng, out = conns[j], random.Random(j), latencies[j]
        next_id = offset + j * 10_000_000 + 1
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            params = (next_id, 1, "y") if kind != "update" else (rng.randrange(rows),)
            next_id += batch
            start = time.perf_counter()
            try:
                if kind == "executemany":
                    conn.cursor().executemany(sql, [(params[0] + i, 1, "y") for i in range(batch)])
                else:
                    conn.execute(sql, params, prepare=True)
            except psycopg.Error as exc:
                errors[getattr(exc, "sqlstate", None) or type(exc).__name__] += 1
                continue
            out.append(time.perf_counter() - start)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(writers)]
    for t in threads:
        t.start()
    server = process_tree(pid) if pid is not None else _postgres_processes(conns[0])
    before = cpu_seconds(server)
    deadline[0] = time.perf_counter() + seconds
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ran, waited = (after - first for after, first in zip(cpu_seconds(server), before))
    for conn in conns:
        conn.close()
    done = [x for xs in latencies for x in xs]
    return {"rate": len(done) / elapsed, "p50_ms": float(np.median(done) * 1e3) if done else None,
            "statements": len(done), "errors": dict(errors), "latencies": done,
            "elapsed": elapsed, "ran": ran, "waited": waited}


def _postgres_processes(conn) -> list[int]:
    """Every process of the PostgreSQL server behind `conn` (its postmaster's tree: backends,
    WAL writer, checkpointer ...), whose scheduler accounts `cpu_seconds` reads."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        with open(f"/proc/{backend}/stat") as f:
            return process_tree(int(f.read().rsplit(")", 1)[1].split()[1]))
    except (OSError, ValueError, IndexError):  # not on this machine's /proc
        return []


def _asyncpg_executemany(dsn: str, table: str, seconds: float, offset: int,
                         batch: int) -> dict:
    """asyncpg's `executemany` of the INSERT, `batch` rows a call, one connection for
    `seconds`: its rows pipelined (Bind and Execute each, one Sync); the rate of calls."""
    import asyncio

    import asyncpg

    async def run() -> tuple[list[float], float]:
        conn = await asyncpg.connect(dsn)
        sql = INSERT.format(t=table).replace("%s", "$1", 1).replace("%s", "$2", 1) \
            .replace("%s", "$3", 1)
        try:
            await conn.execute(sql, offset, 0, "w")  # prepared (and warm) first
            out, next_id = [], offset + 1
            started = time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                begin = time.perf_counter()
                await conn.executemany(sql, [(next_id + i, 1, "y") for i in range(batch)])
                out.append(time.perf_counter() - begin)
                next_id += batch
            return out, time.perf_counter() - started
        finally:
            await conn.close()

    done, elapsed = asyncio.run(run())
    return {"rate": len(done) / elapsed, "p50_ms": float(np.median(done) * 1e3) if done else None,
            "statements": len(done), "errors": {}, "latencies": done, "elapsed": elapsed,
            "ran": None, "waited": None}


# Profiles ------------------------------------------------------------------------------------------


IDLE = ("select (selectors", "wait (threading", "get (queue", "_worker (concurrent", "epoll")


PROFILE_RATE = 250  # samples per second


def profile_start(pid: int, seconds: float, path: str) -> subprocess.Popen | None:
    if shutil.which("py-spy") is None:
        return None
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "raw", "-o",
                             path, "--rate", str(PROFILE_RATE), "--duration",
                             str(int(seconds)), "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Layers of a single-row write, by the frames on the stack (first match wins): how
# docs/benchmarks.md splits a statement's interpreter time.
LAYERS = [
    ("commit: apply", ("Store._apply_durable",)),
    ("commit: WAL encode", ("encode_commit",)),
    ("commit: WAL append, write, handoff", ("WriteAheadLog.append", "WriteAheadLog.sync")),
    ("commit: prepare (keys, claims, row ids)", ("Table.prepare", "Table.release")),
    ("commit: lock, queue", ("Store.commit",)),
    ("statement: row by key", ("ScanOp._by_key", "Table.row_of_key")),
    ("statement: new row", ("_updated", "FastInsert.row", "ScalarKeyWrite.ops")),
    ("statement: other", ("run_write",)),
    ("session", ("Session.run",)),
    ("wire", ("Connection.serve",)),
]


def profile_layers(paths: list[str], rate: int, statements: int) -> dict[str, float]:
    """µs of interpreter time per statement in each layer, from py-spy `--gil` raw outputs
    (samples of the thread holding the interpreter lock)."""
    counts: collections.Counter = collections.Counter()
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, count = line.rpartition(" ")
            name = next((n for n, frames in LAYERS
                         if any(f + " (" in stack for f in frames)), "other threads")
            counts[name] += int(count)
    per = 1e6 / rate / max(statements, 1)
    return {name: counts[name] * per for name, _ in LAYERS + [("other threads", ())]}


def profile_summary(paths: list[str], top: int = 8) -> list[tuple[float, str]]:
    """Own time per frame (share of busy samples) from py-spy's raw (collapsed) outputs."""
    own: collections.Counter = collections.Counter()
    total = 0
    lines = []
    for path in paths:
        try:
            lines += open(path).read().splitlines()
        except OSError:
            pass
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or (any(i in stack for i in IDLE) and "sqlvec/" not in frames[-1]):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
    return [(c / total, f) for f, c in own.most_common(top)] if total else []


# The fast fsync regime ------------------------------------------------------------------------------


BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def busy_cpus(enabled: bool) -> Iterator[dict]:
    """`nice -n 19` busy loops, one per CPU, while the block runs (when `enabled`); yields a
    dict the block's end fills with `cpus` and `share`: the CPUs' worth of time the loops got
    (what they took from the servers is at most that). Each fdatasync's wake-up then finds a
    running CPU (see the module's docstring)."""
    report: dict = {}
    if not enabled:
        yield report
        return
    loops = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", BUSY_LOOP])
             for _ in range(os.cpu_count() or 1)]
    began = time.perf_counter()
    try:
        time.sleep(0.2)  # every loop running before the first statement
        yield report
    finally:
        cpu = sum(_cpu_seconds(p.pid) for p in loops)
        for p in loops:
            p.terminate()
        for p in loops:
            p.wait()
        report.update(cpus=len(loops), share=cpu / (time.perf_counter() - began))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (0 where there is none)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fdatasync_p50_ms(directory: str, rounds: int = 200) -> float:
    """Median ms of a 150-byte `pwrite` + `fdatasync` into a preallocated file in `directory`:
    which fsync regime the machine is in right now, with no server in the way."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, 150 * rounds)
        os.fsync(fd)
        times = []
        for i in range(rounds):
            start = time.perf_counter()
            os.pwrite(fd, b"x" * 150, 150 * i)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    return float(np.median(times) * 1e3)


# Index memory --------------------------------------------------------------------------------------


def index_memory(n: int = 1_000_000) -> dict:
    """The integer key index against a dict of the same keys: bytes held and build time."""
    from sqlvec.storage.keys import IntKeyIndex

    keys = np.random.default_rng(0).permutation(3 * n)[:n].astype(np.int64)
    rowids = np.arange(n, dtype=np.int64)
    out = {}
    for name, build in (("IntKeyIndex", lambda: _built(IntKeyIndex(), keys, rowids)),
                        ("dict", lambda: dict(zip(keys.tolist(), rowids.tolist())))):
        tracemalloc.start()
        start = time.perf_counter()
        held = build()
        seconds = time.perf_counter() - start
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        probe = keys[:: max(1, n // 1000)].tolist()
        gc.disable()  # a collection walking the dict would land in the timing
        start = time.perf_counter()
        for k in probe:
            held.lookup(np.array([k])) if name == "IntKeyIndex" else held.get(k)
        lookup_us = (time.perf_counter() - start) / len(probe) * 1e6
        gc.enable()
        out[name] = {"bytes": size, "build_s": seconds, "lookup_us": lookup_us}
        del held
    return out


def _built(index, keys, rowids):
    index.insert(keys, rowids)
    return index


# Engine CPU ----------------------------------------------------------------------------------------


def engine_cpu(rows: int = 1_000_000, statements: int = 5000) -> dict[str, float]:
    """CPU µs per prepared single-row statement through `Session.run` in this process (no
    wire, no fsync), on a keyed table of `rows` rows: the engine's own cost, steadier on a
    shared machine than any round trip."""
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="writes-engine-")
    out = {}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            cases = _engine_cases(_loaded(db, rows), rows)
            for kind, run in cases.items():
                for _ in range(200):  # warm
                    run()
                start = time.process_time()
                for _ in range(statements):
                    run()
                out[kind] = (time.process_time() - start) / statements * 1e6
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _engine_cases(s, rows: int) -> dict:
    """Per case, a function running its next statement: INSERTs of fresh ids, UPDATEs by key
    of random rows (sealed), of the same ids again (rows the first pass wrote, in the growing
    segment, as the server benchmark's later rounds), DELETEs of the rows the INSERTs added.
    Parameter types as psycopg sends them: int8, int2, unknown."""
    rng, again = random.Random(0), random.Random(0)
    update = s.prepare("UPDATE t SET v = v + 1 WHERE id = $1", [20])
    insert = s.prepare("INSERT INTO t VALUES ($1, $2, $3)", [20, 21, 0])
    delete = s.prepare("DELETE FROM t WHERE id = $1", [20])
    inserted, deleted = iter(range(rows, 2**62)), iter(range(rows, 2**62))
    return {
        "insert": lambda: s.run(insert, [next(inserted), 1, "y"]),
        "update": lambda: s.run(update, [rng.randrange(rows)]),
        "update again": lambda: s.run(update, [again.randrange(rows)]),
        "delete": lambda: s.run(delete, [next(deleted)]),
    }


def engine_worker(rows: int) -> None:
    """A process's side of `engine_turns`: loads the table, answers "ready", then per line
    "<case>\t<n>" on stdin runs n statements of that case and answers their CPU µs each."""
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="writes-engine-")
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            cases = _engine_cases(_loaded(db, rows), rows)
            print("ready", flush=True)
            for line in sys.stdin:
                kind, n = line.rstrip("\n").split("\t")
                run = cases[kind]
                start = time.process_time()
                for _ in range(int(n)):
                    run()
                print((time.process_time() - start) / int(n) * 1e6, flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def engine_turns(rows: int, baseline: str, rounds: int, statements: int = 500
                 ) -> dict[str, dict[str, float]]:
    """`--only engine --baseline`: this checkout's engine and the baseline's, each in a
    process of its own (this file loaded by path: an older checkout lacks the worker) with its
    table loaded, taking turns in `rounds` slices of `statements` statements per case, the
    order swapped every round; per checkout and case the median CPU µs per statement. Both
    meet the same machine within a second, which a shared machine's load moves by ±15 %
    between whole runs."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import importlib.util, sys; "
            "spec = importlib.util.spec_from_file_location('writes_engine', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "m.engine_worker(int(sys.argv[2]))")
    workers = {}
    try:
        for name, checkout in (("sqlvec", here), ("baseline", baseline)):
            workers[name] = subprocess.Popen(
                [sys.executable, "-c", code, os.path.abspath(__file__), str(rows)],
                env={**os.environ, "PYTHONPATH": os.path.abspath(checkout)}, cwd=checkout,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for worker in workers.values():
            if worker.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError("an engine worker failed to load its table")
        times: dict[str, dict[str, list[float]]] = {name: {} for name in workers}
        for i in range(rounds):
            for kind in ("insert", "update", "update again", "delete"):
                for name in (list(workers) if i % 2 == 0 else list(reversed(workers))):
                    worker = workers[name]
                    worker.stdin.write(f"{kind}\t{statements}\n")  # type: ignore[union-attr]
                    worker.stdin.flush()  # type: ignore[union-attr]
                    times[name].setdefault(kind, []).append(
                        float(worker.stdout.readline()))  # type: ignore[union-attr]
    finally:
        for worker in workers.values():
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait()
    return {name: {kind: statistics.median(ts) for kind, ts in cases.items()}
            for name, cases in times.items()}


LOG_RECORD = 367  # payload of a single-row UPDATE's commit record (391 bytes with its frame)


def log_commits(baseline: str | None, rounds: int, turn: int = 250) -> dict[str, dict]:
    """The WAL alone (`--only log`): single-row commits (a 367-byte record, one sync each) into
    this checkout's `WriteAheadLog` and, beside it taking turns of `turn` commits, the
    baseline's (its `wal.py` loaded under another name, with this checkout's helpers); ms per
    commit, all of them and those whose record starts a new 4 KiB block of the file."""
    import importlib.util

    from sqlvec.storage import wal

    modules = {"sqlvec": wal}
    if baseline:
        spec = importlib.util.spec_from_file_location(
            "baseline_wal", os.path.join(baseline, "sqlvec", "storage", "wal.py"))
        modules["baseline"] = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules["baseline"])  # (dataclasses look their module up)
    directory = tempfile.mkdtemp(prefix="writes-log-")
    record = b"u" * LOG_RECORD
    times: dict[str, list[float]] = {name: [] for name in modules}
    try:
        logs = {name: m.WriteAheadLog.open(os.path.join(directory, name), fsync=True)
                for name, m in modules.items()}
        for i in range(rounds):
            for name in (list(logs) if i % 2 == 0 else list(reversed(logs))):
                for _ in range(turn):
                    start = time.perf_counter()
                    logs[name].commit(record)
                    times[name].append(time.perf_counter() - start)
        for log in logs.values():
            log.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {name: _log_figures(np.array(ts) * 1e3) for name, ts in times.items()}


def _log_figures(ms: np.ndarray) -> dict[str, float]:
    """p50, p90, p99, p99.9 and mean of commits, and the mean of those starting a block."""
    frame = LOG_RECORD + 24  # the frame header's length, CRC, LSNs
    start = 12 + np.arange(len(ms)) * frame  # after the file header
    new_block = start // 4096 != (start + frame - 1) // 4096
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    return {"p50": p50, "p90": p90, "p99": p99, "p99.9": p999, "mean": ms.mean(),
            "mean starting a block": ms[new_block].mean(),
            "mean of the others": ms[~new_block].mean()}


def block_update_cpu(rows: int = 100_000, runs: int = 5) -> dict[str, float]:
    """CPU ms of one UPDATE of every row inside a block (rolled back), through `Session` in
    this process (median of `runs`): what locking each row costs a block's statement. SET of
    another column (FOR NO KEY UPDATE), and of the key to itself (its values compared)."""
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="writes-block-")
    out = {}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            s = _loaded(db, rows)
            for name, sql in (("other column", "UPDATE t SET v = v + 1"),
                              ("key to itself", "UPDATE t SET id = id, v = v + 1")):
                times = []
                for _ in range(runs):
                    s.execute_one("BEGIN")
                    start = time.process_time()
                    s.execute_one(sql)
                    times.append(time.process_time() - start)
                    s.execute_one("ROLLBACK")
                out[name] = statistics.median(times) * 1000
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _loaded(db, rows: int):
    """A session of `db` with table t (id bigint PRIMARY KEY, v int, s text) of `rows` rows,
    checkpointed and idle (compaction after the load would count as the statements' CPU)."""
    import pyarrow as pa

    s = db.connect()
    s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int, s text)")
    for start in range(0, rows, LOAD_CHUNK):
        ids = np.arange(start, min(rows, start + LOAD_CHUNK))
        s.copy_in("t", None, pa.table({"id": ids, "v": (ids % 100).astype(np.int32),
                                       "s": ["x"] * ids.size}))
    s.execute_one("CHECKPOINT")
    db.wait_idle()
    return s


# Main ---------------------------------------------------------------------------------------------


def measure(names: list[str], sizes: list[int], seconds: float, writers: int, rounds: int,
            profile: bool, postgres_tcp: bool = True,
            keys: tuple[bool, ...] = (True, False),
            baseline: str | None = None, batch: int = 0, busy: frozenset = frozenset(),
            pgserver: str | None = None) -> dict[str, list[dict]]:
    """Every case on every server, taking turns in `rounds` slices of each case's time, so
    that all servers meet the same machine (the disk's fsync latency moves by 5x over minutes
    on a shared machine); the turns of the servers named in `busy` beside busy loops on every
    CPU (`busy_cpus`)."""
    directory = tempfile.mkdtemp(prefix="writes-")
    servers = {"sqlvec": sqlvec,
               "baseline": lambda d: sqlvec_baseline(d, baseline or "."),
               "postgres": lambda d: postgres(pgserver or d, tcp=postgres_tcp)}
    results: dict[str, list[dict]] = {}
    try:
        with contextlib.ExitStack() as stack:
            running = {name: stack.enter_context(servers[name](os.path.join(directory, name)))
                       for name in names}
            labels = {name: r[2] for name, r in running.items()}
            for rows in sizes:
                for pk in keys:
                    table = f"w{rows}_{'pk' if pk else 'nopk'}"
                    for name, (dsn, _pid, label) in running.items():
                        began = time.perf_counter()
                        load(dsn, table, rows, pk, name == "postgres")
                        print(f"{label}: loaded {table} in {time.perf_counter() - began:.1f} s",
                              file=sys.stderr)
                    cases = [{"kind": kind, "writers": n} for kind in ("insert", "update")
                             for n in (1, writers)]
                    if batch:
                        cases += [{"kind": kind, "writers": 1, "batch": batch}
                                  for kind in ("executemany", "asyncpg executemany")]
                    for shape in cases:
                        case = {"rows": rows, "primary_key": pk, **shape}
                        kind, n = case["kind"], case["writers"]
                        for name, r in _run_turns(running, table, case, seconds, rounds,
                                                  profile, directory, busy).items():
                            results.setdefault(name, []).append(r)
                            loops = (f", {r['busy_cpus']:.2f} CPUs to busy loops"
                                     if r["busy_cpus"] is not None else "")
                            print(f"{labels[name]}: {table} {kind} x{n}: {r['rate']:.0f}/s, "
                                  f"p50 {r['p50_ms'] or 0:.2f} ms, p90 {r['p90_ms'] or 0:.2f} ms, "
                                  f"p99 {r['p99_ms'] or 0:.2f} ms; {_scheduler_text(r)}"
                                  f"errors {r['errors']}; "
                                  f"fdatasync probe p50 {r['fsync_probe_ms']:.2f} ms{loops}",
                                  file=sys.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    results["labels"] = labels  # type: ignore[assignment]
    return results


_offsets = iter(range(1, 1 << 30))


def _run_turns(running: dict, table: str, case: dict, seconds: float, rounds: int,
               profile: bool, directory: str, busy: frozenset) -> dict[str, dict]:
    parts: dict[str, list[dict]] = {name: [] for name in running}
    for _ in range(rounds):
        for name, (dsn, pid, _label) in running.items():
            with busy_cpus(name in busy) as loops:
                probe = fdatasync_p50_ms(directory)
                spy = None
                raw = os.path.join(directory,
                                   f"{name}-{table}-{case['kind']}-{case['writers']}.txt")
                if profile and pid is not None:
                    spy = profile_start(pid, seconds / rounds, raw + f".{len(parts[name])}")
                r = run_case(dsn, table, case["rows"], case["kind"], case["writers"],
                             seconds / rounds, 10 ** 9 * next(_offsets), case.get("batch", 1),
                             pid)
                if spy is not None:
                    spy.wait()
            parts[name].append({**r, "probe": probe, "loops": loops.get("share")})
    out = {}
    for name, rs in parts.items():
        latencies = [x for r in rs for x in r.pop("latencies")]
        elapsed = sum(r["elapsed"] for r in rs)
        errors: collections.Counter = collections.Counter()
        for r in rs:
            errors.update(r["errors"])
        rows = len(latencies) * case.get("batch", 1)  # (statements: the rows of executemany)
        shares = [r["loops"] for r in rs if r["loops"] is not None]
        per = 1e6 / max(1, len(latencies))
        out[name] = {**case, "rate": rows / elapsed, "statements": rows,
                     "p50_ms": float(np.median(latencies) * 1e3) if latencies else None,
                     **_tail_ms(latencies),
                     **_scheduler_us(rs, per),
                     "errors": dict(errors),
                     "fsync_probe_ms": float(np.median([r["probe"] for r in rs])),
                     "busy_cpus": float(np.mean(shares)) if shares else None}
        if profile and running[name][1] is not None:
            raw = os.path.join(directory, f"{name}-{table}-{case['kind']}-{case['writers']}.txt")
            paths = [f"{raw}.{i}" for i in range(rounds)]
            out[name]["profile"] = profile_summary(paths)
            out[name]["layers_us"] = profile_layers(paths, PROFILE_RATE, len(latencies))
    return out


def _scheduler_us(turns: list[dict], per: float) -> dict[str, float | None]:
    """µs per statement the server ran on a CPU and waited for one (None: not measured)."""
    if any(r["ran"] is None for r in turns):
        return {"cpu_us": None, "run_queue_us": None}
    return {"cpu_us": sum(r["ran"] for r in turns) * per,
            "run_queue_us": sum(r["waited"] for r in turns) * per}


def _scheduler_text(r: dict) -> str:
    if r["cpu_us"] is None:
        return ""
    return (f"server per statement: CPU {r['cpu_us']:.0f} µs, waiting for a CPU "
            f"{r['run_queue_us']:.0f} µs; ")


def _tail_ms(latencies: list[float]) -> dict[str, float | None]:
    """p90 and p99 of the statements' latencies (ms): the tail a rate and a p50 hide."""
    if not latencies:
        return {"p90_ms": None, "p99_ms": None}
    p90, p99 = np.percentile(latencies, [90, 99]) * 1e3
    return {"p90_ms": float(p90), "p99_ms": float(p99)}


def _probes(ours: dict, theirs: dict | None) -> str:
    """The fdatasync probe's p50 in each server's turns, `*` marking turns with busy loops."""
    return " / ".join(f"{r['fsync_probe_ms']:.2f}{'*' if r['busy_cpus'] is not None else ''}"
                      for r in (ours, theirs) if r is not None)


def _rate_cell(r: dict) -> str:
    """A case's rate with its p50 and p99 (ms)."""
    return f"{r['rate']:,.0f} ({r['p50_ms'] or 0:.2f}, {r.get('p99_ms') or 0:.2f})"


def table_md(ours: list[dict], theirs: list[dict] | None, pg_label: str) -> str:
    """Markdown rows: each case's rate and p50 on both servers, their ratio, and the p50 of
    the bare fdatasync probed in each server's turns (the regime each met)."""
    lines = ["| rows | key | statement | writers | sqlvec /s (p50, p99 ms) | "
             f"{pg_label} /s (p50, p99 ms) | ratio | fdatasync probe p50 ms, each's turns |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(ours):
        p = theirs[i] if theirs else None
        pg = _rate_cell(p) if p and p["p50_ms"] else "—"
        ratio = f"{r['rate'] / p['rate']:.2f}" if p and p["rate"] else "—"
        lines.append(f"| {r['rows']:,} | {'pk' if r['primary_key'] else 'none'} | {r['kind']} | "
                     f"{r['writers']} | {_rate_cell(r)} | {pg} | "
                     f"{ratio} | {_probes(r, p)} |")
    return "\n".join(lines)


def _busy_servers(option: str) -> frozenset:
    """The servers `--busy-cpus` names ("all" when it names none; "" when not given)."""
    names = {"sqlvec", "baseline", "postgres"}
    chosen = names if option == "all" else {n for n in option.split(",") if n}
    if chosen - names:
        raise SystemExit(f"--busy-cpus: unknown servers {sorted(chosen - names)}")
    return frozenset(chosen)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="table sizes (rows)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per case (default 4)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers (default 4)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="turns each server takes per case (default 4)")
    parser.add_argument("--only", choices=("sqlvec", "postgres", "index", "engine", "log"),
                        default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the sqlvec server")
    parser.add_argument("--keys", default="pk,none",
                        help="tables with a primary key (pk), without (none), or both")
    parser.add_argument("--postgres-socket", action="store_true",
                        help="reach PostgreSQL over its Unix socket (default: loopback TCP, "
                             "as sqlvec)")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--baseline", default=None, metavar="CHECKOUT",
                        help="also run the sqlvec of this checkout (a directory holding its "
                             "sqlvec package) in the same rounds: before and after a change")
    parser.add_argument("--executemany", type=int, default=0, metavar="N",
                        help="also time executemany of N INSERTs a call (rate: rows/s)")
    parser.add_argument("--workers", default=None, metavar="N",
                        help="serve --workers N (or auto) for the sqlvec server (default: the "
                             "server's own, one worker per core)")
    parser.add_argument("--busy-cpus", nargs="?", const="all", default="", metavar="SERVERS",
                        help="run a `nice -n 19` busy loop on every CPU during the turns of "
                             "these servers (sqlvec,baseline,postgres; alone: all of them)")
    parser.add_argument("--pgserver", default=None, metavar="DIR",
                        help="PostgreSQL's data directory (pgserver; default: a temporary one)")
    args = parser.parse_args(argv)
    if args.workers is not None:
        from benchmarks import suite

        suite.SERVER_ARGS[:] = ["--workers", str(args.workers)]
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict = {"params": vars(args)}
    if args.only in (None, "index"):
        report["index"] = index_memory()
        for name, r in report["index"].items():
            print(f"{name}: {r['bytes'] / 2**20:.0f} MiB, built in {r['build_s']:.2f} s, "
                  f"lookup {r['lookup_us']:.2f} µs (1M int64 keys)")
    if args.only == "engine" and args.baseline:
        report["engine_cpu_us"] = engine_turns(max(sizes), args.baseline, args.rounds)
        print(f"engine CPU per statement (in process, no wire, no fsync, {max(sizes):,} rows; "
              f"medians of {args.rounds} turns of 500 statements each):")
        ours, theirs = report["engine_cpu_us"]["sqlvec"], report["engine_cpu_us"]["baseline"]
        for kind in ours:
            print(f"  {kind}: baseline {theirs[kind]:.1f} µs, this checkout "
                  f"{ours[kind]:.1f} µs ({ours[kind] / theirs[kind]:.2f} ×)")
    elif args.only in (None, "engine"):
        report["engine_cpu_us"] = engine_cpu(max(sizes))
        print("engine CPU per statement (in process, no wire, no fsync, "
              f"{max(sizes):,} rows): " + ", ".join(
                  f"{kind} {us:.0f} µs" for kind, us in report["engine_cpu_us"].items()))
    if args.only == "log":
        report["log_ms"] = log_commits(args.baseline, args.rounds)
        for name, r in report["log_ms"].items():
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    names = [n for n in ("sqlvec", "postgres") if args.only in (None, n)]
    if args.baseline and "sqlvec" in names:
        names.insert(1, "baseline")
    if names:
        results = measure(names, sizes, args.seconds, args.writers, args.rounds, args.profile,
                          postgres_tcp=not args.postgres_socket,
                          keys=tuple(k == "pk" for k in args.keys.split(",")),
                          baseline=args.baseline, batch=args.executemany,
                          busy=_busy_servers(args.busy_cpus), pgserver=args.pgserver)
        labels = results.pop("labels")
        report.update(results)
        report["labels"] = labels
        ours, theirs = results.get("sqlvec"), results.get("postgres")
        if results.get("baseline") is not None:
            print("baseline:")
            print(table_md(results["baseline"], theirs, labels.get("postgres", "PostgreSQL")))
        if ours is not None:
            print(table_md(ours, theirs, labels.get("postgres", "PostgreSQL")))
            for label, r in [(labels.get("baseline", ""), r) for r in results.get("baseline", [])
                             ] + [("", r) for r in ours]:
                if r.get("layers_us"):
                    layers = ", ".join(f"{name} {us:.0f}" for name, us in r["layers_us"].items())
                    print(f"- {label} {r['rows']:,} {'pk' if r['primary_key'] else 'no key'} "
                          f"{r['kind']} x{r['writers']}: µs per statement: {layers}")
                if r.get("profile"):
                    where = ", ".join(f"{share:.0%} {frame}" for share, frame in r["profile"][:5])
                    print(f"- {label} {r['rows']:,} {'pk' if r['primary_key'] else 'no key'} "
                          f"{r['kind']} x{r['writers']}: {where}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
