"""Typed columnar values and the casts between SQL types, shared by every operator.

A compiled expression yields an Arrow array (one value per input row) or an Arrow scalar (the
same value for every row; pyarrow.compute broadcasts it). `Value` pairs that with its SQL type,
which Arrow alone cannot tell apart (text vs. jsonb vs. uuid are all strings).

String literals are of type `unknown` until context gives them a type, as in PostgreSQL:
`emb <-> '[1,2,3]'` makes the literal a vector, `d > '2024-01-01'` a date.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import (
    DataException,
    DatatypeMismatch,
    FeatureNotSupported,
    InvalidTextRepresentation,
    NumericValueOutOfRange,
    SqlVecError,
    invalid_byte_sequence,
)
from sqlvec.execution import jsonpath
from sqlvec.types import (
    BIT_TYPES,
    SPARSEVEC_ARROW,
    VECTOR_MAX_DIM,
    SparseVector,
    SqlType,
    all_finite,
    check_sparsevec_typmod,
    check_vector_values,
    format_shortest,
    format_sparsevec,
    format_vector,
    parse_sparsevec,
    parse_vector,
    record_fields,
)
from sqlvec.vectors import SparseRows

Datum = pa.Array | pa.ChunkedArray | pa.Scalar

UNKNOWN = SqlType("unknown")
TEXT = SqlType("text")
BOOL = SqlType("bool")
INT4 = SqlType("int4")
INT8 = SqlType("int8")
FLOAT8 = SqlType("float8")
NUMERIC = SqlType("numeric")


def is_scalar(value: Datum) -> bool:
    """Whether a compiled expression's result is one value for all rows (a constant) rather than a
    column."""
    return isinstance(value, pa.Scalar)


def as_array(value: Datum, n: int) -> pa.Array | pa.ChunkedArray:
    """Broadcast a scalar to `n` rows (arrays pass through)."""
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return pa.nulls(n, value.type)
        if n == 0:  # pa.repeat of a nested scalar refuses zero repetitions
            return pa.array([], value.type)
        return pa.repeat(value, n)
    return value


def to_numpy_vectors(value: Datum, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A vector column (or scalar) as an (n, d) matrix and a validity mask: float32 for vector,
    float16 for halfvec (the kernels in sqlvec.vectors pick pgvector's halfvec arithmetic by it)."""
    dtype = np.float16 if pa.types.is_float16(value.type.value_type) else np.float32
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return np.zeros((n, 1), dtype), np.zeros(n, bool)
        vec = np.asarray(value.values.to_numpy(zero_copy_only=False), dtype=dtype)
        return np.broadcast_to(vec, (n, vec.size)), None
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
    if pa.types.is_fixed_size_list(value.type):
        d = value.type.list_size
        child = value.values.slice(value.offset * d, len(value) * d)
        if child.null_count:
            child = child.fill_null(0)
        matrix = child.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(len(value), d)
    else:
        lengths = pc.list_value_length(value).to_numpy(zero_copy_only=False)
        valid_lengths = lengths[~np.isnan(lengths.astype(float))] if lengths.size else lengths
        d = int(valid_lengths.max()) if valid_lengths.size else 0
        if valid_lengths.size and int(valid_lengths.min()) != d:
            dims = sorted(set(valid_lengths.astype(int).tolist()))
            kind = "halfvec" if dtype is np.float16 else "vector"
            raise DataException(f"different {kind} dimensions {dims[0]} and {dims[-1]}")
        filled = value.fill_null(pa.scalar([0.0] * d, value.type)) if value.null_count else value
        matrix = np.asarray(pc.list_flatten(filled).to_numpy(zero_copy_only=False),
                            dtype=dtype).reshape(len(value), d)
    valid = None
    if value.null_count:
        valid = value.is_valid().to_numpy(zero_copy_only=False)
    return matrix, valid


def vectors_to_arrow(matrix: np.ndarray, valid: np.ndarray | None = None,
                     dtype: type = np.float32) -> pa.Array:
    """A matrix of vectors (one per row, NULL where `valid` is false) as the fixed-size list array
    vector columns (dtype float32) and halfvec columns (float16) are stored as."""
    matrix = np.ascontiguousarray(matrix, dtype=dtype)
    mask = None if valid is None else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1], mask=mask)


def to_sparse_rows(value: Datum, n: int) -> SparseRows:
    """A sparsevec column (or scalar, repeated n times) as CSR-shaped `SparseRows`: the
    layout the sparse kernels of sqlvec.vectors work on, read from the Arrow buffers."""
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return SparseRows(np.zeros(n), np.zeros(n + 1), np.zeros(0), np.zeros(0),
                              np.zeros(n, bool))
        one = SparseVector.from_dict(value.as_py())
        return SparseRows(np.array([one.dim]), np.array([0, one.indices.size]), one.indices,
                          one.values).repeat(n)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
    dims, indices, values = value.flatten()
    lengths = pc.fill_null(pc.list_value_length(indices), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(value) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    valid = value.is_valid().to_numpy(zero_copy_only=False) if value.null_count else None
    return SparseRows(pc.fill_null(dims, 0).to_numpy(zero_copy_only=False), offsets,
                      pc.list_flatten(indices).to_numpy(zero_copy_only=False),
                      pc.list_flatten(values).to_numpy(zero_copy_only=False), valid)


def sparse_to_arrow(rows: SparseRows) -> pa.Array:
    """`SparseRows` as the struct array sparsevec columns are stored as."""
    offsets = pa.array(rows.offsets.astype(np.int32))
    mask = None if rows.valid is None else pa.array(~rows.valid)
    return pa.StructArray.from_arrays(
        [pa.array(rows.dims.astype(np.int32)),
         pa.ListArray.from_arrays(offsets, pa.array(rows.indices, pa.int32())),
         pa.ListArray.from_arrays(offsets, pa.array(rows.values, pa.float32()))],
        fields=list(SPARSEVEC_ARROW), mask=mask)


def sparse_from_dense(matrix: np.ndarray, valid: np.ndarray | None) -> SparseRows:
    """pgvector's vector_to_sparsevec / halfvec_to_sparsevec for a matrix of rows: the
    non-zero elements with their 1-based positions, as float."""
    rows, cols = np.nonzero(matrix)
    lengths = np.bincount(rows, minlength=matrix.shape[0])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return SparseRows(np.full(matrix.shape[0], matrix.shape[1]), offsets, cols + 1,
                      matrix[rows, cols].astype(np.float32), valid)


def sparse_to_flat(rows: SparseRows) -> tuple[np.ndarray, np.ndarray]:
    """The dense float32 elements of every row, back to back, and the row offsets into them
    (pgvector's sparsevec_to_vector for every row at once)."""
    offsets = np.concatenate([[0], np.cumsum(rows.dims)])
    flat = np.zeros(int(offsets[-1]), np.float32)
    flat[np.repeat(offsets[:-1], rows.lengths) + rows.indices.astype(np.int64) - 1] = rows.values
    return flat, offsets


@dataclass(frozen=True)
class Value:
    """A compiled expression: `fn(frame)` gives its values; `type` its SQL type. `const` values
    depend on neither input rows nor parameters (folded once)."""

    fn: Callable
    type: SqlType
    const: bool = False
    text: str | None = None  # the literal text of an unknown-typed constant
    # Where that literal starts in the statement (1-based, in characters): the P field of an
    # error in reading it as a type, as PostgreSQL positions a constant's input errors.
    position: int | None = None
    # A plain reference to this column of the input (its values passed through, no copy).
    column: int | None = None
    # The value as a Python object computed from the parameters alone, for the simplest
    # expressions over no row (expressions/scalars.py; None: there is none).
    py: Callable | None = None

    def __call__(self, frame) -> Datum:
        return self.fn(frame)


# Type categories and promotion ------------------------------------------------------------------

_NUMERIC_RANK = {"int2": 0, "int4": 1, "int8": 2, "numeric": 3, "float4": 4, "float8": 5,
                 "oid": 2, "regclass": 2, "regtype": 2, "regproc": 2, "regprocedure": 2,
                 "regnamespace": 2, "regrole": 2}
STRING_TYPES = {"text", "varchar", "bpchar", "name", "char", "unknown", "json", "jsonb", "uuid"}
TEMPORAL = {"date", "timestamp", "timestamptz", "time", "interval"}


def is_numeric(t: SqlType) -> bool:
    """Whether a type takes part in numeric promotion (int2 up to float8)."""
    return t.name in _NUMERIC_RANK


def is_string(t: SqlType) -> bool:
    """Whether a type is text-like for operators and implicit casts from unknown."""
    return t.name in STRING_TYPES


def common_numeric(a: SqlType, b: SqlType) -> SqlType:
    """The type two numbers resolve to; numerics keep the larger display scale (PostgreSQL
    keeps each value's own, which one Arrow column cannot)."""
    ra, rb = _NUMERIC_RANK[a.name], _NUMERIC_RANK[b.name]
    winner = a if ra >= rb else b
    if winner.name == "oid" or winner.name.startswith("reg"):
        return INT8
    if winner.name == "numeric":
        sa, sb = numeric_scale(a), numeric_scale(b)
        return numeric_with_scale(None if sa is None or sb is None else max(sa, sb))
    return SqlType(winner.name)


def as_numeric(t: SqlType) -> SqlType:
    """The numeric type an exact number converts to without changing its value or scale."""
    if t.name in INT_DIGITS:
        return SqlType.of("numeric", INT_DIGITS[t.name], 0)
    return t


def common_type(types: list[SqlType], context: str = "CASE") -> SqlType:
    """The type values of several branches resolve to (UNION, CASE, COALESCE, VALUES)."""
    known = [t for t in types if t.name != "unknown"]
    if not known:
        return TEXT
    result = known[0]
    for t in known[1:]:
        if t == result:
            continue
        if is_numeric(t) and is_numeric(result):
            result = common_numeric(result, t)
        elif is_string(t) and is_string(result):
            result = TEXT
        elif t.name == result.name:
            result = SqlType(t.name)
        elif {t.name, result.name} <= {"timestamp", "timestamptz"}:
            result = SqlType("timestamptz")
        elif {t.name, result.name} <= {"date", "timestamp"}:
            result = SqlType("timestamp")
        else:
            raise DatatypeMismatch(f"{context} types {result.format()} and {t.format()} cannot be matched")
    return result


def check_assignable(source: SqlType, column) -> None:
    """PostgreSQL's assignment-cast rule for INSERT and UPDATE: numbers to numbers, date and
    time types among themselves, anything to a string type, vectors to and from real[].
    Otherwise 42804 `column "c" is of type T but expression is of type S`."""
    target = column.type
    if source.name in ("unknown", target.name) or target.name in STRING_TYPES - {
            "json", "jsonb", "uuid"} or _category(source) == _category(target) != "U":
        return
    if {source.name, target.name} <= {"json", "jsonb"} or (
            (source.is_vector or target.is_vector) and (
                source.is_array or target.is_array or source.is_vector and target.is_vector)) or (
            target.is_sparse and (source.is_vector or source.is_array)) or (
            source.is_sparse and target.is_vector):
        return
    raise DatatypeMismatch(
        f'column "{column.name}" is of type {target.format()} but expression is of type '
        f"{source.format()}",
        hint="You will need to rewrite or cast the expression.")


def _category(t: SqlType) -> str:
    if t.name in ("date", "timestamp", "timestamptz"):
        return "D"
    return t.info.category


# Text → value (literals and casts from text) ---------------------------------------------------

# boolean input as PostgreSQL's parse_bool: any prefix of true/false/yes/no, "on", "of"/"off",
# 1 and 0.
_TRUE = {"true"[:i] for i in range(1, 5)} | {"yes"[:i] for i in range(1, 4)} | {"on", "1"}
_FALSE = {"false"[:i] for i in range(1, 6)} | {"no"[:i] for i in range(1, 3)} | \
    {"of", "off", "0"}


_BYTE_ESCAPE = re.compile(r"\\(\\|[0-3][0-7]{2})")


def bytea_escape_input(text: str) -> bytes:
    """bytea from its escape format: `\\\\` and `\\ooo` are bytes, any other character its
    UTF-8 (22P02 for another backslash)."""
    if "\\" not in text:
        return text.encode()
    if "\\" in _BYTE_ESCAPE.sub("", text):
        raise InvalidTextRepresentation("invalid input syntax for type bytea")
    out, at = bytearray(), 0
    for m in _BYTE_ESCAPE.finditer(text):
        out += text[at:m.start()].encode()
        out.append(0x5C if m.group(1) == "\\" else int(m.group(1), 8))
        at = m.end()
    out += text[at:].encode()
    return bytes(out)


def _holds_nul(doc: object) -> bool:
    """Whether a parsed JSON document has a NUL in a string (jsonb cannot store one)."""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if "\0" in x:
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def _invalid(type_name: str, text: str) -> SqlVecError:
    if type_name == "interval":  # datetime input errors are 22007 (invalid_datetime_format)
        return SqlVecError(f'invalid input syntax for type interval: "{text}"', sqlstate="22007")
    return InvalidTextRepresentation(f'invalid input syntax for type {type_name}: "{text}"')


def parse_text(text: str, target: SqlType) -> object:
    """A Python value of `target` from its PostgreSQL text form (input functions)."""
    name = target.name
    s = text.strip()
    if name in BIT_TYPES:
        return parse_bits(text, target)
    if name == "bool":
        low = s.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise _invalid("boolean", text)
    if name in ("int2", "int4", "int8", "oid"):
        try:
            value = int(s)
        except ValueError:
            raise _invalid({"int2": "smallint", "int4": "integer", "int8": "bigint",
                            "oid": "oid"}[name], text) from None
        bits = {"int2": 16, "int4": 32, "int8": 64, "oid": 33}[name]
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise NumericValueOutOfRange(
                f'value "{s}" is out of range for type '
                f'{ {"int2": "smallint", "int4": "integer", "int8": "bigint", "oid": "oid"}[name]}')
        return value
    if name in ("xid", "cid"):
        return _parse_uint32(s, name, text)
    if name == "tid":
        return parse_tid(text)
    if name in ("float4", "float8"):
        low = s.lower()
        special = {"nan": float("nan"), "infinity": float("inf"), "+infinity": float("inf"),
                   "-infinity": float("-inf"), "inf": float("inf"), "-inf": float("-inf")}
        if low in special:
            return special[low]
        try:
            value = float(s)
        except ValueError:
            raise _invalid("real" if name == "float4" else "double precision", text) from None
        if name == "float4":
            with np.errstate(over="ignore", under="ignore"):
                value = float(np.float32(value))
        check_float_input(pa.scalar(text), pa.scalar(value), target)
        return value
    if name == "numeric":
        try:
            value = decimal.Decimal(s)
        except decimal.InvalidOperation:
            raise _invalid("numeric", text) from None
        return value
    if target.is_sparse:
        sparse = parse_sparsevec(text)
        check_sparsevec_typmod(sparse.dim, target.typmod)
        return sparse.as_dict()
    if target.is_vector:
        vec = parse_vector(text, name)
        if target.typmod >= 0 and vec.size != target.typmod:
            raise DataException(f"expected {target.typmod} dimensions, not {vec.size}")
        return vec.tolist()
    if name == "date":
        return _parse_date(s, text)
    if name in ("timestamp", "timestamptz"):
        return _parse_timestamp(s, text, tz=name == "timestamptz")
    if name == "time":
        try:
            return dt.time.fromisoformat(s)
        except ValueError:
            if _TIME_SHAPE.fullmatch(s):
                raise SqlVecError(f'date/time field value out of range: "{text}"',
                                  sqlstate="22008") from None
            raise SqlVecError(f'invalid input syntax for type time: "{text}"',
                              sqlstate="22007") from None
    if name == "uuid":
        try:
            return str(uuid.UUID(s))
        except ValueError:
            raise _invalid("uuid", text) from None
    if name in ("json", "jsonb"):
        try:
            parsed = json.loads(s, parse_float=decimal.Decimal,
                                parse_constant=_not_json)
        except ValueError:
            detail, context = json_error(s)
            raise InvalidTextRepresentation("invalid input syntax for type json",
                                            detail=detail, where=context) from None
        if name == "json":
            return text
        if "\\u0000" in s and _holds_nul(parsed):
            raise SqlVecError("unsupported Unicode escape sequence", sqlstate="22P05",
                              detail="\\u0000 cannot be converted to text.")
        return canonical_jsonb(parsed)
    if name == "jsonpath":
        return jsonpath.parse(text).text()
    if name == "bytea":
        if s.startswith("\\x"):
            try:
                return bytes.fromhex(s[2:])
            except ValueError:
                raise _invalid("bytea", text) from None
        return bytea_escape_input(s)
    if name == "interval":
        return parse_interval(s)
    if name in ("varchar", "bpchar") and target.char_length is not None:
        limit = target.char_length
        if len(text.rstrip(" ")) > limit:
            raise SqlVecError(
                f"value too long for type {target.format()}", sqlstate="22001")
        return text[:limit].ljust(limit) if name == "bpchar" else text[:limit]
    if target.is_array:
        return parse_array_text(text, target.element)
    return text


def _parse_uint32(s: str, name: str, text: str) -> int:
    """xid / cid input: a decimal number, negative ones wrapping around as in PostgreSQL."""
    try:
        value = int(s)
    except ValueError:
        raise _invalid(name, text) from None
    if not -(1 << 31) <= value < 1 << 32:
        raise NumericValueOutOfRange(f'value "{s}" is out of range for type {name}')
    return value & 0xFFFFFFFF


# tid, the type of ctid: (block, offset), kept as the one int64 `block << 16 | offset`, so that
# comparing and sorting the numbers compares and sorts the pairs.

_TID = re.compile(r"\s*\(\s*([+-]?\d+),\s*([+-]?\d+)\)\s*")


def tid_pack(block: int, offset: int) -> int:
    """A ctid (block, offset) packed into the one integer a tid column stores."""
    return block << 16 | offset


def tid_unpack(value: int) -> tuple[int, int]:
    """The (block, offset) of a packed ctid."""
    return value >> 16, value & 0xFFFF


def parse_tid(text: str) -> int:
    """tid input `(block,offset)`: block a uint32 (negative ones wrap), offset a uint16."""
    m = _TID.fullmatch(text)
    if m is None:
        raise _invalid("tid", text)
    block, offset = int(m.group(1)), int(m.group(2))
    if not -(1 << 31) <= block < 1 << 32 or not 0 <= offset <= 0xFFFF:
        raise _invalid("tid", text)
    return tid_pack(block & 0xFFFFFFFF, offset)


def _not_json(word: str) -> object:
    """NaN and Infinity: Python's json module reads them, JSON (and PostgreSQL) does not."""
    raise ValueError(word)


class _JsonSyntax(Exception):
    """The DETAIL of PostgreSQL's json input error, raised inside `json_error`, and where the
    offending token ends (None: at the end of the input)."""

    def __init__(self, detail: str, end: int | None) -> None:
        super().__init__(detail)
        self.end = end


_JSON_WORD = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]*")
_JSON_NUMBER_PREFIX = re.compile(r"-?\d*(?:\.\d*)?(?:[eE][-+]?\d*)?")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_JSON_ESCAPES = frozenset('"\\/bfnrt')


def _json_lex(s: str):
    """PostgreSQL's json lexer: (kind, text, end) tokens, kind one of `{}[],:` or "string",
    "scalar", "end"; a token it cannot read raises its DETAIL."""
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t\n\r":
            i += 1
        if i >= n:
            yield "end", "", None
            return
        ch = s[i]
        if ch in "{}[],:":
            yield ch, ch, i + 1
            i += 1
        elif ch == '"':
            j = i + 1
            while True:
                if j >= n:
                    raise _JsonSyntax(f'Token "{s[i:]}" is invalid.', n)
                c = s[j]
                if c == '"':
                    break
                if c == "\\":
                    nxt = s[j + 1] if j + 1 < n else ""
                    if nxt == "u":
                        if not re.fullmatch(r"[0-9A-Fa-f]{4}", s[j + 2:j + 6]):
                            raise _JsonSyntax('"\\u" must be followed by four hexadecimal '
                                              "digits.", min(j + 6, n))
                        j += 6
                        continue
                    if nxt not in _JSON_ESCAPES or not nxt:
                        raise _JsonSyntax(f'Escape sequence "\\{nxt}" is invalid.', j + 2)
                    j += 2
                    continue
                if ord(c) < 0x20:
                    raise _JsonSyntax(f"Character with value 0x{ord(c):02x} must be escaped.",
                                      j)
                j += 1
            yield "string", s[i:j + 1], j + 1
            i = j + 1
        elif ch == "-" or ch.isdigit():
            end = _JSON_NUMBER_PREFIX.match(s, i).end()  # type: ignore[union-attr]
            end = _JSON_WORD.match(s, end).end()  # type: ignore[union-attr]
            if not _JSON_NUMBER.fullmatch(s, i, end):
                raise _JsonSyntax(f'Token "{s[i:end]}" is invalid.', end)
            yield "scalar", s[i:end], end
            i = end
        else:
            end = max(_JSON_WORD.match(s, i).end(), i + 1)  # type: ignore[union-attr]
            if s[i:end] not in ("true", "false", "null"):
                raise _JsonSyntax(f'Token "{s[i:end]}" is invalid.', end)
            yield "scalar", s[i:end], end
            i = end


def json_error(s: str) -> tuple[str | None, str | None]:
    """The DETAIL and CONTEXT PostgreSQL's json parser gives for `s`: the first problem in
    reading order, worded as its jsonapi.c words it, and the input up to it (`JSON data, line
    1: {"a":}`); (None, None) if it finds none."""
    tokens = _json_lex(s)
    current: list[tuple[str, str, int | None]] = []

    def peek() -> tuple[str, str, int | None]:
        return current[0]

    def take() -> tuple[str, str, int | None]:
        token = current[0]
        current[0] = next(tokens)
        return token

    def fail(expected: str) -> _JsonSyntax:
        kind, text, end = peek()
        if kind == "end":
            return _JsonSyntax("The input string ended unexpectedly.", None)
        return _JsonSyntax(f'{expected}, but found "{text}".', end)

    def value() -> None:
        kind = peek()[0]
        if kind in ("string", "scalar"):
            take()
        elif kind == "{":
            take()
            if peek()[0] == "string":
                field()
                while peek()[0] == ",":
                    take()
                    field()
            elif peek()[0] != "}":
                raise fail('Expected string or "}"')
            if peek()[0] != "}":
                raise fail('Expected "," or "}"')
            take()
        elif kind == "[":
            take()
            if peek()[0] != "]":
                value()
                while peek()[0] == ",":
                    take()
                    value()
            if peek()[0] != "]":
                raise fail('Expected "," or "]"')
            take()
        else:
            raise fail("Expected JSON value")

    def field() -> None:
        if peek()[0] != "string":
            raise fail("Expected string")
        take()
        if peek()[0] != ":":
            raise fail('Expected ":"')
        take()
        value()

    try:
        current.append(next(tokens))
        value()
        if peek()[0] != "end":
            raise fail("Expected end of input")
    except _JsonSyntax as error:
        return str(error), _json_context(s, error.end)
    return None, None


def _json_context(s: str, end: int | None) -> str:
    """PostgreSQL's `JSON data, line N: …` context: the line of the error up to the end of
    its token, at most about 50 characters of it, with "..." where it was cut."""
    stop = len(s) if end is None else end
    line_start = s.rfind("\n", 0, stop) + 1
    start = max(line_start, stop - 49)
    if start - line_start <= 3:
        start = line_start
    prefix = "..." if start > line_start else ""
    suffix = "..." if end is not None and end < len(s) and s[end] not in "\r\n" else ""
    return f"JSON data, line {s.count(chr(10), 0, stop) + 1}: {prefix}{s[start:stop]}{suffix}"


def tid_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A tid column's text form `(block,offset)`, for the whole column at once."""
    block = pc.cast(pc.shift_right(values, 16), pa.string())
    offset = pc.cast(pc.bit_wise_and(values, 0xFFFF), pa.string())
    return pc.binary_join_element_wise("(", block, ",", offset, ")", "")


def canonical_jsonb(value: object) -> str:
    """jsonb's text form: object keys ordered shortest first, then bytewise (PostgreSQL's
    storage order), the last of duplicate keys kept, numbers as numeric prints them."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {canonical_jsonb(value[k])}"
                               for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(canonical_jsonb(v) for v in value) + "]"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


def _parse_date(s: str, text: str) -> dt.date:
    low = s.lower()
    if low in ("today", "now"):
        return dt.date.today()
    try:
        return dt.date.fromisoformat(s[:10] if len(s) > 10 and s[10] in " T" else s)
    except ValueError:
        raise _datetime_error("date", text) from None


_DATE_SHAPE = re.compile(r"\s*\d{4}-(\d{1,2})-(\d{1,2})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?.*")
_TIME_SHAPE = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")


def _datetime_error(type_name: str, text: str) -> SqlVecError:
    """PostgreSQL's datetime input errors: 22008 for a well-formed value out of range,
    22007 for text that is not a date at all."""
    shape = _DATE_SHAPE.fullmatch(text)
    if shape:
        # A month or day no calendar has is, to PostgreSQL, perhaps a day-month order mix-up.
        hint = None if 1 <= int(shape[1]) <= 12 and 1 <= int(shape[2]) <= 31 else \
            'Perhaps you need a different "DateStyle" setting.'
        return SqlVecError(f'date/time field value out of range: "{text}"', sqlstate="22008",
                           hint=hint)
    return SqlVecError(f'invalid input syntax for type {type_name}: "{text}"', sqlstate="22007")


def _parse_timestamp(s: str, text: str, tz: bool) -> dt.datetime:
    low = s.lower()
    if low in ("now",):
        value = dt.datetime.now(dt.timezone.utc)
        return value if tz else value.replace(tzinfo=None)
    candidate = s.replace(" ", "T", 1) if len(s) > 10 else s
    candidate = re.sub(r"([+-]\d\d)$", r"\1:00", candidate)
    try:
        value = dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise _datetime_error("timestamp with time zone" if tz else "timestamp without time zone",
                              text) from None
    if tz:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)
    return value.replace(tzinfo=None) if value.tzinfo is None else value.replace(tzinfo=None)


_INTERVAL_UNITS = {
    "microsecond": ("us", 1), "microseconds": ("us", 1), "us": ("us", 1),
    "millisecond": ("us", 1000), "milliseconds": ("us", 1000), "ms": ("us", 1000),
    "second": ("us", 1_000_000), "seconds": ("us", 1_000_000), "sec": ("us", 1_000_000),
    "secs": ("us", 1_000_000), "s": ("us", 1_000_000),
    "minute": ("us", 60_000_000), "minutes": ("us", 60_000_000), "min": ("us", 60_000_000),
    "mins": ("us", 60_000_000), "m": ("us", 60_000_000),
    "hour": ("us", 3_600_000_000), "hours": ("us", 3_600_000_000), "h": ("us", 3_600_000_000),
    "hr": ("us", 3_600_000_000), "hrs": ("us", 3_600_000_000),
    "day": ("d", 1), "days": ("d", 1), "d": ("d", 1),
    "week": ("d", 7), "weeks": ("d", 7), "w": ("d", 7),
    "month": ("mon", 1), "months": ("mon", 1), "mon": ("mon", 1), "mons": ("mon", 1),
    "year": ("mon", 12), "years": ("mon", 12), "y": ("mon", 12),
}


def parse_interval(text: str) -> pa.MonthDayNano:
    """`1 day 2 hours`, `3 days`, `01:02:03`, `-1 year` → (months, days, nanoseconds)."""
    months = days = 0
    micros = 0
    s = text.strip().lower().replace("@", "")
    tokens = re.findall(r"[-+]?\d+:\d+(?::\d+(?:\.\d+)?)?|[-+]?\d+(?:\.\d+)?|[a-z]+", s)
    i = 0
    matched = False
    while i < len(tokens):
        tok = tokens[i]
        if ":" in tok:
            sign = -1 if tok.startswith("-") else 1
            parts = [float(p) for p in tok.lstrip("+-").split(":")]
            while len(parts) < 3:
                parts.append(0.0)
            micros += sign * int(round((parts[0] * 3600 + parts[1] * 60 + parts[2]) * 1e6))
            i += 1
            matched = True
            continue
        try:
            number = float(tok)
        except ValueError:
            if tok == "ago":
                months, days, micros = -months, -days, -micros
                i += 1
                continue
            raise _invalid("interval", text) from None
        unit = tokens[i + 1] if i + 1 < len(tokens) else "second"
        if unit not in _INTERVAL_UNITS:
            raise _invalid("interval", text)
        kind, factor = _INTERVAL_UNITS[unit]
        if kind == "mon":
            months += int(number * factor)
        elif kind == "d":
            whole = int(number * factor)
            days += whole
            micros += int(round((number * factor - whole) * 86_400_000_000))
        else:
            micros += int(round(number * factor))
        i += 2
        matched = True
    if not matched:
        raise _invalid("interval", text)
    return pa.MonthDayNano([months, days, micros * 1000])


def parse_array_text(text: str, element: SqlType) -> list:
    """Array input (`{1,2,NULL}`, quoted and escaped elements) as PostgreSQL's array_in reads it,
    each element parsed as `element`."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise InvalidTextRepresentation(f'malformed array literal: "{text}"',
                                        detail='Array value must start with "{" or dimension information.')
    body = s[1:-1]
    if not body.strip():
        return []
    items, current, quoted, escape, in_quotes = [], [], False, False, False
    for ch in body:
        if escape:
            current.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == '"':
            in_quotes = not in_quotes
            quoted = True
        elif ch == "," and not in_quotes:
            items.append(("".join(current), quoted))
            current, quoted = [], False
        else:
            current.append(ch)
    items.append(("".join(current), quoted))
    out = []
    for raw, was_quoted in items:
        raw = raw if was_quoted else raw.strip()
        if not was_quoted and raw.upper() == "NULL":
            out.append(None)
        else:
            out.append(parse_text(raw, element))
    return out


def scalar_of(value: object, t: SqlType) -> pa.Scalar:
    """A Python value (already of type `t`) as an Arrow scalar of t's storage type."""
    arrow = t.to_arrow()
    if value is None:
        return pa.scalar(None, arrow)
    if t.is_sparse:
        if isinstance(value, SparseVector):
            value = value.as_dict()
        check_sparsevec_typmod(int(value["dim"]), t.typmod)
        return pa.scalar(value, arrow)
    if _FAST_SCALAR.get(t.name) is type(value):  # a bound int8 key, a text: a third the cost
        packed = _one_value(value, arrow)
        if packed is not None:
            return packed[0]
    if t.is_vector:
        return vector_scalar(vector_value(value, t), t)
    if t.name == "numeric":
        exact = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
        return fit_numeric(decimal_scalar(exact), t)
    if t.name in ("json", "jsonb") and not isinstance(value, str):
        value = json.dumps(value)
    if t.name == "uuid" and isinstance(value, uuid.UUID):
        value = str(value)
    try:
        return pa.scalar(value, arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise NumericValueOutOfRange(f"value out of range for type {t.format()}") from exc


def vector_value(value: object, t: SqlType) -> np.ndarray:
    """A dense vector value (a sequence or array of numbers) as a 1-D array of t's element type,
    checked as pgvector's input is: no NaN or infinity, t's dimensions if it has them."""
    dtype = t.vector_dtype
    if type(value) is np.ndarray and value.dtype == dtype:  # a binary parameter, as decoded
        vec = value  # (what `asarray` returns for it, without the error state's switch)
    else:
        with np.errstate(over="ignore"):  # an overflow is an infinity, reported just below
            vec = np.asarray(value, dtype=dtype)
    if vec.ndim != 1 or vec.size == 0 or not all_finite(vec):
        vec = check_vector_values(np.asarray(value, dtype=np.float64).reshape(-1),
                                  type_name=t.name)
    if t.typmod >= 0 and vec.size != t.typmod:
        raise DataException(f"expected {t.typmod} dimensions, not {vec.size}")
    return vec


def vector_scalar(vec: np.ndarray, t: SqlType) -> pa.Scalar:
    """A checked vector (`vector_value`) as an Arrow scalar of t's storage type, built on the
    array's own buffer (the list offsets of each size made once)."""
    arrow = t.to_arrow()
    vec = np.ascontiguousarray(vec)
    values = pa.Array.from_buffers(arrow.value_type, vec.size, [None, pa.py_buffer(vec)])
    if t.typmod >= 0:
        return pa.FixedSizeListArray.from_arrays(values, vec.size)[0]
    offsets = _LIST_OFFSETS.get(vec.size)
    if offsets is None:
        if len(_LIST_OFFSETS) >= 64:
            _LIST_OFFSETS.clear()
        offsets = _LIST_OFFSETS[vec.size] = pa.array([0, vec.size], pa.int32())
    return pa.ListArray.from_arrays(offsets, values)[0]


_LIST_OFFSETS: dict[int, pa.Array] = {}


class _PendingVector:
    """A bound vector parameter, checked, whose Arrow scalar is made only when an expression
    reads it (a vector top-k reads the array itself: `BoundParams.vector`)."""

    __slots__ = ("array", "type")

    def __init__(self, array: np.ndarray, t: SqlType) -> None:
        self.array, self.type = array, t


def checked_vector(array: np.ndarray, t: SqlType) -> object:
    """A dense vector parameter already checked as `vector_value` checks it (decoded by a
    front end that did: a binary vector's recv), bound as it is, not checked again."""
    return _PendingVector(array, t)


class BoundParams(list):
    """A statement's parameters as Arrow scalars of their types (what `$n` evaluates to).

    A dense vector parameter is kept as its checked NumPy array until something asks for the
    scalar: the top-k searches with the array, and building a list scalar of it costs more
    than the rest of binding."""

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        item = list.__getitem__(self, i)
        if type(item) is _PendingVector:
            item = vector_scalar(item.array, item.type)
            list.__setitem__(self, i, item)
        return item

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def copy(self) -> list:  # type: ignore[override]
        """A plain list of the parameters as scalars (list.copy would copy pending arrays)."""
        return list(self)

    def vector(self, i: int) -> np.ndarray | None:
        """Parameter `i` (0-based) as the checked array of a dense vector parameter not yet
        made a scalar, else None (read it as a scalar then)."""
        if not 0 <= i < len(self):
            return None
        item = list.__getitem__(self, i)
        return item.array if type(item) is _PendingVector else None


# Types whose values of this Python type `_one_value` packs directly (what bound parameters
# of single-row statements mostly are).
_FAST_SCALAR = {"int8": int, "int4": int, "int2": int, "float8": float, "text": str}
_PACKERS = {pa.int64().id: struct.Struct("<q"), pa.int32().id: struct.Struct("<i"),
            pa.int16().id: struct.Struct("<h"), pa.float64().id: struct.Struct("<d")}
_OFFSETS = struct.Struct("<ii")
_STRING_ID = pa.string().id


def _one_value(value: object, arrow: pa.DataType) -> pa.Array | None:
    """A one-row array of `value` built from its packed buffers; None when it does not fit
    (the caller's `pa.scalar` then reports it)."""
    packer = _PACKERS.get(arrow.id)
    try:
        if packer is not None:
            return pa.Array.from_buffers(arrow, 1, [None, pa.py_buffer(packer.pack(value))])
        if arrow.id != _STRING_ID:
            return None
        data = value.encode()  # type: ignore[attr-defined]
        return pa.Array.from_buffers(arrow, 1, [None, pa.py_buffer(_OFFSETS.pack(0, len(data))),
                                                pa.py_buffer(data)])
    except (struct.error, UnicodeEncodeError):
        return None


# Casts between types ---------------------------------------------------------------------------


def cast(value: Datum, source: SqlType, target: SqlType, n: int, explicit: bool = False) -> Datum:
    """Cast values of `source` type to `target` with PostgreSQL's rules and error codes.

    Explicit casts (`x::varchar(3)`) truncate strings to the target length; assignments
    raise 22001 instead."""
    if source == target or (source.name == target.name and target.typmod < 0):
        return value
    if target.name in STRING_TYPES and target.name not in ("uuid", "json", "jsonb"):
        out = to_text(value, source, n)
        if target.char_length is not None:
            out = _fit_length(out, target, explicit)
        return out
    if target.name in BIT_TYPES and source.name in BIT_TYPES | STRING_TYPES:
        return _cast_to_bits(value, source, target, explicit)
    if source.name in STRING_TYPES:
        return _cast_from_text(value, target)
    if target.is_sparse or source.is_sparse:
        return _cast_sparse(value, source, target, n)
    if target.is_vector:
        if source.is_array and source.element.name in _VECTOR_ARRAY_ELEMENTS or source.is_vector:
            return _cast_to_vector(value, target, n)
        raise _cannot_cast(source, target)
    if target.name.startswith("_") and source.name.startswith("_"):
        return _cast_array(value, source, target, n, explicit)
    if target.is_array and source.is_array and not is_string(source.element):
        try:
            return value.cast(target.to_arrow())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _cannot_cast(source, target) from None
    if target.is_array and source.is_vector:
        if source.name == "halfvec" and target.name != "_float4":
            raise _cannot_cast(source, target)  # pgvector casts halfvec to real[] only
        arr = as_array(value, n) if not is_scalar(value) else value
        return arr.cast(pa.list_(target.element.to_arrow())) if not is_scalar(arr) else \
            pa.scalar(arr.values.to_pylist() if arr.is_valid else None, target.to_arrow())
    if is_numeric(target) and (is_numeric(source) or source.name == "bool"):
        return _cast_numeric(value, source, target)
    if target.name == "bool" and source.name in ("int4", "int2", "int8"):
        return pc.not_equal(value, 0)
    if source.name in TEMPORAL and target.name in TEMPORAL:
        return _cast_temporal(value, target)
    if source.name == target.name:
        return value
    raise _cannot_cast(source, target)


def _cast_array(value: Datum, source: SqlType, target: SqlType, n: int, explicit: bool) -> Datum:
    """An array cast casts each element (`ARRAY['1','2']::int[]`,
    `ARRAY['[1,2]']::vector[]`) with the element types' own rules and errors."""
    if is_scalar(value):
        if not value.is_valid:
            return pa.scalar(None, target.to_arrow())
        return _cast_array(pa.array([value.as_py()], value.type), source, target, 1, explicit)[0]
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
    lengths = pc.fill_null(pc.list_value_length(value), 0).to_numpy(zero_copy_only=False)
    elements = pc.list_flatten(value)
    cast_elements = as_array(cast(elements, source.element, target.element, len(elements),
                                  explicit), len(elements))
    if isinstance(cast_elements, pa.ChunkedArray):
        cast_elements = cast_elements.combine_chunks()
    element_type = target.to_arrow().value_type
    if not cast_elements.type.equals(element_type):
        cast_elements = cast_elements.cast(element_type)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    mask = value.is_null() if value.null_count else None
    return pa.ListArray.from_arrays(offsets, cast_elements, type=target.to_arrow(), mask=mask)


def _cannot_cast(source: SqlType, target: SqlType) -> SqlVecError:
    return SqlVecError(f"cannot cast type {source.format()} to {target.format()}", sqlstate="42846")


def _fit_length(value: Datum, target: SqlType, explicit: bool) -> Datum:
    """varchar(n) / char(n): truncate (explicit cast) or refuse (assignment) longer strings;
    trailing spaces beyond n are dropped silently, as PostgreSQL does. char(n) pads."""
    limit = target.char_length
    too_long = pc.greater(pc.utf8_length(pc.utf8_rtrim(value, characters=" ")), limit)
    if not explicit and (too_long.as_py() if is_scalar(too_long) else pc.any(too_long).as_py()):
        raise SqlVecError(f"value too long for type {target.format()}", sqlstate="22001")
    value = pc.utf8_slice_codeunits(value, 0, limit)
    return pc.utf8_rpad(value, limit, " ") if target.name == "bpchar" else value


def _cast_numeric(value: Datum, source: SqlType, target: SqlType) -> Datum:
    if source.name == "bool":
        value, source = pc.cast(value, pa.int32()), INT4
    if target.name == "numeric":
        return fit_numeric(to_decimal(value, source), target)
    if target.name in INT_DIGITS and source.name in ("float4", "float8", "numeric"):
        # PostgreSQL rounds to the nearest integer: half to even for floats, away from zero
        # for numeric.
        value = pc.round(value, round_mode="half_to_even" if source.name != "numeric"
                         else "half_towards_infinity")
    try:
        out = pc.cast(value, target.to_arrow(), safe=True)
        if target.name == "float4" and source.name == "float8":
            check_float(out, (value,), (value,))
        return out
    except (pa.ArrowInvalid, OverflowError):
        if target.name in INT_DIGITS:
            raise NumericValueOutOfRange(f"{_INT_NAMES[target.name]} out of range") from None
        raise NumericValueOutOfRange(f"value out of range for type {target.format()}") from None


# Numeric: Arrow decimals whose scale is PostgreSQL's display scale where the type knows it ---

INT_DIGITS = {"int2": 5, "int4": 10, "int8": 19}
# Values of each integer type lie in [-bound, bound).
INT_BOUND = {"int2": 1 << 15, "int4": 1 << 31, "int8": 1 << 63}
_INT_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
# float → numeric keeps 15 significant digits in PostgreSQL (DBL_DIG); this many decimals do.
_FLOAT_SCALE = 15


def numeric_scale(t: SqlType) -> int | None:
    """The display scale of a numeric type: its typmod's, an integer's 0, else None."""
    if t.name in INT_DIGITS:
        return 0
    ps = t.numeric_precision_scale
    return ps[1] if ps else None


def numeric_with_scale(scale: int | None) -> SqlType:
    """numeric carrying a display scale (unconstrained when the scale is unknown)."""
    if scale is None:
        return NUMERIC
    return SqlType.of("numeric", 38, min(scale, 37))


# Float range checks: PostgreSQL's float8in/float4in and check_float8_val ------------------------


def anywhere(mask: Datum) -> bool:
    """Whether a boolean datum (array or scalar) is true anywhere (NULLs are not)."""
    if is_scalar(mask):
        return bool(mask.as_py())
    return bool(pc.any(mask).as_py())


def check_float(out: Datum, finite: tuple = (), nonzero: tuple | None = None,
                finite_for_zero: tuple = ()) -> Datum:
    """`out`, a float result, unless it overflowed or underflowed (22003), as PostgreSQL's
    float operators check theirs: an infinite result from `finite` inputs is
    "value out of range: overflow"; with `nonzero` given, a zero result from inputs in
    `nonzero` that are not zero and `finite_for_zero` that are finite is "... underflow"."""
    if anywhere(pc.is_inf(out)):
        mask = pc.is_inf(out)
        for x in finite:
            mask = pc.and_(mask, pc.invert(pc.is_inf(x)))
        if anywhere(mask):
            raise NumericValueOutOfRange("value out of range: overflow")
    if nonzero is not None and anywhere(pc.equal(out, 0)):
        mask = pc.equal(out, 0)
        for x in nonzero:
            mask = pc.and_(mask, pc.not_equal(x, 0))
        for x in finite_for_zero:
            mask = pc.and_(mask, pc.invert(pc.is_inf(x)))
        if anywhere(mask):
            raise NumericValueOutOfRange("value out of range: underflow")
    return out


def numeric_from_float(out: Datum) -> Datum:
    """A float result of a numeric function as numeric: an infinite one is 22003, as
    PostgreSQL's numeric says of a result beyond its range."""
    if anywhere(pc.is_inf(out)):
        raise NumericValueOutOfRange("value overflows numeric format")
    return to_decimal(out, FLOAT8)


_FLOAT_SPECIAL = r"^\s*[+-]?(inf|infinity|nan)\s*$"
_NONZERO_MANTISSA = r"^[^eE]*[1-9]"


def check_float_input(text: Datum, out: Datum, target: SqlType) -> Datum:
    """`out`, floats parsed from `text`, unless a number was out of the type's range: infinite
    though not spelled so, or zero though its digits are not (22003, naming the text)."""
    bad = pc.and_(pc.is_inf(out), pc.invert(pc.match_substring_regex(
        text, _FLOAT_SPECIAL, ignore_case=True)))
    if anywhere(pc.equal(out, 0)):
        bad = pc.or_(bad, pc.and_(pc.equal(out, 0),
                                  pc.match_substring_regex(text, _NONZERO_MANTISSA)))
    if anywhere(bad):
        first = text.as_py() if is_scalar(text) else \
            text.filter(pc.fill_null(bad, False))[0].as_py()
        kind = "real" if target.name == "float4" else "double precision"
        raise NumericValueOutOfRange(f'"{first}" is out of range for type {kind}')
    return out


def to_decimal(value: Datum, source: SqlType) -> Datum:
    """Numbers of any numeric type as an Arrow decimal (exact for integers and numerics)."""
    if source.name in INT_DIGITS:
        return pc.cast(value, pa.decimal128(INT_DIGITS[source.name], 0))
    if source.name in ("float4", "float8"):
        finite = pc.is_finite(value)
        if not (finite.as_py() is not False if is_scalar(finite)
                else pc.all(finite, skip_nulls=True).as_py() is not False):
            raise FeatureNotSupported("NaN and infinite values of type numeric are not supported")
        try:
            return pc.cast(value, pa.decimal256(76, _FLOAT_SCALE))
        except pa.ArrowInvalid:
            raise NumericValueOutOfRange("numeric field overflow") from None
    return value


def decimal_scalar(value: decimal.Decimal) -> pa.Scalar:
    """An exact Arrow decimal scalar of a Python Decimal (its own precision and scale)."""
    if not value.is_finite():
        raise FeatureNotSupported("NaN and infinite values of type numeric are not supported")
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -exponent)
    if scale > 60:
        value, scale = value.quantize(decimal.Decimal(1).scaleb(-60),
                                      context=decimal.Context(prec=200)), 60
        digits = value.as_tuple().digits
    precision = max(len(digits) + max(exponent, 0), scale, 1)
    if precision > 76:
        raise NumericValueOutOfRange("value overflows numeric format")
    arrow = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    return pa.scalar(value, arrow)


def decimal_unscaled(values: pa.Array) -> tuple[np.ndarray, int]:
    """A decimal array's unscaled integers as int64 (exact; 22003 beyond 18 digits)."""
    scale = values.type.scale
    try:
        narrow = pc.cast(values, pa.decimal128(18, scale))
    except pa.ArrowInvalid:
        raise NumericValueOutOfRange("value overflows numeric format") from None
    words = np.frombuffer(narrow.buffers()[1], dtype=np.int64)
    start = narrow.offset * 2
    return words[start:start + 2 * len(narrow):2].copy(), scale


def decimal_from_unscaled(unscaled: np.ndarray, scale: int) -> pa.Array:
    """Decimals (38, scale) from unscaled int64 values (two's complement into 128 bits)."""
    words = np.empty((unscaled.size, 2), np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(38, scale), unscaled.size,
                                 [None, pa.py_buffer(words.tobytes())])


def to_storage(value: Datum, t: SqlType) -> Datum:
    """Values of type `t` in t's Arrow storage type. Unconstrained numerics carry any decimal
    scale while they are computed; stored or combined they take the storage scale."""
    arrow = t.to_arrow()
    if value.type == arrow:
        return value
    if t.name == "numeric" and pa.types.is_decimal(value.type):
        return fit_numeric(value, t)
    return value.cast(arrow)


def fit_numeric(value: Datum, target: SqlType) -> Datum:
    """A decimal rounded (half away from zero) to `target`'s scale and checked against its
    precision: PostgreSQL's numeric(p, s) input and assignment rule (22003 on overflow)."""
    arrow = target.to_arrow()
    if value.type == arrow:
        return value
    if value.type.scale > arrow.scale:
        value = pc.round(value, ndigits=arrow.scale, round_mode="half_towards_infinity")
    try:
        return pc.cast(value, arrow, safe=True)
    except (pa.ArrowInvalid, OverflowError):
        ps = target.numeric_precision_scale
        detail = None
        if ps is not None:
            p, s = ps
            detail = (f"A field with precision {p}, scale {s} must round to an absolute value "
                      f"less than {'1' if p == s else f'10^{p - s}'}.")
        raise NumericValueOutOfRange("numeric field overflow", detail=detail) from None


def _cast_temporal(value: Datum, target: SqlType) -> Datum:
    arrow = target.to_arrow()
    try:
        return pc.cast(value, arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if target.name == "date":
            return pc.cast(pc.cast(value, pa.timestamp("us")), pa.date32())
        raise


def _cast_from_text(value: Datum, target: SqlType) -> Datum:
    if is_scalar(value):
        if not value.is_valid:
            return pa.scalar(None, target.to_arrow())
        return scalar_of(parse_text(value.as_py(), target), target)
    arr = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    if target.name in ("int2", "int4", "int8", "float4", "float8", "date", "numeric"):
        try:
            if target.name == "numeric":  # parse wide, then round to the column's scale
                return fit_numeric(pc.cast(pc.utf8_trim_whitespace(arr),
                                           pa.decimal256(76, 30)), target)
            out = pc.cast(pc.utf8_trim_whitespace(arr), target.to_arrow())
            if target.name in ("float4", "float8"):
                check_float_input(arr, out, target)
            return out
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # fall back to the exact PostgreSQL input rules for the error message
    values = [None if v is None else parse_text(v, target) for v in arr.to_pylist()]
    if target.is_sparse:
        return pa.array(values, SPARSEVEC_ARROW)
    if target.is_vector:
        return _vectors_from_lists(values, target)
    if target.name == "numeric":
        return pa.array([None if v is None else fit_numeric(decimal_scalar(v), target).as_py()
                         for v in values], target.to_arrow())
    try:
        return pa.array(values, target.to_arrow())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise NumericValueOutOfRange(str(exc)) from exc


def _cast_sparse(value: Datum, source: SqlType, target: SqlType, n: int) -> Datum:
    """pgvector's casts to and from sparsevec: sparsevec(n) checks dimensions; vector and
    halfvec become sparse (implicitly) and back (by assignment); arrays become sparse through
    the vector of their elements."""
    scalar = is_scalar(value)
    rows = 1 if scalar else n
    if scalar:
        if not value.is_valid:
            return pa.scalar(None, target.to_arrow())
        value = pa.array([value.as_py()], value.type)
    if source.is_sparse:
        sparse = to_sparse_rows(value, rows)
        present = sparse.dims if sparse.valid is None else sparse.dims[sparse.valid]
        if target.is_sparse:
            bad = present[present != target.typmod] if target.typmod >= 0 else present[:0]
            if bad.size:
                check_sparsevec_typmod(int(bad[0]), target.typmod)
            out: pa.Array = value
        elif target.is_vector:
            if present.size and int(present.max()) > VECTOR_MAX_DIM:
                raise SqlVecError(f"{target.name} cannot have more than {VECTOR_MAX_DIM} "
                                  "dimensions", sqlstate="54000")
            bad = present[present != target.typmod] if target.typmod >= 0 else present[:0]
            if bad.size:
                raise DataException(f"expected {target.typmod} dimensions, not {int(bad[0])}")
            flat, offsets = sparse_to_flat(sparse)
            if target.name == "halfvec":
                with np.errstate(over="ignore"):
                    half = flat.astype(np.float16)
                if np.isinf(half).any():
                    bad = float(flat[np.isinf(half)][0])
                    raise NumericValueOutOfRange(
                        f'"{format_shortest(bad, single=True)}" is out of range for type halfvec')
            mask = None if sparse.valid is None else pa.array(~sparse.valid)
            child = pa.array(flat.astype(target.vector_dtype))
            if target.typmod >= 0:
                out = pa.FixedSizeListArray.from_arrays(child, target.typmod, mask=mask)
            else:
                out = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), child,
                                               mask=mask)
        else:
            raise _cannot_cast(source, target)
    elif source.is_array and source.element.name in _VECTOR_ARRAY_ELEMENTS:
        out = sparse_to_arrow(_sparse_from_arrays(value, target))
    elif source.is_vector:
        matrix, valid = to_numpy_vectors(value, rows)
        if target.typmod >= 0 and matrix.shape[1] != target.typmod and len(value):
            raise DataException(f"expected {target.typmod} dimensions, not {matrix.shape[1]}")
        out = sparse_to_arrow(sparse_from_dense(matrix, valid))
    else:
        raise _cannot_cast(source, target)
    return out[0] if scalar else out


def _sparse_from_arrays(value: pa.Array | pa.ChunkedArray, target: SqlType) -> SparseRows:
    """pgvector's array_to_sparsevec for a column of arrays: each element narrowed to float
    (NaN and infinities refused), zeros dropped, positions as indices."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
    valid = value.is_valid().to_numpy(zero_copy_only=False) if value.null_count else None
    lengths = pc.fill_null(pc.list_value_length(value), 0).to_numpy(zero_copy_only=False)
    live = lengths if valid is None else lengths[valid]
    if (live == 0).any():
        raise DataException("sparsevec must have at least 1 dimension")
    if target.typmod >= 0 and (live != target.typmod).any():
        raise DataException(f"expected {target.typmod} dimensions, "
                            f"not {int(live[live != target.typmod][0])}")
    elements = pc.list_flatten(value)
    if elements.null_count:
        raise SqlVecError("array must not contain nulls", sqlstate="22004")
    wide = elements.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if np.isnan(wide).any():
        raise DataException("NaN not allowed in sparsevec")
    with np.errstate(over="ignore"):
        single = wide.astype(np.float32)
    if np.isinf(single).any():
        raise DataException("infinite value not allowed in sparsevec")
    starts = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.repeat(np.arange(lengths.size), lengths)
    keep = single != 0
    kept = np.bincount(rows[keep], minlength=lengths.size)
    positions = np.arange(single.size) - starts[:-1][rows]
    return SparseRows(lengths, np.concatenate([[0], np.cumsum(kept)]), positions[keep] + 1,
                      single[keep], valid)


def _vectors_from_lists(values: list, target: SqlType) -> pa.Array:
    return pa.array(values, target.to_arrow())


def _cast_to_vector(value: Datum, target: SqlType, n: int) -> Datum:
    if is_scalar(value):
        if not value.is_valid:
            return pa.scalar(None, target.to_arrow())
        vals = _vector_elements(np.asarray(value.values.to_numpy(zero_copy_only=False),
                                           dtype=np.float64), target.name)
        if target.typmod >= 0 and vals.size != target.typmod:
            raise DataException(f"expected {target.typmod} dimensions, not {vals.size}")
        return scalar_of(vals.tolist(), target)
    if len(value) == 0:  # no rows: no dimensions to check (the matrix would be 0 x 0)
        return pa.array([], target.to_arrow())
    matrix, valid = to_numpy_vectors(value, n)
    checked = _vector_elements(matrix if matrix.size else np.zeros(1, np.float32),
                               target.name, matrix.shape[1])
    if target.typmod >= 0 and matrix.shape[1] != target.typmod:
        raise DataException(f"expected {target.typmod} dimensions, not {matrix.shape[1]}")
    return vectors_to_arrow(checked.reshape(matrix.shape) if matrix.size else matrix, valid,
                            target.vector_dtype)


def parse_bits(text: str, target: SqlType) -> str:
    """PostgreSQL's bit_in / varbit_in: '0' and '1' only (22P02 naming the first other
    character), then the length the typmod demands (22026; 22001 for a varbit too long)."""
    bad = next((ch for ch in text if ch not in "01"), None)
    if bad is not None:
        raise SqlVecError(f'"{bad}" is not a valid binary digit', sqlstate="22P02")
    return _fit_bits(text, target, explicit=False)


def _fit_bits(bits: str, target: SqlType, explicit: bool) -> str:
    """A bit string at the length of bit(n) / varbit(n): an explicit cast pads with zeros (bit)
    or truncates; an assignment refuses any other length (22026), as PostgreSQL does."""
    n = target.typmod
    if n < 0 or len(bits) == n or target.name == "varbit" and len(bits) <= n:
        return bits
    if explicit:
        return bits[:n] if len(bits) > n or target.name == "varbit" else bits.ljust(n, "0")
    if target.name == "varbit":
        raise SqlVecError(f"bit string too long for type bit varying({n})", sqlstate="22001")
    raise SqlVecError(f"bit string length {len(bits)} does not match type bit({n})",
                      sqlstate="22026")


def _cast_to_bits(value: Datum, source: SqlType, target: SqlType, explicit: bool) -> Datum:
    def one(bits: str | None) -> str | None:
        if bits is None:
            return None
        if source.name in BIT_TYPES:
            return _fit_bits(bits, target, explicit)
        return _fit_bits(parse_bits(bits, SqlType(target.name)), target, explicit)
    if is_scalar(value):
        return pa.scalar(one(value.as_py()), pa.string())
    if source.name in BIT_TYPES and target.typmod < 0:
        return value
    return pa.array([one(v) for v in value.to_pylist()], pa.string())


# Array element types pgvector casts to vector and halfvec (array_to_vector, array_to_halfvec).
_VECTOR_ARRAY_ELEMENTS = {"int4", "float4", "float8", "numeric"}


def _vector_elements(values: np.ndarray, type_name: str, dims: int | None = None) -> np.ndarray:
    """Elements cast to a vector type, checked as pgvector checks them: each is first narrowed to
    float (an infinite float is 'not allowed'), then to half for halfvec (an overflow is 'out of
    range')."""
    if dims is not None and dims > VECTOR_MAX_DIM:
        raise SqlVecError(f"{type_name} cannot have more than {VECTOR_MAX_DIM} dimensions",
                          sqlstate="54000")
    if type_name != "halfvec":
        return check_vector_values(values)
    with np.errstate(over="ignore"):
        single = np.asarray(values, dtype=np.float64).astype(np.float32)
    return check_vector_values(single, single, "halfvec")


# Value → text (output functions, casts to text, string concatenation) --------------------------


def to_text(value: Datum, source: SqlType, n: int) -> Datum:
    """PostgreSQL's text output of values of `source` type (as an Arrow string datum)."""
    name = source.name
    if name == "bool":  # the cast to text spells it out (output format is t/f)
        return pc.if_else(value, "true", "false")
    if name == "bpchar":  # char(n) loses its padding when it becomes text
        return pc.utf8_rtrim(value, characters=" ")
    if name in STRING_TYPES:
        return value.cast(pa.string()) if not is_scalar(value) else pa.scalar(value.as_py(), pa.string())
    if is_scalar(value):
        py = value.as_py()
        return pa.scalar(None if py is None else format_value(py, source), pa.string())
    arr = value
    if name in ("int2", "int4", "int8", "oid", "xid", "cid"):
        return pc.cast(arr, pa.string())
    if name == "tid":
        return tid_text(arr)
    return pa.array([None if v is None else format_value(v, source) for v in arr.to_pylist()],
                    pa.string())


def output_text(value: Datum, source: SqlType, n: int) -> Datum:
    """A value as its type's output function writes it (concat, format): as `to_text`, but
    char(n) keeps its padding (only the cast to text drops it)."""
    if source.name == "bpchar":
        return value
    return to_text(value, source, n)


def format_value(value: object, t: SqlType) -> str:
    """One Python value in PostgreSQL's text output format."""
    name = t.name
    if name in ("int2vector", "oidvector"):  # catalog vectors: `1 2 3`
        return " ".join(str(v) for v in value)
    if name == "bool":
        return "t" if value else "f"
    if name in ("float4", "float8"):
        return format_float(float(value), name == "float4")
    if name == "numeric":
        d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
        if t.typmod < 0:
            d = _normalize_decimal(d)
        return format(d, "f")
    if t.is_vector:
        return format_vector(np.asarray(value, dtype=np.float32))
    if t.is_sparse:
        return format_sparsevec(value)
    if name == "bytea":
        return "\\x" + bytes(value).hex()
    if name == "date":
        return value.isoformat()
    if name == "timestamp":
        return value.isoformat(sep=" ")
    if name == "timestamptz":
        return value.astimezone(dt.timezone.utc).isoformat(sep=" ").replace("+00:00", "+00")
    if name == "time":
        return value.isoformat()
    if name == "interval":
        return format_interval(value)
    if name == "tid":
        return "({},{})".format(*tid_unpack(value))
    if t.is_array:
        return format_array(value, t.element)
    if name == "record" and isinstance(value, dict):
        return format_record(value, t)
    return str(value)


def format_record(value: dict, t: SqlType) -> str:
    """record_out: `(5,"a b",)`, a field quoted when empty or holding `"\\(),` or white space
    (quotes and backslashes doubled inside), NULL as nothing."""
    parts = []
    for key, ft in record_fields(t):
        item = value.get(key)
        if item is None:
            parts.append("")
            continue
        text = item if isinstance(item, str) else format_value(item, ft)
        if text == "" or any(ch in '"\\(),' or ch.isspace() for ch in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
        parts.append(text)
    return "(" + ",".join(parts) + ")"


def _normalize_decimal(d: decimal.Decimal) -> decimal.Decimal:
    if d == d.to_integral_value():
        return d.quantize(decimal.Decimal(1))
    return d.normalize()


def format_float(x: float, single: bool = False) -> str:
    """float8/float4 output: shortest round-trip text, PostgreSQL's spellings of specials."""
    return format_shortest(x, single)


def format_interval(value: object) -> str:
    """PostgreSQL's `postgres` interval style: `1 year 2 mons -3 days 04:05:06.5`."""
    if isinstance(value, pa.MonthDayNano) or hasattr(value, "months"):
        months, days, nanos = value.months, value.days, value.nanoseconds
    else:  # pragma: no cover
        months, days, nanos = 0, 0, int(value.total_seconds() * 1e9)
    years = int(months / 12)
    mons = months - years * 12
    parts = [f"{n} {unit}{'' if n == 1 else 's'}"
             for n, unit in ((years, "year"), (mons, "mon"), (days, "day")) if n]
    micros = nanos // 1000 if nanos >= 0 else -((-nanos) // 1000)
    if micros or not parts:
        sign = "-" if micros < 0 else ("+" if parts and parts[-1].startswith("-") else "")
        h, rem = divmod(abs(micros), 3_600_000_000)
        m, rem = divmod(rem, 60_000_000)
        sec, us = divmod(rem, 1_000_000)
        fraction = f".{us:06d}".rstrip("0") if us else ""
        parts.append(f"{sign}{h:02d}:{m:02d}:{sec:02d}{fraction}")
    return " ".join(parts)


def format_array(values: list, element: SqlType) -> str:
    """Array output as PostgreSQL's array_out writes it: elements quoted when they need it, NULL
    bare."""
    items = []
    for v in values:
        if v is None:
            items.append("NULL")
            continue
        text = format_value(v, element)
        if text == "" or re.search(r'[{},"\\\s]', text) or text.upper() == "NULL":
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        items.append(text)
    return "{" + ",".join(items) + "}"


def text_of_literal_type(text: str, target: SqlType) -> pa.Scalar:
    """A string literal read as `target` (`'1'::int`, `DATE '...'`): text input of that type, as a
    scalar."""
    return scalar_of(parse_text(text, target), target)


def typed_params(types: list[SqlType], params: list) -> BoundParams:
    """Decoded parameter values as Arrow scalars of their statement's parameter types
    (text values of other types are parsed with the type's input rules)."""
    if len(params) < len(types):
        raise SqlVecError(
            f"bind message supplies {len(params)} parameters, but prepared statement requires "
            f"{len(types)}", sqlstate="08P01")
    out = BoundParams()
    for i, value in enumerate(params):
        t = types[i] if i < len(types) else TEXT
        if isinstance(value, str) and "\0" in value:  # as the wire refuses it (decode_utf8)
            raise invalid_byte_sequence(value.encode(), value.encode().find(b"\0"))
        if type(value) is _PendingVector:  # (`checked_vector`)
            out.append(value if value.type is t else
                       _PendingVector(vector_value(value.array, t), t))
        elif isinstance(value, pa.Scalar):
            out.append(value)
        elif isinstance(value, (np.ndarray, list)) and t.is_vector:
            out.append(_PendingVector(vector_value(value, t), t))
        elif isinstance(value, str) and t.name not in ("text", "varchar", "bpchar", "name", "unknown"):
            out.append(scalar_of(parse_text(value, t), t))
        else:
            out.append(scalar_of(value, t))
    return out


# numeric's binary form (numeric_send / numeric_recv): ndigits, weight, sign, dscale.
NUMERIC_HEADER = struct.Struct("!hhHh")
NUMERIC_POS, NUMERIC_NEG, NUMERIC_NAN = 0x0000, 0x4000, 0xC000
NUMERIC_PINF, NUMERIC_NINF = 0xD000, 0xF000


def encode_numeric(d: decimal.Decimal) -> bytes:
    """numeric_send: base-10000 digits with weight (of the first digit) and display scale."""
    if d.is_nan():
        return NUMERIC_HEADER.pack(0, 0, NUMERIC_NAN, 0)
    if d.is_infinite():
        return NUMERIC_HEADER.pack(0, 0, NUMERIC_NINF if d < 0 else NUMERIC_PINF, 0)
    sign, digit_tuple, exponent = d.as_tuple()
    digits = "".join(map(str, digit_tuple))
    exponent = int(exponent)
    dscale = max(0, -exponent)
    if exponent > 0:
        digits += "0" * exponent
        exponent = 0
    frac = -exponent
    digits += "0" * ((4 - frac % 4) % 4)
    frac += (4 - frac % 4) % 4
    int_len = len(digits) - frac
    if int_len < 0:
        digits = "0" * -int_len + digits
        int_len = 0
    pad = (4 - int_len % 4) % 4
    digits = "0" * pad + digits
    int_len += pad
    groups = [int(digits[i:i + 4]) for i in range(0, len(digits), 4)]
    weight = int_len // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return NUMERIC_HEADER.pack(len(groups), weight, NUMERIC_NEG if sign else NUMERIC_POS,
                               dscale) + struct.pack(f"!{len(groups)}H", *groups)
