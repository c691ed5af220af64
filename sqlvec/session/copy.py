"""COPY: the engine's side. The front end (the wire) moves the data in the statement's format;
the session names the columns COPY FROM fills, stores the decoded rows (`copy_in`), and runs
the query whose rows COPY TO sends (`copy_query`).
"""

from __future__ import annotations

import mmap
import threading
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sqlvec.catalog.pg_stat import CopyProgress
from sqlvec.errors import FeatureNotSupported, InFailedTransaction, SqlVecError, UndefinedColumn
from sqlvec.execution import foreign_keys
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.expressions import CompileEnv, Frame
from sqlvec.execution.transaction import Transaction
from sqlvec.memory import KeptMemory
from sqlvec.session.results import Result, ResultColumn
from sqlvec.session.writes import commit_inserts, parents_checker
from sqlvec.sql.copy import CopyCommand
from sqlvec.storage.wal import (
    EncodedBatch,
    InsertOp,
    InsertRunOp,
    background_thread,
    serialized_size,
)

if TYPE_CHECKING:
    from sqlvec.session.core import Session
    from sqlvec.storage.table import Table


def copy_columns(session: Session, command: CopyCommand) -> list[ResultColumn]:
    """The columns COPY FROM fills, in the order its data gives them."""
    prepared = session.prepare(command.select_sql())
    return list(prepared.columns or [])


def copy_query(session: Session, command: CopyCommand) -> Result:
    """COPY TO: the rows to send, from the table or the query (which must return rows)."""
    prepared = session.prepare(command.select_sql())
    if prepared.columns is None:
        raise FeatureNotSupported("COPY query must return rows")
    return session.run(prepared, [])


def start_progress(session: Session, command: CopyCommand) -> CopyProgress:
    """Register a COPY's progress record on the session (pg_stat_progress_copy shows it until
    `session.progress` is cleared) and return it for the front end to count bytes in."""
    relid = 0
    name = command.table_name
    if name is not None:
        schema, _, bare = name.rpartition(".")
        try:
            relid = session.catalog.table(bare, schema or None, session.search_path).def_.oid
        except SqlVecError:
            pass
    progress = CopyProgress(relid, "COPY FROM" if command.direction == "from" else "COPY TO")
    session.progress = progress
    return progress


class CopyLoader:
    """A COPY FROM's rows logged while the rest of them arrive, as PostgreSQL's are: each
    piece the front end decodes is shaped as `copy_in` shapes rows (casts, dimension and
    NOT NULL checks), serialized and checksummed, and appended to the log as a piece record,
    made durable there (`stage`, on the decoding thread), so that the commit at the end
    only names the pieces (`InsertRunOp` of logged batches) and flushes a few bytes. Only
    for the plain case: an autocommit COPY into a table without foreign keys whose columns
    COPY does not fill have no default. A piece record is part of no table until the
    commit names it: a COPY that fails or is abandoned shows nothing (`close` logs that its
    pieces are dropped; replay drops pieces no commit names anyway), and a piece that does
    not stage (an error in it) makes `copy_in` shape the whole stream the usual way, which
    reports the error as before."""

    def __init__(self, session: Session, target: Table, names: list[str]) -> None:
        self.target = target
        self.table_def = target.def_
        self.names = names
        self.schema = target.run_schema()
        self._session = session
        self._store = session.store
        self._joiner = RunJoiner(self.schema)
        self._lock = threading.Lock()
        self._first: int | None = None  # the first piece record's LSN
        self._logged: list[int] = []
        self._closed = False
        self._memory = PieceMemory()  # the pieces' messages lie there (`release`)

    def stage(self, rows: pa.Table, index: int) -> EncodedBatch:
        """The stream's `index`th decoded piece, shaped, serialized, checksummed, logged (made
        durable in the background: decoding never waits for the disk) and joined to the
        pieces before it (thread-safe)."""
        data = _shaped(self._session, self.target, self.names, rows).combine_chunks()
        arrays = [column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
                  for column in data.columns]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        part = EncodedBatch.of(batch, self._memory.region(serialized_size(batch)))
        with self._lock:
            if self._closed:
                return part
            part = self._store.log_piece(self.target.id, part, self._first)
            if self._first is None:
                self._first = part.lsn
            self._logged.append(part.lsn)
        background_thread("copy-sync").submit(self._sync, part.lsn)
        self._joiner.add(index, part.batch)
        return part

    def _sync(self, lsn: int) -> None:
        try:
            self._store.sync_log(lsn)
        except (SqlVecError, ValueError):
            pass  # the log failed (or closed): the commit, which syncs again, reports it

    def joined(self, pieces: int) -> pa.RecordBatch | None:
        """The run's rows as one batch if its `pieces` pieces all went through `stage`."""
        return self._joiner.batch(pieces)

    def committed(self, lsn: int) -> None:
        """The COPY committed at `lsn` naming its logged pieces."""
        self._end(lsn)

    def close(self) -> None:
        """The COPY is over: pieces logged that no commit names are dropped."""
        self._end(None)

    def release(self) -> None:
        """The COPY and every reference to its pieces are gone: the memory they were
        serialized into is kept for the next COPY (what something still refers to is not)."""
        self._memory.release()

    def _end(self, commit_lsn: int | None) -> None:
        with self._lock:
            self._closed = True
            first, self._first = self._first, None
        if first is not None:
            self._store.end_run(first, self._logged, commit_lsn)


# Memory the pieces are serialized into, kept between COPYs (`sqlvec.memory`): a piece is what
# the front end decodes from 4 MiB of the stream, so its message is at most about as large.
PIECE_MEMORY = 5 << 20
KEPT_PIECES = 16
_pieces_memory = KeptMemory(PIECE_MEMORY, KEPT_PIECES)
_ALIGNMENT = 64  # where each message starts in a buffer (Arrow's buffer alignment)


class PieceMemory:
    """The memory one COPY's piece messages are serialized into: consecutive regions of
    kept buffers, a buffer taken when the message does not fit in what is left of the last.
    A text piece's message is a fraction of the 4 MiB its text took (128-d vectors written
    with 17 digits each: about 1 MB), so pieces share buffers; with a buffer each, a
    100k-row text COPY took 61 and faulted in the 45 beyond those kept: 0.23 s of staging
    CPU per COPY, 0.09 s sharing them."""

    def __init__(self) -> None:
        self._buffers: list[mmap.mmap] = []
        self._free = 0  # where the last buffer's unused part starts
        self._released = False
        self._lock = threading.Lock()

    def region(self, size: int) -> memoryview | None:
        """`size` bytes of kept memory for one message (thread-safe); None when larger than
        a buffer, or after `release` (a piece still decoding when its COPY ended)."""
        if size > PIECE_MEMORY:
            return None
        with self._lock:
            if self._released:
                return None
            if not self._buffers or self._free + size > PIECE_MEMORY:
                self._buffers.append(_pieces_memory.take())
                self._free = 0
            start = self._free
            self._free = -(-(start + size) // _ALIGNMENT) * _ALIGNMENT
            # The view is made under the lock: until it exists nothing refers to the buffer,
            # and a `release` in between would give it to the next COPY while this one writes.
            return memoryview(self._buffers[-1])[start:start + size]

    def release(self) -> None:
        """Keep the buffers for the next COPY (those nothing refers to any more); later
        `region`s give no memory."""
        with self._lock:
            buffers, self._buffers, self._free = self._buffers, [], 0
            self._released = True
        for buffer in buffers:
            _pieces_memory.give_back(buffer)


class RunJoiner:
    """A COPY's pieces joined into one batch, in row order, while they arrive (out of order,
    from the decoding threads), so the commit finds the growing segment's batch ready
    instead of copying every row at the end. Fixed-size list columns (vectors, the bulk)
    are copied into an anonymous mapping that grows in place (mremap moves pages, not
    bytes); the other columns, small, are joined at the end."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._lock = threading.Lock()
        self._waiting: dict[int, pa.RecordBatch] = {}
        self._next = 0  # the index of the next piece to join
        self._parts: list[list[pa.Array]] = [[] for _ in schema]
        # column -> (its values, bytes used); private: a shared anonymous mapping cannot grow
        self._buffers: dict[int, tuple[mmap.mmap, int]] = {
            j: (_huge(mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)), 0)
            for j, f in enumerate(schema)
            if pa.types.is_fixed_size_list(f.type)
            and pa.types.is_floating(f.type.value_type)}

    def add(self, index: int, batch: pa.RecordBatch) -> None:
        """Piece `index`'s rows: joined at once when every piece before it is."""
        with self._lock:
            self._waiting[index] = batch
            while self._next in self._waiting:
                self._append(self._waiting.pop(self._next))
                self._next += 1

    def _append(self, batch: pa.RecordBatch) -> None:
        for j, column in enumerate(batch.columns):
            if j in self._buffers and column.null_count == 0:
                values = column.values.slice(column.offset * column.type.list_size,
                                             len(column) * column.type.list_size)
                if values.null_count == 0:
                    self._copy_values(j, values.to_numpy())
                    continue
            if j in self._buffers:  # NULLs: this column is joined at the end after all
                self._parts[j] = [self._buffered(j)]
                del self._buffers[j]
            self._parts[j].append(column)

    def _copy_values(self, j: int, values: np.ndarray) -> None:
        buffer, used = self._buffers[j]
        end = used + values.nbytes
        if end > len(buffer):
            buffer.resize(max(end, 2 * len(buffer)))
            _huge(buffer)
        target = np.frombuffer(buffer, values.dtype, count=values.size, offset=used)
        target[:] = values
        del target  # a view left behind would keep the mapping from growing
        self._buffers[j] = (buffer, end)

    def _buffered(self, j: int) -> pa.Array:
        buffer, used = self._buffers[j]
        field = self.schema.field(j)
        width = field.type.value_type.bit_width // 8
        values = pa.Array.from_buffers(field.type.value_type, used // width,
                                       [None, pa.py_buffer(buffer).slice(0, used)])
        return pa.FixedSizeListArray.from_arrays(values, type=field.type)

    def batch(self, pieces: int) -> pa.RecordBatch | None:
        """The joined rows, once pieces 0 .. `pieces` - 1 (and no other) are joined."""
        with self._lock:
            if self._next != pieces or self._waiting or not pieces:
                return None
            columns = [self._buffered(j) if j in self._buffers else
                       self._parts[j][0] if len(self._parts[j]) == 1 else
                       pa.concat_arrays(self._parts[j]) for j in range(len(self.schema))]
            return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _huge(buffer: mmap.mmap) -> mmap.mmap:
    """Ask for transparent huge pages: the joined values are fresh memory every COPY, and
    faulting them in 2 MiB at a time rather than 4 KiB took 11-16 ms instead of 28-37 ms per
    51 MB (14 pieces of 128-d vectors, best of 4). Where the kernel has none, nothing
    changes."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            buffer.madvise(advice)
        except OSError:
            pass
    return buffer


def copy_loader(session: Session, table: str, columns: list[str] | None) -> CopyLoader | None:
    """A `CopyLoader` for COPY into `table`, or None where the rows must go the usual way."""
    from sqlvec.storage.table import Table

    if session.failed or session.explicit:
        return None
    try:
        target = target_table(session, table)
        names = _names(target.def_, columns)
    except SqlVecError:
        return None  # copy_in reports it
    d = target.def_
    if not isinstance(target, Table) or foreign_keys.involved(session.store, target) \
            or any(col.default is not None for col in d.columns if col.name not in names):
        return None
    if any(pa.types.is_dictionary(f.type) for f in d.arrow_schema()):
        return None
    return CopyLoader(session, target, names)


def target_table(session: Session, table: str):
    """The table COPY FROM names (`schema.table` or a name on the search path)."""
    schema, _, name = table.rpartition(".")
    return session.catalog.table(name, schema or None, session.search_path)


def _names(d, columns: list[str] | None) -> list[str]:
    names = list(columns) if columns else d.column_names
    for n in names:
        if not d.has_column(n):
            raise UndefinedColumn(f'column "{n}" of relation "{d.name}" does not exist')
    return names


def copy_in(session: Session, table: str, columns: list[str] | None, rows: pa.Table,
            staged: list[EncodedBatch] | None = None, loader: CopyLoader | None = None) -> int:
    """COPY ... FROM: insert decoded rows into `table` (name, optionally schema-qualified).

    `rows` has one column per name in `columns` (all table columns when None), either of the
    column's Arrow type or strings in PostgreSQL's text input format. Missing columns get
    their defaults. Inside a transaction block the rows are buffered like INSERT; otherwise
    they commit at once. `staged`: every piece of `rows` as `loader` staged it, in order;
    committed as they are when the table is still the one they were staged for. Returns the
    row count."""
    if session.failed:
        raise InFailedTransaction(
            "current transaction is aborted, commands ignored until end of transaction block")
    target = target_table(session, table)
    d = target.def_
    names = _names(d, columns)
    if rows.num_columns != len(names):
        raise SqlVecError(f"COPY data has {rows.num_columns} columns, expected {len(names)}",
                          sqlstate="22P04")
    n_rows = rows.num_rows
    if staged and loader is not None and loader.table_def is d and loader.names == names \
            and not session.explicit and sum(p.batch.num_rows for p in staged) == n_rows:
        run = InsertRunOp.start(target.id, staged, loader.joined(len(staged)))
        lsn = commit_inserts(session, [run])
        if run.logged:
            loader.committed(lsn)
    else:
        if rows.num_columns and any(c.num_chunks > 1 for c in rows.columns):
            rows = rows.combine_chunks()  # storage takes one chunk
        _store(session, target, _shaped(session, target, names, rows))
    target.stats.wrote("INSERT", n_rows)
    if isinstance(session.progress, CopyProgress):
        session.progress.tuples_processed += n_rows
    return n_rows


def _shaped(session: Session, target: Table, names: list[str], rows: pa.Table) -> pa.Table:
    """The COPY's rows in the table's logical schema: given columns cast, the rest their
    defaults, NOT NULL and vector dimensions checked."""
    from sqlvec.execution.dml import default_value
    from sqlvec.storage.table import cast_column

    d = target.def_
    n_rows = rows.num_rows
    builder = frame = None  # for defaults only (a loader's pieces have none)
    arrays = []
    given = dict(zip(names, rows.columns))
    for col in d.columns:
        arrow = col.type.to_arrow()
        if col.name in given:
            value = given[col.name]
            if value.type != arrow:
                src = V.TEXT if pa.types.is_string(value.type) else None
                if src is not None:
                    value = V.cast(value, src, col.type, n_rows)
                elif col.type.is_vector:  # dimensions, NaN and range checked as pgvector does
                    value = cast_column(value, col)
                else:
                    value = value.cast(arrow)
            arrays.append(value)
            continue
        if builder is None:
            builder = Builder(CompileEnv(functions=session.database.functions))
            frame = Frame(pa.table({"_": pa.nulls(n_rows)}).drop_columns(["_"]) if n_rows else
                          pa.table({}), session._context([]))
        default = default_value(col, builder)
        if default is None:
            arrays.append(pa.nulls(n_rows, arrow))
        else:
            arrays.append(V.as_array(default(frame), n_rows).cast(arrow))
    return target.coerce(pa.Table.from_arrays(
        [a if isinstance(a, (pa.Array, pa.ChunkedArray)) else pa.array(a) for a in arrays],
        names=d.column_names))


def _store(session: Session, target: Table, data: pa.Table) -> None:
    if foreign_keys.involved(session.store, target):  # checked at the end of the batch
        txn = session.txn if session.explicit else Transaction()
        assert txn is not None
        foreign_keys.run_statement(session.store, txn, lambda: txn.insert(target, data),
                                   not session.explicit, session.lock_waiting)
        if not session.explicit:  # its parents checked again after a key wait
            commit_inserts(session, txn.ops(), parents_checker(session, target, data))
    elif session.explicit:
        assert session.txn is not None
        session.txn.insert(target, data)
    else:  # the commit checks keys against committed rows and within the batch itself
        commit_inserts(session, [InsertOp(target.id, data)])
