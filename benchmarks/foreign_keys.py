"""What a foreign key costs a write, in process (no wire, no fsync): CPU time per statement.

A referenced table `p (id bigint PRIMARY KEY)` and a referencing `c (id bigint, pid bigint
REFERENCES p ON DELETE CASCADE)` of `--rows` rows each, beside `plain`, the same table without
the foreign key. Cases, each statement prepared and run through `Session.run` in autocommit:

- `insert child`: `INSERT INTO c VALUES ($1, $2)`, the key looked up in p's key index, against
  `insert plain` (a table without foreign keys takes the single-row fast path);
- `insert child 10k`: `INSERT INTO c SELECT ...` of 10,000 rows at once (the lookups are one
  vectorised probe), against the same into `plain`;
- `delete parent`: `DELETE FROM p WHERE id = $1` of a row nothing references: finding the
  referencing rows scans c's key column (PostgreSQL needs an index on it not to), so this
  grows with c.
- `commit deferred 10k`: the COMMIT of a block that inserted 10,000 rows into `d`, whose
  foreign key to p is DEFERRABLE INITIALLY DEFERRED: the check at COMMIT, which looks the
  keys up and locks the parent rows FOR KEY SHARE, then the commit (always in a block).

With `--block` the single-row statements run inside one transaction block (rolled back), where
each foreign-key check also records the table it reads as used by the block.

    python -m benchmarks foreign_keys
    python -m benchmarks foreign_keys --block
    python -m benchmarks foreign_keys --rows 1000000 --statements 500
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

LOAD_CHUNK = 100_000


def measure(rows: int, statements: int, block: bool = False) -> dict[str, float]:
    """CPU ms per statement of each case (`block`: the single-row ones in a block)."""
    import pyarrow as pa

    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    directory = tempfile.mkdtemp(prefix="fk-bench-")
    out: dict[str, float] = {}
    try:
        with Database.open(directory, options=StoreOptions(fsync=False)) as db:
            s = db.connect()
            s.execute_one("CREATE TABLE p (id bigint PRIMARY KEY)")
            s.execute_one("CREATE TABLE c (id bigint, pid bigint REFERENCES p "
                          "ON DELETE CASCADE)")
            s.execute_one("CREATE TABLE plain (id bigint, pid bigint)")
            s.execute_one("CREATE TABLE d (id bigint, pid bigint REFERENCES p "
                          "DEFERRABLE INITIALLY DEFERRED)")
            for start in range(0, rows, LOAD_CHUNK):
                ids = np.arange(start, min(rows, start + LOAD_CHUNK))
                s.copy_in("p", None, pa.table({"id": ids}))
                s.copy_in("c", None, pa.table({"id": ids, "pid": ids}))
                s.copy_in("plain", None, pa.table({"id": ids, "pid": ids}))
            s.execute_one("CHECKPOINT")
            db.wait_idle()
            extra = rows + statements * 2  # parents nothing references, for the deletes
            s.execute_one(f"INSERT INTO p SELECT g FROM generate_series({rows}, {extra}) g")
            cases = {
                "insert child": ("INSERT INTO c VALUES ($1, $2)", [20, 20],
                                 lambda i: [i, i % rows]),
                "insert plain": ("INSERT INTO plain VALUES ($1, $2)", [20, 20],
                                 lambda i: [i, i % rows]),
                "delete parent": ("DELETE FROM p WHERE id = $1", [20], lambda i: [rows + i]),
            }
            for name, (sql, types, params) in cases.items():
                prepared = s.prepare(sql, types)
                s.run(prepared, params(statements))  # warm
                if block:
                    s.execute_one("BEGIN")
                start = time.process_time()
                for i in range(statements):
                    s.run(prepared, params(i))
                out[name] = (time.process_time() - start) / statements * 1e3
                if block:
                    s.execute_one("ROLLBACK")
            for table in ("c", "plain"):
                batch = s.prepare(f"INSERT INTO {table} SELECT g, g % {rows} FROM "
                                  "generate_series(1, 10000) g", [])
                s.run(batch, [])  # warm
                start = time.process_time()
                for _ in range(5):
                    s.run(batch, [])
                name = "child" if table == "c" else "plain"
                out[f"insert {name} 10k"] = (time.process_time() - start) / 5 * 1e3
            out["commit deferred 10k"] = _deferred_commit(s, rows)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _deferred_commit(s, rows: int, rounds: int = 5) -> float:
    """CPU ms of the COMMIT of a block of 10,000 rows into `d` (deferred foreign key)."""
    insert = s.prepare("INSERT INTO d SELECT g, g % $1 FROM generate_series($2, $3) g",
                       [20, 20, 20])
    spent = 0.0
    for r in range(rounds + 1):  # (the first warms)
        s.execute_one("BEGIN")
        s.run(insert, [rows, r * 10_000, r * 10_000 + 9_999])
        start = time.process_time()
        s.execute_one("COMMIT")
        if r:
            spent += time.process_time() - start
    return spent / rounds * 1e3


def main(argv: list[str]) -> int:
    """Print CPU ms per statement for each case."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks foreign_keys")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--block", action="store_true",
                        help="single-row statements inside one transaction block")
    args = parser.parse_args(argv)
    result = measure(args.rows, args.statements, args.block)
    where = "in one block" if args.block else "autocommit"
    print(f"rows in p, c and plain: {args.rows}; CPU ms per statement ({where})")
    for name, ms in result.items():
        print(f"  {name:<18} {ms:8.3f}")
    return 0
