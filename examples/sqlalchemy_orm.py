"""An ORM model with a pgvector column and an HNSW index, inserts and a nearest-neighbour
query, with SQLAlchemy 2 over psycopg 3.

    python examples/sqlalchemy_orm.py           # DATABASE_URL overrides the server address
"""

from __future__ import annotations

import numpy as np
from _connection import cannot_connect, database_url, fail, missing_client, run

try:
    from pgvector.sqlalchemy import Vector
    from sqlalchemy import BigInteger, Index, String, create_engine, select
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
except ModuleNotFoundError as exc:
    missing_client(exc)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "orm_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    embedding = mapped_column(Vector(3))

    __table_args__ = (
        Index("orm_items_embedding_idx", "embedding", postgresql_using="hnsw",
              postgresql_with={"m": 16, "ef_construction": 64},
              postgresql_ops={"embedding": "vector_l2_ops"}),
    )


def main() -> int:
    url = database_url()
    engine = create_engine(url.replace("postgres://", "postgresql://", 1)
                           .replace("postgresql://", "postgresql+psycopg://", 1),
                           connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        cannot_connect(url, exc.orig or exc)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)  # CREATE TABLE and CREATE INDEX ... USING hnsw

    rng = np.random.default_rng(0)
    vectors = rng.random((100, 3)).astype(np.float32)
    query = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    with Session(engine) as session:
        session.add_all([Item(id=i, name=f"item {i}", embedding=vectors[i]) for i in range(100)])
        session.commit()

        nearest = session.scalars(
            select(Item).order_by(Item.embedding.l2_distance(query)).limit(5)).all()
        for item in nearest:
            print(item.id, item.name, np.round(item.embedding, 3))

    expected = np.argsort(np.linalg.norm(vectors - query, axis=1), kind="stable")[:5].tolist()
    if [item.id for item in nearest] != expected:
        fail(f"expected the neighbours {expected}, got {[item.id for item in nearest]}")
    print("5 nearest neighbours, the same as an exact search in NumPy")
    return 0


if __name__ == "__main__":
    run(main)
