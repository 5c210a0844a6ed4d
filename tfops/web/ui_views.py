"""What the status page shows, as plain data: store records in, view models out. Pure.

The templates only lay these out; every decision (what counts as failed, which actions come
first, how a value is cut, how long ago something was) is made here, where unit tests see it.
Free texts a run recorded go through `scrub` (host paths), as the API does it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tfops.attribution import ResourceAttribution, render_who
from tfops.incidents import Incident
from tfops.models import FAILURE_STATUSES, Run, RunStatus, Stack, StackState
from tfops.store.decisions import Decision
from tfops.store.runs import RunEvent
from tfops.store.ui_queries import LastRun
from tfops.terraform.summary import summary_from_dict
from tfops.views import Scrub, unchanged
from tfops.web.ui_commits import CommitView

FILTERS = ("drifted", "failed", "awaiting_approval")
PER_PAGE = 100
VALUE_CHARS = 200  # a drifted attribute's value is cut here: the page is a glance, the plan has all
# Destruction first, so nobody misses it at the end of a long list (as tfops.terraform.plan orders).
ACTION_ORDER = ("replace", "delete", "create", "update")


@dataclass(frozen=True)
class LastRunView:
    id: int
    kind: str
    status: str
    at: datetime | None  # when it finished, or was created while it has not
    failed: bool


@dataclass(frozen=True)
class StackRow:
    name: str
    path: str
    configured: bool
    drift: str
    drift_since: datetime | None  # the drift incident's start while drifted; else the last check
    head: CommitView | None
    head_sha: str | None
    applied: CommitView | None
    applied_sha: str | None
    behind: int | None
    last_run: LastRunView | None
    next_check: datetime | None
    on_merge: str | None
    on_drift: str | None

    @property
    def states(self) -> frozenset[str]:
        """The filters this row passes."""
        found = set()
        if self.drift == "drifted":
            found.add("drifted")
        if self.last_run is not None and self.last_run.failed:
            found.add("failed")
        if self.last_run is not None and self.last_run.status == RunStatus.AWAITING_APPROVAL.value:
            found.add("awaiting_approval")
        return frozenset(found)


@dataclass(frozen=True)
class Overview:
    rows: list[StackRow]  # this page's
    counts: dict[str, int]  # over every stack: total, in_sync, drifted, failed, awaiting_approval
    state: str | None
    query: str
    page: int
    pages: int
    matching: int


def stack_rows(
    states: Sequence[tuple[StackState, Run | LastRun | None]],
    configured: Mapping[str, Stack],
    incidents: Mapping[str, Incident],
    next_check: Callable[[str], datetime | None],
) -> list[StackRow]:
    """One row per recorded or configured stack, by name (as the API lists them; a configured stack
    the poller has not recorded yet shows as unknown); `with_commits` adds the commits shown."""
    recorded = {state.name for state, _ in states}
    unrecorded = [
        (StackState(name, stack.path), None) for name, stack in configured.items() if name not in recorded
    ]
    rows = []
    for state, last in sorted([*states, *unrecorded], key=lambda pair: pair[0].name):
        stack = configured.get(state.name)
        incident = incidents.get(state.name)
        rows.append(
            StackRow(
                name=state.name,
                path=state.path,
                configured=stack is not None,
                drift=state.drift.value,
                drift_since=incident.opened_at if incident is not None else state.drift_checked_at,
                head=None,
                head_sha=state.head_sha,
                applied=None,
                applied_sha=state.applied_sha,
                behind=None,
                last_run=last_run_view(last),
                next_check=next_check(state.name) if stack is not None else None,
                on_merge=stack.on_merge.value if stack is not None else None,
                on_drift=stack.on_drift.value if stack is not None else None,
            )
        )
    return rows


def with_commits(
    rows: Iterable[StackRow],
    commit: Callable[[str | None], CommitView | None],
    behind: Callable[[str | None, str | None, str], int | None],
) -> list[StackRow]:
    """The rows with their commits looked up: only for the rows on the page."""
    return [
        replace(
            row,
            head=commit(row.head_sha),
            applied=commit(row.applied_sha),
            behind=behind(row.applied_sha, row.head_sha, row.path),
        )
        for row in rows
    ]


def last_run_view(run: Run | LastRun | None) -> LastRunView | None:
    if run is None:
        return None
    return LastRunView(
        id=run.id,
        kind=run.kind.value,
        status=run.status.value,
        at=run.finished_at or run.started_at or run.created_at,
        failed=run.status in FAILURE_STATUSES,
    )


def overview(rows: Sequence[StackRow], *, state: str | None, query: str, page: int) -> Overview:
    """The rows that pass the filter and the search, one page of them, and the counts of all."""
    counts = {
        "total": len(rows),
        "in_sync": sum(1 for row in rows if row.drift == "in_sync"),
        **{name: sum(1 for row in rows if name in row.states) for name in FILTERS},
    }
    state = state if state in FILTERS else None
    needle = query.strip().lower()
    matching = [
        row
        for row in rows
        if (state is None or state in row.states)
        and (not needle or needle in row.name.lower() or needle in row.path.lower())
    ]
    pages = max(1, -(-len(matching) // PER_PAGE))
    page = min(max(1, page), pages)
    shown = list(matching[(page - 1) * PER_PAGE : page * PER_PAGE])
    return Overview(shown, counts, state, query.strip(), page, pages, len(matching))


# --------------------------------------------------------------------------- the run page


@dataclass(frozen=True)
class AttributeView:
    path: str
    before: str
    after: str


@dataclass(frozen=True)
class ResourceView:
    address: str
    action: str
    attributes: list[AttributeView] = field(default_factory=list)
    who: str | None = None  # who changed it, from CloudTrail (drift of stacks with aws.attribution)


@dataclass(frozen=True)
class PlanView:
    groups: list[tuple[str, list[ResourceView]]]  # by action, replaces and deletes first
    drift: list[ResourceView]
    outputs: list[str]
    ignored: list[ResourceView]
    pending_code: bool
    errored: bool


@dataclass(frozen=True)
class EventLine:
    at: datetime
    status: str
    reason: str | None
    message: str


@dataclass(frozen=True)
class DecisionLine:
    who: str
    decision: str
    outcome: str
    via: str
    at: datetime
    reason: str | None


def plan_view(summary: Mapping[str, Any] | None) -> PlanView | None:
    if summary is None:
        return None
    plan = summary_from_dict(summary)
    by_action: dict[str, list[ResourceView]] = {}
    for change in plan.changes:
        by_action.setdefault(change.action, []).append(_resource(change))
    order = [action for action in ACTION_ORDER if action in by_action]
    order += sorted(action for action in by_action if action not in ACTION_ORDER)
    return PlanView(
        groups=[(action, by_action[action]) for action in order],
        drift=[_with_who(_resource(change), plan.attribution_of(change.address)) for change in plan.drift],
        outputs=list(plan.output_changes),
        ignored=[_resource(change) for change in plan.ignored],
        pending_code=plan.pending_code,
        errored=plan.errored,
    )


def _resource(change: Any) -> ResourceView:
    return ResourceView(
        address=change.address,
        action=change.action,
        attributes=[
            AttributeView(item.path, show_value(item.before), show_value(item.after))
            for item in change.attributes
        ],
    )


def _with_who(resource: ResourceView, found: ResourceAttribution | None) -> ResourceView:
    if found is None:
        return resource
    return replace(resource, who=render_who(found, [attr.path for attr in resource.attributes]))


def show_value(value: Any) -> str:
    """A (redacted) attribute value as one short line: JSON, cut at VALUE_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def timeline(events: Iterable[RunEvent], scrub: Scrub = unchanged) -> list[EventLine]:
    return [
        EventLine(
            at=event.at,
            status=event.to_status.value,
            reason=event.reason.value if event.reason is not None else None,
            message=scrub(event.message),
        )
        for event in events
    ]


def decision_lines(decisions: Iterable[Decision]) -> list[DecisionLine]:
    return [
        DecisionLine(
            who=decision.actor_name or decision.actor_id,
            decision=decision.decision.value,
            outcome=decision.outcome.value,
            via=decision.source.value,
            at=decision.at,
            reason=decision.reason,
        )
        for decision in decisions
    ]


def log_tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


# tfops' own header line in a run log, `$ /path/to/terraform plan ...`: the program by its name.
_COMMAND_LINE = re.compile(r"^\$ \S*/(?=[^/\s]+(\s|$))", re.MULTILINE)


def hide_program_paths(text: str) -> str:
    """A run log's command lines name the program without the folder it is installed in."""
    return _COMMAND_LINE.sub("$ ", text)


# --------------------------------------------------------------------------- time, as people say it


def ago(at: datetime | None, now: datetime) -> str:
    """ "3m ago", "in 2h"; "—" for no time."""
    if at is None:
        return "—"
    seconds = (now - at).total_seconds()
    text = _span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return _span(max(0.0, (end - start).total_seconds()))


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d"


def scrubbed_error(run: Run, scrub: Scrub) -> str | None:
    return scrub(run.error) if run.error else None
