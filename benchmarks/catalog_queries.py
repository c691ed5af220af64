"""Client catalog queries, in process (no wire): how long each metadata query that psql,
psycopg, asyncpg, SQLAlchemy and pgjdbc send (tests/sqlvec/catalog/fixtures/client_queries.json,
captured from PostgreSQL's statement log) takes against a small schema.

For each query: the median over `--repeat` runs of a cold run (parse + plan + execute, plan
cache emptied first: what a new connection pays) and of a run with the plan cached. `--tables N`
adds N more tables (each with a primary key and an index) to see how the times grow with the
size of the catalog. Nothing is asserted.

    python -m benchmarks catalog [--tables N] [--repeat R] [--top K] [--filter asyncpg]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "sqlvec" / "catalog" / "fixtures" / \
    "client_queries.json"

SCHEMA = json.loads((FIXTURES.parent / "client_schema.json").read_text())
# The captured schema's OIDs in PostgreSQL, mapped to ours by name.
PG_OIDS = {"16389": "items", "16396": "items_pkey", "16398": "items_name_idx"}


def queries() -> list[dict]:
    out = []
    for i, q in enumerate(json.loads(FIXTURES.read_text())):
        sql = q["sql"].lstrip().upper()
        if sql.startswith(("SELECT", "WITH", "SHOW")) and "::mood" not in q["sql"]:
            out.append({**q, "id": f"{q['client']}-{i}"})
    return out


def measure(tables: int, repeat: int, only: str | None) -> list[tuple]:
    from sqlvec.database import Database

    tmp = tempfile.mkdtemp(prefix="sqlvec-catalog-")
    try:
        db = Database.open(str(Path(tmp) / "data"))
        s = db.connect()
        for statement in SCHEMA:
            s.execute_one(statement)
        for i in range(tables):
            s.execute_one(f"CREATE TABLE extra{i} (id int PRIMARY KEY, a text, b int, v vector(4))")
            s.execute_one(f"CREATE INDEX extra{i}_a ON extra{i} (a)")
        oids = dict(s.execute_one("SELECT relname, oid::text FROM pg_class WHERE relname IN "
                                  "('items', 'items_pkey', 'items_name_idx')").rows())
        results = []
        for q in queries():
            if only and only not in q["id"]:
                continue
            sql = q["sql"]
            for pg, name in PG_OIDS.items():
                sql = sql.replace(pg, oids[name])
            params = [oids.get(PG_OIDS.get(p, ""), p) for p in (q["params"] or [])]
            if "typeinfo_tree" in sql:
                params = ["{16385,16386}"]  # vector and vector[]
            cold, cached = [], []
            for _ in range(repeat):
                s._plan_cache.clear()
                start = time.perf_counter()
                result = s.run(s.prepare(sql), params)
                middle = time.perf_counter()
                s.run(s.prepare(sql), params)
                cached.append(time.perf_counter() - middle)
                cold.append(middle - start)
            results.append((statistics.median(cold) * 1e3, statistics.median(cached) * 1e3,
                            len(result.rows()), q["id"], " ".join(sql.split())[:56]))
        s.close()
        db.close()
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks catalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=0, help="extra tables (default 0)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query (default 3)")
    parser.add_argument("--top", type=int, default=0, help="show only the K slowest")
    parser.add_argument("--filter", default=None, help="only queries whose id contains this")
    args = parser.parse_args(argv)
    results = sorted(measure(args.tables, args.repeat, args.filter), reverse=True)
    if not results:
        print("no query matched", file=sys.stderr)
        return 1
    print(f"{'query':<15} {'cold ms':>8} {'cached ms':>10} {'rows':>5}  statement")
    for cold, cached, nrows, qid, text in results[: args.top or None]:
        print(f"{qid:<15} {cold:8.1f} {cached:10.1f} {nrows:5}  {text}")
    colds = [r[0] for r in results]
    print(f"{len(results)} queries, {args.tables} extra tables: slowest cold {max(colds):.1f} ms, "
          f"median cold {statistics.median(colds):.1f} ms, total {sum(colds):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
