"""EXPLAIN and EXPLAIN ANALYZE: the plan tree, annotated with what really ran."""

from __future__ import annotations

import json
import time

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import index_scan
from sqlvec.execution.values import typed_params
from sqlvec.execution.vector_search import VectorTopKOp, searches_summary, segment_summary
from sqlvec.plan import index_selection
from sqlvec.plan import nodes as n
from sqlvec.plan.nodes import explain_lines


def explain(session, inner, params: list, options: dict) -> list[str]:
    """EXPLAIN's output lines for a query, in text or JSON, with ANALYZE running it and adding
    actual rows and times."""
    analyze = options.get("analyze", "false") in ("true", "on", "1")
    fmt = options.get("format", "text")
    if inner.kind == "query":
        plan, operator = inner.compiled
    else:
        plan, operator = None, inner.compiled.source
        plan = operator.node
    ops_by_node: dict[int, object] = {}

    def index(op):
        ops_by_node[id(op.node)] = op
        for child in getattr(op, "children", []) or []:
            index(child)
        scan = getattr(op, "scan", None)
        if scan is not None:
            ops_by_node[id(scan.node)] = scan

    index(operator)
    stats: dict = {}
    total = None
    if analyze:
        ctx = session._context(typed_params(inner.param_types, params))
        ctx.analyze = True
        start = time.perf_counter()
        if inner.kind == "query":
            operator.execute(ctx)
        else:
            raise_if_write(inner)
        total = time.perf_counter() - start
        stats = ctx.stats

    def annotate(node: n.PlanNode) -> str:
        op = ops_by_node.get(id(node))
        if op is None or not analyze:
            return ""
        rows, seconds, loops = stats.get(id(op), (0, 0.0, 0))
        return f" (actual time={seconds * 1000:.3f} rows={rows // max(loops, 1)} loops={max(loops, 1)})"

    def vector_details(node: n.PlanNode) -> list[str]:
        op = ops_by_node.get(id(node))
        if not isinstance(op, VectorTopKOp):
            return []
        if analyze:
            runs = stats.get(("segments", id(op)), [])
            if len(runs) > 1:
                return _index_line(op) + searches_summary(runs)
            return _index_line(op) + segment_summary(runs[-1], True) if runs else []
        if op.correlated:
            return ["Searches: one per outer row (strategies chosen per search; EXPLAIN "
                    "ANALYZE shows them)"]
        ctx = session._context(typed_params(inner.param_types, params))
        plans = op.plan_segments(ctx)
        return _index_line(op) + segment_summary(plans, False)

    def chosen(op):
        """The btree index path a scan operator reads through: the one it used (ANALYZE) or
        would use now with these parameters (None: it scans)."""
        if not getattr(op, "paths", None):
            return None
        if analyze:
            return stats.get(("index", id(op)))
        if op.paths_correlated:
            return None  # chosen per outer row: `details` says so
        try:
            ctx = session._context(typed_params(inner.param_types, params))
            return index_scan.choose(op, ctx, None, ctx.snapshot(op.table_id))
        except SqlVecError:  # a value that fails to evaluate: running reports it
            return None

    def describe(node: n.PlanNode) -> str | None:
        op = ops_by_node.get(id(node))
        if isinstance(node, n.Scan) and op is not None:
            choice = chosen(op)
            if choice is not None:
                return index_selection.describe(node, choice.path)
        return None

    def details(node: n.PlanNode) -> list[str]:
        lines = vector_details(node)
        op = ops_by_node.get(id(node))
        if isinstance(node, n.Scan) and not analyze and getattr(op, "paths_correlated", False):
            names = ", ".join(dict.fromkeys(c.path.index for c in op.paths))
            lines = lines + [f"Index Paths: {names} (chosen per outer row; EXPLAIN ANALYZE "
                             "shows the choice)"]
        if isinstance(op, VectorTopKOp):
            choice = chosen(op.scan)
            if choice is not None:  # the filter's candidates come from a btree index
                lines = [f"Filter Index: {choice.path.index}",
                         "Index Cond: " + index_selection.cond_text(choice.path)] + lines
        return lines

    if fmt == "json":
        return [json.dumps([{"Plan": _json(plan, annotate, details, describe)}], indent=2)]
    verbose = options.get("verbose", "false") in ("true", "on", "1")
    lines = explain_lines(plan, annotate, details, verbose, describe)
    if analyze and total is not None:
        lines.append(f"Execution Time: {total * 1000:.3f} ms")
    return lines


def _index_line(op: VectorTopKOp) -> list[str]:
    """`Index: <name>` when some segment is searched through an index."""
    return [f"Index: {op.index_name}"] if op.index_name else []


def raise_if_write(inner) -> None:
    """EXPLAIN ANALYZE of a write would perform it; refused with 0A000 instead."""
    raise FeatureNotSupported("EXPLAIN ANALYZE of INSERT, UPDATE or DELETE is not supported")


def _json(node: n.PlanNode, annotate, details, describe) -> dict:
    head, *lines = (describe(node) or node.describe()).split("\n")
    out: dict = {"Node Type": head}
    for d in lines:
        key, _, value = d.strip().partition(": ")
        out[key] = value
    extra = details(node)
    if extra:
        out["Vector Search"] = extra
    actual = annotate(node)
    if actual:
        out["Actual"] = actual.strip(" ()")
    if node.children:
        out["Plans"] = [_json(c, annotate, details, describe) for c in node.children]
    return out
