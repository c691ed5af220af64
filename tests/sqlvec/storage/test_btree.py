"""Sorted keys of a segment: every range and equality lookup returns exactly the positions a
brute-force comparison finds, for integers, floats with NaN, text, timestamps and decimals,
with NULLs."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.storage.btree import SortedKey, comparable, count, indexable


def _arrays(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    mask = rng.random(n) < 0.1
    ints = rng.integers(-50, 50, n)
    floats = rng.integers(-20, 20, n).astype(float)
    floats[rng.random(n) < 0.05] = np.nan
    return {
        "int32": pa.array(ints.astype(np.int32), mask=mask),
        "int64": pa.array(ints * (1 << 40), mask=mask),
        "float": pa.array(floats, mask=mask),
        "text": pa.array([f"k{v:03d}é" if v % 3 else f"K{v}" for v in ints], mask=mask),
        "timestamp": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(hours=int(v))
                               for v in ints], pa.timestamp("us"), mask=mask),
        "date": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=int(v)) for v in ints],
                         pa.date32(), mask=mask),
        "decimal": pa.array([decimal.Decimal(int(v)) / 4 for v in ints],
                            pa.decimal128(12, 2), mask=mask),
    }


@pytest.mark.parametrize("kind", ["int32", "int64", "float", "text", "timestamp", "date",
                                  "decimal"])
def test_lookups_match_brute_force(kind):
    rng = np.random.default_rng(len(kind))
    array = _arrays(rng, 2_000)[kind]
    key = SortedKey(array)
    valid = ~np.asarray(array.is_null())
    values = np.full(len(array), None, dtype=object)
    values[valid] = list(comparable(array.filter(pa.array(valid))))
    assert np.array_equal(key.positions([], nulls=True), np.flatnonzero(~valid))
    probes = comparable(array.drop_null())
    for probe in list(probes[rng.integers(0, len(probes), 20)]) + [probes.min(), probes.max()]:
        for inclusive in (True, False):
            lo = key.at_least(probe, inclusive)
            want = [i for i, v in enumerate(values) if v is not None and not _nan(v)
                    and (v >= probe if inclusive else v > probe)]
            got = key.positions([(lo, key.everything[1])])
            if not _nan(probe):  # NaN sorts last: `>` of it selects nothing either way
                assert sorted(set(got) - {i for i, v in enumerate(values) if _nan(v)}) == want
            hi = key.at_most(probe, inclusive)
            want = [i for i, v in enumerate(values) if v is not None and not _nan(v)
                    and (v <= probe if inclusive else v < probe)]
            if not _nan(probe):
                assert list(key.positions([(0, hi)])) == want
        ranges = key.equal([probe], key.everything)
        want = [i for i, v in enumerate(values) if v is not None and (v == probe or (
            _nan(v) and _nan(probe)))]
        assert list(key.positions(ranges)) == want and count(ranges) == len(want)


def _nan(v) -> bool:
    return isinstance(v, float) and v != v


def test_equal_within_a_range_and_duplicates():
    key = SortedKey(pa.array([5, 1, 3, 3, None, 9, 1]))
    assert list(key.positions(key.equal([3, 1, 3, 7], key.everything))) == [1, 2, 3, 6]
    lo = key.at_least(2, True)
    assert list(key.positions(key.equal([1, 3], (lo, key.everything[1])))) == [2, 3]
    assert key.equal([], key.everything) == []
    assert SortedKey(pa.array([], pa.int64())).positions([(0, 0)]).size == 0


def test_indexable_types():
    assert indexable(pa.int16()) and indexable(pa.string()) and indexable(pa.decimal128(5, 2))
    assert indexable(pa.timestamp("us", tz="UTC")) and indexable(pa.bool_())
    assert not indexable(pa.list_(pa.float32(), 3)) and not indexable(pa.binary())
