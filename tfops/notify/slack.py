"""Slack delivery: runs become outbox items, and a sender thread delivers them.

Two halves, joined only by the store's outbox (principle 3 and "Slack being down never blocks a
run"):

- `SlackNotifier.run_changed` renders the run with `blocks.render_run` and enqueues what to send.
  It never talks to Slack, so a run never waits on the network.
- `OutboxSender` is one thread that claims the oldest due item of any channel, makes the Slack call
  and records the outcome: sent (with the message `ts`), retry later (connection errors, 5xx, 429
  with its Retry-After), or failed (errors that no retry can fix, such as `invalid_blocks`).

Everything enqueued is what `render_run` returned from redacted inputs; the sender adds only ids
and timestamps. Errors are logged with Slack's error name, never with the token or the payload.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tfops.models import PlanSummary, Run, RunKind, RunStatus, Stack
from tfops.notify import RunNotice
from tfops.notify.blocks import FAILURE_STATUSES, CommitInfo, DecisionInfo, RunMessage, render_run
from tfops.store.store import (
    DecisionKind,
    DecisionOutcome,
    OutboxItem,
    OutboxItemNotPending,
    OutboxKind,
    Store,
    utc_now,
)
from tfops.terraform.plan import summary_from_dict

log = logging.getLogger(__name__)

# Slack errors that a later attempt can fix; every other error name is final for the item.
RETRYABLE_SLACK_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Drift checks run every few minutes: a check that found nothing is not worth a message.
QUIET_DRIFT_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.PLANNING, RunStatus.NO_CHANGES})
ERROR_TAIL_CHARS = 2500
BACKOFF_BASE = 0.5  # seconds before the first retry of an item; doubles with each failed attempt
BACKOFF_CAP = 300.0
WAIT_FOR_POST = timedelta(seconds=1)  # an update whose post is not delivered yet looks again after this


# --- what to enqueue (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    kind: OutboxKind
    payload: dict[str, Any]


def outgoing_for(message: RunMessage, *, first: bool, attach: bool) -> list[Outgoing]:
    """The outbox items for one rendering of a run: its message, then what goes in its thread.

    `attach`: whether the whole plan goes up as a file (once per run, not with every update).
    """
    content = {"text": message.text, "blocks": message.blocks}
    items = [Outgoing(OutboxKind.POST if first else OutboxKind.UPDATE, content)]
    if attach and message.file is not None:
        filename, body = message.file
        items.append(Outgoing(OutboxKind.FILE, {"filename": filename, "content": body, "title": filename}))
    items += [Outgoing(OutboxKind.THREAD, {"text": note}) for note in message.thread_notes]
    return items


def error_tail(run: Run) -> str | None:
    """The end of a failed run's (already redacted) error, for the thread."""
    if run.status not in FAILURE_STATUSES or not run.error:
        return None
    return run.error[-ERROR_TAIL_CHARS:]


def awaiting_buttons(run: Run) -> bool:
    """Approve/Reject are shown while the run waits, and only with the binding they carry."""
    return run.status is RunStatus.AWAITING_APPROVAL and bool(run.commit_sha and run.plan_sha256)


def has_something_to_say(run: Run) -> bool:
    return not (run.kind is RunKind.DRIFT and run.status in QUIET_DRIFT_STATUSES)


def backoff(attempts: int) -> float:
    """Seconds before the next try of an item that has failed `attempts` times already."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempts, 20))


# --- the notifier ------------------------------------------------------------------------------------


class SlackNotifier:
    """Turns run notices into outbox items. Never calls Slack; never raises into a run."""

    def __init__(
        self,
        store: Store,
        channel_for: Callable[[str], str | None],
        *,
        mention: str | None = None,
        commit_info: Callable[[str], CommitInfo | None] | None = None,
        on_enqueue: Callable[[], None] = lambda: None,
        stack_for: Callable[[str], Stack | None] = lambda name: None,
    ) -> None:
        self.store = store
        self.channel_for = channel_for
        self.mention = mention
        self.commit_info = commit_info
        self.on_enqueue = on_enqueue
        self.stack_for = stack_for
        self._posted: set[int] = set()
        self._attached: set[int] = set()
        self._lock = threading.Lock()

    def run_changed(self, notice: RunNotice) -> None:
        run = notice.run
        channel = self.channel_for(run.stack)
        if channel is None or not has_something_to_say(run):
            return
        stack = self.stack_for(run.stack)
        message = render_run(
            run,
            self._summary(notice),
            commit=self._commit(run),
            decisions=self._decisions(run),
            awaiting_approval=awaiting_buttons(run),
            approvals_required=stack.approvals_required if stack is not None else 1,
            approvers=stack.approvers if stack is not None else (),
            mention=self.mention,
            error_tail=error_tail(run),
            reason=notice.message,
        )
        with self._lock:  # one run's notices come from one thread, but the set is shared
            first = run.id not in self._posted and not self._has_message(channel, run.id)
            # The plan is attached when it is new (the notice carries it), and only once.
            attach = notice.summary is not None and run.id not in self._attached
            for item in outgoing_for(message, first=first, attach=attach):
                self.store.enqueue(channel, item.kind, item.payload, run_id=run.id)
            self._posted.add(run.id)
            if attach and message.file is not None:
                self._attached.add(run.id)
        self.on_enqueue()

    def _decisions(self, run: Run) -> list[DecisionInfo]:
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

    def _summary(self, notice: RunNotice) -> PlanSummary | None:
        # Later statuses (applied, failed) carry no summary: the run's stored one is redacted too.
        if notice.summary is not None:
            return notice.summary
        return summary_from_dict(notice.run.summary) if notice.run.summary else None

    def _commit(self, run: Run) -> CommitInfo | None:
        if not run.commit_sha or self.commit_info is None:
            return None
        try:
            return self.commit_info(run.commit_sha)
        except Exception:  # noqa: BLE001 - a missing commit must not cost the message
            log.warning("no commit details for %s", run.commit_sha[:12])
            return None

    def _has_message(self, channel: str, run_id: int) -> bool:
        """Posted before this process started, or its post is still waiting in the outbox."""
        if self.store.get_slack_message(run_id) is not None:
            return True
        return any(
            item.run_id == run_id and item.kind is OutboxKind.POST for item in self.store.pending_for(channel)
        )


# --- the sender --------------------------------------------------------------------------------------


class Retry(Exception):
    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class Fail(Exception):
    pass


def web_client(token: str, base_url: str, timeout: float) -> WebClient:
    """A client that never sleeps on its own: retries are the outbox's job, so nothing blocks."""
    return WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)), retry_handlers=[])


class OutboxSender:
    """One thread delivering the outbox in order per channel. `wake()` when something was enqueued."""

    def __init__(
        self,
        store: Store,
        client: WebClient,
        clock: Callable[[], datetime] = utc_now,
        *,
        idle_wait: float = 1.0,
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.idle_wait = idle_wait
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start delivering; a no-op when running already or once stopped."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="tfops-slack-sender", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the call in flight, if any; what is left stays in the outbox for next time."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.deliver_one()
            except Exception:
                log.exception("Slack sender: unexpected error; trying again shortly")
                delivered = False
            if not delivered:
                self._wake.wait(self.idle_wait)
                self._wake.clear()

    def deliver_one(self) -> bool:
        """Claim and deliver the oldest due item; False when nothing was due."""
        item = self.store.claim_next(now=self.clock())
        if item is None:
            return False
        try:
            result = self._send(item)
        except Retry as retry:
            log.warning("Slack: %s item %s for run %s will be retried: %s", item.kind, item.id, item.run_id,
                        retry.reason)  # fmt: skip
            self._end(
                self.store.mark_retry, item.id, retry.reason, self.clock() + timedelta(seconds=retry.delay)
            )
        except Fail as failure:
            log.error(
                "Slack: %s item %s for run %s failed for good: %s", item.kind, item.id, item.run_id, failure
            )
            self._end(self.store.mark_failed, item.id, str(failure))
        else:
            self.store.mark_sent(item.id, result)
        return True

    def _end(self, mark: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(OutboxItemNotPending):  # another sender finished it after our lease
            mark(*args)

    # -- one Slack call per item -------------------------------------------------------------------

    def _send(self, item: OutboxItem) -> dict[str, Any]:
        try:
            return self._call(item)
        except SlackApiError as exc:
            raise _classified(exc, item.attempts) from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            raise Retry(f"connection error ({type(exc).__name__})", backoff(item.attempts)) from None
        except (KeyError, TypeError, ValueError) as exc:  # an answer without the fields we need
            raise Retry(
                f"unexpected answer from Slack ({type(exc).__name__})", backoff(item.attempts)
            ) from None

    def _call(self, item: OutboxItem) -> dict[str, Any]:
        payload = item.payload
        if item.kind is OutboxKind.POST:
            answer = self.client.chat_postMessage(channel=item.channel, **_message_args(payload))
            return {"ts": answer["ts"], "channel": answer["channel"]}
        if item.kind is OutboxKind.EPHEMERAL:
            answer = self.client.chat_postEphemeral(
                channel=item.channel, user=payload["user"], text=payload["text"]
            )
            return {"message_ts": answer.get("message_ts"), "channel": item.channel}
        message = self.store.get_slack_message(item.run_id) if item.run_id is not None else None
        if item.kind is OutboxKind.UPDATE:
            if message is None:
                return self._post_in_place_of_update(item)
            answer = self.client.chat_update(channel=message.channel, ts=message.ts, **_message_args(payload))
            return {"ts": answer["ts"], "channel": answer["channel"]}
        if item.run_id is not None and message is None:
            self._wait_for_post(item)
        channel = message.channel if message else item.channel
        thread_ts = message.ts if message else None
        if item.kind is OutboxKind.THREAD:
            answer = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=payload["text"])
            return {"ts": answer["ts"], "channel": answer["channel"]}
        if item.kind is OutboxKind.FILE:
            answer = self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=payload["filename"],
                title=payload.get("title"),
                content=payload["content"],
                request_file_info=False,
            )
            return {"file_ids": [file["id"] for file in answer.get("files", [])], "channel": channel}
        raise Fail(f"{item.kind} items are not delivered by this sender")

    def _post_in_place_of_update(self, item: OutboxItem) -> dict[str, Any]:
        """The run's post was given up on (or went to another channel): this update becomes it."""
        self._wait_for_post(item)
        answer = self.client.chat_postMessage(channel=item.channel, **_message_args(item.payload))
        self.store.set_slack_message(item.run_id, answer["channel"], answer["ts"])
        return {"ts": answer["ts"], "channel": answer["channel"]}

    def _wait_for_post(self, item: OutboxItem) -> None:
        pending = self.store.pending_for(item.channel)
        if any(other.run_id == item.run_id and other.kind is OutboxKind.POST for other in pending):
            raise Retry("the run's message is not posted yet", WAIT_FOR_POST.total_seconds())


def _message_args(payload: dict[str, Any]) -> dict[str, Any]:
    # Nothing links names or unfurls: the rendered text decides every mention itself.
    return {
        "text": payload["text"],
        "blocks": payload.get("blocks"),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _classified(exc: SlackApiError, attempts: int) -> Retry | Fail:
    """Retry or give up, from Slack's HTTP status and error name (never its payload or our token)."""
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    error = response.get("error") if hasattr(response, "get") else None
    error = str(error or f"http_{status}")
    if status == 429:
        return Retry(
            f"rate limited (HTTP 429), Retry-After {_retry_after(response)}s", _retry_after(response)
        )
    if status >= 500 or error in RETRYABLE_SLACK_ERRORS:
        return Retry(f"Slack answered HTTP {status} {error}", backoff(attempts))
    return Fail(f"Slack refused the call: {error}")


def _retry_after(response: Any) -> float:
    headers = getattr(response, "headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0
