"""Fixtures shared by the engine's in-process tests."""

from __future__ import annotations

import ctypes
import mmap
import sys

import pytest

from sqlvec.database import Database
from sqlvec.memory import collapse_to_huge_pages
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


def huge_bytes_in(address: int, length: int) -> int:
    """AnonHugePages of the mappings overlapping `length` bytes at `address`, in bytes
    (/proc/self/smaps; the advice splits a mapping at the range it covers)."""
    inside, total = False, 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start < address + length and address < end
            elif inside and head == "AnonHugePages:":
                total += int(line.split()[1]) * 1024
    return total


def collapses_on_request() -> bool:
    """Whether this kernel moves a written private range onto huge pages when asked
    (`collapse_to_huge_pages`: Linux 6.1's MADV_COLLAPSE, transparent huge pages not off)."""
    if not sys.platform.startswith("linux"):
        return False
    size = 4 << 20
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buffer.write(b"\1" * size)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        return collapse_to_huge_pages(address, size) > 0
    finally:
        buffer.close()


needs_huge_pages = pytest.mark.skipif(not collapses_on_request(),
                                      reason="needs huge pages on request (MADV_COLLAPSE)")
