"""Helpers the planner tests share: a statement's optimized plan, and the nodes of a kind in it."""

from __future__ import annotations

from sqlvec.plan import nodes as n
from sqlvec.plan.planner import PlanContext, Planner
from sqlvec.plan.rules import optimize
from sqlvec.sql.dialect import parse_one


def planned(session, sql: str) -> n.PlanNode:
    """The optimized plan of `sql` over the session's catalog (search path: public)."""
    ctx = PlanContext(session.catalog, ["public"], virtual=session.database.virtual_fields)
    return optimize(Planner(ctx).plan_query(parse_one(sql)))


def nodes_of(plan: n.PlanNode, kind: type) -> list:
    """Every node of the given kind in the plan tree."""
    found, stack = [], [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, kind):
            found.append(node)
        stack.extend(node.children)
    return found
