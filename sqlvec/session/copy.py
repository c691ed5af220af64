"""COPY: the engine's side. The front end (the wire) moves the data in the statement's format;
the session names the columns COPY FROM fills, stores the decoded rows (`copy_in`), and runs
the query whose rows COPY TO sends (`copy_query`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.catalog.pg_stat import CopyProgress
from sqlvec.errors import FeatureNotSupported, InFailedTransaction, SqlVecError, UndefinedColumn
from sqlvec.execution import foreign_keys
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.expressions import CompileEnv, Frame
from sqlvec.execution.transaction import Transaction
from sqlvec.session.results import Result, ResultColumn
from sqlvec.sql.copy import CopyCommand
from sqlvec.storage.wal import InsertOp

if TYPE_CHECKING:
    from sqlvec.session.core import Session


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


def copy_in(session: Session, table: str, columns: list[str] | None, rows: pa.Table) -> int:
    """COPY ... FROM: insert decoded rows into `table` (name, optionally schema-qualified).

    `rows` has one column per name in `columns` (all table columns when None), either of the
    column's Arrow type or strings in PostgreSQL's text input format. Missing columns get
    their defaults. Inside a transaction block the rows are buffered like INSERT; otherwise
    they commit at once. Returns the row count."""
    from sqlvec.execution.dml import default_value
    from sqlvec.storage.table import cast_column

    if session.failed:
        raise InFailedTransaction(
            "current transaction is aborted, commands ignored until end of transaction block")
    schema, _, name = table.rpartition(".")
    target = session.catalog.table(name, schema or None, session.search_path)
    d = target.def_
    names = list(columns) if columns else d.column_names
    for n in names:
        if not d.has_column(n):
            raise UndefinedColumn(f'column "{n}" of relation "{d.name}" does not exist')
    if rows.num_columns != len(names):
        raise SqlVecError(f"COPY data has {rows.num_columns} columns, expected {len(names)}",
                          sqlstate="22P04")
    n_rows = rows.num_rows
    builder = Builder(CompileEnv(functions=session.database.functions))
    ctx = session._context([])
    frame = Frame(pa.table({"_": pa.nulls(n_rows)}).drop_columns(["_"]) if n_rows else
                  pa.table({}), ctx)
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
        default = default_value(col, builder)
        if default is None:
            arrays.append(pa.nulls(n_rows, arrow))
        else:
            arrays.append(V.as_array(default(frame), n_rows).cast(arrow))
    data = target.coerce(pa.Table.from_arrays(
        [a if isinstance(a, (pa.Array, pa.ChunkedArray)) else pa.array(a) for a in arrays],
        names=d.column_names))
    if foreign_keys.involved(session.store, target):  # checked at the end of the batch
        txn = session.txn if session.explicit else Transaction()
        assert txn is not None
        foreign_keys.run_statement(session.store, txn, lambda: txn.insert(target, data),
                                   not session.explicit)
        if not session.explicit:
            session.store.commit(txn.ops())
    elif session.explicit:
        assert session.txn is not None
        session.txn.insert(target, data)
    else:  # the commit checks keys against committed rows and within the batch itself
        session.store.commit([InsertOp(target.id, data)])
    target.stats.wrote("INSERT", n_rows)
    if isinstance(session.progress, CopyProgress):
        session.progress.tuples_processed += n_rows
    return n_rows
