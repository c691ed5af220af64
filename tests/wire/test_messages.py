"""wire.messages: every message round-trips through encode/decode; startup packets."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlvec.errors import ProtocolViolation
from wire import messages as m
from wire.codec import Reader

names = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                max_size=20)
values = st.one_of(st.none(), st.binary(max_size=30))
oids = st.integers(0, 2**32 - 1)
formats = st.lists(st.sampled_from([0, 1]), max_size=4).map(tuple)

FRONTEND = st.one_of(
    st.builds(m.Query, names),
    st.builds(m.Parse, names, names, st.lists(oids, max_size=5).map(tuple)),
    st.builds(m.Bind, names, names, formats, st.lists(values, max_size=5).map(tuple), formats),
    st.builds(m.Describe, st.sampled_from("SP"), names),
    st.builds(m.Execute, names, st.integers(0, 2**31 - 1)),
    st.builds(m.Close, st.sampled_from("SP"), names),
    st.just(m.Flush()), st.just(m.Sync()), st.just(m.Terminate()),
    st.builds(m.CopyData, st.binary(max_size=50)), st.just(m.CopyDone()),
    st.builds(m.CopyFail, names), st.builds(m.PasswordMessage, st.binary(max_size=30)),
)

FIELDS = st.builds(m.FieldDescription, names, oids, st.integers(-2**15, 2**15 - 1), oids,
                   st.integers(-2**15, 2**15 - 1), st.integers(-2**31, 2**31 - 1),
                   st.sampled_from([0, 1]))
BACKEND = st.one_of(
    st.builds(m.Authentication, st.sampled_from([0, 3, 5, 10, 11, 12]), st.binary(max_size=20)),
    st.builds(m.ParameterStatus, names, names),
    st.builds(m.BackendKeyData, st.integers(0, 2**31 - 1), st.binary(min_size=4, max_size=4)),
    st.builds(m.NegotiateProtocolVersion, st.integers(0, 5), st.lists(names, max_size=3)
              .map(tuple)),
    st.builds(m.ReadyForQuery, st.sampled_from("ITE")),
    st.builds(m.RowDescription, st.lists(FIELDS, max_size=4).map(tuple)),
    st.builds(m.DataRow, st.lists(values, max_size=5).map(tuple)),
    st.builds(m.CommandComplete, names),
    st.builds(m.ParameterDescription, st.lists(oids, max_size=5).map(tuple)),
    st.builds(m.ErrorResponse, st.lists(st.tuples(st.sampled_from("SVCMDHPW"), names),
                                        max_size=5).map(tuple)),
    st.builds(m.CopyInResponse, st.sampled_from([0, 1]), formats),
    st.builds(m.CopyOutResponse, st.sampled_from([0, 1]), formats),
    st.sampled_from([m.ParseComplete(), m.BindComplete(), m.CloseComplete(), m.NoData(),
                     m.PortalSuspended(), m.EmptyQueryResponse(), m.CopyDone()]),
)


def split(frame: bytes) -> tuple[bytes, bytes]:
    length = int.from_bytes(frame[1:5], "big")
    assert length == len(frame) - 1
    return frame[:1], frame[5:]


@given(FRONTEND)
def test_frontend_round_trip(message):
    assert m.decode_frontend(*split(message.encode())) == message


@given(BACKEND)
def test_backend_round_trip(message):
    decoded = m.decode_backend(*split(message.encode()))
    assert decoded == message and type(decoded) is type(message)


@given(st.dictionaries(names.filter(bool), names, max_size=5))
def test_startup_round_trip(parameters):
    message = m.StartupMessage(m.PROTOCOL_3_0, parameters)
    frame = message.encode()
    assert int.from_bytes(frame[:4], "big") == len(frame)
    assert m.decode_startup(frame[4:]) == message


def test_startup_requests():
    assert m.decode_startup(m.SSLRequest().encode()[4:]) == m.SSLRequest()
    assert m.decode_startup(m.GSSENCRequest().encode()[4:]) == m.GSSENCRequest()
    cancel = m.CancelRequest(1234, b"\x01\x02\x03\x04")
    assert m.decode_startup(cancel.encode()[4:]) == cancel
    with pytest.raises(ProtocolViolation):
        m.decode_startup(m.CancelRequest(1, b"\x01").encode()[4:])


@pytest.mark.parametrize("type_byte, body", [
    (b"!", b""), (b"Z", b""),  # not a frontend message
    (b"S", b"extra"),  # Sync has no body
    (b"D", b"X\0"),  # Describe of neither S nor P
    (b"B", b"\0\0\x00\x01\x00\x07\x00\x00\x00\x00"),  # format code 7
    (b"P", b"a\0b\0\xff\xff"),  # 65535 parameter types announced, none sent
    (b"B", b"\0\0\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),  # value length -2
    (b"B", b"\0\0\x00\x00\x00\x01\x00\x00\x00\x05ab\x00\x00"),  # value cut short
    (b"B", b"\0\0\x00\x02\x00\x01"),  # two parameter formats announced, one sent
    (b"B", b"\0\0\x00\x00\x00\x00\x00\x00\x00"),  # a byte after the result formats
    (b"B", b"\0\0\x00\x00\x00\x00\x00"),  # result format count cut short
    (b"B", b"abc"),  # portal name without its terminator
    (b"E", b"\0\x00\x00\x00"),  # Execute's row count cut short
    (b"E", b"\0\x00\x00\x00\x00\x00"),  # a byte after Execute's row count
    (b"D", b""),  # Describe without its kind
])
def test_malformed_frontend_messages(type_byte, body):
    with pytest.raises(ProtocolViolation) as info:
        m.decode_frontend(type_byte, body)
    assert info.value.sqlstate == "08P01"


def test_repeated_small_bodies_decode_once_and_bad_ones_fail_every_time():
    body = m.Bind("", "s1", (), (), (1,)).encode()[5:]
    first = m.decode_frontend(b"B", body)
    assert first == m.Bind("", "s1", (), (), (1,))
    assert m.decode_frontend(b"B", bytes(body)) is first  # shared: messages are immutable
    assert m.decode_frontend(b"E", b"\0\0\0\0\0") == m.Execute("", 0)
    for _ in range(2):  # a malformed body is not remembered
        with pytest.raises(ProtocolViolation):
            m.decode_frontend(b"E", b"\0\x00\x00\x00")
    for i in range(3000):  # the table stays bounded whatever clients send
        m.decode_frontend(b"E", b"\0" + i.to_bytes(4, "big"))
    assert len(m._decoded) <= m._REPEATED_ENTRIES
    big = m.Bind("", "s", (1,), (b"x" * 100,), ()).encode()[5:]  # long bodies: decoded each time
    assert m.decode_frontend(b"B", big) is not m.decode_frontend(b"B", big)


def test_bind_names_must_be_utf8():
    with pytest.raises(ProtocolViolation) as info:
        m.decode_frontend(b"B", b"\xff\0\0\x00\x00\x00\x00\x00\x00")
    assert info.value.sqlstate == "22021"


def test_bind_decodes_null_and_empty_values_and_one_format_for_all():
    body = m.Bind("p", "s", (1,), (None, b"", b"xy"), (1,)).encode()[5:]
    assert m.decode_frontend(b"B", body) == m.Bind("p", "s", (1,), (None, b"", b"xy"), (1,))


def test_error_response_fields():
    error = m.ErrorResponse.build("ERROR", "42P01", 'relation "x" does not exist', position=15,
                                  hint="check the name")
    assert error.fields[:4] == (("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"),
                                ("M", 'relation "x" does not exist'))
    assert error.get("P") == "15" and error.get("H") == "check the name"
    assert error.get("D") is None
    assert m.NoticeResponse.build("WARNING", "01000", "w").encode()[:1] == b"N"


def test_sasl_messages():
    auth = m.Authentication.sasl(["SCRAM-SHA-256"])
    assert auth.data == b"SCRAM-SHA-256\0\0"
    initial = m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    password = m.decode_frontend(*split(initial.encode()))
    assert m.SASLInitialResponse.decode(Reader(password.data)) == initial


def test_data_rows_in_one_batch_match_one_by_one():
    cells = [pa.array([b"\x00\x00\x00\x011", b"\xff\xff\xff\xff"], pa.large_binary()),
             pa.array([b"\x00\x00\x00\x02ab", b"\x00\x00\x00\x00"], pa.large_binary())]
    expected = m.DataRow((b"1", b"ab")).encode() + m.DataRow((None, b"")).encode()
    assert m.DataRow.encode_batch(cells, 2) == expected
    assert m.DataRow.encode_batch([], 3) == m.DataRow(()).encode() * 3


def test_data_rows_from_cell_lists_match_the_batch():
    cells = [[b"\x00\x00\x00\x011", b"\xff\xff\xff\xff"], [b"\x00\x00\x00\x02ab", b"\x00\x00\x00\x00"]]
    batch = m.DataRow.encode_batch([pa.array(c, pa.large_binary()) for c in cells], 2)
    assert m.DataRow.encode_cell_rows(cells, 2) == batch
    assert m.DataRow.encode_cell_rows([], 3) == m.DataRow(()).encode() * 3


def test_parameter_counts_are_unsigned_16_bit():
    """Up to 65535 parameters, as PostgreSQL reads the counts (not 32767)."""
    many = tuple(range(40_000))
    for message in (m.Parse("", "SELECT 1", many), m.ParameterDescription(many),
                    m.Bind("", "", (1,), tuple(b"x" for _ in many), ())):
        type_byte, body = split(message.encode())
        decode = m.decode_backend if type_byte == b"t" else m.decode_frontend
        assert decode(type_byte, body) == message


def _repeated(bind: m.Bind, *rest: m.Message) -> m.RepeatedRoundTrip:
    body = bind.encode()[5:]
    shape = m.RepeatedRoundTrip.of(body, m.decode_frontend(b"B", body),
                                   b"".join(x.encode() for x in rest), rest)
    assert shape is not None
    return shape


@given(params=st.lists(values, max_size=4), others=st.lists(values, max_size=4),
       param_formats=formats, result_formats=formats)
def test_a_repeated_round_trip_is_recognised_as_its_messages_decode(
        params, others, param_formats, result_formats):
    """A round trip recognised in a buffer is the one decoding it message by message gives:
    the same Bind (with the new values) and the same size; one differing in anything but
    the values, or not all received, is not recognised."""
    rest = (m.Describe("P", ""), m.Execute("", 0), m.Sync())
    tail = b"".join(x.encode() for x in rest)
    shape = _repeated(m.Bind("", "s1", param_formats, tuple(params), result_formats), *rest)
    if len(others) != len(params):
        others = (others + [None] * len(params))[:len(params)]
    nxt = m.Bind("", "s1", param_formats, tuple(others), result_formats)
    data = bytearray(b"junk" + nxt.encode() + tail + m.Query("SELECT 2").encode())
    bind, size = shape.match(data, 4, len(data))
    assert bind == nxt and size == len(nxt.encode() + tail)
    assert type(bind) is m.Bind and hash(bind) == hash(nxt) and bind.encode() == nxt.encode()
    if tuple(others) == tuple(params):
        assert bind is shape.bind  # the same message object: nothing new to make
    whole = nxt.encode() + tail
    for cut in range(len(whole)):  # not all received yet
        assert shape.match(bytearray(whole[:cut]), 0, cut) is None
    for other in (m.Bind("", "s2", param_formats, tuple(others), result_formats),
                  m.Bind("p", "s1", param_formats, tuple(others), result_formats),
                  m.Bind("", "s1", param_formats, tuple(others), (*result_formats, 1))):
        data = bytearray(other.encode() + tail)
        assert shape.match(data, 0, len(data)) is None
    data = bytearray(nxt.encode() + m.Describe("S", "").encode() + m.Execute("", 0).encode()
                     + m.Sync().encode())
    assert shape.match(data, 0, len(data)) is None
    assert shape.match(bytearray(nxt.encode() + tail[:-1] + b"H"), 0, len(whole)) is None


@settings(max_examples=40)
@given(first=values, nexts=st.lists(values, min_size=1, max_size=4),
       param_formats=st.lists(st.sampled_from([0, 1]), max_size=1).map(tuple),
       result_formats=formats)
def test_a_lone_value_is_found_whichever_length_came_before(
        first, nexts, param_formats, result_formats):
    """`values` of a one-parameter round trip finds the value whether it is as long as the
    one before (the bytes around it compared whole) or not (read field by field), and
    nothing when the round trip is cut short or changed around the value."""
    rest = (m.Describe("P", ""), m.Execute("", 0), m.Sync())
    tail = b"".join(x.encode() for x in rest)
    shape = _repeated(m.Bind("", "s1", param_formats, (first,), result_formats), *rest)
    for value in [*nexts, *nexts]:
        whole = m.Bind("", "s1", param_formats, (value,), result_formats).encode() + tail
        data = bytearray(b"junk" + whole + m.Sync().encode())
        assert shape.values(data, 4, len(data)) == ((value,), len(whole))
        for cut in (len(whole) - 1, len(whole) // 2):
            assert shape.values(bytearray(whole[:cut]), 0, cut) is None
        for changed in (len(whole) - 1, 1, 4):  # the last length, the Bind's length
            bad = bytearray(whole)
            bad[changed] ^= 0x40
            assert shape.values(bad, 0, len(bad)) is None


def test_a_bind_that_does_not_encode_back_to_its_bytes_is_not_repeated():
    bind = m.Bind("", "s1", (), (b"1",), ())
    body = bytearray(bind.encode()[5:])
    body[-2:] = b"\x00\x01"  # bytes that are not this Bind's encoding
    assert m.RepeatedRoundTrip.of(bytes(body), bind, b"", ()) is None


def test_a_repeated_message_is_recognised_byte_for_byte():
    query = m.Query("SELECT 1")
    repeated = m.RepeatedMessage(query.encode(), query)
    data = bytearray(query.encode() * 2)
    assert repeated.match(data, 0, len(data)) == (query, len(query.encode()))
    assert repeated.match(data, 0, len(query.encode()) - 1) is None
    other = bytearray(m.Query("SELECT 2").encode())
    assert repeated.match(other, 0, len(other)) is None


@settings(max_examples=30)
@given(first=values, nexts=st.lists(values, min_size=1, max_size=3))
def test_a_round_trip_led_by_a_parse_is_recognised_with_that_parse_only(first, nexts):
    """A round trip led by the unnamed statement's Parse is recognised only when that Parse
    comes again byte for byte: its values found (both ways `values` reads them), its size
    the Parse's too; another text or parameter type, or a cut, is not it."""
    parse = m.Parse("", "SELECT $1::int", (23,))
    rest = (m.Describe("P", ""), m.Execute("", 0), m.Sync())
    tail = b"".join(x.encode() for x in rest)
    body = m.Bind("", "", (), (first,), ()).encode()[5:]
    shape = m.RepeatedRoundTrip.of(body, m.decode_frontend(b"B", body), tail, rest, parse,
                                   parse.encode())
    assert shape is not None
    for value in [*nexts, *nexts]:
        whole = parse.encode() + m.Bind("", "", (), (value,), ()).encode() + tail
        data = bytearray(b"junk" + whole)
        assert shape.values(data, 4, len(data)) == ((value,), len(whole))
        assert shape.values(bytearray(whole[:-1]), 0, len(whole) - 1) is None
        for other in (m.Parse("", "SELECT $1::int8", (23,)), m.Parse("", "SELECT $1::int", (20,)),
                      m.Parse("s", "SELECT $1::int", (23,))):
            data = bytearray(other.encode() + whole[len(parse.encode()):])
            assert shape.values(data, 0, len(data)) is None
        bare = bytearray(whole[len(parse.encode()):])  # the Bind alone
        assert shape.values(bare, 0, len(bare)) is None
