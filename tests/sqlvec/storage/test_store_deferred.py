"""A transaction's schema changes in the store (`Store.begin_deferred` and its ends): made in
memory only, written as one manifest version with the transaction's rows at commit, undone by
rollback, by a restore to a savepoint's image, and by a crash."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sqlvec.errors import SqlVecError, UniqueViolation
from sqlvec.storage.manifest import ManifestStore
from sqlvec.storage.schema import ColumnDef
from sqlvec.storage.store import Store, StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp
from sqlvec.types import SqlType

INT8 = SqlType("int8")
TEXT = SqlType("text")


def open_store(path) -> Store:
    return Store.open(str(path), StoreOptions(background=False, seal_rows=1000))


def rows(store: Store, name: str) -> list[dict]:
    table = store.find_table(name)
    assert table is not None
    return sorted(table.snapshot().to_table().to_pylist(), key=lambda r: r["id"])


def base(store: Store) -> int:
    d = store.create_table("base", [ColumnDef("id", INT8, 1), ColumnDef("v", TEXT, 2)],
                           primary_key=["id"])
    store.commit([InsertOp(d.id, pa.table({"id": [1, 2], "v": ["a", "b"]}))])
    return d.id


def latest_version(path) -> int:
    return ManifestStore(str(path)).versions()[-1]


def test_changes_write_no_manifest_until_commit_then_one_version(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    before = latest_version(tmp_path)
    store.begin_deferred()
    new = store.create_table("new", [ColumnDef("id", INT8, 1)])
    store.alter_table(base_id, lambda d: d.with_changes(
        columns=d.columns + (ColumnDef("w", INT8, d.next_attnum),),
        next_attnum=d.next_attnum + 1))
    store.update_catalog(lambda c: {**c, "comments": {"x": "y"}})
    assert latest_version(tmp_path) == before  # nothing written yet
    assert [c.name for c in store.table(base_id).def_.columns] == ["id", "v", "w"]
    with pytest.raises(SqlVecError) as err:  # no WAL commit while the changes are open
        store.commit([InsertOp(base_id, pa.table({"id": [9], "v": ["z"], "w": [1]}))])
    assert err.value.sqlstate == "55006"
    store.commit_deferred([InsertOp(new.id, pa.table({"id": [10, 11]})),
                           DeleteOp(base_id, _rowids(store, "base", [1]))])
    assert latest_version(tmp_path) == before + 1
    assert not store.deferred
    store.close()
    store = open_store(tmp_path)  # everything is in the manifest: no WAL record needed
    assert rows(store, "new") == [{"id": 10}, {"id": 11}]
    assert rows(store, "base") == [{"id": 2, "v": "b", "w": None}]
    assert store.catalog["comments"] == {"x": "y"}
    store.close()


def _rowids(store: Store, name: str, ids: list[int]) -> pa.Array:
    table = store.find_table(name).snapshot().to_table(with_rowid=True)
    keep = [r["_rowid"] for r in table.to_pylist() if r["id"] in ids]
    return pa.array(keep, pa.int64()).to_numpy()


def test_rollback_puts_back_tables_definitions_and_catalog(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    catalog = store.catalog
    store.begin_deferred()
    store.create_table("new", [ColumnDef("id", INT8, 1)])
    store.alter_table(base_id, lambda d: d.with_changes(name="renamed"))
    store.rewrite_table(base_id, lambda d: d.with_changes(columns=tuple(
        ColumnDef(c.name, TEXT, c.attnum, not_null=c.not_null) if c.name == "id" else c
        for c in d.columns)), lambda part, d: [part.column("id").cast(pa.string()),
                                             part.column("v")])
    store.drop_table(base_id)
    store.update_catalog(lambda c: {**c, "comments": {"x": "y"}})
    store.rollback_deferred()
    assert store.find_table("new") is None and store.find_table("renamed") is None
    assert rows(store, "base") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert store.table(base_id).def_.column("id").type == INT8
    assert store.catalog is catalog
    # The key index is whole again: a duplicate is still refused.
    with pytest.raises(UniqueViolation):
        store.commit([InsertOp(base_id, pa.table({"id": [1], "v": ["again"]}))])
    store.close()
    store = open_store(tmp_path)
    assert store.find_table("new") is None
    assert rows(store, "base") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    store.close()


def test_restore_returns_to_a_savepoint_image_and_none_to_the_start(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    store.begin_deferred()
    store.create_table("first", [ColumnDef("id", INT8, 1)])
    image = store.image()
    store.create_table("second", [ColumnDef("id", INT8, 1)])
    store.alter_table(base_id, lambda d: d.with_changes(name="renamed"))
    store.restore(image)
    assert store.find_table("first") is not None and store.find_table("second") is None
    assert store.find_table("base") is not None
    assert store.deferred
    store.restore(None)
    assert store.find_table("first") is None
    store.commit_deferred([])
    store.close()


def test_a_crash_before_commit_recovers_the_state_before_the_changes(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    store.begin_deferred()
    store.create_table("new", [ColumnDef("id", INT8, 1)])
    store.drop_table(base_id)
    store.checkpoint()  # a seal meanwhile writes no manifest either
    store.close()  # what a crash leaves: the manifest from before
    store = open_store(tmp_path)
    assert store.find_table("new") is None
    assert rows(store, "base") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    store.close()


def test_writes_to_a_table_dropped_later_in_the_block_are_dropped_with_it(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    store.begin_deferred()
    store.drop_table(base_id)
    store.commit_deferred([InsertOp(base_id, pa.table({"id": [3], "v": ["c"]}))])
    assert store.find_table("base") is None
    store.close()
    store = open_store(tmp_path)
    assert store.find_table("base") is None
    store.close()


def test_a_commit_that_fails_restores_everything(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    store.begin_deferred()
    new = store.create_table("new", [ColumnDef("id", INT8, 1)])
    with pytest.raises(UniqueViolation):  # the commit's own key check under the lock
        store.commit_deferred([InsertOp(new.id, pa.table({"id": [5]})),
                               InsertOp(base_id, pa.table({"id": [2], "v": ["dup"]}))])
    assert not store.deferred
    assert store.find_table("new") is None
    assert rows(store, "base") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    store.commit([InsertOp(base_id, pa.table({"id": [3], "v": ["c"]}))])
    assert [r["id"] for r in rows(store, "base")] == [1, 2, 3]
    store.close()


def test_a_failed_commit_keeps_no_row_in_a_table_whose_rows_were_all_sealed(tmp_path):
    store = open_store(tmp_path)
    base_id = base(store)
    other = store.create_table("other", [ColumnDef("id", INT8, 1)], primary_key=["id"])
    store.commit([InsertOp(other.id, pa.table({"id": [1]}))])
    store.checkpoint()  # the growing segments are empty now
    store.begin_deferred()
    store.create_table("new", [ColumnDef("id", INT8, 1)])
    with pytest.raises(UniqueViolation):
        store.commit_deferred([InsertOp(base_id, pa.table({"id": [3], "v": ["c"]})),
                               InsertOp(other.id, pa.table({"id": [1]}))])
    assert [r["id"] for r in rows(store, "base")] == [1, 2]
    store.commit([InsertOp(base_id, pa.table({"id": [3], "v": ["c"]}))])  # key 3 is free
    assert [r["id"] for r in rows(store, "base")] == [1, 2, 3]
    store.close()
