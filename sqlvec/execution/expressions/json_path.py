"""The SQL/JSON path functions and the operators GIN indexes serve: `jsonb_path_exists`,
`jsonb_path_match`, `jsonb_path_query[_array|_first]`, `@?`, `@@`, `@>`, `<@`, `?`, `?|`, `?&`
and `jsonb_exists` on jsonb, and `@>`, `<@`, `&&` on arrays.

jsonb is stored as its canonical text, so each distinct document is parsed once per batch and
the path (sqlvec/execution/jsonpath.py) evaluated over it; a constant document or path is read
once per statement, and rows holding the same document share one evaluation.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable
from functools import lru_cache

import pyarrow as pa
from sqlglot import exp

from sqlvec.catalog.functions import scalar, set_returning
from sqlvec.errors import SqlVecError
from sqlvec.execution import jsonpath as JP
from sqlvec.execution import values as V
from sqlvec.execution.expressions.calls import no_such_function
from sqlvec.execution.expressions.core import HANDLERS, Compiler, Frame
from sqlvec.execution.values import BOOL, TEXT, Datum, Value, as_array, is_scalar
from sqlvec.types import SqlType

JSONB = SqlType("jsonb")
JSONPATH = SqlType("jsonpath")


_DECODER = json.JSONDecoder(parse_float=decimal.Decimal)


def _load(text: str) -> object:
    return _DECODER.decode(text)


def _typed(c: Compiler, e: exp.Expression, t: SqlType, accept: tuple[str, ...]) -> Value:
    v = c.compile_as(e, t) if isinstance(e, exp.Parameter) else c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, t)
    if v.type.name not in accept:
        raise _NoMatch(v)
    return c.coerce(v, t) if v.type != t else v


class _NoMatch(Exception):
    def __init__(self, value: Value) -> None:
        self.value = value


def _path_args(c: Compiler, name: str, args: list[exp.Expression]) -> list[Value]:
    """(target, path, vars, silent) with PostgreSQL's defaults and named arguments."""
    positional, named = [], {}
    for a in args:
        if isinstance(a, exp.Kwarg):
            named[a.this.name.lower()] = a.expression
        elif named:
            raise SqlVecError("positional argument cannot follow named argument",
                              sqlstate="42601")
        else:
            positional.append(a)
    order = ["target", "path", "vars", "silent"]
    slots: dict[str, exp.Expression] = dict(zip(order, positional))
    for key, value in named.items():
        if key not in order or key in slots:
            slots["?"] = value
        slots[key] = value
    if len(positional) > 4 or "?" in slots or "target" not in slots or "path" not in slots:
        shown = [c.compile(a) for a in positional] + [c.compile(v) for v in named.values()]
        raise no_such_function(name, shown)
    compiled: list = []
    try:
        compiled.append(_typed(c, slots["target"], JSONB, ("jsonb",)))
        compiled.append(_typed(c, slots["path"], JSONPATH, ("jsonpath",)))
        compiled.append(_typed(c, slots["vars"], JSONB, ("jsonb",)) if "vars" in slots else None)
        compiled.append(_typed(c, slots["silent"], BOOL, ("bool",)) if "silent" in slots
                        else None)
    except _NoMatch:
        raise no_such_function(name, [c.compile(slots[k]) for k in order if k in slots]) from None
    return compiled


@lru_cache(maxsize=256)
def _variables(text: str | None) -> dict:
    """The `vars` object (read once per distinct text; never modified)."""
    if text is None:
        return {}
    doc = _load(text)
    if not isinstance(doc, dict):
        raise SqlVecError('"vars" argument is not an object', sqlstate="22023",
                          detail='Jsonpath parameters should be encoded as key-value pairs of '
                                 '"vars" object.')
    return doc


def _evaluator(c: Compiler, name: str, args: list[exp.Expression], apply: Callable,
               out: SqlType, silenced: object = None) -> Value:
    """A Value computing `apply(path, document, variables)` for each row: None (SQL NULL)
    when an argument is NULL, `silenced` when `silent` suppressed an error."""
    target, path, variables, silent = _path_args(c, name, args)
    arrow = out.to_arrow()
    parts = [target, path] + [v for v in (variables, silent) if v is not None]

    def one(doc_text, path_text, vars_text, quiet):
        p = JP.parse(path_text)
        try:
            return apply(p, _load(doc_text), _variables(vars_text))
        except JP.PathError:
            if quiet:
                return silenced
            raise

    def fn(f: Frame) -> Datum:
        data = [p(f) for p in parts]
        if variables is None:
            data.insert(2, pa.scalar(None, pa.string()))
        if silent is None:
            data.append(pa.scalar(False, pa.bool_()))
        if all(is_scalar(d) for d in data):
            row = [d.as_py() for d in data]
            if any(x is None for x in row[:2]) or (variables is not None and row[2] is None) \
                    or row[3] is None:
                return pa.scalar(None, arrow)
            return pa.scalar(one(*row), arrow)
        columns = [d.as_py() if is_scalar(d) else None for d in data]
        lists = [None if is_scalar(d) else as_array(d, f.n).to_pylist() for d in data]
        memo: dict = {}
        result = []
        for i in range(f.n):
            row = tuple(col[i] if col is not None else columns[k] for k, col in enumerate(lists))
            if any(x is None for x in row[:2]) or (variables is not None and row[2] is None) \
                    or row[3] is None:
                result.append(None)
                continue
            if row not in memo:
                memo[row] = one(*row)
            result.append(memo[row])
        return pa.array(result, arrow)

    return Value(fn, out, all(p.const for p in parts))


def _items_json(items: list) -> list[str]:
    return [V.canonical_jsonb(JP.item_json(item)) for item in items]


@scalar("jsonb_path_exists", "target jsonb, path jsonpath, vars jsonb = '{}', silent bool = false "
        "-> bool")
def _path_exists(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    return _evaluator(c, "jsonb_path_exists", args, lambda p, d, v: p.exists(d, v), BOOL)


@scalar("jsonb_path_match", "target jsonb, path jsonpath, vars jsonb = '{}', silent bool = false "
        "-> bool")
def _path_match(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    return _evaluator(c, "jsonb_path_match", args, lambda p, d, v: p.match(d, v), BOOL)


@scalar("jsonb_path_query_array", "target jsonb, path jsonpath, vars jsonb = '{}', "
        "silent bool = false -> jsonb")
def _path_query_array(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    return _evaluator(c, "jsonb_path_query_array", args,
                      lambda p, d, v: "[" + ", ".join(_items_json(p.run(d, v))) + "]", JSONB,
                      "[]")


@scalar("jsonb_path_query_first", "target jsonb, path jsonpath, vars jsonb = '{}', "
        "silent bool = false -> jsonb")
def _path_query_first(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    def first(p, d, v):
        items = p.run(d, v)
        return _items_json(items[:1])[0] if items else None
    return _evaluator(c, "jsonb_path_query_first", args, first, JSONB)


@set_returning("jsonb_path_query", "target jsonb, path jsonpath, vars jsonb = '{}', "
               "silent bool = false -> setof jsonb")
def _path_query(c: Compiler, args: list[exp.Expression]) -> tuple[Value, SqlType]:
    value = _evaluator(c, "jsonb_path_query", args,
                       lambda p, d, v: _items_json(p.run(d, v)), JSONB.array_of())
    inner = value.fn

    def fn(f: Frame) -> Datum:
        out = inner(f)
        if is_scalar(out):
            return out if out.is_valid else pa.scalar([], out.type)
        return pa.array([[] if x is None else x for x in out.to_pylist()], out.type)

    return Value(fn, value.type, value.const), JSONB


# Operators --------------------------------------------------------------------------------------


def _operand(c: Compiler, e: exp.Expression, t: SqlType) -> Value:
    """An operator's operand: a literal or parameter takes the operator's type `t`."""
    v = c.compile_as(e, t) if isinstance(e, exp.Parameter) else c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, t)
    return v


def _binary(c: Compiler, left: exp.Expression, right: exp.Expression, symbol: str,
            right_type: SqlType, test: Callable[[object, object], bool | None],
            parse_right: Callable[[object], object]) -> Value:
    """`jsonb <symbol> right`: a boolean per row, NULL when an operand is NULL."""
    a = _operand(c, left, JSONB)
    b = _operand(c, right, right_type)
    if a.type.name != "jsonb" or b.type != right_type and not (
            right_type.name == "text" and V.is_string(b.type)) and not (
            right_type.is_array and b.type.is_array and V.is_string(b.type.element)):
        raise _no_operator(a, symbol, b)

    parsed: dict = {}

    def one(doc_text, other):
        key = tuple(other) if isinstance(other, list) else other
        if key not in parsed:
            parsed[key] = parse_right(other)
        return test(_load(doc_text), parsed[key])

    return _bool_per_row(a, b, one,
                         key=lambda px, py: (px, tuple(py) if isinstance(py, list) else py))


def _bool_per_row(a: Value, b: Value, one: Callable[[object, object], bool | None],
                  key: Callable[[object, object], object] | None = None) -> Value:
    """`one(x, y)` per row of two operands (either may be a constant), NULL where either is
    NULL; with `key`, each distinct pair of values is computed once."""

    def fn(f: Frame) -> Datum:
        x, y = a(f), b(f)
        if is_scalar(x) and is_scalar(y):
            px, py = x.as_py(), y.as_py()
            return pa.scalar(None if px is None or py is None else one(px, py), pa.bool_())
        xs = [x.as_py()] * f.n if is_scalar(x) else as_array(x, f.n).to_pylist()
        ys = [y.as_py()] * f.n if is_scalar(y) else as_array(y, f.n).to_pylist()
        memo: dict = {}
        out = []
        for px, py in zip(xs, ys):
            if px is None or py is None:
                out.append(None)
            elif key is None:
                out.append(one(px, py))
            else:
                k = key(px, py)
                if k not in memo:
                    memo[k] = one(px, py)
                out.append(memo[k])
        return pa.array(out, pa.bool_())

    return Value(fn, BOOL, a.const and b.const)


def _silent(method: str) -> Callable:
    def test(doc, path):
        try:
            return getattr(path, method)(doc, {})
        except JP.PathError:
            return None
    return test


def _path_exists_op(c: Compiler, e: exp.JSONBPathExists) -> Value:
    return _binary(c, e.this, e.expression, "@?", JSONPATH, _silent("exists"), JP.parse)


def _path_match_op(c: Compiler, e: exp.MatchAgainst) -> Value:
    return _binary(c, e.expressions[0], e.this, "@@", JSONPATH, _silent("match"), JP.parse)


def contains(a: object, b: object, top: bool = True) -> bool:
    """jsonb `a @> b`: PostgreSQL's containment (an array contains a scalar at top level)."""
    if isinstance(b, dict):
        return isinstance(a, dict) and all(k in a and contains(a[k], v, False)
                                           for k, v in b.items())
    if isinstance(b, list):
        if isinstance(a, list):
            return all(any(contains(x, y, False) for x in a) if isinstance(y, (dict, list))
                       else any(_same_scalar(x, y) for x in a) for y in b)
        return False
    if isinstance(a, list) and top:
        return any(_same_scalar(x, b) for x in a)
    return _same_scalar(a, b)


def _same_scalar(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return JP._num(a) == JP._num(b)


def _has_key(doc: object, key: str) -> bool:
    """jsonb `?`: a top-level key of an object, or a string element of an array."""
    if isinstance(doc, dict):
        return key in doc
    if isinstance(doc, list):
        return any(isinstance(x, str) and x == key for x in doc)
    return isinstance(doc, str) and doc == key


def _contains_op(c: Compiler, e: exp.Expression) -> Value | None:
    return _binary(c, e.this, e.expression, "@>", JSONB, lambda d, o: contains(d, o), _load)


def _contained_op(c: Compiler, e: exp.Expression) -> Value:
    return _binary(c, e.expression, e.this, "<@", JSONB, lambda d, o: contains(d, o), _load)


def _has_key_op(c: Compiler, e: exp.Expression) -> Value:
    return _binary(c, e.this, e.expression, "?", TEXT, _has_key, lambda k: k)


def _has_any_op(c: Compiler, e: exp.Expression) -> Value:
    return _binary(c, e.this, e.expression, "?|", TEXT.array_of(),
                   lambda d, keys: any(k is not None and _has_key(d, k) for k in keys),
                   lambda k: k)


def _has_all_op(c: Compiler, e: exp.Expression) -> Value:
    return _binary(c, e.this, e.expression, "?&", TEXT.array_of(),
                   lambda d, keys: all(k is None or _has_key(d, k) for k in keys),
                   lambda k: k)


@scalar("jsonb_exists", "jsonb, text -> bool")
def _jsonb_exists(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    if len(args) != 2:
        raise no_such_function("jsonb_exists", [c.compile(a) for a in args])
    return _binary(c, args[0], args[1], "?", TEXT, _has_key, lambda k: k)


@scalar("jsonb_contains", "jsonb, jsonb -> bool")
def _jsonb_contains(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    if len(args) != 2:
        raise no_such_function("jsonb_contains", [c.compile(a) for a in args])
    return _binary(c, args[0], args[1], "@>", JSONB, lambda d, o: contains(d, o), _load)


def _is_jsonb_operand(c: Compiler, e: exp.Expression) -> bool:
    """Whether an operand of `@>`/`<@` is jsonb (the operators also compare arrays)."""
    try:
        return c.compile(e).type.name == "jsonb"
    except SqlVecError:
        return False


def _flat(items: list) -> list:
    out: list = []
    for x in items:
        if isinstance(x, list):
            out.extend(_flat(x))
        else:
            out.append(x)
    return out


def _array_test(c: Compiler, left: exp.Expression, right: exp.Expression, symbol: str,
                test: Callable[[set, list], bool]) -> Value:
    """`anyarray @> anyarray` (and `<@`, `&&`): elements compared as values, NULL elements
    never equal, dimensions ignored, as PostgreSQL's array containment."""
    a, b = c.compile(left), c.compile(right)
    if a.type.name == "unknown" and b.type.is_array:
        a = c.coerce(a, b.type)
    elif b.type.name == "unknown" and a.type.is_array:
        b = c.coerce(b, a.type)
    if not (a.type.is_array and b.type.is_array) or a.type.element != b.type.element and not (
            V.is_string(a.type.element) and V.is_string(b.type.element)) and not (
            V.is_numeric(a.type.element) and V.is_numeric(b.type.element)):
        raise _no_operator(a, symbol, b)

    def one(x: list, y: list) -> bool:
        return test({v for v in _flat(x) if v is not None}, _flat(y))

    return _bool_per_row(a, b, one)


def _contains(c: Compiler, e: exp.Expression) -> Value:
    if _is_jsonb_operand(c, e.this) or _is_jsonb_operand(c, e.expression):
        return _contains_op(c, e)
    return _array_test(c, e.this, e.expression, "@>",
                       lambda have, want: all(w is not None and w in have for w in want))


def _contained(c: Compiler, e: exp.Expression) -> Value:
    if _is_jsonb_operand(c, e.this) or _is_jsonb_operand(c, e.expression):
        return _contained_op(c, e)
    return _array_test(c, e.expression, e.this, "<@",
                       lambda have, want: all(w is not None and w in have for w in want))


def _overlaps(c: Compiler, e: exp.Expression) -> Value:
    return _array_test(c, e.this, e.expression, "&&",
                       lambda have, other: any(w is not None and w in have for w in other))


HANDLERS.update({
    exp.JSONBPathExists: _path_exists_op,
    exp.MatchAgainst: _path_match_op,
    exp.JSONBContainsTopKey: _has_key_op,
    exp.JSONBContainsAnyTopKeys: _has_any_op,
    exp.JSONBContainsAllTopKeys: _has_all_op,
    exp.ArrayContainsAll: _contains,
    exp.ArrayContainedBy: _contained,
    exp.ArrayOverlaps: _overlaps,
})


def _no_operator(a: Value, symbol: str, b: Value) -> SqlVecError:
    """PostgreSQL's 42883 for an operator with no match for these operand types."""
    return SqlVecError(f"operator does not exist: {a.type.format()} {symbol} {b.type.format()}",
                       sqlstate="42883",
                       hint="No operator matches the given name and argument types. You might "
                            "need to add explicit type casts.")
