"""How costs grow with the table: compare `suite` results of different sizes.

    python -m benchmarks growth RESULTS.json RESULTS.json [...]

Reads the JSON files `python -m benchmarks suite --out DIR` writes (DIR/results.json), smallest
table first, and prints a markdown table per size (index build against raw hnswlib, QPS at a
fixed recall against raw hnswlib at the same recall, server RSS against hnswlib's own index
size) and, between consecutive sizes, the growth exponent of each figure: e = log(b/a) /
log(Nb/Na), so 1.0 is linear in N, about 0 is flat, and HNSW's expected shapes are e ≈ 1.0–1.1
for the build (n log n) and a small negative e for QPS at fixed recall (log-like search cost).
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _by_key(mapping: dict, key: int) -> dict | float | None:
    return mapping.get(key, mapping.get(str(key)))


def at_recall(curve: dict, efs: list[int], target: float) -> tuple[int, dict] | None:
    """The smallest ef whose recall reaches `target`, and its figures."""
    for ef in efs:
        point = _by_key(curve, ef)
        if point is not None and point["recall"] >= target:
            return ef, point
    return None


def figures(report: dict, target: float) -> dict:
    p = report["params"]
    efs = p["efs"]
    out: dict = {"rows": p["rows"], "dim": p["dim"]}
    for efc in p["ef_construction"]:
        ours = _by_key(report["index_build_s"], efc)
        ref = _by_key(report["hnswlib"]["build_s_by_efc"], efc)
        out[f"build {efc}"] = ours
        out[f"build {efc} ratio"] = ours / ref if ours and ref else None
    ours = at_recall(report["unfiltered"], efs, target)
    ref = at_recall(report["hnswlib"]["curve"], efs, target)
    out["ef"] = ours[0] if ours else None
    out["qps"] = ours[1]["qps"] if ours else None
    out["p50 ms"] = ours[1]["p50_ms"] if ours else None
    out["hnswlib ef"] = ref[0] if ref else None
    out["hnswlib qps"] = ref[1]["qps"] if ref else None
    out["rss MiB"] = (report.get("server_rss_bytes") or 0) / 2**20 or None
    index_bytes = report["hnswlib"].get("index_bytes")
    out["rss ratio"] = report["server_rss_bytes"] / index_bytes \
        if index_bytes and report.get("server_rss_bytes") else None
    return out


def growth_table(reports: list[dict], target: float = 0.95) -> str:
    rows = [figures(r, target) for r in reports]
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("rows", "dim")))
    rows = [{k: r.get(k) for k in ("rows", "dim", *keys)} for r in rows]
    header = "| figure | " + " | ".join(f"{r['rows']:,} x {r['dim']}" for r in rows)
    header += " | " + " | ".join(f"growth exponent {a['rows']:,}→{b['rows']:,}"
                                 for a, b in zip(rows, rows[1:])) + " |"
    lines = [header, "|" + "---|" * (2 * len(rows))]
    for key in keys:
        cells = [_fmt(r[key]) for r in rows]
        exps = [_exponent(a, b, key) for a, b in zip(rows, rows[1:])]
        label = _label(key, target)
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(exps) + " |")
    return "\n".join(lines) + "\n"


def _exponent(a: dict, b: dict, key: str) -> str:
    """log(b/a) / log(Nb/Na) of a figure that grows with N (ratios and ef values do not)."""
    x, y = a[key], b[key]
    if "ratio" in key or key.endswith("ef") or not (isinstance(x, (int, float)) and
                                                    isinstance(y, (int, float))):
        return ""
    if x <= 0 or y <= 0 or a["rows"] == b["rows"]:
        return ""
    return f"{math.log(y / x) / math.log(b['rows'] / a['rows']):+.2f}"


def _label(key: str, target: float) -> str:
    if key.startswith("build"):
        efc = key.split()[1]
        return (f"CREATE INDEX / raw hnswlib, ef_construction {efc}" if key.endswith("ratio")
                else f"CREATE INDEX s, ef_construction {efc}")
    return {"ef": f"smallest ef_search with recall@10 ≥ {target}",
            "qps": "QPS there (psycopg, prepared, one connection)",
            "p50 ms": "p50 ms there",
            "hnswlib ef": f"raw hnswlib: smallest ef with recall ≥ {target}",
            "hnswlib qps": "raw hnswlib QPS there (in process, one query at a time)",
            "rss MiB": "server RSS after load, MiB",
            "rss ratio": "server RSS / raw hnswlib index (vectors + graph)"}[key]


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks growth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files written by the suite")
    p.add_argument("--recall", type=float, default=0.95, help="the fixed recall for QPS")
    args = p.parse_args(argv)
    reports = []
    for path in args.results:
        with open(path) as f:
            reports.append(json.load(f))
    reports.sort(key=lambda r: r["params"]["rows"])
    print(growth_table(reports, args.recall), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
