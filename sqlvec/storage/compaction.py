"""Compaction: merge small segments and drop deleted rows, in the background.

Policy (`pick_segments`, pure: which segments to merge) is separate from work (`run`: read the
live rows, write one new segment, build its indexes, then swap it in with a new manifest version).
Segments with no vector index built yet (`pick_unindexed`: the rows of several loads, before a
CREATE INDEX) are merged as soon as two are adjacent: rewriting them costs only I/O, and the
index is then built once, as one graph that a top-k searches once, instead of one per segment.
Queries running meanwhile keep their snapshot of the old segments; deletes that land on the old
segments while a merge runs are carried over to the new one when it is swapped in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sqlvec.storage import access_methods
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.schema import ROWID
from sqlvec.storage.segment import Segment
from sqlvec.storage.table import conform_batch

if TYPE_CHECKING:
    from sqlvec.storage.store import Store
    from sqlvec.storage.table import Table


@dataclass(frozen=True)
class CompactionPolicy:
    """When segments are worth rewriting."""

    target_rows: int = 1 << 20  # a merged segment holds at most this many live rows
    small_fraction: float = 0.5  # segments under target_rows * this are "small"
    min_merge: int = 4  # merge small segments only when at least this many are adjacent
    min_merge_unindexed: int = 2  # ...or this many, none of them with a vector index built yet
    deleted_ratio: float = 0.2  # rewrite a segment whose deleted share reaches this


def _settled(table: Table) -> tuple[list[Segment], dict[int, DeleteBitmap]]:
    """The sealed segments a merge may take (file written, seal committed), with their deletes."""
    with table.lock:
        segments = [s for s in table.sealed
                    if s.path is not None and not any(s is p for p in table.sealing)]
        return segments, {s.id: table.deletes[s.id] for s in segments}


def _unindexed(table: Table, seg: Segment) -> bool:
    """Whether no vector index of the table is built on `seg` (nothing a merge would rebuild)."""
    return all(seg.index(ix.name) is None for ix in access_methods.vector_indexes(table.def_))


def pick_unindexed(table: Table, policy: CompactionPolicy) -> list[list[Segment]]:
    """Runs of adjacent segments without any vector index built, at least
    `min_merge_unindexed` long and at most `target_rows` live rows each: merged before an
    index is built on them, so that it is built once over all their rows."""
    segments, deletes = _settled(table)
    groups: list[list[Segment]] = []
    run: list[Segment] = []
    run_rows = 0
    for seg in segments:
        live = seg.n_rows - deletes[seg.id].count
        if _unindexed(table, seg) and run_rows + live <= policy.target_rows:
            run.append(seg)
            run_rows += live
            continue
        if len(run) >= policy.min_merge_unindexed:
            groups.append(run)
        run, run_rows = ([seg], live) if _unindexed(table, seg) else ([], 0)
    if len(run) >= policy.min_merge_unindexed:
        groups.append(run)
    return groups


def pick_segments(table: Table, policy: CompactionPolicy) -> list[list[Segment]]:
    """Groups of sealed segments to merge, each into one new segment.

    A group is a run of adjacent small segments (at least `min_merge`, at most `target_rows`
    live rows together), or a single segment with many deleted rows. A table with a vector
    index also merges runs of segments not indexed yet (`pick_unindexed`); one without waits
    for its CREATE INDEX to do that, rather than rewriting a growing run at every seal."""
    segments, deletes = _settled(table)
    groups: list[list[Segment]] = []
    if access_methods.vector_indexes(table.def_):
        groups = pick_unindexed(table, policy)
    taken = {s.id for g in groups for s in g}
    run: list[Segment] = []
    run_rows = 0
    small = policy.target_rows * policy.small_fraction

    def close_run() -> None:
        nonlocal run, run_rows
        if len(run) >= policy.min_merge:
            groups.append(run)
        run, run_rows = [], 0

    for seg in segments:
        if seg.id in taken:  # merged with its unindexed neighbours: a run does not span it
            close_run()
            continue
        live = seg.n_rows - deletes[seg.id].count
        heavy = seg.n_rows and deletes[seg.id].count / seg.n_rows >= policy.deleted_ratio
        if live < small and run_rows + live <= policy.target_rows:
            run.append(seg)
            run_rows += live
            continue
        close_run()
        if heavy:
            groups.append([seg])
        elif live < small:
            run, run_rows = [seg], live
    close_run()
    # Segments with many deletes inside a short run still deserve a rewrite.
    grouped = {s.id for g in groups for s in g}
    for seg in segments:
        d = deletes[seg.id]
        if seg.id not in grouped and seg.n_rows and d.count / seg.n_rows >= policy.deleted_ratio:
            groups.append([seg])
    return groups


def run(store: Store, table: Table, group: list[Segment], *, build_indexes: bool = True) -> bool:
    """Merge `group` into one segment (or none, when every row is deleted) and commit it.
    Without `build_indexes` its vector indexes are left to the caller (CREATE INDEX, which
    reports the build's progress) or to the background builder."""
    with table.lock:
        if any(s not in table.sealed for s in group):
            return False
        started: dict[int, DeleteBitmap] = {s.id: table.deletes[s.id] for s in group}
    parts = []
    for seg in group:
        data = seg.table
        if started[seg.id].count:
            data = data.filter(pa.array(started[seg.id].live_mask()))
        parts.append(conform_batch(data, table.def_))
    merged = pa.concat_tables(parts) if parts else None
    new = None
    if merged is not None and merged.num_rows:
        rowids = merged.column(ROWID).to_numpy()
        if np.any(np.diff(rowids) < 0):
            merged = merged.take(pa.array(np.argsort(rowids, kind="stable")))
        with table.lock:
            seg_id = table.next_segment_id
            table.next_segment_id += 1
        new = Segment(seg_id, merged.combine_chunks(), None)
        try:
            store.write_segment(table, new)
            for index in access_methods.vector_indexes(table.def_) if build_indexes else ():
                store.build_detached(table, new, index)
        except BaseException:  # e.g. a full disk: the old segments stay, nothing is lost
            store.release_segment_files(new)
            raise
    # If the manifest commit fails the new segment is already in memory: its files stay
    # protected from garbage collection until a later manifest lists them.
    ok = store.replace_segments(table, group, new, started)
    store.release_segment_files(new)
    return ok
