"""Bytes of the PostgreSQL v3 protocol: a Reader and a Writer, framing, size limits, and the
buffered socket stream a connection reads and writes.

Every message after startup is framed as

    type byte   one ASCII letter (`Q`, `P`, `B`, ...)
    length      int32, big-endian, counting itself and the body but not the type byte
    body        length - 4 bytes

Startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) have no type
byte, only the length. Integers are big-endian and signed unless said otherwise; strings are
NUL-terminated UTF-8 ("cstring").

Limits are checked here, before a body is read: a message may be at most `max_message_size`
bytes (1 GiB by default, PostgreSQL's own limit for a datum; the connection passes far smaller
limits for password messages before authentication) and a startup packet at most 10,000 bytes
(PostgreSQL's MAX_STARTUP_PACKET_LENGTH). Any violation, and any body that does not decode,
raises `ProtocolViolation` (SQLSTATE 08P01); the connection answers it with an ErrorResponse
and closes. A length within the limits is still only a claim: `SocketStream` never allocates
it up front, the body's memory grows as its bytes actually arrive.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from sqlvec.errors import ProtocolViolation

MAX_MESSAGE_SIZE = 1 << 30
MAX_STARTUP_SIZE = 10_000

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")
_HEADER = struct.Struct("!ci")


class Reader:
    """Reads the body of one message; every read past the end is a protocol violation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    # Position -----------------------------------------------------------------------------------

    def expect_end(self) -> None:
        """Refuse trailing bytes (08P01): a message longer than its fields is malformed, as
        PostgreSQL's pq_getmsgend says."""
        if self.pos != len(self.data):
            raise ProtocolViolation("invalid message format")

    # Reads --------------------------------------------------------------------------------------

    def _unpack(self, fmt: struct.Struct) -> int | float:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise ProtocolViolation("invalid message format")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return value

    def byte(self) -> int:
        """One unsigned byte; reading past the end is a protocol violation, never an IndexError."""
        if self.pos >= len(self.data):
            raise ProtocolViolation("invalid message format")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int16(self) -> int:
        """A signed 16-bit big-endian integer (format codes, column counts of DataRow)."""
        return self._unpack(_I16)  # type: ignore[return-value]

    def uint16(self) -> int:
        """An unsigned 16-bit count, as PostgreSQL reads parameter and format counts (up to
        65535)."""
        return self._unpack(_U16)  # type: ignore[return-value]

    def int32(self) -> int:
        """A signed 32-bit big-endian integer (lengths, codes, row limits)."""
        return self._unpack(_I32)  # type: ignore[return-value]

    def uint32(self) -> int:
        """An unsigned 32-bit integer (OIDs)."""
        return self._unpack(_U32)  # type: ignore[return-value]

    def int64(self) -> int:
        """A signed 64-bit big-endian integer (binary int8 and timestamps)."""
        return self._unpack(_I64)  # type: ignore[return-value]

    def float32(self) -> float:
        """A big-endian IEEE float4."""
        return self._unpack(_F32)

    def float64(self) -> float:
        """A big-endian IEEE float8."""
        return self._unpack(_F64)

    def bytes(self, n: int) -> bytes:
        """The next `n` bytes; a negative or overlong length is a protocol violation."""
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolViolation("invalid message format")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def rest(self) -> bytes:
        """Everything left (payloads whose length is the message's own)."""
        value = self.data[self.pos:]
        self.pos = len(self.data)
        return value

    def cstring(self) -> str:
        """A NUL-terminated UTF-8 string; a missing terminator is 08P01, not a hang on the next
        message."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation("invalid string in message")
        raw = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid byte sequence for encoding \"UTF8\"",
                                    sqlstate="22021") from None

    def value(self) -> bytes | None:
        """A length-prefixed value as in Bind, DataRow and binary COPY (-1 is NULL)."""
        n = self.int32()
        if n == -1:
            return None
        if n < -1:
            raise ProtocolViolation(f"invalid value length {n}")
        return self.bytes(n)


class Writer:
    """Builds message bodies; `frame` turns a body into a whole message."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def byte(self, value: int) -> Writer:
        """Append one byte; every writer method returns the writer so fields chain."""
        self.buf.append(value)
        return self

    def int16(self, value: int) -> Writer:
        """Append a signed 16-bit big-endian integer."""
        self.buf += _I16.pack(value)
        return self

    def uint16(self, value: int) -> Writer:
        """Append an unsigned 16-bit count."""
        self.buf += _U16.pack(value)
        return self

    def int32(self, value: int) -> Writer:
        """Append a signed 32-bit big-endian integer."""
        self.buf += _I32.pack(value)
        return self

    def uint32(self, value: int) -> Writer:
        """Append an unsigned 32-bit integer (OIDs)."""
        self.buf += _U32.pack(value)
        return self

    def int64(self, value: int) -> Writer:
        """Append a signed 64-bit big-endian integer."""
        self.buf += _I64.pack(value)
        return self

    def bytes(self, value: bytes | bytearray | memoryview) -> Writer:
        """Append raw bytes."""
        self.buf += value
        return self

    def cstring(self, value: str) -> Writer:
        """Append a NUL-terminated UTF-8 string, dropping embedded NULs that would cut it short on
        the client."""
        raw = value.encode()
        if b"\0" in raw:
            raw = raw.replace(b"\0", b"")  # a NUL would end the string early on the client
        self.buf += raw
        self.buf.append(0)
        return self

    def value(self, value: bytes | None) -> Writer:
        """Append a length-prefixed value, -1 for SQL NULL (DataRow, Bind)."""
        if value is None:
            self.buf += b"\xff\xff\xff\xff"
        else:
            self.buf += _I32.pack(len(value))
            self.buf += value
        return self

    def getvalue(self) -> bytes:
        """The bytes written so far, immutable."""
        return bytes(self.buf)


def frame(type_byte: bytes, body: bytes | bytearray = b"") -> bytes:
    """A whole message: type byte, length, body."""
    return _HEADER.pack(type_byte, len(body) + 4) + body


def frame_startup(body: bytes) -> bytes:
    """A startup-phase packet (no type byte)."""
    return _I32.pack(len(body) + 4) + body


def body_length(length: int, *, startup: bool, max_size: int = MAX_MESSAGE_SIZE) -> int:
    """Check a frame's length field; returns the number of body bytes to read."""
    if startup:
        if not 8 <= length <= MAX_STARTUP_SIZE:
            raise ProtocolViolation("invalid length of startup packet")
    elif not 4 <= length <= max_size:
        raise ProtocolViolation(f"invalid message length {length}")
    return length - 4


ReadExactly = Callable[[int], bytes]


def read_startup(read_exactly: ReadExactly) -> bytes:
    """Read one startup-phase packet body (the length is checked before the body is read)."""
    (length,) = _I32.unpack(read_exactly(4))
    return read_exactly(body_length(length, startup=True))


def read_header(read_exactly: ReadExactly,
                max_size: int = MAX_MESSAGE_SIZE) -> tuple[bytes, int]:
    """Read one typed message's header: (type byte, body length)."""
    type_byte, length = _HEADER.unpack(read_exactly(5))
    return type_byte, body_length(length, startup=False, max_size=max_size)


def read_message(read_exactly: ReadExactly,
                 max_size: int = MAX_MESSAGE_SIZE) -> tuple[bytes, bytes]:
    """Read one typed message: (type byte, body)."""
    type_byte, n = read_header(read_exactly, max_size)
    return type_byte, (read_exactly(n) if n else b"")


class EndOfStream(ConnectionError):
    """The peer closed its end (or the read side was shut down) before a whole message came."""


RECV_SIZE = 1 << 18  # the receive buffer of a connection that sends large messages
SESSION_RECV_SIZE = 1 << 16  # of an authenticated connection until then
STARTUP_RECV_SIZE = 1 << 13  # before authentication: a startup packet is at most 10,000 bytes


class SocketStream:
    """Buffered, blocking reads and writes on one socket (plain or TLS).

    Receives go into one reused buffer and take whatever the client has sent, so a pipelined
    Bind/Describe/Execute/Sync arrives in one system call and is then read from the buffer. The
    buffer starts small (little is reserved for a client that has not authenticated, or one
    that sits idle), `grow`s once the client is in, and grows to RECV_SIZE the first time a
    message or COPY does not fit. A message larger than the buffer is collected as it
    arrives: its length field is a claim, and memory follows the bytes actually received."""

    __slots__ = ("sock", "_buf", "_view", "_start", "_end")

    def __init__(self, sock: socket.socket, buffer_size: int = RECV_SIZE) -> None:
        self.sock = sock
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0  # unread bytes are _buf[_start:_end]
        self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._end - self._start

    def grow(self, size: int) -> None:
        """Enlarge the receive buffer to `size` bytes (keeping what is buffered)."""
        if size <= len(self._buf):
            return
        pending = self._view[self._start:self._end].tobytes()
        self._view.release()
        self._buf = bytearray(size)
        self._buf[:len(pending)] = pending
        self._view = memoryview(self._buf)
        self._start, self._end = 0, len(pending)

    def read_exactly(self, n: int) -> bytes | bytearray:
        """Exactly `n` bytes, served from the receive buffer when it holds them so most messages
        cost no system call."""
        start = self._start
        if self._end - start >= n:
            self._start = start + n
            return self._view[start:start + n].tobytes()
        if n > len(self._buf):
            self.grow(RECV_SIZE)
        if n <= len(self._buf):
            self._fill(n)
            self._start = n
            return self._view[:n].tobytes()
        out = bytearray()
        self.read_into(out, n)
        return out

    def feed(self, data: bytes | bytearray) -> None:
        """Put `data` in front of whatever is received next (the client's input that another
        process had already received, when a connection moves to this one)."""
        if not data:
            return
        pending = self._view[self._start:self._end].tobytes()
        self.grow(len(data) + len(pending))
        self._view[:len(data)] = data
        self._view[len(data):len(data) + len(pending)] = pending
        self._start, self._end = 0, len(data) + len(pending)

    def buffered_message(self, max_size: int = MAX_MESSAGE_SIZE) -> tuple[bytes, bytes] | None:
        """The next typed message if all of it is already buffered (else None, nothing read):
        the messages of a pipelined round trip after the first need no receive."""
        start, end = self._start, self._end
        if end - start < 5:
            return None
        type_byte, length = _HEADER.unpack_from(self._buf, start)
        n = body_length(length, startup=False, max_size=max_size)
        if end - start - 5 < n:
            return None
        self._start = start + 5 + n
        return type_byte, (self._view[start + 5:start + 5 + n].tobytes() if n else b"")

    def receive(self) -> None:
        """Wait for input if none is buffered: one receive of whatever the client sent (a
        pipelined round trip whole), for a reader that looks at it in place (`window`)."""
        if self._start == self._end:
            self._start = 0
            self._end = self._recv_into(self._view)

    def receive_more(self) -> None:
        """Wait for input after what is buffered (kept, moved to the front; the buffer grows
        when full): one receive, for a reader whose message in place is cut short."""
        have = self._end - self._start
        if have == len(self._buf):
            self.grow(2 * len(self._buf))
        self._view[:have] = self._view[self._start:self._end]
        self._start, self._end = 0, have
        self._end += self._recv_into(self._view[have:])

    def window(self) -> tuple[bytearray, int, int]:
        """The receive buffer and where its unread bytes start and end, to be compared in
        place (no copy); `skip` then consumes what was recognised."""
        return self._buf, self._start, self._end

    def skip(self, n: int) -> None:
        """Consume `n` buffered bytes (at most `buffered`)."""
        self._start += n

    def read_into(self, target: bytearray, n: int) -> None:
        """Append the next n bytes to `target` (COPY data, without a bytes object per
        message)."""
        if n > len(self._buf):
            self.grow(RECV_SIZE)
        while n:
            if self._start == self._end:
                self._start = 0
                self._end = self._recv_into(self._view)
            take = min(n, self._end - self._start)
            target += self._view[self._start:self._start + take]
            self._start += take
            n -= take

    def fill(self, target: memoryview) -> None:
        """Fill `target` with the next len(target) bytes: what is buffered first, the rest
        received straight into it (bulk COPY data, copied once, by the kernel)."""
        n = len(target)
        take = min(n, self._end - self._start)
        if take:
            target[:take] = self._view[self._start:self._start + take]
            self._start += take
        while take < n:
            take += self._recv_into(target[take:])

    def receive_into(self, target: memoryview) -> int:
        """Up to len(target) bytes into `target`: what is buffered, else one receive of
        whatever the client has sent (COPY data, received where it stays)."""
        take = min(len(target), self._end - self._start)
        if take:
            target[:take] = self._view[self._start:self._start + take]
            self._start += take
            return take
        return self._recv_into(target)

    def buffer(self, n: int) -> bool:
        """Receive until `n` bytes are buffered; False (nothing received) when the buffer
        cannot hold that many."""
        if n > len(self._buf):
            return False
        if self._end - self._start < n:
            self._fill(n)
        return True

    def take_run(self, n: int, type_byte: bytes) -> memoryview:
        """The next `n` buffered bytes and every whole message of type `type_byte` buffered
        right after them, taken as one view of the receive buffer (valid until the next read):
        a run of COPY data relayed in one send."""
        buf, start = self._buf, self._start
        end = start + n
        while self._end - end >= 5 and buf[end] == type_byte[0]:
            (length,) = _I32.unpack_from(buf, end + 1)
            if not 4 <= length <= self._end - end - 1:
                break
            end += 1 + length
        self._start = end
        return self._view[start:end]

    def relay(self, n: int, target: socket.socket, head: bytes = b"") -> None:
        """Pass `head`, then the next `n` bytes on to `target` as they arrive, without
        collecting them (a relayed COPY's data): what is buffered first, in one send with
        `head`, then, between plain blocking sockets, by `splice` through a pipe (the kernel
        moves the bytes; none enter this process), else received into the receive buffer
        piece by piece and sent from there."""
        take = min(n, self._end - self._start)
        if take or head:
            send_parts(target, [head, self._view[self._start:self._start + take]])
            self._start += take
            n -= take
        if n and _splice(self.sock, target, n):
            return
        if n > len(self._buf):
            self.grow(RECV_SIZE)
        while n:
            self._start = 0
            self._end = self._recv_into(self._view)
            take = min(n, self._end)
            target.sendall(self._view[:take])
            self._start = take
            n -= take

    def _fill(self, n: int) -> None:
        """Receive until n bytes (at most the buffer's size) are buffered, moved to the front."""
        have = self._end - self._start
        self._view[:have] = self._view[self._start:self._end]
        self._start, self._end = 0, have
        while self._end < n:
            self._end += self._recv_into(self._view[self._end:])

    def _recv_into(self, view: memoryview) -> int:
        received = self.sock.recv_into(view)
        if not received:
            raise EndOfStream("the client closed the connection")
        return received

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of `data`; a blocking socket makes this the backpressure of a slow client."""
        self.sock.sendall(data)


LINGER_SECONDS = 1.0  # a closing connection waits at most this long for its client to close
LINGER_BYTES = 1 << 20  # ... and reads at most this much of what the client still sends


def linger_close(sock: socket.socket, seconds: float = LINGER_SECONDS,
                 limit: int = LINGER_BYTES) -> None:
    """Close after the client has had the chance to read our last words (a FATAL error).

    Closing a TCP socket with unread input makes the kernel send a reset, and the client may
    then lose the error it was about to read. So: send the end of the stream (our last bytes
    went before it), read and discard what the client still sends until it closes too, at
    most `seconds` and `limit` bytes, then close. A read side already shut down (server
    shutdown, the authentication timeout) ends the wait as soon as the input is drained."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)  # (a TLS socket's raw bytes: discarded)
        deadline = time.monotonic() + seconds
        while limit > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            data = socket.socket.recv(sock, min(limit, 1 << 16))
            if not data:
                break
            limit -= len(data)
    except OSError:
        pass  # gone already, or silent until the deadline
    finally:
        sock.close()


SPLICE_PIPE_SIZE = 1 << 20  # bytes a relaying pipe holds (asked for; the kernel may give less)


class _Pipes:
    """Pipes kept for `_splice` between messages: a COPY relays each CopyData message (tens of
    KiB from a client that sends as it goes) through a pipe, and making one per message (a
    pipe, its buffer resized, two closes) cost more than moving the bytes. A pipe goes back
    only empty, after a splice that moved everything; one an error interrupted is closed."""

    def __init__(self) -> None:
        self._idle: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        # A forked process must not share a pipe with its parent: its copies are closed.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for pipe in idle:
            _close_pipe(pipe)

    def take(self) -> tuple[int, int]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, SPLICE_PIPE_SIZE)
        except OSError:
            pass  # the default pipe size works too, in more steps
        return read_end, write_end

    def give_back(self, pipe: tuple[int, int]) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_PIPES:
                self._idle.append(pipe)
                return
        _close_pipe(pipe)


def _close_pipe(pipe: tuple[int, int]) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


MAX_IDLE_PIPES = 8  # more relays at once than this make (and close) their own
_pipes = _Pipes()


def send_parts(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send `parts` back to back, in one system call where it takes them all (no join)."""
    sent = sock.sendmsg(parts) if type(sock) is socket.socket else 0
    if sent < sum(map(len, parts)):
        sock.sendall(memoryview(b"".join(parts))[sent:])


def _splice(source: socket.socket, target: socket.socket, n: int) -> bool:
    """Move exactly `n` bytes from `source` to `target` inside the kernel; False (nothing
    moved) where that cannot be done: TLS, a socket with a timeout (non-blocking underneath),
    or no `os.splice`."""
    if not hasattr(os, "splice") or type(source) is not socket.socket \
            or type(target) is not socket.socket \
            or source.gettimeout() is not None or target.gettimeout() is not None:
        return False
    pipe = _pipes.take()
    read_end, write_end = pipe
    try:
        while n:
            moved = os.splice(source.fileno(), write_end, n)
            if not moved:
                raise EndOfStream("the client closed the connection")
            n -= moved
            while moved:
                moved -= os.splice(read_end, target.fileno(), moved)
    except BaseException:
        _close_pipe(pipe)  # it may hold bytes of this message
        raise
    _pipes.give_back(pipe)
    return True


def concat_binary(array: pa.Array) -> bytes:
    """The values of an Arrow binary array without nulls, back to back: the slice of its
    data buffer between the first and last offsets (how whole result sets become bytes)."""
    if len(array) == 0:
        return b""
    width = np.int64 if pa.types.is_large_binary(array.type) or \
        pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=width)
    start, end = int(offsets[array.offset]), int(offsets[array.offset + len(array)])
    return memoryview(array.buffers()[2])[start:end].tobytes()


def fixed_width(raw: np.ndarray, width: int, n: int) -> pa.Array:
    """n values of `width` bytes each, from a contiguous byte buffer, as large_binary."""
    buf = pa.py_buffer(np.ascontiguousarray(raw).tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, buf]) \
        .cast(pa.large_binary())
