"""psql, the reference client: scripts, \\copy, \\timing and how errors are shown."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sqlvec.session import Session

PSQL = shutil.which("psql")
pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed (postgresql-client)")


def psql(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PSQL, server.conninfo(), "-X", "--no-psqlrc", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
        env={"PGCONNECT_TIMEOUT": "10", "PATH": "/usr/bin:/bin"})


def test_connect_and_query(server):
    out = psql(server, "-At", "-c", "SELECT 1 + 1, 'x', '[1,2]'::vector(2)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2|x|[1,2]"


def test_script_with_on_error_stop(server, table, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(f"""
CREATE TABLE {table} (id int8 PRIMARY KEY, embedding vector(3), note text);
INSERT INTO {table} VALUES (1, '[1,2,3]', 'one'), (2, '[4,5,6]', 'two');
BEGIN;
UPDATE {table} SET note = 'uno' WHERE id = 1;
COMMIT;
SELECT id, note FROM {table} ORDER BY embedding <-> '[1,2,4]' LIMIT 1;
""")
    out = psql(server, "-v", "ON_ERROR_STOP=1", "-At", "-f", str(script))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 2", "BEGIN", "UPDATE 1",
                                       "COMMIT", "1|uno"]
    bad = tmp_path / "bad.sql"
    bad.write_text(f"SELECT 1;\nSELECT * FROM nope_{table};\nSELECT 2;\n")
    out = psql(server, "-v", "ON_ERROR_STOP=1", "-At", "-f", str(bad))
    assert out.returncode == 3
    assert out.stdout.splitlines() == ["1"]
    assert f'ERROR:  relation "nope_{table}" does not exist' in out.stderr


def test_syntax_error_points_at_the_statement(server):
    out = psql(server, "-c", "SELECT 1 +* 2")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0].startswith("ERROR:  syntax error at or near")
    assert lines[1] == "LINE 1: SELECT 1 +* 2"
    assert lines[2].strip() == "^"


@pytest.mark.skipif(not hasattr(Session, "copy_in"), reason="Session.copy_in is not available yet")
def test_backslash_copy_both_ways(server, table, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,embedding,note\n1,\"[1,2]\",hello\n2,\"[3,4]\",\n")
    target = tmp_path / "out.tsv"
    out = psql(server, "-v", "ON_ERROR_STOP=1", stdin=f"""
CREATE TABLE {table} (id int4, embedding vector(2), note text);
\\copy {table} from '{source}' with (format csv, header)
\\copy (select * from {table} order by id) to '{target}'
""")
    assert out.returncode == 0, out.stderr
    assert "COPY 2" in out.stdout
    assert target.read_text() == "1\t[1,2]\thello\n2\t[3,4]\t\\N\n"


def test_timing_and_error_keeps_session(server):
    out = psql(server, stdin="\\timing on\nSELECT 42 AS answer;\nSELECT 1/0;\nSELECT 7;\n")
    assert out.returncode == 0
    assert "Timing is on." in out.stdout
    assert out.stdout.count("Time: ") == 3
    assert " answer \n--------\n     42\n" in out.stdout
    assert "ERROR:  division by zero" in out.stderr
    assert "     7\n" in out.stdout


# What psql prints for a constant the type rejects, as PostgreSQL 16 + pgvector 0.8 print it:
# the message, then LINE and a caret under the constant (or under the operator that does not
# exist), from the error's position field.
CARETS = {
    "SELECT '[hello,1]'::vector": [
        'ERROR:  invalid input syntax for type vector: "[hello,1]"',
        "LINE 1: SELECT '[hello,1]'::vector",
        "               ^"],
    "SELECT '[4e38,1]'::vector": [
        'ERROR:  "4e38" is out of range for type vector',
        "LINE 1: SELECT '[4e38,1]'::vector",
        "               ^"],
    "SELECT '[1,2,3'::vector": [
        'ERROR:  invalid input syntax for type vector: "[1,2,3"',
        "LINE 1: SELECT '[1,2,3'::vector",
        "               ^"],
    "SELECT 1 + '99999999999'::int": [
        'ERROR:  value "99999999999" is out of range for type integer',
        "LINE 1: SELECT 1 + '99999999999'::int",
        "                   ^"],
    "SELECT '2020-13-01'::date": [
        'ERROR:  date/time field value out of range: "2020-13-01"',
        "LINE 1: SELECT '2020-13-01'::date",
        "               ^",
        'HINT:  Perhaps you need a different "DateStyle" setting.'],
    "SELECT 'a'::text = 1": [
        "ERROR:  operator does not exist: text = integer",
        "LINE 1: SELECT 'a'::text = 1",
        "                         ^",
        "HINT:  No operator matches the given name and argument types. You might need to add "
        "explicit type casts."],
    "SELECT '[1,2]'::vector(3)": ["ERROR:  expected 3 dimensions, not 2"],
    """SELECT '{"a":}'::jsonb""": [
        "ERROR:  invalid input syntax for type json",
        """LINE 1: SELECT '{"a":}'::jsonb""",
        "               ^",
        'DETAIL:  Expected JSON value, but found "}".',
        'CONTEXT:  JSON data, line 1: {"a":}'],
}


@pytest.mark.parametrize("sql", sorted(CARETS))
def test_constant_input_errors_point_at_the_constant(server, sql):
    out = psql(server, "-c", sql)
    assert out.returncode == 1
    assert out.stderr.splitlines() == CARETS[sql]


def test_constant_error_caret_on_a_later_line(server, tmp_path):
    script = tmp_path / "insert.sql"
    script.write_text("SELECT 1;\nSELECT 2,\n  'x'::uuid;\n")
    out = psql(server, "-f", str(script))
    lines = out.stderr.splitlines()
    assert lines[0].endswith('ERROR:  invalid input syntax for type uuid: "x"')
    assert lines[1:] == ["LINE 2:   'x'::uuid;", "          ^"]
