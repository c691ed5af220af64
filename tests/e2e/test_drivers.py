"""Drivers outside Python: node-postgres (`pg` from npm) and the PostgreSQL JDBC driver, each
running a parameterized query with a vector parameter."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JDBC_JARS = ["/usr/share/java/postgresql.jar", "/usr/share/java/postgresql-jdbc4.jar"]

NODE_SCRIPT = r"""
const { Client } = require('pg');
(async () => {
  const client = new Client({ host: process.argv[2], port: Number(process.argv[3]),
                              user: 'postgres', database: 'postgres' });
  await client.connect();
  const table = process.argv[4];
  await client.query(`CREATE TABLE ${table} (id int8 PRIMARY KEY, embedding vector(3))`);
  await client.query(`INSERT INTO ${table} VALUES ($1, $2), ($3, $4), ($5, $6)`,
                     [1, '[1,2,3]', 2, '[4,5,6]', 3, '[7,8,9]']);
  const res = await client.query(
    `SELECT id, embedding, embedding <-> $1 AS distance FROM ${table} ` +
    'ORDER BY embedding <-> $1 LIMIT 2', ['[4,5,7]']);
  console.log(JSON.stringify(res.rows));
  try { await client.query('SELECT * FROM no_such_relation'); }
  catch (e) { console.log(e.code + ' ' + e.message); }
  await client.end();
})().catch((e) => { console.error(e); process.exit(1); });
"""

JAVA_SOURCE = r"""
import java.sql.*;

public class VectorQuery {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/postgres?sslmode=disable";
        String table = args[2];
        try (Connection conn = DriverManager.getConnection(url, "postgres", "")) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id int8 PRIMARY KEY, embedding vector(3))");
            }
            try (PreparedStatement ins = conn.prepareStatement(
                    "INSERT INTO " + table + " VALUES (?, CAST(? AS vector))")) {
                for (int i = 1; i <= 3; i++) {
                    ins.setLong(1, i);
                    ins.setString(2, "[" + (3 * i - 2) + "," + (3 * i - 1) + "," + (3 * i) + "]");
                    ins.executeUpdate();
                }
            }
            // Run it more often than prepareThreshold (5): later rounds use a named statement.
            String query = "SELECT id, embedding::text, embedding <-> CAST(? AS vector) AS d FROM "
                + table + " ORDER BY d LIMIT 2";
            try (PreparedStatement ps = conn.prepareStatement(query)) {
                for (int round = 0; round < 7; round++) {
                    ps.setString(1, "[4,5,7]");
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            if (round == 6) {
                                System.out.println(rs.getLong(1) + " " + rs.getString(2) + " "
                                    + rs.getDouble(3));
                            }
                        }
                    }
                }
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_relation");
            } catch (SQLException e) {
                System.out.println(e.getSQLState());
            }
        }
    }
}
"""


def test_node_postgres(server, table, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    work = tmp_path / "node"
    work.mkdir()
    cache = os.environ.get("SQLVEC_NODE_CACHE")  # reuse an installed `pg` across runs
    modules = Path(cache) if cache else work
    if not (modules / "node_modules" / "pg").exists():
        install = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "pg@8"],
            cwd=modules, capture_output=True, text=True, timeout=240)
        if install.returncode != 0:
            pytest.skip(f"npm could not install pg: {install.stderr.strip()[-300:]}")
    script = modules / "vector_query.js"
    script.write_text(NODE_SCRIPT)
    out = subprocess.run(["node", str(script), server.host, str(server.port), table],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ('[{"id":"2","embedding":"[4,5,6]","distance":1},'
                        '{"id":"3","embedding":"[7,8,9]","distance":4.69041575982343}]')
    assert lines[1] == '42P01 relation "no_such_relation" does not exist'


def test_jdbc(server, table, tmp_path):
    jar = next((j for j in JDBC_JARS if Path(j).exists()), None)
    if jar is None or shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("a JDK and the PostgreSQL JDBC driver (libpostgresql-jdbc-java) are needed")
    source = tmp_path / "VectorQuery.java"
    source.write_text(JAVA_SOURCE)
    subprocess.run(["javac", "-d", str(tmp_path), str(source)], check=True, timeout=120)
    out = subprocess.run(["java", "-cp", f"{jar}:{tmp_path}", "VectorQuery", server.host,
                          str(server.port), table],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["2 [4,5,6] 1.0", "3 [7,8,9] 4.69041575982343", "42P01"]
