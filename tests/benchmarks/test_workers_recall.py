"""`benchmarks workers --qps` at several ef_search values, with recall@10 beside the QPS."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ground_truth import exact_top10, recall_at_10
from benchmarks.workers import blocks, build, parser_of, queries_of, start, total_qps, truth_of

ROOT = Path(__file__).resolve().parents[2]


def test_ef_lists_take_default_as_not_set_and_keep_40_when_absent():
    args = parser_of().parse_args(["--data-dir", "d", "--ef", "default,30,40", "--pg-ef", "60"])
    assert args.ef == [None, 30, 40] and args.pg_ef == [60]
    args = parser_of().parse_args(["--data-dir", "d"])
    assert args.ef == [40] and args.pg_ef == [40]


@pytest.mark.parametrize("bad", ["0", "forty", "40,", "-5"])
def test_an_ef_that_is_not_a_positive_integer_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        parser_of().parse_args(["--data-dir", "d", "--ef", bad])
    assert "positive integer or `default`" in capsys.readouterr().err


def test_exact_top10_in_blocks_matches_one_distance_matrix():
    rng = np.random.default_rng(3)
    vectors, queries = rng.standard_normal((500, 8)), rng.standard_normal((25, 8))
    whole = np.argsort(((queries[:, None, :] - vectors[None]) ** 2).sum(-1), axis=1)[:, :10]
    blocked = exact_top10(vectors, queries, block=7)
    assert [set(row) for row in blocked.tolist()] == [set(row) for row in whole.tolist()]
    assert recall_at_10(enumerate(whole.tolist()), blocked) == 1.0
    assert recall_at_10([(0, whole[0, :5].tolist())], blocked) == 0.5


def test_clients_answers_give_the_recall_at_each_ef(tmp_path):
    """A real server on a small clustered table: every client's answers come back, exact at
    a large ef, and a search with ef_search not set answers as well."""
    args = parser_of().parse_args(["--data-dir", str(tmp_path), "--rows", "2000", "--dim", "8",
                                   "--dataset", "clustered", "--queries", "30", "--binary"])
    build(args.data_dir, args.rows, args.dim, args.dataset)
    queries = queries_of(args.queries, args.dim, args.dataset, binary=True)
    truth = truth_of(args, queries)
    assert truth.shape == (30, 10)
    assert sum(len(b) for b in blocks(args.rows, args.dim, args.dataset)) == 2000
    server, port = start(str(ROOT), args.data_dir, 0)
    try:
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        for ef, floor in ((400, 0.99), (None, 0.9)):
            qps, cpu, answers = total_qps(dsn, 2, queries, server.pid, "threads", ef)
            assert qps > 0 and "client" in cpu
            assert len(answers) == 2 and all(len(a) == 30 for a in answers)
            found = [(i, ids) for client in answers for i, ids in enumerate(client)]
            assert all(len(ids) == 10 for _, ids in found)
            assert recall_at_10(found, truth) >= floor
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
