"""The growth comparison of suite results: exponents and the fixed-recall pick."""

from __future__ import annotations

from benchmarks.growth import at_recall, figures, growth_table


def report(rows: int, build: float, qps: dict[int, tuple[float, float]], rss: int) -> dict:
    curve = {str(ef): {"recall": r, "qps": q, "p50_ms": 1000 / q} for ef, (r, q) in qps.items()}
    return {
        "params": {"rows": rows, "dim": 8, "efs": sorted(qps), "ef_construction": [64]},
        "index_build_s": {"64": build},
        "hnswlib": {"build_s_by_efc": {"64": build / 2}, "curve": curve, "index_bytes": rss // 2},
        "unfiltered": curve,
        "server_rss_bytes": rss,
    }


def test_at_recall_takes_the_smallest_ef_that_reaches_the_target():
    curve = {"10": {"recall": 0.7}, "20": {"recall": 0.96}, "40": {"recall": 0.99}}
    assert at_recall(curve, [10, 20, 40], 0.95)[0] == 20
    assert at_recall(curve, [10, 20, 40], 0.999) is None


def test_exponents_are_log_ratios_over_the_size_ratio():
    small = report(1_000, 2.0, {10: (0.9, 1000.0), 20: (0.97, 800.0)}, 100 << 20)
    large = report(100_000, 200.0, {10: (0.8, 500.0), 20: (0.96, 400.0)}, 1000 << 20)
    table = growth_table([small, large], target=0.95)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    build = lines["CREATE INDEX s, ef_construction 64"]
    assert build.rstrip(" |").endswith("+1.00")  # 100x the time for 100x the rows
    qps = lines["QPS there (psycopg, prepared, one connection)"]
    assert qps.rstrip(" |").endswith("-0.15")  # 800 -> 400 over 100x: log(0.5)/log(100)
    assert "2.00" in lines["CREATE INDEX / raw hnswlib, ef_construction 64"]
    assert figures(large, 0.95)["rss ratio"] == 2.0


def test_a_size_that_never_reaches_the_recall_shows_a_dash():
    small = report(1_000, 2.0, {10: (0.97, 1000.0)}, 100 << 20)
    large = report(10_000, 20.0, {10: (0.5, 900.0)}, 200 << 20)
    line = next(x for x in growth_table([small, large]).splitlines() if x.startswith("| QPS"))
    assert "—" in line
