"""`copy --like-suite`: the suite's COPY sequence against a real server, each piece timed."""

from __future__ import annotations

from benchmarks import copy_sequence
from benchmarks.ingest import parser


def test_the_suites_sequence_is_timed_piece_by_piece_on_a_fresh_server():
    args = parser().parse_args(["--like-suite", "--rows", "300", "--text-rows", "200",
                                "--select-rounds", "10", "--rounds", "1", "--only", "sqlvec",
                                "--dim", "8"])
    report = copy_sequence.run(args)
    (figures,) = report["like_suite"]["sqlvec"]
    text, binary = figures["text"], figures["binary"]
    assert text["rows_per_s"] == 200 / text["wall_s"] and binary["rows_per_s"] == 300 / binary["wall_s"]
    for f in (text, binary):
        assert 0 <= f["tail_s"] <= f["wall_s"] and f["client_cpu_s"] > 0
        assert 0 <= f["client_system_cpu_s"] <= f["client_cpu_s"]
        assert f["main_cpu_s"] >= 0 and f["others_cpu_s"] >= 0
        assert any(name.startswith("sqlvec-worker-") for name in f["by_process"])
    assert binary["gap_s"] > 0
    table = copy_sequence.markdown(report)
    assert "| binary: rows/s | " in table and "| text: tail ms | " in table


def test_cpu_is_split_between_the_copys_process_and_the_others():
    before = {1: 1.0, 2: 0.5}
    after = {1: 1.75, 2: 0.75, 3: 0.25}  # 3 started in between
    assert copy_sequence.split_cpu(before, after, main=1) == (0.75, 0.5)
