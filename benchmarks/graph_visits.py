"""How many vectors a top-10 graph search reads: sqlvec's HNSW graph against pgvector's.

hnswlib counts no distance computations in its Python build, so its search (`searchKnn`: a
greedy descent through the upper levels, then the bare-bone best-first search of level 0
with `ef` candidates) is replayed here over a saved graph file, counting each distance it
computes; `--check` compares the replay's top-10 with hnswlib's own `knn_query` on the same
graph. pgvector reads one buffer per vector it compares and one per neighbour list it
expands (and the winners' heap pages): `--pgserver PGDIR` reports the shared buffers of the
index scan under EXPLAIN (ANALYZE, BUFFERS) for the same queries, on the `items` table
`python -m benchmarks workers --pgserver PGDIR` loads.

    python -m benchmarks graph-visits --graph FILE.hnsw [--ef 40] [--queries 200] [--check]
        [--pgserver PGDIR]

The query vectors are the suite's clustered ones (`workers --dataset clustered`).
"""

from __future__ import annotations

import argparse
import heapq
import re
import statistics
import sys

import numpy as np

from benchmarks.workers import queries_of
from sqlvec.storage.hnsw import _HEADER, _upper_levels

TOP = 10


class Graph:
    """A saved hnswlib graph read in place: each element's vector and level-0 neighbours,
    and the upper levels' link lists."""

    def __init__(self, path: str) -> None:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        (_, _, count, per, label_at, data_at, self.top_level, self.entry, max_m, _, _, _,
         _) = _HEADER.unpack(bytes(data[:_HEADER.size]))
        records = data[_HEADER.size:_HEADER.size + count * per].reshape(count, per)
        self.dim = (label_at - data_at) // 4
        self.vectors = np.ascontiguousarray(records[:, data_at:label_at]).view(np.float32)
        self.labels = np.ascontiguousarray(records[:, label_at:label_at + 8]).view(np.uint64)
        self.links0 = np.ascontiguousarray(records[:, :data_at]).view(np.uint32)
        tail = data[_HEADER.size + count * per:]
        levels, self.links = _upper_levels(tail.view(np.uint32), count, (max_m + 1) * 4)
        self.width = max_m + 1
        self.starts = np.concatenate([[0], np.cumsum(levels.astype(np.int64) * self.width)])

    def neighbours(self, element: int, level: int) -> np.ndarray:
        """The element's links at `level` (0: its level-0 record's)."""
        if level == 0:
            row = self.links0[element]
            return row[1:1 + (int(row[0]) & 0xFFFF)]
        at = self.starts[element] + (level - 1) * self.width
        return self.links[at + 1:at + 1 + (int(self.links[at]) & 0xFFFF)]

    def search(self, query: np.ndarray, ef: int) -> tuple[list[int], int]:
        """searchKnn replayed: the top-10 labels and the distances computed."""
        def distance(element: int) -> float:
            diff = self.vectors[element] - query
            return float(diff.dot(diff))

        current, nearest = self.entry, distance(self.entry)
        computed = 1
        for level in range(self.top_level, 0, -1):
            moved = True
            while moved:
                moved = False
                links = self.neighbours(current, level)
                computed += len(links)
                for element in links.tolist():
                    d = distance(element)
                    if d < nearest:
                        current, nearest, moved = element, d, True
        found, more = self._level_zero(current, nearest, ef, distance)
        return [int(self.labels[e][0]) for _, e in found[:TOP]], computed + more

    def _level_zero(self, start: int, near: float, ef: int, distance) -> tuple[list, int]:
        """The bare-bone best-first search of level 0: the ef nearest found (nearest first)
        and the distances it computed."""
        visited = {start}
        best = [(-near, start)]  # a max-heap of the ef nearest so far
        candidates = [(near, start)]
        bound, computed = near, 0
        while candidates:
            d, element = candidates[0]
            if d > bound and len(best) == ef:
                break
            heapq.heappop(candidates)
            for other in self.neighbours(element, 0).tolist():
                if other in visited:
                    continue
                visited.add(other)
                d = distance(other)
                computed += 1
                if len(best) < ef or d < bound:
                    heapq.heappush(candidates, (d, other))
                    heapq.heappush(best, (-d, other))
                    if len(best) > ef:
                        heapq.heappop(best)
                    bound = -best[0][0]
        return sorted((-d, e) for d, e in best), computed


def agreeing(path: str, graph: Graph, queries: list, ef: int) -> int:
    """How many queries' replayed top-10 hnswlib's `knn_query` gives too."""
    import hnswlib

    index = hnswlib.Index(space="l2", dim=graph.dim)
    index.load_index(path, max_elements=graph.vectors.shape[0])
    index.set_ef(ef)
    return sum(set(graph.search(q, ef)[0]) == set(index.knn_query(q, k=TOP)[0][0].tolist())
               for q in queries)


def pg_buffers(pgdir: str, queries: list, ef: int) -> list[int]:
    """Shared buffers (hit + read) of each query's index scan in PostgreSQL + pgvector."""
    import pgserver
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(pgserver.get_server(pgdir).get_uri(), autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        out = []
        for q in queries:
            plan = "\n".join(row[0] for row in conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) "
                f"SELECT id FROM items ORDER BY emb <-> %s LIMIT {TOP}", (q,)))
            m = re.search(r"Index Scan.*?Buffers: shared hit=(\d+)(?: read=(\d+))?", plan, re.S)
            out.append(int(m.group(1)) + int(m.group(2) or 0))
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks graph-visits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", required=True, help="a segment's saved HNSW file (.hnsw)")
    p.add_argument("--ef", type=int, default=40)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--check", action="store_true", help="compare with hnswlib's knn_query")
    p.add_argument("--pgserver", metavar="PGDIR")
    args = p.parse_args(argv)
    graph = Graph(args.graph)
    queries = [q.astype(np.float32) for q in
               queries_of(args.queries, graph.dim, "clustered", binary=True)]
    computed = [graph.search(q, args.ef)[1] for q in queries]
    print(f"sqlvec (hnswlib) at ef {args.ef}: distances per query mean "
          f"{statistics.mean(computed):.0f}, median {statistics.median(computed):.0f}")
    if args.check:
        print(f"replayed top-{TOP} = knn_query's in {agreeing(args.graph, graph, queries[:50], args.ef)}"
              f" of {min(50, len(queries))} queries")
    if args.pgserver:
        hits = pg_buffers(args.pgserver, queries, args.ef)
        print(f"PostgreSQL + pgvector at ef {args.ef}: index scan's shared buffers per query "
              f"mean {statistics.mean(hits):.0f}, median {statistics.median(hits):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
