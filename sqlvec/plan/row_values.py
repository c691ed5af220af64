"""Row-value comparisons (`(a, b) = (1, 2)`, `ROW(a, b) < ROW(c, d)`, `(a, b) IN ((1, 2), (3, 4))`,
`ROW(a, b) IS NULL`, `(a, b) = (SELECT x, y ...)` once the planner has made the subquery a row
of scalar subqueries) rewritten into the scalar conditions they mean, as PostgreSQL defines
them (docs: "Row Constructor Comparison"):

- `=` is true when every pair of elements is equal, false when any pair differs, else NULL:
  the AND of the pairs' equalities; `<>` the OR of their inequalities.
- `<`, `<=`, `>`, `>=` compare left to right and stop at the first pair that is unequal or
  NULL: `(a, b) < (c, d)` is `a < c OR (a = c AND b < d)`, whose NULLs are exactly those.
- `IS [NOT] DISTINCT FROM` compares pair by pair without NULLs; `row IS NULL` holds when every
  element is NULL, `row IS NOT NULL` when none is.
- `IN (rows)` is the OR of `=` with each row.

Written out this way, the conjuncts of `(a, b) = (1, 2)` reach scans and key lookups like any
other. `(a, b) IN (SELECT x, y ...)` stays a subquery (the planner checks its width here).
"""

from __future__ import annotations

from sqlglot import exp

from sqlvec.errors import FeatureNotSupported, SqlVecError

_SYMBOLS = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">=",
            exp.NullSafeEQ: "IS NOT DISTINCT FROM", exp.NullSafeNEQ: "IS DISTINCT FROM"}
# The strict comparison deciding an ordering comparison at an unequal pair.
_STRICT = {exp.LT: exp.LT, exp.LTE: exp.LT, exp.GT: exp.GT, exp.GTE: exp.GT}


def row_items(e: exp.Expression | None) -> list[exp.Expression] | None:
    """The elements of a row constructor, `(a, b)` or `ROW(a, ...)`; None for anything else."""
    if isinstance(e, exp.Tuple):
        return list(e.expressions)
    if isinstance(e, exp.Anonymous) and str(e.this).lower() == "row":
        return list(e.expressions)
    return None


def as_tuple(e: exp.Expression) -> exp.Expression:
    """A row constructor as a Tuple (`ROW(a, b)` → `(a, b)`), anything else unchanged."""
    items = row_items(e)
    return exp.Tuple(expressions=items) if items is not None and not isinstance(e, exp.Tuple) \
        else e


def expand(x: exp.Expression) -> exp.Expression | None:
    """The scalar condition a row comparison means, or None when `x` is not one."""
    if type(x) in _SYMBOLS:
        return _compare(x)
    if isinstance(x, exp.Is) and isinstance(x.expression, exp.Null):
        items = row_items(x.this)
        if items is None:
            return None
        negate = bool(x.args.get("negate"))
        tests = [exp.Is(this=i.copy(), expression=exp.Null(), negate=negate) for i in items]
        return _all(tests)
    if isinstance(x, exp.In) and not x.args.get("query") and not x.args.get("unnest"):
        items = row_items(x.this)
        if items is None:
            return None
        for option in x.expressions:
            if row_items(option) is None:
                raise SqlVecError("operator does not exist: record = " + _kind(option),
                                  sqlstate="42883")
        return _any([exp.EQ(this=x.this.copy(), expression=o.copy()) for o in x.expressions])
    return None


def is_row_subquery_comparison(x: exp.Expression) -> bool:
    """`(a, b) <op> (SELECT x, y ...)`: a row compared with a row subquery (on the right, the
    only side PostgreSQL accepts one)."""
    return type(x) in _SYMBOLS and row_items(x.this) is not None and \
        isinstance(x.expression, exp.Subquery)


def check_subquery_width(row: exp.Expression, width: int) -> None:
    """`row IN (SELECT ...)`: the subquery must return as many columns as the row has."""
    items = row_items(row)
    count = len(items) if items is not None else 1
    if width > count:
        raise SqlVecError("subquery has too many columns", sqlstate="42601")
    if width < count:
        raise SqlVecError("subquery has too few columns", sqlstate="42601")


def _compare(x: exp.Expression) -> exp.Expression | None:
    left, right = row_items(x.this), row_items(x.expression)
    if left is None and right is None:
        return None
    op = type(x)
    if left is None or right is None:
        other = x.this if left is None else x.expression
        if isinstance(other, (exp.Subquery, exp.Select)):
            return None  # a row subquery: the planner makes it a row of scalar subqueries
        raise SqlVecError(f"operator does not exist: record {_SYMBOLS[op]} {_kind(other)}",
                          sqlstate="42883")
    if len(left) != len(right):
        raise SqlVecError("unequal number of entries in row expressions", sqlstate="42601")
    if not left:
        raise FeatureNotSupported("cannot compare rows of zero length")
    pairs = [(a.copy(), b.copy()) for a, b in zip(left, right)]
    if op in (exp.EQ, exp.NullSafeEQ):
        return _all([op(this=a, expression=b) for a, b in pairs])
    if op in (exp.NEQ, exp.NullSafeNEQ):
        return _any([op(this=a, expression=b) for a, b in pairs])
    strict = _STRICT[op]
    a, b = pairs[-1]
    out: exp.Expression = op(this=a, expression=b)
    for a, b in reversed(pairs[:-1]):
        out = exp.Paren(this=exp.Or(
            this=strict(this=a, expression=b),
            expression=exp.Paren(this=exp.And(this=exp.EQ(this=a.copy(), expression=b.copy()),
                                              expression=out))))
    return out


def _all(terms: list[exp.Expression]) -> exp.Expression:
    out = terms[0]
    for term in terms[1:]:
        out = exp.And(this=out, expression=term)
    return exp.Paren(this=out) if len(terms) > 1 else out


def _any(terms: list[exp.Expression]) -> exp.Expression:
    out = terms[0]
    for term in terms[1:]:
        out = exp.Or(this=out, expression=term)
    return exp.Paren(this=out) if len(terms) > 1 else out


def _kind(e: exp.Expression) -> str:
    """A word for the type of a non-row operand in an error (the planner knows no types)."""
    if isinstance(e, exp.Literal):
        return "unknown" if e.is_string else ("integer" if e.this.isdigit() else "numeric")
    return "non-row value"
