"""Read a table's sealed segments directly as Parquet, with no export step, and check that they
hold exactly the rows SELECT returns. pyarrow does the reading; DuckDB and polars are used as
well when they are installed.

Runs on the machine the server runs on: it reads the server's data directory, the
`--data-dir` of `sqlvec serve` (default ./sqlvec-data); set SQLVEC_DATA_DIR when it is
elsewhere.

    python examples/data_lake.py                # DATABASE_URL overrides the server address

Layout: <data-dir>/<database>/manifest/manifest-<version>.json lists each table's sealed
segments (tables/<table-id>/seg-*.parquet, columns c<attnum> plus _rowid) and, for segments
with rows deleted after sealing, a `.del` bitmap of the deleted row positions.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _connection import connect, database_url, fail, run

ROWS = 1000


def latest_manifest(data_dir: str, database: str) -> dict:
    files = sorted(glob.glob(os.path.join(data_dir, database, "manifest", "manifest-*.json")))
    if not files:
        fail(f"no manifest under {os.path.join(data_dir, database)}: set SQLVEC_DATA_DIR to "
             "the server's --data-dir (this example reads its files, so it must run on the "
             "server's machine)")
    with open(files[-1]) as f:
        return json.load(f)["body"]


def deleted_mask(path: str, n_rows: int) -> np.ndarray:
    """A `.del` bitmap: a 32-byte header, then one bit per row (1 = deleted), little-endian."""
    with open(path, "rb") as f:
        data = f.read()
    magic, _version, rows = struct.unpack_from("<8sIQ", data)
    if magic != b"SQLVDEL1" or rows != n_rows:
        fail(f"{path} is not a delete bitmap for {n_rows} rows")
    bits = np.frombuffer(data, dtype=np.uint8, offset=32)
    return np.unpackbits(bits, count=n_rows, bitorder="little").astype(bool)


def read_table(data_dir: str, database: str, name: str) -> tuple[pa.Table, list[str]]:
    """The live rows of a table, read straight from its Parquet segments; and the files."""
    body = latest_manifest(data_dir, database)
    table = next((t for t in body["tables"]
                  if t["def"]["name"] == name and t["def"]["schema"] == "public"), None)
    if table is None:
        fail(f"table {name} is not in the newest manifest under {data_dir}: is "
             "SQLVEC_DATA_DIR the data directory of the server DATABASE_URL points at?")
    directory = os.path.join(data_dir, database, "tables", str(table["def"]["id"]))
    physical = {f"c{c['attnum']}": c["name"] for c in table["def"]["columns"]}
    pieces, files = [], []
    for seg in table["segments"]:
        path = os.path.join(directory, seg["file"])
        files.append(path)
        data = pq.read_table(path, columns=list(physical))
        if seg.get("deletes"):
            mask = deleted_mask(os.path.join(directory, seg["deletes"]["file"]), data.num_rows)
            data = data.filter(pa.array(~mask))
        pieces.append(data.rename_columns([physical[c] for c in data.column_names]))
    if not pieces:
        fail(f"table {name} has no sealed segment yet (run CHECKPOINT)")
    return pa.concat_tables(pieces), files


def main() -> int:
    data_dir = os.environ.get("SQLVEC_DATA_DIR", "./sqlvec-data")
    database = unquote(urlsplit(database_url()).path.lstrip("/")) or "postgres"
    conn = connect()
    conn.execute("DROP TABLE IF EXISTS lake_items")
    conn.execute("CREATE TABLE lake_items (id bigint PRIMARY KEY, label text, "
                 "embedding vector(4))")
    rng = np.random.default_rng(2)
    with conn.cursor().copy("COPY lake_items FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "vector"])
        for i in range(ROWS):
            copy.write_row((i, f"label {i % 7}", rng.random(4).astype(np.float32)))
    conn.execute("CHECKPOINT")  # seal the growing segment into a Parquet file now
    conn.execute("DELETE FROM lake_items WHERE id % 10 = 0")
    conn.execute("CHECKPOINT")  # persist the deletes as the segment's .del bitmap

    lake, files = read_table(data_dir, database, "lake_items")
    lake = lake.sort_by("id")
    print(f"{len(files)} Parquet segment(s); pyarrow read {lake.num_rows} live rows "
          f"(columns {', '.join(lake.column_names)})")

    rows = conn.execute("SELECT id, label, embedding FROM lake_items ORDER BY id").fetchall()
    ids, labels = lake.column("id").to_pylist(), lake.column("label").to_pylist()
    vectors = np.array(lake.column("embedding").to_pylist(), dtype=np.float32)
    selected = np.array([np.asarray(r[2].to_numpy() if hasattr(r[2], "to_numpy") else r[2])
                         for r in rows], dtype=np.float32)
    if (ids != [r[0] for r in rows] or labels != [r[1] for r in rows]
            or not np.array_equal(vectors, selected)):
        fail("the rows read from Parquet differ from SELECT")
    print(f"rows match SELECT: {len(rows)} rows, ids, labels and embeddings identical")

    per_label = pc.value_counts(lake.column("label")).to_pylist()
    print("rows per label (pyarrow):",
          ", ".join(f"{d['values']}={d['counts']}" for d in sorted(per_label, key=str)))
    try:
        import duckdb
    except ImportError:
        print("DuckDB is not installed (pip install duckdb to query the segments with it too)")
    else:
        count = duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0]
        print(f"DuckDB reads the same files: {count} rows (deleted ones included: DuckDB "
              "does not apply the .del bitmap)")
    try:
        import polars as pl
    except ImportError:
        print("polars is not installed (pip install polars to read the segments with it too)")
    else:
        frame = pl.read_parquet(files)
        print(f"polars reads the same files: {frame.height} rows, columns {frame.columns}")
    return 0


if __name__ == "__main__":
    run(main)
