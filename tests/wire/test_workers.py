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
