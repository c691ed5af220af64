"""A follower store beside a real writer: what it shows after catch_up, and that it never writes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sqlvec.errors import ReadOnlySqlTransaction, SqlVecError
from sqlvec.storage import keys
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.follower import FollowerStore, _Superseded
from sqlvec.storage.keys import MISSING
from sqlvec.storage.schema import ROWID, ColumnDef, IndexDef
from sqlvec.storage.store import Store, StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp, wal_files
from sqlvec.types import SqlType
from sqlvec.vectors import Metric

DIM = 4
SEAL = 40
POLICY = CompactionPolicy(target_rows=200, small_fraction=0.5, min_merge=2, deleted_ratio=0.2)


def options(**changes) -> StoreOptions:
    base = dict(background=False, fsync=False, seal_rows=SEAL, compaction=POLICY)
    base.update(changes)
    return StoreOptions(**base)


def vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(DIM)[None, :]
    return np.sin(x * 3.7 + j * 1.3 + x * j * 0.91).astype(np.float32)


def create(store: Store, name: str = "t") -> int:
    cols = [ColumnDef("id", SqlType.parse("int8"), 0), ColumnDef("val", SqlType.parse("text"), 0),
            ColumnDef("v", SqlType.parse(f"vector({DIM})"), 0)]
    return store.create_table(name, cols, primary_key=["id"]).id


def rows_of(ids, tag: str = "a") -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "val": [f"{tag}{i}" for i in ids], "v": vectors(ids)}


def visible(store, table_id: int) -> list[tuple]:
    """Every live row as (rowid, id, val), sorted: what a reader of the table sees."""
    table = store.table(table_id)
    columns = [c for c in ("id", "val") if table.def_.has_column(c)]
    t = table.snapshot().to_table(columns, with_rowid=True)
    vals = t.column("val").to_pylist() if "val" in columns else [None] * t.num_rows
    return sorted(zip(t.column(ROWID).to_pylist(), t.column("id").to_pylist(), vals))


def rowids_of(store: Store, table_id: int, ids) -> np.ndarray:
    t = store.table(table_id).snapshot().to_table(["id"], with_rowid=True)
    keep = np.isin(t.column("id").to_numpy(), np.asarray(list(ids), dtype=np.int64))
    return t.column(ROWID).to_numpy()[keep]


def same(writer: Store, follower: FollowerStore) -> None:
    """The follower, caught up to the writer's durable LSN, shows what the writer shows."""
    assert follower.catch_up(writer.durable_lsn) >= writer.durable_lsn
    assert sorted(follower.tables) == sorted(writer.tables)
    for tid in writer.tables:
        assert follower.table(tid).def_ == writer.table(tid).def_
        assert visible(follower, tid) == visible(writer, tid)
    assert follower.catalog == writer.catalog


@pytest.fixture
def pair(tmp_path):
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    follower = FollowerStore.open(directory, options())
    yield writer, follower
    follower.close()
    writer.close()


# Following commits -------------------------------------------------------------------------


def test_inserts_deletes_updates_become_visible_after_catch_up(pair):
    writer, follower = pair
    tid = create(writer)
    same(writer, follower)
    writer.insert(tid, rows_of(range(10)))
    assert visible(follower, tid) == []  # nothing moves until catch_up
    same(writer, follower)
    before = follower.table(tid).snapshot()
    writer.delete(tid, rowids_of(writer, tid, [3, 4]))
    # An UPDATE: one commit deleting the old version and inserting the new one.
    table = writer.table(tid)
    writer.commit([DeleteOp(tid, rowids_of(writer, tid, [5])),
                   InsertOp(tid, table.coerce(rows_of([5], "b")))])
    same(writer, follower)
    assert [r[1:] for r in visible(follower, tid) if r[1] in (3, 4, 5)] == [(5, "b5")]
    # A snapshot taken before still reads what it saw.
    assert len(before.to_table(["id"])) == 10


def test_catch_up_stops_at_the_target_lsn(pair):
    writer, follower = pair
    tid = create(writer)
    first = writer.commit([InsertOp(tid, writer.table(tid).coerce(rows_of([1])))])
    writer.insert(tid, rows_of([2]))
    assert follower.catch_up(first) == first
    assert [r[1] for r in visible(follower, tid)] == [1]
    assert follower.catch_up() == writer.durable_lsn
    assert [r[1] for r in visible(follower, tid)] == [1, 2]


def test_a_transaction_over_two_tables_is_applied_whole(pair):
    writer, follower = pair
    a, b = create(writer, "a"), create(writer, "b")
    writer.commit([InsertOp(a, writer.table(a).coerce(rows_of([1]))),
                   InsertOp(b, writer.table(b).coerce(rows_of([2])))])
    same(writer, follower)
    assert [r[1] for r in visible(follower, a)] == [1]
    assert [r[1] for r in visible(follower, b)] == [2]


def test_durable_lsn_source_is_the_default_target(tmp_path):
    directory = str(tmp_path / "db")
    with_writer = Store.open(directory, options())
    tid = create(with_writer)
    published = {"lsn": with_writer.durable_lsn}  # what the writer has made known so far
    follower = FollowerStore.open(directory, options(), durable_lsn=lambda: published["lsn"])
    with_writer.insert(tid, rows_of([1]))
    with_writer.insert(tid, rows_of([2]))
    assert follower.catch_up() == published["lsn"]
    assert visible(follower, tid) == []
    published["lsn"] = with_writer.durable_lsn
    follower.catch_up()
    assert [r[1] for r in visible(follower, tid)] == [1, 2]
    follower.close()
    with_writer.close()


# Manifest changes while following --------------------------------------------------------


def test_seal_and_compaction_while_following(pair):
    writer, follower = pair
    tid = create(writer)
    for start in range(0, 160, SEAL):  # four sealed segments
        writer.insert(tid, rows_of(range(start, start + SEAL)))
    writer.insert(tid, rows_of(range(1000, 1005)))  # and a growing one
    same(writer, follower)
    assert len(follower.table(tid).sealed) == 4
    old = follower.table(tid).snapshot()
    writer.delete(tid, rowids_of(writer, tid, range(0, 160, 3)))
    assert writer.compact(tid) > 0
    assert len(writer.table(tid).sealed) < 4
    same(writer, follower)
    files = sorted(os.path.basename(s.path) for s in follower.table(tid).sealed)
    assert files == sorted(os.path.basename(s.path) for s in writer.table(tid).sealed)
    # The old snapshot still reads the segments compaction replaced (their files are gone).
    assert len(old.to_table(["id"])) == 165
    # Unchanged segments are shared with the table the follower had, not read again.
    writer.insert(tid, rows_of(range(2000, 2000 + SEAL)))
    kept = {s.path: s for s in follower.table(tid).sealed}
    same(writer, follower)
    assert all(kept[s.path] is s for s in follower.table(tid).sealed if s.path in kept)


def test_ddl_while_following(pair):
    writer, follower = pair
    tid = create(writer)
    writer.insert(tid, rows_of(range(100)))
    same(writer, follower)
    # CREATE INDEX: the follower loads the same index files and searches with them.
    index = IndexDef("t_v_idx", writer.allocate_oid(), ("v",), opclass="vector_l2_ops")
    writer.create_index(tid, index)
    same(writer, follower)
    assert all(s.index("t_v_idx") is not None for s in follower.table(tid).sealed)
    plans: list = []
    query = vectors([7])[0]
    found = follower.table(tid).snapshot().search("v", Metric.L2, query, 5, columns=["id"],
                                                  plans=plans)
    expected = writer.table(tid).snapshot().search("v", Metric.L2, query, 5, columns=["id"])
    assert found.column("id").to_pylist() == expected.column("id").to_pylist()
    assert any(p.strategy == "hnsw" for p in plans)
    # ALTER TABLE (add a column), a new table, a catalog change, DROP INDEX, DROP TABLE.
    writer.alter_table(tid, lambda d: d.with_changes(
        name="t2", columns=d.columns + (ColumnDef("extra", SqlType.parse("int4"), d.next_attnum),),
        next_attnum=d.next_attnum + 1))
    other = create(writer, "u")
    writer.insert(other, rows_of([1, 2]))
    writer.update_catalog(lambda c: {**c, "schemas": ["public", "s"]})
    same(writer, follower)
    assert follower.find_table("t2") is not None and follower.find_table("t") is None
    writer.drop_index("t_v_idx")
    same(writer, follower)
    assert all(s.index("t_v_idx") is None for s in follower.table(tid).sealed)
    writer.drop_table(tid)
    same(writer, follower)
    assert tid not in follower.tables
    assert [r[1] for r in visible(follower, other)] == [1, 2]


def test_new_manifest_is_shown_with_every_commit_it_reflects(pair):
    """A manifest's delete bitmaps may hold the delete of an UPDATE whose insert is in the
    WAL: the table loaded from it is replayed that far before readers see it."""
    writer, follower = pair
    tid = create(writer)
    writer.insert(tid, rows_of(range(SEAL)))  # one sealed segment
    same(writer, follower)
    behind = writer.durable_lsn
    table = writer.table(tid)
    writer.commit([DeleteOp(tid, rowids_of(writer, tid, [5])),
                   InsertOp(tid, table.coerce(rows_of([5], "b")))])
    updated = writer.durable_lsn
    writer.alter_table(tid, lambda d: d.with_changes(name="renamed"))  # a new manifest
    assert follower.catch_up(behind) >= updated
    assert follower.table(tid).def_.name == "renamed"
    assert [r[1:] for r in visible(follower, tid) if r[1] == 5] == [(5, "b5")]


def _commit_block(writer: Store, ops_of) -> None:
    """A transaction block with a schema change (a new table) and the writes `ops_of(writer)`:
    committed by a manifest alone, no WAL record."""
    writer.begin_deferred()
    create(writer, f"z{writer.next_table_id}")
    writer.commit_deferred(ops_of(writer))


@pytest.mark.parametrize("rows, ops_of", [
    (10, lambda w: [TruncateOp(1)]),  # rows only in the growing segment
    (SEAL, lambda w: [TruncateOp(1)]),  # rows only in a sealed segment
    (SEAL, lambda w: [DeleteOp(1, rowids_of(w, 1, range(5)))]),  # a new delete bitmap
    (SEAL + 3, lambda w: [DeleteOp(1, rowids_of(w, 1, [0, SEAL + 1]))]),
    (SEAL, lambda w: [TruncateOp(1), InsertOp(1, w.table(1).coerce(rows_of([7], "b")))]),
], ids=["truncate growing", "truncate sealed", "delete sealed", "delete both", "truncate insert"])
def test_a_blocks_commit_without_a_log_record_reaches_the_follower(pair, rows, ops_of):
    writer, follower = pair
    tid = create(writer)
    assert tid == 1
    writer.insert(tid, rows_of(range(rows)))
    same(writer, follower)
    _commit_block(writer, ops_of)
    same(writer, follower)
    writer.insert(tid, rows_of([1000]))  # and the log brings the reloaded table forward
    same(writer, follower)


def test_the_count_of_commits_without_a_log_record_survives_a_writer_restart(tmp_path):
    """A follower holding a table at count 1 must see the next such commit after a restart
    of the writer as one more, not as the same count started again from 0."""
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    follower = FollowerStore.open(directory, options())
    try:
        tid = create(writer)
        writer.insert(tid, rows_of(range(5)))
        _commit_block(writer, lambda w: [TruncateOp(tid)])
        same(writer, follower)
        writer.close()
        writer = Store.open(directory, options())
        writer.insert(tid, rows_of(range(10, 15)))  # only in the growing segment
        same(writer, follower)
        _commit_block(writer, lambda w: [TruncateOp(tid)])
        same(writer, follower)
        assert visible(follower, tid) == []
    finally:
        follower.close()
        writer.close()


def test_checkpoint_and_wal_truncation_while_following(tmp_path):
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options(wal_segment_bytes=2048, seal_rows=10_000))
    tid, idle = create(writer), create(writer, "idle")
    writer.insert(idle, rows_of(range(5)))
    writer.seal(idle)
    follower = FollowerStore.open(directory, options(seal_rows=10_000))
    reading = [p for _first, p in wal_files(os.path.join(directory, "wal"))]
    for i in range(30):  # many WAL files, then a checkpoint removes all but the newest
        writer.insert(tid, rows_of(range(i * 10, i * 10 + 10)))
        if i == 2:
            follower.catch_up(writer.durable_lsn)
        if i == 3:  # only idle's delete bitmap changes: its files stay the same
            writer.delete(idle, rowids_of(writer, idle, [0]))
    writer.delete(tid, rowids_of(writer, tid, [0, 1]))
    writer.checkpoint()
    remaining = wal_files(os.path.join(directory, "wal"))
    assert len(remaining) == 1 and not any(os.path.exists(p) for p in reading)
    writer.insert(tid, rows_of([5000]))
    same(writer, follower)
    assert [r[1] for r in visible(follower, idle)] == [1, 2, 3, 4]
    follower.close()
    writer.close()


def test_follower_that_fell_behind_a_checkpoint_reloads(tmp_path):
    """Its next record's file is gone and newer manifests exist: it loads the newest."""
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options(wal_segment_bytes=1024, manifest_keep=2))
    tid = create(writer)
    follower = FollowerStore.open(directory, options())
    for i in range(12):  # several seals, checkpoints and manifests, older ones pruned
        writer.insert(tid, rows_of(range(i * 20, i * 20 + 20)))
        if i % 3 == 2:
            writer.checkpoint()
    same(writer, follower)
    follower.close()
    writer.close()


def test_files_removed_while_loading_mean_a_newer_manifest(pair):
    """DROP INDEX and DROP TABLE remove files at once, while older manifests still list them:
    a follower loading such a manifest starts over from the newest, publishing nothing."""
    writer, follower = pair
    tid = create(writer)
    writer.insert(tid, rows_of(range(SEAL)))
    same(writer, follower)
    tables = follower.tables
    writer.create_index(tid, IndexDef("ix", writer.allocate_oid(), ("v",),
                                      opclass="vector_l2_ops"))
    with_index = writer.manifest_version
    writer.drop_index("ix")
    with pytest.raises(_Superseded):
        follower._reload(follower._manifests.load(with_index))
    writer.drop_table(tid)
    with pytest.raises(_Superseded):
        follower._reload(follower._manifests.load(with_index))
    assert follower.tables is tables and follower.manifest_version < with_index
    same(writer, follower)
    assert follower.tables == {}


# The WAL's tail --------------------------------------------------------------------------


def test_half_written_tail_record_waits_until_complete(pair):
    writer, follower = pair
    tid = create(writer)
    writer.insert(tid, rows_of([1]))
    same(writer, follower)
    wal = wal_files(os.path.join(writer.directory, "wal"))[-1][1]
    start = os.path.getsize(wal)
    writer.insert(tid, rows_of([2]))
    with open(wal, "rb") as f:
        f.seek(start)
        record = f.read()
    assert record
    # As another process would find it mid-write: part of the record, then zeros (space
    # allocated ahead), then the record whole but for its last byte.
    for partial in (record[:10], record[:-20] + bytes(20), record[:-1]):
        with open(wal, "r+b") as f:
            f.truncate(start)
            f.seek(start)
            f.write(partial)
        assert follower.catch_up() == writer.durable_lsn - 1
        assert [r[1] for r in visible(follower, tid)] == [1]
        assert os.path.getsize(wal) == start + len(partial)  # never truncated
    with open(wal, "r+b") as f:
        f.seek(start)
        f.write(record)
    same(writer, follower)
    assert [r[1] for r in visible(follower, tid)] == [1, 2]


# Never writing ---------------------------------------------------------------------------


def directory_state(directory: str) -> dict[str, tuple[int, int]]:
    state = {}
    for root, dirs, files in os.walk(directory):
        for name in files + dirs:
            path = os.path.join(root, name)
            st_ = os.stat(path)
            state[os.path.relpath(path, directory)] = (st_.st_size, st_.st_mtime_ns)
    return state


def test_follower_never_modifies_the_directory(tmp_path):
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    tid = create(writer)
    writer.insert(tid, rows_of(range(100)))
    writer.create_index(tid, IndexDef("ix", writer.allocate_oid(), ("v",),
                                      opclass="vector_l2_ops"))
    writer.insert(tid, rows_of(range(100, 110)))
    writer.delete(tid, rowids_of(writer, tid, [0, 105]))
    writer.close()
    # What a crash leaves for the writer's recovery to clean up: a torn WAL tail, a manifest
    # temp file. The follower leaves both alone.
    wal = wal_files(os.path.join(directory, "wal"))[-1][1]
    with open(wal, "ab") as f:
        f.write(b"\x07\x00\x00")
    with open(os.path.join(directory, "manifest", "manifest-00000099.json.tmp"), "wb") as f:
        f.write(b"{")
    before = directory_state(directory)
    follower = FollowerStore.open(directory, options())
    assert len(visible(follower, tid)) == 108
    follower.catch_up()
    follower.table(tid).snapshot().search("v", Metric.L2, vectors([1])[0], 3)
    assert directory_state(directory) == before
    # No LOCK is held: the writer opens the directory while the follower is open.
    writer = Store.open(directory, options())
    writer.insert(tid, rows_of([500]))
    same(writer, follower)
    writer.close()
    follower.close()


def test_write_methods_raise_read_only(pair):
    writer, follower = pair
    tid = create(writer)
    same(writer, follower)
    calls = {
        "commit": lambda: follower.commit([]),
        "insert": lambda: follower.insert(tid, rows_of([1])),
        "delete": lambda: follower.delete(tid, [0]),
        "truncate": lambda: follower.truncate(tid),
        "create_table": lambda: follower.create_table("x", []),
        "drop_table": lambda: follower.drop_table(tid),
        "alter_table": lambda: follower.alter_table(tid, lambda d: d),
        "create_index": lambda: follower.create_index(tid, None),
        "drop_index": lambda: follower.drop_index("ix"),
        "update_catalog": lambda: follower.update_catalog(lambda c: c),
        "allocate_oid": follower.allocate_oid,
        "seal": lambda: follower.seal(tid),
        "checkpoint": follower.checkpoint,
        "compact": lambda: follower.compact(tid),
    }
    for name, call in calls.items():
        with pytest.raises(ReadOnlySqlTransaction) as err:
            call()
        assert err.value.sqlstate == "25006", name
        assert err.value.message.startswith("cannot execute ")
        assert err.value.message.endswith(" in a read-only transaction")
    with pytest.raises(ReadOnlySqlTransaction, match="cannot execute INSERT in a read-only"):
        follower.insert(tid, rows_of([1]))
    # Every public method of the writer is either shared (reads) or refused.
    for name in dir(Store):
        if not name.startswith("_") and callable(getattr(Store, name)):
            assert callable(getattr(follower, name)), name


# Random operations ------------------------------------------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 30)),
    st.tuples(st.just("delete"), st.integers(0, 2**16)),
    st.tuples(st.just("update"), st.integers(0, 2**16)),
    st.tuples(st.sampled_from(["seal", "compact", "checkpoint", "catch_up", "index",
                               "truncate", "table"]), st.just(0)),
), min_size=1, max_size=25)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
# A table emptied by a seal whose checkpoint then fell back behind the log a later manifest
# had already removed (found by this test).
@example(ops=[("insert", 1), ("insert", 1), ("insert", 1), ("insert", 26), ("table", 0),
              ("insert", 1), ("insert", 24), ("update", 0), ("insert", 25)])
def test_random_operations_follower_equals_writer(ops):
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "db")
        writer = Store.open(directory, options(wal_segment_bytes=4096, seal_rows=25))
        tables = [create(writer)]
        follower = FollowerStore.open(directory, options(seal_rows=25))
        next_id = 0
        try:
            for kind, arg in ops:
                tid = tables[arg % len(tables)] if kind in ("delete", "update") else tables[-1]
                live = [r[1] for r in visible(writer, tid)]
                if kind == "insert":
                    writer.insert(tid, rows_of(range(next_id, next_id + arg)))
                    next_id += arg
                elif kind in ("delete", "update") and live:
                    rng = np.random.default_rng(arg)
                    chosen = rng.choice(live, size=min(len(live), 1 + arg % 5), replace=False)
                    ops_ = [DeleteOp(tid, rowids_of(writer, tid, chosen))]
                    if kind == "update":
                        ops_.append(InsertOp(tid, writer.table(tid).coerce(rows_of(chosen, "u"))))
                    writer.commit(ops_)
                elif kind == "seal":
                    writer.seal(tid)
                elif kind == "compact":
                    writer.compact(tid)
                elif kind == "checkpoint":
                    writer.checkpoint()
                elif kind == "catch_up":
                    same(writer, follower)
                elif kind == "index" and not writer.table(tid).def_.indexes:
                    writer.create_index(tid, IndexDef(f"ix{tid}", writer.allocate_oid(), ("v",),
                                                      opclass="vector_l2_ops"))
                elif kind == "truncate":
                    writer.truncate(tid)
                elif kind == "table":
                    tables.append(create(writer, f"t{len(tables)}"))
            same(writer, follower)
        finally:
            follower.close()
            writer.close()


def test_following_a_writer_with_background_work(tmp_path):
    """Seals, index builds, compactions and checkpoints run in the writer's threads while the
    follower catches up in a loop: every state it shows is a prefix of the commits."""
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options(background=True, wal_segment_bytes=4096,
                                           checkpoint_wal_bytes=16_384, manifest_keep=2))
    tid = create(writer)
    writer.create_index(tid, IndexDef("ix", writer.allocate_oid(), ("v",),
                                      opclass="vector_l2_ops"))
    follower = FollowerStore.open(directory, options())
    commits = 150
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(commits):
                writer.insert(tid, rows_of(range(i * 10, i * 10 + 10)))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen = 0
    while True:
        finished = done.is_set()
        follower.catch_up(writer.durable_lsn)
        ids = sorted(r[1] for r in visible(follower, tid))
        assert ids == list(range(len(ids))) and len(ids) % 10 == 0 and len(ids) >= seen
        seen = len(ids)
        if finished:
            break
    thread.join()
    writer.wait_idle()
    same(writer, follower)
    assert seen == commits * 10
    follower.close()
    writer.close()


def test_opening_a_directory_without_a_database(tmp_path):
    directory = str(tmp_path / "none")
    with pytest.raises(SqlVecError) as err:
        FollowerStore.open(directory)
    assert err.value.sqlstate == "58P01"
    assert not os.path.exists(directory)


# A writer in another process ------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from sqlvec.storage.schema import ColumnDef
    from sqlvec.storage.store import Store, StoreOptions
    from sqlvec.types import SqlType

    store = Store.open(sys.argv[1], StoreOptions(background=False, seal_rows=30,
                                                 wal_segment_bytes=4096))
    cols = [ColumnDef("id", SqlType.parse("int8"), 0)]
    tid = store.create_table("t", cols, primary_key=["id"]).id
    print(tid, store.durable_lsn, flush=True)
    for line in sys.stdin:  # one step per line: the test reads after each one
        step = int(line)
        store.insert(tid, {"id": np.arange(step * 10, step * 10 + 10)})
        if step % 4 == 3:
            store.checkpoint()
        print(store.durable_lsn, store.manifest_version, flush=True)
    store.close()
""")


def test_writer_in_another_process(tmp_path):
    directory = str(tmp_path / "db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, directory], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        tid, _lsn = map(int, proc.stdout.readline().split())
        follower = FollowerStore.open(directory, options())
        for step in range(10):
            proc.stdin.write(f"{step}\n")
            proc.stdin.flush()
            durable, version = map(int, proc.stdout.readline().split())
            # Read-your-writes across processes: wait for the writer's durable LSN.
            assert follower.catch_up(durable, manifest_version=version) >= durable
            assert sorted(r[1] for r in visible(follower, tid)) == list(range(step * 10 + 10))
        follower.close()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def test_a_follower_seeded_with_the_writers_tables_shares_their_segments_and_indexes(tmp_path):
    """A follower opened in a process forked from the writer (`seed`): sealed segments, their
    vector indexes and delete bitmaps are the writer's objects, not loaded again; rows of
    the growing segment are replayed from the log; both show and search the same, and the
    follower goes on following without touching the writer's tables."""
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    try:
        tid = create(writer)
        writer.insert(tid, rows_of(range(100)))
        writer.create_index(tid, IndexDef("ix", writer.allocate_oid(), ("v",),
                                          opclass="vector_l2_ops"))
        writer.delete(tid, rowids_of(writer, tid, [3, 4]))
        writer.insert(tid, rows_of(range(100, 110)))  # in the growing segment
        follower = FollowerStore.open(directory, options(), seed=writer.tables)
        try:
            table, theirs = follower.table(tid), writer.table(tid)
            assert table is not theirs
            assert table.sealed and [id(s) for s in table.sealed] == \
                [id(s) for s in theirs.sealed]
            assert all(s.index("ix") is not None for s in table.sealed)
            same(writer, follower)
            query = vectors([7])[0]
            found = table.snapshot().search("v", Metric.L2, query, 5, columns=["id"])
            expected = theirs.snapshot().search("v", Metric.L2, query, 5, columns=["id"])
            assert found.column("id").to_pylist() == expected.column("id").to_pylist()
            writer.delete(tid, rowids_of(writer, tid, [5, 105]))
            writer.insert(tid, rows_of([200]))
            same(writer, follower)
        finally:
            follower.close()
    finally:
        writer.close()



def test_a_seeded_follower_shares_the_writers_key_index_when_its_rows_are_the_files(
        tmp_path, monkeypatch):
    """Unique keys are not rebuilt by a seeded follower when the writer's table holds exactly
    its files' rows (nothing in the growing segment, no delete since): the follower takes a
    copy sharing the writer's sorted key arrays, and changes them without changing the
    writer's. With rows in the writer's growing segment, it rebuilds them from its own load."""
    monkeypatch.setattr(keys, "_FOLD_MIN", 8)  # 80 keys make a sorted base
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    try:
        tid = create(writer)
        writer.insert(tid, rows_of(range(80)))
        writer.delete(tid, rowids_of(writer, tid, [3]))
        writer.checkpoint()  # seals the rows and persists the delete: nothing growing
        theirs = writer.table(tid)
        assert theirs.memtable.n_rows == 0 and theirs.sealed
        base = theirs.keys[0].index._keys
        assert base.size == 80
        follower = FollowerStore.open(directory, options(), seed=writer.tables)
        try:
            mine = follower.table(tid)
            assert mine.keys[0].index is not theirs.keys[0].index
            assert mine.keys[0].index._keys is base
            writer.insert(tid, rows_of([3, 200]))
            writer.delete(tid, rowids_of(writer, tid, [7]))
            same(writer, follower)
            probe = pa.table({"id": pa.array([3, 7, 200, 79], pa.int64())})
            assert mine.find_keys(probe).tolist() == theirs.find_keys(probe).tolist()
            assert mine.find_keys(probe).tolist()[1] == MISSING
            assert theirs.keys[0].index._keys is base
            assert len(mine.keys[0].index) == len(theirs.keys[0].index) == 80
        finally:
            follower.close()
        # Rows in the writer's growing segment: the follower's keys are its own.
        follower = FollowerStore.open(directory, options(), seed=writer.tables)
        try:
            mine = follower.table(tid)
            assert mine.keys[0].index._keys is not theirs.keys[0].index._keys
            same(writer, follower)
            assert len(mine.keys[0].index) == 80
        finally:
            follower.close()
    finally:
        writer.close()


# Manifests loaded in the background ------------------------------------------------------------


def test_follow_manifest_loads_a_new_manifest_and_leaves_the_log_tail_to_catch_up(pair):
    """A worker's background follower loads each new manifest (here an index build: its
    index files attached) with the log records it reflects, and none after them: those are
    applied by the next catch_up, which then has no file to read."""
    writer, follower = pair
    tid = create(writer)
    writer.insert(tid, rows_of(range(50)))
    same(writer, follower)
    loaded = follower.manifest_version
    writer.create_index(tid, IndexDef("ix", writer.allocate_oid(), ("v",),
                                      opclass="vector_l2_ops"))
    version = writer.manifest_version
    assert version > loaded
    writer.insert(tid, rows_of([100]))  # after the manifest: the log's tail
    assert follower.follow_manifest(version)
    assert follower.manifest_version == version
    assert [ix.name for ix in follower.table(tid).def_.indexes] == ["ix"]
    assert all(s.index("ix") is not None for s in follower.table(tid).sealed)
    assert 100 not in [r[1] for r in visible(follower, tid)]
    assert follower.follow_manifest(version)  # loaded already: nothing to do
    same(writer, follower)
    assert 100 in [r[1] for r in visible(follower, tid)]


def test_a_follower_sessions_schema_changes_change_nothing_and_its_reads_see_the_writers(
        tmp_path):
    """A follower's statements take no DDL hold (its sessions cannot change a schema): its
    schema changes fail with 25006, autocommit or in a block, leaving every session's reads
    as they were, and a change of the writer's is read as soon as it is followed."""
    from sqlvec.database import Database, FollowerDatabase

    writer = Database.open(str(tmp_path / "d"))
    follower = None
    try:
        session = writer.connect()
        list(session.execute("CREATE TABLE t (id int PRIMARY KEY, v text)"))
        list(session.execute("INSERT INTO t VALUES (1, 'a')"))
        follower = FollowerDatabase.open(str(tmp_path / "d"))
        changer, reader = follower.connect(), follower.connect()
        assert not follower.changes_schema and writer.changes_schema
        for statements in (["CREATE TABLE u (id int)"],
                           ["BEGIN", "ALTER TABLE t ADD COLUMN x int"]):
            with pytest.raises(SqlVecError) as err:
                for sql in statements:
                    list(changer.execute(sql))
            assert err.value.sqlstate == "25006"
            assert reader.execute_one("SELECT * FROM t").rows() == [(1, "a")]
            list(changer.execute("ROLLBACK"))
        list(session.execute("ALTER TABLE t ADD COLUMN w int DEFAULT 7"))
        store = writer.store()
        assert follower.catch_up("postgres", store.applied_lsn, store.manifest_version)
        assert reader.execute_one("SELECT * FROM t").rows() == [(1, "a", 7)]
        assert changer.execute_one("SELECT v, w FROM t").rows() == [("a", 7)]
    finally:
        if follower is not None:
            follower.close()
        writer.close()
