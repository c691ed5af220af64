"""Parse and plan one statement (what `Session.prepare` does on a plan-cache miss).

COPY and the utility statements are recognised from the text (`sql/copy.py`,
`sql/utility.py`); everything else is parsed by the dialect, its identifiers normalised
(unquoted: lower case), and planned: queries into an operator tree, writes into a WritePlan,
DDL kept as its syntax tree.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from sqlvec.catalog.catalog import note_resolved
from sqlvec.catalog.settings import CANONICAL
from sqlvec.errors import FeatureNotSupported, SqlVecError

# Execution and planning symbols, kept together.
from sqlvec.execution import alter, sequence_ddl
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.dml import plan_delete, plan_insert, plan_update
from sqlvec.execution.expressions import CompileEnv
from sqlvec.execution.foreign_key_ddl import referencing
from sqlvec.execution.foreign_keys import involved
from sqlvec.execution.scalar_row import scalar_row
from sqlvec.execution.vector_search import fuse_top_k
from sqlvec.execution.views import select_into, unsupported_view_kind
from sqlvec.plan.bind import bind_plan
from sqlvec.plan.planner import PlanContext, Planner
from sqlvec.plan.rules import optimize
from sqlvec.session import matviews, queries
from sqlvec.session.live_reads import reads_live_state_only
from sqlvec.session.results import PreparedStatement, ResultColumn, StatementKind
from sqlvec.sql import utility
from sqlvec.sql.copy import parse_copy
from sqlvec.sql.dialect import parse_one
from sqlvec.sql.statements import first_word, strip_comments
from sqlvec.sql.utility import Utility, UtilityKind
from sqlvec.storage.schema import ConstraintDef, TableDef
from sqlvec.storage.store import Store
from sqlvec.storage.table import Table
from sqlvec.types import SqlType

if TYPE_CHECKING:
    from sqlvec.session.core import Session

_QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values, exp.Subquery)
_WRITES = {exp.Insert: plan_insert, exp.Update: plan_update, exp.Delete: plan_delete}
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Comment)
# Transaction control that sqlglot parses itself (the usual spellings are utility statements).
_TRANSACTIONS = {exp.Transaction: UtilityKind.BEGIN, exp.Commit: UtilityKind.COMMIT,
                 exp.Rollback: UtilityKind.ROLLBACK}


def plan_statement(session: Session, sql: str, given: dict[int, SqlType]) -> PreparedStatement:
    """`sql` (one statement) prepared; `given` maps parameter numbers to declared types."""
    if not strip_comments(sql).strip():
        return PreparedStatement(sql, [], None, StatementKind.EMPTY)
    if first_word(sql) == "copy":
        return PreparedStatement(sql, [], None, StatementKind.COPY, copy=parse_copy(sql))
    u = utility.recognise(sql)
    if u is not None:
        return _plan_utility(session, sql, u, given)
    if first_word(sql) in ("alter", "create"):
        text = strip_comments(sql).strip().rstrip(";")
        command = alter.recognise(text) if first_word(sql) == "alter" else \
            sequence_ddl.recognise_create(text)
        if command is not None:
            return PreparedStatement(sql, [], None, StatementKind.DDL, ast=command)
    ast = normalize_identifiers(parse_one(sql), dialect="postgres")
    return plan_ast(session, sql, ast, given)


# What a constant query's select list may hold: literals, NULL, true/false, a minus sign,
# parentheses and column aliases. Nothing that reads a table, a setting, the clock or the
# catalog (no function, no cast, no parameter), so the result is the same on every run.
_CONSTANT_NODES = (exp.Literal, exp.Null, exp.Boolean, exp.Neg, exp.Paren, exp.Alias,
                   exp.Identifier)


def constant_select(ast: exp.Expression) -> bool:
    """Whether `ast` is a SELECT of literals only, with no FROM or any other clause (`SELECT 1`,
    `SELECT 'a' AS x, NULL`): a query whose result its text alone decides."""
    if type(ast) is not exp.Select or not ast.expressions:
        return False
    if any(value for key, value in ast.args.items() if key != "expressions"):
        return False
    return all(isinstance(node, _CONSTANT_NODES)
               for expression in ast.expressions for node in expression.walk())


def plan_ast(session: Session, sql: str, ast: exp.Expression,
             given: dict[int, SqlType]) -> PreparedStatement:
    """Plan one parsed statement into a PreparedStatement: queries and writes compiled now,
    utilities and DDL kept for their handlers."""
    if isinstance(ast, exp.Select) and ast.args.get("into") is not None:
        return PreparedStatement(sql, [], None, StatementKind.DDL, ast=select_into(ast))
    if isinstance(ast, _QUERIES):
        env = CompileEnv(param_types=dict(given), build_subplan=None,
                         functions=session.database.functions)
        planner = Planner(plan_context(session))
        locking = queries.locking(ast, planner)
        if locking is not None:  # the locked table's row id, as a last output column
            ast = locking.with_row_id(ast)
        plan = bind_plan(optimize(planner.plan_query(ast)))
        builder = Builder(env)
        env.build_subplan = builder.subplan
        operator = builder.build(plan)
        columns = [ResultColumn(f.name, f.type if f.type.name != "unknown" else V.TEXT,
                                f.source[0], f.source[1])
                   for f, t in zip(operator.fields, operator.types) if not f.hidden]
        if locking is not None:
            columns.pop()
            locking.fields = operator.fields[:-1]
        params = param_list(env, ast)
        constant = not params and constant_select(ast)
        return PreparedStatement(sql, params, columns, StatementKind.QUERY,
                                 compiled=(plan, operator), constant=constant,
                                 live=reads_live_state_only(ast),
                                 fused=None if locking else fuse_top_k(operator, columns),
                                 locking=locking,
                                 scalar=None if constant else scalar_row(operator, params))
    planner_fn = _WRITES.get(type(ast))
    if planner_fn is not None:
        env = CompileEnv(param_types=dict(given), functions=session.database.functions)
        builder = Builder(env)
        env.build_subplan = builder.subplan
        write = planner_fn(ast, Planner(plan_context(session)), builder)
        note_resolved(foreign_key_reach(session.store, write.table, write.kind,
                                        _set_columns(ast)))
        columns = None
        if write.returning_fields is not None:
            columns = [ResultColumn(f.name, f.type or V.TEXT, f.source[0], f.source[1])
                       for f in write.returning_fields]
        param_types = param_list(env, ast)
        if write.fast is not None:
            write.fast.bind(param_types, write.returning is not None)
        if write.by_key is not None and write.by_key.scalar is not None:
            write.by_key.scalar.bind(param_types)
        return PreparedStatement(sql, param_types, columns, StatementKind.WRITE, compiled=write)
    if isinstance(ast, _DDL):
        return PreparedStatement(sql, [], None, StatementKind.DDL, ast=ast)
    kind = _TRANSACTIONS.get(type(ast))
    if kind is not None:
        return PreparedStatement(sql, [], None, StatementKind.UTILITY, utility=Utility(kind))
    if isinstance(ast, exp.Command) and ast.this.upper() == "ALTER":
        # SET SCHEMA, ALTER SEQUENCE ...: recognised from their text (execution/alter.py).
        return PreparedStatement(sql, [], None, StatementKind.DDL, ast=ast)
    if isinstance(ast, exp.Command) and ast.this.upper() == "COMMENT" and \
            comment_on_extension(ast) is not None:
        return PreparedStatement(sql, [], None, StatementKind.DDL, ast=ast)
    if isinstance(ast, exp.Command) and matviews.recognised(ast):
        return PreparedStatement(sql, [], None, StatementKind.DDL, ast=ast)
    if isinstance(ast, exp.Command):
        construct = unsupported_view_kind(ast)
        if construct is not None:
            raise FeatureNotSupported(f"{construct} are not supported")
        raise FeatureNotSupported(f"{ast.this} statements are not supported")
    raise FeatureNotSupported(f"{type(ast).__name__.upper()} statements are not supported")


def _set_columns(ast: exp.Expression) -> frozenset[str] | None:
    """The columns an UPDATE (or INSERT ... ON CONFLICT DO UPDATE) sets; None: no SET."""
    conflict = ast.args.get("conflict") if isinstance(ast, exp.Insert) else None
    sets = ast.expressions if isinstance(ast, exp.Update) else \
        (conflict.expressions if conflict is not None else None)
    if not sets:
        return None
    return frozenset(c.name for eq in sets for c in eq.this.find_all(exp.Column))


def foreign_key_reach(store: Store, table: Table, kind: str,
                      updated: frozenset[str] | None) -> set[int]:
    """The tables a write of `table` reaches through foreign keys: those its new keys are
    looked up in (INSERT, or an UPDATE of a foreign key's columns), and those referencing the
    keys it removes (DELETE, or an UPDATE of a referenced key), on through the writes of
    their CASCADE / SET NULL / SET DEFAULT actions. PostgreSQL's checks and actions lock them
    (RowShareLock, RowExclusiveLock), so the statement queues behind a schema change of one
    of them. `updated`: the columns an UPDATE (or ON CONFLICT DO UPDATE) sets."""
    if not involved(store, table):
        return set()
    out = referenced_tables(table.def_, None) if kind == "INSERT" else set()
    # Rows of a table deleted (None) or with those columns set, by the statement or an action.
    writes = [(table.def_, None if kind == "DELETE" else updated)] \
        if kind == "DELETE" or updated else []
    seen: set[tuple[int, frozenset[str] | None]] = set()
    while writes:
        d, columns = writes.pop()
        if (d.id, columns) in seen:
            continue
        seen.add((d.id, columns))
        if columns is not None:
            out |= referenced_tables(d, columns)
        for child, con in referencing(store, d.id):
            if columns is None or columns & set(con.ref_columns):
                out.add(child.id)
                writes.extend(_action_writes(child, con, columns is None))
    return out


def referenced_tables(d: TableDef, columns: frozenset[str] | None) -> set[int]:
    """The tables referenced by the foreign keys of `d` over `columns` (None: all of them)."""
    return {c.ref_table for c in d.constraints if c.kind == "f" and c.ref_table is not None
            and (columns is None or columns & set(c.columns))}


def _action_writes(child: TableDef, con: ConstraintDef,
                   deleted: bool) -> list[tuple[TableDef, frozenset[str] | None]]:
    """What `con`'s action writes in `child` when keys it references are deleted (or
    updated): its rows deleted (None), or those columns set."""
    action = con.on_delete if deleted else con.on_update
    if action == "c":
        return [(child, None if deleted else frozenset(con.columns))]
    if action in ("n", "d"):
        return [(child, frozenset((con.delete_set_columns if deleted else ()) or con.columns))]
    return []


_COMMENT_ON_EXTENSION = re.compile(
    r"\s*ON\s+EXTENSION\s+(?P<name>\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*)\s+IS\s+"
    r"(?:'(?P<text>(?:[^']|'')*)'|NULL)\s*;?\s*$", re.I | re.S)


def comment_on_extension(ast: exp.Command) -> tuple[str, str | None] | None:
    """(extension, comment or None) of `COMMENT ON EXTENSION name IS '…'`, which sqlglot keeps
    as text (pg_dump writes one for each extension with a comment), or None."""
    body = ast.expression if isinstance(ast.expression, str) else \
        (ast.expression.name if ast.expression is not None else "")
    m = _COMMENT_ON_EXTENSION.match(body)
    if m is None:
        return None
    name = m["name"][1:-1].replace('""', '"') if m["name"].startswith('"') else m["name"].lower()
    return name, None if m["text"] is None else m["text"].replace("''", "'")


def plan_context(session: Session) -> PlanContext:
    """What the planner needs from the session: catalog, search path and the virtual tables."""
    return PlanContext(session.catalog, session.search_path,
                       virtual=session.database.virtual_fields)


def _plan_utility(session: Session, sql: str, u: Utility,
                  given: dict[int, SqlType]) -> PreparedStatement:
    if u.kind is UtilityKind.EXPLAIN:
        return _plan_explain(session, sql, u, given)
    if u.kind is UtilityKind.DECLARE:
        inner = plan_statement(session, u.body or "", given)
        if inner.kind is not StatementKind.QUERY:
            raise SqlVecError("cursor can only scan a query", sqlstate="42P11")
        return PreparedStatement(sql, inner.param_types, None, StatementKind.UTILITY,
                                 compiled=inner, utility=u)
    return PreparedStatement(sql, [], _utility_columns(session, u), StatementKind.UTILITY,
                             utility=u)


def _utility_columns(session: Session, u: Utility) -> list[ResultColumn] | None:
    """The columns a utility statement returns (Describe needs them before it runs)."""
    if u.kind is UtilityKind.FETCH:
        cursor = session.cursors.get(u.name or "")
        return cursor.columns if cursor is not None else None
    if u.kind is UtilityKind.EXECUTE:
        stmt = session.prepared.get(u.name or "")
        return stmt.columns if stmt is not None else None
    if u.kind is not UtilityKind.SHOW:
        return None
    if u.name == "all":
        return [ResultColumn("name", V.TEXT), ResultColumn("setting", V.TEXT),
                ResultColumn("description", V.TEXT)]
    name = SHOW_ALIASES.get(u.name or "", u.name or "")
    return [ResultColumn(CANONICAL.get(name.lower(), name), V.TEXT)]


# SHOW's multi-word names and the settings they read.
SHOW_ALIASES = {"transaction isolation level": "transaction_isolation", "time zone": "TimeZone"}


def _plan_explain(session: Session, sql: str, u: Utility,
                  given: dict[int, SqlType]) -> PreparedStatement:
    options, body = utility.explain_options(u.body or "")
    inner = plan_statement(session, body, given)
    if inner.kind not in (StatementKind.QUERY, StatementKind.WRITE):
        raise FeatureNotSupported("EXPLAIN of this statement is not supported")
    fmt = options.get("format", "text")
    col = ResultColumn("QUERY PLAN", SqlType("json") if fmt == "json" else V.TEXT)
    return PreparedStatement(sql, inner.param_types, [col], StatementKind.EXPLAIN,
                             compiled=inner, explain=options)


def param_list(env: CompileEnv, ast: exp.Expression) -> list[SqlType]:
    """The statement's parameter types, $1 first: as many as the highest $n written (or
    declared); those the context does not determine are text, as PostgreSQL's unknown. A number
    below the highest that is neither written nor declared has no type at all (42P18)."""
    written = parameter_numbers(ast)
    count = max(max(env.param_types, default=0), max(written, default=0))
    for n in range(1, count + 1):
        if n not in env.param_types and n not in written:
            raise SqlVecError(f"could not determine data type of parameter ${n}",
                              sqlstate="42P18")
    return [env.param_types.get(i + 1, V.TEXT) for i in range(count)]


def parameter_numbers(ast: exp.Expression) -> set[int]:
    """The n of every `$n` in a statement."""
    return {int(p.this.this) for p in ast.find_all(exp.Parameter)
            if isinstance(p.this, exp.Literal) and str(p.this.this).isdigit()}
