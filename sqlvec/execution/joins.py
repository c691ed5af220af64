"""Which rows of two inputs pair up in a join, counted before anything is materialized.

A join's output can be far larger than its inputs: keys that collide (`ON a.x % 1 = b.x % 1`)
pair every row with every row. So the pairs are never built in one go. `match_keys` first
numbers the distinct keys of the right side and looks up each row's key number, with Arrow
hash joins against the distinct keys whose outputs are one row per input row at most; with
the number of right rows per key, the exact number of pairs is known in O(rows) time and
memory, before any pair exists. The caller checks it against the statement's memory limit,
then asks for the pairs in blocks (`pairs(start, stop)`: the start..stop-th pair in the order
left row, then right row), checking for interrupts between blocks. `CrossMatch` is the same
interface for a cross product. Inputs so small that they cannot make many pairs even if every
key collided (`SMALL_PRODUCT`) are joined with one Arrow join instead, which costs less.

Keys follow SQL equality: a NULL key matches nothing; -0.0 equals 0.0 and NaN equals NaN, as
in PostgreSQL.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.execution.context import rows_of

# Working memory per row of either input while matching keys (row numbers, key numbers and
# Arrow's hash tables over the distinct keys), on top of the key columns themselves.
MATCH_BYTES_PER_ROW = 48


# Inputs this small (at most this many pairs even if every key collided) are joined at once:
# one Arrow join costs less than counting first, and its output is bounded anyway.
SMALL_PRODUCT = 1 << 16


class KeyMatch:
    """The pairs (left row, right row) with equal keys, enumerated without being stored."""

    def __init__(self, left_keys: list[pa.Array], right_keys: list[pa.Array],
                 n_left: int, n_right: int) -> None:
        self.n_left, self.n_right = n_left, n_right
        names = [f"k{i}" for i in range(len(left_keys))]
        if n_left * n_right <= SMALL_PRODUCT:
            self._join_at_once(left_keys, right_keys, names)
            return
        right = pa.table([_normal(k) for k in right_keys], names=names)
        distinct = right.group_by(names, use_threads=False).aggregate([])
        distinct = distinct.append_column("_g", pa.array(np.arange(distinct.num_rows)))
        self.n_keys = distinct.num_rows
        # Right rows with a non-NULL key, ordered by key number then row.
        found = right.append_column("_r", pa.array(np.arange(n_right, dtype=np.int64))) \
            .join(distinct, names, join_type="inner", use_threads=False)
        r_rows = found.column("_r").to_numpy()
        r_keys = found.column("_g").to_numpy()
        order = np.lexsort((r_rows, r_keys))
        self._right_rows = r_rows[order]
        self._right_keys = r_keys[order]
        self.right_per_key = np.bincount(r_keys, minlength=self.n_keys)
        self._right_start = np.cumsum(self.right_per_key) - self.right_per_key
        # Left rows whose key occurs on the right, in row order, with their key numbers.
        left = pa.table([_normal(k) for k in left_keys], names=names)
        found = left.append_column("_l", pa.array(np.arange(n_left, dtype=np.int64))) \
            .join(distinct, names, join_type="inner", use_threads=False)
        l_rows = found.column("_l").to_numpy()
        order = np.argsort(l_rows, kind="stable")
        self.left_rows = l_rows[order]
        self._left_keys = found.column("_g").to_numpy()[order]
        counts = self.right_per_key[self._left_keys]
        self._cum = np.cumsum(counts)
        self._counts = counts
        self.total = int(self._cum[-1]) if self._cum.size else 0
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None

    def _join_at_once(self, left_keys: list[pa.Array], right_keys: list[pa.Array],
                      names: list[str]) -> None:
        left = pa.table([_normal(k) for k in left_keys], names=names).append_column(
            "_l", pa.array(np.arange(self.n_left, dtype=np.int64)))
        right = pa.table([_normal(k) for k in right_keys], names=names).append_column(
            "_r", pa.array(np.arange(self.n_right, dtype=np.int64)))
        joined = left.join(right, names, join_type="inner", use_threads=False)
        li, ri = joined.column("_l").to_numpy(), joined.column("_r").to_numpy()
        order = np.lexsort((ri, li))
        self._pairs = li[order], ri[order]
        self.total = int(li.size)

    def pairs(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The start..stop-th pairs: (left rows, right rows), by left row, then right row."""
        if self._pairs is not None:
            return self._pairs[0][start:stop], self._pairs[1][start:stop]
        p = np.arange(start, stop, dtype=np.int64)
        k = np.searchsorted(self._cum, p, side="right")
        offset = p - (self._cum[k] - self._counts[k])
        right = self._right_rows[self._right_start[self._left_keys[k]] + offset]
        return self.left_rows[k], right

    def matched_left(self) -> np.ndarray:
        """Which left rows have at least one pair."""
        out = np.zeros(self.n_left, bool)
        out[self.left_rows if self._pairs is None else self._pairs[0]] = True
        return out

    def matched_right(self) -> np.ndarray:
        """Which right rows have at least one pair."""
        if self._pairs is not None:
            out = np.zeros(self.n_right, bool)
            out[self._pairs[1]] = True
            return out
        left_per_key = np.bincount(self._left_keys, minlength=self.n_keys)
        out = np.zeros(self.n_right, bool)
        out[self._right_rows[left_per_key[self._right_keys] > 0]] = True
        return out


class CrossMatch:
    """Every (left row, right row) pair: the cross product, in the same interface."""

    def __init__(self, n_left: int, n_right: int) -> None:
        self.n_left, self.n_right = n_left, n_right
        self.total = n_left * n_right

    def pairs(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Pairs `start` to `stop` of the cross product, in row-major order, so a join can take them
        a block at a time."""
        p = np.arange(start, stop, dtype=np.int64)
        return p // self.n_right, p % self.n_right

    def matched_left(self) -> np.ndarray:
        """Every left row has a partner exactly when the right side has rows."""
        return np.full(self.n_left, self.n_right > 0)

    def matched_right(self) -> np.ndarray:
        """Every right row has a partner exactly when the left side has rows."""
        return np.full(self.n_right, self.n_left > 0)


def key_pairs(ctx, what: str, left_keys: list[pa.Array],
              right_keys: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """Every (left row, right row) pair with equal keys, by left row then right row: their
    memory reserved first (53200 past work_mem), built in blocks with interrupt checks."""
    n_left, n_right = len(left_keys[0]), len(right_keys[0])
    ctx.memory.reserve(f"{what} (matching keys of {n_left} and {n_right} rows)",
                       match_bytes(left_keys, right_keys))
    match = KeyMatch(left_keys, right_keys, n_left, n_right)
    ctx.memory.reserve(f"{what} ({rows_of(match.total, 16)})", match.total * 16)
    left, right = np.empty(match.total, np.int64), np.empty(match.total, np.int64)
    for start in range(0, match.total, PAIR_BLOCK):
        ctx.check_interrupts()
        stop = min(start + PAIR_BLOCK, match.total)
        left[start:stop], right[start:stop] = match.pairs(start, stop)
    return left, right


# Pairs made per block by `key_pairs` (between interrupt checks).
PAIR_BLOCK = 1 << 21


def match_bytes(left_keys: list[pa.Array], right_keys: list[pa.Array]) -> int:
    """Working memory `KeyMatch` needs for these key columns (to reserve before building it)."""
    rows = sum(len(k) for k in left_keys[:1]) + sum(len(k) for k in right_keys[:1])
    return rows * MATCH_BYTES_PER_ROW + sum(k.nbytes for k in left_keys + right_keys)


def _normal(key: pa.Array) -> pa.Array:
    """The key as hashing compares it: floats with -0.0 made 0.0 (NaN already equals NaN)."""
    if pa.types.is_floating(key.type):
        return pc.add(key, pa.scalar(0.0, key.type))  # -0.0 + 0.0 == +0.0
    return key


__all__ = ["KeyMatch", "CrossMatch", "key_pairs", "match_bytes"]
