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

from tfops.models import OutboxKind, Run, RunKind, RunStatus
from tfops.notify import RunNotice
from tfops.notify.slack_render import error_record, error_tail, plan_file_record, run_record
from tfops.store.store import Store

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
        with self._lock:  # one run's notices come from one thread, but the sets are shared
            first = run.id not in self._posted and not self._has_message(channel, run.id)
            attach = notice.summary is not None and run.id not in self._attached
            for item in records_for(notice, first=first, attach=attach):
                self.store.enqueue(channel, item.kind, item.payload, run_id=run.id)
            self._posted.add(run.id)
            if attach:
                self._attached.add(run.id)
        self.on_enqueue()

    def _has_message(self, channel: str, run_id: int) -> bool:
        """Posted before this process started, or its post is still waiting in the outbox."""
        if self.store.get_slack_message(run_id) is not None:
            return True
        return any(
            item.run_id == run_id and item.kind is OutboxKind.POST for item in self.store.pending_for(channel)
        )
