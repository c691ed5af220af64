"""SQL type identity: one place that ties a SQL type to its Arrow type and its pg_type row.

A `SqlType` is a type name plus a type modifier (`vector(3)`, `varchar(10)`, `numeric(10,2)`),
exactly what PostgreSQL stores in `pg_attribute.atttypid` / `atttypmod`. Everything else —
the Arrow storage type, the OID the wire sends, the name `format_type()` prints — is derived from it.

`vector(n)` is stored as `fixed_size_list<float32>[n]`; an undimensioned `vector` column is
`list<float32>`. The vector text form (`[1,2,3]`) is parsed and printed here with pgvector's error
messages, because the storage layer, the SQL layer and the wire all need it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pyarrow as pa

from sqlvec.errors import (
    DataException,
    InvalidParameterValue,
    InvalidTextRepresentation,
    SqlVecError,
    UndefinedObject,
    invalid_byte_sequence,
)


def decode_utf8(data: bytes | memoryview) -> str:
    """Text from a client's bytes, checked as PostgreSQL checks them (22021 for invalid UTF-8
    and for a NUL byte, which its text values cannot hold)."""
    data = bytes(data)
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        nul = data.find(b"\0", 0, exc.start)
        raise invalid_byte_sequence(data, exc.start if nul < 0 else nul) from None
    if "\0" in text:
        raise invalid_byte_sequence(data, data.find(b"\0"))
    return text


# The fixed OIDs of pgvector's types here. In PostgreSQL they depend on when the extension was
# created; clients look them up by name in pg_type, so any stable value above the built-in range
# works. 16385 keeps clear of the built-in catalog (< 16384 is reserved for it).
VECTOR_OID = 16385
VECTOR_ARRAY_OID = 16386
HALFVEC_OID = 16397
HALFVEC_ARRAY_OID = 16398
SPARSEVEC_OID = 16340
SPARSEVEC_ARRAY_OID = 16341

VECTOR_MAX_DIM = 16000
# pgvector's sparsevec limits: dimensions and stored (non-zero) elements.
SPARSEVEC_MAX_DIM = 1_000_000_000
SPARSEVEC_MAX_NNZ = 16000

# pgvector's dense vector types and the element type each stores (halfvec: IEEE half precision).
VECTOR_DTYPES: dict[str, type] = {"vector": np.float32, "halfvec": np.float16}
# PostgreSQL's bit string types; typmod is the length (bit(n): exactly n, varbit(n): at most n).
BIT_TYPES = frozenset({"bit", "varbit"})


@dataclass(frozen=True)
class TypeInfo:
    """A pg_type row as far as clients care: identity, size and how psql names it."""

    typname: str
    oid: int
    array_oid: int
    typlen: int
    category: str  # pg_type.typcategory
    display: str  # format_type() without modifiers


_TYPES: tuple[TypeInfo, ...] = (
    TypeInfo("bool", 16, 1000, 1, "B", "boolean"),
    TypeInfo("bytea", 17, 1001, -1, "U", "bytea"),
    TypeInfo("char", 18, 1002, 1, "Z", '"char"'),
    TypeInfo("name", 19, 1003, 64, "S", "name"),
    TypeInfo("int8", 20, 1016, 8, "N", "bigint"),
    TypeInfo("int2", 21, 1005, 2, "N", "smallint"),
    TypeInfo("int4", 23, 1007, 4, "N", "integer"),
    TypeInfo("regproc", 24, 1008, 4, "N", "regproc"),
    TypeInfo("text", 25, 1009, -1, "S", "text"),
    TypeInfo("oid", 26, 1028, 4, "N", "oid"),
    # System column types (ctid, xmin/xmax, cmin/cmax): tid is (block, offset), the others
    # unsigned 32-bit like oid.
    TypeInfo("tid", 27, 1010, 6, "U", "tid"),
    TypeInfo("xid", 28, 1011, 4, "U", "xid"),
    TypeInfo("cid", 29, 1012, 4, "U", "cid"),
    TypeInfo("json", 114, 199, -1, "U", "json"),
    TypeInfo("float4", 700, 1021, 4, "N", "real"),
    TypeInfo("float8", 701, 1022, 8, "N", "double precision"),
    TypeInfo("unknown", 705, 0, -2, "X", "unknown"),
    TypeInfo("bpchar", 1042, 1014, -1, "S", "character"),
    TypeInfo("varchar", 1043, 1015, -1, "S", "character varying"),
    TypeInfo("date", 1082, 1182, 4, "D", "date"),
    TypeInfo("time", 1083, 1183, 8, "D", "time without time zone"),
    TypeInfo("timestamp", 1114, 1115, 8, "D", "timestamp without time zone"),
    TypeInfo("timestamptz", 1184, 1185, 8, "D", "timestamp with time zone"),
    TypeInfo("interval", 1186, 1187, 16, "T", "interval"),
    TypeInfo("numeric", 1700, 1231, -1, "N", "numeric"),
    TypeInfo("regclass", 2205, 2210, 4, "N", "regclass"),
    TypeInfo("regtype", 2206, 2211, 4, "N", "regtype"),
    TypeInfo("regprocedure", 2202, 2207, 4, "N", "regprocedure"),
    TypeInfo("regnamespace", 4089, 4090, 4, "N", "regnamespace"),
    TypeInfo("regrole", 4096, 4097, 4, "N", "regrole"),
    TypeInfo("uuid", 2950, 2951, 16, "U", "uuid"),
    TypeInfo("jsonb", 3802, 3807, -1, "U", "jsonb"),
    TypeInfo("jsonpath", 4072, 4073, -1, "U", "jsonpath"),
    TypeInfo("vector", VECTOR_OID, VECTOR_ARRAY_OID, -1, "U", "vector"),
    TypeInfo("halfvec", HALFVEC_OID, HALFVEC_ARRAY_OID, -1, "U", "halfvec"),
    TypeInfo("sparsevec", SPARSEVEC_OID, SPARSEVEC_ARRAY_OID, -1, "U", "sparsevec"),
    # PostgreSQL's bit strings (pgvector's binary vectors), stored as text of '0' and '1'.
    TypeInfo("bit", 1560, 1561, -1, "V", "bit"),
    TypeInfo("varbit", 1562, 1563, -1, "V", "bit varying"),
    TypeInfo("record", 2249, 2287, -1, "P", "record"),
    # Catalog vectors (pg_index.indkey, pg_proc.proargtypes): arrays printed space-separated.
    TypeInfo("int2vector", 22, 1006, -1, "A", "int2vector"),
    TypeInfo("oidvector", 30, 1013, -1, "A", "oidvector"),
)

_VECTOR_ELEMENTS = {"int2vector": "int2", "oidvector": "oid"}

# Array types: `_<element>` as in pg_type, stored as Arrow list<element>.
_ARRAYS: tuple[TypeInfo, ...] = tuple(
    TypeInfo("_" + t.typname, t.array_oid, 0, -1, "A", t.display + "[]")
    for t in _TYPES if t.array_oid
)
_TYPES = _TYPES + _ARRAYS

TYPES_BY_NAME: dict[str, TypeInfo] = {t.typname: t for t in _TYPES}
TYPES_BY_OID: dict[int, TypeInfo] = {t.oid: t for t in _TYPES}

# Spellings users write, mapped to the pg_type name they mean.
ALIASES: dict[str, str] = {
    "boolean": "bool",
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "float": "float8",
    "decimal": "numeric",
    "character varying": "varchar",
    "character": "bpchar",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "serial": "int4",
    "bigserial": "int8",
    "smallserial": "int2",
    "bit varying": "varbit",
}

# Default scale for an unconstrained `numeric`: Arrow decimals need a fixed scale, so values
# are kept at this scale and printed without trailing zeros (typmod -1 tells the printer).
UNCONSTRAINED_NUMERIC = (38, 12)


@dataclass(frozen=True)
class SqlType:
    """A column or expression type: pg_type name plus typmod (-1 when there is none).

    typmod follows PostgreSQL: varchar(n) → n + 4, numeric(p, s) → ((p << 16) | s) + 4,
    timestamp(p) → p, vector(n) → n (pgvector stores the dimension count as is).
    """

    name: str
    typmod: int = -1

    def __post_init__(self) -> None:
        if self.name not in TYPES_BY_NAME:
            raise UndefinedObject(f'type "{self.name}" does not exist')

    # Construction -----------------------------------------------------------------------

    @classmethod
    def of(cls, name: str, *modifiers: int) -> SqlType:
        """Build from a spelling as written in SQL: `SqlType.of("varchar", 10)`."""
        key = " ".join(name.lower().split())
        key = ALIASES.get(key, key)
        if key not in TYPES_BY_NAME:
            raise UndefinedObject(f'type "{name}" does not exist')
        return cls(key, _typmod_for(key, modifiers))

    @classmethod
    def parse(cls, text: str) -> SqlType:
        """Parse a simple spelling such as `vector(3)`, `varchar(10)`, `numeric(10, 2)`."""
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z_0-9 ]*?)\s*(?:\(\s*([\d\s,]+)\))?\s*", text)
        if m is None:
            raise UndefinedObject(f'type "{text}" does not exist')
        mods = tuple(int(x) for x in m.group(2).split(",")) if m.group(2) else ()
        return cls.of(m.group(1), *mods)

    @classmethod
    def vector(cls, dims: int | None = None) -> SqlType:
        """The type vector(dims), or undimensioned vector; out-of-range dimensions fail as
        pgvector's do."""
        return cls("vector", -1 if dims is None else check_vector_dims(dims))

    # Identity ---------------------------------------------------------------------------

    @property
    def info(self) -> TypeInfo:
        return TYPES_BY_NAME[self.name]

    @property
    def oid(self) -> int:
        return self.info.oid

    @property
    def is_vector(self) -> bool:
        """pgvector's dense types: vector (float32 elements) and halfvec (float16)."""
        return self.name in VECTOR_DTYPES

    @property
    def is_sparse(self) -> bool:
        """pgvector's sparsevec: dimension count plus sorted 1-based indices and float values of
        the non-zero elements (stored as `SPARSEVEC_ARROW`, never densified)."""
        return self.name == "sparsevec"

    @property
    def vector_dtype(self) -> type:
        """The NumPy element type a dense pgvector type stores: float32 or float16."""
        return VECTOR_DTYPES[self.name]

    @property
    def is_array(self) -> bool:
        return self.name.startswith("_") or self.name in _VECTOR_ELEMENTS

    @property
    def element(self) -> SqlType:
        """The element type of an array type."""
        if self.name in _VECTOR_ELEMENTS:
            return SqlType(_VECTOR_ELEMENTS[self.name])
        return SqlType(self.name[1:], self.typmod if self.name == "_record" else -1)

    def array_of(self) -> SqlType:
        """The array type of this element type (typmod kept only for record shapes)."""
        return SqlType("_" + self.name, self.typmod if self.name == "record" else -1)

    @property
    def dims(self) -> int | None:
        """The dimension count of `vector(n)`, or None for an undimensioned vector."""
        if not self.is_vector and not self.is_sparse:
            raise TypeError(f"{self.name} has no dimensions")
        return None if self.typmod < 0 else self.typmod

    @property
    def char_length(self) -> int | None:
        """varchar(n) / char(n): n, else None."""
        if self.name in ("varchar", "bpchar") and self.typmod >= 4:
            return self.typmod - 4
        return None

    @property
    def numeric_precision_scale(self) -> tuple[int, int] | None:
        """(precision, scale) of numeric(p, s), or None for unconstrained numeric."""
        if self.name == "numeric" and self.typmod >= 4:
            raw = self.typmod - 4
            return raw >> 16, raw & 0xFFFF
        return None

    def format(self) -> str:
        """What PostgreSQL's format_type(oid, typmod) prints."""
        base = self.info.display
        if self.typmod < 0:
            return base
        if self.name in ("varchar", "bpchar"):
            return f"{base}({self.typmod - 4})"
        if self.name == "numeric":
            p, s = self.numeric_precision_scale  # type: ignore[misc]
            return f"numeric({p},{s})"
        if self.name in ("timestamp", "timestamptz", "time"):
            head, _, tail = base.partition(" ")
            return f"{head}({self.typmod}) {tail}"
        if self.is_vector or self.is_sparse or self.name in BIT_TYPES:
            return f"{base}({self.typmod})"
        return base

    # Arrow ------------------------------------------------------------------------------

    def to_arrow(self) -> pa.DataType:
        """The Arrow type values of this type are stored and computed as."""
        return _arrow_type(self)

    # Persistence (manifest) ---------------------------------------------------------------

    def to_json(self) -> dict:
        """The type as the manifest stores it."""
        return {"name": self.name, "typmod": self.typmod}

    @classmethod
    def from_json(cls, data: dict) -> SqlType:
        """Read a type back from the manifest."""
        return cls(data["name"], int(data.get("typmod", -1)))

    def __str__(self) -> str:
        return self.format()


def _typmod_for(name: str, modifiers: tuple[int, ...]) -> int:
    if not modifiers:
        return -1
    if name in ("varchar", "bpchar"):
        (n,) = modifiers
        if n < 1:
            raise InvalidParameterValue(f"length for type {name} must be at least 1")
        return n + 4
    if name == "numeric":
        p = modifiers[0]
        s = modifiers[1] if len(modifiers) > 1 else 0
        if not 1 <= p <= 38:
            raise InvalidParameterValue(
                f"NUMERIC precision {p} must be between 1 and 38 here",
            )
        if not 0 <= s <= p:
            raise InvalidParameterValue(f"NUMERIC scale {s} must be between 0 and precision {p}")
        return ((p << 16) | s) + 4
    if name in ("timestamp", "timestamptz", "time"):
        (p,) = modifiers
        return max(0, min(6, p))
    if name in VECTOR_DTYPES:
        (n,) = modifiers
        return check_vector_dims(n, name)
    if name == "sparsevec":
        if len(modifiers) != 1:
            raise InvalidParameterValue("invalid type modifier")
        return check_sparsevec_dims(modifiers[0], typmod=True)
    if name in BIT_TYPES:
        (n,) = modifiers
        if n < 1:
            raise InvalidParameterValue(f"length for type {name} must be at least 1")
        return n
    raise InvalidParameterValue(f"type modifier is not allowed for type {name}")


# The reg* types: OIDs that print as the names of the objects they point at.
REG_TYPES = ("regclass", "regtype", "regproc", "regprocedure", "regnamespace", "regrole")

# sparsevec values: the dimension count and the non-zero elements, 1-based indices ascending.
SPARSEVEC_ARROW = pa.struct([("dim", pa.int32()), ("indices", pa.list_(pa.int32())),
                             ("values", pa.list_(pa.float32()))])

_SIMPLE_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "xid": pa.int64(),
    "cid": pa.int64(),
    "tid": pa.int64(),  # (block << 16) | offset: orders as (block, offset) does
    "regclass": pa.int64(),
    "regtype": pa.int64(),
    "regproc": pa.int64(),
    "regprocedure": pa.int64(),
    "regnamespace": pa.int64(),
    "regrole": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "text": pa.string(),
    "name": pa.string(),
    "char": pa.string(),
    "unknown": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
    "jsonpath": pa.string(),
    "uuid": pa.string(),
    "bytea": pa.binary(),
    "bit": pa.string(),
    "varbit": pa.string(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "interval": pa.month_day_nano_interval(),
}


# Row types (`record`): the typmod of a record SqlType indexes its field list here, so that
# `(f(x)).field` knows the field's type when it is compiled.
RECORD_SHAPES: list[tuple[tuple[str, SqlType], ...]] = []


def record_type(fields: list[tuple[str, SqlType]]) -> SqlType:
    """The `record` type with these (name, type) fields."""
    shape = tuple(fields)
    if shape not in RECORD_SHAPES:
        RECORD_SHAPES.append(shape)
    return SqlType("record", RECORD_SHAPES.index(shape))


def record_fields(t: SqlType) -> tuple[tuple[str, SqlType], ...]:
    """The (name, type) fields of an anonymous record type, registered by `record_type`; () for
    other types."""
    return RECORD_SHAPES[t.typmod] if t.name == "record" and 0 <= t.typmod < len(RECORD_SHAPES) \
        else ()


@functools.lru_cache(maxsize=1024)
def _arrow_type(t: SqlType) -> pa.DataType:
    # Cached: SqlType is immutable and record shapes are only ever appended.
    if t.name == "record":
        return pa.struct([(name, ft.to_arrow()) for name, ft in record_fields(t)])
    if t.is_array:
        return pa.list_(_arrow_type(t.element))
    if t.name in VECTOR_DTYPES:
        element = pa.from_numpy_dtype(VECTOR_DTYPES[t.name])
        if t.typmod < 0:
            return pa.list_(element)
        return pa.list_(element, t.typmod)
    if t.name == "sparsevec":
        return SPARSEVEC_ARROW
    if t.name == "numeric":
        p, s = t.numeric_precision_scale or UNCONSTRAINED_NUMERIC
        return pa.decimal128(p, s)
    return _SIMPLE_ARROW[t.name]


def sql_type_from_arrow(dt: pa.DataType) -> SqlType:
    """The SqlType an Arrow result column is described as when no declared type is known."""
    if pa.types.is_fixed_size_list(dt) and pa.types.is_float32(dt.value_type):
        return SqlType("vector", dt.list_size)
    if pa.types.is_fixed_size_list(dt) and pa.types.is_float16(dt.value_type):
        return SqlType("halfvec", dt.list_size)
    if pa.types.is_list(dt) and pa.types.is_float16(dt.value_type):
        return SqlType("halfvec")
    if dt == SPARSEVEC_ARROW:
        return SqlType("sparsevec")
    if pa.types.is_list(dt) or pa.types.is_large_list(dt):
        element = sql_type_from_arrow(dt.value_type)
        if element.is_array or element.is_vector:
            return SqlType("text")
        return element.array_of()
    if pa.types.is_boolean(dt):
        return SqlType("bool")
    if pa.types.is_int8(dt) or pa.types.is_int16(dt):
        return SqlType("int2")
    if pa.types.is_int32(dt):
        return SqlType("int4")
    if pa.types.is_integer(dt):
        return SqlType("int8")
    if pa.types.is_float16(dt) or pa.types.is_float32(dt):
        return SqlType("float4")
    if pa.types.is_float64(dt):
        return SqlType("float8")
    if pa.types.is_decimal(dt):
        return SqlType("numeric")
    if pa.types.is_string(dt) or pa.types.is_large_string(dt) or pa.types.is_null(dt):
        return SqlType("text")
    if pa.types.is_binary(dt) or pa.types.is_large_binary(dt):
        return SqlType("bytea")
    if pa.types.is_date(dt):
        return SqlType("date")
    if pa.types.is_time(dt):
        return SqlType("time")
    if pa.types.is_timestamp(dt):
        return SqlType("timestamptz" if dt.tz else "timestamp")
    if pa.types.is_interval(dt) or pa.types.is_duration(dt):
        return SqlType("interval")
    return SqlType("text")


# Vector text form ------------------------------------------------------------------------------

_SPACES = " \t\n\r\v\f"  # C's isspace in the C locale: what pgvector skips around elements

# What C's strtof reads (in the C locale pgvector's input functions run under): ASCII digits
# only, optional hexadecimal form, 'inf' / 'infinity' / 'nan' (refused afterwards by pgvector),
# no digit separators. re.ASCII keeps \d and \s from matching other Unicode digits and spaces.
_STRTOF_NUMBER = (r"[-+]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][-+]?\d+)?"
                  r"|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf(?:inity)?|nan(?:\(\w*\))?)")
_FLOAT_RE = re.compile(rf"\s*{_STRTOF_NUMBER}\s*", re.I | re.ASCII)


def strtof_value(written: str) -> float:
    """The double a number `_STRTOF_NUMBER` matched stands for (hexadecimal form included)."""
    written = written.strip(_SPACES)
    body = written.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        try:
            return float.fromhex(written)
        except OverflowError:
            return -math.inf if written.startswith("-") else math.inf
    if body[:3].lower() == "nan":
        return math.nan
    return float(written)


def check_vector_dims(dims: int, type_name: str = "vector") -> int:
    """`dims`, if vector(dims) / halfvec(dims) is allowed: at least 1 and at most pgvector's limit,
    with pgvector's messages."""
    if dims < 1:
        raise SqlVecError(f"dimensions for type {type_name} must be at least 1", sqlstate="22023")
    if dims > VECTOR_MAX_DIM:
        raise SqlVecError(
            f"dimensions for type {type_name} cannot exceed {VECTOR_MAX_DIM}", sqlstate="22023"
        )
    return dims


def _invalid_vector(text: str, detail: str | None, type_name: str) -> InvalidTextRepresentation:
    return InvalidTextRepresentation(
        f'invalid input syntax for type {type_name}: "{text}"', detail=detail
    )


def parse_vector(text: str, type_name: str = "vector") -> np.ndarray:
    """Parse pgvector's text form `[1,2,3]` into the type's element dtype (float32 for vector,
    float16 for halfvec), with pgvector's errors."""
    try:
        return _parse_vector(text, type_name)
    except SqlVecError as error:
        # The fast path checks the whole text at once; pgvector reports the first problem in
        # reading order, which a scan like its own finds.
        raise _vector_input_error(text, type_name) or error from None


def _parse_vector(text: str, type_name: str) -> np.ndarray:
    s = text.strip(_SPACES)
    if not s.startswith("[") or not s.endswith("]"):
        raise _invalid_vector(text, None, type_name)
    body = s[1:-1]
    if body.strip(_SPACES) == "":
        raise DataException(f"{type_name} must have at least 1 dimension")
    parts = body.split(",")
    values = _plain_floats(body, parts)
    if values is None:
        for part in parts:
            if not _FLOAT_RE.fullmatch(part):
                raise _invalid_vector(text, None, type_name)
        values = np.array([strtof_value(p) for p in parts], dtype=np.float64)
    narrow = _float4_of(parts, values)
    if type_name == "halfvec":
        with np.errstate(over="ignore"):
            half = narrow.astype(np.float16)
        if (np.isinf(half) & np.isfinite(values)).any():
            raise SqlVecError("halfvec element out of range", sqlstate="22003")
        return check_vector_values(half, values, "halfvec")
    return check_vector_values(narrow, values)


_ELEMENT_RE = re.compile(_STRTOF_NUMBER, re.I | re.ASCII)


def _float4_of(parts: list[str], wide: np.ndarray) -> np.ndarray:
    """Elements read as doubles (`wide`) as float4, each rounded as strtof rounds its text:
    once. Narrowing a double rounds a second time, which differs from once only where the
    double is a float4 halfway point (its low 29 bits a one then zeros) or lies among float4's
    subnormals; those few elements are rounded again from their exact decimal value."""
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    halfway = (wide.view(np.uint64) & _LOW_29) == _HALF_29
    tiny = (np.abs(wide) < _FLOAT4_TINY) & (wide != 0)
    for i in np.flatnonzero(halfway | tiny):
        narrow[i] = _rounded_once(parts[i], narrow[i])
    return narrow


_LOW_29, _HALF_29 = np.uint64((1 << 29) - 1), np.uint64(1 << 28)
_FLOAT4_TINY = 2.0 ** -126  # float4's smallest normal


def _rounded_once(text: str, narrow: np.float32) -> np.float32:
    """The float4 nearest a decimal number's exact value (ties to even), given `narrow`, its
    double narrowed, which is that or its neighbour toward the value."""
    try:
        exact = Fraction(text.strip(_SPACES))
    except ValueError:  # hexadecimal: its double is its value, so narrowing it rounds once
        return narrow
    here = _exact_value(narrow)
    if here == exact:
        return narrow
    other = np.nextafter(narrow, np.float32(math.inf if exact > here else -math.inf))
    near, far = abs(exact - here), abs(exact - _exact_value(other))
    if near != far:
        return narrow if near < far else other
    return narrow if int(narrow.view(np.uint32)) % 2 == 0 else other


def _exact_value(x: np.float32) -> Fraction:
    """A float4's value; an infinity stands for 2**128, where rounding to it starts."""
    if math.isinf(x):
        return Fraction(2 ** 128) * (1 if x > 0 else -1)
    return Fraction(float(x))


def _plain_floats(body: str, parts: list[str]) -> np.ndarray | None:
    """The elements of a vector's text made only of digits, signs, points, exponents, commas
    and spaces (what clients send), read without a pattern match per element: in that
    alphabet Python's float() accepts exactly what `_FLOAT_RE` does. None when the text has
    other characters or an element is malformed (the caller's scan then finds and reports it)."""
    if body.translate(_PLAIN):  # (anything left once those are deleted: half a search's cost)
        return None
    try:
        return np.array(list(map(float, parts)), dtype=np.float64)
    except ValueError:
        return None


_PLAIN = dict.fromkeys(map(ord, "0123456789.eE+-, "))


def _vector_input_error(text: str, type_name: str) -> SqlVecError | None:
    """The error pgvector's `vector_in` / `halfvec_in` gives for `text`: the first problem met
    reading it left to right (an element out of range is quoted as written), or None."""
    n, i = len(text), 0

    def skip(i: int) -> int:
        while i < n and text[i] in _SPACES:
            i += 1
        return i

    i = skip(i)
    if i >= n or text[i] != "[":
        return _invalid_vector(text, 'Vector contents must start with "[".', type_name)
    i = skip(i + 1)
    if i < n and text[i] == "]":
        return DataException(f"{type_name} must have at least 1 dimension")
    dims = 0
    while True:
        if dims == VECTOR_MAX_DIM:
            return SqlVecError(f"{type_name} cannot have more than {VECTOR_MAX_DIM} dimensions",
                               sqlstate="54000")
        i = skip(i)
        match = _ELEMENT_RE.match(text, i)
        if match is None:
            return _invalid_vector(text, None, type_name)
        written = match.group()
        value = strtof_value(written)
        single = _float4_of([written], np.array([value]))[0]  # rounded once, as strtof
        with np.errstate(over="ignore"):
            narrow = np.float16(single) if type_name == "halfvec" else single
        if math.isnan(value):
            return DataException(f"NaN not allowed in {type_name}")
        if math.isinf(value) and written.lstrip("+-")[:1] in "iI":
            return DataException(f"infinite value not allowed in {type_name}")
        if np.isinf(narrow):
            return SqlVecError(f'"{written}" is out of range for type {type_name}',
                               sqlstate="22003")
        dims += 1
        i = skip(match.end())
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] == "]":
            break
        else:
            return _invalid_vector(text, None, type_name)
    if skip(i + 1) < n:
        return _invalid_vector(text, "Junk after closing right brace.", type_name)
    return None


def all_finite(vector: np.ndarray) -> bool:
    """Whether a 1-D vector holds no NaN nor infinity: its dot product with itself (in float64,
    where float32 squares cannot overflow) is a sum of nonnegative squares, finite exactly when
    every element is. One BLAS call costs a third of `isfinite().all()`."""
    if vector.ndim == 1 and vector.dtype == np.float32:
        wide = vector.astype(np.float64)
        return math.isfinite(wide.dot(wide))
    return bool(np.isfinite(vector).all())


def check_vector_values(values: np.ndarray, wide: np.ndarray | None = None,
                        type_name: str = "vector") -> np.ndarray:
    """Reject NaN, infinities and out-of-range values as pgvector does; returns the type's
    element dtype (float32 for vector, float16 for halfvec). `values` is one vector, or a
    matrix of one vector per row: the dimension limit applies to each vector, not the total.
    `wide`: the values `values` was narrowed from, if it was."""
    if type_name == "vector" and values.dtype == np.float32 \
            and 0 < values.size <= VECTOR_MAX_DIM and all_finite(values):
        # The common case (a float4 input, or text that narrowed without overflow: a NaN, an
        # infinity or a value out of float4's range in `wide` is not finite in `values`).
        return values
    wide = values if wide is None else wide
    if (values.shape[-1] if values.ndim else values.size) > VECTOR_MAX_DIM:
        raise SqlVecError(
            f"{type_name} cannot have more than {VECTOR_MAX_DIM} dimensions", sqlstate="54000"
        )
    if values.size == 0:
        raise DataException(f"{type_name} must have at least 1 dimension")
    if np.isnan(wide).any():
        raise DataException(f"NaN not allowed in {type_name}")
    if np.isinf(wide).any():
        raise DataException(f"infinite value not allowed in {type_name}")
    dtype = VECTOR_DTYPES[type_name]
    with np.errstate(over="ignore"):
        narrow = np.asarray(values, dtype=np.float32).astype(dtype)
    if np.isinf(narrow).any():
        bad = float(np.asarray(wide, dtype=np.float64)[np.isinf(narrow)][0])
        if type_name == "halfvec":  # pgvector prints the float as float4 output does
            raise SqlVecError(f'"{format_float4(bad)}" is out of range for type halfvec',
                              sqlstate="22003")
        raise SqlVecError(f'"{bad}" is out of range for type vector', sqlstate="22003")
    return narrow


def format_float4(x: float) -> str:
    """`real` output as PostgreSQL 12+ prints it: shortest round-trip digits, in exponent form
    when the decimal exponent is below -4 or at least 6 (FLT_DIG)."""
    return format_shortest(float(np.float32(x)), single=True)


def format_shortest(x: float, single: bool = False) -> str:
    """Shortest text that reads back as the same float4/float8, PostgreSQL's layout (Ryu):
    positional when -4 <= exponent < FLT_DIG (6) / DBL_DIG (15), else `d.ddde+XX`."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    value = np.float32(x) if single else np.float64(x)
    sci = np.format_float_scientific(value, unique=True, trim="-", exp_digits=2)
    mantissa, _, exponent = sci.partition("e")
    exp10 = int(exponent)
    if -4 <= exp10 < (6 if single else 15):
        return np.format_float_positional(value, unique=True, trim="-")
    return f"{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def format_vector(values: np.ndarray) -> str:
    """pgvector's text output: `[1,2.5,-3]` (halfvec too: each half printed as the shortest
    text of the float it widens to, as pgvector does)."""
    return "[" + ",".join(format_float4(float(v)) for v in values) + "]"


# Sparse vector text form -------------------------------------------------------------------------

@dataclass(frozen=True)
class SparseVector:
    """One sparsevec value: `dim`, and the non-zero elements' 1-based `indices` (int32,
    ascending, distinct) with their `values` (float32, none zero)."""

    dim: int
    indices: np.ndarray
    values: np.ndarray

    def as_dict(self) -> dict:
        """The value as a `SPARSEVEC_ARROW` struct scalar takes it."""
        return {"dim": self.dim, "indices": self.indices.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, value: dict) -> SparseVector:
        """The value of a `SPARSEVEC_ARROW` struct scalar's `as_py()`."""
        return cls(int(value["dim"]), np.asarray(value["indices"], np.int32),
                   np.asarray(value["values"], np.float32))

    def dense(self) -> np.ndarray:
        """The float32 elements of all `dim` dimensions (casts to vector and halfvec)."""
        out = np.zeros(self.dim, np.float32)
        out[self.indices - 1] = self.values
        return out


def check_sparsevec_dims(dims: int, typmod: bool = False) -> int:
    """`dims` if a sparsevec may have that many dimensions, with pgvector's messages (those of
    its typmod input function when `typmod`)."""
    if typmod:
        if dims < 1:
            raise InvalidParameterValue("dimensions for type sparsevec must be at least 1")
        if dims > SPARSEVEC_MAX_DIM:
            raise InvalidParameterValue(
                f"dimensions for type sparsevec cannot exceed {SPARSEVEC_MAX_DIM}")
        return dims
    if dims < 1:
        raise DataException("sparsevec must have at least 1 dimension")
    if dims > SPARSEVEC_MAX_DIM:
        raise SqlVecError(f"sparsevec cannot have more than {SPARSEVEC_MAX_DIM} dimensions",
                          sqlstate="54000")
    return dims


def check_sparsevec_nnz(nnz: int, dim: int) -> None:
    """pgvector's CheckNnz: the count of stored elements against its limit and the dimensions."""
    if nnz < 0:
        raise DataException("sparsevec cannot have negative number of elements")
    if nnz > SPARSEVEC_MAX_NNZ:
        raise SqlVecError(f"sparsevec cannot have more than {SPARSEVEC_MAX_NNZ} non-zero elements",
                          sqlstate="54000")
    if nnz > dim:
        raise SqlVecError("sparsevec cannot have more elements than dimensions", sqlstate="54000")


def check_sparsevec_indices(indices: np.ndarray, dim: int) -> None:
    """pgvector's CheckIndex over 1-based indices in stored order: the first failing element's
    message (pgvector counts from 0 inside, so 0, negative and too large are all 'out of
    bounds')."""
    if indices.size == 0:
        return
    wide = indices.astype(np.int64)
    bounds = (wide < 1) | (wide > dim)
    step = np.diff(wide, prepend=wide[0] - 1)
    descending, duplicate = step < 0, step == 0
    first = int(np.argmax(bounds | descending | duplicate))
    if bounds[first]:
        raise DataException("sparsevec index out of bounds")
    if descending[first]:
        raise DataException("sparsevec indices must be in ascending order")
    if duplicate[first]:
        raise DataException("sparsevec indices must not contain duplicates")


def check_sparsevec_values(values: np.ndarray) -> None:
    """pgvector's CheckElement: NaN and infinities are refused."""
    if np.isnan(values).any():
        raise DataException("NaN not allowed in sparsevec")
    if np.isinf(values).any():
        raise DataException("infinite value not allowed in sparsevec")


_SPACE = _SPACES
_LONG = re.compile(r"[ \t\n\r\v\f]*[-+]?[0-9]+")  # strtol, base 10
_STRTOF = re.compile(rf"[ \t\n\r\v\f]*({_STRTOF_NUMBER})", re.I | re.ASCII)


def parse_sparsevec(text: str) -> SparseVector:
    """Parse pgvector's sparse text form `{1:1.5,3:-2}/5` as its sparsevec_in does (the same
    scan, so the same error for the same text): zeros are dropped, elements sorted by index."""
    def invalid(detail: str | None = None) -> InvalidTextRepresentation:
        return InvalidTextRepresentation(f'invalid input syntax for type sparsevec: "{text}"',
                                         detail=detail)

    if text.count(",") + 1 > SPARSEVEC_MAX_NNZ:
        raise SqlVecError(f"sparsevec cannot have more than {SPARSEVEC_MAX_NNZ} non-zero elements",
                          sqlstate="54000")
    n = len(text)
    pos = 0

    def skip(at: int) -> int:
        while at < n and text[at] in _SPACE:
            at += 1
        return at

    pos = skip(pos)
    if pos >= n or text[pos] != "{":
        raise invalid('Vector contents must start with "{".')
    pos = skip(pos + 1)
    indices: list[int] = []
    values: list[float] = []
    if pos < n and text[pos] == "}":
        pos += 1
    else:
        while True:
            pos = skip(pos)
            if pos >= n:
                raise invalid()
            m = _LONG.match(text, pos)
            if m is None:
                raise invalid()
            index = int(m.group())
            pos = skip(m.end())
            if pos >= n or text[pos] != ":":
                raise invalid()
            if index < 1 or index > 2**31 - 1:  # pgvector: any index outside 1..dim
                raise DataException("sparsevec index out of bounds")
            pos = skip(pos + 1)
            m = _STRTOF.match(text, pos)
            if m is None:
                raise invalid()
            written = m.group(1)
            wide = strtof_value(written)
            with np.errstate(over="ignore", under="ignore"):
                value = float(np.float32(wide))
            if (math.isinf(value) and not math.isinf(wide)) or (value == 0 and wide != 0):
                raise SqlVecError(f'"{written}" is out of range for type sparsevec',
                                  sqlstate="22003")
            if math.isnan(value):
                raise DataException("NaN not allowed in sparsevec")
            if math.isinf(value):
                raise DataException("infinite value not allowed in sparsevec")
            if value != 0:
                indices.append(index)
                values.append(value)
            pos = skip(m.end())
            if pos < n and text[pos] == ",":
                pos += 1
            elif pos < n and text[pos] == "}":
                pos += 1
                break
            else:
                raise invalid()
    pos = skip(pos)
    if pos >= n or text[pos] != "/":
        raise invalid("Unexpected end of input.")
    pos = skip(pos + 1)
    m = _LONG.match(text, pos)
    if m is None:
        raise invalid()
    pos = skip(m.end())
    if pos < n:
        raise invalid("Junk after closing.")
    dim = int(m.group())
    check_sparsevec_dims(dim)
    order = np.argsort(np.asarray(indices, np.int64), kind="stable")
    idx = np.asarray(indices, np.int32)[order]
    check_sparsevec_indices(idx, dim)
    return SparseVector(dim, idx, np.asarray(values, np.float32)[order])


def check_sparsevec_typmod(dim: int, typmod: int) -> None:
    """pgvector's CheckExpectedDim for sparsevec(typmod)."""
    if typmod >= 0 and dim != typmod:
        raise DataException(f"expected {typmod} dimensions, not {dim}")


def format_sparsevec(value: SparseVector | dict) -> str:
    """pgvector's sparsevec_out: `{index:value,...}/dim`, values printed as float4 output."""
    if isinstance(value, dict):
        value = SparseVector.from_dict(value)
    body = ",".join(f"{i}:{format_float4(float(v))}"
                    for i, v in zip(value.indices.tolist(), value.values.tolist()))
    return "{" + body + "}/" + str(value.dim)
