"""The statement's memory account (work_mem) and its interrupt check (cancel, statement_timeout)."""

from __future__ import annotations

import time

import pytest

from sqlvec.errors import OutOfMemory, QueryCanceled
from sqlvec.execution.context import ExecContext, MemoryAccount, format_bytes


class Node:
    """Stands in for an operator: the account only looks at `children`."""

    def __init__(self, *children: Node) -> None:
        self.children = list(children)


def test_a_reservation_past_the_limit_fails_before_it_counts():
    memory = MemoryAccount(limit=1000)
    memory.reserve("Sort (10 rows of 60 bytes)", 600)
    with pytest.raises(OutOfMemory) as caught:
        memory.reserve("Hash Join (100 rows of 5 bytes)", 500)
    error = caught.value
    assert error.sqlstate == "53200" and error.message == "out of memory"
    assert error.detail == ("Failed on request of size 500 bytes in Hash Join (100 rows of 5 "
                            "bytes); the statement holds 600 bytes and its limit (work_mem) is "
                            "1000 bytes.")
    assert "work_mem" in error.hint
    assert memory.held == 600  # the failed request took nothing
    memory.reserve("Sort", 400)  # exactly at the limit is allowed
    assert memory.held == memory.peak == 1000


def test_no_limit_counts_without_failing():
    memory = MemoryAccount()
    memory.reserve("Sort", 1 << 50)
    assert memory.peak == 1 << 50


def test_an_operator_keeps_its_output_and_releases_its_working_memory():
    memory = MemoryAccount(limit=10_000)
    child = Node()
    parent = Node(child)
    outer = memory.enter(parent)
    inner = memory.enter(child)
    memory.reserve("Hash Join (keys)", 3000)  # working memory
    memory.reserve_output("Hash Join (rows)", 2000)
    memory.leave(inner)
    assert memory.held == 2000  # the child's output, now the parent's input
    memory.reserve_output("Sort", 2000)  # a fresh copy: replaces the input when done
    assert memory.held == 4000
    memory.leave(outer)
    assert memory.held == 2000 and memory.peak == 5000


def test_an_operator_passing_columns_through_keeps_its_inputs_held():
    memory = MemoryAccount()
    child = Node()
    parent = Node(child)
    outer = memory.enter(parent)
    inner = memory.enter(child)
    memory.reserve_output("Sort", 1000)
    memory.leave(inner)
    memory.reserve_output("Project (computed)", 300, replaces_inputs=False)
    memory.leave(outer)
    assert memory.held == 1300


def test_a_subquery_result_is_not_carried_by_the_expression_that_ran_it():
    memory = MemoryAccount()
    outer_op, subplan = Node(), Node()  # the subplan is not one of the operator's children
    mark = memory.enter(outer_op)
    for _ in range(100):  # run once per outer row
        inner = memory.enter(subplan)
        memory.reserve_output("Sort", 1000)
        memory.leave(inner)
    assert memory.held == mark == 0
    memory.leave(mark)


def test_a_failed_operator_holds_nothing():
    memory = MemoryAccount()
    mark = memory.enter(Node())
    memory.reserve_output("Sort", 1000)
    memory.leave(mark, failed=True)
    assert memory.held == 0


def test_temporary_memory_is_released_after_its_step():
    memory = MemoryAccount(limit=1000)
    for _ in range(10):  # ten windows of 800 bytes each fit one after the other
        with memory.temporary("WindowAgg", 800):
            assert memory.held == 800
    assert memory.held == 0
    with pytest.raises(OutOfMemory), memory.temporary("WindowAgg", 1001):
        pass


@pytest.mark.parametrize("n, text", [(1 << 30, "1GB"), (64 << 20, "64MB"), (1536 << 10, "1536kB"),
                                     (1000, "1000 bytes"), (3 << 40, "3TB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_check_interrupts_names_the_cause():
    ctx = ExecContext()
    ctx.check_interrupts()  # nothing pending
    ctx.deadline = time.monotonic() - 1
    with pytest.raises(QueryCanceled, match="canceling statement due to statement timeout") as c:
        ctx.check_interrupts()
    assert c.value.sqlstate == "57014"
    ctx.cancel.set()
    with pytest.raises(QueryCanceled, match="canceling statement due to user request"):
        ctx.check_interrupts()
