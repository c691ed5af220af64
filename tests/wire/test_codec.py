"""wire.codec: reads past the end, framing and the size limits, before any body is read."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import tracemalloc

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqlvec.errors import ProtocolViolation
from wire import codec
from wire.codec import (
    MAX_STARTUP_SIZE,
    RECV_SIZE,
    STARTUP_RECV_SIZE,
    EndOfStream,
    Reader,
    SocketStream,
    Writer,
    body_length,
    concat_binary,
    frame,
    read_message,
    read_startup,
)


def feeder(data: bytes):
    """A read_exactly over a byte string that records how much was asked for."""
    view = {"pos": 0, "asked": []}

    def read_exactly(n: int) -> bytes:
        view["asked"].append(n)
        if view["pos"] + n > len(data):
            raise EndOfStream("short read")
        chunk = data[view["pos"]:view["pos"] + n]
        view["pos"] += n
        return chunk

    return read_exactly, view


# Protocol strings are UTF-8: no NUL inside, and no lone surrogates (which UTF-8 cannot hold).
UTF8_TEXT = st.text(alphabet=st.characters(blacklist_characters="\0",
                                           blacklist_categories=("Cs",)))


@given(st.integers(-2**15, 2**15 - 1), st.integers(-2**31, 2**31 - 1),
       st.integers(-2**63, 2**63 - 1), UTF8_TEXT, st.one_of(st.none(), st.binary()))
def test_writer_reader_round_trip(i16, i32, i64, text, value):
    data = Writer().int16(i16).int32(i32).int64(i64).cstring(text).value(value).getvalue()
    r = Reader(data)
    assert (r.int16(), r.int32(), r.int64(), r.cstring(), r.value()) == (i16, i32, i64, text,
                                                                        value)
    r.expect_end()


@pytest.mark.parametrize("data, read", [
    (b"\x00", Reader.int16), (b"\x00\x00\x00", Reader.int32), (b"abc", Reader.cstring),
    (b"\x00\x00\x00\x05ab", Reader.value), (b"\xff\xff\xff\xfe", Reader.value),
])
def test_reading_past_the_end_is_a_protocol_violation(data, read):
    with pytest.raises(ProtocolViolation) as info:
        read(Reader(data))
    assert info.value.sqlstate == "08P01"


def test_invalid_utf8_in_a_string():
    with pytest.raises(ProtocolViolation) as info:
        Reader(b"\xff\xfe\0").cstring()
    assert info.value.sqlstate == "22021"


def test_trailing_bytes_are_refused():
    r = Reader(b"\x00\x01\x02")
    r.int16()
    with pytest.raises(ProtocolViolation):
        r.expect_end()


def test_frame_layout():
    assert frame(b"Q", b"SELECT 1\0") == b"Q" + struct.pack("!i", 13) + b"SELECT 1\0"


@pytest.mark.parametrize("length, startup, ok", [
    (4, False, True), (3, False, False), (-1, False, False), ((1 << 30) + 1, False, False),
    (8, True, True), (7, True, False), (MAX_STARTUP_SIZE, True, True),
    (MAX_STARTUP_SIZE + 1, True, False),
])
def test_length_limits(length, startup, ok):
    if ok:
        assert body_length(length, startup=startup) == length - 4
    else:
        with pytest.raises(ProtocolViolation):
            body_length(length, startup=startup)


def test_oversized_message_is_refused_before_reading_its_body():
    read_exactly, view = feeder(b"Q" + struct.pack("!i", 1 << 20) + b"x" * 10)
    with pytest.raises(ProtocolViolation, match="invalid message length"):
        read_message(read_exactly, max_size=1 << 16)
    assert view["asked"] == [5]


def test_read_message_and_startup():
    read_exactly, _ = feeder(frame(b"X") + frame(b"Q", b"x\0"))
    assert read_message(read_exactly) == (b"X", b"")
    assert read_message(read_exactly) == (b"Q", b"x\0")
    read_exactly, view = feeder(struct.pack("!i", 100_000))
    with pytest.raises(ProtocolViolation, match="invalid length of startup packet"):
        read_startup(read_exactly)
    assert view["asked"] == [4]


def test_concat_binary_respects_slices():
    array = pa.array([b"ab", b"c", b"def"], pa.large_binary())
    assert concat_binary(array) == b"abcdef"
    assert concat_binary(array.slice(1)) == b"cdef"
    assert concat_binary(array.slice(0, 0)) == b""


def test_socket_stream_reads_across_receives_and_large_messages():
    a, b = socket.socketpair()
    payload = bytes(range(256)) * (3 * RECV_SIZE // 256 + 7)
    sender = threading.Thread(target=lambda: (a.sendall(frame(b"Q", b"x\0") + payload), a.close()))
    sender.start()
    stream = SocketStream(b)
    assert read_message(stream.read_exactly) == (b"Q", b"x\0")
    assert stream.read_exactly(10) == payload[:10]
    assert stream.read_exactly(2 * RECV_SIZE) == payload[10:10 + 2 * RECV_SIZE]  # > buffer
    target = bytearray(b"head")
    rest = len(payload) - 10 - 2 * RECV_SIZE
    stream.read_into(target, rest)
    assert target == b"head" + payload[10 + 2 * RECV_SIZE:]
    with pytest.raises(EndOfStream):
        stream.read_exactly(1)
    sender.join()
    b.close()



def test_fed_bytes_are_read_before_what_the_socket_brings():
    """A connection moving to another process arrives with input already received there
    (`SocketStream.feed`): it is read first, messages across the seam included."""
    a, b = socket.socketpair()
    stream = SocketStream(b, 16)
    second = frame(b"Q", b"SELECT 2\0")
    stream.feed(frame(b"Q", b"SELECT 1\0") + second[:9])  # more than the buffer: it grows
    a.sendall(second[9:] + frame(b"X"))
    assert read_message(stream.read_exactly) == (b"Q", b"SELECT 1\0")
    assert read_message(stream.read_exactly) == (b"Q", b"SELECT 2\0")
    assert read_message(stream.read_exactly) == (b"X", b"")
    a.close()
    b.close()


def test_fill_takes_what_is_buffered_then_receives_straight_into_the_target():
    a, b = socket.socketpair()
    payload = bytes(range(256)) * (2 * RECV_SIZE // 256 + 3)
    sender = threading.Thread(target=lambda: (a.sendall(frame(b"d", payload)), a.close()))
    sender.start()
    stream = SocketStream(b)
    assert stream.read_exactly(5) == frame(b"d", payload)[:5]
    target = bytearray(len(payload) + 2)
    with memoryview(target) as view:
        stream.fill(view[1:1 + len(payload)])  # the buffered start, then the rest directly
        assert target == b"\0" + payload + b"\0"
        with pytest.raises(EndOfStream):  # the client went away before the bytes came
            stream.fill(view[:1])
    sender.join()
    b.close()

def _collect(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := sock.recv(1 << 16):
            into.extend(chunk)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("kernel", [True, False], ids=["splice", "copied"])
def test_relay_passes_exactly_one_message_on_and_keeps_what_follows(kernel):
    """A relayed message's body (larger than any receive buffer) reaches the target byte for
    byte, moved by the kernel between plain blocking sockets, else copied piece by piece (a
    socket with a timeout is non-blocking underneath); nothing of the next message is taken."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    payload = bytes(range(256)) * (3 * RECV_SIZE // 256 + 5)
    sender = threading.Thread(target=lambda: (a.sendall(frame(b"d", payload) + frame(b"c", b"")),
                                              a.close()))
    sender.start()
    got = bytearray()
    collector = _collect(d, got)
    if not kernel:
        b.settimeout(30)
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    assert stream.read_exactly(5) == frame(b"d", payload)[:5]
    stream.relay(len(payload), c)
    c.close()
    collector.join()
    assert got == payload
    assert read_message(stream.read_exactly) == (b"c", b"")
    sender.join()
    b.close()


def test_a_run_of_buffered_copy_data_is_taken_whole_and_a_relay_sends_its_header_first():
    """`take_run` takes the body asked for and the whole CopyData messages after it, not a
    message of another type nor one not all received; `relay` sends the header it is given
    before the body."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.sendall(frame(b"d", b"one") + frame(b"d", b"") + frame(b"d", b"three")
              + frame(b"c", b"") + frame(b"d", b"x" * 50)[:20])
    stream = SocketStream(b)
    stream.receive()
    head = stream.read_exactly(5)
    assert bytes(stream.take_run(3, b"d")) == b"one" + frame(b"d", b"") + frame(b"d", b"three")
    assert read_message(stream.read_exactly) == (b"c", b"")
    head = stream.read_exactly(5)
    assert bytes(stream.take_run(0, b"d")) == b""  # the next one is not all there
    got = bytearray()
    collector = _collect(d, got)
    a.sendall(b"x" * 35)
    a.close()
    stream.relay(50, c, head)
    c.close()
    collector.join()
    assert got == frame(b"d", b"x" * 50)
    b.close()


def test_buffer_waits_for_a_message_that_fits_and_refuses_one_that_does_not():
    a, b = socket.socketpair()
    b.settimeout(10)
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    sender = threading.Thread(target=lambda: [a.sendall(b"x" * 1000) or time.sleep(0.01)
                                              for _ in range(5)])
    sender.start()
    assert not stream.buffer(STARTUP_RECV_SIZE + 1) and stream.buffered == 0
    assert stream.buffer(5000) and stream.buffered == 5000
    sender.join()
    a.close()
    b.close()


@pytest.mark.parametrize("kernel", [True, False], ids=["splice", "copied"])
def test_relay_ends_with_the_connection_when_the_client_leaves_mid_message(kernel):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.sendall(b"x" * 100_000)
    a.close()
    if not kernel:
        b.settimeout(30)
    stream = SocketStream(b)
    got = bytearray()
    collector = _collect(d, got)
    with pytest.raises(EndOfStream):
        stream.relay(500_000, c)  # claimed 500,000 bytes, 100,000 came
    c.close()
    collector.join()
    assert got == b"x" * 100_000
    b.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not hasattr(os, "splice") or not os.path.isdir("/proc/self/fd"),
                    reason="splice and /proc are Linux's")
def test_relayed_messages_reuse_a_pipe_and_one_cut_short_leaves_nothing_behind():
    """Many messages in a row (a COPY's CopyData) each arrive byte for byte through a pipe
    kept between them, so relaying opens no descriptors per message; a relay the client
    cut short closes its pipe, which may hold that message's bytes, so the next relay
    carries only its own."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    bodies = [bytes([i]) * (RECV_SIZE + 1000 * i) for i in range(20)]
    sender = threading.Thread(target=a.sendall, args=(b"".join(bodies),))
    sender.start()
    got = bytearray()
    collector = _collect(d, got)
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    stream.relay(len(bodies[0]), c)
    before, kept = _open_fds(), list(codec._pipes._idle)
    assert kept  # the pipe the first message went through
    for body in bodies[1:]:
        stream.relay(len(body), c)
        assert _open_fds() == before and codec._pipes._idle == kept
    c.close()
    collector.join()
    sender.join()
    assert got == b"".join(bodies)
    a.close()
    b.close()

    a, b = socket.socketpair()
    c, d = socket.socketpair()
    sender = threading.Thread(target=lambda: (a.sendall(b"x" * 300_000), a.close()))
    sender.start()
    collector = _collect(d, bytearray())
    with pytest.raises(EndOfStream):
        SocketStream(b).relay(500_000, c)
    c.close()
    collector.join()
    sender.join()
    b.close()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.sendall(b"y" * 200_000)
    got = bytearray()
    collector = _collect(d, got)
    SocketStream(b).relay(200_000, c)
    c.close()
    collector.join()
    assert got == b"y" * 200_000
    a.close()
    b.close()


def test_a_claimed_length_is_not_allocated_before_its_bytes_arrive():
    a, b = socket.socketpair()
    a.sendall(b"Q" + struct.pack("!i", 1 << 30) + b"SELECT " * 1000)  # claims 1 GiB, sends 7 KB
    a.close()
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    tracemalloc.start()
    try:
        with pytest.raises(EndOfStream):
            read_message(stream.read_exactly)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        b.close()
    assert peak < 4 * RECV_SIZE  # the receive buffer and the bytes received, not 1 GiB


def test_a_small_buffer_grows_for_large_messages_and_keeps_what_it_holds():
    a, b = socket.socketpair()
    payload = bytes(range(256)) * 2000  # 512,000 bytes: larger than any buffer size
    sender = threading.Thread(target=lambda: (a.sendall(
        frame(b"S") + frame(b"Q", payload) + frame(b"X")), a.close()))
    sender.start()
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    assert read_message(stream.read_exactly) == (b"S", b"")
    stream.grow(1 << 16)  # what a connection does once the client is in
    assert read_message(stream.read_exactly) == (b"Q", payload)
    assert read_message(stream.read_exactly) == (b"X", b"")
    sender.join()
    b.close()


def test_a_buffered_message_is_taken_only_when_all_of_it_has_arrived():
    a, b = socket.socketpair()
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    assert stream.buffered_message() is None  # nothing received yet: no read is attempted
    a.sendall(frame(b"S") + frame(b"E", b"\0\0\0\0\0") + frame(b"Q", b"SELECT 1\0")[:6])
    assert read_message(stream.read_exactly) == (b"S", b"")  # one receive takes all of it
    assert stream.buffered_message() == (b"E", b"\0\0\0\0\0")
    assert stream.buffered_message() is None  # the Query is cut short: left where it is
    a.sendall(frame(b"Q", b"SELECT 1\0")[6:])
    assert read_message(stream.read_exactly) == (b"Q", b"SELECT 1\0")
    a.close()
    b.close()


def test_a_buffered_message_checks_its_length_as_read_message_does():
    a, b = socket.socketpair()
    stream = SocketStream(b, STARTUP_RECV_SIZE)
    a.sendall(frame(b"S") + b"Q" + struct.pack("!i", 1 << 30))
    assert read_message(stream.read_exactly) == (b"S", b"")
    with pytest.raises(ProtocolViolation, match="invalid message length"):
        stream.buffered_message(max_size=1 << 20)
    a.close()
    b.close()
