"""Read a table's sealed segments directly as Parquet (no export step) and check they match
what SELECT returns. Needs the server's data directory: set SQLVEC_DATA_DIR if it is not
./sqlvec-data. DuckDB or polars are used as well when installed."""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
from _connection import connect, fail


def latest_manifest(data_dir: str, database: str) -> dict:
    files = sorted(glob.glob(os.path.join(data_dir, database, "manifest", "manifest-*.json")))
    if not files:
        fail(f"no manifest under {data_dir}/{database}: is SQLVEC_DATA_DIR right?")
    with open(files[-1]) as f:
        return json.load(f)["body"]


def main() -> int:
    data_dir = os.environ.get("SQLVEC_DATA_DIR", "./sqlvec-data")
    conn = connect()
    conn.execute("DROP TABLE IF EXISTS lake_items")
    conn.execute("CREATE TABLE lake_items (id bigint PRIMARY KEY, label text, embedding vector(4))")
    rng = np.random.default_rng(2)
    with conn.cursor().copy("COPY lake_items FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "vector"])
        for i in range(1000):
            copy.write_row((i, f"label {i % 7}", rng.random(4).astype(np.float32)))
    conn.execute("CHECKPOINT")  # seal the growing segment into Parquet now
    body = latest_manifest(data_dir, "postgres")
    table = next(t for t in body["tables"] if t["def"]["name"] == "lake_items")
    physical = {c["name"]: f"c{c['attnum']}" for c in table["def"]["columns"]}
    directory = os.path.join(data_dir, "postgres", "tables", str(table["def"]["id"]))
    ids = []
    for seg in table["segments"]:
        data = pq.read_table(os.path.join(directory, seg["file"]))
        ids += data.column(physical["id"]).to_pylist()
    print(f"{len(table['segments'])} Parquet segment(s), {len(ids)} rows read with pyarrow")
    from_sql = [r[0] for r in conn.execute("SELECT id FROM lake_items ORDER BY id")]
    if sorted(ids) != from_sql:
        fail("the Parquet rows differ from SELECT")
    try:
        import duckdb

        files = [os.path.join(directory, s["file"]) for s in table["segments"]]
        count = duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchone()[0]
        print(f"DuckDB reads the same files: {count} rows")
    except ImportError:
        print("(DuckDB not installed; pip install duckdb to query the segments with it too)")
    print("rows match SELECT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
