"""Stack order (`depends_on`): which stacks go first, and whether a deploy may start now.

Pure functions of their arguments: no store, no git, no Terraform. The configuration uses
`find_cycle` and `unknown_upstreams` to refuse a broken order, discovery uses `refuse_broken_order`
for the names only the checkout knows, the poller `topological` to queue a commit's deploys
upstreams first, and the run queue `admit` to hold a deploy until its upstreams' deploys ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tfops.models import Run, RunKind, RunStatus

# stack name -> the names of the stacks it depends on (its direct upstreams)
Graph = Mapping[str, Sequence[str]]

# An upstream deploy that ended in one of these did not put the upstream's code in place: a
# downstream planned now would read stale outputs.
_NOT_LANDED = frozenset(
    {
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.INTERRUPTED,
        RunStatus.REJECTED,
        RunStatus.EXPIRED,
        RunStatus.BLOCKED,
    }
)
_VERBS = {
    RunStatus.FAILED: "failed",
    RunStatus.TIMED_OUT: "timed out",
    RunStatus.INTERRUPTED: "was interrupted",
    RunStatus.REJECTED: "was rejected",
    RunStatus.EXPIRED: "expired unapproved",
    RunStatus.BLOCKED: "was blocked",
    RunStatus.PLANNED: "was only planned (not applied)",
}


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle of `graph` as a path that starts and ends at the same stack (`[a, b, a]`), or None.
    Names the graph does not hold are left to `unknown_upstreams`."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        # Iterative depth-first search: a long chain must not hit Python's recursion limit.
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if child in on_path:
                return [*path[path.index(child) :], child]
            if child in done or child not in graph:
                continue
            stack.append((child, iter(sorted(graph[child]))))
            path.append(child)
            on_path.add(child)
    return None


def unknown_upstreams(graph: Graph, known: Iterable[str]) -> dict[str, list[str]]:
    """For each stack naming upstreams that are not in `known`: those names."""
    names = set(known)
    found = {name: [up for up in ups if up not in names] for name, ups in graph.items()}
    return {name: missing for name, missing in found.items() if missing}


def ancestors(graph: Graph, name: str) -> list[str]:
    """Every stack `name` depends on, directly or through others, upstream-most first."""
    return topological(graph, _ancestor_set(graph, name))


def _ancestor_set(graph: Graph, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(name, ()))
    while todo:
        upstream = todo.pop()
        if upstream not in seen and upstream != name:
            seen.add(upstream)
            todo.extend(graph.get(upstream, ()))
    return seen


def topological(graph: Graph, names: Iterable[str]) -> list[str]:
    """`names` with every stack after the stacks it depends on, directly or through stacks not
    among `names` (a chain a -> b -> c puts `c` after `a`); ties by name. A cycle, which the
    configuration and discovery refuse, does not loop here: its stacks come last, by name."""
    remaining = sorted(set(names))
    wanted = set(remaining)
    before = {name: _ancestor_set(graph, name) & wanted for name in remaining}
    placed: list[str] = []
    while remaining:
        done = set(placed)
        ready = [name for name in remaining if before[name] <= done] or remaining[:1]
        placed.extend(ready)
        taken = set(ready)
        remaining = [name for name in remaining if name not in taken]
    return placed


@dataclass(frozen=True)
class BrokenOrder:
    """A stack left out at a head because of its `depends_on` (see tfops.stacks.Refusal)."""

    name: str
    cycle: bool  # False: an upstream that is not a stack at this head
    detail: str


def refuse_broken_order(graph: Graph) -> list[BrokenOrder]:
    """The stacks of `graph` (the stacks found at a head) whose order cannot be kept: those naming
    an upstream that is not a stack here, those on a cycle, and, in turn, every stack depending
    on one of those (it would otherwise go without its upstream)."""
    live = {name: list(ups) for name, ups in graph.items()}
    broken: list[BrokenOrder] = []
    while True:
        missing = unknown_upstreams(live, live)
        for name, names in sorted(missing.items()):
            detail = f"depends_on names {', '.join(map(repr, names))}, which is not a stack at this head"
            broken.append(BrokenOrder(name, cycle=False, detail=detail))
        cycle = find_cycle(live) if not missing else None
        if cycle is not None:
            for name in sorted(set(cycle)):
                detail = f"depends_on forms a cycle: {' -> '.join(cycle)}"
                broken.append(BrokenOrder(name, cycle=True, detail=detail))
        out = set(missing) | set(cycle or ())
        if not out:
            return broken
        live = {name: ups for name, ups in live.items() if name not in out}


class Verdict(StrEnum):
    GO = "go"  # every upstream's deploy ended with its code in place (or it has none)
    WAIT = "wait"  # an upstream deploy is still open: queued, planning, awaiting approval, applying
    BLOCKED = "blocked"  # an upstream deploy ended without applying: this one must not go


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    reason: str = ""  # for WAIT and BLOCKED: what it waits for, what stopped it (names the run)
    upstream_run: int | None = None


def admit(run: Run, upstreams: Sequence[str], deploys: Mapping[str, Sequence[Run]]) -> Admission:
    """May deploy `run` start? `upstreams`: its stack's ancestors, upstream-most first;
    `deploys`: each upstream's deploy runs (any order). Only deploys are ordered."""
    if run.kind is not RunKind.DEPLOY:
        return Admission(Verdict.GO)
    for upstream in upstreams:
        open_runs = sorted(r.id for r in deploys.get(upstream, ()) if not r.status.is_terminal)
        if open_runs:
            found = next(r for r in deploys[upstream] if r.id == open_runs[0])
            # Its status only when people must act: a message updated at each step would be noise.
            waits = ", awaiting approval" if found.status is RunStatus.AWAITING_APPROVAL else ""
            why = f"waiting for upstream {upstream} (run {found.id}{waits})"
            return Admission(Verdict.WAIT, why, found.id)
    for upstream in upstreams:
        landed = _newest_outcome(run, deploys.get(upstream, ()))
        if landed is not None:
            return Admission(
                Verdict.BLOCKED, f"upstream {upstream} {_VERBS[landed.status]} in run {landed.id}", landed.id
            )
    return Admission(Verdict.GO)


def _newest_outcome(run: Run, upstream_runs: Iterable[Run]) -> Run | None:
    """The upstream's newest deploy if it left the upstream's code not in place, else None.

    Superseded runs are passed over (a newer commit's run replaced them). A `planned` run (the
    upstream's `on_merge: plan`) stops only the deploy of the same commit: the upstream's change
    of that commit was not applied by tfops; older ones may have been applied by hand."""
    ended = sorted((r for r in upstream_runs if r.status is not RunStatus.SUPERSEDED), key=lambda r: r.id)
    if not ended:
        return None
    newest = ended[-1]
    if newest.status in _NOT_LANDED:
        return newest
    if newest.status is RunStatus.PLANNED and newest.commit_sha == run.commit_sha:
        return newest
    return None
