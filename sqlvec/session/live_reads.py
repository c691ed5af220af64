"""Queries of the server's live state, which run without the DDL lock (ddl_lock.py).

While a transaction block's schema changes are open every other statement that reads the
database waits for its end. The statements an operator runs to find out why are not among them
in PostgreSQL, and here neither: a SELECT reading nothing but the tables of the live state
(pg_stat_activity, pg_locks, pg_settings, pg_stat_statements, the progress views of CREATE
INDEX and COPY: `virtual.LIVE`) and calling only functions of sessions, settings, the clock
and its input (`pg_blocking_pids`, `pg_terminate_backend`, `current_setting`, `version`,
aggregates, ...) reads no table data and no catalog object the block can be changing, so it
is planned and run without the lock.

The test is on the statement's syntax, before any name is resolved, and conservative: any other
relation (a user table, a view, a sequence, pg_class, a CTE), a function outside the list, a
cast to a type that is not built in (`::regclass` reads the catalog), SELECT ... INTO or a
locking clause keeps the statement waiting. A name that resolves to a user table after all (one
named `pg_locks` on the search path) makes the planner plan it again under the lock
(`Session._plan`).
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from sqlvec.catalog import functions
from sqlvec.catalog.virtual import LIVE
from sqlvec.errors import SqlVecError
from sqlvec.sql.dialect import parse_one
from sqlvec.sql.statements import first_word

# Scalar functions (those the dialect parses as `Anonymous`) that read sessions, settings, the
# clock or their arguments only; aggregates and window functions read their input rows only.
LIVE_FUNCTIONS = frozenset((
    "pg_backend_pid", "pg_blocking_pids", "pg_cancel_backend", "pg_terminate_backend",
    "current_setting", "version", "now", "clock_timestamp", "statement_timestamp",
    "transaction_timestamp", "timeofday", "current_database", "current_catalog",
    "pg_postmaster_start_time", "cardinality", "array_length", "array_to_string",
    "pg_size_pretty", "age", "date_trunc", "date_part", "coalesce", "nullif", "greatest",
    "least", "lower", "upper", "length", "left", "right", "substr", "substring", "concat",
    "round", "abs", "unnest"))
_ROW_FUNCTIONS = (functions.Kind.AGGREGATE, functions.Kind.WINDOW)

_QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.Paren)


def reads_live_state_only(ast: exp.Expression) -> bool:
    """Whether the query `ast` reads nothing but the server's live state (see above)."""
    if not isinstance(ast, _QUERIES):
        return False
    return all(_live_node(node) for node in ast.walk())


def live_query_text(sql: str) -> bool:
    """`reads_live_state_only` of a statement's text, before it is planned (a SELECT that does
    not parse is not one: its error comes from planning, under the lock)."""
    if first_word(sql) != "select":
        return False
    try:
        ast = normalize_identifiers(parse_one(sql), dialect="postgres")
    except (SqlVecError, ValueError):
        return False
    return reads_live_state_only(ast)


def _live_node(node: exp.Expression) -> bool:
    if isinstance(node, exp.Select):
        return node.args.get("into") is None and not node.args.get("locks")
    if isinstance(node, exp.Table):
        return not isinstance(node.this, exp.Identifier) or (
            node.name in LIVE and node.db in ("", "pg_catalog") and not node.catalog)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        return name in LIVE_FUNCTIONS or functions.kind_of(name) in _ROW_FUNCTIONS
    if isinstance(node, exp.DataType):
        return node.this is not exp.DataType.Type.USERDEFINED
    return not isinstance(node, (exp.With, exp.Dot, exp.Command))
