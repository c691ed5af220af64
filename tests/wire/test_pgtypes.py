"""wire.pgtypes: text and binary formats per type, whole columns at a time."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import struct
import uuid

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.errors import SqlVecError
from sqlvec.types import SqlType, format_shortest
from wire import pgtypes as P


def cells_to_values(cells: pa.Array) -> list[bytes | None]:
    out = []
    for cell in cells.to_pylist():
        n = struct.unpack_from("!i", cell)[0]
        out.append(None if n == -1 else cell[4:])
        assert n == -1 and len(cell) == 4 or len(cell) == 4 + n
    return out


def encode(values, t: SqlType, fmt: int, arrow_type=None, digits: int = 1):
    array = pa.array(values, arrow_type or t.to_arrow())
    return cells_to_values(P.encode_cells(array, t, fmt, digits))


def round_trip(values, t: SqlType, fmt: int, arrow_type=None):
    return [None if v is None else P.decode_param(v, t, fmt)
            for v in encode(values, t, fmt, arrow_type)]


INT = {"int2": 16, "int4": 32, "int8": 64}


@pytest.mark.parametrize("name", INT)
@given(data=st.data())
def test_integers_round_trip(name, data):
    bits = INT[name]
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(-2**(bits - 1),
                                                                  2**(bits - 1) - 1))))
    t = SqlType(name)
    for fmt in (P.TEXT, P.BINARY):
        assert round_trip(values, t, fmt) == values


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=False))))
def test_float8_round_trip_and_shortest_text(values):
    t = SqlType("float8")
    assert round_trip(values, t, P.BINARY) == values
    assert round_trip(values, t, P.TEXT) == values
    texts = encode(values, t, P.TEXT)
    assert texts == [None if v is None else format_shortest(v).encode() for v in values]


@given(st.lists(st.one_of(st.none(), st.floats(width=32, allow_nan=False))))
def test_float4_shortest_text(values):
    texts = encode(values, SqlType("float4"), P.TEXT)
    assert texts == [None if v is None else format_shortest(v, True).encode() for v in values]


def test_float_specials_and_extra_float_digits():
    t = SqlType("float8")
    values = [float("nan"), float("inf"), float("-inf"), -0.0, 0.1, 1e15, 123456789.125]
    assert encode(values, t, P.TEXT) == [b"NaN", b"Infinity", b"-Infinity", b"-0", b"0.1",
                                         b"1e+15", b"123456789.125"]
    assert encode([0.1, 1 / 3], t, P.TEXT, digits=0) == [b"0.1", b"0.333333333333333"]
    assert encode([1 / 3], SqlType("float4"), P.TEXT, pa.float32(), digits=0) == [b"0.333333"]
    assert encode([1 / 3], t, P.TEXT, digits=-3) == [b"0.333333333333"]


@settings(max_examples=50)
@given(st.lists(st.one_of(st.none(), st.lists(st.floats(-1e6, 1e6, width=32), min_size=3,
                                                max_size=3))))
def test_vectors_round_trip(rows):
    t = SqlType("vector", 3)
    for fmt in (P.TEXT, P.BINARY):
        got = round_trip(rows, t, fmt)
        assert [None if g is None else list(g) for g in got] == rows


def test_vector_binary_is_pgvector_format():
    (cell,) = encode([[1.0, -2.5]], SqlType("vector", 2), P.BINARY)
    assert cell == struct.pack("!HH", 2, 0) + struct.pack("!ff", 1.0, -2.5)
    (text,) = encode([[1.0, -2.5, 1e-7, 1e7]], SqlType("vector"), P.TEXT)
    assert text == b"[1,-2.5,1e-07,1e+07]"
    with pytest.raises(SqlVecError, match="expected unused to be 0"):
        P.decode_binary(struct.pack("!HHf", 1, 7, 1.0), SqlType("vector"))
    with pytest.raises(SqlVecError, match="NaN not allowed"):
        P.decode_binary(struct.pack("!HHf", 1, 0, math.nan), SqlType("vector"))


@given(st.lists(st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False,
                                                  places=2, min_value=-10**7,
                                                  max_value=10**7))))
def test_numeric_round_trip(values):
    t = SqlType.of("numeric", 10, 2)
    values = [None if v is None else v.quantize(decimal.Decimal("0.01")) for v in values]
    for fmt in (P.TEXT, P.BINARY):
        assert round_trip(values, t, fmt) == values


@pytest.mark.parametrize("text, wire", [
    ("1.5", "0002 0000 0000 0001 0001 1388"),
    ("-123456.789", "0003 0001 4000 0003 000c 0d80 1ed2"),
    ("0.0001", "0001 ffff 0000 0004 0001"),
    ("0", "0000 0000 0000 0000"),
    ("NaN", "0000 0000 c000 0000"),
])
def test_numeric_binary_is_postgres_base_10000(text, wire):
    data = bytes.fromhex(wire.replace(" ", ""))
    assert P.encode_numeric(decimal.Decimal(text)) == data
    assert str(P.decode_numeric(data)) == text


def test_unconstrained_numeric_prints_without_padding():
    t = SqlType("numeric")
    assert encode([decimal.Decimal("1.5"), decimal.Decimal(2)], t, P.TEXT) == [b"1.5", b"2"]
    (cell,) = encode([decimal.Decimal("1.5")], t, P.BINARY)
    assert P.decode_numeric(cell) == decimal.Decimal("1.5")


@given(st.lists(st.one_of(st.none(), st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))))
def test_dates_round_trip(values):
    for fmt in (P.TEXT, P.BINARY):
        assert round_trip(values, SqlType("date"), fmt) == values


@given(st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1900, 1, 1),
                                                  dt.datetime(2200, 1, 1)))))
def test_timestamps_round_trip(values):
    for fmt in (P.TEXT, P.BINARY):
        assert round_trip(values, SqlType("timestamp"), fmt) == values
    aware = [None if v is None else v.replace(tzinfo=dt.timezone.utc) for v in values]
    for fmt in (P.TEXT, P.BINARY):
        assert round_trip(aware, SqlType("timestamptz"), fmt) == aware


def test_timestamp_text_layout():
    t = SqlType("timestamptz")
    values = [dt.datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=dt.timezone.utc),
              dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)]
    assert encode(values, t, P.TEXT) == [b"2024-01-02 03:04:05.12+00", b"2024-01-02 00:00:00+00"]
    assert struct.unpack("!q", encode(values[1:], t, P.BINARY)[0])[0] == \
        (dt.datetime(2024, 1, 2) - dt.datetime(2000, 1, 1)) // dt.timedelta(microseconds=1)


def test_scalar_types_both_formats():
    cases = [
        (SqlType("bool"), [True, False, None]),
        (SqlType("text"), ["", "é ✓", None]),
        (SqlType("varchar", 14), ["abc", None]),
        (SqlType("bytea"), [b"\x00\xff", b"", None]),
        (SqlType("time"), [dt.time(12, 30, 1, 5), None]),
        (SqlType("uuid"), [str(uuid.UUID(int=7)), None]),
        (SqlType("json"), ['{"a": [1, 2]}', None]),
        (SqlType("jsonb"), ['{"a": [1, 2]}', None]),
        (SqlType("interval"), [pa.MonthDayNano([14, 3, 3_600_000_000_000]), None]),
        (SqlType("_int4"), [[1, None, 3], [], None]),
        (SqlType("_text"), [["a", "b c", None, ""], None]),
    ]
    for t, values in cases:
        for fmt in (P.TEXT, P.BINARY):
            assert round_trip(values, t, fmt) == values, (t, fmt)


def test_text_outputs():
    assert encode([True, False], SqlType("bool"), P.TEXT) == [b"t", b"f"]
    assert encode([b"\x01\xab"], SqlType("bytea"), P.TEXT) == [b"\\x01ab"]
    assert encode([[1, None]], SqlType("_int4"), P.TEXT) == [b"{1,NULL}"]
    assert encode([["a b", ""]], SqlType("_text"), P.TEXT) == [b'{"a b",""}']
    assert encode([pa.MonthDayNano([0, 1, 0])], SqlType("interval"), P.TEXT) == [b"1 day"]
    assert P.encode_binary('{"a":1}', SqlType("jsonb"))[:1] == b"\x01"


def test_system_column_types_both_formats():
    tid = SqlType("tid")
    ctids = [P.parse_text("(0,1)", tid), P.parse_text("(4294967295,65535)", tid), None]
    assert encode(ctids, tid, P.TEXT) == [b"(0,1)", b"(4294967295,65535)", None]
    assert encode(ctids, tid, P.BINARY) == [b"\0\0\0\0\0\1", b"\xff" * 6, None]
    for t, values in ((tid, ctids), (SqlType("xid"), [3, 2**32 - 1, None]),
                      (SqlType("cid"), [0, None])):
        for fmt in (P.TEXT, P.BINARY):
            assert round_trip(values, t, fmt) == values, (t, fmt)
    assert encode([2**32 - 1], SqlType("xid"), P.BINARY) == [b"\xff" * 4]
    with pytest.raises(SqlVecError) as info:
        P.decode_param(b"\0\0\0\1", tid, P.BINARY)
    assert info.value.sqlstate == "22P03"


def test_bad_binary_parameters():
    with pytest.raises(SqlVecError) as info:
        P.decode_param(b"\x00\x01", SqlType("int4"), P.BINARY)
    assert info.value.sqlstate == "22P03"
    with pytest.raises(SqlVecError, match="jsonb version"):
        P.decode_param(b"\x02{}", SqlType("jsonb"), P.BINARY)
    with pytest.raises(SqlVecError) as info:
        P.decode_param(b"abc", SqlType("int4"), P.TEXT)
    assert info.value.sqlstate == "22P02"
    with pytest.raises(SqlVecError) as info:
        P.decode_param(b"\xff", SqlType("text"), P.TEXT)
    assert info.value.sqlstate == "22021"


# Whole columns (COPY FROM) ------------------------------------------------------------------------


def test_decode_text_column_fast_paths_and_errors():
    assert P.decode_text_column(pa.array(["1", None, "3"]), SqlType("int8")).to_pylist() == \
        [1, None, 3]
    assert P.decode_text_column(pa.array([" 7"]), SqlType("int4")).to_pylist() == [7]
    assert P.decode_text_column(pa.array(["on", "F", None]), SqlType("bool")).to_pylist() == \
        [True, False, None]
    vectors = P.decode_text_column(pa.array(["[1,2]", None, " [3, 4] "]), SqlType("vector", 2))
    assert vectors.type == pa.list_(pa.float32(), 2)
    assert vectors.to_pylist() == [[1, 2], None, [3, 4]]
    with pytest.raises(P.CellError) as info:
        P.decode_text_column(pa.array(["1", "2", "x"]), SqlType("int4"))
    assert info.value.row == 2 and info.value.error.sqlstate == "22P02"
    with pytest.raises(P.CellError) as info:
        P.decode_text_column(pa.array(["[1,2]", "[1,2,3]"]), SqlType("vector", 2))
    assert info.value.row == 1 and "expected 2 dimensions, not 3" in info.value.error.message


def _binary_column(values: list[bytes | None]):
    buf, starts, lengths = b"", [], []
    for v in values:
        starts.append(len(buf))
        lengths.append(-1 if v is None else len(v))
        buf += v or b""
    return buf, np.array(starts, np.int64), np.array(lengths, np.int64)


@settings(max_examples=30)
@given(st.lists(st.one_of(st.none(), st.lists(st.floats(-1e3, 1e3, width=32), min_size=4,
                                                max_size=4)), min_size=1))
def test_decode_binary_column_vectors(rows):
    t = SqlType("vector", 4)
    payloads = [None if r is None else P.encode_binary(r, t) for r in rows]
    column = P.decode_binary_column(*_binary_column(payloads), t)
    assert column.to_pylist() == rows


# PostgreSQL's text holds no NUL (and UTF-8 no lone surrogate).
TEXT_VALUES = st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",)))


@given(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1))),
       st.lists(st.one_of(st.none(), TEXT_VALUES)))
def test_decode_binary_column_ints_and_text(ints, texts):
    t8, tt = SqlType("int8"), SqlType("text")
    column = P.decode_binary_column(*_binary_column(
        [None if v is None else P.encode_binary(v, t8) for v in ints]), t8)
    assert column.to_pylist() == ints
    column = P.decode_binary_column(*_binary_column(
        [None if v is None else v.encode() for v in texts]), tt)
    assert column.to_pylist() == texts


@pytest.mark.parametrize("values, row, shown", [
    ([b"ok", b"a\0b"], 1, "0x00"),
    ([b"\xff", b"\0"], 0, "0xff"),
    ([b"x", b"\xc3\x28\0"], 1, "0xc3 0x28"),
])
def test_text_that_postgresql_cannot_hold_is_22021(values, row, shown):
    with pytest.raises(P.CellError) as info:
        P.decode_binary_column(*_binary_column(values), SqlType("text"))
    assert info.value.row == row and info.value.error.sqlstate == "22021"
    assert info.value.error.message == f'invalid byte sequence for encoding "UTF8": {shown}'
    with pytest.raises(SqlVecError) as error:
        P.decode_param(values[row], SqlType("text"), 0)  # text format
    assert error.value.message == f'invalid byte sequence for encoding "UTF8": {shown}'


def test_decode_binary_column_wrong_width():
    with pytest.raises(P.CellError) as info:
        P.decode_binary_column(*_binary_column([b"\0\0\0\1", b"\0\1"]), SqlType("int4"))
    assert info.value.row == 1 and info.value.error.sqlstate == "22P03"


SHORT_CASES = [
    (SqlType("int2"), st.integers(-2**15, 2**15 - 1), None),
    (SqlType("int4"), st.integers(-2**31, 2**31 - 1), None),
    (SqlType("int8"), st.integers(-2**63, 2**63 - 1), None),
    (SqlType("int8"), st.integers(-2**31, 2**31 - 1), pa.int32()),  # an int4 value, int8 type
    (SqlType("oid"), st.integers(0, 2**32 - 1), None),
    (SqlType("xid"), st.integers(0, 2**32 - 1), None),
    (SqlType("tid"), st.integers(0, 2**48 - 1), None),
    (SqlType("float4"), st.floats(width=32), None),
    (SqlType("float8"), st.floats(), None),
    (SqlType("bool"), st.booleans(), None),
    (SqlType("text"), TEXT_VALUES, None),
    (SqlType("varchar", 5), st.text(max_size=5), None),
    (SqlType("name"), TEXT_VALUES, pa.large_string()),
    (SqlType("jsonb"), st.just('{"a": 1}'), None),
    (SqlType("numeric", (10 << 16 | 2) + 4), st.decimals(-10**6, 10**6, places=2), None),
    (SqlType("date"), st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)), None),
    (SqlType("vector", 3), st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3),
     None),
]


@pytest.mark.parametrize("t, values, arrow_type", SHORT_CASES,
                         ids=[f"{t.format()}-{a}" for t, _, a in SHORT_CASES])
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_short_results_encode_as_whole_columns_do(t, values, arrow_type, data):
    rows = data.draw(st.lists(st.one_of(st.none(), values), max_size=P.SHORT_RESULT))
    array = pa.array(rows, arrow_type or t.to_arrow())
    start = data.draw(st.integers(0, len(rows)))
    for column in (array, array.slice(start), pa.chunked_array([array[:start], array[start:]],
                                                               type=array.type)):
        for fmt in (P.TEXT, P.BINARY):
            whole = P.encode_cells(column, t, fmt).to_pylist()
            assert P.cell_lists(column, t, fmt) == whole
            encoder = P.short_encoder(t, fmt, column.type)  # from Python values, where it can
            if encoder is not None:
                assert encoder(column.to_pylist()) == whole


def test_short_encoders_cover_the_usual_types_and_only_matching_arrow_types():
    for name, arrow_type in (("int2", pa.int16()), ("int4", pa.int32()), ("int8", pa.int64()),
                             ("float4", pa.float32()), ("float8", pa.float64()),
                             ("text", pa.string()), ("bool", pa.bool_())):
        assert P.short_encoder(SqlType(name), P.BINARY, arrow_type) is not None
    # A binary int4 held as int64 (or text as Arrow binary) is left to `cell_lists`.
    assert P.short_encoder(SqlType("int4"), P.BINARY, pa.int64()) is None
    assert P.short_encoder(SqlType("text"), P.TEXT, pa.binary()) is None
    assert P.short_encoder(SqlType("float8"), P.TEXT, pa.float64()) is None  # extra_float_digits


# sparsevec: pgvector's binary format ---------------------------------------------------------


def _sparse_cell(dim: int, indices: list[int], values: list[float], unused: int = 0) -> bytes:
    return (struct.pack("!iii", dim, len(indices), unused)
            + struct.pack(f"!{len(indices)}i", *indices) + struct.pack(f"!{len(values)}f", *values))


def test_sparsevec_binary_round_trip_uses_zero_based_indices():
    t = SqlType.parse("sparsevec(5)")
    value = P.decode_binary(_sparse_cell(5, [0, 2], [1.5, -2.0]), t)
    assert value == {"dim": 5, "indices": [1, 3], "values": [1.5, -2.0]}
    assert P.encode_binary(value, t) == _sparse_cell(5, [0, 2], [1.5, -2.0])
    assert P.decode_binary(_sparse_cell(3, [], []), SqlType("sparsevec"))["indices"] == []


@pytest.mark.parametrize(("cell", "sqlstate", "message"), [
    (_sparse_cell(4, [0], [1.0]), "22000", "expected 5 dimensions, not 4"),
    (_sparse_cell(5, [0], [1.0], unused=1), "22000", "expected unused to be 0, not 1"),
    (_sparse_cell(5, [5], [1.0]), "22000", "sparsevec index out of bounds"),
    (_sparse_cell(5, [2, 1], [1.0, 2.0]), "22000", "sparsevec indices must be in ascending order"),
    (_sparse_cell(5, [1, 1], [1.0, 2.0]), "22000", "sparsevec indices must not contain duplicates"),
    (_sparse_cell(5, [1], [0.0]), "22000",
     "binary representation of sparsevec cannot contain zero values"),
    (_sparse_cell(5, [1], [float("nan")]), "22000", "NaN not allowed in sparsevec"),
    (_sparse_cell(0, [], []), "22000", "sparsevec must have at least 1 dimension"),
    (_sparse_cell(5, [0, 1], [1.0])[:-4], "22P03", "insufficient data left in message"),
])
def test_sparsevec_binary_errors(cell, sqlstate, message):
    with pytest.raises(SqlVecError) as info:
        P.decode_binary(cell, SqlType.parse("sparsevec(5)"))
    assert (info.value.sqlstate, str(info.value)) == (sqlstate, message)


def test_vector_text_column_parses_whole_columns_as_parse_vector_does():
    from sqlvec.types import parse_vector

    texts = ["[1,2,3]", None, "[-1.5e-3,2E+2,0.1]", "[3.4028234e38,-0,1e-50]", "[+1,.5,5.]"]
    for values in (pa.array(texts), pa.chunked_array([texts[:2], texts[2:]]),
                   pa.array(texts, pa.large_string())):
        column = P.vector_text_column(values, SqlType("vector", 3))
        assert column is not None and column.type == pa.list_(pa.float32(), 3)
        got = column.to_pylist()
        for text, value in zip(texts, got):
            assert value == (None if text is None else parse_vector(text).tolist())
    undimensioned = P.vector_text_column(pa.array(["[1,2]", "[3,4]"]), SqlType("vector"))
    assert undimensioned.to_pylist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("texts", [
    ["[1,2,3]", "[1,2]"],  # a wrong dimension
    ["[1,2,3]", "[1,x,3]"],  # a bad literal
    ["[1,2,3]", "[1,2,3"],  # no closing bracket
    ["[1,nan,3]"], ["[1,inf,3]"], ["[1,1e39,3]"],  # pgvector's own errors
    ["[1, 2,3]"], ["[1,\n2,3]"], [" [1,2,3]"],  # whitespace: the general path trims it
    ["[1,0x10,3]"], ["[1,,3]"], ["[]"],
    [None, None],  # nothing to parse
])
def test_vector_text_column_leaves_the_unusual_to_the_general_path(texts):
    assert P.vector_text_column(pa.array(texts), SqlType("vector", 3)) is None


def test_vector_text_column_only_reads_vector():
    assert P.vector_text_column(pa.array(["[1,2]"]), SqlType("halfvec", 2)) is None


@pytest.mark.parametrize("name", ["int2", "int4", "int8", "float8", "text", "varchar",
                                  "bpchar", "varchar(2)", "uuid"])
@pytest.mark.parametrize("fmt", [P.TEXT, P.BINARY])
def test_a_param_decoder_decodes_as_decode_param(name, fmt):
    """The decoder chosen once per parameter gives decode_param's values and errors."""
    base, _, n = name.partition("(")
    t = SqlType(base, int(n[:-1])) if n else SqlType(name)
    samples = [None, b"12", b"-7", b"0123", b" 12 ", b"+5", b"1_0", b"-", b"", b"x",
               b"99999999999999999999", b"\x00\x05", b"\x00\x00\x00\x05", b"\xff" * 8,
               b"\x00\x01\x02", "h\u00e9llo".encode(), b"ab\x00", b"\xc3", b"abc ",
               b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", b"\xa0\xee" * 8]
    decode = P.param_decoder(t, fmt)
    for data in samples:
        try:
            want = ("ok", P.decode_param(data, t, fmt))
        except SqlVecError as exc:
            want = ("error", exc.sqlstate, exc.message)
        try:
            got = ("ok", decode(data))
        except SqlVecError as exc:
            got = ("error", exc.sqlstate, exc.message)
        assert repr(got) == repr(want), data  # (NaN: by its text)


def _cells(values: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(values), np.uint8).reshape(len(values), -1)


@pytest.mark.parametrize("name", INT)
@given(data=st.data())
def test_a_column_of_binary_integers_decodes_as_each_value(name, data):
    bits = INT[name]
    values = data.draw(st.lists(st.integers(-2**(bits - 1), 2**(bits - 1) - 1), min_size=1))
    t = SqlType(name)
    raw = [struct.pack(P._STRUCT[name], v) for v in values]
    column = P.param_column_decoder(t, P.BINARY, bits // 8)(_cells(raw))
    single = P.param_decoder(t, P.BINARY)
    assert column.dtype == np.int64 and column.tolist() == [single(v) for v in raw]
    assert P.param_column_decoder(t, P.BINARY, bits // 8 + 1) is None  # (decoded alone)


@given(st.lists(st.floats(), min_size=1))
def test_a_column_of_binary_float8_decodes_as_each_value(values):
    raw = [struct.pack("!d", v) for v in values]
    column = P.param_column_decoder(SqlType("float8"), P.BINARY, 8)(_cells(raw))
    assert np.array_equal(column, np.array(values), equal_nan=True)


def test_a_column_of_texts_takes_utf8_without_nul_only():
    decode = P.param_column_decoder(SqlType("text"), P.TEXT, 2)
    assert decode(_cells([b"ab", "é".encode(), b"  "])).to_pylist() == ["ab", "é", "  "]
    assert decode(_cells([b"ab", b"a\0"])) is None
    assert decode(_cells([b"ab", b"\xff\xfe"])) is None
    assert P.param_column_decoder(SqlType("text"), P.BINARY, 0)(
        np.empty((3, 0), np.uint8)).to_pylist() == ["", "", ""]


def _outcome(decode, data: bytes) -> object:
    try:
        value = decode(data)
    except SqlVecError as exc:
        return (exc.sqlstate, str(exc))
    return (value.dtype, value.tolist())


def test_a_vector_decoder_chosen_once_answers_as_decode_vector():
    """The shortcut of a vector of the type's dimensions gives decode_vector's values, and
    every other input (NaN, infinity, other dimensions, a bad header) decode_vector's value or
    error."""
    t = SqlType("vector", 3)
    head = struct.pack("!HH", 3, 0)
    big = np.array([3e38, 1, 2], ">f4").tobytes()  # finite, though its squares overflow float32
    inputs = [head + np.array(v, ">f4").tobytes()
              for v in ([1, -2.5, 3e-3], [0, 0, 0], [1, np.nan, 2], [np.inf, 1, 2])]
    inputs += [head + big, struct.pack("!HH", 2, 0) + b"\0" * 8, struct.pack("!HH", 3, 1) +
               b"\0" * 12, head + b"\0" * 8, b"\0\3", struct.pack("!HH", 4, 0) + b"\0" * 16]
    for typ in (t, SqlType("vector")):
        decode = P.vector_decoder(typ)
        reference = functools.partial(P.decode_vector, t=typ)
        for data in inputs:
            assert _outcome(decode, data) == _outcome(reference, data)
    assert _outcome(P.vector_decoder(t), head + big)[1][0] == pytest.approx(3e38)


def test_a_column_of_binary_vectors_takes_finite_ones_of_its_dimensions_only():
    t = SqlType("vector", 3)
    decode = P.param_column_decoder(t, P.BINARY, 16)
    rows = [np.array([1, -2.5, 3e-3], np.float32), np.array([0, 4, 5], np.float32)]
    raw = [struct.pack("!HH", 3, 0) + v.astype(">f4").tobytes() for v in rows]
    assert np.array_equal(decode(_cells(raw)), np.stack(rows))
    assert np.array_equal(decode(_cells(raw)), np.stack([P.decode_vector(r, t) for r in raw]))
    nan = struct.pack("!HH", 3, 0) + np.array([1, np.nan, 2], ">f4").tobytes()
    assert decode(_cells([raw[0], nan])) is None
    other = struct.pack("!HH", 2, 0) + np.array([1, 2, 3], ">f4").tobytes()[:8] + b"\0" * 4
    assert decode(_cells([raw[0], other])) is None
    assert P.param_column_decoder(t, P.BINARY, 12) is None


@pytest.mark.parametrize("name", INT)
@given(data=st.data())
def test_a_column_of_integer_digits_decodes_as_each_value(name, data):
    """Text integers of one width: the values `param_decoder` gives, or None when one is
    not plain digits in the type's range (decoded alone, its error is that path's)."""
    width = data.draw(st.integers(1, 18))
    alphabet = st.sampled_from(b"0123456789-+ x")
    raw = data.draw(st.lists(st.binary(min_size=width, max_size=width) | st.lists(
        alphabet, min_size=width, max_size=width).map(bytes), min_size=1, max_size=8))
    t = SqlType(name)
    single = P.param_decoder(t, P.TEXT)

    def alone(value: bytes) -> object:
        try:
            return single(value)
        except SqlVecError:
            return None

    column = P.param_column_decoder(t, P.TEXT, width)(_cells(raw))
    expected = [alone(v) for v in raw]
    plain = all(v.isdigit() or v[:1] == b"-" and v[1:].isdigit() for v in raw)
    if column is None:
        assert not plain or None in expected
    else:
        assert plain and column.tolist() == expected
