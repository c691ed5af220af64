"""Logical plan nodes: frozen dataclasses, one per relational step, with an EXPLAIN printer.

Expressions inside nodes are sqlglot trees whose column references name the child's fields
(`Field.name`, qualified by `Field.table`); once the plan is finished, bind.py gives each its
position there (a `ColumnRef`), which is what the executor compiles.
Aggregate and window calls are replaced by references to the columns their node adds, named
`__agg<n>` / `__win<n>`; subqueries by `SubPlan` nodes carrying their own plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sqlvec.sql.binder import Field
from sqlvec.sql.dialect import to_sql


class SubPlan(exp.Expression):
    """A subquery inside an expression. args: kind ("scalar" | "exists" | "in" | "array"),
    this (the IN operand, for "in"), plan (a PlanNode), negate.

    A subquery correlated through equalities also carries its keyed form (planner.py
    `_decorrelate`): `keyed`, a plan that does not refer to the outer query and returns the
    value column then one column per key; `keys`, the outer expressions those key columns
    must equal; `guard`, an outer-only condition without which a row matches nothing; and
    `empty`, for an aggregate, the plan of its value over no rows.

    A column of a row sub-SELECT (`(a, b) = (SELECT x, y ...)`, UPDATE's `SET (a, b) = (SELECT
    ...)`) is a scalar SubPlan of the whole query with `row`, a name its columns share (they
    share one run of the query), and `column`, which of its visible columns it is."""

    arg_types = {"this": False, "kind": True, "plan": True, "negate": False, "keyed": False,
                 "keys": False, "guard": False, "empty": False, "row": False, "column": False}


def expr_sql(expression: exp.Expression) -> str:
    """SQL text of a plan expression for EXPLAIN. Subqueries print as `(SubPlan n)` (numbered
    in order, as PostgreSQL does): the SQL generator does not know the SubPlan node."""
    if not any(isinstance(node, SubPlan) for node in expression.walk()):
        return to_sql(expression)
    numbers = iter(range(1, 1 << 30))

    def placeholder(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, SubPlan):
            return node
        ref = f"(SubPlan {next(numbers)})"
        kind, negate = node.args.get("kind"), bool(node.args.get("negate"))
        if kind == "exists":
            text = ("NOT " if negate else "") + f"EXISTS {ref}"
        elif kind == "in" and node.this is not None:
            text = f"{expr_sql(node.this)} {'NOT ' if negate else ''}IN {ref}"
        elif kind == "array":
            text = f"ARRAY{ref}"
        else:
            text = ref
        return exp.Var(this=text)

    return to_sql(expression.transform(placeholder))


@dataclass(frozen=True)
class PlanNode:
    """Base of every plan node: `fields` are its output columns, which the parent's expressions
    name."""

    fields: tuple[Field, ...]

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return ()

    def describe(self) -> str:
        """The node's line(s) in EXPLAIN, in PostgreSQL's wording where there is one, so plans read
        as clients expect."""
        return type(self).__name__


@dataclass(frozen=True)
class OneRow(PlanNode):
    """SELECT without FROM: one row, no columns."""

    def describe(self) -> str:
        return "Result"


@dataclass(frozen=True)
class Scan(PlanNode):
    """Rows of a base table (live rows only), optionally filtered while scanning."""

    table_id: int = 0
    table_name: str = ""
    alias: str = ""
    filter: exp.Expression | None = None
    # The table's unique keys: (constraint name, positions of its columns in `fields`).
    keys: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # Set by rules.use_key_lookup when the filter pins a unique key: which key, the filter's
    # conjuncts that pin it, and per wanted key a tuple of row-independent value expressions.
    key: int | None = None
    key_conds: tuple[exp.Expression, ...] = ()
    key_values: tuple[tuple[exp.Expression, ...], ...] = ()
    # The table's btree indexes (index_selection.BtreeIndex) and, set by
    # index_selection.use_btree_index, the paths through them the filter allows; the executor
    # picks one (or the scan) per run from the rows each would return (execution/index_scan.py).
    btree: tuple = ()
    index_paths: tuple = ()

    def describe(self) -> str:
        name = self.table_name if self.alias == self.table_name else f"{self.table_name} {self.alias}"
        if self.key is None:
            text = f"Seq Scan on {name}"
            if self.filter is not None:
                text += f"\n  Filter: {expr_sql(self.filter)}"
            return text
        conds = [f"({expr_sql(c)})" for c in self.key_conds]
        cond = conds[0] if len(conds) == 1 else "(" + " AND ".join(conds) + ")"
        text = f"Index Scan using {self.keys[self.key][0]} on {name}\n  Index Cond: {cond}"
        rest = [c for c in conjuncts(self.filter) if not any(c is k for k in self.key_conds)]
        if rest:
            text += f"\n  Filter: {expr_sql(exp.and_(*[c.copy() for c in rest]))}"
        return text


def conjuncts(e: exp.Expression | None) -> list[exp.Expression]:
    """The operands of a chain of ANDs (parentheses looked through)."""
    if e is None:
        return []
    if isinstance(e, exp.Paren):
        return conjuncts(e.this)
    if isinstance(e, exp.And):
        return conjuncts(e.this) + conjuncts(e.expression)
    return [e]


@dataclass(frozen=True)
class VirtualScan(PlanNode):
    """Rows of a catalog table built on demand (pg_catalog, information_schema)."""

    name: str = ""
    alias: str = ""

    def describe(self) -> str:
        return f"Function Scan on {self.name}"


@dataclass(frozen=True)
class Values(PlanNode):
    """A VALUES list: each row's expressions, evaluated per row."""

    rows: tuple[tuple[exp.Expression, ...], ...] = ()

    def describe(self) -> str:
        return f"Values Scan ({len(self.rows)} rows)"


@dataclass(frozen=True)
class FunctionScan(PlanNode):
    """A set-returning function in FROM: generate_series, unnest."""

    function: exp.Expression | None = None
    with_ordinality: bool = False

    def describe(self) -> str:
        return f"Function Scan on {expr_sql(self.function) if self.function is not None else '?'}"


@dataclass(frozen=True)
class ProjectSet(PlanNode):
    """Set-returning functions in a select list (`SELECT unnest(a), x FROM t`): each input row
    becomes as many rows as its longest function result (PostgreSQL 10+ lockstep); output is the
    child's fields plus one column per call."""

    child: PlanNode = None  # type: ignore[assignment]
    functions: tuple[exp.Expression, ...] = ()

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "ProjectSet"


@dataclass(frozen=True)
class Filter(PlanNode):
    """Keeps the rows for which `predicate` is true (NULL drops the row, as in SQL)."""

    child: PlanNode = None  # type: ignore[assignment]
    predicate: exp.Expression | None = None
    clause: str = "WHERE"  # for errors: WHERE or HAVING

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return f"Filter: {expr_sql(self.predicate)}" if self.predicate is not None else "Filter"


@dataclass(frozen=True)
class Project(PlanNode):
    """Computes the select list: one output field per expression."""

    child: PlanNode = None  # type: ignore[assignment]
    exprs: tuple[exp.Expression, ...] = ()

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "Project: " + ", ".join(expr_sql(e) for e in self.exprs)


@dataclass(frozen=True)
class Aggregate(PlanNode):
    """Group by `groups`, computing `aggregates`; output: the groups, then the aggregates."""

    child: PlanNode = None  # type: ignore[assignment]
    groups: tuple[exp.Expression, ...] = ()
    aggregates: tuple[exp.Expression, ...] = ()

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        head = "HashAggregate" if self.groups else "Aggregate"
        if self.groups:
            head += "\n  Group Key: " + ", ".join(expr_sql(g) for g in self.groups)
        return head


@dataclass(frozen=True)
class Window(PlanNode):
    """Window functions: output is the child's fields plus one column per window call."""

    child: PlanNode = None  # type: ignore[assignment]
    windows: tuple[exp.Expression, ...] = ()

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "WindowAgg"


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term: direction and NULLS placement (None follows PostgreSQL's default)."""

    expr: exp.Expression
    desc: bool = False
    nulls_first: bool | None = None  # None: PostgreSQL's default (NULLS LAST for ASC)


@dataclass(frozen=True)
class Sort(PlanNode):
    """Orders rows by `keys`, stable, so ties keep their input order."""

    child: PlanNode = None  # type: ignore[assignment]
    keys: tuple[SortKey, ...] = ()

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "Sort\n  Sort Key: " + ", ".join(
            expr_sql(k.expr) + (" DESC" if k.desc else "") for k in self.keys)


@dataclass(frozen=True)
class Limit(PlanNode):
    """LIMIT and OFFSET, as expressions so parameters ($1) are bound at execution."""

    child: PlanNode = None  # type: ignore[assignment]
    limit: exp.Expression | None = None
    offset: exp.Expression | None = None

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "Limit"


@dataclass(frozen=True)
class Distinct(PlanNode):
    """DISTINCT, or DISTINCT ON (`on`) keeping the first row of each group in the child's order."""

    child: PlanNode = None  # type: ignore[assignment]
    on: tuple[exp.Expression, ...] | None = None  # DISTINCT ON (...)

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return "Unique"


@dataclass(frozen=True)
class TwoInputs(PlanNode):
    """What every join has: two inputs, a kind and an optional condition (EXPLAIN's Join
    Filter)."""

    left: PlanNode = None  # type: ignore[assignment]
    right: PlanNode = None  # type: ignore[assignment]
    kind: str = "inner"
    condition: exp.Expression | None = None

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.left, self.right)

    def with_filter(self, name: str) -> str:
        """EXPLAIN's line for this join: `name`, then its Join Filter if it has one."""
        if self.condition is not None:
            name += f"\n  Join Filter: {expr_sql(self.condition)}"
        return name


@dataclass(frozen=True)
class Join(TwoInputs):
    """kind: inner | left | right | full | cross | semi | anti."""

    def describe(self) -> str:
        return self.with_filter(
            {"inner": "Hash Join", "left": "Hash Left Join", "right": "Hash Right Join",
             "full": "Hash Full Join", "cross": "Nested Loop", "semi": "Hash Semi Join",
             "anti": "Hash Anti Join"}[self.kind])


@dataclass(frozen=True)
class LateralJoin(TwoInputs):
    """A join whose right side reads columns of its left side: a LATERAL subquery or function
    in FROM (`CROSS JOIN LATERAL (... ORDER BY v <-> t.v LIMIT 5)`, `, unnest(t.arr)`). The
    right plan runs once per distinct value of the left columns it reads, with them bound as
    outer values, so each run is planned like a query of its own (a vector top-k stays one).
    kind: inner | left (LEFT JOIN LATERAL keeps left rows without right rows, NULL-extended);
    `condition` is the ON clause, checked on each pair."""

    def describe(self) -> str:
        return self.with_filter("Nested Loop Left Join" if self.kind == "left" else "Nested Loop")


@dataclass(frozen=True)
class SetOp(PlanNode):
    """A set operation over its inputs, in order. A chain of UNIONs of one kind is one node
    with an input per branch (PostgreSQL's Append): `a UNION ALL b UNION ALL c` has three.
    INTERSECT and EXCEPT have two."""

    inputs: tuple[PlanNode, ...] = ()
    kind: str = "union"  # union | intersect | except
    all: bool = False

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return self.inputs

    def describe(self) -> str:
        return {"union": "Append" if self.all else "HashAggregate (UNION)",
                "intersect": "HashSetOp Intersect", "except": "HashSetOp Except"}[self.kind] + \
            (" All" if self.all and self.kind != "union" else "")


@dataclass(frozen=True)
class RecursiveUnion(PlanNode):
    """WITH RECURSIVE name AS (anchor UNION [ALL] recursive): iterate until no new rows."""

    anchor: PlanNode = None  # type: ignore[assignment]
    recursive: PlanNode = None  # type: ignore[assignment]
    name: str = ""
    all: bool = True

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.anchor, self.recursive)

    def describe(self) -> str:
        return f"Recursive Union ({self.name})"


@dataclass(frozen=True)
class WorkTable(PlanNode):
    """The rows of the previous iteration of a recursive CTE."""

    name: str = ""

    def describe(self) -> str:
        return f"WorkTable Scan on {self.name}"


@dataclass(frozen=True)
class Rename(PlanNode):
    """A subquery or CTE in FROM: the child's rows under new field names and qualifier."""

    child: PlanNode = None  # type: ignore[assignment]
    alias: str = ""

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return (self.child,)

    def describe(self) -> str:
        return f"Subquery Scan on {self.alias}"


@dataclass(frozen=True)
class VectorTopK(PlanNode):
    """`ORDER BY <distance>(col, q) LIMIT k` over one table, searched per segment.

    `scan` is the table scan (with any pushed filter); output: the scan's fields plus the
    distance as the last field. `k` counts OFFSET rows too; the Limit above skips them."""

    scan: Scan = None  # type: ignore[assignment]
    column: str = ""
    metric: str = "l2"
    query: exp.Expression | None = None
    k: exp.Expression | None = None
    columns: tuple[str, ...] | None = None  # scan columns the query uses (others stay NULL)

    @property
    def children(self) -> tuple[PlanNode, ...]:
        return ()

    def describe(self) -> str:
        from sqlvec.vectors import Metric

        op = Metric(self.metric).operator
        column, _, key_type = self.column.partition("::")
        if key_type:  # an expression index's key, as pg_get_indexdef prints it
            dims = next((f.type.typmod for f in self.scan.fields if f.name == column
                         and f.type is not None), -1)
            inner = f"binary_quantize({column})" if key_type == "bit" else column
            key = f"({inner})::{key_type}" + (f"({dims})" if dims > 0 else "")
        else:
            key = column
        text = f"Vector Top-K on {self.scan.table_name}\n  Order By: {key} {op} " \
               f"{expr_sql(self.query) if self.query is not None else '?'}"
        if self.scan.filter is not None:
            text += f"\n  Filter: {expr_sql(self.scan.filter)}"
        return text


def explain_lines(node: PlanNode, annotate=None, details=None, verbose: bool = False,
                  describe=None) -> list[str]:
    """PostgreSQL-shaped EXPLAIN text: `->  ` arrows, details indented under each node.

    `annotate(node)` may add text to a node's first line (actual rows and times); `details(node)`
    may add lines under it (what a vector search did per segment); `describe(node)` may replace
    the node's own text (a scan read through the index the run chose). As in PostgreSQL,
    projections are not plan steps of their own: they show only with VERBOSE."""
    lines: list[str] = []

    def walk(n: PlanNode, depth: int) -> None:
        if isinstance(n, Project) and not verbose and n.children:
            walk(n.children[0], depth)
            return
        text = describe(n) if describe is not None else None
        head, *lines_below = (text or n.describe()).split("\n")
        if details is not None:
            lines_below += details(n)
        if annotate is not None:
            extra = annotate(n)
            if extra:
                head += extra
        if depth == 0:
            lines.append(head)
            pad = "  "
        else:
            indent = "      " * (depth - 1) + "  "
            lines.append(f"{indent}->  {head}")
            pad = indent + "      "
        for d in lines_below:
            lines.append(pad + d.strip())
        for child in n.children:
            walk(child, depth + 1)

    walk(node, 0)
    return lines
