"""The Session class: one client's session on one database, the boundary the wire talks to.

    Session.execute(sql)                   -> Iterator[Result]   (simple query protocol)
    Session.prepare(sql, param_type_oids)  -> PreparedStatement  (Parse / Describe)
    Session.run(prepared, params, max_rows)-> Result             (Bind / Execute)
    Session.copy_columns / copy_in / copy_query                  (COPY, see copy.py)
    Session.cancel(), close(), transaction_status ("I" | "T" | "E"), settings

A statement is parsed and planned once per distinct text (the plan cache, invalidated by any
catalog change) and executed against a snapshot of each table it reads. Outside a transaction
block a statement commits on its own; inside BEGIN ... COMMIT, and in the implicit block of
statements sent together (a Query of several, an extended-protocol batch up to its Sync:
transactions.py), writes are buffered in the session and committed as one WAL record. `run`
hands each statement kind to its handler in `RUNNERS`; the handlers live in the modules of
this package named after what they do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator

import pyarrow as pa

from sqlvec import stack
from sqlvec.catalog import sequences as seqrules
from sqlvec.catalog.catalog import BOOTSTRAP_SUPERUSER_OID, resolving_tables
from sqlvec.catalog.objects import database_oid
from sqlvec.catalog.pg_catalog import row_lock_wait_of
from sqlvec.catalog.pg_stat import CopyProgress
from sqlvec.catalog.server_config import applies_to_running_sessions
from sqlvec.catalog.settings import (
    DEFAULT_SETTINGS,
    REPORTED,
    SUPERUSER_SETTINGS,
    canonical_name,
    check_settable,
    lookup,
    parse_amount,
    validate,
)
from sqlvec.errors import (
    AdminShutdown,
    FeatureNotSupported,
    InFailedTransaction,
    Notice,
    QueryCanceled,
    SqlVecError,
    SyntaxError_,
    UndefinedObject,
)
from sqlvec.execution.constraints import describe_failing_row
from sqlvec.execution.context import ExecContext, MemoryAccount
from sqlvec.execution.sequence_ddl import name_parts
from sqlvec.execution.transaction import Transaction
from sqlvec.session import copy as copy_statements
from sqlvec.session import ddl, queries, statement_log, transactions, writes
from sqlvec.session import utility as utility_statements
from sqlvec.session.advisory_locks import AdvisoryLocks, locks_of
from sqlvec.session.cursors import Cursor
from sqlvec.session.ddl_lock import Claim, SharedHold, ddl_lock_of
from sqlvec.session.live_reads import live_query_text
from sqlvec.session.plan_cache import PlanCache
from sqlvec.session.prepare import plan_statement
from sqlvec.session.results import PreparedStatement, Result, ResultColumn, StatementKind
from sqlvec.sql.copy import CopyCommand
from sqlvec.sql.normalize import normalize, query_id
from sqlvec.sql.statements import first_word, split_with_offsets
from sqlvec.sql.utility import UtilityKind, recognise
from sqlvec.storage.row_locks import LockHolder, one_deadline
from sqlvec.storage.store import return_free_memory
from sqlvec.storage.table import Table, forget_located
from sqlvec.storage.vector_index import DefaultSetting
from sqlvec.types import TYPES_BY_OID, SqlType

log = logging.getLogger("sqlvec.session")

# Runs a statement: (session, prepared, params as decoded, max_rows) -> Result.
Runner = Callable[["Session", PreparedStatement, list, int], Result]

# Statements allowed in a failed transaction block (everything else is 25P02).
_RUN_IN_FAILED_BLOCK = (UtilityKind.ROLLBACK, UtilityKind.COMMIT, UtilityKind.ROLLBACK_TO)
# The DDL lock a statement that takes none runs under (`nullcontext` keeps no state: shared).
_NO_HOLD = contextlib.nullcontext()
# Statements that read and write no table or catalog object: they never wait for another
# transaction's schema changes (ddl_lock.py).
_NO_DDL_LOCK = frozenset((
    UtilityKind.BEGIN, UtilityKind.ROLLBACK, UtilityKind.SAVEPOINT, UtilityKind.RELEASE,
    UtilityKind.ROLLBACK_TO, UtilityKind.SET, UtilityKind.RESET, UtilityKind.SHOW,
    UtilityKind.DISCARD, UtilityKind.DEALLOCATE, UtilityKind.LISTEN, UtilityKind.UNLISTEN,
    UtilityKind.CLOSE, UtilityKind.ALTER_SYSTEM))


def _empty(session: Session, prepared: PreparedStatement, params: list, max_rows: int) -> Result:
    return Result("EMPTY")


def _copy_without_client(session: Session, prepared: PreparedStatement, params: list,
                         max_rows: int) -> Result:
    raise FeatureNotSupported("COPY FROM STDIN and COPY TO STDOUT need a client connection")


RUNNERS: dict[StatementKind, Runner] = {
    StatementKind.QUERY: queries.run_query,
    StatementKind.WRITE: writes.run_write,
    StatementKind.DDL: ddl.run_ddl,
    StatementKind.UTILITY: utility_statements.run_utility,
    StatementKind.EXPLAIN: queries.run_explain,
    StatementKind.COPY: _copy_without_client,
    StatementKind.EMPTY: _empty,
}


_NO_BLOCK_FOR_SET_LOCAL = Notice.warning("SET LOCAL can only be used in transaction blocks",
                                         "25P01")


def _failed_block() -> InFailedTransaction:
    return InFailedTransaction(
        "current transaction is aborted, commands ignored until end of transaction block")


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
        config = database.config
        self._config_generation = config.generation
        self.settings = {**DEFAULT_SETTINGS, **config.session_values(), **database.server_settings,
                         "session_authorization": user,
                         "is_superuser": "on" if database.is_superuser(user) else "off"}
        self._defaults = dict(self.settings)  # what RESET goes back to
        self._overridden: set[str] = set()  # set by the client or SET: a reload keeps them
        self._given: set[str] = set()  # given by the client at connection
        self._depth = 0  # statements running (prepare/run inside another: not logged)
        self._from_files = set(config.session_values())  # defaults the files gave
        self.terminated = False  # pg_terminate_backend: the session is to end
        # Set by the front end (the wire): end the connection (pg_terminate_backend) ...
        self.on_terminate: Callable[[], None] | None = None
        # ... and its protocol-level prepared statements, which share one namespace with
        # PREPARE: DEALLOCATE name (None: ALL) returns whether the front end held the name;
        # DISCARD ALL also drops its statements and portals.
        self.on_deallocate: Callable[[str | None], bool] | None = None
        self.on_discard_all: Callable[[], None] | None = None
        self.changed: dict[str, str] = {}  # reported settings changed since last drained
        self._notices: list[Notice] = []  # raised while the current statement runs (`notice`)
        self.txn: Transaction | None = None
        # Rows of an executemany not yet in `txn` (writes.PendingInserts).
        self.pending: writes.PendingInserts | None = None
        self.nextval_calls = 0  # sequence values taken (a row that took some is not gathered)
        # currval() of each sequence used, by OID: a renamed sequence keeps it
        self.last_sequence_values: dict[int, int] = {}
        self.last_sequence: int | None = None  # OID of the last nextval's sequence
        # Values a sequence with CACHE > 1 handed this session ahead, by OID (a renamed
        # sequence keeps them, as PostgreSQL's), with the OID and incarnation they belong to
        # (a restart or another incarnation drops them).
        self.sequence_caches: dict[int, tuple[tuple[int, int], list[int]]] = {}
        # The block's statements are an extended batch's (`begin_implicit`, `gather_in_block`).
        self.gathering = False
        self.failed = False
        self.explicit = False  # in a transaction block: writes are buffered in `txn`
        self.implicit = False  # ... an implicit one (transactions.py): statements sent together
        self.first_alone = False  # ... opened before an extended batch's first statement
        # The settings as the block found them (saved at its first SET or RESET), put back if
        # it rolls back; and those SET LOCAL changed, with what they go back to at its end.
        self._settings_before: tuple[dict, set[str]] | None = None
        self._local: dict[str, tuple[object, bool]] = {}
        for k, v in (settings or {}).items():
            self.set(k, v)
        self.settings_given()
        self.changed.clear()  # settings given at connection are the start, not changes
        self.prepared: dict[str, PreparedStatement] = {}  # SQL-level PREPARE
        self.cursors: dict[str, Cursor] = {}  # DECLARE ... CURSOR
        # (name, buffered writes then, the schema as it was then if it was being changed)
        self.savepoints: list[tuple[str, object, object, object]] = []
        # The database's lock for schema changes in transaction blocks (ddl_lock.py); this
        # session holds it exclusively while `ddl_open`.
        self._ddl_lock = ddl_lock_of(database, name)
        self._schema_may_change = database.changes_schema  # (else no statement holds it)
        self.ddl_open = False
        self._advisory_xact = False  # holds transaction-level advisory locks
        self.lock_holder: LockHolder | None = None  # the open block's row locks (row_locks.py)
        # The tables the open block used (id -> whether it wrote them), known to the DDL lock.
        self._used: dict[int, bool] = {}
        self.row_lock_wait: LockHolder | None = None  # the block an autocommit write waits for
        self.relation_lock_wait = False  # a schema change waits for blocks using its tables
        self._plan_cache = PlanCache()
        self._limits: dict[str, tuple[str, int]] = {}  # settings with units: text, base units
        self._statement_memory: MemoryAccount | None = None  # of the running statement
        self._cancel = threading.Event()
        self._closed = False
        self.started = dt.datetime.now(dt.timezone.utc)
        # pg_stat_activity's times, in seconds since the epoch: of the last statement's start
        # (None before the first), of the last change of `state`, of the open transaction's
        # first statement (shown while a block is open or a statement runs).
        self.query_started: float | None = None
        # Held while those times are compared with a report of a statement run elsewhere
        # and set (`ran_elsewhere`), and while this session's own statement sets them.
        self._activity_lock = threading.Lock()
        self.state_changed = self.started.timestamp()
        self.xact_started: float | None = None
        self.current_query = ""
        self.state = "idle"
        # The statement being parsed and planned outside a run, shown active while it waits
        # for the DDL lock (`_show_waiting`), and whether it was.
        self._preparing: str | None = None
        self._shown_preparing = False
        # The running command's progress record (CREATE INDEX, COPY), for pg_stat_progress_*.
        self.progress: object | None = None
        self._userid: int | None = None  # the role's OID, for pg_stat_statements
        database.register_session(self)

    # Properties -------------------------------------------------------------------------------------

    @property
    def transaction_status(self) -> str:
        """ReadyForQuery's status: I (idle), T (in a block), E (failed block)."""
        if self.failed:
            return "E"
        return "T" if self.explicit and not self.implicit else "I"

    @property
    def in_block(self) -> bool:
        """In a transaction block as PostgreSQL's checks see it (LOCK, DECLARE, SET LOCAL,
        VACUUM, ...): an explicit block, or an implicit one but for the first statement of
        an extended-protocol batch (transactions.py)."""
        return self.explicit and not (self.implicit and self.first_alone)

    @property
    def search_path(self) -> list[str]:
        """The schemas unqualified names are looked up in, from the search_path setting, with
        `$user` expanded."""
        out = []
        for item in self.settings["search_path"].split(","):
            item = item.strip().strip('"')
            if item == "$user":
                item = self.user
            if item:
                out.append(item)
        return out

    def drain_changed_settings(self) -> dict[str, str]:
        """Reported settings changed since the last call, for the wire to send as
        ParameterStatus."""
        out, self.changed = self.changed, {}
        return out

    # Settings ---------------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """SET name = value: checked as PostgreSQL's GUCs (catalog/settings.py), then stored."""
        key, value = validate(name, value)
        if self.settings.get("is_superuser") == "off" and key in SUPERUSER_SETTINGS:
            raise SqlVecError(f'permission denied to set parameter "{key}"', sqlstate="42501")
        self._keep_settings()
        if self._local:
            self._local.pop(key, None)  # a SET after SET LOCAL outlasts the block
        self.settings[key] = value
        self._overridden.add(key)
        if key in REPORTED:
            self.changed[key] = value

    def reset(self, name: str) -> None:
        """RESET name, or RESET ALL: back to the connection's defaults, noting reported settings
        that change."""
        self._keep_settings()
        if name == "all":
            self._local.clear()
            self._overridden.clear()
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
        if self._local:
            self._local.pop(key, None)
        self.settings[key] = self._defaults.get(key, "")
        self._overridden.discard(key)
        if key in REPORTED:
            self.changed[key] = self.settings[key]

    def set_local(self, name: str, value: str | None) -> list[Notice]:
        """SET LOCAL (`value` None: TO DEFAULT): the setting until the transaction ends. Outside
        a block that is the statement's own end: PostgreSQL's warning, and no change."""
        key = canonical_name(name)
        if not self.explicit:
            if value is not None:
                validate(name, value)  # (22023, 42704 as SET)
            return [_NO_BLOCK_FOR_SET_LOCAL]
        before = self._local.get(key, (self.settings.get(key), key in self._overridden))
        if value is None:
            self.reset(name)
        else:
            self.set(name, value)
        self._local[key] = before
        return [] if self.in_block else [_NO_BLOCK_FOR_SET_LOCAL]

    def _keep_settings(self) -> None:
        """Save the settings before a block's first change to them (`end_settings`)."""
        if self.explicit and self._settings_before is None:
            self._settings_before = (dict(self.settings), set(self._overridden))

    def end_settings(self, aborted: bool) -> None:
        """The transaction ended: a rolled-back one's settings changes are undone, as in
        PostgreSQL; a committed one's SET LOCAL values end."""
        before, self._settings_before = self._settings_before, None
        local, self._local = self._local, {}
        if aborted and before is not None:
            self._put_settings(*before)
        elif local:
            values, overridden = dict(self.settings), set(self._overridden)
            for key, (value, was_set) in local.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
                (overridden.add if was_set else overridden.discard)(key)
            self._put_settings(values, overridden)

    def settings_state(self) -> tuple[dict, set[str], dict]:
        """The settings as they are now (SAVEPOINT), for `restore_settings`."""
        return dict(self.settings), set(self._overridden), dict(self._local)

    def restore_settings(self, state: tuple[dict, set[str], dict]) -> None:
        """ROLLBACK TO SAVEPOINT: the settings as the savepoint saw them, as in PostgreSQL."""
        values, overridden, local = state
        self._local = dict(local)
        self._put_settings(dict(values), set(overridden))

    def _put_settings(self, values: dict, overridden: set[str]) -> None:
        """Make `values` the settings, noting the reported ones that change."""
        for key in REPORTED:
            if key in values and self.settings.get(key) != values[key]:
                self.changed[key] = values[key]
        self.settings.clear()
        self.settings.update(values)
        self._overridden = overridden

    def settings_given(self) -> None:
        """The settings set so far came from the client's startup packet (pg_settings'
        source `client`), not from SET."""
        self._given = set(self._overridden)

    def setting_source(self, name: str) -> tuple[str, str | None, int | None]:
        """Where a setting's current value comes from, as pg_settings' source, sourcefile and
        sourceline say: session, client, configuration file, command line or default."""
        if name in self._overridden:
            return ("client" if name in self._given else "session"), None, None
        entry = self.database.config.source_of(name)
        if entry is not None and self.settings.get(name) == entry.value:
            return "configuration file", entry.file, entry.line
        if name in self.database.server_settings:
            return ("override" if name == "data_directory" else "command line"), None, None
        return "default", None, None

    def _pick_up_config(self) -> None:
        """After a reload (pg_reload_conf, SIGHUP), before the next statement: the files' new
        values become this session's defaults, and its values where it has not set its own, for
        the settings PostgreSQL changes in running sessions."""
        config = self.database.config
        self._config_generation = config.generation
        values = config.session_values()
        for name in set(values) | self._from_files:
            if name in self.database.server_settings or not applies_to_running_sessions(name):
                continue
            new = values.get(name, DEFAULT_SETTINGS.get(name))
            if new is None:  # a placeholder no longer in the files
                self._defaults.pop(name, None)
                if name not in self._overridden:
                    self.settings.pop(name, None)
                continue
            self._defaults[name] = new
            if name not in self._overridden and self.settings.get(name) != new:
                self.settings[name] = new
                if name in REPORTED:
                    self.changed[name] = new
        self._from_files = set(values)

    def reload_config(self) -> bool:
        """pg_reload_conf(): read the configuration files again (superusers only, 42501)."""
        if not self.database.is_superuser(self.user):
            raise SqlVecError("permission denied for function pg_reload_conf", sqlstate="42501")
        log.info("received SIGHUP, reloading configuration files")
        self.database.config.reload()
        return True

    # Serving from several processes ----------------------------------------------------------------

    @property
    def overridden(self) -> frozenset[str]:
        """The settings the client chose (SET, or at connection): reloads keep them."""
        return frozenset(self._overridden)

    @property
    def config_generation(self) -> int:
        """The configuration reload (`ServerConfig.generation`) the settings reflect."""
        return self._config_generation

    def exported_settings(self) -> dict:
        """What another process needs to run this session's reads as this session would
        (`adopt_settings` there), as JSON-ready data: the values, the names still at the
        engine's marked defaults (a search tells a default `hnsw.ef_search` from one the
        session chose), and the configuration reload the values reflect."""
        return {"settings": dict(self.settings),
                "defaults": [k for k, v in self.settings.items()
                             if isinstance(v, DefaultSetting)],
                "config": self._config_generation,
                # Where values come from, as pg_settings' source shows it.
                "overridden": sorted(self._overridden), "given": sorted(self._given)}

    def adopt_settings(self, exported: dict) -> None:
        """Take another process's session settings (`exported_settings`) as this session's,
        marked defaults staying defaults. They already reflect the configuration files, so this
        process's reloads are not applied over them."""
        values = exported["settings"]
        self.settings.clear()
        self.settings.update(values)
        for name in exported["defaults"]:
            if name in values:
                self.settings[name] = DefaultSetting(values[name])
        self._overridden = set(exported.get("overridden", ()))
        self._given = set(exported.get("given", ()))
        self._config_generation = self.database.config.generation

    # The simple query protocol ------------------------------------------------------------------------

    def execute(self, sql: str, params: list | None = None,
                copy: Callable[[CopyCommand], str] | None = None) -> Iterator[Result]:
        """Run every statement of `sql` in order (a generator: results come as they finish).
        Several statements outside a transaction block run in an implicit one, as in
        PostgreSQL: the first error rolls back all of them (transactions.py).

        A COPY statement is carried out by `copy` (the front end: it moves the data and
        returns the command tag); without one, COPY fails with 0A000."""
        statements = split_with_offsets(sql)
        if not statements:
            yield Result("EMPTY")
            return
        if len(statements) == 1:
            yield from self._execute_each(statements, params, copy)
            return
        try:
            yield from self._execute_each(statements, params, copy, implicit=True)
        except BaseException:
            transactions.abort_implicit(self)
            raise
        transactions.end_implicit(self)

    def _execute_each(self, statements: list[tuple[int, str]], params: list | None,
                      copy: Callable[[CopyCommand], str] | None,
                      implicit: bool = False) -> Iterator[Result]:
        """`execute`'s statements in order; with `implicit`, each that finds no block open
        opens an implicit one (after a COMMIT in the middle, another)."""
        for offset, text in statements:
            if implicit and not self.explicit:
                transactions.begin_implicit(self, first_alone=False)
            try:
                prepared = self.prepare(text)
                if prepared.kind is StatementKind.COPY and copy is not None:
                    result = Result(copy(prepared.copy))  # type: ignore[arg-type]
                else:
                    if params is None and prepared.param_types:  # a simple query has none
                        self._fail()
                        raise SqlVecError("there is no parameter $1", sqlstate="42P02")
                    result = self.run(prepared, params or [])
            except SqlVecError as error:
                if error.position is not None and offset:
                    error.position += offset
                raise
            yield result

    def execute_one(self, sql: str, params: list | None = None) -> Result:
        """Run SQL and return the last statement's result (embedded use, tests)."""
        results = list(self.execute(sql, params))
        return results[-1]

    # The extended query protocol ----------------------------------------------------------------------

    def prepare(self, sql: str, param_type_oids: list[int] | None = None) -> PreparedStatement:
        """Parse and plan `sql` (one statement: several are 42601, as PostgreSQL's Parse);
        cached by text and given parameter types. An error is logged with the statement
        (statement_log.py) unless it is part of another statement.

        A statement nested deeper than the engine can follow fails with 54001 (stack.py)."""
        self._depth += 1
        outermost = self._preparing is None
        if outermost:
            self._preparing = sql
        try:
            return self._prepare(sql, param_type_oids)
        except SqlVecError as error:
            if self._depth == 1:
                statement_log.log_error(self, error, sql)
            raise
        finally:
            self._depth -= 1
            if outermost:
                self._done_preparing()

    def parse(self, sql: str, param_type_oids: list[int] | None = None) -> PreparedStatement:
        """`prepare` for the extended protocol's Parse, which PostgreSQL runs in the implicit
        transaction of its batch, locking the tables it reads until that ends: a schema change
        of them from another session waits for the batch's Sync (`end_batch`), or in a block
        for the block's end (a use of each), so the Execute that follows runs the plan made
        here. A plan made stale meanwhile (a change under way when the hold began) is made
        again."""
        self._preparing = sql
        try:
            while True:
                prepared = self.prepare(sql, param_type_oids)
                if not prepared.tables or self.ddl_open or not self._schema_may_change:
                    return prepared
                if self.lock_holder is not None:
                    for table_id in prepared.tables:
                        self.use_table(table_id)
                else:
                    self._ddl_lock.hold_parsed(self.pid, prepared.tables, self._waiting)
                if prepared.generation in (-1, self.store.generation):
                    return prepared  # (-1: not cached, as DECLARE's, made again on each Parse)
        finally:
            self._done_preparing()

    def _done_preparing(self) -> None:
        """The statement `prepare` or `parse` took is planned: a session shown active while
        it waited (`_show_waiting`) is idle again, its text still shown, as PostgreSQL's
        after a Parse."""
        self._preparing = None
        if self._shown_preparing:
            self._shown_preparing = False
            self.state = self._idle_state()
            self.state_changed = time.time()

    def end_batch(self) -> None:
        """The extended-protocol batch ended (Sync, or a simple Query): the tables its Parses
        held outside a block go (`parse`), and its rows are gathered no more."""
        self._ddl_lock.let_go_parsed(self.pid)
        self.gathering = False

    def gather_in_block(self) -> None:
        """Statements sent together inside an explicit block (an executemany in BEGIN ...
        COMMIT): the rows of its single-row INSERTs may be gathered until the batch's end,
        as an implicit block's are (`begin_implicit`); the front end applies them before
        the batch's ReadyForQuery."""
        self.gathering = True

    def _prepare(self, sql: str, param_type_oids: list[int] | None) -> PreparedStatement:
        try:
            return stack.run_deep(sql, lambda: self._prepare_cached(sql, param_type_oids))
        except SqlVecError as error:  # a statement that fails before it runs still counts
            observe = self.database.on_statement
            if observe is not None:
                observe(0.0, error.sqlstate)
            raise
        except RecursionError:
            pass  # raised below, outside this handler, so as not to keep the deep frames
        self._fail()
        raise stack.stack_depth_error()

    def _prepare_cached(self, sql: str, param_type_oids: list[int] | None) -> PreparedStatement:
        oids = tuple(param_type_oids or ())
        key = (sql, oids, self.settings["search_path"])
        cached = self._plan_cache.get(key)
        if cached is not None and (cached.generation == self.store.generation
                                   or cached.constant) and \
                not self._await_claims(cached.tables):  # (a constant depends on no table)
            return cached
        given = {}
        for i, oid in enumerate(oids):
            if oid:
                info = TYPES_BY_OID.get(oid)
                if info is None:
                    raise UndefinedObject(f"type with OID {oid} does not exist")
                given[i + 1] = SqlType(info.typname)
        try:
            if len(split_with_offsets(sql)) > 1:
                raise SyntaxError_("cannot insert multiple commands into a prepared statement")
            generation, prepared = self._plan(sql, given)
        except SqlVecError:
            self._fail()  # a statement that fails to parse or plan fails the block too
            raise
        if prepared.utility is not None and prepared.utility.kind in (
                UtilityKind.DECLARE, UtilityKind.FETCH, UtilityKind.CLOSE):
            return prepared  # depends on the session's open cursors: never cached
        prepared.generation = generation
        prepared.given_oids = oids
        prepared.search_path = key[2]
        prepared.cache_clears = self._plan_cache.clears
        self._plan_cache.put(key, prepared)
        return prepared

    def _plan(self, sql: str, given: dict[int, SqlType]) -> tuple[int, PreparedStatement]:
        """`sql` planned, with the tables it resolved, and the catalog generation from before
        (a schema change of another table may land while it is planned: the plan is then
        made again before it runs). A plan reading a table a schema change claims is made
        again once the change is over (its result columns are those of the new shape), and
        so is one that failed while a change of a table it resolved was under way (or, once,
        after a change landed). A query of the live state only is planned without the DDL
        lock while another session's schema changes hold it (live_reads.py)."""
        failed_once = False
        live = self._ddl_lock.contended(self.pid) and live_query_text(sql)
        while True:
            generation = self.store.generation
            seen: set[int] = set()
            try:
                with self._planning_lock(sql, live), resolving_tables() as seen:
                    prepared = plan_statement(self, sql, given)
            except Exception as exc:
                if live and not isinstance(exc, SqlVecError):
                    live = False  # (planned beside a schema change: once more, under the lock)
                    continue
                if self._await_claims(frozenset(seen)) or (
                        not failed_once and generation != self.store.generation):
                    failed_once = True
                    continue
                raise
            if prepared.kind is StatementKind.DDL:
                return generation, prepared  # (its tables are waited for by ddl.py)
            if seen and prepared.live:  # a name meant a table after all
                if live:
                    live = False  # (planned again, under the lock)
                    continue
                prepared.live = False
            tables = frozenset(seen)
            if not self._await_claims(tables):
                prepared.tables = tables
                return generation, prepared

    def _await_claims(self, tables: frozenset[int]) -> bool:
        """Wait while an autocommit schema change claims one of `tables` (ddl_lock.py); True
        if it did: a plan of them is made again, against their new shape."""
        holder = self.lock_holder
        return self._ddl_lock.await_unqueued(self.pid, tables, holder is not None and bool(
            holder.held), self._waiting)

    def plan_is_current(self, prepared: PreparedStatement) -> bool:
        """Whether `prepared` is still the plan `prepare` would make: planned (and cached) in
        the current catalog generation, under the current search_path, and the plan cache not
        emptied since (DDL that leaves the generation as it was, such as TRUNCATE, and DISCARD
        empty it). A front end that keeps a prepared statement skips the cache lookup on each
        execution when it is."""
        return prepared.generation == self.store.generation \
            and prepared.cache_clears == self._plan_cache.clears \
            and prepared.search_path == self.settings["search_path"]

    def run(self, prepared: PreparedStatement, params: list | None = None,
            max_rows: int = 0, runner: Runner | None = None) -> Result:
        """Execute a prepared statement with already-decoded parameters (through `runner`
        instead of its kind's handler when given). Errors and slow statements are logged as
        the log_min_* settings ask (statement_log.py)."""
        self._depth += 1
        start = time.perf_counter()
        try:
            result = self._run_statement(prepared, params, max_rows, runner, start)
        except SqlVecError as error:
            if self._depth == 1:
                statement_log.log_error(self, error, _statement_of(error, prepared.sql))
            raise
        finally:
            self._depth -= 1
        slow = self._limit("log_min_duration_statement")
        if slow >= 0 and self._depth == 0:
            elapsed = (time.perf_counter() - start) * 1000
            if elapsed >= slow:
                statement_log.log_duration(self, prepared.sql, elapsed)
        return result

    def run_values(self, prepared: PreparedStatement, params: list) -> Result:
        """`run` of a query, except that a vector top-k run in one step answers with each
        column's Python values (`Result.values`) instead of an Arrow table: everything else
        (snapshot, settings, counters, timeouts, logging, errors) is `run`'s."""
        return self.run(prepared, params, 0, queries.run_query_values)

    def _run_statement(self, prepared: PreparedStatement, params: list | None,
                       max_rows: int, runner: Runner | None, started: float) -> Result:
        if self.failed:
            self.refuse_in_failed_block(prepared)
        if self._cancel.is_set():  # (clear() takes the event's lock: only when needed)
            self._cancel.clear()
        if self.terminated:  # checked after the clear: `terminate` sets the flag first
            raise AdminShutdown("terminating connection due to administrator command")
        if self._config_generation != self.database.config.generation:
            self._pick_up_config()
        outermost = self._depth == 1
        if outermost:  # (first: a later report of a worker's read is then not taken)
            self._statement_began()
        self.current_query = prepared.sql
        self.state = "active"
        self._notices = []
        outcome: str | None = "XX000"  # SQLSTATE of the error; None once it succeeded
        elapsed: float | None = None  # (one clock read at the end, shared)
        try:
            try:
                with self._statement_lock(prepared) as hold:
                    pending = self.pending
                    if pending is not None and prepared.compiled is not pending.write:
                        self.apply_pending()  # what it runs sees the rows gathered
                    prepared = self._current_plan(prepared, hold)
                    if runner is None or prepared.kind is not StatementKind.QUERY:
                        runner = RUNNERS[prepared.kind]
                    if len(prepared.sql) <= stack.INLINE_TEXT:  # (run_deep would run it here)
                        result = runner(self, prepared, params or [], max_rows)
                    else:
                        result = stack.run_deep(
                            prepared.sql, lambda: runner(self, prepared, params or [], max_rows))
                if self._notices:
                    result.notices = [*self._notices, *result.notices]
                    self._notices = []
                elapsed = time.perf_counter() - started
                self._count_statement(prepared, result, elapsed)
                outcome = None
                return result
            except SqlVecError as error:
                outcome = error.sqlstate
                self._fail()
                describe_failing_row(error)
                if self.terminated and isinstance(error, QueryCanceled):
                    raise AdminShutdown("terminating connection due to administrator command") \
                        from None
                # The frames of a traceback (and of chained exceptions) hold the statement's
                # tables: they go, so the memory is free once the error is reported.
                error.__context__ = None
                raise error.with_traceback(None) from None
            except RecursionError:
                outcome = "54001"  # raised below, outside this handler (frees deep frames)
            except Exception as exc:  # an engine bug must not take the session down
                log.exception("internal error running %r", _abbreviated(prepared.sql))
                self._fail()
                raise SqlVecError(f"internal error: {type(exc).__name__}: {exc}") from None
            self._fail()
            raise stack.stack_depth_error()
        finally:
            self.state = self._idle_state()
            self.progress = None
            if elapsed is None:
                elapsed = time.perf_counter() - started
            if outermost:
                self.state_changed = self.query_started + elapsed  # type: ignore[operator]
            observe = self.database.on_statement
            if observe is not None:
                observe(elapsed, outcome)
            self._after_statement()

    def _statement_began(self) -> None:
        """pg_stat_activity's times at the start of a statement (one clock read): it started
        now, the state changed to active, and so did a transaction unless a block is open
        (an implicit block opened just before its first statement has no start yet)."""
        with self._activity_lock:
            self.query_started = self.state_changed = now = time.time()
        if not self.explicit or self.xact_started is None:
            self.xact_started = now

    def ran_elsewhere(self, query: str, started: float, ended: float | None) -> None:
        """A statement of this session another process ran outside any block (a read in a
        server worker): pg_stat_activity shows it as this session's, active from `started`
        while `ended` is None, idle since `ended` once it is; unless this session ran a
        later statement itself, or has a block open."""
        with self._activity_lock:  # reports come from two threads: check and set at once
            if self.explicit or self._holds_newer(started, ended):
                return
            self.current_query, self.query_started = query, started
            if ended is None:
                self.state, self.state_changed, self.xact_started = "active", started, started
            else:
                self.state, self.state_changed = "idle", ended

    def _holds_newer(self, started: float, ended: float | None) -> bool:
        """Whether pg_stat_activity shows something newer than a report of a statement run
        from `started` (to `ended`): a later statement, or this one's end when the report
        is of its start (a report can come late)."""
        held = self.query_started
        if held is None or started > held:
            return False
        return started < held or ended is None and self.state != "active"

    def _idle_state(self) -> str:
        """pg_stat_activity's state between statements."""
        if not self.explicit:
            return "idle"
        return "idle in transaction" if not self.failed else "idle in transaction (aborted)"

    def _count_statement(self, prepared: PreparedStatement, result: Result,
                         seconds: float) -> None:
        """pg_stat_statements: one more call of the statement's normalized text."""
        key = prepared.stats_key
        if key is None:
            # Constants are parameters in plannable statements only; utility statements and
            # DDL keep their text, as in PostgreSQL.
            text = normalize(prepared.sql) if prepared.kind in _NORMALIZED else \
                prepared.sql.strip().rstrip(";")
            key = prepared.stats_key = (query_id(text), text)
        if result.values is not None:  # (a top-k's columns: `run_values`)
            rows = len(result.values[0])
        elif result.table is not None:
            rows = result.table.num_rows
        else:
            last = result.tag.rpartition(" ")[2]
            rows = int(last) if last.isdigit() else 0
        if self._userid is None:
            role = self.catalog.state.get("roles", {}).get(self.user)
            self._userid = int(role["oid"]) if role else BOOTSTRAP_SUPERUSER_OID
        self.database.statement_stats.record(self._userid, database_oid(self.database_name),
                                             key[0], key[1], seconds * 1000.0, rows)

    # Schema changes in transaction blocks (ddl_lock.py) ---------------------------------------------

    def _shared_ddl_lock(self, tables: frozenset[int] = frozenset()) -> SharedHold:
        """Hold the database's DDL lock shared, and `tables` against autocommit schema
        changes: wait while another transaction's schema changes are open, or while a change
        of one of `tables` is queued or runs (cancel, statement_timeout and lock_timeout end
        the wait). A block holding row or key locks goes ahead of a session waiting to change
        the schema: that one may wait for a statement that waits for this block's rows. So does
        a block that used a table: a schema change of that table may be waiting for it
        (`await_users`). None on a database whose sessions cannot change a schema
        (`_statement_lock`)."""
        if not self._schema_may_change:
            return _NO_HOLD  # type: ignore[return-value]
        holder = self.lock_holder
        rows_held = holder is not None and bool(holder.held)
        return self._ddl_lock.shared(self.pid, self._waiting, rows_held or (
            holder is not None and bool(self._used)), tables, rows_held)

    def _waiting(self) -> tuple[Callable[[], None], int]:
        """What a wait for the DDL lock checks (cancel, statement_timeout) and its limit
        (lock_timeout, ms). Asked only when there is a wait: a statement waiting while it is
        planned is shown active from then on (`_show_waiting`)."""
        if self._preparing is not None and self.state != "active":
            self._show_waiting(self._preparing)
        timeout_ms = self._limit("statement_timeout")
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        return (lambda: self._check_wait(deadline)), self._limit("lock_timeout")

    def _show_waiting(self, sql: str) -> None:
        """pg_stat_activity shows the statement `sql`, waiting before it runs (for the DDL
        lock while it is planned), as PostgreSQL's: active, its text, started now."""
        self._statement_began()
        self.current_query = sql
        self.state = "active"
        self._shown_preparing = True

    def _check_wait(self, deadline: float | None) -> None:
        if self._cancel.is_set():
            raise QueryCanceled("canceling statement due to user request")
        if deadline is not None and time.monotonic() > deadline:
            raise QueryCanceled("canceling statement due to statement timeout")

    def _statement_lock(self, prepared: PreparedStatement) -> contextlib.AbstractContextManager:
        """The DDL lock a statement runs under: none for those that touch no data (a constant
        query, a query of the live state only unless rows gathered for a write are to be
        applied first, and COMMIT of a transaction that wrote nothing or failed: it rolls
        back), nor on a database whose sessions cannot change a schema (a follower's: its
        catalog moves only as it follows the writer's log, which takes no hold into account,
        and its schema changes fail with 25006 before they change anything)."""
        if not self._schema_may_change:
            return _NO_HOLD
        u = prepared.utility
        if prepared.constant or prepared.kind is StatementKind.EMPTY or self.ddl_open or (
                prepared.live and self.pending is None) or (
                u is not None and (
                u.kind in _NO_DDL_LOCK or (u.kind is UtilityKind.COMMIT and (
                    self.failed or self.txn is None or self.txn.empty)))):
            return _NO_HOLD
        return self._shared_ddl_lock(prepared.tables)

    def _current_plan(self, prepared: PreparedStatement,
                      hold: SharedHold | None) -> PreparedStatement:
        """The plan to run, once the statement holds the DDL lock: a query or write planned
        before a catalog change that landed since (it may have waited for that change) is
        planned again, as PostgreSQL re-plans after DDL; one whose result columns changed is
        refused as there (plancache.c). The hold then covers the tables the new plan reads
        (waiting for a change running on one of them, and planning again after it)."""
        if prepared.generation < 0 or prepared.generation == self.store.generation or \
                prepared.constant or prepared.kind not in (StatementKind.QUERY,
                                                           StatementKind.WRITE):
            return prepared  # (a constant query's plan depends on no catalog object)
        planned = prepared
        while 0 <= planned.generation != self.store.generation:
            planned = self._prepare_cached(prepared.sql, list(prepared.given_oids))
            if [(c.name, c.type) for c in planned.columns or []] != \
                    [(c.name, c.type) for c in prepared.columns or []] or \
                    planned.param_types != prepared.param_types:
                raise FeatureNotSupported("cached plan must not change result type")
            if hold is not None:
                hold.extend(planned.tables)
        return planned

    def _planning_lock(self, sql: str, live: bool = False) -> contextlib.AbstractContextManager:
        """The DDL lock planning `sql` takes: planning reads the catalog (`live`: a query of
        the live state only, which does not wait for it)."""
        if live or self.ddl_open or first_word(sql) == "copy":
            return _NO_HOLD
        u = recognise(sql)
        if u is not None and (u.kind in _NO_DDL_LOCK or u.kind is UtilityKind.COMMIT):
            return _NO_HOLD
        return self._shared_ddl_lock()

    def use_table(self, table_id: int, wrote: bool = False) -> None:
        """A block's read or write of a table: the first of each kind is told to the DDL
        lock, so a schema change of the table waits for the block's end."""
        holder = self.lock_holder
        known = self._used.get(table_id)
        if holder is not None and (known is None or (wrote and not known)):
            self._ddl_lock.use(holder, table_id, wrote, self._waiting)
            self._used[table_id] = wrote or bool(known)

    def await_table_users(self, table_ids: list[int], writers_only: bool, run: bool,
                          claim: Claim | None = None) -> None:
        """Before a schema change of the tables: wait until the other open blocks using
        them (`writers_only`: writing them) end. `run` (autocommit): the tables stay marked
        changed until `table_change_done`, so no block starts using them meanwhile. The
        waits are one lock's: lock_timeout counts for them all (`one_deadline`). `claim`:
        the change's claim of them, granted each table in turn (ddl_lock.py)."""
        with self._relation_lock_wait():
            self._ddl_lock.await_users(table_ids, self.pid, self.lock_holder,
                                       one_deadline(self.lock_waiting), writers_only, run,
                                       claim)

    @contextlib.contextmanager
    def _relation_lock_wait(self) -> Iterator[None]:
        """Show this session waiting for a relation's lock meanwhile (pg_locks,
        pg_stat_activity): a schema change waiting for the tables it changes."""
        self.relation_lock_wait = True
        try:
            yield
        finally:
            self.relation_lock_wait = False

    def blocking_pids(self) -> list[int]:
        """The sessions this one's statement waits for (pg_blocking_pids): the block holding
        the row it waits for, the schema changes it waits behind, the blocks a schema change
        of its own waits for (ddl_lock.py)."""
        pids = self._ddl_lock.blockers(self.pid)
        holder = row_lock_wait_of(self)
        if holder is not None:
            pids.add(holder.pid)
        return sorted(pids)

    def waits_for_tables(self) -> bool:
        """Whether a statement of this session waits for the DDL lock or behind a schema
        change's claim (pg_stat_activity: a wait for a relation's lock)."""
        return self._ddl_lock.waits(self.pid)

    def table_change_done(self, table_ids: list[int]) -> None:
        """The autocommit schema change of the tables ended (`await_table_users(run=True)`)."""
        self._ddl_lock.done(table_ids, self.pid)

    def table_users_left(self, table_ids: list[int], writers_only: bool) -> bool:
        """Whether another open block uses one of the tables (asked holding the DDL lock
        exclusively, when none can start to)."""
        return self._ddl_lock.has_users(table_ids, self.pid, writers_only)

    def take_ddl_lock(self, set_aside: bool = False) -> None:
        """Hold the DDL lock exclusively until `drop_ddl_lock`, waiting for other sessions'
        statements to end (cancel, statement_timeout, lock_timeout); `set_aside`: this
        statement's shared hold does not count meanwhile (ddl_lock.py)."""
        timeout_ms = self._limit("statement_timeout")
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        self._ddl_lock.acquire_exclusive(self.pid, lambda: self._check_wait(deadline),
                                         self._limit("lock_timeout"), set_aside)

    def claim_tables(self, named: list[int], reach: list[int], block: bool = False) -> Claim:
        """Queue other sessions' statements on the `named` tables behind this schema change
        of them (autocommit: once it runs, those on the `reach` tables too: foreign keys),
        waiting first for an earlier change of one of them; `drop_claim` ends it. `block`:
        the change is in this session's transaction block (ddl_lock.py)."""
        return self._ddl_lock.claim(self.pid, named, reach, self._waiting, block)

    def await_claim(self, claim: Claim) -> None:
        """Wait until the claimed tables are free to change: no other block uses them and no
        other statement reads or writes them (ddl_lock.py). The waits are one lock's:
        lock_timeout counts for them all (`one_deadline`)."""
        with self._relation_lock_wait():
            self._ddl_lock.await_claim(claim, self.lock_holder, one_deadline(self.lock_waiting))

    def drop_claim(self, claim: Claim) -> None:
        """The change ended: the statements queued behind it go on."""
        self._ddl_lock.unclaim(claim)

    def drop_ddl_lock(self) -> None:
        """End the exclusive hold of `take_ddl_lock`."""
        self._ddl_lock.release(self.pid)

    def open_schema_changes(self) -> None:
        """The first DDL statement of a transaction block: take the DDL lock exclusively
        (waiting for other sessions' statements to end) and open the store's deferred
        schema changes, which COMMIT writes and ROLLBACK undoes."""
        if self.ddl_open:
            return
        self.take_ddl_lock()
        try:
            self.store.begin_deferred()
        except BaseException:
            self._ddl_lock.release(self.pid)
            raise
        self.ddl_open = True

    def close_schema_changes(self, commit_ops: list | None) -> None:
        """The end of a transaction block that changed the schema: commit its changes with
        `commit_ops` (its writes) in one manifest version, or (None) roll them back; the DDL
        lock is released either way."""
        if not self.ddl_open:
            return
        try:
            if commit_ops is None:
                self.store.rollback_deferred()
            else:
                self.store.commit_deferred(commit_ops, self.lock_holder)
        finally:
            self.ddl_open = False
            self._ddl_lock.release(self.pid)
            self._plan_cache.clear()

    def _run(self, prepared: PreparedStatement, params: list, max_rows: int) -> Result:
        """Run `prepared` through the handler of its kind (also for statements inside other
        statements: a cursor's query, EXECUTE's statement)."""
        return RUNNERS[prepared.kind](self, prepared, params, max_rows)

    # A statement whose operators held more than this gives freed memory back to the system.
    TRIM_AFTER_BYTES = 64 << 20

    def _after_statement(self) -> None:
        self.first_alone = False
        if not self.explicit:  # the transaction ended: its locks go, and what it located
            self.release_xact_locks()
            forget_located()
        memory, self._statement_memory = self._statement_memory, None
        if memory is not None and memory.peak >= self.TRIM_AFTER_BYTES:
            return_free_memory()

    def refuse_in_failed_block(self, prepared: PreparedStatement) -> None:
        """25P02 for a statement other than COMMIT / ROLLBACK [TO] while the block is failed:
        what running it does, and what PostgreSQL's Bind answers already."""
        if self.failed and not (prepared.utility is not None
                                and prepared.utility.kind in _RUN_IN_FAILED_BLOCK):
            raise _failed_block()

    def begin_implicit(self, first_alone: bool) -> None:
        """Open an implicit transaction block for the statements sent together that follow
        (an extended-protocol batch up to its Sync: transactions.py). Its single-row INSERTs
        may be gathered: the front end answers an error in them at the failing row's Execute."""
        transactions.begin_implicit(self, first_alone)
        self.gathering = True

    def apply_pending(self) -> None:
        """Put the rows an executemany gathered into the block's transaction now (the front
        end, before their answers leave); errors: `writes.apply_pending`, logged under the
        statement of the failing row."""
        try:
            writes.apply_pending(self)
        except SqlVecError as error:
            if self._depth == 0:
                statement_log.log_error(self, error, _statement_of(error, ""))
            raise

    def takes_rows(self, prepared: PreparedStatement) -> bool:
        """Whether the front end may give the rows of further runs of `prepared` (the
        statement whose row was gathered last) as parameter values, without running it
        (`take_rows`): its plan current, its rows gathered last, nothing cancelling, no run
        to be logged with its duration (log_min_duration_statement)."""
        write = prepared.compiled
        return writes.takes_rows(self, write) and self.plan_is_current(  # type: ignore[arg-type]
            prepared) and not self._cancel.is_set() and not self.terminated \
            and self._limit("log_min_duration_statement") < 0

    def take_rows(self, prepared: PreparedStatement, rows: list, seconds: float) -> None:
        """Runs of `prepared` given as their rows' values (`FastInsert.values`), each
        answered `INSERT 0 1` by the front end: gathered with the rows before them, and
        counted as statements (pg_stat_statements, the statement observer) as if run."""
        if not rows:
            return
        writes.take_rows(self, rows)
        self._count_runs(prepared, len(rows), seconds)

    def take_columns(self, prepared: PreparedStatement, params: list, seconds: float) -> int:
        """`take_rows` for runs whose values came column-wise, each parameter's decoded
        together (`FastInsert.columns_of`): how many rows, 0 when a value needs the runs
        taken one by one."""
        n = writes.take_columns(self, params)
        if n:
            self._count_runs(prepared, n, seconds)
        return n

    def _count_runs(self, prepared: PreparedStatement, n: int, seconds: float) -> None:
        """Runs taken without running the statement, counted as statements
        (pg_stat_statements, the statement observer) as if run."""
        key = prepared.stats_key
        if key is not None and self._userid is not None:
            mean = seconds * 1000.0 / n
            self.database.statement_stats.merge(
                self._userid, database_oid(self.database_name), key[0], key[1], n,
                seconds * 1000.0, mean, mean, mean, 0.0, n)
        observe = self.database.on_statement
        if observe is not None:
            for _ in range(n):
                observe(seconds / n, None)

    def end_implicit(self) -> None:
        """Commit the implicit block still open, if any (at Sync)."""
        transactions.end_implicit(self)

    def block_transaction(self, repeatable: bool = False) -> Transaction:
        """The buffer of a transaction block that starts, with row locks held until its end
        (`release_xact_locks`); `repeatable`: REPEATABLE READ or SERIALIZABLE, also when
        default_transaction_isolation says so."""
        if not repeatable:
            repeatable = transactions.is_repeatable(self.settings.get("default_transaction_isolation", ""))
        self.release_row_locks()
        self.lock_holder = LockHolder(self.pid, self.lock_waiting, repeatable)
        txn = Transaction(locks=self.lock_holder)
        txn.on_first_write = self._first_write
        txn.on_read = self.use_table
        return txn

    def _first_write(self, table_id: int) -> None:
        self.use_table(table_id, True)

    def lock_waiting(self) -> tuple[Callable[[], None], int, int]:
        """What a wait for a row lock checks (cancel, statement_timeout), its lock_timeout and
        deadlock_timeout (ms). A block whose schema changes hold the DDL lock also fails
        (40P01) a wait for a block that waits for that lock."""
        check, timeout_ms = self._waiting()
        holder = self.lock_holder
        if self.ddl_open and holder is not None:
            check = self._checking_cycle(check, holder)
        return check, timeout_ms, self._limit("deadlock_timeout")

    def _checking_cycle(self, check: Callable[[], None],
                        holder: LockHolder) -> Callable[[], None]:
        """`check`, and `DdlLock.check_cycle` for the block `holder` waits for."""
        def checked() -> None:
            check()
            blocker = holder.waits_for
            if blocker is not None:
                self._ddl_lock.check_cycle(self.pid, blocker.pid,
                                           f"ShareLock on transaction {blocker.xid}")
        return checked

    def release_row_locks(self) -> None:
        """The block's row locks go (after its commit is applied): their waiters wake."""
        holder, self.lock_holder = self.lock_holder, None
        if holder is not None:
            if self._used:
                self._ddl_lock.forget(holder, list(self._used))
                self._used = {}
            holder.release()

    def release_xact_locks(self) -> None:
        """The transaction ended: its row locks and transaction-level advisory locks go."""
        self.release_row_locks()
        if self._advisory_xact:
            self._advisory_xact = False
            self._advisory_locks().release_all(self.pid, session=False, xact=True)

    def note_error(self) -> None:
        """An error raised outside the engine (the protocol's, e.g. a Bind parameter that does
        not decode): it fails an explicit block as any error does in PostgreSQL."""
        self._fail()

    def _fail(self) -> None:
        """An error: an explicit block is failed until its end; an implicit block is rolled
        back; an autocommit statement's writes are dropped."""
        if self.implicit:
            transactions.abort_implicit(self)
        elif self.explicit:
            self.failed = True
            if not self.savepoints:  # nothing of the block can commit now: as PostgreSQL's
                self.release_row_locks()  # abort, its row locks go at once
        else:
            self.txn = None

    def _check_not_failed(self) -> None:
        if self.failed:
            raise _failed_block()

    def _context(self, params: list) -> ExecContext:
        timeout_ms = self._limit("statement_timeout")
        self._statement_memory = MemoryAccount(self._limit("work_mem") * 1024)
        return ExecContext(
            params=params,
            settings=self.settings,
            snapshot_of=self._snapshot_of,
            table_of=self.store.table if self.lock_holder is None else self._table_used,
            overlay=self.txn,
            virtual_table=self._virtual_table,
            cancel=self._cancel,
            deadline=time.monotonic() + timeout_ms / 1000 if timeout_ms else None,
            memory=self._statement_memory,
            services=self,
        )

    def _snapshot_of(self, table_id: int):
        if self.lock_holder is not None:
            return self._table_used(table_id).snapshot()
        return self.store.table(table_id).snapshot()

    def _table_used(self, table_id: int) -> Table:
        """A table a block's statement reads (key lookups, statistics): its use is known."""
        if table_id not in self._used:
            self.use_table(table_id)
        return self.store.table(table_id)

    def _virtual_table(self, name: str) -> pa.Table:
        return self.database.virtual_table(self, name)

    def _limit(self, name: str) -> int:
        """A setting with units in its base unit (kB, ms), parsed once per value."""
        text = self.settings.get(name) or DEFAULT_SETTINGS[name]
        cached = self._limits.get(name)
        if cached is None or cached[0] != text:
            cached = self._limits[name] = (text, parse_amount(name, text))
        return cached[1]

    # COPY (the front end moves the data; see copy.py) ------------------------------------------------

    def copy_columns(self, command: CopyCommand) -> list[ResultColumn]:
        """The columns COPY FROM fills, in the order its data gives them."""
        with self._shared_ddl_lock():
            return copy_statements.copy_columns(self, command)

    def copy_loader(self, table: str,
                    columns: list[str] | None) -> copy_statements.CopyLoader | None:
        """What stages COPY FROM's pieces for the log while the rest arrive (`stage`, from any
        thread), or None where the rows go the usual way; pass it to `copy_in`."""
        with self._copy_lock(table):
            return copy_statements.copy_loader(self, table, columns)

    def copy_in(self, table: str, columns: list[str] | None, rows: pa.Table,
                staged: list | None = None,
                loader: copy_statements.CopyLoader | None = None) -> int:
        """COPY ... FROM: insert decoded rows into `table`; returns the row count. `staged`:
        every piece of `rows` as `loader.stage` returned it, in order."""
        with self._copy_lock(table):
            self.apply_pending()
            return copy_statements.copy_in(self, table, columns, rows, staged, loader)

    def _copy_lock(self, table: str) -> SharedHold:
        """COPY FROM's DDL hold, on the table it names too: a schema change of the table
        queues it, as any write."""
        with resolving_tables() as seen:
            try:
                copy_statements.target_table(self, table)
            except SqlVecError:
                pass  # (reported by COPY itself, under the hold)
        return self._shared_ddl_lock(frozenset(seen))

    def copy_progress(self, command: CopyCommand) -> CopyProgress:
        """Start showing a COPY in pg_stat_progress_copy: the front end adds the bytes it moves
        to the returned record (and the rows, for COPY TO) and calls `end_progress` after."""
        return copy_statements.start_progress(self, command)

    def end_progress(self) -> None:
        """The running command (COPY) is over: its progress row goes."""
        self.progress = None

    def copy_query(self, command: CopyCommand) -> Result:
        """COPY ... TO: the rows to send (the table's, or the query's)."""
        with self._shared_ddl_lock():
            return copy_statements.copy_query(self, command)

    # Cursors as protocol portals ---------------------------------------------------------------------

    def cursor_columns(self, name: str) -> list[ResultColumn] | None:
        """The columns of the open cursor `name` (a portal to Describe), or None."""
        cursor = self.cursors.get(name)
        return cursor.columns if cursor is not None else None

    # Lifecycle ----------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Interrupt the running statement (57014); safe from any thread."""
        self._cancel.set()

    def notice(self, notice: Notice) -> None:
        """A notice or warning of the running statement, sent with its result."""
        self._notices.append(notice)

    def terminate(self) -> None:
        """End the session (pg_terminate_backend): its running statement is interrupted and the
        front end serving it is told to close it (57P01). Safe from any thread."""
        self.terminated = True
        self._cancel.set()
        hook = self.on_terminate
        if hook is not None:
            hook()

    def close(self) -> None:
        """End the session: an open transaction is dropped uncommitted and the session leaves the
        database's list; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.txn = None
        self.close_schema_changes(None)
        self._ddl_lock.let_go_parsed(self.pid, last=True)
        self.release_row_locks()
        self._advisory_locks().release_all(self.pid, session=True, xact=True)
        self.database.unregister_session(self)

    # Advisory locks (pg_advisory_lock and its family) -----------------------------------------------

    def _advisory_locks(self) -> AdvisoryLocks:
        return locks_of(self.database, self.database_name)

    def advisory_lock(self, key: Hashable, *, xact: bool, wait: bool,
                      check_interrupts: Callable[[], None]) -> bool:
        """Hold advisory lock `key` for the session or (`xact`) its transaction; False if
        another session holds it and not `wait`."""
        got = self._advisory_locks().acquire(self.pid, key, xact=xact, wait=wait,
                                             check_interrupts=check_interrupts)
        if got and xact:
            self._advisory_xact = True
        return got

    def advisory_unlock(self, key: Hashable | None) -> bool:
        """Release one session-level hold of `key` (None: all of them)."""
        locks = self._advisory_locks()
        if key is None:
            locks.release_all(self.pid, session=True, xact=False)
            return True
        return locks.release(self.pid, key)

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
        """`schema.name` of a table or index OID: sequence functions given a regclass look the
        sequence up by this name."""
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

    def _sequence_key(self, name: str) -> str:
        """The catalog key of a sequence named as the user wrote it (the search path's)."""
        parts = name_parts(name) if '"' in name else name.rpartition(".")[::2]
        schema, seq = (parts[0], parts[-1]) if len(parts) > 1 else ("", parts[-1])
        key = f"{schema or self.catalog.creation_schema(None, self.search_path)}.{seq}"
        if key not in self.catalog.state["sequences"]:
            for candidate in self.search_path:
                if f"{candidate}.{seq}" in self.catalog.state["sequences"]:
                    return f"{candidate}.{seq}"
        return key

    def give_back(self, name: str, values: list[int], value: int) -> None:
        """`values`, which a sequence handed out after `value` (in that order), were not used
        after all: a cached sequence's go back to the front of this session's cache (they
        were the session's: others took values between them maybe); another goes back to
        `value` if it handed out nothing since and `values` are all it handed out after it.
        currval() is `value` again."""
        key = self._sequence_key(name)
        seq = self.catalog.sequence(key)
        if int(seq.get("cache", 1)) > 1:
            held = self.sequence_caches.get(seq["oid"])
            identity = seqrules.identity(seq)
            if held is None or held[0] == identity:
                self.sequence_caches[seq["oid"]] = (identity, [*values, *(held[1] if held else ())])
        elif values == seqrules.between(seq, value, values[-1]):
            self.catalog.give_back(key, values[-1], value)
        self.last_sequence_values[seq["oid"]] = value

    def nextval(self, name: str, count: int = 1) -> list[int]:
        """nextval() on a sequence named as the user wrote it, resolved on the search path,
        remembering the value for currval()."""
        key = self._sequence_key(name)
        seq = self.catalog.sequence(key)
        cache = int(seq.get("cache", 1))
        if cache > 1:
            values = self._cached_nextval(key, seq, count, cache)
        else:
            self.sequence_caches.pop(seq["oid"], None)
            values = self.catalog.nextval(key, count)
        self.nextval_calls += 1
        self.last_sequence = seq["oid"]
        self.last_sequence_values[self.last_sequence] = values[-1]
        return values

    def _cached_nextval(self, key: str, seq: dict, count: int, cache: int) -> list[int]:
        """nextval() of a sequence with CACHE n, as PostgreSQL's: values come from this
        session's cache, and when it runs out the sequence hands the session n at a time
        (durably reserved first; the sequence's last value is then the block's last, and
        values a session does not use are skipped)."""
        held = self.sequence_caches.pop(seq["oid"], None)
        ahead = held[1] if held is not None and held[0] == seqrules.identity(seq) else []
        values, ahead = ahead[:count], ahead[count:]
        need = count - len(values)
        if need:
            taken = self.catalog.nextval(key, need, ahead=-need % cache)
            values, ahead = values + taken[:need], taken[need:]
        if ahead:
            self.sequence_caches[seq["oid"]] = (seqrules.identity(self.catalog.sequence(key)),
                                                ahead)
        return values

    def discard_sequences(self) -> None:
        """DISCARD SEQUENCES (and ALL): currval(), lastval() and the cached values forgotten."""
        self.sequence_caches.clear()
        self.last_sequence_values.clear()
        self.last_sequence = None

    def currval(self, name: str) -> int:
        """currval(): this session's last value of the sequence named as the user wrote it,
        followed by OID as PostgreSQL does (under a new name after a rename; 55000 before
        any)."""
        seq = self.catalog.state["sequences"].get(self._sequence_key(name))
        value = None if seq is None else self.last_sequence_values.get(seq["oid"])
        if value is None:
            raise SqlVecError(f'currval of sequence "{name}" is not yet defined in this session',
                              sqlstate="55000")
        return value

    def lastval(self) -> int:
        """lastval(): currval() of the sequence this session's last nextval() used, followed
        by OID as PostgreSQL does (a rename keeps it; once dropped it is undefined, 55000)."""
        oid = self.last_sequence
        if not any(seq["oid"] == oid for seq in self.catalog.state["sequences"].values()):
            raise SqlVecError("lastval is not yet defined in this session", sqlstate="55000")
        return self.last_sequence_values[oid]


_NORMALIZED = frozenset({StatementKind.QUERY, StatementKind.WRITE, StatementKind.EXPLAIN})


def _abbreviated(sql: str, limit: int = 500) -> str:
    """A statement as the server log shows it: long ones cut, with their length."""
    return sql if len(sql) <= limit else f"{sql[:limit]}... ({len(sql)} characters)"


def _statement_of(error: SqlVecError, statement: str) -> str:
    """The text an error is logged under: that of the gathered row it names, if any."""
    gathered = getattr(error, "gathered", None)
    return gathered.sql if gathered is not None else statement
