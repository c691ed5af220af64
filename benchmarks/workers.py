"""Server start and memory with `--workers N`: how long `sqlvec serve` takes to listen, and the
memory of all its processes, on a table with an HNSW index.

    python -m benchmarks workers --data-dir DIR [--rows 100000] [--dim 128] [--workers 0 2]
        [--rounds 3] [--code CHECKOUT]

Builds the table (`items`, `id int, emb vector(DIM)`, HNSW on `emb`) in DIR if DIR does not hold
one yet, then per round and per worker count starts `python -m wire serve` (from CHECKOUT when
given, to compare versions), times it until it logs that it listens, sums Pss and Rss of the
server and every descendant (/proc/<pid>/smaps_rollup; forked processes share pages, which Pss
counts once in all and Rss once per process), runs one top-10 search on each of 4 connections,
measures again and stops the server (timed too).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time


def build(path: str, rows: int, dim: int) -> None:
    """The table and its index (only when the directory has no table yet)."""
    import numpy as np

    from sqlvec.database import Database

    with Database.open(path) as db:
        if db.store().find_table("items") is not None:
            return
        table = db.create_table("items", {"id": "int", "emb": f"vector({dim})"})
        rng = np.random.default_rng(0)
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            table.insert({"id": np.arange(start, start + n),
                          "emb": rng.standard_normal((n, dim)).astype(np.float32)})
        table.create_index("emb", opclass="vector_l2_ops")
        db.wait_idle(3600)


def processes(root: int) -> list[int]:
    """`root` and its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out = [root]
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if ancestor:
            out.append(pid)
    return out


def memory(root: int) -> tuple[int, float, float]:
    """(processes, Pss MB, Rss MB) of `root` and its descendants."""
    pss = rss = 0
    pids = processes(root)
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
        pss += int(re.search(r"^Pss:\s+(\d+)", text, re.MULTILINE).group(1))
        rss += int(re.search(r"^Rss:\s+(\d+)", text, re.MULTILINE).group(1))
    return len(pids), pss / 1024, rss / 1024


def measure(code: str, path: str, workers: int, dim: int) -> dict:
    import psycopg

    env = {**os.environ, "PYTHONPATH": code}
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "wire", "serve", "--data-dir", path, "--port", "0",
         "--workers", str(workers)], cwd=code, env=env, stderr=subprocess.PIPE, text=True)
    port = None
    assert server.stderr is not None
    for line in server.stderr:
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        raise SystemExit(f"the server did not start (status {server.wait()})")
    start_s = time.monotonic() - started
    count, pss, rss = memory(server.pid)
    query = "[" + ",".join(["0.1"] * dim) + "]"
    conns = [psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                             autocommit=True) for _ in range(4)]
    for conn in conns:
        conn.execute("SELECT id FROM items ORDER BY emb <-> %s LIMIT 10", (query,)).fetchall()
    _, pss_after, rss_after = memory(server.pid)
    for conn in conns:
        conn.close()
    stopping = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(120)
    return {"workers": workers, "start_s": start_s, "stop_s": time.monotonic() - stopping,
            "processes": count, "pss_mb": pss, "rss_mb": rss, "pss_after_mb": pss_after,
            "rss_after_mb": rss_after}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks workers")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", default=os.getcwd(),
                        help="the checkout whose server is started (default: this one)")
    args = parser.parse_args(argv)
    build(args.data_dir, args.rows, args.dim)
    print("| workers | start (s) | stop (s) | processes | Pss MB | Rss MB "
          "| Pss MB after 4 searches |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for workers in args.workers:
            r = measure(os.path.abspath(args.code), args.data_dir, workers, args.dim)
            print(f"| {r['workers']} | {r['start_s']:.2f} | {r['stop_s']:.2f} | "
                  f"{r['processes']} | {r['pss_mb']:.0f} | {r['rss_mb']:.0f} | "
                  f"{r['pss_after_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
