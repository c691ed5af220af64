"""Function calls, compiled by their declarations in the function catalog (catalog/functions.py):
`compile_call` looks the name up and hands the arguments to the declared kernel; unknown names
and argument types are 42883 as PostgreSQL reports them. Also schema-qualified calls
(`pg_catalog.lower(x)`) and window functions outside a select list (42P20)."""

from __future__ import annotations

from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.catalog.functions import Kind
from sqlvec.errors import FeatureNotSupported, SqlVecError, UndefinedFunction
from sqlvec.execution.expressions.core import HANDLERS, Compiler, describe
from sqlvec.execution.values import Value
from sqlvec.sql.calls import call_of


def _function(c: Compiler, e: exp.Expression) -> Value:
    """A function call: compiled by its declaration in the function catalog."""
    if not isinstance(e, exp.Anonymous) and call_of(e) is None:
        # Registered extensions (execution/catalog_functions.py) that take the node itself.
        extra = (c.env.functions or {}).get(f"expr:{type(e).__name__}")
        if extra is not None:
            return extra(c, e)
        raise FeatureNotSupported(f"{describe(e)} is not supported")
    return compile_call(c, e)


def _dot(c: Compiler, e: exp.Dot) -> Value:
    """`pg_catalog.lower(x)`: a schema-qualified function call."""
    schema = e.this.name if isinstance(e.this, exp.Identifier) else None
    if schema in ("pg_catalog", "public", "information_schema") and isinstance(
            e.expression, (exp.Func, exp.Anonymous)):
        return c.compile(e.expression)
    extra = (c.env.functions or {}).get("expr:Dot")  # (record).field, catalog_functions.py
    if extra is not None:
        return extra(c, e)
    raise FeatureNotSupported(f"{e.sql()} is not supported")


def _window_unsupported(c: Compiler, e: exp.Expression) -> Value:
    raise SqlVecError("window functions are not allowed here", sqlstate="42P20")


_HINT = "No function matches the given name and argument types. You might need to add " \
        "explicit type casts."


def compile_call(c: Compiler, e: exp.Expression) -> Value:
    """A scalar function call, compiled by its declaration's kernel. Unknown names are 42883
    naming the argument types; aggregates, window and set-returning functions outside the
    places the planner gives them are refused as PostgreSQL refuses them."""
    call = call_of(e)
    if call is None:
        raise FeatureNotSupported(f"{type(e).__name__} is not supported")
    name, args = call
    fn = F.lookup(name)
    if fn is None:
        raise undefined_call(c, name, args)
    if fn.kind is Kind.AGGREGATE:
        raise SqlVecError("aggregate functions are not allowed here", sqlstate="42803")
    if fn.kind is Kind.WINDOW:
        raise SqlVecError(f"window function {name} requires an OVER clause", sqlstate="42809")
    if fn.kind is Kind.SET_RETURNING:
        raise FeatureNotSupported("set-returning functions are not allowed here")
    if not isinstance(e, exp.Anonymous) or e.this != name:
        e = exp.Anonymous(this=name, expressions=args)
    return fn.kernel(c, args, e)


def no_such_function(name: str, values: list[Value]) -> SqlVecError:
    """PostgreSQL's 42883 for a call of `name` with arguments of these types."""
    shown = ", ".join(v.type.format() for v in values)
    return UndefinedFunction(f"function {name}({shown}) does not exist", hint=_HINT)


def undefined_call(c: Compiler, name: str, args: list[exp.Expression]) -> SqlVecError:
    """PostgreSQL's 42883 for a call of `name` with these arguments (`name => value` for a
    named one: no such parameter), naming their types."""
    types = []
    for a in args:
        named = f"{a.this.name} => " if isinstance(a, exp.Kwarg) else ""
        try:
            t = c.compile(a.expression if named else a).type
            types.append(named + ("unknown" if t.name == "unknown" else t.format()))
        except SqlVecError:
            types.append(named + "unknown")
    return UndefinedFunction(f"function {name}({', '.join(types)}) does not exist", hint=_HINT)


def undefined_keyword(c: Compiler, name: str, exprs: list[exp.Expression]) -> SqlVecError:
    """42883 for a keyword form (COALESCE, NULLIF, ...) called with arguments it does not take."""
    shown = ", ".join(c.compile(a).type.format() for a in exprs)
    return SqlVecError(f"function {name}({shown}) does not exist", sqlstate="42883")


HANDLERS.update({
    exp.Dot: _dot,
    exp.Window: _window_unsupported,
    exp.Func: _function,
    exp.Anonymous: _function,
})
