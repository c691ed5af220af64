"""LangChain's PGVector store, unchanged, on sqlvec: the same calls give the same documents and
scores as on PostgreSQL with pgvector.

The tables are LangChain's own, its GIN index on the metadata column (`USING gin (cmetadata
jsonb_path_ops)`) included, and the metadata filters run as LangChain compiles them:
`jsonb_path_match(cmetadata, '$.n > $value', '{"value": 5}')` for `$eq`, `$ne`, `$gt`, `$gte`,
`$lt`, `$lte` and `$between`, `->>` with IN and LIKE for `$in`, `$nin`, `$like`, `jsonb_exists`
for `$exists`, and AND/OR for `$and`/`$or`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings

import psycopg
import pytest
import sqlalchemy as sa

from tests.pgvector_here import skip_unless_pgvector_computes

pytest.importorskip("langchain_postgres")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_postgres import PGVector  # noqa: E402
from langchain_postgres.vectorstores import _get_embedding_collection_store  # noqa: E402

DIMENSIONS = 16
TEXTS = [f"note {i}: {word}" for i, word in enumerate(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split())]
METADATAS = [{"topic": ("news", "blog", "paper")[i % 3], "n": i} for i in range(len(TEXTS))]
IDS = [f"doc-{i}" for i in range(len(TEXTS))]


def _create_tables(url: str) -> list[str]:
    """LangChain's tables from its own models (with the GIN index on the metadata)."""
    embedding_store, _ = _get_embedding_collection_store(DIMENSIONS)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        embedding_store.__table__.metadata.create_all(engine)
        with engine.connect() as conn:
            out = conn.execute(sa.text(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = 'langchain_pg_embedding'::regclass ORDER BY 1")).scalars().all()
    finally:
        engine.dispose()
    return out


def _session(url: str) -> list:
    """Everything the calls return, in order, for comparison between the two databases."""
    indexes = _create_tables(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LangChain's deprecation notices
        store = PGVector(embeddings=DeterministicFakeEmbedding(size=DIMENSIONS),
                         collection_name="notes", connection=url, use_jsonb=True,
                         collection_metadata={"owner": "tests"})
    out: list = [indexes]

    def search(**kwargs) -> None:
        hits = store.similarity_search_with_score(TEXTS[4], k=4, **kwargs)
        out.append([(d.id, d.page_content, d.metadata, round(score, 6)) for d, score in hits])

    assert store.add_texts(TEXTS, metadatas=METADATAS, ids=IDS) == IDS
    search()
    search(filter={"topic": {"$in": ["news", "paper"]}})
    search(filter={"n": {"$in": [1, 4, 7, 11]}})
    search(filter={"topic": {"$in": ["nothing"]}})
    search(filter={"topic": "blog"})
    search(filter={"topic": {"$eq": "news"}})
    search(filter={"topic": {"$ne": "news"}})
    search(filter={"n": {"$gt": 6}})
    search(filter={"n": {"$lt": 3}})
    search(filter={"n": {"$gte": 6}})
    search(filter={"n": {"$lte": 3}})
    search(filter={"n": {"$between": [3, 5]}})
    search(filter={"n": {"$nin": [1, 2, 3]}})
    search(filter={"topic": {"$like": "n%"}})
    search(filter={"$and": [{"topic": "paper"}, {"n": {"$gt": 3}}]})
    search(filter={"$or": [{"topic": "blog"}, {"n": {"$lt": 2}}]})
    search(filter={"$and": [{"$or": [{"topic": "news"}, {"topic": "paper"}]},
                            {"n": {"$ne": 5}}]})
    search(filter={"extra": {"$exists": True}})
    search(filter={"extra": {"$exists": False}})
    search(filter={"n": {"$eq": "4"}})  # a string never equals a number in SQL/JSON path
    out.append([d.page_content for d in store.max_marginal_relevance_search(TEXTS[4], k=3)])
    store.delete(ids=["doc-4", "doc-5"])
    search()
    out.append(sorted(d.id for d in store.get_by_ids(["doc-1", "doc-4", "doc-9"])))
    store.add_texts(["note 4: epsilon again"], metadatas=[{"topic": "news", "n": 4}],
                    ids=["doc-4"])
    search()
    store.delete_collection()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        # The collection's rows went with it (ON DELETE CASCADE from the collection).
        out.append(conn.execute("SELECT count(*) FROM langchain_pg_embedding").fetchone())
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from tests.e2e.conftest import start_server

    running = start_server(tmp_path_factory.mktemp("langchain"))
    try:
        yield _session(f"postgresql+psycopg://postgres@{running.host}:{running.port}/postgres")
    finally:
        assert running.stop() == 0, running.log()


def test_store_searches_filters_and_deletes(ours):
    (indexes, everything, news_or_paper, by_number, nothing, blog, news, not_news, above_6,
     below_3, from_6, to_3, between, not_in, like, and_, or_, nested, has_extra, no_extra,
     as_string, mmr, after_delete, by_ids, _, left) = ours
    assert any("USING gin (cmetadata jsonb_path_ops)" in ix for ix in indexes)
    assert everything[0][:3] == ("doc-4", TEXTS[4], METADATAS[4])
    assert everything[0][3] == pytest.approx(0, abs=1e-6)  # cosine distance to itself
    assert [s for *_, s in everything] == sorted(s for *_, s in everything)
    assert {m["topic"] for _, _, m, _ in news_or_paper} <= {"news", "paper"}
    assert len(news_or_paper) == 4
    assert {m["n"] for _, _, m, _ in by_number} == {1, 4, 7, 11}
    assert nothing == []
    assert {m["topic"] for _, _, m, _ in blog} == {"blog"} and len(blog) == 4
    assert {m["topic"] for _, _, m, _ in news} == {"news"} and len(news) == 4
    assert "news" not in {m["topic"] for _, _, m, _ in not_news} and len(not_news) == 4
    assert all(m["n"] > 6 for _, _, m, _ in above_6) and len(above_6) == 4
    assert sorted(m["n"] for _, _, m, _ in below_3) == [0, 1, 2]
    assert all(m["n"] >= 6 for _, _, m, _ in from_6)
    assert sorted(m["n"] for _, _, m, _ in to_3) == [0, 1, 2, 3]
    assert sorted(m["n"] for _, _, m, _ in between) == [3, 4, 5]
    assert not {m["n"] for _, _, m, _ in not_in} & {1, 2, 3}
    assert {m["topic"] for _, _, m, _ in like} == {"news"}
    assert sorted(m["n"] for _, _, m, _ in and_) == [5, 8, 11]
    assert {(m["topic"], m["n"]) for _, _, m, _ in or_} <= {
        ("blog", 1), ("blog", 4), ("blog", 7), ("blog", 10), ("news", 0)}
    assert len(or_) == 4
    assert all(m["n"] != 5 and m["topic"] != "blog" for _, _, m, _ in nested)
    assert has_extra == [] and len(no_extra) == 4
    assert as_string == []
    assert mmr[0] == TEXTS[4] and len(mmr) == 3
    assert "doc-4" not in [i for i, *_ in after_delete] and len(after_delete) == 4
    assert by_ids == ["doc-1", "doc-9"]
    assert left == (0,)


def test_same_results_as_postgresql(ours):
    pgserver = pytest.importorskip("pgserver", reason="the pgserver package runs PostgreSQL")
    skip_unless_pgvector_computes()
    directory = tempfile.mkdtemp(prefix="sqlvec-langchain-pg-")
    pg = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        theirs = _session(pg.get_uri().replace("postgresql://", "postgresql+psycopg://"))
    finally:
        pg.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
    assert ours == theirs
