"""Materialized views: CREATE MATERIALIZED VIEW, REFRESH MATERIALIZED VIEW, DROP MATERIALIZED
VIEW.

A materialized view is a table holding its query's results (so it is durable, scanned,
indexed and searched like any table, vector indexes included) plus an entry in the catalog
(`catalog/views.py`, `matviews`) with its query and whether it is populated. CREATE runs
CREATE TABLE ... AS; REFRESH runs the stored query again and replaces the rows in one commit
(truncate and insert: readers see the old rows or the new ones, never a mix, so
CONCURRENTLY, which PostgreSQL offers to keep readers unblocked, is accepted under its
conditions and does the same). sqlglot keeps CREATE and REFRESH MATERIALIZED VIEW as text:
they are recognised here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlglot import exp

from sqlvec.catalog.views import find_view, matview, set_matview
from sqlvec.errors import FeatureNotSupported, Notice, SqlVecError, UndefinedTable
from sqlvec.execution import views
from sqlvec.execution.transaction import Transaction
from sqlvec.session.queries import run_query
from sqlvec.sql.dialect import parse_one

if TYPE_CHECKING:
    from sqlvec.session.core import Session

_CREATE = re.compile(r"\s*MATERIALIZED\s+VIEW\s+(?P<rest>.*?)\s*;?\s*$", re.I | re.S)
_REFRESH = re.compile(r"\s*MATERIALIZED\s+VIEW\s+(?P<concurrently>CONCURRENTLY\s+)?"
                      r"(?P<name>.*?)(?:\s+WITH\s+(?P<no>NO\s+)?DATA)?\s*;?\s*$", re.I | re.S)


def _text(command: exp.Command) -> str:
    body = command.expression
    return body if isinstance(body, str) else (body.name if body is not None else "")


def recognised(command: exp.Command) -> bool:
    """Whether a statement sqlglot kept as text is CREATE or REFRESH MATERIALIZED VIEW."""
    head = command.this.upper()
    return head in ("CREATE", "REFRESH") and _CREATE.match(_text(command)) is not None


def run(session: Session, command: exp.Command, notices: list[Notice]) -> str:
    """CREATE or REFRESH MATERIALIZED VIEW (see `recognised`)."""
    if command.this.upper() == "CREATE":
        return create(session, _CREATE.match(_text(command))["rest"], notices)  # type: ignore[index]
    return refresh(session, _text(command))


def create(session: Session, rest: str | exp.Create, notices: list[Notice]) -> str:
    """CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [(columns)] AS query [WITH [NO] DATA]
    (`rest`: the text after VIEW, or the statement as sqlglot parsed it): CREATE TABLE ... AS,
    then the catalog entry. The tag is PostgreSQL's: `SELECT n`, or `CREATE MATERIALIZED
    VIEW` when no rows were loaded."""
    from sqlvec.session.views import create_table_as

    if isinstance(rest, exp.Create):
        ast = rest.copy()
        ast.set("kind", "TABLE")
        props = ast.args.get("properties")
        if props is not None:
            props.set("expressions", [p for p in props.expressions
                                      if not isinstance(p, exp.MaterializedProperty)])
    else:
        ast = parse_one(f"CREATE TABLE {rest}")
    if not isinstance(ast, exp.Create) or ast.args.get("expression") is None:
        raise SqlVecError("syntax error: CREATE MATERIALIZED VIEW needs AS query",
                          sqlstate="42601")
    table, _names = views.target_of(ast)
    catalog = session.catalog
    schema = catalog.creation_schema(table.db or None, session.search_path)
    existed = catalog.relation_exists(table.name, schema)
    tag = create_table_as(session, ast, notices)
    if existed:  # IF NOT EXISTS skipped it (else create_table_as raised)
        return "CREATE MATERIALIZED VIEW"
    created = catalog.store.find_table(table.name, schema)
    assert created is not None
    texts = views.matview_texts(ast.args["expression"], catalog, session.search_path,
                                created.def_.column_names)
    set_matview(catalog, created.id, {**texts, "populated": tag.startswith("SELECT")})
    return tag if tag.startswith("SELECT") else "CREATE MATERIALIZED VIEW"


def refresh(session: Session, text: str) -> str:
    """REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]: the stored query run
    again, its rows replacing the old ones in one commit (with NO DATA: none, and the view
    is no longer populated)."""
    m = _REFRESH.match(text)
    if m is None:
        raise SqlVecError("syntax error at or near \"REFRESH\"", sqlstate="42601")
    concurrently, no_data = bool(m["concurrently"]), bool(m["no"])
    if concurrently and no_data:
        raise SqlVecError("CONCURRENTLY and WITH NO DATA options cannot be used together",
                          sqlstate="42601")
    target = parse_one(f"SELECT * FROM {m['name']}").find(exp.Table)
    assert target is not None
    catalog = session.catalog
    table = catalog.find_table(target.name, target.db or None, session.search_path)
    if table is None:
        raise UndefinedTable(f'relation "{target.name}" does not exist')
    entry = matview(catalog, table.id)
    if entry is None:
        raise FeatureNotSupported(f'"{table.def_.name}" is not a materialized view')
    if concurrently:
        if not entry.get("populated"):
            raise FeatureNotSupported(
                "CONCURRENTLY cannot be used when the materialized view is not populated")
        if not table.def_.unique_keys:
            raise SqlVecError(
                f'cannot refresh materialized view "{table.def_.schema}.{table.def_.name}" '
                "concurrently", sqlstate="55000",
                hint="Create a unique index with no WHERE clause on one or more columns of "
                     "the materialized view.")
    rows = None
    if not no_data:
        from sqlvec.session.views import planned

        prepared = planned(session, parse_one(entry["query"]))
        result = run_query(session, prepared, [], 0).table
        rows = table.coerce(result.rename_columns(table.def_.column_names))
    txn = session.txn if session.explicit and session.txn is not None else Transaction()
    txn.truncate(table)
    if rows is not None and rows.num_rows:
        txn.insert(table, rows)
    if txn is not session.txn:
        session.store.commit(txn.ops())
    if bool(entry.get("populated")) != (not no_data):
        set_matview(catalog, table.id, {**entry, "populated": not no_data})
    return "REFRESH MATERIALIZED VIEW"


def drop(session: Session, ast: exp.Drop, notices: list[Notice]) -> exp.Drop | None:
    """DROP MATERIALIZED VIEW [IF EXISTS] a, b [CASCADE]: every name checked first (42P01,
    or 42809 for a table or view, with PostgreSQL's hints); returns the DROP TABLE of the
    materialized views found (None: nothing to drop), whose catalog entries are gone."""
    catalog, path = session.catalog, session.search_path
    found = []
    for t in ast.args.get("tables") or [ast.this]:
        table = catalog.find_table(t.name, t.db or None, path)
        if table is not None and matview(catalog, table.id) is not None:
            found.append((t, table))
            continue
        if table is not None or find_view(catalog, t.name, t.db or None, path) is not None:
            what = "TABLE" if table is not None else "VIEW"
            raise SqlVecError(f'"{t.name}" is not a materialized view', sqlstate="42809",
                              hint=f"Use DROP {what} to remove a {what.lower()}.")
        if not ast.args.get("exists"):
            raise UndefinedTable(f'materialized view "{t.name}" does not exist')
        notices.append(Notice.notice(f'materialized view "{t.name}" does not exist, skipping'))
    if not found:
        return None
    tables = exp.Drop(this=found[0][0].copy(), kind="TABLE",
                      tables=[t.copy() for t, _ in found], cascade=ast.args.get("cascade"))
    drop_dependents(session, tables, notices, "materialized view")
    for _t, table in found:
        set_matview(catalog, table.id, None)
    return tables


def not_a_table(session: Session, ast: exp.Drop) -> None:
    """DROP TABLE of a materialized view: 42809, as PostgreSQL says it."""
    for t in ast.args.get("tables") or [ast.this]:
        table = session.catalog.find_table(t.name, t.db or None, session.search_path)
        if table is not None and matview(session.catalog, table.id) is not None:
            raise SqlVecError(f'"{t.name}" is not a table', sqlstate="42809",
                              hint="Use DROP MATERIALIZED VIEW to remove a materialized view.")


def drop_dependents(session: Session, ast: exp.Drop, notices: list[Notice],
                    kind: str = "table") -> None:
    """DROP TABLE (or MATERIALIZED VIEW: `kind`) of relations that materialized views read:
    2BP01 naming them, as PostgreSQL, or with CASCADE the materialized views dropped first."""
    catalog, path = session.catalog, session.search_path
    dropped = [catalog.find_table(t.name, t.db or None, path)
               for t in ast.args.get("tables") or [ast.this]]
    names = {t.def_.oid: t.def_.name for t in dropped if t is not None}
    readers = []
    for key, entry in catalog.state.get("matviews", {}).items():
        table = catalog.store.tables.get(int(key))
        if table is None or table.def_.oid in names:
            continue
        for oid in entry.get("depends", ()):
            if oid in names:
                readers.append((table, names[oid]))
                break
    if not readers:
        return
    if not ast.args.get("cascade"):
        first = readers[0][1]
        raise SqlVecError(
            f"cannot drop {kind} {first} because other objects depend on it", sqlstate="2BP01",
            detail="\n".join(f"materialized view {t.def_.name} depends on {kind} {name}"
                             for t, name in readers),
            hint="Use DROP ... CASCADE to drop the dependent objects too.")
    notices.append(Notice.notice(f"drop cascades to materialized view {readers[0][0].def_.name}"
                                 if len(readers) == 1 else
                                 f"drop cascades to {len(readers)} other objects"))
    from sqlvec.execution import ddl

    tables = [exp.Table(this=exp.to_identifier(t.def_.name), db=exp.to_identifier(t.def_.schema))
              for t, _ in readers]
    for t, _ in readers:
        set_matview(catalog, t.id, None)
    ddl.drop(exp.Drop(this=tables[0], kind="TABLE", tables=tables), catalog, path,
             session.database, notices)


_ACTIONS = {exp.ColumnDef: "ADD COLUMN", exp.Drop: "DROP COLUMN", exp.AlterColumn: "ALTER COLUMN"}


def refuse(session: Session, tables: list, what: str | list) -> None:
    """TRUNCATE (`what`), or ALTER TABLE actions other than renames (`what`: the actions), on
    a materialized view: PostgreSQL's 42809."""
    for table in tables:
        if matview(session.catalog, table.id) is None:
            continue
        name = table.def_.name
        if isinstance(what, str):
            raise SqlVecError(f'"{name}" is not a table', sqlstate="42809")
        for action in what:
            if isinstance(action, (exp.AlterRename, exp.RenameColumn)):
                continue
            label = next((v for k, v in _ACTIONS.items() if isinstance(action, k)), "ALTER")
            raise SqlVecError(f'ALTER action {label} cannot be performed on relation "{name}"',
                              sqlstate="42809",
                              detail="This operation is not supported for materialized views.")
