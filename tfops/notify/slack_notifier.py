"""The Slack notifier: each status change of a run becomes a few small outbox records. Pure of I/O.

`SlackNotifier.run_changed` enqueues a small record per status change (run id, channel, kind, the
status it announces and why). It never renders, never looks a commit up and never talks to Slack,
so a status change never waits on the network or the Git lock; `tfops.notify.slack.OutboxSender`
delivers the records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfops.incidents import Incident, IncidentChange, Step
from tfops.models import OutboxKind, Run, RunKind, RunStatus
from tfops.notify import RunNotice
from tfops.notify.slack_render import (
    RENDER_RUN,
    error_record,
    error_tail,
    incident_mention_record,
    incident_record,
    plan_file_record,
    run_record,
)
from tfops.store.store import Store

_MESSAGE = frozenset({OutboxKind.POST, OutboxKind.UPDATE})
# Drift checks run every few minutes: a check that found nothing is not worth a message.
QUIET_DRIFT_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.PLANNING, RunStatus.NO_CHANGES})


# --- what to enqueue (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    kind: OutboxKind
    payload: dict[str, Any]


def records_for(notice: RunNotice, *, first: bool, attach: bool) -> list[Outgoing]:
    """The outbox records for one status change: the run's message, then what goes in its thread.

    `attach`: the plan is new (once per run): the sender attaches it if the message has to cut it.
    """
    run = notice.run
    items = [Outgoing(OutboxKind.POST if first else OutboxKind.UPDATE, run_record(run, notice.message))]
    if attach:
        items.append(Outgoing(OutboxKind.FILE, plan_file_record()))
    if error_tail(run) is not None:
        items.append(Outgoing(OutboxKind.THREAD, error_record()))
    return items


def has_something_to_say(run: Run) -> bool:
    return not (run.kind is RunKind.DRIFT and run.status in QUIET_DRIFT_STATUSES)


# --- the notifier ------------------------------------------------------------------------------------


class SlackNotifier:
    """Turns run notices into outbox records. Never calls Slack or Git; never raises into a run."""

    def __init__(
        self,
        store: Store,
        channel_for: Callable[[str], str | None],
        *,
        on_enqueue: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.channel_for = channel_for
        self.on_enqueue = on_enqueue
        self._posted: set[int] = set()
        self._attached: set[int] = set()
        self._lock = threading.Lock()

    def run_changed(self, notice: RunNotice) -> None:
        run = notice.run
        channel = self.channel_for(run.stack)
        if channel is None or not has_something_to_say(run):
            return
        incident = self.store.incident_of_run(run.stack, run.id) if run.kind is RunKind.DRIFT else None
        with self._lock:  # one run's notices come from one thread, but the sets are shared
            if incident is not None and incident.opened_run_id != run.id:
                items = self._to_incident(notice, incident)
            else:
                items = self._own_message(channel, notice, incident)
            for item in items:
                self.store.enqueue(channel, item.kind, item.payload, run_id=run.id)
            self._posted.add(run.id)
        self.on_enqueue()

    def incident_changed(self, change: IncidentChange) -> None:
        """A resolved incident's message says how (opening and updating it ride on run notices)."""
        incident = change.incident
        channel = self.channel_for(incident.stack)
        if channel is None or change.step is not Step.RESOLVE:
            return
        record = incident_record({"render": RENDER_RUN, "status": "", "reason": ""}, incident.id)
        self.store.enqueue(channel, OutboxKind.UPDATE, record, run_id=incident.last_run_id)
        self.on_enqueue()

    def _own_message(self, channel: str, notice: RunNotice, incident: Incident | None) -> list[Outgoing]:
        """The run's own message; a drift run that opened an incident shows it there."""
        run = notice.run
        first = run.id not in self._posted and not self._has_message(channel, run.id)
        attach = notice.summary is not None and run.id not in self._attached
        if attach:
            self._attached.add(run.id)
        items = records_for(notice, first=first, attach=attach)
        if incident is None:
            return items
        return [
            Outgoing(i.kind, incident_record(i.payload, incident.id)) if i.kind in _MESSAGE else i
            for i in items
        ]

    def _to_incident(self, notice: RunNotice, incident: Incident) -> list[Outgoing]:
        """A later drift run of an open incident updates the incident's message instead of posting;
        when it changed the drifted set, people are paged again in the message's thread."""
        run = notice.run
        items = [Outgoing(OutboxKind.UPDATE, incident_record(run_record(run, notice.message), incident.id))]
        if incident.mentioned_run_id == run.id and run.id not in self._posted:
            items.append(Outgoing(OutboxKind.THREAD, incident_mention_record(incident.id)))
        return items

    def _has_message(self, channel: str, run_id: int) -> bool:
        """Posted before this process started, or its post is still waiting in the outbox."""
        if self.store.get_slack_message(run_id) is not None:
            return True
        return any(
            item.run_id == run_id and item.kind is OutboxKind.POST for item in self.store.pending_for(channel)
        )
