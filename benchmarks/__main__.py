"""`python -m benchmarks <suite> [options]`."""

from __future__ import annotations

import sys

SUITES = {
    "suite": "benchmarks.suite",
    "storage": "benchmarks.storage",
    "sql": "benchmarks.sql_overhead",
    "wire": "benchmarks.wire_overhead",
    "hybrid": "benchmarks.hybrid",
    "catalog": "benchmarks.catalog_queries",
    "growth": "benchmarks.growth",
    "writes": "benchmarks.writes",
    "block_writes": "benchmarks.block_writes",
    "recall": "benchmarks.recall",
    "ivfflat": "benchmarks.ivfflat",
    "profile": "benchmarks.wire_profile",
    "top-k-cpu": "benchmarks.top_k_cpu",
    "foreign_keys": "benchmarks.foreign_keys",
    "copy": "benchmarks.ingest",
    "btree": "benchmarks.btree",
    "quantization": "benchmarks.quantization",
    "workers": "benchmarks.workers",
    "workers-paired": "benchmarks.workers_paired",
    "graph-visits": "benchmarks.graph_visits",
    "round_trip": "benchmarks.round_trip",
    "vector_qps": "benchmarks.vector_qps",
    "memory": "benchmarks.memory",
    "filtered": "benchmarks.filtered",
    "executemany_cpu": "benchmarks.executemany_cpu",
    "contention": "benchmarks.contention",
    "ddl_beside": "benchmarks.ddl_beside",
    "block_follow": "benchmarks.block_follow",
    "deferred_keys": "benchmarks.deferred_keys",
    "row_sources": "benchmarks.row_sources",
    "float_filters": "benchmarks.float_filters",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SUITES:
        print("usage: python -m benchmarks {" + ",".join(SUITES) + "} [--help]", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(SUITES[sys.argv[1]])
    return module.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
