"""Packed bits (bit_index.py): the exact popcount scan against pgvector's kernels, filters,
the file format and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.errors import DataCorrupted, DataException
from sqlvec.storage.bit_index import (
    BitParams,
    PackedBitsIndex,
    lookup_popcount,
    popcount,
)
from sqlvec.vectors import Metric, hamming_distances, jaccard_distances


def data(n: int = 3000, bits: int = 100, seed: int = 3):
    rng = np.random.default_rng(seed)
    packed = np.packbits(rng.random((n, bits)) < 0.3, axis=1)
    query = np.packbits(rng.random(bits) < 0.3)
    return packed, query


def brute(metric: Metric, packed: np.ndarray, query: np.ndarray, k: int,
          mask: np.ndarray | None = None):
    kernel = hamming_distances if metric is Metric.HAMMING else jaccard_distances
    dists = kernel(packed, query.reshape(1, -1))
    rows = np.arange(len(packed)) if mask is None else np.flatnonzero(mask)
    order = rows[np.lexsort((rows, dists[rows]))][:k]
    return order, dists[order]


@pytest.mark.parametrize("metric", [Metric.HAMMING, Metric.JACCARD])
def test_search_equals_the_exact_kernels_with_and_without_a_filter(metric):
    packed, query = data()
    valid = np.ones(len(packed), bool)
    valid[::7] = False  # NULL keys are never returned
    index = PackedBitsIndex.build(packed, BitParams(metric), valid=valid)
    assert index.indexed_count == int(valid.sum())
    pos, dist = index.search(query, 25, ef=0)
    want_pos, want_dist = brute(metric, packed, query, 25, valid)
    assert pos.tolist() == want_pos.tolist() and dist.tolist() == want_dist.tolist()
    allowed = np.zeros(len(packed), bool)
    allowed[1:40:3] = True  # 13 rows, 2 of them NULL: fewer than k
    got, widened = index.search_filtered(query, 25, knob=0, allowed=allowed, settings=None)
    assert widened == 0
    assert got.tolist() == brute(metric, packed, query, 25, allowed & valid)[0].tolist()


def test_the_lookup_table_counts_as_the_hardware_popcount():
    words = np.random.default_rng(1).integers(0, 2**63, 1000, dtype=np.uint64)
    assert lookup_popcount(words).tolist() == [bin(int(w)).count("1") for w in words]
    assert popcount(words).tolist() == lookup_popcount(words).tolist()


def test_a_query_of_another_length_is_refused():
    packed, _ = data(bits=100)
    index = PackedBitsIndex.build(packed, BitParams(Metric.HAMMING))
    with pytest.raises(DataException, match="different bit lengths"):
        index.search(np.zeros(40, np.uint8), 5, ef=0)


def test_saved_file_round_trips_and_damage_is_detected(tmp_path):
    packed, query = data(n=500, bits=70)
    index = PackedBitsIndex.build(packed, BitParams(Metric.JACCARD))
    path = tmp_path / "seg.bits"
    crc = index.save(path)
    loaded = PackedBitsIndex.load(path, BitParams(Metric.JACCARD), 70, expected_crc=crc)
    assert [a.tolist() for a in loaded.search(query, 10, ef=0)] == \
        [a.tolist() for a in index.search(query, 10, ef=0)]
    with pytest.raises(DataCorrupted, match="another index definition"):
        PackedBitsIndex.load(path, BitParams(Metric.HAMMING), 70, expected_crc=crc)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="checksum"):
        PackedBitsIndex.load(path, BitParams(Metric.JACCARD), 70, expected_crc=crc)
    path.write_bytes(bytes(raw[:-3]))
    with pytest.raises(DataCorrupted, match="truncated"):
        PackedBitsIndex.load(path, BitParams(Metric.JACCARD), 70)
