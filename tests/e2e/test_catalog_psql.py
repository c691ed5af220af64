"""psql's describe commands against sqlvec print what PostgreSQL prints for the same schema.

When PostgreSQL's server binaries are on the machine, the same schema (without the vector
table) is created in a throw-away PostgreSQL cluster and each command's output is compared
byte for byte; the vector-specific commands are compared with pinned text.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_server

PSQL = shutil.which("psql")
pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed")

COMMON = [
    "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, price numeric(10,2), "
    "created timestamptz DEFAULT now(), tags varchar(20), score real)",
    "CREATE INDEX items_name_idx ON items (name)",
    "COMMENT ON TABLE items IS 'things'",
    "COMMENT ON COLUMN items.name IS 'the name'",
    "CREATE SCHEMA other",
    "CREATE TABLE other.t2 (a int, b text)",
    "CREATE SCHEMA vec",
    "CREATE VIEW recent_items AS SELECT id, name, tags FROM items WHERE id > 1",
    "CREATE VIEW other.named (item, n) AS SELECT name, count(*) FROM items GROUP BY name",
]
VECTOR = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE TABLE vec.docs (id int8 PRIMARY KEY, body text, embedding vector(3))",
    "CREATE INDEX docs_embedding_idx ON vec.docs USING hnsw (embedding vector_l2_ops)",
    "CREATE INDEX docs_cos_idx ON vec.docs USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 8, ef_construction = 32)",
]
COMPARED = [r"\dn", r"\dt", r"\d", r"\d items", r"\d+ items", r"\di", r"\du", r"\d items_pkey",
            r"\d items_name_idx", r"\ds", r"\dv", r"\dn+", r"\d recent_items",
            r"\dv other.*", r"\d other.named"]


def psql(port: int, command: str, host: str = "127.0.0.1") -> str:
    out = subprocess.run([PSQL, "-X", "-h", host, "-p", str(port), "-U", "postgres", "-d",
                          "postgres", "-P", "pager=off", "-c", command],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def sqlvec_port(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("catalog-psql"))
    for statement in COMMON + VECTOR:
        out = psql(running.port, statement)
        assert "ERROR" not in out, (statement, out)
    yield running.port
    assert running.stop() == 0, running.log()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_port(tmp_path_factory):
    """A throw-away PostgreSQL cluster, or skip when its binaries cannot run here."""
    bindir = next((d for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin",
                               "/usr/lib/postgresql/16/bin") if Path(d, "initdb").exists()), None)
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"],
                                                              capture_output=True).returncode:
            pytest.skip("initdb cannot run as root and there is no postgres user")
        run_as = ["runuser", "-u", "postgres", "--"]
    base = tmp_path_factory.mktemp("pg")
    os.chmod(base, 0o777)
    for parent in base.parents:
        if str(parent).startswith(("/tmp", os.environ.get("TMPDIR", "/tmp"))):
            try:
                os.chmod(parent, os.stat(parent).st_mode | 0o055)
            except PermissionError:
                pass
    data = base / "data"
    init = subprocess.run(run_as + [f"{bindir}/initdb", "-D", str(data), "-U", "postgres",
                                    "-A", "trust", "--locale=C", "-E", "UTF8"],
                          capture_output=True, text=True)
    if init.returncode:
        pytest.skip(f"initdb failed: {init.stderr[-500:]}")
    port = _free_port()
    start = subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l",
                                     str(base / "log"), "-o",
                                     f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
                                     "start"], capture_output=True, text=True)
    if start.returncode:
        pytest.skip(f"PostgreSQL did not start: {start.stderr[-500:]}")
    try:
        for _ in range(50):
            if "1 row" in psql(port, "SELECT 1"):
                break
            time.sleep(0.1)
        for statement in COMMON:
            out = psql(port, statement)
            assert "ERROR" not in out, (statement, out)
        yield port
    finally:
        subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


@pytest.mark.parametrize("command", COMPARED)
def test_same_output_as_postgresql(command, sqlvec_port, postgres_port):
    theirs = psql(postgres_port, command)
    ours = psql(sqlvec_port, command)
    assert ours == theirs


EXPECTED = {
    r"\d vec.docs": (
        '                    Table "vec.docs"\n'
        "  Column   |   Type    | Collation | Nullable | Default \n"
        "-----------+-----------+-----------+----------+---------\n"
        " id        | bigint    |           | not null | \n"
        " body      | text      |           |          | \n"
        " embedding | vector(3) |           |          | \n"
        "Indexes:\n"
        '    "docs_pkey" PRIMARY KEY, btree (id)\n'
        '    "docs_cos_idx" hnsw (embedding vector_cosine_ops) WITH (m=\'8\', ef_construction=\'32\')\n'
        '    "docs_embedding_idx" hnsw (embedding)\n\n'),
    r"\d+ vec.docs": (
        '                                               Table "vec.docs"\n'
        "  Column   |   Type    | Collation | Nullable | Default | Storage  | Compression | Stats target | Description \n"
        "-----------+-----------+-----------+----------+---------+----------+-------------+--------------+-------------\n"
        " id        | bigint    |           | not null |         | plain    |             |              | \n"
        " body      | text      |           |          |         | extended |             |              | \n"
        " embedding | vector(3) |           |          |         | external |             |              | \n"
        "Indexes:\n"
        '    "docs_pkey" PRIMARY KEY, btree (id)\n'
        '    "docs_cos_idx" hnsw (embedding vector_cosine_ops) WITH (m=\'8\', ef_construction=\'32\')\n'
        '    "docs_embedding_idx" hnsw (embedding)\n'
        "Access method: heap\n\n"),
    r"\dx": (
        "                             List of installed extensions\n"
        "  Name   | Version |   Schema   |                     Description                      \n"
        "---------+---------+------------+------------------------------------------------------\n"
        " plpgsql | 1.0     | pg_catalog | PL/pgSQL procedural language\n"
        " vector  | 0.8.0   | public     | vector data type and ivfflat and hnsw access methods\n"
        "(2 rows)\n\n"),
    r"\dT": (
        "       List of data types\n"
        " Schema |  Name   | Description \n"
        "--------+---------+-------------\n"
        " public | halfvec | \n"
        " public | vector  | \n"
        "(2 rows)\n\n"),
    r"\l": (
        "                                          List of databases\n"
        "   Name   |  Owner   | Encoding | Collate | Ctype | ICU Locale | Locale Provider | Access privileges \n"
        "----------+----------+----------+---------+-------+------------+-----------------+-------------------\n"
        " postgres | postgres | UTF8     | C       | C     |            | libc            | \n"
        "(1 row)\n\n"),
}


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_vector_commands_pinned(command, sqlvec_port):
    assert psql(sqlvec_port, command) == EXPECTED[command]


def test_df_lists_vector_functions(sqlvec_port):
    out = psql(sqlvec_port, r"\df")
    assert "List of functions" in out
    assert " public | l2_distance " in out and "double precision | vector, vector" in out
    assert " public | vector_dims " in out
    # every argument type is a pg_type row: no `???` (vector_typmod_in takes cstring[])
    assert "???" not in out
    assert any(" ".join(line.split()).startswith("public | vector_typmod_in | integer | cstring[]")
               for line in out.splitlines())


# Functions compared with `\dfS <name>`: every overload PostgreSQL has, sqlvec has too. One of
# each kind: scalar, aggregate, window, set-returning, variadic, OUT parameters, a default,
# named arguments, polymorphic and type I/O functions.
DF_COMPARED = ["abs", "round", "concat", "format", "generate_series", "pg_get_keywords", "count",
               "stddev", "row_number", "lag", "make_date", "pg_terminate_backend",
               "has_table_privilege", "array_to_string", "numeric_in", "string_to_array", "now"]


@pytest.mark.parametrize("name", DF_COMPARED)
def test_df_same_as_postgresql(name, sqlvec_port, postgres_port):
    command = rf"\dfS {name}"
    ours = psql(sqlvec_port, command)
    assert "(0 rows)" not in ours
    assert ours == psql(postgres_port, command)


# pg_proc as PostgreSQL has it, row by row (keyed by name and argument types, which do not
# change between PostgreSQL versions; argument names did for some).
PG_PROC = ("SELECT p.proname, p.proargtypes::text, coalesce(p.proallargtypes::text, ''), "
           "pg_get_function_result(p.oid), p.prokind, p.provolatile, p.proretset, "
           "p.proisstrict, p.pronargs, p.pronargdefaults, p.provariadic FROM pg_proc p "
           "JOIN pg_namespace n "
           "ON n.oid = p.pronamespace WHERE n.nspname IN ('pg_catalog', 'information_schema')")
# Result types PostgreSQL declares that are not types here, and what sqlvec returns instead;
# pg_typeof gives the type's name as text (a regtype would show as an OID where sqlvec formats
# values itself).
RESULT_DEVIATIONS = {("inet_client_addr", ""): "text", ("inet_server_addr", ""): "text",
                     ("pg_advisory_unlock_all", ""): "text", ("pg_sleep", "701"): "text",
                     ("pg_current_xact_id", ""): "bigint", ("pg_typeof", "2276"): "text",
                     ("acldefault", "18 26"): "text[]",
                     **{(name, args): "text" for name in ("pg_advisory_lock", "pg_advisory_xact_lock")
                        for args in ("20", "23 23")}}


def _proc_rows(port: int) -> dict[tuple[str, str, str], list[str]]:
    out = subprocess.run([PSQL, "-X", "-At", "-F", "\x1f", "-h", "127.0.0.1", "-p", str(port),
                          "-U", "postgres", "-d", "postgres", "-c", PG_PROC],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\x1f") for line in out.stdout.splitlines()]
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def test_pg_proc_rows_as_postgresql(sqlvec_port, postgres_port):
    """Every pg_proc row of sqlvec's pg_catalog is PostgreSQL's: same result type, kind,
    volatility, strictness, set-returning flag, argument and default counts, variadic type."""
    ours, theirs = _proc_rows(sqlvec_port), _proc_rows(postgres_port)
    assert len(ours) > 300
    for key, row in ours.items():
        assert key in theirs, f"{key} is not a function of PostgreSQL"
        expected = theirs[key]
        if key[:2] in RESULT_DEVIATIONS:
            expected = [RESULT_DEVIATIONS[key[:2]]] + expected[1:]
        assert row == expected, key


def test_no_command_errors(sqlvec_port):
    for command in COMPARED + [r"\dt+", r"\di+", r"\l+", r"\dT+", r"\df+", r"\dx+", r"\dm",
                               r"\d vec.docs_embedding_idx", r"\dn+", r"\dS pg_class"]:
        out = psql(sqlvec_port, command)
        assert "ERROR" not in out and "error" not in out.lower(), (command, out)
