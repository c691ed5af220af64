"""Views in the catalog: stored with the manifest (back after reopening the data directory),
found along the search path as PostgreSQL resolves names, and their dependents listed
transitively."""

from __future__ import annotations

from sqlvec.catalog.views import dependents, find_view, get_view
from sqlvec.database import Database


def test_views_persist_and_resolve_along_search_path(tmp_path):
    path = str(tmp_path / "data")
    with Database.open(path) as db:
        s = db.connect()
        s.execute_one("CREATE SCHEMA s2")
        s.execute_one("CREATE TABLE t (a int, v vector(3))")
        s.execute_one("CREATE VIEW v1 AS SELECT a, v FROM t")
        s.execute_one("CREATE VIEW v2 AS SELECT a FROM v1 WHERE a > 0")
        s.execute_one("CREATE VIEW s2.t AS SELECT 1 AS one")
        s.close()
    with Database.open(path) as db:
        catalog = db.catalog()
        v1 = get_view(catalog, "v1", "public")
        assert v1 is not None
        assert [(n, str(t)) for n, t in v1.columns] == [("a", "integer"), ("v", "vector(3)")]
        assert "public.t" in v1.query  # bound to the table when created
        table_oid = catalog.find_table("t", None, ["public"]).def_.oid
        assert v1.depends == (table_oid,)
        assert [v.name for v in dependents(catalog, table_oid)] == ["v1", "v2"]
        # The first schema on the path holding the name decides: a table hides a later view.
        assert find_view(catalog, "t", None, ["public", "s2"]) is None
        assert find_view(catalog, "t", None, ["s2", "public"]).schema == "s2"
        assert catalog.relation_exists("v2", "public")
