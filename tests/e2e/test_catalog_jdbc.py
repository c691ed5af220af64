"""pgjdbc's DatabaseMetaData (getCatalogs, getSchemas, getTables, getColumns, getPrimaryKeys,
getIndexInfo, getTypeInfo) and a PreparedStatement run 10 times (past prepareThreshold, so the
driver switches to server-prepared binary execution), through the PostgreSQL JDBC driver
(Debian package libpostgresql-jdbc-java)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import start_server

JAR = next((p for p in ("/usr/share/java/postgresql.jar",) if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(JAR is None or shutil.which("javac") is None,
                                reason="the PostgreSQL JDBC driver (libpostgresql-jdbc-java) "
                                       "or a JDK is not installed")

PROGRAM = r"""
import java.sql.*;
import java.util.*;

public class Meta {
  static List<Map<String, String>> rows(ResultSet rs) throws Exception {
    ResultSetMetaData md = rs.getMetaData();
    List<Map<String, String>> out = new ArrayList<>();
    while (rs.next()) {
      Map<String, String> row = new LinkedHashMap<>();
      for (int i = 1; i <= md.getColumnCount(); i++) row.put(md.getColumnLabel(i).toLowerCase(), rs.getString(i));
      out.add(row);
    }
    return out;
  }
  static String quote(String s) {
    if (s == null) return "null";
    return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\"";
  }
  static void emit(String key, List<Map<String, String>> rows, boolean last) {
    StringBuilder sb = new StringBuilder();
    sb.append(quote(key)).append(": [");
    for (int r = 0; r < rows.size(); r++) {
      if (r > 0) sb.append(", ");
      sb.append("{");
      int i = 0;
      for (Map.Entry<String, String> e : rows.get(r).entrySet()) {
        if (i++ > 0) sb.append(", ");
        sb.append(quote(e.getKey())).append(": ").append(quote(e.getValue()));
      }
      sb.append("}");
    }
    sb.append("]").append(last ? "" : ",");
    System.out.println(sb);
  }
  public static void main(String[] a) throws Exception {
    Connection c = DriverManager.getConnection(a[0], "postgres", "");
    Statement st = c.createStatement();
    st.execute("CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, price numeric(10,2), embedding vector(3))");
    st.execute("CREATE INDEX items_name_idx ON items (name)");
    st.execute("CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops)");
    st.execute("INSERT INTO items (name, price, embedding) VALUES ('a', 1.5, '[1,2,3]'), ('b', 2.5, '[4,5,6]')");
    DatabaseMetaData m = c.getMetaData();
    System.out.println("{");
    emit("catalogs", rows(m.getCatalogs()), false);
    emit("schemas", rows(m.getSchemas()), false);
    emit("tables", rows(m.getTables(null, "public", "%", new String[]{"TABLE"})), false);
    emit("columns", rows(m.getColumns(null, "public", "items", "%")), false);
    emit("pk", rows(m.getPrimaryKeys(null, "public", "items")), false);
    emit("indexes", rows(m.getIndexInfo(null, "public", "items", false, false)), false);
    emit("types", rows(m.getTypeInfo()), false);
    PreparedStatement ps = c.prepareStatement("SELECT id, name, price FROM items WHERE id >= ? ORDER BY id");
    List<Map<String, String>> runs = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      ps.setLong(1, 1 + (i % 2));
      ResultSet rs = ps.executeQuery();
      Map<String, String> row = new LinkedHashMap<>();
      int n = 0; String first = null;
      while (rs.next()) { if (n == 0) first = rs.getString(2) + "/" + rs.getBigDecimal(3); n++; }
      row.put("rows", Integer.toString(n)); row.put("first", first);
      runs.add(row);
    }
    emit("prepared", runs, true);
    System.out.println("}");
    c.close();
  }
}
"""


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    work = tmp_path_factory.mktemp("jdbc")
    (work / "Meta.java").write_text(PROGRAM)
    subprocess.run(["javac", "-d", str(work), str(work / "Meta.java")], check=True,
                   capture_output=True, timeout=300)
    running = start_server(work / "server")
    try:
        url = f"jdbc:postgresql://{running.host}:{running.port}/postgres"
        out = subprocess.run(["java", "-cp", f"{JAR}:{work}", "Meta", url], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr + "\n" + running.log()[-3000:]
        yield json.loads(out.stdout)
    finally:
        assert running.stop() == 0, running.log()


def test_catalogs_and_schemas(metadata):
    assert [r["table_cat"] for r in metadata["catalogs"]] == ["postgres"]
    assert {"public", "pg_catalog", "information_schema"} <= {r["table_schem"] for r in
                                                              metadata["schemas"]}


def test_tables(metadata):
    assert [(r["table_schem"], r["table_name"], r["table_type"]) for r in metadata["tables"]] == \
        [("public", "items", "TABLE")]


def test_columns(metadata):
    cols = [(r["column_name"], r["type_name"], r["nullable"], r["column_size"])
            for r in metadata["columns"]]
    assert cols == [("id", "bigserial", "0", "19"), ("name", "text", "0", "2147483647"),
                    ("price", "numeric", "1", "10"), ("embedding", "vector", "1", "3")] or \
        [c[:3] for c in cols] == [("id", "bigserial", "0"), ("name", "text", "0"),
                                  ("price", "numeric", "1"), ("embedding", "vector", "1")]
    assert metadata["columns"][0]["column_def"] == "nextval('items_id_seq'::regclass)"
    assert metadata["columns"][0]["is_autoincrement"] == "YES"


def test_primary_keys(metadata):
    assert [(r["column_name"], r["key_seq"], r["pk_name"]) for r in metadata["pk"]] == \
        [("id", "1", "items_pkey")]


def test_index_info(metadata):
    got = [(r["index_name"], r["column_name"], r["non_unique"], r["ordinal_position"])
           for r in metadata["indexes"]]
    assert got == [("items_pkey", "id", "f", "1"),
                   ("items_embedding_idx", "embedding", "t", "1"),
                   ("items_name_idx", "name", "t", "1")]


def test_type_info(metadata):
    names = {r["type_name"] for r in metadata["types"]}
    assert {"int4", "int8", "text", "varchar", "bool", "vector", "numeric"} <= names


def test_prepared_statement_ten_times(metadata):
    assert [r["rows"] for r in metadata["prepared"]] == ["2", "1"] * 5
    assert metadata["prepared"][0]["first"] == "a/1.50"
    assert metadata["prepared"][9]["first"] == "b/2.50"
