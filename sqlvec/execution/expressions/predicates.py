"""Predicates: comparisons (also `= ANY (array)`, `IS [NOT] DISTINCT FROM`), AND / OR / NOT in
three-valued logic, IS, BETWEEN, IN (list), LIKE and regular expressions, and `OPERATOR(...)`."""

from __future__ import annotations

import functools
import operator

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.functions import scalar
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.calls import undefined_keyword
from sqlvec.execution.expressions.core import (
    BPCHAR,
    CHAR_PEERS,
    HANDLERS,
    Compiler,
    Frame,
    constant,
    operands,
    param_index,
)
from sqlvec.execution.expressions.vector import sparse_compare, vector_compare
from sqlvec.execution.kernels import widen_decimal
from sqlvec.execution.values import BOOL, TEXT, Datum, Value, as_array, is_scalar
from sqlvec.float_order import arrow_nan_ordered, pg_compare, pg_float_key
from sqlvec.sql import dialect as d
from sqlvec.types import SqlType

_SYMBOLS = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_COMPARE = {exp.EQ: "equal", exp.NEQ: "not_equal", exp.LT: "less", exp.LTE: "less_equal",
            exp.GT: "greater", exp.GTE: "greater_equal"}


def _compare(c: Compiler, e: exp.Binary) -> Value:
    if isinstance(e.expression, exp.Any) or isinstance(e.expression, exp.All):
        return _compare_any(c, e)
    a, b = operands(c, e)
    a, b, t = c.unify(a, b, _SYMBOLS[type(e)])
    op = _COMPARE[type(e)]
    if t.is_vector:
        return Value(lambda f: vector_compare(op, a(f), b(f), f.n), BOOL, a.const and b.const)
    if t.is_sparse:
        return Value(lambda f: sparse_compare(op, a(f), b(f), f.n), BOOL, a.const and b.const)
    fn = getattr(pc, op)
    return Value(lambda f: _arrow_compare(fn, a(f), b(f)), BOOL, a.const and b.const)


def _arrow_compare(fn, x: Datum, y: Datum) -> Datum:
    """Arrow's comparison `fn` over `x` and `y`, floats in PostgreSQL's order (NaN greatest)."""
    try:
        return arrow_nan_ordered(fn.__name__, fn(x, y), x, y)
    except pa.ArrowInvalid:
        if pa.types.is_decimal(x.type) and pa.types.is_decimal(y.type):
            return fn(widen_decimal(x), widen_decimal(y))  # the common scale needs more than 38 digits
        raise
    except pa.ArrowNotImplementedError:
        if pa.types.is_list(x.type) and pa.types.is_list(y.type):  # arrays: element-wise
            return _list_compare(fn, x, y)
        if x.type != y.type:
            y = y.cast(x.type) if not is_scalar(y) else pa.scalar(y.as_py(), x.type)
            return arrow_nan_ordered(fn.__name__, fn(x, y), x, y)
        raise


def _list_compare(fn, x: Datum, y: Datum) -> Datum:
    py = {pc.equal: operator.eq, pc.not_equal: operator.ne, pc.less: operator.lt,
          pc.less_equal: operator.le, pc.greater: operator.gt, pc.greater_equal: operator.ge}[fn]
    if is_scalar(x) and is_scalar(y):
        a, b = x.as_py(), y.as_py()
        return pa.scalar(None if a is None or b is None else py(*_float_ordered(a, b)),
                         pa.bool_())
    n = len(x) if not is_scalar(x) else len(y)
    if n == 0:
        return pa.array([], pa.bool_())
    xs, ys = as_array(x, n).to_pylist(), as_array(y, n).to_pylist()
    return pa.array([None if a is None or b is None else py(*_float_ordered(a, b))
                     for a, b in zip(xs, ys)], pa.bool_())


def _float_ordered(a: list, b: list) -> tuple[list, list]:
    """Two arrays' items as PostgreSQL orders them when either holds a float NaN or a NULL
    (array comparison takes NULL elements as equal to each other and above every other)."""
    if not any(v is None or isinstance(v, (float, list)) for v in (*a, *b)):
        return a, b
    return _element_keys(a), _element_keys(b)


def _element_keys(items: list) -> list:
    """An array's items as sort keys in PostgreSQL's order of array elements: NULL above
    everything, then float NaN (`pg_float_key`); a nested array's items likewise."""
    return [_element_keys(v) if isinstance(v, list) else (2, 0) if v is None
            else pg_float_key(v) for v in items]


def _null_safe(c: Compiler, e: exp.Binary) -> Value:
    a, b = operands(c, e)
    a, b, _t = c.unify(a, b)
    negate = isinstance(e, exp.NullSafeNEQ)

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        eq = pc.fill_null(_arrow_compare(pc.equal, x, y), False)
        both_null = pc.and_(pc.is_null(x), pc.is_null(y))
        out = pc.or_(eq, both_null)
        return pc.invert(out) if negate else out

    return Value(fn, BOOL, a.const and b.const)


def _compare_any(c: Compiler, e: exp.Binary) -> Value:
    quant = e.expression
    is_all = isinstance(quant, exp.All)
    left = c.compile(e.this)
    inner = quant.this.this if isinstance(quant.this, exp.Paren) else quant.this
    if isinstance(inner, exp.Parameter) and c.env.param_type(param_index(inner)) is None \
            and left.type.name != "unknown":
        c.env.infer_param(param_index(inner), left.type.array_of() if not left.type.is_array else left.type)
    arr = c.compile(inner)
    op = _COMPARE[type(e)]
    elem = arr.type.element if arr.type.is_array else left.type
    left = c.coerce(left, elem) if left.type.name == "unknown" else left
    if left.type.name == "bpchar" and elem.name in ("text", "varchar", "name"):
        left = c.char_as_text(left)  # char(n) = ANY (text[]): compared as text, as in `=`

    def fn(f: Frame) -> Datum:
        lv = as_array(left(f), f.n)
        av = arr(f)
        if is_scalar(av):
            items = av.as_py()
            if items is None:
                return pa.nulls(f.n, pa.bool_())
            values = pa.array(items, elem.to_arrow() if elem.name != "unknown" else None)
            if op == "equal" and not is_all:
                hit = pc.is_in(lv, value_set=values.drop_null())
                if values.null_count:
                    hit = pc.if_else(hit, True, pa.scalar(None, pa.bool_()))
                return pc.if_else(pc.is_null(lv), pa.scalar(None, pa.bool_()), hit)
            out = None
            for v in values:
                cmp = pg_compare(op, lv, v)
                out = cmp if out is None else (pc.and_kleene(out, cmp) if is_all else pc.or_kleene(out, cmp))
            return out if out is not None else pa.array([is_all] * f.n, pa.bool_())
        rows_l = lv.to_pylist()
        rows_a = av.to_pylist()
        pyop = {"equal": operator.eq, "not_equal": operator.ne, "less": operator.lt,
                "less_equal": operator.le, "greater": operator.gt, "greater_equal": operator.ge}[op]
        out = []
        for x, items in zip(rows_l, rows_a):
            if x is None or items is None:
                out.append(None)
                continue
            results = [None if v is None else pyop(pg_float_key(x), pg_float_key(v))
                       for v in items]
            if is_all:
                out.append(False if False in results else (None if None in results else True))
            else:
                out.append(True if True in results else (None if None in results else False))
        return pa.array(out, pa.bool_())

    return Value(fn, BOOL)


def _and(c: Compiler, e: exp.And) -> Value:
    a = c.condition(e.this, "AND")
    b = c.condition(e.expression, "AND")
    return Value(lambda f: pc.and_kleene(a(f), b(f)), BOOL, a.const and b.const)


def _or(c: Compiler, e: exp.Or) -> Value:
    a = c.condition(e.this, "OR")
    b = c.condition(e.expression, "OR")
    return Value(lambda f: pc.or_kleene(a(f), b(f)), BOOL, a.const and b.const)


def _not(c: Compiler, e: exp.Not) -> Value:
    a = c.condition(e.this, "NOT")
    return Value(lambda f: pc.invert(a(f)), BOOL, a.const)


def _is(c: Compiler, e: exp.Is) -> Value:
    a = c.compile(e.this)
    target = e.expression
    negate = bool(e.args.get("negate"))
    if isinstance(target, exp.Null):
        fn = (lambda f: pc.is_valid(a(f))) if negate else (lambda f: pc.is_null(a(f)))
        return Value(fn, BOOL, a.const)
    if isinstance(target, exp.Boolean):
        a = c.coerce(a, BOOL)
        want = bool(target.this)

        def fn(f):
            v = a(f)
            out = pc.fill_null(pc.equal(v, want), False)
            return pc.invert(out) if negate else out
        return Value(fn, BOOL, a.const)
    raise FeatureNotSupported(f"IS {target.sql()} is not supported")


def _between(c: Compiler, e: exp.Between) -> Value:
    x = c.compile(e.this)
    lo = c.compile(e.args["low"])
    hi = c.compile(e.args["high"])
    x1, lo, _ = c.unify(x, lo)
    x2, hi, _ = c.unify(x, hi)

    def between(x_: Datum, low: Datum, x_again: Datum, high: Datum) -> Datum:
        return pc.and_kleene(pg_compare("greater_equal", x_, low),
                             pg_compare("less_equal", x_again, high))

    if e.args.get("symmetric"):  # BETWEEN SYMMETRIC: either order of the bounds
        return Value(lambda f: pc.or_kleene(between(x1(f), lo(f), x1(f), hi(f)),
                                            between(x1(f), hi(f), x1(f), lo(f))),
                     BOOL, x.const and lo.const and hi.const)
    return Value(lambda f: between(x1(f), lo(f), x2(f), hi(f)), BOOL,
                 x.const and lo.const and hi.const)


def _in(c: Compiler, e: exp.In) -> Value:
    x = c.compile(e.this)
    items = [c.compile(i) for i in e.expressions]
    if x.type.name == "bpchar" and all(i.type.name in CHAR_PEERS for i in items):
        return _char_in(c, x, items)
    t = V.common_type([x.type] + [i.type for i in items], "IN")
    if t.name != "unknown":  # `id IN ($1)` types $1 as id's type, as `id = $1` does
        for k, item in enumerate(e.expressions):
            if isinstance(item, exp.Parameter) and items[k].type.name == "unknown":
                c.env.infer_param(param_index(item), t)
                items[k] = c.compile(item)
    return _in_values(c.coerce(x, t), [c.coerce(i, t) for i in items], t)


def _char_in(c: Compiler, x: Value, items: list[Value]) -> Value:
    """`c IN (...)` for char(n) `c` and string items, as PostgreSQL: two or more constants join
    `c` in a char array (trailing spaces do not count on either side); any other item is
    `c = item`."""
    several = sum(i.const for i in items) > 1
    constants = [c.char_as_text(c.coerce(i, BPCHAR)) for i in items if i.const and several]
    others = [c.unify(x, i) for i in items if not (i.const and several)]
    key = c.char_as_text(x)
    tests = [_in_values(key, constants, TEXT)] if constants else []
    tests += [Value(lambda f, a=a, b=b: pc.equal(a(f), b(f)), BOOL) for a, b, _ in others]
    if len(tests) == 1:
        return tests[0]
    return Value(lambda f: functools.reduce(pc.or_kleene, (t(f) for t in tests)), BOOL)


def _in_values(x: Value, items: list[Value], t: SqlType) -> Value:
    """`x IN (items)` for operands of type `t` already."""
    if all(i.const for i in items):
        values = pa.array([constant(i, None).as_py() for i in items], t.to_arrow())
        has_null = values.null_count > 0
        present = values.drop_null()

        def fn(f):
            v = x(f)
            hit = pc.is_in(v, value_set=present)
            if has_null:
                hit = pc.if_else(hit, True, pa.scalar(None, pa.bool_()))
            return pc.if_else(pc.is_null(v), pa.scalar(None, pa.bool_()), hit)
        return Value(fn, BOOL, x.const)

    def fn_rows(f):
        v = x(f)
        out = None
        for i in items:
            cmp = pg_compare("equal", v, i(f))
            out = cmp if out is None else pc.or_kleene(out, cmp)
        return out
    return Value(fn_rows, BOOL)


def _like_sensitive(c: Compiler, e: exp.Like) -> Value:
    return _like(c, e, False)


def _like_insensitive(c: Compiler, e: exp.ILike) -> Value:
    return _like(c, e, True)


def _regex_sensitive(c: Compiler, e: exp.RegexpLike) -> Value:
    return _regex(c, e, False)


def _regex_insensitive(c: Compiler, e: exp.RegexpILike) -> Value:
    return _regex(c, e, True)


def _padded_text(c: Compiler, e: exp.Expression) -> Value:
    """The string LIKE and regular expressions match: char(n) with its padding (PostgreSQL's
    bpcharlike and bpcharregexeq see the stored value), anything else as text."""
    value = c.compile(e)
    if value.type.name == "bpchar":
        return Value(value.fn, TEXT, value.const)
    return c.compile_as(e, TEXT)


def _like(c: Compiler, e: exp.Expression, ignore_case: bool) -> Value:
    x = _padded_text(c, e.this)
    pattern_expr = e.expression
    escape = None
    if isinstance(pattern_expr, exp.Escape):
        escape = pattern_expr.expression.name
        pattern_expr = pattern_expr.this
    p = c.compile_as(pattern_expr, TEXT)
    negate = bool(e.args.get("negate"))

    def fn(f):
        pat = p(f)
        if not is_scalar(pat):
            raise FeatureNotSupported("LIKE with a non-constant pattern is not supported")
        if not pat.is_valid:
            return pa.nulls(f.n, pa.bool_())
        pattern = pat.as_py()
        if escape and escape != "\\":
            pattern = pattern.replace("\\", "\\\\").replace(escape, "\\")
        out = pc.match_like(x(f), pattern, ignore_case=ignore_case)
        return pc.invert(out) if negate else out
    return Value(fn, BOOL, x.const)


def _regex(c: Compiler, e: exp.Expression, ignore_case: bool) -> Value:
    x = _padded_text(c, e.this)
    p = c.compile_as(e.expression, TEXT)

    def fn(f):
        pat = p(f)
        if not is_scalar(pat):
            raise FeatureNotSupported("a non-constant regular expression is not supported")
        if not pat.is_valid:
            return pa.nulls(f.n, pa.bool_())
        try:
            return pc.match_substring_regex(x(f), pat.as_py(), ignore_case=ignore_case)
        except pa.ArrowInvalid as exc:
            raise SqlVecError(f"invalid regular expression: {exc}", sqlstate="2201B") from None
    return Value(fn, BOOL, x.const)


@scalar("like", "text, text -> bool")
def _like_function(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    """like(s, pattern): `s LIKE pattern`."""
    if len(args) != 2:
        raise undefined_keyword(c, "like", args)
    return _like(c, exp.Like(this=args[0], expression=args[1]), False)


@scalar("regexp_like", "text, text -> bool", "text, text, text -> bool")
def _regexp_like(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    """regexp_like(s, pattern[, flags]): `s ~ pattern`; flag `i` is `~*`."""
    if len(args) not in (2, 3):
        raise undefined_keyword(c, "regexp_like", args)
    flags = constant(c.compile_as(args[2], TEXT), None).as_py() if len(args) > 2 else ""
    if flags is None:
        return Value(lambda f: pa.scalar(None, pa.bool_()), BOOL, True)
    for flag in flags:
        if flag not in "bceimnpqstwx":
            raise SqlVecError(f'invalid regular expression option: "{flag}"', sqlstate="22023")
        if flag not in "ic":
            raise FeatureNotSupported(f'regexp_like option "{flag}" is not supported')
    ignore_case = flags.rfind("i") > flags.rfind("c")
    return _regex(c, exp.RegexpLike(this=args[0], expression=args[1]), ignore_case)


def _operator(c: Compiler, e: exp.Operator) -> Value:
    """`a OPERATOR(pg_catalog.~) b` and friends: map the operator name to our nodes."""
    op = str(e.args.get("operator")).split(".")[-1].strip()
    cls = {"~": exp.RegexpLike, "~*": exp.RegexpILike, "=": exp.EQ, "<>": exp.NEQ, "<": exp.LT,
           "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE, "~~": exp.Like, "~~*": exp.ILike,
           "||": exp.DPipe, "+": exp.Add, "-": exp.Sub, "*": exp.Mul, "/": exp.Div,
           "<->": d.L2Distance, "<=>": d.CosineDistance, "<#>": d.NegativeInnerProduct,
           "<+>": d.L1Distance}.get(op)
    if op == "!~":
        return c.compile(exp.Not(this=exp.RegexpLike(this=e.this, expression=e.expression)))
    if cls is None:
        raise FeatureNotSupported(f"operator {op} is not supported")
    return c.compile(cls(this=e.this, expression=e.expression))


HANDLERS.update({
    exp.EQ: _compare, exp.NEQ: _compare, exp.LT: _compare, exp.LTE: _compare, exp.GT: _compare,
    exp.GTE: _compare,
    exp.NullSafeEQ: _null_safe, exp.NullSafeNEQ: _null_safe,
    exp.And: _and, exp.Or: _or, exp.Not: _not, exp.Is: _is,
    exp.Between: _between, exp.In: _in,
    exp.Like: _like_sensitive, exp.ILike: _like_insensitive,
    exp.RegexpLike: _regex_sensitive, exp.RegexpILike: _regex_insensitive,
    exp.Operator: _operator,
})
