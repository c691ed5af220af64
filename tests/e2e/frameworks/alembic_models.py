"""The SQLAlchemy declarative models the Alembic tests migrate (an ordinary application schema:
foreign keys with ON DELETE CASCADE, unique and check constraints, indexes, a pgvector column)."""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), index=True)
    documents: Mapped[list[Document]] = relationship(
        back_populates="author", cascade="all, delete-orphan", order_by="Document.id")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        sa.UniqueConstraint("author_id", "title", name="documents_author_title_key"),
        sa.CheckConstraint("length(title) > 0", name="documents_title_not_empty"),
        sa.Index("documents_created_idx", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(
        sa.ForeignKey("authors.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[sa.DateTime] = mapped_column(sa.DateTime, server_default=sa.func.now())
    embedding = mapped_column(Vector(3))
    author: Mapped[Author] = relationship(back_populates="documents")
    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="Chunk.position")


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        sa.CheckConstraint("position >= 0", name="chunks_position_check"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        sa.ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int]
    body: Mapped[str] = mapped_column(sa.Text)
    document: Mapped[Document] = relationship(back_populates="chunks")
