"""Typed protocol messages, grouped by the phase of the protocol they belong to.

Each message is a frozen dataclass next to its type byte, with `decode(reader)` (from a body)
and `encode()` (the whole framed message). Both directions are implemented for every message,
so tests can build client traffic and parse server traffic with the same classes.

Startup-phase packets carry no type byte; `decode_startup` tells them apart by their version
code. `p` is shared by PasswordMessage, SASLInitialResponse and SASLResponse: the frontend table
decodes it as PasswordMessage and the authenticator, which knows what it asked for, reparses
its payload.

See https://www.postgresql.org/docs/current/protocol-message-formats.html.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import ProtocolViolation
from wire.codec import Reader, Writer, concat_binary, fixed_width, frame, frame_startup

# Startup-phase version codes -------------------------------------------------------------------

PROTOCOL_3_0 = 3 << 16
PROTOCOL_3_2 = (3 << 16) | 2
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


class Message:
    """Base of every message: `TYPE` is its type byte (empty for startup-phase packets)."""

    TYPE: ClassVar[bytes] = b""

    def encode_body(self, w: Writer) -> None:
        """Write the body after the length word; a message without fields writes nothing."""
        pass

    @classmethod
    def decode(cls, r: Reader) -> Message:
        """Parse a body (the type byte and length already read), refusing trailing bytes with 08P01
        as PostgreSQL does."""
        r.expect_end()
        return cls()

    def encode(self) -> bytes:
        """The whole framed message, as it goes on the socket."""
        w = Writer()
        self.encode_body(w)
        return frame(self.TYPE, w.buf) if self.TYPE else frame_startup(bytes(w.buf))


# Startup (frontend, no type byte) ---------------------------------------------------------------


@dataclass(frozen=True)
class StartupMessage(Message):
    """Opens a session: the protocol version asked for and the parameters (user, database, options,
    ...) that name the role and set its first settings."""

    version: int
    parameters: dict[str, str] = field(default_factory=dict)

    def encode_body(self, w: Writer) -> None:
        w.int32(self.version)
        for name, value in self.parameters.items():
            w.cstring(name).cstring(value)
        w.byte(0)

    @classmethod
    def decode(cls, r: Reader) -> StartupMessage:
        version = r.int32()
        params: dict[str, str] = {}
        while True:
            name = r.cstring()
            if name == "":
                break
            params[name] = r.cstring()
        r.expect_end()
        return cls(version, params)


@dataclass(frozen=True)
class SSLRequest(Message):
    """Asks, before startup, whether the server speaks TLS; answered by one byte, S or N."""

    def encode_body(self, w: Writer) -> None:
        w.int32(SSL_REQUEST_CODE)


@dataclass(frozen=True)
class GSSENCRequest(Message):
    """Asks for GSSAPI encryption; sqlvec answers N and the client goes on in the clear or with
    TLS."""

    def encode_body(self, w: Writer) -> None:
        w.int32(GSSENC_REQUEST_CODE)


@dataclass(frozen=True)
class CancelRequest(Message):
    """Sent on a new connection: the process id and secret key from BackendKeyData."""

    pid: int
    secret: bytes

    def encode_body(self, w: Writer) -> None:
        w.int32(CANCEL_REQUEST_CODE).int32(self.pid).bytes(self.secret)

    @classmethod
    def decode(cls, r: Reader) -> CancelRequest:
        pid = r.int32()
        secret = r.rest()  # 4 bytes in protocol 3.0, up to 256 in 3.2
        if not 4 <= len(secret) <= 256:
            raise ProtocolViolation("invalid length of cancel request")
        return cls(pid, secret)


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def decode_startup(body: bytes) -> StartupPacket:
    """Decode a startup-phase packet body (after its length)."""
    r = Reader(body)
    code = r.int32()
    if code == SSL_REQUEST_CODE:
        r.expect_end()
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.expect_end()
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        return CancelRequest.decode(r)
    return StartupMessage.decode(Reader(body))


# Authentication (backend 'R', frontend 'p') ------------------------------------------------------

AUTH_OK = 0
AUTH_CLEARTEXT_PASSWORD = 3
AUTH_MD5_PASSWORD = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True)
class Authentication(Message):
    """AuthenticationOk / CleartextPassword / MD5Password / SASL / SASLContinue / SASLFinal:
    one message type whose first int32 says which; `data` is the rest (salt, mechanism list,
    SASL payload)."""

    TYPE = b"R"
    code: int
    data: bytes = b""

    def encode_body(self, w: Writer) -> None:
        w.int32(self.code).bytes(self.data)

    @classmethod
    def decode(cls, r: Reader) -> Authentication:
        return cls(r.int32(), r.rest())

    @classmethod
    def ok(cls) -> Authentication:
        """AuthenticationOk: the password (or trust) check passed."""
        return cls(AUTH_OK)

    @classmethod
    def cleartext(cls) -> Authentication:
        """The request for a cleartext password (password authentication)."""
        return cls(AUTH_CLEARTEXT_PASSWORD)

    @classmethod
    def md5(cls, salt: bytes) -> Authentication:
        """The request for an MD5-hashed password salted with `salt`."""
        return cls(AUTH_MD5_PASSWORD, salt)

    @classmethod
    def sasl(cls, mechanisms: Sequence[str]) -> Authentication:
        """The request to start SASL with one of `mechanisms` (SCRAM-SHA-256)."""
        w = Writer()
        for name in mechanisms:
            w.cstring(name)
        w.byte(0)
        return cls(AUTH_SASL, w.getvalue())


@dataclass(frozen=True)
class PasswordMessage(Message):
    """`p`: a password, or a SASL message, depending on what the server asked for."""

    TYPE = b"p"
    data: bytes

    def encode_body(self, w: Writer) -> None:
        w.bytes(self.data)

    @classmethod
    def decode(cls, r: Reader) -> PasswordMessage:
        return cls(r.rest())

    def password(self) -> str:
        """The payload read as a password (it is a `p` the authenticator asked a password for)."""
        r = Reader(self.data)
        value = r.cstring()
        r.expect_end()
        return value


@dataclass(frozen=True)
class SASLInitialResponse(Message):
    """The client's chosen SASL mechanism and first message; reparsed from a `p` by the
    authenticator, which knows it asked for SASL."""

    TYPE = b"p"
    mechanism: str
    response: bytes | None

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.mechanism).value(self.response)

    @classmethod
    def decode(cls, r: Reader) -> SASLInitialResponse:
        mechanism = r.cstring()
        response = r.value()
        r.expect_end()
        return cls(mechanism, response)


# Session start (backend) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterStatus(Message):
    """Tells the client a reported setting's value, at startup and whenever it changes, so drivers
    keep their encoders and date parsing in step."""

    TYPE = b"S"
    name: str
    value: str

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.name).cstring(self.value)

    @classmethod
    def decode(cls, r: Reader) -> ParameterStatus:
        name, value = r.cstring(), r.cstring()
        r.expect_end()
        return cls(name, value)


@dataclass(frozen=True)
class BackendKeyData(Message):
    """The process id and secret a client quotes in a CancelRequest on another connection."""

    TYPE = b"K"
    pid: int
    secret: bytes

    def encode_body(self, w: Writer) -> None:
        w.int32(self.pid).bytes(self.secret)

    @classmethod
    def decode(cls, r: Reader) -> BackendKeyData:
        return cls(r.int32(), r.rest())


@dataclass(frozen=True)
class NegotiateProtocolVersion(Message):
    """Answer to a StartupMessage asking for a newer minor version or `_pq_.` options."""

    TYPE = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...] = ()

    def encode_body(self, w: Writer) -> None:
        w.int32(self.newest_minor).int32(len(self.unrecognized))
        for name in self.unrecognized:
            w.cstring(name)

    @classmethod
    def decode(cls, r: Reader) -> NegotiateProtocolVersion:
        minor, n = r.int32(), r.int32()
        return cls(minor, tuple(r.cstring() for _ in range(n)))


@dataclass(frozen=True)
class ReadyForQuery(Message):
    """`status`: I (idle), T (in a transaction block), E (in a failed block)."""

    TYPE = b"Z"
    status: str

    def encode_body(self, w: Writer) -> None:
        w.byte(ord(self.status))

    @classmethod
    def decode(cls, r: Reader) -> ReadyForQuery:
        status = chr(r.byte())
        r.expect_end()
        return cls(status)


# Simple query ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query(Message):
    """A simple-protocol query string, possibly several statements, run as one implicit
    transaction."""

    TYPE = b"Q"
    sql: str

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.sql)

    @classmethod
    def decode(cls, r: Reader) -> Query:
        sql = r.cstring()
        r.expect_end()
        return cls(sql)


# Extended query (frontend) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Parse(Message):
    """Prepares a named (or the unnamed) statement, with parameter types the client fixes; 0 leaves
    a type to inference."""

    TYPE = b"P"
    name: str
    sql: str
    param_oids: tuple[int, ...] = ()

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.name).cstring(self.sql).uint16(len(self.param_oids))
        for oid in self.param_oids:
            w.uint32(oid)

    @classmethod
    def decode(cls, r: Reader) -> Parse:
        name, sql = r.cstring(), r.cstring()
        n = r.uint16()  # counts are unsigned 16-bit, as PostgreSQL reads them: up to 65535
        oids = tuple(r.uint32() for _ in range(n))
        r.expect_end()
        return cls(name, sql, oids)


# Decoding the messages of every extended-query round trip (Bind, Describe, Execute) reads the
# body in place with struct.unpack_from rather than through Reader's per-field methods: they
# are a fixed cost of each prepared statement's execution. Errors are Reader's.

_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_ONE_CODE = struct.Struct("!Hh")  # a format-code list of one code (the usual "all binary")


def _bad_format() -> ProtocolViolation:
    return ProtocolViolation("invalid message format")


def _cstring_at(data: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated UTF-8 string at `pos`, and the position after it (as Reader.cstring)."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise ProtocolViolation("invalid string in message")
    try:
        return data[pos:end].decode(), end + 1
    except UnicodeDecodeError:
        raise ProtocolViolation("invalid byte sequence for encoding \"UTF8\"",
                                sqlstate="22021") from None


def _formats_at(data: bytes, pos: int) -> tuple[tuple[int, ...], int]:
    """A format-code list (uint16 count, int16 codes) at `pos`, each code 0 or 1."""
    if pos + 2 > len(data):
        raise _bad_format()
    (n,) = _U16.unpack_from(data, pos)
    end = pos + 2 + 2 * n
    if end > len(data):
        raise _bad_format()
    if n == 0:
        return (), end
    codes = struct.unpack_from(f"!{n}h", data, pos + 2) if n > 1 else \
        (_ONE_CODE.unpack_from(data, pos)[1],)
    for code in codes:
        if code not in (0, 1):
            raise ProtocolViolation(f"unsupported format code: {code}")
    return codes, end


@dataclass(frozen=True)
class Bind(Message):
    """Makes a portal of a prepared statement: its parameter values and the formats (text or binary)
    of parameters and result columns."""

    TYPE = b"B"
    portal: str = ""
    statement: str = ""
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def with_params(self, params: tuple[bytes | None, ...]) -> Bind:
        """This Bind with other parameter values: its fields copied at once (a frozen
        dataclass's __init__ sets each through object.__setattr__, twice the cost)."""
        bind = object.__new__(Bind)
        fields = bind.__dict__
        fields.update(self.__dict__)
        fields["params"] = params
        return bind

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.portal).cstring(self.statement)
        w.uint16(len(self.param_formats))
        for code in self.param_formats:
            w.int16(code)
        w.uint16(len(self.params))
        for value in self.params:
            w.value(value)
        w.uint16(len(self.result_formats))
        for code in self.result_formats:
            w.int16(code)

    @classmethod
    def decode(cls, r: Reader) -> Bind:
        data, size = r.data, len(r.data)
        portal, pos = _cstring_at(data, r.pos)
        statement, pos = _cstring_at(data, pos)
        param_formats, pos = _formats_at(data, pos)
        if pos + 2 > size:
            raise _bad_format()
        (n,) = _U16.unpack_from(data, pos)
        pos += 2
        values: list[bytes | None] = []
        for _ in range(n):
            if pos + 4 > size:
                raise _bad_format()
            (length,) = _I32.unpack_from(data, pos)
            pos += 4
            if length < 0:
                if length != -1:
                    raise ProtocolViolation(f"invalid value length {length}")
                values.append(None)
                continue
            end = pos + length
            if end > size:
                raise _bad_format()
            values.append(data[pos:end])
            pos = end
        result_formats, pos = _formats_at(data, pos)
        if pos != size:
            raise _bad_format()
        r.pos = pos
        return cls(portal, statement, param_formats, tuple(values), result_formats)


class RepeatedRoundTrip:
    """A round trip of Bind and then fixed messages (Describe, Execute, Sync: how drivers run a
    prepared statement), recognised again in a receive buffer, in place, when it comes byte
    for byte the same but for the Bind's parameter values. The next round trip of a
    prepared statement then costs no framing or decoding of its fixed messages and no new
    message objects: only its parameters are taken out of the buffer (the Bind is the same
    object when they are the same too). What it recognises decodes to exactly these messages,
    so it is handled as if decoded. A round trip led by the unnamed statement's Parse (what
    node-postgres sends for every query) is recognised with that Parse, byte for byte the same
    (`lead`, decoded, and `prefix`, framed)."""

    __slots__ = ("bind", "names", "head", "suffix", "rest", "messages", "nparams", "_framed",
                 "lead", "prefix")

    def __init__(self, bind: Bind, rest: bytes, messages: tuple,
                 lead: Parse | None = None, prefix: bytes = b"") -> None:
        self.lead, self.prefix = lead, prefix
        self.bind = bind
        self.names = Writer().cstring(bind.portal).cstring(bind.statement).getvalue()
        w = Writer()
        w.cstring(bind.portal).cstring(bind.statement).uint16(len(bind.param_formats))
        for code in bind.param_formats:
            w.int16(code)
        w.uint16(len(bind.params))
        self.head = w.getvalue()  # the Bind's body up to its values
        w = Writer().uint16(len(bind.result_formats))
        for code in bind.result_formats:
            w.int16(code)
        self.suffix = w.getvalue()  # ... and after them
        self.rest = rest  # the fixed messages after Bind, framed
        self.messages = messages  # ... decoded
        self.nparams = len(bind.params)
        # `values`' bytes before and after a lone value of the length last found, and that
        # round trip's size.
        self._framed: tuple[bytes, bytes, int] | None = None

    @classmethod
    def of(cls, body: bytes, bind: Bind, rest: bytes, messages: tuple,
           lead: Parse | None = None, prefix: bytes = b"") -> RepeatedRoundTrip | None:
        """The round trip (a Bind's body and decoded message, the messages after it framed and
        decoded; the Parse before it, decoded and framed), if its Bind encodes back to the
        client's bytes (else None)."""
        shape = cls(bind, rest, messages, lead, prefix)
        if not (body.startswith(shape.head) and body.endswith(shape.suffix)):
            return None
        return shape

    def match(self, buf: bytearray, start: int, end: int) -> tuple[Bind, int] | None:
        """If buf[start:end] begins with this round trip (its Bind's values may differ): its
        Bind and the round trip's size in bytes."""
        found = self.values(buf, start, end)
        if found is None:
            return None
        return self.bind_with(found[0]), found[1]

    def values(self, buf: bytearray, start: int,
               end: int) -> tuple[tuple[bytes | None, ...], int] | None:
        """If buf[start:end] begins with this round trip: its Bind's parameter values (as
        sent) and the round trip's size in bytes. A lone value as long as the one found last
        (a query vector of the same dimensions) is found by comparing the bytes before and
        after it whole, the Bind's length and the value's included: no field read one by
        one."""
        framed = self._framed
        if framed is not None:
            before, after, size = framed
            value_end = start + size - len(after)
            if start + size <= end and buf.startswith(before, start) \
                    and buf.startswith(after, value_end):
                return (bytes(buf[start + len(before):value_end]),), size
        prefix = self.prefix
        if prefix and not buf.startswith(prefix, start, end):
            return None
        found = self.bind_values(buf, start + len(prefix), end)
        if found is None:
            return None
        values, bind_end = found
        rest = self.rest
        if not buf.startswith(rest, bind_end, end):
            return None
        if self.nparams == 1 and values[0] is not None:
            self._framed = self._frame(len(values[0]))
        return tuple(values), bind_end + len(rest) - start

    def _frame(self, length: int) -> tuple[bytes, bytes, int]:
        """`values`' bytes before and after a lone value of `length` bytes, and the size."""
        body = len(self.head) + 4 + length + len(self.suffix)
        before = self.prefix + b"B" + _I32.pack(4 + body) + self.head + _I32.pack(length)
        after = self.suffix + self.rest
        return before, after, len(before) + length + len(after)

    def bind_with(self, params: tuple[bytes | None, ...]) -> Bind:
        """The round trip's Bind with these values (the same object for the same values)."""
        bind = self.bind
        return bind if params == bind.params else bind.with_params(params)

    def bind_values(self, buf: bytearray, start: int,
                    end: int) -> tuple[list[bytes | None], int] | None:
        """If buf[start:end] begins with this round trip's Bind, all received, but for its
        values: them, as received, and where the Bind ends."""
        if end - start < 5 or buf[start] != 0x42:  # B
            return None
        (length,) = _I32.unpack_from(buf, start + 1)
        bind_end = start + 1 + length
        if length < 4 or bind_end > end:
            return None
        pos = start + 5
        head = self.head
        if not buf.startswith(head, pos, bind_end):
            return None
        pos += len(head)
        values: list[bytes | None] = []
        for _ in range(self.nparams):
            if pos + 4 > bind_end:
                return None
            (size,) = _I32.unpack_from(buf, pos)
            pos += 4
            if size < 0:
                if size != -1:
                    return None
                values.append(None)
                continue
            if pos + size > bind_end:
                return None
            values.append(bytes(buf[pos:pos + size]))
            pos += size
        suffix = self.suffix
        if pos + len(suffix) != bind_end or not buf.startswith(suffix, pos, bind_end):
            return None
        return values, bind_end


def bind_names_at(buf: bytearray, start: int, end: int) -> bytes | None:
    """If buf[start:end] begins with a Bind: its portal's and statement's names as framed (what
    `RepeatedRoundTrip.names` holds), else None. Which shape to try is chosen by them."""
    if end - start < 7 or buf[start] != 0x42:  # B
        return None
    portal_end = buf.find(0, start + 5, end)
    if portal_end < 0:
        return None
    statement_end = buf.find(0, portal_end + 1, end)
    if statement_end < 0:
        return None
    return bytes(buf[start + 5:statement_end + 1])


class RepeatedMessage:
    """A message recognised again, byte for byte, in a receive buffer, in place (a simple
    Query a client sends again and again): it is the same decoded message."""

    __slots__ = ("raw", "message")

    def __init__(self, raw: bytes, message: Message) -> None:
        self.raw = raw  # framed
        self.message = message

    def match(self, buf: bytearray, start: int, end: int) -> tuple[Message, int] | None:
        """If buf[start:end] begins with this message: it, and its size in bytes."""
        raw = self.raw
        if buf.startswith(raw, start, end):
            return self.message, len(raw)
        return None


@dataclass(frozen=True)
class Describe(Message):
    """`kind` is S (prepared statement) or P (portal)."""

    TYPE = b"D"
    kind: str
    name: str = ""

    def encode_body(self, w: Writer) -> None:
        w.byte(ord(self.kind)).cstring(self.name)

    @classmethod
    def decode(cls, r: Reader) -> Describe:
        data, pos = r.data, r.pos
        if pos >= len(data):
            raise _bad_format()
        kind = chr(data[pos])
        name, pos = _cstring_at(data, pos + 1)
        if pos != len(data):
            raise _bad_format()
        r.pos = pos
        if kind not in ("S", "P"):
            raise ProtocolViolation(f"invalid DESCRIBE message subtype {ord(kind)}")
        return cls(kind, name)


@dataclass(frozen=True)
class Execute(Message):
    """`max_rows` 0 means no limit."""

    TYPE = b"E"
    portal: str = ""
    max_rows: int = 0

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.portal).int32(self.max_rows)

    @classmethod
    def decode(cls, r: Reader) -> Execute:
        data = r.data
        portal, pos = _cstring_at(data, r.pos)
        if pos + 4 != len(data):
            raise _bad_format()
        r.pos = pos + 4
        return cls(portal, _I32.unpack_from(data, pos)[0])


@dataclass(frozen=True)
class Close(Message):
    """Drops a prepared statement (`S`) or portal (`P`); closing a missing one is no error."""

    TYPE = b"C"
    kind: str
    name: str = ""

    def encode_body(self, w: Writer) -> None:
        w.byte(ord(self.kind)).cstring(self.name)

    @classmethod
    def decode(cls, r: Reader) -> Close:
        kind = chr(r.byte())
        name = r.cstring()
        r.expect_end()
        if kind not in ("S", "P"):
            raise ProtocolViolation(f"invalid CLOSE message subtype {ord(kind)}")
        return cls(kind, name)


@dataclass(frozen=True)
class Flush(Message):
    """Asks for the pending output now, without a Sync ending the extended-protocol cycle."""

    TYPE = b"H"


@dataclass(frozen=True)
class Sync(Message):
    """Ends an extended-protocol cycle: commits an implicit transaction, ends error skipping and
    asks for ReadyForQuery."""

    TYPE = b"S"


@dataclass(frozen=True)
class Terminate(Message):
    """The client's goodbye: the server closes the connection without an answer."""

    TYPE = b"X"


@dataclass(frozen=True)
class FunctionCall(Message):
    """The legacy fast-path interface: recognised only to be refused."""

    TYPE = b"F"
    body: bytes = b""

    def encode_body(self, w: Writer) -> None:
        w.bytes(self.body)

    @classmethod
    def decode(cls, r: Reader) -> FunctionCall:
        return cls(r.rest())


# Extended query (backend) ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseComplete(Message):
    """The answer to Parse."""

    TYPE = b"1"


@dataclass(frozen=True)
class BindComplete(Message):
    """The answer to Bind."""

    TYPE = b"2"


@dataclass(frozen=True)
class CloseComplete(Message):
    """The answer to Close."""

    TYPE = b"3"


@dataclass(frozen=True)
class NoData(Message):
    """Describe's answer for a statement or portal that returns no rows."""

    TYPE = b"n"


@dataclass(frozen=True)
class PortalSuspended(Message):
    """Execute stopped at its row limit; the portal can be executed again for more."""

    TYPE = b"s"


@dataclass(frozen=True)
class ParameterDescription(Message):
    """Describe's answer for a statement: the type OIDs its parameters were given or inferred."""

    TYPE = b"t"
    oids: tuple[int, ...]

    def encode_body(self, w: Writer) -> None:
        w.uint16(len(self.oids))
        for oid in self.oids:
            w.uint32(oid)

    @classmethod
    def decode(cls, r: Reader) -> ParameterDescription:
        n = r.uint16()
        oids = tuple(r.uint32() for _ in range(n))
        r.expect_end()
        return cls(oids)


# Results (backend) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDescription:
    """One result column as RowDescription sends it: name, source table and column, type, size,
    modifier and format."""

    name: str
    table_oid: int = 0
    attnum: int = 0
    type_oid: int = 25
    typlen: int = -1
    typmod: int = -1
    format: int = 0


@dataclass(frozen=True)
class RowDescription(Message):
    """The result columns of a query, sent before its rows."""

    TYPE = b"T"
    fields: tuple[FieldDescription, ...]

    def encode_body(self, w: Writer) -> None:
        w.int16(len(self.fields))
        for f in self.fields:
            w.cstring(f.name).uint32(f.table_oid).int16(f.attnum).uint32(f.type_oid)
            w.int16(f.typlen).int32(f.typmod).int16(f.format)

    @classmethod
    def decode(cls, r: Reader) -> RowDescription:
        n = r.int16()
        fields = tuple(
            FieldDescription(r.cstring(), r.uint32(), r.int16(), r.uint32(), r.int16(),
                             r.int32(), r.int16())
            for _ in range(n))
        r.expect_end()
        return cls(fields)


_DATA_ROW_HEADER = struct.Struct("!cih")


@dataclass(frozen=True)
class DataRow(Message):
    """One row, its values already encoded (None is SQL NULL)."""

    TYPE = b"D"
    values: tuple[bytes | None, ...]

    def encode_body(self, w: Writer) -> None:
        w.int16(len(self.values))
        for value in self.values:
            w.value(value)

    @classmethod
    def decode(cls, r: Reader) -> DataRow:
        n = r.int16()
        values = tuple(r.value() for _ in range(n))
        r.expect_end()
        return cls(values)

    @staticmethod
    def encode_batch(cells: Sequence[pa.Array], nrows: int) -> bytes:
        """Many DataRows at once from per-column arrays of length-prefixed cells (what
        `wire.pgtypes.encode_cells` returns), joined by Arrow without a Python loop per row:
        the hot path of every query result."""
        if not cells:
            return _DATA_ROW_HEADER.pack(b"D", 6, 0) * nrows
        size = np.full(nrows, 6, dtype=np.int64)
        for column in cells:
            size += pc.binary_length(column).to_numpy(zero_copy_only=False)
        header = np.empty(nrows, dtype=[("type", "S1"), ("len", ">i4"), ("n", ">i2")])
        header["type"] = b"D"
        header["len"] = size
        header["n"] = len(cells)
        prefix = fixed_width(header.view(np.uint8), 7, nrows)
        rows = pc.binary_join_element_wise(prefix, *cells, pa.scalar(b"", pa.large_binary()))
        return concat_binary(rows)

    @staticmethod
    def encode_cell_rows(columns: Sequence[list[bytes]], nrows: int) -> bytes:
        """DataRows from per-column lists of cells as Python bytes (what
        `wire.pgtypes.cell_lists` returns): the same bytes as `encode_batch`, for short
        results, where a loop over a few rows costs less than Arrow's kernels."""
        if not columns:
            return _DATA_ROW_HEADER.pack(b"D", 6, 0) * nrows
        pack, ncols = _DATA_ROW_HEADER.pack, len(columns)
        if ncols == 1:
            return b"".join([pack(b"D", 6 + len(cell), 1) + cell for cell in columns[0]])
        out = []
        for cells in zip(*columns):
            body = b"".join(cells)
            out.append(pack(b"D", 6 + len(body), ncols))
            out.append(body)
        return b"".join(out)


@dataclass(frozen=True)
class CommandComplete(Message):
    """Ends a statement's result with its command tag (`SELECT 3`, `INSERT 0 1`), which drivers read
    for row counts."""

    TYPE = b"C"
    tag: str

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.tag)

    def encode(self) -> bytes:  # every statement's last message: framed directly
        raw = self.tag.encode()
        if b"\0" in raw:
            raw = raw.replace(b"\0", b"")
        return frame(self.TYPE, raw + b"\0")

    @classmethod
    def decode(cls, r: Reader) -> CommandComplete:
        tag = r.cstring()
        r.expect_end()
        return cls(tag)


@dataclass(frozen=True)
class EmptyQueryResponse(Message):
    """The answer to an empty query string (in place of CommandComplete)."""

    TYPE = b"I"


# Field codes of ErrorResponse and NoticeResponse.
FIELD_SEVERITY = "S"
FIELD_SEVERITY_NONLOCALIZED = "V"
FIELD_SQLSTATE = "C"
FIELD_MESSAGE = "M"
FIELD_DETAIL = "D"
FIELD_HINT = "H"
FIELD_POSITION = "P"
FIELD_CONTEXT = "W"
FIELD_SCHEMA = "s"
FIELD_TABLE = "t"
FIELD_COLUMN = "c"
FIELD_DATATYPE = "d"
FIELD_CONSTRAINT = "n"
_OBJECT_FIELDS = {"schema": FIELD_SCHEMA, "table": FIELD_TABLE, "column": FIELD_COLUMN,
                  "datatype": FIELD_DATATYPE, "constraint": FIELD_CONSTRAINT}


@dataclass(frozen=True)
class ErrorResponse(Message):
    """Fields as (code, value) pairs in the order sent: S, V, C, M, then D, H, P, W, s, t, c,
    d, n if any."""

    TYPE = b"E"
    fields: tuple[tuple[str, str], ...]

    def encode_body(self, w: Writer) -> None:
        for code, value in self.fields:
            w.byte(ord(code)).cstring(value)
        w.byte(0)

    @classmethod
    def decode(cls, r: Reader) -> ErrorResponse:
        fields = []
        while True:
            code = r.byte()
            if code == 0:
                break
            fields.append((chr(code), r.cstring()))
        r.expect_end()
        return cls(tuple(fields))

    @classmethod
    def build(cls, severity: str, sqlstate: str, message: str, *, detail: str | None = None,
              hint: str | None = None, position: int | None = None,
              context: str | None = None, objects: dict[str, str] | None = None):
        """An error or notice with the fields clients read, in the order PostgreSQL sends them;
        empty optional fields are left out. `objects`: the schema, table, column, datatype
        and constraint the error is about, by those names."""
        fields = [(FIELD_SEVERITY, severity), (FIELD_SEVERITY_NONLOCALIZED, severity),
                  (FIELD_SQLSTATE, sqlstate), (FIELD_MESSAGE, message)]
        if detail:
            fields.append((FIELD_DETAIL, detail))
        if hint:
            fields.append((FIELD_HINT, hint))
        if position:
            fields.append((FIELD_POSITION, str(position)))
        if context:
            fields.append((FIELD_CONTEXT, context))
        for name, value in (objects or {}).items():
            if value:
                fields.append((_OBJECT_FIELDS[name], value))
        return cls(tuple(fields))

    def get(self, code: str) -> str | None:
        """The value of field `code` (FIELD_SQLSTATE, FIELD_MESSAGE, ...), or None."""
        for c, value in self.fields:
            if c == code:
                return value
        return None


@dataclass(frozen=True)
class NoticeResponse(ErrorResponse):
    """A warning or notice: an ErrorResponse's fields that do not end the statement."""

    TYPE = b"N"


# COPY (CopyData and CopyDone go both ways) -------------------------------------------------------


@dataclass(frozen=True)
class CopyInResponse(Message):
    """`format` 0 text (and csv), 1 binary; one format code per column."""

    TYPE = b"G"
    format: int
    column_formats: tuple[int, ...]

    def encode_body(self, w: Writer) -> None:
        w.byte(self.format).int16(len(self.column_formats))
        for code in self.column_formats:
            w.int16(code)

    @classmethod
    def decode(cls, r: Reader) -> CopyInResponse:
        fmt, n = r.byte(), r.int16()
        codes = tuple(r.int16() for _ in range(n))
        r.expect_end()
        return cls(fmt, codes)


@dataclass(frozen=True)
class CopyOutResponse(CopyInResponse):
    """Starts COPY TO STDOUT: the rows follow as CopyData, then CopyDone."""

    TYPE = b"H"


@dataclass(frozen=True)
class CopyData(Message):
    """A chunk of COPY data, in either direction; chunks need not end at row boundaries."""

    TYPE = b"d"
    data: bytes

    def encode_body(self, w: Writer) -> None:
        w.bytes(self.data)

    @classmethod
    def decode(cls, r: Reader) -> CopyData:
        return cls(r.rest())


@dataclass(frozen=True)
class CopyDone(Message):
    """Ends the COPY data, in either direction."""

    TYPE = b"c"


@dataclass(frozen=True)
class CopyFail(Message):
    """The client aborts COPY FROM STDIN; the server fails the statement with its message."""

    TYPE = b"f"
    message: str

    def encode_body(self, w: Writer) -> None:
        w.cstring(self.message)

    @classmethod
    def decode(cls, r: Reader) -> CopyFail:
        message = r.cstring()
        r.expect_end()
        return cls(message)


# Lookup tables -----------------------------------------------------------------------------------

FRONTEND: dict[bytes, type[Message]] = {
    m.TYPE: m for m in (PasswordMessage, Query, Parse, Bind, Describe, Execute, Close, Flush,
                        Sync, Terminate, FunctionCall, CopyData, CopyDone, CopyFail)
}

BACKEND: dict[bytes, type[Message]] = {
    m.TYPE: m for m in (Authentication, ParameterStatus, BackendKeyData,
                        NegotiateProtocolVersion, ReadyForQuery, ParseComplete, BindComplete,
                        CloseComplete, NoData, PortalSuspended, ParameterDescription,
                        RowDescription, DataRow, CommandComplete, EmptyQueryResponse,
                        ErrorResponse, NoticeResponse, CopyInResponse, CopyOutResponse,
                        CopyData, CopyDone)
}


def decode_frontend(type_byte: bytes, body: bytes) -> Message:
    """Decode a typed frontend message; unknown types are a protocol violation."""
    cls = FRONTEND.get(type_byte)
    if cls is None:
        shown = type_byte.decode("latin-1") if type_byte.isascii() and type_byte.isalnum() \
            else str(type_byte[0])
        raise ProtocolViolation(f'invalid frontend message type "{shown}"'
                                if not shown.isdigit() else
                                f"invalid frontend message type {shown}")
    if not body and cls in _WITHOUT_FIELDS:
        return _WITHOUT_FIELDS[cls]
    if cls in _REPEATED and len(body) <= _REPEATED_MAX_BODY:
        key = type_byte + body
        message = _decoded.get(key)
        if message is None:
            message = cls.decode(Reader(body))
            if len(_decoded) >= _REPEATED_ENTRIES:
                _decoded.clear()
            _decoded[key] = message
        return message
    return cls.decode(Reader(body))


# Frontend messages without fields (Sync ends every round trip): one instance each.
_WITHOUT_FIELDS: dict[type[Message], Message] = {
    cls: cls() for cls in (Sync, Flush, Terminate, CopyDone)}

# The small messages of a prepared statement's round trip come again byte for byte (the same
# Describe and Execute of the unnamed portal, the same Bind of a statement without parameters
# or with the same ones), and so do short simple queries: they are decoded once and shared,
# as they are immutable. Only short bodies, in a table emptied when full, so it stays small
# whatever clients send; a body that does not decode raises, and is not remembered.
_REPEATED = frozenset({Bind, Describe, Execute, Close, Query})
_REPEATED_MAX_BODY = 64
_REPEATED_ENTRIES = 1024
_decoded: dict[bytes, Message] = {}


def decode_backend(type_byte: bytes, body: bytes) -> Message:
    """Decode a typed backend message, the way a client does: what the tests' raw client reads
    server traffic with."""
    cls = BACKEND.get(type_byte)
    if cls is None:
        raise ProtocolViolation(f"unknown backend message type {type_byte!r}")
    return cls.decode(Reader(body))
