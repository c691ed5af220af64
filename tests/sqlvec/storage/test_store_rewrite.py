"""Store.rewrite_table and Store.alter_table: definition changes committed as one manifest
version, rewritten rows readable after a restart, failures leaving the table as it was."""

from __future__ import annotations

import glob
import os
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.storage.store import StoreOptions
from sqlvec.types import SqlType

OPTIONS = StoreOptions(background=False, seal_rows=100)


def _vectors(ids) -> np.ndarray:
    x = np.asarray(ids, dtype=np.float32)[:, None]
    return np.hstack([x, x * 0 + 1, -x]).astype(np.float32)


def _build(path: str) -> None:
    """Two sealed segments with deletes and an indexed vector column, plus growing rows."""
    with Database.open(path, options=OPTIONS) as db:
        t = db.create_table("t", {"id": "int4", "n": "int4", "v": "vector(3)"},
                            primary_key=["id"])
        t.insert({"id": np.arange(100), "n": np.arange(100) * 10, "v": _vectors(range(100))})
        t.create_index("v")
        t.insert({"id": np.arange(100, 200), "n": np.arange(100, 200) * 10,
                  "v": _vectors(range(100, 200))})
        t.insert({"id": np.arange(200, 230), "n": np.arange(200, 230) * 10,
                  "v": _vectors(range(200, 230))})
        t.delete(lambda r: pc.equal(pc.bit_wise_and(r["id"], 7), 0))


def _to_int8(column: str):
    """A rewrite that turns `column` into int8 (times two) and keeps the others."""
    def change(d):
        return d.with_changes(columns=tuple(
            replace(c, type=SqlType("int8")) if c.name == column else c for c in d.columns))

    def transform(part: pa.Table, new_def) -> list:
        out = []
        for c in new_def.columns:
            col = part.column(c.name)
            out.append(pc.multiply(col.cast(pa.int64()), 2) if c.name == column else col)
        return out
    return change, transform


def test_rewrite_changes_values_keeps_rowids_and_survives_restart(tmp_path) -> None:
    path = str(tmp_path / "db")
    _build(path)
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        table = store.find_table("t")
        before = table.snapshot().to_table(with_rowid=True).sort_by("id")
        change, transform = _to_int8("n")
        store.rewrite_table(table.id, change, transform)
        after = table.snapshot().to_table(with_rowid=True).sort_by("id")
        assert after.schema.field("n").type == pa.int64()
        assert after.column("_rowid").equals(before.column("_rowid"))
        assert after.column("n").to_pylist() == [2 * x for x in before.column("n").to_pylist()]
        assert table.memtable.n_rows == 0
        # The vector index is rebuilt on the new segments, and searches use it.
        assert all(seg.index(ix.name) is not None
                   for seg in table.sealed for ix in table.def_.indexes)
        db.table("t").insert({"id": [1000], "n": [7], "v": _vectors([1000])})
    with Database.open(path, options=OPTIONS) as db:
        rows = db.table("t").scan().sort_by("id")
        assert rows.num_rows == after.num_rows + 1
        assert rows.column("n").to_pylist()[:3] == after.column("n").to_pylist()[:3]
        assert rows.column("n").to_pylist()[-1] == 7
        hits = db.table("t").search("v", _vectors([5])[0], 1)
        assert hits.column("id").to_pylist() == [5]


def test_a_failed_rewrite_leaves_the_table_as_it_was(tmp_path) -> None:
    path = str(tmp_path / "db")
    _build(path)
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        table = store.find_table("t")
        before = table.snapshot().to_table(with_rowid=True)
        files = sorted(os.listdir(table.directory))
        change, _ = _to_int8("n")

        def failing(part, new_def):
            raise SqlVecError("no", sqlstate="22P02")
        with pytest.raises(SqlVecError):
            store.rewrite_table(table.id, change, failing)
        assert table.def_.column("n").type == SqlType("int4")
        assert table.snapshot().to_table(with_rowid=True).equals(before)
        assert sorted(os.listdir(table.directory)) == files


def test_a_rewrite_that_duplicates_a_key_is_refused(tmp_path) -> None:
    path = str(tmp_path / "db")
    _build(path)
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        table = store.find_table("t")

        def change(d):
            return d

        def collapse(part, new_def):
            return [pc.divide(part.column("id"), 1000) if c.name == "id" else part.column(c.name)
                    for c in new_def.columns]
        with pytest.raises(SqlVecError) as err:
            store.rewrite_table(table.id, change, collapse)
        assert err.value.sqlstate == "23505"
        assert err.value.message == 'could not create unique index "t_pkey"'
        assert err.value.detail == "Key (id)=(0) is duplicated."
        assert table.snapshot().row_count == 230 - 29


def test_alter_table_commits_the_catalog_change_with_the_definition(tmp_path) -> None:
    path = str(tmp_path / "db")
    _build(path)
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        table = store.find_table("t")
        index = table.def_.indexes[0]
        assert glob.glob(os.path.join(table.directory, f"*.{index.oid}.hnsw"))
        store.alter_table(table.id, lambda d: d.with_changes(name="u", indexes=()),
                          catalog=lambda c: {**c, "comments": {"1259:1:0": "moved"}})
        assert not glob.glob(os.path.join(table.directory, f"*.{index.oid}.hnsw"))
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        assert store.find_table("t") is None
        assert store.find_table("u").def_.indexes == ()
        assert store.catalog["comments"] == {"1259:1:0": "moved"}


def test_a_follower_sees_the_rewritten_table(tmp_path) -> None:
    from sqlvec.storage.follower import FollowerStore

    path = str(tmp_path / "db")
    _build(path)
    with Database.open(path, options=OPTIONS) as db:
        store = db.store()
        follower = FollowerStore.open(os.path.join(path, "postgres"), OPTIONS)
        try:
            table = store.find_table("t")
            follower.catch_up(store.durable_lsn)
            change, transform = _to_int8("n")
            store.rewrite_table(table.id, change, transform)
            db.table("t").insert({"id": [5000], "n": [1], "v": _vectors([5000])})
            follower.catch_up(store.durable_lsn, manifest_version=store.manifest_version)
            mine = table.snapshot().to_table(with_rowid=True).sort_by("id")
            theirs = follower.table(table.id).snapshot().to_table(with_rowid=True).sort_by("id")
            assert theirs.equals(mine)
            assert theirs.schema.field("n").type == pa.int64()
        finally:
            follower.close()
