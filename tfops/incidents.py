"""Drift incidents: one per stretch of drift of a stack, so the same drift alarms once. Pure.

A drift run that finds drift while no incident is open opens one; later drift runs that find the
same drifted set (the same resources, with the same attribute paths changed) only update it (last
seen, count); a different set updates it and mentions people again; the stack back in sync
resolves it, saying how: remediated by a run, fixed by a commit, or changed back outside Terraform.

Ignored changes are not drift here: the lifecycle sees `PlanSummary.drift` as the drift report
gives it. This module decides; `tfops.incident_tracker` records and announces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from tfops.models import PlanSummary, RunKind


class Step(StrEnum):
    """What one outcome does to a stack's incident."""

    NONE = "none"  # no drift and no open incident: nothing to do
    OPEN = "open"  # drift found, no incident open: a new one, with one message
    UPDATE = "update"  # the same drifted set again: the message is updated, nobody is paged
    REMENTION = "remention"  # a different drifted set: the message is updated and people mentioned
    RESOLVE = "resolve"  # back in sync: the incident is closed, the message says how


class Resolution(StrEnum):
    REMEDIATED = "remediated"  # a run applied the code over the drift
    FIXED_BY_COMMIT = "fixed_by_commit"  # a new commit made the code match (or replaced) the drift
    CHANGED_BACK = "changed_back"  # the drift went away outside Terraform


@dataclass(frozen=True)
class DriftedResource:
    address: str
    attributes: tuple[str, ...] = ()  # the changed attribute paths, sorted

    def label(self) -> str:
        return f"{self.address} ({', '.join(self.attributes)})" if self.attributes else self.address

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "attributes": list(self.attributes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftedResource:
        return cls(str(data["address"]), tuple(str(path) for path in data.get("attributes") or ()))


@dataclass(frozen=True)
class Incident:
    """A stack's drift from the first drift run that found it until the stack is back in sync."""

    id: int
    stack: str
    opened_at: datetime
    opened_run_id: int  # its message is this run's message
    last_seen_at: datetime
    last_run_id: int  # the last run that saw the drift (or resolved it)
    seen_count: int
    fingerprint: str
    resources: tuple[DriftedResource, ...]
    commit_sha: str | None  # the commit the drift was last seen against
    mentioned_run_id: int  # the run that last paged people: the opening run, or a changed set
    resolved_at: datetime | None = None
    resolved_run_id: int | None = None
    resolution: Resolution | None = None
    resolved_commit: str | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def lasted(self, now: datetime) -> float:
        """Seconds from opening to resolution (or to `now` while open)."""
        return max(0.0, ((self.resolved_at or now) - self.opened_at).total_seconds())

    def how(self) -> str:
        """How it was resolved, in words; empty while open."""
        if self.resolution is Resolution.REMEDIATED:
            return f"remediated by run #{self.resolved_run_id}"
        if self.resolution is Resolution.FIXED_BY_COMMIT:
            return f"fixed by commit {(self.resolved_commit or '')[:10]} (run #{self.resolved_run_id})"
        if self.resolution is Resolution.CHANGED_BACK:
            return "changed back outside Terraform"
        return ""


def incident_record(incident: Incident) -> dict[str, Any]:
    """An incident as plain data: what `tfops status --json`, `tfops drift --json` and the API show."""
    return {
        "id": incident.id,
        "since": incident.opened_at,
        "last_seen_at": incident.last_seen_at,
        "seen_count": incident.seen_count,
        "opened_run_id": incident.opened_run_id,
        "last_run_id": incident.last_run_id,
        "resources": [resource.to_dict() for resource in incident.resources],
        "resolved_at": incident.resolved_at,
        "resolution": incident.how() or None,
    }


@dataclass(frozen=True)
class DriftSeen:
    """What a drift run found: its drifted set, or nothing (`resources` empty: in sync)."""

    run_id: int
    at: datetime
    commit_sha: str | None
    resources: tuple[DriftedResource, ...]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.resources)


@dataclass(frozen=True)
class IncidentChange:
    """One step taken, with the incident as it is after it: what notifiers and metrics hear."""

    step: Step
    incident: Incident


def drifted_set(report: PlanSummary) -> tuple[DriftedResource, ...]:
    """The drifted resources of a drift report, with their changed attribute paths, sorted."""
    found = {
        change.address: DriftedResource(
            change.address, tuple(sorted({attribute.path for attribute in change.attributes}))
        )
        for change in report.drift
    }
    return tuple(found[address] for address in sorted(found))


def fingerprint(resources: Sequence[DriftedResource]) -> str:
    """Equal exactly for equal drifted sets: the same addresses with the same attribute paths."""
    canonical = json.dumps([resource.to_dict() for resource in resources], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def after_drift_check(incident: Incident | None, seen: DriftSeen) -> Step:
    """The step a drift run's finding takes on the stack's open incident (None: none open)."""
    if not seen.resources:
        return Step.RESOLVE if incident is not None else Step.NONE
    if incident is None:
        return Step.OPEN
    return Step.UPDATE if incident.fingerprint == seen.fingerprint else Step.REMENTION


def resolution_after_success(
    incident: Incident, *, kind: RunKind, applied: bool, commit_sha: str | None
) -> Resolution:
    """How a successful run that leaves the stack in sync ended the incident.

    A deploy of another commit than the one the drift was seen against fixed it by that commit
    (its code now matches, or replaced, what was changed); a run that applied the same code
    remediated it; a run that found nothing to apply at the same code saw it changed back.
    """
    if kind is RunKind.DEPLOY and commit_sha is not None and commit_sha != incident.commit_sha:
        return Resolution.FIXED_BY_COMMIT
    return Resolution.REMEDIATED if applied else Resolution.CHANGED_BACK


def format_duration(seconds: float) -> str:
    """A human duration, two units at most: "45s", "12m 5s", "3h 20m", "2d 4h"."""
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
