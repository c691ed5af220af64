"""Scalar functions: by sqlglot class (`FUNCTIONS`) and by name (`NAMED`, for `exp.Anonymous`).

Each entry compiles a call into a `Value` (execution/values.py). Name lookup is what
PostgreSQL users type (`lower`, `vector_dims`, `pg_catalog.now`); a name we do not have is
42883 `function f(type, ...) does not exist`, as PostgreSQL reports it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import DataException, FeatureNotSupported, SqlVecError, UndefinedFunction
from sqlvec.execution import values as V
from sqlvec.execution.values import (
    BOOL,
    FLOAT8,
    INT4,
    INT8,
    NUMERIC,
    TEXT,
    Value,
    as_array,
    is_scalar,
)
from sqlvec.sql import dialect as d
from sqlvec.types import SqlType
from sqlvec.vectors import Metric, l2_normalize

Compiled = Callable[["object", exp.Expression], Value]


def _args(e: exp.Expression) -> list[exp.Expression]:
    out = []
    for key in ("this", "expression", "expressions"):
        v = e.args.get(key)
        if v is None:
            continue
        out.extend(v if isinstance(v, list) else [v])
    return out


def _unary(fn: Callable, in_type: SqlType | None, out_type: SqlType | None = None):
    def compile_(c, e):
        arg = c.compile(e.this)
        if in_type is not None:
            arg = c.coerce(arg, in_type)
        t = out_type or arg.type
        return Value(lambda f: fn(arg(f)), t, arg.const)
    return compile_


def _numeric_unary(fn: Callable, float_only: bool = False):
    def compile_(c, e):
        arg = c.compile(e.this)
        if arg.type.name == "unknown":
            arg = c.coerce(arg, FLOAT8)
        if float_only and arg.type.name not in ("float4", "float8", "numeric"):
            arg = c.coerce(arg, FLOAT8)
        return Value(lambda f: fn(arg(f)), arg.type, arg.const)
    return compile_


def _round(c, e):
    arg = c.compile(e.this)
    if arg.type.name == "unknown":
        arg = c.coerce(arg, NUMERIC)
    places = e.args.get("decimals")
    nd = c.compile_as(places, INT4) if places is not None else None
    t = arg.type if arg.type.name != "float4" else FLOAT8
    if nd is not None and arg.type.name in ("float4", "float8"):
        raise SqlVecError("function round(double precision, integer) does not exist",
                          sqlstate="42883",
                          hint="No function matches the given name and argument types. You might "
                               "need to add explicit type casts.")

    def fn(f):
        digits = 0 if nd is None else nd(f).as_py()
        out = pc.round(arg(f), ndigits=digits, round_mode="half_away_from_zero" if
                       arg.type.name == "numeric" else "half_to_even")
        if arg.type.name == "numeric" and digits >= 0:
            target = pa.decimal128(38, digits)
            try:
                out = out.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        return out

    rt = SqlType("numeric") if arg.type.name == "numeric" else t
    return Value(fn, rt, arg.const and (nd is None or nd.const))


def _text_unary(fn: Callable, out: SqlType = TEXT):
    def compile_(c, e):
        arg = c.compile_as(e.this, TEXT) if c.compile(e.this).type.name == "unknown" else c.compile(e.this)
        src = arg.type
        return Value(lambda f: fn(V.to_text(arg(f), src, f.n)), out, arg.const)
    return compile_


def _length(c, e):
    arg = c.compile(e.this)
    if arg.type.name == "bytea":
        return Value(lambda f: pc.cast(pc.binary_length(arg(f)), pa.int32()), INT4, arg.const)
    if arg.type.name == "unknown":
        arg = c.coerce(arg, TEXT)
    return Value(lambda f: pc.cast(pc.utf8_length(V.to_text(arg(f), arg.type, f.n)), pa.int32()),
                 INT4, arg.const)


def _substring(c, e):
    s = c.compile_as(e.this, TEXT)
    start = c.compile_as(e.args["start"], INT4) if e.args.get("start") is not None else None
    length = c.compile_as(e.args["length"], INT4) if e.args.get("length") is not None else None

    def fn(f):
        st = 1 if start is None else start(f).as_py()
        ln = None if length is None else length(f).as_py()
        if ln is not None and ln < 0:
            raise SqlVecError("negative substring length not allowed", sqlstate="22011")
        begin = max(st, 1) - 1
        stop = None if ln is None else max(st + ln - 1, 0)
        if stop is not None and stop <= begin:
            return pc.utf8_slice_codeunits(s(f), 0, 0)
        return pc.utf8_slice_codeunits(s(f), begin, stop)
    return Value(fn, TEXT, s.const)


def _concat(c, e):
    args = [c.compile(a) for a in e.expressions]
    args = [c.coerce(a, TEXT) if a.type.name == "unknown" else a for a in args]

    def fn(f):
        parts = [pc.fill_null(V.to_text(a(f), a.type, f.n), "") for a in args]
        parts = [as_array(p, f.n) for p in parts]
        if not parts:
            return pa.scalar("", pa.string())
        return pc.binary_join_element_wise(*parts, "")
    return Value(fn, TEXT, all(a.const for a in args))


def _trim(c, e):
    s = c.compile_as(e.this, TEXT)
    chars = c.compile_as(e.expression, TEXT) if e.expression is not None else None
    position = (e.args.get("position") or "BOTH").upper()

    def fn(f):
        characters = " " if chars is None else chars(f).as_py()
        fn_ = {"BOTH": pc.utf8_trim, "LEADING": pc.utf8_ltrim, "TRAILING": pc.utf8_rtrim}[position]
        return fn_(s(f), characters=characters)
    return Value(fn, TEXT, s.const)


def _position(c, e):
    s = c.compile_as(e.this, TEXT)
    sub = c.compile_as(e.args["substr"], TEXT)

    def fn(f):
        needle = sub(f)
        if not is_scalar(needle):
            raise FeatureNotSupported("position() with a non-constant substring is not supported")
        idx = pc.find_substring(s(f), needle.as_py())
        return pc.cast(pc.add(idx, 1), pa.int32())
    return Value(fn, INT4, s.const)


def _replace(c, e):
    s = c.compile_as(e.this, TEXT)
    old = c.compile_as(e.expression, TEXT)
    new = c.compile_as(e.args.get("replacement"), TEXT)
    return Value(lambda f: pc.replace_substring(s(f), old(f).as_py(), new(f).as_py()), TEXT, s.const)


def _now(c, e):
    t = SqlType("timestamptz")
    return Value(lambda f: pa.scalar(f.ctx.now, t.to_arrow()), t)


def _current_date(c, e):
    t = SqlType("date")
    return Value(lambda f: pa.scalar(f.ctx.now.date(), t.to_arrow()), t)


def _extract(c, e):
    unit = e.this.name.lower()
    src = c.compile(e.expression)
    if src.type.name == "unknown":
        src = c.coerce(src, SqlType("timestamptz"))
    fns = {"year": pc.year, "month": pc.month, "day": pc.day, "hour": pc.hour, "minute": pc.minute,
           "dow": lambda x: pc.day_of_week(x, count_from_zero=True, week_start=7),
           "doy": pc.day_of_year, "week": pc.iso_week, "quarter": pc.quarter,
           "isodow": lambda x: pc.day_of_week(x, count_from_zero=False, week_start=1),
           "isoyear": pc.iso_year}
    if unit == "second":
        def fn(f):
            v = src(f)
            return pc.add(pc.cast(pc.second(v), pa.float64()),
                          pc.divide(pc.cast(pc.microsecond(v), pa.float64()), 1e6))
    elif unit == "epoch":
        def fn(f):
            v = src(f)
            if src.type.name == "date":
                v = pc.cast(v, pa.timestamp("us"))
            return pc.divide(pc.cast(pc.cast(v, pa.timestamp("us", tz=None) if not v.type.tz else v.type),
                                     pa.int64()), 1e6)
    elif unit in fns:
        def fn(f):
            return pc.cast(fns[unit](src(f)), pa.float64())
    else:
        raise FeatureNotSupported(f'unit "{unit}" of EXTRACT is not supported')
    return Value(fn, NUMERIC if False else FLOAT8, src.const)


def _date_trunc(c, e):
    unit = e.args["unit"].name.lower() if isinstance(e.args.get("unit"), exp.Expression) else \
        str(e.args.get("unit")).strip("'").lower()
    src = c.compile(e.this)
    if src.type.name == "unknown":
        src = c.coerce(src, SqlType("timestamptz"))
    t = src.type if src.type.name != "date" else SqlType("timestamptz")

    def fn(f):
        v = src(f)
        if src.type.name == "date":
            v = pc.cast(v, pa.timestamp("us", tz="UTC"))
        return pc.floor_temporal(v, unit=unit.rstrip("s"))
    return Value(fn, t, src.const)


# Vectors -------------------------------------------------------------------------------------------


def _vector_arg(c, e) -> Value:
    v = c.compile(e)
    if v.type.name != "vector":
        v = c.coerce(v, SqlType("vector"))
    return v


def _vector_dims(c, e):
    v = _vector_arg(c, e.this)

    def fn(f):
        x = v(f)
        if is_scalar(x):
            return pa.scalar(None if not x.is_valid else len(x.values), pa.int32())
        return pc.cast(pc.list_value_length(x), pa.int32())
    return Value(fn, INT4, v.const)


def _vector_norm(c, e):
    v = _vector_arg(c, e.this)

    def fn(f):
        x = v(f)
        rows = 1 if is_scalar(x) else f.n
        m, valid = V.to_numpy_vectors(x, rows)
        norms = np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float64))
        arr = pa.array(norms, pa.float64(), mask=None if valid is None else ~valid)
        return arr[0] if is_scalar(x) else arr
    return Value(fn, FLOAT8, v.const)


def _l2_normalize(c, e):
    v = _vector_arg(c, e.this)

    def fn(f):
        x = v(f)
        rows = 1 if is_scalar(x) else f.n
        m, valid = V.to_numpy_vectors(x, rows)
        arr = V.vectors_to_arrow(l2_normalize(m), valid)
        return arr[0] if is_scalar(x) else arr
    return Value(fn, v.type, v.const)


def _subvector(c, e):
    v = _vector_arg(c, e.this)
    start = c.compile_as(e.args["start"], INT4)
    count = c.compile_as(e.args["count"], INT4)

    def fn(f):
        x = v(f)
        s, n = start(f).as_py(), count(f).as_py()
        rows = 1 if is_scalar(x) else f.n
        m, valid = V.to_numpy_vectors(x, rows)
        begin = max(s, 1) - 1
        end = min(s - 1 + n, m.shape[1])
        if end <= begin:
            raise DataException("vector must have at least 1 dimension")
        arr = V.vectors_to_arrow(m[:, begin:end], valid)
        return arr[0] if is_scalar(x) else arr
    return Value(fn, SqlType("vector"), v.const)


def _inner_product(c, e):
    a = _vector_arg(c, e.this)
    b = _vector_arg(c, e.expression)
    from sqlvec.execution.expressions import vector_distance

    def fn(f):
        out = vector_distance(Metric.IP, a(f), b(f), f.n)
        return pc.negate(out)
    return Value(fn, FLOAT8, a.const and b.const)


def _md5(c, e):
    s = c.compile_as(e.this, TEXT)

    def fn(f):
        x = s(f)
        if is_scalar(x):
            return pa.scalar(None if not x.is_valid else hashlib.md5(x.as_py().encode()).hexdigest())
        return pa.array([None if v is None else hashlib.md5(v.encode()).hexdigest()
                         for v in x.to_pylist()], pa.string())
    return Value(fn, TEXT, s.const)


def _random(c, e):
    return Value(lambda f: pa.array(np.random.random(f.n)) if f.n != 1 else
                 pa.scalar(float(np.random.random())), FLOAT8)


FUNCTIONS: dict[type, Compiled] = {
    exp.Lower: _text_unary(pc.utf8_lower),
    exp.Upper: _text_unary(pc.utf8_upper),
    exp.Length: _length,
    exp.Substring: _substring,
    exp.Concat: _concat,
    exp.Trim: _trim,
    exp.StrPosition: _position,
    exp.Replace: _replace if hasattr(exp, "Replace") else _replace,
    exp.Abs: _numeric_unary(pc.abs_checked),
    exp.Ceil: _numeric_unary(pc.ceil),
    exp.Floor: _numeric_unary(pc.floor),
    exp.Sqrt: _numeric_unary(pc.sqrt, float_only=True),
    exp.Exp: _numeric_unary(pc.exp, float_only=True),
    exp.Ln: _numeric_unary(pc.ln, float_only=True),
    exp.Sign: _numeric_unary(pc.sign),
    exp.Round: _round,
    exp.CurrentTimestamp: _now,
    exp.CurrentDate: _current_date,
    exp.Extract: _extract,
    exp.TimestampTrunc: _date_trunc,
    exp.DotProduct: _inner_product,
    exp.MD5: _md5,
    exp.Rand: _random,
    d.VectorDims: _vector_dims,
    d.VectorNorm: _vector_norm,
    d.L2Normalize: _l2_normalize,
    d.Subvector: _subvector,
}


# Functions called by name ----------------------------------------------------------------------------

NamedFunction = Callable[["object", list[exp.Expression], exp.Expression], Value]
NAMED: dict[str, NamedFunction] = {}


def named(*names: str):
    def register(fn: NamedFunction) -> NamedFunction:
        for name in names:
            NAMED[name] = fn
        return fn
    return register


def compile_named(c, name: str, args: list[exp.Expression], e: exp.Expression) -> Value:
    fn = NAMED.get(name)
    if fn is None and c.env.functions is not None:
        fn = c.env.functions.get(name)
    if fn is None:
        types = []
        for a in args:
            try:
                t = c.compile(a).type
                types.append("unknown" if t.name == "unknown" else t.format())
            except SqlVecError:
                types.append("unknown")
        raise UndefinedFunction(
            f"function {name}({', '.join(types)}) does not exist",
            hint="No function matches the given name and argument types. You might need to add "
                 "explicit type casts.")
    return fn(c, args, e)


@named("version")
def _version(c, args, e):
    text = c.env.functions["__version__"] if c.env.functions and "__version__" in c.env.functions \
        else "PostgreSQL 16.4 (sqlvec 0.1.0)"
    return Value(lambda f: pa.scalar(text), TEXT, True)


@named("now", "transaction_timestamp", "statement_timestamp")
def _named_now(c, args, e):
    return _now(c, e)


@named("clock_timestamp")
def _clock(c, args, e):
    t = SqlType("timestamptz")
    return Value(lambda f: pa.scalar(dt.datetime.now(dt.timezone.utc), t.to_arrow()), t)


@named("pi")
def _pi(c, args, e):
    return Value(lambda f: pa.scalar(float(np.pi)), FLOAT8, True)


@named("l2_distance", "cosine_distance", "l1_distance")
def _named_distance(c, args, e):
    cls = {"l2_distance": d.L2Distance, "cosine_distance": d.CosineDistance,
           "l1_distance": d.L1Distance}[str(e.this).lower()]
    return c.compile(cls(this=args[0], expression=args[1]))


@named("inner_product")
def _named_ip(c, args, e):
    return _inner_product(c, exp.DotProduct(this=args[0], expression=args[1]))


@named("vector_dims")
def _named_dims(c, args, e):
    return _vector_dims(c, d.VectorDims(this=args[0]))


@named("vector_norm")
def _named_norm(c, args, e):
    return _vector_norm(c, d.VectorNorm(this=args[0]))


@named("char_length", "character_length")
def _char_length(c, args, e):
    return _length(c, exp.Length(this=args[0]))


@named("power", "pow")
def _power(c, args, e):
    return c.compile(exp.Pow(this=args[0], expression=args[1]))


@named("mod")
def _mod(c, args, e):
    return c.compile(exp.Mod(this=args[0], expression=args[1]))


@named("trunc")
def _trunc(c, args, e):
    arg = c.compile(args[0])
    if arg.type.name == "unknown":
        arg = c.coerce(arg, FLOAT8)
    return Value(lambda f: pc.trunc(arg(f)), arg.type, arg.const)


@named("log10", "log")
def _log10(c, args, e):
    if len(args) == 2:
        base = c.compile_as(args[0], FLOAT8)
        x = c.compile_as(args[1], FLOAT8)
        return Value(lambda f: pc.divide(pc.ln(x(f)), pc.ln(base(f))), FLOAT8)
    x = c.compile_as(args[0], FLOAT8)
    return Value(lambda f: pc.log10(x(f)), FLOAT8, x.const)


@named("left")
def _left(c, args, e):
    s = c.compile_as(args[0], TEXT)
    n = c.compile_as(args[1], INT4)

    def fn(f):
        k = n(f).as_py()
        return pc.utf8_slice_codeunits(s(f), 0, k) if k >= 0 else \
            pc.utf8_slice_codeunits(s(f), 0, k)
    return Value(fn, TEXT, s.const)


@named("right")
def _right(c, args, e):
    s = c.compile_as(args[0], TEXT)
    n = c.compile_as(args[1], INT4)

    def fn(f):
        k = n(f).as_py()
        if k == 0:
            return pc.utf8_slice_codeunits(s(f), 0, 0)
        return pc.utf8_slice_codeunits(s(f), -k) if k > 0 else pc.utf8_slice_codeunits(s(f), -k if False else abs(k))
    return Value(fn, TEXT, s.const)


@named("reverse")
def _reverse(c, args, e):
    s = c.compile_as(args[0], TEXT)
    return Value(lambda f: pc.utf8_reverse(s(f)), TEXT, s.const)


@named("repeat")
def _repeat(c, args, e):
    s = c.compile_as(args[0], TEXT)
    n = c.compile_as(args[1], INT4)
    return Value(lambda f: pc.binary_repeat(s(f), n(f)), TEXT, s.const and n.const)


@named("starts_with")
def _starts_with(c, args, e):
    s = c.compile_as(args[0], TEXT)
    p = c.compile_as(args[1], TEXT)
    return Value(lambda f: pc.starts_with(s(f), p(f).as_py()), BOOL, s.const)


@named("split_part")
def _split_part(c, args, e):
    s = c.compile_as(args[0], TEXT)
    sep = c.compile_as(args[1], TEXT)
    k = c.compile_as(args[2], INT4)

    def fn(f):
        parts = pc.split_pattern(as_array(s(f), f.n), sep(f).as_py())
        idx = k(f).as_py()
        out = [None if p is None else (p[idx - 1] if 0 < idx <= len(p) else "") for p in parts.to_pylist()]
        arr = pa.array(out, pa.string())
        return arr[0] if is_scalar(s(f)) else arr
    return Value(fn, TEXT, s.const)


@named("initcap")
def _initcap(c, args, e):
    s = c.compile_as(args[0], TEXT)
    return Value(lambda f: pc.utf8_title(s(f)), TEXT, s.const)


@named("lpad", "rpad")
def _pad(c, args, e):
    s = c.compile_as(args[0], TEXT)
    n = c.compile_as(args[1], INT4)
    fill = c.compile_as(args[2], TEXT) if len(args) > 2 else None
    left = str(e.this).lower() == "lpad"

    def fn(f):
        width = n(f).as_py()
        pad = " " if fill is None else fill(f).as_py()
        vals = [s(f).as_py()] if is_scalar(s(f)) else s(f).to_pylist()
        out = []
        for v in vals:
            if v is None:
                out.append(None)
                continue
            if len(v) >= width:
                out.append(v[:width])
                continue
            need = width - len(v)
            filler = (pad * (need // max(len(pad), 1) + 1))[:need] if pad else ""
            out.append(filler + v if left else v + filler)
        arr = pa.array(out, pa.string())
        return arr[0] if is_scalar(s(f)) else arr
    return Value(fn, TEXT, s.const)


@named("btrim", "ltrim", "rtrim")
def _named_trim(c, args, e):
    position = {"btrim": "BOTH", "ltrim": "LEADING", "rtrim": "TRAILING"}[str(e.this).lower()]
    return _trim(c, exp.Trim(this=args[0], expression=args[1] if len(args) > 1 else None,
                             position=position))


@named("strpos")
def _strpos(c, args, e):
    return _position(c, exp.StrPosition(this=args[0], substr=args[1]))


@named("cbrt")
def _cbrt(c, args, e):
    x = c.compile_as(args[0], FLOAT8)
    return Value(lambda f: pc.power(x(f), 1 / 3), FLOAT8, x.const)


@named("degrees")
def _degrees(c, args, e):
    x = c.compile_as(args[0], FLOAT8)
    return Value(lambda f: pc.multiply(x(f), 180 / np.pi), FLOAT8, x.const)


@named("radians")
def _radians(c, args, e):
    x = c.compile_as(args[0], FLOAT8)
    return Value(lambda f: pc.multiply(x(f), np.pi / 180), FLOAT8, x.const)


@named("to_char")
def _to_char(c, args, e):
    raise FeatureNotSupported("to_char() is not supported")


@named("gen_random_uuid")
def _uuid(c, args, e):
    import uuid

    t = SqlType("uuid")
    return Value(lambda f: pa.array([str(uuid.uuid4()) for _ in range(f.n)]) if f.n != 1
                 else pa.scalar(str(uuid.uuid4())), t)


@named("int8", "int4", "float8", "text")
def _type_function(c, args, e):
    return c.compile(exp.Cast(this=args[0], to=exp.DataType.build(str(e.this).lower(), dialect="postgres")))


__all__ = ["FUNCTIONS", "NAMED", "named", "compile_named", "INT8"]
