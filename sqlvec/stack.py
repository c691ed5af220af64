"""Room for deep statements: engine threads with large stacks, and 54001 past their limit.

sqlglot parses recursively (about 21 Python frames per nested parenthesis, 24 per nested
function call), and the planner and expression compiler recurse over the tree it builds, so a
statement's nesting depth becomes Python recursion depth. CPython's default limit (1,000
frames) gave up at 46 nested parentheses. Engine work therefore runs on *engine threads*:

- each has a `STACK_SIZE` stack (a virtual reservation: only the pages a deep statement
  touches become resident), enough for `RECURSION_LIMIT` frames even where every frame
  passes through C (measured at under 1 KiB a frame);
- the interpreter's recursion limit is raised to `RECURSION_LIMIT` when the first one
  starts. CPython 3.11 has one limit for all threads, so threads with default 8 MiB stacks
  see it too: they are kept away from deep statements (`run_deep`).

The wire server serves each connection on an engine thread (`start_engine_thread`), so
statements run there with no hand-off. An embedded caller's session hands a long statement
(more than `INLINE_TEXT` characters, the only kind that can nest deeply) to a fresh engine
thread and waits for it; short ones run in the caller's thread.

`RECURSION_LIMIT` allows about 4,000 nested function calls or parentheses (PostgreSQL's
parser stops near 5,000); beyond it a statement fails with PostgreSQL's `54001 stack depth
limit exceeded` (`stack_depth_error`), and the session stays usable.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlvec.errors import StatementTooComplex

__all__ = [
    "INLINE_TEXT",
    "RECURSION_LIMIT",
    "STACK_SIZE",
    "on_engine_thread",
    "run_deep",
    "stack_depth_error",
    "start_engine_thread",
]

T = TypeVar("T")

RECURSION_LIMIT = 100_000
STACK_SIZE = 128 * 1024 * 1024
# Statements up to this many characters nest at most a few hundred levels (a few MiB of
# stack), which any thread's default stack holds.
INLINE_TEXT = 1_000

_local = threading.local()
_create = threading.Lock()  # threading.stack_size is process-wide: one creator at a time


def on_engine_thread() -> bool:
    """Whether the calling thread was started by `start_engine_thread`."""
    return getattr(_local, "engine", False)


def start_engine_thread(target: Callable[..., object], *args: Any, name: str | None = None,
                        daemon: bool = True) -> threading.Thread:
    """Start `target(*args)` on a new engine thread and return the thread.

    Raises RuntimeError, as `Thread.start`, when no thread can be started.
    """
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)

    def run() -> None:
        _local.engine = True
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    with _create:
        previous = threading.stack_size(STACK_SIZE)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


def run_deep(text: str, fn: Callable[[], T]) -> T:
    """`fn()` for a statement of `text`: in this thread when it is an engine thread or the
    statement is short, else on a new engine thread (this one waits; errors pass through)."""
    if len(text) <= INLINE_TEXT or on_engine_thread():
        return fn()
    outcome: list = []

    def work() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the waiting caller
            outcome.append((False, exc))

    start_engine_thread(work, name="sqlvec-deep-statement").join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def stack_depth_error() -> StatementTooComplex:
    """PostgreSQL's error for a statement nested deeper than the engine can follow."""
    return StatementTooComplex(
        "stack depth limit exceeded",
        hint=f'Increase the configuration parameter "max_stack_depth" (currently '
             f'{STACK_SIZE // 1024}kB), after ensuring the platform\'s stack depth limit is '
             f"adequate.")
