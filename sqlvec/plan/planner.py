"""SQL queries (sqlglot trees) to logical plans.

One query block is planned in PostgreSQL's logical order: FROM (tables, joins, subqueries,
functions) → WHERE → GROUP BY / aggregates → HAVING → window functions → SELECT list →
DISTINCT → ORDER BY → LIMIT/OFFSET. Names are resolved against `Scope`s (sql/binder.py), once
each (`resolve` records the field a column names), so that unknown or ambiguous columns fail
here with PostgreSQL's SQLSTATEs; subqueries become `SubPlan`
expressions planned with the enclosing scope as parent (correlation). Rewrite rules that change
the plan's shape (the vector top-k rule) run afterwards, from `RULES` in rules.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, is_dataclass, replace

from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.functions import Kind
from sqlvec.catalog.views import View, find_view, matview
from sqlvec.catalog.virtual import table_oid
from sqlvec.errors import FeatureNotSupported, SqlVecError, UndefinedColumn
from sqlvec.plan import nodes as n
from sqlvec.plan import row_values
from sqlvec.plan.index_selection import btree_indexes
from sqlvec.plan.nodes import SubPlan
from sqlvec.sql.binder import (
    RESOLVED,
    AmbiguousColumn,
    Field,
    Scope,
    resolve,
    resolved,
    sql_type,
    system_column,
)
from sqlvec.sql.calls import function_name
from sqlvec.sql.dialect import parse_one, to_sql
from sqlvec.storage.schema import ROWID
from sqlvec.types import SqlType

# A provider of virtual catalog tables: name → fields, or None if it has no such table.
VirtualTables = Callable[[str, str | None], "list[Field] | None"]
# Names of row sub-SELECTs (SubPlan `row`), unique in the process rather than per planner:
# they key the statement's subquery cache, whatever planner made the plan that runs there.
_ROW_SUBQUERIES = itertools.count(1)



def _kind(x: exp.Expression) -> Kind | None:
    """What the function catalog says a call is (None: not a call of a declared function)."""
    name = function_name(x) if isinstance(x, (exp.Func, exp.Anonymous)) else None
    return None if name is None else F.kind_of(name)


def is_aggregate(x: exp.Expression) -> bool:
    """A call of an aggregate function (`count(*)`, `sum(x)`, ...)."""
    return _kind(x) is Kind.AGGREGATE


def _is_set_returning(x: exp.Expression) -> bool:
    """A call of a set-returning function (`unnest(a)`, `(_pg_expandarray(a)).x`)."""
    if isinstance(x, exp.Dot):
        x = x.expression
    return not isinstance(x, exp.Unnest) and _kind(x) is Kind.SET_RETURNING


# The aggregate calls of an expression (`_collect`), those under FILTER taken with it.
AGGREGATES = is_aggregate


class GroupingError(SqlVecError):
    """A column used outside an aggregate without being grouped (42803), as PostgreSQL reports
    it."""

    sqlstate = "42803"


@dataclass
class PlanContext:
    """What planning one statement needs from the session."""

    catalog: Catalog
    search_path: list[str]
    virtual: VirtualTables | None = None
    ctes: dict[str, n.PlanNode] = field(default_factory=dict)
    views: set[int] = field(default_factory=set)  # OIDs of the views being expanded
    counter: itertools.count = field(default_factory=lambda: itertools.count())

    def fresh(self, prefix: str) -> str:
        """A new internal column name (`__agg3`) that no user column can clash with."""
        return f"__{prefix}{next(self.counter)}"


@dataclass
class Output:
    """A query block's select list as planned: its expressions (the visible ones, then the
    hidden ORDER BY ones), their names, which positions ORDER BY sorts on, DISTINCT (ON
    positions)."""

    exprs: list[exp.Expression]
    names: list[str]
    visible: int
    sorted_by: list[tuple[exp.Ordered, int]]
    distinct: bool = False
    on: tuple[int, ...] | None = None

    def copy(self) -> Output:
        """The same select list in new expression nodes (for another plan of the block)."""
        return replace(self, exprs=[e.copy() for e in self.exprs])


@dataclass
class SelectSteps:
    """A query block planned up to its select list (`Planner._select_steps`): the FROM tree,
    the planned WHERE conjuncts, the FROM tree with them placed, the aggregate node if any,
    the input of the select list, and the select list."""

    from_node: n.PlanNode
    where: list[exp.Expression]
    filtered: n.PlanNode
    aggregate: n.Aggregate | None
    below_output: n.PlanNode
    output: Output


class Planner:
    """Turns one bound SELECT (or a write's source query) into a tree of plan nodes; one instance
    per statement, sharing its PlanContext with subqueries."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx

    # Entry points -------------------------------------------------------------------------------

    def plan_query(self, query: exp.Expression, outer: Scope | None = None) -> n.PlanNode:
        """Plan a SELECT, set operation or VALUES statement."""
        saved = dict(self.ctx.ctes)
        try:
            with_ = query.args.get("with_") or query.args.get("with")
            if with_ is not None:
                self._plan_ctes(with_, outer)
            if isinstance(query, exp.Select):
                return self._plan_select(query, outer)
            if isinstance(query, (exp.Union, exp.Intersect, exp.Except)):
                return self._plan_setop(query, outer)
            if isinstance(query, exp.Values):
                return self._plan_values(query, outer)
            if isinstance(query, exp.Subquery):
                return self.plan_query(query.this, outer)
            raise FeatureNotSupported(f"statement {type(query).__name__} is not supported")
        finally:
            self.ctx.ctes = saved

    # WITH ---------------------------------------------------------------------------------------

    def _plan_ctes(self, with_: exp.With, outer: Scope | None) -> None:
        recursive = bool(with_.args.get("recursive"))
        for cte in with_.expressions:
            name = cte.alias_or_name
            columns = [c.name for c in (cte.args.get("alias").columns if cte.args.get("alias") else [])]
            body = cte.this
            if recursive and isinstance(body, exp.Union) and _references(body.expression, name):
                anchor = self.plan_query(body.this, outer)
                fields = _renamed(anchor.fields, name, columns)
                self.ctx.ctes[name] = n.WorkTable(fields, name=name)
                step = self.plan_query(body.expression, outer)
                if len(step.fields) != len(anchor.fields):
                    raise SqlVecError("each UNION query must have the same number of columns",
                                      sqlstate="42601")
                plan: n.PlanNode = n.RecursiveUnion(fields, anchor=anchor, recursive=step, name=name,
                                                    all=not body.args.get("distinct"))
            else:
                inner = self.plan_query(body, outer)
                plan = n.Rename(_renamed(inner.fields, name, columns), child=inner, alias=name)
            self.ctx.ctes[name] = plan

    # SELECT -------------------------------------------------------------------------------------

    def _plan_select(self, select: exp.Select, outer: Scope | None) -> n.PlanNode:
        steps = self._select_steps(select, outer)
        return self._plan_output(steps.below_output, steps.output, outer, select)

    def _select_steps(self, select: exp.Select, outer: Scope | None) -> SelectSteps:
        """A query block planned up to its select list: each name resolved, each expression
        planned, once. `_plan_output` finishes it; a correlated subquery's keyed form is
        finished from the same steps (`_decorrelate`)."""
        if select.args.get("locks"):
            pass  # FOR UPDATE/SHARE: rows are read from a snapshot; nothing to lock
        if select.args.get("into"):
            raise FeatureNotSupported("SELECT INTO is not supported")
        node = self._plan_from_clause(select, outer)
        scope = Scope(list(node.fields), outer)
        from_node = node

        where = select.args.get("where")
        conjuncts: list[exp.Expression] = []
        if where is not None:
            predicate = self._expr(where.this, scope)
            _reject_aggregates(predicate, "WHERE")
            conjuncts = _conjuncts(predicate)
            node = self._plan_where(node, predicate, outer)
        filtered = node

        if select.args.get("windows"):
            select = _inline_named_windows(select)
        items = self._select_items(select.expressions, scope)
        group = select.args.get("group")
        having = select.args.get("having")
        order = select.args.get("order")
        order_items = list(order.expressions) if order is not None else []

        # Aggregation.
        agg_calls: list[exp.Expression] = []
        for expr, _ in items:
            agg_calls += _collect(expr, AGGREGATES)
        if having is not None:
            agg_calls += _collect(having.this, AGGREGATES)
        for o in order_items:
            agg_calls += _collect(o.this, AGGREGATES)
        group_exprs: list[exp.Expression] = []
        if group is not None:
            group_exprs = self._group_exprs(group, items, scope)
        aggregate = None
        if agg_calls or group is not None or having is not None:
            aggregate, rewrite = self._plan_aggregate(node, scope, group_exprs, agg_calls)
            node = aggregate
            items = [(rewrite(e), name) for e, name in items]
            order_items = [_with_this(o, rewrite(self._resolve_order_expr(o.this, items, scope)))
                           for o in (order.expressions if order is not None else [])]
            scope = Scope(list(node.fields), outer)
            if having is not None:
                predicate = rewrite(self._expr(having.this, Scope(list(node.child.fields), outer)))
                node = n.Filter(node.fields, child=node, predicate=predicate, clause="HAVING")
        else:
            order_items = [_with_this(o, self._resolve_order_expr(o.this, items, scope))
                           for o in order_items]

        # Window functions.
        win_calls: list[exp.Expression] = []
        for expr, _ in items:
            win_calls += _collect(expr, (exp.Window,))
        for o in order_items:
            win_calls += _collect(o.this, (exp.Window,))
        if win_calls:
            node, rewrite_w = self._plan_window(node, win_calls)
            items = [(rewrite_w(e), name) for e, name in items]
            order_items = [_with_this(o, rewrite_w(o.this)) for o in order_items]
            scope = Scope(list(node.fields), outer)

        # Set-returning functions in the select list.
        srf_calls: list[exp.Expression] = []
        for expr, _ in items:
            srf_calls += _collect(expr, _is_set_returning)
        if srf_calls:
            node, rewrite_s = self._plan_project_set(node, srf_calls)
            items = [(rewrite_s(e), name) for e, name in items]
            order_items = [_with_this(o, rewrite_s(o.this)) for o in order_items]
            scope = Scope(list(node.fields), outer)

        # Projection (+ hidden ORDER BY columns), DISTINCT, ORDER BY, LIMIT.
        distinct = select.args.get("distinct")
        visible = len(items)
        exprs = [e for e, _ in items]
        names = [name for _, name in items]
        sorted_by: list[tuple[exp.Ordered, int]] = []
        for o in order_items:
            pos = _position_of(o.this, exprs)
            if pos is not None and distinct is None and names.count(names[pos]) > 1:
                pos = None  # `SELECT r.oid, r.* ... ORDER BY r.oid`: sort on a hidden copy
            if pos is None:
                if distinct is not None and distinct.args.get("on") is None:
                    raise SqlVecError("for SELECT DISTINCT, ORDER BY expressions must appear in "
                                      "select list", sqlstate="42P10")
                exprs.append(o.this)
                names.append(self.ctx.fresh("ord"))
                pos = len(exprs) - 1
            sorted_by.append((o, pos))
        on_positions = None
        if distinct is not None and distinct.args.get("on") is not None:
            on = distinct.args["on"]
            on_list = on.expressions if isinstance(on, exp.Tuple) else [on]
            on_positions = tuple(self._position_in_output(e, exprs, names, items, scope)
                                 for e in on_list)
        output = Output(exprs, names, visible, sorted_by, distinct is not None, on_positions)
        return SelectSteps(from_node, conjuncts, filtered, aggregate, node, output)

    def _plan_output(self, node: n.PlanNode, output: Output, outer: Scope | None,
                     limited: exp.Expression | None = None) -> n.PlanNode:
        """The select list over `node` (with the hidden ORDER BY columns), then DISTINCT, ORDER
        BY, the LIMIT of `limited`, and the hidden columns dropped."""
        scope = Scope(list(node.fields), outer)
        exprs, names, visible = output.exprs, output.names, output.visible
        fields = tuple(
            Field(name, None, _field_type(e, scope), _source(e, scope), hidden=i >= visible)
            for i, (e, name) in enumerate(zip(exprs, names))
        )

        sort_keys = [_sort_key(o, _col(fields[pos])) for o, pos in output.sorted_by]
        node = n.Project(fields, child=node, exprs=tuple(exprs))
        if output.distinct:
            on_exprs = None
            if output.on is not None:
                on_exprs = tuple(_col(fields[pos]) for pos in output.on)
                if sort_keys:
                    # DISTINCT ON keeps the first row of each group in ORDER BY order.
                    node = n.Sort(node.fields, child=node, keys=tuple(sort_keys))
            node = n.Distinct(node.fields, child=node, on=on_exprs)
        if sort_keys and output.on is None:
            node = n.Sort(node.fields, child=node, keys=tuple(sort_keys))
        if limited is not None:
            node = self._plan_limit(limited, node, outer)
        if len(exprs) > visible and len(set(names[:visible])) == visible:
            # (With duplicate output names the hidden sort columns stay, marked hidden.)
            node = n.Project(fields[:visible], child=node,
                             exprs=tuple(_col(f) for f in fields[:visible]))
        return node

    def _plan_from_clause(self, select: exp.Select, outer: Scope | None) -> n.PlanNode:
        from_ = select.args.get("from_") or select.args.get("from")
        node: n.PlanNode = n.OneRow(()) if from_ is None else self._plan_from_item(from_.this, outer)
        for join in select.args.get("joins") or []:
            node = self._plan_join(node, join, outer)
        return node

    def _plan_where(self, node: n.PlanNode, predicate: exp.Expression,
                    outer: Scope | None) -> n.PlanNode:
        """WHERE over the FROM tree: each conjunct goes as deep into the joins as its columns
        allow (`FROM a, b WHERE a.x = b.y` becomes a hash join on x = y, not a filtered cross
        product; `c.oid = 42` filters c before it is joined). Conjuncts with subqueries stay
        on top, as do those that would cross the nullable side of an outer join."""
        kept = []
        for conjunct in _conjuncts(predicate):
            pushed = None
            if isinstance(node, _JOINS) and not any(
                    isinstance(x, (SubPlan, exp.Subquery, exp.Select)) for x in conjunct.walk()):
                pushed = _push_into(node, conjunct, outer)
            if pushed is None:
                kept.append(conjunct)
            else:
                node = pushed
        if not kept:
            return node
        return n.Filter(node.fields, child=node, predicate=_and(kept))

    def _select_items(self, expressions: list[exp.Expression], scope: Scope) -> list[tuple[exp.Expression, str]]:
        items: list[tuple[exp.Expression, str]] = []
        for e in expressions:
            if isinstance(e, exp.Star):
                fields = [f for f in scope.fields if not f.hidden]
                if not fields and not scope.fields:
                    raise SqlVecError("SELECT * with no tables specified is not valid",
                                      sqlstate="42601")
                items += [(_col(f), _shown(f.name)) for f in fields]
                continue
            if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                table = e.table
                if not scope.has_table(table):
                    raise located(SqlVecError(f'missing FROM-clause entry for table "{table}"',
                                              sqlstate="42P01"), e)
                items += [(_col(f), _shown(f.name)) for f in scope.fields
                          if f.table == table and not f.hidden]
                continue
            name = output_name(e)
            inner = e.this if isinstance(e, exp.Alias) else e
            items.append((self._expr(inner, scope), name))
        return items

    def _group_exprs(self, group: exp.Group, items, scope: Scope) -> list[exp.Expression]:
        for g in group.expressions:
            if isinstance(g, (exp.Rollup, exp.Cube, exp.GroupingSets)):
                name = {"groupingsets": "GROUPING SETS"}.get(g.key, g.key.upper())
                raise FeatureNotSupported(f"GROUP BY {name} is not supported")
        out = []
        for g in group.expressions:
            if isinstance(g, exp.Literal) and not g.is_string:
                pos = int(g.this)
                if not 1 <= pos <= len(items):
                    raise SqlVecError(f"GROUP BY position {pos} is not in select list",
                                      sqlstate="42P10")
                out.append(items[pos - 1][0])
                continue
            if isinstance(g, exp.Column) and not g.table:
                try:
                    out.append(self._expr(g, scope))
                except UndefinedColumn:  # not an input column: an output column's name
                    match = [e for e, name in items if name == g.name]
                    if not match:
                        raise
                    out.append(match[0])
                continue
            out.append(self._expr(g, scope))
        return out

    def _resolve_order_expr(self, e: exp.Expression, items, scope: Scope) -> exp.Expression:
        """ORDER BY: an output position, an output column name, or an input expression."""
        if isinstance(e, exp.Literal) and not e.is_string:
            pos = int(e.this)
            if not 1 <= pos <= len(items):
                raise SqlVecError(f"ORDER BY position {pos} is not in select list",
                                  sqlstate="42P10")
            return items[pos - 1][0]
        if isinstance(e, exp.Column) and not e.table:
            matches = [expr for expr, name in items if name == e.name]
            if any(not _same(m, matches[0]) for m in matches[1:]):
                raise located(AmbiguousColumn(f'ORDER BY "{e.name}" is ambiguous'), e)
            if matches:
                return matches[0]
        return self._expr(e, scope)

    def _position_in_output(self, e, exprs, names, items, scope) -> int:
        if isinstance(e, exp.Column) and not e.table and e.name in names:
            first = names.index(e.name)
            if any(name == e.name and not _same(x, exprs[first]) for x, name in zip(exprs, names)):
                raise located(AmbiguousColumn(f'DISTINCT ON "{e.name}" is ambiguous'), e)
            return first
        resolved = self._resolve_order_expr(e, items, scope)
        pos = _position_of(resolved, exprs)
        if pos is None:
            raise FeatureNotSupported("DISTINCT ON expressions must appear in the select list here")
        return pos

    def _plan_limit(self, query: exp.Expression, node: n.PlanNode, outer: Scope | None) -> n.PlanNode:
        limit = query.args.get("limit")
        offset = query.args.get("offset")
        fetch = None
        if limit is not None and isinstance(limit, exp.Fetch):
            fetch, limit = limit, None
        limit_expr = None
        if limit is not None:
            limit_expr = limit.args.get("expression")
            if isinstance(limit_expr, exp.Var) and limit_expr.name.upper() == "ALL":
                limit_expr = None
        if fetch is not None:
            limit_expr = fetch.args.get("count") or exp.Literal.number(1)
        offset_expr = offset.args.get("expression") if offset is not None else None
        if limit_expr is None and offset_expr is None:
            return node
        empty = Scope([], outer)
        return n.Limit(node.fields, child=node,
                       limit=self._expr(limit_expr, empty) if limit_expr is not None else None,
                       offset=self._expr(offset_expr, empty) if offset_expr is not None else None)

    # Aggregates and windows ---------------------------------------------------------------------

    def _plan_aggregate(self, node, scope, group_exprs, agg_calls):
        unique_aggs: list[exp.Expression] = []
        for call in agg_calls:
            if not any(call == u for u in unique_aggs):
                unique_aggs.append(call)
        for call in unique_aggs:
            agg = call.this if isinstance(call, exp.Filter) else call
            for inner in agg.find_all(exp.Func, exp.Anonymous):
                if inner is not agg and is_aggregate(inner):
                    raise GroupingError("aggregate function calls cannot be nested")
        group_names = [self.ctx.fresh("grp") for _ in group_exprs]
        agg_names = [self.ctx.fresh("agg") for _ in unique_aggs]
        fields = tuple(
            [Field(name, None, _field_type(g, scope), _source(g, scope), hidden=True)
             for name, g in zip(group_names, group_exprs)]
            + [Field(name, None, None, hidden=True) for name in agg_names]
        )
        # Group expressions keep the names of simple columns so `t.x` still resolves.
        named = []
        # (input field, system column) of each grouped column -> the output field holding it.
        grouped: dict[tuple[int, object], Field] = {}
        for g, f in zip(group_exprs, fields):
            if isinstance(g, exp.Column):
                level, index = resolve(scope, g)
                src = scope.fields[index] if level == 0 else None
                named.append(Field(f.name, None, f.type, f.source, hidden=True))
                if src is not None and system_column(src, g.name) is None:
                    named[-1] = Field(src.name, src.table, src.type, src.source)
                if src is not None:
                    grouped.setdefault((id(src), system_column(src, g.name)), named[-1])
            else:
                named.append(f)
        fields = tuple(named) + fields[len(group_exprs):]
        agg_node = n.Aggregate(fields, child=node, groups=tuple(group_exprs),
                               aggregates=tuple(unique_aggs))
        agg_fields = fields[len(group_exprs):]

        def rewrite(e: exp.Expression) -> exp.Expression:
            def swap(x: exp.Expression) -> exp.Expression:
                for f, call in zip(agg_fields, unique_aggs):
                    if x == call:
                        return _col(f)
                for f, g in zip(fields, group_exprs):
                    if x == g and not isinstance(x, exp.Literal):
                        return _col(f)
                return x

            out = _transform_outside_subplans(e, swap)
            _regroup_outer_references(out, scope.fields, grouped)
            for col in _columns_outside_subplans(out):
                if col.name.startswith("__agg"):
                    continue
                if any(f.name == col.name and (not col.table or f.table == col.table) for f in fields):
                    continue
                if _is_outer(col, scope):
                    continue
                shown = f"{col.table}.{col.name}" if col.table else col.name
                raise located(GroupingError(
                    f'column "{shown}" must appear in the GROUP BY clause or be used in an '
                    "aggregate function"), col)
            return out

        return agg_node, rewrite

    def _plan_window(self, node, calls):
        unique: list[exp.Expression] = []
        for c in calls:
            if not any(c == u for u in unique):
                unique.append(c)
        names = [self.ctx.fresh("win") for _ in unique]
        fields = tuple(node.fields) + tuple(Field(name, None, None, hidden=True) for name in names)
        win_node = n.Window(fields, child=node, windows=tuple(unique))

        win_fields = fields[len(node.fields):]

        def rewrite(e: exp.Expression) -> exp.Expression:
            def swap(x):
                for f, call in zip(win_fields, unique):
                    if x == call:
                        return _col(f)
                return x
            return _transform_outside_subplans(e, swap)

        return win_node, rewrite

    def _plan_project_set(self, node, calls):
        names = [self.ctx.fresh("srf") for _ in calls]
        fields = tuple(node.fields) + tuple(Field(name, None, None, hidden=True) for name in names)
        srf_node = n.ProjectSet(fields, child=node, functions=tuple(calls))

        srf_fields = fields[len(node.fields):]

        def rewrite(e: exp.Expression) -> exp.Expression:
            def swap(x):
                for f, call in zip(srf_fields, calls):
                    if x is call or x == call:
                        return _col(f)
                return x
            return _transform_outside_subplans(e, swap)

        return srf_node, rewrite

    # FROM ---------------------------------------------------------------------------------------

    def _plan_from_item(self, item: exp.Expression, outer: Scope | None) -> n.PlanNode:
        alias_node = item.args.get("alias")
        alias = alias_node.name if alias_node is not None else None
        columns = [c.name for c in alias_node.columns] if alias_node is not None else []
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            return self._plan_table(item, alias, columns)
        if isinstance(item, exp.Table) and isinstance(item.this, (exp.Func, exp.Anonymous)):
            return self._plan_function(item.this, alias, columns, outer, item)
        if isinstance(item, exp.Subquery):
            inner = self.plan_query(item.this, outer if item.args.get("lateral") else outer)
            if alias is None:
                alias = self.ctx.fresh("subquery")
            return n.Rename(_renamed(inner.fields, alias, columns), child=inner, alias=alias)
        if isinstance(item, exp.Values):
            inner = self._plan_values(item, outer)
            alias = alias or "*VALUES*"
            return n.Rename(_renamed(inner.fields, alias, columns), child=inner, alias=alias)
        if isinstance(item, exp.Unnest):
            return self._plan_function(item, alias, columns, outer, item)
        if isinstance(item, exp.Lateral):
            return self._plan_from_item(_lateral_item(item), outer)
        raise FeatureNotSupported(f"{type(item).__name__} in FROM is not supported")

    def _plan_table(self, table: exp.Table, alias: str | None, columns: list[str]) -> n.PlanNode:
        name = table.name
        schema = table.db or None
        if table.catalog and table.catalog != self.ctx.catalog.store.directory.rsplit("/", 1)[-1]:
            raise FeatureNotSupported("cross-database references are not implemented: "
                                      f"{table.sql(dialect='postgres')}")
        if schema is None and name in self.ctx.ctes:
            cte = self.ctx.ctes[name]
            qualifier = alias or name
            return n.Rename(_renamed(cte.fields, qualifier, columns), child=cte, alias=qualifier)
        if schema not in ("pg_catalog", "information_schema"):
            view = find_view(self.ctx.catalog, name, schema, self.ctx.search_path)
            if view is not None:
                return self._plan_view(view, alias, columns)
        found = None if schema in ("pg_catalog", "information_schema") else \
            self.ctx.catalog.find_table(name, schema, self.ctx.search_path)
        if found is None:
            if self.ctx.virtual is not None:
                columns_of = self.ctx.virtual(name, schema)
                if columns_of is not None:
                    fields = [Field(col, None, t) for col, t in columns_of]
                    qualifier = alias or name
                    # A hidden row id, as user tables have, so that the system columns work
                    # (pg_dump reads `tableoid` of every catalog table).
                    rowid = Field(ROWID, qualifier, SqlType("int8"), (table_oid(name), 0),
                                  hidden=True)
                    return n.VirtualScan(_renamed(tuple(fields), qualifier, columns) + (rowid,),
                                         name=f"{schema + '.' if schema else ''}{name}",
                                         alias=qualifier)
            sequence = self._sequence_key(name, schema)
            if sequence is not None:  # `SELECT last_value, is_called FROM seq`: its one row
                # Before its first value (or after a restart or setval(.., false)) it shows the
                # value nextval gives next; any change of it commits a catalog version, which
                # plans cached with it do not outlive.
                seq_schema, seq_name = sequence.split(".", 1)
                pending = int(self.ctx.catalog.pending_value(sequence) or 0)
                row = parse_one(
                    f"SELECT coalesce(last_value, ({pending})::int8) AS last_value, "
                    "0::int8 AS log_cnt, "
                    "last_value IS NOT NULL AS is_called FROM pg_catalog.pg_sequences WHERE "
                    f"schemaname = {_quoted(seq_schema)} AND sequencename = {_quoted(seq_name)}")
                inner = self.plan_query(row, None)
                qualifier = alias or name
                return n.Rename(_renamed(inner.fields, qualifier, columns), child=inner,
                                alias=qualifier)
            try:
                self.ctx.catalog.table(name, schema, self.ctx.search_path)  # raises 42P01
            except SqlVecError as error:
                raise located(error, table) from None
        qualifier = alias or name
        d = found.def_
        entry = matview(self.ctx.catalog, found.id)
        if entry is not None and not entry.get("populated"):
            raise located(SqlVecError(f'materialized view "{d.name}" has not been populated',
                                      sqlstate="55000",
                                      hint="Use the REFRESH MATERIALIZED VIEW command."), table)
        fields = tuple(
            Field(c.name, qualifier, c.type, (d.oid, c.attnum)) for c in d.columns
        )
        # The row id carries the table's OID, for `tableoid` (system columns read through it).
        fields = _renamed(fields, qualifier, columns) + (
            Field(ROWID, qualifier, SqlType("int8"), (d.oid, 0), hidden=True),)
        position = {c.name: i for i, c in enumerate(d.columns)}
        keys = tuple((k.name, tuple(position[c] for c in k.columns)) for k in d.unique_keys)
        return n.Scan(fields, table_id=d.id, table_name=d.name, alias=qualifier, keys=keys,
                      btree=btree_indexes(d, position))

    def _plan_view(self, view: View, alias: str | None, columns: list[str]) -> n.PlanNode:
        """A view named in FROM: its stored query planned as a subquery (no CTE or column of
        the naming query is visible in it), under the view's column names. Rules may then
        look through it as through any subquery (`rules.py`)."""
        if view.oid in self.ctx.views:
            raise SqlVecError(f'infinite recursion detected in rules for relation "{view.name}"',
                              sqlstate="42P17")
        saved = self.ctx.ctes
        self.ctx.ctes, self.ctx.views = {}, self.ctx.views | {view.oid}
        try:
            inner = self.plan_query(parse_one(view.query), None)
        finally:
            self.ctx.ctes, self.ctx.views = saved, self.ctx.views - {view.oid}
        qualifier = alias or view.name
        visible = [f for f in inner.fields if not f.hidden]
        fields = tuple(Field(name, qualifier, f.type, (view.oid, i + 1))
                       for i, ((name, _t), f) in enumerate(zip(view.columns, visible)))
        return n.Rename(_renamed(fields, qualifier, columns), child=inner, alias=qualifier)

    def _sequence_key(self, name: str, schema: str | None) -> str | None:
        """The catalog key (`schema.name`) of the sequence a FROM item names, if it is one."""
        sequences = self.ctx.catalog.state.get("sequences", {})
        for candidate in [schema] if schema else self.ctx.search_path:
            if f"{candidate}.{name}" in sequences:
                return f"{candidate}.{name}"
        return None

    def _plan_function(self, fn: exp.Expression, alias, columns, outer, item) -> n.PlanNode:
        scope = Scope([], outer)
        bound = self._expr(fn, scope)
        fname = function_name(fn) or "?column?"
        decl = F.lookup(fname)
        alias = alias or fname
        # UNNEST(...) WITH ORDINALITY: sqlglot's `offset` is True, or the name the alias gives
        # the ordinality column; False without one.
        offset = item.args.get("offset")
        ordinality = bool(item.args.get("ordinality")) or bool(offset)
        if isinstance(fn, exp.Unnest) and isinstance(offset, exp.Expression):
            columns = columns + [offset.name]
        # A function of one output column names it after the alias, as PostgreSQL does
        # (`FROM unnest(a) u` has column u); several unnest arguments give several "unnest"s.
        outputs = len(fn.expressions) if isinstance(fn, exp.Unnest) else 1
        names = columns or list(decl.columns if decl is not None else ()) or (
            [alias] if outputs == 1 else
            ["unnest"] + [f"unnest{_SAME_NAME}{i}" for i in range(2, outputs + 1)])
        if ordinality and len(names) < outputs + 1:
            names = names + ["ordinality"]
        fields = tuple(Field(nm, alias) for nm in names)
        return n.FunctionScan(fields, function=bound, with_ordinality=ordinality)

    def _plan_join(self, left: n.PlanNode, join: exp.Join, outer: Scope | None) -> n.PlanNode:
        # A LATERAL item, or a function (implicitly lateral, as in PostgreSQL), sees the FROM
        # items to its left; if it refers to them, the join runs it per left row.
        lateral = LateralScope(list(left.fields), outer) if _may_be_lateral(join.this) else None
        try:
            right = self._plan_from_item(join.this, lateral if lateral is not None else outer)
        except SqlVecError as error:
            raise _not_lateral(error, left) from None
        side = (join.side or "").lower()
        if join.method and join.method.upper() == "NATURAL":
            using = [f.name for f in left.fields if not f.hidden and
                     any(g.name == f.name and not g.hidden for g in right.fields)]
        else:
            using = [u.name for u in join.args.get("using") or []]
        fields = tuple(left.fields) + tuple(right.fields)
        condition = None
        pairs: list[tuple[Field, Field]] = []
        if using:
            pairs = _using_pairs(using, left, right)
            conds = [exp.EQ(this=_col(lf), expression=_col(rf)) for lf, rf in pairs]
            condition = exp.and_(*conds) if len(conds) > 1 else conds[0]
        elif join.args.get("on") is not None and not _is_true(join.args["on"]):
            condition = self._expr(join.args["on"], Scope(list(fields), outer))
        if side in ("left", "right", "full"):
            jkind = side
        else:
            jkind = "cross" if condition is None else "inner"
        node: n.PlanNode
        if lateral is not None and lateral.used:
            node = _lateral_join(fields, left, right, jkind, condition, lateral.table)
        else:
            node = n.Join(fields, left=left, right=right, kind=jkind, condition=condition)
        return _merge_using(node, pairs, jkind) if pairs else node

    # Set operations and VALUES ------------------------------------------------------------------

    def _plan_setop(self, query, outer: Scope | None) -> n.PlanNode:
        branches = [query.expression]
        first = query.this
        if isinstance(query, exp.Union):  # a chain of one kind of UNION: one node, no recursion
            while _continues_union(first, query):
                branches.append(first.expression)
                first = first.this
        inputs = [self.plan_query(first, outer)]
        for branch in reversed(branches):
            inputs.append(self.plan_query(branch, outer))
            if len(inputs[-1].fields) != len(inputs[0].fields):
                kind = type(query).__name__.upper()
                raise SqlVecError(f"each {kind} query must have the same number of columns",
                                  sqlstate="42601")
        kind = {exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except"}[type(query)]
        fields = tuple(Field(f.name, None, None) for f in inputs[0].fields)
        node: n.PlanNode = n.SetOp(fields, inputs=tuple(inputs), kind=kind,
                                   all=not query.args.get("distinct"))
        order = query.args.get("order")
        if order is not None:
            scope = Scope(list(fields), outer)
            items = [(_col(f), f.name) for f in fields]
            keys = []
            for o in order.expressions:
                e = self._resolve_order_expr(o.this, items, scope)
                keys.append(_sort_key(o, e))
            node = n.Sort(fields, child=node, keys=tuple(keys))
        return self._plan_limit(query, node, outer)

    def _plan_values(self, values: exp.Values, outer: Scope | None) -> n.PlanNode:
        scope = Scope([], outer)
        rows = []
        width = None
        for row in values.expressions:
            cells = row.expressions if isinstance(row, exp.Tuple) else [row]
            if width is None:
                width = len(cells)
            elif len(cells) != width:
                raise SqlVecError("VALUES lists must all be the same length", sqlstate="42601")
            rows.append(tuple(self._expr(c, scope) for c in cells))
        fields = tuple(Field(f"column{i + 1}") for i in range(width or 0))
        return n.Values(fields, rows=tuple(rows))

    # Expressions --------------------------------------------------------------------------------

    def _expr(self, e: exp.Expression, scope: Scope) -> exp.Expression:
        """Validate column references and plan the subqueries of an expression."""

        def visit(x: exp.Expression) -> exp.Expression:
            if row_values.is_row_subquery_comparison(x):
                # `(a, b) = (SELECT x, y ...)`: the subquery's columns as scalar subqueries.
                columns = self._row_subquery(x.expression, x.this, scope)
                return visit_tree(type(x)(this=x.this, expression=columns))
            expanded = row_values.expand(x)
            if expanded is not None:  # a row comparison: the scalar condition it means
                return visit_tree(expanded)
            if isinstance(x, exp.Anonymous) and row_values.row_items(x) is not None:
                raise located(FeatureNotSupported(
                    "ROW constructors are supported only in comparisons"), x)
            if isinstance(x, exp.Subquery) and not isinstance(x.parent, exp.In):
                planned = self._plan_subquery(x.this, scope)
                if len(planned[0].fields) != 1:
                    raise SqlVecError("subquery must return only one column", sqlstate="42601")
                return self._subplan("scalar", planned, scope)
            if isinstance(x, exp.Exists):
                return self._subplan("exists", self._plan_subquery(x.this, scope), scope)
            if isinstance(x, exp.In) and x.args.get("query") is not None:
                q = x.args["query"]
                q = q.this if isinstance(q, exp.Subquery) else q
                planned = self._plan_subquery(q, scope)
                row_values.check_subquery_width(x.this, len(planned[0].fields))
                return self._subplan("in", planned, scope,
                                     this=visit_tree(row_values.as_tuple(x.this)))
            if isinstance(x, (exp.Any, exp.All)) and isinstance(x.this, (exp.Subquery, exp.Select)):
                q = x.this
                q = q.this if isinstance(q, exp.Subquery) else q
                planned = self._plan_subquery(q, scope)
                if len(planned[0].fields) != 1:
                    raise SqlVecError("subquery has too many columns", sqlstate="42601")
                return type(x)(this=self._subplan("array", planned, scope))
            if isinstance(x, exp.Array) and len(x.expressions) == 1 and isinstance(
                    x.expressions[0], (exp.Select, exp.Subquery)):
                q = x.expressions[0]
                q = q.this if isinstance(q, exp.Subquery) else q
                return self._subplan("array", self._plan_subquery(q, scope), scope)
            if isinstance(x, exp.Column) and isinstance(x.parent, exp.Collate) and \
                    x.arg_key == "expression":
                return x  # COLLATE pg_catalog.default: a collation name, not a column
            if isinstance(x, exp.Column) and not isinstance(x.this, exp.Star):
                try:
                    resolve(scope, x)
                except SqlVecError as error:
                    raise located(error, x) from None
                return x
            return x

        def visit_tree(x: exp.Expression) -> exp.Expression:
            return x.transform(visit, copy=False)

        return e.copy().transform(visit, copy=False)


    def _row_subquery(self, sub: exp.Subquery, row: exp.Expression, scope: Scope) -> exp.Tuple:
        """The row a row subquery yields, as one scalar SubPlan per column
        (`row_subquery_cells`)."""
        cells = self.row_subquery_cells(sub.this, scope)
        row_values.check_subquery_width(row, len(cells))
        return exp.Tuple(expressions=cells)

    def row_subquery_cells(self, query: exp.Expression, scope: Scope) -> list[SubPlan]:
        """The columns of a row sub-SELECT (any query: `*`, set operations), one scalar SubPlan
        each, sharing one run of the query: each fails with 21000 on more than one row and is
        NULL on none, as the row is."""
        planned = self._plan_subquery(query, scope)
        shared = f"rowsub{next(_ROW_SUBQUERIES)}"
        width = sum(1 for f in planned[0].fields if not f.hidden)
        return [self._subplan("scalar", planned, scope, row=shared, column=i)
                for i in range(width)]

    # Correlated subqueries ----------------------------------------------------------------------

    def _plan_subquery(self, query: exp.Expression,
                       scope: Scope) -> tuple[n.PlanNode, SelectSteps | None]:
        """A subquery's plan, with the steps that planned it when its keyed form may be made
        from them (`_decorrelate`): one query block with a WHERE, no LIMIT, OFFSET, WITH,
        DISTINCT ON, and no window or set-returning call in its select list."""
        if not _decorrelatable(query):
            return self.plan_query(query, scope), None
        steps = self._select_steps(query, scope)
        return self._plan_output(steps.below_output, steps.output, scope, query), steps

    def _subplan(self, kind: str, planned: tuple[n.PlanNode, SelectSteps | None], scope: Scope,
                 this: exp.Expression | None = None, **row: object) -> SubPlan:
        plan, steps = planned
        sub = SubPlan(this=this, kind=kind, plan=plan, **row)
        keyed = self._decorrelate(kind, steps, scope) if steps is not None else None
        if keyed is not None:
            for key, value in keyed.items():
                sub.set(key, value)
        return sub

    def _decorrelate(self, kind: str, steps: SelectSteps, scope: Scope) -> dict | None:
        """The keyed form of a subquery correlated through equalities, or None.

        `(SELECT v FROM t WHERE t.k = o.x AND o.flag AND <rest>)`, with <rest> not referring
        to the outer query, also gets the plan of `SELECT v, t.k FROM t WHERE <rest>` (`keyed`);
        the executor hash-joins the outer rows' `o.x` (`keys`) against t.k, rows where `o.flag`
        (`guard`) is not true matching nothing, instead of running the subquery per outer row.
        An aggregate is grouped by the keys too, and without GROUP BY, outer rows without a
        group take the aggregate over no rows (`empty`: the subquery with WHERE false). The
        executor falls back to per-row evaluation if the keyed plan still refers to the outer
        query.

        The keyed form is made from the subquery's own planning steps, not planned again: the
        same FROM tree and planned expressions (their names resolved once, nested subqueries
        planned once), with the correlated conjuncts left out of the WHERE and the keys added
        to the select list (and to the groups)."""
        inner = Scope(list(steps.from_node.fields), scope)
        inner_keys, outer_keys, guards, rest = [], [], [], []
        for conjunct in steps.where:
            if isinstance(conjunct, exp.EQ):
                a, b = _reach(conjunct.this, inner), _reach(conjunct.expression, inner)
                if (a, b) == ("inner", "outer"):
                    inner_keys.append(conjunct.this)
                    outer_keys.append(conjunct.expression)
                    continue
                if (a, b) == ("outer", "inner"):
                    inner_keys.append(conjunct.expression)
                    outer_keys.append(conjunct.this)
                    continue
            if _reach(conjunct, inner) == "outer":
                guards.append(conjunct)
            else:
                rest.append(conjunct)
        if not inner_keys:
            return None
        filtered = steps.from_node if not rest else \
            self._plan_where(steps.from_node, _and([c.copy() for c in rest]), scope)
        keys = [k.copy() for k in inner_keys]
        key_names = [self.ctx.fresh("key") for _ in keys]
        empty = None
        aggregate = steps.aggregate
        if kind == "exists":
            if aggregate is not None:
                return None
            below = _with_input(steps.below_output, steps.filtered, filtered)
            output = Output([exp.Literal.number(1)] + keys, ["?column?"] + key_names,
                            1 + len(keys), [])
        else:
            if aggregate is None:
                below = _with_input(steps.below_output, steps.filtered, filtered)
                key_exprs: list[exp.Expression] = keys
            else:
                if kind != "scalar":
                    return None
                if not aggregate.groups:  # its value over no rows, for outer rows without any
                    nothing = n.Filter(steps.from_node.fields, child=steps.from_node,
                                       predicate=exp.false())
                    empty = self._plan_output(
                        _with_input(steps.below_output, steps.filtered, nothing),
                        steps.output.copy(), scope)
                key_fields = tuple(Field(name, None, _field_type(k, inner), _source(k, inner),
                                         hidden=True) for k, name in zip(keys, key_names))
                width = len(aggregate.groups)
                grouped = n.Aggregate(
                    aggregate.fields[:width] + key_fields + aggregate.fields[width:],
                    child=filtered, groups=aggregate.groups + tuple(keys),
                    aggregates=aggregate.aggregates)
                below = _with_input(steps.below_output, aggregate, grouped)
                key_exprs = [_col(f) for f in key_fields]
            # The keys follow the select list's visible columns (the hidden ORDER BY ones last).
            output, visible = steps.output.copy(), steps.output.visible
            output = Output(output.exprs[:visible] + key_exprs + output.exprs[visible:],
                            output.names[:visible] + key_names + output.names[visible:],
                            visible + len(keys),
                            [(o, pos if pos < visible else pos + len(keys))
                             for o, pos in output.sorted_by],
                            output.distinct)
        plan = self._plan_output(below, output, scope)
        width = 1 if kind == "exists" else steps.output.visible  # (a row sub-SELECT's: more)
        if len([f for f in plan.fields if not f.hidden]) != width + len(inner_keys):
            return None
        out: dict = {"keyed": plan, "keys": [k.copy() for k in outer_keys]}
        if guards:
            out["guard"] = _and([g.copy() for g in guards])
        if empty is not None:
            out["empty"] = empty
        return out


# Helpers ----------------------------------------------------------------------------------------


def located(error: SqlVecError, node: exp.Expression) -> SqlVecError:
    """`error` with PostgreSQL's cursor position (1-based, in characters) at `node`: where
    the name of a column or relation starts in the statement text, when the parser recorded
    it. A position already set (a nested subquery's) is kept."""
    if error.position is None:
        position = source_position(node)
        if position is not None:
            error.position = position
    return error


def source_position(node: exp.Expression) -> int | None:
    """The 1-based character position of a name in the statement text, for the error's P field, or
    None."""
    if isinstance(node, exp.Table):
        parts = [node.args.get(k) for k in ("catalog", "db", "this")]
    elif isinstance(node, exp.Column):
        parts = list(node.parts)
    else:
        parts = [node]
    starts = [i.meta["start"] for part in parts if isinstance(part, exp.Expression)
              for i in part.find_all(exp.Identifier) if "start" in i.meta]
    return min(starts) + 1 if starts else None


def _decorrelatable(query: exp.Expression) -> bool:
    """Whether a subquery is of the form whose keyed form `_decorrelate` can make: one query
    block with a WHERE, and nothing that would read across the keys' groups (LIMIT, OFFSET,
    DISTINCT ON, a window or set-returning call in the select list) nor a WITH or INTO."""
    if not isinstance(query, exp.Select) or query.args.get("where") is None:
        return False
    if any(query.args.get(k) for k in ("with_", "with", "limit", "offset", "fetch", "windows",
                                       "into")):
        return False
    distinct = query.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        return False
    return not any(_finds(item, (exp.Window,)) or _finds(item, _is_set_returning)
                   for item in query.expressions)


def _with_input(node: n.PlanNode, old: n.PlanNode, new: n.PlanNode) -> n.PlanNode:
    """The chain of one-input nodes from `node` down to `old` (aggregate, HAVING, windows)
    rebuilt over `new` instead: a node's columns are its input's then its own (an
    aggregate's are its own)."""
    if node is old:
        return new
    child = _with_input(node.child, old, new)
    if isinstance(node, n.Aggregate):
        return replace(node, child=child)
    own = node.fields[len(node.child.fields):]
    return replace(node, child=child, fields=tuple(child.fields) + tuple(own))


def _reach(e: exp.Expression, inner: Scope) -> str | None:
    """"inner" when the columns of `e` are all the subquery's own (at least one), "outer" when
    they all belong to enclosing queries (at least one), None otherwise (mixed, constant, or
    holding a subquery, an aggregate or a window)."""
    found = set()
    for x in e.walk():
        if isinstance(x, (exp.Subquery, exp.Select, exp.Exists, SubPlan, exp.Window)) or \
                is_aggregate(x):
            return None
        if isinstance(x, exp.Column):
            if isinstance(x.this, exp.Star):
                return None
            if isinstance(x.parent, exp.Collate) and x.arg_key == "expression":
                continue
            try:
                level, _ = resolve(inner, x)  # by the field planning recorded on it
            except SqlVecError:
                return None
            found.add("inner" if level == 0 else "outer")
    return found.pop() if len(found) == 1 else None


def _finds(e: exp.Expression, classes) -> bool:
    """Whether `e` holds a node of `classes` (or one `classes(node)` accepts) outside nested
    subqueries."""
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, (exp.Subquery, exp.Select, exp.Exists)) and x is not e:
            continue
        if (classes(x) if callable(classes) and not isinstance(classes, tuple)
                else isinstance(x, classes)):
            return True
        stack.extend(x.iter_expressions())
    return False


def output_name(e: exp.Expression) -> str:
    """The column name PostgreSQL gives a select-list item."""
    if isinstance(e, exp.Alias):
        return e.alias
    if isinstance(e, exp.Column):
        return e.name
    if isinstance(e, exp.Cast):
        # A column or function name inside the cast wins; otherwise the type's name.
        inner = e.this
        while isinstance(inner, (exp.Cast, exp.Paren)):
            inner = inner.this
        if isinstance(inner, exp.Column) or _is_named_function(inner):
            return output_name(inner)
        t = e.args.get("to")
        if isinstance(t, exp.ObjectIdentifier):
            return t.name.lower()
        try:
            return sql_type(t).name.lstrip("_")
        except SqlVecError:
            return "?column?"
    if isinstance(e, exp.Window):
        return output_name(e.this)
    if isinstance(e, exp.Filter):
        return output_name(e.this)
    if isinstance(e, exp.Case):
        return "case"
    if isinstance(e, exp.Exists):
        return "exists"
    if isinstance(e, exp.Array):
        return "array"
    if isinstance(e, (exp.Subquery,)):
        inner = e.this
        if isinstance(inner, exp.Select) and len(inner.expressions) == 1:
            return output_name(inner.expressions[0])
        return "?column?"
    if isinstance(e, exp.Paren):
        return output_name(e.this)
    if isinstance(e, exp.Dot) and isinstance(e.expression, (exp.Func, exp.Anonymous)):
        return output_name(e.expression)
    return function_name(e) or "?column?"


def _quoted(text: str) -> str:
    """A SQL string literal of `text`."""
    return "'" + text.replace("'", "''") + "'"


def _is_named_function(e: exp.Expression) -> bool:
    return function_name(e) is not None


def _renamed(fields, qualifier: str, columns: list[str]) -> tuple[Field, ...]:
    visible = [f for f in fields if not f.hidden]
    if len(columns) > len(visible):
        raise SqlVecError(
            f'table "{qualifier}" has {len(visible)} columns available but {len(columns)} '
            "columns specified", sqlstate="42P10")
    out = []
    i = 0
    for f in fields:
        if f.hidden:
            continue
        name = columns[i] if i < len(columns) else f.name
        out.append(Field(name, qualifier, f.type, f.source))
        i += 1
    return tuple(out)


def _continues_union(inner: exp.Expression, outer: exp.Expression) -> bool:
    """Whether `inner`, the left operand of the UNION `outer`, is a UNION of the same kind
    that adds nothing of its own (no ORDER BY, LIMIT, OFFSET or WITH): `(a ∪ b) ∪ c` is then
    `a ∪ b ∪ c`, whatever its nesting."""
    return (isinstance(inner, exp.Union)
            and bool(inner.args.get("distinct")) == bool(outer.args.get("distinct"))
            and not any(inner.args.get(key) for key in ("order", "limit", "offset", "with_",
                                                         "with")))


def _conjuncts(e: exp.Expression) -> list[exp.Expression]:
    out = []
    stack = [e]
    while stack:
        e = stack.pop()
        while isinstance(e, exp.Paren):
            e = e.this
        if isinstance(e, exp.And):
            stack += [e.expression, e.this]
        else:
            out.append(e)
    return out


def _and(terms: list[exp.Expression]) -> exp.Expression:
    out = terms[0]
    for term in terms[1:]:
        out = exp.And(this=out, expression=term)
    return out


def _push_into(join: n.Join | n.LateralJoin, conjunct: exp.Expression,
               outer: Scope | None) -> n.PlanNode | None:
    """`join` with the WHERE conjunct applied inside it, or None when it must stay above."""
    sides = _join_sides(conjunct, join, outer)
    if not sides:
        return None  # constant, outer-only or unresolvable: evaluated once above the join
    if isinstance(join, n.LateralJoin):
        # The right side runs per left row: a filter on the left side only is applied first;
        # anything else is checked on the pairs, as the ON condition is.
        if sides == {"left"}:
            return replace(join, left=_place(join.left, conjunct, outer))
        if join.kind != "inner":
            return None
        condition = conjunct if join.condition is None else exp.And(this=join.condition,
                                                                     expression=conjunct)
        return replace(join, condition=condition)
    if sides == {"left"} and join.kind in ("inner", "cross", "left"):
        return replace(join, left=_place(join.left, conjunct, outer))
    if sides == {"right"} and join.kind in ("inner", "cross", "right"):
        return replace(join, right=_place(join.right, conjunct, outer))
    if join.kind in ("inner", "cross"):
        condition = conjunct if join.condition is None else exp.And(this=join.condition,
                                                                     expression=conjunct)
        return replace(join, condition=condition, kind="inner")
    return None


def _place(node: n.PlanNode, conjunct: exp.Expression, outer: Scope | None) -> n.PlanNode:
    if isinstance(node, _JOINS):
        pushed = _push_into(node, conjunct, outer)
        if pushed is not None:
            return pushed
    if isinstance(node, n.Filter) and node.clause == "WHERE":
        return replace(node, predicate=exp.And(this=node.predicate, expression=conjunct))
    return n.Filter(node.fields, child=node, predicate=conjunct)


def _join_sides(e: exp.Expression, join: n.Join | n.LateralJoin,
                outer: Scope | None) -> set[str] | None:
    """Which inputs of `join` the columns of `e` come from ({"left"}, {"right"} or both)."""
    scope = Scope(list(join.fields), outer)
    width = len(join.left.fields)
    sides = set()
    for col in e.find_all(exp.Column):
        if isinstance(col.this, exp.Star) or (isinstance(col.parent, exp.Collate)
                                              and col.arg_key == "expression"):
            continue
        try:
            level, index = resolve(scope, col)
        except SqlVecError:
            return None
        if level == 0:
            sides.add("left" if index < width else "right")
    return sides


def _using_pairs(names: list[str], left: n.PlanNode, right: n.PlanNode) -> list[tuple[Field, Field]]:
    """The (left, right) fields each name of JOIN ... USING (or the common names of a NATURAL
    JOIN) joins, resolved once here as PostgreSQL does: among the columns each side shows
    (a side's merged USING column once, not its sources, nor system columns), with its
    errors for a name listed twice (42701), missing on a side (42703) or shown twice by one
    (42702)."""
    pairs = []
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SqlVecError(f'column name "{name}" appears more than once in USING clause',
                              sqlstate="42701")
        pair = []
        for side, node in (("left", left), ("right", right)):
            shown = [f for f in node.fields if f.name == name and not f.hidden]
            if not shown:
                raise UndefinedColumn(f'column "{name}" specified in USING clause does not exist '
                                      f"in {side} table")
            if len(shown) > 1:
                raise AmbiguousColumn(f'common column name "{name}" appears more than once in '
                                      f"{side} table")
            pair.append(shown[0])
        pairs.append((pair[0], pair[1]))
    return pairs


def _merge_using(join: n.Join, pairs: list[tuple[Field, Field]], kind: str) -> n.PlanNode:
    """JOIN ... USING / NATURAL JOIN: one merged column per pair, first in `*` as PostgreSQL
    orders them; its references are born resolved (`_col`), so the binder places them by the
    fields they name, never by name. Its value is the left one for inner and left joins, the
    right one for right joins, when that side is of the pair's common type; otherwise (types
    differ, or are not known before the operators compute them) COALESCE of both sides,
    which is that value in the type PostgreSQL resolves (`int4` USING `int8`: int8), and
    for full joins the one present. The sides' own columns stay reachable by qualified name."""
    merged_fields, merged_exprs = [], []
    for lf, rf in pairs:
        first, second = (rf, lf) if kind == "right" else (lf, rf)
        if kind != "full" and first.type is not None and first.type == second.type:
            value: exp.Expression = _col(first)
            merged = Field(first.name, None, first.type, first.source)
        else:
            value = exp.Coalesce(this=_col(first), expressions=[_col(second)])
            merged = Field(lf.name, None, first.type if first.type == second.type else None)
        merged_fields.append(merged)
        merged_exprs.append(value)
    used = {id(f) for pair in pairs for f in pair}
    rest = [Field(f.name, f.table, f.type, f.source, hidden=f.hidden or id(f) in used)
            for f in join.fields]
    exprs = merged_exprs + [_col(f) for f in join.fields]
    return n.Project(tuple(merged_fields) + tuple(rest), child=join, exprs=tuple(exprs))


_JOINS = (n.Join, n.LateralJoin)


def _is_true(e: exp.Expression) -> bool:
    """`ON true` (what LEFT JOIN LATERAL ... ON true says): no condition at all."""
    while isinstance(e, exp.Paren):
        e = e.this
    return isinstance(e, exp.Boolean) and bool(e.this)


@dataclass
class LateralScope(Scope):
    """The FROM items left of a LATERAL item (or of a function in FROM), as the item's outer
    scope while it is planned; `used` records whether any name resolved here, i.e. whether
    the item really refers to them (then the join is a LateralJoin, else a plain Join)."""

    used: bool = False
    table: str | None = None  # the relation of the first reference, for errors

    def find(self, name: str, table: str | None = None) -> int | None:
        """Scope.find, noting a hit."""
        index = super().find(name, table)
        if index is not None:
            self.found(index)
        return index

    def found(self, index: int) -> None:
        """Note the first reference to these FROM items."""
        if not self.used:
            self.used, self.table = True, self.fields[index].table


def _may_be_lateral(item: exp.Expression) -> bool:
    """Whether a FROM item may refer to the items on its left: LATERAL ones, and functions,
    which PostgreSQL makes lateral implicitly (`FROM t, generate_series(1, t.n)`)."""
    return isinstance(item, (exp.Lateral, exp.Unnest)) or (
        isinstance(item, exp.Table) and isinstance(item.this, (exp.Func, exp.Anonymous)))


def _lateral_item(item: exp.Lateral) -> exp.Expression:
    """The FROM item a LATERAL wraps, with the LATERAL's alias (and WITH ORDINALITY) moved to
    it: `LATERAL (SELECT ...) s`, `LATERAL unnest(a) u(x)`, `LATERAL generate_series(1, n) g`."""
    if item.args.get("view") or item.args.get("outer"):
        raise FeatureNotSupported("LATERAL VIEW is not supported")
    inner = item.this.copy()
    alias = item.args.get("alias")
    if isinstance(inner, (exp.Subquery, exp.Unnest)):
        if alias is not None:
            inner.set("alias", alias.copy())
        return inner
    if isinstance(inner, (exp.Func, exp.Anonymous)):
        return exp.Table(this=inner, alias=alias.copy() if alias is not None else None,
                         ordinality=item.args.get("ordinality"))
    raise FeatureNotSupported(f"LATERAL {type(inner).__name__} is not supported")


def _not_lateral(error: SqlVecError, left: n.PlanNode) -> SqlVecError:
    """A FROM item that is not LATERAL naming an item on its left: PostgreSQL's message and
    hint instead of "missing FROM-clause entry"."""
    prefix = 'missing FROM-clause entry for table "'
    if error.sqlstate != "42P01" or not error.message.startswith(prefix):
        return error
    table = error.message[len(prefix):-1]
    if not any(f.table == table for f in left.fields):
        return error
    error.message = f'invalid reference to FROM-clause entry for table "{table}"'
    error.hint = (f'There is an entry for table "{table}", but it cannot be referenced from '
                  "this part of the query.")
    error.args = (error.message,)
    return error


def _lateral_join(fields: tuple[Field, ...], left: n.PlanNode, right: n.PlanNode, kind: str,
                  condition: exp.Expression | None, table: str | None) -> n.LateralJoin:
    """The join of a LATERAL item that refers to its left side: inner (CROSS JOIN, comma,
    JOIN ... ON) or LEFT; RIGHT and FULL cannot be, as in PostgreSQL (42P10)."""
    if kind in ("right", "full"):
        raise SqlVecError(f'invalid reference to FROM-clause entry for table "{table}"',
                          sqlstate="42P10",
                          detail="The combining JOIN type must be INNER or LEFT for a LATERAL "
                                 "reference.")
    return n.LateralJoin(fields, left=left, right=right,
                         kind="left" if kind == "left" else "inner", condition=condition)


def _inline_named_windows(select: exp.Select) -> exp.Select:
    """`OVER w ... WINDOW w AS (...)`: each reference replaced by the named definition."""
    named = {w.name: w for w in select.args["windows"]}
    select = select.copy()

    def inline(x: exp.Expression) -> exp.Expression:
        if isinstance(x, exp.Window) and isinstance(x.args.get("alias"), exp.Identifier) and \
                not x.args.get("partition_by") and not x.args.get("order"):
            definition = named.get(x.args["alias"].name)
            if definition is None:
                raise SqlVecError(f'window "{x.args["alias"].name}" does not exist',
                                  sqlstate="42704")
            out = definition.copy()
            out.set("this", x.this)
            out.set("over", x.args.get("over"))
            return out
        return x

    select.set("expressions", [item.transform(inline) for item in select.expressions])
    if select.args.get("order") is not None:
        select.set("order", select.args["order"].transform(inline))
    select.set("windows", None)
    return select


# Several columns of one FROM item named alike (`unnest(a, b)` gives two "unnest"s): the
# second and later carry this mark and their position, so that `*` can reference each one, and
# are shown under the name PostgreSQL gives them.
_SAME_NAME = "\x00"


def _shown(name: str) -> str:
    return name.partition(_SAME_NAME)[0]


def _col(f: Field) -> exp.Column:
    """A reference to the field `f` the planner holds: resolved to it without a lookup."""
    return resolved(exp.column(f.name, table=f.table) if f.table else exp.column(f.name), f)


def _collect(e: exp.Expression, classes) -> list[exp.Expression]:
    """Calls of `classes` (or that the predicate `classes` accepts) in `e`, not looking inside
    subqueries (planned or not yet: an ORDER BY or HAVING term's) or window specs of others.
    Aggregates (`AGGREGATES`) are taken with their FILTER, and not under OVER (those are window
    calls)."""
    aggregates = classes is AGGREGATES
    found = []
    stack = [e]  # pre-order without recursion: a 10,000-term chain is no deeper than one term
    while stack:
        x = stack.pop()
        if isinstance(x, (SubPlan, exp.Subquery, exp.Select)):
            continue
        hit = classes(x) if callable(classes) and not isinstance(classes, tuple) \
            else isinstance(x, classes)
        if hit and aggregates and isinstance(x.parent, exp.Window) and x.parent.this is x:
            hit = False
        if hit:
            if aggregates and isinstance(x.parent, exp.Filter) and x.parent.this is x:
                found.append(x.parent)
            else:
                found.append(x)
            continue
        stack.extend(reversed(list(x.iter_expressions())))
    return found


def _reject_aggregates(e: exp.Expression, clause: str) -> None:
    if _collect(e, AGGREGATES):
        raise GroupingError(f"aggregate functions are not allowed in {clause}")
    if _collect(e, (exp.Window,)):
        raise SqlVecError(f"window functions are not allowed in {clause}", sqlstate="42P20")


def _transform_outside_subplans(e: exp.Expression, fn) -> exp.Expression:
    def visit(x):
        if isinstance(x, SubPlan):
            return x
        return fn(x)

    return e.transform(visit, copy=True)


def _regroup_outer_references(e: exp.Expression, inputs: list[Field],
                               grouped: dict[tuple[int, object], Field]) -> None:
    """Point the outer references of `e`'s subqueries to the grouped query's input (`inputs`)
    at the aggregate's output field that holds the grouped column (`grouped`, by input field
    and system column), in place: they are then bound to it by that field, not by their name
    again. A reference to a column not grouped is 42803, as PostgreSQL reports it (only plain
    columns match there: a grouped expression is not matched inside a subquery)."""
    inside = {id(f) for f in inputs}
    seen: set[int] = set()
    stack: list[object] = []
    for sub in _subplans_outside(e):
        if sub.this is not None:  # the operand of `x IN (...)`: of the grouped query itself
            _regroup_column_refs(sub.this, inside, grouped, strict=False)
        seen.add(id(sub))
        stack += [v for k, v in sub.args.items() if k != "this"]
    while stack:
        x = stack.pop()
        if x is None or isinstance(x, (str, Field)) or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, exp.Expression):
            _regroup_column_refs(x, inside, grouped, strict=True)
            for sub in _subplans_outside(x):
                stack += list(sub.args.values())
        elif isinstance(x, (tuple, list)):
            stack.extend(x)
        elif isinstance(x, n.PlanNode) or is_dataclass(x) and not isinstance(x, type):
            stack.extend(vars(x).values())


def _regroup_column_refs(e: exp.Expression, inside: set[int],
                         grouped: dict[tuple[int, object], Field], strict: bool) -> None:
    """`_regroup_outer_references` for the column references of `e` outside its subqueries."""
    stack = [e]
    while stack:
        col = stack.pop()
        if isinstance(col, SubPlan):
            continue
        stack.extend(col.iter_expressions())
        known = col.meta.get(RESOLVED) if isinstance(col, exp.Column) and \
            col._meta is not None else None
        if known is None or id(known) not in inside:
            continue
        output = grouped.get((id(known), system_column(known, col.name)))
        if output is not None:
            col.meta[RESOLVED] = output
        elif strict:
            shown = f"{known.table}.{known.name}" if known.table else known.name
            raise located(GroupingError(
                f'subquery uses ungrouped column "{shown}" from outer query'), col)


def _subplans_outside(e: exp.Expression) -> list[SubPlan]:
    """The subqueries of `e` not inside another of them."""
    out = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, SubPlan):
            out.append(x)
            continue
        stack.extend(x.iter_expressions())
    return out


def _columns_outside_subplans(e: exp.Expression) -> list[exp.Column]:
    out = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, (SubPlan, exp.Window)):
            continue
        if isinstance(x, exp.Column):
            out.append(x)
        stack.extend(reversed(list(x.iter_expressions())))
    return out


def _is_outer(col: exp.Column, scope: Scope) -> bool:
    try:
        level, _ = resolve(scope, col)
    except SqlVecError:
        return False
    return level > 0


def _same(a: exp.Expression, b: exp.Expression) -> bool:
    """Whether two output expressions are the same: equal, or columns naming one field
    (`SELECT *, id ... ORDER BY id`)."""
    if isinstance(a, exp.Column) and isinstance(b, exp.Column) and \
            a.meta.get(RESOLVED) is not None and b.meta.get(RESOLVED) is not None:
        return a.meta[RESOLVED] is b.meta[RESOLVED]
    return a == b


def _position_of(e: exp.Expression, exprs: list[exp.Expression]) -> int | None:
    for i, x in enumerate(exprs):
        if x == e:
            return i
    return None


def _with_this(o: exp.Ordered, this: exp.Expression) -> exp.Ordered:
    out = o.copy()
    out.set("this", this)
    return out


def _sort_key(o: exp.Ordered, e: exp.Expression) -> n.SortKey:
    desc = bool(o.args.get("desc"))
    nulls_first = o.args.get("nulls_first")
    return n.SortKey(e, desc=desc, nulls_first=nulls_first if nulls_first is not None else desc)


def _references(e: exp.Expression, name: str) -> bool:
    return any(t.name == name and not t.db for t in e.find_all(exp.Table))


def _field_type(e: exp.Expression, scope: Scope) -> SqlType | None:
    if isinstance(e, exp.Column):
        try:
            level, i = resolve(scope, e)
        except SqlVecError:
            return None
        if level == 0:
            system = system_column(scope.fields[i], e.name)
            return system.type if system else scope.fields[i].type
    return None


def _source(e: exp.Expression, scope: Scope) -> tuple[int, int]:
    if isinstance(e, exp.Column):
        try:
            level, i = resolve(scope, e)
        except SqlVecError:
            return (0, 0)
        if level == 0:
            f = scope.fields[i]
            system = system_column(f, e.name)
            return (f.source[0], system.attnum) if system else f.source
    return (0, 0)


def explain_sql(e: exp.Expression) -> str:
    """An expression as EXPLAIN prints it; the dialect's SQL rendering."""
    return to_sql(e)

