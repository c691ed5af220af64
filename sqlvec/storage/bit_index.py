"""Packed bits: the per-segment structure of indexes on bit strings (`bit_hamming_ops`,
`bit_jaccard_ops`), whatever the access method named (`USING hnsw`, `USING ivfflat`).

Why not a graph: hnswlib has only dense float spaces, and at the sizes a segment holds an exact
scan of packed bits is as fast as a graph walk would be. A 768-bit key is 96 bytes, 1/32 of its
float32 vector: a segment of 100,000 keys is 9.6 MB, scored against a query with one XOR, one
hardware popcount and one add per 64-bit word and row (`np.bitwise_count`, or a byte lookup table
where NumPy lacks it) at memory speed, with recall 1 and exactly k rows under any filter. What a
segment would otherwise pay per query is turning its keys into bits: parsing the `'0'/'1'` text a
bit column is stored as, or `binary_quantize` of every vector for an expression index
(`binary_quantize(emb)::bit(n)`, pgvector's binary quantization). So the index is the packed bits
themselves, computed once when the segment is sealed (or the index created), saved beside the
segment with a CRC-32 like the other index files, rebuilt by compaction, and laid out word-major
(one contiguous array of n words per 64-bit word of the key) so each step is one vector
operation over the segment. Each row's popcount is kept too (Jaccard's union needs it).

Implements `VectorIndex` (vector_index.py) and `FilteringIndex` (the allowed mask is applied while
scoring, so a filtered search never widens or falls short). It has no knob and no calibration:
EXPLAIN says it is an exact scan.

On-disk file (little-endian)
============================

| offset | type            | field                                          |
|--------|-----------------|------------------------------------------------|
| 0      | 8 bytes         | magic `SQVBIT01`                               |
| 8      | uint32          | metric code (1 hamming, 2 jaccard)             |
| 12     | uint32          | bits per key d                                 |
| 16     | uint64          | rows n (the segment's, indexed or not)         |
| 24     | uint8[n]        | 1 where the row has a key (not NULL)           |
| 24 + n | uint64[w×n]     | the keys word-major, w = ceil(d / 64), each word big-endian bit order as `np.packbits` |
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sqlvec.errors import DataCorrupted, DataException, FeatureNotSupported
from sqlvec.storage.fsutil import atomic_write
from sqlvec.storage.vector_index import (
    ExactScanIndex,
    IndexBuildCancelled,
    IndexOption,
    IndexSetting,
    OpClass,
    corrupted_index_file,
    read_index_file,
)
from sqlvec.vectors import Metric

_MAGIC = b"SQVBIT01"
_HEADER = struct.Struct("<8sIIQ")
_METRIC_CODES = {Metric.HAMMING: 1, Metric.JACCARD: 2}
# Rows packed per step of a build (the unit of progress reporting and cancellation).
BUILD_CHUNK = 65_536

_TABLE = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def lookup_popcount(words: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Set bits per element (uint8 counts) through a byte lookup table: NumPy before 2.0
    has no `np.bitwise_count`."""
    as_bytes = np.ascontiguousarray(words).view(np.uint8)
    counts = _TABLE[as_bytes].reshape(*words.shape, words.itemsize)
    return counts.sum(axis=-1, dtype=np.uint8, out=out)


# One hardware popcount per element where NumPy has it (2.0 and later), else the table.
popcount = getattr(np, "bitwise_count", lookup_popcount)


def words_of(packed: np.ndarray) -> np.ndarray:
    """(n, ceil(d/8)) packed bytes as word-major uint64, (ceil(d/64), n): zero-padded on the
    right, so padding never counts."""
    n, width = packed.shape
    words = -(-width // 8)
    padded = np.zeros((n, words * 8), np.uint8)
    padded[:, :width] = packed
    return np.ascontiguousarray(padded.view(">u8").astype(np.uint64).T)


def query_words(packed: np.ndarray) -> np.ndarray:
    """One packed key (ceil(d/8),) as its uint64 words (ceil(d/64),)."""
    return words_of(np.asarray(packed, np.uint8).reshape(1, -1))[:, 0]


def bit_distances(metric: Metric, words: np.ndarray, counts: np.ndarray | None,
                  query: np.ndarray) -> np.ndarray:
    """pgvector's hamming or jaccard distance from `query` (uint64 words) to every column of
    word-major `words`: Hamming as integer counts (uint16, or uint32 for keys over 65,535
    bits), Jaccard as float64. `counts` is each row's popcount (needed for Jaccard)."""
    n = words.shape[1]
    wide = words.shape[0] * 64 > np.iinfo(np.uint16).max
    acc = np.zeros(n, np.uint32 if wide else np.uint16)
    # One buffer each for the combined words and their counts, reused word after word: a new
    # array per step would cost more in page faults than the popcounts themselves.
    combined = np.empty(n, np.uint64)
    ones = np.empty(n, np.uint8)
    combine = np.bitwise_xor if metric is Metric.HAMMING else np.bitwise_and
    for row, word in zip(words, query):
        combine(row, word, out=combined)
        popcount(combined, out=ones)
        np.add(acc, ones, out=acc, casting="unsafe")
    if metric is Metric.HAMMING:
        return acc
    if counts is None:
        counts = row_counts(words)
    union = counts.astype(np.int64) + int(popcount(query).sum()) - acc
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(acc == 0, 1.0, 1.0 - acc / union.astype(np.float64))


def row_counts(words: np.ndarray) -> np.ndarray:
    """Set bits of each row of word-major `words` (uint32)."""
    acc = np.zeros(words.shape[1], np.uint32)
    for row in words:
        acc += popcount(row)
    return acc


def nearest(dists: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest of `dists` among `mask`, nearest first, ties by position."""
    if mask is not None:
        candidates = np.flatnonzero(mask)
        dists = dists[candidates]
    else:
        candidates = None
    k = min(k, dists.size)
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0)
    if k < dists.size:
        if dists.dtype.kind == "u":  # Hamming counts: the k-th from a histogram, O(n)
            kth = int(np.searchsorted(np.cumsum(np.bincount(dists)), k))
        else:
            kth = dists[np.argpartition(dists, k - 1)[:k]].max()
        # ties at the k-th distance: take them all, then order by (distance, position)
        part = np.flatnonzero(dists <= kth)
    else:
        part = np.arange(dists.size)
    order = part[np.lexsort((part, dists[part]))][:k]
    positions = order if candidates is None else candidates[order]
    return positions.astype(np.int64), dists[order].astype(np.float64)


@dataclass(frozen=True)
class BitParams:
    """The metric of an index on bit strings (the method's options do not apply to it)."""

    metric: Metric

    def __post_init__(self) -> None:
        if self.metric not in _METRIC_CODES:
            raise FeatureNotSupported(f"bit indexes do not support {self.metric.name} distance")


class PackedBitsIndex(ExactScanIndex):
    """The keys of one sealed segment as packed 64-bit words, scanned exactly by popcount."""

    access_method = "packed_bits"  # the structure's name in EXPLAIN (not a CREATE INDEX method)
    am_oid = 0
    opclasses: tuple[OpClass, ...] = ()
    options: tuple[IndexOption, ...] = ()
    settings: tuple[IndexSetting, ...] = ()

    def __init__(self, params: BitParams, bits: int, words: np.ndarray,
                 valid: np.ndarray) -> None:
        self._params = params
        self._bits = bits
        self._words = words
        self._valid = valid
        self._counts = row_counts(words) if params.metric is Metric.JACCARD else None
        self._indexed = int(np.count_nonzero(valid))
        self.calibration: list[tuple[int, float]] = []

    # Build ----------------------------------------------------------------------------------

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> BitParams:
        """The metric alone: the method's options (m, lists, ...) shape no such structure."""
        return BitParams(metric)

    @classmethod
    def build(cls, vectors: np.ndarray, params: BitParams, *, valid: np.ndarray | None = None,
              num_threads: int = 0, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None, bits: int | None = None
              ) -> PackedBitsIndex:
        """Lay out the segment's packed keys (n, ceil(d/8) bytes) word-major."""
        packed = np.asarray(vectors, np.uint8)
        n = packed.shape[0]
        parts = []
        for start in range(0, max(n, 1), BUILD_CHUNK):
            if should_stop is not None and should_stop():
                raise IndexBuildCancelled("bit index build cancelled")
            parts.append(words_of(packed[start:start + BUILD_CHUNK]))
            if progress is not None:
                progress(min(n, start + BUILD_CHUNK), n)
        words = np.ascontiguousarray(np.concatenate(parts, axis=1)) if parts else \
            np.zeros((0, 0), np.uint64)
        mask = np.ones(n, np.bool_) if valid is None else np.asarray(valid, np.bool_).copy()
        return cls(params, bits if bits is not None else packed.shape[1] * 8, words, mask)

    # Persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index atomically (temp file, fsync, rename); return its CRC-32."""
        n = self._valid.size
        body = b"".join((_HEADER.pack(_MAGIC, _METRIC_CODES[self._params.metric], self._bits, n),
                         self._valid.astype(np.uint8).tobytes(),
                         self._words.astype("<u8").tobytes()))
        atomic_write(path, body)
        return zlib.crc32(body)

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: BitParams, dim: int, *,
             expected_crc: int | None = None) -> PackedBitsIndex:
        """Read a file written by `save`, checking its CRC first when the manifest has one."""
        path = Path(path)
        data = read_index_file(path, "bit", _HEADER.size, expected_crc)
        magic, code, bits, n = _HEADER.unpack_from(data)
        if magic != _MAGIC or code != _METRIC_CODES[params.metric]:
            raise _corrupt(path, "it was built for another index definition")
        if bits != -(-dim // 8) * 8:  # keys are stored whole bytes long
            raise _corrupt(path, f"its keys are not {dim} bits long")
        words = -(-bits // 64)
        if _HEADER.size + n + words * n * 8 != len(data):
            raise _corrupt(path, "its header is inconsistent or the file is truncated")
        valid = np.frombuffer(data, np.uint8, n, _HEADER.size).astype(np.bool_)
        keys = np.frombuffer(data, "<u8", words * n, _HEADER.size + n).astype(np.uint64)
        return cls(params, bits, keys.reshape(words, n), valid)

    # Search ---------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int, *, ef: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact k nearest keys: (positions, pgvector distances), nearest first, ties by
        position. `query` is the packed key (ceil(d/8) bytes)."""
        if allowed is None:
            mask = None if self._indexed == self._valid.size else self._valid
        else:
            mask = self._valid & allowed
        return nearest(self.distances(query), int(k), mask)

    def search_filtered(self, query: np.ndarray, k: int, *, knob: int, allowed: np.ndarray,
                        settings: Mapping[str, str] | None) -> tuple[np.ndarray, int]:
        """A filtered search: the mask applied while scoring, never widened."""
        return self.search(query, k, ef=knob, allowed=np.asarray(allowed, np.bool_))[0], 0

    def distances(self, query: np.ndarray) -> np.ndarray:
        """The distance from the packed `query` to every row (Hamming: integer counts; rows
        without a key are scored too, callers mask them)."""
        q = np.asarray(query, np.uint8).reshape(-1)
        if q.size * 8 < self._bits or q.size > -(-self._bits // 8):
            raise DataException(f"different bit lengths {self._bits} and {q.size * 8}")
        return bit_distances(self._params.metric, self._words, self._counts, query_words(q))

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        """EXPLAIN's text: what the scan does."""
        return (f"exact popcount scan of {self._indexed} packed keys "
                f"({-(-self._bits // 64) * 8} bytes each)")

    # Introspection --------------------------------------------------------------------------

    @property
    def params(self) -> BitParams:
        return self._params

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def valid(self) -> np.ndarray:
        """Rows that have a key (the segment's positions)."""
        return self._valid

    @property
    def indexed_count(self) -> int:
        return self._indexed

    @property
    def memory_bytes(self) -> int:
        """Resident bytes of the structure's arrays (what `sqlvec_indexes` shows)."""
        counts = 0 if self._counts is None else self._counts.nbytes
        return int(self._words.nbytes + self._valid.nbytes + counts)

    def __repr__(self) -> str:
        return (f"PackedBitsIndex({self._params.metric.name}, bits={self._bits}, "
                f"indexed={self._indexed})")


def _corrupt(path: Path, reason: str) -> DataCorrupted:
    return corrupted_index_file("bit", path, reason)
