"""SQLAlchemy 2 (postgresql+psycopg) and pandas against sqlvec: DDL with pgvector's Vector type,
the inspector, reflection, ORM writes and a vector-ordered select."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.e2e.conftest import start_server


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("catalog-sqlalchemy"))
    eng = sa.create_engine(f"postgresql+psycopg://postgres@{running.host}:{running.port}/postgres")
    yield eng
    eng.dispose()
    assert running.stop() == 0, running.log()


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, nullable=False)
    price: Mapped[float | None] = mapped_column(sa.Numeric(10, 2))
    embedding = mapped_column(Vector(3))


@pytest.fixture(scope="module")
def schema(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX items_embedding_idx ON items USING hnsw "
                             "(embedding vector_l2_ops)"))
    return engine


def test_inspector(schema):
    insp = sa.inspect(schema)
    assert "public" in insp.get_schema_names()
    assert insp.get_table_names() == ["items"]
    assert insp.has_table("items") and not insp.has_table("nope")
    cols = {c["name"]: c for c in insp.get_columns("items")}
    assert list(cols) == ["id", "name", "price", "embedding"]
    assert isinstance(cols["id"]["type"], sa.BigInteger) and not cols["id"]["nullable"]
    assert isinstance(cols["price"]["type"], sa.Numeric)
    assert (cols["price"]["type"].precision, cols["price"]["type"].scale) == (10, 2)
    assert cols["name"]["nullable"] is False
    assert insp.get_pk_constraint("items") == {
        "constrained_columns": ["id"], "name": "items_pkey", "comment": None,
        "dialect_options": {"postgresql_include": []}} or \
        insp.get_pk_constraint("items")["constrained_columns"] == ["id"]
    indexes = insp.get_indexes("items")
    assert [(i["name"], i["column_names"], i["unique"]) for i in indexes] == [
        ("items_embedding_idx", ["embedding"], False)]
    assert insp.get_foreign_keys("items") == []


def test_reflect(schema):
    metadata = sa.MetaData()
    metadata.reflect(schema)
    table = metadata.tables["items"]
    assert [c.name for c in table.columns] == ["id", "name", "price", "embedding"]
    assert [c.name for c in table.primary_key.columns] == ["id"]


def test_orm_insert_and_vector_search(schema):
    with Session(schema) as session:
        session.add_all([Item(id=i, name=f"n{i}", price=i, embedding=[i, i + 1, i + 2])
                         for i in range(20)])
        session.commit()
    with Session(schema) as session:
        query = sa.select(Item).order_by(Item.embedding.l2_distance([5, 6, 7])).limit(5)
        got = [item.id for item in session.scalars(query)]
        assert got[0] == 5 and sorted(got) == [3, 4, 5, 6, 7]
        assert np.allclose(session.get(Item, 3).embedding, [3, 4, 5])


def test_pandas_read_sql(schema):
    frame = pd.read_sql("SELECT id, name FROM items WHERE id < 3 ORDER BY id", schema)
    assert frame.to_dict("list") == {"id": [0, 1, 2], "name": ["n0", "n1", "n2"]}
    whole = pd.read_sql_table("items", schema)
    assert list(whole.columns) == ["id", "name", "price", "embedding"]
    assert len(whole) >= 20
