"""Writer process for the crash test: commits forever until it is killed.

    python crash_writer.py <datadir> <ackfile> [seed]

Two tables, `a` and `b` (key int8 primary key, grp int8, ver int4, v vector(4)), `a` with an
HNSW index. Rows come in *groups*: group `g` holds keys g*10 .. g*10 + size_a(g) - 1 in `a`
(and, when two_tables(g), keys g*10 .. g*10 + size_b(g) - 1 in `b`); every row of a group has
the same `ver`, and a row's vector is `vector_of(key, ver)`. Every commit touches exactly one
group, so after a crash each group must be wholly present or wholly absent, in both tables.

After a commit returns, one line is appended to the ack file, flushed and fsynced:

    ins <g>        group g inserted into a
    mt <g>         group g inserted into a and b by one Store.commit
    del <g>        group g deleted from a
    delmt <g>      group g deleted from a and b by one Store.commit
    upd <g> <ver>  every row of group g (in a) updated to version ver

`ready <first group>` is written once the tables exist. Small seal_rows, a small WAL segment
size and an aggressive compaction policy make sealing, index builds, checkpoints and merges run
in the background while commits go on, so kills land in the middle of all of them.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pyarrow.compute as pc

from sqlvec.database import Database
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.schema import ROWID
from sqlvec.storage.store import StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp

COLUMNS = {"key": "int8", "grp": "int8", "ver": "int4", "v": "vector(4)"}


def options() -> StoreOptions:
    return StoreOptions(
        seal_rows=48,
        wal_segment_bytes=16 << 10,
        checkpoint_wal_bytes=48 << 10,
        manifest_keep=4,
        index_threads=1,
        compaction=CompactionPolicy(target_rows=600, small_fraction=0.5, min_merge=3,
                                    deleted_ratio=0.3),
    )


def two_tables(group: int) -> bool:
    """Whether group `group` is inserted into both tables (by its number, so a checker knows
    it even for a commit that was never acknowledged)."""
    return group % 3 == 0


def size_a(group: int) -> int:
    return 1 + group % 7


def size_b(group: int) -> int:
    return 1 + group % 3


def keys_of(group: int, size: int) -> np.ndarray:
    return group * 10 + np.arange(size, dtype=np.int64)


def vector_of(keys: np.ndarray, ver: int | np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.int64)
    ver = np.broadcast_to(np.asarray(ver, dtype=np.int64), keys.shape)
    return np.stack([keys * 0.5, ver, keys % 13, -(keys % 5) - ver], axis=1).astype(np.float32)


def rows(group: int, size: int, ver: int = 0) -> dict:
    keys = keys_of(group, size)
    return {"key": keys, "grp": np.full(size, group), "ver": np.full(size, ver, np.int32),
            "v": vector_of(keys, ver)}


def open_tables(db: Database):
    names = {t.def_.name for t in db.store().tables.values()}
    for name in ("a", "b"):
        if name not in names:
            db.create_table(name, COLUMNS, primary_key=["key"])
    a, b = db.table("a"), db.table("b")
    if not a.definition.indexes:
        a.create_index("v", m=8, ef_construction=32)
    return a, b


class Ack:
    def __init__(self, path: str) -> None:
        # A line cut short by the previous kill never counted: drop it.
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self.file = open(path, "a")

    def __call__(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


def acked_groups(path: str) -> int:
    top = -1
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and line.endswith("\n"):
                    top = max(top, int(parts[1]))
    return top


def main() -> None:
    datadir, ackpath = sys.argv[1], sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    ack = Ack(ackpath)
    db = Database.open(datadir, options=options())
    a, b = open_tables(db)
    store = a.store

    # What is live now: group -> (two-table?, version).
    live: dict[int, tuple[bool, int]] = {}
    top = acked_groups(ackpath)
    in_b = set(b.scan(["grp"]).column("grp").to_pylist())
    current = a.scan(["grp", "ver"])
    for g, ver in zip(current.column("grp").to_pylist(), current.column("ver").to_pylist()):
        live[g] = (g in in_b, ver)
        top = max(top, g)
    top = max([top, *in_b])
    group = top + 1
    ack(f"ready {group}")

    commits = 0
    while True:
        roll = rng.random()
        if (roll < 0.65 or len(live) < 8) and not two_tables(group):
            a.insert(rows(group, size_a(group)))
            live[group] = (False, 0)
            ack(f"ins {group}")
            group += 1
        elif roll < 0.65 or len(live) < 8:
            ta, tb = store.table(a.table_id), store.table(b.table_id)
            store.commit([InsertOp(a.table_id, ta.coerce(rows(group, size_a(group)))),
                          InsertOp(b.table_id, tb.coerce(rows(group, size_b(group))))])
            live[group] = (True, 0)
            ack(f"mt {group}")
            group += 1
        elif roll < 0.82:
            victim = rng.choice(sorted(live))
            two, _ = live.pop(victim)

            def pick(t, g=victim):
                return t.scan([], filter=lambda r: pc.equal(r["grp"], g),
                              with_rowid=True).column(ROWID).to_numpy()

            if two:
                store.commit([DeleteOp(a.table_id, pick(a)), DeleteOp(b.table_id, pick(b))])
                ack(f"delmt {victim}")
            else:
                a.delete(lambda r, g=victim: pc.equal(r["grp"], g))
                ack(f"del {victim}")
        else:
            target = rng.choice(sorted(live))
            two, ver = live[target]
            ver += 1
            a.update(lambda r, g=target: pc.equal(r["grp"], g),
                     {"ver": ver,
                      "v": lambda old, ver=ver: vector_of(old.column("key").to_numpy(), ver)})
            live[target] = (two, ver)
            ack(f"upd {target} {ver}")
        commits += 1
        if commits % 97 == 0:
            store.checkpoint()


if __name__ == "__main__":
    main()
