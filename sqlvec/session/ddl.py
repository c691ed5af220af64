"""Running DDL: CREATE, DROP, ALTER, TRUNCATE and COMMENT, one handler per syntax class.

The work is in `execution/ddl.py` and the catalog; this module adds what belongs to the
session: transaction-block rules, the IF NOT EXISTS notices, and clearing the plan cache.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from sqlvec.catalog import objects as O
from sqlvec.catalog.views import find_view
from sqlvec.errors import (
    FeatureNotSupported,
    Notice,
    ObjectInUse,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.execution import alter, ddl, sequence_ddl
from sqlvec.execution.builder import Builder
from sqlvec.execution.expressions import CompileEnv, Frame
from sqlvec.execution.foreign_key_ddl import (
    add_column_references,
    after_alter,
    before_alter,
    drop_referencing,
    forget_dangling,
    referencing,
    truncate_targets,
    validate_command,
    validate_target,
)
from sqlvec.execution.foreign_keys import has_pending_checks
from sqlvec.execution.transaction import Transaction
from sqlvec.execution.views import alter_view, drop_views, rename_references
from sqlvec.plan.planner import Planner
from sqlvec.session import matviews, transactions, views
from sqlvec.session.prepare import comment_on_extension, plan_context, referenced_tables
from sqlvec.session.results import PreparedStatement, Result

if TYPE_CHECKING:
    from sqlvec.session.core import Session
    from sqlvec.session.ddl_lock import Claim


def run_ddl(session: Session, prepared: PreparedStatement, params: list,
            max_rows: int) -> Result:
    """Run a DDL statement by its handler and drop cached plans. In a transaction block the
    block's schema changes are opened first (transactions.py): the statement's effects stay
    private to the block until COMMIT and ROLLBACK undoes them."""
    ast = prepared.ast
    assert ast is not None
    tables, writers_only = _tables_changed(session, ast)
    if session.explicit:
        kind = (ast.args.get("kind") or "").upper() if isinstance(ast, (exp.Create, exp.Drop)) \
            else ""
        verb = "CREATE" if isinstance(ast, exp.Create) else "DROP"
        if kind == "INDEX" and ast.args.get("concurrently"):  # PostgreSQL's refusals
            transactions.refuse_in_block(session, f"{verb} INDEX CONCURRENTLY")
        elif kind == "DATABASE":
            transactions.refuse_in_block(session, f"{verb} DATABASE")
        if session.explicit:  # (not left for a batch's first statement: refuse_in_block)
            _refuse_pending_checks(session, ast, tables)
            _open_after_users(session, tables, writers_only)
    handler = _HANDLERS.get(type(ast))
    if handler is None:  # pragma: no cover - prepare.py lets only these classes through
        raise FeatureNotSupported(type(ast).__name__)
    notices: list[Notice] = []

    def change() -> str:
        return handler(session, ast, notices)

    if session.explicit:
        tag = change()
    elif _restarts_identity(ast):
        tag = _run_as_block(session, tables, change)
    else:
        tag = _run_autocommit(session, tables, writers_only, _catalog_wide(ast), change) \
            if tables else change()
    session._plan_cache.clear()
    return Result(tag, notices=notices)


def _run_autocommit(session: Session, tables: list[int], writers_only: bool,
                    catalog_wide: bool, change: Callable[[], str]) -> str:
    """An autocommit schema change of existing tables, once no open block uses them. One that
    changes their shape claims them first, as PostgreSQL's AccessExclusiveLock request:
    later statements on them queue behind it, and while it runs no statement reads or
    writes them or the tables they reach through foreign keys (a statement planned against
    the old shape waits, then is planned again); statements on other tables go on. A change
    of the whole catalog (DROP SCHEMA ... CASCADE: views, sequences, functions and types go
    too, which statements reach without naming a table) holds the DDL lock exclusively
    instead. CREATE INDEX lets statements go on (ShareLock) and only keeps blocks from
    starting to write the tables meanwhile."""
    if writers_only:
        session.await_table_users(tables, writers_only, run=True)
        try:
            return change()
        finally:
            session.table_change_done(tables)
    if catalog_wide:
        _lock_after_users(session, tables, writers_only,
                          lambda: session.take_ddl_lock(set_aside=True), session.drop_ddl_lock)
        try:
            return change()
        finally:
            session.drop_ddl_lock()
    claim = session.claim_tables(tables, _foreign_key_neighbours(session, tables))
    try:
        session.await_claim(claim)
        return change()
    finally:
        session.drop_claim(claim)


def _run_as_block(session: Session, tables: list[int], change: Callable[[], str]) -> str:
    """An autocommit change that writes rows and the catalog (TRUNCATE ... RESTART IDENTITY)
    as a one-statement block: its schema changes opened as a block's TRUNCATE opens them
    (`_open_after_users`), so the change commits both in one manifest version
    (`Session.close_schema_changes`) and a failure or crash before it leaves neither."""
    _open_after_users(session, tables, False)
    try:
        return change()
    finally:
        session.close_schema_changes(None)  # (after the change's commit: nothing left open)


def _restarts_identity(ast: exp.Expression) -> bool:
    """TRUNCATE ... RESTART IDENTITY: it empties tables and restarts their sequences."""
    return isinstance(ast, exp.TruncateTable) and \
        str(ast.args.get("identity") or "").upper() == "RESTART"


def _open_after_users(session: Session, tables: list[int], writers_only: bool) -> None:
    """A schema change in a block: once no other block uses its tables, open the block's
    schema changes (the DDL lock held exclusively until the block ends: every other
    session's statements wait for that end). A change of the tables' shape claims them
    meanwhile, as PostgreSQL's AccessExclusiveLock request: later statements on them queue
    behind it rather than run on the old shape, and then wait for the block's end with the
    rest; statements on other tables go on until the lock is taken. Failing (lock_timeout,
    cancel, 40P01), the claim ends with the statement, as a lock request does."""
    claim = session.claim_tables(tables, _foreign_key_neighbours(session, tables), block=True) \
        if tables and not writers_only and not session.ddl_open else None
    try:
        _lock_after_users(session, tables, writers_only, session.open_schema_changes,
                          lambda: session.close_schema_changes(None), claim)
    finally:
        if claim is not None:
            session.drop_claim(claim)


def _catalog_wide(ast: exp.Expression) -> bool:
    """DROP SCHEMA: it changes more of the catalog than tables (`_run_autocommit`)."""
    return isinstance(ast, exp.Drop) and (ast.args.get("kind") or "").upper() == "SCHEMA"


def _foreign_key_neighbours(session: Session, ids: list[int]) -> list[int]:
    """The tables referencing one of `ids` or referenced by one through a foreign key: a
    change of a table changes their constraints too (renamed or dropped columns), and their
    writes check or act on its rows."""
    out: list[int] = []
    for table_id in ids:
        out.extend(d.id for d, _c in referencing(session.store, table_id))
        table = session.store.tables.get(table_id)
        if table is not None:
            out.extend(referenced_tables(table.def_, None))
    return out


def _lock_after_users(session: Session, tables: list[int], writers_only: bool,
                      lock: Callable[[], None], let_go: Callable[[], None],
                      claim: Claim | None = None) -> None:
    """Wait for the other open blocks using the tables (`claim`: the change's claim of them,
    granted each in turn), then take the DDL lock exclusively (`lock`: in a block, opening
    its schema changes). A block that started to use a table while this one waited for the
    lock is waited for again, the lock let go meanwhile (unless the block's earlier schema
    changes hold it: that block's statements wait for them)."""
    while True:
        held = session.ddl_open
        if tables:
            session.await_table_users(tables, writers_only, run=False, claim=claim)
        lock()
        if held or not tables or not session.table_users_left(tables, writers_only):
            return
        let_go()


def _tables_changed(session: Session, ast: exp.Expression) -> tuple[list[int], bool]:
    """The ids of the existing tables a DDL statement changes, which wait for the open blocks
    using them, and whether only blocks writing them are waited for (CREATE INDEX, as
    PostgreSQL's ShareLock). As PostgreSQL's locks: ALTER / DROP / TRUNCATE TABLE, DROP
    INDEX (the index's table) and DROP SCHEMA ... CASCADE (its tables), with the tables a
    CASCADE reaches through foreign keys. VALIDATE CONSTRAINT, ALTER INDEX and COMMENT ON
    take a lock no reader or writer conflicts with, and views, sequences and schemas are not
    tables: those wait for none."""
    kind = (ast.args.get("kind") or "").upper()
    targets = _named_targets(ast, kind)
    if targets is None:
        return [], False
    catalog, path = session.catalog, session.search_path
    if kind == "INDEX" and isinstance(ast, exp.Drop):
        found = [alter.find_index(catalog, t.name, t.db or None, path) for t in targets]
        ids = [f[0].id for f in found if f is not None]
    elif kind == "SCHEMA":
        names = {t.db or t.name for t in targets}
        ids = [i for i, t in session.store.tables.items() if t.def_.schema in names]
    else:
        ids = _found_tables(session, targets)
    if _cascades(ast):
        ids = _referencing_closure(session, ids)
    return ids, kind == "INDEX" and isinstance(ast, exp.Create)


def _refuse_pending_checks(session: Session, ast: exp.Expression, tables: list[int]) -> None:
    """In a block (BEGIN's, or the implicit one of statements sent together), TRUNCATE, ALTER
    TABLE (but a rename; VALIDATE CONSTRAINT too), CREATE INDEX and DROP TABLE of a table
    with checks deferred to COMMIT fail (55006), as PostgreSQL refuses to change a table
    with pending trigger events; the tables in the order named, those a TRUNCATE ... CASCADE
    reaches after them (DROP TABLE ... CASCADE drops only their foreign keys)."""
    verb = _pending_checks_verb(ast)
    if verb is None or session.txn is None or not session.txn.deferred_checks and \
            not session.txn.overlays:
        return
    if verb == "DROP TABLE":
        tables = _found_tables(session, _named_targets(ast, "TABLE") or [])
    elif isinstance(ast, exp.Command):  # VALIDATE CONSTRAINT: refused as PostgreSQL's too
        validated = validate_target(_command_text(ast), session.catalog, session.search_path)
        tables = [validated] if validated is not None else []
    for table_id in tables:
        if has_pending_checks(session.store, session.txn, table_id):
            name = session.store.table(table_id).def_.name
            raise ObjectInUse(f'cannot {verb} "{name}" because it has pending trigger events')


def _pending_checks_verb(ast: exp.Expression) -> str | None:
    """How PostgreSQL names a statement refused on a table with pending checks; None when it
    is not refused (a rename, or a statement of another kind)."""
    kind = (ast.args.get("kind") or "").upper()
    if isinstance(ast, exp.TruncateTable):
        return "TRUNCATE"
    if isinstance(ast, exp.Alter) and kind == "TABLE":
        renames = all(isinstance(a, (exp.AlterRename, exp.RenameColumn))
                      for a in ast.args.get("actions") or [])
        return None if renames else "ALTER TABLE"
    if isinstance(ast, exp.Create) and kind == "INDEX":
        return "CREATE INDEX"
    if isinstance(ast, exp.Command) and str(ast.this).upper() == "ALTER":
        return "ALTER TABLE"
    if isinstance(ast, exp.Drop) and kind == "TABLE":
        return "DROP TABLE"
    return None


def _command_text(ast: exp.Command) -> str:
    """The text after ALTER of a statement sqlglot keeps as a command (VALIDATE CONSTRAINT)."""
    body = ast.expression
    return body.name if isinstance(body, exp.Literal) else str(body or "")


def _found_tables(session: Session, targets: list[exp.Table]) -> list[int]:
    """The ids of the existing tables among `targets` (those missing are the handler's
    error)."""
    catalog, path = session.catalog, session.search_path
    tables = (catalog.find_table(t.name, t.db or None, path) for t in targets)
    return [t.id for t in tables if t is not None]


def _named_targets(ast: exp.Expression, kind: str) -> list[exp.Table] | None:
    """The relations a DDL statement that waits for blocks names; None: it waits for none."""
    if isinstance(ast, exp.Alter) and kind == "TABLE":
        targets = [ast.this]
    elif isinstance(ast, exp.Drop) and (kind in ("TABLE", "INDEX") or
                                        (kind == "SCHEMA" and ast.args.get("cascade"))):
        targets = ast.args.get("tables") or [ast.this]
    elif isinstance(ast, exp.TruncateTable):
        targets = ast.expressions
    elif isinstance(ast, exp.Create) and kind == "INDEX" and isinstance(ast.this, exp.Index):
        targets = [ast.this.args.get("table")]
    else:
        return None
    return [t for t in targets if isinstance(t, exp.Table)]


def _cascades(ast: exp.Expression) -> bool:
    """DROP TABLE / TRUNCATE ... CASCADE: the tables referencing those named change too (their
    foreign keys dropped, their rows emptied)."""
    if isinstance(ast, exp.TruncateTable):
        return str(ast.args.get("option") or "").upper() == "CASCADE"
    return isinstance(ast, exp.Drop) and bool(ast.args.get("cascade"))


def _referencing_closure(session: Session, ids: list[int]) -> list[int]:
    """`ids` and every table referencing one of them through a foreign key, transitively."""
    out = list(dict.fromkeys(ids))
    for table_id in out:  # grows while iterated: each found table is looked through too
        out.extend(d.id for d, _c in referencing(session.store, table_id) if d.id not in out)
    return out


def _exists_notice(name: str) -> Notice:
    """CREATE ... IF NOT EXISTS of an existing relation: PostgreSQL's NOTICE, 42P07."""
    return Notice.notice(f'relation "{name}" already exists, skipping', "42P07")


def _create(session: Session, ast: exp.Create, notices: list[Notice]) -> str:
    kind = (ast.args.get("kind") or "").upper()
    path = session.search_path
    if kind == "TABLE" and ast.args.get("expression") is not None:
        return views.create_table_as(session, ast, notices)
    if kind == "VIEW" and any(isinstance(p, exp.MaterializedProperty) for p in
                              (ast.args.get("properties") or exp.Properties()).expressions):
        return matviews.create(session, ast, notices)
    if kind == "VIEW":
        return views.create_view(session, ast, notices)
    if kind == "TABLE":
        tag = ddl.create_table(ast, session.catalog, path)
        if tag == "NOTICE":
            notices.append(_exists_notice(ast.this.this.name))
            tag = "CREATE TABLE"
        return tag
    if kind == "INDEX":
        tag = ddl.create_index(ast, session.catalog, path,
                               track=lambda report: setattr(session, "progress", report))
        if tag == "NOTICE":
            notices.append(_exists_notice(ast.this.name))
            tag = "CREATE INDEX"
        return tag
    if kind == "SCHEMA" and ast.args.get("exists"):
        name = ast.this.db or ast.this.name
        if session.catalog.has_schema(name):  # PostgreSQL's notice (schemacmds.c): 42P06
            notices.append(Notice.notice(f'schema "{name}" already exists, skipping', "42P06"))
    tag = ddl.create_other(ast, session.catalog, path, session.database)
    if tag == "NOTICE":  # CREATE SEQUENCE IF NOT EXISTS
        notices.append(_exists_notice(ast.this.name))
        tag = f"CREATE {kind}"
    return tag


def _drop(session: Session, ast: exp.Drop, notices: list[Notice]) -> str:
    if (ast.args.get("kind") or "").upper() == "VIEW" and ast.args.get("materialized"):
        tables = matviews.drop(session, ast, notices)
        if tables is not None:
            ddl.drop(tables, session.catalog, session.search_path, session.database, notices)
        return "DROP MATERIALIZED VIEW"
    if (ast.args.get("kind") or "").upper() == "VIEW":
        return drop_views(ast, session.catalog, session.search_path, notices)
    if (ast.args.get("kind") or "").upper() == "TABLE":
        views.check_drop_table(session, ast, notices)
        found = [session.catalog.find_table(t.name, t.db or None, session.search_path)
                 for t in ast.args.get("tables") or [ast.this]]
        drop_referencing(session.store, {t.id for t in found if t is not None},
                         bool(ast.args.get("cascade")), notices)
    tag = ddl.drop(ast, session.catalog, session.search_path, session.database, notices)
    if (ast.args.get("kind") or "").upper() == "SCHEMA":
        forget_dangling(session.store)
    return tag


def _alter(session: Session, ast: exp.Expression, notices: list[Notice]) -> str:
    """ALTER TABLE / INDEX / SEQUENCE (execution/alter.py); constraint actions go on to
    `ddl.alter_table`."""
    if (ast.args.get("kind") or "").upper() == "VIEW":
        return alter_view(ast, session.catalog, session.search_path)
    renamed = views.renamed_table(session, ast)
    path = session.search_path
    tools = alter.AlterTools(
        catalog=session.catalog, search_path=path,
        planner=lambda: Planner(plan_context(session)),
        builder=lambda: _builder(session),
        context=lambda: session._context([]),
        constant_default=lambda col: _constant_default(session, col),
        notices=notices, transaction=session.txn if session.explicit else None)
    if isinstance(ast, exp.Command):  # ALTER TABLE ... VALIDATE CONSTRAINT, kept as text
        tag = validate_command(_command_text(ast), session.catalog, path, notices)
        if tag is not None:
            return tag
    target = ast.this if (ast.args.get("kind") or "").upper() == "TABLE" else None
    table = session.catalog.find_table(target.name, target.db or None, path) \
        if isinstance(target, exp.Table) else None
    if table is not None:
        matviews.refuse(session, [table], ast.args.get("actions") or [])
    referenced = before_alter(session.store, table, ast.args.get("actions") or [], notices) \
        if table is not None else {}
    tag = alter.alter(ast, tools, lambda rest: ddl.alter_table(
        rest, session.catalog, path, lambda col: _constant_default(session, col), notices))
    if referenced:  # referencing constraints follow renamed columns
        after_alter(session.store, table.id, referenced)
    if table is not None:  # ADD COLUMN ... REFERENCES: the foreign key, now the column exists
        add_column_references(ast.args.get("actions") or [], table, session.catalog, path)
    if renamed is not None:  # views reading the table follow it to its new name
        rename_references(session.catalog, *renamed)
    return tag


def _builder(session: Session) -> Builder:
    env = CompileEnv(functions=session.database.functions)
    builder = Builder(env)
    env.build_subplan = builder.subplan
    return builder


def _truncate(session: Session, ast: exp.TruncateTable, notices: list[Notice]) -> str:
    """TRUNCATE: buffered in a block like any write; otherwise committed at once. RESTART
    IDENTITY restarts the sequences the emptied tables own as a schema change: in a block
    with the block's others (kept or undone with them); in autocommit `run_ddl` has opened
    the schema changes for this statement alone, and the emptied tables and restarted
    sequences are committed together in one manifest version (a crash keeps both or
    neither)."""
    tables = [session.catalog.table(t.name, t.db or None, session.search_path)
              for t in ast.expressions]
    matviews.refuse(session, tables, "TRUNCATE")
    ids = truncate_targets(session.store, [t.id for t in tables],
                           str(ast.args.get("option") or "").upper() == "CASCADE", notices)
    tables = [session.store.table(i) for i in ids]
    if session.explicit:
        for table in tables:
            session.txn.truncate(table)  # type: ignore[union-attr]
        if _restarts_identity(ast):
            session.catalog.restart_owned(ids)
        return "TRUNCATE TABLE"
    txn = Transaction()
    for table in tables:
        txn.truncate(table)
    if _restarts_identity(ast):
        session.catalog.restart_owned(ids)
        session.close_schema_changes(txn.ops())
    else:
        session.store.commit(txn.ops())
    return "TRUNCATE TABLE"


def _comment(session: Session, ast: exp.Comment, notices: list[Notice]) -> str:
    """COMMENT ON TABLE / COLUMN / INDEX: kept under pg_description's key; an empty or NULL
    comment removes it."""
    kind = (ast.args.get("kind") or "").upper()
    target = ast.this
    text = ast.expression.name if isinstance(ast.expression, exp.Literal) else None
    catalog, path = session.catalog, session.search_path
    if kind == "TABLE":
        table = catalog.table(target.name, target.db or None, path)
        key = f"{alter.PG_CLASS}:{table.def_.oid}:0"
    elif kind == "VIEW":
        view = find_view(catalog, target.name, target.db or None, path)
        if view is None:
            raise UndefinedTable(f'relation "{target.name}" does not exist')
        key = f"{alter.PG_CLASS}:{view.oid}:0"
    elif kind == "COLUMN":
        parts = [p.name for p in target.parts]
        if len(parts) < 2:
            raise SqlVecError("column name must be qualified", sqlstate="42601")
        table = catalog.table(parts[-2], parts[-3] if len(parts) > 2 else None, path)
        if not table.def_.has_column(parts[-1]):
            raise UndefinedColumn(f'column "{parts[-1]}" of relation "{table.def_.name}" does '
                                  "not exist")
        key = f"{alter.PG_CLASS}:{table.def_.oid}:{table.def_.column(parts[-1]).attnum}"
    elif kind == "INDEX":
        found = alter.find_index(catalog, target.name, target.db or None, path)
        if found is None:
            raise UndefinedTable(f'relation "{target.name}" does not exist')
        key = f"{alter.PG_CLASS}:{found[1].oid}:0"
    else:
        raise FeatureNotSupported(f"COMMENT ON {kind} is not supported")
    session.store.update_catalog(lambda c: {**c, "comments": {
        **{k: v for k, v in c.get("comments", {}).items() if k != key},
        **({key: text} if text else {})}})
    return "COMMENT"


def _command(session: Session, ast: exp.Expression, notices: list[Notice]) -> str:
    """The statements sqlglot keeps as text: ALTER forms and COMMENT ON EXTENSION."""
    if matviews.recognised(ast):
        return matviews.run(session, ast, notices)
    if ast.this.upper() == "CREATE":  # CREATE SEQUENCE (sequence_ddl.recognise_create)
        text = ast.expression.name
        tag = sequence_ddl.create(text, session.catalog, session.search_path)
        if tag == "NOTICE":
            notices.append(_exists_notice(sequence_ddl.created_name(text)))
            tag = "CREATE SEQUENCE"
        return tag
    found = comment_on_extension(ast) if ast.this.upper() == "COMMENT" else None
    if found is None:
        return _alter(session, ast, notices)
    name, text = found
    entry = session.catalog.state.get("extensions", {}).get(name)
    oid = int(entry["oid"]) if entry else \
        {"vector": O.VECTOR_EXTENSION_OID, "plpgsql": O.PLPGSQL_EXTENSION_OID}.get(name)
    if oid is None:
        raise UndefinedObject(f'extension "{name}" does not exist')
    key = f"{O.PG_EXTENSION_OID}:{oid}:0"
    session.store.update_catalog(lambda c: {**c, "comments": {
        **{k: v for k, v in c.get("comments", {}).items() if k != key},
        **({key: text} if text is not None else {})}})
    return "COMMENT"


_HANDLERS: dict[type, Callable[[Session, exp.Expression, list[Notice]], str]] = {
    exp.Create: _create,
    exp.Drop: _drop,
    exp.Alter: _alter,
    exp.Command: _command,  # the forms sqlglot keeps as text (prepare.py lets only those in)
    exp.TruncateTable: _truncate,
    exp.Comment: _comment,
}


def _constant_default(session: Session, col) -> object:
    """The value ADD COLUMN ... DEFAULT gives existing rows (evaluated once, as PostgreSQL)."""
    from sqlvec.execution.dml import default_value

    builder = Builder(CompileEnv(functions=session.database.functions))
    value = default_value(col, builder)
    if value is None:
        return None
    scalar = value(Frame(pa.table({"_": [None]}), session._context([])))
    py = scalar.as_py() if isinstance(scalar, pa.Scalar) else scalar[0].as_py()
    if isinstance(py, (dt.date, dt.datetime)):
        return py.isoformat()
    if hasattr(py, "as_integer_ratio") and not isinstance(py, (int, float)):
        return str(py)
    return py
