"""Scalar functions, found by what PostgreSQL users type: `lower(x)`, `round(n, 2)`,
`vector_dims(v)`, `date_trunc('month', t)`.

Each kernel is declared in the function catalog (catalog/functions.py) with its names and
signatures: a decorator on the kernel, or a line in "Declarations" below for kernels a factory
builds. A kernel is `fn(compiler, args, call) -> Value`, with the call's arguments in order and
`call` an `exp.Anonymous` naming the function (one kernel may serve several names). Calls that
sqlglot parses into classes of their own (`substring(s FROM 2 FOR 3)`, `trim(LEADING ...)`,
`EXTRACT(...)`) reach the same kernels through sql/calls.py; `expressions.calls.compile_call`
dispatches every call. A name the catalog does not have is 42883 `function f(type, ...) does
not exist`, as PostgreSQL reports it; so is a known function called with argument types it
does not take.

Functions run on Arrow kernels. The few without one (md5, translate, format, chr, to_hex,
regexp_match, encode/decode, multi-character lpad/rpad fill, to_char/age) evaluate per row in
Python: `_rowwise` is the one place that does it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import math
import re
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.functions import scalar
from sqlvec.errors import (
    DataException,
    FeatureNotSupported,
    InvalidParameterValue,
    SqlVecError,
)
from sqlvec.execution import values as V
from sqlvec.execution.expressions import constant
from sqlvec.execution.expressions.calls import no_such_function
from sqlvec.execution.expressions.json import json_typeof
from sqlvec.execution.expressions.vector import (
    bits_from_chars,
    pgvector_kind,
    sparse_distance,
    vector_distance,
)
from sqlvec.execution.kernels import add_months, decimal_op, int_checked
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
from sqlvec.vectors import (
    Metric,
    SparseRows,
    binary_quantize,
    l2_normalize,
    sparse_l2_normalize,
    sparse_l2_norms,
)

DATE = SqlType("date")
TIMESTAMP = SqlType("timestamp")
TIMESTAMPTZ = SqlType("timestamptz")
INTERVAL = SqlType("interval")
BYTEA = SqlType("bytea")


# Argument helpers --------------------------------------------------------------------------------


def _text(c, e: exp.Expression, name: str) -> Value:
    """A string argument: untyped literals become text, char(n) too (without its trailing
    spaces, as PostgreSQL casts it for a text function); other types are 42883."""
    v = c.compile_as(e, TEXT) if isinstance(e, exp.Parameter) else c.compile(e)
    if v.type.name in ("unknown", "bpchar"):
        return c.coerce(v, TEXT)
    if not V.is_string(v.type):
        raise no_such_function(name, [v])
    return v


def _number(c, e: exp.Expression, name: str, allowed=("int2", "int4", "int8", "numeric",
                                                        "float4", "float8")) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, NUMERIC if v.text and re.fullmatch(r"\s*[-+]?[\d.]+\s*", v.text)
                        else FLOAT8)
    if v.type.name not in allowed:
        raise no_such_function(name, [v])
    return v


def _float(c, e: exp.Expression, name: str) -> Value:
    return c.coerce(_number(c, e, name), FLOAT8)


def _int(c, e: exp.Expression, name: str) -> Value:
    v = _number(c, e, name, ("int2", "int4", "int8"))
    return c.coerce(v, INT4) if v.type.name in ("int2", "unknown") else v


def _unary(fn: Callable, arg: Value, t: SqlType) -> Value:
    return Value(lambda f: fn(arg(f)), t, arg.const)


def _rowwise(out: SqlType, fn: Callable, *args: Value) -> Value:
    """`fn` over Python values row by row, NULL in → NULL out. For functions without an Arrow
    kernel; each call does O(rows) Python work."""
    arrow = out.to_arrow()

    def run(f):
        vals = [a(f) for a in args]
        if all(is_scalar(v) for v in vals):
            py = [v.as_py() for v in vals]
            return pa.scalar(None if None in py else fn(*py), arrow)
        cols = [[v.as_py()] * f.n if is_scalar(v) else as_array(v, f.n).to_pylist()
                for v in vals]
        return pa.array([None if None in row else fn(*row) for row in zip(*cols)], arrow)

    return Value(run, out, all(a.const for a in args))


def _constant(value: Value, what: str):
    """The value of an argument that must not vary by row (a pattern, a precision)."""
    if not value.const:
        raise FeatureNotSupported(f"{what} must be a constant here")
    return constant(value, None).as_py()


# Strings -----------------------------------------------------------------------------------------


def _text_kernel(name: str, kernel: Callable, out: SqlType = TEXT):
    def compile_(c, args, e):
        arg = _text(c, args[0], name)
        return _unary(kernel, arg, out)
    return compile_


def _length(c, args, e):
    arg = c.compile(args[0])
    if arg.type.name == "bytea":
        return _unary(lambda x: pc.cast(pc.binary_length(x), pa.int32()), arg, INT4)
    arg = _text(c, args[0], "length")
    return _unary(lambda x: pc.cast(pc.utf8_length(x), pa.int32()), arg, INT4)


def _octet_length(c, args, e):
    arg = c.compile(args[0])
    if arg.type.name not in ("bytea", "bpchar"):  # char(n) counts its padding
        arg = _text(c, args[0], "octet_length")
    return _unary(lambda x: pc.cast(pc.binary_length(x), pa.int32()), arg, INT4)


def _substring(c, args, e):
    """substring(s, start[, count]) and substring(s, pattern): the SQL forms
    `substring(s FROM start FOR count)` / `substring(s FROM pattern)` arrive as these."""
    name = str(e.this).lower()
    s = _text(c, args[0], name)
    start_expr = args[1] if len(args) > 1 else None
    length_expr = args[2] if len(args) > 2 else None
    start = c.compile(start_expr) if start_expr is not None else None
    if start is not None and (V.is_string(start.type)):
        return _regex_substring(c, s, start)
    start = c.coerce(start, INT4) if start is not None else None
    length = c.compile_as(length_expr, INT4) if length_expr is not None else None

    def fn(f):
        st = 1 if start is None else start(f).as_py()
        ln = None if length is None else length(f).as_py()
        if st is None or (length is not None and ln is None):
            return pa.scalar(None, pa.string())
        if ln is not None and ln < 0:
            raise SqlVecError("negative substring length not allowed", sqlstate="22011")
        begin = max(st, 1) - 1
        stop = None if ln is None else max(st + ln - 1, 0)
        return pc.utf8_slice_codeunits(s(f), begin, begin if stop is not None and
                                       stop <= begin else stop)
    return Value(fn, TEXT, s.const and (start is None or start.const))


def _regex_substring(c, s: Value, pattern: Value) -> Value:
    """substring(s FROM pattern): the first match, or its first parenthesized group."""
    regex = re.compile(_constant(pattern, "the pattern of substring"))
    return _rowwise(TEXT, lambda x: _first_match(regex, x), s)


def _first_match(regex: re.Pattern, text: str) -> str | None:
    m = regex.search(text)
    if m is None:
        return None
    return m.group(1) if regex.groups else m.group(0)


def _position(c, args, e):
    """position(string, substring), also `position(substring IN string)` and strpos()."""
    name = str(e.this).lower()
    s = _text(c, args[0], name)
    sub = _text(c, args[1], name)
    needle = _constant(sub, "the substring of position()")

    def fn(f):
        return pc.cast(pc.add(pc.find_substring(s(f), needle), 1), pa.int32())
    return Value(fn, INT4, s.const)


def _replace(c, args, e):
    s, old, new = (_text(c, a, "replace") for a in args)
    if old.const and new.const:
        src, dst = _constant(old, ""), _constant(new, "")
        return _unary(lambda x: pc.replace_substring(x, src, dst) if src else x, s, TEXT)
    return _rowwise(TEXT, lambda x, a, b: x.replace(a, b) if a else x, s, old, new)


def _translate(c, args, e):
    s, src, dst = (_text(c, a, "translate") for a in args)

    def translate(x: str, a: str, b: str) -> str:
        table = {ord(ch): (b[i] if i < len(b) else None) for i, ch in reversed(list(enumerate(a)))}
        return x.translate(table)
    return _rowwise(TEXT, translate, s, src, dst)


def _repeat(c, args, e):
    s = _text(c, args[0], "repeat")
    k = _int(c, args[1], "repeat")
    return Value(lambda f: pc.binary_repeat(s(f), pc.max_element_wise(k(f), 0)), TEXT,
                 s.const and k.const)


def _trim(c, args, e):
    """btrim / ltrim / rtrim, also `trim([BOTH|LEADING|TRAILING] [chars] FROM s)`."""
    name = str(e.this).lower()
    s = _text(c, args[0], name)
    chars = _text(c, args[1], name) if len(args) > 1 else None
    kernel = {"btrim": pc.utf8_trim, "ltrim": pc.utf8_ltrim, "rtrim": pc.utf8_rtrim}[name]
    characters = " " if chars is None else _constant(chars, "the characters of trim")
    return _unary(lambda x: kernel(x, characters=characters), s, TEXT)


def _concat(c, args, e):
    parts = [c.compile(a) for a in args]
    parts = [c.coerce(p, TEXT) if p.type.name == "unknown" else p for p in parts]

    def fn(f):
        texts = [as_array(pc.fill_null(V.output_text(p(f), p.type, f.n), ""), f.n) for p in parts]
        return pc.binary_join_element_wise(*texts, "") if texts else pa.scalar("")
    return Value(fn, TEXT, all(p.const for p in parts))


def _concat_ws(c, args, e):
    sep = _text(c, args[0], "concat_ws")
    parts = [c.compile(a) for a in args[1:]]
    parts = [c.coerce(p, TEXT) if p.type.name == "unknown" else p for p in parts]
    separator = _constant(sep, "the separator of concat_ws")

    def fn(f):
        texts = [as_array(V.output_text(p(f), p.type, f.n), f.n) for p in parts]
        return pc.binary_join_element_wise(*texts, separator, null_handling="skip")
    return Value(fn, TEXT, all(p.const for p in parts))


def _left_right(c, args, e):
    name = str(e.this).lower()
    s = _text(c, args[0], name)
    k = _constant(_int(c, args[1], name), f"the length of {name}()")
    if name == "left":
        return _unary(lambda x: pc.utf8_slice_codeunits(x, 0, k) if k >= 0 else
                      pc.utf8_slice_codeunits(x, 0, k), s, TEXT)
    if k >= 0:
        return _unary(lambda x: pc.utf8_slice_codeunits(x, -k) if k else
                      pc.utf8_slice_codeunits(x, 0, 0), s, TEXT)
    return _unary(lambda x: pc.utf8_slice_codeunits(x, -k), s, TEXT)


def _pad(c, args, e):
    name = str(e.this).lower()
    s = _text(c, args[0], name)
    width = _int(c, args[1], name)
    fill = _text(c, args[2], name) if len(args) > 2 else Value(lambda f: pa.scalar(" "), TEXT, True)
    left = name == "lpad"

    def pad(x: str, n: int, p: str) -> str:
        if n <= len(x) or not p:
            return x[:max(n, 0)]
        filler = (p * ((n - len(x)) // len(p) + 1))[:n - len(x)]
        return filler + x if left else x + filler
    return _rowwise(TEXT, pad, s, width, fill)


def _split_part(c, args, e):
    s, sep = _text(c, args[0], "split_part"), _text(c, args[1], "split_part")
    k = _int(c, args[2], "split_part")

    def part(x: str, delimiter: str, i: int) -> str:
        if i == 0:
            raise SqlVecError("field position must not be zero", sqlstate="22023")
        pieces = x.split(delimiter) if delimiter else [x]
        if abs(i) > len(pieces):
            return ""
        return pieces[i - 1] if i > 0 else pieces[i]
    return _rowwise(TEXT, part, s, sep, k)


def _starts_with(c, args, e):
    s, prefix = _text(c, args[0], "starts_with"), _text(c, args[1], "starts_with")
    p = _constant(prefix, "the prefix of starts_with")
    return _unary(lambda x: pc.starts_with(x, p), s, BOOL)


def _md5(c, args, e):
    s = c.compile(args[0])
    s = s if s.type.name == "bytea" else _text(c, args[0], "md5")
    return _rowwise(TEXT, lambda x: hashlib.md5(x if isinstance(x, bytes) else x.encode())
                    .hexdigest(), s)


def _ascii(c, args, e):
    return _rowwise(INT4, lambda x: ord(x[0]) if x else 0, _text(c, args[0], "ascii"))


def _chr(c, args, e):
    return _rowwise(TEXT, _checked_chr, _int(c, args[0], "chr"))


def _checked_chr(code: int) -> str:
    """chr() with PostgreSQL's refusals: no NUL (its text cannot hold one), no surrogates."""
    if code < 0:
        raise InvalidParameterValue("character number must be positive")
    if code == 0:
        raise SqlVecError("null character not permitted", sqlstate="54000")
    if code > 0x10FFFF:
        raise SqlVecError(f"requested character too large for encoding: {code}",
                          sqlstate="54000")
    if 0xD800 <= code <= 0xDFFF:
        raise SqlVecError(f"requested character not valid for encoding: {code}",
                          sqlstate="54000")
    return chr(code)


def _to_hex(c, args, e):
    return _rowwise(TEXT, lambda x: format(x & 0xFFFFFFFFFFFFFFFF if x < 0 else x, "x"),
                    _int(c, args[0], "to_hex"))


def _regexp_replace(c, args, e):
    s, pattern, replacement = (_text(c, a, "regexp_replace") for a in args[:3])
    flags = _constant(_text(c, args[3], "regexp_replace"), "regexp flags") if len(args) > 3 else ""
    regex = _constant(pattern, "the pattern of regexp_replace")
    if "i" in flags:
        regex = "(?i)" + regex
    repl = _constant(replacement, "the replacement of regexp_replace")
    limit = -1 if "g" in flags else 1
    return _unary(lambda x: pc.replace_substring_regex(x, regex, repl, max_replacements=limit),
                  s, TEXT)


def _regexp_match(c, args, e):
    s, pattern = _text(c, args[0], "regexp_match"), _text(c, args[1], "regexp_match")
    regex = re.compile(_constant(pattern, "the pattern of regexp_match"))

    def match(x: str) -> list | None:
        m = regex.search(x)
        if m is None:
            return None
        return list(m.groups()) if regex.groups else [m.group(0)]
    return _rowwise(TEXT.array_of(), match, s)


def _format(c, args, e):
    fmt = _text(c, args[0], "format")
    values = [c.compile(a) for a in args[1:]]
    texts = [Value(lambda f, v=v: V.output_text(v(f), v.type if v.type.name != "unknown" else TEXT,
                                                f.n), TEXT, v.const) for v in values]
    spec = re.compile(r"%(%|[sIL])")

    def render(template: str, *items) -> str:
        it = iter(items)

        def one(m: re.Match) -> str:
            if m.group(1) == "%":
                return "%"
            try:
                value = next(it)
            except StopIteration:
                raise SqlVecError("too few arguments for format()", sqlstate="22023") from None
            return {"s": lambda x: "" if x is None else x, "I": _quote_ident,
                    "L": lambda x: "NULL" if x is None else _quote_literal(x)}[m.group(1)](value)
        return spec.sub(one, template)

    def run(f):
        template = fmt(f)
        cols = [as_array(t(f), f.n).to_pylist() for t in texts]
        templates = [template.as_py()] * f.n if is_scalar(template) else template.to_pylist()
        out = [None if tpl is None else render(tpl, *row)
               for tpl, *row in zip(templates, *cols)] if cols else \
            [None if tpl is None else render(tpl) for tpl in templates]
        return pa.array(out, pa.string())
    return Value(run, TEXT)


def _quote_ident(x: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", x):
        return x
    return '"' + x.replace('"', '""') + '"'


def _quote_literal(x: str) -> str:
    escaped = x.replace("'", "''")
    if "\\" in x:
        return "E'" + escaped.replace("\\", "\\\\") + "'"
    return "'" + escaped + "'"


def _encode(c, args, e):
    data = c.coerce(c.compile(args[0]), BYTEA)
    fmt = _constant(_text(c, args[1], "encode"), "the format of encode").lower()
    coders = {"hex": lambda b: b.hex(), "base64": lambda b: base64.b64encode(b).decode(),
              "escape": _escape_bytes}
    if fmt not in coders:
        raise SqlVecError(f'unrecognized encoding: "{fmt}"', sqlstate="22023")
    return _rowwise(TEXT, coders[fmt], data)


def _decode(c, args, e):
    text = _text(c, args[0], "decode")
    fmt = _constant(_text(c, args[1], "decode"), "the format of decode").lower()
    coders = {"hex": bytes.fromhex, "base64": base64.b64decode, "escape": V.bytea_escape_input}
    if fmt not in coders:
        raise SqlVecError(f'unrecognized encoding: "{fmt}"', sqlstate="22023")
    return _rowwise(BYTEA, coders[fmt], text)


def _escape_bytes(data: bytes) -> str:
    """encode(bytea, 'escape'): NUL and bytes with the high bit set as \\ooo, a backslash
    doubled, everything else as itself (so the text never holds a NUL)."""
    return "".join("\\\\" if b == 0x5C else f"\\{b:03o}" if b == 0 or b >= 0x80 else chr(b)
                   for b in data)


# Math --------------------------------------------------------------------------------------------


def _abs(c, args, e):
    x = _number(c, args[0], "abs")
    if x.type.name in V.INT_DIGITS:
        t = x.type
        return _unary(lambda v: int_checked(pc.abs_checked, v, t), x, t)
    return _unary(pc.abs_checked, x, x.type)


def _sign(c, args, e):
    x = _number(c, args[0], "sign")
    if x.type.name in V.INT_DIGITS:
        x = c.coerce(x, FLOAT8)
    if x.type.name == "numeric":
        t = V.numeric_with_scale(0)
        return _unary(lambda v: V.fit_numeric(V.to_decimal(pc.cast(pc.sign(v), pa.int32()),
                                                           INT4), t), x, t)
    return _unary(pc.sign, x, x.type)


def _round_like(mode: str, name: str):
    """round / trunc / ceil / floor: numeric keeps exactness (result scale = digits), floats
    round half to even (rint) as PostgreSQL's float8 functions do."""
    def compile_(c, args, e):
        x = _number(c, args[0], name)
        if x.type.name in V.INT_DIGITS:
            x = c.coerce(x, FLOAT8 if name in ("ceil", "floor") or len(args) == 1 else NUMERIC)
        if len(args) > 1 and x.type.name != "numeric":
            if x.type.name in ("float4", "float8"):
                raise no_such_function(name, [x, c.compile(args[1])])
            x = c.coerce(x, NUMERIC)
        if x.type.name in ("float4", "float8"):
            kernel = {"round": lambda v: pc.round(v, round_mode="half_to_even"),
                      "trunc": pc.trunc, "ceil": pc.ceil, "floor": pc.floor}[mode]
            return _unary(kernel, c.coerce(x, FLOAT8), FLOAT8)
        digits = _constant(c.compile_as(args[1], INT4), f"the precision of {name}") \
            if len(args) > 1 else 0
        t = V.numeric_with_scale(max(digits or 0, 0))
        round_mode = {"round": "half_towards_infinity", "trunc": "towards_zero",
                      "ceil": "up", "floor": "down"}[mode]

        def fn(f):
            value = x(f)
            if digits is None:
                return pa.scalar(None, t.to_arrow())
            return V.fit_numeric(pc.round(value, ndigits=digits, round_mode=round_mode), t)
        return Value(fn, t, x.const)
    return compile_


def _float_function(name: str, kernel: Callable, domain: Callable | None = None):
    """A float8 function of float8 arguments (integers and numerics convert)."""
    def compile_(c, args, e):
        xs = [_float(c, a, name) for a in args]

        def fn(f):
            values = [x(f) for x in xs]
            if domain is not None:
                domain(*values)
            return kernel(*values)
        return Value(fn, FLOAT8, all(x.const for x in xs))
    return compile_


def _exact_or_float(name: str, kernel: Callable, domain: Callable | None = None,
                    checked: Callable | None = None):
    """PostgreSQL has numeric and float8 versions (sqrt, exp, ln, log, power): a numeric
    argument gives numeric (16 decimals), anything else float8. `checked` is the float8
    kernel with its range checks (the numeric version refuses only what it cannot hold)."""
    float_version = _float_function(name, checked or kernel, domain)
    numeric_version = _float_function(name, kernel, domain)

    def compile_(c, args, e):
        values = [_number(c, a, name) for a in args]
        if not any(v.type.name == "numeric" for v in values):
            return float_version(c, args, e)
        result = numeric_version(c, args, e)
        t = V.numeric_with_scale(16)
        return Value(lambda f: V.fit_numeric(V.numeric_from_float(result(f)), t), t,
                     result.const)
    return compile_


def _checked_exp(x: V.Datum) -> V.Datum:
    """exp over float8: 22003 when the result overflows, or underflows to zero."""
    return V.check_float(pc.exp(x), (x,), (), (x,))


def _any(pred) -> Callable:
    def test(*values) -> bool:
        for v in values:
            hit = pred(v)
            if hit.as_py() if is_scalar(hit) else pc.any(hit).as_py():
                return True
        return False
    return test


def _log_domain(x) -> None:
    if _any(lambda v: pc.equal(v, 0))(x):
        raise SqlVecError("cannot take logarithm of zero", sqlstate="2201E")
    if _any(lambda v: pc.less(v, 0))(x):
        raise SqlVecError("cannot take logarithm of a negative number", sqlstate="2201E")


def _sqrt_domain(x) -> None:
    if _any(lambda v: pc.less(v, 0))(x):
        raise SqlVecError("cannot take square root of a negative number", sqlstate="2201F")


def _log(c, args, e):
    """log(x) is base 10 (float8 or numeric); log(b, x) exists for numeric only."""
    if len(args) == 2:
        args = [exp.Cast(this=a, to=exp.DataType.build("numeric")) for a in args]
        return _exact_or_float("log", lambda b, x: pc.divide(pc.ln(x), pc.ln(b)),
                               lambda b, x: (_log_domain(b), _log_domain(x)))(c, args, e)
    return _exact_or_float("log", pc.log10, _log_domain)(c, args, e)


def _mod(c, args, e):
    return c.compile(exp.Mod(this=args[0], expression=args[1]))


def _power(c, args, e):
    return c.compile(exp.Pow(this=args[0], expression=args[1]))


def _div(c, args, e):
    """div(a, b): the quotient truncated toward zero, as numeric."""
    a, b = (c.coerce(v, V.as_numeric(v.type)) for v in (_number(c, x, "div") for x in args))
    if a.type.name != "numeric" or b.type.name != "numeric":
        raise no_such_function("div", [a, b])
    t = V.numeric_with_scale(0)
    quotient = decimal_op("divide", V.numeric_with_scale(1))
    return Value(lambda f: V.fit_numeric(pc.round(quotient(a(f), b(f)),
                                                  round_mode="towards_zero"), t),
                 t, a.const and b.const)


def _gcd_lcm(c, args, e):
    name = str(e.this).lower()
    a, b = (_int(c, x, name) for x in args)
    t = a.type if a.type == b.type else INT8
    kernel = math.gcd if name == "gcd" else (lambda x, y: abs(x * y) // math.gcd(x, y)
                                            if x and y else 0)
    return _rowwise(t, kernel, a, b)


def _factorial(c, args, e):
    n = _int(c, args[0], "factorial")

    def factorial(k: int) -> int:
        if k < 0:
            raise SqlVecError("factorial of a negative number is undefined", sqlstate="2201E")
        return math.factorial(k)
    return _rowwise(V.numeric_with_scale(0), factorial, n)


def _width_bucket(c, args, e):
    x, lo, hi = (_float(c, a, "width_bucket") for a in args[:3])
    count = _int(c, args[3], "width_bucket")

    def fn(f):
        xv, lov, hiv, k = x(f), lo(f), hi(f), count(f)
        width = pc.divide(pc.subtract(hiv, lov), pc.cast(k, pa.float64()))
        raw = pc.add(pc.floor(pc.divide(pc.subtract(xv, lov), width)), 1)
        clipped = pc.min_element_wise(pc.max_element_wise(raw, 0), pc.add(pc.cast(k, pa.float64()), 1))
        return pc.cast(clipped, pa.int32())
    return Value(fn, INT4, x.const and lo.const and hi.const and count.const)


def _pi(c, args, e):
    return Value(lambda f: pa.scalar(math.pi), FLOAT8, True)


def _random(c, args, e):
    return Value(lambda f: pa.array(np.random.random(f.n)) if f.n != 1 else
                 pa.scalar(float(np.random.random())), FLOAT8)


# Date and time -----------------------------------------------------------------------------------


def _now(c, args, e):
    return Value(lambda f: pa.scalar(f.ctx.now, TIMESTAMPTZ.to_arrow()), TIMESTAMPTZ)


def _clock(c, args, e):
    return Value(lambda f: pa.scalar(dt.datetime.now(dt.timezone.utc), TIMESTAMPTZ.to_arrow()),
                 TIMESTAMPTZ)


def _current_date(c, args, e):
    return Value(lambda f: pa.scalar(f.ctx.now.date(), DATE.to_arrow()), DATE)


def _localtimestamp(c, args, e):
    return Value(lambda f: pa.scalar(f.ctx.now.replace(tzinfo=None), TIMESTAMP.to_arrow()),
                 TIMESTAMP)


def _temporal(c, e: exp.Expression, name: str) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, TIMESTAMPTZ)
    if v.type.name not in ("date", "timestamp", "timestamptz", "interval", "time"):
        raise no_such_function(name, [v])
    return v


_EXTRACT_FIELDS: dict[str, Callable] = {
    "year": pc.year, "month": pc.month, "day": pc.day, "hour": pc.hour, "minute": pc.minute,
    "dow": lambda x: pc.day_of_week(x, count_from_zero=True, week_start=7),
    "isodow": lambda x: pc.day_of_week(x, count_from_zero=False, week_start=1),
    "doy": pc.day_of_year, "week": pc.iso_week, "quarter": pc.quarter, "isoyear": pc.iso_year,
    "decade": lambda x: pc.floor(pc.divide(pc.cast(pc.year(x), pa.float64()), 10)),
    "century": lambda x: pc.ceil(pc.divide(pc.cast(pc.year(x), pa.float64()), 100)),
    "millennium": lambda x: pc.ceil(pc.divide(pc.cast(pc.year(x), pa.float64()), 1000)),
}
_UNIT_ALIASES = {"years": "year", "months": "month", "mon": "month", "days": "day",
                 "hours": "hour", "minutes": "minute", "min": "minute", "seconds": "second",
                 "sec": "second", "milliseconds": "millisecond", "microseconds": "microsecond",
                 "weeks": "week", "y": "year", "d": "day", "h": "hour", "m": "minute",
                 "s": "second"}


def _field_values(unit: str, source: Value) -> Callable:
    """The kernel that extracts `unit` as float64 (seconds with their fraction)."""
    unit = _UNIT_ALIASES.get(unit, unit)
    if source.type.name == "interval":
        return _interval_field(unit)
    if unit in ("second", "millisecond", "microsecond"):
        factor = {"second": 1, "millisecond": 1e3, "microsecond": 1e6}[unit]

        def seconds(x):
            # Arrow splits the fraction into milli- and microseconds.
            micros = pc.add(pc.multiply(pc.cast(pc.millisecond(x), pa.float64()), 1000),
                            pc.cast(pc.microsecond(x), pa.float64()))
            whole = pc.add(pc.cast(pc.second(x), pa.float64()), pc.divide(micros, 1e6))
            return pc.multiply(whole, factor)
        return seconds
    if unit == "epoch":
        def epoch(x):
            stamp = pc.cast(x, pa.timestamp("us")) if source.type.name == "date" else x
            micros = pc.cast(pc.cast(stamp, pa.timestamp("us", tz=stamp.type.tz)), pa.int64())
            return pc.divide(pc.cast(micros, pa.float64()), 1e6)
        return epoch
    if unit not in _EXTRACT_FIELDS:
        raise SqlVecError(f'unit "{unit}" not recognized for type {source.type.format()}',
                          sqlstate="22023")
    if source.type.name == "time" and unit not in ("hour", "minute"):
        raise FeatureNotSupported(f'unit "{unit}" not supported for type {source.type.format()}')
    if source.type.name == "date" and unit in ("hour", "minute"):
        return lambda x: pc.multiply(pc.cast(pc.day(x), pa.float64()), 0)
    kernel = _EXTRACT_FIELDS[unit]
    return lambda x: pc.cast(kernel(x), pa.float64())


def _interval_field(unit: str) -> Callable:
    def parts(x):
        items = [x.as_py()] if is_scalar(x) else x.to_pylist()
        out = [None if v is None else _interval_part(v, unit) for v in items]
        return pa.scalar(out[0], pa.float64()) if is_scalar(x) else pa.array(out, pa.float64())
    return parts


def _interval_part(v, unit: str) -> float:
    micros = v.nanoseconds // 1000
    table = {"year": v.months // 12, "month": v.months % 12, "day": v.days,
             "hour": micros // 3_600_000_000, "minute": micros // 60_000_000 % 60,
             "second": micros % 60_000_000 / 1e6,
             "epoch": v.months * 30 * 86400 + v.days * 86400 + micros / 1e6}
    if unit not in table:
        raise SqlVecError(f'unit "{unit}" not supported for type interval', sqlstate="0A000")
    return float(table[unit])


def _extract(c, args, e):
    """EXTRACT(field FROM x), i.e. extract('field', x): numeric in PostgreSQL 14+ (scale 6 for
    seconds and epoch)."""
    unit = _constant(_text(c, args[0], "extract"), "the field of extract").lower()
    source = _temporal(c, args[1], "extract")
    kernel = _field_values(unit, source)
    fractional = _UNIT_ALIASES.get(unit, unit) in ("second", "epoch", "millisecond",
                                                   "microsecond")
    t = V.numeric_with_scale(6 if fractional else 0)
    return Value(lambda f: V.fit_numeric(V.to_decimal(kernel(source(f)), FLOAT8), t), t,
                 source.const)


def _date_part(c, args, e):
    """date_part('field', x): the same fields as EXTRACT, as float8."""
    unit = _constant(_text(c, args[0], "date_part"), "the field of date_part").lower()
    source = _temporal(c, args[1], "date_part")
    kernel = _field_values(unit, source)
    return Value(lambda f: kernel(source(f)), FLOAT8, source.const)


_TRUNC_UNITS = {"microseconds": "microsecond", "milliseconds": "millisecond",
                "second": "second", "minute": "minute", "hour": "hour", "day": "day",
                "week": "week", "month": "month", "quarter": "quarter", "year": "year",
                "decade": "decade", "century": "century", "millennium": "millennium"}


def _date_trunc(c, args, e):
    unit = _constant(_text(c, args[0], "date_trunc"), "the unit of date_trunc").lower()
    unit = _TRUNC_UNITS.get(_UNIT_ALIASES.get(unit, unit) + "s" if _UNIT_ALIASES.get(
        unit, unit) in ("microsecond", "millisecond") else _UNIT_ALIASES.get(unit, unit))
    if unit is None:
        raise SqlVecError(f'unit "{_constant(_text(c, args[0], "date_trunc"), "")}" not '
                          "recognized for type timestamp", sqlstate="22023")
    source = _temporal(c, args[1], "date_trunc")
    t = TIMESTAMPTZ if source.type.name in ("date", "timestamptz") else source.type
    if source.type.name == "interval":
        raise FeatureNotSupported("date_trunc on intervals is not supported")

    def fn(f):
        value = source(f)
        if source.type.name == "date":
            value = pc.cast(value, pa.timestamp("us", tz="UTC"))
        if unit in ("decade", "century", "millennium"):
            years = {"decade": 10, "century": 100, "millennium": 1000}[unit]
            return pc.floor_temporal(value, multiple=years, unit="year")
        return pc.floor_temporal(value, unit=unit, week_starts_monday=True)
    return Value(fn, t, source.const)


def _make_date(c, args, e):
    y, m, day = (_int(c, a, "make_date") for a in args)

    def make(a: int, b: int, d_: int) -> dt.date:
        try:
            return dt.date(a, b, d_)
        except ValueError:
            raise SqlVecError(f"date field value out of range: {a}-{b:02d}-{d_:02d}",
                              sqlstate="22008") from None
    return _rowwise(DATE, make, y, m, day)


def _to_timestamp(c, args, e):
    if len(args) == 2:
        return _parse_with_format(c, args, "to_timestamp", TIMESTAMPTZ)
    seconds = _float(c, args[0], "to_timestamp")
    return Value(lambda f: pc.cast(pc.cast(pc.multiply(seconds(f), 1e6), pa.int64()),
                                   TIMESTAMPTZ.to_arrow()), TIMESTAMPTZ, seconds.const)


def _to_date(c, args, e):
    return _parse_with_format(c, args, "to_date", DATE)


def _parse_with_format(c, args, name: str, t: SqlType) -> Value:
    text = _text(c, args[0], name)
    pattern = _strptime_pattern(_constant(_text(c, args[1], name), f"the format of {name}"))

    def parse(x: str):
        try:
            value = dt.datetime.strptime(x.strip(), pattern)
        except ValueError:
            raise SqlVecError(f'invalid value "{x}" for "{pattern}"', sqlstate="22007") from None
        return value.date() if t == DATE else value.replace(tzinfo=dt.timezone.utc)
    return _rowwise(t, parse, text)


# to_char templates: PostgreSQL pattern → strftime directive (or a callable of the value).
_DATE_PATTERNS: list[tuple[str, Callable[[dt.datetime], str]]] = [
    ("YYYY", lambda v: f"{v.year:04d}"), ("YY", lambda v: f"{v.year % 100:02d}"),
    ("MONTH", lambda v: v.strftime("%B").upper().ljust(9)),
    ("Month", lambda v: v.strftime("%B").ljust(9)), ("month", lambda v: v.strftime("%B").lower().ljust(9)),
    ("MON", lambda v: v.strftime("%b").upper()), ("Mon", lambda v: v.strftime("%b")),
    ("mon", lambda v: v.strftime("%b").lower()), ("MM", lambda v: f"{v.month:02d}"),
    ("DAY", lambda v: v.strftime("%A").upper().ljust(9)),
    ("Day", lambda v: v.strftime("%A").ljust(9)), ("day", lambda v: v.strftime("%A").lower().ljust(9)),
    ("DY", lambda v: v.strftime("%a").upper()), ("Dy", lambda v: v.strftime("%a")),
    ("dy", lambda v: v.strftime("%a").lower()), ("DDD", lambda v: f"{v.timetuple().tm_yday:03d}"),
    ("DD", lambda v: f"{v.day:02d}"), ("D", lambda v: str(v.isoweekday() % 7 + 1)),
    ("HH24", lambda v: f"{v.hour:02d}"), ("HH12", lambda v: f"{(v.hour % 12) or 12:02d}"),
    ("HH", lambda v: f"{(v.hour % 12) or 12:02d}"), ("MI", lambda v: f"{v.minute:02d}"),
    ("SS", lambda v: f"{v.second:02d}"), ("MS", lambda v: f"{v.microsecond // 1000:03d}"),
    ("US", lambda v: f"{v.microsecond:06d}"), ("AM", lambda v: "AM" if v.hour < 12 else "PM"),
    ("PM", lambda v: "AM" if v.hour < 12 else "PM"), ("am", lambda v: "am" if v.hour < 12 else "pm"),
    ("pm", lambda v: "am" if v.hour < 12 else "pm"), ("Q", lambda v: str((v.month - 1) // 3 + 1)),
    ("WW", lambda v: f"{(v.timetuple().tm_yday - 1) // 7 + 1:02d}"),
    ("IW", lambda v: f"{v.isocalendar()[1]:02d}"), ("TZ", lambda v: "UTC" if v.tzinfo else ""),
]


def _format_date(value, template: str) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    out, i = [], 0
    while i < len(template):
        if template[i] == '"':
            end = template.find('"', i + 1)
            end = len(template) if end < 0 else end
            out.append(template[i + 1:end])
            i = end + 1
            continue
        for pattern, render in _DATE_PATTERNS:
            if template.startswith(pattern, i):
                out.append(render(value))
                i += len(pattern)
                break
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def _format_number(value, template: str) -> str:
    """to_char(number, '9990.99'): digit positions 9 (blank when leading) and 0 (zero),
    a decimal point, a leading sign column; FM drops the padding."""
    fill = not template.startswith("FM")
    body = template[2:] if not fill else template
    int_part, _, frac_part = body.partition(".")
    digits_int = sum(ch in "90" for ch in int_part)
    digits_frac = sum(ch in "90" for ch in frac_part)
    number = decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-digits_frac),
                                                   rounding=decimal.ROUND_HALF_UP)
    sign = "-" if number < 0 else " "
    whole, _, frac = f"{abs(number):f}".partition(".")
    if len(whole) > digits_int:
        return sign + "#" * digits_int + ("." + "#" * digits_frac if frac_part else "")
    first_zero = int_part.find("0")
    min_digits = digits_int - first_zero if first_zero >= 0 else 0
    shown = whole.lstrip("0") or ("0" if min_digits == 0 and not frac_part else "")
    shown = shown.rjust(max(min_digits, len(shown)), "0")
    text = (sign if sign == "-" or fill else "") + shown.rjust(digits_int if fill else 0)
    if frac_part:
        text += "." + frac
    return text


def _to_char(c, args, e):
    value = c.compile(args[0])
    template = _text(c, args[1], "to_char")
    if value.type.name in ("date", "timestamp", "timestamptz"):
        return _rowwise(TEXT, _format_date, value, template)
    if V.is_numeric(value.type):
        return _rowwise(TEXT, _format_number, value, template)
    raise no_such_function("to_char", [value, template])


def _strptime_pattern(template: str) -> str:
    mapping = [("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH24", "%H"), ("HH12", "%I"),
               ("MI", "%M"), ("SS", "%S"), ("Mon", "%b"), ("YY", "%y")]
    out = template
    for pattern, directive in mapping:
        out = out.replace(pattern, directive)
    return out


def _age(c, args, e):
    values = [c.coerce(_temporal(c, a, "age"), TIMESTAMP) for a in args]
    if len(values) == 1:
        values.insert(0, Value(lambda f: pa.scalar(f.ctx.now.replace(
            hour=0, minute=0, second=0, microsecond=0, tzinfo=None), pa.timestamp("us")),
            TIMESTAMP))
    return _rowwise(INTERVAL, _age_between, *values)


def _age_between(end: dt.datetime, start: dt.datetime):
    """PostgreSQL's age(): whole months first (by calendar), then days and time."""
    sign = 1
    if end < start:
        end, start, sign = start, end, -1
    months = (end.year - start.year) * 12 + end.month - start.month
    anchor = add_months(start, months)
    if anchor > end:
        months -= 1
        anchor = add_months(start, months)
    rest = end - anchor
    micros = rest.seconds * 1_000_000 + rest.microseconds
    return pa.MonthDayNano([sign * months, sign * rest.days, sign * micros * 1000])


def _pg_typeof(c, args, e):
    t = c.compile(args[0]).type
    name = "unknown" if t.name == "unknown" else t.format()
    return Value(lambda f: pa.scalar(name), TEXT, True)


# Vectors -----------------------------------------------------------------------------------------


def _vector_arg(c, e, kind: str = "vector", sparse: bool = False, name: str = "") -> Value:
    """A pgvector function's argument: a vector or halfvec as it is (a sparsevec too when the
    function has a sparsevec form: `sparse`), anything else as `kind`."""
    v = c.compile(e)
    if v.type.is_sparse and not sparse:
        raise no_such_function(name, [v])  # pgvector casts sparsevec to vector by assignment only
    if not v.type.is_vector and not v.type.is_sparse:
        v = c.coerce(v, SqlType(kind))
    return v


def _vector_args(c, args) -> tuple[Value, Value]:
    """Two operands of a pgvector distance function, as one type (`pgvector_kind`)."""
    a, b = c.compile(args[0]), c.compile(args[1])
    kind = pgvector_kind(a.type, b.type)
    return c.coerce(a, SqlType(kind)), c.coerce(b, SqlType(kind))


def _per_vector(fn: Callable[[np.ndarray], np.ndarray], v: Value, out: SqlType, as_vectors: bool):
    def run(f):
        x = v(f)
        rows = 1 if is_scalar(x) else f.n
        matrix, valid = V.to_numpy_vectors(x, rows)
        result = fn(matrix)
        arr = V.vectors_to_arrow(result, valid, out.vector_dtype) if as_vectors else \
            pa.array(result, out.to_arrow(), mask=None if valid is None else ~valid)
        return arr[0] if is_scalar(x) else arr
    return Value(run, out, v.const)


def _vector_dims(c, args, e):
    v = _vector_arg(c, args[0], name="vector_dims")

    def fn(f):
        x = v(f)
        if is_scalar(x):
            return pa.scalar(None if not x.is_valid else len(x.values), pa.int32())
        return pc.cast(pc.list_value_length(x), pa.int32())
    return Value(fn, INT4, v.const)


def _vector_norm(c, args, e):
    name = str(e.this).lower()
    v = _vector_arg(c, args[0], "halfvec" if name == "l2_norm" else "vector",
                    sparse=name == "l2_norm", name=name)
    if v.type.is_sparse:
        return _per_sparse(lambda rows: pa.array(sparse_l2_norms(rows), pa.float64(), mask=None
                                                 if rows.valid is None else ~rows.valid),
                           v, FLOAT8)
    if (v.type.name == "halfvec") != (name == "l2_norm"):
        raise no_such_function(str(e.this).lower(), [v])  # vector_norm(vector), l2_norm(halfvec)
    return _per_vector(lambda m: np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float64)), v,
                       FLOAT8, False)


def _per_sparse(fn: Callable[[SparseRows], pa.Array], v: Value, out: SqlType) -> Value:
    """A function of sparsevec values, evaluated for the whole column at once."""
    def run(f):
        x = v(f)
        result = fn(V.to_sparse_rows(x, 1 if is_scalar(x) else f.n))
        return result[0] if is_scalar(x) else result
    return Value(run, out, v.const)


def _l2_normalize(c, args, e):
    v = _vector_arg(c, args[0], sparse=True, name="l2_normalize")
    if v.type.is_sparse:
        return _per_sparse(lambda rows: V.sparse_to_arrow(sparse_l2_normalize(rows)), v,
                           SqlType("sparsevec"))
    return _per_vector(l2_normalize, v, SqlType(v.type.name), True)


def _subvector(c, args, e):
    v = _vector_arg(c, args[0], name="subvector")
    start = _constant(c.compile_as(args[1], INT4), "the start of subvector")
    count = _constant(c.compile_as(args[2], INT4), "the count of subvector")

    def take(m: np.ndarray) -> np.ndarray:
        begin = max(start, 1) - 1
        end = min(start - 1 + count, m.shape[1]) if count is not None else m.shape[1]
        if start is None or end <= begin:
            raise DataException(f"{v.type.name} must have at least 1 dimension")
        return m[:, begin:end]
    return _per_vector(take, v, SqlType(v.type.name), True)


def _inner_product(c, args, e):
    a, b = _vector_args(c, args)
    if a.type.is_sparse:
        return Value(lambda f: pc.negate(sparse_distance(Metric.IP, a(f), b(f), f.n)), FLOAT8,
                     a.const and b.const)
    return Value(lambda f: pc.negate(vector_distance(Metric.IP, a(f), b(f), f.n)), FLOAT8,
                 a.const and b.const)


def _binary_quantize(c, args, e):
    v = _vector_arg(c, args[0])

    def run(f):
        x = v(f)
        rows = 1 if is_scalar(x) else f.n
        matrix, valid = V.to_numpy_vectors(x, rows)
        out = bits_from_chars(binary_quantize(matrix), valid)
        return out[0] if is_scalar(x) else out
    return Value(run, SqlType("bit"), v.const)


def _bit_distance_call(c, args, e):
    name = str(e.this).lower()
    cls = d.HammingDistance if name == "hamming_distance" else d.JaccardDistance
    if len(args) != 2:
        raise no_such_function(name, [c.compile(a) for a in args])
    return c.compile(cls(this=args[0], expression=args[1]))


def _named_distance(c, args, e):
    """pgvector's distance functions: the operator they stand for (the dialect builds the
    operator node for the common spellings already)."""
    name = str(e.this).lower()
    cls = {"l2_distance": d.L2Distance, "cosine_distance": d.CosineDistance,
           "l1_distance": d.L1Distance, "vector_l2_squared_distance": d.L2Distance,
           "vector_negative_inner_product": d.NegativeInnerProduct,
           "sparsevec_l2_squared_distance": None, "sparsevec_negative_inner_product": None}[name]
    if len(args) != 2:
        raise no_such_function(name, [c.compile(a) for a in args])
    if name == "vector_l2_squared_distance":  # pgvector's sum itself, not a squared root
        a, b = _vector_arg(c, args[0], name=name), _vector_arg(c, args[1], name=name)
        return Value(lambda f: vector_distance(None, a(f), b(f), f.n), FLOAT8,
                     a.const and b.const)
    if name == "sparsevec_l2_squared_distance":
        a, b = (c.coerce(c.compile(x), SqlType("sparsevec")) for x in args)
        return Value(lambda f: sparse_distance(None, a(f), b(f), f.n), FLOAT8,
                     a.const and b.const)
    if name == "sparsevec_negative_inner_product":
        a, b = (c.coerce(c.compile(x), SqlType("sparsevec")) for x in args)
        return Value(lambda f: sparse_distance(Metric.IP, a(f), b(f), f.n), FLOAT8,
                     a.const and b.const)
    return c.compile(cls(this=args[0], expression=args[1]))


# Misc --------------------------------------------------------------------------------------------


def _gen_random_uuid(c, args, e):
    t = SqlType("uuid")
    return Value(lambda f: pa.array([str(uuid.uuid4()) for _ in range(f.n)]) if f.n != 1
                 else pa.scalar(str(uuid.uuid4())), t)


def _type_function(c, args, e):
    return c.compile(exp.Cast(this=args[0], to=exp.DataType.build(str(e.this).lower(),
                                                                  dialect="postgres")))


def _jsonb_typeof(c, args, e):
    v = c.compile(args[0])
    if v.type.name == "unknown":
        v = c.coerce(v, SqlType("jsonb"))
    if v.type.name not in ("json", "jsonb"):
        raise no_such_function(str(e.this).lower(), [v])
    return _unary(json_typeof, v, TEXT)


# Declarations ------------------------------------------------------------------------------------
#
# One declaration per function (catalog/functions.py): its names, its signatures as pg_proc shows
# them, kind, volatility, strictness, and the kernel above. Kernels built by a factory are
# declared here; the others carry their declaration as a decorator.

scalar("lower", "text -> text")(_text_kernel("lower", pc.utf8_lower))
scalar("upper", "text -> text")(_text_kernel("upper", pc.utf8_upper))
scalar("initcap", "text -> text")(_text_kernel("initcap", pc.utf8_title))
scalar("reverse", "text -> text")(_text_kernel("reverse", pc.utf8_reverse))
scalar("length", "text -> int4", "bpchar -> int4", "bytea -> int4")(_length)
scalar("char_length character_length", "text -> int4", "bpchar -> int4")(_length)
scalar("octet_length", "text -> int4", "bpchar -> int4", "bytea -> int4")(_octet_length)
scalar("substring", "text, int4 -> text", "text, int4, int4 -> text", "text, text -> text")(
    _substring)
scalar("substr", "text, int4 -> text", "text, int4, int4 -> text")(_substring)
scalar("position strpos", "text, text -> int4")(_position)
scalar("replace", "text, text, text -> text")(_replace)
scalar("translate", "text, text, text -> text")(_translate)
scalar("repeat", "text, int4 -> text")(_repeat)
scalar("btrim ltrim rtrim", "text -> text", "text, text -> text")(_trim)
scalar("concat", "variadic any -> text", volatility="s", strict=False)(_concat)
scalar("concat_ws", "text, variadic any -> text", volatility="s", strict=False)(_concat_ws)
scalar("left right", "text, int4 -> text")(_left_right)
scalar("lpad rpad", "text, int4 -> text", "text, int4, text -> text")(_pad)
scalar("split_part", "text, text, int4 -> text")(_split_part)
scalar("starts_with", "text, text -> bool")(_starts_with)
scalar("md5", "text -> text", "bytea -> text")(_md5)
scalar("ascii", "text -> int4")(_ascii)
scalar("chr", "int4 -> text")(_chr)
scalar("to_hex", "int4 -> text", "int8 -> text")(_to_hex)
scalar("regexp_replace", "text, text, text -> text", "text, text, text, text -> text")(
    _regexp_replace)
scalar("regexp_match", "text, text -> text[]")(_regexp_match)
scalar("format", "text -> text", "text, variadic any -> text", volatility="s", strict=False)(
    _format)
scalar("encode", "bytea, text -> text")(_encode)
scalar("decode", "text, text -> bytea")(_decode)

scalar("abs", "int2 -> int2", "int4 -> int4", "int8 -> int8", "float4 -> float4",
       "float8 -> float8", "numeric -> numeric")(_abs)
scalar("sign", "float8 -> float8", "numeric -> numeric")(_sign)
scalar("round", "float8 -> float8", "numeric -> numeric", "numeric, int4 -> numeric")(
    _round_like("round", "round"))
scalar("trunc", "float8 -> float8", "numeric -> numeric", "numeric, int4 -> numeric")(
    _round_like("trunc", "trunc"))
scalar("ceil ceiling", "float8 -> float8", "numeric -> numeric")(_round_like("ceil", "ceil"))
scalar("floor", "float8 -> float8", "numeric -> numeric")(_round_like("floor", "floor"))
scalar("sqrt", "float8 -> float8", "numeric -> numeric")(
    _exact_or_float("sqrt", pc.sqrt, _sqrt_domain))
scalar("cbrt", "float8 -> float8")(_float_function(
    "cbrt", lambda x: pc.multiply(pc.sign(x), pc.power(pc.abs(x), 1 / 3))))
scalar("exp", "float8 -> float8", "numeric -> numeric")(
    _exact_or_float("exp", pc.exp, checked=_checked_exp))
scalar("ln", "float8 -> float8", "numeric -> numeric")(_exact_or_float("ln", pc.ln, _log_domain))
scalar("log", "float8 -> float8", "numeric -> numeric", "numeric, numeric -> numeric")(_log)
scalar("log10", "float8 -> float8", "numeric -> numeric")(
    _exact_or_float("log10", pc.log10, _log_domain))
scalar("power pow", "float8, float8 -> float8", "numeric, numeric -> numeric")(_power)
scalar("mod", "int2, int2 -> int2", "int4, int4 -> int4", "int8, int8 -> int8",
       "numeric, numeric -> numeric")(_mod)
scalar("div", "numeric, numeric -> numeric")(_div)
scalar("gcd lcm", "int4, int4 -> int4", "int8, int8 -> int8")(_gcd_lcm)
scalar("factorial", "int8 -> numeric")(_factorial)
scalar("width_bucket", "float8, float8, float8, int4 -> int4",
       "numeric, numeric, numeric, int4 -> int4")(_width_bucket)
scalar("pi", "-> float8")(_pi)
scalar("degrees", "float8 -> float8")(
    _float_function("degrees", lambda x: pc.multiply(x, 180 / math.pi)))
scalar("radians", "float8 -> float8")(
    _float_function("radians", lambda x: pc.multiply(x, math.pi / 180)))
for _name, _kernel in (("sin", pc.sin), ("cos", pc.cos), ("tan", pc.tan), ("asin", pc.asin),
                       ("acos", pc.acos), ("atan", pc.atan),
                       ("cot", lambda x: pc.divide(1.0, pc.tan(x)))):
    scalar(_name, "float8 -> float8")(_float_function(_name, _kernel))
scalar("atan2", "float8, float8 -> float8")(_float_function("atan2", pc.atan2))
scalar("random", "-> float8", volatility="v")(_random)

scalar("now transaction_timestamp statement_timestamp", "-> timestamptz", volatility="s")(_now)
scalar("current_timestamp", keyword=True, volatility="s")(_now)
scalar("clock_timestamp", "-> timestamptz", volatility="v")(_clock)
scalar("current_date", keyword=True, volatility="s")(_current_date)
scalar("localtimestamp", keyword=True, volatility="s")(_localtimestamp)
scalar("date_part", "text, date -> float8", "text, time -> float8", "text, timestamp -> float8",
       "text, timestamptz -> float8 [stable]", "text, interval -> float8")(_date_part)
scalar("extract", "text, date -> numeric", "text, time -> numeric",
       "text, timestamp -> numeric", "text, timestamptz -> numeric [stable]",
       "text, interval -> numeric")(_extract)
scalar("date_trunc", "text, timestamp -> timestamp",
       "text, timestamptz -> timestamptz [stable]")(_date_trunc)
scalar("make_date", "year int4, month int4, day int4 -> date")(_make_date)
# The functions behind pgvector's operators (pg_operator.oprcode), callable by name as there.
_OPERATOR_FUNCTIONS = {"add": exp.Add, "sub": exp.Sub, "mul": exp.Mul, "concat": exp.DPipe,
                       "lt": exp.LT, "le": exp.LTE, "eq": exp.EQ, "ne": exp.NEQ, "ge": exp.GTE,
                       "gt": exp.GT, "negative_inner_product": d.NegativeInnerProduct}


def _operator_function(c, args, e):
    name = str(e.this).lower()
    kind, _, op = name.partition("_")
    if len(args) != 2:
        raise no_such_function(name, [c.compile(a) for a in args])
    a, b = (c.coerce(c.compile(x), SqlType(kind)) for x in args)
    return c.compile_operator(_OPERATOR_FUNCTIONS[op], a, b)


scalar("to_timestamp", "float8 -> timestamptz", "text, text -> timestamptz [stable]")(
    _to_timestamp)
scalar("to_date", "text, text -> date", volatility="s")(_to_date)
scalar("to_char", "int4, text -> text", "int8, text -> text", "float4, text -> text",
       "float8, text -> text", "numeric, text -> text", "timestamp, text -> text",
       "timestamptz, text -> text", volatility="s")(_to_char)
scalar("age", "timestamp -> interval [stable]", "timestamptz -> interval [stable]",
       "timestamp, timestamp -> interval", "timestamptz, timestamptz -> interval")(_age)
scalar("pg_typeof", "any -> text", volatility="s", strict=False)(_pg_typeof)

scalar("vector_dims", "vector -> int4", "halfvec -> int4", extension="vector")(_vector_dims)
scalar("vector_norm", "vector -> float8", extension="vector")(_vector_norm)
scalar("l2_norm", "halfvec -> float8", "sparsevec -> float8", extension="vector")(_vector_norm)
scalar("l2_normalize", "vector -> vector", "halfvec -> halfvec", "sparsevec -> sparsevec",
       extension="vector")(_l2_normalize)
scalar("subvector", "vector, int4, int4 -> vector", "halfvec, int4, int4 -> halfvec",
       extension="vector")(_subvector)
scalar("inner_product", "vector, vector -> float8", "halfvec, halfvec -> float8",
       "sparsevec, sparsevec -> float8", extension="vector")(_inner_product)
scalar("l2_distance cosine_distance l1_distance", "vector, vector -> float8",
       "halfvec, halfvec -> float8", "sparsevec, sparsevec -> float8",
       extension="vector")(_named_distance)
scalar("sparsevec_l2_squared_distance sparsevec_negative_inner_product",
       "sparsevec, sparsevec -> float8", extension="vector")(_named_distance)
scalar("vector_l2_squared_distance vector_negative_inner_product", "vector, vector -> float8",
       extension="vector")(_named_distance)
for _kind in ("vector", "halfvec"):
    scalar(f"{_kind}_add {_kind}_sub {_kind}_mul {_kind}_concat",
           f"{_kind}, {_kind} -> {_kind}", extension="vector")(_operator_function)
    scalar(" ".join(f"{_kind}_{op}" for op in ("lt", "le", "eq", "ne", "ge", "gt")),
           f"{_kind}, {_kind} -> bool", extension="vector")(_operator_function)
scalar("halfvec_negative_inner_product", "halfvec, halfvec -> float8", extension="vector")(
    _operator_function)
scalar("binary_quantize", "vector -> bit", "halfvec -> bit", extension="vector")(_binary_quantize)
scalar("hamming_distance jaccard_distance", "bit, bit -> float8", extension="vector")(
    _bit_distance_call)

scalar("gen_random_uuid", "-> uuid", volatility="v")(_gen_random_uuid)
scalar("int4", "int2 -> int4", "int8 -> int4", "float4 -> int4", "float8 -> int4",
       "numeric -> int4", "bool -> int4")(_type_function)
scalar("int8", "int2 -> int8", "int4 -> int8", "float4 -> int8", "float8 -> int8",
       "numeric -> int8", "oid -> int8")(_type_function)
scalar("float8", "int2 -> float8", "int4 -> float8", "int8 -> float8", "float4 -> float8",
       "numeric -> float8")(_type_function)
scalar("text", "bool -> text", "bpchar -> text", "name -> text")(_type_function)
scalar("jsonb_typeof", "jsonb -> text")(_jsonb_typeof)
scalar("json_typeof", "json -> text")(_jsonb_typeof)
