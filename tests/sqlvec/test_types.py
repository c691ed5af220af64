from __future__ import annotations

import ctypes
import ctypes.util
import decimal
import errno
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.errors import SqlVecError
from sqlvec.types import (
    _FLOAT_RE,
    VECTOR_MAX_DIM,
    SqlType,
    _plain_floats,
    format_float4,
    format_sparsevec,
    format_vector,
    parse_sparsevec,
    parse_vector,
    sql_type_from_arrow,
)


def _error(text: str) -> SqlVecError:
    with pytest.raises(SqlVecError) as info:
        parse_vector(text)
    return info.value


# parse_vector: pgvector's messages and SQLSTATEs ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sqlstate", "message", "detail"),
    [
        ("[1,2", "22P02", 'invalid input syntax for type vector: "[1,2"', None),
        ("[1,,2]", "22P02", 'invalid input syntax for type vector: "[1,,2]"', None),
        ("[1 2]", "22P02", 'invalid input syntax for type vector: "[1 2]"', None),
        ("[a]", "22P02", 'invalid input syntax for type vector: "[a]"', None),
        ("1,2]", "22P02", 'invalid input syntax for type vector: "1,2]"',
         'Vector contents must start with "[".'),
        ("[1,2]x", "22P02", 'invalid input syntax for type vector: "[1,2]x"',
         "Junk after closing right brace."),
        ("[nan]", "22000", "NaN not allowed in vector", None),
        ("[1,NaN,2]", "22000", "NaN not allowed in vector", None),
        ("[inf]", "22000", "infinite value not allowed in vector", None),
        ("[-Infinity]", "22000", "infinite value not allowed in vector", None),
        ("[]", "22000", "vector must have at least 1 dimension", None),
        ("[  ]", "22000", "vector must have at least 1 dimension", None),
    ],
)
def test_parse_vector_errors(text, sqlstate, message, detail):
    err = _error(text)
    assert err.sqlstate == sqlstate
    assert err.message == message
    if detail is not None:
        assert err.detail == detail


def test_parse_vector_errors_without_detail_where_pgvector_gives_none():
    # pgvector's vector_in reaches the end of "[1,2" while reading an element: no DETAIL.
    assert _error("[1,2").detail is None
    assert _error("[1,,2]").detail is None


@pytest.mark.parametrize(("text", "message"), [
    ("[4e38,1]", '"4e38" is out of range for type vector'),
    ("[1, 1E39 ,x]", '"1E39" is out of range for type vector'),  # before the later syntax error
    ("[1e309]", '"1e309" is out of range for type vector'),  # infinite as a double too
])
def test_parse_vector_out_of_range_quotes_the_element_as_written(text, message):
    err = _error(text)
    assert (err.sqlstate, err.message) == ("22003", message)


def test_parse_vector_halfvec_out_of_range_quotes_the_element_as_written():
    with pytest.raises(SqlVecError) as info:
        parse_vector("[1,70000]", "halfvec")
    assert info.value.message == '"70000" is out of range for type halfvec'


def test_parse_vector_too_many_dimensions():
    err = _error("[" + ",".join(["1"] * (VECTOR_MAX_DIM + 1)) + "]")
    assert err.sqlstate == "54000"
    assert err.message == f"vector cannot have more than {VECTOR_MAX_DIM} dimensions"
    # The limit itself is allowed.
    assert parse_vector("[" + ",".join(["1"] * VECTOR_MAX_DIM) + "]").shape == (VECTOR_MAX_DIM,)


def test_parse_vector_out_of_float4_range():
    assert _error("[1e39]").sqlstate == "22003"


def test_parse_vector_values_and_whitespace():
    v = parse_vector(" [ 1 , -2.5 ,3e2, .5 ] ")
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, np.array([1, -2.5, 300, 0.5], dtype=np.float32))
    # Rounds to float32 once, from the decimal text (no double rounding through float64 noise).
    assert parse_vector("[0.1]")[0] == np.float32(0.1)


@pytest.mark.parametrize(("text", "want"), [
    ("[1e-50]", [0.0]),  # underflows to zero, as strtof does
    ("[1.e5,+.5,-0]", [100000.0, 0.5, -0.0]),
    ("[ 3.4028235e38 ]", [3.4028235e38]),
    ("[1\t,\n2]", [1.0, 2.0]),  # other whitespace: the per-element scan reads it
])
def test_parse_vector_plain_and_other_texts(text, want):
    np.testing.assert_array_equal(parse_vector(text), np.array(want, np.float32))


@pytest.mark.parametrize("text", ["[1_0]", "[1e]", "[-]", "[e5]", "[1,2,]",
                                  "[--1]", "[1e3.5]", "[1 .5]"])
def test_parse_vector_refuses_what_float_alone_would_read_differently(text):
    assert _error(text).sqlstate == "22P02"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.eE+-, ", max_size=24))
def test_plain_floats_accepts_exactly_what_the_element_pattern_does(body):
    parts = body.split(",")
    plain = _plain_floats(body, parts)
    if all(_FLOAT_RE.fullmatch(p) for p in parts):
        assert plain is not None
        assert plain.tolist() == [float(p) for p in parts]
    else:
        assert plain is None


# Element syntax: exactly what pgvector's strtof-based parsers read (outputs recorded from
# PostgreSQL 16 + pgvector). Python's float() is wider: Unicode digits, digit separators and
# Unicode spaces must not get through.
_REFUSED_ELEMENTS = ["[\u0661]", "[1,\u0662]", "[\uff11]", "[1_000]", "[\u00a01]", "[1\u00a0]",
                     "[1e]", "[1e+]", "[ +.e1]", "[0x]"]


@pytest.mark.parametrize("type_name", ["vector", "halfvec"])
@pytest.mark.parametrize("text", _REFUSED_ELEMENTS)
def test_parse_vector_refuses_what_strtof_refuses(text, type_name):
    with pytest.raises(SqlVecError) as info:
        parse_vector(text, type_name)
    assert (info.value.sqlstate, info.value.message) == (
        "22P02", f'invalid input syntax for type {type_name}: "{text}"')


@pytest.mark.parametrize("type_name", ["vector", "halfvec"])
@pytest.mark.parametrize(("text", "want"), [
    ("[0x10]", [16]), ("[0X1A, -0x1p3]", [26, -8]), ("[+1,5.]", [1, 5]),
    ("[\t1\t]", [1]), ("[\v1,\f2\v]", [1, 2]), ("\n[1]\r", [1]),
])
def test_parse_vector_reads_what_strtof_reads(text, want, type_name):
    assert parse_vector(text, type_name).tolist() == want


@pytest.mark.parametrize("type_name", ["vector", "halfvec"])
@pytest.mark.parametrize("text", ["[ nan ]", "[nan(123)]"])
def test_parse_vector_nan_spellings_are_refused_as_nan(text, type_name):
    with pytest.raises(SqlVecError) as info:
        parse_vector(text, type_name)
    assert (info.value.sqlstate, info.value.message) == ("22000", f"NaN not allowed in {type_name}")

# format_vector: PostgreSQL's shortest float4 text --------------------------------------------


@pytest.mark.parametrize("value", [0.1, 1 / 3, -2.5, 1e-5, 3.4028235e38, 1.17549435e-38, 7.0, 0.00012])
def test_format_float4_is_shortest_and_round_trips(value):
    text = format_float4(value)
    f = np.float32(value)
    assert np.float32(float(text)) == f
    # Shortest: dropping one significant digit no longer reads back as the same float32.
    digits = text.split("e")[0].replace("-", "").replace(".", "").strip("0")
    if len(digits) > 1:
        shorter = np.format_float_scientific(f, precision=len(digits) - 2)
        assert np.float32(float(shorter)) != f


def test_format_vector_text():
    v = np.array([1, 2.5, -3, 0.1, 1 / 3, 1e-5, -0.0], dtype=np.float32)
    assert format_vector(v) == "[1,2.5,-3,0.1,0.33333334,1e-05,-0]"
    np.testing.assert_array_equal(parse_vector(format_vector(v)), v)


def test_format_float4_large_values_use_exponent_like_postgres():
    assert format_float4(100000.0) == "100000"
    assert format_float4(1e6) == "1e+06"
    assert format_float4(123456789.0) == "1.2345679e+08"


# SqlType ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "name", "typmod", "formatted"),
    [
        ("varchar(20)", "varchar", 24, "character varying(20)"),
        ("character varying(20)", "varchar", 24, "character varying(20)"),
        ("varchar", "varchar", -1, "character varying"),
        ("numeric(10,2)", "numeric", ((10 << 16) | 2) + 4, "numeric(10,2)"),
        ("decimal(10, 2)", "numeric", ((10 << 16) | 2) + 4, "numeric(10,2)"),
        ("numeric(5)", "numeric", (5 << 16) + 4, "numeric(5,0)"),
        ("numeric", "numeric", -1, "numeric"),
        ("vector(4)", "vector", 4, "vector(4)"),
        ("VECTOR(3)", "vector", 3, "vector(3)"),
        ("vector", "vector", -1, "vector"),
        ("timestamptz", "timestamptz", -1, "timestamp with time zone"),
        ("timestamp with time zone", "timestamptz", -1, "timestamp with time zone"),
        ("timestamptz(3)", "timestamptz", 3, "timestamp(3) with time zone"),
        ("timestamp", "timestamp", -1, "timestamp without time zone"),
        ("double precision", "float8", -1, "double precision"),
        ("real", "float4", -1, "real"),
        ("int", "int4", -1, "integer"),
        ("bigint", "int8", -1, "bigint"),
        ("smallint", "int2", -1, "smallint"),
        ("boolean", "bool", -1, "boolean"),
        ("bigserial", "int8", -1, "bigint"),
        ("jsonb", "jsonb", -1, "jsonb"),
        ("uuid", "uuid", -1, "uuid"),
        ("bytea", "bytea", -1, "bytea"),
        ("date", "date", -1, "date"),
    ],
)
def test_parse_and_format_type(spelling, name, typmod, formatted):
    t = SqlType.parse(spelling)
    assert (t.name, t.typmod) == (name, typmod)
    assert t.format() == formatted
    assert SqlType.from_json(t.to_json()) == t


@pytest.mark.parametrize(
    ("spelling", "arrow"),
    [
        ("vector(4)", pa.list_(pa.float32(), 4)),
        ("vector", pa.list_(pa.float32())),
        ("numeric", pa.decimal128(38, 12)),
        ("timestamptz", pa.timestamp("us", tz="UTC")),
        ("timestamp", pa.timestamp("us")),
        ("jsonb", pa.string()),
        ("uuid", pa.string()),
        ("int2", pa.int16()),
        ("bytea", pa.binary()),
    ],
)
def test_arrow_type_round_trips_through_sql_type_from_arrow(spelling, arrow):
    t = SqlType.parse(spelling)
    assert t.to_arrow() == arrow
    back = sql_type_from_arrow(arrow)
    assert back.to_arrow() == arrow


def test_result_decimal_is_described_as_numeric():
    assert sql_type_from_arrow(SqlType.parse("numeric(10,2)").to_arrow()).name == "numeric"


@pytest.mark.parametrize(
    ("spelling", "sqlstate"),
    [
        ("nosuchtype", "42704"),
        ("vector(0)", "22023"), ("halfvec(0)", "22023"), ("halfvec(16001)", "22023"),
        ("vector(16001)", "22023"), ("sparsevec(0)", "22023"),
        ("sparsevec(1000000001)", "22023"),
        ("varchar(0)", "22023"),
        ("numeric(39,2)", "22023"),
        ("numeric(5,6)", "22023"),
        ("int4(3)", "22023"),
    ],
)
def test_bad_type_spellings(spelling, sqlstate):
    with pytest.raises(SqlVecError) as info:
        SqlType.parse(spelling)
    assert info.value.sqlstate == sqlstate


def test_vector_dims_and_char_length():
    assert SqlType.parse("vector(7)").dims == 7
    assert SqlType.parse("vector").dims is None
    assert SqlType.parse("varchar(9)").char_length == 9
    assert SqlType.parse("numeric(12,3)").numeric_precision_scale == (12, 3)
    with pytest.raises(TypeError):
        _ = SqlType.parse("text").dims


# sparsevec ---------------------------------------------------------------------------------------


def test_sparsevec_type_and_arrow_layout():
    t = SqlType.parse("sparsevec(1000000000)")
    assert (t.format(), t.dims, t.is_sparse, t.is_vector) == (
        "sparsevec(1000000000)", 1_000_000_000, True, False)
    assert sql_type_from_arrow(t.to_arrow()) == SqlType("sparsevec")


@pytest.mark.parametrize(("text", "want"), [
    ("{1:1.5,3:3.5}/5", "{1:1.5,3:3.5}/5"),
    (" { 3:1 , 1:2 ,2:0 } / 5 ", "{1:2,3:1}/5"),  # sorted, zeros dropped
    ("{1:0,1:3}/4", "{1:3}/4"),  # a zero is dropped before duplicates are looked for
    ("{}/3", "{}/3"),
    ("{2:1e-8,1:-0.1}/1000000000", "{1:-0.1,2:1e-08}/1000000000"),
    ("{1:0x10,+2:\v2}/+3", "{1:16,2:2}/3"),  # strtof's hexadecimal form, strtol's sign
])
def test_sparsevec_text_round_trip(text, want):
    assert format_sparsevec(parse_sparsevec(text)) == want


@pytest.mark.parametrize(("text", "sqlstate", "message"), [
    ("{1:2,1:3}/4", "22000", "sparsevec indices must not contain duplicates"),
    ("{5:1}/4", "22000", "sparsevec index out of bounds"),
    ("{0:1}/4", "22000", "sparsevec index out of bounds"),
    ("{99999999999999999999:1}/4", "22000", "sparsevec index out of bounds"),
    ("{1:1e-50}/2", "22003", '"1e-50" is out of range for type sparsevec'),
    ("{1:1e39}/2", "22003", '"1e39" is out of range for type sparsevec'),
    ("{1:nan}/2", "22000", "NaN not allowed in sparsevec"),
    ("{1:-inf}/2", "22000", "infinite value not allowed in sparsevec"),
    ("{1:1}/0", "22000", "sparsevec must have at least 1 dimension"),
    ("{1:1}/1000000001", "54000", "sparsevec cannot have more than 1000000000 dimensions"),
    ("{1:1}", "22P02", 'invalid input syntax for type sparsevec: "{1:1}"'),
    ("[1]", "22P02", 'invalid input syntax for type sparsevec: "[1]"'),
    ("{1:1,}/3", "22P02", 'invalid input syntax for type sparsevec: "{1:1,}/3"'),
    ("{1:1}/3 x", "22P02", 'invalid input syntax for type sparsevec: "{1:1}/3 x"'),
    # ASCII digits only, no separators; an index or dimension is decimal (strtol base 10).
    *[(t, "22P02", f'invalid input syntax for type sparsevec: "{t}"') for t in [
        "{1:\u0661}/3", "{\u0661:1}/3", "{1:1}/\u0661", "{1:1_0}/3", "{1_0:1}/30", "{0x1:1}/3",
        "{1:2}/0x3", "{1:\u00a02}/3"]],
    ("{" + ",".join(f"{i}:1" for i in range(1, 16002)) + "}/20000", "54000",
     "sparsevec cannot have more than 16000 non-zero elements"),
])
def test_sparsevec_input_errors_are_pgvectors(text, sqlstate, message):
    with pytest.raises(SqlVecError) as info:
        parse_sparsevec(text)
    assert (info.value.sqlstate, str(info.value)) == (sqlstate, message)


@pytest.mark.parametrize("values", [
    [1.0, 2.0], [0.0], [3.0e38, -3.4e38, 1e-45], [3.4e38] * 16000,  # squares past float32's max
    [1.0, float("nan")], [float("inf"), 1.0], [-float("inf")], [float("nan"), float("inf")],
])
def test_all_finite_agrees_with_the_element_wise_test(values):
    from sqlvec.types import all_finite

    for dtype in (np.float32, np.float64, np.float16):
        with np.errstate(over="ignore"):
            vector = np.array(values, dtype)
        assert all_finite(vector) == bool(np.isfinite(vector).all())


# parse_vector against C's strtof, read as pgvector's vector_in reads ----------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.strtof.restype = ctypes.c_float
_libc.strtof.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
_C_SPACES = b" \t\n\r\v\f"


def _strtof(data: bytes, at: int) -> tuple[float, int, bool]:
    """C's strtof of `data` from `at`: the float, where it stopped, whether it set ERANGE."""
    buf = ctypes.create_string_buffer(data)
    end = ctypes.c_void_p()
    ctypes.set_errno(0)
    value = _libc.strtof(ctypes.addressof(buf) + at, ctypes.byref(end))
    erange = ctypes.get_errno() == errno.ERANGE
    return value, end.value - ctypes.addressof(buf), erange


def _vector_in(text: str) -> list[float] | tuple[str, str]:
    """What pgvector's vector_in gives for `text`: its float4 values, or (SQLSTATE, message)."""
    data, i, values = text.encode(), 0, []
    invalid = ("22P02", f'invalid input syntax for type vector: "{text}"')

    def skip(i: int) -> int:
        while i < len(data) and data[i] in _C_SPACES:
            i += 1
        return i

    i = skip(i)
    if data[i:i + 1] != b"[":
        return invalid
    i = skip(i + 1)
    if data[i:i + 1] == b"]":
        return ("22000", "vector must have at least 1 dimension")
    while True:
        i = skip(i)
        value, end, erange = _strtof(data, i)
        if end == i:
            return invalid
        if erange and math.isinf(value):
            return ("22003", f'"{data[i:end].decode()}" is out of range for type vector')
        if math.isnan(value):
            return ("22000", "NaN not allowed in vector")
        if math.isinf(value):
            return ("22000", "infinite value not allowed in vector")
        values.append(value)
        i = skip(end)
        if data[i:i + 1] == b",":
            i += 1
        elif data[i:i + 1] == b"]":
            break
        else:
            return invalid
    if skip(i + 1) < len(data):
        return invalid
    return values


def _outcome(text: str) -> list[float] | tuple[str, str]:
    try:
        return parse_vector(text).tolist()
    except SqlVecError as error:
        return (error.sqlstate, error.message)


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=22)
_DECIMAL = st.builds(
    lambda sign, digits, point, exponent: sign + digits[:point] + "." + digits[point:] + exponent,
    st.sampled_from(["", "-", "+"]), _DIGITS, st.integers(0, 22),
    st.one_of(st.just(""), st.integers(-50, 45).map(lambda e: f"e{e}")))
_DRIVER_FLOAT = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),  # str(list) of floats
    st.floats(-10, 10).map(lambda x: f"{x:.4f}"))


def _near_halfway(x: float, side: int, digits: int) -> str:
    """A decimal at, just below or just above (`side`) the point halfway between float4 `x`
    and the next one up, written with `digits` significant digits: where rounding through a
    double can differ from rounding once."""
    with decimal.localcontext() as context:
        context.prec = 200
        low = decimal.Decimal(float(np.float32(x)))
        above = float(np.nextafter(np.float32(x), np.float32(math.inf)))
        high = decimal.Decimal(2 ** 128 if math.isinf(above) else above)
        middle = (low + high) / 2
        value = middle + side * middle.copy_abs() * decimal.Decimal("1e-19")
        return f"{value:.{digits}e}" if side else str(middle)


_HALFWAY = st.builds(_near_halfway, st.floats(width=32, allow_nan=False, allow_infinity=False),
                     st.sampled_from([-1, 0, 1]), st.integers(17, 30))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_DECIMAL, _DRIVER_FLOAT, _HALFWAY), min_size=1, max_size=24),
       st.sampled_from([",", ", ", " , "]), st.sampled_from(["", " ", "\t"]))
def test_parse_vector_reads_numbers_as_strtof_does(elements, comma, around):
    # Each element rounded once, from its digits, straight to float4 (long mantissas near a
    # float4 rounding boundary included), and out of range named as written.
    text = around + "[" + comma.join(elements) + "]" + around
    assert _outcome(text) == _vector_in(text)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.eE+-, []\tnaifx", max_size=30),
                 st.text(alphabet="0123456789.eE+-, \tnaifx", max_size=30).map(
                     lambda body: "[" + body + "]")))
def test_parse_vector_agrees_with_vector_in_on_any_text(text):
    assert _outcome(text) == _vector_in(text)


@pytest.mark.parametrize("text", ["[1.000000059604644775390625000001]",
                                  "[ 1.000000059604644775390625000001 ]",
                                  "[\t1.000000059604644775390625000001]"])
def test_parse_vector_rounds_once_past_a_float4_halfway_point(text):
    # Just above the halfway point between 1 and the next float4: through a double it becomes
    # the halfway point itself, then ties to 1; strtof rounds up.
    assert parse_vector(text).tolist() == [float(np.nextafter(np.float32(1), np.float32(2)))]
    assert _outcome(text) == _vector_in(text)


def test_an_element_rounding_down_to_float4_max_once_is_not_the_one_out_of_range():
    # Just below the halfway point between float4's largest value and 2**128: strtof rounds it
    # down; narrowed through a double (the halfway point itself) it would tie to infinity, and
    # the error would name it instead of the element really out of range.
    text = "[0,3.402823567797336616e+38,1.e40]"
    assert _outcome(text) == _vector_in(text)
    with pytest.raises(SqlVecError, match='"1.e40" is out of range'):
        parse_vector(text)
