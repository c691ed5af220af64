"""The type support functions pg_type names: input, output, send, receive, typmod in and out.

Every pg_type row (catalog/objects.py) names its I/O functions and clients join on them (Npgsql
reads typreceive's name, JDBC compares typinput with `array_in`), so each is a declared,
callable function of the function catalog, derived here from the type rows:

- `<type>in(cstring)` (`cstring, oid, int4` for types with a typmod, records and arrays): the
  text input of a cast, `int4in('42')` = `'42'::int4`;
- `<type>out(<type>)`: the text output, `x::text`;
- `<type>send(<type>)`: PostgreSQL's binary format, as bytea;
- `<type>recv(internal, ...)`: takes `internal`, which no SQL value is, so a call fails as in
  PostgreSQL (0A000 cannot accept a value of type internal);
- `<type>typmodin(cstring[])` and `<type>typmodout(int4)`: type modifiers, `{10,2}` ⇄ 655366.

cstring values are text here. Pseudo-types (any, anyelement, internal, ...) name no I/O
functions: nothing could call them; nor do the catalog vectors int2vector and oidvector, whose
values only come from the catalog tables. The input and output functions run on the casts' Arrow
kernels; send is vectorized for fixed-width, string and vector types and encodes the others
value by value (nobody sends a table through int4send; clients get binary from the wire).
"""

from __future__ import annotations

import decimal
import struct
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog import objects as O
from sqlvec.catalog.functions import scalar
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions import constant
from sqlvec.execution.expressions.calls import no_such_function
from sqlvec.execution.values import INT4, TEXT, Datum, Value, as_array, encode_numeric, is_scalar
from sqlvec.types import (
    REG_TYPES,
    TYPES_BY_NAME,
    TYPES_BY_OID,
    SparseVector,
    SqlType,
    record_fields,
)

BYTEA = SqlType("bytea")
CSTRING = TEXT  # cstring values are text here

# Types whose input and receive functions take (cstring|internal, oid, int4): a typmod.
_WITH_TYPMOD = {"bpchar", "varchar", "numeric", "time", "timestamp", "timestamptz", "interval",
                "record", "vector", "halfvec", "sparsevec", "bit", "varbit"}
# Volatility where PostgreSQL's is stable rather than immutable.
_STABLE_IN = {"date", "time", "timestamp", "timestamptz", "interval", "record", *REG_TYPES}
_STABLE_OUT = {"date", "timestamp", "timestamptz", "interval", "record", *REG_TYPES}
_STABLE_BINARY = {"bpchar", "name", "text", "varchar", "record", "cstring"}
# Catalog vectors (pg_index.indkey, pg_proc.proargtypes): read from the catalog, never from text.
_CATALOG_ONLY = {"int2vector", "oidvector"}
# Type modifiers the engine reads (interval's field restrictions are not).
_TYPMOD_TYPES = {"bpchar", "varchar", "numeric", "time", "timestamp", "timestamptz", "vector",
                 "halfvec", "sparsevec", "bit", "varbit"}


def _text_argument(c, e: exp.Expression, name: str) -> Value:
    v = c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, TEXT)
    if not V.is_string(v.type):
        raise no_such_function(name, [v])
    return v


def _constant_int(c, e: exp.Expression, what: str) -> int | None:
    value = c.compile_as(e, INT4)
    if not value.const:
        raise FeatureNotSupported(f"{what} must be a constant here")
    return constant(value, None).as_py()


def _from_text(c, text: Value, target: SqlType) -> Value:
    if target.name in REG_TYPES:
        return c.env.functions[f"::{target.name}"](c, text)
    return Value(lambda f: V.cast(text(f), TEXT, target, f.n, explicit=True), target, text.const)


def _to_text(c, value: Value) -> Value:
    if value.type.name in REG_TYPES:
        return c.env.functions[f"{value.type.name}::text"](c, value)
    src = value.type
    return Value(lambda f: V.to_text(value(f), src, f.n), CSTRING, value.const)


def _input(type_name: str):
    """`<type>in(cstring[, oid, int4])`: the cast from text, with the typmod given."""
    def compile_(c, args, e):
        name = str(e.this).lower()
        if not 1 <= len(args) <= 3:
            raise _no_such(c, name, args)
        text = _text_argument(c, args[0], name)
        typmod = _constant_int(c, args[2], "the typmod") if len(args) > 2 else -1
        if type_name == "array":
            oid = _constant_int(c, args[1], "the element type") if len(args) > 1 else None
            info = TYPES_BY_OID.get(oid) if oid is not None else None
            if info is None or info.typname.startswith("_") or not info.array_oid:
                raise SqlVecError(f"cache lookup failed for type {oid}", sqlstate="XX000")
            target = SqlType(info.typname).array_of()
        elif type_name == "record":
            raise FeatureNotSupported("input of anonymous composite types is not implemented")
        else:
            target = SqlType(type_name, typmod if typmod is not None and typmod >= 0 and
                             type_name in _WITH_TYPMOD else -1)
        return _from_text(c, text, target)
    return compile_


def _typed_argument(c, args, e, type_name: str) -> Value:
    name = str(e.this).lower()
    if len(args) != 1:
        raise _no_such(c, name, args)
    v = c.compile(args[0])
    if type_name == "array":
        if v.type.name == "unknown":
            raise SqlVecError("could not determine polymorphic type because input has type "
                              "unknown", sqlstate="42804")
        if not v.type.is_array:
            raise _no_such(c, name, args)
        return v
    if type_name == "record":
        if v.type.name != "record":
            raise _no_such(c, name, args)
        return v
    if v.type.name != type_name:
        v = c.coerce(v, SqlType(type_name))
    return v


def _output(type_name: str):
    """`<type>out(<type>)`: the text output."""
    def compile_(c, args, e):
        return _to_text(c, _typed_argument(c, args, e, type_name))
    return compile_


def _send(type_name: str):
    """`<type>send(<type>)`: the binary format, as bytea."""
    def compile_(c, args, e):
        v = _typed_argument(c, args, e, type_name)
        t = v.type
        return Value(lambda f: binary(v(f), t, f.n), BYTEA, v.const)
    return compile_


def _receive(c, args, e):
    """`<type>recv(internal, ...)`: no SQL value is of type internal."""
    raise FeatureNotSupported("cannot accept a value of type internal")


def _typmod_in(type_name: str):
    """`<type>typmodin(cstring[])`: the typmod of `type(modifiers...)`."""
    def compile_(c, args, e):
        name = str(e.this).lower()
        if len(args) != 1:
            raise _no_such(c, name, args)
        mods = c.compile(args[0])
        if mods.type.name == "unknown":
            mods = c.coerce(mods, TEXT.array_of())
        if not (mods.type.is_array and V.is_string(mods.type.element)):
            raise _no_such(c, name, args)

        def typmod(items: list) -> int:
            try:
                numbers = tuple(int(x) for x in items)
            except (TypeError, ValueError):
                raise SqlVecError("invalid type modifier", sqlstate="22023") from None
            return SqlType.of(type_name, *numbers).typmod
        return _per_value(mods, typmod, INT4)
    return compile_


def _typmod_out(type_name: str):
    """`<type>typmodout(int4)`: the modifier as printed after the type name, `(10,2)`."""
    def compile_(c, args, e):
        name = str(e.this).lower()
        if len(args) != 1:
            raise _no_such(c, name, args)
        typmod = c.compile_as(args[0], INT4)

        def text(mod: int) -> str:
            if mod < 0 or type_name in ("bpchar", "varchar", "numeric") and mod < 4:
                return ""
            shown = SqlType(type_name, mod).format()
            return shown[shown.index("("):] if "(" in shown else ""
        return _per_value(typmod, text, CSTRING)
    return compile_


def _per_value(value: Value, fn, out: SqlType) -> Value:
    """`fn` of each non-NULL value (catalog-sized inputs: these take type modifiers)."""
    arrow = out.to_arrow()

    def run(f):
        x = value(f)
        if is_scalar(x):
            return pa.scalar(None if not x.is_valid else fn(x.as_py()), arrow)
        return pa.array([None if v is None else fn(v) for v in as_array(x, f.n).to_pylist()],
                        arrow)
    return Value(run, out, value.const)


def _no_such(c, name: str, args) -> SqlVecError:
    return no_such_function(name, [c.compile(a) for a in args])


# Binary output (PostgreSQL's send functions) ---------------------------------------------------

_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_EPOCH_MICROS = _EPOCH_DAYS * 86_400_000_000
_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float4": ">f4", "float8": ">f8",
          "bool": "u1", "oid": ">u4", "xid": ">u4", "cid": ">u4", "date": ">i4", "time": ">i8",
          "timestamp": ">i8", "timestamptz": ">i8", **{k: ">u4" for k in REG_TYPES}}
_STRINGS = {"text", "varchar", "bpchar", "name", "char", "json", "unknown"}


def binary(value: Datum, t: SqlType, n: int) -> Datum:
    """Values of type `t` in PostgreSQL's binary format (what `<type>send` returns)."""
    if is_scalar(value):
        return binary(pa.array([value.as_py()], t.to_arrow()), t, 1)[0]
    arr = as_array(value, n)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    name = t.name
    if name in _FIXED:
        return _fixed_width(arr, name)
    if name in _STRINGS:
        return arr.cast(pa.binary())
    if name in ("jsonb", "jsonpath"):
        return pc.binary_join_element_wise(b"\x01", arr.cast(pa.binary()), b"")
    if name == "bytea":
        return arr.cast(pa.binary())
    if name == "vector" and len(arr) and arr.null_count < len(arr) and \
            pa.types.is_fixed_size_list(arr.type) and pa.types.is_float32(arr.type.value_type):
        return _vectors(arr)
    return pa.array([None if v is None else encode_binary(v, t) for v in arr.to_pylist()],
                    pa.binary())


def _fixed_width(arr: pa.Array, name: str) -> pa.Array:
    dtype = np.dtype(_FIXED[name])
    if name == "date":
        numbers = pc.subtract(arr.cast(pa.int32()).fill_null(0), _EPOCH_DAYS)
    elif name in ("timestamp", "timestamptz"):
        micros = arr.cast(pa.timestamp("us", tz=arr.type.tz)).cast(pa.int64())
        numbers = pc.subtract(micros.fill_null(0), _EPOCH_MICROS)
    elif name == "time":
        numbers = arr.cast(pa.time64("us")).cast(pa.int64()).fill_null(0)
    elif name == "bool":
        numbers = arr.fill_null(False).cast(pa.uint8())
    else:
        numbers = arr.fill_null(0)
    data = np.ascontiguousarray(numbers.to_numpy(zero_copy_only=False).astype(dtype))
    out = pa.Array.from_buffers(pa.binary(dtype.itemsize), len(arr),
                                [None, pa.py_buffer(data.tobytes())]).cast(pa.binary())
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.binary()))


def _vectors(arr: pa.Array) -> pa.Array:
    d = arr.type.list_size
    flat = arr.values.slice(arr.offset * d, len(arr) * d)
    matrix = flat.fill_null(0).to_numpy(zero_copy_only=False).reshape(len(arr), d)
    record = np.empty(len(arr), dtype=[("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (d,))])
    record["dim"], record["unused"], record["v"] = d, 0, matrix
    out = pa.Array.from_buffers(pa.binary(4 + 4 * d), len(arr),
                                [None, pa.py_buffer(record.tobytes())]).cast(pa.binary())
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.binary()))


def encode_binary(value: object, t: SqlType) -> bytes:
    """One value in PostgreSQL's binary format."""
    name = t.name
    if name in _FIXED:
        return bytes(binary(pa.array([value], t.to_arrow()), t, 1)[0].as_py())
    if name in _STRINGS:
        return str(value).encode()
    if name in ("jsonb", "jsonpath"):
        return b"\x01" + str(value).encode()
    if name == "bytea":
        return bytes(value)
    if name == "uuid":
        return uuid.UUID(str(value)).bytes
    if name == "tid":
        block, offset = V.tid_unpack(value)
        return struct.pack("!IH", block, offset)
    if name == "numeric":
        return encode_numeric(value if isinstance(value, decimal.Decimal)
                        else decimal.Decimal(str(value)))
    if name == "interval":
        return struct.pack("!qii", value.nanoseconds // 1000, value.days, value.months)
    if name in ("vector", "halfvec"):
        vec = np.asarray(value, dtype=">f4" if name == "vector" else ">f2")
        return struct.pack("!HH", vec.size, 0) + vec.tobytes()
    if name == "sparsevec":  # int32 dim, nnz, unused; int32 indices; float4 values
        sv = SparseVector.from_dict(value)
        return (struct.pack("!iii", sv.dim, sv.indices.size, 0) + (sv.indices - 1).astype(">i4").tobytes()
                + sv.values.astype(">f4").tobytes())
    if name in ("bit", "varbit"):  # int32 bit count, then the bits packed, first bit highest
        bits = np.frombuffer(str(value).encode(), np.uint8) == ord("1")
        return struct.pack("!i", bits.size) + np.packbits(bits).tobytes()
    if name in ("int2vector", "oidvector"):
        return _array(list(value), t.element, lower=0)
    if t.is_array:
        return _array(value, t.element)
    if name == "record":
        fields = record_fields(t)
        out = [struct.pack("!i", len(fields))]
        for key, ft in fields:
            item = value.get(key) if isinstance(value, dict) else None
            raw = None if item is None else encode_binary(item, ft)
            out.append(struct.pack("!Ii", ft.oid, -1 if raw is None else len(raw)) + (raw or b""))
        return b"".join(out)
    raise SqlVecError(f"no binary output function available for type {t.format()}",
                      sqlstate="42883")


def _array(values: list, element: SqlType, lower: int = 1) -> bytes:
    """array_send of a one-dimensional array (an empty array has no dimensions)."""
    if not values:
        return struct.pack("!iiI", 0, 0, element.oid)
    out = [struct.pack("!iiIii", 1, int(any(v is None for v in values)), element.oid,
                       len(values), lower)]
    for v in values:
        raw = None if v is None else encode_binary(v, element)
        out.append(struct.pack("!i", -1) if raw is None else struct.pack("!i", len(raw)) + raw)
    return b"".join(out)


# Declarations ---------------------------------------------------------------------------------------


def _declare_type(row: O.TypeRow, declared: set[str]) -> None:
    """The I/O functions `row` names, each declared once (arrays share array_in, ...)."""
    name = row.info.typname
    if name.startswith("_"):
        kind, arg = "array", "anyarray"
    elif name == "cstring":
        kind, arg = "text", "cstring"
    elif name in TYPES_BY_NAME and O.type_kind(row) != "p" and name not in _CATALOG_ONLY \
            or name == "record":
        kind, arg = name, name
    else:
        return  # pseudo-types, and types that are not types of the engine (inet, bit, ...)
    typmod = kind in _WITH_TYPMOD or kind == "array"
    stable_in = kind in _STABLE_IN or kind == "array"
    stable_out = kind in _STABLE_OUT or kind == "array"
    stable_binary = name in _STABLE_BINARY or kind == "array"
    options = {"extension": "vector"} if name in ("vector", "halfvec", "sparsevec") else {}
    suffix = ", oid, int4" if typmod else ""
    functions = (
        (row.input, f"cstring{suffix} -> {arg}", _input(kind), stable_in),
        (row.output, f"{arg} -> cstring", _output(kind), stable_out),
        (row.receive, f"internal{suffix} -> {arg}", _receive, stable_binary),
        (row.send, f"{arg} -> bytea", _send(kind), stable_binary),
    )
    if name in _TYPMOD_TYPES:
        functions += ((row.modin, "cstring[] -> int4", _typmod_in(name), False),)
        if name not in ("vector", "halfvec", "sparsevec"):  # pgvector has no typmod output
            functions += ((row.modout, "int4 -> cstring", _typmod_out(name), False),)
    for fname, signature, kernel, stable in functions:
        if fname == "-" or fname in declared:
            continue
        declared.add(fname)
        scalar(fname, signature, volatility="s" if stable else "i", **options)(kernel)


def _declare_all() -> None:
    declared: set[str] = set()
    for row in O.type_rows():
        _declare_type(row, declared)


_declare_all()

__all__ = ["binary", "encode_binary"]
