"""Join pairs counted before they exist, then enumerated in blocks (sqlvec/execution/joins.py)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.errors import OutOfMemory, QueryCanceled
from sqlvec.execution import joins
from sqlvec.execution.context import ExecContext, MemoryAccount
from sqlvec.execution.joins import CrossMatch, KeyMatch, key_pairs


def brute_force(left: list[list], right: list[list]) -> list[tuple[int, int]]:
    """SQL equality on every key column: NULL matches nothing, NaN matches NaN."""
    def equal(a, b):
        if a is None or b is None:
            return False
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        return a == b

    n_left, n_right = len(left[0]), len(right[0])
    return [(i, j) for i in range(n_left) for j in range(n_right)
            if all(equal(lk[i], rk[j]) for lk, rk in zip(left, right))]




@settings(max_examples=150, deadline=None)
@given(st.data())
def test_pairs_are_the_equal_keys_in_left_then_right_order(data):
    # Both ways: counted per key (large inputs), and one Arrow join (small inputs).
    small = data.draw(st.booleans())
    previous = joins.SMALL_PRODUCT
    joins.SMALL_PRODUCT = 1 << 16 if small else 0
    try:
        check_pairs(data)
    finally:
        joins.SMALL_PRODUCT = previous


def check_pairs(data):
    width = data.draw(st.integers(1, 2))
    n_left, n_right = data.draw(st.integers(0, 25)), data.draw(st.integers(0, 25))
    left = [data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n_left,
                               max_size=n_left)) for _ in range(width)]
    right = [data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n_right,
                                max_size=n_right)) for _ in range(width)]
    match = KeyMatch([pa.array(k, pa.int64()) for k in left],
                     [pa.array(k, pa.int64()) for k in right], n_left, n_right)
    expected = brute_force(left, right)
    assert match.total == len(expected)
    block = data.draw(st.integers(1, 7))
    got = []
    for start in range(0, match.total, block):
        li, ri = match.pairs(start, min(start + block, match.total))
        got += list(zip(li.tolist(), ri.tolist()))
    assert got == expected
    assert match.matched_left().tolist() == [any(i == a for a, _ in expected)
                                             for i in range(n_left)]
    assert match.matched_right().tolist() == [any(j == b for _, b in expected)
                                              for j in range(n_right)]


@pytest.mark.parametrize("small", [1 << 16, 0])
def test_floats_match_as_in_sql_minus_zero_equals_zero_and_nan_equals_nan(monkeypatch, small):
    monkeypatch.setattr(joins, "SMALL_PRODUCT", small)
    left = [0.0, -0.0, float("nan"), 1.5, None]
    right = [-0.0, float("nan"), 2.0, None]
    match = KeyMatch([pa.array(left)], [pa.array(right)], len(left), len(right))
    li, ri = match.pairs(0, match.total)
    assert list(zip(li.tolist(), ri.tolist())) == [(0, 0), (1, 0), (2, 1)]


def test_strings_and_several_columns():
    left = [pa.array(["a", "b", "a", None]), pa.array([1, 1, 2, 1])]
    right = [pa.array(["a", "a", "b"]), pa.array([1, 1, 1])]
    match = KeyMatch(left, right, 4, 3)
    li, ri = match.pairs(0, match.total)
    assert list(zip(li.tolist(), ri.tolist())) == [(0, 0), (0, 1), (1, 2)]


def test_colliding_keys_are_counted_without_building_the_pairs():
    n = 200_000
    match = KeyMatch([pa.array(np.zeros(n, np.int64))], [pa.array(np.zeros(n, np.int64))], n, n)
    assert match.total == n * n  # 4e10 pairs: counting them took memory in the inputs' size
    li, ri = match.pairs(match.total - 3, match.total)
    assert li.tolist() == [n - 1] * 3 and ri.tolist() == [n - 3, n - 2, n - 1]


def test_cross_match_enumerates_every_pair():
    match = CrossMatch(3, 2)
    assert match.total == 6
    li, ri = match.pairs(1, 5)
    assert li.tolist() == [0, 1, 1, 2] and ri.tolist() == [1, 0, 1, 0]
    assert match.matched_left().all() and not CrossMatch(3, 0).matched_left().any()


def test_key_pairs_reserves_the_pairs_before_making_them():
    n = 10_000
    ctx = ExecContext(memory=MemoryAccount(limit=50 << 20))
    keys = [pa.array(np.zeros(n, np.int64))]
    with pytest.raises(OutOfMemory) as caught:
        key_pairs(ctx, "SubPlan", keys, keys)  # 1e8 pairs of 16 bytes
    assert "SubPlan (100000000 rows of 16 bytes)" in caught.value.detail
    few = [pa.array(np.arange(n, dtype=np.int64))]
    li, ri = key_pairs(ctx, "SubPlan", few, few)
    assert (li == np.arange(n)).all() and (ri == np.arange(n)).all()


def test_key_pairs_stops_on_cancel():
    ctx = ExecContext()
    ctx.cancel.set()
    keys = [pa.array(np.zeros(100, np.int64))]
    with pytest.raises(QueryCanceled):
        key_pairs(ctx, "SubPlan", keys, keys)
