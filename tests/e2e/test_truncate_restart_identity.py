"""TRUNCATE ... RESTART IDENTITY compared with a real PostgreSQL: the sequences owned by the
emptied tables' serial and identity columns (those of the tables a CASCADE reaches too) hand
out their start value next, in autocommit and in a block, where the restart is transactional
(ROLLBACK and ROLLBACK TO undo it, and the values taken since); CONTINUE IDENTITY, the
default, keeps them. With workers, every connection then takes the next value in turn. On our
server the restart survives a clean restart and a kill -9 after the acknowledgement.
"""

from __future__ import annotations

import signal

import psycopg
import pytest

from tests.e2e.conftest import RunningServer, beside_postgres, start_server

INSERT = "INSERT INTO rt (v) VALUES (1) RETURNING id"

# Statements after 10 rows went into rt (id serial), and the ids the RETURNING ones give.
SCENARIOS = {
    "autocommit": (["TRUNCATE rt RESTART IDENTITY", INSERT, INSERT], [1, 2]),
    "default-continues": (["TRUNCATE rt", INSERT], [11]),
    "continue-identity": (["TRUNCATE TABLE rt CONTINUE IDENTITY", INSERT], [11]),
    "block-commit": (["BEGIN", "TRUNCATE rt RESTART IDENTITY", INSERT, "COMMIT", INSERT],
                     [1, 2]),
    # currval() keeps the value taken in the rolled-back block, as PostgreSQL documents.
    "block-rollback": (["BEGIN", "TRUNCATE rt RESTART IDENTITY", INSERT, "ROLLBACK",
                        "SELECT currval('rt_id_seq')", INSERT], [1, 1, 11]),
    "again-after-rollback": (["BEGIN", "TRUNCATE rt RESTART IDENTITY", INSERT, "ROLLBACK",
                              "BEGIN", "TRUNCATE rt RESTART IDENTITY", INSERT, "COMMIT", INSERT],
                             [1, 1, 2]),
    "again-after-rollback-to": (["BEGIN", "SAVEPOINT a", "TRUNCATE rt RESTART IDENTITY", INSERT,
                                 "ROLLBACK TO a", "TRUNCATE rt RESTART IDENTITY", INSERT,
                                 "COMMIT", INSERT], [1, 1, 2]),
    "implicit-block": (["TRUNCATE rt RESTART IDENTITY; INSERT INTO rt (v) VALUES (1)", INSERT],
                       [2]),
    "rollback-to-before": (["BEGIN", "SAVEPOINT a", "TRUNCATE rt RESTART IDENTITY", INSERT,
                            "ROLLBACK TO a", INSERT, "COMMIT", INSERT], [1, 11, 12]),
    "rollback-to-after": (["BEGIN", "TRUNCATE rt RESTART IDENTITY", "SAVEPOINT b", INSERT,
                           "ROLLBACK TO b", INSERT, "COMMIT", INSERT], [1, 2, 3]),
    "nextval-before-in-block": (["BEGIN", INSERT, "TRUNCATE rt RESTART IDENTITY", "ROLLBACK",
                                 INSERT], [11, 12]),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The URIs of PostgreSQL and of a sqlvec server (with its default workers)."""
    with beside_postgres(tmp_path_factory, "restartid") as (sqlvec, postgres):
        yield {"postgres": postgres, "sqlvec": sqlvec}


@pytest.fixture(params=["postgres", "sqlvec"])
def uri(request, servers) -> str:
    with psycopg.connect(servers[request.param], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rc, rp, rt CASCADE")
        conn.execute("CREATE TABLE rt (id serial, v int)")
        conn.execute("INSERT INTO rt (v) SELECT g FROM generate_series(1, 10) g")
    return servers[request.param]


def returned_ids(uri: str, statements: list[str]) -> list[int]:
    """Run `statements` on one connection; the ids the RETURNING ones gave."""
    out = []
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in statements:
            cur = conn.execute(sql)
            if cur.description is not None:
                out.extend(r[0] for r in cur.fetchall())
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_restart_identity_as_postgres(uri, scenario):
    statements, expected = SCENARIOS[scenario]
    assert returned_ids(uri, statements) == expected


def test_identity_columns_and_cascade(uri):
    """The identity column of the table named and the serial of the one CASCADE empties."""
    statements = [
        "CREATE TABLE rp (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int)",
        "CREATE TABLE rc (id bigserial, p int REFERENCES rp)",
        "INSERT INTO rp (v) VALUES (1), (2) RETURNING id",
        "INSERT INTO rc (p) VALUES (1), (2) RETURNING id",
        "TRUNCATE rp RESTART IDENTITY CASCADE",
        "INSERT INTO rp (v) VALUES (1) RETURNING id",
        "INSERT INTO rc (p) VALUES (1) RETURNING id",
        INSERT,  # rt was not truncated: its sequence goes on
    ]
    assert returned_ids(uri, statements) == [1, 2, 1, 2, 1, 1, 11]


def test_other_sequences_go_on(uri):
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP SEQUENCE IF EXISTS free_s")
        conn.execute("CREATE SEQUENCE free_s")
        assert conn.execute("SELECT nextval('free_s')").fetchone() == (1,)
        conn.execute("TRUNCATE rt RESTART IDENTITY")
        assert conn.execute("SELECT nextval('free_s')").fetchone() == (2,)
        conn.execute("DROP SEQUENCE free_s")


def test_every_connection_continues_from_the_restart(uri):
    """Whichever process serves a connection, the values follow the restart in turn."""
    returned_ids(uri, ["TRUNCATE rt RESTART IDENTITY"])
    taken = [returned_ids(uri, ["SELECT nextval('rt_id_seq')"])[0] for _ in range(4)]
    assert taken == [1, 2, 3, 4]


def _served(tmp_path, n: int, reap) -> tuple[RunningServer, str]:
    """Our server on the data directory kept across its restarts, and its URI."""
    running = start_server(tmp_path / f"s{n}", data_dir=tmp_path / "data")
    reap(running)
    return running, f"postgresql://postgres@{running.host}:{running.port}/postgres"


def _stop(running: RunningServer, how: str) -> None:
    if how == "kill":  # right after the acknowledgement
        running.stop(signal.SIGKILL)
    else:
        assert running.stop() == 0, running.log()


@pytest.mark.parametrize("how", ["clean", "kill"])
def test_restart_survives_the_server(tmp_path, reap, how):
    """Committed in a block, then in autocommit: each restart is there after the server's."""
    running, uri = _served(tmp_path, 0, reap)
    returned_ids(uri, ["CREATE TABLE rt (id serial, v int)",
                       "INSERT INTO rt (v) SELECT g FROM generate_series(1, 10) g",
                       "BEGIN", "TRUNCATE rt RESTART IDENTITY", "COMMIT"])
    _stop(running, how)
    running, uri = _served(tmp_path, 1, reap)
    assert returned_ids(uri, [INSERT, "SELECT count(*) FROM rt"]) == [1, 1]
    returned_ids(uri, ["INSERT INTO rt (v) SELECT g FROM generate_series(1, 40) g",
                       "TRUNCATE rt RESTART IDENTITY"])
    _stop(running, how)
    running, uri = _served(tmp_path, 2, reap)
    assert returned_ids(uri, [INSERT, "SELECT count(*) FROM rt"]) == [1, 1]
    assert running.stop() == 0, running.log()
