from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.storage.memtable import Memtable
from sqlvec.storage.schema import ROWID, ColumnDef, TableDef
from sqlvec.types import SqlType

DIM = 3


@pytest.fixture
def table_def() -> TableDef:
    return TableDef(id=1, oid=16400, name="t", schema="public", columns=(
        ColumnDef("id", SqlType.parse("int8"), 1),
        ColumnDef("name", SqlType.parse("text"), 2),
        ColumnDef("v", SqlType.parse(f"vector({DIM})"), 3),
    ))


def batch(table_def: TableDef, start: int, n: int, *, null_every: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    vec = np.repeat(ids[:, None].astype(np.float32), DIM, axis=1) * [1, -1, 0.5]
    mask = (ids % null_every == 0) if null_every else np.zeros(n, bool)
    return pa.RecordBatch.from_arrays([
        pa.array(ids + 1000),  # rowids
        pa.array(ids),
        pa.array([f"n{i}" for i in ids]),
        pa.FixedSizeListArray.from_arrays(pa.array(vec.astype(np.float32).reshape(-1)), DIM,
                                          mask=pa.array(mask)),
    ], schema=table_def.physical_schema())


def ids_of(view) -> list[int]:
    return view.data.table.column("c1").to_pylist()


def test_snapshots_are_immutable_across_appends_and_growth(table_def):
    mem = Memtable(table_def)
    mem.append(batch(table_def, 0, 10))
    first = mem.snapshot()
    matrix_before = first.data.vectors("c3", DIM)[0].copy()
    for start in range(10, 10 + 7 * 700, 700):  # several reallocations of the buffers
        mem.append(batch(table_def, start, 700))
    assert first.data.n_rows == 10
    assert ids_of(first) == list(range(10))
    np.testing.assert_array_equal(first.data.vectors("c3", DIM)[0], matrix_before)
    now = mem.snapshot()
    assert now.data.n_rows == mem.n_rows == 10 + 7 * 700
    assert ids_of(now) == list(range(now.data.n_rows))
    np.testing.assert_array_equal(now.data.rowids, np.arange(now.data.n_rows) + 1000)
    matrix, valid = now.data.vectors("c3", DIM)
    assert valid is None  # no NULL vectors
    np.testing.assert_array_equal(matrix[:, 0], np.arange(now.data.n_rows, dtype=np.float32))


def test_appends_keep_few_chunks(table_def):
    mem = Memtable(table_def)
    for i in range(1000):
        mem.append(batch(table_def, i, 1))
    chunks = mem.snapshot().data.table.column("c2").num_chunks
    assert chunks <= math.ceil(math.log2(1000)) + 1
    assert mem.snapshot().data.table.column("c2").to_pylist() == [f"n{i}" for i in range(1000)]


def test_deletes_do_not_reach_older_snapshots(table_def):
    mem = Memtable(table_def)
    mem.append(batch(table_def, 0, 20))
    before = mem.snapshot()
    mem.delete(np.array([3, 5, 5, 7]))
    mem.delete(np.array([7, 9]))  # 7 again: counted once
    assert before.deletes.count == 0 and before.live_count == 20
    after = mem.snapshot()
    assert after.deletes.count == 4 and after.live_count == 16
    assert np.flatnonzero(~after.live_mask()).tolist() == [3, 5, 7, 9]


def test_live_table_drops_deleted_rows_and_keeps_nulls(table_def):
    mem = Memtable(table_def)
    mem.append(batch(table_def, 0, 30, null_every=4))
    mem.append(batch(table_def, 30, 30, null_every=4))
    mem.delete(np.arange(0, 60, 3))
    live = mem.live_table()
    keep = [i for i in range(60) if i % 3]
    assert live.schema.equals(table_def.physical_schema())
    assert live.column("c1").to_pylist() == keep
    assert live.column(ROWID).to_pylist() == [i + 1000 for i in keep]
    vec = live.column("c3").to_pylist()
    for i, v in zip(keep, vec):
        if i % 4 == 0:
            assert v is None
        else:
            assert v == [float(i), float(-i), i * 0.5]
    # The sealed copy owns its memory: later appends cannot change it.
    mem.append(batch(table_def, 60, 2000))
    assert live.column("c1").to_pylist() == keep
    assert live.column("c3").to_pylist() == vec


def test_null_vectors_are_marked_invalid(table_def):
    mem = Memtable(table_def)
    mem.append(batch(table_def, 0, 10, null_every=3))
    matrix, valid = mem.snapshot().data.vectors("c3", DIM)
    assert valid.tolist() == [i % 3 != 0 for i in range(10)]
    assert matrix.shape == (10, DIM)


def test_sizes(table_def):
    mem = Memtable(table_def)
    assert (mem.n_rows, mem.nbytes, mem.snapshot().live_count) == (0, 0, 0)
    b = batch(table_def, 0, 100)
    mem.append(b)
    mem.append(batch(table_def, 100, 0))
    assert mem.n_rows == 100 and mem.nbytes == b.nbytes


def test_queued_single_row_appends_read_as_appended(table_def):
    """Small appends are queued and folded in when read; every read sees them in order, with
    their vectors, deletes and sizes as if each had been added at once."""
    mem = Memtable(table_def, reserve_rows=64)
    expected: list[int] = []
    deleted: set[int] = set()
    rng = np.random.default_rng(7)
    start = 0
    for _ in range(400):
        n = 1 if rng.random() < 0.9 else int(rng.integers(2, 150))
        mem.append(batch(table_def, start, n))
        expected += list(range(start, start + n))
        start += n
        assert mem.n_rows == len(expected) and mem.nbytes_bound >= 0
        if rng.random() < 0.2:
            view = mem.snapshot()
            assert ids_of(view) == expected
            assert view.data.rowids.tolist() == [i + 1000 for i in expected]
            matrix, _valid = view.data.vectors("c3", DIM)
            assert np.array_equal(matrix[:, 0], np.array(expected, np.float32))
            position = int(rng.integers(0, len(expected)))
            for name, arrow in (("c1", pa.int64()), ("c2", pa.string()), ("c3", None)):
                field_type = arrow or table_def.physical_schema().field(name).type
                whole = view.data.column(name, field_type)
                assert view.data.column_slice(name, field_type, None, position, 1).to_pylist() \
                    == whole.slice(position, 1).to_pylist()
        if rng.random() < 0.05:
            mem.delete(np.array([len(expected) - 1]))
            deleted.add(expected[-1])
    bound = mem.nbytes_bound
    exact = mem.nbytes  # folds
    assert 0 < exact <= bound * 1.1 + 64 and mem.nbytes_bound == exact
    assert mem.live_table().column("c1").to_pylist() == [i for i in expected if i not in deleted]
    assert len(mem._chunks) < 40  # merged as they come, a few small ones at the end


def test_rows_given_as_values_read_as_batches_would():
    """Rows queued as Python values, between batches, read back in order, as the same rows
    appended as batches read (NULLs and sizes included)."""
    rows_def = TableDef(id=1, oid=16400, name="r", schema="public", columns=(
        ColumnDef("id", SqlType.parse("int8"), 1), ColumnDef("name", SqlType.parse("text"), 2)))
    by_values, by_batches = Memtable(rows_def), Memtable(rows_def)
    schema = rows_def.physical_schema()
    rng = np.random.default_rng(3)
    rowid = 0
    for _ in range(700):  # more than a queue's worth: folded by count too
        if rng.random() < 0.8:
            row = (rowid, int(rng.integers(-5, 5)), None if rng.random() < 0.2 else "é" * 3)
            by_values.append_row(row, 100)
            by_batches.append(pa.RecordBatch.from_pylist([dict(zip(schema.names, row))],
                                                          schema=schema))
            rowid += 1
        else:
            n = int(rng.integers(1, 80))
            b = pa.RecordBatch.from_arrays([pa.array(np.arange(rowid, rowid + n)),
                                            pa.array(np.arange(n)), pa.array(["b"] * n)],
                                           schema=schema)
            by_values.append(b)
            by_batches.append(b)
            rowid += n
        if rng.random() < 0.05:
            assert by_values.snapshot().data.table.equals(by_batches.snapshot().data.table)
        assert by_values.n_rows == by_batches.n_rows == rowid
        assert by_values.nbytes_bound >= 0
    bound = by_values.nbytes_bound
    assert by_values.nbytes == by_batches.nbytes <= bound
    assert by_values.live_table().equals(by_batches.live_table())


def test_folded_rows_found_and_deleted_with_rows_still_queued():
    """A row already folded is located, read and deleted while rows queued after it stay
    queued (no one-row batch built per statement); a queued row is found by folding, and every
    read afterwards sees the same rows and deletes as if each step had folded."""
    rows_def = TableDef(id=1, oid=16400, name="r", schema="public", columns=(
        ColumnDef("id", SqlType.parse("int8"), 1), ColumnDef("name", SqlType.parse("text"), 2)))
    mem = Memtable(rows_def)
    for rowid in range(5):
        mem.append_row((rowid, rowid * 10, f"r{rowid}"), 100)
    mem.snapshot()  # folds rows 0-4
    mem.append_row((5, 50, "r5"), 100)
    assert mem.folded_position(3) == 3 and mem.folded_position(5) == -1
    data = mem.folded_data()
    assert data.n_rows == 5 and len(mem._queued) == 1
    assert data.column_slice("c2", pa.string(), None, 3, 1).to_pylist() == ["r3"]
    mem.delete(np.array([3]))
    assert len(mem._queued) == 1 and mem.is_deleted(3) and not mem.is_deleted(2)
    assert mem.position_of(5) == 5 and not mem._queued  # a queued row: folded to be found
    mem.append_row((6, 60, "r6"), 100)
    mem.delete(np.array([6]))  # a queued row deleted: folded first
    assert not mem._queued and mem.is_deleted(6)
    assert mem.position_of(99) == -1
    assert mem.live_table().column("c1").to_pylist() == [0, 10, 20, 40, 50]


def test_one_value_read_from_its_chunk_and_one_row_deleted(table_def):
    """`GrowingData.value` reads one row's value from the chunk holding it, the same as the
    whole column says, across chunks and NULLs; the folded rows are one object until a fold
    changes them; `delete_one` flags one row as `delete` does, and a snapshot taken before
    does not see it."""
    mem = Memtable(table_def)
    mem.append(batch(table_def, 0, 100))
    for start in range(100, 110):  # small chunks after a large one
        mem.append(batch(table_def, start, 1))
        mem.snapshot()
    mem.append_row((1110, None, None, None), 100)
    mem.snapshot()
    data = mem.folded_data()
    assert data is mem.folded_data() and len(data._chunks) > 1
    for physical in ("c1", "c2"):
        column = data.column(physical, table_def.physical_schema().field(physical).type)
        assert [data.value(physical, column.type, None, p) for p in range(data.n_rows)] == \
            column.to_pylist()
    assert data.value("c3", pa.list_(pa.float32(), DIM), None, 2) == [2.0, -2.0, 1.0]
    before = mem.snapshot()
    mem.delete_one(5)
    mem.delete_one(5)  # already deleted: counted once
    assert mem.is_deleted(5) and not before.deletes.is_deleted_one(5)
    assert mem.snapshot().deletes.count == 1
    mem.append_row((1111, 7, "q", None), 100)
    mem.delete_one(mem.position_of(1111))  # a queued row: folded first
    assert mem.folded_data() is not data and mem.snapshot().deletes.count == 2
    assert mem.live_table().num_rows == 110


def test_values_read_by_position_across_kinds_and_row_id_gaps():
    """Integers and floats (read through NumPy) and other kinds (through Arrow) read back as
    the column says; a row is found by its row id when ids are consecutive and past a gap."""
    kinds = TableDef(id=1, oid=16400, name="k", schema="public", columns=(
        ColumnDef("a", SqlType.parse("int2"), 1), ColumnDef("b", SqlType.parse("float4"), 2),
        ColumnDef("c", SqlType.parse("float8"), 3), ColumnDef("d", SqlType.parse("bool"), 4),
        ColumnDef("e", SqlType.parse("int4"), 5)))
    mem = Memtable(kinds)
    rowids = [10, 11, 12, 20, 21, 40]
    for i, rowid in enumerate(rowids):
        mem.append_row((rowid, i - 2, i / 3, -i * 1.5, i % 2 == 0, None if i == 4 else i), 100)
    mem.snapshot()
    data = mem.folded_data()
    for physical, field in zip(("c1", "c2", "c3", "c4", "c5"), list(kinds.physical_schema())[1:]):
        assert [data.value(physical, field.type, None, p) for p in range(len(rowids))] == \
            data.column(physical, field.type).to_pylist()
    assert [mem.folded_position(r) for r in rowids] == list(range(len(rowids)))
    assert [mem.folded_position(r) for r in (9, 13, 19, 30, 41)] == [-1] * 5
    assert Memtable(kinds).folded_position(10) == -1
