"""Btree indexes of sealed segments: one key's values in order, for equality and range lookups.

A `SortedKey` is what a PostgreSQL btree gives a query, built per sealed segment: the positions
of the segment's rows ordered by the key (`order`), the keys in that order (`keys`, a NumPy
array `searchsorted` can bisect) and the positions of the rows whose key is NULL. A range of
keys is a slice of `order`, found with two binary searches, so a lookup costs O(log n) plus
the rows it returns, and the number of rows a condition selects is known exactly before any
row is read (the planner's selectivity estimate, `index_selection.py` / `index_scan.py`).

The structure is built lazily, the first time a query can use it, and cached on the segment
(`SegmentData.cached`), not persisted beside the segment file: a sealed segment never changes,
so the cache never goes stale; building costs one sort (about 0.1 s per million integer keys),
paid once per process; and there is no second file to write, checksum, back up, collect and
keep in step with the Parquet file (the same reason the unique keys' indexes are rebuilt at
open rather than stored, keys.py). Worker processes and compaction's new segments build their
own on first use. The growing segment has none: it is scanned.

Keys live in a domain NumPy orders as SQL does: integers, dates and timestamps as int64,
floats as float64 (NaN last, as PostgreSQL sorts it), booleans as uint8, and text, numeric
and anything else as Python objects (str orders by code point, which is UTF-8 byte order, as
the engine compares text; Decimal exactly). A caller converts its bound with `comparable` on
an array of the key's Arrow type, so both sides are in one domain. Lookups may return more
rows than match (callers re-check the whole filter on them) but never fewer.

This module is storage: it never sees SQL; callers pass Arrow arrays of keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Arrow types whose keys are ordered as integers (after a cast to int64).
_AS_INT = (pa.types.is_integer, pa.types.is_timestamp, pa.types.is_date, pa.types.is_time,
           pa.types.is_duration)


def comparable(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Non-null keys as a NumPy array ordered and compared as SQL orders them (see the module
    docstring). NULLs must have been dropped by the caller."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    t = values.type
    if pa.types.is_integer(t):
        return values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if any(check(t) for check in _AS_INT):  # dates and times: their integer representation
        raw = values.view(pa.int32() if t.bit_width == 32 else pa.int64())
        return raw.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if pa.types.is_floating(t):
        return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if pa.types.is_boolean(t):
        return values.to_numpy(zero_copy_only=False).astype(np.uint8)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)


def indexable(arrow: pa.DataType) -> bool:
    """Whether keys of this Arrow type can be ordered here (not lists, vectors, structs)."""
    if pa.types.is_dictionary(arrow):
        arrow = arrow.value_type
    return (any(check(arrow) for check in _AS_INT) or pa.types.is_floating(arrow)
            or pa.types.is_boolean(arrow) or pa.types.is_string(arrow)
            or pa.types.is_large_string(arrow) or pa.types.is_decimal(arrow))


class SortedKey:
    """One segment's keys in order (module docstring). A *range* is a pair (start, stop) of
    indexes into the order; `positions` turns ranges into row positions of the segment."""

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        n = len(values)
        index_type = np.int32 if n < (1 << 31) else np.int64
        # NULLs sort last (NaN just before them, as PostgreSQL orders floats).
        order = pc.sort_indices(values).to_numpy().astype(index_type, copy=False)
        valid = n - values.null_count
        self.n_rows = n
        self.order = order[:valid]
        self.nulls = np.sort(order[valid:])
        self.keys = comparable(values.take(pa.array(self.order)))
        self.nbytes = self.order.nbytes + self.nulls.nbytes + self.keys.nbytes

    @property
    def everything(self) -> tuple[int, int]:
        """The range of every non-null key."""
        return 0, len(self.order)

    def at_least(self, key: object, inclusive: bool) -> int:
        """Start of the keys >= key (> key when not inclusive)."""
        return int(np.searchsorted(self.keys, key, side="left" if inclusive else "right"))

    def at_most(self, key: object, inclusive: bool) -> int:
        """Stop of the keys <= key (< key when not inclusive)."""
        return int(np.searchsorted(self.keys, key, side="right" if inclusive else "left"))

    def equal(self, keys: Sequence[object], within: tuple[int, int]) -> list[tuple[int, int]]:
        """The ranges of each key (duplicates once) inside `within`."""
        if len(keys) == 0:
            return []
        wanted = np.unique(np.asarray(keys, dtype=self.keys.dtype))
        starts = np.searchsorted(self.keys, wanted, side="left")
        stops = np.searchsorted(self.keys, wanted, side="right")
        lo, hi = within
        starts, stops = np.maximum(starts, lo), np.minimum(stops, hi)
        keep = starts < stops
        return list(zip(starts[keep].tolist(), stops[keep].tolist()))

    def positions(self, ranges: Sequence[tuple[int, int]], nulls: bool = False) -> np.ndarray:
        """Row positions (ascending: the scan's order) of the keys in `ranges`, plus the NULL
        keys' rows when `nulls`."""
        pieces = [self.order[a:b] for a, b in ranges if b > a]
        if nulls:
            pieces.append(self.nulls)
        if not pieces:
            return np.empty(0, np.int64)
        out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        return np.sort(out).astype(np.int64, copy=False)


def count(ranges: Sequence[tuple[int, int]]) -> int:
    """Rows in a set of disjoint ranges."""
    return sum(b - a for a, b in ranges if b > a)
