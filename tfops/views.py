"""How a run looks to whoever reads it: the CLI, the JSON API and the demo share these views.

Pure: data in, data out. One record of a run (the CLI prints it with `--json`; the API builds
its response models from it) and one table of colours (the CLI's tables and the demo's live view),
so the places that show a run cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tfops.models import FAILURE_STATUSES, DriftState, Run, RunStatus

if TYPE_CHECKING:
    from tfops.store.decisions import Decision
    from tfops.store.runs import RunEvent

Scrub = Callable[[str], str]


def unchanged(text: str) -> str:
    return text


def run_record(run: Run, scrub: Scrub = unchanged) -> dict[str, Any]:
    """A run's record as plain data; `scrub` rewrites its free texts (the trigger note and error).

    It holds host details (`log_path`) that only the host should see: the API shows the fields of
    its own response models and so leaves them out.
    """
    return {
        "id": run.id,
        "stack": run.stack,
        "kind": run.kind.value,
        "status": run.status.value,
        "reason": run.reason.value if run.reason is not None else None,
        "commit_sha": run.commit_sha,
        "trigger": run.trigger.to_dict() | {"note": scrub(run.trigger.note)},
        "plan_sha256": run.plan_sha256,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "exit_code": run.exit_code,
        "error": scrub(run.error) if run.error is not None else None,
        "log_path": run.log_path,
        "decided_by": run.decided_by,
    }


def run_detail_record(run: Run, events: Iterable[RunEvent], decisions: Iterable[Decision]) -> dict[str, Any]:
    """What `tfops show --json` prints: the run's record, its summary, events and decisions.
    Here, not with the tables, so that printing JSON never imports rich."""
    return run_record(run) | {
        "summary": run.summary,
        "events": [_event_dict(event) for event in events],
        "decisions": [_decision_dict(decision) for decision in decisions],
    }


def _event_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "at": event.at,
        "from": event.from_status.value if event.from_status else None,
        "to": event.to_status.value,
        "message": event.message,
    }


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "decision": decision.decision.value,
        "outcome": decision.outcome.value,
        "actor_id": decision.actor_id,
        "actor_name": decision.actor_name,
        "source": decision.source.value,
        "at": decision.at,
        "commit_sha": decision.commit_sha,
        "plan_sha256": decision.plan_sha256,
        "reason": decision.reason,
    }


# Colours are rich colour names. Every failure is red; the few good or pending outcomes have their
# colour; every other status (queued, planning, awaiting approval, ...) is shown plain.
_STATUS_COLOURS = {
    RunStatus.APPLIED: "green",
    RunStatus.NO_CHANGES: "green",
    RunStatus.PLANNED: "yellow",
    RunStatus.BLOCKED: "magenta",
}

_DRIFT_COLOURS = {
    DriftState.IN_SYNC.value: "green",
    DriftState.DRIFTED.value: "yellow",
    DriftState.PENDING.value: "cyan",
}


def status_colour(status: RunStatus) -> str | None:
    """Every failure is red; the few good or pending outcomes have their colour."""
    return "red" if status in FAILURE_STATUSES else _STATUS_COLOURS.get(status)


def status_markup(status: RunStatus) -> str:
    """The status as rich markup, in its colour if it has one."""
    colour = status_colour(status)
    return f"[{colour}]{status.value}[/{colour}]" if colour else status.value


def drift_markup(drift: str) -> str:
    """A drift state (or "refused", "unknown") as rich markup; states without a colour are dim."""
    colour = _DRIFT_COLOURS.get(drift, "dim")
    return f"[{colour}]{drift}[/{colour}]"
