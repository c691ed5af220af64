"""16 writers and 16 readers at once on tables with primary keys, through a real server.

Writers insert, update (values and keys) and delete, in autocommit and in explicit
transactions (BEGIN ... COMMIT, sometimes ROLLBACK), and contend on purpose: racing inserts of
the same keys (plain and ON CONFLICT DO NOTHING), counters incremented by UPDATE and by upsert,
and tokens stolen from each other (DELETE ... RETURNING the holder, then INSERT). Each writer
keeps a ledger of what the server acknowledged. Readers check invariants meanwhile (no key ever
visible twice). The only errors allowed are 23505 and 40001 where a race makes them expected;
afterwards the tables must equal what the ledgers prove, before and after a restart.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

import psycopg
import pytest
from psycopg import errors

WRITERS = 16
READERS = 16
SECONDS = 6.0
TOKENS = 6
COUNTERS = 4
RACE_KEYS = 400
SPAN = 1_000_000  # writer w owns keys [w * SPAN, (w + 1) * SPAN) of `owned`
PRELOAD = 200_000  # rows loaded first (keys -PRELOAD .. -1), so writes land on sealed segments

pytestmark = pytest.mark.slow


class Ledger:
    """What the server acknowledged to one writer."""

    def __init__(self) -> None:
        self.owned: dict[int, int] = {}  # key -> val
        self.token_inserts: set[tuple[int, int, int]] = set()  # (token, writer, seq)
        self.token_taken: set[tuple[int, int, int]] = set()  # rows an acknowledged DELETE returned
        self.increments: Counter = Counter()  # counter id -> acknowledged increments
        self.raced: dict[int, int] = {}  # race key -> this writer inserted it
        self.expected_errors: Counter = Counter()


def writer(conninfo: str, w: int, deadline: float, ledger: Ledger, failures: list) -> None:
    rng = random.Random(w)
    next_key = w * SPAN
    seq = 0
    conn = psycopg.connect(conninfo, autocommit=True)

    def new_key() -> int:
        nonlocal next_key
        next_key += 1
        return next_key

    def check_visible(key: int, val: int | None) -> None:
        row = conn.execute("SELECT val FROM owned WHERE id = %s", (key,), prepare=True).fetchone()
        if (row[0] if row else None) != val:
            failures.append(f"writer {w}: key {key} reads {row}, acknowledged {val}")

    def owned_op(state: dict[int, int]) -> None:
        """One write to this writer's own keys; `state` is updated as the server would."""
        op = rng.choice(("insert", "insert", "update", "rekey", "delete"))
        if op != "insert" and not state:
            op = "insert"
        if op == "insert":
            key, val = new_key(), rng.randrange(1000)
            conn.execute("INSERT INTO owned VALUES (%s, %s, %s)", (key, w, val), prepare=True)
            state[key] = val
        elif op == "update":
            key, val = rng.choice(list(state)), rng.randrange(1000)
            cur = conn.execute("UPDATE owned SET val = %s WHERE id = %s", (val, key), prepare=True)
            assert cur.rowcount == 1
            state[key] = val
        elif op == "rekey":
            old, key = rng.choice(list(state)), new_key()
            cur = conn.execute("UPDATE owned SET id = %s WHERE id = %s", (key, old), prepare=True)
            assert cur.rowcount == 1
            state[key] = state.pop(old)
        else:
            key = rng.choice(list(state))
            cur = conn.execute("DELETE FROM owned WHERE id = %s", (key,), prepare=True)
            assert cur.rowcount == 1
            del state[key]

    def steal(taken: set, inserted: set) -> None:
        nonlocal seq
        token = rng.randrange(TOKENS)
        row = conn.execute("DELETE FROM tok WHERE id = %s RETURNING id, owner, seq", (token,),
                           prepare=True).fetchone()
        if row is not None:
            seq += 1
            conn.execute("INSERT INTO tok VALUES (%s, %s, %s)", (token, w, seq), prepare=True)
            taken.add(tuple(row))
            inserted.add((token, w, seq))

    try:
        while time.monotonic() < deadline:
            kind, plain = rng.random(), False
            try:
                if kind < 0.35:
                    owned_op(ledger.owned)
                    if rng.random() < 0.2:
                        key = rng.choice(list(ledger.owned)) if ledger.owned else w * SPAN
                        check_visible(key, ledger.owned.get(key))
                elif kind < 0.55:
                    # A transaction: a few own writes (keys inserted then deleted or re-keyed
                    # inside it included), sometimes a steal, sometimes rolled back.
                    state = dict(ledger.owned)
                    taken: set = set()
                    inserted: set = set()
                    conn.execute("BEGIN")
                    try:
                        for _ in range(rng.randrange(1, 5)):
                            owned_op(state)
                        if rng.random() < 0.3:
                            steal(taken, inserted)
                        if rng.random() < 0.15:
                            conn.execute("ROLLBACK")
                            continue
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                            conn.execute("ROLLBACK")
                        raise
                    ledger.owned = state
                    ledger.token_taken |= taken
                    ledger.token_inserts |= inserted
                elif kind < 0.65:
                    taken, inserted = set(), set()
                    try:
                        steal(taken, inserted)
                    finally:  # the DELETE may be acknowledged and the INSERT not: both count
                        ledger.token_taken |= taken
                        ledger.token_inserts |= inserted
                elif kind < 0.8:
                    counter = rng.randrange(COUNTERS)
                    if rng.random() < 0.5:
                        cur = conn.execute("UPDATE ctr SET n = n + 1 WHERE id = %s", (counter,),
                                           prepare=True)
                        if cur.rowcount == 0:
                            continue
                    else:
                        conn.execute("INSERT INTO ctr VALUES (%s, 1) ON CONFLICT (id) DO UPDATE "
                                     "SET n = ctr.n + 1", (counter,), prepare=True)
                    ledger.increments[counter] += 1
                else:
                    key = rng.randrange(RACE_KEYS)
                    plain = rng.random() < 0.5
                    if plain:
                        conn.execute("INSERT INTO race VALUES (%s, %s)", (key, w), prepare=True)
                        ledger.raced[key] = w
                    else:
                        row = conn.execute("INSERT INTO race VALUES (%s, %s) ON CONFLICT DO "
                                           "NOTHING RETURNING id", (key, w), prepare=True)
                        if row.fetchone() is not None:
                            ledger.raced[key] = w
            except errors.UniqueViolation:
                if not (kind >= 0.8 and plain):  # only a racing plain INSERT may collide
                    raise
                ledger.expected_errors["23505"] += 1
            except errors.SerializationFailure:
                if kind < 0.35 or kind >= 0.8:  # own keys and races never conflict this way
                    raise
                ledger.expected_errors["40001"] += 1
    except BaseException as exc:  # any other error fails the test
        failures.append(f"writer {w}: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def reader(conninfo: str, r: int, deadline: float, failures: list, reads: Counter) -> None:
    rng = random.Random(1000 + r)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while time.monotonic() < deadline:
                choice = rng.randrange(4)
                if choice == 0:
                    dup = conn.execute("SELECT id, count(*) FROM tok GROUP BY id "
                                       "HAVING count(*) > 1", prepare=True).fetchall()
                elif choice == 1:
                    dup = conn.execute("SELECT id, count(*) FROM race GROUP BY id "
                                       "HAVING count(*) > 1", prepare=True).fetchall()
                elif choice == 2:
                    rows = conn.execute("SELECT id FROM tok WHERE id = %s",
                                        (rng.randrange(TOKENS),), prepare=True).fetchall()
                    dup = rows if len(rows) > 1 else []
                else:
                    w = rng.randrange(WRITERS)
                    dup = conn.execute(
                        "SELECT id, count(*) FROM owned WHERE id >= %s AND id < %s GROUP BY id "
                        "HAVING count(*) > 1", (w * SPAN, (w + 1) * SPAN), prepare=True).fetchall()
                if dup:
                    failures.append(f"reader {r}: a key visible twice: {dup}")
                reads[r] += 1
    except BaseException as exc:
        failures.append(f"reader {r}: {type(exc).__name__}: {exc}")


def verify(server, ledgers: list[Ledger], preloaded: dict[int, int]) -> None:
    """The tables hold exactly what the writers' ledgers prove."""
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        owned = {k: (w, v) for k, w, v in conn.execute("SELECT id, writer, val FROM owned")}
        expected = {k: (-1, v) for k, v in preloaded.items()}
        for w, led in enumerate(ledgers):
            expected.update({k: (w, v) for k, v in led.owned.items()})
        assert owned == expected

        tokens = set(conn.execute("SELECT id, owner, seq FROM tok"))
        inserted = {(t, -1, 0) for t in range(TOKENS)}.union(*(led.token_inserts for led in ledgers))
        taken = set().union(*(led.token_taken for led in ledgers))
        assert taken <= inserted  # every stolen row was one somebody had acknowledged
        # Each token's chain of custody: every acknowledged insert was stolen later, but for the
        # one holding the token now; nothing else is there.
        assert tokens == inserted - taken
        assert len(tokens) == TOKENS

        counters = dict(conn.execute("SELECT id, n FROM ctr"))
        increments = sum((led.increments for led in ledgers), Counter())
        assert counters == {c: increments[c] for c in increments}

        race = dict(conn.execute("SELECT id, writer FROM race"))
        winners: dict[int, list[int]] = defaultdict(list)
        for w, led in enumerate(ledgers):
            for key in led.raced:
                winners[key].append(w)
        assert all(len(ws) == 1 for ws in winners.values())  # exactly one insert won
        assert race == {k: ws[0] for k, ws in winners.items()}


def test_concurrent_writers_and_readers_lose_nothing(start):
    server = start()
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE owned (id bigint PRIMARY KEY, writer int, val int)")
        conn.execute("CREATE TABLE tok (id int PRIMARY KEY, owner int, seq int)")
        conn.execute("CREATE TABLE ctr (id int PRIMARY KEY, n int)")
        conn.execute("CREATE TABLE race (id bigint PRIMARY KEY, writer int)")
        for t in range(TOKENS):
            conn.execute("INSERT INTO tok VALUES (%s, -1, 0)", (t,))
        # A table large enough to have sealed segments beneath the writes.
        conn.execute(f"INSERT INTO owned SELECT g, -1, 0 FROM generate_series({-PRELOAD}, -1) g")
    preloaded = dict.fromkeys(range(-PRELOAD, 0), 0)
    ledgers = [Ledger() for _ in range(WRITERS)]
    failures: list[str] = []
    reads: Counter = Counter()
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=writer, args=(server.conninfo(), w, deadline, ledgers[w],
                                                     failures)) for w in range(WRITERS)]
    threads += [threading.Thread(target=reader, args=(server.conninfo(), r, deadline, failures,
                                                      reads)) for r in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not failures, "\n".join(failures[:20])
    verify(server, ledgers, preloaded)
    log = server.log()
    assert "Traceback" not in log and "internal error" not in log, log[-5000:]
    # Everything acknowledged is durable: the same after a restart.
    assert server.stop() == 0, server.log()
    verify(start(data_dir=server.data_dir), ledgers, preloaded)
    # The run did what it is meant to: writes, reads and races that lost.
    expected_errors = sum((led.expected_errors for led in ledgers), Counter())
    assert sum(len(led.owned) for led in ledgers) > WRITERS
    assert sum(reads.values()) > READERS
    assert expected_errors["23505"] > 0
    assert sum(len(led.token_taken) for led in ledgers) > 0
    print(f"rows owned {sum(len(led.owned) for led in ledgers)}, reads {sum(reads.values())}, "
          f"increments {sum(sum(led.increments.values()) for led in ledgers)}, "
          f"steals {sum(len(led.token_taken) for led in ledgers)}, "
          f"race wins {sum(len(led.raced) for led in ledgers)}, expected errors "
          f"{dict(expected_errors)}")
