"""An optional Prometheus endpoint (`sqlvec serve --metrics-port P`), through prometheus-client.

Statements are counted and timed as they finish (`Database.on_statement`); everything else is
read when Prometheus scrapes (`Database.activity`), so serving costs nothing between scrapes.
Exposed:

    sqlvec_connections{state}                         sessions by state (active, idle, ...)
    sqlvec_queries_total{outcome}                     statements: ok, error, canceled, internal
    sqlvec_query_duration_seconds                     histogram of statement latency
    sqlvec_rows_ingested_total{database,table}        rows inserted (INSERT, COPY) since start
    sqlvec_segments{database,table}                   sealed segments
    sqlvec_index_rows{database,table,index}           rows of the sealed segments to index
    sqlvec_index_rows_indexed{database,table,index}   of those, rows indexed (build progress)
    sqlvec_wal_bytes_total{database}                  WAL bytes appended since the database opened
    process_resident_memory_bytes, ...                prometheus-client's process collector
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlvec.database import Database

log = logging.getLogger("sqlvec.metrics")

_CANCELED = {"57014", "57P01"}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)


def available() -> bool:
    """Whether prometheus-client is installed (the `metrics` extra)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Metrics:
    """The server's metrics in a registry of their own, and the HTTP endpoint serving them."""

    def __init__(self, db: Database) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

        self.db = db
        self.registry = CollectorRegistry()
        # First in the registry, so first at each scrape: the workers' counts are merged
        # before the counters below are read.
        self.registry.register(_Gathered(db))
        ProcessCollector(registry=self.registry)  # resident memory, CPU, open files
        self.queries = Counter("sqlvec_queries", "Statements finished, by outcome.",
                               ["outcome"], registry=self.registry)
        self.latency = Histogram("sqlvec_query_duration_seconds", "Statement latency.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self._outcomes = {name: self.queries.labels(name)
                          for name in ("ok", "error", "canceled", "internal")}
        self.registry.register(_Activity(db))
        self._server = None
        db.on_statement = self.observe

    def observe(self, seconds: float, sqlstate: str | None) -> None:
        """Count one finished statement (called by the session, on its thread)."""
        if sqlstate is None:
            outcome = "ok"
        elif sqlstate in _CANCELED:
            outcome = "canceled"
        elif sqlstate.startswith("XX"):
            outcome = "internal"
        else:
            outcome = "error"
        self._outcomes[outcome].inc()
        self.latency.observe(seconds)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: a free port); returns the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def stop(self) -> None:
        """Close the endpoint and stop counting."""
        self.db.on_statement = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Gathered:
    """No metric of its own: at each scrape, has the statement counts of the server's other
    processes (its workers) merged first (`Database.gather_statistics`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        self.db.gather_statistics()
        return iter(())


class _Activity:
    """Read at scrape time from the database's façade."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list:
        return []  # no fixed set: the tables and indexes come and go

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        activity = self.db.activity()
        connections = GaugeMetricFamily("sqlvec_connections", "Client sessions, by state.",
                                        labels=["state"])
        for state, n in sorted(activity["sessions"].items()):
            connections.add_metric([state], n)
        rows = CounterMetricFamily("sqlvec_rows_ingested", "Rows inserted (INSERT, COPY) "
                                   "since the server started.", labels=["database", "table"])
        segments = GaugeMetricFamily("sqlvec_segments", "Sealed segments.",
                                     labels=["database", "table"])
        index_rows = GaugeMetricFamily("sqlvec_index_rows", "Rows of the sealed segments a "
                                       "vector index covers.",
                                       labels=["database", "table", "index"])
        indexed = GaugeMetricFamily("sqlvec_index_rows_indexed", "Rows a vector index has "
                                    "indexed (build progress).",
                                    labels=["database", "table", "index"])
        wal = CounterMetricFamily("sqlvec_wal_bytes", "WAL bytes appended since the database "
                                  "was opened.", labels=["database"])
        for db_name, database in sorted(activity["databases"].items()):
            wal.add_metric([db_name], database["wal_bytes"])
            for table, entry in sorted(database["tables"].items()):
                rows.add_metric([db_name, table], entry["rows_inserted"])
                segments.add_metric([db_name, table], entry["segments"])
                for index, (done, total) in sorted(entry["indexes"].items()):
                    index_rows.add_metric([db_name, table, index], total)
                    indexed.add_metric([db_name, table, index], done)
        yield from (connections, rows, segments, index_rows, indexed, wal)
