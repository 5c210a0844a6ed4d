"""The sender's side of a run's Slack message: built from the store when it is sent.

The notifier enqueues only a small record per status change (`run_record`, `plan_file_record`,
`error_record`): no rendering, no commit lookup, nothing that can wait on the network or the Git
lock, so a status change is never held up by Slack. `RunRenderer` builds the message when the
sender takes the item: from the run as stored *now* (so a backlog shows the latest truth, and
buttons never outlive the approval), its counted decisions, and the commit's subject and author.

Commit lookups go through a small cache; a lookup that fails renders the message without subject
and author rather than losing it. A lookup may wait (the Git lock during a fetch): only the sender
waits, never a run.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tfops.incidents import Incident
from tfops.models import DecisionKind, DecisionOutcome, PlanSummary, Run, RunStatus, Stack
from tfops.notify.blocks import (
    FAILURE_STATUSES,
    STACK_CHARS,
    CommitInfo,
    DecisionInfo,
    RunMessage,
    escape_mrkdwn,
    format_mention,
    render_run,
)
from tfops.notify.incident_render import mention_text, with_incident
from tfops.store.store import Store, utc_now
from tfops.terraform.plan import summary_from_dict

log = logging.getLogger(__name__)

ERROR_TAIL_CHARS = 2500
REASON_CHARS = 2000  # what a record keeps of a status change's reason (render_run clips it further)
COMMIT_CACHE_SIZE = 256

# The `render` values of the records the notifier enqueues.
RENDER_RUN = "run"  # the run's message (post or update)
RENDER_PLAN_FILE = "plan_file"  # the whole plan, in the thread, when the message had to cut it
RENDER_ERROR = "error_tail"  # the end of a failed run's error output, in the thread
RENDER_INCIDENT_MENTION = "incident_mention"  # a drift incident's set changed: people paged in its thread
# A run record with this key goes to the drift incident's message (tfops.notify.incident_render).
INCIDENT_KEY = "incident"


def run_record(run: Run, reason: str) -> dict[str, Any]:
    """The record of one status change: which status it announced, and why."""
    return {"render": RENDER_RUN, "status": run.status.value, "reason": reason[:REASON_CHARS]}


def incident_record(record: dict[str, Any], incident_id: int) -> dict[str, Any]:
    """A run's record shown in (and delivered to) the message of the drift incident it belongs to."""
    return {**record, INCIDENT_KEY: incident_id}


def incident_mention_record(incident_id: int) -> dict[str, Any]:
    return {"render": RENDER_INCIDENT_MENTION, INCIDENT_KEY: incident_id}


def incident_of(payload: dict[str, Any]) -> int | None:
    value = payload.get(INCIDENT_KEY)
    return int(value) if value is not None else None


def plan_file_record() -> dict[str, Any]:
    return {"render": RENDER_PLAN_FILE}


def error_record() -> dict[str, Any]:
    return {"render": RENDER_ERROR}


def is_record(payload: dict[str, Any]) -> bool:
    """Records are rendered at send time; other payloads (ephemerals, older items) go as stored."""
    return "render" in payload


def error_tail(run: Run) -> str | None:
    """The end of a failed run's (already redacted) error, for the thread."""
    if run.status not in FAILURE_STATUSES or not run.error:
        return None
    return run.error[-ERROR_TAIL_CHARS:]


def awaiting_buttons(run: Run) -> bool:
    """Approve/Reject are shown while the run waits, and only with the binding they carry."""
    return run.status is RunStatus.AWAITING_APPROVAL and bool(run.commit_sha and run.plan_sha256)


def plain_status_text(run: Run, why: str) -> str:
    """A text-only message with the run's status, for when Slack refused the full message."""
    status = run.status.value.replace("_", " ")
    stack = escape_mrkdwn(run.stack, STACK_CHARS)
    shown = f"tfops: {stack} {run.kind.value} run #{run.id} · {status}"
    return f"{shown} (the full message could not be shown: {why})"


class CommitCache:
    """`lookup(sha)` through a bounded cache; failures give None and are not cached."""

    def __init__(self, lookup: Callable[[str], CommitInfo | None] | None, size: int = COMMIT_CACHE_SIZE):
        self._lookup = lookup
        self._size = size
        self._known: OrderedDict[str, CommitInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha: str | None) -> CommitInfo | None:
        if not sha or self._lookup is None:
            return None
        with self._lock:
            if sha in self._known:
                self._known.move_to_end(sha)
                return self._known[sha]
        try:
            info = self._lookup(sha)
        except Exception:  # noqa: BLE001 - a missing commit must not cost the message
            log.warning("no commit details for %s; the message shows the commit id only", sha[:12])
            return None
        if info is not None:
            with self._lock:
                self._known[sha] = info
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
        return info


class RunRenderer:
    """Builds a run's message from the store at send time."""

    def __init__(
        self,
        store: Store,
        *,
        commit_info: Callable[[str], CommitInfo | None] | None = None,
        stack_for: Callable[[str], Stack | None] = lambda name: None,
        mention: str | None = None,
    ) -> None:
        self.store = store
        self.commits = CommitCache(commit_info)
        self.stack_for = stack_for
        self.mention = mention

    def message(self, run: Run, record: dict[str, Any]) -> RunMessage:
        """The run's message as it stands now, with the reason for its current status."""
        stack = self.stack_for(run.stack)
        rendered = render_run(
            run,
            self.summary(run),
            commit=self.commits.get(run.commit_sha),
            decisions=self._decisions(run),
            awaiting_approval=awaiting_buttons(run),
            approvals_required=stack.approvals_required if stack is not None else 1,
            approvers=stack.approvers if stack is not None else (),
            mention=self.mention,
            error_tail=error_tail(run),
            reason=self._reason(run, record),
        )
        incident = self.incident(record)
        if incident is None:
            return rendered
        return with_incident(rendered, incident, utc_now(), paged=self._paged(run, incident))

    def _paged(self, run: Run, incident: Incident) -> str | None:
        """A drift that is only reported pages `mention` once, in the post that opens its incident;
        a changed set pages again in the thread (approval requests and failures page anyway)."""
        opening = run.id == incident.opened_run_id and run.status is RunStatus.PLANNED
        return format_mention(self.mention) if self.mention and opening and incident.is_open else None

    def incident(self, record: dict[str, Any]) -> Incident | None:
        """The drift incident a record belongs to, if any."""
        incident_id = incident_of(record)
        return self.store.get_incident(incident_id) if incident_id is not None else None

    def incident_mention(self, record: dict[str, Any]) -> str | None:
        incident = self.incident(record)
        return mention_text(incident, self.mention) if incident is not None else None

    def _reason(self, run: Run, record: dict[str, Any]) -> str | None:
        # The record's reason while the run is still in the status it announced (it may say more
        # than the event, e.g. "1 of 2 approvals"); once the run moved on, the stored reason of
        # the status it is in now, so a backlog renders every record of one state alike.
        if record.get("status") == run.status.value:
            return record.get("reason")
        events = self.store.events(run.id)
        last = events[-1] if events else None
        return last.message if last is not None and last.to_status is run.status else None

    @staticmethod
    def summary(run: Run) -> PlanSummary | None:
        return summary_from_dict(run.summary) if run.summary else None

    def _decisions(self, run: Run) -> Sequence[DecisionInfo]:
        counted = [d for d in self.store.decisions(run.id) if d.outcome is DecisionOutcome.COUNTED]
        return [
            DecisionInfo(
                decision="approved" if d.decision is DecisionKind.APPROVE else "rejected",
                by_name=d.actor_name or d.actor_id,
                by_id=d.actor_id,
                at=d.at,
                source=d.source.value,
            )
            for d in counted
        ]
