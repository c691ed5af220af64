"""The retrieval half of a RAG pipeline over `stdlib_docs` (made by semantic_search.py).

Approximate top-k with a metadata filter from the HNSW index, then re-ranking of a wider
candidate set by exact distance computed in SQL, and a context block assembled for a prompt.

    python examples/semantic_search.py && python examples/rag_retrieval.py "open a zip file"
"""

from __future__ import annotations

import sys

from _connection import connect, fail
from semantic_search import load_model


def retrieve(conn, model, question: str, family: str | None = None, k: int = 5,
             candidates: int = 40) -> list[tuple[str, str, float]]:
    q = model.encode([question], normalize_embeddings=True)[0]
    # 1. Candidates from the index (approximate, filtered by metadata).
    if family:
        rows = conn.execute("SELECT id FROM stdlib_docs WHERE family = %s "
                            "ORDER BY embedding <=> %s LIMIT %s", (family, q, candidates))
    else:
        rows = conn.execute("SELECT id FROM stdlib_docs ORDER BY embedding <=> %s LIMIT %s",
                            (q, candidates))
    rows = rows.fetchall()
    ids = [r[0] for r in rows]
    if not ids:
        return []
    # 2. Exact re-ranking of those candidates (exact distance, then a tie-breaker).
    return conn.execute(
        "SELECT name, sentence, cosine_distance(embedding, %s) AS d FROM stdlib_docs "
        "WHERE id = ANY(%s) ORDER BY d, id LIMIT %s", (q, ids, k)).fetchall()


def main() -> int:
    question = " ".join(sys.argv[1:]) or "how do I read a compressed archive"
    model = load_model()
    conn = connect()
    exists = conn.execute("SELECT count(*) FROM information_schema.tables "
                          "WHERE table_name = 'stdlib_docs'").fetchone()[0]
    if not exists:
        fail("table stdlib_docs does not exist: run examples/semantic_search.py first")
    hits = retrieve(conn, model, question)
    if not hits:
        fail("no documents retrieved")
    print(f"Question: {question}\n\nContext:")
    for i, (name, sentence, distance) in enumerate(hits, 1):
        print(f"[{i}] ({distance:.3f}) {name}: {sentence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
