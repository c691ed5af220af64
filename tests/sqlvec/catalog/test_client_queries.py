"""Catalog queries real clients send, captured from PostgreSQL's statement log (psql \\d, \\d+,
\\dt, \\di, \\dn, \\dx, \\du, \\l, \\df, \\dT; psycopg TypeInfo.fetch; asyncpg type introspection;
SQLAlchemy's inspector; pgjdbc DatabaseMetaData), run through the ordinary executor against the
same schema (fixtures/client_queries.json: client, statement text, parameters as logged).

OIDs in the captured texts are PostgreSQL's for that schema; they are mapped to ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sqlvec.catalog.conftest import rows

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "client_queries.json").read_text())
# The captured schema's OIDs in PostgreSQL: the table, its primary-key index, its other index.
PG_OIDS = {"16389": "items", "16396": "items_pkey", "16398": "items_name_idx"}
QUERIES = [q for q in FIXTURES
           if q["sql"].lstrip().upper().startswith(("SELECT", "WITH", "SHOW"))
           and "::mood" not in q["sql"]]  # asyncpg's own test type (an enum) is not ours


def _ids(q: dict) -> str:
    return f"{q['client']}-{FIXTURES.index(q)}"


def _prepare(session, q: dict) -> tuple[str, list]:
    oids = dict(rows(session, "SELECT relname, oid::text FROM pg_class WHERE relname IN "
                              "('items', 'items_pkey', 'items_name_idx')"))
    mapping = {pg: oids[name] for pg, name in PG_OIDS.items()}
    sql = q["sql"]
    for pg, ours in mapping.items():
        sql = sql.replace(pg, ours)
    params = [mapping.get(p, p) for p in (q["params"] or [])]
    return sql, params


@pytest.mark.parametrize("query", QUERIES, ids=_ids)
def test_client_query_runs(session, query):
    sql, params = _prepare(session, query)
    prepared = session.prepare(sql)
    result = session.run(prepared, params)
    assert result.columns is not None
    assert result.table is None or result.table.num_columns == len(result.columns)


def _query(session, client: str, needle: str) -> list[tuple]:
    for q in QUERIES:
        if q["client"] == client and needle in q["sql"]:
            sql, params = _prepare(session, q)
            return session.run(session.prepare(sql), params).rows()
    raise AssertionError(f"no captured {client} query contains {needle!r}")


def test_psql_describe_columns(session):
    got = _query(session, "psql", "a.attstorage")
    assert [(r[0], r[1], r[2], r[3], r[7]) for r in got] == [
        ("id", "bigint", "nextval('items_id_seq'::regclass)", True, "p"),
        ("name", "text", None, True, "x"),
        ("price", "numeric(10,2)", None, False, "m"),
        ("created", "timestamp with time zone", "now()", False, "p"),
        ("tags", "character varying(20)", None, False, "x"),
        ("score", "real", None, False, "p"),
        ("embedding", "vector(3)", None, False, "e"),
    ]
    assert got[1][-1] == "the name"


def test_psql_describe_indexes(session):
    got = _query(session, "psql", "pg_get_indexdef(i.indexrelid, 0, true)")
    assert [(r[0], r[1], r[5], r[6]) for r in got] == [
        ("items_pkey", True, "CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)",
         "PRIMARY KEY (id)"),
        ("items_embedding_idx", False, "CREATE INDEX items_embedding_idx ON public.items USING "
         "hnsw (embedding vector_cosine_ops) WITH (m='8')", None),
        ("items_name_idx", False, "CREATE INDEX items_name_idx ON public.items USING btree (name)",
         None),
    ]


def test_psql_list_relations_and_extensions(session):
    assert _query(session, "psql", "WHEN 'S' THEN 'sequence'") in (
        [("public", "items", "table", "postgres")],
        [("public", "items", "table", "postgres"),
         ("public", "items_id_seq", "sequence", "postgres")])
    assert [r[0] for r in _query(session, "psql", "pg_catalog.pg_extension e")] == \
        ["plpgsql", "vector"]
    assert _query(session, "psql", "FROM pg_catalog.pg_namespace n\n\tWHERE") in (
        [("other", "postgres"), ("public", "pg_database_owner")],)


def test_jdbc_primary_keys_and_index_info(session):
    assert _query(session, "jdbc", "_pg_expandarray(i.indkey)).n AS KEY_SEQ") == [
        (None, "public", "items", "id", 1, "items_pkey")]
    info = _query(session, "jdbc", "I_INDOPTION")
    assert [(r[5], r[8], r[9]) for r in info] == [
        ("items_pkey", "id", "A"), ("items_embedding_idx", "embedding", None),
        ("items_name_idx", "name", "A")]


def test_jdbc_type_info_marks_arrays(session):
    got = _query(session, "jdbc", "typinput='pg_catalog.array_in'::regproc")
    by_name = {r[2]: r[0] for r in got}
    assert by_name["_int4"] is True and by_name["int4"] is False
    assert by_name["vector"] is False and by_name["_vector"] is True


def test_sqlalchemy_pk_and_indexes(session):
    pk = _query(session, "sqlalchemy", "array_agg(CAST(attr.attname AS TEXT) ORDER BY attr.ord)")
    assert [(r[1], r[2]) for r in pk] == [(["id"], "items_pkey")]
    ix = _query(session, "sqlalchemy", "idx_cols.elements_opclass")
    assert [(r[1], r[11]) for r in ix] == [("items_embedding_idx", ["embedding"]),
                                          ("items_name_idx", ["name"])]


def test_asyncpg_introspects_vector(session):
    """asyncpg's type introspection (a recursive CTE over pg_type with correlated subqueries),
    as it runs on the first query that returns a type it has no codec for."""
    q = next(q for q in QUERIES if q["client"] == "asyncpg" and "typeinfo_tree" in q["sql"])
    prepared = session.prepare(q["sql"])
    assert [c.name for c in prepared.columns] == [
        "oid", "ns", "name", "kind", "basetype", "elemtype", "elemdelim", "range_subtype",
        "attrtypoids", "attrnames", "depth", "basetype_name", "elemtype_name",
        "range_subtype_name"]
    vector = (16385, "public", "vector", "b", None, 0, None, None, None, None)
    assert session.run(prepared, ["{16385}"]).rows() == [vector + (0, None, "-", None)]
    # vector[]: the array row, then (one level deeper, listed first) its element type.
    assert session.run(prepared, ["{16386}"]).rows() == [
        vector + (1, None, "-", None),
        (16386, "public", "_vector", "b", None, 16385, ",", None, None, None, 0, None, "vector",
         None)]
    got = session.run(prepared, ["{23,1007,16385}"]).rows()
    assert sorted((r[0], r[10]) for r in got) == [(23, 0), (23, 1), (1007, 0), (16385, 0)]
    assert session.run(prepared, ["{}"]).rows() == []


def test_psycopg_typeinfo_query(session):
    q = next(q for q in QUERIES if q["client"] == "psycopg" and "to_regtype" in q["sql"])
    assert session.run(session.prepare(q["sql"]), ["vector"]).rows() == [
        ("vector", 16385, 16386, "vector", ",")]
