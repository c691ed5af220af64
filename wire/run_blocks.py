"""Blocks of an executemany's runs decoded together.

The runs of one prepared single-row INSERT an executemany pipelines (Bind into the unnamed
portal, Execute, maybe Describe: `connection.RunsOf`) very often come byte for byte laid out
alike: the same statement, formats and messages, values of the same sizes (binary integers,
floats and vectors always are; short texts and integers' digits often), NULL in the same
places. `EqualRuns` is the layout of one run recognised: the bytes that are not values must
be the same in every run of the block, so a run of another layout ends it. The received
bytes are then one matrix of one row per run, checked at once, and each parameter's values
are one column of it, decoded together (`pgtypes.param_column_decoder`); the session takes
the rows column-wise (`Session.take_columns`). A value that a column decoder or converter
does not take (not UTF-8, an integer out of its column's range ...) sends those runs one by
one, where its error, if any, is reported as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sqlvec.types import SqlType
from wire import pgtypes

MIN_RUNS = 16  # fewer runs of one layout are taken one by one: the matrix would cost more
MAX_RUNS = 4096  # runs decoded at once, and their bytes at most (bound the matrix's memory)
MAX_BYTES = 8 << 20


class EqualRuns:
    """The layout of one run (its bytes and where its values are): the runs laid out alike
    that follow in a receive buffer are taken together (`take`)."""

    __slots__ = ("size", "fixed", "expected", "columns", "answer")

    def __init__(self, run: bytes, columns: list[tuple[int, int, Callable] | None],
                 answer: bytes) -> None:
        self.size = len(run)
        template = np.frombuffer(run, np.uint8)
        fixed = np.ones(len(run), bool)
        for column in columns:
            if column is not None:
                fixed[column[0]:column[0] + column[1]] = False
        self.fixed = np.flatnonzero(fixed)  # the bytes every run of the block repeats
        self.expected = template[self.fixed]
        self.columns = columns  # per parameter: (offset, width, decoder), None for NULL
        self.answer = answer  # what running one answers

    @classmethod
    def of(cls, run: bytes, values_at: int, types: Sequence[SqlType],
           formats: Sequence[int], answer: bytes) -> EqualRuns | None:
        """The layout of `run` (a Bind whose values begin at `values_at`, then the messages
        after it), or None when one of its values has no column decoder."""
        columns: list[tuple[int, int, Callable] | None] = []
        pos = values_at
        for t, fmt in zip(types, formats):
            length = int.from_bytes(run[pos:pos + 4], "big", signed=True)
            pos += 4
            if length < 0:
                columns.append(None)
                continue
            decode = pgtypes.param_column_decoder(t, fmt, length)
            if decode is None:
                return None
            columns.append((pos, length, decode))
            pos += length
        return cls(run, columns, answer)

    def take(self, buf: bytearray, start: int, end: int) -> tuple[int, list] | None:
        """The runs laid out as this one from buf[start:end] on, at least MIN_RUNS of them:
        how many, and per parameter their values decoded together (the number of runs for
        a NULL); None when fewer, or when a value must be decoded alone."""
        size = self.size
        count = min((end - start) // size, MAX_RUNS, MAX_BYTES // size)
        if count < MIN_RUNS:
            return None
        matrix = np.frombuffer(buf[start:start + count * size], np.uint8).reshape(count, size)
        alike = (matrix[:, self.fixed] == self.expected).all(axis=1)
        if not alike.all():
            count = int(alike.argmin())
            if count < MIN_RUNS:
                return None
            matrix = matrix[:count]
        params: list = []
        for column in self.columns:
            if column is None:
                params.append(count)
                continue
            at, width, decode = column
            values = decode(matrix[:, at:at + width])
            if values is None:
                return None
            params.append(values)
        return count, params


class RunBlocks:
    """When to look for a block of runs laid out alike: a run about to be taken alone has
    its layout learnt when enough bytes are there; a layout that does not pay (no block, a
    value to decode alone) waits longer each time before the next try."""

    __slots__ = ("types", "formats", "layout", "wait", "patience")

    def __init__(self, types: Sequence[SqlType], formats: Sequence[int]) -> None:
        self.types = types
        self.formats = [pgtypes.param_format(tuple(formats), i) for i in range(len(types))]
        self.layout: EqualRuns | None = None
        self.wait = 0  # runs to take alone before the next try
        self.patience = MIN_RUNS

    def take(self, buf: bytearray, start: int, end: int) -> tuple[int, list, EqualRuns] | None:
        """A block of runs from buf[start:] (`EqualRuns.take`) with its layout, if one is
        known and due."""
        layout = self.layout
        if layout is None or self.wait:
            return None
        found = layout.take(buf, start, end)
        if found is None:
            self.failed()
            return None
        self.patience = MIN_RUNS
        return found[0], found[1], layout

    def learn(self, buf: bytearray, start: int, size: int, end: int, values_at: int,
              answer: bytes) -> bool:
        """Before the run buf[start:start + size] is taken alone: whether its layout becomes
        the one tried (from this run on), when it is due and MIN_RUNS runs of its size
        could be there."""
        if self.wait:
            self.wait -= 1
            return False
        if self.layout is not None or (end - start) // size < MIN_RUNS:
            return False
        self.layout = EqualRuns.of(bytes(buf[start:start + size]), values_at, self.types,
                                   self.formats, answer)
        if self.layout is None:
            self.failed()
            return False
        return True

    def failed(self) -> None:
        """A try that did not pay: the next waits twice as long (up to MAX_RUNS runs)."""
        self.layout = None
        self.wait = self.patience
        self.patience = min(self.patience * 2, MAX_RUNS)
