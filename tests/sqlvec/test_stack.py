"""Engine threads: large stacks for deep statements, hand-off of long statements from other
threads, and the 54001 error past the limit."""

from __future__ import annotations

import sys
import threading

import pytest

from sqlvec import stack
from sqlvec.errors import SqlVecError


def test_engine_thread_is_marked_and_raises_the_recursion_limit():
    seen = []
    thread = stack.start_engine_thread(lambda: seen.append(stack.on_engine_thread()), name="t")
    thread.join()
    assert seen == [True]
    assert not stack.on_engine_thread()  # this (test) thread is not one
    assert sys.getrecursionlimit() >= stack.RECURSION_LIMIT
    assert threading.stack_size() == 0  # the process-wide default is restored


def test_engine_thread_follows_recursion_to_the_limit():
    """`RECURSION_LIMIT` frames fit in `STACK_SIZE`, even when each passes through C (a
    `__call__` chain): deep recursion ends in RecursionError, never a crashed process."""

    class Call:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, n):
            return self.inner(n + 1)

    def recurse(n):
        return call(n)

    call = Call(recurse)
    outcome = []

    def run():
        try:
            recurse(0)
        except RecursionError:
            outcome.append("RecursionError")

    stack.start_engine_thread(run).join()
    assert outcome == ["RecursionError"]


def test_run_deep_runs_short_statements_here_and_long_ones_on_an_engine_thread():
    here = threading.get_ident()
    assert stack.run_deep("SELECT 1", threading.get_ident) == here
    long_text = "x" * (stack.INLINE_TEXT + 1)
    assert stack.run_deep(long_text, threading.get_ident) != here
    assert stack.run_deep(long_text, stack.on_engine_thread) is True

    def inside():  # on an engine thread already: no further hand-off
        return stack.run_deep(long_text, threading.get_ident) == threading.get_ident()

    result = []
    stack.start_engine_thread(lambda: result.append(inside())).join()
    assert result == [True]


def test_run_deep_passes_errors_through():
    def fail():
        raise SqlVecError("boom", sqlstate="22000")

    with pytest.raises(SqlVecError, match="boom"):
        stack.run_deep("x" * (stack.INLINE_TEXT + 1), fail)


def test_stack_depth_error_is_postgresqls():
    error = stack.stack_depth_error()
    assert error.sqlstate == "54001"
    assert error.message == "stack depth limit exceeded"
    assert error.hint.startswith('Increase the configuration parameter "max_stack_depth"')
    assert error.hint.endswith("after ensuring the platform's stack depth limit is adequate.")
