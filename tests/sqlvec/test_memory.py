"""sqlvec.memory: buffers kept between bulk loads are reused only when nothing refers to them;
zero pages given back."""

from __future__ import annotations

import ctypes
import mmap
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.memory import KeptMemory, collapse_to_huge_pages, release_zero_pages, unreferenced
from tests.sqlvec.conftest import huge_bytes_in, needs_huge_pages


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise on Linux")
def test_zero_pages_are_given_back_and_others_kept():
    """Only a range of zeros is given back, whole pages only, and reads back as zeros."""
    buffer = ctypes.create_string_buffer(8 * mmap.PAGESIZE)  # private heap memory, zeroed
    address = ctypes.addressof(buffer)
    buffer[3 * mmap.PAGESIZE] = b"x"
    assert release_zero_pages(address, len(buffer)) == 0  # one byte is not zero
    assert buffer[3 * mmap.PAGESIZE] == b"x"
    buffer[3 * mmap.PAGESIZE] = b"\0"
    released = release_zero_pages(address, len(buffer))
    assert released >= 6 * mmap.PAGESIZE and released % mmap.PAGESIZE == 0
    assert buffer.raw == bytes(len(buffer))
    buffer[0] = b"y"  # still writable memory
    assert buffer[0] == b"y"


@needs_huge_pages
def test_written_memory_collapses_to_huge_pages_keeping_its_bytes():
    """The whole 2 MiB pages of a private range move onto huge pages, its bytes unchanged."""
    size = 8 << 20
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = np.frombuffer(buffer, np.uint8)
    view[:] = np.arange(size, dtype=np.uint64).astype(np.uint8) ^ 0x5A
    expected = view.copy()
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    collapsed = collapse_to_huge_pages(address + 100, size - 200)
    assert collapsed >= 2 << 20 and collapsed % (2 << 20) == 0
    assert huge_bytes_in(address, size) >= collapsed
    np.testing.assert_array_equal(view, expected)
    view[7] = 1  # still private, writable memory
    assert view[7] == 1
    del view
    buffer.close()
