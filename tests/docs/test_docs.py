"""The documentation is true of the code: README.md's commands, SQL and Python run as written
against a real server, its tables match the command line and the server's behaviour, the SQL in
docs/sql.md runs, and every relative link in README.md and docs/*.md resolves."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import site
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUICK_START_URL = "postgresql://postgres@127.0.0.1:5433/postgres"
PSQL = shutil.which("psql")


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def statements(sql: str) -> list[str]:
    """The statements of a block of SQL (comments dropped; `;` ends a statement at line end)."""
    sql = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", sql) if s.strip()]


@pytest.fixture
def database(server, request) -> str:
    """A fresh database on the shared server; its libpq URI."""
    name = "doc_" + re.sub(r"\W", "_", request.node.name.lower())[:40]
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@{server.host}:{server.port}/{name}"


def connect(url: str) -> psycopg.Connection:
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    return conn


# --- links --------------------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("document", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(document: Path):
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        assert resolved.exists(), f"{document.name}: link to {target}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{document.name}: {target}"


def test_the_examples_the_readme_lists_exist():
    paragraph = README.split("Runnable versions of each are in", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"`(\w+\.(?:py|sql))`", paragraph)
    assert len(names) == 6, paragraph
    for name in names:
        assert (ROOT / "examples" / name).exists(), name


# --- quick start: `pip install . && sqlvec serve`, then psql on 127.0.0.1:5433 -----------------


def test_quick_start_commands():
    first, second = blocks(section(README, "Quick start"), "sh")
    assert first.strip() == "pip install . && sqlvec serve"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'sqlvec = "wire.cli:main"' in pyproject
    assert blocks(section(README, "Connecting"), "sh")[0].strip() == \
        "psql -h 127.0.0.1 -p 5433 -U postgres"
    assert QUICK_START_URL in section(README, "Connecting")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install .` of a clean copy of the sources into a new virtual environment (its
    dependencies come from this environment): the environment's bin directory."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    work = tmp_path_factory.mktemp("install")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "sqlvec", "wire", "benchmarks"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    venv = work / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    # The new environment sees this one's packages (pip, setuptools, the dependencies) whether
    # this one is a system Python or itself a virtual environment, where --system-site-packages
    # would expose the base interpreter's packages instead. Paths listed in a .pth file are
    # added as they are: the .pth files inside them, such as an editable install of this
    # checkout, are not processed, so the checkout stays out of sight.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parents = [p for p in [*site.getsitepackages(), site.getusersitepackages()]
               if os.path.isdir(p)]
    Path(purelib, "_parent_environment.pth").write_text("\n".join(parents) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                              "--no-index", "--no-build-isolation", str(source)],
                             capture_output=True, text=True, timeout=300, cwd=work)
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run([str(python), "-c", "import sqlvec, wire; print(sqlvec.__file__)"],
                           capture_output=True, text=True, cwd=work)
    assert str(venv) in where.stdout, where.stdout + where.stderr  # not the checkout
    return venv / "bin"


def serve(bindir: Path, cwd: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    """`sqlvec serve [args]` from `cwd`; returns once it logs the address it listens on."""
    log_path = cwd / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(bindir / "sqlvec"), "serve", *args], cwd=cwd,
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = re.search(r"listening on (\S+:\d+)", text)
        if m:
            return process, m.group(1), log_path
        if process.poll() is not None:
            pytest.fail(f"sqlvec serve exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"sqlvec serve did not start:\n{log_path.read_text(errors='replace')}")


def stopped(process: subprocess.Popen, log_path: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def test_pip_install_then_sqlvec_serve_on_the_default_data_dir(installed, tmp_path):
    process, address, log = serve(installed, tmp_path, "--port", "0")
    try:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stopped(process, log)
    assert (tmp_path / "sqlvec-data" / "postgres" / "manifest").is_dir()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sqlvec_serve_answers_psql_and_psycopg_on_5433(installed, tmp_path):
    if not _port_free(5433):
        pytest.skip("127.0.0.1:5433 is in use, so the README's default port cannot be tried")
    process, address, log = serve(installed, tmp_path)  # exactly `sqlvec serve`
    try:
        assert address == "127.0.0.1:5433"
        with psycopg.connect(QUICK_START_URL) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        if PSQL:
            command = shlex.split(blocks(section(README, "Connecting"), "sh")[0])
            out = subprocess.run([PSQL, *command[1:], "-X", "-c", "SELECT 1 AS one"],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and "(1 row)" in out.stdout, out.stdout + out.stderr
    finally:
        stopped(process, log)
    assert (tmp_path / "sqlvec-data").is_dir()


# --- the five-statement tour, and the Python snippets -------------------------------------------


def tour() -> list[str]:
    (sql,) = blocks(section(README, "A five-statement tour"), "sql")
    found = statements(sql)
    assert len(found) == 5, found
    return found


def test_the_tour_runs(database):
    create, insert, index, select, explain = tour()
    with connect(database) as conn:
        for statement in (create, insert, index):
            conn.execute(statement)
        rows = conn.execute(select).fetchall()
        assert [r[0] for r in rows] == [1, 2]
        assert rows[0][1] == pytest.approx(1.0) and rows[1][1] == pytest.approx(34 ** 0.5)
        plan = "\n".join(r[0] for r in conn.execute(explain))
    assert "Vector Top-K on items" in plan, plan
    assert "Filter: category = 'fruit'" in plan and re.search(r"segment \d+: exact", plan), plan


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (postgresql-client)")
def test_the_tour_runs_in_psql(database, tmp_path):
    (sql,) = blocks(section(README, "A five-statement tour"), "sql")
    (tmp_path / "tour.sql").write_text(sql)
    out = subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", database, "-f",
                          str(tmp_path / "tour.sql")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(2 rows)" in out.stdout and "Vector Top-K on items" in out.stdout, out.stdout


def test_the_python_snippets_run(database):
    with connect(database) as conn:
        for statement in tour()[:3]:
            conn.execute(statement)
    snippets = blocks(section(README, "Connecting"), "python")
    assert len(snippets) == 3
    address = QUICK_START_URL.split("://", 1)[1]  # postgres@127.0.0.1:5433/postgres
    for snippet in snippets:
        assert f"://{address}" in snippet, snippet
    psycopg_snippet, asyncpg_snippet, sqlalchemy_snippet = (
        s.replace(address, database.split("://", 1)[1]) for s in snippets)

    scope: dict = {}
    exec(psycopg_snippet, scope)  # noqa: S102 - the README's own code
    assert scope["conn"].execute(
        "SELECT id FROM items ORDER BY embedding <-> '[1,2,2]' LIMIT 1").fetchone() == (1,)
    scope["conn"].close()

    scope = {}
    exec("async def snippet():\n" + textwrap.indent(asyncpg_snippet, "    ")  # noqa: S102
         + "\n    try:\n        return await conn.fetchval("
           "\"SELECT embedding FROM items WHERE id = 1\")\n"
           "    finally:\n        await conn.close()\n", scope)
    embedding = asyncio.run(scope["snippet"]())
    assert list(embedding.to_list() if hasattr(embedding, "to_list") else embedding) == [1, 2, 3]

    scope = {}
    exec(sqlalchemy_snippet, scope)  # noqa: S102
    from sqlalchemy import text

    with scope["engine"].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 3
    scope["engine"].dispose()


def test_the_asyncpg_pool_as_the_readme_builds_it(database):
    import asyncpg
    from pgvector.asyncpg import register_vector

    call = re.search(r"`(asyncpg\.create_pool\(.*?\))`", " ".join(
        section(README, "Connecting").split()))
    assert call, "the README shows how to make an asyncpg pool"

    async def go() -> None:
        pool = eval(call.group(1), {"asyncpg": asyncpg, "url": database,  # noqa: S307
                                    "register_vector": register_vector})
        async with pool as ready:
            for _ in range(3):  # release (and reset) the one connection, then reuse it
                async with ready.acquire() as conn:
                    assert await conn.fetchval("SELECT 1") == 1

    asyncio.run(go())


def wait_for_ready_indexes(conn, index: str, segments: int, timeout: float = 120.0) -> None:
    """Wait until `index` is built and ready on `segments` segments (`sqlvec_indexes`)."""
    deadline = time.monotonic() + timeout
    query = ("SELECT count(*) FILTER (WHERE state = 'ready') FROM sqlvec_indexes "
             "WHERE indexname = %s")
    while conn.execute(query, (index,)).fetchone()[0] < segments:
        assert time.monotonic() < deadline, f"{index} not ready on {segments} segments"
        time.sleep(0.1)


def test_explain_shows_what_the_readme_says(database):
    """`exact`, `hnsw`, `hnsw-postfilter` and `skip` per segment, with candidate counts,
    ef_search and the predicted recall; EXPLAIN ANALYZE adds rows and times."""
    import numpy as np

    paragraph = section(README, "A five-statement tour")
    for word in ("`exact`", "`hnsw`", "`hnsw-postfilter`", "`skip`", "`ef_search`"):
        assert word in paragraph
    rng = np.random.default_rng(0)
    with connect(database) as conn:
        conn.execute("CREATE TABLE ex (id bigint PRIMARY KEY, category text, embedding vector(8))")
        # Three sealed segments of 2000 rows, each indexed before the next is sealed (a
        # CREATE INDEX after all three would merge them into one first).
        for s in range(3):
            with conn.cursor().copy("COPY ex FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "text", "vector"])
                for i in range(s * 2000, (s + 1) * 2000):
                    category = "rare" if i % 100 == 0 else "half" if i % 2 else "other"
                    copy.write_row((i, category, rng.random(8).astype(np.float32)))
            conn.execute("CHECKPOINT")
            if s == 0:
                conn.execute("CREATE INDEX ON ex USING hnsw (embedding vector_l2_ops)")
            wait_for_ready_indexes(conn, "ex_embedding_idx", s + 1)

        def plan(where: str, analyze: str = "") -> str:
            return "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN {analyze}SELECT id FROM ex {where} ORDER BY embedding <-> "
                "'[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]' LIMIT 5"))

        assert re.search(r"segment 1: hnsw candidates=2000/2000 k=5 ef=\d+ est_recall=0?\.\d+|"
                         r"segment 1: hnsw candidates=2000/2000 k=5 ef=\d+ est_recall=1\.0+",
                         plan("")), plan("")
        assert "segment 1: exact candidates=20/2000" in plan("WHERE category = 'rare'")
        assert "segment 1: hnsw-postfilter candidates=1000/2000" in plan(
            "WHERE category = 'half'")
        skipped = plan("WHERE id < 2000")
        assert "segment 2: skip" in skipped and "segment 3: skip" in skipped, skipped
        analyzed = plan("", "ANALYZE ")
        assert re.search(r"rows=5 time=[\d.]+ ms", analyzed) and "Execution Time" in analyzed


def test_session_settings_the_readme_names(database):
    with connect(database) as conn:
        for setting, value in (("hnsw.ef_search", "100"), ("sqlvec.target_recall", "0.95"),
                               ("sqlvec.exact", "on"), ("statement_timeout", "5s"),
                               ("search_path", "public")):
            assert f"{setting}" in README
            conn.execute(f"SET {setting} = {value}" if setting != "statement_timeout"
                         else f"SET {setting} = '{value}'")
            assert conn.execute(f"SHOW {setting}").fetchone()[0] == value


# --- the configuration table is the command line ------------------------------------------------


def test_the_configuration_table_is_the_command_line():
    from wire.cli import build_parser

    serve = next(a for a in build_parser()._actions if a.dest == "command").choices["serve"]
    actions = {o: a for a in serve._actions for o in a.option_strings}
    rows = [line for line in section(README, "Configuration").splitlines()
            if line.startswith("| `--")]
    documented = set()
    for row in rows:
        flags_cell, env_cell, default_cell, _meaning = (c.strip() for c in row.strip("|")
                                                         .split("|"))
        flags = re.findall(r"--[a-z-]+", flags_cell)
        documented.update(flags)
        for flag in flags:
            assert flag in actions, f"README documents {flag}, which sqlvec serve lacks"
        default = re.fullmatch(r"`([^`]+)`", default_cell)
        if default and len(flags) == 1:
            assert str(actions[flags[0]].default) == default.group(1), row
        if "SQLVEC_PASSWORD" in env_cell:
            assert flags == ["--password"]
        if flags == ["--auth"]:
            assert set(re.findall(r"`([\w-]+)`", row.split("|")[4])) == \
                set(actions["--auth"].choices)
    assert documented == {o for o in actions if o.startswith("--") and o != "--help"}


def test_operations_commands_parse():
    from wire.cli import build_parser

    text = (ROOT / "docs" / "operations.md").read_text()
    lines = [line.split("#", 1)[0].strip() for block in blocks(text, "sh")
             for line in block.splitlines()]
    serve_lines = [line for line in lines if "sqlvec serve" in line and "--help" not in line]
    assert serve_lines
    for line in serve_lines:
        words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]
        assert words[:2] == ["sqlvec", "serve"], line
        build_parser().parse_args(words[1:])
    helped = subprocess.run([sys.executable, "-m", "sqlvec", "serve", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--data-dir" in helped.stdout, helped.stderr


# --- the compatibility table --------------------------------------------------------------------

SUPPORTED = {
    "`DISTINCT [ON]`": ["SELECT DISTINCT ON (category) category, id FROM t ORDER BY category, id"],
    "window functions": ["SELECT id, row_number() OVER (PARTITION BY category ORDER BY id) FROM t"],
    "CTEs (incl. recursive)": ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
                               "WHERE n < 3) SELECT * FROM r"],
    "set operations": ["SELECT id FROM t UNION SELECT id FROM t EXCEPT SELECT 1"],
    "views": ["CREATE VIEW tv AS SELECT id, embedding FROM t WHERE category = 'a'",
              "SELECT id FROM tv ORDER BY embedding <-> '[1,2,3]' LIMIT 1"],
    "`CREATE TABLE ... AS` and `SELECT ... INTO`": [
        "CREATE TABLE t2 AS SELECT * FROM t", "SELECT id INTO t3 FROM t"],
    "`ON CONFLICT`": ["INSERT INTO t VALUES (1, 'a', '[1,1,1]') ON CONFLICT (id) DO UPDATE SET "
                      "category = EXCLUDED.category RETURNING id"],
    "`PREPARE`/`EXECUTE`": ["PREPARE p(bigint) AS SELECT id FROM t WHERE id = $1",
                            "EXECUTE p(1)", "DEALLOCATE p"],
    "cursors": ["BEGIN", "DECLARE c CURSOR FOR SELECT id FROM t ORDER BY id", "FETCH 1 FROM c",
                "CLOSE c", "COMMIT"],
    "transactions": ["BEGIN", "SAVEPOINT s", "DELETE FROM t", "ROLLBACK TO SAVEPOINT s",
                     "RELEASE s", "COMMIT"],
    "`avg`/`sum` of vectors": ["SELECT avg(embedding), sum(embedding) FROM t"],
    "casts among them and to and from arrays": [
        "SELECT embedding::real[], ARRAY[1,2,3]::real[]::vector, embedding::halfvec FROM t"],
    "`halfvec(n)` (float16 storage, HNSW `halfvec_*_ops`)": [
        "CREATE TABLE h (id int PRIMARY KEY, v halfvec(3))",
        "CREATE INDEX ON h USING hnsw (v halfvec_l2_ops)"],
    "`bit(n)`/`varbit` with `<~>` and `<%>`": ["SELECT B'101' <~> B'100', B'101' <%> B'100'"],
    "`sparsevec(n)`": [
        "CREATE TABLE sv (id int PRIMARY KEY, v sparsevec(3))",
        "CREATE INDEX ON sv USING hnsw (v sparsevec_l2_ops)",
        "SELECT id FROM sv ORDER BY v <-> '{1:1}/3' LIMIT 1"],
    "`vector_l2_ops`, `vector_cosine_ops`, `vector_ip_ops`": [
        f"CREATE INDEX ON t USING hnsw (embedding {ops})"
        for ops in ("vector_l2_ops", "vector_cosine_ops", "vector_ip_ops")],
    "`USING ivfflat` with `lists`": [
        "CREATE INDEX ON t USING ivfflat (embedding vector_cosine_ops) WITH (lists = 2)"],
    "btree (columns and expressions": [
        "CREATE INDEX ON t (category)", "CREATE INDEX ON t ((lower(category)))",
        "SELECT id FROM t WHERE lower(category) = 'a'"],
    "`USING gin` on jsonb (`jsonb_ops`, `jsonb_path_ops`) and arrays": [
        "CREATE TABLE j (id int PRIMARY KEY, meta jsonb)",
        "CREATE INDEX ON j USING gin (meta jsonb_path_ops)",
        "SELECT id FROM j WHERE meta @? '$.a ? (@ > 1)'"],
    "materialized views": [
        "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t", "REFRESH MATERIALIZED VIEW mv",
        "SELECT id FROM mv"],
    "expression indexes on vector casts": [
        "CREATE INDEX ON t USING hnsw ((embedding::halfvec(3)) halfvec_l2_ops)",
        "SELECT id FROM t ORDER BY embedding::halfvec(3) <-> '[1,2,3]' LIMIT 1",
        "CREATE INDEX ON t USING hnsw ((binary_quantize(embedding)::bit(3)) bit_hamming_ops)"],
    "`bit_*_ops` indexes (packed bits per segment": [
        "CREATE TABLE bt (id int PRIMARY KEY, b bit(3))",
        "CREATE INDEX ON bt USING hnsw (b bit_hamming_ops)"],
    "`UNIQUE`": ["CREATE UNIQUE INDEX ON t (category, id)"],
    "`PRIMARY KEY`, `UNIQUE`, `CHECK`, `NOT NULL` and `FOREIGN KEY` constraints": [
        "CREATE TABLE ck (id int PRIMARY KEY, x int UNIQUE CHECK (x > 0) NOT NULL)",
        "CREATE TABLE fk (id int PRIMARY KEY, t_id bigint REFERENCES t (id) ON DELETE CASCADE "
        "DEFERRABLE)", "INSERT INTO fk VALUES (1, 1)"],
}

UNSUPPORTED = {  # README phrase -> (statement, SQLSTATE)
    "`vector_l1_ops` in hnsw": ("CREATE INDEX ON t USING hnsw (embedding vector_l1_ops)",
                                "0A000"),
    "triggers": ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
                 "0A000"),
    "temporary tables": ("CREATE TEMPORARY TABLE tt (id int)", "0A000"),
}


@pytest.fixture
def table(database):
    with connect(database) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, category text, embedding vector(3))")
        conn.execute("INSERT INTO t VALUES (1, 'a', '[1,2,3]'), (2, 'b', '[4,5,6]')")
        yield conn


def compatibility() -> str:
    return section(README, "What is supported")


def test_what_the_compatibility_table_supports_runs(table):
    for phrase, sql in SUPPORTED.items():
        assert phrase in compatibility(), phrase
        for statement in sql:
            table.execute(statement)
    with table.cursor().copy("COPY t TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        out = b"".join(bytes(chunk) for chunk in copy).decode()
    assert out.splitlines()[0] == "id,category,embedding"
    table.execute("DELETE FROM t")
    with table.cursor().copy("COPY t FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(out.split("\n", 1)[1])
    assert table.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_what_the_compatibility_table_does_not_support_is_refused(table):
    for phrase, (statement, sqlstate) in UNSUPPORTED.items():
        assert phrase in compatibility(), phrase
        with pytest.raises(psycopg.Error) as error:
            table.execute(statement)
        if sqlstate:
            assert error.value.sqlstate == sqlstate, (statement, error.value)
        else:  # a type pgvector has and sqlvec does not: PostgreSQL's unknown-type error
            assert error.value.sqlstate == "42704", (statement, error.value)


def test_ddl_in_a_transaction_is_rolled_back(table):
    notices = []
    table.add_notice_handler(lambda n: notices.append(n.message_primary))
    table.execute("BEGIN")
    table.execute("CREATE TABLE later (id int PRIMARY KEY)")
    table.execute("ROLLBACK")
    assert notices == []
    assert table.execute("SELECT to_regclass('later')").fetchone() == (None,)


def test_the_column_types_the_readme_lists(table):
    paragraph = compatibility().split("Column types:", 1)[1]
    names = re.findall(r"`([^`]+)`", paragraph)
    assert "vector(n)" in names
    columns = ", ".join(f"c{i} {n.replace('(n)', '(3)')}" for i, n in enumerate(names))
    table.execute(f"CREATE TABLE all_types (id int PRIMARY KEY, {columns}, arr int[])")
    table.execute("INSERT INTO all_types (id) VALUES (1)")


# --- docs/sql.md --------------------------------------------------------------------------------


def test_the_sql_reference_examples_run(database):
    """docs/sql.md's blocks, with values for its parameters and `staging` and `queries` tables."""
    text = (ROOT / "docs" / "sql.md").read_text()
    with connect(database) as conn:
        for block in blocks(text, "sql"):
            for statement in statements(re.sub(r"^\.\.\.$", "", block, flags=re.M)):
                if "staging" in statement:
                    conn.execute("CREATE TABLE IF NOT EXISTS staging (id bigint PRIMARY KEY, "
                                 "category text, price float8, embedding vector(3))")
                if "FROM queries" in statement:  # the LATERAL example's query rows
                    conn.execute("CREATE TABLE IF NOT EXISTS queries (id bigint PRIMARY KEY, "
                                 "category text, embedding vector(3))")
                conn.execute(statement.replace("$1", "'[1,2,2]'").replace("$2", "'a'"))
            conn.execute("RESET ALL")
