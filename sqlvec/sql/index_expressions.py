"""Index expressions (`CREATE INDEX ON t ((expr))`): their text as PostgreSQL prints it, the
name PostgreSQL derives from them, and the vector type of a cast a vector index can build on.

PostgreSQL matches an index expression to a query's expression structurally; here both are
printed in one normal form (`deparse(..., pretty=True)`: no table qualifiers, lower-case
function names, `arg::type` casts) and compared as text.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.errors import FeatureNotSupported, SqlVecError

# sqlglot's own nodes for some functions, by the name PostgreSQL's catalog gives them.
_FUNCTION_NAMES = {exp.Rand: "random", exp.CurrentTimestamp: "now", exp.Lower: "lower",
                   exp.Upper: "upper", exp.Length: "length", exp.Abs: "abs"}


def unwrap(e: exp.Expression) -> exp.Expression:
    """The expression inside the parentheses CREATE INDEX requires around it."""
    while isinstance(e, exp.Paren):
        e = e.this
    return e


def function_name(e: exp.Func) -> str:
    """The catalog name of a function call node."""
    if isinstance(e, exp.Anonymous):
        return str(e.this).lower()
    for cls, name in _FUNCTION_NAMES.items():
        if isinstance(e, cls):
            return name
    return e.sql_name().lower()


def _type_text(to: exp.DataType) -> str:
    if to.this == exp.DataType.Type.USERDEFINED:
        name = to.args["kind"].name.lower()
        params = [p.sql() for p in to.expressions]
        return name + (f"({', '.join(params)})" if params else "")
    return to.sql(dialect="postgres").lower()


def deparse(e: exp.Expression, pretty: bool = True) -> str:
    """PostgreSQL's text for an index expression: `pretty` as psql's \\d and
    pg_get_indexdef(oid, n, true) print it (`embedding::halfvec(3)`), else as
    pg_get_indexdef(oid) does (`(embedding)::halfvec(3)`)."""
    e = unwrap(e)
    if isinstance(e, exp.Column):
        return e.name
    if isinstance(e, exp.Cast):
        inner = deparse(e.this, pretty)
        if not pretty or not isinstance(unwrap(e.this), (exp.Column, exp.Func)):
            inner = f"({inner})"
        return f"{inner}::{_type_text(e.to)}"
    if isinstance(e, exp.Func) and not isinstance(e, exp.Binary):
        args = [a for a in ([e.this] if e.args.get("this") is not None
                            and not isinstance(e, exp.Anonymous) else []) + list(e.expressions)]
        return f"{function_name(e)}({', '.join(deparse(a, pretty) for a in args)})"
    return e.sql(dialect="postgres")


def is_function_like(e: exp.Expression) -> bool:
    """Printed without extra parentheses in an index definition (a function call)."""
    e = unwrap(e)
    return isinstance(e, exp.Func) and not isinstance(e, (exp.Cast, exp.Binary))


def column_text(e: exp.Expression, pretty: bool) -> str:
    """One key of an index definition: a function call as is, anything else parenthesised."""
    text = deparse(e, pretty)
    return text if is_function_like(e) else f"({text})"


def figure_name(e: exp.Expression) -> str:
    """The name part PostgreSQL's ChooseIndexColumnNames takes from an expression
    (FigureColname: a column's name, a function's name, a cast's argument's), else "expr"."""
    e = unwrap(e)
    if isinstance(e, exp.Column):
        return e.name
    if isinstance(e, exp.Cast):
        inner = unwrap(e.this)
        if isinstance(inner, (exp.Column, exp.Func, exp.Cast)):
            return figure_name(inner)
        return _type_text(e.to).split("(")[0]
    if isinstance(e, exp.Func) and not isinstance(e, exp.Binary):
        return function_name(e)
    return "expr"


def check_immutable(e: exp.Expression) -> None:
    """42P17 unless every function the expression calls is immutable."""
    for node in e.walk():
        if isinstance(node, exp.Func) and not isinstance(node, (exp.Cast, exp.Binary,
                                                                exp.Paren)):
            fn = F.lookup(function_name(node))
            if fn is None:
                continue
            marks = {fn.volatility} | {s.volatility for s in fn.signatures if s.volatility}
            if marks - {"i"}:
                raise SqlVecError("functions in index expression must be marked IMMUTABLE",
                                  sqlstate="42P17")


def vector_key_type(e: exp.Expression, column_type: str) -> str:
    """The type of a key a vector index builds on: a cast of the vector column to halfvec or
    vector (`col::halfvec(n)`), or bits (`binary_quantize(col)::bit(n)`, searched exactly)."""
    e = unwrap(e)
    if isinstance(e, exp.Cast):
        target = _type_text(e.to).split("(")[0]
        inner = unwrap(e.this)
        if isinstance(inner, exp.Column) and target in ("halfvec", "vector") and \
                column_type in ("vector", "halfvec"):
            return target
        if target in ("bit", "varbit") and isinstance(inner, exp.Anonymous) and \
                function_name(inner) == "binary_quantize":
            return "bit"
        if target in ("bit", "varbit") and isinstance(inner, exp.Column):
            return "bit"
        if target in ("halfvec", "vector", "sparsevec", "bit"):
            return target
    if isinstance(e, exp.Anonymous) and function_name(e) == "binary_quantize":
        return "bit"
    raise FeatureNotSupported("vector index expressions other than casts of a vector column "
                              "(col::halfvec(n)) and binary_quantize(col)::bit(n) are not "
                              "supported")


def cast_dims(e: exp.Expression) -> int | None:
    """n of the cast's `type(n)`, when given."""
    e = unwrap(e)
    if isinstance(e, exp.Cast) and e.to.expressions:
        try:
            return int(e.to.expressions[0].name)
        except ValueError:
            return None
    return None


def renamed(expression_sql: str, old: str, new: str) -> tuple[str, str]:
    """An index expression after RENAME COLUMN old TO new: (pretty text, pg_get_indexdef's)."""
    from sqlvec.sql.dialect import SqlVec

    tree = sqlglot.parse_one(f"SELECT {expression_sql}", read=SqlVec).expressions[0]

    def swap(x: exp.Expression) -> exp.Expression:
        if isinstance(x, exp.Column) and x.name == old:
            return exp.column(new)
        return x
    tree = tree.transform(swap)
    return deparse(tree), deparse(tree, pretty=False)
