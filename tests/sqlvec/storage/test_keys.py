"""Unique-key indexes: both implementations against a plain dict model."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.storage import keys as K
from sqlvec.storage.keys import MISSING, HashKeyIndex, IntKeyIndex, KeyIndex


def test_the_index_kind_follows_the_key_columns():
    assert isinstance(KeyIndex.for_types([pa.int64()]), IntKeyIndex)
    assert isinstance(KeyIndex.for_types([pa.int32()]), IntKeyIndex)
    assert isinstance(KeyIndex.for_types([pa.string()]), HashKeyIndex)
    assert isinstance(KeyIndex.for_types([pa.int64(), pa.int64()]), HashKeyIndex)


def test_keys_of_composite_and_vector_columns_are_hashable_values():
    index = HashKeyIndex()
    keys = index.keys_of([pa.array([1, 2]), pa.array(["a", "b"])])
    assert keys.tolist() == [(1, "a"), (2, "b")]
    vectors = index.keys_of([pa.array([[1.0, 2.0], [3.0, 4.0]])])
    index.insert(vectors, np.array([7, 8]))
    assert index.lookup(index.keys_of([pa.array([[3.0, 4.0]])])).tolist() == [8]


@pytest.mark.parametrize("make", [IntKeyIndex, HashKeyIndex])
def test_insert_lookup_remove(make):
    index = make()
    keys = index.keys_of([pa.array([5, 1, 9], pa.int64())])
    index.insert(keys, np.array([10, 11, 12]))
    assert len(index) == 3
    probe = index.keys_of([pa.array([9, 2, 5], pa.int64())])
    assert index.lookup(probe).tolist() == [12, MISSING, 10]
    assert [index.get(k) for k in probe.tolist()] == [12, MISSING, 10]
    # A removal naming another row id leaves the entry (it points at a newer row).
    index.remove(index.keys_of([pa.array([9], pa.int64())]), np.array([99]))
    assert index.lookup(probe).tolist() == [12, MISSING, 10]
    index.remove(index.keys_of([pa.array([9], pa.int64())]), np.array([12]))
    assert index.lookup(probe).tolist() == [MISSING, MISSING, 10]
    assert len(index) == 2
    index.clear()
    assert len(index) == 0 and index.lookup(probe).tolist() == [MISSING] * 3


@pytest.mark.parametrize("make", [IntKeyIndex, HashKeyIndex])
def test_a_copy_changes_independently_of_its_original(make, monkeypatch):
    monkeypatch.setattr(K, "_FOLD_MIN", 4)
    original = make()
    original.insert(np.arange(10, dtype=np.int64), np.arange(100, 110))
    original.insert(np.array([10], np.int64), np.array([110]))  # in the dict of changes
    copy = original.copy()
    if make is IntKeyIndex:  # the sorted base is shared, not copied
        assert copy._keys is original._keys and copy._rowids is original._rowids
    probe = np.arange(12, dtype=np.int64)
    assert copy.lookup(probe).tolist() == original.lookup(probe).tolist()
    # Enough changes on each side to fold their dicts into new bases.
    copy.remove(np.arange(0, 6, dtype=np.int64))
    for key in range(20, 30):
        copy.insert(np.array([key], np.int64), np.array([key + 100]))
    original.insert(np.array([11], np.int64), np.array([111]))
    assert original.lookup(probe).tolist() == list(range(100, 112))
    assert len(original) == 12
    assert copy.lookup(probe).tolist() == [MISSING] * 6 + list(range(106, 111)) + [MISSING]
    assert len(copy) == 15


def test_first_duplicate():
    assert KeyIndex.first_duplicate(np.array([3, 1, 2], np.int64)) is None
    assert KeyIndex.first_duplicate(np.array([3, 1, 3], np.int64)) == 3
    assert KeyIndex.first_duplicate(np.arange(5, dtype=np.int64)) is None  # ascending
    assert KeyIndex.first_duplicate(np.array([1, 2, 2, 3], np.int64)) == 2  # not strictly
    assert KeyIndex.first_duplicate(np.array([1.0, np.nan, np.nan])) is None  # NaN: no sort path
    keys = np.fromiter([(1, "a"), (1, "b"), (1, "a")], dtype=object, count=3)
    assert KeyIndex.first_duplicate(keys) == (1, "a")


def test_int_index_folds_changes_into_its_sorted_base(monkeypatch):
    monkeypatch.setattr(K, "_FOLD_MIN", 8)
    index = IntKeyIndex()
    for i in range(100):
        index.insert(np.array([i * 3]), np.array([i]))
        if i % 4 == 0:
            index.remove(np.array([i * 3 - 3]))
    model = {i * 3: i for i in range(100)}
    for i in range(0, 100, 4):
        model.pop(i * 3 - 3, None)
    assert len(index._changes) <= 8  # folded along the way
    probe = np.arange(-3, 303, dtype=np.int64)
    assert index.lookup(probe).tolist() == [model.get(k, MISSING) for k in probe.tolist()]
    assert [index.get(k) for k in probe.tolist()] == [model.get(k, MISSING) for k in probe.tolist()]
    assert len(index) == len(model)


@pytest.mark.parametrize("make", [IntKeyIndex, HashKeyIndex])
def test_keys_known_absent_or_held_change_the_index_as_checked_ones_do(make, monkeypatch):
    """insert_new and remove_held (a single-row write's, whose keys were checked since the
    index last changed) leave the entries and the count that insert_one and remove leave."""
    monkeypatch.setattr(K, "_FOLD_MIN", 8)  # fold along the way
    fast, checked = make(), make()
    for index in (fast, checked):
        index.insert(np.arange(0, 40, 2, dtype=np.int64), np.arange(20, dtype=np.int64))
    for i in range(60):
        key = 1 + 2 * i  # not held
        fast.insert_new(key, 100 + i)
        checked.insert_one(key, 100 + i)
        if i % 3 == 0:  # held: one inserted earlier, or one of the base's
            gone = np.array([key if i % 2 else 2 * (i // 3)], np.int64)
            fast.remove_held(gone)
            checked.remove(gone)
    probe = np.arange(-2, 130, dtype=np.int64)
    assert fast.lookup(probe).tolist() == checked.lookup(probe).tolist()
    assert len(fast) == len(checked) == 20 + 60 - 20


def test_a_bulk_insert_goes_straight_into_the_base_and_replaces_entries():
    index = IntKeyIndex()
    index.insert(np.array([1, 2]), np.array([100, 200]))
    keys = np.arange(5000, dtype=np.int64)[::-1].copy()
    index.insert(keys, keys + 1000)
    assert not index._changes
    assert index.lookup(np.array([1, 2, 4999, 5000])).tolist() == [1001, 1002, 5999, MISSING]
    assert len(index) == 5000
    assert index.nbytes >= 5000 * 16


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["insert", "remove", "bulk"]),
                          st.lists(st.integers(-50, 50), max_size=40)), max_size=40))
def test_int_index_matches_a_dict(ops):
    original = K._FOLD_MIN
    K._FOLD_MIN = 4  # fold often, so the sorted base is exercised
    try:
        index, model, next_rowid = IntKeyIndex(), {}, 0
        for op, values in ops:
            keys = np.array(sorted(set(values)), np.int64)
            if op == "remove":
                index.remove(keys)
                for k in keys.tolist():
                    model.pop(k, None)
                continue
            fresh = np.array([k for k in keys.tolist() if k not in model], np.int64)
            rowids = np.arange(next_rowid, next_rowid + fresh.size, dtype=np.int64)
            next_rowid += fresh.size
            if op == "bulk" and fresh.size:
                saved = K._FOLD_MIN
                K._FOLD_MIN = 0
                index.insert(fresh, rowids)
                K._FOLD_MIN = saved
            else:
                index.insert(fresh, rowids)
            model.update(zip(fresh.tolist(), rowids.tolist()))
            probe = np.arange(-51, 52, dtype=np.int64)
            assert index.lookup(probe).tolist() == [model.get(k, MISSING) for k in probe.tolist()]
            assert len(index) == len(model)
    finally:
        K._FOLD_MIN = original


def test_a_lookup_of_few_keys_against_many_changes_probes_the_dict():
    """Keys fewer than a share of the unsorted changes are looked up in the dict (no sort):
    the same answers as the sorted changes give, removed keys included."""
    index = IntKeyIndex()
    index.insert(np.arange(0, 100_000, 2, dtype=np.int64), np.arange(50_000, dtype=np.int64))
    index.insert(np.arange(1, 3001, 2, dtype=np.int64), np.arange(10**6, 10**6 + 1500,
                                                                  dtype=np.int64))
    index.remove(np.arange(0, 400, 4, dtype=np.int64))
    assert index._changed is None and len(index._changes) > 4 * 200
    probe = np.arange(-10, 190, dtype=np.int64)
    by_dict = index.lookup(probe)
    assert index._changed is None  # (the changes were not sorted for it)
    index._changes_arrays()
    assert by_dict.tolist() == index.lookup(probe).tolist()
    assert by_dict[10] == MISSING and by_dict[12] == 1 and by_dict[11] == 10**6
