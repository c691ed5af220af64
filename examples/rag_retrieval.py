"""The retrieval half of a RAG pipeline over `stdlib_docs` (made by semantic_search.py).

1. Candidates: approximate top-k from the HNSW index, with an optional metadata filter.
2. Re-ranking: the candidates re-ordered by their exact cosine distance, computed in SQL.
3. A context block, numbered, ready to paste into a prompt.

    python examples/semantic_search.py          # once: builds stdlib_docs
    python examples/rag_retrieval.py "open a zip file"
    python examples/rag_retrieval.py --family email -k 3 "send an email message"
"""

from __future__ import annotations

import argparse

from _connection import connect, database_url, fail, run
from semantic_search import embed, load_model, require_model


def retrieve(conn, model, question: str, family: str | None = None, k: int = 5,
             candidates: int = 40) -> list[tuple[str, str, float]]:
    """The k best (name, sentence, exact cosine distance) for the question."""
    q = embed(model, [question])[0]
    # 1. Candidates from the index (approximate), filtered by metadata.
    where, params = ("WHERE family = %s ", (family,)) if family else ("", ())
    ids = [r[0] for r in conn.execute(
        f"SELECT id FROM stdlib_docs {where}ORDER BY embedding <=> %s LIMIT %s",
        (*params, q, candidates))]
    if not ids:
        return []
    # 2. Exact re-ranking of those candidates (exact distance, then id as a tie-breaker).
    return conn.execute(
        "SELECT name, sentence, cosine_distance(embedding, %s) AS d FROM stdlib_docs "
        "WHERE id = ANY(%s) ORDER BY d, id LIMIT %s", (q, ids, k)).fetchall()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="*", help="the question (default: an example)")
    parser.add_argument("--family", help="only documents from this module family, e.g. email")
    parser.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    args = parser.parse_args()
    question = " ".join(args.question) or "how do I read a compressed archive"

    database_url()           # a bad DATABASE_URL is named before anything else
    require_model()          # then fail fast, before any slow work
    conn = connect()
    exists = conn.execute("SELECT count(*) FROM information_schema.tables "
                          "WHERE table_name = 'stdlib_docs'").fetchone()[0]
    if not exists:
        fail("table stdlib_docs does not exist: run examples/semantic_search.py first")
    model = load_model()
    hits = retrieve(conn, model, question, args.family, args.k)
    if not hits:
        fail("no documents retrieved" + (f" for family {args.family!r}" if args.family else ""))
    print(f"Question: {question}" + (f"   [family = {args.family}]" if args.family else ""))
    print("\nContext:")
    for i, (name, sentence, distance) in enumerate(hits, 1):
        print(f"[{i}] ({distance:.3f}) {name}: {sentence}")
    return 0


if __name__ == "__main__":
    run(main)
