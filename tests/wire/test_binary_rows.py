"""wire.binary_rows: finding the rows of a binary COPY stream by reading only the size words
that vary, and the decoders built on it (the whole stream's and the pieces decoded while the
data arrives), checked against a field-by-field walk with value-by-value decoding."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.types import SqlType
from wire import binary_rows as R
from wire import copy as C
from wire import pgtypes

# The suite's COPY table: fixed-width numbers, a float, a text column and a vector.
COLUMNS = [C.Column("id", SqlType("int8")), C.Column("category", SqlType("int4")),
           C.Column("price", SqlType("float8")), C.Column("tag", SqlType("text")),
           C.Column("embedding", SqlType("vector", 3))]
TYPES = [c.type for c in COLUMNS]
HEADER = len(C.BINARY_HEADER)


class SmallChunks(C.CopyStream):
    CHUNK = 512  # many pieces from a few hundred rows


def field(value: object, t: SqlType) -> bytes:
    if value is None:
        return struct.pack("!i", -1)
    raw = pgtypes.encode_binary(value, t)
    return struct.pack("!i", len(raw)) + raw


def row_bytes(row: tuple) -> bytes:
    return struct.pack("!h", len(row)) + b"".join(field(v, t) for v, t in zip(row, TYPES))


def stream(rows: list[bytes]) -> bytes:
    return C.BINARY_HEADER + b"".join(rows) + C.BINARY_TRAILER


def reference(data: bytes, columns: list[C.Column]) -> list[list]:
    """Rows found field by field and decoded value by value (each type's recv function)."""
    starts, lengths = C._walk_rows(data, HEADER, len(columns))
    rows = []
    for r in range(starts.shape[0]):
        row = []
        for j, col in enumerate(columns):
            at, size = int(starts[r, j]), int(lengths[r, j])
            value = None if size < 0 else pgtypes.decode_binary(data[at:at + size], col.type)
            row.append(value)
        rows.append(row)
    return rows


def comparable(value: object) -> object:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(x) for x in value]
    return value


def rows_of(table) -> list[list]:
    return [[comparable(v) for v in row.values()] for row in table.to_pylist()]


def pieces(data: bytes, columns: list[C.Column] = COLUMNS):
    source = SmallChunks(C.BinaryPieces(columns))
    for at in range(0, len(data), 100):
        source.append(data[at:at + 100])
    return source


TAG = st.one_of(st.none(), st.text(st.characters(exclude_characters="\0",
                                                  exclude_categories=("Cs",)), max_size=12),
                st.sampled_from(["\x05", "\x00\x05"[1:] * 3, "red", ""]))
ROW = st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                st.one_of(st.none(), st.integers(-2**31, 2**31 - 1), st.just(5)),
                st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                TAG,
                st.one_of(st.none(), st.lists(st.floats(-1e6, 1e6, width=32), min_size=3,
                                              max_size=3)))


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=300), st.integers(0, 2))
def test_fast_decoders_agree_with_the_field_by_field_walk(rows, rest_nulls):
    """Random rows (NULLs anywhere, negative numbers, NaN and infinities, text holding bytes
    that look like a field count): the whole stream's decoder and the pieces give exactly
    the rows and values a field-by-field walk and value-by-value decoding give."""
    if rest_nulls == 1:  # rows of the first row's layout, then NULLs
        rows = [(i, 1, 2.5, "red", [1.0, -2.0, 3.0]) for i in range(40)] + rows
    data = stream([row_bytes(r) for r in rows])
    expected = [[comparable(v) for v in row] for row in reference(data, COLUMNS)]
    assert len(expected) == len(rows)
    assert rows_of(C.decode_binary(data, COLUMNS)) == expected
    table = pieces(data).finish()
    if len(data) > SmallChunks.CHUNK:
        assert table is not None  # decoded while it arrived
    if table is not None:
        assert rows_of(table) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=60))
def test_the_walk_finds_the_rows_the_field_by_field_walk_finds(rows):
    data = stream([row_bytes(r) for r in rows])
    end = len(data) - 2
    walked = C._walk_rows(data, HEADER, len(COLUMNS))
    for sizes in (R.template(data, HEADER, TYPES), R.varying(len(COLUMNS))):
        assert sizes is not None
        starts, stop = R.walk(data, HEADER, end, sizes)
        found = R.fields(data, starts, sizes)
        if found is None or stop != end:  # the first row's sizes do not fit a later row
            assert sizes != R.varying(len(COLUMNS))  # reading every size word always fits
            continue
        np.testing.assert_array_equal(found[0], walked[0])
        np.testing.assert_array_equal(found[1], walked[1])


def test_the_template_reads_only_what_varies():
    data = stream([row_bytes((1, 2, 3.0, "abc", [1.0, 2.0, 3.0])),
                   row_bytes((2, 3, 4.0, None, [1.0, 2.0, 3.0]))])
    assert R.template(data, HEADER, TYPES) == [8, 4, 8, None, 16]
    nulls = stream([row_bytes((None, 2, 3.0, "abc", None))])
    assert R.template(nulls, HEADER, TYPES) == [None, 4, 8, None, None]
    assert R.template(data[:HEADER + 10], HEADER, TYPES) is None  # not all there
    starts, stop = R.walk(data, HEADER, len(data) - 2, R.template(data, HEADER, TYPES))
    assert stop == len(data) - 2 and len(starts) == 2
    # A row cut short is not found; the walk ends where the whole rows do.
    assert R.walk(data, HEADER, len(data) - 5, R.template(data, HEADER, TYPES)) == (
        starts[:1], starts[1])


def test_a_null_where_the_template_expects_a_fixed_size_is_caught():
    """The walk trusts the template; `fields` checks it, and the reading of every size word
    then finds the rows (the pieces switch to it for the rest of the stream)."""
    good = [row_bytes((i, i, 1.0, "t" * (i % 4), [1.0, 2.0, 3.0])) for i in range(200)]
    good[150] = row_bytes((150, None, 1.0, "x", [1.0, 2.0, 3.0]))
    data = stream(good)
    sizes = R.template(data, HEADER, TYPES)
    starts, _ = R.walk(data, HEADER, len(data) - 2, sizes)
    # The walk stops at the row it misreads, or `fields` rejects the rows it found.
    assert len(starts) <= 150 or R.fields(data, starts, sizes) is None
    table = pieces(data).finish()
    assert table is not None
    assert table.column("category").null_count == 1
    assert rows_of(table) == [[comparable(v) for v in row] for row in reference(data, COLUMNS)]


def _bad(row: int, replace: bytes, rows: int = 300) -> bytes:
    parts = [row_bytes((i, i % 7, -i / 3, ["red", "green", "", None][i % 4],
                        [float(i), -0.5, 2.0])) for i in range(rows)]
    parts[row] = replace
    return stream(parts)


def _raw(*fields: bytes) -> bytes:
    return struct.pack("!h", len(fields)) + b"".join(fields)


GOOD = [field(7, TYPES[0]), field(1, TYPES[1]), field(2.0, TYPES[2]), field("a", TYPES[3]),
        field([1.0, 2.0, 3.0], TYPES[4])]
SIZE = struct.Struct("!i")


@pytest.mark.parametrize("bad, sqlstate, message, column", [
    (_raw(*GOOD[:4]), "22P04", "row field count is 4, expected 5", None),
    (_raw(*GOOD[:3], SIZE.pack(-2), *GOOD[4:]), "22P04", "invalid field size", None),
    (_raw(GOOD[0], SIZE.pack(2) + b"\x00\x01", *GOOD[2:]), "22P03",
     "incorrect binary data format for type integer", "category"),
    (_raw(*GOOD[:2], SIZE.pack(4) + b"\x00" * 4, *GOOD[3:]), "22P03",
     "incorrect binary data format for type double precision", "price"),
    (_raw(*GOOD[:3], SIZE.pack(2) + b"\xff\xfe", GOOD[4]), "22021",
     'invalid byte sequence for encoding "UTF8": 0xff', "tag"),
    (_raw(*GOOD[:3], SIZE.pack(3) + b"a\x00b", GOOD[4]), "22021",
     'invalid byte sequence for encoding "UTF8": 0x00', "tag"),
    (_raw(*GOOD[:4], SIZE.pack(16) + struct.pack("!HH3f", 3, 0, 1.0, math.nan, 2.0)),
     "22000", "NaN not allowed in vector", "embedding"),
    (_raw(*GOOD[:4], SIZE.pack(16) + struct.pack("!HH3f", 3, 0, 1.0, math.inf, 2.0)),
     "22000", "infinite value not allowed in vector", "embedding"),
    (_raw(*GOOD[:4], field([1.0, 2.0], SqlType("vector"))),
     "22000", "expected 3 dimensions, not 2", "embedding"),
])
def test_each_error_names_its_line_whichever_path_meets_it(bad, sqlstate, message, column):
    """A bad row 201 in a stream the pieces take: they give up (None), and the whole stream
    decoder fails with PostgreSQL's message, SQLSTATE and the row's line, as before."""
    data = _bad(200, bad)
    assert pieces(data).finish() is None
    with pytest.raises(C.CopyDataError) as info:
        C.decode_binary(data, COLUMNS)
    assert (info.value.sqlstate, info.value.message) == (sqlstate, message)
    assert info.value.line == 201
    assert info.value.column == column


def test_a_stream_cut_short_or_with_data_after_the_trailer():
    data = _bad(10, row_bytes((10, 1, 1.0, "x", [1.0, 2.0, 3.0])))
    cut = data[:HEADER + 250 * 60]
    assert pieces(cut).finish() is None
    with pytest.raises(C.CopyDataError, match="unexpected EOF in COPY data"):
        C.decode_binary(cut, COLUMNS)
    assert pieces(data + b"\x00\x05").finish() is None
