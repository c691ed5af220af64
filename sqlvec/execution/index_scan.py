"""Btree index scans: reading a filtered scan through a sorted key per sealed segment.

The planner records the index paths a scan's filter allows (`plan/index_selection.py`); each
run of the scan evaluates their values (constants, parameters, an outer row's columns), asks
every sealed segment's sorted key (`storage/btree.py`, built on first use and cached on the
segment) how many rows each path selects — exact counts, two binary searches per segment —
and reads through the path selecting fewest rows when they are at most `MAX_FRACTION` of the
sealed rows; otherwise it scans. The growing segment is always scanned (it is small and has no
sorted key). Rows found through an index still pass the scan's whole filter, and deleted rows
are dropped, so the result is the scan's, rows in the same order. `SET enable_indexscan = off`
forces the scan. The same choice gives a vector search its candidate rows (`search_filter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sqlvec.errors import SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions import Frame
from sqlvec.execution.kernels import empty_width
from sqlvec.execution.values import Value
from sqlvec.plan.index_selection import IndexPath
from sqlvec.storage.btree import SortedKey, comparable, count, indexable
from sqlvec.storage.schema import ROWID, TableDef
from sqlvec.storage.segment import SegmentView
from sqlvec.storage.table import TableSnapshot, logical_table, mask_of
from sqlvec.types import SqlType

# Read through an index when it selects at most this share of the sealed rows. Measured
# (`python -m benchmarks btree --only crossover`, docs/benchmarks.md): taking rows by position
# beats the vectorized scan up to about half the rows when they are scalars only, and up to
# 5-20% when they carry a vector(128); 10% keeps wide rows on the right side of the line.
MAX_FRACTION = 0.10

_UNSUPPORTED = object()  # a bound the key's order cannot compare exactly: scan instead
_NULL = object()  # a NULL bound: the condition holds for no row

# Value type families a key of each type can be compared with after an exact cast.
_INTS = frozenset({"int2", "int4", "int8"})
_COMPARABLE = {
    **{t: _INTS | {"numeric", "float4", "float8"} for t in _INTS},
    "numeric": _INTS | {"numeric"},
    "float4": _INTS | {"float4", "float8"},
    "float8": _INTS | {"float4", "float8"},
    "text": frozenset({"text", "varchar"}),
    "varchar": frozenset({"text", "varchar"}),
    "timestamp": frozenset({"timestamp", "date"}),
    "timestamptz": frozenset({"timestamptz"}),
    "date": frozenset({"date"}),
    "time": frozenset({"time"}),
    "bool": frozenset({"bool"}),
}


@dataclass
class CompiledPath:
    """An index path with its values compiled: per condition (op, value expressions), and
    for an expression index the key expression, evaluated over each segment once."""

    path: IndexPath
    conds: list[tuple[str, list[Value]]]
    key: Value | None  # an expression key; None for a column


@dataclass
class Choice:
    """The path a run reads through: per sealed segment view, the row positions it selects
    (before deletes; ascending)."""

    path: IndexPath
    positions: list[tuple[SegmentView, np.ndarray]]
    selected: int  # rows the index selects in the sealed segments
    sealed_rows: int


def compile_paths(compiler, paths: tuple[IndexPath, ...]) -> list[CompiledPath]:
    """The scan's index paths compiled against its fields (a path whose expression does not
    compile is dropped: it is never needed for the answer)."""
    out = []
    for path in paths:
        try:
            key = None if path.column is not None else compiler.compile(path.key)
            conds = [(c.op, [compiler.compile(v) for v in c.values]) for c in path.conds]
        except SqlVecError:
            continue
        out.append(CompiledPath(path, conds, key))
    return out


def disabled(ctx) -> bool:
    """`SET enable_indexscan = off`: scans only."""
    return str(ctx.settings.get("enable_indexscan", "on")).lower() in ("off", "false", "0")


def choose(op, ctx, outer, snap: TableSnapshot) -> Choice | None:
    """The index path this run of scan `op` reads through, or None to scan."""
    if not op.paths or disabled(ctx):
        return None
    sealed = [v for v in snap.sealed if v.data.n_rows]
    sealed_rows = sum(v.data.n_rows for v in sealed)
    if not sealed_rows:
        return None
    frame = Frame(empty_width(1), ctx, outer)
    best: Choice | None = None
    for compiled in op.paths:
        key_type = _key_type(compiled, op, snap.table_def)
        if key_type is None:
            continue
        bounds = _bounds(compiled, key_type, frame)
        if bounds is None:
            continue
        picked, selected = [], 0
        for view in sealed:
            key = _sorted_key(compiled, op, snap.table_def, view, ctx)
            if key is None:
                break
            ranges, nulls = _ranges(bounds, key)
            selected += count(ranges) + (key.nulls.size if nulls else 0)
            picked.append((view, key, ranges, nulls))
        else:
            if best is None or selected < best.selected:
                best = Choice(compiled.path, picked, selected, sealed_rows)  # type: ignore[arg-type]
    if best is None or best.selected > MAX_FRACTION * sealed_rows:
        return None
    best.positions = [(view, key.positions(ranges, nulls))
                      for view, key, ranges, nulls in best.positions]  # type: ignore[misc]
    return best


def read(choice: Choice, snap: TableSnapshot) -> list[pa.Table]:
    """The rows a choice selects (live, all columns and the row id), then the growing
    segment's live rows: a superset of the filter's rows, in the scan's order."""
    parts = []
    for view, positions in choice.positions:
        if view.deletes.count and positions.size:
            positions = positions[~view.deletes.is_deleted(positions)]
        if positions.size:
            table = logical_table(view, snap.table_def, None, with_rowid=True)
            parts.append(table.take(pa.array(positions)))
    growing = snap.growing
    if growing.data.n_rows:
        table = logical_table(growing, snap.table_def, None, with_rowid=True)
        live = growing.live_mask()
        parts.append(table if live is None else table.filter(pa.array(live)))
    return parts


def search_filter(choice: Choice, base):
    """A row filter for a vector search: in the segments the choice covers, `base` (the
    scan's filter) evaluated on the rows the index selects only; elsewhere `base` itself. A
    segment's rows are recognized by their first row id and count (row ids are unique)."""
    by_segment = {(int(view.data.rowids[0]), view.data.n_rows): positions
                  for view, positions in choice.positions}

    def fn(table: pa.Table):
        n = table.num_rows
        positions = by_segment.get((table.column(ROWID)[0].as_py(), n)) \
            if n and ROWID in table.column_names else None
        if positions is None:
            return base(table)
        mask = np.zeros(n, bool)
        if positions.size:
            mask[positions] = mask_of(base(table.take(pa.array(positions))), positions.size)
        return mask
    return fn


# Keys -----------------------------------------------------------------------------------------


def _key_type(compiled: CompiledPath, op, table_def: TableDef) -> SqlType | None:
    if compiled.key is not None:
        t = compiled.key.type
    else:
        t = op.types[compiled.path.column]
    if t is None or t.name not in _COMPARABLE or not indexable(t.to_arrow()):
        return None
    return t


def _sorted_key(compiled: CompiledPath, op, table_def: TableDef, view: SegmentView, ctx
                ) -> SortedKey | None:
    """The segment's sorted key of a path, built on first use and cached on the segment."""
    data = view.data
    if compiled.key is None:
        col = table_def.columns[compiled.path.column]
        arrow = col.type.to_arrow()
        cache = ("btree", col.physical, str(arrow), repr(col.missing_value))
        return data.cached(cache, lambda: SortedKey(data.column(col.physical, arrow,
                                                                col.missing_value)))
    # An expression: evaluated over the whole segment once. The cache key names the
    # physical columns it reads, so a renamed column's new name maps to the same data.
    physical = tuple(c.physical for c in table_def.columns)
    cache = ("btree", compiled.path.expression, physical, str(compiled.key.type))

    def build():
        table = logical_table(view, table_def, None, with_rowid=True)
        values = compiled.key(Frame(table, ctx, None))
        if isinstance(values, pa.Scalar) or not isinstance(values, (pa.Array, pa.ChunkedArray)):
            return None
        return SortedKey(values)
    try:
        return data.cached(cache, build)  # type: ignore[return-value]
    except SqlVecError:
        return None  # the expression fails on some row: the scan reports it if it matters


# Bounds ---------------------------------------------------------------------------------------


@dataclass
class _Bounds:
    lower: list[tuple[object, bool]]
    upper: list[tuple[object, bool]]
    equal: list[list[object]]
    null: bool
    empty: bool


def _bounds(compiled: CompiledPath, key_type: SqlType, frame: Frame) -> _Bounds | None:
    """The conditions' values in the key's domain; None when one cannot be compared there
    exactly (then the path is not used)."""
    b = _Bounds([], [], [], False, False)
    for op, values in compiled.conds:
        if op == "null":
            b.null = True
            continue
        keys = [_key_value(v(frame), v.type, key_type) for v in values]
        if any(k is _UNSUPPORTED for k in keys):
            return None
        if op == "in":
            b.equal.append([k for k in keys if k is not _NULL])
            continue
        if any(k is _NULL for k in keys):
            b.empty = True
            continue
        if op == "=":
            b.equal.append(keys)
        elif op in (">", ">="):
            b.lower.append((keys[0], op == ">="))
        elif op in ("<", "<="):
            b.upper.append((keys[0], op == "<="))
        else:  # between
            b.lower.append((keys[0], True))
            b.upper.append((keys[1], True))
    return b


def _ranges(b: _Bounds, key: SortedKey) -> tuple[list[tuple[int, int]], bool]:
    """(ranges of the sorted key, whether the NULL keys' rows are selected too)."""
    if b.empty or (b.null and (b.lower or b.upper or b.equal)):
        return [], False
    if b.null:
        return [], True
    lo, hi = key.everything
    for value, inclusive in b.lower:
        lo = max(lo, key.at_least(value, inclusive))
    for value, inclusive in b.upper:
        hi = min(hi, key.at_most(value, inclusive))
    if lo >= hi:
        return [], False
    if b.equal:
        # The smallest list of wanted keys: the others are checked by the filter.
        return key.equal(min(b.equal, key=len), (lo, hi)), False
    return [(lo, hi)], False


def _key_value(value, vtype: SqlType, key_type: SqlType) -> object:
    """A condition's value as a key of `key_type` (storage/btree.py `comparable`), _NULL, or
    _UNSUPPORTED when it cannot be converted exactly."""
    if not isinstance(value, pa.Scalar):
        if len(value) != 1:
            return _UNSUPPORTED
        value = value[0]
    if not value.is_valid:
        return _NULL
    arrow = key_type.to_arrow()
    if vtype.name == "unknown":
        try:
            value = V.cast(value, V.TEXT, key_type, 1)
        except SqlVecError:
            return _UNSUPPORTED
        if not isinstance(value, pa.Scalar):
            value = value[0]
    elif vtype.name not in _COMPARABLE.get(key_type.name, ()):
        return _UNSUPPORTED
    try:
        array = pa.array([value.as_py()], value.type)
        if array.type != arrow:
            array = array.cast(arrow, safe=True)
            if array.cast(value.type, safe=True)[0] != value:
                return _UNSUPPORTED  # the cast changed the value
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        return _UNSUPPORTED
    return comparable(array)[0]
