"""One client connection: an explicit state machine over the protocol's phases.

    STARTUP ──StartupMessage──▶ AUTH ──password ok──▶ READY ◀──────────────── Sync ─┐
                                                      │ Query                       │
                                                      │ Parse/Bind/Describe/Execute ▼
                                                      ├──────────────────────▶ EXTENDED
                                                      │ error in EXTENDED ────▶ FAILED
                                                      │ COPY FROM STDIN ──────▶ COPY_IN
                                                      └ COPY TO STDOUT ───────▶ COPY_OUT

`dispatch` looks at the state first and the message second. The subtle rule is the one for
errors in the extended protocol, quoted from the PostgreSQL documentation (55.2.3): "When an
error is detected while processing any extended-query message, the backend issues
ErrorResponse, then reads and discards messages until a Sync is reached, then issues
ReadyForQuery and returns to normal message processing." That is the FAILED state.

Each connection is served by a thread of its own, with blocking reads and writes on its socket:
a round trip (Bind/Describe/Execute/Sync arriving in one receive) is decoded, run and answered
in that thread with no hand-off to another one, and output is written once per Sync (or Flush,
or when a large result has filled the send buffer). NumPy, pyarrow and hnswlib release the GIL,
so connections run their engine work in parallel, and a long query on one connection never
stalls the others. A session is used by this thread only; `Session.cancel` (a CancelRequest),
`stop` (server shutdown, or `pg_terminate_backend` through `Session.terminate`) and `expire`
(the authentication timeout) are the only calls made from elsewhere.

Before authentication a client is a stranger, and gets little: an 8 KiB receive buffer,
password messages of at most 1,024 (SASL) or 65,535 bytes, `authentication_timeout` seconds
in all to finish (`expire`), and a delay before a failed password is answered. Once in, it
takes a session slot (`Server.admit`: 53300 beyond max_connections, with the last
superuser_reserved_connections slots kept for superusers) and the full-size buffer.
"""

from __future__ import annotations

import enum
import logging
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.catalog.settings import REPORTED
from sqlvec.errors import (
    AdminShutdown,
    FeatureNotSupported,
    InFailedTransaction,
    InvalidPassword,
    Notice,
    ProgramLimitExceeded,
    ProtocolViolation,
    QueryCanceled,
    SqlVecError,
)
from sqlvec.session import CopyCommand, StatementKind
from sqlvec.types import REG_TYPES, SqlType
from wire import copy as copy_format
from wire import pgtypes
from wire.codec import (
    SESSION_RECV_SIZE,
    STARTUP_RECV_SIZE,
    SocketStream,
    linger_close,
    read_header,
    read_message,
    read_startup,
)
from wire.compiled import CompiledRead, CompiledWrite
from wire.messages import (
    AUTH_SASL_FINAL,
    PROTOCOL_3_0,
    Authentication,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Flush,
    FunctionCall,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RepeatedRoundTrip,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    bind_names_at,
    decode_frontend,
    decode_startup,
)
from wire.run_blocks import EqualRuns, RunBlocks

if TYPE_CHECKING:
    from sqlvec.session import PreparedStatement, Result, ResultColumn, Session
    from wire.server import Server

log = logging.getLogger("sqlvec.wire")

ROWS_PER_CHUNK = 8192  # rows encoded at a time when streaming a large result
CACHED_ROWS_BYTES = 4096  # a short result's DataRows kept for its table's next run, at most
SEND_BUFFER = 1 << 20  # pending output is written beyond this size
NAME_MAX_BYTES = 63  # user and database names are cut to this, as PostgreSQL's NAMEDATALEN - 1
TERMINATE_WAIT = 1.0  # pg_terminate_backend waits at most this for an idle session's FATAL
MAX_PARAMETERS = 65535  # Bind and ParameterDescription count parameters in 16 bits
REPEATED_SHAPES = 16  # prepared statements' round trips kept to be recognised again, at most
REPEATED_BYTES = 1 << 20  # ... and their bytes, beyond the last one kept (large values' Binds)


class ConnectionState(enum.Enum):
    """Where the connection is in the protocol, which decides the messages it accepts next."""

    STARTUP = "startup"  # before StartupMessage (SSLRequest / GSSENCRequest may come first)
    AUTH = "auth"  # password exchange
    READY = "ready"  # idle, or running a simple Query
    EXTENDED = "extended-query"  # inside a Parse/Bind/Describe/Execute batch, before Sync
    COPY_IN = "copy-in"  # receiving CopyData
    COPY_OUT = "copy-out"  # sending CopyData
    FAILED = "failed-skip-until-sync"  # an extended-query error: discard until Sync
    CLOSED = "closed"


@dataclass
class Statement:
    """A Parse-d statement: the engine's plan (for COPY, the command the wire carries out)."""

    sql: str
    param_oids: tuple[int, ...]
    prepared: PreparedStatement
    # Encoded RowDescriptions of `prepared` by result formats (Describe comes every round trip).
    descriptions: dict[tuple[int, ...], bytes] = field(default_factory=dict)

    @property
    def param_types(self) -> list[SqlType]:
        return list(self.prepared.param_types)

    @property
    def columns(self) -> list[ResultColumn] | None:
        return self.prepared.columns

    @property
    def copy(self) -> CopyCommand | None:
        return self.prepared.copy if self.prepared.kind is StatementKind.COPY else None

    def replan(self, prepared: PreparedStatement) -> None:
        """The statement as planned now (a new plan after a catalog change)."""
        if prepared is not self.prepared:
            self.prepared = prepared
            self.descriptions.clear()

    def description(self, formats: list[int]) -> bytes:
        """RowDescription (or NoData) of the statement's result in `formats`, encoded."""
        key = tuple(formats)
        data = self.descriptions.get(key)
        if data is None:
            columns = self.columns
            data = row_description(columns, formats).encode() if columns is not None \
                else NoData().encode()
            self.descriptions[key] = data
        return data


@dataclass
class Portal:
    """A bound statement; keeps its result and how far Execute has sent it."""

    statement: Statement
    params: list
    codes: tuple[int, ...]  # result format codes as bound (none, one for all, or per column)
    result: Result | None = None
    offset: int = 0
    _formats: tuple[list[ResultColumn] | None, list[int]] | None = None  # the last answer

    def formats(self, columns: list[ResultColumn] | None) -> list[int]:
        """The format code of each result column: none bound means text, one applies to all; a count
        the statement no longer matches falls back to text. (Asked by Describe and Execute
        alike: the answer for the same column list is kept.)"""
        cached = self._formats
        if cached is not None and cached[0] is columns:
            return cached[1]
        n = len(columns or [])
        if len(self.codes) not in (0, 1, n):
            formats = [pgtypes.TEXT] * n  # Bind checked the count against the statement
        else:
            formats = _result_formats(self.codes, n)
        self._formats = (columns, formats)
        return formats


class RunsOf:
    """The runs of one prepared single-row INSERT an executemany sends after a first (its
    Bind into the unnamed portal with other values, Describe of the portal or not, Execute
    of all of it), recognised in a receive buffer, in place, as `RepeatedRoundTrip` does
    (the same bytes but the values): each gives its row's values as the statement converts
    them and the answers running it gives, with no Bind made."""

    def __init__(self, bind: Bind, statement: Statement, formats: list[int]) -> None:
        self.bind = bind
        self.shape = RepeatedRoundTrip(bind, b"", ())  # (its Bind's, read by `bind_values`)
        execute = Execute("", 0).encode()
        done = _INSERTED
        # The messages after the Bind, framed, with the answers: the one met last first.
        self.rests = [(Describe("P", "").encode() + execute,
                       _BIND_COMPLETE + statement.description(formats) + done),
                      (execute, _BIND_COMPLETE + done)]
        self.decoders = pgtypes.param_decoders(statement.param_types, bind.param_formats)
        self.fast = statement.prepared.compiled.fast  # type: ignore[union-attr]
        self.values_at = 5 + len(self.shape.head)  # where a run's values begin
        # Blocks of runs laid out alike, decoded together (none: the rows never go column-wise).
        self.blocks = RunBlocks(statement.param_types, bind.param_formats) \
            if self.fast.column_converters is not None else None

    def cut_short(self, buf: bytearray, start: int, end: int, limit: int) -> bool:
        """Whether buf[start:end] is empty or a run cut short (a Bind not all received, or
        one followed by part of the messages after it): the rest is still to come, as
        reading the next message would wait for it. A Bind longer than `limit` is not one:
        reading it refuses it at once."""
        if start == end:
            return True
        if buf[start] != 0x42:  # B
            return False
        if end - start < 5:
            return True
        (length,) = _LENGTH.unpack_from(buf, start + 1)
        if length > limit:
            return False
        bind_end = start + 1 + length
        if bind_end > end:
            return True
        tail = bytes(buf[bind_end:end])
        return any(len(tail) < len(rest) and rest.startswith(tail) for rest, _answer in self.rests)

    def match(self, buf: bytearray, start: int, end: int,
              limit: int) -> tuple[list, int, bytes] | None:
        """If buf[start:end] begins with a run: its row's values, its size in bytes and its
        answers; None when it does not, or its values need the statement run."""
        found = self.shape.bind_values(buf, start, end)
        if found is None:
            return None
        data, bind_end = found
        try:
            params = [decode(value) for decode, value in zip(self.decoders, data)]
        except SqlVecError:
            return None
        rests = self.rests
        rest, answer = rests[0]
        if not buf.startswith(rest, bind_end, end):
            rest, answer = rests[1]
            if not buf.startswith(rest, bind_end, end):
                return None
            rests.reverse()  # the other shape first from now on
        size = bind_end + len(rest) - start
        if size > limit:
            return None
        values = self.fast.values(params)
        if values is None:
            return None
        return values, size, answer


@dataclass
class CopyIn:
    """A COPY FROM STDIN receiving data; `failure` is set by CopyFail or a stray message."""

    command: CopyCommand
    columns: list[copy_format.Column]
    resume: ConnectionState
    data: copy_format.CopyStream = field(default_factory=copy_format.CopyStream)
    failure: SqlVecError | None = None


class Closed(Exception):
    """The connection is over (Terminate, a fatal error, or the server shutting down)."""


class Stopping(BaseException):
    """The server is shutting down: the connection ends with FATAL 57P01. (A BaseException,
    as asyncio's CancelledError: no handler of statement errors may report it.)"""


# The client went away: these end the connection, they are never reported to it. (Not every
# OSError: one raised by the engine, such as a full disk, is an error to report.)
GONE = (Closed, ConnectionError, ssl.SSLError, socket.timeout)


# Messages without fields, and ReadyForQuery per status, encoded once.
_PARSE_COMPLETE = ParseComplete().encode()
_BIND_COMPLETE = BindComplete().encode()
_INSERTED = CommandComplete("INSERT 0 1").encode()
_INSERTED_SIZE = len(_INSERTED)
_CLOSE_COMPLETE = CloseComplete().encode()
_READY = {status: ReadyForQuery(status).encode() for status in "ITE"}


def _result_formats(codes: tuple[int, ...], ncols: int) -> list[int]:
    if not codes:
        return [pgtypes.TEXT] * ncols
    if len(codes) == 1:
        return [codes[0]] * ncols
    if len(codes) != ncols:
        raise SqlVecError(f"bind message has {len(codes)} result formats but query has "
                          f"{ncols} columns", sqlstate="08P01")
    return list(codes)


def row_description(columns: list[ResultColumn], formats: list[int]) -> RowDescription:
    """The RowDescription of `columns` in the formats the portal will send them in."""
    return RowDescription(tuple(
        FieldDescription(c.name, c.table_oid, c.attnum, c.type.oid, pgtypes.typlen(c.type),
                         c.type.typmod, fmt)
        for c, fmt in zip(columns, formats)))


def _parameter_context(portal: str, index: int, fmt: int, exc: SqlVecError) -> str:
    """PostgreSQL's CONTEXT for a Bind parameter that does not decode: which portal's which
    parameter, and for text that decoded as UTF-8 its value, withheld as '...' (the default
    log_parameter_max_length_on_error of 0)."""
    where = f'portal "{portal}" parameter ${index + 1}' if portal else \
        f"unnamed portal parameter ${index + 1}"
    if fmt == pgtypes.TEXT and exc.sqlstate != "22021":
        where += " = '...'"
    return where


def error_response(exc: BaseException) -> ErrorResponse:
    """ErrorResponse fields from an engine error (a COPY data error adds its CONTEXT line);
    anything else is an internal error (XX000) with a one-line message, its traceback going
    to the server log only."""
    if isinstance(exc, SqlVecError):
        context = exc.context(exc.label) if isinstance(exc, copy_format.CopyDataError) \
            else exc.where
        return ErrorResponse.build(exc.severity, exc.sqlstate, exc.message, detail=exc.detail,
                                   hint=exc.hint, position=exc.position, context=context,
                                   objects=exc.object_fields)
    log.error("internal error", exc_info=exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    message = f"internal error: {type(exc).__name__}" + (f": {text}" if text else "")
    return ErrorResponse.build("ERROR", "XX000", message)


def notice_response(notice: Notice) -> NoticeResponse:
    """NoticeResponse fields from an engine notice, one-to-one."""
    return NoticeResponse.build(notice.severity, notice.sqlstate, notice.message,
                                detail=notice.detail, hint=notice.hint)


class Connection:
    """The protocol state of one client; `serve()` runs it to the end in the calling thread."""

    def __init__(self, server: Server, sock: socket.socket, peer: object = None) -> None:
        self.server = server
        self.sock = sock
        self.stream = SocketStream(sock, STARTUP_RECV_SIZE)
        self.state = ConnectionState.STARTUP
        self.session: Session | None = None
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, Portal] = {}
        self.copy: CopyIn | None = None
        self.pid = 0
        self.secret = b""
        self.tls = False
        self.peer = peer
        self.thread: threading.Thread | None = None
        self.reading = False  # waiting for client input
        self.stopping = False
        self.admitted = False  # authenticated and holding a session slot (`Server.admit`)
        self.expired = False  # not authenticated within authentication_timeout
        self.deadline = time.monotonic() + server.limits.authentication_timeout
        self._lock = threading.Lock()  # orders `reading` against `stop`
        self._out = bytearray()
        self._last_words = False  # a FATAL error was sent: the client must get to read it
        self._said = threading.Event()  # `_fatal` is done (sent or failed)
        self._digits = ("1", 1)  # extra_float_digits: the setting's text, its value
        self._types: tuple[list[ResultColumn], list[SqlType], bool] | None = None
        # The last result table encoded whole, with its formats, float digits and DataRows: a
        # constant query's result is the same immutable table each run, so its rows are
        # encoded once (holding the table keeps its identity from being reused).
        self._rows: tuple[pa.Table, list[SqlType], list[int], int, bytes] | None = None
        # The simple protocol's last RowDescription (all text), by its columns list.
        self._description: tuple[list[ResultColumn], bytes] | None = None
        # The last round trip `run_bound` ran of each named prepared statement (and of the
        # unnamed one when run twice in a row), by its Bind's portal and statement names as
        # framed, recognised in the receive buffer when the next repeats it but for the Bind's
        # values (`_run_repeated`), with `run_bound`'s other arguments; and the statement last
        # run so. Several, not one: a client may take turns between prepared statements (psycopg
        # prepares a statement once per type of its parameters: int2 / int4 / int8 for ints).
        # A write's is kept compiled too (`CompiledWrite`, None for other statements).
        self._repeats: dict[bytes, Repeat] = {}
        self._repeat: Repeat | None = None  # the one recognised last: tried first
        self._last_bound: str | None = None
        # The last prepared read `run_bound` ran that compiles (wire/compiled.py: a vector
        # top-k, a one-row statement computed in Python), compiled.
        self._compiled: CompiledRead | None = None
        self.compiled_runs = 0  # round trips it answered
        self.compiled_writes = 0  # round trips a kept round trip's `CompiledWrite` answered
        # While `dispatch_all` runs a round trip's messages: them, and the index of the one
        # after the message being handled (what follows it is looked for there, not in the
        # stream: `_more_to_execute`).
        self._ahead: tuple[list[Message], int] | None = None
        # The rows an executemany gathered (the session's `pending`, not yet applied) and
        # where, in `_out`, the answer of each one's Execute begins: an error in them is
        # answered there, in place of the answers from the failing row on (`_withdraw`).
        self._gathered: tuple[object, list[int]] | None = None
        # The last Bind handled, and the runs of its statement `_take_runs` recognised last.
        self._last_bind: Bind | None = None
        self._runs: RunsOf | None = None

    # Lifecycle ------------------------------------------------------------------------------------

    def serve(self) -> None:
        """The connection's whole life: startup and authentication under a timeout, then messages
        until Terminate or a broken socket; always ends the session and closes the socket."""
        try:
            # A per-receive bound; `expire` (the server's watchdog) bounds the whole startup.
            self.sock.settimeout(self.server.limits.authentication_timeout)
            if self._startup():
                self.sock.settimeout(None)  # a session may stay idle as long as it likes
                while self.state is not ConnectionState.CLOSED:
                    self.serve_next()
        except Stopping:
            self._fatal(AdminShutdown("terminating connection due to administrator command"))
        except (*GONE, OSError) as exc:
            if self.expired or (isinstance(exc, TimeoutError) and not self.admitted):
                log.info("connection from %s: canceling authentication due to timeout",
                         self.peer)
                self._fatal(SqlVecError("canceling authentication due to timeout",
                                        sqlstate="57014"))
            elif self.stopping:  # an idle connection woken by `stop`
                self._fatal(AdminShutdown("terminating connection due to administrator command"))
        except SqlVecError as exc:  # protocol violations, authentication failures
            self._fatal(exc)
        except Exception as exc:  # a bug of ours: report it once, never the traceback
            log.exception("connection %s failed", self.peer)
            self._fatal(SqlVecError(f"internal error: {type(exc).__name__}"))
        finally:
            self._release()

    def serve_next(self) -> None:
        """Read the client's next message, waiting for it, and handle it; a Bind whose round
        trip is all buffered (`_bound_round_trip`) is run with it in one step, and a round trip
        repeating the last one so run but for its values is recognised whole (`_run_repeated`)."""
        if self._repeats and self.state is _READY_STATE and self._run_repeated():
            return
        type_byte, body = self._read()
        message = decode_frontend(type_byte, body)
        if self.state is _READY_STATE:
            if type_byte == b"B":
                bound = self._bound_round_trip(message, body)  # type: ignore[arg-type]
                if bound is not None:
                    self.run_bound(*bound)
                    return
            elif type_byte == b"P":
                self._parse_then_bound(message)  # type: ignore[arg-type]
                return
        self.dispatch(message)

    def _parse_then_bound(self, parse: Parse) -> None:
        """A Parse in the ready state, and the Bind after it if it is buffered whole with the
        rest of `run_bound`'s round trip: what a driver that keeps no prepared statement sends
        for each run (node-postgres, psycopg below its prepare threshold). The Parse alone
        came before that round trip, so it runs in one step as after a Sync, compiled when
        it can be (the unnamed statement parsed again as it was stays the same: `on_parse`)."""
        stream = self.stream
        buf, start, end = stream.window()
        following = None
        if end - start >= 5 and buf[start] == 0x42 and not self.stopping:  # B
            try:
                following = stream.buffered_message(self.server.max_message_size)
            except SqlVecError:  # (too long: refused when read in its turn)
                following = None
        self.dispatch(parse)
        if following is None:
            return
        body = following[1]
        bind = decode_frontend(b"B", body)
        if self.state is _EXTENDED_STATE:
            bound = self._bound_round_trip(bind, body, keep=False)  # type: ignore[arg-type]
            if bound is not None:
                self.run_bound(*bound)
                return
        self.dispatch(bind)

    def run_after_parse(self, parse: Parse, bind: Bind, describe: bool, execute: Execute,
                        compiled: CompiledRead | None = None, params: list | None = None
                        ) -> None:
        """A Parse in the ready state, then `run_bound`'s round trip: that round trip runs in
        one step as after a Sync, by `compiled` for its decoded `params` if given and the
        statement is still the one it was compiled for (a repeat recognised whole), else
        compiled when it can be; after a Parse that fails, or of a COPY (whose data comes
        after the Sync, which it ignores), the messages go one by one."""
        self.state = _EXTENDED_STATE
        self._extended(Connection.on_parse, parse)
        statement = self.statements.get(bind.statement)
        if self.state is not _EXTENDED_STATE or statement is not None \
                and statement.copy is not None:
            self.dispatch_all([bind, *((Describe("P", bind.portal),) if describe else ()),
                               execute, _SYNC])
        elif compiled is not None and compiled.current(self):
            self.run_compiled(compiled, params)  # type: ignore[arg-type]
        else:
            self.run_bound(bind, describe, execute)

    def _run_repeated(self) -> bool:
        """Wait for input if none is buffered; if it begins with a round trip repeating one of
        `_repeats` but for the Bind's values, run it (nothing framed or decoded but those
        values: the same messages, so the same answers), else take nothing (False)."""
        stream = self.stream
        if not stream.buffered:
            self._waiting(stream.receive)
        elif self.stopping:
            raise Stopping
        buf, start, end = stream.window()
        repeat = self._repeat
        found = repeat[0].values(buf, start, end) if repeat is not None else None
        if found is None:
            kept = self._repeats.get(bind_names_at(buf, start, end))  # type: ignore[arg-type]
            if kept is None or kept is repeat:  # (that one was just tried)
                return False
            repeat = kept
            found = repeat[0].values(buf, start, end)
            if found is None:
                return False
            self._repeat = repeat
        values, size = found
        if size > self.server.max_message_size:
            return False
        stream.skip(size)
        shape, describe, execute, _size, write = repeat
        bind = shape.bind
        if write is not None and write.fits(self, bind.statement, bind.portal):
            params = write.decode(values)
            if params is not None:
                self.compiled_writes += 1
                self.state = _EXTENDED_STATE
                self._extended(write.steps, params, bind.portal)
                self.on_sync(_SYNC)
                return True
        self.run_bound(shape.bind_with(values), describe, execute)
        if write is not None:
            self._recompile(repeat)
        return True

    def block_portal(self, name: str, statement: Statement, params: list,
                     codes: tuple[int, ...]) -> Portal | None:
        """In a transaction block, the portal a compiled round trip's Bind makes, kept (its
        result set by the caller) until the block ends as `on_bind`'s is; None outside one
        (Sync drops it at once there)."""
        session = self.session
        if session is None or not session.explicit:
            return None
        portal = self.portals[name] = Portal(statement, params, codes)
        return portal

    def _recompile(self, repeat: Repeat) -> None:
        """After a kept write's round trip ran in full: if its statement is another one now, or
        planned again, compile the round trip again (None for a statement that is no write)."""
        shape, describe, execute, size, write = repeat
        assert write is not None
        statement = self.statements.get(shape.bind.statement)
        if statement is write.statement and statement.prepared is write.prepared:
            return
        again = (shape, describe, execute, size,
                 CompiledWrite.of(statement, shape.bind, describe, execute))
        if self._repeats.get(shape.names) is repeat:
            self._repeats[shape.names] = again
        self._repeat = again

    def stop(self) -> None:
        """Server shutdown: end after the current message (at once when idle). Called from
        another thread: an idle connection is woken by shutting down its socket's read side."""
        with self._lock:
            self.stopping = True
            if self.reading:
                self._shutdown_socket(socket.SHUT_RD)

    def _terminate(self) -> None:
        """pg_terminate_backend: `stop`, and wait (briefly) until the FATAL error is written, so
        the client's next statement meets it wherever it is answered (a worker answering reads
        checks for the primary's output first). Not only when idle: between client statements
        the connection may be handling a worker's report (its activity, its statistics), and a
        running statement is interrupted, so the FATAL follows at once either way."""
        self.stop()
        if threading.current_thread() is not self.thread:
            self._said.wait(TERMINATE_WAIT)

    def abort(self) -> None:
        """Server shutdown after the grace period: the socket stops working both ways."""
        self._shutdown_socket(socket.SHUT_RDWR)

    def expire(self) -> None:
        """The authentication timeout passed (called by the server's watchdog): a client still
        not in is woken from its read and told so."""
        with self._lock:
            if self.admitted:
                return
            self.expired = True
        self._shutdown_socket(socket.SHUT_RD)

    def _shutdown_socket(self, how: int) -> None:
        try:
            # socket.socket's own method: SSLSocket.shutdown would also drop the TLS layer,
            # and the last words (FATAL) must still go out encrypted.
            socket.socket.shutdown(self.sock, how)
        except OSError:
            pass  # already closed

    def _release(self) -> None:
        self.state = ConnectionState.CLOSED
        self.server.unregister(self)
        session, self.session = self.session, None
        if session is not None and session.settings.get("log_disconnections") == "on":
            _log_disconnection(session, self.peer)
        if session is not None:
            try:
                session.close()
            except Exception:  # closing must not raise on the way out
                log.exception("closing session failed")
        try:
            if self._last_words and self.sock.family != socket.AF_UNIX:
                linger_close(self.sock)  # a TCP reset could overtake the FATAL error
            else:
                self.sock.close()
        except Exception:  # the socket may already be gone
            pass

    def _fatal(self, exc: SqlVecError) -> None:
        """The last words of a connection: an ErrorResponse of severity FATAL."""
        response = ErrorResponse.build("FATAL", exc.sqlstate, exc.message, detail=exc.detail,
                                       hint=exc.hint)
        try:
            self.sock.settimeout(1.0)
            self.send(response)
            self.flush()
            self._last_words = True
        except Exception:  # best effort: the peer may be gone
            pass
        finally:
            self._said.set()

    # I/O --------------------------------------------------------------------------------------

    def _read(self) -> tuple[bytes, bytes]:
        """The next message, waiting for the client if need be. One already buffered (the
        rest of a pipelined round trip) is taken without the lock `_waiting` holds around a
        blocking read; shutdown still ends the connection between messages."""
        message = self.stream.buffered_message(self.server.max_message_size)
        if message is not None:
            if self.stopping:
                raise Stopping
            return message
        return self._waiting(read_message, self.stream.read_exactly,
                             self.server.max_message_size)

    def _waiting(self, read: Callable, *args: object):
        """Run a read of client input. Shutdown ends the connection here, between messages
        (`stop` wakes a connection waiting in this call)."""
        with self._lock:
            if self.stopping:
                raise Stopping
            self.reading = True
        try:
            return read(*args)
        finally:
            self.reading = False

    def _bound_round_trip(self, bind: Bind, body: bytes,
                          keep: bool = True) -> tuple[Bind, bool, Execute] | None:
        """After a Bind (`body`: as received): if the rest of its round trip is buffered and
        has `run_bound`'s shape (`bound_round_trip`), take it and return `run_bound`'s
        arguments; else None, nothing taken. The second such round trip of a statement in a
        row is kept to be recognised again (`_keep_shape`), unless not `keep` (one a Parse
        leads, which a Bind-led shape never matches)."""
        if self.stopping:
            return None
        statement = self.statements.get(bind.statement)
        if statement is not None and statement.copy is not None:
            return None  # (its data comes after the Sync, which it ignores: `on_sync`)
        buf, start, end = self.stream.window()
        pos, messages = start, [bind]
        while end - pos >= 5 and len(messages) <= 3:
            code = buf[pos]
            (length,) = _LENGTH.unpack_from(buf, pos + 1)
            stop = pos + 1 + length
            if length < 4 or stop > end:
                return None
            if code == 0x53:  # Sync
                bound = bound_round_trip([*messages, _SYNC]) if length == 4 else None
                if bound is not None and keep:
                    if bind.statement or bind.statement == self._last_bound:
                        self._keep_shape(body, bound, bytes(buf[start:stop]))
                    self._last_bound = bind.statement
                if bound is not None:
                    self.stream.skip(stop - start)
                return bound
            if length > 64 or code not in (0x44, 0x45):  # only a Describe or an Execute
                return None
            try:
                messages.append(decode_frontend(bytes((code,)), bytes(buf[pos + 5:stop])))
            except SqlVecError:  # malformed: refused in its turn, after the Bind ran
                return None
            pos = stop
        return None

    def _keep_shape(self, body: bytes, bound: tuple[Bind, bool, Execute], rest: bytes) -> None:
        """Keep the round trip of `bound` (its Bind's body, the messages after it as received)
        to be recognised again (`_run_repeated`), if its Bind encodes back to its bytes."""
        bind, describe, execute = bound
        messages = (Describe("P", bind.portal), execute, _SYNC) if describe else (execute, _SYNC)
        shape = RepeatedRoundTrip.of(body, bind, rest, messages)
        if shape is None:
            return
        repeats = self._repeats
        repeats.pop(shape.names, None)
        write = CompiledWrite.of(self.statements.get(bind.statement), bind, describe, execute)
        repeats[shape.names] = (shape, describe, execute, len(body) + len(rest), write)
        self._repeat = None
        # The ones kept longest ago go first; the last one always stays.
        while len(repeats) > REPEATED_SHAPES or len(repeats) > 1 and \
                sum(kept[3] for kept in repeats.values()) > REPEATED_BYTES:
            del repeats[next(iter(repeats))]

    def send(self, *messages: Message) -> None:
        """Queue messages; output goes out in large writes, at Sync, ReadyForQuery or when the
        buffer fills, so pipelined batches cost few system calls."""
        for message in messages:
            self._out += message.encode()
        if len(self._out) > SEND_BUFFER:
            self.flush()

    def send_raw(self, data: bytes) -> None:
        """Already-framed messages (a batch of DataRows or CopyData)."""
        if len(data) < SEND_BUFFER:
            self._out += data
            if len(self._out) > SEND_BUFFER:
                self.flush()
            return
        self.flush()
        self.stream.write(data)  # large: written as is, not copied into the buffer

    def flush(self) -> None:
        """Write the queued output now (rows gathered first: their answers depend on them)."""
        if self._gathered is not None:
            self._apply_gathered()
        if self._out:
            self.stream.write(self._out)
            self._out.clear()

    # Startup and authentication --------------------------------------------------------------

    def _startup(self) -> bool:
        """SSL/GSS negotiation, StartupMessage, authentication, session; False if the
        connection only carried a CancelRequest."""
        for _ in range(4):
            packet = decode_startup(self._waiting(read_startup, self.stream.read_exactly))
            if isinstance(packet, SSLRequest):
                context = self.server.ssl_context
                if context is None or self.tls:
                    self.stream.write(b"N")
                    continue
                if self.stream.buffered:
                    # Bytes sent before the handshake would count as if they came encrypted.
                    raise ProtocolViolation("received unencrypted data after SSL request")
                self.stream.write(b"S")
                self.sock = context.wrap_socket(self.sock, server_side=True)
                self.stream = SocketStream(self.sock, STARTUP_RECV_SIZE)
                self.tls = True
                continue
            if isinstance(packet, GSSENCRequest):
                self.stream.write(b"N")
                continue
            if isinstance(packet, CancelRequest):
                self.server.cancel(packet.pid, packet.secret)
                return False
            break
        else:
            raise ProtocolViolation("too many negotiation requests in startup")
        assert isinstance(packet, StartupMessage)
        self._on_startup(packet)
        self.stream.grow(SESSION_RECV_SIZE)
        return True

    def _on_startup(self, startup: StartupMessage) -> None:
        config = getattr(self.server.database, "config", None)
        if config is not None and config.get("log_connections") == "on":
            host, port = _host_port(self.peer)
            log.info("connection received: host=%s port=%s", host, port)
        major, minor = startup.version >> 16, startup.version & 0xFFFF
        if major != 3:
            raise FeatureNotSupported(
                f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")
        params = dict(startup.parameters)
        unrecognized = tuple(sorted(k for k in params if k.startswith("_pq_.")))
        if minor > 0 or unrecognized:
            # Newer minor versions (3.2: longer cancel keys) are answered with 3.0.
            self.send(NegotiateProtocolVersion(PROTOCOL_3_0 & 0xFFFF, unrecognized))
        user = _cut_name(params.pop("user", ""))
        if not user:
            raise SqlVecError("no PostgreSQL user name specified in startup packet",
                              sqlstate="28000")
        database = _cut_name(params.pop("database", "") or user)
        if params.pop("replication", "false").lower() not in ("false", "0", "off", "no"):
            raise FeatureNotSupported("replication connections are not supported")
        settings = _parse_options(params.pop("options", ""))
        for name, value in params.items():
            if not name.startswith("_pq_."):
                settings.setdefault(name, value)
        self.server.check_capacity()  # no password exchange for a client with no slot left
        self.state = ConnectionState.AUTH
        self._authenticate(user)
        self.send(Authentication.ok())
        with self._lock:
            if self.expired:
                raise TimeoutError("authentication timeout")
            self.server.admit(self, self.server.database.is_superuser(user))
        self.session = self._open_session(database, user, settings)
        self.session.on_terminate = self._terminate
        self.session.on_deallocate = self._deallocate
        self.session.on_discard_all = self._discard_all
        self.pid = self.session.pid
        self.secret = secrets.token_bytes(4)
        self.server.register(self)
        for name in sorted(REPORTED):
            self.send(ParameterStatus(name, self.session.settings.get(name, "")))
        self.send(BackendKeyData(self.pid, self.secret))
        self.state = ConnectionState.READY
        self.ready_for_query()
        self.flush()
        log.debug("connection from %s: user %s, database %s, application %r, TLS %s",
                  self.peer, user, database, settings.get("application_name", ""),
                  "on" if self.tls else "off")
        if self.session.settings.get("log_connections") == "on":
            log.info("connection authorized: user=%s database=%s application_name=%s%s", user,
                     database, self.session.settings.get("application_name", ""),
                     " SSL enabled" if self.tls else "")

    def _authenticate(self, user: str) -> None:
        authenticator = self.server.auth.authenticator(user)
        challenge = authenticator.start()
        while challenge is not None:
            self.send(challenge)
            if challenge.code == AUTH_SASL_FINAL:
                return
            self.flush()
            type_byte, body = self._waiting(read_message, self.stream.read_exactly,
                                            authenticator.max_message_size)
            message = decode_frontend(type_byte, body)
            if not isinstance(message, PasswordMessage):
                raise ProtocolViolation(f"expected password response, got message type "
                                        f"{type_byte.decode('latin-1')!r}")
            try:
                challenge = authenticator.step(message)
            except InvalidPassword:
                # As auth_delay does: a guesser waits for every answer (and holds one of the
                # few startup slots meanwhile), a real client mistyping barely notices.
                time.sleep(self.server.limits.auth_failure_delay)
                raise

    def _open_session(self, database: str, user: str, settings: dict[str, str]) -> Session:
        session = self.server.database.connect(database, user)
        try:
            for name, value in settings.items():
                session.set(name, value)
        except SqlVecError:
            session.close()
            raise
        session.settings_given()
        session.drain_changed_settings()
        return session

    # Dispatch: state first, then message -----------------------------------------------------

    def dispatch(self, message: Message) -> None:
        """Route a message by connection state: handlers when ready, skip-to-Sync after an error,
        COPY data during COPY."""
        state = self.state
        if state is _READY_STATE or state is _EXTENDED_STATE:
            self._in_ready(message)
        elif state is ConnectionState.FAILED:
            self._in_failed(message)
        elif state is ConnectionState.COPY_IN:
            self._in_copy_in(message)
        else:
            raise ProtocolViolation(f"unexpected message in state {state.value}")

    def _in_ready(self, message: Message) -> None:
        handler = self._READY_HANDLERS.get(type(message))
        if handler is None:
            if isinstance(message, (CopyData, CopyDone, CopyFail)):
                return  # the tail of a COPY that already failed: ignored, as PostgreSQL does
            raise ProtocolViolation(f"invalid frontend message type {message.TYPE!r} "
                                    "in this state")
        if type(message) in _EXTENDED:
            self.state = ConnectionState.EXTENDED
            self._extended(handler, message)
            return
        handler(self, message)

    def _extended(self, handler: Callable, *args: object) -> None:
        """Run an extended-query message's handler (`handler(self, *args)`): an error is
        reported and skips to Sync (`_extended_error`); a FATAL one, or the client gone, ends
        the connection."""
        try:
            handler(self, *args)
        except SqlVecError as exc:
            if exc.severity == "FATAL":
                raise
            exc = self._gathered_first(exc)
            self._withdraw(exc)
            self._extended_error(error_response(exc))
        except GONE:
            raise
        except Exception as exc:
            self._extended_error(error_response(exc))

    def dispatch_all(self, messages: list[Message]) -> None:
        """Dispatch a round trip's messages in order, as `dispatch` does each (a pipelined
        Bind/Describe/Execute/Sync read whole), in one loop: an extended-query message met
        in the ready states goes to its handler directly."""
        handlers = self._READY_HANDLERS
        try:
            for i, message in enumerate(messages, 1):
                kind = type(message)
                state = self.state
                if kind is Execute:
                    self._ahead = (messages, i)
                if kind not in _EXTENDED or not (state is _READY_STATE
                                                 or state is _EXTENDED_STATE):
                    self.dispatch(message)
                    continue
                self.state = _EXTENDED_STATE
                self._extended(handlers[kind], message)
        finally:
            self._ahead = None

    def run_round_trip(self, messages: list[Message]) -> None:
        """Handle a whole round trip's messages: in one step when it has `run_bound`'s shape
        and the connection is ready, else one by one (`dispatch_all`)."""
        if self.state is not _READY_STATE:
            self.dispatch_all(messages)
            return
        first = messages[0]
        if type(first) is Parse:  # a driver sending each run's Parse (node-postgres)
            bound = bound_round_trip(messages[1:])
            if bound is not None:
                self.run_after_parse(first, *bound)
                return
        bound = bound_round_trip(messages)
        if bound is not None:
            self.run_bound(*bound)
        else:
            self.dispatch_all(messages)

    def run_bound(self, bind: Bind, describe: bool, execute: Execute) -> None:
        """Bind, Describe of its portal (when `describe`), Execute of it and Sync, received
        together in the ready state: what a driver sends for each run of a prepared
        statement. The same answers and errors as dispatching them one by one (an error
        skips to the Sync), in fewer steps; a vector top-k's or a one-row statement's in fewer
        still, compiled the first time (`CompiledRead`)."""
        compiled = self._compiled
        fits = compiled is not None and compiled.fits(self, bind, describe, execute)
        if fits:
            params = compiled.params_of(bind.params)  # type: ignore[union-attr]
            if params is not None:
                self.run_compiled(compiled, params)  # type: ignore[arg-type]
                return
        self.state = _EXTENDED_STATE
        self._extended(Connection._bound_steps, bind, describe, execute)
        self.on_sync(_SYNC)
        if not fits:
            self._compiled = CompiledRead.of(self.statements.get(bind.statement), bind,
                                             describe, execute, self._float_digits())

    def run_compiled(self, compiled: CompiledRead, params: list) -> None:
        """A compiled read's round trip (its fit checked: `CompiledRead.fits` or `current`)
        for its decoded parameters, its Sync's answer included."""
        self.compiled_runs += 1
        self.state = _EXTENDED_STATE
        self._extended(compiled.steps, params)
        self.on_sync(_SYNC)

    def _bound_steps(self, bind: Bind, describe: bool, execute: Execute) -> None:
        """`run_bound`'s Bind, Describe and Execute (their errors: `_extended`)."""
        self.on_bind(bind)
        portal = self.portals[bind.portal]
        statement = portal.statement
        if describe:
            self.send_raw(statement.description(portal.formats(statement.columns)))
        if statement.copy is not None or portal.result is not None:
            self.on_execute(execute)
        else:
            portal.result, changed = self._run_portal(portal)
            if changed:
                self._send_settings(changed)
            result = portal.result
            self._send_result(result, portal.formats(result.columns), execute.max_rows,
                              portal)

    def _extended_error(self, response: ErrorResponse) -> None:
        """Report an extended-query error at once (the client may be waiting on a Flush
        rather than a Sync) and skip until Sync. The error fails an open block, whichever
        layer raised it."""
        if self.session is not None:
            self.session.note_error()
        self.send(response)
        self.state = ConnectionState.FAILED
        self.flush()

    def _in_failed(self, message: Message) -> None:
        if isinstance(message, Sync):
            self.on_sync(message)
        elif isinstance(message, Terminate):
            self.on_terminate(message)
        # everything else is discarded until Sync

    def _in_copy_in(self, message: Message) -> None:
        copy = self.copy
        assert copy is not None
        if isinstance(message, CopyData):
            copy.data.append(message.data)
        elif isinstance(message, CopyDone):
            self.state = copy.resume
        elif isinstance(message, CopyFail):
            copy.failure = QueryCanceled(f"COPY from stdin failed: {message.message}")
            self.state = copy.resume
        elif isinstance(message, (Flush, Sync)):
            pass  # ignored during COPY IN (protocol docs, 55.2.6)
        elif isinstance(message, Terminate):
            raise Closed
        else:
            copy.failure = SqlVecError(
                f"unexpected message type 0x{message.TYPE[0]:02X} during COPY from stdin",
                sqlstate="08P01")
            self.state = copy.resume

    # Simple query ------------------------------------------------------------------------------

    def on_query(self, message: Query) -> None:
        """A simple Query: the session splits it and runs its statements in order, each
        result sent as it finishes; the first error ends the query (COPY comes back here,
        to `_copy`, to move its data)."""
        session = self.session
        assert session is not None
        if self._gathered is not None:
            # Rows the Executes before it gathered are theirs: applied first, and an error in
            # them skips the Query, as an error skips everything up to the Sync.
            self._extended(Connection._apply_gathered)
            if self.state is ConnectionState.FAILED:
                return
        session.gathering = False  # a Query's statements are never gathered (`_gatherable`)
        self.state = ConnectionState.READY
        self.statements.pop("", None)
        self.portals.pop("", None)
        try:
            for result in session.execute(message.sql, copy=self._copy_simple):
                self._send_result(result, None, 0)
                self._send_settings(session.drain_changed_settings())
        except GONE:
            raise
        except Exception as exc:
            self._report(exc)
        self._end_implicit(session)  # (a Query in the middle of an extended batch ends its block)
        self._end_of_command()
        self.ready_for_query()
        self.flush()

    def _copy_simple(self, command: CopyCommand) -> str:
        return self._copy(command, simple=True)

    def _deallocate(self, name: str | None) -> bool:
        """DEALLOCATE name (None: ALL) also applies to protocol-level prepared statements (one
        namespace with SQL-level PREPARE, as in PostgreSQL); True if `name` was one."""
        if name is None:
            self.statements.clear()
            return False
        return self.statements.pop(name, None) is not None

    def _discard_all(self) -> None:
        """DISCARD ALL drops the protocol-level statements and portals too."""
        self.statements.clear()
        self.portals.clear()

    def _send_result(self, result: Result, formats: list[int] | None, limit: int,
                     portal: Portal | None = None) -> bool:
        """Send a result (from `portal.offset` when resuming): RowDescription for the simple
        protocol, DataRows, then CommandComplete, or PortalSuspended when `limit` rows went
        out and more remain. Returns True when suspended."""
        if result.notices:
            for notice in result.notices:
                self.send(notice_response(notice))
            result.notices = []
        if result.tag == "EMPTY":
            self.send(EmptyQueryResponse())
            return False
        columns = result.columns
        if columns is None:
            self.send_raw(command_complete(result.tag))
            return False
        if formats is None:
            formats = [pgtypes.TEXT] * len(columns)
            described = self._description
            if described is None or described[0] is not columns:
                described = self._description = (
                    columns, row_description(columns, formats).encode())
            self.send_raw(described[1])
        table = result.table if result.table is not None else pa.table(
            {c.name: pa.array([], c.type.to_arrow()) for c in columns})
        start = portal.offset if portal is not None else 0
        stop = table.num_rows if limit <= 0 else min(table.num_rows, start + limit)
        types, reg = self._column_types(columns)
        if reg:
            table, types = self._reg_names(table, types, formats)
        digits = self._float_digits()
        position = start
        if start == 0 and 0 < stop == table.num_rows <= pgtypes.SHORT_RESULT:
            known = self._rows
            if known is not None and known[0] is table and known[1] is types \
                    and known[2] == formats and known[3] == digits:
                self.send_raw(known[4])
                position = stop
            elif result.table is table:  # (not a fresh table of reg* names)
                data = encode_rows(table, types, formats, digits, 0, stop)
                if len(data) <= CACHED_ROWS_BYTES:
                    self._rows = (table, types, list(formats), digits, data)
                self.send_raw(data)
                position = stop
        while position < stop:
            end = min(stop, position + ROWS_PER_CHUNK)
            data = encode_rows(table, types, formats, digits, position, end)
            self.send_raw(data)
            if end < stop:
                self.flush()
            position = end
        sent = stop - start
        if portal is not None:
            portal.offset = stop
            if stop < table.num_rows:
                self.send(PortalSuspended())
                return True
        tag = result.tag
        if portal is not None and tag.startswith("SELECT ") and (limit > 0 or start > 0):
            tag = f"SELECT {sent}"
        self.send_raw(command_complete(tag))
        return False

    def _column_types(self, columns: list[ResultColumn]) -> tuple[list[SqlType], bool]:
        """The types of a result's columns and whether any is a reg* type, kept for the last
        column list seen (a prepared statement's result comes with the same list each time)."""
        cached = self._types
        if cached is not None and cached[0] is columns:
            return cached[1], cached[2]
        types = [c.type for c in columns]
        reg = any(t.name in REG_TYPES for t in types)
        self._types = (columns, types, reg)
        return types, reg

    def _reg_names(self, table: pa.Table, types: list[SqlType],
                   formats: list[int]) -> tuple[pa.Table, list[SqlType]]:
        """reg* columns sent as text carry names (`items`, `integer`), as PostgreSQL's output
        functions print them; in binary they stay OIDs."""
        out = list(types)
        for i, (t, fmt) in enumerate(zip(types, formats)):
            if t.name in REG_TYPES and fmt == pgtypes.TEXT and self.session is not None:
                names = self.session.reg_text(t.name, table.column(i).to_pylist())
                table = table.set_column(i, table.field(i).name, pa.array(names, pa.string()))
                out[i] = _TEXT
        return table, out

    def _float_digits(self) -> int:
        text = self.session.settings.get("extra_float_digits", "1")  # type: ignore[union-attr]
        if text == self._digits[0]:
            return self._digits[1]
        try:
            digits = int(text)
        except ValueError:
            digits = 1
        self._digits = (text, digits)
        return digits

    def ready_for_query(self) -> None:
        """Queue ReadyForQuery with the transaction status (a relayed connection first tells
        its worker process what it needs to answer reads: `wire.workers`)."""
        self.send_raw(_READY[self._status()])

    def _send_settings(self, changed: dict[str, str]) -> None:
        for name, value in changed.items():
            self.send(ParameterStatus(name, value))

    def _status(self) -> str:
        return self.session.transaction_status if self.session is not None else "I"

    def _end_of_command(self) -> None:
        """Portals live until their transaction ends; outside a block that is now."""
        if self._status() == "I":
            self.portals.clear()

    # Extended query ---------------------------------------------------------------------------

    def on_parse(self, message: Parse) -> None:
        """Prepare a statement under its name; an existing name other than the unnamed one is 42P05,
        as in PostgreSQL."""
        if message.name and message.name in self.statements:
            raise SqlVecError(f'prepared statement "{message.name}" already exists',
                              sqlstate="42P05")
        # The unnamed statement goes first, as in PostgreSQL: a Parse that fails leaves none.
        known = self.statements.pop("", None) if not message.name else None
        session = self.session
        assert session is not None
        prepared = session.parse(message.sql, list(message.param_oids))
        session.refuse_in_failed_block(prepared)  # 25P02, as PostgreSQL's Parse answers
        if len(prepared.param_types) > MAX_PARAMETERS:
            raise ProgramLimitExceeded(
                f"number of parameters must be between 0 and {MAX_PARAMETERS}",
                detail=f"The statement has {len(prepared.param_types)} parameters; Bind "
                       "and ParameterDescription count them in 16 bits.")
        if known is None or known.prepared is not prepared or known.sql != message.sql \
                or known.param_oids != message.param_oids:
            known = Statement(message.sql, message.param_oids, prepared)
        # (the unnamed statement parsed again as it was planned stays the same statement: a
        # driver sending every run's Parse keeps its compiled round trip, `CompiledRead`)
        self.statements[message.name] = known
        self.send_raw(_PARSE_COMPLETE)

    def on_bind(self, message: Bind) -> None:
        """Make a portal from a prepared statement and parameters decoded in their formats; the
        unnamed portal is replaced, a named one must be new."""
        statement = self.statements.get(message.statement)
        if statement is None:
            raise SqlVecError(f'prepared statement "{message.statement}" does not exist',
                              sqlstate="26000")
        if message.portal and message.portal in self.portals:
            raise SqlVecError(f'portal "{message.portal}" already exists', sqlstate="42P03")
        types = statement.prepared.param_types
        if len(message.params) != len(types):
            raise SqlVecError(
                f"bind message supplies {len(message.params)} parameters, but prepared "
                f'statement "{message.statement}" requires {len(types)}', sqlstate="08P01")
        codes = message.param_formats
        if len(codes) not in (0, 1, len(types)):
            raise SqlVecError(f"bind message has {len(codes)} parameter formats but "
                              f"{len(types)} parameters", sqlstate="08P01")
        self.session.refuse_in_failed_block(statement.prepared)  # type: ignore[union-attr]
        params = []
        for i, (data, t) in enumerate(zip(message.params, types)):
            fmt = pgtypes.param_format(codes, i)
            try:
                params.append(pgtypes.decode_param(data, t, fmt))
            except SqlVecError as exc:
                if exc.sqlstate == "22P03":
                    exc.message = f"incorrect binary data format in bind parameter {i + 1}"
                exc.where = exc.where or _parameter_context(message.portal, i, fmt, exc)
                raise
        if len(message.result_formats) > 1:  # none or one always fits
            _result_formats(message.result_formats, len(statement.columns or []))  # validates
        self.portals[message.portal] = Portal(statement, params, message.result_formats)
        self._last_bind = message
        self.send_raw(_BIND_COMPLETE)

    def on_describe(self, message: Describe) -> None:
        """Answer with a statement's parameter types and row shape, or a portal's row shape in its
        bound formats."""
        if message.kind == "S":
            statement = self.statements.get(message.name)
            if statement is None:
                raise SqlVecError(f'prepared statement "{message.name}" does not exist',
                                  sqlstate="26000")
            self.send(ParameterDescription(tuple(t.oid for t in statement.param_types)))
            self.send_raw(statement.description([pgtypes.TEXT] * len(statement.columns or [])))
            return
        portal = self.portals.get(message.name)
        if portal is not None:
            statement = portal.statement
            self.send_raw(statement.description(portal.formats(statement.columns)))
        else:  # a cursor opened with DECLARE is a portal too (psycopg's named cursors)
            columns = self._cursor_columns(message.name)
            self.send(row_description(columns, [pgtypes.TEXT] * len(columns)))

    def _cursor_columns(self, name: str) -> list[ResultColumn]:
        columns = self.session.cursor_columns(name)  # type: ignore[union-attr]
        if columns is None:
            raise SqlVecError(f'portal "{name}" does not exist', sqlstate="34000")
        return columns

    def on_execute(self, message: Execute) -> None:
        """Run a portal, or resume it: at most `max_rows` rows, then PortalSuspended, so clients can
        fetch a large result in pieces."""
        portal = self.portals.get(message.portal)
        if portal is None:
            raise SqlVecError(f'portal "{message.portal}" does not exist', sqlstate="34000")
        statement = portal.statement
        session = self.session
        assert session is not None
        if not session.explicit and (statement.copy is not None or portal.result is None) \
                and self._more_to_execute(unknown=statement.copy is None):
            # Statements executed before the next Sync run in one implicit block.
            session.begin_implicit(first_alone=True)
        elif session.explicit and not session.gathering and portal.result is None \
                and statement.copy is None and self._more_to_execute(unknown=True):
            session.gather_in_block()  # an explicit block's batch: its rows may be gathered
        if statement.copy is not None:
            self.send(CommandComplete(self._copy(statement.copy, simple=False)))
            session.first_alone = False  # (set by the statements `Session.run` runs)
            return
        gathered = False
        if portal.result is None:
            answer_at = len(self._out)
            portal.result, changed = self._run_portal(portal)
            gathered = self._note_gathered(session, answer_at)
            self._send_settings(changed)
        self._send_result(portal.result, portal.formats(portal.result.columns),
                          message.max_rows, portal)
        if gathered and not message.portal and not message.max_rows and self._ahead is None:
            self._take_runs(portal)

    def _note_gathered(self, session: Session, answer_at: int) -> bool:
        """After a statement ran: if it added a row to those the session gathered, remember
        where its answer begins (True)."""
        pending = session.pending
        if pending is None:
            self._gathered = None
            return False
        gathered = self._gathered
        if gathered is None or gathered[0] is not pending:
            gathered = self._gathered = (pending, [])
        if len(gathered[1]) < pending.count:
            gathered[1].append(answer_at)
            return True
        return False

    def _take_runs(self, portal: Portal) -> None:
        """After the Execute of an INSERT whose row was gathered: the runs of the same
        statement that follow in the receive buffer (its Bind with other values into the
        unnamed portal, the same Describe if any, Execute), taken as they are recognised
        (`RunsOf`), their rows handed to the session as values (`Session.take_rows`) and each
        answered as running it answers (BindComplete, NoData, `INSERT 0 1`). Stops before
        anything else, or a value that does not decode or convert: that is handled as usual."""
        session = self.session
        statement = portal.statement
        prepared = statement.prepared
        assert session is not None
        bind = self._last_bind
        if self.stopping or bind is None or bind.portal or \
                self.statements.get(bind.statement) is not statement or \
                not session.takes_rows(prepared):
            return
        runs = self._runs
        if runs is None or runs.bind is not bind:
            runs = self._runs = RunsOf(bind, statement, portal.formats(statement.columns))
        while self._take_buffered_runs(runs, prepared):
            self._waiting(self.stream.receive_more)  # (the next message would wait too)
            if not session.takes_rows(prepared):
                return

    def _take_buffered_runs(self, runs: RunsOf, prepared: PreparedStatement) -> bool:
        """`_take_runs` over the bytes received; True when they end with a run cut short or
        with nothing (more may follow), False when something else follows."""
        session = self.session
        assert session is not None
        started = time.perf_counter()
        stream, out, limit = self.stream, self._out, self.server.max_message_size
        answers = self._gathered[1]  # type: ignore[index]
        buf, start, end = stream.window()
        blocks = runs.blocks
        pos, rows = start, []
        while pos < end:
            block = blocks.take(buf, pos, end) if blocks is not None else None
            if block is not None:
                session.take_rows(prepared, rows, time.perf_counter() - started)
                rows, started = [], time.perf_counter()
                pos += self._take_block(block, blocks, prepared, started)
                started = time.perf_counter()
                continue
            found = runs.match(buf, pos, end, limit)
            if found is None:
                break
            values, size, answer = found
            if blocks is not None and blocks.learn(buf, pos, size, end, runs.values_at, answer):
                continue  # a block is tried from this run on
            rows.append(values)
            answers.append(len(out) + len(answer) - _INSERTED_SIZE)  # (where Execute's begins)
            out += answer
            pos += size
        stream.skip(pos - start)
        session.take_rows(prepared, rows, time.perf_counter() - started)
        return runs.cut_short(buf, pos, end, limit)

    def _take_block(self, block: tuple[int, list, EqualRuns], blocks: RunBlocks,
                    prepared: PreparedStatement, started: float) -> int:
        """Hand a block of runs to the session column-wise and queue their answers: the bytes
        taken (none when a value sends the runs one by one: the block's layout is dropped)."""
        count, params, layout = block
        session = self.session
        assert session is not None
        if not session.take_columns(prepared, params, time.perf_counter() - started):
            blocks.failed()
            return 0
        answer, out = layout.answer, self._out
        first = len(out) + len(answer) - _INSERTED_SIZE  # where the first Execute's answer begins
        answers = self._gathered[1]  # type: ignore[index]
        answers.extend(range(first, first + count * len(answer), len(answer)))
        out += answer * count
        return count * layout.size

    def _apply_gathered(self) -> None:
        """Apply the gathered rows before their answers leave; an error is the failing row's
        Execute's (`_withdraw`), raised for the handler running to report."""
        session = self.session
        try:
            if session is not None:
                session.apply_pending()
        except SqlVecError as exc:
            self._withdraw(exc)
            raise
        finally:
            self._gathered = None

    def _gathered_first(self, exc: SqlVecError) -> SqlVecError:
        """An error of the protocol's (a Bind's value that does not decode, say) after rows
        were gathered: those rows ran first, one by one, so an error in them is the one."""
        if self._gathered is None or getattr(exc, "gathered", None) is not None:
            return exc
        try:
            self._apply_gathered()
        except SqlVecError as first:
            return first
        return exc

    def _withdraw(self, exc: BaseException) -> None:
        """An error in gathered rows: the answers queued from the failing row's Execute on
        are taken back, so the error stands where running the rows one by one puts it."""
        gathered = getattr(exc, "gathered", None)
        if gathered is None or self._gathered is None or self._gathered[0] is not gathered:
            return
        answers = self._gathered[1]
        row = exc.gathered_row  # type: ignore[attr-defined]
        if row < len(answers):
            del self._out[answers[row]:]
        self._gathered = None

    def _more_to_execute(self, unknown: bool) -> bool:
        """Whether another Execute follows the one being handled before the next Sync: in the
        round trip `dispatch_all` runs, or else in the received bytes not read yet. `unknown`
        is the answer when they end before a Sync (the client sends the rest later)."""
        if self._ahead is not None:
            messages, i = self._ahead
            for message in messages[i:]:
                kind = type(message)
                if kind is Sync:
                    return False
                if kind is Execute or kind is Query:
                    return True
            return unknown
        buf, pos, end = self.stream.window()
        while end - pos >= 5:
            code = buf[pos]
            if code == 0x53:  # Sync
                return False
            if code == 0x45 or code == 0x51:  # Execute, Query
                return True
            (length,) = _LENGTH.unpack_from(buf, pos + 1)
            if length < 4:
                return unknown  # malformed: refused in its turn
            pos += 1 + length
        return unknown

    def _run_portal(self, portal: Portal) -> tuple[Result, dict[str, str]]:
        session = self.session
        assert session is not None
        statement = portal.statement
        # The plan of Parse unless the catalog (or search_path) changed since: then the
        # statement is planned again, as PostgreSQL re-plans after DDL.
        prepared = statement.prepared
        if not session.plan_is_current(prepared):
            prepared = session.prepare(statement.sql, list(statement.param_oids))
            statement.replan(prepared)
        result = session.run(prepared, portal.params)
        # (After an error, the settings changed are sent at Sync: a rolled-back block's.)
        return result, session.drain_changed_settings()

    def on_close(self, message: Close) -> None:
        """Forget a statement or portal; a missing one is not an error."""
        if message.kind == "S":
            self.statements.pop(message.name, None)
        else:
            self.portals.pop(message.name, None)
        self.send_raw(_CLOSE_COMPLETE)

    def on_flush(self, message: Flush) -> None:
        """Send what is queued without ending the batch."""
        self.flush()

    def on_sync(self, message: Sync) -> None:
        """End the batch: commit the implicit transaction, leave error skipping, report
        ReadyForQuery with the transaction status."""
        session = self.session
        if self._gathered is not None and self.state is not ConnectionState.FAILED \
                and session is not None and not session.implicit:
            # An explicit block's gathered rows enter it now; an error in them is the failing
            # row's Execute's, and fails the block (an implicit block's commit applies them).
            self._extended(Connection._apply_gathered)
        self.state = ConnectionState.READY
        if self.session is not None:
            self._end_implicit(self.session)
        self._end_of_command()
        self.ready_for_query()
        self.flush()

    def _end_implicit(self, session: Session) -> None:
        """Commit the batch's implicit block, if one is open, before ReadyForQuery (a failed
        commit, a deferred check say, is the batch's error); then report the settings its end
        put back (a rolled-back block's, SET LOCAL's). The tables its Parses held go too."""
        if session.implicit:
            try:
                self._answers_before_commit(session)
                session.end_implicit()
            except GONE:
                raise
            except Exception as exc:
                self._report(exc)
        session.end_batch()
        if session.changed:
            self._send_settings(session.drain_changed_settings())

    def _answers_before_commit(self, session: Session) -> None:
        """At Sync, rows gathered: applied, and the answers queued sent before the block
        commits, so the client reads them while the commit (its log write and sync) runs, as
        PostgreSQL's come before its commit at Sync. An error in the rows is the failing
        row's; the block is rolled back."""
        if self._gathered is None:
            return
        try:
            self.flush()
        except GONE:
            raise
        except Exception:
            session.note_error()
            raise

    def _report(self, exc: Exception) -> None:
        """Send a statement's error; a FATAL one ends the connection instead."""
        if isinstance(exc, SqlVecError) and exc.severity == "FATAL":
            raise exc
        self._withdraw(exc)
        self.send(error_response(exc))

    def on_terminate(self, message: Terminate) -> None:
        """Close at the client's request, without an answer."""
        self.state = ConnectionState.CLOSED
        raise Closed

    def on_function_call(self, message: FunctionCall) -> None:
        """The legacy fastpath function call, refused with 0A000 so the connection stays usable."""
        self.send(error_response(FeatureNotSupported("function call messages are not supported")))
        self.ready_for_query()
        self.flush()

    # COPY --------------------------------------------------------------------------------------

    def _copy(self, command: CopyCommand, simple: bool) -> str:
        if self._status() == "E":
            raise InFailedTransaction("current transaction is aborted, commands ignored until "
                                      "end of transaction block")
        if command.direction == "to":
            return self._copy_out(command)
        return self._copy_in(command, simple)

    def _copy_in(self, command: CopyCommand, simple: bool) -> str:
        session = self.session
        assert session is not None
        columns = [copy_format.Column(c.name, c.type) for c in session.copy_columns(command)]
        fmt = 1 if command.options.format == "binary" else 0
        resume = ConnectionState.READY if simple else ConnectionState.EXTENDED
        # Text and binary are decoded in pieces while they arrive (csv at the end).
        pieces = copy_format.TextPieces(command.options, columns) \
            if command.options.format == "text" else copy_format.BinaryPieces(columns) \
            if command.options.format == "binary" else None
        names = None if command.columns is None else [c.name for c in columns]
        loader = session.copy_loader(command.table_name, names) \
            if pieces is not None and command.table_name is not None else None
        if loader is not None:  # each piece made ready for the log as it is decoded
            pieces.stage = loader.stage  # type: ignore[union-attr]
        stream = copy_format.CopyStream(pieces)
        self.copy = CopyIn(command, columns, resume, stream)
        self.send(CopyInResponse(fmt, tuple([fmt] * len(columns))))
        self.flush()
        self.state = ConnectionState.COPY_IN
        started = time.perf_counter()
        progress = session.copy_progress(command)  # pg_stat_progress_copy
        try:
            try:
                while self.state is ConnectionState.COPY_IN:
                    type_byte, length = self._waiting(read_header, self.stream.read_exactly,
                                                      self.server.max_message_size)
                    if type_byte == CopyData.TYPE:  # the bulk: received where it stays
                        self._waiting(stream.receive, self.stream, length,
                                      self.server.max_message_size, progress)
                    else:
                        body = self._waiting(self.stream.read_exactly, length) if length else b""
                        self.dispatch(decode_frontend(type_byte, body))
            except BaseException:
                self.state = resume
                raise
            copy, self.copy = self.copy, None
            if copy.failure is not None:
                raise copy.failure
            received = time.perf_counter()
            count, decoded = self._copy_rows(command, columns, stream, names, loader)
            staged = pieces is not None and pieces.staged is not None
        finally:
            stream.close()
            if loader is not None:  # pieces it logged that no commit names are dropped
                loader.close()
                loader.release()
            session.end_progress()
        log.debug("COPY %s: %d rows, %d bytes received in %.3fs, decoded in %.3fs, stored in "
                  "%.3fs%s", command.label, count, stream.size, received - started,
                  decoded - received, time.perf_counter() - decoded,
                  " (logged while arriving)" if staged else "")
        return f"COPY {count}"

    def _copy_rows(self, command: CopyCommand, columns: list[copy_format.Column],
                   stream: copy_format.CopyStream, names: list[str] | None,
                   loader: object = None) -> tuple[int, float]:
        """Store the COPY's rows: as its pieces decoded them, else decoded from the whole
        stream."""
        session = self.session
        assert session is not None
        try:
            rows = stream.finish()
            if rows is None:
                rows = copy_format.decode(stream.whole(), command.options, columns)
        except copy_format.CopyDataError as exc:
            exc.label = command.label
            raise
        decoded = time.perf_counter()
        staged = stream.pieces.staged if stream.pieces is not None else None
        count = session.copy_in(command.table_name, names, rows,  # type: ignore[arg-type]
                                staged, loader)  # type: ignore[arg-type]
        return count, decoded

    def _copy_out(self, command: CopyCommand) -> str:
        session = self.session
        assert session is not None
        options = command.options
        result, changed = self._run_copy_query(command)
        self._send_settings(changed)
        columns = result.columns or []
        table = result.table if result.table is not None else pa.table({})
        fmt = 1 if options.format == "binary" else 0
        self.state = ConnectionState.COPY_OUT
        progress = session.copy_progress(command)  # pg_stat_progress_copy
        try:
            self.send(CopyOutResponse(fmt, tuple([fmt] * len(columns))))
            if options.header and options.format != "binary":
                self.send_raw(copy_format.header_line([c.name for c in columns], options))
            types = [c.type for c in columns]
            digits = self._float_digits()
            n = table.num_rows
            if options.format == "binary" and n == 0:
                self.send_raw(copy_format.copy_data(copy_format.BINARY_HEADER
                                                    + copy_format.BINARY_TRAILER))
            for start in range(0, n, ROWS_PER_CHUNK):
                chunk = table.slice(start, ROWS_PER_CHUNK)
                prefix = copy_format.BINARY_HEADER if options.format == "binary" and start == 0 \
                    else b""
                data = copy_format.encode_rows(chunk, types, options, digits, prefix)
                self.send_raw(data)
                self.flush()
                progress.bytes_processed += len(data)
                progress.tuples_processed += chunk.num_rows
            if options.format == "binary" and n:
                self.send_raw(copy_format.copy_data(copy_format.BINARY_TRAILER))
            self.send(CopyDone())
        finally:
            self.state = ConnectionState.READY
            session.end_progress()
        return f"COPY {table.num_rows}"

    def _run_copy_query(self, command: CopyCommand) -> tuple[Result, dict[str, str]]:
        session = self.session
        assert session is not None
        try:
            return session.copy_query(command), session.drain_changed_settings()
        except BaseException:
            session.drain_changed_settings()
            raise

    _READY_HANDLERS: dict[type, Callable] = {}


Connection._READY_HANDLERS = {
    Query: Connection.on_query,
    Parse: Connection.on_parse,
    Bind: Connection.on_bind,
    Describe: Connection.on_describe,
    Execute: Connection.on_execute,
    Close: Connection.on_close,
    Flush: Connection.on_flush,
    Sync: Connection.on_sync,
    Terminate: Connection.on_terminate,
    FunctionCall: Connection.on_function_call,
}


_EXTENDED = frozenset({Parse, Bind, Describe, Execute, Close, Flush})
_READY_STATE = ConnectionState.READY
_LENGTH = struct.Struct("!i")
_SYNC = Sync()
_EXTENDED_STATE = ConnectionState.EXTENDED


_TEXT = SqlType("text")


_COMMAND_COMPLETE: dict[str, bytes] = {}

# A prepared statement's round trip kept to be recognised again (`Connection._keep_shape`):
# its shape, whether it describes the portal, its Execute, its size, its compiled write.
Repeat = tuple[RepeatedRoundTrip, bool, Execute, int, "CompiledWrite | None"]


def command_complete(tag: str) -> bytes:
    """CommandComplete of `tag`, encoded: the usual tags (`SELECT 1`, `INSERT 0 1`) are
    encoded once, in a table emptied when it fills."""
    data = _COMMAND_COMPLETE.get(tag)
    if data is None:
        data = CommandComplete(tag).encode()
        if len(_COMMAND_COMPLETE) >= 4096:
            _COMMAND_COMPLETE.clear()
        _COMMAND_COMPLETE[tag] = data
    return data


def encode_rows(table: pa.Table, types: list[SqlType], formats: list[int], float_digits: int,
                 start: int, stop: int) -> bytes:
    """DataRows for rows [start, stop) of a result."""
    chunk = table if start == 0 and stop == table.num_rows else table.slice(start, stop - start)
    n = chunk.num_rows
    if n <= pgtypes.SHORT_RESULT:
        encoders, rows = _short_encoders(chunk.schema, types, formats)
        if rows is not None:
            return rows(chunk.column(0).to_pylist())
        lists = []
        for i, encode in enumerate(encoders):
            column = chunk.column(i)
            lists.append(encode(column.to_pylist()) if encode is not None else
                         pgtypes.cell_lists(column, types[i], formats[i], float_digits))
        return DataRow.encode_cell_rows(lists, n)
    cells = [pgtypes.encode_cells(chunk.column(i), t, fmt, float_digits)
             for i, (t, fmt) in enumerate(zip(types, formats))]
    return DataRow.encode_batch(cells, n)


def _short_encoders(schema: pa.Schema, types: list[SqlType],
                    formats: list[int]) -> tuple[list, Callable[[list], bytes] | None]:
    """`pgtypes.short_encoder` of each column, and for one column the encoder of its whole
    rows if it has one (`pgtypes.short_row_encoder`), looked up once per result shape: the
    last answer is kept per types list (a prepared statement sends the same one each time)
    and reused while the formats and the Arrow schema are the same."""
    known = _SHORT_SHAPES.get(id(types))
    if known is None or known[0] is not types or known[1] != formats \
            or not known[2].equals(schema):
        encoders = [pgtypes.short_encoder(t, fmt, typ)
                    for t, fmt, typ in zip(types, formats, schema.types)]
        rows = pgtypes.short_row_encoder(types[0], formats[0], schema.types[0]) \
            if len(types) == 1 == len(schema.types) else None
        known = (types, list(formats), schema, encoders, rows)
        if len(_SHORT_SHAPES) >= 512:
            _SHORT_SHAPES.clear()
        _SHORT_SHAPES[id(types)] = known
    return known[3], known[4]


# id(types) -> (types, formats, Arrow schema, encoders, row encoder); the entry holds the list
# it is keyed by, so an id is never mistaken for another list's.
_SHORT_SHAPES: dict[int, tuple] = {}


def _host_port(peer: object) -> tuple[str, str]:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), str(peer[1])
    return "[local]", ""


def _log_disconnection(session: Session, peer: object) -> None:
    """log_disconnections' line, as PostgreSQL's: how long the session lasted and whose."""
    seconds = max(time.time() - session.started.timestamp(), 0.0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    host, port = _host_port(peer)
    log.info("disconnection: session time: %d:%02d:%06.3f user=%s database=%s host=%s port=%s",
             hours, minutes, secs, session.user, session.database_name, host, port)


def _cut_name(name: str) -> str:
    """A user or database name cut to 63 bytes (at a character boundary), as PostgreSQL cuts
    overlong names in the startup packet."""
    raw = name.encode()
    if len(raw) <= NAME_MAX_BYTES:
        return name
    return raw[:NAME_MAX_BYTES].decode(errors="ignore")


def _parse_options(text: str) -> dict[str, str]:
    """The startup `options` parameter: `-c name=value` and `--name=value`, where a backslash
    escapes the next character (so values may hold spaces)."""
    words, current, escape = [], [], False
    for ch in text:
        if escape:
            current.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    settings: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            i += 1
            word = words[i]
        elif word.startswith("--"):
            word = word[2:]
        elif word.startswith("-c"):
            word = word[2:]
        else:
            raise SqlVecError(f'invalid command-line argument for server process: {word}',
                                    sqlstate="42601")
        name, sep, value = word.partition("=")
        if not sep:
            raise SqlVecError(f'invalid command-line argument for server process: {word}',
                              sqlstate="42601")
        settings[name.replace("-", "_")] = value
        i += 1
    return settings


def bound_round_trip(messages: list[Message]) -> tuple[Bind, bool, Execute] | None:
    """Bind, [Describe of its portal], Execute of it, Sync: the round trip
    `Connection.run_bound` runs in one step (its arguments), or None."""
    n = len(messages)
    if n == 4:
        bind, describe, execute, _ = messages
        if type(describe) is not Describe or describe.kind != "P" \
                or describe.name != bind.portal:  # type: ignore[attr-defined]
            return None
    elif n == 3:
        bind, execute, _ = messages
    else:
        return None
    if type(bind) is not Bind or type(execute) is not Execute \
            or execute.portal != bind.portal or type(messages[-1]) is not Sync:
        return None
    return bind, n == 4, execute
