"""Sessions: one per connection. The boundary the wire server talks to.

    Session.execute(sql)                   -> Iterator[Result]   (simple query protocol)
    Session.prepare(sql, param_type_oids)  -> PreparedStatement  (Parse / Describe)
    Session.run(prepared, params, max_rows)-> Result             (Bind / Execute)
    Session.cancel(), close(), transaction_status ("I" | "T" | "E"), settings

A statement is parsed and planned once per distinct text (the plan cache, invalidated by any
catalog change) and executed against a snapshot of each table it reads. Outside a transaction
block every statement commits on its own; inside BEGIN ... COMMIT writes are buffered in the
session and committed as one WAL record.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from sqlvec import stack
from sqlvec.errors import (
    ActiveSqlTransaction,
    AdminShutdown,
    FeatureNotSupported,
    InFailedTransaction,
    QueryCanceled,
    SerializationFailure,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
    UniqueViolation,
)
from sqlvec.execution import ddl
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.context import ExecContext, MemoryAccount
from sqlvec.execution.dml import WritePlan, eval_returning, plan_delete, plan_insert, plan_update
from sqlvec.execution.expressions import CompileEnv, Frame
from sqlvec.execution.operators import Operator
from sqlvec.execution.transaction import Transaction
from sqlvec.plan.planner import PlanContext, Planner
from sqlvec.plan.rules import optimize
from sqlvec.sql import utility
from sqlvec.sql.binder import Field
from sqlvec.sql.dialect import parse_one
from sqlvec.storage.store import return_free_memory
from sqlvec.storage.wal import InsertOp
from sqlvec.types import TYPES_BY_OID, SqlType

log = logging.getLogger("sqlvec.session")

from sqlvec.catalog.settings import (  # noqa: E402
    CANONICAL as _CANONICAL,
)
from sqlvec.catalog.settings import (  # noqa: E402
    DEFAULT_SETTINGS,
    REPORTED,
    SETTINGS,
    canonical_name,
    check_settable,
    lookup,
    parse_unit_setting,
    validate,
)

# Times an autocommit INSERT ... ON CONFLICT is run when it loses a race at commit.
UPSERT_ATTEMPTS = 10


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
    notices: list[str] = field(default_factory=list)
    suspended: bool = False  # Execute hit its row limit; the portal can be resumed

    @property
    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.table is None:
            return iter(())
        return iter(self.table.to_batches())

    def rows(self) -> list[tuple]:
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
    kind: str  # query | write | utility | ddl | empty
    compiled: object = None
    generation: int = -1
    utility: utility.Utility | None = None
    ast: exp.Expression | None = None
    explain: dict | None = None


class Session:
    """One client's session on one database."""

    _ids = itertools.count(1)

    def __init__(self, database, name: str = "postgres", user: str = "postgres",
                 settings: dict[str, str] | None = None) -> None:
        self.database = database
        self.database_name = name
        self.store = database.store(name)
        self.catalog = database.catalog(name)
        self.user = user
        self.pid = next(self._ids) + 1000
        self.settings = {**DEFAULT_SETTINGS, **database.server_settings,
                         "session_authorization": user,
                         "is_superuser": "on" if database.is_superuser(user) else "off"}
        self._defaults = dict(self.settings)  # what RESET goes back to
        self.terminated = False  # pg_terminate_backend: the session is to end
        self.on_terminate: Callable[[], None] | None = None  # set by the front end (the wire)
        self.changed: dict[str, str] = {}  # reported settings changed since last drained
        self._notices: list[str] = []  # raised while the current statement runs (`notice`)
        for k, v in (settings or {}).items():
            self.set(k, v)
        self.changed.clear()  # settings given at connection are the start, not changes
        self.txn: Transaction | None = None
        self.failed = False
        self.explicit = False
        self.prepared: dict[str, PreparedStatement] = {}  # SQL-level PREPARE
        self.cursors: dict[str, _Cursor] = {}  # DECLARE ... CURSOR
        self.savepoints: list[tuple[str, object]] = []  # (name, buffered writes then)
        self._plan_cache = PlanCache()
        self._limits: dict[str, tuple[str, int]] = {}  # settings with units: text, base units
        self._statement_memory: MemoryAccount | None = None  # of the running statement
        self._cancel = threading.Event()
        self._closed = False
        self.started = dt.datetime.now(dt.timezone.utc)
        self.current_query = ""
        self.state = "idle"
        database.register_session(self)

    # Properties -------------------------------------------------------------------------------------

    @property
    def transaction_status(self) -> str:
        """ReadyForQuery's status: I (idle), T (in a block), E (failed block)."""
        if self.failed:
            return "E"
        return "T" if self.explicit else "I"

    @property
    def search_path(self) -> list[str]:
        out = []
        for item in self.settings["search_path"].split(","):
            item = item.strip().strip('"')
            if item == "$user":
                item = self.user
            if item:
                out.append(item)
        return out

    def drain_changed_settings(self) -> dict[str, str]:
        out, self.changed = self.changed, {}
        return out

    # Settings ---------------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """SET name = value: checked as PostgreSQL's GUCs (settings.py), then stored."""
        key, value = validate(name, value)
        self.settings[key] = value
        if key in REPORTED:
            self.changed[key] = value

    def reset(self, name: str) -> None:
        if name == "all":
            for key, value in self._defaults.items():
                if self.settings.get(key) != value:
                    self.settings[key] = value
                    if key in REPORTED:
                        self.changed[key] = value
            return
        check_settable(name)
        key = canonical_name(name)
        if key not in self._defaults and key not in self.settings:
            try:
                lookup(name)  # 42704 / 42602 for a name neither declared nor set
            except UndefinedObject:
                if "." not in name:
                    raise  # a dotted name is a placeholder: resetting it is allowed
        self.settings[key] = self._defaults.get(key, "")
        if key in REPORTED:
            self.changed[key] = self.settings[key]

    # The simple query protocol ------------------------------------------------------------------------

    def execute(self, sql: str, params: list | None = None) -> Iterator[Result]:
        """Run every statement of `sql` in order (a generator: results come as they finish)."""
        statements = utility.split_with_offsets(sql)
        if not statements:
            yield Result("EMPTY")
            return
        for offset, text in statements:
            try:
                prepared = self.prepare(text)
                result = self.run(prepared, params or [])
            except SqlVecError as error:
                if error.position is not None and offset:
                    error.position += offset
                raise
            yield result

    def execute_one(self, sql: str, params: list | None = None) -> Result:
        results = list(self.execute(sql, params))
        return results[-1]

    # The extended query protocol ----------------------------------------------------------------------

    def prepare(self, sql: str, param_type_oids: list[int] | None = None) -> PreparedStatement:
        """Parse and plan `sql` (one statement); cached by text and given parameter types.

        A statement nested deeper than the engine can follow fails with 54001 (stack.py)."""
        try:
            return stack.run_deep(sql, lambda: self._prepare_cached(sql, param_type_oids))
        except RecursionError:
            pass  # raised below, outside this handler, so as not to keep the deep frames
        self._fail()
        raise stack.stack_depth_error()

    def _prepare_cached(self, sql: str, param_type_oids: list[int] | None) -> PreparedStatement:
        oids = tuple(param_type_oids or ())
        key = (sql, oids, self.settings["search_path"])
        cached = self._plan_cache.get(key)
        if cached is not None and cached.generation == self.store.generation:
            return cached
        given = {}
        for i, oid in enumerate(oids):
            if oid:
                info = TYPES_BY_OID.get(oid)
                if info is None:
                    raise UndefinedObject(f"type with OID {oid} does not exist")
                given[i + 1] = SqlType(info.typname)
        try:
            prepared = self._prepare(sql, given)
        except SqlVecError:
            self._fail()  # a statement that fails to parse or plan fails the block too
            raise
        if prepared.utility is not None and prepared.utility.kind in ("declare", "fetch", "close"):
            return prepared  # depends on the session's open cursors: never cached
        prepared.generation = self.store.generation
        self._plan_cache.put(key, prepared)
        return prepared

    def _prepare(self, sql: str, given: dict[int, SqlType]) -> PreparedStatement:
        if not utility.split(sql):
            return PreparedStatement(sql, [], None, "empty")
        cursor = _recognise_cursor(sql)
        if cursor is not None:
            columns = None
            if cursor.kind == "declare":
                inner = self._prepare(cursor.body or "", given)
                if inner.kind != "query":
                    raise SqlVecError("cursor can only scan a query", sqlstate="42P11")
                return PreparedStatement(sql, inner.param_types, None, "utility", compiled=inner,
                                         utility=cursor)
            if cursor.kind == "fetch" and cursor.name in self.cursors:
                columns = self.cursors[cursor.name].columns
            return PreparedStatement(sql, [], columns, "utility", utility=cursor)
        util = utility.recognise(sql)
        if util is not None:
            if util.kind == "explain":
                return self._prepare_explain(sql, util, given)
            if util.kind == "execute":
                return PreparedStatement(sql, [], self._describe_execute(util), "utility", utility=util)
            columns = _utility_columns(util, self)
            return PreparedStatement(sql, [], columns, "utility", utility=util)
        ast = normalize_identifiers(parse_one(sql), dialect="postgres")
        return self._prepare_ast(sql, ast, given)

    def _prepare_ast(self, sql: str, ast: exp.Expression, given: dict[int, SqlType]) -> PreparedStatement:
        if isinstance(ast, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values,
                            exp.Subquery)):
            env = CompileEnv(param_types=dict(given), build_subplan=None,
                             functions=self.database.functions)
            planner = Planner(self._plan_context())
            plan = optimize(planner.plan_query(ast))
            builder = Builder(env)
            env.build_subplan = builder.subplan
            operator = builder.build(plan)
            columns = [ResultColumn(f.name, f.type if f.type.name != "unknown" else V.TEXT,
                                    f.source[0], f.source[1])
                       for f, t in zip(operator.fields, operator.types) if not f.hidden]
            return PreparedStatement(sql, _param_list(env), columns, "query",
                                     compiled=(plan, operator))
        if isinstance(ast, (exp.Insert, exp.Update, exp.Delete)):
            env = CompileEnv(param_types=dict(given), functions=self.database.functions)
            builder = Builder(env)
            env.build_subplan = builder.subplan
            planner = Planner(self._plan_context())
            planner_fn = {exp.Insert: plan_insert, exp.Update: plan_update,
                          exp.Delete: plan_delete}[type(ast)]
            write = planner_fn(ast, planner, builder)
            columns = None
            if write.returning_fields is not None:
                columns = [ResultColumn(f.name, f.type or V.TEXT, f.source[0], f.source[1])
                           for f in write.returning_fields]
            param_types = _param_list(env)
            if write.fast is not None:
                write.fast.bind(param_types, write.returning is not None)
            return PreparedStatement(sql, param_types, columns, "write", compiled=write)
        if isinstance(ast, (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Comment)):
            return PreparedStatement(sql, [], None, "ddl", ast=ast)
        if isinstance(ast, exp.Transaction):
            return PreparedStatement(sql, [], None, "utility", utility=utility.Utility("begin"))
        if isinstance(ast, exp.Commit):
            return PreparedStatement(sql, [], None, "utility", utility=utility.Utility("commit"))
        if isinstance(ast, exp.Rollback):
            return PreparedStatement(sql, [], None, "utility", utility=utility.Utility("rollback"))
        if isinstance(ast, exp.Command):
            raise FeatureNotSupported(f"{ast.this} statements are not supported")
        raise FeatureNotSupported(f"{type(ast).__name__.upper()} statements are not supported")

    def _plan_context(self) -> PlanContext:
        return PlanContext(self.catalog, self.search_path, virtual=self.database.virtual_fields)

    def run(self, prepared: PreparedStatement, params: list | None = None,
            max_rows: int = 0) -> Result:
        """Execute a prepared statement with already-decoded parameters."""
        if self.failed and not (prepared.kind == "utility" and prepared.utility is not None
                                and prepared.utility.kind in ("rollback", "commit", "rollback_to")):
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block")
        self._cancel.clear()
        if self.terminated:  # checked after the clear: `terminate` sets the flag first
            raise AdminShutdown("terminating connection due to administrator command")
        self.current_query = prepared.sql
        self.state = "active"
        self._notices = []
        try:
            try:
                result = stack.run_deep(prepared.sql,
                                        lambda: self._run(prepared, params or [], max_rows))
                if self._notices:
                    result.notices = [*self._notices, *result.notices]
                    self._notices = []
                return result
            except SqlVecError as error:
                self._fail()
                if self.terminated and isinstance(error, QueryCanceled):
                    raise AdminShutdown("terminating connection due to administrator command") \
                        from None
                # The frames of a traceback (and of chained exceptions) hold the statement's
                # tables: they go, so the memory is free once the error is reported.
                error.__context__ = None
                raise error.with_traceback(None) from None
            except RecursionError:
                pass  # raised below, outside this handler, so as not to keep the deep frames
            except Exception as exc:  # an engine bug must not take the session down
                log.exception("internal error running %r", _abbreviated(prepared.sql))
                self._fail()
                raise SqlVecError(f"internal error: {type(exc).__name__}: {exc}") from None
            self._fail()
            raise stack.stack_depth_error()
        finally:
            self.state = "idle" if not self.explicit else ("idle in transaction" if not self.failed
                                                           else "idle in transaction (aborted)")
            self._after_statement()

    # A statement whose operators held more than this gives freed memory back to the system.
    TRIM_AFTER_BYTES = 64 << 20

    def _after_statement(self) -> None:
        memory, self._statement_memory = self._statement_memory, None
        if memory is not None and memory.peak >= self.TRIM_AFTER_BYTES:
            return_free_memory()

    def _fail(self) -> None:
        if self.explicit:
            self.failed = True
        else:
            self.txn = None

    def _context(self, params: list) -> ExecContext:
        timeout_ms = self._limit("statement_timeout")
        self._statement_memory = MemoryAccount(self._limit("work_mem") * 1024)
        return ExecContext(
            params=params,
            settings=self.settings,
            snapshot_of=lambda table_id: self.store.table(table_id).snapshot(),
            table_of=self.store.table,
            overlay=self.txn,
            virtual_table=lambda name: self.database.virtual_table(self, name),
            cancel=self._cancel,
            deadline=time.monotonic() + timeout_ms / 1000 if timeout_ms else None,
            memory=self._statement_memory,
            services=self,
        )

    def _limit(self, name: str) -> int:
        """A setting with units in its base unit (kB, ms), parsed once per value."""
        text = self.settings.get(name) or DEFAULT_SETTINGS[name]
        cached = self._limits.get(name)
        if cached is None or cached[0] != text:
            cached = self._limits[name] = (text, parse_unit_setting(name, text))
        return cached[1]

    def _run(self, prepared: PreparedStatement, params: list, max_rows: int) -> Result:
        kind = prepared.kind
        if kind == "empty":
            return Result("EMPTY")
        if kind == "utility" and prepared.utility is not None and \
                prepared.utility.kind in ("declare", "fetch", "close"):
            return self._cursor_statement(prepared, params)
        if kind == "utility":
            return self._utility(prepared.utility, prepared)  # type: ignore[arg-type]
        if kind == "write" and prepared.compiled.fast is not None:
            result = self._fast_insert(prepared, params)
            if result is not None:
                return result
        typed = _typed_params(prepared.param_types, params)
        if kind == "write" and prepared.compiled.by_key is not None and not self.explicit:
            return self._key_write(prepared, typed)
        if kind == "query":
            plan, operator = prepared.compiled
            ctx = self._context(typed)
            table = operator.execute(ctx)
            visible = [i for i, f in enumerate(operator.fields) if not f.hidden]
            table = _rename(table, visible, prepared.columns)
            return Result(f"SELECT {table.num_rows}", prepared.columns, table)
        if kind == "write":
            return self._write(prepared, typed)
        if kind == "ddl":
            return self._ddl(prepared.ast)
        if kind == "explain":
            return self._explain(prepared, typed)
        raise FeatureNotSupported(f"statement kind {kind}")

    # Writes and transactions --------------------------------------------------------------------------

    def _write(self, prepared: PreparedStatement, params: list) -> Result:
        write: WritePlan = prepared.compiled
        autocommit = not self.explicit
        # An autocommit INSERT ... ON CONFLICT that loses a race at commit (a concurrent commit
        # took its key, or changed the row it updates) runs again on the new state, as
        # PostgreSQL's re-check does: an upsert does not fail with 23505 or 40001.
        upsert = autocommit and getattr(write, "conflict", None) is not None
        # Nothing runs between the writes of a statement that commits on its own and its
        # commit, unless it returns rows or resolves conflicts: the commit checks its keys.
        early = not autocommit or upsert or write.returning is not None
        for attempt in range(UPSERT_ATTEMPTS if upsert else 1):
            txn = self.txn if self.txn is not None else Transaction(early_checks=early)
            ctx = self._context(params)
            ctx.overlay = txn
            try:
                count, returning = write.run(ctx, txn)
                if autocommit:
                    self.store.commit(txn.ops())
                break
            except (UniqueViolation, SerializationFailure):
                if not upsert or attempt + 1 == UPSERT_ATTEMPTS:
                    raise
        if not autocommit:
            self.txn = txn
        tag = {"INSERT": f"INSERT 0 {count}", "UPDATE": f"UPDATE {count}",
               "DELETE": f"DELETE {count}"}[write.kind]
        if returning is not None:
            returning = _rename(returning, list(range(returning.num_columns)), prepared.columns)
        return Result(tag, prepared.columns, returning)

    def _fast_insert(self, prepared: PreparedStatement, params: list) -> Result | None:
        """A single-row INSERT through `FastInsert` (dml.py); None when its values need the
        general path. Autocommit without RETURNING commits the row directly: the commit checks
        its keys (23505) as the transaction's early check would."""
        write: WritePlan = prepared.compiled
        contexts: list[ExecContext] = []

        def context(typed: bool) -> ExecContext:
            if not contexts:
                contexts.append(self._context(
                    _typed_params(prepared.param_types, params) if typed else []))
            return contexts[0]

        batch = write.fast.row(params, context)  # type: ignore[union-attr]
        if batch is None:
            return None
        if not self.explicit and write.returning is None:
            self.store.commit([InsertOp(write.table.id, batch)])
            return Result("INSERT 0 1", prepared.columns, None)
        txn = self.txn if self.txn is not None else Transaction()
        with_ids = txn.insert(write.table, pa.Table.from_batches([batch]))
        returning = None
        if write.returning is not None:
            ctx = context(True)  # converted already: `bind` marks RETURNING as reading them
            ctx.overlay = txn
            returning = eval_returning(write, ctx, with_ids)
            returning = _rename(returning, list(range(returning.num_columns)), prepared.columns)
        if self.explicit:
            self.txn = txn
        else:
            self.store.commit(txn.ops())
        return Result("INSERT 0 1", prepared.columns, returning)

    def _key_write(self, prepared: PreparedStatement, params: list) -> Result:
        """An autocommit UPDATE or DELETE of one row by key (`KeyWrite`, dml.py)."""
        write: WritePlan = prepared.compiled
        ops = write.by_key.ops(self._context(params))  # type: ignore[union-attr]
        if ops:
            self.store.commit(ops)
        count = 1 if ops else 0
        return Result(f"{write.kind} {count}", prepared.columns, None)

    def _begin(self) -> Result:
        if self.explicit:
            return Result("BEGIN", notices=["WARNING: there is already a transaction in progress"])
        self.explicit = True
        self.txn = Transaction()
        return Result("BEGIN")

    def _commit(self) -> Result:
        if not self.explicit:
            return Result("COMMIT", notices=["WARNING: there is no transaction in progress"])
        failed = self.failed
        txn = self.txn
        self.explicit, self.failed, self.txn = False, False, None
        self._end_cursors(failed)
        if failed:
            return Result("ROLLBACK")
        if txn is not None and not txn.empty:
            self.store.commit(txn.ops())
        return Result("COMMIT")

    def _rollback(self) -> Result:
        if not self.explicit:
            return Result("ROLLBACK", notices=["WARNING: there is no transaction in progress"])
        notices = []
        if self.txn is not None and self.txn.ddl:
            notices.append("WARNING: schema changes made in this transaction were not rolled back")
        self.explicit, self.failed, self.txn = False, False, None
        self._end_cursors(True)
        return Result("ROLLBACK", notices=notices)

    # Cursors ----------------------------------------------------------------------------------------

    def _cursor_statement(self, prepared: PreparedStatement, params: list) -> Result:
        """DECLARE name CURSOR [WITH HOLD] FOR query / FETCH / MOVE / CLOSE.

        The query runs at DECLARE against the snapshot of that moment and its rows are kept
        (Arrow) until CLOSE, the end of the transaction, or, WITH HOLD, the end of the session."""
        u = prepared.utility
        assert u is not None
        if self.failed:
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block")
        if u.kind == "declare":
            if u.name in self.cursors:
                raise SqlVecError(f'cursor "{u.name}" already exists', sqlstate="42P03")
            if not u.local and not self.explicit:
                raise SqlVecError("DECLARE CURSOR can only be used in transaction blocks",
                                  sqlstate="25P01")
            result = self._run(prepared.compiled, params, 0)
            self.cursors[u.name] = _Cursor(result.columns, result.table, hold=u.local)  # type: ignore[index]
            return Result("DECLARE CURSOR")
        if u.kind == "close":
            if u.name == "all":
                self.cursors.clear()
                return Result("CLOSE CURSOR ALL")
            if self.cursors.pop(u.name, None) is None:  # type: ignore[arg-type]
                raise SqlVecError(f'cursor "{u.name}" does not exist', sqlstate="34000")
            return Result("CLOSE CURSOR")
        cursor = self.cursors.get(u.name)  # type: ignore[arg-type]
        if cursor is None:
            raise SqlVecError(f'cursor "{u.name}" does not exist', sqlstate="34000")
        start, stop = cursor.window(u.value or "next")
        if u.options == ("move",):
            return Result(f"MOVE {max(stop - start, 0)}")
        rows = cursor.table.slice(start, max(stop - start, 0)) if cursor.table is not None else None
        return Result(f"FETCH {0 if rows is None else rows.num_rows}", cursor.columns, rows)

    def _savepoint_index(self, name: str) -> int:
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i][0] == name:
                return i
        raise SqlVecError(f'savepoint "{name}" does not exist', sqlstate="3B001")

    def _rollback_to(self, name: str) -> Result:
        """ROLLBACK TO SAVEPOINT: the block's buffered writes as they were at the savepoint."""
        if not self.explicit:
            raise SqlVecError("ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
                              sqlstate="25P01")
        i = self._savepoint_index(name)
        self.txn = _txn_restore(self.txn, self.savepoints[i][1])
        del self.savepoints[i + 1:]
        self.failed = False
        return Result("ROLLBACK")

    def _end_cursors(self, aborted: bool) -> None:
        """Transaction end: cursors without HOLD close (and all cursors declared in an aborted
        block, which this simplification treats alike)."""
        self.cursors = {k: c for k, c in self.cursors.items() if c.hold and not
                        (aborted and not c.hold)}
        self.savepoints = []

    # DDL ----------------------------------------------------------------------------------------------

    def _ddl(self, ast: exp.Expression) -> Result:
        if self.txn is not None and self.explicit:
            self.txn.ddl = True
        path = self.search_path
        notices: list[str] = []
        if isinstance(ast, exp.Create):
            kind = (ast.args.get("kind") or "").upper()
            if kind == "TABLE":
                tag = ddl.create_table(ast, self.catalog, path)
                if tag == "NOTICE":
                    notices.append(f'NOTICE: relation "{ast.this.this.name}" already exists, skipping')
                    tag = "CREATE TABLE"
            elif kind == "INDEX":
                if self.explicit and self.txn is not None and not self.txn.empty:
                    pass
                tag = ddl.create_index(ast, self.catalog, path)
                if tag == "NOTICE":
                    notices.append(f'NOTICE: relation "{ast.this.name}" already exists, skipping')
                    tag = "CREATE INDEX"
            else:
                if kind == "DATABASE" and self.explicit:
                    raise ActiveSqlTransaction("CREATE DATABASE cannot run inside a transaction block")
                tag = ddl.create_other(ast, self.catalog, path, self.database)
                if tag == "NOTICE":
                    notices.append("NOTICE: relation already exists, skipping")
                    tag = f"CREATE {kind}"
        elif isinstance(ast, exp.Drop):
            if (ast.args.get("kind") or "").upper() == "DATABASE" and self.explicit:
                raise ActiveSqlTransaction("DROP DATABASE cannot run inside a transaction block")
            tag = ddl.drop(ast, self.catalog, path, self.database)
        elif isinstance(ast, exp.Alter):
            tag = ddl.alter_table(ast, self.catalog, path, self._constant_default)
        elif isinstance(ast, exp.TruncateTable):
            tables = [self.catalog.table(t.name, t.db or None, path) for t in ast.expressions]
            if self.explicit:
                for table in tables:
                    self.txn.truncate(table)  # type: ignore[union-attr]
            else:
                txn = Transaction()
                for table in tables:
                    txn.truncate(table)
                self.store.commit(txn.ops())
            tag = "TRUNCATE TABLE"
        elif isinstance(ast, exp.Comment):
            self._comment(ast)
            tag = "COMMENT"
        else:  # pragma: no cover - filtered by _prepare_ast
            raise FeatureNotSupported(type(ast).__name__)
        self._plan_cache.clear()
        return Result(tag, notices=notices)

    def _constant_default(self, col) -> object:
        """The value ADD COLUMN ... DEFAULT gives existing rows (evaluated once, as PostgreSQL)."""
        from sqlvec.execution.dml import default_value

        builder = Builder(CompileEnv(functions=self.database.functions))
        value = default_value(col, builder)
        if value is None:
            return None
        scalar = value(Frame(pa.table({"_": [None]}), self._context([])))
        py = scalar.as_py() if isinstance(scalar, pa.Scalar) else scalar[0].as_py()
        if isinstance(py, (dt.date, dt.datetime)):
            return py.isoformat()
        if hasattr(py, "as_integer_ratio") and not isinstance(py, (int, float)):
            return str(py)
        return py

    def _comment(self, ast: exp.Comment) -> None:
        kind = (ast.args.get("kind") or "").upper()
        target = ast.this
        text = ast.expression.name if ast.expression is not None else None
        if kind == "TABLE":
            table = self.catalog.table(target.name, target.db or None, self.search_path)
            key = f"1259:{table.def_.oid}:0"
        elif kind == "COLUMN":
            table = self.catalog.table(target.table, target.db or None, self.search_path)
            col = table.def_.column(target.name)
            key = f"1259:{table.def_.oid}:{col.attnum}"
        else:
            raise FeatureNotSupported(f"COMMENT ON {kind} is not supported")
        self.store.update_catalog(lambda c: {**c, "comments": {
            **{k: v for k, v in c.get("comments", {}).items() if k != key},
            **({key: text} if text else {})}})

    # Utility statements -----------------------------------------------------------------------------

    def _utility(self, u: utility.Utility, prepared: PreparedStatement) -> Result:
        kind = u.kind
        if kind == "begin":
            return self._begin()
        if kind == "commit":
            return self._commit()
        if kind == "rollback":
            return self._rollback()
        if kind == "rollback_to":
            return self._rollback_to(u.name or "")
        if self.failed:
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block")
        if kind == "savepoint":
            if not self.explicit:
                raise SqlVecError("SAVEPOINT can only be used in transaction blocks",
                                  sqlstate="25P01")
            self.savepoints.append((u.name or "", _txn_state(self.txn)))
            return Result("SAVEPOINT")
        if kind == "release":
            del self.savepoints[self._savepoint_index(u.name or ""):]
            return Result("RELEASE")
        if kind == "set":
            if u.name == "transaction":
                return Result("SET")
            value = _setting_value(u.value or "")
            name = {"time zone": "TimeZone", "names": "client_encoding"}.get(u.name, u.name)  # type: ignore[arg-type]
            if value.upper() == "DEFAULT":
                self.reset(name)
            else:
                self.set(name, value)
            return Result("SET")
        if kind == "reset":
            self.reset({"time zone": "TimeZone"}.get(u.name, u.name))  # type: ignore[arg-type]
            return Result("RESET")
        if kind == "show":
            return self._show(u.name or "", prepared)
        if kind == "discard":
            if self.explicit:
                raise ActiveSqlTransaction("DISCARD ALL cannot run inside a transaction block")
            self.prepared.clear()
            self._plan_cache.clear()
            self.reset("all")
            return Result("DISCARD ALL" if u.name == "all" else f"DISCARD {u.name.upper()}")
        if kind == "prepare":
            return self._sql_prepare(u)
        if kind == "execute":
            return self._sql_execute(u)
        if kind == "deallocate":
            if u.name == "all":
                self.prepared.clear()
            elif self.prepared.pop(u.name, None) is None:  # type: ignore[arg-type]
                raise UndefinedObject(f'prepared statement "{u.name}" does not exist',
                                      sqlstate="26000")
            return Result("DEALLOCATE ALL" if u.name == "all" else "DEALLOCATE")
        if kind == "create_extension":
            exists = u.name in self.catalog.state.get("extensions", {})
            self.catalog.create_extension(u.name, if_not_exists=u.local)  # type: ignore[arg-type]
            notices = [f'NOTICE: extension "{u.name}" already exists, skipping'] if exists else []
            return Result("CREATE EXTENSION", notices=notices)
        if kind == "drop_extension":
            self.catalog.drop_extension(u.name, if_exists=u.local)  # type: ignore[arg-type]
            return Result("DROP EXTENSION")
        if kind == "checkpoint":
            self.store.checkpoint()
            return Result("CHECKPOINT")
        if kind in ("vacuum", "analyze"):
            return Result(kind.upper())
        if kind == "unlisten":
            return Result("UNLISTEN")
        if kind == "listen":
            raise FeatureNotSupported("LISTEN/NOTIFY is not supported")
        raise FeatureNotSupported(f"{kind} is not supported")

    def _show(self, name: str, prepared: PreparedStatement) -> Result:
        if name == "all":
            names = sorted(self.settings)
            table = pa.table({"name": names, "setting": [self.settings[n] for n in names],
                              "description": [SETTINGS[n].description if n in SETTINGS else ""
                                              for n in names]})
            return Result("SHOW", prepared.columns, table)
        key = {"transaction isolation level": "transaction_isolation",
               "time zone": "TimeZone"}.get(name, name)
        key = _CANONICAL.get(key.lower(), key)
        if key not in self.settings:
            raise UndefinedObject(f'unrecognized configuration parameter "{name}"')
        table = pa.table({prepared.columns[0].name: [self.settings[key]]})  # type: ignore[index]
        return Result("SHOW", prepared.columns, table)

    def _sql_prepare(self, u: utility.Utility) -> Result:
        if u.name in self.prepared:
            raise SqlVecError(f'prepared statement "{u.name}" already exists', sqlstate="42P05")
        from sqlvec.sql.binder import sql_type

        oids = []
        for spelling in u.options:
            t = sql_type(parse_one(f"SELECT CAST(NULL AS {spelling})").expressions[0].args["to"])
            oids.append(t.oid)
        self.prepared[u.name] = self.prepare(u.body, oids)  # type: ignore[index, arg-type]
        return Result("PREPARE")

    def _describe_execute(self, u: utility.Utility) -> list[ResultColumn] | None:
        stmt = self.prepared.get(u.name)  # type: ignore[arg-type]
        return stmt.columns if stmt is not None else None

    def _sql_execute(self, u: utility.Utility) -> Result:
        stmt = self.prepared.get(u.name)  # type: ignore[arg-type]
        if stmt is None:
            raise UndefinedObject(f'prepared statement "{u.name}" does not exist', sqlstate="26000")
        args = utility.split_arguments(u.body) if u.body else []
        if len(args) != len(stmt.param_types):
            raise SqlVecError(f"wrong number of parameters for prepared statement \"{u.name}\"",
                              sqlstate="42601",
                              detail=f"Expected {len(stmt.param_types)} parameters but got {len(args)}.")
        values = []
        for text, t in zip(args, stmt.param_types):
            r = self.execute_one(f"SELECT CAST({text} AS {t.format()})")
            values.append(r.rows()[0][0])
        return self.run(stmt, values)

    # EXPLAIN ------------------------------------------------------------------------------------------

    def _prepare_explain(self, sql: str, u: utility.Utility, given) -> PreparedStatement:
        options, body = utility.explain_options(u.body or "")
        inner = self._prepare(body, given)
        if inner.kind not in ("query", "write"):
            raise FeatureNotSupported("EXPLAIN of this statement is not supported")
        fmt = options.get("format", "text")
        col = ResultColumn("QUERY PLAN", SqlType("json") if fmt == "json" else V.TEXT)
        prepared = PreparedStatement(sql, inner.param_types, [col], "explain", compiled=inner,
                                     explain=options)
        return prepared

    def _explain(self, prepared: PreparedStatement, params: list) -> Result:
        from sqlvec.execution.explain import explain

        inner: PreparedStatement = prepared.compiled
        lines = explain(self, inner, params, prepared.explain or {})
        name = prepared.columns[0].name  # type: ignore[index]
        return Result("EXPLAIN", prepared.columns, pa.table({name: lines}))

    # COPY ---------------------------------------------------------------------------------------------

    def copy_in(self, table: str, columns: list[str] | None, rows: pa.Table) -> int:
        """COPY ... FROM: insert decoded rows into `table` (name, optionally schema-qualified).

        `rows` has one column per name in `columns` (all table columns when None), either of the
        column's Arrow type or strings in PostgreSQL's text input format. Missing columns get
        their defaults. Inside a transaction block the rows are buffered like INSERT; otherwise
        they commit at once. Returns the row count."""
        from sqlvec.execution.dml import default_value

        if self.failed:
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block")
        schema, _, name = table.rpartition(".")
        target = self.catalog.table(name, schema or None, self.search_path)
        d = target.def_
        names = list(columns) if columns else d.column_names
        for n in names:
            if not d.has_column(n):
                raise UndefinedColumn(f'column "{n}" of relation "{d.name}" does not exist')
        if rows.num_columns != len(names):
            raise SqlVecError(f"COPY data has {rows.num_columns} columns, expected {len(names)}",
                              sqlstate="22P04")
        n_rows = rows.num_rows
        builder = Builder(CompileEnv(functions=self.database.functions))
        ctx = self._context([])
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
        if self.explicit:
            assert self.txn is not None
            self.txn.insert(target, data)
        else:  # the commit checks keys against committed rows and within the batch itself
            self.store.commit([InsertOp(target.id, data)])
        return n_rows

    # Lifecycle ----------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Interrupt the running statement (57014); safe from any thread."""
        self._cancel.set()

    def notice(self, text: str) -> None:
        """A notice of the running statement (`WARNING: ...`), sent with its result."""
        self._notices.append(text)

    def terminate(self) -> None:
        """End the session (pg_terminate_backend): its running statement is interrupted and the
        front end serving it is told to close it (57P01). Safe from any thread."""
        self.terminated = True
        self._cancel.set()
        hook = self.on_terminate
        if hook is not None:
            hook()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.txn = None
        self.database.unregister_session(self)

    # Services used by catalog functions --------------------------------------------------------------

    def relation_oid(self, name: str) -> int:
        """OID of a table, index or sequence named `name` (optionally schema-qualified)."""
        from sqlvec.errors import UndefinedTable

        schema, _, rel = name.rpartition(".")
        rel = rel.strip('"')
        schemas = [schema] if schema else self.search_path
        for candidate in schemas:
            table = self.store.find_table(rel, candidate)
            if table is not None:
                return table.def_.oid
            for t in self.store.tables.values():
                for ix in t.def_.indexes:
                    if ix.name == rel and t.def_.schema == candidate:
                        return ix.oid
            seq = self.catalog.state["sequences"].get(f"{candidate}.{rel}")
            if seq is not None:
                return seq["oid"]
        from sqlvec.catalog.virtual import TABLES, table_oid

        if rel in TABLES and (not schema or schema == "pg_catalog"):
            return table_oid(rel)
        raise UndefinedTable(f'relation "{name}" does not exist')

    def reg_text(self, kind: str, oids: list[int | None]) -> list[str | None]:
        """reg* values (regclass, regtype, …) in their text form, as a client sees them."""
        from sqlvec.catalog.objects import CatalogObjects
        from sqlvec.execution.catalog_functions import reg_name

        model = CatalogObjects(self.database, self)
        return [None if oid is None else reg_name(kind, oid, model, self.search_path)
                for oid in oids]

    def relation_name(self, oid: int) -> str | None:
        for t in self.store.tables.values():
            if t.def_.oid == oid:
                return f"{t.def_.schema}.{t.def_.name}"
            for ix in t.def_.indexes:
                if ix.oid == oid:
                    return f"{t.def_.schema}.{ix.name}"
        for key, seq in self.catalog.state["sequences"].items():
            if seq["oid"] == oid:
                return key
        return None

    def nextval(self, name: str, count: int = 1) -> list[int]:
        schema, _, seq = name.rpartition(".")
        key = f"{schema or self.catalog.creation_schema(None, self.search_path)}.{seq}"
        if key not in self.catalog.state["sequences"]:
            for candidate in self.search_path:
                if f"{candidate}.{seq}" in self.catalog.state["sequences"]:
                    key = f"{candidate}.{seq}"
                    break
        values = self.catalog.nextval(key, count)
        self.last_sequence_values = getattr(self, "last_sequence_values", {})
        self.last_sequence_values[key] = values[-1]
        return values


def _txn_state(txn: Transaction | None) -> object:
    """A copy of a transaction's buffered writes (SAVEPOINT)."""
    if txn is None:
        return None
    from sqlvec.execution.transaction import TableOverlay

    return ({tid: TableOverlay(o.table, list(o.inserted), set(o.deleted), o.truncated)
             for tid, o in txn.overlays.items()}, txn._next_provisional)


def _txn_restore(txn: Transaction | None, state: object) -> Transaction | None:
    if txn is None or state is None:
        return txn
    overlays, provisional = state  # type: ignore[misc]
    from sqlvec.execution.transaction import TableOverlay

    txn.overlays = {tid: TableOverlay(o.table, list(o.inserted), set(o.deleted), o.truncated)
                    for tid, o in overlays.items()}
    txn._next_provisional = provisional
    return txn


class PlanCache:
    """Planned statements by (text, parameter types, search path), oldest evicted first.

    A plan holds several hundred bytes per character of its text (syntax trees, plan nodes,
    compiled expressions: 45 MB for a 10,000-term OR), so the cache is bounded by the text it
    holds as well as by entries. A statement longer than the whole budget is kept alone in a
    slot of its own, replaced by the next one, so that Parse then Execute of it plans once."""

    ENTRIES = 500
    TEXT = 128 * 1024  # characters of statement text, all entries together

    def __init__(self) -> None:
        self._entries: dict[tuple, PreparedStatement] = {}
        self._text = 0
        self._large: tuple[tuple, PreparedStatement] | None = None

    def __len__(self) -> int:
        return len(self._entries) + (self._large is not None)

    def get(self, key: tuple) -> PreparedStatement | None:
        if self._large is not None and self._large[0] == key:
            return self._large[1]
        return self._entries.get(key)

    def put(self, key: tuple, prepared: PreparedStatement) -> None:
        size = len(key[0])
        if size > self.TEXT:
            self._large = (key, prepared)
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._text -= size
        self._entries[key] = prepared
        self._text += size
        while self._text > self.TEXT or len(self._entries) > self.ENTRIES:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            self._text -= len(oldest[0])

    def clear(self) -> None:
        self._entries.clear()
        self._text = 0
        self._large = None


@dataclass
class _Cursor:
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


_CURSOR_NAME = r'(?P<name>"[^"]+"|[A-Za-z_][\w$]*)'
_DECLARE = re.compile(r"DECLARE\s+" + _CURSOR_NAME + r"\s+(?:(?:BINARY|INSENSITIVE|ASENSITIVE|"
                      r"NO\s+SCROLL|SCROLL)\s+)*CURSOR\s+(?:(?P<hold>WITH|WITHOUT)\s+HOLD\s+)?"
                      r"FOR\s+(?P<body>.+)", re.I | re.S)
_FETCH = re.compile(r"(?P<verb>FETCH|MOVE)\s+(?:(?P<dir>NEXT|PRIOR|FIRST|LAST|ALL|FORWARD\s+ALL|"
                    r"FORWARD\s+\d+|FORWARD|BACKWARD(?:\s+ALL|\s+\d+)?|ABSOLUTE\s+-?\d+|"
                    r"RELATIVE\s+-?\d+|-?\d+)\s+)?(?:(?:FROM|IN)\s+)?" + _CURSOR_NAME, re.I)
_CLOSE = re.compile(r"CLOSE\s+(?P<name>ALL|\"[^\"]+\"|[A-Za-z_][\w$]*)", re.I)


def _recognise_cursor(sql: str) -> utility.Utility | None:
    text = utility._strip_comments(sql).strip().rstrip(";").strip()
    head = text[:8].upper()
    if not head.startswith(("DECLARE", "FETCH", "MOVE", "CLOSE")):
        return None
    m = _DECLARE.fullmatch(text)
    if m:
        return utility.Utility("declare", name=_cursor_name(m["name"]), body=m["body"],
                               local=(m["hold"] or "").upper() == "WITH")
    m = _FETCH.fullmatch(text)
    if m:
        return utility.Utility("fetch", name=_cursor_name(m["name"]), value=m["dir"] or "next",
                               options=("move",) if m["verb"].upper() == "MOVE" else ())
    m = _CLOSE.fullmatch(text)
    if m:
        name = m["name"]
        return utility.Utility("close", name="all" if name.upper() == "ALL" else _cursor_name(name))
    return None


def _cursor_name(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name.lower()


def _abbreviated(sql: str, limit: int = 500) -> str:
    """A statement as the server log shows it: long ones cut, with their length."""
    return sql if len(sql) <= limit else f"{sql[:limit]}... ({len(sql)} characters)"


def _setting_value(text: str) -> str:
    parts = [p.strip() for p in utility.split_arguments(text)]
    cleaned = []
    for p in parts:
        if len(p) >= 2 and p[0] == p[-1] == "'":
            p = p[1:-1].replace("''", "'")
        cleaned.append(p)
    return ", ".join(cleaned)


def _utility_columns(u: utility.Utility, session: Session) -> list[ResultColumn] | None:
    if u.kind != "show":
        return None
    if u.name == "all":
        return [ResultColumn("name", V.TEXT), ResultColumn("setting", V.TEXT),
                ResultColumn("description", V.TEXT)]
    name = {"transaction isolation level": "transaction_isolation", "time zone": "TimeZone"}.get(
        u.name, u.name)  # type: ignore[arg-type]
    return [ResultColumn(_CANONICAL.get(name.lower(), name), V.TEXT)]


def _param_list(env: CompileEnv) -> list[SqlType]:
    if not env.param_types:
        return []
    count = max(env.param_types)
    return [env.param_types.get(i + 1, V.TEXT) for i in range(count)]


_typed_params = V.typed_params


def _rename(table: pa.Table, visible: list[int], columns: list[ResultColumn] | None) -> pa.Table:
    if columns is None:
        return table
    cols = [table.column(i) for i in visible]
    names = [c.name for c in columns]
    if not cols:
        return pa.table({"_": pa.nulls(table.num_rows)}).drop_columns(["_"]) if table.num_rows else pa.table({})
    return pa.Table.from_arrays(cols, names=names)


__all__ = ["Session", "Result", "ResultColumn", "PreparedStatement", "QueryCanceled", "Field", "Operator"]
