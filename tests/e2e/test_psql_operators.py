"""psql's `\\do` and `\\df` on sqlvec print pgvector's operators and functions as PostgreSQL +
pgvector prints them: pg_operator rows with their argument, result and implementing function,
pg_proc rows with every argument type (no `???`).

PostgreSQL + pgvector comes from the pgserver package (skipped without it); rows of pgvector
types this build does not have (sparsevec) and functions it does not declare are left out of
the comparison, which is line by line otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.e2e.conftest import start_server

PSQL = shutil.which("psql")
pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed")


def psql(uri: str, *args: str) -> str:
    out = subprocess.run([PSQL, "-X", "-P", "pager=off", uri, *args], capture_output=True,
                         text=True, timeout=60, env={"PGCONNECT_TIMEOUT": "10", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def uris(tmp_path_factory):
    """(sqlvec URI, PostgreSQL + pgvector URI), both with the vector extension created."""
    pgserver = pytest.importorskip("pgserver")
    running = start_server(tmp_path_factory.mktemp("operators"))
    pg_dir = tempfile.mkdtemp(prefix="sqlvec-operators-pg-")
    pg = pgserver.get_server(pg_dir, cleanup_mode="stop")
    try:
        ours = f"postgresql://postgres@{running.host}:{running.port}/postgres"
        theirs = pg.get_uri()
        for uri in (ours, theirs):
            psql(uri, "-c", "CREATE EXTENSION IF NOT EXISTS vector")
        yield ours, theirs
    finally:
        pg.cleanup()
        shutil.rmtree(pg_dir, ignore_errors=True)
        assert running.stop() == 0, running.log()


def _rows(text: str) -> list[str]:
    """The table rows of psql's aligned output, blanks collapsed (column widths depend on the
    longest row, which differs when one side lists more rows)."""
    return [" ".join(line.split()) for line in text.splitlines() if line.count("|") >= 3
            and not line.lstrip().startswith("Schema")]


def _types(uri: str) -> set[str]:
    return set(psql(uri, "-At", "-c", "SELECT typname FROM pg_type").split())


@pytest.mark.parametrize("pattern", ["<->", "public.*", "<=>", "public.<~>"])
def test_do_lists_pgvector_operators_as_postgresql(uris, pattern):
    ours, theirs = uris
    missing = {"sparsevec"} - _types(ours)
    expected = [row for row in _rows(psql(theirs, "-c", rf"\do {pattern}"))
                if row.startswith("public") and not any(t in row for t in missing)]
    got = _rows(psql(ours, "-c", rf"\do {pattern}"))
    assert got == expected
    assert got


def test_do_shows_the_exact_table_for_one_type(uris):
    ours, theirs = uris
    command = r"\do public.<-> vector"
    assert psql(ours, "-c", command) == psql(theirs, "-c", command)


def test_pg_operator_rows_name_their_functions(uris):
    ours, theirs = uris
    query = ("SELECT oprname, oprleft::regtype, oprright::regtype, oprresult::regtype, "
             "oprcode::oid::regprocedure, oprkind, oprcanmerge, oprcanhash, "
             "(SELECT c.oprname FROM pg_operator c WHERE c.oid = o.oprcom), "
             "(SELECT c.oprname FROM pg_operator c WHERE c.oid = o.oprnegate) "
             "FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace "
             "WHERE n.nspname = 'public' AND oprleft::regtype::text IN ('vector', 'halfvec', "
             "'bit') ORDER BY 2, 1")
    got = psql(ours, "-At", "-c", query).splitlines()
    assert got == psql(theirs, "-At", "-c", query).splitlines()
    assert "<->|vector|vector|double precision|l2_distance(vector,vector)|b|f|f|<->|" in got


def test_df_rows_as_postgresql(uris):
    """Every pgvector function sqlvec lists, it lists as PostgreSQL + pgvector does: result
    and argument types from pg_proc's prorettype / proargtypes, none shown as `???`."""
    ours, theirs = uris
    got = [row for row in _rows(psql(ours, "-c", r"\df public.*"))
           if "pg_stat_statements" not in row]  # sqlvec has that extension built in
    expected = set(_rows(psql(theirs, "-c", r"\df public.*")))
    assert len(got) > 50
    assert [row for row in got if row not in expected] == []
    for name in ("vector_typmod_in", "halfvec_typmod_in", "vector_add", "halfvec_lt",
                 "l2_distance", "vector_in", "vector_recv"):
        assert any(f"| {name} |" in row for row in got), name
    assert "???" not in psql(ours, "-c", r"\df")


def test_operator_functions_callable_by_name(uris):
    ours, theirs = uris
    query = ("SELECT vector_add('[1,2]', '[3,4]'), vector_sub('[1,2]', '[3,4]'), "
             "vector_mul('[1,2]', '[3,4]'), vector_concat('[1]', '[2]'), vector_lt('[1]', '[2]'), "
             "halfvec_eq('[1]', '[1]'), halfvec_negative_inner_product('[1,2]', '[3,4]'), "
             "'[1,2]'::vector OPERATOR(public.<->) '[1,3]'")
    assert psql(ours, "-At", "-c", query) == psql(theirs, "-At", "-c", query)
