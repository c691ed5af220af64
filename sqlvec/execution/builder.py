"""The plan tree made operators: `Builder.build(plan)` compiles every expression of the plan
once (types are known after this, which is what Describe needs) and returns the root operator;
`operator.execute(ctx)` runs it. The plan is a bound one (plan/bind.py): its column references
carry their positions, and the compilers made here read them instead of resolving names.

One method per plan node class (`_Scan`, `_Join`, ...); nodes whose operators live in their own
modules (function scans, ProjectSet, the vector top-k) are built by those modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sqlvec.execution import values as V
from sqlvec.execution.aggregates import compile_aggregate
from sqlvec.execution.catalog_functions import build_project_set
from sqlvec.execution.expressions import CompileEnv, Compiler
from sqlvec.execution.expressions.core import compares_as_char
from sqlvec.execution.index_scan import compile_paths
from sqlvec.execution.lateral import build_lateral_join
from sqlvec.execution.operators import (
    AggregateOp,
    DistinctOp,
    FilterOp,
    JoinOp,
    LimitOp,
    OneRowOp,
    Operator,
    ProjectOp,
    RecursiveUnionOp,
    RenameOp,
    ScanOp,
    SetOpOp,
    SortOp,
    ValuesOp,
    VirtualScanOp,
    WindowOp,
    WorkTableOp,
    key_comparable,
)
from sqlvec.execution.table_functions import build_function_scan
from sqlvec.execution.values import INT8, TEXT, Value
from sqlvec.execution.vector_search import build_vector_topk
from sqlvec.execution.windows import compile_window
from sqlvec.plan import nodes as n
from sqlvec.plan.bind import shifted
from sqlvec.sql.binder import Field, Scope, bound_ref
from sqlvec.types import SqlType


@dataclass
class Builder:
    """Builds operators for one statement; `env` collects parameter types."""

    env: CompileEnv

    def build(self, node: n.PlanNode, outer: Compiler | None = None) -> Operator:
        """The operator of a plan node, by the node's type (`_Scan` builds a Scan), with children
        built recursively."""
        method = getattr(self, "_" + type(node).__name__)
        op = method(node, outer)
        op.node = node
        return op

    def compiler(self, op_fields: list[Field], types: list[SqlType], outer: Compiler | None) -> Compiler:
        """A compiler for a bound plan's expressions over an operator's fields, with the outer
        query's compiler for correlated references."""
        parent = outer.scope if outer is not None else None
        return Compiler(Scope(list(op_fields), parent), types, self.env, outer)

    def subplan(self, plan: n.PlanNode, outer: Compiler) -> Operator:
        """Build a subquery's plan, its expressions able to refer to the outer query."""
        return self.build(plan, outer)

    # Leaves -------------------------------------------------------------------------------------

    def _OneRow(self, node, outer):
        return OneRowOp([], [], [])

    def _Scan(self, node: n.Scan, outer):
        types = [f.type for f in node.fields]
        op = ScanOp(list(node.fields), types, [])
        op.table_id = node.table_id
        op.filter = None
        op.key = None
        if node.filter is not None:
            c = self.compiler(list(node.fields), types, outer)
            op.filter = c.condition(node.filter, "WHERE")
            if node.key is None and node.index_paths:
                start = len(self.env.outer_refs)
                op.paths = compile_paths(c, node.index_paths)
                # Values read from an outer row: the choice is made anew per outer row.
                op.paths_correlated = len(self.env.outer_refs) > start
            if node.key is not None:
                positions = node.keys[node.key][1]
                key_types = [types[p] for p in positions]
                values = [[c.compile(e) for e in row] for row in node.key_values]
                if all(key_comparable(v.type, t) for row in values for v, t in zip(row, key_types)):
                    op.key, op.key_positions, op.key_types = node.key, positions, key_types
                    op.key_name = node.keys[node.key][0]
                    op.key_values = values
                    # The rows the index finds hold exactly the wanted key values (each is
                    # converted to the key's type, or matches nothing): only the rest of the
                    # filter is left to check on them.
                    rest = [cond for cond in n.conjuncts(node.filter)
                            if not any(cond is k for k in node.key_conds)]
                    op.key_filter = c.condition(exp.and_(*rest, copy=False), "WHERE") \
                        if rest else None
        return op

    def _VirtualScan(self, node: n.VirtualScan, outer):
        types = [f.type or TEXT for f in node.fields]
        op = VirtualScanOp(list(node.fields), types, [])
        op.name = node.name
        return op

    def _Values(self, node: n.Values, outer):
        c = self.compiler([], [], outer)
        rows = [[c.compile(e) for e in row] for row in node.rows]
        width = len(node.fields)
        types = [V.common_type([r[i].type for r in rows], "VALUES") for i in range(width)]
        rows = [[c.coerce(v, types[i]) for i, v in enumerate(r)] for r in rows]
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = ValuesOp(fields, types, [])
        op.rows = rows
        return op

    def _FunctionScan(self, node: n.FunctionScan, outer):
        return build_function_scan(self, node, outer)

    # Row-wise ---------------------------------------------------------------------------------

    def _Filter(self, node: n.Filter, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        op = FilterOp(child.fields, child.types, [child])
        op.predicate = c.condition(node.predicate, node.clause)
        return op

    def _Project(self, node: n.Project, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        exprs = [c.compile(e) for e in node.exprs]
        exprs = [c.coerce(v, V.TEXT) if v.type.name == "unknown" else v for v in exprs]
        types = [v.type for v in exprs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = ProjectOp(fields, types, [child])
        op.exprs = exprs
        op.arrow_types = [v.type.to_arrow() for v in exprs]
        return op

    def _Rename(self, node: n.Rename, outer):
        child = self.build(node.child, outer)
        visible = [i for i, f in enumerate(child.fields) if not f.hidden]
        types = [child.types[i] for i in visible]
        fields = [Field(f.name, f.table, t, child.fields[i].source)
                  for f, t, i in zip(node.fields, types, visible)]
        op = RenameOp(fields, types, [child])
        op.keep = visible
        return op

    def _Limit(self, node: n.Limit, outer):
        child = self.build(node.child, outer)
        c = self.compiler([], [], outer)
        op = LimitOp(child.fields, child.types, [child])
        op.limit = c.compile_as(node.limit, INT8) if node.limit is not None else None
        op.offset = c.compile_as(node.offset, INT8) if node.offset is not None else None
        return op

    def _Sort(self, node: n.Sort, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        op = SortOp(child.fields, child.types, [child])
        op.keys = [(c.compile(k.expr), k.desc, k.nulls_first) for k in node.keys]
        return op

    def _Distinct(self, node: n.Distinct, outer):
        child = self.build(node.child, outer)
        op = DistinctOp(child.fields, child.types, [child])
        op.on = None
        if node.on is not None:
            c = self.compiler(child.fields, child.types, outer)
            op.on = [c.compile(e) for e in node.on]
        return op

    # Relational ---------------------------------------------------------------------------------

    def _Aggregate(self, node: n.Aggregate, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        groups = [c.compile(g) for g in node.groups]
        groups = [c.coerce(g, TEXT) if g.type.name == "unknown" else g for g in groups]
        specs = [compile_aggregate(c, a) for a in node.aggregates]
        types = [g.type for g in groups] + [s.type for s in specs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = AggregateOp(fields, types, [child])
        op.groups, op.specs = groups, specs
        return op

    def _Window(self, node: n.Window, outer):
        child = self.build(node.child, outer)
        c = self.compiler(child.fields, child.types, outer)
        specs = [compile_window(c, w) for w in node.windows]
        types = list(child.types) + [s.type for s in specs]
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = WindowOp(fields, types, [child])
        op.specs = specs
        return op

    def _ProjectSet(self, node, outer):
        return build_project_set(self, node, outer)

    def _Join(self, node: n.Join, outer):
        left = self.build(node.left, outer)
        right = self.build(node.right, outer)
        types = list(left.types) + list(right.types)
        fields = [Field(f.name, f.table, t, f.source, f.hidden) for f, t in zip(node.fields, types)]
        op = JoinOp(fields, types, [left, right])
        op.kind = node.kind
        op.left_width = len(left.fields)
        op.equi, op.residual = [], None
        if node.condition is not None:
            c = self.compiler(fields, types, outer)
            op.equi, residual = _split_equi(node.condition, len(left.fields))
            lc = self.compiler(left.fields, left.types, outer)
            rc = self.compiler(right.fields, right.types, outer)
            op.equi = [_join_keys(lc, rc, a, shifted(b, -len(left.fields))) for a, b in op.equi]
            op.residual = c.condition(residual, "JOIN/ON") if residual is not None else None
        return op

    def _LateralJoin(self, node: n.LateralJoin, outer):
        return build_lateral_join(self, node, outer)

    def _SetOp(self, node: n.SetOp, outer):
        inputs = [self.build(child, outer) for child in node.inputs]
        types = list(inputs[0].types)
        for other in inputs[1:]:  # pairwise from the left, as PostgreSQL resolves a chain
            types = [V.common_type([a, b], node.kind.upper()) for a, b in zip(types, other.types)]
        fields = [Field(f.name, None, t) for f, t in zip(node.fields, types)]
        op = SetOpOp(fields, types, inputs)
        op.kind, op.all = node.kind, node.all
        return op

    def _RecursiveUnion(self, node: n.RecursiveUnion, outer):
        anchor = self.build(node.anchor, outer)
        types = list(anchor.types)
        self._work_types = getattr(self, "_work_types", {})
        self._work_types[node.name] = types
        step = self.build(node.recursive, outer)
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = RecursiveUnionOp(fields, types, [anchor, step])
        op.name, op.all = node.name, node.all
        return op

    def _WorkTable(self, node: n.WorkTable, outer):
        types = self._work_types[node.name]
        fields = [Field(f.name, f.table, t) for f, t in zip(node.fields, types)]
        op = WorkTableOp(fields, types, [])
        op.name = node.name
        return op

    def _VectorTopK(self, node: n.VectorTopK, outer):
        return build_vector_topk(self, node, outer)


# Joins ---------------------------------------------------------------------------------------------


def _split_equi(condition: exp.Expression, left_width: int):
    """Split an ON condition into equi-join key pairs (left expr, right expr) and a residual."""
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    equi, rest = [], []
    for term in conjuncts:
        if isinstance(term, exp.EQ):
            sides = [_side(term.this, left_width), _side(term.expression, left_width)]
            if sides == ["left", "right"]:
                equi.append((term.this, term.expression))
                continue
            if sides == ["right", "left"]:
                equi.append((term.expression, term.this))
                continue
        rest.append(term)
    residual = exp.and_(*rest) if rest else None
    return equi, residual


def _side(e: exp.Expression, left_width: int) -> str | None:
    sides = set()
    for col in e.find_all(exp.Column):
        ref = bound_ref(col)
        if ref is None:
            return None
        if ref.level != 0:
            continue
        sides.add("left" if ref.index < left_width else "right")
    if any(True for _ in e.find_all(n.SubPlan)):
        return None
    return sides.pop() if len(sides) == 1 else None


def _join_keys(lc, rc, a: exp.Expression, b: exp.Expression) -> tuple[Value, Value]:
    """The two sides of an equi-join condition, compiled to one type; char(n) against another
    string type compares as `=` does (without the char side's trailing spaces)."""
    va, vb = lc.compile(a), rc.compile(b)
    if compares_as_char(va.type, vb.type):
        return lc.char_as_text(va), rc.char_as_text(vb)
    return _unify_keys(va, vb)


def _unify_keys(a: Value, b: Value) -> tuple[Value, Value]:
    if a.type == b.type:
        return a, b
    t = V.common_type([a.type, b.type], "JOIN")
    ca = Value(lambda f: V.cast(a(f), a.type, t, f.n), t) if a.type != t else a
    cb = Value(lambda f: V.cast(b(f), b.type, t, f.n), t) if b.type != t else b
    return ca, cb
