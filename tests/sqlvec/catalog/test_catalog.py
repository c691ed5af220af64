"""The catalog's persisted state across restarts."""

from __future__ import annotations

from sqlvec.database import Database


def values(session, sql: str) -> list:
    return [row for result in session.execute(sql) for batch in result.batches
            for row in batch.to_pylist()]


def test_a_sequence_never_repeats_a_value_after_a_restart(tmp_path):
    path = str(tmp_path / "data")
    with Database.open(path) as db:
        s = db.connect()
        values(s, "CREATE TABLE q (id serial PRIMARY KEY, x int)")
        for _ in range(5):
            values(s, "INSERT INTO q (x) VALUES (1)")
    with Database.open(path) as db:  # values up to the reserved block may have been used
        s = db.connect()
        values(s, "INSERT INTO q (x) VALUES (2)")
        ids = values(s, "SELECT id FROM q ORDER BY id")
    assert [r["id"] for r in ids][:5] == [1, 2, 3, 4, 5]
    assert len({r["id"] for r in ids}) == 6
