"""What the JSON API answers: its response models, and the pure functions that fill them.

A run's fields come from the one shared record (`tfops.views.run_record`), the same the CLI prints
with `--json`; a model takes only the fields it declares, so host details such as `log_path`
never leave (see tfops/web/api.py).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tfops.incidents import Incident, incident_record
from tfops.models import Run, Stack, StackState
from tfops.store.store import Decision, RunEvent
from tfops.terraform.plan import summary_from_dict
from tfops.views import Scrub, run_record, unchanged


class Policy(BaseModel):
    on_merge: str
    on_drift: str
    drift_interval: float = Field(description="seconds between drift checks; 0 means none")
    approvals_required: int


class LastRun(BaseModel):
    id: int
    kind: str
    status: str
    finished_at: datetime | None


class DriftedResourceView(BaseModel):
    address: str
    attributes: list[str] = Field(description="the changed attribute paths")


class IncidentView(BaseModel):
    """A stack's open drift incident (tfops.incidents)."""

    id: int
    since: datetime = Field(description="when the drift run that opened it started")
    last_seen_at: datetime
    seen_count: int = Field(description="drift runs that found it")
    opened_run_id: int
    last_run_id: int
    resources: list[DriftedResourceView]


class StackView(BaseModel):
    name: str
    path: str
    configured: bool = Field(description="false for a stack that left the configuration (history only)")
    policy: Policy | None = Field(description="null when the stack is no longer configured")
    head_sha: str | None
    applied_sha: str | None
    drift: str
    drift_checked_at: datetime | None
    last_run: LastRun | None
    next_check: datetime | None = Field(description="when the daemon's scheduler next checks for drift")
    incident: IncidentView | None = Field(default=None, description="the open drift incident, if any")


class TriggerView(BaseModel):
    source: str
    actor: str
    note: str


class Counts(BaseModel):
    create: int
    update: int
    delete: int
    replace: int


class RunView(BaseModel):
    id: int
    stack: str
    kind: str
    status: str
    reason: str | None = Field(description="why the run is in its status, in one word (RunReason)")
    commit_sha: str | None
    plan_sha256: str | None
    trigger: TriggerView
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    decided_by: str | None
    counts: Counts | None = Field(description="planned changes by action; null before a plan")


class EventView(BaseModel):
    at: datetime
    from_status: str | None
    to_status: str
    reason: str | None = Field(description="why, in one word (RunReason); the message is the detail")
    message: str


class DecisionView(BaseModel):
    decision: str
    actor_id: str
    actor_name: str | None
    source: str
    outcome: str
    reason: str | None
    at: datetime


class RunDetail(RunView):
    exit_code: int | None
    error: str | None = Field(description="what went wrong, redacted")
    summary: dict[str, Any] | None = Field(description="the redacted plan summary as stored")
    events: list[EventView]
    decisions: list[DecisionView]


class QueueAnswer(BaseModel):
    queued: bool
    stack: str
    kind: str
    run_id: int | None = None
    status: str | None = None
    reason: str | None = Field(default=None, description="why no run was queued")


# --------------------------------------------------------------------------- views (pure)


def stack_view(
    name: str,
    state: StackState | None,
    stack: Stack | None,
    last: Run | None,
    next_check: datetime | None,
    incident: Incident | None = None,
) -> StackView:
    """One stack as the API shows it, from what the store remembers and what is configured."""
    policy = None
    if stack is not None:
        policy = Policy(
            on_merge=stack.on_merge.value,
            on_drift=stack.on_drift.value,
            drift_interval=stack.drift_interval,
            approvals_required=stack.approvals_required,
        )
    return StackView(
        name=name,
        path=stack.path if stack is not None else state.path if state is not None else "",
        configured=stack is not None,
        policy=policy,
        head_sha=state.head_sha if state else None,
        applied_sha=state.applied_sha if state else None,
        drift=state.drift.value if state else "unknown",
        drift_checked_at=state.drift_checked_at if state else None,
        last_run=LastRun(
            id=last.id, kind=last.kind.value, status=last.status.value, finished_at=last.finished_at
        )
        if last
        else None,
        next_check=next_check,
        incident=IncidentView.model_validate(incident_record(incident)) if incident is not None else None,
    )


def run_view(run: Run, scrub: Scrub = unchanged) -> RunView:
    return RunView(**_run_fields(run, scrub, RunView))


def run_detail(
    run: Run, events: Sequence[RunEvent], decisions: Sequence[Decision], scrub: Scrub = unchanged
) -> RunDetail:
    """One run for `GET /api/runs/{id}`; `scrub` is applied to every free text the run recorded."""
    return RunDetail(
        **_run_fields(run, scrub, RunDetail),
        summary=run.summary,
        events=[
            EventView(
                at=event.at,
                from_status=event.from_status.value if event.from_status else None,
                to_status=event.to_status.value,
                reason=event.reason.value if event.reason is not None else None,
                message=scrub(event.message),
            )
            for event in events
        ],
        decisions=[
            DecisionView(
                decision=decision.decision.value,
                actor_id=decision.actor_id,
                actor_name=decision.actor_name,
                source=decision.source.value,
                outcome=decision.outcome.value,
                reason=decision.reason,
                at=decision.at,
            )
            for decision in decisions
        ],
    )


def _run_fields(run: Run, scrub: Scrub, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` that the run's shared record holds, plus its planned changes."""
    record = run_record(run, scrub)
    record["trigger"] = TriggerView(**_declared(record["trigger"], TriggerView))
    record["counts"] = Counts(**summary_from_dict(run.summary).counts) if run.summary is not None else None
    return _declared(record, model)


def _declared(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    # Only what the model declares: a field the record gains later is not shown until a model has it.
    return {name: data[name] for name in model.model_fields if name in data}
