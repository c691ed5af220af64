"""Row lock modes of `storage/row_locks.py` on a real table: PostgreSQL's conflict table, a
lock upgraded since a savepoint going back to its mode, FOR KEY SHARE passing to the new
version of a row an UPDATE of other columns commits, and such a commit waiting for nothing;
one lock_timeout for waits that are one acquisition."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.storage.row_locks import (
    KEY_SHARE,
    NO_KEY_UPDATE,
    SHARE,
    UPDATE,
    LockHolder,
    RowLocked,
    held_mode,
    one_deadline,
    wait_for_end,
)
from sqlvec.storage.schema import ROWID
from sqlvec.storage.store import StoreOptions
from sqlvec.storage.wal import DeleteOp, InsertOp

MODES = [KEY_SHARE, SHARE, NO_KEY_UPDATE, UPDATE]
# PostgreSQL's "Conflicting Row-Level Locks": (held, wanted) pairs that conflict.
CONFLICTS = {(KEY_SHARE, UPDATE), (SHARE, NO_KEY_UPDATE), (SHARE, UPDATE),
             (NO_KEY_UPDATE, SHARE), (NO_KEY_UPDATE, NO_KEY_UPDATE), (NO_KEY_UPDATE, UPDATE),
             (UPDATE, KEY_SHARE), (UPDATE, SHARE), (UPDATE, NO_KEY_UPDATE), (UPDATE, UPDATE)}


def no_wait() -> tuple:
    return (lambda: None), 0, 1000


@pytest.fixture
def table(tmp_path):
    """A keyed table with rows 1 and 2, and the store."""
    with Database.open(str(tmp_path), options=StoreOptions(background=False)) as db:
        handle = db.create_table("t", {"id": "int4", "note": "text"}, primary_key=["id"])
        handle.insert({"id": [1, 2], "note": ["a", "b"]})
        yield handle.store.table(handle.table_id), handle.store


def rowid_of(table, key: int) -> int:
    rows = table.snapshot().scan(["id"], with_rowid=True)
    found = [r for part in rows for i, r in zip(part.column("id").to_pylist(),
                                                part.column(ROWID).to_pylist()) if i == key]
    return found[0]


@pytest.mark.parametrize("held", MODES)
@pytest.mark.parametrize("wanted", MODES)
def test_conflict_table(table, held, wanted):
    t, _ = table
    row = np.array([rowid_of(t, 1)])
    first, second = LockHolder(1, no_wait), LockHolder(2, no_wait)
    first.lock(t, row, mode=held)
    conflicts = (held, wanted) in CONFLICTS
    if conflicts:
        with pytest.raises(SqlVecError) as caught:
            second.lock(t, row, nowait=True, mode=wanted)
        assert caught.value.sqlstate == "55P03"
    else:
        second.lock(t, row, nowait=True, mode=wanted)
        assert held_mode(t.row_locks[row[0]], second) == wanted
    first.release()
    second.release()
    assert t.row_locks == {}


def test_rollback_to_a_savepoint_gives_back_the_mode_held_before(table):
    t, _ = table
    row = np.array([rowid_of(t, 1)])
    first, second = LockHolder(1, no_wait), LockHolder(2, no_wait)
    first.lock(t, row, mode=SHARE)
    mark = first.mark()
    first.lock(t, row, mode=UPDATE)
    assert held_mode(t.row_locks[row[0]], first) == UPDATE
    first.release_since(mark)
    assert held_mode(t.row_locks[row[0]], first) == SHARE
    second.lock(t, row, nowait=True, mode=SHARE)  # shared again
    with pytest.raises(SqlVecError):
        second.lock(t, row, nowait=True, mode=UPDATE)
    first.release()
    second.release()
    assert t.row_locks == {}


def update_note(store, t, key: int, note: str) -> None:
    """An autocommit UPDATE of row `key`'s other column (the new version keeps the key)."""
    rowid = rowid_of(t, key)
    store.commit([DeleteOp(t.id, np.array([rowid])),
                  InsertOp(t.id, pa.table({"id": pa.array([key], pa.int32()),
                                           "note": [note]}))])


def test_a_no_key_update_passes_key_share_locks_to_the_new_version(table):
    t, store = table
    reader = LockHolder(1, no_wait)
    reader.lock(t, np.array([rowid_of(t, 1)]), mode=KEY_SHARE)
    update_note(store, t, 1, "x")  # waits for nothing
    new = rowid_of(t, 1)
    assert held_mode(t.row_locks[new], reader) == KEY_SHARE
    with pytest.raises(RowLocked):  # a DELETE of the new version meets it
        store.commit([DeleteOp(t.id, np.array([new]))])
    reader.release()
    assert t.row_locks == {}
    store.commit([DeleteOp(t.id, np.array([new]))])


def test_a_key_update_meets_a_key_share_lock(table):
    t, store = table
    reader = LockHolder(1, no_wait)
    old = rowid_of(t, 1)
    reader.lock(t, np.array([old]), mode=KEY_SHARE)
    with pytest.raises(RowLocked):
        store.commit([DeleteOp(t.id, np.array([old])),
                      InsertOp(t.id, pa.table({"id": pa.array([7], pa.int32()),
                                               "note": ["a"]}))])
    reader.release()


def test_waits_of_one_acquisition_share_one_lock_timeout():
    """The second wait gets what the first left of lock_timeout: 55P03 once it is spent."""
    holder = LockHolder(1, no_wait)
    waiting = one_deadline(lambda: ((lambda: None), 300, 1000))
    start = time.monotonic()
    for _ in range(2):
        with pytest.raises(SqlVecError) as caught:
            wait_for_end(holder, None, waiting)
        assert caught.value.sqlstate == "55P03"
    assert 0.25 < time.monotonic() - start < 0.6  # (two whole timeouts: 0.6 s)
    assert one_deadline(no_wait)()[1] == 0  # no lock_timeout: none either
