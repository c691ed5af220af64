"""Plan rewrite rules: pure functions `rule(plan) -> plan`, applied in `RULES` order.

`push_filter_into_scan` moves a WHERE filter sitting on a table scan into the scan, where it is
evaluated segment by segment; `use_vector_topk` turns `ORDER BY <distance>(col, q) LIMIT k` over
one table into a `VectorTopK` node that searches each segment (HNSW where indexed);
`use_key_lookup` makes a scan whose filter pins a unique key read its rows by key;
`use_btree_index` (index_selection.py) records the btree index paths a scan's filter allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlglot import exp

from sqlvec.errors import SqlVecError
from sqlvec.plan import nodes as n
from sqlvec.plan.index_selection import use_btree_index
from sqlvec.sql.binder import Field, Scope, find, resolved
from sqlvec.sql.dialect import BitDistance, VectorDistance
from sqlvec.types import SqlType

DISTANCE_FIELD = "__distance"


def push_filter_into_scan(plan: n.PlanNode) -> n.PlanNode:
    """A Filter right above a Scan becomes the scan's own filter, applied while reading (and usable
    for key lookups)."""
    def visit(node: n.PlanNode) -> n.PlanNode:
        node = _map_children(node, visit)
        if isinstance(node, n.Filter) and isinstance(node.child, n.Scan) and node.child.filter is None:
            return replace(node.child, filter=node.predicate)
        return node
    return visit(plan)


def use_vector_topk(plan: n.PlanNode) -> n.PlanNode:
    """ORDER BY a vector distance with LIMIT over one table becomes a VectorTopK node, which the
    executor answers from the vector indexes."""
    def visit(node: n.PlanNode) -> n.PlanNode:
        node = _map_children(node, visit)
        if not (isinstance(node, n.Limit) and isinstance(node.child, n.Sort) and node.limit is not None):
            return node
        sort = node.child
        if not isinstance(sort.child, n.Project):
            return node
        project: n.Project = sort.child
        through = look_through(project.child)
        if through is None:
            return node
        scan, to_scan = through
        try:
            project = replace(project, child=scan,
                              exprs=tuple(to_scan(e) for e in project.exprs))
        except _Opaque:
            return node
        key = sort.keys[0]
        if key.desc or not isinstance(key.expr, exp.Column):
            return node
        names = [f.name for f in project.fields]
        if key.expr.name not in names:
            return node
        pos = names.index(key.expr.name)
        distance = project.exprs[pos]
        match = _vector_operands(distance, scan)
        if match is None:
            return node
        column, query = match
        if isinstance(distance, BitDistance) and len(sort.keys) > 1:
            # Integer Hamming distances tie often: a later sort key must see every tied row,
            # which a top-k cut at k rows would not give it. The exact sort answers.
            return node
        k = node.limit if node.offset is None else exp.Add(this=node.limit.copy(),
                                                          expression=node.offset.copy())
        fields = tuple(scan.fields) + (Field(DISTANCE_FIELD, None, SqlType("float8"), hidden=True),)
        exprs = list(project.exprs)
        exprs[pos] = resolved(exp.column(DISTANCE_FIELD), fields[-1])
        needed = {c.name for e in exprs for c in e.find_all(exp.Column)}
        needed |= {c.name for key in sort.keys[1:] for c in key.expr.find_all(exp.Column)}
        topk = n.VectorTopK(fields, scan=scan, column=column, metric=distance.metric.value,
                            query=query, k=k,
                            columns=tuple(f.name for f in scan.fields if f.name in needed))
        new_project = replace(project, child=topk, exprs=tuple(exprs))
        if len(sort.keys) == 1:
            # The search returns rows nearest first already: no re-sort needed.
            return replace(node, child=new_project)
        return replace(node, child=replace(sort, child=new_project))
    return visit(plan)


class _Opaque(Exception):
    """An expression `look_through` cannot restate over the base table."""


def look_through(node: n.PlanNode) -> tuple[n.Scan, Callable] | None:
    """The table scan `node` amounts to when it only filters, selects and renames the columns
    of one table (a view or a subquery in FROM such as `SELECT a, v FROM t WHERE ...`), with
    a function restating expressions over `node`'s columns as expressions over the scan's
    (raising `_Opaque` for one it cannot restate); None for anything else. This is how the
    vector top-k sees through views: a query through a view is planned as its inlined query."""
    if isinstance(node, n.Scan):
        return (node, lambda e: e) if node.key is None else None
    if isinstance(node, n.Filter) and node.clause == "WHERE":
        inner = look_through(node.child)
        if inner is None:
            return None
        scan, to_scan = inner
        try:
            predicate = to_scan(node.predicate)
        except _Opaque:
            return None
        merged = predicate if scan.filter is None else exp.and_(scan.filter.copy(), predicate)
        return replace(scan, filter=merged), to_scan
    if isinstance(node, n.Rename) and isinstance(node.child, n.Project):
        inner = look_through(node.child.child)
        if inner is None:
            return None
        scan, to_scan = inner
        exprs = node.child.exprs
        visible = [f for f in node.fields if not f.hidden]
        if len(visible) != len(exprs) or len(node.fields) != len(visible) or \
                not all(isinstance(e, exp.Column) for e in exprs):
            return None
        try:
            columns = [to_scan(e) for e in exprs]
        except _Opaque:
            return None
        scope = Scope(list(node.fields))

        def restate(e: exp.Expression) -> exp.Expression:
            if any(isinstance(x, n.SubPlan) for x in e.walk()):
                raise _Opaque()

            def swap(x: exp.Expression) -> exp.Expression:
                if not isinstance(x, exp.Column) or isinstance(x.this, exp.Star):
                    return x
                try:
                    i = find(scope, x)
                except SqlVecError:
                    raise _Opaque() from None
                if i is None:
                    raise _Opaque()  # a reference to an outer query
                return columns[i].copy()
            return e.copy().transform(swap)
        return scan, restate
    return None


def _vector_operands(e: exp.Expression, scan: n.Scan) -> tuple[str, exp.Expression] | None:
    """(column name, query expression) when `e` is a distance between a vector column of the
    scan and an expression that does not depend on the row."""
    if isinstance(e, BitDistance):
        return _bit_operands(e, scan)
    if not isinstance(e, VectorDistance):
        return None
    scope = Scope(list(scan.fields))
    for col_side, query_side in ((e.this, e.expression), (e.expression, e.this)):
        key_type = None
        while isinstance(col_side, exp.Paren):
            col_side = col_side.this
        if isinstance(col_side, exp.Cast):
            # `col::halfvec(n)` (or `::vector(n)`): the key of an expression index on that
            # cast, matched structurally as PostgreSQL matches index expressions; searched
            # through such an index where there is one, else exactly over the cast values.
            key_type = _vector_cast(col_side, scope, scan)
            if key_type is None:
                continue
            col_side = col_side.this
            while isinstance(col_side, exp.Paren):
                col_side = col_side.this
        if isinstance(col_side, exp.Column):
            index = find(scope, col_side)
            if index is None:
                continue
            f = scan.fields[index]
            if f.type is None or not (f.type.is_vector or f.type.is_sparse and key_type is None) \
                    or f.type.dims is None:
                continue
            if any(find(scope, c) is not None
                   for c in query_side.find_all(exp.Column)):
                continue
            return (f.name if key_type is None else f"{f.name}::{key_type}"), query_side
    return None


def _bit_operands(e: BitDistance, scan: n.Scan) -> tuple[str, exp.Expression] | None:
    """(key, query expression) when `e` is a Hamming or Jaccard distance between a bit(n)
    column of the scan (key: the column) or `binary_quantize(col)::bit(n)` of a vector column
    of n dimensions (key `col::bit`, what such an expression index indexes) and an expression
    that does not depend on the row."""
    scope = Scope(list(scan.fields))
    for col_side, query_side in ((e.this, e.expression), (e.expression, e.this)):
        while isinstance(col_side, exp.Paren):
            col_side = col_side.this
        key = None
        if isinstance(col_side, exp.Column):
            index = find(scope, col_side)
            f = scan.fields[index] if index is not None else None
            if f is not None and f.type is not None and f.type.name == "bit" and f.type.typmod > 0:
                key = f.name
        elif isinstance(col_side, exp.Cast) and _type_name(col_side.to) == "bit" and \
                col_side.to.expressions:
            inner = col_side.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Anonymous) and str(inner.name).lower() == "binary_quantize" \
                    and len(inner.expressions) == 1 and isinstance(inner.expressions[0], exp.Column):
                column = inner.expressions[0]
                index = find(scope, column)
                f = scan.fields[index] if index is not None else None
                try:
                    bits = int(col_side.to.expressions[0].name)
                except ValueError:
                    bits = -1
                if f is not None and f.type is not None and \
                        f.type.name in ("vector", "halfvec") and f.type.dims == bits:
                    key = f"{f.name}::bit"
        if key is None:
            continue
        if any(find(scope, c) is not None
               for c in query_side.find_all(exp.Column)):
            continue
        return key, query_side
    return None


def _type_name(to: exp.DataType) -> str:
    return (to.args["kind"].name if to.this == exp.DataType.Type.USERDEFINED and
            to.args.get("kind") is not None else str(to.this.value)).lower()


def _vector_cast(cast: exp.Cast, scope: Scope, scan: n.Scan) -> str | None:
    """"halfvec" or "vector" when `cast` casts a vector or halfvec column of the scan to one of
    them keeping its dimensions (what an expression index `((col::halfvec(n)))` indexes)."""
    inner = cast.this
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if not isinstance(inner, exp.Column):
        return None
    index = find(scope, inner)
    if index is None:
        return None
    source = scan.fields[index].type
    if source is None or source.name not in ("vector", "halfvec") or source.dims is None:
        return None
    to = cast.to
    name = (to.args["kind"].name if to.this == exp.DataType.Type.USERDEFINED and
            to.args.get("kind") is not None else str(to.this.value)).lower()
    if name not in ("vector", "halfvec") or name == source.name:
        return None
    if to.expressions:
        try:
            if int(to.expressions[0].name) != source.dims:
                return None
        except ValueError:
            return None
    return name


def use_key_lookup(plan: n.PlanNode) -> n.PlanNode:
    """A scan whose filter pins every column of a unique key to row-independent values
    (`id = $1`, `a = 1 AND b = 'x'`, `id IN (1, 2, 3)`, `id = outer.x` in a correlated
    subquery or LATERAL item) finds its rows through the key's index
    instead of reading the table: O(rows wanted), as PostgreSQL's Index Scan. The whole filter
    is still evaluated on the rows found."""
    def visit(node: n.PlanNode) -> n.PlanNode:
        node = _map_children(node, visit)
        if not isinstance(node, n.Scan) or node.filter is None or not node.keys:
            return node
        scope = Scope(list(node.fields))
        pinned: dict[int, tuple[exp.Expression, list[exp.Expression]]] = {}
        for cond in n.conjuncts(node.filter):
            match = _pinned_column(cond, scope)
            if match is not None and match[0] not in pinned:
                pinned[match[0]] = (cond, match[1])
        for i, (_name, positions) in enumerate(node.keys):
            if not all(p in pinned for p in positions):
                continue
            if not all(node.fields[p].type is not None and node.fields[p].type.name in KEY_TYPES
                       for p in positions):
                continue  # equality of other types (char(n), floats, ...) is not the index's
            lists = [pinned[p][1] for p in positions]
            if len(positions) > 1 and any(len(v) != 1 for v in lists):
                continue  # IN lists only for one-column keys
            values = tuple(zip(*lists)) if len(positions) > 1 else tuple((v,) for v in lists[0])
            return replace(node, key=i, key_conds=tuple(pinned[p][0] for p in positions),
                           key_values=values)
        return node
    return visit(plan)


# Key column types whose SQL equality is the key index's equality of stored values.
KEY_TYPES = frozenset({"int2", "int4", "int8", "text", "varchar"})

_ROW_INDEPENDENT = (exp.Literal, exp.Parameter, exp.Placeholder, exp.Null, exp.Cast, exp.Neg,
                    exp.Paren, exp.Boolean, exp.Identifier, exp.DataType, exp.DataTypeParam)


def _pinned_column(cond: exp.Expression, scope: Scope) -> tuple[int, list[exp.Expression]] | None:
    """(field position, values) when `cond` is `column = value` or `column IN (values)`
    with values that are constants or parameters."""
    if isinstance(cond, exp.EQ):
        sides = [(cond.this, cond.expression), (cond.expression, cond.this)]
    elif isinstance(cond, exp.In) and not cond.args.get("query") and not cond.args.get("unnest") \
            and cond.expressions:
        sides = [(cond.this, None)]
    else:
        return None
    for column, value in sides:
        if not isinstance(column, exp.Column):
            continue
        index = find(scope, column)
        if index is None:
            continue
        values = [value] if value is not None else list(cond.expressions)
        if all(_row_independent(v, scope) for v in values):
            return index, values
    return None


def _row_independent(e: exp.Expression, scope: Scope) -> bool:
    """Constants, parameters, and columns of an outer query (a correlated subquery's or a
    LATERAL item's reference to the outer row: one value per run of the scan)."""
    for node in e.walk():
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star) or find(scope, node) \
                    is not None:
                return False
        elif not isinstance(node, _ROW_INDEPENDENT):
            return False
    return True


def _map_children(node: n.PlanNode, fn) -> n.PlanNode:
    changes = {}
    for name in ("child", "left", "right", "anchor", "recursive"):
        child = getattr(node, name, None)
        if isinstance(child, n.PlanNode):
            new = fn(child)
            if new is not child:
                changes[name] = new
    return replace(node, **changes) if changes else node


RULES = (push_filter_into_scan, use_vector_topk, use_key_lookup, use_btree_index)


def optimize(plan: n.PlanNode) -> n.PlanNode:
    """Apply every rewrite rule in order; each keeps the query's meaning."""
    for rule in RULES:
        plan = rule(plan)
    return plan
