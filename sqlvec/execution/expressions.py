"""Expressions (sqlglot trees) compiled into functions over Arrow columns.

`Compiler.compile(expression)` returns a `Value`: a function of a `Frame` (the input rows as an
Arrow table) plus the result's SQL type. Compilation is one dispatch table keyed by sqlglot
expression class (`HANDLERS`), with pgvector's nodes beside the standard ones; function calls
(`lower(x)`, `vector_dims(v)`) are compiled by their declarations in the function catalog
(`functions.compile_call`). An expression class with no handler is refused with 0A000 naming it,
never evaluated wrongly.

Everything here is vectorized: pyarrow.compute for scalar logic, NumPy kernels for distances.
Correlated subqueries are the exception (evaluated once per outer row); uncorrelated ones run
once per statement.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.functions import scalar
from sqlvec.errors import (
    DataException,
    DatatypeMismatch,
    DivisionByZero,
    FeatureNotSupported,
    NumericValueOutOfRange,
    SqlVecError,
    SyntaxError_,
)
from sqlvec.execution import values as V
from sqlvec.execution.joins import key_pairs
from sqlvec.execution.values import (
    BOOL,
    FLOAT8,
    INT4,
    INT8,
    NUMERIC,
    TEXT,
    UNKNOWN,
    Datum,
    Value,
    as_array,
    is_scalar,
)
from sqlvec.plan.nodes import SubPlan
from sqlvec.sql import dialect as d
from sqlvec.sql.binder import Field, Scope, sql_type, system_column
from sqlvec.sql.calls import call_of
from sqlvec.types import REG_TYPES, SqlType
from sqlvec.vectors import Metric, paired_distances


@dataclass
class Frame:
    """Input rows of an expression, and the outer row when inside a correlated subquery."""

    table: pa.Table
    ctx: object  # execution.context.ExecContext
    outer: Frame | None = None

    @property
    def n(self) -> int:
        return self.table.num_rows


@dataclass
class CompileEnv:
    """Statement-wide compile state: parameter types (given or inferred) and services."""

    param_types: dict[int, SqlType] = field(default_factory=dict)
    build_subplan: Callable | None = None  # (plan, scope) -> operator
    functions: dict | None = None
    correlated: bool = False  # set when an outer reference is compiled
    subplans: int = 0  # subqueries compiled so far (CASE: does a branch hold one?)
    outer_refs: list = field(default_factory=list)  # (Compiler read, column index) per outer ref

    def param_type(self, index: int) -> SqlType | None:
        return self.param_types.get(index)

    def infer_param(self, index: int, t: SqlType) -> None:
        if t.name != "unknown" and index not in self.param_types:
            self.param_types[index] = t


class Compiler:
    """Compiles expressions against one scope (the input relation's fields and types)."""

    def __init__(self, scope: Scope, types: list[SqlType], env: CompileEnv,
                 outer: Compiler | None = None) -> None:
        self.scope = scope
        self.types = types
        self.env = env
        self.outer = outer
        self._compiled: dict[int, Value] = {}  # id(node) -> its Value, while a chain compiles

    def compile(self, e: exp.Expression) -> Value:
        if self._compiled:
            done = self._compiled.get(id(e))
            if done is not None:
                return done
        if type(e) in _CHAINS and type(e.this) in _CHAINS:
            return self._chain(e)
        return self._compile(e)

    def _chain(self, e: exp.Expression) -> Value:
        """A left-deep chain (`a + b + c ...`, `p OR q OR ...`, `x || y || ...`), compiled and
        evaluated in a loop: a 10,000-term chain costs no recursion, here or at run time.

        Each operator is compiled by its own handler with its left operand standing for the
        value so far (`_hole`), so types, casts and errors are those of the nested form."""
        spine = []
        node = e
        while type(node) in _CHAINS and id(node) not in self._compiled:
            spine.append(node)
            node = node.this
        first = self._compile(spine.pop())  # the innermost operator: its operands are leaves
        acc, steps = first, []
        for node in reversed(spine):
            self._compiled[id(node.this)] = _hole(acc)
            try:
                acc = self._compile(node)
            finally:
                del self._compiled[id(node.this)]
            steps.append(acc)

        def fn(f: Frame) -> Datum:
            x = first(f)
            for step in steps:
                x = step(_HoleFrame(f.table, f.ctx, f.outer, x))
            return x

        value = Value(fn, acc.type, acc.const)
        return _folded(value) if value.const else value

    def _compile(self, e: exp.Expression) -> Value:
        handler = HANDLERS.get(type(e))
        if handler is None:
            for cls in type(e).__mro__:
                handler = HANDLERS.get(cls)
                if handler is not None:
                    break
        if handler is None:
            # Registered extensions (execution/catalog_functions.py): operators and forms
            # catalog queries use, keyed by expression class name.
            extra = (self.env.functions or {}).get(f"expr:{type(e).__name__}")
            if extra is not None:
                return extra(self, e)
            raise FeatureNotSupported(f"{_describe(e)} is not supported")
        value = handler(self, e)
        return _folded(value) if value.const else value

    # Typing helpers -----------------------------------------------------------------------------

    def coerce(self, value: Value, target: SqlType) -> Value:
        """`value` as `target` (implicit cast: unknown literals, numeric widening, params)."""
        if value.type == target or target.name == "unknown":
            return value
        if value.type.name == "unknown" and value.text is not None:
            scalar = V.text_of_literal_type(value.text, target)
            return Value(lambda f: scalar, target, const=True)
        src = value.type
        if src.name == "unknown":
            return Value(lambda f: V.cast(value(f), TEXT, target, f.n), target, value.const)
        return Value(lambda f: V.cast(value(f), src, target, f.n), target, value.const)

    def unify(self, a: Value, b: Value) -> tuple[Value, Value, SqlType]:
        """Bring two operands to one type, as PostgreSQL resolves binary operators."""
        ta, tb = a.type, b.type
        if ta == tb:
            return a, b, ta
        if ta.name == "unknown":
            return self.coerce(a, tb if tb.name != "unknown" else TEXT), \
                self.coerce(b, tb if tb.name != "unknown" else TEXT), tb if tb.name != "unknown" else TEXT
        if tb.name == "unknown":
            return a, self.coerce(b, ta), ta
        if V.is_numeric(ta) and V.is_numeric(tb):
            t = V.common_numeric(ta, tb)
            if t.name == "float4" and ta.name != tb.name:
                t = FLOAT8  # PostgreSQL's operators: real with any other number is float8
            if t.name == "numeric":
                # Exact operands keep their scales (integers become scale-0 decimals).
                return self.coerce(a, V.as_numeric(ta)), self.coerce(b, V.as_numeric(tb)), t
            return self.coerce(a, t), self.coerce(b, t), t
        if V.is_string(ta) and V.is_string(tb):
            return a, b, TEXT
        if ta.name == tb.name:
            return a, b, SqlType(ta.name)
        if {ta.name, tb.name} <= {"date", "timestamp", "timestamptz"}:
            t = SqlType("timestamptz") if "timestamptz" in (ta.name, tb.name) else SqlType("timestamp")
            return self.coerce(a, t), self.coerce(b, t), t
        if ta.name == "vector" and tb.is_array or tb.name == "vector" and ta.is_array:
            t = ta if ta.name == "vector" else tb
            return self.coerce(a, t), self.coerce(b, t), t
        if {ta.name, tb.name} & {"oid", "regclass", "regtype", "regproc"} and \
                (V.is_numeric(ta) or V.is_numeric(tb)):
            return self.coerce(a, INT8), self.coerce(b, INT8), INT8
        if "xid" in (ta.name, tb.name) and (ta.name in V.INT_DIGITS or tb.name in V.INT_DIGITS):
            # `xmin = 42` (PostgreSQL's xideqint4): xids are stored as int8 already.
            return _as_int8(self, a), _as_int8(self, b), INT8
        raise SqlVecError(f"operator does not exist: {ta.format()} = {tb.format()}",
                          sqlstate="42883",
                          hint="No operator matches the given name and argument types. You might "
                               "need to add explicit type casts.")

    def condition(self, e: exp.Expression, clause: str) -> Value:
        """A boolean condition (WHERE, ON, AND, CASE WHEN...): PostgreSQL casts nothing but
        untyped literals and parameters to boolean here (42804 otherwise)."""
        v = self.compile_as(e, BOOL) if isinstance(e, exp.Parameter) else self.compile(e)
        if v.type.name == "unknown":
            return self.coerce(v, BOOL)
        if v.type.name != "bool":
            raise DatatypeMismatch(
                f"argument of {clause} must be type boolean, not type {v.type.format()}")
        return v

    def compile_as(self, e: exp.Expression, target: SqlType) -> Value:
        if isinstance(e, exp.Parameter):
            self.env.infer_param(_param_index(e), target)
        value = self.coerce(self.compile(e), target)
        return _folded(value) if value.const else value


# Binary operators whose left-deep chains `Compiler._chain` compiles as a loop.
_CHAINS = frozenset({exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe, exp.And, exp.Or})


@dataclass
class _HoleFrame(Frame):
    """A frame that also carries the value of a chain so far (the left operand of a step)."""

    hole: Datum = None


def _hole(acc: Value) -> Value:
    """The left operand of a chain step: the value so far, read from the frame. Evaluated
    outside the chain (a constant folded while compiling), it is `acc` itself."""

    def fn(f: Frame) -> Datum:
        return f.hole if isinstance(f, _HoleFrame) else acc(f)

    return Value(fn, acc.type, acc.const, acc.text)


def _as_int8(c: Compiler, v: Value) -> Value:
    return Value(v.fn, INT8, v.const) if v.type.name == "xid" else c.coerce(v, INT8)


def _folded(value: Value) -> Value:
    """A constant expression evaluated once, on first use (it reads neither rows nor params)."""
    cache: list = []

    def fn(frame: Frame) -> Datum:
        if not cache:
            cache.append(value.fn(frame))
        return cache[0]

    return Value(fn, value.type, True, value.text)


# Leaves -------------------------------------------------------------------------------------------


def _column(c: Compiler, e: exp.Column) -> Value:
    level, index = c.scope.resolve(e)
    if level == 0:
        t = c.types[index]
        return _system_value(c.scope.fields[index], e.name,
                             Value(lambda f: f.table.column(index), t))
    c.env.correlated = True
    outer = c
    for _ in range(level):
        outer = outer.outer  # type: ignore[assignment]
        if outer is None:
            raise FeatureNotSupported("outer reference beyond the enclosing query")
    t = outer.types[index]
    c.env.outer_refs.append((outer, index))

    def fn(f: Frame) -> Datum:
        frame = f
        for _ in range(level):
            frame = frame.outer  # type: ignore[assignment]
        return frame.table.column(index)[0]

    return _system_value(outer.scope.fields[index], e.name, Value(fn, t))


# System columns: derived from the row id (`field`, the scan's hidden _rowid), which is
# assigned at insert and never reused; an UPDATE writes the row anew under a new one.
# - ctid (block, offset) = (rowid // 256, rowid % 256 + 1): unique, stable for the row's life
#   and new after UPDATE, as PostgreSQL's is (which VACUUM FULL may also change). The row id
#   is taken modulo 2**40 so that block numbers fit 32 bits (uncommitted rows of the own
#   transaction have provisional negative ids: their ctid changes at COMMIT).
# - xmin = rowid % 2**31 + 3 (3 is the first normal xid): changes on UPDATE, so clients that
#   use xmin as an optimistic-concurrency token see a concurrent change. Not a transaction id:
#   rows written together do not share one.
# - xmax, cmin, cmax = 0 (no row visible here is being deleted; no command ids).
# - tableoid: the table's OID, which the row id field carries as its source.

_ROWID_SPAN = (1 << 40) - 1


def _ctid(rowid: Datum) -> Datum:
    u = pc.bit_wise_and(rowid, _ROWID_SPAN)
    return pc.add(pc.shift_left(pc.shift_right(u, 8), 16), pc.add(pc.bit_wise_and(u, 255), 1))


def _xmin(rowid: Datum) -> Datum:
    return pc.add(pc.bit_wise_and(rowid, (1 << 31) - 1), 3)


def _per_row(value: int) -> Callable[[Datum], Datum]:
    """A constant for every row, NULL where the row id is (the null side of an outer join)."""
    scalar, null = pa.scalar(value, pa.int64()), pa.scalar(None, pa.int64())
    return lambda rowid: pc.if_else(pc.is_valid(rowid), scalar, null)


_SYSTEM_VALUES: dict[str, Callable[[Datum], Datum]] = {
    "ctid": _ctid, "xmin": _xmin, "xmax": _per_row(0), "cmin": _per_row(0), "cmax": _per_row(0),
}


def _system_value(field: Field, name: str, rowid: Value) -> Value:
    """`rowid` itself, or the system column `name` when that is what was resolved to it."""
    system = system_column(field, name)
    if system is None:
        return rowid
    derive = _SYSTEM_VALUES.get(name) or _per_row(field.source[0])  # tableoid
    return Value(lambda f: derive(rowid(f)), system.type)


def _literal(c: Compiler, e: exp.Literal) -> Value:
    if e.is_string:
        text = e.this
        scalar = pa.scalar(text, pa.string())
        return Value(lambda f: scalar, UNKNOWN, const=True, text=text)
    text = e.this
    try:
        value = int(text)
        if -(2**31) <= value < 2**31:
            s = pa.scalar(value, pa.int32())
            return Value(lambda f: s, INT4, const=True)
        if -(2**63) <= value < 2**63:
            s = pa.scalar(value, pa.int64())
            return Value(lambda f: s, INT8, const=True)
    except ValueError:
        pass
    dec = decimal.Decimal(text)
    if "e" in text.lower():
        dec = decimal.Decimal(format(dec, "f"))
    scale = max(0, -dec.as_tuple().exponent)
    precision = max(len(dec.as_tuple().digits), scale, 1)
    t = SqlType.of("numeric", min(38, precision), min(scale, 37))
    try:
        s = pa.scalar(dec, pa.decimal128(min(38, max(precision, scale + 1)), min(scale, 37)))
    except pa.ArrowInvalid:  # more digits than numeric holds here (38)
        raise NumericValueOutOfRange("numeric field overflow") from None
    return Value(lambda f: s, SqlType("numeric", t.typmod), const=True)


def _null(c: Compiler, e: exp.Null) -> Value:
    s = pa.scalar(None, pa.string())
    return Value(lambda f: s, UNKNOWN, const=True)


def _boolean(c: Compiler, e: exp.Boolean) -> Value:
    s = pa.scalar(bool(e.this), pa.bool_())
    return Value(lambda f: s, BOOL, const=True)


def _param_index(e: exp.Parameter) -> int:
    return int(e.this.this if isinstance(e.this, exp.Literal) else e.name)


def _parameter(c: Compiler, e: exp.Parameter) -> Value:
    index = _param_index(e)
    if isinstance(e.this, exp.Var):
        raise FeatureNotSupported(f"the operator @{e.name} is not supported")
    t = c.env.param_type(index)

    def fn(f: Frame) -> Datum:
        params = f.ctx.params
        if index > len(params) or index < 1:
            raise SqlVecError(f"there is no parameter ${index}", sqlstate="42P02")
        return params[index - 1]

    if t is None:
        # Type decided by context (coerce/infer); until then it is text, as PostgreSQL defaults.
        return Value(fn, UNKNOWN)
    return Value(fn, t)


def _paren(c: Compiler, e: exp.Paren) -> Value:
    return c.compile(e.this)


# Arithmetic ---------------------------------------------------------------------------------------

_ARITH = {exp.Add: "add", exp.Sub: "subtract", exp.Mul: "multiply", exp.Div: "divide",
          exp.Mod: "mod", exp.Pow: "power"}


def _arith(c: Compiler, e: exp.Binary) -> Value:
    a, b = _operands(c, e)
    op = _ARITH[type(e)]
    # Temporal arithmetic: date/timestamp ± interval, date - date, date + int.
    if a.type.name in V.TEMPORAL or b.type.name in V.TEMPORAL:
        return _temporal_arith(c, op, a, b)
    if a.type.name == "vector" or b.type.name == "vector":
        return _vector_arith(c, op, a, b)
    if op == "add" and (V.is_string(a.type) and a.type.name != "unknown"):
        raise SqlVecError(f"operator does not exist: {a.type.format()} + {b.type.format()}",
                          sqlstate="42883")
    a, b, t = c.unify(a, b)
    if not V.is_numeric(t):
        raise SqlVecError(f"operator does not exist: {a.type.format()} {_SYMBOL[op]} "
                          f"{b.type.format()}", sqlstate="42883")
    if t.name == "numeric":
        result = numeric_result_type(op, a.type, b.type)
        if op == "divide" and a.const and b.const:
            result = _constant_quotient_type(a, b)
        return _bind2(_decimal_op(op, result), a, b, result)
    if op == "power":
        t = FLOAT8
        a, b = c.coerce(a, t), c.coerce(b, t)
    return _bind2(_numeric_op(op, t), a, b, t)


_SYMBOL = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "mod": "%", "power": "^"}


def _operands(c: Compiler, e: exp.Binary) -> tuple[Value, Value]:
    a = c.compile(e.this)
    b = c.compile(e.expression)
    if a.type.name == "unknown" and isinstance(e.this, exp.Parameter) and b.type.name != "unknown":
        c.env.infer_param(_param_index(e.this), b.type)
        a = c.compile(e.this)
    if b.type.name == "unknown" and isinstance(e.expression, exp.Parameter) and a.type.name != "unknown":
        c.env.infer_param(_param_index(e.expression), a.type)
        b = c.compile(e.expression)
    return a, b


def _bind2(fn: Callable[[Datum, Datum], Datum], a: Value, b: Value, t: SqlType) -> Value:
    return Value(lambda f: fn(a(f), b(f)), t, a.const and b.const)


def _numeric_op(op: str, t: SqlType) -> Callable[[Datum, Datum], Datum]:
    """The kernel of `x op y` for operands already of type `t` (integers or floats)."""
    integer = t.name in V.INT_DIGITS

    def run(x: Datum, y: Datum) -> Datum:
        if integer and op in ("divide", "mod"):
            _check_divisor(y)
        try:
            if op == "mod":
                # PostgreSQL's % truncates toward zero (the result has the dividend's sign);
                # x % -1 is 0 even for the smallest integer, whose quotient overflows.
                if integer:
                    y = pc.if_else(pc.equal(y, -1), pa.scalar(1, y.type), y)
                q = pc.divide_checked(x, y) if integer else pc.trunc(pc.divide(x, y))
                return pc.subtract(x, pc.multiply(q, y))
            if op == "power":
                return float_power(x, y)
            if op == "divide" and not integer:
                _check_divisor(y)
            fn = getattr(pc, op + "_checked") if integer else getattr(pc, op)
            out = fn(x, y)
            if integer:
                return _check_int_range(out, t)
            if op == "multiply":
                return V.check_float(out, (x, y), (x, y))
            if op == "divide":
                return V.check_float(out, (x,), (x,), (y,))
            return V.check_float(out, (x, y))
        except pa.ArrowInvalid as exc:
            if "overflow" in str(exc).lower():
                raise NumericValueOutOfRange(_range_message(t)) from None
            raise

    return run


def float_power(x: Datum, y: Datum, checked: bool = True) -> Datum:
    """x ^ y over floats with PostgreSQL's errors: 2201F for zero to a negative power and for
    a negative number to a non-integer one, 22003 for a result out of range (`checked`; the
    numeric version checks its own way)."""
    if V.anywhere(pc.and_(pc.equal(x, 0), pc.less(y, 0))):
        raise SqlVecError("zero raised to a negative power is undefined", sqlstate="2201F")
    if V.anywhere(pc.and_(pc.less(x, 0), pc.not_equal(pc.floor(y), y))):
        raise SqlVecError("a negative number raised to a non-integer power yields a complex "
                          "result", sqlstate="2201F")
    out = pc.power(x, y)
    return V.check_float(out, (x, y), (x,), (x, y)) if checked else out


def _check_divisor(y: Datum) -> None:
    zero = pc.equal(y, pa.scalar(0, y.type) if pa.types.is_decimal(y.type) else 0)
    if (zero.as_py() if is_scalar(zero) else pc.any(zero).as_py()):
        raise DivisionByZero("division by zero")


def _range_message(t: SqlType) -> str:
    return {"int2": "smallint out of range", "int4": "integer out of range",
            "int8": "bigint out of range"}.get(t.name, "value out of range")


def _check_int_range(out: Datum, t: SqlType) -> Datum:
    target = t.to_arrow()
    if out.type == target:
        return out
    try:
        return pc.cast(out, target)
    except pa.ArrowInvalid:
        raise NumericValueOutOfRange(_range_message(t)) from None


# Numeric arithmetic: exact, on Arrow decimals, with PostgreSQL's result scales.

# Division keeps at least this many significant digits (PostgreSQL's NUMERIC_MIN_SIG_DIGITS).
_MIN_DIV_SCALE = 16


def numeric_result_type(op: str, a: SqlType, b: SqlType) -> SqlType:
    """PostgreSQL's display scale of `a op b` (numeric operands, or integers as scale 0)."""
    sa, sb = V.numeric_scale(a), V.numeric_scale(b)
    if op in ("divide", "power"):
        return V.numeric_with_scale(max(_MIN_DIV_SCALE, sa or 0, sb or 0))
    if sa is None or sb is None:
        return NUMERIC
    return V.numeric_with_scale(sa + sb if op == "multiply" else max(sa, sb))


def _constant_quotient_type(a: Value, b: Value) -> SqlType:
    """The exact display scale PostgreSQL gives a quotient of two known numbers
    (select_div_scale: 16 significant digits, estimated from the leading base-10000 digits)."""
    x, y = (constant(v, None).as_py() for v in (a, b))
    scales = [V.numeric_scale(a.type) or 0, V.numeric_scale(b.type) or 0]
    if x is None or y is None or y == 0:
        return V.numeric_with_scale(max(_MIN_DIV_SCALE, *scales))

    def leading(v: decimal.Decimal) -> tuple[int, int]:
        if v == 0:
            return 0, 0
        weight = abs(v).adjusted() // 4
        return weight, int(abs(v).scaleb(-4 * weight))

    (wx, fx), (wy, fy) = leading(decimal.Decimal(x)), leading(decimal.Decimal(y))
    qweight = wx - wy - (1 if fx <= fy else 0)
    return V.numeric_with_scale(max(_MIN_DIV_SCALE - qweight * 4, *scales, 0))


def _decimal_op(op: str, target: SqlType) -> Callable[[Datum, Datum], Datum]:
    """The kernel of `x op y` over decimals, rounded to `target`'s scale (22003 on overflow)."""

    def run(x: Datum, y: Datum) -> Datum:
        if op in ("divide", "mod"):
            _check_divisor(y)
        if op == "power":
            out = float_power(pc.cast(x, pa.float64()), pc.cast(y, pa.float64()), checked=False)
            return V.fit_numeric(V.numeric_from_float(out), target)
        x, y = _wide(x), _wide(y)
        if op == "divide":
            out = _decimal_divide(x, y, target.to_arrow().scale + 1)
        elif op == "mod":
            quotient = pc.round(_decimal_divide(x, y, 1), round_mode="towards_zero")
            out = pc.subtract(x, pc.multiply(_wide(pc.cast(quotient, pa.decimal256(
                x.type.precision, 0), safe=False)), y))
        else:
            out = getattr(pc, op)(x, y)
        return V.fit_numeric(out, target)

    return run


def _wide(x: Datum) -> Datum:
    """A decimal as decimal256 with room for Arrow's result precision rules (≤ 37 digits)."""
    precision = min(x.type.precision, 37)
    try:
        return pc.cast(x, pa.decimal256(precision, x.type.scale))
    except pa.ArrowInvalid:
        raise NumericValueOutOfRange("value overflows numeric format") from None


def _decimal_divide(x: Datum, y: Datum, scale: int) -> Datum:
    """x / y truncated to at least `scale` decimals (Arrow's quotient scale is
    max(4, s1 + p2 - s2 + 1), so the dividend is rescaled to reach `scale`)."""
    p1, s1 = x.type.precision, x.type.scale
    p2, s2 = y.type.precision, y.type.scale
    s1_new = max(s1, scale - 1 - p2 + s2)
    if s1_new > s1:
        x = pc.cast(x, pa.decimal256(min(p1 - s1 + s1_new, 76), s1_new))
    return pc.divide(x, y)


def _neg(c: Compiler, e: exp.Neg) -> Value:
    a = c.compile(e.this)
    if a.type.name == "unknown":
        a = c.coerce(a, NUMERIC if a.text and "." in a.text else INT4)
    if a.type.name == "vector":
        raise SqlVecError("operator does not exist: - vector", sqlstate="42883")
    t = a.type
    if t.name in V.INT_DIGITS:
        return Value(lambda f: int_checked(pc.negate_checked, a(f), t), t, a.const)
    return Value(lambda f: pc.negate(a(f)), t, a.const)


def int_checked(kernel: Callable[[Datum], Datum], x: Datum, t: SqlType) -> Datum:
    """A checked Arrow kernel over integers of `t`: overflow is 22003 `integer out of range`
    (smallint, bigint), as PostgreSQL says for -(-2147483648) or abs(-2147483648)."""
    try:
        return kernel(x)
    except pa.ArrowInvalid as exc:
        if "overflow" in str(exc).lower():
            raise NumericValueOutOfRange(_range_message(t)) from None
        raise


def _temporal_arith(c: Compiler, op: str, a: Value, b: Value) -> Value:
    ta, tb = a.type, b.type
    if ta.name == "unknown":
        a = c.coerce(a, SqlType("interval") if tb.name in V.TEMPORAL - {"interval"} and op == "subtract"
                     else tb)
        ta = a.type
    if tb.name == "unknown":
        b = c.coerce(b, SqlType("interval") if ta.name != "date" or op != "subtract" else ta)
        tb = b.type
    if ta.name == "date" and V.is_numeric(tb) and op in ("add", "subtract"):
        def fn(f):
            days = pc.cast(b(f), pa.int32())
            x = pc.cast(a(f), pa.int32())
            out = pc.add(x, days) if op == "add" else pc.subtract(x, days)
            return pc.cast(out, pa.date32())
        return Value(fn, SqlType("date"), a.const and b.const)
    if ta.name == "date" and tb.name == "date" and op == "subtract":
        return Value(lambda f: pc.subtract(pc.cast(a(f), pa.int32()), pc.cast(b(f), pa.int32())),
                     INT4, a.const and b.const)
    if tb.name == "interval" and ta.name in ("date", "timestamp", "timestamptz"):
        result = SqlType("timestamp") if ta.name == "date" else ta

        def fn(f):
            base = a(f)
            if ta.name == "date":
                base = pc.cast(base, pa.timestamp("us"))
            return _add_interval(base, b(f), negate=op == "subtract", t=result)
        return Value(fn, result, a.const and b.const)
    if ta.name in ("timestamp", "timestamptz") and tb.name in ("timestamp", "timestamptz", "date") \
            and op == "subtract":
        def fn(f):
            x, y = a(f), b(f)
            if tb.name == "date":
                y = pc.cast(y, pa.timestamp("us"))
            micros = pc.subtract(pc.cast(x, pa.int64()), pc.cast(pc.cast(y, x.type), pa.int64()))
            return _micros_to_interval(micros)
        return Value(fn, SqlType("interval"), a.const and b.const)
    if op in ("multiply", "divide") and "interval" in (ta.name, tb.name) and (
            V.is_numeric(ta) or V.is_numeric(tb)):
        interval, factor = (a, b) if ta.name == "interval" else (b, a)
        if op == "divide" and interval is not a:
            raise SqlVecError(f"operator does not exist: {ta.format()} / {tb.format()}",
                              sqlstate="42883")
        factor = c.coerce(factor, FLOAT8)
        return Value(lambda f: _scale_interval(interval(f), factor(f), op == "divide"),
                     SqlType("interval"), a.const and b.const)
    if ta.name == "interval" and tb.name == "interval" and op in ("add", "subtract"):
        def fn(f):
            return _interval_pairwise(a(f), b(f), op)
        return Value(fn, SqlType("interval"), a.const and b.const)
    raise SqlVecError(f"operator does not exist: {ta.format()} {_SYMBOL[op]} {tb.format()}",
                      sqlstate="42883")


def _scale_interval(interval: Datum, factor: Datum, divide: bool) -> Datum:
    """interval * number (or / number): months and days scale, fractions cascade down to
    days (30 per month) and microseconds, as PostgreSQL's interval_mul."""
    def scale(iv, k):
        if iv is None or k is None:
            return None
        if divide:
            if k == 0:
                raise DivisionByZero("division by zero")
            k = 1 / k
        months = iv.months * k
        whole_months = int(months)
        days = iv.days * k + (months - whole_months) * 30
        whole_days = int(days)
        micros = iv.nanoseconds / 1000 * k + (days - whole_days) * 86_400_000_000
        return pa.MonthDayNano([whole_months, whole_days, int(round(micros)) * 1000])

    if is_scalar(interval) and is_scalar(factor):
        return pa.scalar(scale(interval.as_py(), factor.as_py()), pa.month_day_nano_interval())
    n = len(interval) if not is_scalar(interval) else len(factor)
    ivs = as_array(interval, n).to_pylist()
    ks = as_array(factor, n).to_pylist()
    return pa.array([scale(iv, k) for iv, k in zip(ivs, ks)], pa.month_day_nano_interval())


def _add_interval(base: Datum, interval: Datum, negate: bool, t: SqlType) -> Datum:
    iv = interval.as_py() if is_scalar(interval) else None
    if iv is None and is_scalar(interval):
        return pa.scalar(None, t.to_arrow())
    if iv is None:
        raise FeatureNotSupported("adding a column of intervals is not supported")
    sign = -1 if negate else 1
    months, days, nanos = iv.months * sign, iv.days * sign, iv.nanoseconds * sign
    out = base
    if months:
        py = [None if v is None else _add_months(v, months)
              for v in ([base.as_py()] if is_scalar(base) else base.to_pylist())]
        out = pa.scalar(py[0], base.type) if is_scalar(base) else pa.array(py, base.type)
    micros = days * 86_400_000_000 + nanos // 1000
    if micros:
        dur = pa.scalar(micros, pa.duration("us"))
        out = pc.add(out, dur)
    return out


def _add_months(value: dt.datetime, months: int) -> dt.datetime:
    total = value.month - 1 + months
    year, month = value.year + total // 12, total % 12 + 1
    import calendar

    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def _micros_to_interval(micros: Datum) -> Datum:
    def conv(m):
        if m is None:
            return None
        days, rest = divmod(abs(m), 86_400_000_000)
        sign = -1 if m < 0 else 1
        return pa.MonthDayNano([0, sign * days, sign * rest * 1000])
    if is_scalar(micros):
        return pa.scalar(conv(micros.as_py()), pa.month_day_nano_interval())
    return pa.array([conv(m) for m in micros.to_pylist()], pa.month_day_nano_interval())


def _interval_pairwise(x: Datum, y: Datum, op: str) -> Datum:
    sign = 1 if op == "add" else -1
    xs = [x.as_py()] if is_scalar(x) else x.to_pylist()
    ys = [y.as_py()] if is_scalar(y) else y.to_pylist()
    n = max(len(xs), len(ys))
    xs, ys = (xs * n if len(xs) == 1 else xs), (ys * n if len(ys) == 1 else ys)
    out = [None if a is None or b is None else pa.MonthDayNano(
        [a.months + sign * b.months, a.days + sign * b.days, a.nanoseconds + sign * b.nanoseconds])
        for a, b in zip(xs, ys)]
    arr = pa.array(out, pa.month_day_nano_interval())
    return arr[0] if is_scalar(x) and is_scalar(y) else arr


# Vectors ------------------------------------------------------------------------------------------


def _vector_pair(c: Compiler, a: Value, b: Value) -> tuple[Value, Value]:
    if a.type.name != "vector":
        a = c.coerce(a, SqlType("vector"))
    if b.type.name != "vector":
        b = c.coerce(b, SqlType("vector"))
    return a, b


def _distance(c: Compiler, e: d.VectorDistance) -> Value:
    a, b = _operands(c, e)
    if a.type.name == "unknown" and isinstance(e.this, exp.Parameter):
        c.env.infer_param(_param_index(e.this), SqlType("vector"))
        a = c.compile(e.this)
    if b.type.name == "unknown" and isinstance(e.expression, exp.Parameter):
        c.env.infer_param(_param_index(e.expression), SqlType("vector"))
        b = c.compile(e.expression)
    a, b = _vector_pair(c, a, b)
    metric = e.metric

    def fn(f: Frame) -> Datum:
        return vector_distance(metric, a(f), b(f), f.n)

    return Value(fn, FLOAT8, a.const and b.const)


def vector_distance(metric: Metric, x: Datum, y: Datum, n: int) -> Datum:
    """Row-wise pgvector distance between two vector datums (columns or constants)."""
    both_scalar = is_scalar(x) and is_scalar(y)
    rows = 1 if both_scalar else n
    if both_scalar and (not x.is_valid or not y.is_valid):
        return pa.scalar(None, pa.float64())
    mx, vx = V.to_numpy_vectors(x, rows)
    my, vy = V.to_numpy_vectors(y, rows)
    if mx.shape[1] != my.shape[1] and mx.size and my.size:
        raise DataException(f"different vector dimensions {mx.shape[1]} and {my.shape[1]}")
    out = paired_distances(metric, mx, my) if rows else np.empty(0)
    valid = None
    for v in (vx, vy):
        if v is not None:
            valid = v if valid is None else valid & v
    arr = pa.array(out, pa.float64(), mask=None if valid is None else ~valid)
    return arr[0] if both_scalar else arr


def _vector_arith(c: Compiler, op: str, a: Value, b: Value) -> Value:
    if op not in ("add", "subtract", "multiply"):
        raise SqlVecError(f"operator does not exist: vector {_SYMBOL[op]} vector", sqlstate="42883")
    a, b = _vector_pair(c, a, b)
    t = a.type if a.type.typmod >= 0 else b.type

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        both_scalar = is_scalar(x) and is_scalar(y)
        rows = 1 if both_scalar else f.n
        mx, vx = V.to_numpy_vectors(x, rows)
        my, vy = V.to_numpy_vectors(y, rows)
        if mx.shape[1] != my.shape[1]:
            raise DataException(f"different vector dimensions {mx.shape[1]} and {my.shape[1]}")
        with np.errstate(over="ignore"):
            out = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}[op](mx, my)
        if np.isinf(out).any():
            raise NumericValueOutOfRange("value out of range: overflow")
        valid = vx if vy is None else (vy if vx is None else vx & vy)
        arr = V.vectors_to_arrow(out, valid)
        return arr[0] if both_scalar else arr

    return Value(fn, SqlType("vector", t.typmod), a.const and b.const)


# Comparison and logic -----------------------------------------------------------------------------

_COMPARE = {exp.EQ: "equal", exp.NEQ: "not_equal", exp.LT: "less", exp.LTE: "less_equal",
            exp.GT: "greater", exp.GTE: "greater_equal"}


def _compare(c: Compiler, e: exp.Binary) -> Value:
    if isinstance(e.expression, exp.Any) or isinstance(e.expression, exp.All):
        return _compare_any(c, e)
    a, b = _operands(c, e)
    a, b, t = c.unify(a, b)
    op = _COMPARE[type(e)]
    if t.name == "vector":
        return Value(lambda f: _vector_compare(op, a(f), b(f), f.n), BOOL, a.const and b.const)
    fn = getattr(pc, op)
    return Value(lambda f: _arrow_compare(fn, a(f), b(f)), BOOL, a.const and b.const)


def _arrow_compare(fn, x: Datum, y: Datum) -> Datum:
    try:
        return fn(x, y)
    except pa.ArrowInvalid:
        if pa.types.is_decimal(x.type) and pa.types.is_decimal(y.type):
            return fn(_wide(x), _wide(y))  # the common scale needs more than 38 digits
        raise
    except pa.ArrowNotImplementedError:
        if pa.types.is_list(x.type) and pa.types.is_list(y.type):  # arrays: element-wise
            return _list_compare(fn, x, y)
        if x.type != y.type:
            return fn(x, y.cast(x.type) if not is_scalar(y) else pa.scalar(y.as_py(), x.type))
        raise


def _list_compare(fn, x: Datum, y: Datum) -> Datum:
    import operator

    py = {pc.equal: operator.eq, pc.not_equal: operator.ne, pc.less: operator.lt,
          pc.less_equal: operator.le, pc.greater: operator.gt, pc.greater_equal: operator.ge}[fn]
    if is_scalar(x) and is_scalar(y):
        a, b = x.as_py(), y.as_py()
        return pa.scalar(None if a is None or b is None else py(a, b), pa.bool_())
    n = len(x) if not is_scalar(x) else len(y)
    if n == 0:
        return pa.array([], pa.bool_())
    xs, ys = as_array(x, n).to_pylist(), as_array(y, n).to_pylist()
    return pa.array([None if a is None or b is None else py(a, b) for a, b in zip(xs, ys)],
                    pa.bool_())


def _vector_compare(op: str, x: Datum, y: Datum, n: int) -> Datum:
    """Vector comparisons as pgvector's btree order: element by element, then by length."""
    both = is_scalar(x) and is_scalar(y)
    rows = 1 if both else n
    mx, vx = V.to_numpy_vectors(x, rows)
    my, vy = V.to_numpy_vectors(y, rows)
    common = min(mx.shape[1], my.shape[1])
    differ = mx[:, :common] != my[:, :common]
    first = np.argmax(differ, axis=1)
    at = np.arange(rows)
    sign = np.where(differ.any(axis=1), np.sign(mx[at, first] - my[at, first]),
                    np.sign(mx.shape[1] - my.shape[1]))
    out = {"equal": sign == 0, "not_equal": sign != 0, "less": sign < 0,
           "less_equal": sign <= 0, "greater": sign > 0, "greater_equal": sign >= 0}[op]
    valid = vx if vy is None else (vy if vx is None else vx & vy)
    arr = pa.array(out, pa.bool_(), mask=None if valid is None else ~valid)
    return arr[0] if both else arr


def _null_safe(c: Compiler, e: exp.Binary) -> Value:
    a, b = _operands(c, e)
    a, b, _t = c.unify(a, b)
    negate = isinstance(e, exp.NullSafeNEQ)

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        eq = pc.fill_null(pc.equal(x, y), False)
        both_null = pc.and_(pc.is_null(x), pc.is_null(y))
        out = pc.or_(eq, both_null)
        return pc.invert(out) if negate else out

    return Value(fn, BOOL, a.const and b.const)


def _compare_any(c: Compiler, e: exp.Binary) -> Value:
    quant = e.expression
    is_all = isinstance(quant, exp.All)
    left = c.compile(e.this)
    inner = quant.this.this if isinstance(quant.this, exp.Paren) else quant.this
    if isinstance(inner, exp.Parameter) and c.env.param_type(_param_index(inner)) is None \
            and left.type.name != "unknown":
        c.env.infer_param(_param_index(inner), left.type.array_of() if not left.type.is_array else left.type)
    arr = c.compile(inner)
    op = _COMPARE[type(e)]
    elem = arr.type.element if arr.type.is_array else left.type
    left = c.coerce(left, elem) if left.type.name == "unknown" else left

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
                cmp = getattr(pc, op)(lv, v)
                out = cmp if out is None else (pc.and_kleene(out, cmp) if is_all else pc.or_kleene(out, cmp))
            return out if out is not None else pa.array([is_all] * f.n, pa.bool_())
        rows_l = lv.to_pylist()
        rows_a = av.to_pylist()
        import operator

        pyop = {"equal": operator.eq, "not_equal": operator.ne, "less": operator.lt,
                "less_equal": operator.le, "greater": operator.gt, "greater_equal": operator.ge}[op]
        out = []
        for x, items in zip(rows_l, rows_a):
            if x is None or items is None:
                out.append(None)
                continue
            results = [None if v is None else pyop(x, v) for v in items]
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

    def between(x_: Datum, low: Datum, high: Datum) -> Datum:
        return pc.and_kleene(pc.greater_equal(x_, low), pc.less_equal(x_, high))

    if e.args.get("symmetric"):  # BETWEEN SYMMETRIC: either order of the bounds
        return Value(lambda f: pc.or_kleene(between(x1(f), lo(f), hi(f)),
                                            between(x1(f), hi(f), lo(f))),
                     BOOL, x.const and lo.const and hi.const)
    return Value(lambda f: pc.and_kleene(pc.greater_equal(x1(f), lo(f)), pc.less_equal(x2(f), hi(f))),
                 BOOL, x.const and lo.const and hi.const)


def _in(c: Compiler, e: exp.In) -> Value:
    x = c.compile(e.this)
    items = [c.compile(i) for i in e.expressions]
    t = V.common_type([x.type] + [i.type for i in items], "IN")
    x = c.coerce(x, t)
    items = [c.coerce(i, t) for i in items]
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
            cmp = pc.equal(v, i(f))
            out = cmp if out is None else pc.or_kleene(out, cmp)
        return out
    return Value(fn_rows, BOOL)


def _like(c: Compiler, e: exp.Expression, ignore_case: bool) -> Value:
    x = c.compile_as(e.this, TEXT)
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
    x = c.compile_as(e.this, TEXT)
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
        raise _undefined_keyword(c, "like", args)
    return _like(c, exp.Like(this=args[0], expression=args[1]), False)


@scalar("regexp_like", "text, text -> bool", "text, text, text -> bool")
def _regexp_like(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    """regexp_like(s, pattern[, flags]): `s ~ pattern`; flag `i` is `~*`."""
    if len(args) not in (2, 3):
        raise _undefined_keyword(c, "regexp_like", args)
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


# Conditionals -------------------------------------------------------------------------------------


def _case(c: Compiler, e: exp.Case) -> Value:
    subject = e.this
    subplans = c.env.subplans
    conds = []
    results = []
    for branch in e.args.get("ifs") or []:
        cond = branch.this
        if subject is not None:
            cond = exp.EQ(this=subject.copy(), expression=cond)
        conds.append(c.condition(cond, "CASE/WHEN") if subject is None else
                     c.compile_as(cond, BOOL))
        results.append(c.compile(branch.args["true"]))
    default = e.args.get("default")
    default_v = c.compile(default) if default is not None else None
    t = V.common_type([r.type for r in results] + ([default_v.type] if default_v else []), "CASE")
    results = [c.coerce(r, t) for r in results]
    default_v = c.coerce(default_v, t) if default_v is not None else None
    arrow = t.to_arrow()
    if c.env.subplans != subplans:  # a subquery in a branch: evaluated lazily
        return Value(_lazy_case(conds, results, default_v, t), t)

    def fn(f: Frame) -> Datum:
        n = f.n
        out = as_array(default_v(f), n) if default_v is not None else pa.nulls(n, arrow)
        out = _ensure_type(out, t)
        for cond, res in reversed(list(zip(conds, results))):
            mask = pc.fill_null(cond(f), False)
            if is_scalar(mask):
                mask = pa.array([mask.as_py()] * n, pa.bool_())
            out = pc.if_else(mask, _ensure_type(as_array(res(f), n), t), out)
        return out

    return Value(fn, t)


def _lazy_case(conds: list[Value], results: list[Value], default: Value | None, t: SqlType):
    """CASE over a subquery: as in PostgreSQL, each WHEN is tested only on the rows no earlier
    WHEN took, and each result is computed only for the rows that take it (a subquery guarded
    by `CASE WHEN t.typtype = 'c' THEN (SELECT ...)` runs for the composite types alone)."""
    arrow = t.to_arrow()

    def fn(f: Frame) -> Datum:
        n = f.n
        rows = np.arange(n)  # rows of f still undecided
        pieces: list[tuple[np.ndarray, Datum]] = []
        for cond, res in zip(conds, results):
            if not rows.size:
                break
            sub = _subframe(f, rows)
            mask = pc.fill_null(as_array(cond(sub), rows.size), False)
            mask = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            taken = rows[mask]
            if taken.size:
                pieces.append((taken, res(_subframe(f, taken))))
            rows = rows[~mask]
        if rows.size:
            pieces.append((rows, default(_subframe(f, rows)) if default is not None
                           else pa.nulls(rows.size, arrow)))
        if not pieces:
            return pa.nulls(0, arrow)
        # Scatter the pieces back into row order: values in piece order, then the inverse
        # permutation of the rows they belong to.
        order = np.concatenate([where for where, _ in pieces])
        values = pa.concat_arrays([_plain(_ensure_type(as_array(v, w.size), t), arrow)
                                   for w, v in pieces])
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
        return values.take(pa.array(inverse))

    return fn


def _plain(arr, arrow: pa.DataType) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr if arr.type == arrow else arr.cast(arrow)


def _subframe(f: Frame, rows: np.ndarray) -> Frame:
    if rows.size == f.n:
        return f
    if f.table.num_columns == 0:  # (take() on a table without columns loses the row count)
        return Frame(pa.table({"_": pa.nulls(rows.size)}).drop_columns(["_"]), f.ctx, f.outer)
    return Frame(f.table.take(pa.array(rows, pa.int64())), f.ctx, f.outer)


def _ensure_type(arr, t: SqlType):
    try:
        return V.to_storage(arr, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return arr


_ONE_ROW = pa.table({"_": [None]})


# COALESCE, NULLIF, GREATEST and LEAST are SQL keywords, not functions of pg_proc: declared as
# keyword forms of the function catalog, called with their arguments in order.


@scalar("coalesce", keyword=True, strict=False)
def _coalesce(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    if not exprs:
        raise SyntaxError_("syntax error at or near \")\"")
    args = [c.compile(a) for a in exprs]
    t = V.common_type([a.type for a in args], "COALESCE")
    args = [c.coerce(a, t) for a in args]
    arrow = t.to_arrow()

    def fn(f):
        vals = [a(f) for a in args]
        if all(is_scalar(v) for v in vals):
            for v in vals:
                if v.is_valid:
                    return _cast_scalar(v, arrow)
            return pa.scalar(None, arrow)
        arrays = [_ensure_type(as_array(v, f.n), t) for v in vals]
        return pc.coalesce(*arrays)

    return Value(fn, t, all(a.const for a in args))


def _cast_scalar(v: pa.Scalar, arrow: pa.DataType) -> pa.Scalar:
    if v.type == arrow:
        return v
    try:
        return v.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return v


@scalar("nullif", keyword=True, strict=False)
def _nullif(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    if len(exprs) != 2:
        raise _undefined_keyword(c, "nullif", exprs)
    a = c.compile(exprs[0])
    b = c.compile(exprs[1])
    a2, b2, _ = c.unify(a, b)
    t = a.type if a.type.name != "unknown" else a2.type

    def fn(f):
        x = a2(f)
        eq = pc.fill_null(pc.equal(x, b2(f)), False)
        if is_scalar(eq) and is_scalar(x):
            return pa.scalar(None, x.type) if eq.as_py() else x
        return pc.if_else(eq, pa.scalar(None, x.type), as_array(x, f.n))

    return Value(fn, t, a.const and b.const)


@scalar("greatest least", keyword=True, strict=False)
def _greatest(c: Compiler, exprs: list[exp.Expression], e: exp.Expression) -> Value:
    name = str(e.this).lower()
    if not exprs:
        raise SyntaxError_("syntax error at or near \")\"")
    args = [c.compile(a) for a in exprs]
    t = V.common_type([a.type for a in args], name.upper())
    args = [c.coerce(a, t) for a in args]
    fn = pc.max_element_wise if name == "greatest" else pc.min_element_wise
    return Value(lambda f: fn(*[V.to_storage(a(f), t) for a in args], skip_nulls=True), t,
                 all(a.const for a in args))


def _undefined_keyword(c: Compiler, name: str, exprs: list[exp.Expression]) -> SqlVecError:
    shown = ", ".join(c.compile(a).type.format() for a in exprs)
    return SqlVecError(f"function {name}({shown}) does not exist", sqlstate="42883")


# Casts ---------------------------------------------------------------------------------------------


def _cast(c: Compiler, e: exp.Cast) -> Value:
    target = sql_type(e.args["to"])
    inner = e.this
    if target.name in REG_TYPES:
        fn = (c.env.functions or {}).get(f"::{target.name}")
        if fn is not None:
            if isinstance(inner, exp.Parameter) and c.env.param_type(_param_index(inner)) is None:
                c.env.infer_param(_param_index(inner), TEXT)  # a name, resolved by the cast
            return fn(c, c.compile(inner))
    if isinstance(inner, exp.Parameter) and c.env.param_type(_param_index(inner)) is None:
        c.env.infer_param(_param_index(inner), target)
        return c.compile(inner)
    if isinstance(inner, exp.Literal) and not inner.is_string and target.name in (
            "float4", "float8"):  # `1e308::float8`: read as a float, beyond numeric's digits here
        return c.coerce(_literal(c, exp.Literal.string(inner.this)), target)
    v = c.compile(inner)
    if v.type.name in REG_TYPES and target.name in ("text", "varchar", "name", "bpchar"):
        fn = (c.env.functions or {}).get(f"{v.type.name}::text")
        if fn is not None:
            return c.coerce(fn(c, v), target)
    if v.type.name == "unknown" and v.text is not None:
        if target.char_length is None:
            return c.coerce(v, target)
        v = c.coerce(v, TEXT)  # an explicit cast truncates to the length
    src = v.type if v.type.name != "unknown" else TEXT
    if target == NUMERIC and V.numeric_scale(src) is not None:
        target = V.numeric_with_scale(V.numeric_scale(src))  # `x::numeric` keeps x's scale
    if target.name == "vector" and src.name == "vector" and target.typmod >= 0:
        return Value(lambda f: V.cast(v(f), SqlType("_float4"), target, f.n), target, v.const)
    return Value(lambda f: V.cast(v(f), src, target, f.n, explicit=True), target, v.const)


def _collate(c: Compiler, e: exp.Collate) -> Value:
    return c.compile(e.this)


# Strings -------------------------------------------------------------------------------------------


def _dpipe(c: Compiler, e: exp.DPipe) -> Value:
    a = c.compile(e.this)
    b = c.compile(e.expression)
    if a.type.is_array or b.type.is_array:
        extra = (c.env.functions or {}).get("expr:ArrayConcat")  # catalog_functions.py
        if extra is None:
            raise FeatureNotSupported("array concatenation with || is not supported")
        return extra(c, e)
    a = c.coerce(a, TEXT) if a.type.name == "unknown" else a
    b = c.coerce(b, TEXT) if b.type.name == "unknown" else b

    def fn(f):
        x = V.to_text(a(f), a.type, f.n)
        y = V.to_text(b(f), b.type, f.n)
        return pc.binary_join_element_wise(x, y, "", null_handling="emit_null")

    return Value(fn, TEXT, a.const and b.const)


# Subqueries ----------------------------------------------------------------------------------------


def _subplan(c: Compiler, e: SubPlan) -> Value:
    if c.env.build_subplan is None:
        raise FeatureNotSupported("subqueries are not supported here")
    c.env.subplans += 1
    if e.args.get("keyed") is not None:
        keyed = _keyed_subplan(c, e)
        if keyed is not None:
            return keyed
    kind = e.args["kind"]
    operator, row_keys, correlated = _build_subplan(c, e.args["plan"])
    out_type = operator.fields[0].type if operator.fields else TEXT
    probe = c.compile(e.this) if kind == "in" else None
    if probe is not None and probe.type.name == "unknown":
        probe = c.coerce(probe, out_type)

    def evaluate(frame: Frame) -> pa.Table:
        return operator.execute(frame.ctx, outer=frame)

    def per_group(f: Frame, reduce):
        """The subquery's reduced result: one (uncorrelated), or one per distinct value of the
        outer columns it reads, with each row's group."""
        if not correlated:
            key = id(operator)
            cache = f.ctx.subquery_cache
            if key not in cache:
                cache[key] = evaluate(Frame(_ONE_ROW.slice(0, 0), f.ctx, f))
            return reduce(cache[key]), None
        if f.n == 0:
            return [], np.zeros(0, np.int64)
        if row_keys:
            from sqlvec.execution.aggregates import group_ids

            gids, first = group_ids([_groupable(f.table.column(i)) for i in row_keys], f.n)
        else:  # reads only queries further out: the same for every row here
            gids, first = np.zeros(f.n, np.int64), np.zeros(1, np.int64)
        results = [reduce(evaluate(Frame(f.table.slice(int(r), 1), f.ctx, f.outer)))
                   for r in first]
        return results, gids

    def spread(results: list, gids: np.ndarray, arrow: pa.DataType) -> pa.Array:
        return pa.array([s.as_py() for s in results], arrow).take(pa.array(gids))

    if kind == "scalar":
        t = out_type or TEXT

        def reduce_scalar(table: pa.Table) -> pa.Scalar:
            if table.num_rows > 1:
                raise SqlVecError("more than one row returned by a subquery used as an expression",
                                  sqlstate="21000")
            if table.num_rows == 0:
                return pa.scalar(None, t.to_arrow())
            return table.column(0)[0]

        def fn(f):
            res, gids = per_group(f, reduce_scalar)
            return res if gids is None else spread(res, gids, t.to_arrow())
        return Value(fn, t)

    if kind == "exists":
        def fn(f):
            res, gids = per_group(f, lambda table: pa.scalar(table.num_rows > 0))
            return res if gids is None else spread(res, gids, pa.bool_())
        return Value(fn, BOOL)

    if kind == "array":
        t = (out_type or TEXT).array_of() if not (out_type or TEXT).is_array else out_type

        def fn(f):
            res, gids = per_group(
                f, lambda table: pa.scalar(table.column(0).to_pylist(), t.to_arrow()))
            return res if gids is None else spread(res, gids, t.to_arrow())
        return Value(fn, t)

    # IN (subquery): NULL semantics of SQL (unknown when no match and a NULL is present).
    negate = bool(e.args.get("negate"))

    def fn_in(f):
        x = probe(f)  # type: ignore[misc]
        res, gids = per_group(f, lambda table: table.column(0))
        if gids is None:
            hit = _in_values(as_array(x, f.n), res)
            return pc.invert(hit) if negate else hit
        xs = as_array(x, f.n)
        xs = xs.combine_chunks() if isinstance(xs, pa.ChunkedArray) else xs
        order = np.argsort(gids, kind="stable")
        bounds = np.searchsorted(gids[order], np.arange(len(res) + 1))
        pieces = [_in_values(xs.take(pa.array(order[lo:hi])), values)
                  for values, lo, hi in zip(res, bounds[:-1], bounds[1:])]
        hit = pa.concat_arrays(pieces) if pieces else pa.array([], pa.bool_())
        inverse = np.empty(f.n, np.int64)
        inverse[order] = np.arange(f.n)
        hit = hit.take(pa.array(inverse))
        return pc.invert(hit) if negate else hit

    return Value(fn_in, BOOL)


def _build_subplan(c: Compiler, plan) -> tuple[object, list[int], bool]:
    """(operator, the columns of `c`'s rows it reads, whether it reads any outer row)."""
    start = len(c.env.outer_refs)
    saved = c.env.correlated
    operator = c.env.build_subplan(plan, c)
    refs = c.env.outer_refs[start:]
    outside = set()
    scope: Compiler | None = c
    while scope is not None:
        outside.add(id(scope))
        scope = scope.outer
    row_keys = sorted({index for target, index in refs if target is c})
    correlated = any(id(target) in outside for target, _ in refs)
    c.env.correlated = saved or correlated
    return operator, row_keys, correlated


def _in_values(x, values) -> pa.Array:
    """`x IN (values)` per element of x, with SQL's NULLs: true on a match; else NULL when x
    is NULL or a NULL is among the values (and they are not empty); else false."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != x.type:
        try:
            values = values.cast(x.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if len(values) == 0:
        return pa.array(np.zeros(len(x), bool))
    present = values.drop_null() if values.null_count else values
    hit = pc.is_in(x, value_set=present)
    if values.null_count:
        hit = pc.if_else(hit, True, pa.scalar(None, pa.bool_()))
    return pc.if_else(pc.is_null(x), pa.scalar(None, pa.bool_()), hit)


def _groupable(col):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or \
            pa.types.is_dictionary(col.type):
        return pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())
    return col


def _keyed_subplan(c: Compiler, e: SubPlan) -> Value | None:
    """A subquery by its keyed form (SubPlan's docstring): run once per statement, then
    matched to the outer rows by a hash join on the keys. None when the keyed plan does not
    apply after all (it still reads the outer query, or the keys cannot be hashed)."""
    start = len(c.env.outer_refs)
    saved = c.env.correlated, dict(c.env.param_types)

    def give_up() -> None:
        del c.env.outer_refs[start:]
        c.env.correlated = saved[0]
        c.env.param_types.clear()
        c.env.param_types.update(saved[1])

    try:
        operator, _, correlated = _build_subplan(c, e.args["keyed"])
        empty = None
        if e.args.get("empty") is not None:
            empty, _, empty_correlated = _build_subplan(c, e.args["empty"])
            correlated = correlated or empty_correlated
        if correlated:
            give_up()
            return None
        visible = [i for i, f in enumerate(operator.fields) if not f.hidden]
        keys = e.args.get("keys") or []
        if len(visible) != 1 + len(keys):
            give_up()
            return None
        pairs = []
        for key, j in zip(keys, visible[1:]):
            inner = Value(lambda f, j=j: f.table.column(j), operator.types[j])
            outer_v, inner_v, t = c.unify(c.compile(key), inner)
            if not _hashable(t):
                give_up()
                return None
            pairs.append((outer_v, inner_v))
        guard = c.condition(e.args["guard"], "WHERE") if e.args.get("guard") is not None else None
        kind = e.args["kind"]
        value_i = visible[0]
        out_type = operator.types[value_i] or TEXT
        if kind == "array" and not pa.types.is_list(
                (out_type.array_of() if not out_type.is_array else out_type).to_arrow()):
            give_up()
            return None
        probe = None
        if kind == "in":
            probe = c.compile(e.this)
            if probe.type.name == "unknown":
                probe = c.coerce(probe, out_type)
    except SqlVecError:
        give_up()
        return None

    def matches(f: Frame) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """The keyed result, and the (outer row, keyed row) pairs with equal keys, in outer
        row order and then the keyed result's order."""
        cache = f.ctx.subquery_cache
        key = id(operator)
        if key not in cache:
            cache[key] = operator.execute(f.ctx, outer=None)
        table = cache[key]
        inner_frame = Frame(table, f.ctx, None)
        rows = np.arange(f.n)
        if guard is not None:
            rows = rows[_true_mask(guard(f), f.n)]
        left = [_hash_key(o(f), f.n).take(pa.array(rows, pa.int64())) for o, _ in pairs]
        right = [_hash_key(r(inner_frame), table.num_rows) for _, r in pairs]
        li, ri = key_pairs(f.ctx, "SubPlan", left, right)
        return table, rows[li], ri

    if kind == "exists":
        def fn_exists(f):
            _, li, _ = matches(f)
            hit = np.zeros(f.n, bool)
            hit[li] = True
            return pa.array(hit)
        return Value(fn_exists, BOOL)

    if kind == "scalar":
        arrow = out_type.to_arrow()
        empty_cache: list = []

        def fn_scalar(f):
            table, li, ri = matches(f)
            if li.size > 1 and (np.diff(li) == 0).any():
                raise SqlVecError("more than one row returned by a subquery used as an expression",
                                  sqlstate="21000")
            index = np.full(f.n, -1, np.int64)
            index[li] = ri
            values = _plain_column(table.column(value_i), arrow)
            out = values.take(pa.array(index, mask=index < 0))
            if empty is not None:
                if not empty_cache:
                    none = empty.execute(f.ctx, outer=None)
                    first = next(i for i, fd in enumerate(empty.fields) if not fd.hidden)
                    empty_cache.append(none.column(first)[0].cast(arrow) if none.num_rows
                                       else pa.scalar(None, arrow))
                if empty_cache[0].is_valid and (index < 0).any():
                    out = pc.if_else(pa.array(index >= 0), out, empty_cache[0])
            return out
        return Value(fn_scalar, out_type)

    if kind == "array":
        t = out_type.array_of() if not out_type.is_array else out_type

        def fn_array(f):
            table, li, ri = matches(f)
            element = t.to_arrow().value_type
            values = _plain_column(table.column(value_i), element).take(pa.array(ri, pa.int64()))
            offsets = np.zeros(f.n + 1, np.int32)
            np.cumsum(np.bincount(li, minlength=f.n), out=offsets[1:])
            lists = pa.ListArray.from_arrays(pa.array(offsets), values)
            return lists if lists.type == t.to_arrow() else lists.cast(t.to_arrow())
        return Value(fn_array, t)

    negate = bool(e.args.get("negate"))

    def fn_in(f):
        table, li, ri = matches(f)
        x = as_array(probe(f), f.n)  # type: ignore[misc]
        x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
        values = table.column(value_i).combine_chunks()
        if values.type != x.type:
            try:
                values = values.cast(x.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        equal = pc.equal(x.take(pa.array(li, pa.int64())), values.take(pa.array(ri, pa.int64())))
        hit = np.zeros(f.n, bool)
        unknown = np.zeros(f.n, bool)
        hit[li[_true_mask(equal, li.size)]] = True
        unknown[li[pc.is_null(equal).to_numpy(zero_copy_only=False)]] = True
        out = pc.if_else(pa.array(hit), True,
                         pc.if_else(pa.array(unknown), pa.scalar(None, pa.bool_()), False))
        return pc.invert(out) if negate else out

    return Value(fn_in, BOOL)


def _hashable(t: SqlType) -> bool:
    """Whether values of `t` can be join keys (pyarrow's hash join, SQL's `=`)."""
    if t.is_array or t.is_vector or t.name in ("json", "jsonb", "unknown"):
        return False
    arrow = t.to_arrow()
    return (pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow)
            or pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
            or pa.types.is_binary(arrow) or pa.types.is_decimal(arrow)
            or pa.types.is_date(arrow) or pa.types.is_timestamp(arrow) or pa.types.is_time(arrow))


def _true_mask(value: Datum, n: int) -> np.ndarray:
    if is_scalar(value):
        return np.full(n, bool(value.as_py()))
    return np.asarray(pc.fill_null(value, False).to_numpy(zero_copy_only=False), dtype=bool)


def _hash_key(value: Datum, n: int) -> pa.Array:
    """A key column both sides of a hash join agree on (one string and decimal type)."""
    col = as_array(value, n)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_decimal(col.type):
        col = V.to_storage(col, NUMERIC)
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return col


def _plain_column(col, arrow: pa.DataType) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col if col.type == arrow else col.cast(arrow)


# Arrays --------------------------------------------------------------------------------------------


def _array(c: Compiler, e: exp.Array) -> Value:
    items = [c.compile(x) for x in e.expressions]
    t = V.common_type([i.type for i in items], "ARRAY") if items else TEXT
    if t.is_array:
        raise FeatureNotSupported("multidimensional arrays are not supported")
    items = [c.coerce(i, t) for i in items]
    at = t.array_of()

    def fn(f):
        vals = [i(f) for i in items]
        if all(is_scalar(v) for v in vals):
            return pa.scalar([v.as_py() for v in vals], at.to_arrow())
        cols = [as_array(v, f.n).to_pylist() for v in vals]
        return pa.array([list(row) for row in zip(*cols)], at.to_arrow())

    return Value(fn, at, all(i.const for i in items))


def _bracket(c: Compiler, e: exp.Bracket) -> Value:
    base = c.compile(e.this)
    if len(e.expressions) != 1:
        raise FeatureNotSupported("array slices are not supported")
    idx = c.compile_as(e.expressions[0], INT4)
    if base.type.name == "unknown":
        raise FeatureNotSupported("subscripting an untyped value is not supported")
    elem = base.type.element if base.type.is_array else (SqlType("float4") if base.type.is_vector else TEXT)

    def fn(f):
        arr, i = base(f), idx(f)
        if is_scalar(arr) and is_scalar(i):
            items = arr.as_py()
            k = i.as_py()
            if items is None or k is None or not 1 <= k <= len(items):
                return pa.scalar(None, elem.to_arrow())
            return pa.scalar(items[k - 1], elem.to_arrow())
        arrs = as_array(arr, f.n).to_pylist()
        ks = as_array(i, f.n).to_pylist()
        out = [None if a is None or k is None or not 1 <= k <= len(a) else a[k - 1]
               for a, k in zip(arrs, ks)]
        return pa.array(out, elem.to_arrow())

    return Value(fn, elem, base.const and idx.const)


# Functions -----------------------------------------------------------------------------------------


def _function(c: Compiler, e: exp.Expression) -> Value:
    """A function call: compiled by its declaration in the function catalog (functions.py)."""
    from sqlvec.execution.functions import compile_call

    if not isinstance(e, exp.Anonymous) and call_of(e) is None:
        # Registered extensions (execution/catalog_functions.py) that take the node itself.
        extra = (c.env.functions or {}).get(f"expr:{type(e).__name__}")
        if extra is not None:
            return extra(c, e)
        raise FeatureNotSupported(f"{_describe(e)} is not supported")
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


def _describe(e: exp.Expression) -> str:
    try:
        text = d.to_sql(e)
    except Exception:  # pragma: no cover - generator gaps
        text = type(e).__name__
    return text if len(text) < 60 else type(e).__name__


def _window_unsupported(c: Compiler, e: exp.Expression) -> Value:
    raise SqlVecError("window functions are not allowed here", sqlstate="42P20")


# Intervals and JSON --------------------------------------------------------------------------------


def _interval(c: Compiler, e: exp.Interval) -> Value:
    """`INTERVAL '1 day'` (sqlglot splits `'2 hours'` into a number and a unit)."""
    unit = e.args.get("unit")
    inner = c.compile(e.this)
    if inner.type.name != "unknown" or inner.text is None:
        raise FeatureNotSupported("INTERVAL with a non-literal value is not supported")
    text = inner.text + (f" {unit.name}" if unit is not None else "")
    scalar = pa.scalar(V.parse_interval(text), pa.month_day_nano_interval())
    return Value(lambda f: scalar, SqlType("interval"), const=True)


def _json_source(c: Compiler, e: exp.Expression) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, SqlType("jsonb"))
    if v.type.name not in ("json", "jsonb"):
        raise SqlVecError(f"operator does not exist: {v.type.format()} -> unknown",
                          sqlstate="42883")
    return v


def _json_path(path: exp.Expression) -> list:
    steps = []
    for step in path.expressions if isinstance(path, exp.JSONPath) else [path]:
        if isinstance(step, exp.JSONPathRoot):
            continue
        if isinstance(step, exp.JSONPathKey):
            steps.append(str(step.this))
        elif isinstance(step, exp.JSONPathSubscript):
            steps.append(int(step.this))
        else:
            raise FeatureNotSupported(f"JSON path step {step.sql()} is not supported")
    return steps


def _json_extract(c: Compiler, e: exp.Expression, as_text: bool) -> Value:
    """`j -> 'key'` / `j -> 0` (json), `j ->> 'key'` (text). jsonb is stored as its text, so
    each row's document is parsed in Python."""
    import json

    source = _json_source(c, e.this)
    steps = _json_path(e.expression)
    out = TEXT if as_text else source.type

    missing = object()

    def step(doc, key):
        if isinstance(key, int) and isinstance(doc, list):
            return doc[key] if -len(doc) <= key < len(doc) else missing
        if isinstance(key, str) and isinstance(doc, dict):
            return doc.get(key, missing)
        return missing

    def extract(text: str) -> str | None:
        doc = json.loads(text, parse_float=decimal.Decimal)
        for key in steps:
            doc = step(doc, key)
            if doc is missing:
                return None
        if as_text and (doc is None or isinstance(doc, str)):
            return doc  # ->> gives SQL NULL for a JSON null
        return V.canonical_jsonb(doc)

    def fn(f: Frame) -> Datum:
        value = source(f)
        if is_scalar(value):
            return pa.scalar(None if not value.is_valid else extract(value.as_py()), pa.string())
        return pa.array([None if v is None else extract(v) for v in value.to_pylist()],
                        pa.string())

    return Value(fn, out, source.const)


@scalar("json_extract_path", "from_json json, variadic path_elems text[] -> json")
@scalar("json_extract_path_text", "from_json json, variadic path_elems text[] -> text")
@scalar("jsonb_extract_path", "from_json jsonb, variadic path_elems text[] -> jsonb")
@scalar("jsonb_extract_path_text", "from_json jsonb, variadic path_elems text[] -> text")
def _json_extract_path(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    """json_extract_path(j, 'a', 'b'): `j #> '{a,b}'` (the `_text` forms: `#>>`), with the
    path given as constants."""
    name = str(e.this).lower()
    if not args:
        raise _undefined_keyword(c, name, args)
    keys = []
    for a in args[1:]:
        key = c.compile_as(a, TEXT)
        if not key.const:
            raise FeatureNotSupported(f"{name} with a path that is not constant is not supported")
        keys.append(exp.JSONPathKey(this=constant(key, None).as_py()))
    path = exp.JSONPath(expressions=[exp.JSONPathRoot(), *keys])
    return _json_extract(c, exp.JSONExtract(this=args[0], expression=path),
                         name.endswith("_text"))


def json_typeof(value: Datum) -> Datum:
    """jsonb_typeof over a json datum: object, array, string, number, boolean or null."""
    import json

    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}

    def kind(text: str) -> str:
        doc = json.loads(text, parse_float=decimal.Decimal)
        return names.get(type(doc), "number")

    if is_scalar(value):
        return pa.scalar(None if not value.is_valid else kind(value.as_py()), pa.string())
    return pa.array([None if v is None else kind(v) for v in value.to_pylist()], pa.string())


HANDLERS: dict[type, Callable[[Compiler, exp.Expression], Value]] = {
    exp.Column: _column,
    exp.Literal: _literal,
    exp.RawString: lambda c, e: _literal(c, exp.Literal.string(e.name)),
    exp.Null: _null,
    exp.Boolean: _boolean,
    exp.Parameter: _parameter,
    exp.Placeholder: _parameter,
    exp.Paren: _paren,
    exp.Add: _arith, exp.Sub: _arith, exp.Mul: _arith, exp.Div: _arith, exp.Mod: _arith,
    exp.Pow: _arith,
    exp.Neg: _neg,
    exp.EQ: _compare, exp.NEQ: _compare, exp.LT: _compare, exp.LTE: _compare, exp.GT: _compare,
    exp.GTE: _compare,
    exp.NullSafeEQ: _null_safe, exp.NullSafeNEQ: _null_safe,
    exp.And: _and, exp.Or: _or, exp.Not: _not, exp.Is: _is,
    exp.Between: _between, exp.In: _in,
    exp.Like: lambda c, e: _like(c, e, False), exp.ILike: lambda c, e: _like(c, e, True),
    exp.RegexpLike: lambda c, e: _regex(c, e, False),
    exp.RegexpILike: lambda c, e: _regex(c, e, True),
    exp.Operator: _operator,
    exp.Case: _case,
    exp.Cast: _cast, exp.TryCast: _cast, exp.Collate: _collate,
    exp.Interval: _interval,
    exp.JSONExtract: lambda c, e: _json_extract(c, e, False),
    exp.JSONExtractScalar: lambda c, e: _json_extract(c, e, True),
    exp.DPipe: _dpipe,
    exp.Array: _array, exp.Bracket: _bracket,
    exp.Dot: _dot,
    SubPlan: _subplan,
    d.L2Distance: _distance, d.CosineDistance: _distance, d.NegativeInnerProduct: _distance,
    d.L1Distance: _distance,
    exp.Window: _window_unsupported,
    exp.Func: _function,
    exp.Anonymous: _function,
}


def constant(value: Value, ctx) -> Datum:
    """Evaluate a constant expression once."""
    return value(Frame(_ONE_ROW, ctx))


