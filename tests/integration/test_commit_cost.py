"""What a new commit costs the poller: counted in store queries and `git diff` processes, not timed.

A commit to one stack of a large estate must cost what it costs in a small one; a commit to a
shared module deploys exactly the stacks that call it; the answers carried from one head to the
next must stay the answers a fresh look would give (a revert deploys nothing).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from estate import build_estate, stack_code, stack_name
from sqlalchemy import event


@contextmanager
def counting_queries(store):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def _poll_after_one_stack_commit(tmp_path, size):
    estate = build_estate(tmp_path, size)
    assert estate.poller.poll() == []  # every stack is applied at the head: nothing to do
    estate.commit("one stack", {f"stacks/{stack_name(size - 1)}/main.tf": stack_code(size - 1, 2)})
    diffs_before = estate.git.diffs
    with counting_queries(estate.store) as statements:
        queued = estate.poller.poll()
    return queued, statements, estate.git.diffs - diffs_before


def test_a_commit_to_one_stack_costs_the_same_queries_and_one_diff_in_a_300_stack_estate(tmp_path):
    small_queued, small_statements, small_diffs = _poll_after_one_stack_commit(tmp_path / "s", 30)
    large_queued, large_statements, large_diffs = _poll_after_one_stack_commit(tmp_path / "l", 300)

    assert [run.stack for run in small_queued] == [stack_name(29)]
    assert [run.stack for run in large_queued] == [stack_name(299)]
    assert large_diffs == 1 and small_diffs == 1
    assert len(large_statements) == len(small_statements), "queries must not grow with the stack count"
    assert len(large_statements) < 40


def test_a_commit_to_a_shared_module_deploys_exactly_its_callers_with_one_diff(tmp_path):
    estate = build_estate(tmp_path, 300)
    estate.poller.poll()
    estate.commit("shared module", {"modules/shared/main.tf": 'variable "x" {\n  default = 2\n}\n'})
    diffs_before = estate.git.diffs

    queued = estate.poller.poll()

    assert estate.queued_stacks(queued) == [stack_name(i) for i in range(100)]
    assert estate.git.diffs - diffs_before == 1


def test_a_revert_to_the_applied_code_deploys_nothing_even_after_answers_were_carried_over(tmp_path):
    estate = build_estate(tmp_path, 30)
    estate.poller.poll()
    path = f"stacks/{stack_name(20)}/main.tf"
    estate.commit("change", {path: stack_code(20, 2)})
    assert estate.queued_stacks(estate.poller.poll()) == [stack_name(20)]

    # The deploy above is never applied (still queued): its code goes back to the applied one.
    estate.commit("revert", {path: stack_code(20, 1)})
    assert estate.poller.poll() == []

    estate.commit("other", {f"stacks/{stack_name(3)}/main.tf": stack_code(3, 2)})
    assert estate.queued_stacks(estate.poller.poll()) == [stack_name(3)]


def test_a_new_stack_folder_is_discovered_and_deployed_while_edits_reuse_the_discovery(tmp_path):
    estate = build_estate(tmp_path, 30)
    estate.poller.poll()
    assert estate.registry.discoveries == 1

    estate.commit("edit", {f"stacks/{stack_name(1)}/main.tf": stack_code(1, 2)})
    edited = estate.poller.poll()
    assert estate.queued_stacks(edited) == [stack_name(1)]
    estate.apply(edited)
    assert estate.registry.discoveries == 1, "an edit changes no folder: the stacks are those found"

    estate.commit("new stack", {"stacks/fresh/main.tf": "locals {}\n"})
    assert estate.queued_stacks(estate.poller.poll()) == ["fresh"]
    assert estate.registry.discoveries == 2
    assert estate.store.get_stack("fresh") is not None


@pytest.mark.parametrize("change", ["module call", "module removed"])
def test_a_stack_that_starts_or_stops_calling_a_module_follows_it_at_the_next_commit(tmp_path, change):
    estate = build_estate(tmp_path, 120)
    estate.poller.poll()
    caller = f"stacks/{stack_name(110)}/main.tf"
    calling = stack_code(110) + 'module "m" {\n  source = "../../modules/shared"\n}\n'
    estate.commit("call the module", {caller: calling})
    called = estate.poller.poll()
    assert estate.queued_stacks(called) == [stack_name(110)]
    estate.apply(called)
    if change == "module removed":
        estate.commit("stop calling", {caller: stack_code(110)})
        stopped = estate.poller.poll()
        assert estate.queued_stacks(stopped) == [stack_name(110)]
        estate.apply(stopped)

    estate.commit("shared module", {"modules/shared/main.tf": 'variable "x" {\n  default = 3\n}\n'})
    expected = [stack_name(i) for i in range(100)]
    if change == "module call":
        expected.append(stack_name(110))
    assert estate.queued_stacks(estate.poller.poll()) == expected


def test_a_restarted_poller_decides_the_next_commit_with_one_diff_however_many_commits_were_applied(tmp_path):
    estate = build_estate(tmp_path, 30)
    estate.poller.poll()
    for k in range(5):  # five stacks, each applied at its own commit
        estate.commit(f"change {k}", {f"stacks/{stack_name(k)}/main.tf": stack_code(k, 2)})
        estate.apply(estate.poller.poll())
    estate.commit("after the restart", {f"stacks/{stack_name(20)}/main.tf": stack_code(20, 2)})

    restarted = estate.restarted_poller()
    queued = restarted.poll()

    assert estate.queued_stacks(queued) == [stack_name(20)]
    assert restarted.git.diffs == 1, "the previous process's answers at its last head are reused"
