"""An ORM model with a pgvector column, inserts and a nearest-neighbour query (SQLAlchemy 2)."""

from __future__ import annotations

import sys

import numpy as np
from _connection import database_url, fail
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, String, create_engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "orm_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    embedding = mapped_column(Vector(3))


def main() -> int:
    url = database_url().replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        fail(f"cannot connect to {url}: {exc.orig}")
    rng = np.random.default_rng(0)
    with Session(engine) as session:
        session.add_all([Item(id=i, name=f"item {i}", embedding=rng.random(3)) for i in range(100)])
        session.commit()
        query = np.array([0.5, 0.5, 0.5])
        nearest = session.scalars(
            select(Item).order_by(Item.embedding.l2_distance(query)).limit(5)).all()
        for item in nearest:
            print(item.id, item.name, np.round(item.embedding, 3))
        if len(nearest) != 5:
            fail(f"expected 5 neighbours, got {len(nearest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
