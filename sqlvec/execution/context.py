"""Per-statement execution state shared by every operator of one statement: parameters,
snapshots, caches, the interrupt check (cancel and statement_timeout) and the memory account
(work_mem)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa

from sqlvec.errors import OutOfMemory, QueryCanceled
from sqlvec.storage.table import Table, TableSnapshot, TableStats


class MemoryAccount:
    """The bytes the operators of one statement hold, against the statement's limit (work_mem).

    Operators reserve memory *before* they allocate it, from sizes computed out of counts
    (rows × row width), so a statement that would go over the limit fails with 53200 having
    allocated nothing big. Reservations nest like the operator tree: `enter` when an operator
    starts, `leave` when it returns. On leaving, the operator's working memory (hash tables,
    sort orders) is released and what it returns stays held until its parent returns: the
    output it reserved, plus what its inputs held if the output still refers to them
    (projections, limits and other operators that pass columns through zero-copy). What a
    subquery returns to the expression that ran it is not carried: the expression reduces it.
    Rows read from storage are not charged: they are resident already."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit  # bytes; None: unlimited
        self.held = 0
        self.peak = 0
        # Per running operator: [operator, bytes its inputs hold, bytes of its output,
        # whether the output keeps its inputs alive].
        self._frames: list[list] = []

    def enter(self, operator: object) -> int:
        """An operator starts: returns the mark to give back to `leave`."""
        self._frames.append([operator, 0, 0, True])
        return self.held

    def leave(self, mark: int, failed: bool = False) -> None:
        """The operator that entered at `mark` returns (or fails: then it holds nothing)."""
        operator, inputs, output, passes_inputs = self._frames.pop()
        kept = 0 if failed else output + (inputs if passes_inputs else 0)
        self.held = mark + kept
        if self._frames and kept:
            parent = self._frames[-1]
            if any(child is operator for child in getattr(parent[0], "children", ())):
                parent[1] += kept
            else:  # a subquery run by an expression: its result is reduced, not kept
                self.held = mark

    def reserve(self, what: str, nbytes: int) -> None:
        """Working memory of the running operator, released when it returns. Raises 53200
        (naming `what`) if the statement would then hold more than its limit."""
        nbytes = max(0, int(nbytes))
        if self.limit is not None and self.held + nbytes > self.limit:
            raise OutOfMemory(
                "out of memory",
                detail=f"Failed on request of size {nbytes} bytes in {what}; the statement "
                       f"holds {self.held} bytes and its limit (work_mem) is "
                       f"{format_bytes(self.limit)}.",
                hint="Raise work_mem, or change the query so that this step handles fewer "
                     "rows.")
        self.held += nbytes
        self.peak = max(self.peak, self.held)

    @contextmanager
    def temporary(self, what: str, nbytes: int) -> Iterator[None]:
        """Working memory for one step of a loop (a window, an aggregate, an iteration),
        released when the step ends rather than when the operator returns."""
        self.reserve(what, nbytes)
        try:
            yield
        finally:
            self.held -= max(0, int(nbytes))

    def reserve_output(self, what: str, nbytes: int, replaces_inputs: bool = True) -> None:
        """Memory of the running operator's result, held until its parent returns. When the
        result is a fresh copy (`replaces_inputs`), the operator's inputs are released as it
        returns; otherwise they stay held with it."""
        self.reserve(what, nbytes)
        if self._frames:
            frame = self._frames[-1]
            frame[2] += max(0, int(nbytes))
            frame[3] = frame[3] and not replaces_inputs


def format_bytes(n: int) -> str:
    """A byte count as PostgreSQL shows memory settings: in the largest unit that divides it
    (kB, MB, GB, TB), else in bytes."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def rows_of(rows: int, width: float) -> str:
    """'1000000 rows of 24 bytes': the size behind a reservation, for error details."""
    return f"{rows} rows of {max(1, round(width))} bytes"


def table_bytes_per_row(table: pa.Table) -> float:
    """Average bytes a row of `table` takes (what a copy of n rows of it costs per row)."""
    return table.nbytes / table.num_rows if table.num_rows else 0.0




class ExecContext:
    """What operators read while running one statement.

    `snapshot(table_id)` returns the same TableSnapshot for the whole statement (a statement
    sees one consistent state, READ COMMITTED); `overlay` is the session's uncommitted writes.
    Catalog tables (`virtual_table(name)`) are likewise built once per statement, however often
    the plan scans them (correlated subqueries, recursive CTE iterations); `cache` holds such
    statement-lifetime values and, unlike `subquery_cache`, is never cleared mid-statement.

    One is made per statement, so making it is a fixed cost of every query: a plain
    constructor, the clock read only when `now` is first asked for (then fixed for the
    statement)."""

    def __init__(self, params: list[pa.Scalar] | None = None, now: dt.datetime | None = None,
                 settings: dict | None = None,
                 snapshot_of: Callable[[int], TableSnapshot] | None = None,
                 table_of: Callable[[int], Table] | None = None, overlay: object = None,
                 virtual_table: Callable[[str], pa.Table] | None = None,
                 cancel: threading.Event | None = None, deadline: float | None = None,
                 analyze: bool = False, services: object = None,
                 memory: MemoryAccount | None = None) -> None:
        self.params = params if params is not None else []
        self._now = now
        self.settings = settings if settings is not None else {}
        self.snapshot_of = snapshot_of
        self.table_of = table_of
        self.overlay = overlay  # session.Transaction with buffered writes, or None
        self.cancel = cancel if cancel is not None else threading.Event()
        self.deadline = deadline  # time.monotonic() after which statement_timeout fires
        self.subquery_cache: dict = {}
        self.work_tables: dict = {}
        self.stats: dict = {}  # EXPLAIN ANALYZE: id(operator) -> (rows, seconds)
        self.analyze = analyze
        self.services = services  # session services for catalog functions
        self.cache: dict = {}
        self.memory = memory if memory is not None else MemoryAccount()
        self._snapshots: dict = {}
        self.virtual_table = virtual_table
        if virtual_table is not None:
            cache = self.cache  # not `self`: a closure over the context would be a cycle

            def built(name: str) -> pa.Table:
                key = ("virtual_table", name)
                table = cache.get(key)
                if table is None:
                    table = cache[key] = virtual_table(name)
                return table

            self.virtual_table = built

    @property
    def now(self) -> dt.datetime:
        """The statement's time (now(), current_date, ...): read once, the same for the whole
        statement."""
        now = self._now
        if now is None:
            now = self._now = dt.datetime.now(dt.timezone.utc)
        return now

    def snapshot(self, table_id: int) -> TableSnapshot:
        """The statement's snapshot of a table, taken on first use and kept, so every read of the
        table in the statement sees the same rows."""
        snap = self._snapshots.get(table_id)
        if snap is None:
            assert self.snapshot_of is not None
            snap = self.snapshot_of(table_id)
            self._snapshots[table_id] = snap
        return snap

    def read_as(self, other: ExecContext) -> None:
        """Read the tables as `other` did, with its snapshots (and its time): a statement run
        again to re-check the rows it waited on keeps its snapshot for the others."""
        self._snapshots = dict(other._snapshots)
        self._now = other._now

    def table_stats(self, table_id: int) -> TableStats:
        """The table's activity counters (pg_stat_user_tables), or a throwaway set when the
        statement runs without the store's tables."""
        if self.table_of is None:
            return TableStats()
        return self.table_of(table_id).stats

    def lookup_keys(self, table_id: int, rows: pa.Table, key: int) -> tuple[TableSnapshot, np.ndarray]:
        """Row ids holding these values of a unique key, in the statement's snapshot of the
        table (taken together with the lookup when this is the statement's first read of it)."""
        assert self.table_of is not None
        snap, rowids = self.table_of(table_id).lookup_keys(rows, key, self._snapshots.get(table_id))
        self._snapshots[table_id] = snap
        return snap, rowids

    def lookup_key(self, table_id: int, value: object, key: int) -> tuple[TableSnapshot, int]:
        """`lookup_keys` of one key value (as the key's index holds it): its row id or MISSING."""
        assert self.table_of is not None
        snap, rowid = self.table_of(table_id).lookup_key(value, key, self._snapshots.get(table_id))
        self._snapshots[table_id] = snap
        return snap, rowid

    def check_interrupts(self) -> None:
        """Raise 57014 if the statement was cancelled or ran past statement_timeout.

        PostgreSQL's CHECK_FOR_INTERRUPTS: every loop whose length grows with the data calls
        it once per iteration or chunk (operators, join blocks, sort buckets, recursive CTE
        iterations, per-row subqueries), so a statement stops within one chunk's time."""
        if self.cancel.is_set():
            raise QueryCanceled("canceling statement due to user request")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryCanceled("canceling statement due to statement timeout")

