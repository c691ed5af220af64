from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import (
    DataException,
    NotNullViolation,
    SerializationFailure,
    SqlVecError,
    UniqueViolation,
)
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.keys import MISSING
from sqlvec.storage.schema import ROWID
from sqlvec.storage.store import StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp
from sqlvec.vectors import Metric, distances

DIM = 8
SEAL = 300


@pytest.fixture
def db(tmp_path):
    opts = StoreOptions(background=False, seal_rows=SEAL,
                        compaction=CompactionPolicy(min_merge=2, target_rows=10_000))
    with Database.open(str(tmp_path), options=opts) as database:
        yield database


def vectors(ids) -> np.ndarray:
    """A fixed pseudo-random vector per id, so any row can be checked against its id."""
    x = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(DIM)[None, :]
    return np.sin(x * 12.9898 + j * 78.233 + x * j * 0.618).astype(np.float32)


def live_ids(t) -> set[int]:
    return set(t.scan(["id"]).column("id").to_pylist())


def check_reads(t, expected: set[int], queries: np.ndarray, *, k: int = 10) -> None:
    """Scans and searches (exact and HNSW) return exactly the live rows, never a deleted one."""
    assert live_ids(t) == expected
    assert t.count() == len(expected)
    ids = np.array(sorted(expected))
    matrix = vectors(ids) if ids.size else np.empty((0, DIM), np.float32)
    for q in queries:
        truth = ids[np.argsort(np.linalg.norm(matrix - q, axis=1), kind="stable")[:k]]
        exact = t.search("v", q, k, exact=True)
        assert exact.column("id").to_pylist() == truth.tolist()
        approx = t.search("v", q, k, ef=64)
        got = approx.column("id").to_pylist()
        assert len(got) == min(k, len(expected))
        assert set(got) <= expected
        assert len(set(got) & set(truth.tolist())) >= 0.8 * len(truth)
        np.testing.assert_allclose(approx.column("distance").to_numpy(),
                                   np.linalg.norm(vectors(got) - q, axis=1), rtol=1e-5,
                                   atol=1e-6)


def insert(t, ids) -> None:
    ids = np.asarray(ids, dtype=np.int64)
    t.insert({"id": ids, "grp": ids % 10, "v": vectors(ids)})


def id_in(ids):
    values = pa.array(sorted(ids), pa.int64())
    return lambda r: pc.is_in(r["id"], values)


# 5. Deleted rows are never returned ----------------------------------------------------------


def test_deletes_hidden_in_every_state(db):
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})"})
    queries = vectors(np.arange(5000, 5006))
    live: set[int] = set()

    # Growing segment only.
    insert(t, np.arange(0, 200))
    live |= set(range(200))
    t.delete(id_in(range(0, 200, 3)))
    live -= set(range(0, 200, 3))
    check_reads(t, live, queries)

    # Deleted rows are dropped when the growing segment seals.
    insert(t, np.arange(200, 320))  # 320 >= SEAL: seals
    live |= set(range(200, 320))
    store_table = t.store.table(t.table_id)
    assert len(store_table.sealed) == 1 and store_table.sealed[0].n_rows == len(live)
    check_reads(t, live, queries)

    # Deletes on a sealed segment without an index, then with one (the HNSW path).
    t.delete(id_in(range(1, 320, 5)))
    live -= set(range(1, 320, 5))
    check_reads(t, live, queries)
    t.create_index("v")
    check_reads(t, live, queries)
    t.delete(id_in(range(2, 320, 7)))  # deletes landing while the index exists
    live -= set(range(2, 320, 7))
    check_reads(t, live, queries)

    # A second segment that loses most of its rows: the graph still holds them all.
    insert(t, np.arange(1000, 1300))
    live |= set(range(1000, 1300))
    assert len(store_table.sealed) == 2
    doomed = set(range(1000, 1295))
    t.delete(id_in(doomed))
    live -= doomed
    check_reads(t, live, queries)
    near_survivor = vectors(np.array([1297]))[0] + 0.01
    hits = t.search("v", near_survivor, 10).column("id").to_pylist()
    assert hits[0] == 1297 and not set(hits) & doomed

    # Compaction drops the deleted rows for good; deletes after it still apply.
    assert t.compact() >= 1
    assert sum(s.n_rows for s in store_table.sealed) == len(live)
    check_reads(t, live, queries)
    t.delete(id_in(range(4, 320, 9)))
    live -= set(range(4, 320, 9))
    check_reads(t, live, queries)
    assert all(s["state"] == "ready" for s in t.store.index_status())


def test_deleting_everything_returns_nothing(db):
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})"})
    insert(t, np.arange(SEAL + 10))
    t.create_index("v")
    t.delete(lambda r: pc.greater_equal(r["id"], 0))
    check_reads(t, set(), vectors(np.arange(3)))
    assert t.compact() == 1
    assert t.store.table(t.table_id).sealed == []
    insert(t, [7])
    check_reads(t, {7}, vectors(np.arange(3)))


def test_updated_rows_show_only_their_new_version(db):
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})"},
                        primary_key=["id"])
    insert(t, np.arange(SEAL))  # sealed
    insert(t, np.arange(SEAL, SEAL + 50))  # growing
    t.create_index("v")
    changed = set(range(0, SEAL + 50, 4))
    moved = np.zeros(DIM, np.float32)
    moved[0] = 100.0
    n = t.update(id_in(changed), {"grp": -1, "v": lambda old: np.tile(moved, (old.num_rows, 1))})
    assert n == len(changed)
    rows = t.scan()
    assert rows.num_rows == SEAL + 50
    assert sorted(rows.column("id").to_pylist()) == list(range(SEAL + 50))
    new = rows.filter(pc.equal(rows["grp"], -1))
    assert set(new.column("id").to_pylist()) == changed
    # Searches see the new vectors only: all updated rows now sit at `moved`.
    for exact in (True, False):
        hits = t.search("v", moved, len(changed) + 5, exact=exact, ef=200)
        first = hits.slice(0, len(changed))
        assert set(first.column("id").to_pylist()) == changed
        np.testing.assert_allclose(first.column("distance").to_numpy(), 0.0, atol=1e-6)
        assert hits.column("distance")[len(changed)].as_py() > 50
    # An old version is not found at its old place either.
    old_place = vectors(np.array([4]))[0]
    assert 4 not in t.search("v", old_place, 3, exact=True).column("id").to_pylist()
    t.compact()
    assert set(t.scan(filter=lambda r: pc.equal(r["grp"], -1)).column("id").to_pylist()) == changed


@pytest.mark.parametrize("indexed", [False, True])
def test_filtered_search_returns_min_k_matching(db, indexed):
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})"})
    for start in range(0, 3 * SEAL, SEAL):
        insert(t, np.arange(start, start + SEAL))
    insert(t, np.arange(3 * SEAL, 3 * SEAL + 40))  # growing
    if indexed:
        t.create_index("v")
        insert(t, np.arange(3 * SEAL + 40, 3 * SEAL + 80))
    t.delete(id_in(range(0, 2000, 11)))
    rows = t.scan()
    ids = np.array(rows.column("id").to_pylist())
    q = vectors(np.array([9999]))[0]
    for wanted in (3, 7, 25, 400):
        chosen = set(ids[np.random.default_rng(wanted).choice(ids.size, wanted, replace=False)])
        for k in (1, 5, 10, 50):
            got = t.search("v", q, k, filter=id_in(chosen), ef=40)
            assert got.num_rows == min(k, wanted)
            assert set(got.column("id").to_pylist()) <= chosen
            exact = t.search("v", q, k, filter=id_in(chosen), exact=True)
            members = np.array(sorted(chosen))
            truth = members[np.argsort(np.linalg.norm(vectors(members) - q, axis=1))[:k]]
            assert exact.column("id").to_pylist() == truth.tolist()
    # A filter nothing passes.
    assert t.search("v", q, 10, filter=lambda r: pc.equal(r["grp"], 99)).num_rows == 0
    # NULL vectors are never candidates.
    t.insert({"id": [5000, 5001], "grp": [3, 3]})
    got = t.search("v", q, 10, filter=lambda r: pc.greater_equal(r["id"], 5000))
    assert got.num_rows == 0


def test_search_merges_segments_in_distance_order(db):
    """Rows come from several sealed segments and the growing one; each distance belongs to
    its own row and the merged list is sorted."""
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})"})
    for start in range(0, 3 * SEAL, SEAL):
        insert(t, np.arange(start, start + SEAL))
    insert(t, np.arange(3 * SEAL, 3 * SEAL + 100))
    t.create_index("v")
    insert(t, np.arange(3 * SEAL + 100, 3 * SEAL + 150))
    for q in vectors(np.arange(7000, 7010)):
        for metric in (Metric.L2, Metric.COSINE, Metric.IP, Metric.L1):
            got = t.search("v", q, 25, metric=metric, exact=metric is Metric.L1,
                           columns=["id", "v"])
            d = got.column("distance").to_numpy()
            assert np.all(np.diff(d) >= 0)
            matrix = np.stack(got.column("v").to_numpy(zero_copy_only=False))
            np.testing.assert_allclose(d, distances(metric, matrix, q), rtol=1e-5, atol=1e-6)


def test_search_argument_errors(db):
    t = db.create_table("t", {"id": "int8", "grp": "int4", "v": f"vector({DIM})", "u": "vector"})
    insert(t, np.arange(5))
    with pytest.raises(DataException) as info:
        t.search("v", np.zeros(DIM + 1), 3)
    assert info.value.message == f"different vector dimensions {DIM} and {DIM + 1}"
    with pytest.raises(SqlVecError) as info:
        t.search("grp", np.zeros(DIM), 3)
    assert info.value.sqlstate == "42804"
    with pytest.raises(SqlVecError) as info:
        t.search("nope", np.zeros(DIM), 3)
    assert info.value.sqlstate == "42703"
    with pytest.raises(DataException):
        t.insert({"id": [9], "v": [[1.0] * (DIM - 1)]})
    with pytest.raises(DataException) as info:
        t.insert({"id": [9], "v": [[float("nan")] * DIM]})
    assert info.value.message == "NaN not allowed in vector"
    assert t.count() == 5


# Commits are seen whole ----------------------------------------------------------------------


def test_commit_with_several_ops_on_one_table_is_seen_whole(db):
    """UPDATE (delete + insert) and insert-then-delete commits: a reader's snapshot holds all of
    a commit or none of it, never the state between two of its ops."""
    t = db.create_table("t", {"id": "int8", "gen": "int4"})
    table = t.store.table(t.table_id)
    t.insert({"id": np.arange(10), "gen": np.zeros(10, np.int32)})
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for gen in range(1, 400):
                if gen % 2:
                    t.update(lambda r: pc.greater_equal(r["id"], 0), {"gen": gen})
                else:
                    old = t.scan([], with_rowid=True).column(ROWID).to_numpy()
                    new = table.coerce({"id": np.arange(10), "gen": np.full(10, gen, np.int32)})
                    t.store.commit([InsertOp(t.table_id, new), DeleteOp(t.table_id, old)])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    while not stop.is_set():
        rows = t.snapshot().to_table()
        gens = set(rows.column("gen").to_pylist())
        assert rows.num_rows == 10 and len(gens) == 1, (rows.num_rows, gens)
        seen |= gens
    writer.join()
    assert not errors, errors
    assert len(seen) > 1
    assert t.scan().column("gen").to_pylist() == [399] * 10


def test_deleting_a_row_twice_is_a_serialization_failure(db):
    t = db.create_table("t", {"id": "int8"})
    t.insert({"id": [1, 2]})
    rowids = t.scan(with_rowid=True).column(ROWID).to_numpy()
    t.store.delete(t.table_id, rowids[:1])
    with pytest.raises(SerializationFailure) as info:
        t.store.delete(t.table_id, rowids[:1])
    assert info.value.sqlstate == "40001"
    assert live_ids(t) == {2}


# Unique keys ----------------------------------------------------------------------------------


@pytest.fixture
def keyed(tmp_path):
    opts = StoreOptions(background=False, seal_rows=SEAL)
    with Database.open(str(tmp_path), options=opts) as database:
        database.create_table("k", {"id": "int8", "v": "int4"}, primary_key=["id"])
        yield database


def _rows(table, ids, v=0):
    return table.coerce({"id": np.asarray(ids, np.int64), "v": np.full(len(ids), v, np.int32)})


def _rowid_of(table, key) -> int:
    _, found = table.lookup_keys(pa.table({"id": pa.array([key], pa.int64())}))
    return int(found[0])


def test_duplicate_keys_are_refused_in_a_batch_against_committed_rows_and_null(keyed):
    store = keyed.store()
    table = store.find_table("k")
    store.commit([InsertOp(table.id, _rows(table, range(SEAL + 50)))])  # a sealed segment too
    for ids, where in (([5000, 5001, 5000], "5000"), ([SEAL + 10], str(SEAL + 10)), ([3], "3")):
        with pytest.raises(UniqueViolation) as err:
            store.commit([InsertOp(table.id, _rows(table, ids))])
        assert err.value.detail == f"Key (id)=({where}) already exists."
    with pytest.raises(NotNullViolation):
        table.prepare([InsertOp(table.id, pa.table({"id": pa.array([None], pa.int64()),
                                                    "v": pa.array([1], pa.int32())}))])
    assert len(table.keys[0].index) == SEAL + 50


def test_commits_in_flight_are_claims_later_commits_are_checked_against(keyed):
    table = keyed.store().find_table("k")
    keyed.store().commit([InsertOp(table.id, _rows(table, [1, 2, 3]))])
    old = _rowid_of(table, 2)
    # In flight, in LSN order: A deletes key 2 and inserts key 9; B re-inserts key 2.
    a = table.prepare([DeleteOp(table.id, np.array([old])), InsertOp(table.id, _rows(table, [9]))])
    with pytest.raises(UniqueViolation):
        table.prepare([InsertOp(table.id, _rows(table, [9]))])
    with pytest.raises(SerializationFailure):  # the row A deletes is claimed
        table.prepare([DeleteOp(table.id, np.array([old]))])
    b = table.prepare([InsertOp(table.id, _rows(table, [2], v=7))])
    held = table.find_keys(pa.table({"id": pa.array([2, 9, 4], pa.int64())}))
    assert held[0] == b[0].batch.column(ROWID)[0].as_py() and held[1] >= 0 and held[2] == MISSING
    for ops in (a, b):
        with table.lock:
            for op in ops:
                table.apply(op)
        table.release(ops)
    assert not table._claims and not table._claim_of
    snap = table.snapshot()
    rows = snap.rows_by_id(np.array([_rowid_of(table, k) for k in (1, 2, 3, 9)]))
    assert rows.column("id").to_pylist() == [1, 2, 3, 9]
    assert rows.column("v").to_pylist() == [0, 7, 0, 0]
    # A failed WAL write releases its claim: the key is free again.
    c = table.prepare([InsertOp(table.id, _rows(table, [50]))])
    table.release(c)
    table.prepare([InsertOp(table.id, _rows(table, [50]))])


def test_a_truncate_in_flight_frees_every_key(keyed):
    table = keyed.store().find_table("k")
    keyed.store().commit([InsertOp(table.id, _rows(table, [1, 2]))])
    table.prepare([TruncateOp(table.id), InsertOp(table.id, _rows(table, [1]))])
    with pytest.raises(UniqueViolation):
        table.prepare([InsertOp(table.id, _rows(table, [1]))])
    table.prepare([InsertOp(table.id, _rows(table, [2]))])


def test_lookups_answer_as_of_a_snapshot(keyed):
    store = keyed.store()
    table = store.find_table("k")
    store.commit([InsertOp(table.id, _rows(table, range(SEAL + 10)))])
    store.seal(table.id)
    store.commit([InsertOp(table.id, _rows(table, [1000, 1001]))])
    keys = pa.table({"id": pa.array([5, 1000, 2000, SEAL + 5], pa.int64())})
    before, found = table.lookup_keys(keys)
    assert before is table.snapshot()
    rows = before.rows_by_id(found[found != MISSING])
    assert rows.column("id").to_pylist() == [5, 1000, SEAL + 5]
    # Key 5 is updated (new row id), 1000 deleted, 2000 inserted after the snapshot.
    old5 = int(found[0])
    store.commit([DeleteOp(table.id, np.array([old5])), InsertOp(table.id, _rows(table, [5]))])
    store.commit([DeleteOp(table.id, np.array([int(found[1])]))])
    store.commit([InsertOp(table.id, _rows(table, [2000]))])
    _, again = table.lookup_keys(keys, snapshot=before)
    assert again.tolist() == found.tolist()
    now, fresh = table.lookup_keys(keys)
    assert fresh[0] not in (old5, MISSING) and fresh[1] == MISSING and fresh[2] != MISSING
    assert now.rows_by_id(fresh[fresh != MISSING]).column("id").to_pylist() == [5, 2000, SEAL + 5]


def test_key_indexes_are_rebuilt_at_open_from_segments_and_the_wal(tmp_path):
    opts = StoreOptions(background=False, seal_rows=SEAL)
    with Database.open(str(tmp_path), options=opts) as database:
        database.create_table("c", {"a": "int4", "b": "text", "v": "int4"}, primary_key=["a", "b"])
        store = database.store()
        table = store.find_table("c")
        n = SEAL + 40
        rows = {"a": np.arange(n) % 7, "b": [f"x{i}" for i in range(n)], "v": np.arange(n)}
        store.commit([InsertOp(table.id, table.coerce(rows))])
        store.seal(table.id)
        _, found = table.lookup_keys(pa.table({"a": pa.array([3], pa.int32()),
                                               "b": ["x3"]}))
        store.commit([DeleteOp(table.id, found)])  # from a sealed segment, in the WAL only
        store.commit([InsertOp(table.id, table.coerce({"a": [100], "b": ["y"], "v": [1]}))])
    with Database.open(str(tmp_path), options=opts) as database:
        store = database.store()
        table = store.find_table("c")
        assert len(table.keys[0].index) == SEAL + 40
        with pytest.raises(UniqueViolation) as err:
            store.commit([InsertOp(table.id, table.coerce({"a": [100], "b": ["y"], "v": [2]}))])
        assert err.value.detail == "Key (a, b)=(100, y) already exists."
        with pytest.raises(UniqueViolation):
            store.commit([InsertOp(table.id, table.coerce({"a": [5], "b": ["x5"], "v": [2]}))])
        store.commit([InsertOp(table.id, table.coerce({"a": [3], "b": ["x3"], "v": [2]}))])


def test_lookups_find_rows_across_compacted_segments(keyed):
    store = keyed.store()
    table = store.find_table("k")
    for start in range(0, 4 * SEAL, SEAL):
        store.commit([InsertOp(table.id, _rows(table, range(start, start + SEAL)))])
        store.seal(table.id)
    victims = [_rowid_of(table, k) for k in range(0, 4 * SEAL, 7)]
    store.commit([DeleteOp(table.id, np.array(victims))])
    store.compact(table.id)
    wanted = np.arange(0, 4 * SEAL, 3, dtype=np.int64)
    snap, found = table.lookup_keys(pa.table({"id": wanted}))
    live = wanted[wanted % 7 != 0]
    assert (found[wanted % 7 == 0] == MISSING).all()
    assert snap.rows_by_id(found[found != MISSING]).column("id").to_pylist() == live.tolist()


def test_single_row_reads_and_writes_match_the_batch_forms(keyed):
    """lookup_key, rows_by_id of one id, and one-row commits (their keys read where the row
    lies, sealed or growing) answer as the forms for many rows do."""
    store = keyed.store()
    table = store.find_table("k")
    store.commit([InsertOp(table.id, _rows(table, range(SEAL + 20)))])  # sealed + growing
    store.commit([DeleteOp(table.id, np.array([_rowid_of(table, 7)]))])
    store.commit([InsertOp(table.id, table.coerce({"id": [SEAL + 30], "v": [4]}))])
    snap = table.snapshot()
    for key in (0, 7, SEAL - 1, SEAL + 5, SEAL + 30, 10_000):
        got_snap, rowid = table.lookup_key(key)
        _, found = table.lookup_keys(pa.table({"id": pa.array([key], pa.int64())}),
                                     snapshot=got_snap)
        assert rowid == int(found[0])
        one = got_snap.rows_by_id(np.array([rowid]))
        many = got_snap.rows_by_id(np.array([rowid, rowid]))
        assert one.schema == many.schema
        assert one.to_pylist() == many.to_pylist()[:1]
    # Updating one row by key, one commit at a time, in both kinds of segment.
    for key in (3, SEAL + 30):
        _, rowid = table.lookup_key(key)
        store.commit([DeleteOp(table.id, np.array([rowid])),
                      InsertOp(table.id, table.coerce({"id": [key], "v": [99]}))])
        with pytest.raises(SerializationFailure):
            store.commit([DeleteOp(table.id, np.array([rowid]))])
        now, again = table.lookup_key(key)
        assert again not in (rowid, MISSING)
        assert now.rows_by_id(np.array([again])).column("v").to_pylist() == [99]
    assert table.lookup_key(7, snapshot=snap)[1] == MISSING
    old3 = table.lookup_key(3, snapshot=snap)[1]  # as of the snapshot: the version before
    assert snap.rows_by_id(np.array([old3])).column("v").to_pylist() == [0]
    assert len(table.keys[0].index) == SEAL + 20


def test_a_row_found_by_key_is_located_again_once_a_commit_changed_the_table(keyed):
    """row_of_key's location is reused by the delete that follows only while the table is
    unchanged: a row another commit deleted in between fails the delete (40001); one whose
    segment another commit changed is flagged where it lies, its key index entry dropped."""
    store = keyed.store()
    table = store.find_table("k")
    store.commit([InsertOp(table.id, _rows(table, range(SEAL + 20)))])  # sealed + growing
    for key in (5, SEAL + 5):
        rowid, _, _ = table.row_of_key(key)
        store.commit([DeleteOp(table.id, np.array([rowid]))])  # another commit takes it
        with pytest.raises(SerializationFailure):
            store.commit([DeleteOp(table.id, np.array([rowid]))])
        assert table.row_of_key(key)[0] == MISSING
    # Prepared, then another commit applies first (a group commit's order): its row is
    # flagged where it lies now, its key dropped once.
    for key in (6, SEAL + 6):
        rowid, _, _ = table.row_of_key(key)
        first = table.prepare([DeleteOp(table.id, np.array([rowid])),
                               InsertOp(table.id, table.coerce({"id": [key], "v": [42]}))])
        store.commit([DeleteOp(table.id, np.array([table.row_of_key(key + 1)[0]]))])
        for op in first:
            table.apply(op)
        table.release(first)
        new = table.row_of_key(key)[0]
        assert new not in (rowid, MISSING)
        assert table.snapshot().rows_by_id(np.array([new])).column("v").to_pylist() == [42]
    assert len(table.keys[0].index) == SEAL + 20 - 4
    live = set(table.snapshot().rows_by_id(
        np.array([table.row_of_key(k)[0] for k in (4, 6, 8, SEAL + 6)])).column("id").to_pylist())
    assert live == {4, 6, 8, SEAL + 6}
    assert table.row_of_key(7)[0] == MISSING


def test_a_row_prepared_before_a_compaction_is_deleted_where_it_lies_after(keyed):
    """A one-row UPDATE prepared, then a compaction moving its row (the deleted rows before it
    dropped), then applied: the row flagged is the one it updates, found again."""
    store = keyed.store()
    table = store.find_table("k")
    for start in range(0, 3 * SEAL, SEAL):
        store.commit([InsertOp(table.id, _rows(table, range(start, start + SEAL)))])
        store.seal(table.id)
    gone = set(range(0, 3 * SEAL, 5))
    store.commit([DeleteOp(table.id, np.array([_rowid_of(table, k) for k in sorted(gone)]))])
    key = 2 * SEAL + 3
    rowid, _, _ = table.row_of_key(key)
    first = table.prepare([DeleteOp(table.id, np.array([rowid])),
                           InsertOp(table.id, table.coerce({"id": [key], "v": [42]}))])
    store.compact(table.id)
    for op in first:
        table.apply(op)
    table.release(first)
    snap = table.snapshot()
    found = {k: table.row_of_key(k)[0] for k in range(3 * SEAL)}
    assert {k for k, r in found.items() if r == MISSING} == gone
    rows = snap.rows_by_id(np.array([r for r in found.values() if r != MISSING]))
    assert sorted(rows.column("id").to_pylist()) == sorted(set(range(3 * SEAL)) - gone)
    assert {i: v for i, v in zip(rows.column("id").to_pylist(), rows.column("v").to_pylist())
            if v} == {key: 42}
    assert len(snap.rows_by_id(np.array([rowid]))) == 0
