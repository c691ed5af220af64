"""SIGKILL the server again and again while several clients write, and hold it to a ledger.

Each writer owns its keys and records every statement or transaction the server acknowledged.
After every kill and restart the table must hold exactly the acknowledged state, except that the
one transaction each writer had in flight when the server died may be wholly present or wholly
absent (its outcome was never reported), never partly.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field

import psycopg

from tests.e2e.conftest import RunningServer, start_server

WRITERS = 6
CYCLES = 5


def vec(k: int, v: int) -> str:
    """A vector that belongs to one (key, value) pair, in float32's exact integer range."""
    return f"[{k % 9973},{v},{(k + v) % 9967},1]"


@dataclass
class Writer:
    index: int
    state: dict[int, int] = field(default_factory=dict)  # acknowledged: key -> value
    in_flight: dict[int, int | None] | None = None  # key -> value after it (None: deleted)
    next_key: int = 0
    acknowledged: int = 0
    unexpected: list[str] = field(default_factory=list)

    def keys(self) -> range:
        return range(self.index * 1_000_000, (self.index + 1) * 1_000_000)

    def plan(self, rng: random.Random) -> list[tuple[str, int, int | None]]:
        """One to three operations on this writer's own keys: (sql kind, key, new value)."""
        ops: list[tuple[str, int, int | None]] = []
        seen = dict(self.state)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            live = [k for k, v in seen.items() if v is not None]
            roll = rng.random()
            if roll < 0.5 or not live:
                key = self.keys()[0] + self.next_key
                self.next_key += 1
                ops.append(("insert", key, 0))
                seen[key] = 0
            elif roll < 0.85:
                key = rng.choice(live)
                ops.append(("update", key, seen[key] + 1))
                seen[key] += 1
            else:
                key = rng.choice(live)
                ops.append(("delete", key, None))
                seen[key] = None
        return ops

    def run(self, server: RunningServer, stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        try:
            conn = psycopg.connect(server.conninfo(), autocommit=True)
        except psycopg.OperationalError:
            return
        with conn:
            while not stop.is_set():
                ops = self.plan(rng)
                self.in_flight = {key: value for _kind, key, value in ops}
                try:
                    if len(ops) > 1:
                        with conn.transaction():
                            for op in ops:
                                execute(conn, *op)
                    else:
                        execute(conn, *ops[0])
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    return  # the server died: the outcome of `in_flight` is unknown
                except psycopg.Error as exc:
                    self.unexpected.append(f"{exc.sqlstate}: {exc}")
                    self.in_flight = None
                    continue
                for key, value in self.in_flight.items():
                    if value is None:
                        self.state.pop(key, None)
                    else:
                        self.state[key] = value
                self.in_flight = None
                self.acknowledged += 1


def execute(conn: psycopg.Connection, kind: str, key: int, value: int | None) -> None:
    if kind == "insert":
        conn.execute("INSERT INTO ledger (k, v, e) VALUES (%s, %s, %s)", (key, value, vec(key, 0)))
    elif kind == "update":
        cur = conn.execute("UPDATE ledger SET v = v + 1, e = %s WHERE k = %s",
                           (vec(key, value), key))
        assert cur.rowcount == 1
    else:
        cur = conn.execute("DELETE FROM ledger WHERE k = %s", (key,))
        assert cur.rowcount == 1


def reconcile(writer: Writer, found: dict[int, tuple[int, str]]) -> None:
    """Check what survived against the writer's ledger; adopt the in-flight outcome."""
    mine = {k: v for k, v in found.items() if k in writer.keys()}
    for k, (v, e) in mine.items():
        assert e == vec(k, v), f"key {k}: vector {e} does not belong to value {v}"
    values = {k: v for k, (v, _e) in mine.items()}
    before = dict(writer.state)
    if writer.in_flight:
        after = dict(before)
        for key, value in writer.in_flight.items():
            if value is None:
                after.pop(key, None)
            else:
                after[key] = value
        assert values in (before, after), (
            f"writer {writer.index}: neither the acknowledged state nor it plus the in-flight "
            f"transaction {writer.in_flight}")
        writer.state = values
    else:
        assert values == before, f"writer {writer.index}: acknowledged state differs"
    writer.in_flight = None


def test_sigkill_under_concurrent_writers_loses_no_acknowledged_transaction(tmp_path, reap):
    data_dir = tmp_path / "data"
    running = start_server(tmp_path / "s0", data_dir=data_dir)
    reap(running)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (k bigint PRIMARY KEY, v int NOT NULL, e vector(4))")
    writers = [Writer(i) for i in range(WRITERS)]
    rng = random.Random(42)
    for cycle in range(CYCLES):
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(running, stop, rng.random()))
                   for w in writers]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.6, 1.5))
        running.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        running = start_server(tmp_path / f"s{cycle + 1}", data_dir=data_dir)
        reap(running)
        with psycopg.connect(running.conninfo(), autocommit=True) as conn:
            found = {k: (v, e) for k, v, e in
                     conn.execute("SELECT k, v, e::text FROM ledger").fetchall()}
        for w in writers:
            reconcile(w, found)
        assert set(found) == set().union(*(w.state for w in writers))
    try:
        assert sum(w.acknowledged for w in writers) > 50 * CYCLES
        unexpected = [u for w in writers for u in w.unexpected]
        assert not unexpected, unexpected
        assert "Traceback" not in running.log()
    finally:
        assert running.stop() == 0, running.log()

