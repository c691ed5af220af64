"""Per-statement execution state shared by every operator of one statement."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sqlvec.errors import QueryCanceled
from sqlvec.storage.table import Table, TableSnapshot


@dataclass
class ExecContext:
    """What operators read while running one statement.

    `snapshot(table_id)` returns the same TableSnapshot for the whole statement (a statement
    sees one consistent state, READ COMMITTED); `overlay` is the session's uncommitted writes.
    Catalog tables (`virtual_table(name)`) are likewise built once per statement, however often
    the plan scans them (correlated subqueries, recursive CTE iterations); `cache` holds such
    statement-lifetime values and, unlike `subquery_cache`, is never cleared mid-statement."""

    params: list[pa.Scalar] = field(default_factory=list)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    settings: dict = field(default_factory=dict)
    snapshot_of: Callable[[int], TableSnapshot] | None = None
    table_of: Callable[[int], Table] | None = None
    overlay: object = None  # session.Transaction with buffered writes, or None
    virtual_table: Callable[[str], pa.Table] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() after which statement_timeout fires
    subquery_cache: dict = field(default_factory=dict)
    work_tables: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)  # EXPLAIN ANALYZE: id(operator) -> (rows, seconds)
    analyze: bool = False
    services: object = None  # session services for catalog functions
    cache: dict = field(default_factory=dict)
    _snapshots: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        build = self.virtual_table
        if build is not None:
            cache = self.cache  # not `self`: a closure over the context would be a cycle

            def virtual_table(name: str) -> pa.Table:
                key = ("virtual_table", name)
                table = cache.get(key)
                if table is None:
                    table = cache[key] = build(name)
                return table

            self.virtual_table = virtual_table

    def snapshot(self, table_id: int) -> TableSnapshot:
        snap = self._snapshots.get(table_id)
        if snap is None:
            assert self.snapshot_of is not None
            snap = self.snapshot_of(table_id)
            self._snapshots[table_id] = snap
        return snap

    def lookup_keys(self, table_id: int, rows: pa.Table, key: int) -> tuple[TableSnapshot, np.ndarray]:
        """Row ids holding these values of a unique key, in the statement's snapshot of the
        table (taken together with the lookup when this is the statement's first read of it)."""
        assert self.table_of is not None
        snap, rowids = self.table_of(table_id).lookup_keys(rows, key, self._snapshots.get(table_id))
        self._snapshots[table_id] = snap
        return snap, rowids

    def check(self) -> None:
        """Raise 57014 if the statement was cancelled or ran past statement_timeout."""
        if self.cancel.is_set():
            raise QueryCanceled("canceling statement due to user request")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryCanceled("canceling statement due to statement timeout")
