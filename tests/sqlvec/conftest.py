"""Fixtures shared by the engine's in-process tests."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.storage.compaction import CompactionPolicy
from sqlvec.storage.store import StoreOptions

# Keeps each load in its own sealed segment through CREATE INDEX (which otherwise merges the
# segments no index covers yet into one): for tests of how work spans several segments.
SEGMENT_PER_LOAD = CompactionPolicy(min_merge_unindexed=1 << 30)


def segment_per_load(seal_rows: int) -> StoreOptions:
    """In-process store options (no background threads) with `SEGMENT_PER_LOAD`."""
    return StoreOptions(seal_rows=seal_rows, background=False, compaction=SEGMENT_PER_LOAD)


@pytest.fixture(scope="module")
def schema_session(tmp_path_factory, request):
    """A session on a fresh database where the test module's `SCHEMA` statements have run:
    the module's tables, shared by its tests."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    db = Database.open(str(tmp_path_factory.mktemp(name) / "data"))
    s = db.connect()
    for statement in request.module.SCHEMA:
        s.execute_one(statement)
    yield s
    s.close()
    db.close()
