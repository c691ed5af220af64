"""`sqlvec serve --metrics-port`: the Prometheus endpoint scraped over HTTP while a real client
works."""

from __future__ import annotations

import re
import urllib.request

import psycopg
import pytest

from tests.e2e.conftest import start_server

parser = pytest.importorskip("prometheus_client.parser",
                             reason="prometheus-client (the `metrics` extra) is not installed")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_endpoint(tmp_path, reap):
    server = start_server(tmp_path, "--metrics-port", "0")
    reap(server)
    m = re.search(r"metrics on (http://\S+/metrics)", server.log())
    assert m, server.log()
    url = m.group(1)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE m (id int PRIMARY KEY, v vector(2))")
        conn.execute("INSERT INTO m SELECT g, ARRAY[g, 1]::vector(2) "
                     "FROM generate_series(1, 300) g")
        conn.execute("CHECKPOINT")  # one sealed segment
        conn.execute("CREATE INDEX m_v ON m USING hnsw (v vector_l2_ops)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM nope")
        for _ in range(3):
            conn.execute("SELECT count(*) FROM m").fetchone()
        got = scrape(url)
    db, table = ("database", "postgres"), ("table", "m")
    assert got[("sqlvec_queries_total", (("outcome", "ok"),))] >= 7
    assert got[("sqlvec_queries_total", (("outcome", "error"),))] == 1
    assert got[("sqlvec_query_duration_seconds_count", ())] >= 8
    assert got[("sqlvec_connections", (("state", "idle"),))] == 1  # between statements
    assert got[("sqlvec_rows_ingested_total", (db, table))] == 300
    assert got[("sqlvec_segments", (db, table))] == 1
    index = (db, ("index", "m_v"), table)
    assert got[("sqlvec_index_rows", index)] == got[("sqlvec_index_rows_indexed", index)] == 300
    assert got[("sqlvec_wal_bytes_total", (db,))] > 0
    assert got[("process_resident_memory_bytes", ())] > 0
    assert server.stop() == 0
