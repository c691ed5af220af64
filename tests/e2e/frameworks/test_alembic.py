"""Alembic and the SQLAlchemy ORM, unchanged, migrating an application schema on sqlvec.

Alembic autogenerates the first migration from the models in `alembic_models` by reflecting an
empty database, runs it up, down and up again, and finds nothing left to migrate afterwards; a
migration failing halfway leaves the schema as it was (Alembic runs each migration in one
transaction, and sqlvec's DDL is transactional). The ORM's relationships cascade, and what
SQLAlchemy's inspector reflects equals what it reflects from PostgreSQL for the same models.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pgvector.sqlalchemy import Vector
from sqlalchemy.orm import Session

from tests.e2e.frameworks.alembic_models import Author, Base, Chunk, Document

TABLES = ["authors", "chunks", "documents"]


def _url(server) -> str:
    return f"postgresql+psycopg://postgres@{server.host}:{server.port}/postgres"


@pytest.fixture
def engine(start):
    """An engine on a fresh, empty sqlvec database."""
    eng = sa.create_engine(_url(start()))
    yield eng
    eng.dispose()


def alembic_project(directory: Path, url: str) -> Config:
    """`alembic init` in `directory`, with env.py pointed at the models (as a user edits it)."""
    ini = directory / "alembic.ini"
    scripts = directory / "migrations"
    command.init(Config(str(ini)), str(scripts))
    env = scripts / "env.py"
    env.write_text(env.read_text().replace(
        "target_metadata = None",
        "from tests.e2e.frameworks.alembic_models import Base\ntarget_metadata = Base.metadata"))
    # pgvector's documented step: migrations that use Vector import it.
    mako = scripts / "script.py.mako"
    mako.write_text(mako.read_text().replace(
        "import sqlalchemy as sa", "import sqlalchemy as sa\nimport pgvector.sqlalchemy"))
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def user_tables(engine: sa.Engine) -> list[str]:
    return sorted(sa.inspect(engine).get_table_names())


def pending_changes(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_autogenerate_upgrade_downgrade_upgrade(engine, tmp_path):
    cfg = alembic_project(tmp_path, engine.url.render_as_string(hide_password=False))
    script = command.revision(cfg, message="initial", autogenerate=True)
    source = Path(script.path).read_text()
    for name in TABLES:
        assert f"op.create_table('{name}'" in source
        assert f"op.drop_table('{name}')" in source
    assert "ondelete='CASCADE'" in source
    assert "pgvector.sqlalchemy.vector.VECTOR(dim=3)" in source
    assert "sa.CheckConstraint('length(title) > 0', name='documents_title_not_empty')" in source
    assert "op.create_index('documents_created_idx'" in source

    command.upgrade(cfg, "head")
    assert user_tables(engine) == ["alembic_version", *TABLES]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == \
            [(script.revision,)]
    # The database now matches the models: a second autogenerate finds nothing to do.
    assert pending_changes(engine) == []

    command.downgrade(cfg, "base")
    assert user_tables(engine) == ["alembic_version"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 0

    command.upgrade(cfg, "head")
    assert user_tables(engine) == ["alembic_version", *TABLES]
    assert pending_changes(engine) == []
    with Session(engine) as session:  # the migrated schema serves the ORM
        session.add(Author(id=1, email="a@x", name="Ann", documents=[
            Document(id=1, title="t", embedding=[1, 2, 3])]))
        session.commit()
        assert session.scalars(sa.select(Document.title)).all() == ["t"]


FAILING_MIGRATION = '''
"""adds a column and a table, then references a table that does not exist"""
from alembic import op
import sqlalchemy as sa

revision = "f00dbad0"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("documents", sa.Column("summary", sa.Text()))
    op.create_index("documents_summary_idx", "documents", ["summary"])
    op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("label", sa.Text, unique=True))
    op.execute("INSERT INTO tags VALUES (1, 'first')")
    op.create_foreign_key("chunks_tag_fkey", "chunks", "missing_table", ["id"], ["id"])


def downgrade():
    pass
'''


def snapshot(engine: sa.Engine) -> dict:
    """Everything the inspector reflects about the schema, plus the migration version."""
    inspector = sa.inspect(engine)
    out = {}
    for name in inspector.get_table_names():
        out[name] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            inspector.get_pk_constraint(name), inspector.get_foreign_keys(name),
            inspector.get_unique_constraints(name), inspector.get_check_constraints(name),
            sorted(inspector.get_indexes(name), key=lambda i: i["name"]))
    with engine.connect() as conn:
        out["version"] = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return out


def test_migration_failing_halfway_leaves_the_schema_untouched(engine, tmp_path):
    cfg = alembic_project(tmp_path, engine.url.render_as_string(hide_password=False))
    first = command.revision(cfg, message="initial", autogenerate=True)
    command.upgrade(cfg, "head")
    with Session(engine) as session:
        session.add(Author(id=1, email="a@x", name="Ann", documents=[
            Document(id=1, title="t", embedding=[1, 2, 3], chunks=[Chunk(position=0, body="b")])]))
        session.commit()
    before = snapshot(engine)
    (tmp_path / "migrations" / "versions" / "f00dbad0_failing.py").write_text(
        textwrap.dedent(FAILING_MIGRATION).format(down=first.revision))
    with pytest.raises(sa.exc.ProgrammingError) as caught:
        command.upgrade(cfg, "head")
    assert isinstance(caught.value.orig, psycopg.errors.UndefinedTable)
    assert 'relation "missing_table" does not exist' in str(caught.value.orig)
    assert snapshot(engine) == before
    assert "tags" not in user_tables(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, title FROM documents")).all() == [(1, "t")]
        assert conn.execute(sa.text("SELECT body FROM chunks")).all() == [("b",)]


def test_orm_relationships_cascade_and_vector_search(engine):
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            ann = Author(id=1, email="ann@x", name="Ann")
            bob = Author(id=2, email="bob@x", name="Bob")
            ann.documents = [
                Document(id=1, title="near", embedding=[1, 0, 0],
                         chunks=[Chunk(position=0, body="a"), Chunk(position=1, body="b")]),
                Document(id=2, title="far", embedding=[9, 9, 9],
                         chunks=[Chunk(position=0, body="c")])]
            bob.documents = [Document(id=3, title="mid", embedding=[2, 1, 0])]
            session.add_all([ann, bob])
            session.commit()

            nearest = session.scalars(sa.select(Document).order_by(
                Document.embedding.l2_distance([1, 0, 0])).limit(2)).all()
            assert [(d.title, d.author.name) for d in nearest] == [("near", "Ann"), ("mid", "Bob")]

            # delete-orphan: a document taken off its author is deleted, with its chunks.
            ann.documents.remove(ann.documents[0])
            session.commit()
            assert session.scalars(sa.select(Document.id).order_by(Document.id)).all() == [2, 3]
            assert session.scalars(sa.select(Chunk.body)).all() == ["c"]

            # ON DELETE CASCADE in the database, not the ORM: a plain DELETE of the author.
            session.execute(sa.text("DELETE FROM authors WHERE id = 1"))
            session.commit()
            session.expire_all()
            assert session.scalars(sa.select(Document.id)).all() == [3]
            assert session.scalars(sa.select(Chunk.id)).all() == []

            # The constraints are enforced, by name.
            session.add(Document(id=4, author_id=99, title="x"))
            with pytest.raises(sa.exc.IntegrityError) as caught:
                session.commit()
            assert caught.value.orig.diag.constraint_name == "documents_author_id_fkey"
            session.rollback()
            session.add(Document(id=4, author_id=2, title=""))
            with pytest.raises(sa.exc.IntegrityError) as caught:
                session.commit()
            assert caught.value.orig.diag.constraint_name == "documents_title_not_empty"
            session.rollback()
            session.add(Document(id=4, author_id=2, title="mid"))
            with pytest.raises(sa.exc.IntegrityError) as caught:
                session.commit()
            assert caught.value.orig.diag.constraint_name == "documents_author_title_key"
    finally:
        Base.metadata.drop_all(engine)
    assert user_tables(engine) == []


@pytest.fixture
def postgresql_engine():
    pgserver = pytest.importorskip("pgserver", reason="the pgserver package runs PostgreSQL")
    directory = tempfile.mkdtemp(prefix="sqlvec-alembic-pg-")
    pg = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        eng = sa.create_engine(pg.get_uri().replace("postgresql://", "postgresql+psycopg://"))
        yield eng
        eng.dispose()
    finally:
        pg.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def test_reflection_matches_postgresql(engine, postgresql_engine):
    for eng in (engine, postgresql_engine):
        Base.metadata.create_all(eng)
    ours, theirs = sa.inspect(engine), sa.inspect(postgresql_engine)
    for name in TABLES:
        assert ours.get_foreign_keys(name) == theirs.get_foreign_keys(name), name
        assert ours.get_unique_constraints(name) == theirs.get_unique_constraints(name), name
        assert ours.get_check_constraints(name) == theirs.get_check_constraints(name), name
        assert ours.get_pk_constraint(name) == theirs.get_pk_constraint(name), name
        assert sorted(ours.get_indexes(name), key=lambda i: i["name"]) == \
            sorted(theirs.get_indexes(name), key=lambda i: i["name"]), name
        columns = [[(c["name"], repr(c["type"]), c["nullable"], c["default"])
                    for c in inspector.get_columns(name)] for inspector in (ours, theirs)]
        assert columns[0] == columns[1], name
    assert isinstance(ours.get_columns("documents")[4]["type"], Vector)
