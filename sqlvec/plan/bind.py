"""Binding a finished plan: every column reference in it resolved once, to a position.

The planner looks each name up once while it plans (to report 42703/42702/42P01 where
PostgreSQL does), and the column node remembers the field it names (`binder.resolve`); the
planner and its rules then place conditions and pick indexes by that field, and move
expressions between nodes. Once the plan has its final shape, `bind_plan` walks it the way
the executor's builder will and gives each column reference its `ColumnRef` (sql/binder.py:
how many queries up, which position, the field, which system column) — the field's position
in the input of the node the expression ended up in, found by identity, not by name —
scoped exactly as the builder's compilers are:

- an expression reads its node's input: the child's fields (a join's condition: both sides';
  a scan's filter: the table's fields);
- LIMIT/OFFSET, VALUES rows, a function in FROM and a vector top-k's query and k read no row
  of their own: an empty scope, the enclosing query one level up;
- a subquery (`SubPlan`) is bound with the scope of the expression it sits in as its outer
  scope; the right side of a LATERAL join with its left side as outer scope.

The expression compiler then reads the position a reference carries and never looks a name up
again (a compiler for a bound plan refuses a reference without one). Expressions are copied, so
plan nodes shared by several references (a CTE) are bound separately for each.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.plan import nodes as n
from sqlvec.plan.index_selection import IndexPath
from sqlvec.plan.nodes import SubPlan
from sqlvec.plan.planner import PlanContext, Planner, located
from sqlvec.sql.binder import Scope, bound_ref, is_column_reference


def bind_plan(plan: n.PlanNode, outer: Scope | None = None) -> n.PlanNode:
    """`plan` with every expression's column references bound; `outer` is the scope of the
    expression a subquery plan sits in (None at the top)."""
    binder = _BINDERS.get(type(plan))
    if binder is None:
        raise SqlVecError(f"plan node {type(plan).__name__} has no binder", sqlstate="XX000")
    return binder(plan, outer)


def bind_expr(e: exp.Expression, scope: Scope) -> exp.Expression:
    """A copy of `e` whose column references carry their resolution in `scope`, and whose
    subqueries are bound plans."""
    copy = e.copy()
    _bind_in_place(copy, scope)
    return copy


def bind_detached(e: exp.Expression, scope: Scope) -> exp.Expression:
    """An expression no statement plans (a CHECK condition, compiled from the table
    definition's text) checked as the planner checks a query's expressions (row comparisons
    expanded, each name resolved once with PostgreSQL's 42703/42702/42P01 at its position)
    and bound against `scope`. It reads no table but the one `scope` describes, so it may
    hold no subquery (its callers refuse them first, as PostgreSQL does)."""
    if any(e.find_all(exp.Subquery, exp.Select, exp.Exists)):
        raise FeatureNotSupported("subqueries are not supported here")
    planner = Planner(PlanContext(catalog=None, search_path=[]))  # type: ignore[arg-type]
    return bind_expr(planner._expr(e, scope), scope)


def _bind_in_place(copy: exp.Expression, scope: Scope) -> None:
    """Bind the references of `copy` (a copy no one else holds) where they are."""
    stack: list[exp.Expression] = [copy]
    while stack:  # pre-order without recursion: a 10,000-term chain costs no depth
        x = stack.pop()
        if isinstance(x, SubPlan):
            _bind_subplan(x, scope)
            if x.this is not None:
                stack.append(x.this)
            continue
        if is_column_reference(x) and bound_ref(x) is None:
            try:
                x.set("ref", scope.bind(x))
            except SqlVecError as error:
                raise located(error, x) from None
        stack.extend(x.iter_expressions())


def _bind_subplan(sub: SubPlan, scope: Scope) -> None:
    """A subquery's plan bound with `scope` as its outer scope; its keyed form too when that
    binds (a reference found by name rather than by its field may fail there): without it the
    subquery runs per outer value, as the executor falls back to when the keyed form does not
    apply."""
    sub.set("plan", bind_plan(sub.args["plan"], scope))
    if sub.args.get("keyed") is None:
        return
    try:
        keyed = {"keyed": bind_plan(sub.args["keyed"], scope),
                 "keys": [bind_expr(k, scope) for k in sub.args.get("keys") or []]}
        if sub.args.get("guard") is not None:
            keyed["guard"] = bind_expr(sub.args["guard"], scope)
        if sub.args.get("empty") is not None:
            keyed["empty"] = bind_plan(sub.args["empty"], scope)
    except SqlVecError:
        keyed = {"keyed": None, "keys": None, "guard": None, "empty": None}
    for key, value in keyed.items():
        sub.set(key, value)


def shifted(e: exp.Expression, by: int) -> exp.Expression:
    """A copy of a bound expression whose references to its own input (level 0) point `by`
    positions further: a join's key on its right side, compiled against that side alone."""
    copy = e.copy()
    for x in copy.walk():
        ref = bound_ref(x)
        if ref is not None and ref.level == 0:
            x.set("ref", replace(ref, index=ref.index + by))
    return copy


def _bind_all(exprs, scope: Scope) -> tuple:
    return tuple(bind_expr(e, scope) for e in exprs)


def _input(node: n.PlanNode, outer: Scope | None) -> Scope:
    """The scope of expressions over `node`'s rows."""
    return Scope(list(node.fields), outer)


def _nothing(node: n.PlanNode, outer: Scope | None) -> n.PlanNode:
    return node


def _scan(node: n.Scan, outer: Scope | None) -> n.Scan:
    if node.filter is None:
        return node
    scope = _input(node, outer)
    condition = node.filter.copy()
    # The index conditions are conjuncts of the filter, picked out by identity.
    nodes = {id(old): new for old, new in zip(node.filter.walk(), condition.walk())}
    _bind_in_place(condition, scope)
    return replace(node, filter=condition,
                   key_conds=tuple(nodes[id(k)] for k in node.key_conds),
                   key_values=tuple(_bind_all(row, scope) for row in node.key_values),
                   index_paths=tuple(_index_path(p, scope, nodes) for p in node.index_paths))


def _index_path(path: IndexPath, scope: Scope, nodes: dict[int, exp.Expression]) -> IndexPath:
    """A btree index path with its key and values bound in the scan's scope; its conditions
    stay the filter's conjuncts (picked out by identity, as the key conditions are)."""
    conds = tuple(replace(c, source=nodes.get(id(c.source), c.source),
                          values=_bind_all(c.values, scope)) for c in path.conds)
    return replace(path, key=bind_expr(path.key, scope), conds=conds)


def _values(node: n.Values, outer: Scope | None) -> n.Values:
    scope = Scope([], outer)
    return replace(node, rows=tuple(_bind_all(row, scope) for row in node.rows))


def _function_scan(node: n.FunctionScan, outer: Scope | None) -> n.FunctionScan:
    if node.function is None:
        return node
    return replace(node, function=bind_expr(node.function, Scope([], outer)))


def _filter(node: n.Filter, outer: Scope | None) -> n.Filter:
    return replace(node, child=bind_plan(node.child, outer),
                   predicate=bind_expr(node.predicate, _input(node.child, outer)))


def _project(node: n.Project, outer: Scope | None) -> n.Project:
    return replace(node, child=bind_plan(node.child, outer),
                   exprs=_bind_all(node.exprs, _input(node.child, outer)))


def _project_set(node: n.ProjectSet, outer: Scope | None) -> n.ProjectSet:
    return replace(node, child=bind_plan(node.child, outer),
                   functions=_bind_all(node.functions, _input(node.child, outer)))


def _rename(node: n.Rename, outer: Scope | None) -> n.Rename:
    return replace(node, child=bind_plan(node.child, outer))


def _limit(node: n.Limit, outer: Scope | None) -> n.Limit:
    empty = Scope([], outer)
    return replace(node, child=bind_plan(node.child, outer),
                   limit=bind_expr(node.limit, empty) if node.limit is not None else None,
                   offset=bind_expr(node.offset, empty) if node.offset is not None else None)


def _sort(node: n.Sort, outer: Scope | None) -> n.Sort:
    scope = _input(node.child, outer)
    return replace(node, child=bind_plan(node.child, outer),
                   keys=tuple(replace(k, expr=bind_expr(k.expr, scope)) for k in node.keys))


def _distinct(node: n.Distinct, outer: Scope | None) -> n.Distinct:
    on = None if node.on is None else _bind_all(node.on, _input(node.child, outer))
    return replace(node, child=bind_plan(node.child, outer), on=on)


def _aggregate(node: n.Aggregate, outer: Scope | None) -> n.Aggregate:
    scope = _input(node.child, outer)
    return replace(node, child=bind_plan(node.child, outer),
                   groups=_bind_all(node.groups, scope),
                   aggregates=_bind_all(node.aggregates, scope))


def _window(node: n.Window, outer: Scope | None) -> n.Window:
    return replace(node, child=bind_plan(node.child, outer),
                   windows=_bind_all(node.windows, _input(node.child, outer)))


def _join(node: n.Join, outer: Scope | None) -> n.Join:
    condition = None if node.condition is None else bind_expr(node.condition, _input(node, outer))
    return replace(node, left=bind_plan(node.left, outer), right=bind_plan(node.right, outer),
                   condition=condition)


def _lateral_join(node: n.LateralJoin, outer: Scope | None) -> n.LateralJoin:
    condition = None if node.condition is None else bind_expr(node.condition, _input(node, outer))
    return replace(node, left=bind_plan(node.left, outer),
                   right=bind_plan(node.right, _input(node.left, outer)), condition=condition)


def _set_op(node: n.SetOp, outer: Scope | None) -> n.SetOp:
    return replace(node, inputs=tuple(bind_plan(i, outer) for i in node.inputs))


def _recursive_union(node: n.RecursiveUnion, outer: Scope | None) -> n.RecursiveUnion:
    return replace(node, anchor=bind_plan(node.anchor, outer),
                   recursive=bind_plan(node.recursive, outer))


def _vector_topk(node: n.VectorTopK, outer: Scope | None) -> n.VectorTopK:
    empty = Scope([], outer)
    return replace(node, scan=_scan(node.scan, outer),
                   query=bind_expr(node.query, empty) if node.query is not None else None,
                   k=bind_expr(node.k, empty) if node.k is not None else None)


# Plan node class -> its binder: a node class with expressions needs an entry here, scoped as
# the builder (execution/builder.py) compiles them.
_BINDERS = {
    n.OneRow: _nothing, n.VirtualScan: _nothing, n.WorkTable: _nothing,
    n.Scan: _scan, n.Values: _values, n.FunctionScan: _function_scan,
    n.Filter: _filter, n.Project: _project, n.ProjectSet: _project_set, n.Rename: _rename,
    n.Limit: _limit, n.Sort: _sort, n.Distinct: _distinct,
    n.Aggregate: _aggregate, n.Window: _window,
    n.Join: _join, n.LateralJoin: _lateral_join,
    n.SetOp: _set_op, n.RecursiveUnion: _recursive_union, n.VectorTopK: _vector_topk,
}
