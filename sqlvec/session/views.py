"""Running the DDL that plans or runs a query: CREATE VIEW, CREATE TABLE ... AS, SELECT ...
INTO, and the view checks DROP TABLE makes.

The query is planned here (it must be valid, and its result columns name and type the view's
or the new table's columns); the catalog work is in `execution/views.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from sqlvec.catalog.views import drop_dependents
from sqlvec.errors import DuplicateTable, Notice, SqlVecError
from sqlvec.execution import views
from sqlvec.session import matviews
from sqlvec.session.copy import copy_in
from sqlvec.session.prepare import plan_ast
from sqlvec.session.queries import run_query
from sqlvec.session.results import StatementKind
from sqlvec.sql.dialect import to_sql
from sqlvec.types import SqlType

if TYPE_CHECKING:
    from sqlvec.session.core import Session


def planned(session: Session, query: exp.Expression):
    """The query planned as a SELECT of its own (the statement's text is not needed)."""
    prepared = plan_ast(session, to_sql(query), query.copy(), {})
    if prepared.kind is not StatementKind.QUERY or prepared.columns is None:
        raise SqlVecError("syntax error: a query is needed here", sqlstate="42601")
    if prepared.param_types:
        raise SqlVecError("there is no parameter $1", sqlstate="42P02")
    return prepared


def _result_columns(prepared) -> list[tuple[str, SqlType]]:
    return [(c.name, c.type) for c in prepared.columns]


def create_view(session: Session, ast: exp.Create, notices: list[Notice]) -> str:
    """CREATE [OR REPLACE] VIEW."""
    views.check_options(ast, "view")
    prepared = planned(session, ast.args["expression"])
    return views.create_view(ast, session.catalog, session.search_path,
                             _result_columns(prepared))


def create_table_as(session: Session, ast: exp.Create, notices: list[Notice]) -> str:
    """CREATE TABLE [IF NOT EXISTS] name [(columns)] AS query [WITH [NO] DATA] (and SELECT ...
    INTO, which becomes one): the table typed by the query's results, its rows loaded in one
    batch as COPY loads them. The tag is PostgreSQL's: `SELECT n`, or `CREATE TABLE AS` when
    no rows are loaded."""
    views.check_options(ast, "table")
    table, names = views.target_of(ast)
    catalog = session.catalog
    schema = catalog.creation_schema(table.db or None, session.search_path)
    if catalog.relation_exists(table.name, schema):
        if ast.args.get("exists"):
            notices.append(Notice.notice(f'relation "{table.name}" already exists, skipping',
                                         "42P07"))
            return "CREATE TABLE AS"
        raise DuplicateTable(f'relation "{table.name}" already exists')
    props = ast.args.get("properties")
    no_data = props is not None and any(isinstance(p, exp.WithDataProperty) and p.args.get("no")
                                        for p in props.expressions)
    prepared = planned(session, ast.args["expression"])
    columns = views.output_columns(names, _result_columns(prepared), "CREATE TABLE AS")
    rows = None if no_data else run_query(session, prepared, [], 0).table
    catalog.store.create_table(table.name, views.table_columns(columns), schema=schema)
    if rows is None:
        return "CREATE TABLE AS"
    rows = rows.rename_columns([n for n, _ in columns])
    count = copy_in(session, f"{schema}.{table.name}", None, rows)
    return f"SELECT {count}"


def check_drop_table(session: Session, ast: exp.Drop, notices: list[Notice]) -> None:
    """DROP TABLE: a view named is 42809; a table that views read is 2BP01 without CASCADE,
    and its views are dropped with it under CASCADE (PostgreSQL's messages)."""
    catalog, path = session.catalog, session.search_path
    for t in ast.args.get("tables") or [ast.this]:
        views.not_a_table(catalog, t.name, t.db or None, path)
    matviews.not_a_table(session, ast)
    matviews.drop_dependents(session, ast, notices)
    found = [catalog.find_table(t.name, t.db or None, path)
             for t in ast.args.get("tables") or [ast.this]]
    if None in found and not ast.args.get("exists"):
        return  # nothing is dropped: the missing table's 42P01 comes next
    for table in found:
        if table is not None:
            drop_dependents(catalog, "table", table.def_.name, table.def_.oid,
                            bool(ast.args.get("cascade")), notices)


def renamed_table(session: Session, ast: exp.Alter) -> tuple[str, str, str, int] | None:
    """ALTER TABLE ... RENAME TO of a table: (schema, old name, new name, OID), for the views
    that read it to follow; None for any other ALTER."""
    actions = ast.args.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], exp.AlterRename):
        return None
    t = ast.this
    table = session.catalog.find_table(t.name, t.db or None, session.search_path)
    if table is None:
        return None
    return table.def_.schema, table.def_.name, actions[0].this.name, table.def_.oid
