"""sqlvec.memory: buffers kept between bulk loads are reused only when nothing refers to them."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from sqlvec.memory import KeptMemory, unreferenced


def test_a_buffer_given_back_is_taken_again_with_its_pages_in_place():
    kept = KeptMemory(1 << 16, most=2)
    buffer = kept.take()
    buffer[:5] = b"first"
    assert kept.give_back(buffer) and kept.kept == 1
    assert kept.take() is buffer
    assert kept.kept == 0
    assert kept.take() is not buffer  # none kept: fresh memory


def test_a_buffer_something_refers_to_is_not_kept():
    kept = KeptMemory(1 << 16, most=4)
    for refer in (lambda b: np.frombuffer(b, np.uint8),
                  lambda b: pa.py_buffer(b).slice(10, 20),
                  lambda b: memoryview(b)[3:9]):
        buffer = kept.take()
        reference = refer(buffer)
        assert not unreferenced(buffer)
        assert not kept.give_back(buffer)
        del reference
        assert unreferenced(buffer)
    assert kept.kept == 0


def test_only_buffers_of_its_size_and_at_most_so_many_are_kept():
    kept = KeptMemory(1 << 16, most=1)
    other = KeptMemory(1 << 17, most=1).take()
    assert not kept.give_back(other)
    assert kept.give_back(kept.take())
    assert not kept.give_back(KeptMemory(1 << 16, most=1).take())
    assert kept.kept == 1


def test_kept_memory_is_unmapped_once_no_load_used_it_for_a_while():
    kept = KeptMemory(1 << 16, most=2, keep=0.2)
    first, second = kept.take(), kept.take()
    assert kept.give_back(first)
    time.sleep(0.1)
    assert kept.give_back(second)  # the clock starts again
    time.sleep(0.15)
    assert kept.kept == 2
    deadline = time.monotonic() + 5
    while kept.kept and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kept.kept == 0 and first.closed and second.closed
    assert kept.give_back(kept.take()) and kept.kept == 1  # and it keeps again
