"""Function calls as parsed: which declared function a call is, and its arguments in order.

The dialect parses a call by name (`exp.Anonymous`) unless PostgreSQL's grammar gives it a form
of its own, for which sqlglot builds a class: `SUBSTRING(s FROM 2 FOR 3)`, `TRIM(LEADING 'x'
FROM s)`, `EXTRACT(year FROM t)`, `POSITION(a IN b)`, `OVERLAY(...)`, the keywords called
without parentheses (`CURRENT_DATE`, `CURRENT_USER`, ...), the prefix operators `|/` and `||/`,
`UNNEST(...)` in FROM, and the pgvector forms the dialect builds nodes for. `CALL_FORMS` is the one table from such a class to
the function of the catalog (catalog/functions.py) it calls, with its arguments in that
function's order; planner and executor see every call through `call_of` as (name, arguments).
The planner also builds `exp.Coalesce` itself (the merged column of `JOIN ... USING`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from sqlvec.sql import dialect as d


@dataclass(frozen=True)
class CallForm:
    """The function a sqlglot class calls: its name (or a rule giving it) and arguments."""

    name: str | Callable[[exp.Expression], str]
    args: Callable[[exp.Expression], list[exp.Expression]] = lambda e: []


def _present(*values) -> list[exp.Expression]:
    return [v for v in values if v is not None]


def _this_and_list(e: exp.Expression) -> list[exp.Expression]:
    return [e.this, *e.expressions]


def _trim_name(e: exp.Expression) -> str:
    position = str(e.args.get("position") or "BOTH").upper()
    return {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "btrim")


def _extract_args(e: exp.Expression) -> list[exp.Expression]:
    unit = e.this
    name = unit.name if isinstance(unit, (exp.Var, exp.Column, exp.Identifier)) else None
    return [exp.Literal.string(name.lower()) if name is not None else unit, e.expression]


CALL_FORMS: dict[type, CallForm] = {
    # PostgreSQL's call grammar.
    exp.Substring: CallForm("substring", lambda e: _present(e.this, e.args.get("start"),
                                                            e.args.get("length"))),
    exp.Trim: CallForm(_trim_name, lambda e: _present(e.this, e.expression)),
    exp.Extract: CallForm("extract", _extract_args),
    exp.StrPosition: CallForm("position", lambda e: [e.this, e.args["substr"]]),
    exp.Overlay: CallForm("overlay", lambda e: _present(e.this, e.expression,
                                                        e.args.get("from_"), e.args.get("for_"))),
    # Prefix operators that are calls: |/ x and ||/ x.
    exp.Sqrt: CallForm("sqrt", lambda e: [e.this]),
    exp.Cbrt: CallForm("cbrt", lambda e: [e.this]),
    # Keywords that are calls without parentheses.
    exp.CurrentDate: CallForm("current_date"),
    exp.CurrentTime: CallForm("current_time"),
    exp.CurrentTimestamp: CallForm("current_timestamp"),
    exp.Localtime: CallForm("localtime"),
    exp.Localtimestamp: CallForm("localtimestamp"),
    exp.CurrentUser: CallForm("current_user"),
    exp.SessionUser: CallForm("session_user"),
    exp.CurrentRole: CallForm("current_role"),
    exp.CurrentCatalog: CallForm("current_catalog"),
    exp.CurrentSchema: CallForm("current_schema"),
    # UNNEST(a, b, ...) in FROM.
    exp.Unnest: CallForm("unnest", lambda e: list(e.expressions)),
    # Built by the planner for the merged column of JOIN ... USING.
    exp.Coalesce: CallForm("coalesce", _this_and_list),
    # pgvector's function forms (the distances are operator nodes; see VectorDistance).
    exp.DotProduct: CallForm("inner_product", lambda e: [e.this, e.expression]),
    d.VectorDims: CallForm("vector_dims", lambda e: [e.this]),
    d.VectorNorm: CallForm("vector_norm", lambda e: [e.this]),
    d.L2Normalize: CallForm("l2_normalize", lambda e: [e.this]),
    d.Subvector: CallForm("subvector", lambda e: [e.this, e.args["start"], e.args["count"]]),
}


def call_of(e: exp.Expression) -> tuple[str, list[exp.Expression]] | None:
    """(function name, arguments) of a call, or None when `e` is not a function call."""
    if isinstance(e, exp.Anonymous):
        return str(e.this).lower(), list(e.expressions)
    form = CALL_FORMS.get(type(e))
    if form is None:
        return None
    return (form.name(e) if callable(form.name) else form.name), form.args(e)


def function_name(e: exp.Expression) -> str | None:
    """The name of the function `e` calls (PostgreSQL's column name for it), or None."""
    if isinstance(e, exp.Anonymous):
        return str(e.this).lower()
    if isinstance(e, d.VectorDistance):
        return e.meta.get("function_name")
    form = CALL_FORMS.get(type(e))
    if form is None:
        return None
    return form.name(e) if callable(form.name) else form.name


__all__ = ["CALL_FORMS", "CallForm", "call_of", "function_name"]
