"""Btree index paths: which conjuncts of a scan's filter a btree index of the table can answer.

`use_btree_index` (a rewrite rule, rules.py `RULES`) finds, per btree index of the scanned
table (`CREATE INDEX ON t (col)`, an expression index `((lower(name)))`, the primary key or a
unique key), the filter's conjuncts that compare the index's key to row-independent values:
`key = v`, `key IN (v, ...)`, `key < v` (and `<=`, `>`, `>=`, either side), `key BETWEEN a AND
b`, `key IS NULL`. An index on several columns serves conditions on its first one. An
expression key is matched structurally, as PostgreSQL matches index expressions: both sides
printed in the normal form of `sql/index_expressions.py` and compared as text.

The rule only records the candidate paths on the scan (`Scan.index_paths`). Whether one is
used is decided when the statement runs (`execution/index_scan.py`), because it depends on
the values (`WHERE ts > $1` is selective for one parameter and not for another) and on the
data: the per-segment sorted keys count exactly how many rows each path would return. Plans
are cached by statement text, so deciding here would freeze a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlglot import exp

from sqlvec.plan import nodes as n
from sqlvec.sql import index_expressions as ixexpr
from sqlvec.sql.binder import Scope, find

# Column types whose SQL order the per-segment sorted keys reproduce (storage/btree.py).
# char(n) is left out: its comparisons ignore trailing blanks.
ORDERED_TYPES = frozenset({"int2", "int4", "int8", "text", "varchar", "numeric", "float4",
                           "float8", "timestamp", "timestamptz", "date", "time", "bool"})


@dataclass(frozen=True)
class BtreeIndex:
    """A btree index of a scanned table as the planner sees it: its name and its key, a
    column (position in the scan's fields) or an expression (its normal-form text)."""

    name: str
    column: int | None = None
    expression: str | None = None


@dataclass(frozen=True)
class IndexCond:
    """One conjunct an index answers: `op` is "=", "in", "<", "<=", ">", ">=", "between" or
    "null"; `values` the row-independent operands (`op` reads `key op values[0]`)."""

    source: exp.Expression
    op: str
    values: tuple[exp.Expression, ...] = ()


@dataclass(frozen=True)
class IndexPath:
    """A way to read a scan through one btree index: the key (a column of the scan or an
    expression over its columns) and the filter's conjuncts the index can answer."""

    index: str
    key: exp.Expression
    conds: tuple[IndexCond, ...]
    column: int | None = None
    expression: str | None = None


def btree_indexes(table_def, position: dict[str, int]) -> tuple[BtreeIndex, ...]:
    """The btree indexes of a table definition usable for lookups: btree indexes (on
    columns or one expression) and the unique keys (primary key, UNIQUE), by first column."""
    out: dict[str, BtreeIndex] = {}
    for key in table_def.unique_keys:
        out.setdefault(key.name, BtreeIndex(key.name, column=position[key.columns[0]]))
    for ix in table_def.indexes:
        if ix.method != "btree" or ix.name in out:
            continue
        if ix.expression is not None:
            out[ix.name] = BtreeIndex(ix.name, expression=ix.expression)
        elif ix.columns and ix.columns[0] in position:
            out[ix.name] = BtreeIndex(ix.name, column=position[ix.columns[0]])
    return tuple(out.values())


def use_btree_index(plan: n.PlanNode) -> n.PlanNode:
    """Record on each filtered scan (also the scan a vector top-k searches) the btree index
    paths its filter allows."""
    from sqlvec.plan.rules import _map_children

    def visit(node: n.PlanNode) -> n.PlanNode:
        node = _map_children(node, visit)
        if isinstance(node, n.VectorTopK):
            scan = with_paths(node.scan)
            return node if scan is node.scan else replace(node, scan=scan)
        if isinstance(node, n.Scan):
            return with_paths(node)
        return node
    return visit(plan)


def with_paths(scan: n.Scan) -> n.Scan:
    """The scan with its index paths recorded (unchanged when it has none)."""
    if scan.filter is None or scan.key is not None or not scan.btree:
        return scan
    scope = Scope(list(scan.fields))
    conjuncts = n.conjuncts(scan.filter)
    paths = []
    for ix in scan.btree:
        if ix.column is not None:
            t = scan.fields[ix.column].type
            if t is None or t.name not in ORDERED_TYPES:
                continue
            key: exp.Expression = exp.column(scan.fields[ix.column].name)

            def is_key(e: exp.Expression, ix=ix) -> bool:
                e = ixexpr.unwrap(e)
                return isinstance(e, exp.Column) and not isinstance(e.this, exp.Star) and \
                    find(scope, e) == ix.column
        else:
            key = None  # type: ignore[assignment]

            def is_key(e: exp.Expression, ix=ix) -> bool:
                if isinstance(ixexpr.unwrap(e), exp.Column):
                    return False
                columns = list(e.find_all(exp.Column))
                if not columns or any(find(scope, c) is None
                                      for c in columns):
                    return False  # a constant, or a reference to an outer query
                try:
                    return ixexpr.deparse(e) == ix.expression
                except Exception:  # noqa: BLE001 - a form the printer does not know
                    return False
        conds = []
        for c in conjuncts:
            cond = _index_cond(c, is_key, scope)
            if cond is None:
                continue
            conds.append(cond[0])
            if key is None:
                key = ixexpr.unwrap(cond[1])
        if conds:
            paths.append(IndexPath(ix.name, key, tuple(conds), ix.column, ix.expression))
    return replace(scan, index_paths=tuple(paths)) if paths else scan


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}
_OPS = {exp.EQ: "=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}


def _index_cond(c: exp.Expression, is_key, scope: Scope
                ) -> tuple[IndexCond, exp.Expression] | None:
    """(the condition, the key expression it names) when conjunct `c` is one an index on the
    key `is_key` recognizes can answer."""
    op = _OPS.get(type(c))
    if op is not None:
        for key, value, flip in ((c.this, c.expression, False), (c.expression, c.this, True)):
            if is_key(key) and _row_independent(value, scope):
                return IndexCond(c, _FLIP[op] if flip else op, (value,)), key
        return None
    if isinstance(c, exp.In):
        if c.args.get("query") or c.args.get("unnest") or c.args.get("field") or \
                not c.expressions:
            return None
        if is_key(c.this) and all(_row_independent(v, scope) for v in c.expressions):
            return IndexCond(c, "in", tuple(c.expressions)), c.this
        return None
    if isinstance(c, exp.Between):
        if c.args.get("symmetric"):
            return None
        low, high = c.args.get("low"), c.args.get("high")
        if is_key(c.this) and low is not None and high is not None and \
                _row_independent(low, scope) and _row_independent(high, scope):
            return IndexCond(c, "between", (low, high)), c.this
        return None
    if isinstance(c, exp.Is) and isinstance(c.expression, exp.Null) and is_key(c.this):
        return IndexCond(c, "null"), c.this
    return None


def _row_independent(e: exp.Expression, scope: Scope) -> bool:
    from sqlvec.plan.rules import _row_independent as independent
    return independent(e, scope)


def describe(scan: n.Scan, path: IndexPath) -> str:
    """EXPLAIN's lines for a scan read through `path`, in PostgreSQL's words."""
    name = scan.table_name if scan.alias == scan.table_name else \
        f"{scan.table_name} {scan.alias}"
    text = f"Index Scan using {path.index} on {name}\n  Index Cond: {cond_text(path)}"
    rest = [c for c in n.conjuncts(scan.filter) if not any(c is k.source for k in path.conds)]
    if rest:
        text += f"\n  Filter: {n.expr_sql(exp.and_(*[c.copy() for c in rest]))}"
    return text


def cond_text(path: IndexPath) -> str:
    """The `Index Cond:` of a path: its conditions, each parenthesised, joined by AND."""
    conds = [f"({n.expr_sql(c.source)})" for c in path.conds]
    return conds[0] if len(conds) == 1 else "(" + " AND ".join(conds) + ")"
