"""Python forms of the simplest expressions (`Value.py`): a parameter, a literal, a cast, an
integer or float `+ - *`, a minus sign, over the types whose values are plain Python objects
(integers, float8, text, bool).

A one-row statement of such expressions over no table (`SELECT $1::int`, `SELECT $1 + 1`)
is computed from its parameters as Python values by `ScalarRow`, without the Arrow scalars,
kernels and one-row tables its operator tree makes. Each form gives exactly the value the
compiled expression gives (as its storage type's Python value), or raises `NotScalar`
where it cannot be sure it would: a value out of range, an input that does not read, a
parameter of another Python type than its SQL type's. The statement then runs its
operator tree, which gives the value, or the error with its SQLSTATE and position, as it
always has: errors are never produced here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from sqlvec.errors import SqlVecError
from sqlvec.execution import values as V
from sqlvec.types import SqlType

# A Python form: the expression's value from the statement's parameters (decoded Python
# values, $1 first).
Form = Callable[[list], object]


class NotScalar(Exception):
    """The Python form cannot answer for sure: the operator tree runs instead."""


# The types whose values the forms compute, as the Python type each is.
_PYTHON = {"int2": int, "int4": int, "int8": int, "float8": float, "text": str,
           "varchar": str, "unknown": str, "bool": bool}
_FLOAT_EXACT = 1 << 53  # beyond it an integer may not convert to float8 exactly (nor does Arrow)
_STRINGS = frozenset({"text", "varchar", "unknown"})


def scalar_type(t: SqlType) -> bool:
    """Whether values of `t` have a Python form (no type modifier: no varchar(n))."""
    return t.name in _PYTHON and t.typmod < 0


def constant_form(value: object, t: SqlType) -> Form | None:
    """A constant's form (`value` as its storage type's Python value)."""
    if not scalar_type(t):
        return None
    return lambda params: value


def param_form(index: int, t: SqlType | None) -> Form | None:
    """`$index` of type `t` (None: not decided yet, read as text): its decoded value, when it
    is the Python type the general path takes as it is (an integer within the type's range,
    a float for float8, text without NUL, a bool); other values go the general way, which
    converts or refuses them."""
    t = t or V.TEXT
    if not scalar_type(t):
        return None
    kind = _PYTHON[t.name]
    bound = V.INT_BOUND.get(t.name)
    position = index - 1

    def read(params: list) -> object:
        if position >= len(params):
            raise NotScalar
        value = params[position]
        if value is None:
            return None
        if type(value) is not kind or bound is not None and not -bound <= value < bound \
                or kind is str and "\0" in value:
            raise NotScalar
        return value

    return read


def cast_form(form: Form | None, source: SqlType, target: SqlType) -> Form | None:
    """`form` cast from `source` to `target` as `values.cast` casts one value (explicitly or
    not: no type here has a length to cut), NULL staying NULL; None when the cast is not one
    the forms compute."""
    if form is None or not scalar_type(source) or not scalar_type(target):
        return None
    if source == target or source.name == target.name:
        return form
    convert = _conversion(source, target)
    if convert is None:
        return None

    def cast(params: list) -> object:
        value = form(params)
        return None if value is None else convert(value)

    return cast


def _conversion(source: SqlType, target: SqlType) -> Callable[[object], object] | None:
    """One non-NULL value of `source` as `target`, in `values.cast`'s order of cases."""
    if target.name in _STRINGS:
        if source.name in _STRINGS:
            return _same
        if source.name == "bool":
            return _bool_text
        return lambda value: V.format_value(value, source)
    if source.name in _STRINGS:
        return lambda value: _parsed(value, target)
    if target.name in V.INT_BOUND:
        bound = V.INT_BOUND[target.name]
        if source.name in V.INT_BOUND:
            return lambda value: _in_range(value, bound)
        if source.name == "float8":
            return lambda value: _rounded(value, bound)
        if source.name == "bool" and target.name == "int4":
            return int
        return None
    if target.name == "float8" and source.name in V.INT_BOUND:
        return _exact_float
    if target.name == "bool" and source.name in V.INT_BOUND:
        return lambda value: value != 0
    return None


def _same(value: object) -> object:
    return value


def _bool_text(value: object) -> str:
    return "true" if value else "false"


def _parsed(text: str, target: SqlType) -> object:
    """Text read as `target` by the type's input rules, as the general path's cast reads it."""
    try:
        return V.parse_text(text, target)
    except SqlVecError:
        raise NotScalar from None


def _in_range(value: int, bound: int) -> int:
    if not -bound <= value < bound:
        raise NotScalar
    return value


def _rounded(value: float, bound: int) -> int:
    """A float8 as an integer: rounded half to even, as the general path's cast rounds."""
    if not math.isfinite(value):
        raise NotScalar
    return _in_range(round(value), bound)


def _exact_float(value: int) -> float:
    if not -_FLOAT_EXACT <= value <= _FLOAT_EXACT:
        raise NotScalar
    return float(value)


_OPERATORS = {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul}


def arithmetic_form(op: str, t: SqlType, a: Form | None, b: Form | None) -> Form | None:
    """`a op b` (`+ - *`) over operands already of `t` (an integer type or float8): an integer
    result within `t`'s range, a finite float that did not underflow; NULL if either is."""
    apply = _OPERATORS.get(op)
    if apply is None or a is None or b is None or not (
            t.name in V.INT_BOUND or t.name == "float8"):
        return None
    check = _integer_result(V.INT_BOUND[t.name]) if t.name in V.INT_BOUND else \
        _float_result(op == "multiply")

    def arithmetic(params: list) -> object:
        x, y = a(params), b(params)
        if x is None or y is None:
            return None
        return check(apply(x, y), x, y)

    return arithmetic


def _integer_result(bound: int) -> Callable[[int, int, int], int]:
    return lambda out, x, y: _in_range(out, bound)


def _float_result(product: bool) -> Callable[[float, float, float], float]:
    def check(out: float, x: float, y: float) -> float:
        if not (math.isfinite(out) and math.isfinite(x) and math.isfinite(y)) \
                or product and out == 0 and x != 0 and y != 0:
            raise NotScalar
        return out
    return check


def negation_form(t: SqlType, form: Form | None) -> Form | None:
    """`-form` over an integer type (within its range) or float8."""
    if form is None or not (t.name in V.INT_BOUND or t.name == "float8"):
        return None
    check = _integer_result(V.INT_BOUND[t.name]) if t.name in V.INT_BOUND else \
        _float_result(False)

    def negation(params: list) -> object:
        value = form(params)
        return None if value is None else check(-value, value, value)

    return negation
