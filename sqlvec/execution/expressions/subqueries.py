"""Subqueries (`SubPlan`): scalar, EXISTS, IN and ARRAY forms. Uncorrelated ones run once per
statement; correlated ones once per distinct value of the outer columns they read, or, in their
keyed form, once in all and hash-joined to the outer rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.core import HANDLERS, ONE_ROW, Compiler, Frame, compares_as_char
from sqlvec.execution.joins import key_pairs
from sqlvec.execution.kernels import group_ids
from sqlvec.execution.values import BOOL, NUMERIC, TEXT, Datum, Value, as_array, is_scalar
from sqlvec.float_order import pg_compare
from sqlvec.plan.nodes import SubPlan
from sqlvec.types import SqlType


def _subplan(c: Compiler, e: SubPlan) -> Value:
    if c.env.build_subplan is None:
        raise FeatureNotSupported("subqueries are not supported here")
    c.env.subplans += 1
    if e.args["kind"] == "in" and isinstance(e.this, exp.Tuple):
        return _row_in_subplan(c, e)
    if e.args.get("keyed") is not None:
        keyed = _keyed_subplan(c, e)
        if keyed is not None:
            return keyed
    kind = e.args["kind"]
    operator, row_keys, correlated = _build_subplan(c, e.args["plan"])
    column = _row_column(operator, e)
    out_type = operator.fields[column].type if operator.fields else TEXT
    probe = c.compile(e.this) if kind == "in" else None
    if probe is not None and probe.type.name == "unknown":
        probe = c.coerce(probe, out_type)
    inner_of = lambda column_values: column_values  # noqa: E731
    if probe is not None and compares_as_char(probe.type, out_type):
        probe, inner_of = c.char_as_text(probe), _char_as_text(out_type)

    def per_group(f: Frame, reduce):
        """The subquery's reduced result: one (uncorrelated), or one per distinct value of the
        outer columns it reads, with each row's group."""
        results, gids = _results(operator, row_keys, correlated, f, e.args.get("row"))
        return (reduce(results[0]), None) if gids is None else ([reduce(r) for r in results], gids)

    def spread(results: list, gids: np.ndarray, arrow: pa.DataType) -> pa.Array:
        return pa.array([s.as_py() for s in results], arrow).take(pa.array(gids))

    if kind == "scalar":
        t = out_type or TEXT

        def reduce_scalar(table: pa.Table) -> pa.Scalar:
            if table.num_rows > 1:
                raise SqlVecError("more than one row returned by a subquery used as an expression",
                                  sqlstate="21000")
            if table.num_rows == 0:
                return pa.scalar(None, t.to_arrow())
            return table.column(column)[0]

        def fn(f):
            res, gids = per_group(f, reduce_scalar)
            return res if gids is None else spread(res, gids, t.to_arrow())
        return Value(fn, t)

    if kind == "exists":
        def fn(f):
            res, gids = per_group(f, lambda table: pa.scalar(table.num_rows > 0))
            return res if gids is None else spread(res, gids, pa.bool_())
        return Value(fn, BOOL)

    if kind == "array":
        t = (out_type or TEXT).array_of() if not (out_type or TEXT).is_array else out_type

        def fn(f):
            res, gids = per_group(
                f, lambda table: pa.scalar(table.column(0).to_pylist(), t.to_arrow()))
            return res if gids is None else spread(res, gids, t.to_arrow())
        return Value(fn, t)

    # IN (subquery): NULL semantics of SQL (unknown when no match and a NULL is present).
    negate = bool(e.args.get("negate"))

    def fn_in(f):
        x = probe(f)  # type: ignore[misc]
        res, gids = per_group(f, lambda table: inner_of(table.column(0)))
        if gids is None:
            hit = _in_values(as_array(x, f.n), res)
            return pc.invert(hit) if negate else hit
        xs = as_array(x, f.n)
        xs = xs.combine_chunks() if isinstance(xs, pa.ChunkedArray) else xs
        order = np.argsort(gids, kind="stable")
        bounds = np.searchsorted(gids[order], np.arange(len(res) + 1))
        pieces = [_in_values(xs.take(pa.array(order[lo:hi])), values)
                  for values, lo, hi in zip(res, bounds[:-1], bounds[1:])]
        hit = pa.concat_arrays(pieces) if pieces else pa.array([], pa.bool_())
        inverse = np.empty(f.n, np.int64)
        inverse[order] = np.arange(f.n)
        hit = hit.take(pa.array(inverse))
        return pc.invert(hit) if negate else hit

    return Value(fn_in, BOOL)


def _char_as_text(t: SqlType):
    """How `x IN (SELECT ...)` brings the sub-SELECT's values of string type `t` to text
    when char(n) is on one side (Compiler.char_as_text's rule for the outer value)."""
    trim = t.name in ("bpchar", "varchar")

    def convert(values: pa.Array) -> pa.Array:
        values = values.cast(pa.string())
        return pc.utf8_rtrim(values, characters=" ") if trim else values
    return convert


def _row_column(operator, e: SubPlan) -> int:
    """Where the subquery's value is among its operator's columns: the first, or for a
    column of a row sub-SELECT (`row`) its `column`-th visible one."""
    if e.args.get("row") is None:
        return 0
    return [i for i, f in enumerate(operator.fields) if not f.hidden][int(e.args["column"])]


def _results(operator, row_keys: list[int], correlated: bool, f: Frame,
             shared: str | None) -> tuple[list[pa.Table], np.ndarray | None]:
    """The subquery's rows: one result when uncorrelated (run once per statement), else one
    per distinct value of the outer columns it reads with each row's group. The columns of one
    row sub-SELECT (`shared`, its name) share the run: they are values of the same row."""
    cache = f.ctx.subquery_cache
    if not correlated:
        key = id(operator) if shared is None else ("row", shared)
        if key not in cache:
            cache[key] = operator.execute(f.ctx, outer=Frame(ONE_ROW.slice(0, 0), f.ctx, f))
        return [cache[key]], None

    def per_outer_value() -> tuple[list[pa.Table], np.ndarray]:
        if f.n == 0:
            return [], np.zeros(0, np.int64)
        if row_keys:
            gids, first = group_ids([_groupable(f.table.column(i)) for i in row_keys], f.n)
        else:  # reads only queries further out: the same for every row here
            gids, first = np.zeros(f.n, np.int64), np.zeros(1, np.int64)
        return [operator.execute(f.ctx, outer=Frame(f.table.slice(int(r), 1), f.ctx, f.outer))
                for r in first], gids
    return per_outer_value() if shared is None else _per_frame(f, ("row", shared),
                                                               per_outer_value)


def _per_frame(f: Frame, key: tuple, compute):
    """`compute()`, once for the frame `f` however many columns of a row sub-SELECT ask (the
    statement's cache under `key` keeps the last frame's, holding the frame so that its id is
    not reused meanwhile)."""
    cache = f.ctx.subquery_cache
    seen = cache.get(key)
    if seen is not None and seen[0] is f.table and seen[1] is f.outer:
        return seen[2]
    result = compute()
    cache[key] = (f.table, f.outer, result)
    return result


def _row_in_subplan(c: Compiler, e: SubPlan) -> Value:
    """`(a, b) IN (SELECT x, y ...)` (and NOT IN): true when some row equals the probe in
    every column, else NULL when some row could equal it but for NULLs, else false — the OR
    over the rows of `a = x AND b = y`, as PostgreSQL evaluates it."""
    operator, row_keys, correlated = _build_subplan(c, e.args["plan"])
    visible = [i for i, f in enumerate(operator.fields) if not f.hidden]
    probes = []
    for item, j in zip(e.this.expressions, visible):
        probe = c.compile(item)
        inner_type = operator.types[j] or TEXT
        if probe.type.name == "unknown":
            probe = c.coerce(probe, inner_type)
        common = V.common_type([probe.type, inner_type], "IN")
        probes.append((probe, inner_type, common))
    negate = bool(e.args.get("negate"))

    def columns_of(table: pa.Table) -> list[pa.Array]:
        out = []
        for (_, inner_type, common), j in zip(probes, visible):
            col = table.column(j)
            out.append(_hash_key(V.cast(col, inner_type, common, table.num_rows),
                                 table.num_rows))
        return out

    def fn(f: Frame) -> pa.Array:
        xs = [_hash_key(V.cast(p(f), p.type, common, f.n), f.n) for p, _, common in probes]
        if not correlated:
            key = id(operator)
            cache = f.ctx.subquery_cache
            if key not in cache:
                cache[key] = operator.execute(f.ctx, outer=f)
            out = _rows_in(f.ctx, xs, columns_of(cache[key]))
        elif f.n == 0:
            out = pa.array([], pa.bool_())
        else:
            if row_keys:
                gids, first = group_ids([_groupable(f.table.column(i)) for i in row_keys], f.n)
            else:
                gids, first = np.zeros(f.n, np.int64), np.zeros(1, np.int64)
            out_np = np.zeros(f.n, bool)
            null_np = np.zeros(f.n, bool)
            for g, r in enumerate(first):
                rows = np.flatnonzero(gids == g)
                table = operator.execute(f.ctx, outer=Frame(f.table.slice(int(r), 1), f.ctx,
                                                            f.outer))
                part = _rows_in(f.ctx, [x.take(pa.array(rows)) for x in xs], columns_of(table))
                out_np[rows] = pc.fill_null(part, False).to_numpy(zero_copy_only=False)
                null_np[rows] = pc.is_null(part).to_numpy(zero_copy_only=False)
            out = pa.array(out_np, mask=null_np)
        return pc.invert(out) if negate else out

    return Value(fn, BOOL)


def _rows_in(ctx, probe: list[pa.Array], rows: list[pa.Array]) -> pa.Array:
    """Per probe row (the i-th values of `probe`'s columns): true when a row of `rows`
    equals it in every column; NULL when none does but one agrees wherever neither value is
    NULL; false otherwise. Vectorized by NULL pattern: rows and probes are grouped by which
    of their columns are NULL, and each pair of patterns is one hash join on the columns
    NULL in neither."""
    n = len(probe[0])
    hit = np.zeros(n, bool)
    maybe = np.zeros(n, bool)
    if n == 0 or len(rows[0]) == 0:
        return pa.array(hit)
    probe_nulls = np.stack([pc.is_null(x).to_numpy(zero_copy_only=False) for x in probe], 1)
    row_nulls = np.stack([pc.is_null(x).to_numpy(zero_copy_only=False) for x in rows], 1)
    probe_patterns = {tuple(p) for p in np.unique(probe_nulls, axis=0)}
    row_patterns = {tuple(p) for p in np.unique(row_nulls, axis=0)}
    for pp in probe_patterns:
        p_rows = np.flatnonzero((probe_nulls == np.array(pp)).all(1))
        for rp in row_patterns:
            r_rows = np.flatnonzero((row_nulls == np.array(rp)).all(1))
            cols = [j for j in range(len(probe)) if not pp[j] and not rp[j]]
            if not cols:  # nothing to compare: every pair could be equal
                maybe[p_rows] = True
                continue
            left = [probe[j].take(pa.array(p_rows)) for j in cols]
            right = [rows[j].take(pa.array(r_rows)) for j in cols]
            li, _ = key_pairs(ctx, "SubPlan", left, right)
            found = np.unique(p_rows[li])
            if not any(pp) and not any(rp):
                hit[found] = True
            else:
                maybe[found] = True
    return pa.array(hit, mask=~hit & maybe)


def _build_subplan(c: Compiler, plan) -> tuple[object, list[int], bool]:
    """(operator, the columns of `c`'s rows it reads, whether it reads any outer row)."""
    start = len(c.env.outer_refs)
    saved = c.env.correlated
    operator = c.env.build_subplan(plan, c)
    refs = c.env.outer_refs[start:]
    outside = set()
    scope: Compiler | None = c
    while scope is not None:
        outside.add(id(scope))
        scope = scope.outer
    row_keys = sorted({index for target, index in refs if target is c})
    correlated = any(id(target) in outside for target, _ in refs)
    c.env.correlated = saved or correlated
    return operator, row_keys, correlated


def _in_values(x, values) -> pa.Array:
    """`x IN (values)` per element of x, with SQL's NULLs: true on a match; else NULL when x
    is NULL or a NULL is among the values (and they are not empty); else false."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != x.type:
        try:
            values = values.cast(x.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if len(values) == 0:
        return pa.array(np.zeros(len(x), bool))
    present = values.drop_null() if values.null_count else values
    hit = pc.is_in(x, value_set=present)
    if values.null_count:
        hit = pc.if_else(hit, True, pa.scalar(None, pa.bool_()))
    return pc.if_else(pc.is_null(x), pa.scalar(None, pa.bool_()), hit)


def _groupable(col):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or \
            pa.types.is_dictionary(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
    return col


def _keyed_subplan(c: Compiler, e: SubPlan) -> Value | None:
    """A subquery by its keyed form (SubPlan's docstring): run once per statement, then
    matched to the outer rows by a hash join on the keys. None when the keyed plan does not
    apply after all (it still reads the outer query, or the keys cannot be hashed)."""
    start = len(c.env.outer_refs)
    saved = c.env.correlated, dict(c.env.param_types)

    def give_up() -> None:
        del c.env.outer_refs[start:]
        c.env.correlated = saved[0]
        c.env.param_types.clear()
        c.env.param_types.update(saved[1])

    try:
        operator, _, correlated = _build_subplan(c, e.args["keyed"])
        empty = None
        if e.args.get("empty") is not None:
            empty, _, empty_correlated = _build_subplan(c, e.args["empty"])
            correlated = correlated or empty_correlated
        if correlated:
            give_up()
            return None
        visible = [i for i, f in enumerate(operator.fields) if not f.hidden]
        keys = e.args.get("keys") or []
        width = len(visible) - len(keys)  # the value columns: one, or a row sub-SELECT's
        if width != 1 and (e.args.get("row") is None or width < 1):
            give_up()
            return None
        pairs = []
        for key, j in zip(keys, visible[width:]):
            inner = Value(lambda f, j=j: f.table.column(j), operator.types[j])
            outer_v, inner_v, t = c.unify(c.compile(key), inner)
            if not _hashable(t):
                give_up()
                return None
            pairs.append((outer_v, inner_v))
        guard = c.condition(e.args["guard"], "WHERE") if e.args.get("guard") is not None else None
        kind = e.args["kind"]
        column = int(e.args.get("column") or 0)
        value_i = visible[column]
        out_type = operator.types[value_i] or TEXT
        if kind == "array" and not pa.types.is_list(
                (out_type.array_of() if not out_type.is_array else out_type).to_arrow()):
            give_up()
            return None
        probe = None
        inner_of = lambda column_values: column_values  # noqa: E731
        if kind == "in":
            probe = c.compile(e.this)
            if probe.type.name == "unknown":
                probe = c.coerce(probe, out_type)
            if compares_as_char(probe.type, out_type):
                probe, inner_of = c.char_as_text(probe), _char_as_text(out_type)
    except SqlVecError:
        give_up()
        return None

    def matches(f: Frame) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """The keyed result, and the (outer row, keyed row) pairs with equal keys, in outer
        row order and then the keyed result's order; the columns of a row sub-SELECT share
        both."""
        shared = e.args.get("row")
        if shared is None:
            return matched(f)
        return _per_frame(f, ("matched", shared), lambda: matched(f))

    def matched(f: Frame) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        cache = f.ctx.subquery_cache
        key = id(operator) if e.args.get("row") is None else ("keyed", e.args["row"])
        if key not in cache:
            cache[key] = operator.execute(f.ctx, outer=None)
        table = cache[key]
        inner_frame = Frame(table, f.ctx, None)
        rows = np.arange(f.n)
        if guard is not None:
            rows = rows[_true_mask(guard(f), f.n)]
        left = [_hash_key(o(f), f.n).take(pa.array(rows, pa.int64())) for o, _ in pairs]
        right = [_hash_key(r(inner_frame), table.num_rows) for _, r in pairs]
        li, ri = key_pairs(f.ctx, "SubPlan", left, right)
        return table, rows[li], ri

    if kind == "exists":
        def fn_exists(f):
            _, li, _ = matches(f)
            hit = np.zeros(f.n, bool)
            hit[li] = True
            return pa.array(hit)
        return Value(fn_exists, BOOL)

    if kind == "scalar":
        arrow = out_type.to_arrow()
        empty_cache: list = []

        def fn_scalar(f):
            table, li, ri = matches(f)
            if li.size > 1 and (np.diff(li) == 0).any():
                raise SqlVecError("more than one row returned by a subquery used as an expression",
                                  sqlstate="21000")
            index = np.full(f.n, -1, np.int64)
            index[li] = ri
            values = _plain_column(table.column(value_i), arrow)
            out = values.take(pa.array(index, mask=index < 0))
            if empty is not None:
                if not empty_cache:
                    none = empty.execute(f.ctx, outer=None)
                    first = [i for i, fd in enumerate(empty.fields) if not fd.hidden][column]
                    empty_cache.append(none.column(first)[0].cast(arrow) if none.num_rows
                                       else pa.scalar(None, arrow))
                if empty_cache[0].is_valid and (index < 0).any():
                    out = pc.if_else(pa.array(index >= 0), out, empty_cache[0])
            return out
        return Value(fn_scalar, out_type)

    if kind == "array":
        t = out_type.array_of() if not out_type.is_array else out_type

        def fn_array(f):
            table, li, ri = matches(f)
            element = t.to_arrow().value_type
            values = _plain_column(table.column(value_i), element).take(pa.array(ri, pa.int64()))
            offsets = np.zeros(f.n + 1, np.int32)
            np.cumsum(np.bincount(li, minlength=f.n), out=offsets[1:])
            lists = pa.ListArray.from_arrays(pa.array(offsets), values)
            return lists if lists.type == t.to_arrow() else lists.cast(t.to_arrow())
        return Value(fn_array, t)

    negate = bool(e.args.get("negate"))

    def fn_in(f):
        table, li, ri = matches(f)
        x = as_array(probe(f), f.n)  # type: ignore[misc]
        x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
        values = inner_of(table.column(value_i).combine_chunks())
        if values.type != x.type:
            try:
                values = values.cast(x.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        equal = pg_compare("equal", x.take(pa.array(li, pa.int64())),
                           values.take(pa.array(ri, pa.int64())))
        hit = np.zeros(f.n, bool)
        unknown = np.zeros(f.n, bool)
        hit[li[_true_mask(equal, li.size)]] = True
        unknown[li[pc.is_null(equal).to_numpy(zero_copy_only=False)]] = True
        out = pc.if_else(pa.array(hit), True,
                         pc.if_else(pa.array(unknown), pa.scalar(None, pa.bool_()), False))
        return pc.invert(out) if negate else out

    return Value(fn_in, BOOL)


def _hashable(t: SqlType) -> bool:
    """Whether values of `t` can be join keys (pyarrow's hash join, SQL's `=`)."""
    if t.is_array or t.is_vector or t.name in ("json", "jsonb", "unknown"):
        return False
    arrow = t.to_arrow()
    return (pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow)
            or pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
            or pa.types.is_binary(arrow) or pa.types.is_decimal(arrow)
            or pa.types.is_date(arrow) or pa.types.is_timestamp(arrow) or pa.types.is_time(arrow))


def _true_mask(value: Datum, n: int) -> np.ndarray:
    if is_scalar(value):
        return np.full(n, bool(value.as_py()))
    return np.asarray(pc.fill_null(value, False).to_numpy(zero_copy_only=False), dtype=bool)


def _hash_key(value: Datum, n: int) -> pa.Array:
    """A key column both sides of a hash join agree on (one string and decimal type)."""
    col = as_array(value, n)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_decimal(col.type):
        col = V.to_storage(col, NUMERIC)
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return col


def _plain_column(col, arrow: pa.DataType) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col if col.type == arrow else col.cast(arrow)


HANDLERS.update({
    SubPlan: _subplan,
})
