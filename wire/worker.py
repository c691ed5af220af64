"""A worker process: relays its clients to the primary and answers their reads itself.

Started by the primary (`wire.workers.WorkerPool`) as `python -m wire.worker CONTROL_FD
POSITION_FD DATA_DIR INDEX`. It follows the data directory read-only (`FollowerDatabase`) and
receives, over its control socket, client sockets, each with the end of a socket pair whose
other end the primary serves as a full connection (`RelayedConnection`). Per client, one thread
reads the client's messages and another (`Relay._pump`) relays the primary's answers.

The client thread decides, per round trip, who answers:
- a simple Query, or a Parse/Bind/Describe/Execute/Close batch ending in Sync, is answered
  here when the connection is idle (no transaction block, nothing of the primary's still to
  come), every statement in it looks read-only (`read_only`), its prepared statements are
  ones this worker parsed and no transaction block holds the DDL lock (the primary's reads
  wait for it, so these do, there). The follower is first brought to the commit position the primary
  published (so every acknowledged commit is seen), the session's settings are the primary's
  (mirrored at each ReadyForQuery), and the answer is built by the same code as the primary's
  (`LocalConnection`, a `wire.connection.Connection`);
- everything else goes to the primary as it came. So do reads that fail here before any of
  their answer left (a temporary table, a function that writes, a log not yet readable): the
  primary runs them again and its answer, error or not, is the one the client gets. A
  cancelled read (57014) is answered here.
A statement parsed here and then needed by the primary (say, Bind inside a transaction block)
is parsed there first, the ParseComplete it earns never reaching the client.

A connection whose traffic is writes (HANDOVER_AFTER round trips in a row relayed to run a
statement that changes data, no read answered here between them, or a single pipeline of more
than MAX_BATCH messages that changes data: an executemany) is handed to the primary:
its socket itself goes there, and the primary serves it directly from then on, its reads too
(`Relay._hand_over`; never back). The move happens at a round trip's Sync, or after the first
MAX_BATCH messages of a longer pipeline (an executemany), before any of it is relayed; in a
transaction block too, whose state is the primary's session's already.

TLS connections and cancel requests are relayed byte for byte: the primary serves them whole.

When the primary ends a connection (a FATAL error, say), everything it sent reaches the client,
then the end of the stream; the client socket is closed once the client closes too (or after
`LINGER_SECONDS`), its unread input drained, so no reset overtakes the error (`linger_close`).
"""

from __future__ import annotations

import array
import collections
import fcntl
import gc
import json
import logging
import math
import os
import re
import select
import signal
import socket
import sys
import termios
import threading
import time
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from sqlvec.database import (
    DEFAULT_DATABASE,
    ConfigFileError,
    Database,
    FollowerDatabase,
    ServerConfig,
)
from sqlvec.errors import SqlVecError
from sqlvec.stack import start_engine_thread
from wire.codec import (
    LINGER_SECONDS,
    MAX_MESSAGE_SIZE,
    SESSION_RECV_SIZE,
    STARTUP_RECV_SIZE,
    SocketStream,
    frame,
    linger_close,
    send_parts,
)
from wire.compiled import CompiledRead
from wire.connection import GONE, SEND_BUFFER, Connection, ConnectionState, bound_round_trip
from wire.messages import (
    Bind,
    Close,
    Describe,
    ErrorResponse,
    Execute,
    Message,
    Parse,
    Query,
    RepeatedMessage,
    RepeatedRoundTrip,
    StartupMessage,
    Sync,
    decode_frontend,
    decode_startup,
)
from wire.server import Limits
from wire.workers import (
    ACTIVITY_MESSAGE,
    CANCEL,
    CONNECTION,
    FLUSH,
    FLUSHED,
    FORK,
    HANDOVER,
    LOG_LEVEL_VARIABLE,
    LOG_RECORD,
    MANIFEST,
    READY,
    SETTINGS_MESSAGE,
    STATISTICS,
    CommitPosition,
    limit_fan_out,
    pack_durations,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlvec.session import Session

log = logging.getLogger("sqlvec.wire")

_EXTENDED = frozenset(b"PBDEC")  # buffered until Sync: a batch may be answered here
MAX_BATCH = 64  # messages buffered before Sync; a longer pipeline goes to the primary
WORKER_SETTING = "sqlvec.worker"  # SHOW sqlvec.worker: which worker answered (a read here)
LOG_FIELD_LIMIT = 16_384  # characters of a log record's text sent to the primary
REPORT_AFTER = 0.05  # seconds: a read running here longer is shown active in pg_stat_activity
STARTUP_POLL = 0.25  # seconds between looks at the primary while a client's startup is awaited
STREAM_CHUNK = 8192  # bytes: a message before authentication goes on in pieces of this size
# Seconds statistics gather before they go to the primary. Whatever reads them (a view, the
# metrics) asks for them first (`FLUSH`), so this bounds only how much is held: each batch
# costs its sender's wake-up, JSON and message, and the primary's merge, whatever it holds.
STATISTICS_DELAY = 0.5
STATISTICS_MESSAGE_LIMIT = 65_536  # bytes of statistics in one control message, about
STATISTICS_TEXT_LIMIT = 16_384  # characters of a statement's text sent with its statistics
# Seconds between looks for a new manifest to load in the background, when the primary did
# not announce one (it announces each: `WorkerPool._announce`).
FOLLOW_INTERVAL = 1.0
# Round trips that change data (`writes`), relayed one after the other with no read answered
# here between them, after which the client's socket goes to the primary (`Relay._hand_over`);
# 0: never.
HANDOVER_AFTER = 3
HANDOVER_LIMIT = 1 << 20  # bytes of client input in hand at most, to move with the socket

# Statements answered here: one statement, starting as a query does, naming nothing that
# writes, locks, reads per-process state (sessions, locks, prepared statements, backend pid,
# the last values sequences handed out: `pg_sequences`, `SELECT last_value FROM seq`) or
# changes the session. A false "no" only costs a trip to the primary; the check is on
# words, so a string literal holding one of them is sent there too.
_FIRST_WORD = re.compile(r"\s*(select|with|table|values|show)\b", re.IGNORECASE)
_DEALLOCATE = re.compile(rb"(?i)\b(deallocate|discard)\b")
_UNSAFE = re.compile(
    r"\b(insert|update|delete|merge|into|copy|nextval|currval|lastval|setval|set_config|"
    r"pg_sequences|last_value|"
    r"\w*advisory\w*|pg_cancel_backend|pg_terminate_backend|pg_backend_pid|pg_blocking_pids|"
    r"pg_stat\w*|pg_locks|pg_prepared_statements|pg_cursors|txid\w*|pg_current_xact\w*|setseed|"
    r"pg_notify|lo_\w+|pg_reload_conf|pg_rotate_logfile|sqlvec_indexes|for\s+(update|share|"
    r"no\s+key|key))\b", re.IGNORECASE)


_WRITES = re.compile(r"\s*(insert|update|delete|merge|copy)\b", re.IGNORECASE)
_WRITES_IN_WITH = re.compile(r"\b(insert|update|delete|merge)\b", re.IGNORECASE)


def writes(sql: str) -> bool:
    """Whether `sql` changes rows: INSERT, UPDATE, DELETE, MERGE, COPY, or a WITH holding one.
    What counts towards moving a connection to the primary (`HANDOVER_AFTER`): settings,
    transaction control and DDL, which clients send at connect or once, do not."""
    if _WRITES.match(sql):
        return True
    return bool(re.match(r"\s*with\b", sql, re.IGNORECASE)) and \
        _WRITES_IN_WITH.search(sql) is not None


def read_only(sql: str) -> bool:
    """Whether `sql` is one statement this worker may answer (see `_UNSAFE`). The answer
    for a short text is kept: a client runs the same few statements again and again."""
    known = _READ_ONLY.get(sql)
    if known is not None:
        return known
    text = sql.strip().rstrip(";")
    if ";" in text or "--" in text or "/*" in text or not _FIRST_WORD.match(text):
        answer = False
    else:
        answer = _UNSAFE.search(text) is None
    if len(sql) <= READ_ONLY_TEXT_LIMIT:
        if len(_READ_ONLY) >= READ_ONLY_ENTRIES:
            _READ_ONLY.clear()
        _READ_ONLY[sql] = answer
    return answer


READ_ONLY_TEXT_LIMIT = 1024  # characters of a statement text whose answer is kept
READ_ONLY_ENTRIES = 1024  # answers kept, the table emptied when full
_READ_ONLY: dict[str, bool] = {}


class PrimaryLog(logging.Handler):
    """This worker's log records go to the primary over the control socket, and the primary
    writes them with its own handlers (text or JSON, stderr or file) as its own. Records of a
    round trip are held until it is settled: those of a read handed to the primary are
    dropped, as the primary logs that statement itself."""

    def __init__(self, control: socket.socket) -> None:
        super().__init__()
        self.control = control
        self._held = threading.local()

    def hold(self) -> None:
        """Hold this thread's records from now on."""
        self._held.records = []

    def settle(self, keep: bool) -> list[logging.LogRecord]:
        """Stop holding: send what was held (keep), or drop it. Returns what was held."""
        records, self._held.records = getattr(self._held, "records", None) or [], None
        for record in records if keep else ():
            self._send(record)
        return records

    def emit(self, record: logging.LogRecord) -> None:
        """Send a record to the primary, or hold it while this thread's round trip runs."""
        records = getattr(self._held, "records", None)
        if records is not None:
            records.append(record)
        else:
            self._send(record)

    def _send(self, record: logging.LogRecord) -> None:
        data = {k: (v[:LOG_FIELD_LIMIT] if isinstance(v, str) else v)
                for k, v in record.__dict__.items()
                if isinstance(v, (str, int, float, bool, type(None))) and k != "msg"}
        data["msg"] = record.getMessage()[:LOG_FIELD_LIMIT]
        data["args"] = None
        if record.exc_info and not record.exc_text:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        try:
            self.control.send(LOG_RECORD + json.dumps(data).encode())
        except (OSError, TypeError, ValueError):
            pass


# A statement answered here, for pg_stat_activity: the client's backend pid, its text, when
# it started and ended (seconds since the epoch).
Activity = tuple[int, str, float, float]


class PrimaryStatistics:
    """Statistics of the reads answered here, sent to the primary over the control socket and
    counted there with its own: pg_stat_statements (the worker's `statement_stats`), the
    statement metrics (its `on_statement`) and the tables' scan counters, so the primary's
    views and metrics cover every process. What a round trip records is held until it is
    settled, as log records are: a read handed to the primary is counted there. It is
    settled before its answer is sent, so that when the primary asks (`FLUSH`, before a
    statistics view is read) every answered read is in what is sent. Otherwise sent in
    batches: a sender thread wakes when there is something, waits STATISTICS_DELAY seconds
    for more, and sends it all in as few messages as fit."""

    def __init__(self, control: socket.socket, database: FollowerDatabase) -> None:
        self.control = control
        self.database = database
        self._held = threading.local()
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # one flush at a time: what it took is sent first
        self._statements: dict[tuple[int, int, int], list] = {}  # key -> [query, calls]
        self._observed: list[tuple[float, str | None]] = []
        # pg_stat_activity: per backend pid, the last statement answered here (its text,
        # start and end), for the primary's session of that client.
        self._activity: dict[int, tuple[str, float, float]] = {}
        self._wake = threading.Event()
        database.statement_stats = self  # type: ignore[assignment]
        database.on_statement = self.observe

    def start(self) -> None:
        """Start the sender thread."""
        threading.Thread(target=self._run, daemon=True, name="sqlvec-worker-stats").start()

    def hold(self) -> None:
        """Hold what this thread records from now on."""
        self._held.items = []

    def settle(self, keep: bool, ran: Activity | None = None) -> list[tuple]:
        """Stop holding: queue what was held for the primary (keep), or drop it, and the
        statement the round trip `ran` (`Activity`). Returns what was held."""
        items, self._held.items = getattr(self._held, "items", None) or [], None
        if keep and (items or ran):
            with self._lock:
                for item in items:
                    self._queue(item)
                if ran:
                    self._activity[ran[0]] = ran[1:]
        self._wake_sender()  # (the tables' scan counters moved either way)
        return items

    def again(self, items: list[tuple], seconds: float, ran: Activity) -> None:
        """Record once more what a round trip recorded (`settle`'s list), as taking `seconds`:
        a kept answer sent again (`KeptAnswer`) counts as its statement run again."""
        with self._lock:
            self._activity[ran[0]] = ran[1:]
            for item in items:
                if len(item) == 2:
                    self._queue((seconds, item[1]))
                else:
                    self._queue((item[0], item[1], seconds * 1000.0, item[3]))
        self._wake_sender()

    def record(self, userid: int, dbid: int, queryid: int, query: str, ms: float,
               rows: int) -> None:
        """pg_stat_statements: one completed statement (StatementStats' interface)."""
        self._add(((userid, dbid, queryid), query, ms, rows))

    def observe(self, seconds: float, sqlstate: str | None) -> None:
        """The metrics: one finished statement (Database.on_statement's interface)."""
        self._add((seconds, sqlstate))

    def _add(self, item: tuple) -> None:
        held = getattr(self._held, "items", None)
        if held is not None:
            held.append(item)
            return
        with self._lock:
            self._queue(item)
        self._wake_sender()

    def _wake_sender(self) -> None:
        """Wake the sender thread, unless it is awake already (`Event.set` takes a lock and
        notifies). It clears the event only after a round that found nothing, and then looks
        at the queue once more, so what was queued before this look is sent either way."""
        if not self._wake.is_set():
            self._wake.set()

    def _queue(self, item: tuple) -> None:
        if len(item) == 2:
            self._observed.append(item)
            return
        key, query, ms, rows = item
        entry = self._statements.get(key)
        if entry is None:
            entry = self._statements[key] = [query[:STATISTICS_TEXT_LIMIT], []]
        entry[1].append((ms, rows))

    def _run(self) -> None:
        """Send every STATISTICS_DELAY seconds while reads are answered; sleep on `_wake` once a
        round found nothing. While it is awake, `_wake` stays set, so a read settled costs a
        look at it, not a `set` (a lock and a notify) per batch."""
        while True:
            self._wake.wait()
            time.sleep(STATISTICS_DELAY)
            try:
                sent = self.flush()
            except OSError:  # the primary is gone: this process ends with it
                return
            except Exception:
                log.exception("statistics of this worker could not be sent")
                sent = False
            if not sent:
                self._wake.clear()
                with self._lock:  # queued after that round took what was, before the clear
                    if self._statements or self._observed or self._activity:
                        self._wake.set()

    def flush_for(self, token: bytes) -> None:
        """The primary asks for everything recorded so far (a statistics view is read):
        send it, then the request's token, which tells the primary it has it all."""
        self.flush()
        self.control.send(FLUSHED + token)

    def flush(self) -> bool:
        """Send what was recorded since the last call; False if there was nothing."""
        with self._sending:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            statements, self._statements = self._statements, {}
            observed, self._observed = self._observed, []
            activity, self._activity = self._activity, {}
        tables = self.database.take_table_statistics()
        if not (statements or observed or tables or activity):
            return False
        batch: dict = {"tables": tables, "durations": pack_durations(observed)}
        size = len(json.dumps(batch))
        items = [*(("statements", [*key, query, summary(calls)])
                   for key, (query, calls) in statements.items()),
                 *(("activity", [pid, query[:STATISTICS_TEXT_LIMIT], started, ended])
                   for pid, (query, started, ended) in activity.items())]
        for field, item in items:
            item_size = len(json.dumps(item))
            if size + item_size > STATISTICS_MESSAGE_LIMIT and (
                    batch.get("statements") or batch.get("activity")):
                self._send(batch)
                batch, size = {}, 20
            batch.setdefault(field, []).append(item)
            size += item_size
        if any(batch.get(field) for field in ("statements", "activity", "durations", "tables")):
            self._send(batch)
        return True

    def _send(self, batch: dict) -> None:
        self.control.send(STATISTICS + json.dumps(batch).encode())


def summary(calls: list[tuple[float, int]]) -> list:
    """One statement's calls (milliseconds, rows) as pg_stat_statements keeps them: [calls,
    total ms, min ms, max ms, mean ms, sum of squared deviations, rows]. The primary merges
    the summary whole (`StatementStats.merge`), not call by call, and the message stays short
    however many calls it covers. Worked out over whole lists (C loops), not call by call:
    a busy worker's statement has thousands of calls per batch."""
    if not calls:
        return [0, 0.0, math.inf, 0.0, 0.0, 0.0, 0]
    times = [ms for ms, _ in calls]
    n, total = len(times), sum(times)
    mean = total / n
    deviations = np.array(times) - mean
    return [n, total, min(times), max(times), mean, float(deviations.dot(deviations)),
            sum([count for _, count in calls])]


class _LocalServer:
    """What a `LocalConnection` asks of its server: limits only (the primary admits)."""

    limits = Limits()
    max_message_size = MAX_MESSAGE_SIZE


class LocalConnection(Connection):
    """The protocol code of the primary, answering the reads of one relayed client here. Its
    output is held until the round trip is done (`capture`), so that a read failing here can
    still be handed to the primary; beyond SEND_BUFFER bytes it is sent and the answer is
    final."""

    def __init__(self, relay: Relay, session: Session) -> None:
        super().__init__(_LocalServer(), relay.client, relay.peer)  # type: ignore[arg-type]
        self.relay = relay
        self.stream = relay.stream
        self.session = session
        self.state = ConnectionState.READY
        self.capturing = False
        self.error: str | None = None  # SQLSTATE of an ErrorResponse in the round trip
        self.spilled = False  # part of the round trip's answer went out
        self.recorded: list[tuple] = []  # the statistics it recorded (`PrimaryStatistics`)
        self.keep = False  # keep the round trip's answer (`answer`) when it is sent whole
        self.answer: bytes | None = None  # ... the bytes sent, kept

    def begin(self) -> None:
        """Start a round trip: output is held, no error seen yet, nothing to keep."""
        self.capturing, self.error, self.spilled = True, None, False
        self.keep, self.answer, self.recorded = False, None, []
        self._out.clear()

    def send(self, *messages: Message) -> None:
        for message in messages:
            # (A NoticeResponse is an ErrorResponse's fields too, but ends nothing.)
            if type(message) is ErrorResponse:
                self.error = dict(message.fields).get("C", "XX000")
        super().send(*messages)

    def send_raw(self, data: bytes) -> None:
        self._out += data
        if len(self._out) > SEND_BUFFER:
            self._write()

    def flush(self) -> None:
        if not self.capturing or len(self._out) > SEND_BUFFER:
            self._write()

    def _write(self) -> None:
        if self._out:
            with self.relay.wlock:
                self.stream.write(self._out)
            self._out.clear()
            self.spilled = True

    def finish(self) -> None:
        """The round trip stands: send what is held."""
        self.capturing = False
        if self.keep and not self.spilled:
            self.answer = bytes(self._out)
        self._write()

    def compiled_read(self) -> CompiledRead | None:
        """The prepared read compiled by the last bound round trip run here, if any."""
        return self._compiled

    def discard(self) -> None:
        """The round trip goes to the primary: drop its output and portals."""
        self.capturing = False
        self._out.clear()
        self.state = ConnectionState.READY
        self.portals.clear()


class KeptAnswer:
    """The answer of a round trip that cannot change while nothing else does (`Relay._keepable`:
    a constant statement, `SELECT 1`, prepared or a simple Query), kept to answer its repeats
    with the same bytes without running it. It holds while the round trip comes again with
    nothing in between (its first message is then the very object it was: `RepeatedRoundTrip`,
    `RepeatedMessage`), the connection idle (so ReadyForQuery's status is 'I' again, and no
    failed block), a prepared statement the same one (no DEALLOCATE, Close or new Parse of its
    name), the session's settings the same mirror of the primary's (no SET, RESET or DISCARD
    since) and the configuration files not reloaded. Each repeat is counted as the run it
    stands for (pg_stat_statements, the metrics).

    A one-row statement computed in Python (`PreparedStatement.scalar`, `SELECT $1::int`)
    depends on its values besides: its answer is kept as its compiled round trip
    (`computed`, a `CompiledRead`), which makes the answer of each repeat, whatever its
    values, from its row computed in Python (`Relay._send_computed`) under the same
    conditions; a row the Python forms leave to the operator tree runs as usual. Its row is
    a function of its values and the settings alone (parameters, literals, casts and
    arithmetic: `sqlvec.execution.expressions.scalars`), so the last repeat's values, as
    received, and the answer made of them are kept too (`last`): a repeat with the same bytes
    (psycopg's `SELECT %s::int` with 1 every time) is sent that answer again, as a constant
    statement's is, under the same conditions."""

    __slots__ = ("first", "statement", "answer", "recorded", "settings", "config", "computed",
                 "last")

    def __init__(self, first: Message, statement: object, answer: bytes, recorded: list[tuple],
                 settings: dict, config: int, computed: CompiledRead | None) -> None:
        self.first = first
        self.statement = statement
        self.answer = answer
        self.recorded = recorded
        self.settings = settings
        self.config = config
        self.computed = computed
        # a computed answer's last repeat: its values as received, decoded, and its answer
        self.last: tuple[tuple[bytes | None, ...], tuple, bytes] | None = None

    @classmethod
    def of(cls, relay: Relay, first: Message, local: LocalConnection) -> KeptAnswer | None:
        """The answer `local` just sent to a round trip starting with `first`, kept; None if
        it was not sent whole or recorded no statement."""
        if local.answer is None or not local.recorded or relay.settings is None:
            return None
        statement = _statement_of(first, local)
        return cls(first, statement, local.answer, local.recorded, relay.settings,
                   relay.worker.config_generation, _computed_read(statement, local))


def _statement_of(first: Message, local: LocalConnection) -> object:
    """The prepared statement a round trip's Bind names (None: a simple Query's)."""
    return local.statements.get(first.statement) if type(first) is Bind else None


def _computed_read(statement: object, local: LocalConnection) -> CompiledRead | None:
    """The compiled round trip `local` ran last, if it is of `statement` and computes its
    row in Python (`KeptAnswer.computed`)."""
    compiled = local.compiled_read()
    if compiled is None or compiled.statement is not statement \
            or compiled.prepared.scalar is None:
        return None
    return compiled


class ReadLane:
    """A repeated round trip (`RepeatedRoundTrip`) of a prepared read whose round trip is
    compiled here (`CompiledRead`: a top-k, a one-row statement computed in Python): the
    compiled steps checked once to fit the shape's Bind, Describe and Execute, which every
    repeat matches but for its values, so each repeat only checks what may change
    (`CompiledRead.current`) and decodes its values from the buffer. Its messages (the
    shape's Bind standing for each repeat's) are what the relay's bookkeeping reads of a
    round trip: names, not values."""

    __slots__ = ("shape", "rest", "messages", "compiled")

    def __init__(self, shape: RepeatedRoundTrip, rest: list[tuple[bytes, bytes]],
                 messages: list[Message], compiled: CompiledRead) -> None:
        self.shape, self.rest, self.messages, self.compiled = shape, rest, messages, compiled

    @classmethod
    def of(cls, shape: RepeatedRoundTrip | RepeatedMessage, rest: list[tuple[bytes, bytes]],
           local: LocalConnection | None) -> ReadLane | None:
        """The lane of `shape`, if it is a round trip whose compiled read (the last one
        `local` ran) fits it; else None."""
        if type(shape) is not RepeatedRoundTrip or local is None:
            return None
        compiled = local.compiled_read()
        if compiled is None or shape.nparams != len(compiled.decoders):
            return None
        messages = [shape.bind, *shape.messages]
        bound = bound_round_trip(messages)
        if bound is None or not compiled.fits(local, *bound):
            return None
        return cls(shape, rest, messages, compiled)


class Relay:
    """One client of this worker (module docstring)."""

    def __init__(self, worker: Worker, client: socket.socket, upstream: socket.socket) -> None:
        self.worker = worker
        self.client = client
        self.upstream = upstream
        try:
            self.peer = client.getpeername()
        except OSError:
            self.peer = None
        self.stream = SocketStream(client, STARTUP_RECV_SIZE)
        # One writer of client output at a time. The pump holds it from each receive from the
        # primary until what it received went out, so a read answered here checks, under it,
        # that nothing of the primary's is on its way (`_settle`), then sends its held output
        # (`LocalConnection._write` takes it again: reentrant).
        self.wlock = threading.RLock()
        self.lock = threading.Lock()  # the counters below, shared with the pump
        self.pending = 0  # Syncs and Queries sent to the primary, not yet answered
        self.open = False  # extended-query messages sent to the primary since its last Sync
        self.status = "I"  # the transaction status the primary last reported
        self.authenticated = False  # the primary's first ReadyForQuery came
        # Per round trip sent to the primary (until its ReadyForQuery): how many ParseCompletes
        # of statements parsed on the client's behalf are still to drop. After an error the
        # primary skips to Sync, so a count left at ReadyForQuery is simply forgotten.
        self.swallow: collections.deque[int] = collections.deque([0])  # (startup)
        self._injected = 0  # parsed on the client's behalf in a batch not yet ended by Sync
        self.pid = 0
        self.user = ""
        self.database = ""
        self.settings: dict | None = None  # the primary session's, latest (`~` message)
        self._applied: dict | None = None
        self.local: LocalConnection | None = None
        self.local_ok = True
        self.local_names: dict[str, bytes] = {}  # statements parsed here: their Parse
        # The last round trip answered here, if its next one of the same shape may be
        # recognised as such (`_repeated`), with its messages after Bind as read (a simple
        # Query: the message as read).
        self._repeat: tuple[RepeatedRoundTrip | RepeatedMessage,
                            list[tuple[bytes, bytes]]] | None = None
        self._kept: KeptAnswer | None = None  # its answer, if that cannot change (`_keepable`)
        self._lane: ReadLane | None = None  # its compiled read, if it is one (`_repeated`)
        self._judged: tuple[Message | None, bool] = (None, False)  # a Query: is it constant?
        self.shared: set[str] = set()  # ... of them, those the primary holds too
        self.remote: dict[str, tuple[bytes, Parse]] = {}  # read-only, the primary's only (yet)
        self.running = False  # a statement runs here now (cancel requests reach it)
        self.query = ""  # its text, and since when it runs (seconds since the epoch)
        self.started = 0.0
        self.reported = False  # the primary was told it runs (pg_stat_activity)
        self.ulock = threading.Lock()  # one writer to the primary at a time
        self._unread = array.array("i", [0])  # bytes of the primary's not read yet (`_spoke`)
        self.pumping = False  # `_pump` reads the primary (from the end of the startup)
        # Set while no thread relays the primary's output to the client (it all went out).
        self.relayed = threading.Event()
        self.relayed.set()
        self.ended = threading.Event()  # `_end` began: the client socket is about to close
        self.streak = 0  # round trips that write relayed in a row, no read answered here since
        self.writing: set[str] = set()  # statements the primary prepared that write (`writes`)
        self.handing_over = False  # `_hand_over` asked the primary to take the client
        self.handed = False  # the client socket went to the primary
        self.handing = threading.Event()  # the pump stopped: handed over, or the primary ended
        self.closing = threading.Lock()  # a shutdown of the client socket, or its close

    # Life ------------------------------------------------------------------------------------

    def run(self) -> None:
        """The client's whole life in this worker (its thread); always ends both sockets."""
        try:
            if self._startup():
                self._serve()
        except (*GONE, OSError, ValueError):
            pass
        except Exception:  # a bug of ours: this client loses its connection, no one else
            log.exception("relay of %s failed", self.peer)
        finally:
            if self.handed:
                self._let_go()
            else:
                self._end()

    def _end(self) -> None:
        """Let the primary see the client's end, let the client read what the primary sent
        last (a FATAL error), then close the client socket without a reset."""
        self.worker.forget(self)
        self.ended.set()
        try:
            self.upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.relayed.wait(LINGER_SECONDS)
        try:
            self.upstream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.closing:
            linger_close(self.client)
        self._close_local()

    def _let_go(self) -> None:
        """The primary serves the client now: close this process's descriptors of its socket
        and of the relay pair (closed, never shut down: the socket is the primary's), and the
        local session."""
        self.worker.forget(self)
        self.ended.set()
        self.client.close()
        self.upstream.close()
        self._close_local()

    def _close_local(self) -> None:
        """End the session that answered this client's reads here, if one did."""
        local, self.local = self.local, None
        if local is not None and local.session is not None:
            try:
                local.session.close()
            except Exception:
                log.exception("closing a local session failed")

    def report_if_long(self, now: float) -> None:
        """Tell the primary about a read running here for a while, so pg_stat_activity (and
        whoever waits on it to cancel or terminate) sees it active; short reads cost nothing."""
        if not self.running:  # (nothing to report, and a COPY relayed meanwhile holds the lock)
            return
        with self.ulock:
            if self.running and not self.reported and now - self.started >= REPORT_AFTER:
                self.reported = True
                self._send_activity()

    def _send_activity(self, ran: tuple[float, float] | None = None) -> None:
        """Tell the primary the statement running here (`query`, since it started), or, once
        it `ran` (its start and end), that it is over."""
        if ran is None:
            running = _last_statement(self.local) if self.local is not None else None
            started, ended = running[0] if running else self.started, None
        else:
            started, ended = ran
        report = {"query": self.query, "started": started, "ended": ended}
        try:
            self.upstream.sendall(frame(ACTIVITY_MESSAGE, json.dumps(report).encode()))
        except OSError:
            pass

    def _primary_ended(self) -> None:
        """The primary ended the connection and what it sent went out: the client reads the
        end of the stream next. A client that does not close within LINGER_SECONDS has its
        reads here ended too, so the relay ends (`_end` drains and closes)."""
        self._shut_client(socket.SHUT_WR)
        self.relayed.set()
        if not self.ended.wait(LINGER_SECONDS):
            self._shut_client(socket.SHUT_RD)

    def _shut_client(self, how: int) -> None:
        with self.closing:
            if self.client.fileno() >= 0:  # (not closed by `_end` already)
                try:
                    self.client.shutdown(how)
                except OSError:
                    pass

    def cancel(self) -> None:
        """A cancel request for this client: interrupt the read running here, if any."""
        local = self.local
        if self.running and local is not None and local.session is not None:
            local.session.cancel()

    # Startup: relayed, recording who connects ----------------------------------------------------

    def _read_startup(self, n: int) -> bytes | bytearray | None:
        """The client's next n bytes; None if the primary ended the connection first (the
        authentication timeout, say), once what it sent on the way out reached the client."""
        self.client.settimeout(STARTUP_POLL)
        try:
            while True:
                try:
                    return self.stream.read_exactly(n)
                except TimeoutError:
                    if select.select([self.upstream], [], [], 0)[0]:
                        _pipe(self.upstream, self.client)
                        return None
        finally:
            self.client.settimeout(None)

    def _startup(self) -> bool:
        for _ in range(4):
            head = self._read_startup(4)
            if head is None:
                return False
            length = int.from_bytes(head, "big")
            if not 8 <= length <= 10_000:  # the primary reports what is wrong with it
                self._blind(bytes(head))
                return False
            body = self._read_startup(length - 4)
            if body is None:
                return False
            raw = bytes(head) + bytes(body)
            try:
                packet = decode_startup(bytes(body))
            except Exception:
                self._blind(raw)
                return False
            if isinstance(packet, StartupMessage):
                params = dict(packet.parameters)
                self.user = params.get("user", "")
                self.database = params.get("database", "") or self.user
                self.pending = 1  # the ReadyForQuery that ends authentication
                self.upstream.sendall(raw)
                self.stream.grow(SESSION_RECV_SIZE)
                self.pumping = True
                self.relayed.clear()
                start_engine_thread(self._pump, name="sqlvec-worker-pump")
                return True
            if type(packet).__name__ in ("SSLRequest", "GSSENCRequest") \
                    and not self.stream.buffered:
                self.upstream.sendall(raw)
                answer = self.upstream.recv(1)
                if not answer:
                    return False
                self.client.sendall(answer)
                if answer == b"S":  # TLS from here: the primary serves it byte for byte
                    self._blind(b"")
                    return False
                continue
            self._blind(raw)  # a cancel request, or something the primary will refuse
            return False
        self._blind(b"")
        return False

    def _blind(self, first: bytes) -> None:
        """Relay bytes both ways until either side closes. The primary's way is the pump's
        once it runs: one reader of the primary, or its last words could be lost."""
        pending = first + (bytes(self.stream.read_exactly(self.stream.buffered))
                           if self.stream.buffered else b"")
        if pending:
            self.upstream.sendall(pending)
        if not self.pumping:
            self.relayed.clear()
            threading.Thread(target=self._relay_blind, daemon=True).start()
        _pipe(self.client, self.upstream)

    def _relay_blind(self) -> None:
        _pipe(self.upstream, self.client)
        self._primary_ended()

    # Client to primary (or answered here) --------------------------------------------------------

    def _serve(self) -> None:
        batch: list[tuple[bytes, bytes]] = []
        decoded: list[Message] = []  # the batch's extended-query messages, decoded
        read = self.stream.read_exactly
        while True:
            if self._repeat is not None and not batch and self._repeated():
                continue
            head = read(5)
            self._repeat = None  # (what it knew holds only while nothing else came)
            type_byte, length = head[:1], int.from_bytes(head[1:5], "big")
            if not self.authenticated:
                # Authentication is the primary's, and so are its limits: each message goes on
                # as its bytes arrive, so no length a client claims is ever buffered here.
                self._stream(bytes(head), length)
                continue
            if not 4 <= length <= MAX_MESSAGE_SIZE:
                # The primary refuses it, in its words: from here on, bytes are relayed as is.
                if batch:
                    self._forward(batch)
                self._blind(bytes(head))
                return
            if type_byte == b"d":  # COPY data: passed on as it arrives, never collected here
                if batch:
                    self._forward(batch)
                    batch, decoded = [], []
                self._copy_data(bytes(head), length - 4)
                continue
            body = read(length - 4)
            code = type_byte[0]
            if code in _EXTENDED and len(batch) < MAX_BATCH:
                batch.append((type_byte, bytes(body)))
                try:
                    decoded.append(decode_frontend(type_byte, batch[-1][1]))
                except SqlVecError:  # malformed: the primary answers it now, as it would
                    self._forward(batch)
                    batch, decoded = [], []
                continue
            batch.append((type_byte, bytes(body)))
            if (type_byte in (b"S", b"Q") or len(batch) > MAX_BATCH) \
                    and self._handover_due(batch, decoded):
                self._hand_over(batch)
                return
            if type_byte == b"S" and len(decoded) == len(batch) - 1:
                self._round_trip(batch, [*decoded, Sync()])
            elif type_byte == b"Q" and len(batch) == 1:
                self._query(batch)
            else:
                self._forward(batch)
                if type_byte == b"X":
                    return
            batch, decoded = [], []

    def _handover_due(self, batch: list[tuple[bytes, bytes]], decoded: list[Message]) -> bool:
        """Whether this connection's traffic is writes (HANDOVER_AFTER of them relayed in a
        row, or a pipeline of more than MAX_BATCH messages that writes: an executemany, whose
        every row would otherwise cross this process twice) and it is at a point where its
        socket can move to the primary: every answer of the primary in (none due, no
        extended-query message unsynced), the round trip in hand whole, or the first
        MAX_BATCH messages of a longer one (relayed in pieces, it would leave messages
        unsynced at every Sync), and not too large. A transaction block open does not hold
        it back: the session, its block included, is the primary's already."""
        if not HANDOVER_AFTER or not self.pid:
            return False
        if self.streak < HANDOVER_AFTER and not (
                len(batch) > MAX_BATCH and self._binds_writes(decoded)):
            return False
        with self.lock:
            if self.pending or self.open or self._injected:
                return False
        size = self.stream.buffered + sum(5 + len(body) for _, body in batch)
        return size <= HANDOVER_LIMIT

    def _binds_writes(self, decoded: list[Message]) -> bool:
        """Whether these messages execute a statement that changes data: one they parse
        (`writes`), or one the primary prepared that does (`writing`)."""
        parsed = {m.name for m in decoded if isinstance(m, Parse) and writes(m.sql)}
        return any(isinstance(m, Bind) and (m.statement in parsed or m.statement in self.writing)
                   for m in decoded)

    def _hand_over(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Move the client to the primary, which serves it directly from then on, as a
        connection of a one-process server (out of a worker, writes skip a process hop).

        The statements parsed here alone are parsed there first, in round trips whose answers
        are dropped. Then the client's bytes not relayed yet (this round trip and whatever
        followed it) go in a HANDOVER message; the primary answers with one of its own, after
        everything it sent before, and the pump, once it has relayed all that, sends the
        socket itself (`_pump`). Returns when the pump is done: `handed` says how."""
        out = bytearray()
        for name, parse in self.local_names.items():
            if name not in self.shared:
                out += parse + frame(b"S")
                with self.lock:
                    self.swallow.append(-1)
        rest = bytearray()
        for type_byte, body in batch:
            rest += frame(type_byte, body)
        if self.stream.buffered:
            rest += self.stream.read_exactly(self.stream.buffered)
        out += frame(HANDOVER, rest)
        self.handing_over = True
        with self.ulock:
            self.upstream.sendall(out)
        self.handing.wait()

    def _stream(self, head: bytes, length: int) -> None:
        """Send one message to the primary as its bytes arrive (before authentication)."""
        type_byte = head[:1]
        with self.lock:
            if type_byte in (b"S", b"Q"):
                self.swallow.append(0)
                self.pending += 1
                self.open = False
            elif type_byte[0] in _EXTENDED or type_byte == b"H":
                self.open = True
        with self.ulock:
            self.upstream.sendall(head)
        left = max(0, length - 4)
        while left:
            chunk = self.stream.read_exactly(min(left, STREAM_CHUNK))
            with self.ulock:
                self.upstream.sendall(chunk)
            left -= len(chunk)

    def _copy_data(self, head: bytes, n: int) -> None:
        """Relay one CopyData message of `n` bytes to the primary: one that fits the receive
        buffer once it is all received, in one send with the whole CopyData messages
        received after it (`take_run`), a larger one as it arrives (`SocketStream.relay`:
        moved by the kernel where it can be), so the bulk of a COPY is not collected, framed
        and joined here first."""
        with self.ulock:
            if self.stream.buffer(n):
                send_parts(self.upstream, [head, self.stream.take_run(n, b"d")])
            else:
                self.stream.relay(n, self.upstream, head)

    def _idle(self) -> bool:
        with self.lock:
            return self.pending == 0 and not self.open and self.status == "I"

    def _query(self, batch: list[tuple[bytes, bytes]], message: Message | None = None) -> None:
        if message is None:
            try:
                message = decode_frontend(*batch[0])
            except SqlVecError:  # malformed: the primary answers
                self._forward(batch)
                return
        assert isinstance(message, Query)
        if self.local_ok and self._idle() and read_only(message.sql) and self._ready_here():
            if self._answer_here([message]):
                self.local_names.pop("", None)
                self.shared.discard("")
                self.streak = 0
                if self._repeat is None and self.local is not None \
                        and self.local.error is None:  # (its next run: `_repeated`)
                    self._repeat = (RepeatedMessage(frame(*batch[0]), message), batch)
                return
        self._repeat = None
        self._forward(batch)

    def _repeated(self) -> bool:
        """Answer the client's next round trip if it repeats the last one answered here but
        for its parameter values (`RepeatedRoundTrip`), or is the same simple Query again
        (`RepeatedMessage`): nothing that `_answerable` looks at has changed since (every
        other message clears `_repeat`), so it is answered, or relayed, as the same messages
        read one by one would be, without reading and classifying them again; with the answer
        kept from its last run when that cannot have changed (`_send_kept`)."""
        shape, rest = self._repeat  # type: ignore[misc]
        stream = self.stream
        stream.receive()
        buf, start, end = stream.window()
        local = self.local
        lane = self._lane
        if lane is None or lane.shape is not shape or local is None \
                or lane.compiled is not local.compiled_read():
            lane = self._lane = ReadLane.of(shape, rest, local)
        if lane is not None and self._repeated_read(lane, buf, start, end):
            return True
        found = shape.match(buf, start, end)
        if found is None:
            return False
        message, size = found
        stream.skip(size)
        if type(shape) is RepeatedMessage:  # a simple Query
            if not self._send_kept(message):
                self._query(rest, message)
            return True
        lead = shape.lead
        if lead is None and self._send_kept(message):
            return True
        body = bytes(buf[start + len(shape.prefix) + 5:start + size - len(shape.rest)])
        self._round_trip([*_led(shape), (b"B", body), *rest],
                         [*((lead,) if lead else ()), message, *shape.messages], repeated=True)
        return True

    def _repeated_read(self, lane: ReadLane, buf: bytearray, start: int, end: int) -> bool:
        """`_repeated` of a prepared read compiled here (`ReadLane`): its values taken from
        the receive buffer and run through the compiled round trip, with no Bind made, nor
        its messages looked at again. False, nothing consumed, when it is not that round
        trip, its compiled steps no longer fit it, or a value does not decode here
        (`_repeated` then takes it)."""
        shape = lane.shape
        found = shape.values(buf, start, end)
        if found is None:
            return False
        local, compiled = self.local, lane.compiled
        if local is None or not compiled.current(local):
            return False
        values, size = found
        lead = shape.lead
        kept = self._kept if lead is None else None  # (a kept answer has no ParseComplete)
        last = kept.last if kept is not None and kept.computed is compiled else None
        if last is not None and last[0] == values:
            params = list(last[1])  # (the same values as last time, decoded then)
        else:
            params = compiled.params_of(values)
            if params is None:
                return False
        self.stream.skip(size)
        if kept is not None and self._send_computed(compiled, values, params):
            return True
        body = bytes(buf[start + len(shape.prefix) + 5:start + size - len(shape.rest)])
        if lead is None:
            run = lambda: local.run_compiled(compiled, params)  # noqa: E731
        else:
            bound = bound_round_trip(lane.messages)
            bind = shape.bind_with(values)
            run = lambda: local.run_after_parse(lead, bind, *bound[1:], compiled, params)  # noqa: E731
        self._round_trip([*_led(shape), (b"B", body), *lane.rest],
                         [*((lead,) if lead else ()), *lane.messages], repeated=True, run=run,
                         asked=compiled.bounded)
        return True

    def _round_trip(self, batch: list[tuple[bytes, bytes]], messages: list[Message],
                    repeated: bool = False, run: Callable[[], None] | None = None,
                    asked: bool = False) -> None:
        """Answer a round trip here (`_answer_here`: by `run` when given), or relay it.
        `asked`: its answer is held whole until it settles, so whether the primary spoke
        first is asked then only (`_ready_here`)."""
        if self.local_ok and self._idle():
            if self.remote and not repeated:  # prepared by the primary alone: here too, if
                for m in messages:  # they can be
                    if isinstance(m, Bind) and m.statement in self.remote:
                        self._parse_here(*self.remote.pop(m.statement))
            if (repeated or self._answerable(messages)) and self._ready_here(asked) \
                    and self._answer_here(messages, run):
                self.streak = 0
                if repeated:
                    return
                for (type_byte, body), message in zip(batch, messages):
                    if isinstance(message, Parse):
                        self.local_names[message.name] = frame(type_byte, body)
                        self.shared.discard(message.name)
                        self.writing.discard(message.name)
                    elif isinstance(message, Close) and message.kind == "S":
                        self.local_names.pop(message.name, None)
                        self.shared.discard(message.name)
                        self.writing.discard(message.name)
                self._repeat = _repeatable(batch, messages, self.local)
                return
        self._repeat = None
        self._forward(batch, messages)

    def _answerable(self, messages: list[Message]) -> bool:
        names = set(self.local_names)
        portals: set[str] = set()
        for m in messages:
            if isinstance(m, Parse):
                if not read_only(m.sql) or (m.name and m.name in names):
                    return False
                names.add(m.name)
            elif isinstance(m, Bind):
                if m.statement not in names:
                    return False
                portals.add(m.portal)
            elif isinstance(m, (Describe, Close)):
                if m.name not in (names if m.kind == "S" else portals):
                    return False
            elif isinstance(m, Execute):
                if m.portal not in portals:
                    return False
            elif not isinstance(m, Sync):
                return False
        return True

    def _spoke(self) -> bool:
        """Whether the primary sent this client something the pump has not read yet. Asked of
        the socket with FIONREAD, which keeps the GIL: a poll would let it go, and with
        several clients on a worker each release hands it to another relay thread and back
        (a switch each way), at every round trip. (The primary's end alone, with nothing
        before it, reads as nothing: the pump ends the client when it sees it.)"""
        try:
            fcntl.ioctl(self.upstream, termios.FIONREAD, self._unread, True)
        except OSError:
            return True
        return self._unread[0] > 0

    def _ready_here(self, asked: bool = False) -> bool:
        """Make the local session ready: created, with the primary's settings, its follower
        at the published commit position. False when the primary must answer instead.
        `asked`: whether the primary spoke first is left to `_settle` (an answer held whole
        until then: dropped there if it did, so the order stays; one ioctl less)."""
        worker = self.worker
        if not asked and self._spoke():
            # The primary spoke first (a FATAL of pg_terminate_backend, a notification): its
            # words go out before this statement's answer, which the primary gives.
            return False
        if self.database != DEFAULT_DATABASE or self.settings is None or not self.pid:
            self.local_ok = False
            return False
        if worker.position.schema_locked():
            # Another transaction's schema changes are open: in the primary a read waits for
            # them to end (or fails, lock_timeout), and so must this one, there.
            return False
        lsn, version, config = worker.position.read()
        if config != worker.config_generation:
            worker.reload_config(config)
        mirrored = self.settings
        if mirrored is None or mirrored["config"] != config:
            # The files were reloaded since the primary session last took them in: the primary
            # answers (taking them in), and its settings come back with its ReadyForQuery.
            return False
        try:
            if not worker.database.catch_up(self.database, lsn, version):
                return False
        except Exception as exc:
            log.warning("following the log failed; the primary answers: %s", exc)
            return False
        local = self.local
        if local is None:
            try:
                session = worker.database.connect(self.database, self.user)
            except Exception as exc:
                log.warning("reads of %s go to the primary: %s", self.peer, exc)
                self.local_ok = False
                return False
            worker.database.unregister_session(session)
            session.pid = self.pid
            local = self.local = LocalConnection(self, session)
        if mirrored is not self._applied:
            session = local.session
            assert session is not None
            session.adopt_settings(mirrored)
            session.settings[WORKER_SETTING] = str(worker.index)
            self._applied = mirrored
        return True

    def _answer_here(self, messages: list[Message],
                     run: Callable[[], None] | None = None) -> bool:
        """Run a round trip here (by `run`, when given: its messages' names are read, not their
        values); False (nothing sent) if the primary must answer it."""
        local = self.local
        assert local is not None
        local.begin()
        held, statistics = self.worker.log, self.worker.statistics
        if held is not None:
            held.hold()
        if statistics is not None:
            statistics.hold()
        self.query = _text_of(messages, local)
        self.started = time.time()
        self.running = True
        try:
            if run is None:
                local.run_round_trip(messages)
            else:
                run()
        except GONE:
            raise
        except Exception:
            log.debug("a read failed here; the primary answers it", exc_info=True)
            local.error = local.error or "XX000"
        finally:
            with self.ulock:
                self.running = False
                reported, self.reported = self.reported, False
                if _last_statement(local) is not None:  # (a pipeline's: its last statement)
                    self.query = local.session.current_query  # type: ignore[union-attr]
        local.keep = local.error is None and self._keepable(messages, local)
        answered = False
        try:
            answered = self._settle(messages, local)
            return answered
        finally:
            logged = held.settle(answered) if held is not None else []
            if statistics is not None and not answered:  # (settled by `_settle` if answered)
                statistics.settle(False)
            if answered and local.keep:
                self._kept = KeptAnswer.of(self, messages[0], local) if not logged else None
            if reported:  # (after the answer went out: the primary may end the connection now)
                with self.ulock:
                    self._send_activity(_last_statement(local) or (self.started, time.time()))

    def _settle(self, messages: list[Message], local: LocalConnection) -> bool:
        """Send the round trip's answer, or drop it for the primary to answer (False)."""
        # A statement parsed here in an earlier round trip failing now (its table dropped,
        # say) fails the same way in the primary: the answer stands, and the statement stays
        # here, as a PostgreSQL prepared statement outlives such errors. Only a write (25006)
        # goes to the primary.
        error = local.error
        if error is not None and error != "57014" and not local.spilled and (
                error == "25006" or any(isinstance(m, (Parse, Query)) for m in messages)):
            _drop(local, messages)
            return False
        with self.wlock:
            if not local.spilled and self._spoke():
                # The primary spoke while the read ran (a FATAL of pg_terminate_backend): its
                # words go first, and the primary answers the round trip.
                _drop(local, messages)
                return False
            statistics = self.worker.statistics
            if statistics is not None:  # counted before the client can ask for the counts
                ran = _last_statement(local)
                local.recorded = statistics.settle(True, ran and (self.pid, self.query, *ran))
            local.finish()
        return True

    def _keepable(self, messages: list[Message], local: LocalConnection) -> bool:
        """Whether the answer of a round trip just run without an error may be kept for its
        repeats (`KeptAnswer`): a statement that reads no table and calls no function
        (`constant`: its answer depends on the session's settings alone), either bound
        without parameters, then only messages that leave the statements alone, or a simple
        Query seen again (`_constant_query`); no duration logged (log_min_duration_statement),
        and its statistics recorded, to be recorded again at each repeat."""
        first, session = messages[0], local.session
        if session is None:
            return False
        if type(first) is Query:
            constant = self._constant_query(first, session)
        elif type(first) is Bind:
            statement = local.statements.get(first.statement)
            constant = statement is not None and (
                statement.prepared.constant and not first.params
                or _computed_read(statement, local) is not None) \
                and _leaves_statements(messages[1:])
        else:
            return False
        return constant and self.worker.statistics is not None \
            and session.settings.get("log_min_duration_statement", "-1").strip() == "-1"

    def _constant_query(self, query: Query, session: Session) -> bool:
        """Whether a simple Query repeated (`RepeatedMessage`) runs a constant statement,
        judged once per Query seen again (planned statements are cached by their text)."""
        judged = self._judged
        if judged[0] is query:
            return judged[1]
        shape = self._repeat[0] if self._repeat is not None else None
        if type(shape) is not RepeatedMessage or shape.message is not query:
            return False
        try:
            constant = session.prepare(query.sql).constant
        except Exception:  # (only a judgement: the statement just ran here)
            constant = False
        self._judged = (query, constant)
        return constant

    def _send_kept(self, first: Message) -> bool:
        """Answer a repeated round trip (`_repeated`, taken from the receive buffer) with the
        answer kept from its last run, if that still holds (`_kept_holds`), counting it in the
        statistics as run again; False: it runs as usual."""
        kept = self._kept
        if kept is None or kept.first is not first or not self._kept_holds(kept):
            return False
        return self._send_answer(kept, kept.answer)

    def _send_computed(self, compiled: CompiledRead, values: tuple[bytes | None, ...],
                       params: list) -> bool:
        """Answer a repeat of a one-row statement computed in Python whose answer is kept as
        its compiled round trip (`KeptAnswer.computed`), if that still holds: its row computed
        from `params` (decoded from `values`, as received), between the bytes the compiled
        round trip fixed; the same values as the last repeat's get the same bytes again
        (`KeptAnswer.last`). False (nothing sent) when the row is left to the operator tree:
        it runs as usual."""
        kept = self._kept
        if kept is None or kept.computed is not compiled or not self._kept_holds(kept):
            return False
        last = kept.last
        if last is not None and last[0] == values:
            answer = last[2]
        else:
            answer = compiled.answer_of(params)
            if answer is None:
                return False
            kept.last = (values, tuple(params), answer)
        return self._send_answer(kept, answer)

    def _send_answer(self, kept: KeptAnswer, answer: bytes) -> bool:
        """Send the answer of a round trip standing for its kept one's run, counting it in the
        statistics as run again; False when the primary spoke first."""
        started = time.time()  # (also pg_stat_activity's start of the statement)
        with self.wlock:
            if self._spoke():  # the primary spoke first (`_settle`)
                return False
            seconds = time.time() - started
            self.worker.statistics.again(kept.recorded, seconds,
                                         (self.pid, self.query, started, started + seconds))
            self.stream.write(answer)
        self.streak = 0
        return True

    def _kept_holds(self, kept: KeptAnswer) -> bool:
        """Whether a kept answer is still the one its round trip would get (`KeptAnswer`)."""
        local = self.local
        return self.local_ok and local is not None and self._idle() \
            and self.settings is kept.settings and self._applied is kept.settings \
            and _statement_of(kept.first, local) is kept.statement \
            and self.worker.position.read()[2] == kept.config

    def _forward(self, batch: list[tuple[bytes, bytes]],
                 decoded: list[Message] | None = None) -> None:
        """Send messages to the primary, parsing there first the statements of this worker
        they name (their ParseCompletes are dropped by the pump). A read-only statement the
        client prepares there is prepared here too, so its later executions outside a
        transaction block can still be answered here. `decoded`: the batch's messages, when
        the round trip decoded them already."""
        out = bytearray()
        injected = syncs = 0
        wrote = False  # it runs a statement that changes data (a statement prepared: not yet)
        local = self.local
        named = [n for n in self.local_names if n]
        if named and not self.open and any(
                t in (b"P", b"Q") and _DEALLOCATE.search(b) for t, b in batch):
            # DEALLOCATE and DISCARD share PREPARE's namespace: the statements parsed here move
            # to the primary first, in a round trip of their own whose answer is dropped whole.
            for name in named:
                parse = self.local_names.pop(name)
                if name not in self.shared:
                    out += parse
                if local is not None:
                    local.statements.pop(name, None)
            self.shared.clear()
            self.remote.clear()
            out += frame(b"S", b"")
            with self.lock:
                self.swallow.append(-1)
        mirror: list[tuple[bytes, Parse]] = []
        for i, (type_byte, body) in enumerate(batch):
            if type_byte in (b"P", b"B", b"D", b"C"):
                message = decoded[i] if decoded is not None else None
                if message is None:
                    try:
                        message = decode_frontend(type_byte, body)
                    except SqlVecError:
                        out += frame(type_byte, body)
                        continue
                name = message.statement if isinstance(message, Bind) else message.name
                if isinstance(message, (Describe, Close)) and message.kind != "S":
                    name = None
                if isinstance(message, Parse) and writes(message.sql):
                    self.writing.add(message.name)
                elif isinstance(message, (Parse, Close)) and name is not None:
                    self.writing.discard(name)
                elif isinstance(message, Bind) and name in self.writing:
                    wrote = True
                if name is not None and name in self.local_names:
                    if isinstance(message, (Parse, Close)):  # replaced or closed: not here
                        parse = self.local_names.pop(name)
                        if local is not None:
                            local.statements.pop(name, None)
                        if isinstance(message, Parse) and name and name not in self.shared:
                            out += parse  # (the primary then refuses the name as taken)
                            injected += 1
                        self.shared.discard(name)
                    elif name not in self.shared:  # the primary needs it too
                        out += self.local_names[name]
                        injected += 1
                        self.shared.add(name)
                elif isinstance(message, (Parse, Close)) and name:
                    self.remote.pop(name, None)
                    if isinstance(message, Parse):
                        mirror.append((frame(type_byte, body), message))
            elif type_byte == b"Q":
                self.local_names.pop("", None)
                self.shared.discard("")
                wrote = wrote or writes(bytes(body[:-1]).decode(errors="replace"))

            if type_byte in (b"S", b"Q"):
                syncs += 1
            out += frame(type_byte, body)
        if wrote:  # data changes relayed in a row, no read answered here since: `_hand_over`
            self.streak += 1
        last = batch[-1][0][0]
        with self.lock:
            self._injected += injected
            for _ in range(syncs):
                self.swallow.append(self._injected)
                self._injected = 0
            self.pending += syncs
            if syncs:
                self.open = False
            # (A Flush alone leaves nothing unsynced: psycopg's pipelines begin with one.)
            if last in _EXTENDED or last == ord("H") and not _flushes_only(batch):
                self.open = True
        with self.ulock:
            self.upstream.sendall(out)
        for raw, message in mirror:
            self._parse_here(raw, message)

    def _parse_here(self, raw: bytes, message: Parse) -> None:
        """Prepare here too a read-only statement the primary is preparing (its answer is the
        primary's): later executions outside a transaction block may be answered here. One
        that does not prepare here (a table only its transaction sees, say) stays the
        primary's."""
        if not self.local_ok or not read_only(message.sql):
            return
        if not self._ready_here():
            self.remote[message.name] = (raw, message)  # tried again when it is executed
            return
        local = self.local
        if local is None or message.name in local.statements:
            return
        statistics = self.worker.statistics
        if statistics is not None:  # (the primary counts this statement: it prepares it)
            statistics.hold()
        try:
            local.on_parse(message)
        except Exception:
            return
        finally:
            local.discard()
            if statistics is not None:
                statistics.settle(False)
        self.local_names[message.name] = raw
        self.shared.add(message.name)

    # Primary to client ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Relay the primary's messages, keeping what the worker must know: transaction status
        and pending answers (ReadyForQuery), the backend pid (BackendKeyData), settings (`~`,
        not relayed) and ParseCompletes of statements parsed on the client's behalf (dropped).
        Each receive is made, and what it brought written, under `wlock` (see there)."""
        buf = bytearray()
        readable = select.poll()
        readable.register(self.upstream, select.POLLIN)
        wlock = self.wlock
        try:
            while True:
                readable.poll()
                with wlock:
                    if not self._pump_once(buf) or self.handed:
                        break
        except OSError:
            pass
        finally:
            if self.handed:
                self.relayed.set()
                self.handing.set()
            else:
                self.handing.set()
                self._primary_ended()

    def _pump_once(self, buf: bytearray) -> bool:
        """One receive from the primary, relayed (`_pump`); False at the end of its stream."""
        upstream = self.upstream
        data = upstream.recv(1 << 18)
        if not data:
            return False
        buf += data
        out = bytearray()
        pos = run = 0
        size = len(buf)
        ready = 0
        while size - pos >= 5:
            end = pos + 1 + int.from_bytes(buf[pos + 1:pos + 5], "big")
            if end > size:
                break
            code = buf[pos]
            if code == HANDOVER[0] and not self.handing_over:
                # (The answer to a client that sent one itself: it is not moved.)
                out += buf[run:pos]
                run = end
            elif code == HANDOVER[0]:
                # The primary has the client's bytes and sent all it had to send
                # here: once that is out, the client's socket goes to it.
                out += buf[run:pos]
                self._relay_out(out, ready)
                socket.send_fds(upstream, [frame(HANDOVER)], [self.client.fileno()])
                self.handed = True
                return True
            elif self.swallow and self.swallow[0] < 0:  # a round trip of ours
                out += buf[run:pos]
                run = end
                if code == 0x5A:
                    with self.lock:
                        self.swallow.popleft()
            elif code == 0x5A:  # ReadyForQuery
                ready += 1
                self.authenticated = True
                self.status = chr(buf[pos + 5])
                with self.lock:
                    if self.swallow:
                        self.swallow.popleft()
            elif code == 0x4B and not self.pid:  # BackendKeyData
                self.pid = int.from_bytes(buf[pos + 5:pos + 9], "big")
                self.worker.register(self)
            elif code == SETTINGS_MESSAGE[0] or (code == 0x31 and self.swallow
                                                 and self.swallow[0]):
                out += buf[run:pos]
                run = end
                if code == 0x31:
                    with self.lock:
                        self.swallow[0] -= 1
                else:
                    self.settings = json.loads(bytes(buf[pos + 5:end]))
            pos = end
        out += buf[run:pos]
        del buf[:pos]
        self._relay_out(out, ready)
        return True

    def _relay_out(self, out: bytearray, ready: int) -> None:
        """Count the answered round trips, then send the client what the primary sent it."""
        if ready:
            with self.lock:
                self.pending -= ready
        if out:
            self.stream.write(out)


def _flushes_only(batch: list[tuple[bytes, bytes]]) -> bool:
    """Whether a batch is nothing but Flush messages."""
    return all(type_byte == b"H" for type_byte, _body in batch)


def _drop(local: LocalConnection, messages: list[Message]) -> None:
    """Forget a round trip run here that the primary answers instead: its output, and the
    statements it parsed."""
    local.discard()
    for message in messages:
        if isinstance(message, Parse):
            local.statements.pop(message.name, None)


_REPEATABLE = (Describe, Execute, Close, Sync)


def _leaves_statements(messages: list[Message]) -> bool:
    """Whether the messages after a Bind leave the prepared statements alone (Describe,
    Execute, Close of a portal, Sync)."""
    for message in messages:
        if type(message) not in _REPEATABLE or (type(message) is Close and message.kind == "S"):
            return False
    return True


def _repeatable(batch: list[tuple[bytes, bytes]], messages: list[Message],
                local: LocalConnection | None) -> tuple | None:
    """What recognises the next round trip of the same shape as this one, just answered
    here without an error: a Bind of a statement parsed here, then only messages that leave
    the statements alone (`_leaves_statements`); or the same led by a Parse of the unnamed
    statement it binds (what node-postgres sends for every query)."""
    first = messages[0]
    lead, prefix = None, b""
    if type(first) is Parse and not first.name and len(messages) > 1 \
            and type(messages[1]) is Bind and not messages[1].statement:
        lead, prefix = first, frame(*batch[0])
        batch, messages = batch[1:], messages[1:]
        first = messages[0]
    if type(first) is not Bind or local is None or local.error is not None \
            or not _leaves_statements(messages[1:]):
        return None
    rest = batch[1:]
    shape = RepeatedRoundTrip.of(batch[0][1], first, b"".join(frame(t, b) for t, b in rest),
                                 tuple(messages[1:]), lead, prefix)
    return None if shape is None else (shape, rest)


def _led(shape: RepeatedRoundTrip) -> list[tuple[bytes, bytes]]:
    """The Parse leading a repeated round trip, as a batch entry (none: a Bind leads it)."""
    return [(b"P", shape.prefix[5:])] if shape.lead is not None else []


def _last_statement(local: LocalConnection) -> tuple[float, float] | None:
    """When the statement a round trip ran here started and ended (its session's
    pg_stat_activity times); None if it ran none."""
    session = local.session
    if session is None or session.query_started is None or session.query_started < \
            local.relay.started:
        return None
    return session.query_started, session.state_changed


def _text_of(messages: list[Message], local: LocalConnection) -> str:
    """The statement a round trip runs, as pg_stat_activity shows it."""
    for message in messages:
        if isinstance(message, (Query, Parse)):
            return message.sql
        if isinstance(message, Bind):
            statement = local.statements.get(message.statement)
            if statement is not None:
                return statement.sql
    return ""


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(1 << 16)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Worker:
    """The worker process: its follower database and its clients by backend pid."""

    def __init__(self, database: FollowerDatabase, position: CommitPosition, index: int) -> None:
        self.database = database
        self.position = position
        self.index = index
        # The primary's count of configuration reloads that this process's files reflect.
        self.config_generation = position.read()[2]
        self._relays: dict[int, Relay] = {}
        self._ended = 0  # clients ended since memory was last handed back
        self.log: PrimaryLog | None = None  # where log records go, once serving
        self.statistics: PrimaryStatistics | None = None  # where statistics go, once serving
        self._lock = threading.Lock()
        self._serving = threading.Event()  # set when a client is registered (`_await_clients`)
        self._announced = threading.Event()  # set when a new manifest is announced (`_follow`)
        self._announced.set()  # (the first look at once: a forked template may be behind)
        self._config_lock = threading.Lock()

    def _follow(self) -> None:
        """Load each new manifest of the default database (a seal, an index build, DDL) as
        soon as the primary publishes it, before any read needs it: a worker that served no
        read since CREATE INDEX would otherwise read the index file at its first read after,
        with every other read of the worker waiting for it (100k rows: about 0.2 s). The
        primary announces each one on the control socket (`serve`); a look every
        FOLLOW_INTERVAL catches one whose announcement could not be sent. The log's tail is
        left to the reads, which apply it as they need it."""
        while True:
            self._announced.wait(FOLLOW_INTERVAL)
            self._announced.clear()  # (before the look: an announcement after it wakes the next)
            _lsn, version, _config = self.position.read()
            try:
                store = self.database.store(DEFAULT_DATABASE)
                if store.manifest_version >= version:
                    continue
                started = time.monotonic()
                self.database.follow_manifest(DEFAULT_DATABASE, version)
                log.debug("worker %d loaded manifest version %d in %.3f s", self.index,
                          store.manifest_version, time.monotonic() - started)
            except Exception as exc:  # a read that needs it tries again, and reports
                log.debug("worker %d could not load manifest version %d yet: %s", self.index,
                          version, exc)
                time.sleep(1.0)

    def reload_config(self, generation: int) -> None:
        """The primary reloaded its configuration files (pg_reload_conf, SIGHUP): read them
        again here too, once, so what reads answered here show (pg_settings, say) is what the
        primary shows."""
        with self._config_lock:
            if self.config_generation != generation:
                self.database.config.reload()
                self.config_generation = generation

    def register(self, relay: Relay) -> None:
        """Make a client reachable by its backend pid, for cancel requests."""
        with self._lock:
            self._relays[relay.pid] = relay
            self._serving.set()

    def forget(self, relay: Relay) -> None:
        """Forget a client that has ended."""
        with self._lock:
            self._ended += 1
            if self._relays.get(relay.pid) is relay:
                del self._relays[relay.pid]

    def _watch(self) -> None:
        trimmed = 0.0
        while True:
            self._await_clients()
            time.sleep(REPORT_AFTER / 2)
            now = time.monotonic()
            if self._ended and now - trimmed >= 1.0:
                # As the primary does: the buffers of many clients die in a burst, and the
                # allocator would keep their pages.
                self._ended, trimmed = 0, now
                gc.collect()  # (what is loaded is frozen: only the clients' leftovers are walked)
                self.database.return_free_memory()
            with self._lock:
                relays = list(self._relays.values())
            wall = time.time()  # (what the reads' starts are kept in)
            for relay in relays:
                if relay.running:
                    relay.report_if_long(wall)

    def _await_clients(self) -> None:
        """While no client is served here (a writer's connection has moved to the primary,
        say) and no ended one's memory waits to be handed back, wait for one: an idle worker's
        watch does not wake 40 times a second for nothing."""
        with self._lock:
            if self._relays or self._ended:
                return
            self._serving.clear()
        self._serving.wait()

    def serve(self, control: socket.socket) -> None:
        """Take connections, cancel requests, statistics requests and new manifests'
        announcements from the primary until it closes the control socket."""
        threading.Thread(target=self._watch, daemon=True, name="sqlvec-worker-watch").start()
        threading.Thread(target=self._follow, daemon=True, name="sqlvec-worker-follow").start()
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(control, 64, 2)
            except OSError:
                return
            if not message:
                return
            if message[:1] == CONNECTION and len(fds) == 2:
                client = socket.socket(fileno=fds[0])
                upstream = socket.socket(fileno=fds[1])
                relay = Relay(self, client, upstream)
                try:
                    start_engine_thread(relay.run, name="sqlvec-worker-client")
                except RuntimeError:
                    client.close()
                    upstream.close()
            elif message[:1] == MANIFEST:
                self._announced.set()
            elif message[:1] == CANCEL:
                with self._lock:
                    target = self._relays.get(int(message[1:] or b"0"))
                if target is not None:
                    target.cancel()
            elif message[:1] == FLUSH:
                statistics = self.statistics
                try:
                    if statistics is not None:
                        statistics.flush_for(message[1:])
                    else:
                        control.send(FLUSHED + message[1:])
                except OSError:
                    return
            else:
                for fd in fds:
                    socket.socket(fileno=fd).close()


def main(argv: list[str]) -> int:
    """`python -m wire.worker CONTROL_FD POSITION_FD DATA_DIR INDEX [CONFIG_FILE]` (started
    by the pool when it cannot fork its workers; CONFIG_FILE when the primary was given
    one)."""
    control_fd, position_fd, path, index = int(argv[0]), int(argv[1]), argv[2], int(argv[3])
    config_file = argv[4] if len(argv) > 4 else None
    # Ctrl-C reaches the whole process group: the primary shuts down, and closing the control
    # socket is what ends a worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s worker {index} %(levelname)s %(message)s")
    control = socket.socket(fileno=control_fd)
    database = FollowerDatabase.open(path, config=_config(path, config_file))
    return _serve(control, CommitPosition(position_fd), database, index,
                  int(os.environ.get(LOG_LEVEL_VARIABLE, logging.INFO)))


def _config(path: str, config_file: str | None) -> ServerConfig:
    """The configuration files, as the primary read them."""
    try:
        return ServerConfig.load(path, config_file)
    except ConfigFileError as exc:  # edited since the primary started: it keeps its values
        log.warning("%s; sessions here take their settings from the primary", exc.message)
        return ServerConfig(path, config_file)


def _serve(control: socket.socket, position: CommitPosition, database: FollowerDatabase,
           index: int, level: int) -> int:
    """Serve as worker `index` once the data directory is loaded."""
    _name_process(f"sqlvec-worker-{index}")
    limit_fan_out(position)
    worker = Worker(database, position, index)
    gc.freeze()  # as the primary does: what is loaded lives as long as the process
    control.send(READY)
    # From here on the primary writes this process's log, at its own level.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    worker.log = PrimaryLog(control)
    root.addHandler(worker.log)
    root.setLevel(level)
    worker.statistics = PrimaryStatistics(control, database)
    worker.statistics.start()
    worker.serve(control)
    return 0


def open_template(writer: Database) -> FollowerDatabase:
    """The follower every forked worker starts from, opened by the primary from its own
    loaded tables (`FollowerDatabase.open(seed=...)`) just before it forks the fork server,
    while it runs one thread. Opening it allocates and frees a little everywhere in the
    interpreter's heap (the catalog, the manifest, the extension functions); done before
    the fork, those writes are on pages every process then shares, where in the fork server
    they made it a private copy of each page they touched (about 6 MiB). The primary keeps
    it and never uses it."""
    config = writer.config
    database = FollowerDatabase.open(
        writer.path, config=_config(writer.path, config.config_file if config.explicit else None),
        seed=writer)
    # What loading freed goes back to the system, and what it made is frozen, before the
    # fork: kept, it would be counted in every process; walked by the collector after it,
    # its pages would be copied.
    gc.collect()
    database.return_free_memory()
    gc.freeze()
    return database


def fork_server(sock: socket.socket, writer: Database, position: CommitPosition,
                database: FollowerDatabase) -> int:
    """The fork server's life (`wire.workers.ForkServer`), in a child forked from the primary
    while it ran one thread: fork a worker for each request until the primary closes `sock`,
    each starting from `database` (`open_template`, brought to the published commit position
    first). Its workers are reaped by the kernel (SIGCHLD ignored); the primary watches each
    through its control socket."""
    for sig in (signal.SIGINT, signal.SIGHUP):  # the primary handles these; its end ends us
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    _name_process("sqlvec-forks")
    writer.release_inherited_lock()
    reloads = position.read()[2]
    sock.send(READY)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(sock, 256, 1)
        except OSError:
            return 0
        if not message:
            return 0
        if message[:1] != FORK or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        index, level = json.loads(message[1:])
        # What the worker would load at its first read is loaded once here, and shared.
        lsn, version, generation = position.read()
        try:
            database.catch_up(DEFAULT_DATABASE, lsn, version)
        except Exception as exc:  # the worker catches up itself, or reports why it cannot
            log.warning("worker fork server: cannot follow the data directory: %s", exc)
        if generation != reloads:
            database.config.reload()
            reloads = generation
        database.return_free_memory()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = _serve(socket.socket(fileno=fds[0]), position, database, index, level)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(fds[0])
        sock.send(str(pid).encode())


def _name_process(name: str) -> None:
    """Show the process as `name` in ps and top (Linux: at most 15 characters)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def run(argv: list[str]) -> NoReturn:
    """Serve as a worker process, then end the process (clients still relayed end with it)."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])
