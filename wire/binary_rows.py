"""Finding the rows of a binary COPY stream whose rows vary in size (a text column, NULLs).

Each binary row is an int16 field count, then per field an int32 size (-1: NULL) and that
many bytes, so a row's end is known only by reading its size words. Most of them never vary:
an int8 is always 8 bytes, a `vector(128)` always 516. A *template* says, per column, either
the size every row is expected to have (columns of fixed-width types: integers, floats, dense
vectors, taken from the first row) or None (read in every row: text, and any column whose
first value is NULL). The walk steps from row to row reading only the None columns' size
words — one `struct` read per row for a table with one text column, against one per field
for a general walk — and `fields` then reads every size word of the rows found at once with
NumPy and checks the template held (field counts, fixed sizes, no size below -1). Whatever
the walk found is exactly what a field-by-field walk finds whenever `fields` accepts it; when
it does not (a NULL in an int column, a malformed row), the caller walks again with every
column read (`VARYING`) or leaves the stream to the exact decoder, which names the line.
"""

from __future__ import annotations

import struct

import numpy as np

from sqlvec.types import SqlType

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")

Template = list  # per column: its size in every row, or None (read in each row)

_FIXED_NAMES = frozenset({"int2", "int4", "int8", "float4", "float8"})


def template(data: bytes | memoryview, pos: int, types: list[SqlType]) -> Template | None:
    """The template the first row (at `pos`) suggests: the first row's size for fixed-width
    types, None for the rest and for NULLs. None when the first row is not all there or its
    field count is not the column count."""
    ncols = len(types)
    end = len(data)
    if pos + 2 > end or _INT16.unpack_from(data, pos)[0] != ncols:
        return None
    sizes: Template = []
    p = pos + 2
    for t in types:
        if p + 4 > end:
            return None
        (size,) = _INT32.unpack_from(data, p)
        if size < -1:
            return None
        fixed = t.name in _FIXED_NAMES or t.is_vector
        sizes.append(size if fixed and size >= 0 else None)
        p += 4 + max(size, 0)
    return sizes if p <= end else None


def varying(ncols: int) -> Template:
    """The template that reads every size word: for rows the first row's sizes do not fit."""
    return [None] * ncols


def walk(data: bytes | memoryview, pos: int, end: int, sizes: Template) -> tuple[list[int], int]:
    """(the starts of the whole rows from `pos` that end by `end`, where the last one ends),
    reading only the size words the template leaves open. It stops at the first row that
    does not fit, so a size word that is garbage only ends the walk early."""
    unpack = _INT32.unpack_from
    gaps = []  # per open column: bytes from the previous open value's end to its size word
    const = 2  # the field count
    for size in sizes:
        if size is None:
            gaps.append(const)
            const = 0
        else:
            const += 4 + size
    tail = const  # the fixed fields after the last open one
    starts: list[int] = []
    append = starts.append
    p = pos
    if not gaps:
        step = tail
        n = max(0, (end - pos) // step)
        return list(range(pos, pos + n * step, step)), pos + n * step
    if len(gaps) == 1:  # the common case, one text column: one read per row
        gap = gaps[0]
        while True:
            q = p + gap
            if q + 4 > end:
                break
            (s,) = unpack(data, q)
            e = q + 4 + (s if s > 0 else 0) + tail
            if e > end:
                break
            append(p)
            p = e
        return starts, p
    while True:
        e = p
        for gap in gaps:
            q = e + gap
            if q + 4 > end:
                return starts, p
            (s,) = unpack(data, q)
            e = q + 4 + (s if s > 0 else 0)
        e += tail
        if e > end:
            return starts, p
        append(p)
        p = e


def _int32s(data: bytes | memoryview, end: int) -> np.ndarray:
    """A view of `data[:end]` as the big-endian int32 starting at every byte (stride 1), so
    the size words at any offsets are one gather."""
    return np.ndarray(shape=(max(0, end - 3),), dtype=">i4", buffer=data, strides=(1,))


def fields(data: bytes | memoryview, starts: list[int] | np.ndarray,
           sizes: Template) -> tuple[np.ndarray, np.ndarray] | None:
    """Every field's (start, length) of the rows `walk` found, as two (rows, columns) arrays,
    or None when a row breaks the template (a field count that is not the column count, a
    fixed column of another size or NULL, a size below -1): then the walk's rows may not be
    the stream's."""
    ncols = len(sizes)
    rows = np.fromiter(starts, np.int64, len(starts))
    n = rows.size
    out_starts = np.empty((n, ncols), np.int64, order="F")  # a column is contiguous
    out_lengths = np.empty((n, ncols), np.int64, order="F")
    if n == 0:
        return out_starts, out_lengths
    words = _int32s(data, len(data))
    counts = np.ndarray(shape=(max(0, len(data) - 1),), dtype=">i2", buffer=data,
                        strides=(1,))[rows]
    if (counts != ncols).any():
        return None
    at = rows + 2
    for j, size in enumerate(sizes):
        sizes_j = words[at]
        out_starts[:, j] = at + 4
        out_lengths[:, j] = sizes_j
        if size is None:
            if (sizes_j < -1).any():
                return None
            at = at + 4 + np.maximum(sizes_j, 0)
        else:
            if (sizes_j != size).any():
                return None
            at = at + 4 + size
    return out_starts, out_lengths
