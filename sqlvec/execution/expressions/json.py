"""JSON access: `->`, `->>` and the json(b)_extract_path functions, and `json_typeof`."""

from __future__ import annotations

import decimal
import json

import pyarrow as pa
from sqlglot import exp

from sqlvec.catalog.functions import scalar
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.calls import undefined_keyword
from sqlvec.execution.expressions.core import HANDLERS, Compiler, Frame, constant
from sqlvec.execution.values import TEXT, Datum, Value, is_scalar
from sqlvec.types import SqlType


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


def _json_extract_value(c: Compiler, e: exp.JSONExtract) -> Value:
    return _json_extract(c, e, False)


def _json_extract_text(c: Compiler, e: exp.JSONExtractScalar) -> Value:
    return _json_extract(c, e, True)


def _json_extract(c: Compiler, e: exp.Expression, as_text: bool) -> Value:
    """`j -> 'key'` / `j -> 0` (json), `j ->> 'key'` (text). jsonb is stored as its text, so
    each row's document is parsed in Python."""
    source = _json_source(c, e.this)
    path = e.expression
    if isinstance(path, (exp.JSONPath, exp.Literal)):
        steps, key = _json_path(path), None
    else:  # `j ->> $1`, `j -> (k)`: a key (text) or index (integer) computed per statement
        steps, key = [], c.compile(path)
        if key.type.name == "unknown":
            key = c.coerce(key, TEXT)
        if key.type.name not in ("text", "varchar", "bpchar", "int2", "int4", "int8"):
            raise SqlVecError(f"operator does not exist: {source.type.format()} "
                              f"{'->>' if as_text else '->'} {key.type.format()}",
                              sqlstate="42883")
    out = TEXT if as_text else source.type

    missing = object()

    def step(doc, key):
        if isinstance(key, int) and isinstance(doc, list):
            return doc[key] if -len(doc) <= key < len(doc) else missing
        if isinstance(key, str) and isinstance(doc, dict):
            return doc.get(key, missing)
        return missing

    def extract(text: str, path: list = steps) -> str | None:
        doc = json.loads(text, parse_float=decimal.Decimal)
        for name in path:
            doc = step(doc, name)
            if doc is missing:
                return None
        if as_text and (doc is None or isinstance(doc, str)):
            return doc  # ->> gives SQL NULL for a JSON null
        return V.canonical_jsonb(doc)

    def fn(f: Frame) -> Datum:
        value = source(f)
        if key is not None:
            keys = key(f)
            if not is_scalar(keys) or not is_scalar(value):
                n = len(value) if not is_scalar(value) else len(keys)
                docs = V.as_array(value, n).to_pylist()
                names = V.as_array(keys, n).to_pylist()
                return pa.array([None if d is None or k is None else extract(d, [k])
                                 for d, k in zip(docs, names)], pa.string())
            if not keys.is_valid:
                return pa.scalar(None, pa.string())
            path = [keys.as_py()]
        else:
            path = steps
        if is_scalar(value):
            return pa.scalar(None if not value.is_valid else extract(value.as_py(), path),
                             pa.string())
        return pa.array([None if v is None else extract(v, path) for v in value.to_pylist()],
                        pa.string())

    return Value(fn, out, source.const and (key is None or key.const))


@scalar("json_extract_path", "from_json json, variadic path_elems text[] -> json")
@scalar("json_extract_path_text", "from_json json, variadic path_elems text[] -> text")
@scalar("jsonb_extract_path", "from_json jsonb, variadic path_elems text[] -> jsonb")
@scalar("jsonb_extract_path_text", "from_json jsonb, variadic path_elems text[] -> text")
def _json_extract_path(c: Compiler, args: list[exp.Expression], e: exp.Expression) -> Value:
    """json_extract_path(j, 'a', 'b'): `j #> '{a,b}'` (the `_text` forms: `#>>`), with the
    path given as constants."""
    name = str(e.this).lower()
    if not args:
        raise undefined_keyword(c, name, args)
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
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}

    def kind(text: str) -> str:
        doc = json.loads(text, parse_float=decimal.Decimal)
        return names.get(type(doc), "number")

    if is_scalar(value):
        return pa.scalar(None if not value.is_valid else kind(value.as_py()), pa.string())
    return pa.array([None if v is None else kind(v) for v in value.to_pylist()], pa.string())


HANDLERS.update({
    exp.JSONExtract: _json_extract_value,
    exp.JSONExtractScalar: _json_extract_text,
})
