"""Kernels shared across the executor: Arrow and NumPy building blocks that know nothing of
expressions, plans or operators.

- tables: `names`, `table_of`, `empty_width` (operators address columns by position);
- ordering and grouping: `sort_indices` (ORDER BY with PostgreSQL's NULL and NaN order,
  bucketed past SORT_RUN_ROWS so interrupts are checked), `first_of_groups` (DISTINCT),
  `group_ids` (GROUP BY, INTERSECT/EXCEPT, correlated subqueries), `vector_key`;
- integer and numeric arithmetic with PostgreSQL's errors and scales: `int_checked`,
  `check_divisor`, `float_power`, `decimal_op`, `widen_decimal`;
- dates: `add_months`.

This module imports only the executor's leaves (`values`, `context`), so every other module of
the executor may use it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import DivisionByZero, FeatureNotSupported, NumericValueOutOfRange, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.context import ExecContext, rows_of
from sqlvec.execution.values import Datum, as_array, is_scalar
from sqlvec.float_order import pg_compare
from sqlvec.types import SqlType

# Tables ------------------------------------------------------------------------------------------


_NAMES = [str(i) for i in range(64)]


def names(count: int) -> list[str]:
    """Positional column names "0", "1", … (operators address columns by position)."""
    return _NAMES[:count] if count <= len(_NAMES) else [str(i) for i in range(count)]


def table_of(columns: Sequence, count_rows: int | None = None) -> pa.Table:
    """An operator's output table: `columns` named by position (`count_rows` rows when there
    are no columns)."""
    if not columns:
        t = pa.table({"_": pa.nulls(count_rows or 0)})
        return t.select([]) if count_rows is None else empty_width(count_rows)
    return pa.Table.from_arrays(list(columns), names=names(len(columns)))


def empty_width(rows: int) -> pa.Table:
    """A table with `rows` rows and no columns (pyarrow needs a trick for that)."""
    if rows == 1:
        return _NO_COLUMNS_ONE_ROW
    return pa.table({"x": pa.nulls(rows)}).drop_columns(["x"]) if rows else pa.table({})


_NO_COLUMNS_ONE_ROW = pa.table({"x": pa.nulls(1)}).drop_columns(["x"])


# Ordering ----------------------------------------------------------------------------------------


# Inputs longer than this are sorted in buckets of about this many rows (interruptible).
SORT_RUN_ROWS = 1 << 20
# Working memory of a sort per row, besides its key columns: the order (int64), the bucket
# number and the positions of each bucket.
SORT_BYTES_PER_ROW = 32


def _vector_ranks(col: pa.Array) -> pa.Array:
    """Vectors of one dimension count as int64 ranks in pgvector's btree order (element by
    element), NULL where the vector is: one sort key instead of one per element."""
    d = col.type.list_size
    child = col.values.slice(col.offset * d, len(col) * d).fill_null(0)
    matrix = child.to_numpy(zero_copy_only=False).reshape(len(col), d)
    order = np.lexsort(matrix.T[::-1]) if d else np.arange(len(col))
    ranked = matrix[order]
    new = np.ones(len(col), bool)
    new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    ranks = np.empty(len(col), np.int64)
    ranks[order] = np.cumsum(new)
    return pa.array(ranks, mask=col.is_null().to_numpy(zero_copy_only=False))


def _sparse_cmp_one(a: tuple, b: tuple) -> int:
    """pgvector's sparsevec_cmp of two (dim, indices, values) values."""
    (adim, ai, ax), (bdim, bi, bx) = a, b
    nnz = min(len(ai), len(bi))
    for i in range(nnz):
        if ai[i] < bi[i]:
            return -1 if ax[i] < 0 else 1
        if ai[i] > bi[i]:
            return 1 if bx[i] < 0 else -1
        if ax[i] != bx[i]:
            return -1 if ax[i] < bx[i] else 1
    if len(ai) < len(bi) and bi[nnz] <= adim:
        return 1 if bx[nnz] < 0 else -1
    if len(ai) > len(bi) and ai[nnz] <= bdim:
        return -1 if ax[nnz] < 0 else 1
    return (adim > bdim) - (adim < bdim)


def _sparse_ranks(col: pa.Array) -> pa.Array:
    """sparsevec values as int64 ranks in pgvector's btree order, NULL where the value is.
    The comparison runs per pair of values in Python (ORDER BY a sparse vector is rare; the
    distance kernels, not this, are the hot path)."""
    values = col.to_pylist()
    keys = {i: (v["dim"], v["indices"], v["values"]) for i, v in enumerate(values) if v}
    order = sorted(keys, key=lambda i: functools.cmp_to_key(_sparse_cmp_one)(keys[i]))
    ranks = np.zeros(len(values), np.int64)
    rank = 0
    for pos, i in enumerate(order):
        if pos == 0 or _sparse_cmp_one(keys[order[pos - 1]], keys[i]) != 0:
            rank += 1
        ranks[i] = rank
    return pa.array(ranks, mask=col.is_null().to_numpy(zero_copy_only=False))


def sort_indices(keys: list[tuple], n_rows: int, ctx: ExecContext | None = None) -> pa.Array:
    """Row order for ORDER BY keys (value datum, type, desc, nulls_first), stable.

    With `ctx`, the sort reserves its working memory, and an input of more than
    SORT_RUN_ROWS rows is sorted in buckets (`_bucket_sort`) so that cancel and
    statement_timeout are checked between buckets."""
    columns, sort_keys = {}, []
    for i, (value, t, desc, nulls_first) in enumerate(keys):
        col = as_array(value, n_rows)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if t.is_vector and pa.types.is_fixed_size_list(col.type):
            col = _vector_ranks(col)
        elif t.is_sparse:
            col = _sparse_ranks(col)
        elif pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            raise FeatureNotSupported(f"ordering by values of type {t.format()} is not supported")
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        nulls = pc.is_null(col, nan_is_null=False)
        # Nulls position per key via an indicator column sorted before the value.
        columns[f"n{i}"] = nulls
        sort_keys.append((f"n{i}", "descending" if nulls_first else "ascending"))
        if pa.types.is_floating(col.type):
            # PostgreSQL sorts NaN above every number.
            nan = pc.fill_null(pc.is_nan(col), False)
            columns[f"x{i}"] = nan
            sort_keys.append((f"x{i}", "descending" if desc else "ascending"))
        columns[f"v{i}"] = col
        sort_keys.append((f"v{i}", "descending" if desc else "ascending"))
    table = pa.table(columns)
    if ctx is None:
        return pc.sort_indices(table, sort_keys=sort_keys)
    with ctx.memory.temporary(f"Sort ({rows_of(n_rows, SORT_BYTES_PER_ROW)} besides the keys)",
                              n_rows * SORT_BYTES_PER_ROW):
        if n_rows <= SORT_RUN_ROWS:
            return pc.sort_indices(table, sort_keys=sort_keys)
        return _bucket_sort(table, sort_keys, ctx)


def _bucket_sort(table: pa.Table, sort_keys: list[tuple[str, str]], ctx: ExecContext) -> pa.Array:
    """A sample sort: splitter rows drawn from a sample cut the rows into buckets of about
    SORT_RUN_ROWS rows that follow each other in the order; each bucket is sorted on its own.
    A row's bucket is the number of splitters below it (rows with equal keys share it), so
    concatenating the sorted buckets gives the stable order of the whole input."""
    n = table.num_rows
    buckets = -(-n // SORT_RUN_ROWS)
    sample = np.unique(np.random.default_rng(0).integers(0, n, 64 * buckets))
    sample_order = pc.sort_indices(table.take(pa.array(sample)), sort_keys=sort_keys).to_numpy()
    picks = sample[sample_order[(np.arange(1, buckets) * sample.size) // buckets]]
    bucket = np.zeros(n, np.uint16 if buckets < 1 << 16 else np.int64)  # uint16: radix sort
    for start in range(0, n, SORT_RUN_ROWS):
        ctx.check_interrupts()
        part = table.slice(start, SORT_RUN_ROWS)
        for row in picks:
            bucket[start:start + part.num_rows] += _above(part, table, int(row), sort_keys)
    rows_by_bucket = np.argsort(bucket, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))])
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ctx.check_interrupts()
        rows = rows_by_bucket[lo:hi]
        if rows.size:
            order = pc.sort_indices(table.take(pa.array(rows)), sort_keys=sort_keys).to_numpy()
            out.append(rows[order])
    return pa.array(np.concatenate(out))


def _above(part: pa.Table, table: pa.Table, row: int, sort_keys: list[tuple[str, str]]) -> np.ndarray:
    """Which rows of `part` come strictly after `table`'s row `row` in the sort order."""
    above = np.zeros(part.num_rows, bool)
    tied = np.ones(part.num_rows, bool)
    for name, direction in sort_keys:
        col = part.column(name)
        pivot = table.column(name)[row]
        if not pivot.is_valid:  # a NULL value: its indicator column, sorted before, decides
            tied &= pc.is_null(col).to_numpy(zero_copy_only=False)
            continue
        later = pg_compare("greater" if direction == "ascending" else "less", col, pivot)
        same = pg_compare("equal", col, pivot)
        above |= tied & pc.fill_null(later, False).to_numpy(zero_copy_only=False)
        tied &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return above


# Grouping ----------------------------------------------------------------------------------------


# Working memory per input row: of a hash table grouping rows (Arrow's grouper and the row
# numbers it hashes), of `group_ids` (which also lists each group's rows), and of one
# aggregate (the rows it sees, their group ids, a sorted copy of its argument).
GROUP_BYTES_PER_ROW = 24
GROUP_IDS_BYTES = 48
AGGREGATE_BYTES_PER_ROW = 40


def grouping_bytes(keys: list, n_rows: int, per_row: int = GROUP_BYTES_PER_ROW) -> int:
    """Memory to reserve before hashing `n_rows` rows of `keys` into groups."""
    return sum(k.nbytes for k in keys) + n_rows * per_row


def group_ids(keys: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(dense group id per row, first row of each group), groups numbered by first appearance."""
    columns = {f"k{i}": k for i, k in enumerate(keys)}
    columns["_row"] = pa.array(np.arange(n, dtype=np.int64))
    grouped = pa.table(columns).group_by(list(columns)[:-1], use_threads=False).aggregate(
        [("_row", "list"), ("_row", "min")])
    first = grouped.column("_row_min").to_numpy()
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    lists = grouped.column("_row_list").combine_chunks()
    gids = np.empty(n, np.int64)
    gids[pc.list_flatten(lists).to_numpy()] = rank[pc.list_parent_indices(lists).to_numpy()]
    return gids, first[order]


def first_of_groups(keys: list, n_rows: int, ctx: ExecContext | None = None,
                    what: str = "Unique") -> np.ndarray:
    """Positions of the first row of each distinct key combination, in input order (with
    `ctx`, the hash table's memory is reserved first, under the name `what`)."""
    if not keys:
        return np.array([0]) if n_rows else np.empty(0, np.int64)
    if ctx is not None:
        ctx.memory.reserve(f"{what} (grouping {n_rows} rows)", grouping_bytes(keys, n_rows))
    cols = {}
    for i, k in enumerate(keys):
        k = k.combine_chunks() if isinstance(k, pa.ChunkedArray) else k
        if pa.types.is_fixed_size_list(k.type) and pa.types.is_floating(k.type.value_type):
            k = vector_key(k)
        elif pa.types.is_list(k.type) or pa.types.is_fixed_size_list(k.type) or \
                pa.types.is_dictionary(k.type):
            k = pa.array([None if v is None else repr(v) for v in k.to_pylist()], pa.string())
        cols[f"k{i}"] = k
    cols["_pos"] = pa.array(np.arange(n_rows, dtype=np.int64))
    grouped = pa.table(cols).group_by([f"k{i}" for i in range(len(keys))], use_threads=False) \
        .aggregate([("_pos", "min")])
    return np.sort(grouped.column("_pos_min").to_numpy())


def vector_key(col: pa.FixedSizeListArray) -> pa.Array:
    """Vectors as fixed-size binary values that hash equal when the vectors are equal
    (-0.0 made 0.0; vectors hold no NaN), without a Python object per row."""
    dim = col.type.list_size
    values = col.values.slice(col.offset * dim, len(col) * dim).to_numpy(zero_copy_only=False)
    matrix = np.ascontiguousarray(values.reshape(len(col), dim) + values.dtype.type(0))
    validity = pc.is_valid(col).buffers()[1] if col.null_count else None
    return pa.Array.from_buffers(pa.binary(dim * matrix.itemsize), len(col),
                                 [validity, pa.py_buffer(matrix)])


# Integer and numeric arithmetic ------------------------------------------------------------------

# Division keeps at least this many significant digits (PostgreSQL's NUMERIC_MIN_SIG_DIGITS);
# avg and the variances of exact types keep as many decimals.
MIN_DIV_SCALE = 16
AVG_SCALE = MIN_DIV_SCALE


def int_checked(kernel: Callable[[Datum], Datum], x: Datum, t: SqlType) -> Datum:
    """A checked Arrow kernel over integers of `t`: overflow is 22003 `integer out of range`
    (smallint, bigint), as PostgreSQL says for -(-2147483648) or abs(-2147483648)."""
    try:
        return kernel(x)
    except pa.ArrowInvalid as exc:
        if "overflow" in str(exc).lower():
            raise NumericValueOutOfRange(range_message(t)) from None
        raise


def float_power(x: Datum, y: Datum, checked: bool = True) -> Datum:
    """x ^ y over floats with PostgreSQL's errors: 2201F for zero to a negative power and for
    a negative number to a non-integer one, 22003 for a result out of range (`checked`; the
    numeric version checks its own way)."""
    if V.anywhere(pc.and_(pc.equal(x, 0), pc.less(y, 0))):
        raise SqlVecError("zero raised to a negative power is undefined", sqlstate="2201F")
    if V.anywhere(pc.and_(pc.less(x, 0), pc.not_equal(pc.floor(y), y))):
        raise SqlVecError("a negative number raised to a non-integer power yields a complex "
                          "result", sqlstate="2201F")
    out = pc.power(x, y)
    return V.check_float(out, (x, y), (x,), (x, y)) if checked else out


def check_divisor(y: Datum) -> None:
    """22012 `division by zero` when any divisor is zero."""
    zero = pc.equal(y, pa.scalar(0, y.type) if pa.types.is_decimal(y.type) else 0)
    if (zero.as_py() if is_scalar(zero) else pc.any(zero).as_py()):
        raise DivisionByZero("division by zero")


def range_message(t: SqlType) -> str:
    """PostgreSQL's words for an integer of `t` out of range."""
    return {"int2": "smallint out of range", "int4": "integer out of range",
            "int8": "bigint out of range"}.get(t.name, "value out of range")


def check_int_range(out: Datum, t: SqlType) -> Datum:
    """`out` (a wider integer result) as `t`, or 22003 when a value does not fit."""
    target = t.to_arrow()
    if out.type == target:
        return out
    try:
        return pc.cast(out, target)
    except pa.ArrowInvalid:
        raise NumericValueOutOfRange(range_message(t)) from None


def decimal_op(op: str, target: SqlType) -> Callable[[Datum, Datum], Datum]:
    """The kernel of `x op y` over decimals, rounded to `target`'s scale (22003 on overflow)."""

    def run(x: Datum, y: Datum) -> Datum:
        if op in ("divide", "mod"):
            check_divisor(y)
        if op == "power":
            out = float_power(pc.cast(x, pa.float64()), pc.cast(y, pa.float64()), checked=False)
            return V.fit_numeric(V.numeric_from_float(out), target)
        x, y = widen_decimal(x), widen_decimal(y)
        if op == "divide":
            out = _decimal_divide(x, y, target.to_arrow().scale + 1)
        elif op == "mod":
            quotient = pc.round(_decimal_divide(x, y, 1), round_mode="towards_zero")
            out = pc.subtract(x, pc.multiply(widen_decimal(pc.cast(quotient, pa.decimal256(
                x.type.precision, 0), safe=False)), y))
        else:
            out = getattr(pc, op)(x, y)
        return V.fit_numeric(out, target)

    return run


def widen_decimal(x: Datum) -> Datum:
    """A decimal as decimal256 with room for Arrow's result precision rules (≤ 37 digits)."""
    precision = min(x.type.precision, 37)
    try:
        return pc.cast(x, pa.decimal256(precision, x.type.scale))
    except pa.ArrowInvalid:
        raise NumericValueOutOfRange("value overflows numeric format") from None


def _decimal_divide(x: Datum, y: Datum, scale: int) -> Datum:
    """x / y truncated to at least `scale` decimals (Arrow's quotient scale is
    max(4, s1 + p2 - s2 + 1), so the dividend is rescaled to reach `scale`)."""
    p1, s1 = x.type.precision, x.type.scale
    p2, s2 = y.type.precision, y.type.scale
    s1_new = max(s1, scale - 1 - p2 + s2)
    if s1_new > s1:
        x = pc.cast(x, pa.decimal256(min(p1 - s1 + s1_new, 76), s1_new))
    return pc.divide(x, y)


# Dates -------------------------------------------------------------------------------------------


def add_months(value: dt.datetime, months: int) -> dt.datetime:
    """`value` moved by whole months, the day clamped to the month's last (Jan 31 + 1 month is
    Feb 28 or 29), as PostgreSQL adds an interval's months."""
    total = value.month - 1 + months
    year, month = value.year + total // 12, total % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)
