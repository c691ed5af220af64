"""A database with the schema the catalog tests (and the captured client queries) describe."""

from __future__ import annotations

import pytest

from sqlvec.database import Database

SCHEMA = [
    "CREATE EXTENSION vector",
    "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, price numeric(10,2), "
    "created timestamptz DEFAULT now(), tags varchar(20), score real, embedding vector(3))",
    "CREATE INDEX items_name_idx ON items (name)",
    "CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 8)",
    "COMMENT ON TABLE items IS 'things'",
    "COMMENT ON COLUMN items.name IS 'the name'",
    "CREATE SCHEMA other",
    "CREATE TABLE other.t2 (a int, b text)",
    "INSERT INTO items (name, embedding) VALUES ('a', '[1,2,3]'), ('b', '[4,5,6]')",
]


@pytest.fixture
def db(tmp_path):
    database = Database.open(str(tmp_path / "data"))
    yield database
    database.close()


@pytest.fixture
def session(db):
    s = db.connect()
    for statement in SCHEMA:
        s.execute_one(statement)
    yield s
    s.close()


def rows(session, sql: str, params: list | None = None) -> list[tuple]:
    return session.execute_one(sql, params).rows()
