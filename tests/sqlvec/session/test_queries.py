"""sqlvec.session.queries: a query's result table as the client sees it."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from sqlvec.session.queries import result_table


def test_result_columns_take_the_result_names(db):
    s = db.connect()
    result = s.run(s.prepare("SELECT 1 AS x, 'a' AS y"), [])
    assert result.table.column_names == ["x", "y"]
    assert result.rows() == [(1, "a")]


def test_hidden_columns_are_left_out(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (a int, b int)")
    s.execute_one("INSERT INTO t VALUES (1, 20), (2, 10)")
    result = s.run(s.prepare("SELECT a FROM t ORDER BY b"), [])
    assert result.table.column_names == ["a"]
    assert result.rows() == [(2,), (1,)]


def test_a_result_table_has_plain_fields_whatever_its_operator_made():
    """Renaming keeps an operator's fields as they are; an output with a non-nullable field or
    schema metadata is rebuilt instead, so every result carries plain nullable fields."""
    fields = [SimpleNamespace(hidden=False), SimpleNamespace(hidden=False)]
    columns = [SimpleNamespace(name="k"), SimpleNamespace(name="v")]
    plain = pa.table({"a": [1], "b": ["x"]})
    strict = pa.Table.from_arrays(
        [pa.array([1]), pa.array(["x"])],
        schema=pa.schema([pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.string())]))
    tagged = plain.replace_schema_metadata({"origin": "scan"})
    for table in (plain, strict, tagged):
        result = result_table(table, fields, columns)
        assert result.column_names == ["k", "v"]
        assert all(field.nullable for field in result.schema)
        assert result.schema.metadata is None
        assert result.to_pylist() == [{"k": 1, "v": "x"}]
    named = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    assert result_table(plain, fields, named) is plain  # already the result: nothing to do
    assert result_table(strict, fields, named) is not strict
    assert all(field.nullable for field in result_table(strict, fields, named).schema)
    hidden = [SimpleNamespace(hidden=False), SimpleNamespace(hidden=True)]
    assert result_table(plain, hidden, columns[:1]).column_names == ["k"]


def test_create_table_as_copies_no_not_null(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (id int NOT NULL, v text)")
    s.execute_one("INSERT INTO t VALUES (1, 'x')")
    s.execute_one("CREATE TABLE u AS SELECT id AS k FROM t")
    s.execute_one("INSERT INTO u VALUES (NULL)")  # as in PostgreSQL
    assert s.execute_one("SELECT count(*) FROM u").rows() == [(2,)]
