"""What `tfops status` and `tfops check-config` read: one row per stack, and the refused stacks.

A row comes from the store (heads, drift, last run), from what the daemon's poller recorded in the
store's meta table (whether the head's code is applied, which stacks it refused) and from the
config entries that give the recorded stacks (their drift intervals and order: the reader view,
tfops.readview). The CLI never runs git here, nor walks the checkout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfops.ha.shown_role import PRESUMED_DEAD, shown_role
from tfops.models import TERMINAL_STATUSES, RunKind, RunStatus
from tfops.ordering import Verdict, admit, ancestors
from tfops.readview import ReaderView, recorded_rules

if TYPE_CHECKING:
    from tfops.config import Settings
    from tfops.models import Run, StackState
    from tfops.stacks import Discovery
    from tfops.store import Store

# The keys of a status row, in the order `tfops status --json` prints them (then "refused").
STATUS_KEYS = (
    *("name", "path", "head_sha", "applied_sha", "head_code_applied"),
    *("drift", "drift_checked_at", "last_run", "next_check", "incident", "depends_on", "waiting_for"),
)


# The meta keys the poller records (tfops.poller): named again here, not imported, since importing
# the poller would bring in the scheduler, APScheduler and Git for a read-only command. A test
# checks that the two agree.
HEAD_CODE_APPLIED = "head_code_applied"
OPEN_STATUSES = frozenset(RunStatus) - TERMINAL_STATUSES
REFUSED_STACKS_META = "refused_stacks"


def status_rows(store: Store, view: ReaderView) -> list[dict[str, Any]]:
    """One row per stack the store knows: a fixed number of queries whatever their number."""
    overviews = store.stack_overview()
    # Each stack's policy from the config entry that gave it, matched on the recorded paths: no
    # walk of the checkout, so a thousand stacks answer at once (the poller recorded them).
    recorded = [(overview.state.name, overview.state.path) for overview in overviews]
    stacks = recorded_rules(view, recorded)
    intervals = {name: stack.drift_interval for name, stack in stacks.items()}
    order = {name: stack.depends_on for name, stack in stacks.items()}
    waiting = _waiting_for(store, order)
    head_code = store.get_meta(HEAD_CODE_APPLIED) or {}
    incidents = open_incidents(store)
    rows = []
    for overview in overviews:
        state, last = overview.state, overview.last_run
        interval = intervals.get(state.name)
        next_check = None
        if interval:
            base = state.drift_checked_at or datetime.now(UTC)
            next_check = base + timedelta(seconds=interval)
        rows.append(
            {
                "name": state.name,
                "path": state.path,
                "head_sha": state.head_sha,
                "applied_sha": state.applied_sha,
                "head_code_applied": _head_code_applied(state, head_code),
                "drift": state.drift.value,
                "drift_checked_at": state.drift_checked_at,
                "last_run": {"id": last.id, "kind": last.kind.value, "status": last.status.value}
                if last
                else None,
                "next_check": next_check,
                "incident": incidents.get(state.name),
                "depends_on": list(order.get(state.name, ())),
                "waiting_for": waiting.get(state.name),
            }
        )
    return rows


def drift_records(store: Store, runs: list[Run]) -> list[dict[str, Any]]:
    """`tfops drift --json`: each run's record with its stack's drift incident: the open one, or
    the one this run resolved (null when there is neither)."""
    from tfops.incidents import incident_record
    from tfops.views import run_record

    records = []
    for run in runs:
        incident = store.open_incident(run.stack) or store.incident_of_run(run.stack, run.id)
        found = incident_record(incident) if incident is not None else None
        records.append(run_record(run) | {"summary": run.summary, "incident": found})
    return records


def open_incidents(store: Store) -> dict[str, dict[str, Any]]:
    """Each stack's open drift incident, as plain data (one query for every stack)."""
    from tfops.incidents import incident_record

    return {incident.stack: incident_record(incident) for incident in store.open_incidents()}


def _waiting_for(store: Store, order: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """What each stack's queued deploy waits for (`depends_on`), as the queue says it: one read of
    the open runs, and none when no stack has an upstream."""
    if not any(order.values()):
        return {}
    deploys: dict[str, list[Run]] = {}
    for run in store.runs_with_status(OPEN_STATUSES):
        if run.kind is RunKind.DEPLOY:
            deploys.setdefault(run.stack, []).append(run)
    waiting = {}
    for name, runs in deploys.items():
        queued = [run for run in runs if run.status is RunStatus.QUEUED]
        upstreams = ancestors(order, name) if queued and order.get(name) else []
        verdict = admit(queued[0], upstreams, deploys) if upstreams else None
        if verdict is not None and verdict.verdict is Verdict.WAIT:
            waiting[name] = verdict.reason
    return waiting


def _head_code_applied(state: StackState, record: dict[str, Any]) -> bool | None:
    """Is the stack's code at the head the code it was applied with? From what the poller
    `record`ed for its last head (no git diff here); None when it recorded nothing for this head."""
    if state.head_sha is None or state.applied_sha is None:
        return False if state.head_sha else None
    if state.head_sha == state.applied_sha:
        return True
    if record.get("head") != state.head_sha:
        return None
    return state.name in record.get("stacks", ())


def _discover_in_checkout(settings: Settings) -> Discovery | None:
    """The stacks (and refusals) in the daemon's checkout, as of its last fetch; None without one."""
    if not (Path(settings.checkout_dir) / ".git").exists():
        return None
    from tfops.stacks import discover

    return discover(Path(settings.checkout_dir), settings.stacks, settings.defaults)


def refused_in_checkout(settings: Settings) -> list[str]:
    """check-config: the stacks the daemon would refuse at the head it last fetched (none without a
    checkout). Warnings, not errors: the daemon starts and deploys the other stacks."""
    found = _discover_in_checkout(settings)
    if found is None:
        return []
    return [f"{item} — it will not be planned\n  hint: {item.hint}" for item in found.refused]


def with_refused(store: Store, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the stacks refused at the head the daemon last worked out (recorded by its poller) on
    `rows`, adding a row for each refused stack the store never knew; returns the refusals."""
    recorded = store.get_meta(REFUSED_STACKS_META) or {}
    refused = [{**item, "head_sha": recorded.get("head")} for item in recorded.get("stacks", [])]
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        row["refused"] = None
    for item in refused:
        found = by_name.get(item["name"])
        if found is not None:
            row = found
        else:  # never planned: it was refused since it first appeared
            row = dict.fromkeys(STATUS_KEYS) | {"name": item["name"], "path": item["path"]}
            row |= {"head_sha": item["head_sha"], "drift": "refused"}
            rows.append(row)
        row["refused"] = {"reason": item["reason"], "detail": item["detail"]}
    rows.sort(key=lambda row: row["name"])
    return refused


def instance_lines(store: Store, now: datetime | None = None, *, failover: float | None = None) -> list[str]:
    """`tfops status`: the daemons serving this store (tfops.ha), leader first: id, host, role, last
    heartbeat and runs in flight; one silent for more than `failover` is marked as presumed dead
    (the leader settles it). Nothing when none serves."""
    found = store.instances()
    if not found:
        return []
    now = now or datetime.now(UTC)
    width = max(len(instance.id) for instance in found)
    host_width = max(len(instance.host) for instance in found)
    lines = [f"instances ({len(found)})"]
    for instance in found:
        ago = max(0, round((now - instance.heartbeat_at).total_seconds()))
        flying = instance.runs_in_flight
        # A silent leader is not shown as one: its row says `leader` until the new leader settles it.
        role = shown_role(instance, now, failover)
        silent = "  (silent: presumed dead)" if role == PRESUMED_DEAD else ""
        lines.append(
            f"  {instance.id:<{width}}  {instance.host:<{host_width}}  {role:<8}  "
            f"heartbeat {ago}s ago  {flying} run{'' if flying == 1 else 's'} in flight{silent}"
        )
    return lines
