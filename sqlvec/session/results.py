"""What a session hands back: prepared statements, results and their column descriptions."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from sqlvec.errors import Notice
from sqlvec.sql.copy import CopyCommand
from sqlvec.sql.utility import Utility
from sqlvec.types import SqlType


class StatementKind(str, enum.Enum):
    """How a prepared statement runs (a str: `kind == "query"` reads as before). The session
    runs each kind through one handler (`core.RUNNERS`)."""

    QUERY = "query"  # SELECT, VALUES, set operations: a compiled operator tree
    WRITE = "write"  # INSERT, UPDATE, DELETE: a WritePlan
    DDL = "ddl"  # CREATE, DROP, ALTER, TRUNCATE, COMMENT: the syntax tree
    UTILITY = "utility"  # recognised from the text (sql/utility.py): a Utility
    EXPLAIN = "explain"  # the inner statement, planned
    COPY = "copy"  # COPY FROM STDIN / TO STDOUT: a CopyCommand the front end carries out
    EMPTY = "empty"  # only blanks and comments


@dataclass(frozen=True)
class ResultColumn:
    """What RowDescription needs for one column."""

    name: str
    type: SqlType
    table_oid: int = 0
    attnum: int = 0


@dataclass
class Result:
    """One statement's outcome: columns (None when it returns no rows), rows, command tag."""

    tag: str
    columns: list[ResultColumn] | None = None
    table: pa.Table | None = None
    notices: list[Notice] = field(default_factory=list)
    # Instead of `table`, from `Session.run_values` only: each column's Python values.
    values: list[list] | None = None

    @property
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows as Arrow record batches, as the wire encodes them."""
        if self.table is None:
            return iter(())
        return iter(self.table.to_batches())

    def rows(self) -> list[tuple]:
        """The rows as Python tuples (embedded use, tests)."""
        if self.table is None:
            return []
        cols = [c.to_pylist() for c in self.table.columns]
        return list(zip(*cols)) if cols else [() for _ in range(self.table.num_rows)]


@dataclass
class PreparedStatement:
    """A parsed, planned statement: what Parse and Describe need."""

    sql: str
    param_types: list[SqlType]
    columns: list[ResultColumn] | None
    kind: StatementKind
    compiled: object = None
    generation: int = -1  # the store's catalog generation it was planned in (-1: not cached)
    # The parameter type OIDs the client gave at Parse (0: left to the planner), with which
    # the statement is planned again after a catalog change.
    given_oids: tuple[int, ...] = ()
    search_path: str | None = None  # the search_path it was planned under
    # The ids of the tables its planning resolved: it runs holding them against schema
    # changes, which queue it meanwhile (ddl_lock.py).
    tables: frozenset[int] = frozenset()
    cache_clears: int = -1  # the plan cache's `clears` then (DDL, DISCARD empty the cache)
    utility: Utility | None = None
    ast: exp.Expression | None = None
    explain: dict | None = None
    copy: CopyCommand | None = None
    stats_key: tuple[int, str] | None = None  # pg_stat_statements' (queryid, text), once known
    # A query whose result is fixed by its text alone (`SELECT 1`: literals, no table, no
    # function, no parameter): run once, its table is kept here and returned by each run.
    constant: bool = False
    constant_table: pa.Table | None = None
    # A query of the server's live state only (pg_stat_activity, settings, ...): it runs without
    # the DDL lock, while another transaction's schema changes are open (live_reads.py).
    live: bool = False
    # A vector top-k under pass-through projections and LIMITs: the one-step form of its
    # operator tree (execution/vector_search.py FusedTopK), tried before the tree.
    fused: object = None
    # SELECT ... FOR UPDATE / FOR SHARE of one table: how its rows are locked (queries.py).
    locking: object = None
    # A one-row projection over no table with Python forms (execution/scalar_row.py
    # ScalarRow): its row computed from the parameters, tried before the tree by run_values.
    scalar: object = None


def renamed(table: pa.Table, visible: list[int], columns: list[ResultColumn] | None) -> pa.Table:
    """The `visible` columns of an operator's output under the result's column names."""
    if columns is None:
        return table
    cols = [table.column(i) for i in visible]
    names = [c.name for c in columns]
    if not cols:
        return pa.table({"_": pa.nulls(table.num_rows)}).drop_columns(["_"]) if table.num_rows else pa.table({})
    return pa.Table.from_arrays(cols, names=names)
