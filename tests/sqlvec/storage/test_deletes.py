from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.errors import DataCorrupted
from sqlvec.storage.deletes import DeleteBitmap


@st.composite
def bitmap_and_positions(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    n_rows = draw(st.integers(0, 5000))
    if n_rows == 0:
        return 0, [], []
    pos = st.lists(st.integers(0, n_rows - 1), max_size=200)
    return n_rows, draw(pos), draw(pos)


def _bitmap(n_rows: int, positions: list[int]) -> DeleteBitmap:
    return DeleteBitmap.empty(n_rows).with_deleted(np.array(positions, dtype=np.int64))


@settings(max_examples=150, deadline=None)
@given(bitmap_and_positions())
def test_with_deleted_is_copy_on_write_union(case: tuple[int, list[int], list[int]]) -> None:
    n_rows, first, second = case
    old = _bitmap(n_rows, first)
    old_mask = old.mask.copy()
    new = old.with_deleted(np.array(second, dtype=np.int64))

    assert set(np.flatnonzero(new.mask)) == set(first) | set(second)
    assert new.count == len(set(first) | set(second)) == int(new.mask.sum())
    assert new.n_rows == old.n_rows == n_rows
    # The reader holding `old` sees exactly what it saw before.
    assert np.array_equal(old.mask, old_mask)
    assert old.count == len(set(first))

    assert set(new.newly_deleted_since(old)) == set(second) - set(first)
    assert list(new.newly_deleted_since(new)) == []
    assert np.array_equal(new.live_mask(), ~new.mask)
    if second:
        probe = np.array(second, dtype=np.int64)
        assert new.is_deleted(probe).all()

    again = DeleteBitmap.from_bytes(new.to_bytes(), source="mem")
    assert again == new and again.count == new.count
    assert (old == new) == (set(second) <= set(first))


def test_views_are_read_only() -> None:
    bm = DeleteBitmap.empty(10).with_deleted(np.array([3]))
    with pytest.raises(ValueError):
        bm.mask[0] = True
    with pytest.raises(ValueError):
        bm.live_mask()[0] = False
    assert bm.count == 1


def test_constructor_copies_its_input() -> None:
    src = np.zeros(5, dtype=bool)
    bm = DeleteBitmap(src)
    src[2] = True
    assert bm.count == 0 and not bm.mask.any()
    assert DeleteBitmap(np.array([True, False, True])).count == 2


def test_no_new_deletes_returns_same_bitmap() -> None:
    bm = DeleteBitmap.empty(8).with_deleted(np.array([1, 1, 2]))
    assert bm.count == 2
    assert bm.with_deleted(np.array([2, 1])) is bm
    assert bm.with_deleted(np.array([], dtype=np.int64)) is bm


@pytest.mark.parametrize("bad", [[-1], [8], [0, 100]])
def test_positions_out_of_range_rejected(bad: list[int]) -> None:
    with pytest.raises(IndexError):
        DeleteBitmap.empty(8).with_deleted(np.array(bad))


def test_non_integer_positions_rejected() -> None:
    with pytest.raises(TypeError):
        DeleteBitmap.empty(8).with_deleted(np.array([True, False]))


def test_newly_deleted_since_requires_same_segment() -> None:
    with pytest.raises(ValueError):
        DeleteBitmap.empty(8).newly_deleted_since(DeleteBitmap.empty(9))


@pytest.mark.parametrize("n_rows", [0, 1, 7, 8, 9, 1000])
def test_file_round_trip(tmp_path, n_rows: int) -> None:
    rng = np.random.default_rng(n_rows)
    bm = DeleteBitmap(rng.random(n_rows) < 0.3)
    path = tmp_path / "seg-1.del"
    bm.write(path)
    assert path.stat().st_size == 32 + (n_rows + 7) // 8
    assert DeleteBitmap.read(path, expected_rows=n_rows) == bm
    assert [p.name for p in tmp_path.iterdir()] == ["seg-1.del"]  # no temp file left


def test_write_replaces_previous_file(tmp_path) -> None:
    path = tmp_path / "seg.del"
    DeleteBitmap.empty(20).write(path)
    bm = DeleteBitmap.empty(20).with_deleted(np.array([4, 19]))
    bm.write(path)
    assert DeleteBitmap.read(path, 20) == bm


def _write_small(tmp_path) -> tuple[object, bytes]:
    bm = DeleteBitmap.empty(37).with_deleted(np.array([0, 5, 17, 36]))
    path = tmp_path / "small.del"
    bm.write(path)
    return path, path.read_bytes()


def test_every_flipped_bit_is_detected(tmp_path) -> None:
    path, good = _write_small(tmp_path)
    for i in range(len(good)):
        for bit in range(8):
            damaged = bytearray(good)
            damaged[i] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            with pytest.raises(DataCorrupted, match="small.del"):
                DeleteBitmap.read(path, expected_rows=37)


def test_every_flipped_byte_is_detected(tmp_path) -> None:
    path, good = _write_small(tmp_path)
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(DataCorrupted, match="small.del"):
            DeleteBitmap.read(path, expected_rows=37)


def test_truncated_or_extended_file_is_detected(tmp_path) -> None:
    path, good = _write_small(tmp_path)
    for n in range(len(good)):
        path.write_bytes(good[:n])
        with pytest.raises(DataCorrupted, match="small.del"):
            DeleteBitmap.read(path, expected_rows=37)
    path.write_bytes(good + b"\0")
    with pytest.raises(DataCorrupted, match="small.del"):
        DeleteBitmap.read(path, expected_rows=37)


def test_row_count_mismatch_is_detected(tmp_path) -> None:
    path, _ = _write_small(tmp_path)
    with pytest.raises(DataCorrupted, match="37 rows but the segment has 38"):
        DeleteBitmap.read(path, expected_rows=38)


def test_missing_file_is_reported(tmp_path) -> None:
    with pytest.raises(DataCorrupted, match="missing"):
        DeleteBitmap.read(tmp_path / "nope.del", expected_rows=1)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 3000), st.lists(st.lists(st.integers(0, 10**6), max_size=12), max_size=60),
       st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_layered_bitmaps_answer_as_a_plain_mask(n_rows: int, steps: list[list[int]],
                                                probes: list[int]) -> None:
    """Deletes of a few rows share the previous bitmap's mask (a few positions beside it, folded
    past EXTRA_MAX): every answer, and every older bitmap, is as with full copies."""
    bitmap, mask, history = DeleteBitmap.empty(n_rows), np.zeros(n_rows, bool), []
    probe = np.array([p % n_rows for p in probes], dtype=np.int64)
    for step in steps:
        positions = np.array([p % n_rows for p in step], dtype=np.int64)
        history.append((bitmap, mask.copy()))
        bitmap = bitmap.with_deleted(positions)
        mask[positions] = True
        # Answers before the full mask is built, then after.
        assert bitmap.count == int(mask.sum())
        assert np.array_equal(bitmap.is_deleted(probe), mask[probe])
        assert [bitmap.is_deleted_one(int(p)) for p in probe] == mask[probe].tolist()
        assert np.array_equal(bitmap.mask, mask)
        assert np.array_equal(bitmap.live_mask(), ~mask)
    assert bitmap == DeleteBitmap(mask)
    assert bitmap.to_bytes() == DeleteBitmap(mask).to_bytes()
    for old, old_mask in history:
        assert np.array_equal(old.mask, old_mask) and old.count == int(old_mask.sum())
        assert set(bitmap.newly_deleted_since(old)) == set(np.flatnonzero(mask & ~old_mask))


def test_a_delete_of_one_row_does_not_copy_the_mask() -> None:
    base = DeleteBitmap.empty(1_000_000)
    one = base.with_deleted(np.array([5]))
    two = one.with_deleted(np.array([7]))
    assert one._base is base._base and two._base is base._base  # shared, not copied
    assert two.count == 2 and two.is_deleted_one(5) and two.is_deleted_one(7)
    assert not base.is_deleted_one(5) and one.with_deleted(np.array([5])) is one


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.lists(st.integers(0, 10**6), max_size=300))
def test_one_position_at_a_time_answers_as_a_plain_mask(n_rows: int, steps: list[int]) -> None:
    """`with_deleted_one` (the old row of a single-row UPDATE) leaves the same bitmaps as
    `with_deleted` of one position, past EXTRA_MAX too, and older bitmaps unchanged."""
    bitmap, mask = DeleteBitmap.empty(n_rows), np.zeros(n_rows, bool)
    for step in steps:
        position = step % n_rows
        before, before_mask = bitmap, mask.copy()
        bitmap = bitmap.with_deleted_one(position)
        assert bitmap == before.with_deleted(np.array([position]))
        assert (bitmap is before) == bool(before_mask[position])
        mask[position] = True
        assert bitmap.count == int(mask.sum()) and bitmap.is_deleted_one(position)
        assert np.array_equal(before.mask, before_mask)
    assert np.array_equal(bitmap.mask, mask)
    with pytest.raises(IndexError):
        bitmap.with_deleted_one(n_rows)
    with pytest.raises(IndexError):
        bitmap.with_deleted_one(-1)
