"""Change guards: limits a plan must stay within to be applied without a person. Pure.

A guard never applies anything and never lowers the bar set by `on_merge`/`on_drift`: it only
turns an apply into a question (or, when nobody can answer, a `blocked` run). `policy.decide`
calls `tripped` for every plan it would apply or ask about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tfops.drift_ignore import glob_match
from tfops.models import PlanSummary, ResourceChange, RunReason, StackGuards

DESTRUCTIVE = ("delete", "replace")
ADDRESSES_SHOWN = 5


@dataclass(frozen=True)
class GuardTrip:
    """One guard the plan exceeds: which (as a reason) and why, for people."""

    why: RunReason
    message: str


def tripped(guards: StackGuards, summary: PlanSummary) -> list[GuardTrip]:
    """Every guard the plan exceeds, most specific first (protected addresses, then the limits).

    Counts every change the saved plan holds, the ones that would only revert ignored drift
    included: applying the plan applies those too."""
    if not guards.active:
        return []
    changes = _planned(summary)
    found = []
    protected = [
        change.address
        for change in changes
        if change.action in DESTRUCTIVE
        and any(glob_match(pattern, change.address) for pattern in guards.protect)
    ]
    if protected:
        found.append(
            GuardTrip(
                RunReason.GUARD_PROTECTED,
                f"guard protect: the plan would destroy or replace protected {_addresses(protected)}",
            )
        )
    for action, limit, why in (
        ("delete", guards.max_destroy, RunReason.GUARD_MAX_DESTROY),
        ("replace", guards.max_replace, RunReason.GUARD_MAX_REPLACE),
    ):
        hit = [change.address for change in changes if change.action == action]
        if limit is not None and len(hit) > limit:
            name = "max_destroy" if action == "delete" else "max_replace"
            verb = "destroy" if action == "delete" else "replace"
            found.append(
                GuardTrip(
                    why, f"guard {name}: the plan would {verb} {len(hit)} (limit {limit}): {_addresses(hit)}"
                )
            )
    return found


def _planned(summary: PlanSummary) -> list[ResourceChange]:
    """Each resource the plan changes, once (an ignored part may repeat a kept one's address)."""
    seen: dict[str, ResourceChange] = {}
    for change in (*summary.changes, *summary.ignored_changes):
        seen.setdefault(change.address, change)
    return list(seen.values())


def _addresses(addresses: Iterable[str]) -> str:
    shown = list(addresses)
    more = f" and {len(shown) - ADDRESSES_SHOWN} more" if len(shown) > ADDRESSES_SHOWN else ""
    return ", ".join(shown[:ADDRESSES_SHOWN]) + more


def describe(trips: list[GuardTrip]) -> str:
    return "; ".join(trip.message for trip in trips)
