"""`benchmarks workers-paired`: two checkouts' servers side by side, loaded in turns."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import workers_paired
from benchmarks.workers import build

ROOT = Path(__file__).resolve().parents[2]


def test_turns_give_each_servers_workers_cpu_per_query_and_their_ratio(tmp_path, capsys):
    """Both servers answer in every turn, with their workers' CPU per query (this checkout
    against itself)."""
    data = tmp_path / "data"
    build(str(data), 2000, 8, "clustered")
    assert workers_paired.main(["--data-dir", str(data), "--baseline", str(ROOT), "--code",
                                str(ROOT), "--turns", "2", "--seconds", "0.2",
                                "--connections", "2", "--workers", "1", "--dim", "8"]) == 0
    out = capsys.readouterr().out
    turns = re.findall(r"turn (\d): before ([\d.]+) us/query ([\d,]+) QPS, after ([\d.]+) "
                       r"us/query ([\d,]+) QPS", out)
    assert [t[0] for t in turns] == ["1", "2"]
    assert all(float(t[1]) > 0 and float(t[3]) > 0 and t[2] != "0" and t[4] != "0"
               for t in turns)
    assert "median of the turns' ratios" in out
