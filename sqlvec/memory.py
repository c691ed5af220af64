"""Anonymous memory: kept between bulk loads, and zero pages handed back.

A COPY of 100k rows of 128-d vectors passes about 56 MB through each of its stages (the
received stream, the decoded vectors, each piece's log record). Fresh anonymous memory costs
a page fault per 4 KiB the first time it is written, many times the copy itself: 56 MB copied
in 32 KiB pieces into fresh 4 MiB mappings took 35 ms of CPU (54 ms into shared ones, 22 ms
into private ones mapped with MAP_POPULATE), into mappings already touched 1.5 ms. So the
stages take their buffers from a `KeptMemory`, which keeps those a finished load gave back
for the next one, for as long as loads keep coming.

`release_zero_pages` gives back the pages of a range that holds only zeros (a library's
arrays written once with zeros and then left alone), so they stop counting in the process.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np


def populated(size: int) -> mmap.mmap:
    """`size` bytes of private anonymous memory with its pages in place at once
    (MAP_POPULATE: the kernel zeroes them in one call, at about 60 % of the cost of faulting
    them in one by one)."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)


def unreferenced(buffer: mmap.mmap) -> bool:
    """Whether nothing refers to `buffer`'s memory: no view, array or Arrow buffer over it
    (mmap refuses to resize while a buffer is exported)."""
    try:
        buffer.resize(len(buffer))
    except (BufferError, OSError, ValueError):
        return False
    return True


KEEP_SECONDS = 30.0  # kept memory no load has used for this long is returned to the system


class KeptMemory:
    """Buffers of `size` bytes, at most `most` of them kept between uses, and only while
    loads keep coming (`keep` seconds after the last one gave memory back, the kept buffers
    are unmapped: an idle server holds none). One is given back only when nothing refers to
    it any more (`unreferenced`), so no value that still lies in it can be overwritten by the
    next use."""

    def __init__(self, size: int, most: int, keep: float = KEEP_SECONDS) -> None:
        self.size = size
        self.most = most
        self.keep = keep
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self._returned = 0.0  # when memory was last given back
        self._timer: threading.Timer | None = None
        os.register_at_fork(after_in_child=self._forget)  # a forked process keeps none

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._idle = []
        self._timer = None

    def take(self) -> mmap.mmap:
        """A buffer of `size` bytes: a kept one, else fresh memory."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return populated(self.size)

    def give_back(self, buffer: mmap.mmap) -> bool:
        """Keep `buffer` for a later `take` if nothing refers to it and there is room."""
        if len(buffer) != self.size or not unreferenced(buffer):
            return False
        with self._lock:
            if len(self._idle) >= self.most:
                return False
            self._idle.append(buffer)
            self._returned = time.monotonic()
            if self._timer is None:
                self._expire_in(self.keep)
        return True

    def _expire_in(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        """Unmap the kept buffers if no load gave memory back for `keep` seconds."""
        with self._lock:
            left = self._returned + self.keep - time.monotonic()
            if left > 0:
                self._expire_in(left)
                return
            self._timer = None
            idle, self._idle = self._idle, []
        for buffer in idle:
            buffer.close()

    @property
    def kept(self) -> int:
        """Buffers waiting for a `take`."""
        return len(self._idle)


_MADV_DONTNEED = 4  # Linux: private anonymous pages read back as zeros afterwards
_libc: ctypes.CDLL | None | bool = None


def release_zero_pages(address: int, length: int) -> int:
    """Give back the whole pages of `length` bytes at `address` if every byte there is zero;
    return how many bytes were given back (0 off Linux, or when a byte is not zero).

    After MADV_DONTNEED a private anonymous page reads back as zeros, so the memory holds what
    it held; it counts again only once something writes to it. The caller must own the range
    and know that nothing writes to it meanwhile (a write between the check and the advice
    would be lost): only for memory no other thread can reach yet."""
    page = mmap.PAGESIZE
    start = -(-address // page) * page
    end = (address + length) // page * page
    if end <= start or not sys.platform.startswith("linux"):
        return 0
    if np.frombuffer((ctypes.c_char * (end - start)).from_address(start), np.uint8).any():
        return 0
    madvise = _libc_madvise()
    if madvise is None or madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                                  _MADV_DONTNEED) != 0:
        return 0
    return end - start


def _libc_madvise() -> Callable[..., int] | None:
    """libc's madvise (the mmap module offers it only on its own mappings), None without."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    return _libc.madvise if _libc else None


_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25  # Linux 6.1: back the range with huge pages now, whatever the THP setting
_HUGE_PAGE = 2 << 20


def collapse_to_huge_pages(address: int, length: int) -> int:
    """Back the whole 2 MiB pages inside `length` bytes at `address` (private anonymous memory
    already written) with huge pages; return how many bytes now are (0 off Linux, on a
    kernel without MADV_COLLAPSE, or when it cannot).

    A graph search reads a few hundred rows spread over the whole graph: with 4 KiB pages
    nearly every one costs a TLB miss, with huge pages a few dozen entries cover it. The
    caller must own the range; pages shared with a forked process would be copied, so it is
    for memory a process has just filled, before any fork."""
    start = -(-address // _HUGE_PAGE) * _HUGE_PAGE
    end = (address + length) // _HUGE_PAGE * _HUGE_PAGE
    if end <= start or not sys.platform.startswith("linux"):
        return 0
    madvise = _libc_madvise()
    if madvise is None:
        return 0
    size = ctypes.c_size_t(end - start)
    madvise(ctypes.c_void_p(start), size, _MADV_HUGEPAGE)
    if madvise(ctypes.c_void_p(start), size, _MADV_COLLAPSE) != 0:
        return 0
    return end - start
