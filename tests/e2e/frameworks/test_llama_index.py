"""LlamaIndex's PGVectorStore, unchanged, on sqlvec (psycopg for its sync calls, asyncpg for
its async ones): the same calls give the same nodes and scores as on PostgreSQL + pgvector,
with the store's own table model, including its btree index on `(metadata_ ->> 'ref_doc_id')`
and the GIN index it makes for an indexed text-array key (`((metadata_ -> 'tags')::jsonb)`),
and the array filters (ANY, ALL, CONTAINS) it compiles to jsonb's `?|`, `?&` and `@>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile

import numpy as np
import psycopg
import pytest

pytest.importorskip("llama_index.vector_stores.postgres")

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.postgres import PGVectorStore  # noqa: E402

DIMENSIONS = 8
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def embed(text: str) -> list[float]:
    """A fake embedding: the same vector for the same text, in any process."""
    seed = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2**32
    return [float(x) for x in np.random.default_rng(seed).normal(size=DIMENSIONS)]


def _filters(*filters: MetadataFilter, condition=FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


QUERIES = [
    None,
    _filters(MetadataFilter(key="topic", value="a")),
    _filters(MetadataFilter(key="n", value=3, operator=FilterOperator.GT)),
    _filters(MetadataFilter(key="topic", value=["a", "c"], operator=FilterOperator.IN)),
    _filters(MetadataFilter(key="topic", value="a"),
             MetadataFilter(key="n", value=4, operator=FilterOperator.LTE)),
    _filters(MetadataFilter(key="topic", value="b"), MetadataFilter(key="n", value=0),
             condition=FilterCondition.OR),
    _filters(MetadataFilter(key="topic", value="a", operator=FilterOperator.NE)),
    _filters(MetadataFilter(key="tags", value=["t0", "t3"], operator=FilterOperator.ANY)),
    _filters(MetadataFilter(key="tags", value=["t2", "even"], operator=FilterOperator.ALL)),
    _filters(MetadataFilter(key="tags", value="t3", operator=FilterOperator.CONTAINS)),
]


def _session(uri: str) -> list:
    """Everything the calls return, in order, for comparison between the two databases."""
    store = PGVectorStore.from_params(
        connection_string=uri.replace("postgresql://", "postgresql+psycopg://"),
        async_connection_string=uri.replace("postgresql://", "postgresql+asyncpg://"),
        table_name="notes", embed_dim=DIMENSIONS, indexed_metadata_keys={("tags", "text[]")})
    nodes = [TextNode(id_=f"n{i}", text=word, embedding=embed(word),
                      metadata={"topic": ("a", "b")[i % 2], "n": i,
                                "tags": [f"t{i % 4}", ("even", "odd")[i % 2]]},
                      relationships={NodeRelationship.SOURCE: RelatedNodeInfo(
                          node_id=f"doc{i % 3}")})
             for i, word in enumerate(WORDS)]
    out: list = [store.add(nodes)]
    with psycopg.connect(uri) as conn:  # the store's GIN index on its array key
        out.append(conn.execute("SELECT indexdef LIKE '%USING gin%' FROM pg_indexes WHERE "
                                "indexname = 'notes_idx_tags_gin' OR indexname LIKE "
                                "'%tags_gin'").fetchall())

    def query(filters=None) -> list:
        result = store.query(VectorStoreQuery(query_embedding=embed("gamma"),
                                              similarity_top_k=3, filters=filters))
        return [(n.node_id, n.get_content(), n.metadata, round(s, 6))
                for n, s in zip(result.nodes, result.similarities)]

    out += [query(filters) for filters in QUERIES]
    store.delete("doc1")  # by the source document: n1, n4, n7
    out.append(query())
    store.delete_nodes(node_ids=["n2"])
    out.append(query())
    out.append(sorted(n.node_id for n in store.get_nodes(node_ids=["n0", "n1", "n2", "n3"])))

    async def async_query() -> list:
        result = await store.aquery(VectorStoreQuery(query_embedding=embed("delta"),
                                                     similarity_top_k=2))
        await store.close()
        return [(n.node_id, round(s, 6)) for n, s in zip(result.nodes, result.similarities)]

    out.append(asyncio.run(async_query()))
    store.clear()
    out.append(query())
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from tests.e2e.conftest import start_server

    running = start_server(tmp_path_factory.mktemp("llama-index"))
    try:
        yield _session(f"postgresql://postgres@{running.host}:{running.port}/postgres")
    finally:
        assert running.stop() == 0, running.log()


def test_store_adds_queries_filters_and_deletes(ours):
    added, gin, everything, topic_a, over_3, in_a_c, a_and_small, b_or_0, not_a, any_, all_, \
        contains, without_doc1, without_n2, fetched, async_hits, cleared = ours
    assert gin == [(True,)]
    assert {m["n"] % 4 for *_, m, _ in any_} <= {0, 3} and len(any_) == 3
    assert sorted(m["n"] for *_, m, _ in all_) == [2, 6]
    assert sorted(m["n"] for *_, m, _ in contains) == [3, 7]
    assert added == [f"n{i}" for i in range(len(WORDS))]
    assert everything[0][:2] == ("n2", "gamma")
    assert everything[0][3] == pytest.approx(1.0)  # cosine similarity to itself
    assert {m["topic"] for *_, m, _ in topic_a} == {"a"} == {m["topic"] for *_, m, _ in in_a_c}
    assert all(m["n"] > 3 for *_, m, _ in over_3)
    assert all(m["topic"] == "a" and m["n"] <= 4 for *_, m, _ in a_and_small)
    assert all(m["topic"] == "b" or m["n"] == 0 for *_, m, _ in b_or_0)
    assert all(m["topic"] != "a" for *_, m, _ in not_a)
    assert not {"n1", "n4", "n7"} & {i for i, *_ in without_doc1}
    assert without_n2[0][0] != "n2" and len(without_n2) == 3
    assert fetched == ["n0", "n3"]
    assert async_hits[0][0] == "n3"  # delta
    assert cleared == []


def test_same_results_as_postgresql(ours):
    pgserver = pytest.importorskip("pgserver", reason="the pgserver package runs PostgreSQL")
    directory = tempfile.mkdtemp(prefix="sqlvec-llama-pg-")
    pg = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        theirs = _session(pg.get_uri())
    finally:
        pg.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
    assert ours == theirs
