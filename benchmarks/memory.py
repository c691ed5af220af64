"""Server memory after load and after a restart, against raw hnswlib's index of the same vectors.

    python -m benchmarks memory --data-dir DIR [DIR ...] [--rows 1000000] [--dim 128]
        [--workers 0 2] [--rounds 1] [--code CHECKOUT ...] [--filtered-queries 20]

When a DIR is empty: starts `python -m wire serve --workers 0` (of its checkout) on it, creates
the suite's table (`items`: id, category, price, tag, embedding), loads the suite's dataset with
COPY binary, runs CREATE INDEX ... USING hnsw (m = 16, ef_construction = 64) and measures the
server ("after load"). Then, per round, per checkout (`--code`; with one DIR per checkout, each
on its own files, since versions may write different files) and per worker count, it restarts
the server (loading from files: the steady state users see), runs 4 top-10 searches on 4
connections and measures; then times filtered searches (FILTERED: exact over 0.1% of the rows,
through the graph at 1%, a forced exact scan of 10%) and measures once more. Memory is the sum
over the server and all its descendants of Pss (/proc/PID/smaps_rollup; pages shared between
forked processes counted once), split into anonymous and file-backed pages, and of Rss;
after the table, each process's Pss and Uss (its private pages).
`--frames` (as root: /proc/PID/pagemap shows physical frames only to root) adds, for each
run with workers, which processes share a frame at each anonymous page address (P the
primary, F the fork server, Wn the workers; "|" between distinct frames): Uss counts a page
that one process wrote after a fork as private twice (the writer's copy and the original),
this says who holds which copy.
Raw hnswlib builds the same vectors with the same M / ef_construction in a child process; the
size of its saved index (raw vector bytes + graph bytes) is the denominator of the ratios (its
resident growth during `add_items`, which adds the label map and allocator overhead, is
printed beside it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np

from benchmarks.workers import memory, processes, start


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(300)


def connect(port: int):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                           autocommit=True)
    register_vector(conn)
    return conn


def load(code: str, path: str, rows: int, dim: int, m: int, efc: int) -> dict:
    from benchmarks.suite import build_index, ingest, make_dataset

    ds = make_dataset(rows, dim, 10)
    server, port = start(code, path, 0)
    try:
        conn = connect(port)
        copy_rate = ingest(conn, ds, "items", "binary")
        build_s = build_index(conn, "items", m, efc)
        del ds
        searches(port, dim)
        count, pss, rss = memory(server.pid)
        conn.close()
    finally:
        stop(server)
    return {"copy_rows_per_s": copy_rate, "build_s": build_s, "processes": count,
            "pss_mb": pss, "rss_mb": rss}


def searches(port: int, dim: int) -> None:
    query = np.full(dim, 0.1, dtype=np.float32)
    conns = [connect(port) for _ in range(4)]
    for conn in conns:
        conn.execute("SELECT id FROM items ORDER BY embedding <-> %s LIMIT 10", (query,)).fetchall()
        conn.close()


# Filtered searches timed after a restart: (name, SET before, condition). 0.1% is answered
# exactly over its candidates (brute force over the filtered rows); 1% through the graph; the
# last is a forced exact scan of 10% of the rows.
FILTERED = (
    ("0.1% exact", None, "category = 3"),
    ("1% graph", None, "price < 10"),
    ("10% forced exact", "SET sqlvec.exact = on", "category = 1"),
)


def filtered(port: int, dim: int, count: int) -> dict[str, float]:
    """Median milliseconds of each filtered search (the first query of each included)."""
    rng = np.random.default_rng(5)
    out = {}
    for name, setting, condition in FILTERED:
        conn = connect(port)
        if setting:
            conn.execute(setting)
        times = []
        for _ in range(count):
            q = rng.standard_normal(dim).astype(np.float32)
            t = time.perf_counter()
            conn.execute(f"SELECT id FROM items WHERE {condition} ORDER BY embedding <-> %s "
                         "LIMIT 10", (q,)).fetchall()
            times.append(time.perf_counter() - t)
        conn.close()
        out[name] = float(np.median(times)) * 1000
    return out


def breakdown(root: int) -> dict[str, float]:
    """Pss, its anonymous and file-backed parts, and Rss (MiB) of `root` and descendants:
    file-backed pages (the mapped vectors files, libraries) are shared and reclaimable."""
    out = {"pss": 0.0, "anon": 0.0, "file": 0.0, "rss": 0.0}
    keys = {"pss": "Pss", "anon": "Pss_Anon", "file": "Pss_File", "rss": "Rss"}
    for pid in processes(root):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
        for key, field in keys.items():
            m = re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE)
            out[key] += int(m.group(1)) / 1024 if m else 0.0
    return out


def per_process(root: int) -> list[tuple[str, float, float, float]]:
    """(name, Pss, anonymous Pss, Uss) in MiB of `root` and each descendant. Uss (private
    pages) is what ending that process alone would free; pages it shares with the others
    (copy-on-write after the fork, libraries, the mapped vectors) are in the Pss split."""
    out = []
    for pid in processes(root):
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
        field = {key: int(value) / 1024 for key, value in
                 re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE)}
        out.append((name, field.get("Pss", 0.0), field.get("Pss_Anon", 0.0),
                    field.get("Private_Clean", 0.0) + field.get("Private_Dirty", 0.0)))
    return out


def _anonymous_ranges(pid: int) -> list[tuple[int, int]]:
    """The writable private anonymous mappings of a process (heap and stacks included)."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            name = parts[5] if len(parts) > 5 else ""
            if parts[1].startswith("rw") and parts[1].endswith("p") and \
                    (not name or name in ("[heap]", "[stack]")):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end))
    return out


def _frames_of(pid: int) -> dict[int, int]:
    """Page address -> physical frame of every resident page of those mappings."""
    out = {}
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        for start, end in _anonymous_ranges(pid):
            f.seek((start >> 12) * 8)
            data = f.read(((end - start) >> 12) * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63:  # present
                    out[start + (i << 12)] = entry & ((1 << 55) - 1)
    return out


def frames(root: int) -> list[tuple[str, float]] | None:
    """(pattern, MiB of page addresses) over `root` and its descendants, largest first: which
    processes share one frame at each anonymous page address ("P+F | W0 | W1": the primary
    and the fork server share the original, each worker holds a copy). None when frames are
    hidden (not root)."""
    names = {}
    for pid in processes(root):
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        names[pid] = "P" if pid == root else "F" if comm == "sqlvec-forks" else \
            comm.replace("sqlvec-worker-", "W")
    maps = {pid: _frames_of(pid) for pid in names}
    if not any(frame for frames_ in maps.values() for frame in frames_.values()):
        return None
    patterns: collections.Counter[str] = collections.Counter()
    for address in set().union(*maps.values()):
        sharing = collections.defaultdict(list)
        for pid, name in names.items():
            frame = maps[pid].get(address)
            if frame is not None:
                sharing[frame].append(name)
        patterns[" | ".join(sorted("+".join(group) for group in sharing.values()))] += 1
    return [(pattern, pages * 4096 / 2**20) for pattern, pages in patterns.most_common()]


def restart(code: str, path: str, workers: int, dim: int, filtered_count: int,
            with_frames: bool = False) -> dict:
    started = time.monotonic()
    server, port = start(code, path, workers)
    try:
        searches(port, dim)
        start_s = time.monotonic() - started
        count = len(processes(server.pid))
        steady = breakdown(server.pid)
        procs = per_process(server.pid)
        shared = frames(server.pid) if with_frames and workers else None
        times = filtered(port, dim, filtered_count) if filtered_count else {}
        after = breakdown(server.pid)
    finally:
        stop(server)
    return {"workers": workers, "start_s": start_s, "processes": count, "steady": steady,
            "filtered_ms": times, "after": after, "per_process": procs, "frames": shared}


def hnswlib_side(rows: int, dim: int, m: int, efc: int) -> dict:
    import tempfile

    import hnswlib

    from benchmarks.datasets import Clustered

    def resident() -> int:
        with open("/proc/self/smaps_rollup") as f:
            return int(re.search(r"^Rss:\s+(\d+)", f.read(), re.MULTILINE).group(1)) * 1024

    # The suite's vectors (make_dataset's generator and chunking), without its other columns.
    vectors = np.concatenate(list(Clustered(rows, dim, clusters=1000, seed=42).chunks(50_000)))
    index = hnswlib.Index(space="l2", dim=dim)
    before = resident()
    index.init_index(max_elements=rows, M=m, ef_construction=efc)
    index.add_items(vectors, np.arange(rows))
    grown = resident() - before
    with tempfile.TemporaryDirectory() as tmp:
        index.save_index(os.path.join(tmp, "index.bin"))
        file_bytes = os.path.getsize(os.path.join(tmp, "index.bin"))
    return {"vector_bytes": vectors.nbytes, "index_bytes": grown, "file_bytes": file_bytes}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, nargs="+",
                        help="one, or one per --code (each loaded first when empty)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--code", nargs="+", default=[os.getcwd()],
                        help="checkouts whose server is started (default: this one)")
    parser.add_argument("--filtered-queries", type=int, default=20)
    parser.add_argument("--skip-hnswlib", action="store_true")
    parser.add_argument("--frames", action="store_true",
                        help="who shares which physical frames (runs with workers; as root)")
    parser.add_argument("--side", choices=["hnswlib"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(hnswlib_side(args.rows, args.dim, args.m, args.ef_construction)))
        return 0
    codes = [os.path.abspath(c) for c in args.code]
    dirs = args.data_dir * len(codes) if len(args.data_dir) == 1 else args.data_dir
    if len(dirs) != len(codes):
        parser.error("give one --data-dir, or one per --code")
    limit = None
    if not args.skip_hnswlib:
        out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--side", "hnswlib",
                              *argv], check=True, capture_output=True, text=True)
        raw = json.loads(out.stdout.strip().splitlines()[-1])
        # The target's denominator: raw vector bytes + graph bytes, as hnswlib saves them.
        limit = raw["file_bytes"] / 2**20
        print(f"raw hnswlib: vectors {raw['vector_bytes'] / 2**20:,.0f} MiB; vectors + graph "
              f"{limit:,.0f} MiB (the denominator); its process holds "
              f"{raw['index_bytes'] / 2**20:,.0f} MiB for them", flush=True)
    ratio = (lambda mb: f"{mb / limit:.2f}") if limit else (lambda mb: "—")
    for code, path in zip(codes, dirs):
        if not os.path.isdir(path) or not os.listdir(path):
            os.makedirs(path, exist_ok=True)
            r = load(code, path, args.rows, args.dim, args.m, args.ef_construction)
            print(f"load ({os.path.basename(code)}): COPY binary {r['copy_rows_per_s']:,.0f} "
                  f"rows/s; CREATE INDEX {r['build_s']:.1f} s; after load Pss "
                  f"{r['pss_mb']:,.0f} MiB (ratio {ratio(r['pss_mb'])}), Rss {r['rss_mb']:,.0f} "
                  "MiB", flush=True)
    names = [name for name, _, _ in FILTERED]
    print("| code | workers | processes | start (s) | Pss MiB (anon + file) | Rss MiB | Pss / raw "
          "| " + " | ".join(f"{n} ms" for n in names) + " | Pss after them (anon + file) |")
    print("|---" * (8 + len(names)) + "|")
    split = []
    shared: list = []
    for _ in range(args.rounds):
        for code, path in zip(codes, dirs):
            for workers in args.workers:
                r = restart(code, path, workers, args.dim, args.filtered_queries, args.frames)
                split.append((os.path.basename(code), workers, r["per_process"]))
                if r["frames"] is not None:
                    shared.append((os.path.basename(code), workers, r["frames"]))
                s, a = r["steady"], r["after"]
                times = " | ".join(f"{r['filtered_ms'].get(n, float('nan')):.1f}" for n in names)
                print(f"| {os.path.basename(code)} | {workers} | {r['processes']} | "
                      f"{r['start_s']:.1f} | {s['pss']:,.0f} ({s['anon']:,.0f} + "
                      f"{s['file']:,.0f}) | {s['rss']:,.0f} | {ratio(s['pss'])} | {times} | "
                      f"{a['pss']:,.0f} ({a['anon']:,.0f} + {a['file']:,.0f}) |", flush=True)
    print("\nPer process, after the 4 searches (MiB):\n")
    print("| code | workers | process | Pss | anonymous Pss | Uss (private) |")
    print("|---|---|---|---|---|---|")
    for name, workers, procs in split:
        for proc, pss, anon, uss in procs:
            print(f"| {name} | {workers} | {proc} | {pss:,.1f} | {anon:,.1f} | {uss:,.1f} |")
    if args.frames and not shared:
        print("\n--frames: physical frames are shown to root only")
    for name, workers, patterns in shared:
        print(f"\nFrames, {name}, --workers {workers} (MiB of anonymous page addresses; "
              "processes sharing one frame joined by +, distinct frames by |):\n")
        for pattern, mib in patterns:
            if mib >= 0.05:
                print(f"    {mib:8.2f}  {pattern}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
