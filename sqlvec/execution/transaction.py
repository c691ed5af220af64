"""A session's uncommitted writes: buffered privately, visible to itself, committed atomically.

Inserted rows get provisional negative row ids so that a later UPDATE or DELETE in the same
transaction can find them; rows of committed data deleted by the transaction are remembered by
row id. Scans of a table the transaction touched read through `TableOverlay.merge`. COMMIT turns
the buffer into one list of storage ops, written as one WAL record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import UniqueViolation
from sqlvec.storage.schema import ROWID
from sqlvec.storage.table import Table, TableSnapshot, _key_list
from sqlvec.storage.wal import DeleteOp, InsertOp, TruncateOp


@dataclass
class TableOverlay:
    table: Table
    inserted: list[pa.Table] = field(default_factory=list)  # logical columns + _rowid (< 0)
    deleted: set[int] = field(default_factory=set)  # committed row ids
    truncated: bool = False

    def inserted_table(self) -> pa.Table | None:
        parts = [t for t in self.inserted if t.num_rows]
        if not parts:
            return None
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def merge(self, parts: list[pa.Table], snapshot: TableSnapshot) -> list[pa.Table]:
        """Committed rows (as scanned) without our deletes, plus our inserts."""
        out = []
        if not self.truncated:
            dead = pa.array(sorted(self.deleted), pa.int64()) if self.deleted else None
            for part in parts:
                if dead is not None:
                    part = part.filter(pc.invert(pc.is_in(part.column(ROWID), value_set=dead)))
                out.append(part)
        ins = self.inserted_table()
        if ins is not None:
            schema = out[0].schema if out else None
            if schema is not None and not ins.schema.equals(schema):
                ins = ins.cast(schema)
            out.append(ins)
        return out

    def keys(self) -> set:
        ins = self.inserted_table()
        if ins is None or not self.table.def_.primary_key:
            return set()
        return set(_key_list(ins, self.table.def_.primary_key))


class Transaction:
    """Buffered writes of one session; `ddl` records statements that cannot be rolled back."""

    def __init__(self) -> None:
        self.overlays: dict[int, TableOverlay] = {}
        self._next_provisional = -1
        self.ddl = False

    @property
    def empty(self) -> bool:
        return not any(o.inserted or o.deleted or o.truncated for o in self.overlays.values())

    def table_overlay(self, table_id: int) -> TableOverlay | None:
        return self.overlays.get(table_id)

    def _overlay(self, table: Table) -> TableOverlay:
        overlay = self.overlays.get(table.id)
        if overlay is None:
            overlay = self.overlays[table.id] = TableOverlay(table)
        return overlay

    def insert(self, table: Table, rows: pa.Table) -> pa.Table:
        """Buffer rows (logical schema); returns them with their provisional row ids."""
        overlay = self._overlay(table)
        n = rows.num_rows
        ids = np.arange(self._next_provisional, self._next_provisional - n, -1, dtype=np.int64)
        self._next_provisional -= n
        if table.def_.primary_key and n:
            self._check_keys(table, overlay, rows)
        with_ids = rows.append_column(ROWID, pa.array(ids))
        overlay.inserted.append(with_ids)
        return with_ids

    def _check_keys(self, table: Table, overlay: TableOverlay, rows: pa.Table) -> None:
        keys = _key_list(rows, table.def_.primary_key)
        committed = {k for k, rowid in table.pk_map.items() if rowid not in overlay.deleted} \
            if not overlay.truncated else set()
        seen = overlay.keys()
        batch: set = set()
        for key in keys:
            if key in batch or key in seen or key in committed:
                cols = ", ".join(table.def_.primary_key)
                vals = ", ".join("NULL" if v is None else str(v)
                                 for v in (key if isinstance(key, tuple) else (key,)))
                raise UniqueViolation(
                    f'duplicate key value violates unique constraint "{table.def_.name}_pkey"',
                    detail=f"Key ({cols})=({vals}) already exists.")
            batch.add(key)

    def delete(self, table: Table, rowids: np.ndarray) -> None:
        overlay = self._overlay(table)
        rowids = np.asarray(rowids, dtype=np.int64)
        committed = rowids[rowids >= 0]
        provisional = rowids[rowids < 0]
        overlay.deleted.update(committed.tolist())
        if provisional.size:
            dead = pa.array(provisional)
            overlay.inserted = [t.filter(pc.invert(pc.is_in(t.column(ROWID), value_set=dead)))
                                for t in overlay.inserted]

    def truncate(self, table: Table) -> None:
        overlay = self._overlay(table)
        overlay.truncated = True
        overlay.inserted = []
        overlay.deleted = set()

    def ops(self) -> list:
        """The storage ops that commit this transaction."""
        ops: list = []
        for table_id, overlay in self.overlays.items():
            if overlay.truncated:
                ops.append(TruncateOp(table_id))
            if overlay.deleted:
                ops.append(DeleteOp(table_id, np.array(sorted(overlay.deleted), dtype=np.int64)))
            ins = overlay.inserted_table()
            if ins is not None:
                ops.append(InsertOp(table_id, ins.drop_columns([ROWID])))
        return ops
