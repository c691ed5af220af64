"""wire.copy: COPY's three data formats (the statement itself: tests/sqlvec/sql/test_copy.py)."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.catalog.pg_stat import CopyProgress
from sqlvec.errors import ProtocolViolation
from sqlvec.memory import KeptMemory
from sqlvec.types import SqlType
from wire import copy as C
from wire.codec import SocketStream, read_header

COLUMNS = [C.Column("id", SqlType("int4")), C.Column("v", SqlType("vector", 2)),
           C.Column("note", SqlType("text"))]
TYPES = [c.type for c in COLUMNS]


# COPY FROM ----------------------------------------------------------------------------------------


def test_text_format():
    data = b"1\t[1,2]\ttab\\there\n2\t\\N\t\\N\n3\t[3,4]\t\\\\back\\x41\\101\n\\.\nignored\n"
    table = C.decode(data, C.CopyOptions(), COLUMNS)
    assert table.to_pylist() == [
        {"id": 1, "v": [1, 2], "note": "tab\there"},
        {"id": 2, "v": None, "note": None},
        {"id": 3, "v": [3, 4], "note": "\\backAA"},
    ]
    assert table.schema.types == [pa.int32(), pa.list_(pa.float32(), 2), pa.string()]


def test_text_format_errors_name_the_line():
    with pytest.raises(C.CopyDataError) as info:
        C.decode(b"1\t[1,2]\ta\nx\t[1,2]\tb\n", C.CopyOptions(), COLUMNS)
    assert info.value.sqlstate == "22P02"
    assert info.value.context("t") == 'COPY t, line 2, column id: "x"'
    with pytest.raises(C.CopyDataError) as info:
        C.decode(b"1\t[1,2]\n", C.CopyOptions(), COLUMNS)
    assert info.value.context("t") == "COPY t, line 1"
    with pytest.raises(C.CopyDataError) as info:
        C.decode(b"h\n1\t[1,2]\n", C.CopyOptions(header=True), COLUMNS)
    assert (info.value.sqlstate, info.value.message) == ("22P04",
                                                         'missing data for column "note"')
    assert info.value.line == 2
    with pytest.raises(C.CopyDataError) as info:
        C.decode(b"1\t[1,2]\ta\textra\n", C.CopyOptions(), COLUMNS)
    assert info.value.message == "extra data after last expected column"


def test_text_format_escapes_are_bytes_of_utf8_text():
    columns = [C.Column("note", SqlType("text"))]
    data = b"\\xc3\\xa9\\303\\251\\v\\q\n"  # e, e (two UTF-8 bytes each), \v, q
    assert C.decode(data, C.CopyOptions(), columns).column("note").to_pylist() == ["éé\vq"]


@pytest.mark.parametrize("fmt, data, line, shown", [
    ("text", b"ok\na\0b\n", 2, "0x00"),  # a raw NUL byte
    ("text", b"a\\0b\n", 1, "0x00"),  # the escape \0
    ("text", b"ok\nok\na\\x00b\n", 3, "0x00"),
    ("text", b"a\\xffb\n", 1, "0xff"),
    ("text", b"ok\n\xc3\x28\n", 2, "0xc3 0x28"),
    ("csv", b"ok\n\"a\0b\"\n", 2, "0x00"),
    ("csv", b"\xe2\x82\n", 1, "0xe2 0x82 0x0a"),  # as PostgreSQL: the bytes the lead announces
])
def test_text_postgresql_cannot_hold_is_22021(fmt, data, line, shown):
    columns = [C.Column("note", SqlType("text"))]
    with pytest.raises(C.CopyDataError) as info:
        C.decode(data, C.CopyOptions(fmt, "," if fmt == "csv" else "\t",
                                     "" if fmt == "csv" else "\\N"), columns)
    assert (info.value.sqlstate, info.value.line) == ("22021", line)
    assert info.value.message == f'invalid byte sequence for encoding "UTF8": {shown}'


def test_binary_format_text_with_nul_is_22021():
    columns = [C.Column("id", SqlType("int4")), C.Column("note", SqlType("text"))]
    data = binary_copy([(1, "fine"), (2, "a\0b")], [c.type for c in columns]) + C.BINARY_TRAILER
    with pytest.raises(C.CopyDataError) as info:
        C.decode(data, C.CopyOptions("binary"), columns)
    assert (info.value.sqlstate, info.value.line, info.value.column) == ("22021", 2, "note")


def test_csv_format():
    data = b'id,v,note\n1,"[1,2]","a,""b"""\n2,,\n3,"[3,4]",""\n'
    options = C.CopyOptions("csv", ",", "", header=True)  # COPY ... (FORMAT csv, HEADER)
    assert C.decode(data, options, COLUMNS).to_pylist() == [
        {"id": 1, "v": [1, 2], "note": 'a,"b"'},
        {"id": 2, "v": None, "note": None},  # unquoted empty is NULL
        {"id": 3, "v": [3, 4], "note": ""},  # quoted empty is an empty string
    ]
    with pytest.raises(C.CopyDataError) as info:
        C.decode(b'1,"[1,2]",a\n2,"[1,2,3]",b\n', C.CopyOptions("csv", ",", ""), COLUMNS)
    assert info.value.line == 2 and "expected 2 dimensions" in info.value.message


def binary_copy(rows: list[tuple], types: list[SqlType]) -> bytes:
    from wire.pgtypes import encode_binary

    out = [C.BINARY_HEADER]
    for row in rows:
        out.append(struct.pack("!h", len(row)))
        for value, t in zip(row, types):
            if value is None:
                out.append(struct.pack("!i", -1))
            else:
                raw = encode_binary(value, t)
                out.append(struct.pack("!i", len(raw)) + raw)
    out.append(C.BINARY_TRAILER)
    return b"".join(out)


NOTE_CHARACTERS = st.characters(exclude_characters="\0", exclude_categories=("Cs",))


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1),
                          st.one_of(st.none(), st.lists(st.floats(-1e3, 1e3, width=32),
                                                        min_size=2, max_size=2)),
                          st.one_of(st.none(), st.text(NOTE_CHARACTERS, max_size=10)))))
def test_binary_format_round_trip(rows):
    table = C.decode(binary_copy(rows, TYPES), C.CopyOptions("binary"), COLUMNS)
    assert [tuple(r.values()) for r in table.to_pylist()] == rows


def test_binary_format_errors():
    good = binary_copy([(1, [1.0, 2.0], "a")], TYPES)
    with pytest.raises(C.CopyDataError, match="signature not recognized"):
        C.decode(b"NOTCOPY" + good[7:], C.CopyOptions("binary"), COLUMNS)
    with pytest.raises(C.CopyDataError, match="unexpected EOF"):
        C.decode(good[:-8], C.CopyOptions("binary"), COLUMNS)
    with pytest.raises(C.CopyDataError, match="row field count is 3, expected 2"):
        C.decode(good, C.CopyOptions("binary"), COLUMNS[:2])


def test_malformed_rows_of_varying_layout_name_their_line():
    rows = [(1, None, "a"), (2, [1.0, 2.0], "bb"), (3, None, None)]
    data = bytearray(binary_copy(rows, TYPES))
    second = data.index(struct.pack("!hi", 3, 4) + struct.pack("!i", 2))
    data[second:second + 2] = struct.pack("!h", 4)
    with pytest.raises(C.CopyDataError, match="row field count is 4, expected 3") as info:
        C.decode(bytes(data), C.CopyOptions("binary"), COLUMNS)
    assert info.value.line == 2


def test_binary_vectors_are_decoded_in_bulk():
    """Fixed-layout rows go through one NumPy reshape, not a loop per value (no timing
    assertion: the rate is printed for the record)."""
    n, d = 200_000, 128
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, d)).astype(np.float32)
    record = np.empty(n, dtype=[("count", ">i2"), ("len1", ">i4"), ("id", ">i8"),
                                ("len2", ">i4"), ("dim", ">u2"), ("unused", ">u2"),
                                ("v", ">f4", (d,))])
    record["count"], record["len1"], record["id"] = 2, 8, np.arange(n)
    record["len2"], record["dim"], record["unused"], record["v"] = 4 + 4 * d, d, 0, matrix
    data = C.BINARY_HEADER + record.tobytes() + C.BINARY_TRAILER
    columns = [C.Column("id", SqlType("int8")), C.Column("v", SqlType("vector", d))]
    start = time.perf_counter()
    table = C.decode(data, C.CopyOptions("binary"), columns)
    elapsed = time.perf_counter() - start
    print(f"binary COPY decode: {n / elapsed:,.0f} rows/s of vector({d})")
    assert table.num_rows == n
    got = table.column("v").combine_chunks().values.to_numpy().reshape(n, d)
    np.testing.assert_array_equal(got, matrix)
    assert table.column("id").to_pylist()[-1] == n - 1


# COPY TO ------------------------------------------------------------------------------------------


def copy_payloads(data: bytes) -> list[bytes]:
    out = []
    while data:
        assert data[:1] == b"d"
        n = struct.unpack_from("!i", data, 1)[0]
        out.append(data[5:1 + n])
        data = data[1 + n:]
    return out


def test_encode_text_csv_binary():
    table = C.decode(b"1\t[1,2]\ta\\tb\n2\t\\N\t\\N\n", C.CopyOptions(), COLUMNS)
    assert copy_payloads(C.encode_rows(table, TYPES, C.CopyOptions())) == [
        b"1\t[1,2]\ta\\tb\n", b"2\t\\N\t\\N\n"]
    assert copy_payloads(C.encode_rows(table, TYPES, C.CopyOptions("csv", ",", ""))) == [
        b'1,"[1,2]",a\tb\n', b"2,,\n"]
    binary = b"".join(copy_payloads(C.encode_rows(table, TYPES, C.CopyOptions("binary"),
                                                  prefix=C.BINARY_HEADER)))
    back = C.decode(binary + C.BINARY_TRAILER, C.CopyOptions("binary"), COLUMNS)
    assert back.to_pylist() == table.to_pylist()


@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab\t\n\r\\,\" N.", max_size=8)),
                min_size=1))
def test_text_and_csv_round_trip(notes):
    columns = [C.Column("note", SqlType("text"))]
    table = pa.table({"note": pa.array(notes, pa.string())})
    for options in (C.CopyOptions(), C.CopyOptions("csv", ",", "")):
        data = b"".join(copy_payloads(C.encode_rows(table, [SqlType("text")], options)))
        assert C.decode(data, options, columns).column("note").to_pylist() == notes


def test_header_line():
    header = C.header_line(["id", "a,b"], C.CopyOptions("csv", ",", "", True))
    assert copy_payloads(header) == [b'id,"a,b"\n']


# The text format's fast path ----------------------------------------------------------------------

FAST_COLUMNS = [C.Column("id", SqlType("int8")), C.Column("note", SqlType("text")),
                C.Column("v", SqlType("vector", 3))]


@pytest.mark.parametrize("data", [
    b"1\tplain\t[1,2,3]\n2\t\\N\t\\N\n3\t\t[1e-3,-2.5E+2,0]\n",  # NULLs, an empty string
    'x\t"quoted" \'too\'\t[1,2,3]\n'.replace("x", "4").encode(),  # quotes are data
    "5\tnon-ASCII: é ☃ 𝄞\t[1,2,3]\n".encode(),
    b"6\t" + b"y" * 300_000 + b"\t[1,2,3]",  # a very long line, no final newline
    b"7\ta\t[ 1 , 2,3 ]\n",  # spaces around the numbers
])
def test_fast_text_path_takes_plain_data_and_agrees_with_the_exact_decoder(data):
    fast = C.decode_text_fast(data, C.CopyOptions(), FAST_COLUMNS)
    assert fast is not None
    assert fast.to_pylist() == C.decode_text(data, C.CopyOptions(), FAST_COLUMNS).to_pylist()
    assert fast.schema.types == [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)]


@pytest.mark.parametrize("data", [
    b"1\tback\\\\slash\t[1,2,3]\n",  # an escape
    b"1\ttab\\there\t\\N\n",  # an escape beside a NULL: more backslashes than NULLs
    b"1\ta\t[1,2,3]\n\\.\n",  # the end-of-data marker
    b"1\ta\t[1,2,3]\r\n",  # CRLF line ends
    b"1\ta\t[1,2,3]\n\n2\tb\t[1,2,3]\n",  # an empty line
    b"1\ta\t[1,2,3]\textra\n",  # a field too many
    b"1\ta\n",  # a field too few
    b"1\t\xff\t[1,2,3]\n",  # not UTF-8
    b"1\ta\x00b\t[1,2,3]\n",  # a NUL
    b"\xef\xbb\xbf1\ta\t[1,2,3]\n",  # a byte order mark, which Arrow's reader would skip
])
def test_fast_text_path_leaves_everything_else_to_the_exact_decoder(data):
    assert C.decode_text_fast(data, C.CopyOptions(), FAST_COLUMNS) is None


def test_fast_text_path_keeps_a_byte_order_mark_and_empty_lines_of_one_column():
    column = [C.Column("note", SqlType("text"))]
    assert C.decode_text_fast("\ufeffa\n".encode(), C.CopyOptions(), column) is None
    assert C.decode("\ufeffa\n".encode(), C.CopyOptions(), column).to_pylist() == \
        [{"note": "\ufeffa"}]
    fast = C.decode_text_fast(b"a\n\nb\n", C.CopyOptions(), column)
    assert fast is not None and fast.column("note").to_pylist() == ["a", "", "b"]


def test_fast_text_path_header_null_and_delimiter_options():
    options = C.CopyOptions("text", "|", "NULL", True)
    data = b"id|note|v\n1|NULL|[1,2,3]\n2||NULL\n"
    fast = C.decode_text_fast(data, options, FAST_COLUMNS)
    assert fast is not None
    assert fast.to_pylist() == [{"id": 1, "note": None, "v": [1, 2, 3]},
                                {"id": 2, "note": "", "v": None}]
    assert fast.to_pylist() == C.decode_text(data, options, FAST_COLUMNS).to_pylist()
    for escaped in (b"1|a\\|b|NULL\n", b"1|\\N|NULL\n"):  # with NULL 'NULL', \N is N
        assert C.decode_text_fast(escaped, options, FAST_COLUMNS) is None


def test_fast_text_path_errors_name_the_line_as_the_exact_decoder_does():
    lines = [b"%d\tn\t[1,2,3]\n" % i for i in range(1, 1001)]
    for bad, message, state in ((b"77\tn\t[1,2]\n", "expected 3 dimensions, not 2", "22000"),
                                (b"77\tn\t[1,x,3]\n", "invalid input syntax for type vector",
                                 "22P02"),
                                (b"77\tn\t[1,NaN,3]\n", "NaN not allowed in vector", "22000"),
                                (b"77\tn\t[1,1e39,3]\n", "out of range for type vector",
                                 "22003"),
                                (b"x\tn\t[1,2,3]\n", "invalid input syntax for type bigint",
                                 "22P02")):
        data = b"".join(lines[:776] + [bad] + lines[777:])
        with pytest.raises(C.CopyDataError) as info:
            C.decode(data, C.CopyOptions(), FAST_COLUMNS)
        assert message in info.value.message
        assert info.value.sqlstate == state
        assert info.value.line == 777


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                        blacklist_characters="\x00"),
                                 max_size=12)),
    st.one_of(st.none(), st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3))),
    min_size=1, max_size=30))
def test_fast_and_exact_text_decoders_agree_on_what_copy_to_writes(rows):
    """Whatever COPY TO writes (escapes, NULLs, any text) reads back the same through the
    fast path, when it takes the data, as through the exact decoder."""
    columns = FAST_COLUMNS[1:]
    table = pa.table({"note": pa.array([r[0] for r in rows], pa.string()),
                      "v": pa.array([r[1] for r in rows], pa.list_(pa.float32(), 3))})
    data = b"".join(copy_payloads(C.encode_rows(table, [c.type for c in columns],
                                                C.CopyOptions())))
    exact = C.decode_text(data, C.CopyOptions(), columns)
    assert exact.to_pylist() == table.to_pylist()
    fast = C.decode_text_fast(data, C.CopyOptions(), columns)
    if fast is not None:
        assert fast.to_pylist() == exact.to_pylist()
    if b"\\" not in data.replace(b"\\N", b"") and b"\r" not in data:
        assert fast is not None or any(r[0] == "" for r in rows)


def feed_in_messages(pieces: C._Pieces, data: bytes, size: int = 1000) -> C.CopyStream:
    stream = C.CopyStream(pieces)
    for at in range(0, len(data), size):
        stream.append(data[at:at + size])
    assert stream.size == len(data)
    assert bytes(stream.whole()) == data  # the chunks hold the stream exactly
    return stream


@pytest.mark.parametrize("header", [False, True])
def test_text_pieces_decoded_while_arriving_make_the_whole_stream(monkeypatch, header):
    monkeypatch.setattr(C.CopyStream, "CHUNK", 4096)
    lines = [b"%d\tn%d\t[%d,2.5,-3e-2]\n" % (i, i, i) for i in range(2000)]
    lines[5] = b"5\t\\N\t\\N\n"
    data = (b"id\tnote\tv\n" if header else b"") + b"".join(lines)
    options = C.CopyOptions(header=header)
    stream = feed_in_messages(C.TextPieces(options, FAST_COLUMNS), data)
    assert len(stream.pieces.pieces) > 5  # it did decode while the data arrived
    table = stream.finish()
    assert table is not None
    assert table.to_pylist() == C.decode_text(data, options, FAST_COLUMNS).to_pylist()


def test_a_text_line_longer_than_a_chunk_is_carried_into_the_next(monkeypatch):
    monkeypatch.setattr(C.CopyStream, "CHUNK", 256)
    lines = [b"%d\tn%d\t[%d,2.5,-3e-2]\n" % (i, i, i) for i in range(200)]
    lines[50] = b"50\t" + b"x" * 1000 + b"\t[1,2,3]\n"
    data = b"".join(lines)
    stream = feed_in_messages(C.TextPieces(C.CopyOptions(), FAST_COLUMNS), data, 100)
    table = stream.finish()
    assert table is not None
    assert table.to_pylist() == C.decode_text(data, C.CopyOptions(), FAST_COLUMNS).to_pylist()


@pytest.mark.parametrize("line", [b"1500\tback\\\\slash\t[1,2,3]\n", b"1500\tn\t[1,2]\n",
                                  b"1500\tn\t[1,2,3]\textra\n"])
def test_text_pieces_leave_unusual_or_bad_data_to_the_whole_stream_decoder(monkeypatch, line):
    monkeypatch.setattr(C.CopyStream, "CHUNK", 4096)
    lines = [b"%d\tn\t[1,2,3]\n" % i for i in range(2000)]
    lines[1499] = line
    data = b"".join(lines)
    stream = feed_in_messages(C.TextPieces(C.CopyOptions(), FAST_COLUMNS), data)
    assert stream.finish() is None


def receive_as_the_connection_does(sends: list[bytes]) -> tuple[C.CopyStream, list]:
    """Messages sent over a socket pair in the pieces `sends`, received as
    `Connection._copy_in` does: each CopyData header read, then `CopyStream.receive` takes
    that body and the CopyData right after it. Returns the stream and, in order, every other
    message and the data bytes each receive counted."""
    client, server = socket.socketpair()
    sender = threading.Thread(target=_send_slowly, args=(client, sends))
    sender.start()
    stream, received, others = C.CopyStream(), SocketStream(server, 1 << 12), []
    try:
        while True:
            type_byte, length = read_header(received.read_exactly)
            if type_byte == b"d":
                counted = CopyProgress(0, "COPY FROM")
                stream.receive(received, length, progress=counted)
                others.append(counted.bytes_processed)
                continue
            others.append((type_byte, received.read_exactly(length) if length else b""))
            if type_byte == b"S":
                return stream, others
    finally:
        sender.join()
        client.close()
        server.close()


def _send_slowly(sock: socket.socket, sends: list[bytes]) -> None:
    for i, data in enumerate(sends):
        sock.sendall(data)
        if i % 10 == 0:
            time.sleep(0.001)  # the receiver catches up: the next send then comes alone


def _pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = sizes[len(out) % len(sizes)]
        out.append(data[at:at + size])
        at += size
    return out


@pytest.mark.parametrize("sizes", [None, [3, 5, 1000, 2, 1], [4099, 17, 70000], [1 << 20]])
def test_copy_data_received_in_runs_is_the_stream_exactly(monkeypatch, sizes):
    """CopyData headers and bodies split anywhere by the client's sends (one message a send,
    a header cut in two, several messages in one receive, chunks filled mid-message): the
    stream holds exactly the messages' bodies, and what follows them (CopyDone, Sync) is read
    as usual."""
    monkeypatch.setattr(C.CopyStream, "CHUNK", 4096)
    rng = np.random.default_rng(7)
    bodies = [rng.bytes(int(size)) for size in rng.integers(0, 3000, 60)]
    messages = [*map(C.copy_data, bodies), b"c\x00\x00\x00\x04", b"S\x00\x00\x00\x04"]
    sends = messages if sizes is None else _pieces(b"".join(messages), sizes)
    stream, others = receive_as_the_connection_does(sends)
    assert bytes(stream.whole()) == b"".join(bodies)
    runs = [n for n in others if isinstance(n, int)]
    assert sum(runs) == stream.size == sum(map(len, bodies))
    assert others[-2:] == [(b"c", b""), (b"S", b"")]


def test_a_copy_data_header_past_the_size_limit_is_refused_where_it_lands():
    bodies = [b"x" * 10, b"y" * 20]  # the second's size claimed 2 GB
    messages = b"".join(map(C.copy_data, bodies)).replace(b"d\x00\x00\x00\x18",
                                                          b"d\x7f\x00\x00\x18")
    client, server = socket.socketpair()
    client.sendall(messages)
    received, stream = SocketStream(server), C.CopyStream()
    type_byte, length = read_header(received.read_exactly)
    with pytest.raises(ProtocolViolation, match="invalid message length"):
        stream.receive(received, length, max_size=1 << 20)
    client.close()
    server.close()


@pytest.mark.parametrize("length", [-1, -(1 << 31), 2])
def test_a_copy_data_header_of_a_bad_length_that_lands_is_refused_as_when_read_alone(length):
    """A negative length is named as the client sent it (signed), whether the header came
    with the data before it or alone."""
    header = b"d" + struct.pack("!i", length)
    client, server = socket.socketpair()
    client.sendall(C.copy_data(b"x" * 10) + header)
    received, stream = SocketStream(server), C.CopyStream()
    type_byte, first = read_header(received.read_exactly)
    with pytest.raises(ProtocolViolation, match=f"invalid message length {length}$"):
        stream.receive(received, first)
    client.close()
    server.close()


BINARY_COLUMNS = [C.Column("id", SqlType("int8")), C.Column("v", SqlType("vector", 3))]


def binary_vectors(n: int, null_at: int | None = None) -> bytes:
    parts = [C.BINARY_HEADER]
    for i in range(n):
        if i == null_at:
            parts.append(struct.pack("!hiqi", 2, 8, i, -1))
        else:
            parts.append(struct.pack("!hiqiHH3f", 2, 8, i, 16, 3, 0, i, 0.5, -i))
    return b"".join(parts) + C.BINARY_TRAILER


@pytest.mark.parametrize("chunk", [2048, 34 * 60])  # rows across chunks, or ending with them
def test_binary_pieces_decoded_while_arriving_make_the_whole_stream(monkeypatch, chunk):
    monkeypatch.setattr(C.CopyStream, "CHUNK", chunk)
    data = binary_vectors(3000)
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), data, 777)
    assert len(stream.pieces.pieces) > 5
    table = stream.finish()
    assert table is not None
    assert table.to_pylist() == C.decode_binary(data, BINARY_COLUMNS).to_pylist()


def large_binary_vectors(n: int, seed: int) -> bytes:
    """n rows of BINARY_COLUMNS, made at once (fixed layout)."""
    rec = np.zeros(n, dtype=[("count", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                             ("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (3,))])
    rec["count"], rec["l1"], rec["l2"], rec["dim"] = 2, 8, 16, 3
    rec["id"] = np.arange(n) + seed
    rec["v"] = np.random.default_rng(seed).standard_normal((n, 3))
    return C.BINARY_HEADER + rec.tobytes() + C.BINARY_TRAILER


def test_the_chunks_of_a_finished_copy_are_kept_and_the_next_copy_decodes_exactly(monkeypatch):
    """A finished stream's chunks go back once nothing refers to them, and so does the
    memory its vectors were decoded into once its rows are gone; the next stream is received
    into them and decodes exactly, and rows of the first one still held are untouched."""
    monkeypatch.setattr(C, "_chunks", KeptMemory(C.CopyStream.CHUNK, 16))
    first, second = large_binary_vectors(300_000, 1), large_binary_vectors(300_000, 2)
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), first, 1 << 15)
    loaded = stream.finish()
    assert len(stream.pieces.memory) == 3  # each piece's vectors, in memory of its own
    stream.close()
    assert C._chunks.kept == 3  # 10 MB in 4 MiB chunks; `loaded` still holds its vectors
    kept = [C._chunks._idle[i] for i in range(3)]
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), second, 1 << 15)
    assert stream.finish().equals(C.decode_binary(second, BINARY_COLUMNS))
    assert C._chunks.kept == 0
    used = [buf for buf, _, _ in stream._full] + [stream._buf] + stream.pieces.memory
    assert set(map(id, kept)) <= set(map(id, used))
    assert loaded.equals(C.decode_binary(first, BINARY_COLUMNS))
    stream.close()
    assert C._chunks.kept == 6  # its chunks, and its vectors' memory


def test_a_chunk_still_referred_to_is_not_kept(monkeypatch):
    """The stream in one chunk, viewed by whoever decoded it whole: that chunk is not reused
    while the view lives, and a stream whose decoding still runs keeps none."""
    monkeypatch.setattr(C, "_chunks", KeptMemory(C.CopyStream.CHUNK, 8))
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), binary_vectors(100), 64)
    whole = stream.whole()
    stream.close()
    assert C._chunks.kept == 0
    whole.release()
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), binary_vectors(100), 64)
    stream.pieces.pieces.append(concurrent.futures.Future())  # a piece not decoded yet
    stream.close()
    assert C._chunks.kept == 0


@pytest.mark.parametrize("null_at", [0, 2500])
def test_binary_pieces_walk_rows_of_another_layout(monkeypatch, null_at):
    """A NULL vector (first, or after chunks of the first row's layout) changes the rows'
    layout: the pieces walk the rows from there on, reading their size words."""
    monkeypatch.setattr(C.CopyStream, "CHUNK", 2048)
    data = binary_vectors(3000, null_at=null_at)
    stream = feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), data, 777)
    assert len(stream.pieces.pieces) > 5
    table = stream.finish()
    assert table is not None
    assert table.column("v").null_count == 1
    assert table.to_pylist() == C.decode_binary(data, BINARY_COLUMNS).to_pylist()


@pytest.mark.parametrize("tail", [b"", b"\x00\x02", b"\xff\xff"])
def test_binary_pieces_leave_a_bad_row_or_a_bad_end_to_the_whole_stream(monkeypatch, tail):
    monkeypatch.setattr(C.CopyStream, "CHUNK", 2048)
    data = bytearray(binary_vectors(3000))
    if tail:
        data += tail  # data after the trailer, or a row cut short
    else:
        row = 2 + 12 + 4 + 16
        at = len(C.BINARY_HEADER) + 2000 * row + 2 + 12 + 4
        data[at:at + 2] = struct.pack("!H", 2)  # row 2001 says 2 dimensions
    assert feed_in_messages(C.BinaryPieces(BINARY_COLUMNS), bytes(data), 777).finish() is None
    if not tail:
        with pytest.raises(C.CopyDataError) as info:
            C.decode_binary(bytes(data), BINARY_COLUMNS)
        assert info.value.line == 2001
