"""SQL cursors: DECLARE name CURSOR [WITH HOLD] FOR query, FETCH, MOVE, CLOSE.

The query runs at DECLARE against the snapshot of that moment and its rows are kept (Arrow)
until CLOSE, the end of the transaction, or, WITH HOLD, the end of the session. Cursors scroll
forward only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.session.results import PreparedStatement, Result, ResultColumn
from sqlvec.sql.utility import Utility

if TYPE_CHECKING:
    from sqlvec.session.core import Session


@dataclass
class Cursor:
    """A declared cursor: its result, computed at DECLARE, and the position FETCH and MOVE go
    from."""

    columns: list[ResultColumn] | None
    table: pa.Table | None
    hold: bool = False
    position: int = 0  # rows before the cursor (0: before the first row)

    def window(self, direction: str) -> tuple[int, int]:
        """Rows [start, stop) a FETCH in `direction` returns; moves the cursor."""
        total = self.table.num_rows if self.table is not None else 0
        d = " ".join(direction.lower().split())
        if d in ("all", "forward all"):
            count = total
        elif d in ("next", "forward"):
            count = 1
        elif d.startswith("forward "):
            count = int(d.split()[1])
        elif d.lstrip("-").isdigit():
            count = int(d)
        elif d == "first" or d == "absolute 1":
            self.position = 0
            count = 1
        elif d.startswith("absolute "):
            self.position = max(0, min(int(d.split()[1]) - 1, total))
            count = 1
        else:
            raise FeatureNotSupported(f"FETCH {direction.upper()} is not supported "
                                      "(cursors scroll forward only)")
        if count < 0:
            raise FeatureNotSupported("backward FETCH is not supported (cursors scroll forward only)")
        start = min(self.position, total)
        stop = min(start + count, total)
        self.position = stop
        return start, stop


def declare(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """DECLARE: runs the query and keeps its rows under the name; without HOLD it needs a
    transaction block, as in PostgreSQL."""
    name = u.name or ""
    if name in session.cursors:
        raise SqlVecError(f'cursor "{name}" already exists', sqlstate="42P03")
    if not u.local and not session.in_block:
        raise SqlVecError("DECLARE CURSOR can only be used in transaction blocks",
                          sqlstate="25P01")
    result = session._run(prepared.compiled, params, 0)  # type: ignore[arg-type]
    session.cursors[name] = Cursor(result.columns, result.table, hold=u.local)
    return Result("DECLARE CURSOR")


def fetch(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """FETCH, or MOVE (the option "move"): the cursor moves, MOVE returns no rows."""
    cursor = session.cursors.get(u.name or "")
    if cursor is None:
        raise SqlVecError(f'cursor "{u.name}" does not exist', sqlstate="34000")
    start, stop = cursor.window(u.value or "next")
    if u.options == ("move",):
        return Result(f"MOVE {max(stop - start, 0)}")
    rows = cursor.table.slice(start, max(stop - start, 0)) if cursor.table is not None else None
    return Result(f"FETCH {0 if rows is None else rows.num_rows}", cursor.columns, rows)


def close(session: Session, u: Utility, prepared: PreparedStatement, params: list) -> Result:
    """CLOSE name or CLOSE ALL; closing a cursor that does not exist is 34000."""
    if u.name == "all":
        session.cursors.clear()
        return Result("CLOSE CURSOR ALL")
    if session.cursors.pop(u.name or "", None) is None:
        raise SqlVecError(f'cursor "{u.name}" does not exist', sqlstate="34000")
    return Result("CLOSE CURSOR")
