"""The commit position the primary publishes to its workers (`wire.workers.CommitPosition`)."""

from __future__ import annotations

import os

from wire.workers import CommitPosition


def test_a_position_published_is_read_through_another_mapping():
    writer = CommitPosition()
    reader = CommitPosition(os.dup(writer.fd))  # as a worker maps the descriptor it inherits
    try:
        assert reader.read() == (0, 0, 0)
        writer.publish(42, 7)
        assert reader.read() == (42, 7, 0)
        writer.publish(43, 7)
        writer.publish(43, 7)  # unchanged: nothing rewritten
        assert reader.read() == (43, 7, 0)
        writer.publish(43, 7, 2)  # a configuration reload
        assert reader.read() == (43, 7, 2)
    finally:
        reader.close()
        writer.close()


def test_the_schema_lock_flag_is_read_through_another_mapping():
    """The primary's "a transaction block holds the DDL lock" flag, beside the position."""
    writer = CommitPosition()
    reader = CommitPosition(os.dup(writer.fd))
    try:
        assert not reader.schema_locked()
        writer.publish(5, 1)
        writer.set_schema_locked(True)
        assert reader.schema_locked() and reader.read() == (5, 1, 0)
        writer.publish(6, 2)  # commits go on: the flag stays until the lock is released
        assert reader.schema_locked() and reader.read() == (6, 2, 0)
        writer.set_schema_locked(False)
        assert not reader.schema_locked()
    finally:
        reader.close()
        writer.close()


def test_statement_durations_cross_from_a_worker_exactly():
    """A worker sends its statements' durations packed (per SQLSTATE, float64s): the primary
    gets every (seconds, SQLSTATE) back, bit for bit, through JSON."""
    import json

    from wire.workers import pack_durations, unpack_durations

    observed = [(0.000123456789, None), (1e-9, "57014"), (2.5, "22012"), (0.1, None),
                (5e-324, None), (1.7976931348623157e308, "XX000")]
    packed = json.loads(json.dumps(pack_durations(observed)))
    assert set(packed) == {"", "57014", "22012", "XX000"}
    assert sorted(unpack_durations(packed), key=repr) == sorted(observed, key=repr)
    assert pack_durations([]) == {} and unpack_durations({}) == []


def test_the_connections_the_workers_serve_are_read_through_another_mapping():
    """The primary's count of connections handed to workers, beside the position: a worker
    lets a query spread its segment searches over threads only while it is below the
    cores."""
    from wire.workers import cores

    writer = CommitPosition()
    reader = CommitPosition(os.dup(writer.fd))
    try:
        assert reader.connections() == 0 and reader.cores_free()
        writer.publish(9, 3)
        writer.set_connections(cores())
        assert reader.connections() == cores() and not reader.cores_free()
        assert reader.read() == (9, 3, 0) and not reader.schema_locked()
        writer.set_schema_locked(True)
        writer.set_connections(cores() - 1)
        assert reader.cores_free() and reader.schema_locked()
    finally:
        reader.close()
        writer.close()
