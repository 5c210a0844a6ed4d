"""Slack delivery: runs become outbox records, and a sender thread turns them into messages.

Two halves, joined only by the store's outbox (principle 3 and "Slack being down never blocks a
run"):

- `SlackNotifier.run_changed` (in `slack_notifier`, re-exported here) enqueues a small record per
  status change (run id, channel, kind, the status it announces and why). It never renders, never
  looks a commit up and never talks to Slack, so a status change never waits on the network or the
  Git lock.
- `OutboxSender` is one thread that claims the oldest due item of any channel, builds the message
  from the store (`slack_render.RunRenderer`), makes the Slack call and records the outcome: sent
  (with the message `ts`), retry later, or failed. What a failure means is decided by the pure
  `slack_policy`: while Slack fails, one probe at a time at most `probe_cap` apart and reset on
  the first success; after a 429 nothing is sent before its Retry-After; a refusal or a message
  tfops cannot build is final (marked failed with the reason, logged at ERROR, counted, and a
  plain text message with the run's status is sent where that can help), so the channel moves on.

Everything sent is built from redacted inputs; the sender adds only ids and timestamps. Errors
are logged with Slack's error name, never with the token or the payload.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypedDict

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tfops.models import OutboxKind, Run
from tfops.notify.slack_notifier import (
    QUIET_DRIFT_STATUSES,
    Outgoing,
    SlackNotifier,
    has_something_to_say,
    records_for,
)
from tfops.notify.slack_policy import (
    GAVE_UP,
    REFUSED,
    UNBUILDABLE,
    DeliveryTiming,
    Verdict,
    classify_slack_error,
    plain_text_may_help,
    retry_after_seconds,
)
from tfops.notify.slack_render import (
    RENDER_ERROR,
    RENDER_INCIDENT_MENTION,
    RENDER_PLAN_FILE,
    RENDER_RUN,
    RunRenderer,
    error_tail,
    is_record,
    plain_status_text,
)
from tfops.store.store import OutboxItem, OutboxItemNotPending, Store, utc_now

__all__ = [
    "QUIET_DRIFT_STATUSES",
    "OutboxSender",
    "Outgoing",
    "SlackNotifier",
    "error_tail",
    "has_something_to_say",
    "records_for",
    "web_client",
]

log = logging.getLogger(__name__)

WAIT_FOR_POST = timedelta(seconds=1)  # an update whose post is not delivered yet looks again after this
SHOWN_REMEMBERED = 1000  # runs whose last delivered message the sender remembers, to skip no-op edits


# --- the sender --------------------------------------------------------------------------------------


class Retry(Exception):
    """Try the item again later. `verdict` None: not Slack's failure (its post is not sent yet)."""

    def __init__(self, reason: str, delay: float, verdict: Verdict | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay, self.verdict = reason, delay, verdict


class Fail(Exception):
    """Give the item up. `why` is the metric's label; `plain`: a text-only message may get through."""

    def __init__(self, reason: str, *, why: str = REFUSED, plain: bool = False, short: str = "") -> None:
        super().__init__(reason)
        self.why, self.plain, self.short = why, plain, short or why


Call = Callable[[], dict[str, Any]]


class FileUpload(TypedDict):
    """A file for a run's thread, as `files_upload_v2` takes it."""

    filename: str
    content: str
    title: str | None


def web_client(token: str, base_url: str, timeout: float) -> WebClient:
    """A client that never sleeps on its own: retries are the outbox's job, so nothing blocks."""
    return WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)), retry_handlers=[])


class OutboxSender:
    """One thread delivering the outbox in order per channel. `wake()` when something was enqueued.

    `on_failed(why)` hears of every item given up (why: slack_policy.FAILURE_REASONS), for metrics.
    """

    def __init__(
        self,
        store: Store,
        client: WebClient,
        clock: Callable[[], datetime] = utc_now,
        *,
        idle_wait: float = 1.0,
        renderer: RunRenderer | None = None,
        timing: DeliveryTiming | None = None,
        on_failed: Callable[[str], None] = lambda why: None,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        """`may_send`: whether this daemon delivers now (only the leader does, tfops.ha)."""
        self.may_send = may_send
        self.store = store
        self.client = client
        self.clock = clock
        self.idle_wait = idle_wait
        self.renderer = renderer or RunRenderer(store)
        self.timing = timing or DeliveryTiming()
        self.on_failed = on_failed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Slack's health, shared by all channels: failures in a row, and no call before _hold_until.
        self._failures = 0
        self._hold_until = 0.0  # time.monotonic()
        self._shown: OrderedDict[int, str] = OrderedDict()  # run id → digest of its delivered message

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
                self._wake.wait(self._idle_time())
                self._wake.clear()

    def _idle_time(self) -> float:
        held = self._hold_until - time.monotonic()
        return min(self.idle_wait, held) if held > 0 else self.idle_wait

    def deliver_one(self) -> bool:
        """Claim and deliver the oldest due item; False when nothing was due (or Slack is on hold)."""
        if time.monotonic() < self._hold_until or not self.may_send():
            return False
        item = self.store.claim_next(now=self.clock())
        if item is None:
            return False
        try:
            result = self._send(item)
        except Retry as retry:
            self._retry(item, retry)
        except Fail as failure:
            self._give_up(item, failure)
        else:
            self.store.mark_sent(item.id, result)
        return True

    # -- outcomes ---------------------------------------------------------------------------------

    def _slack_answered(self) -> None:
        # The first success ends an outage: no more probing, the backlog goes out at once.
        self._failures, self._hold_until = 0, 0.0

    def _hold(self, seconds: float) -> None:
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def _retry(self, item: OutboxItem, retry: Retry) -> None:
        age = self.clock() - item.created_at
        if retry.verdict is not None and self.timing.gives_up(age):
            reason = f"gave up after {_duration(age)} of retryable failures; the last: {retry.reason}"
            self._give_up(item, Fail(reason, why=GAVE_UP))
            return
        delay = retry.delay
        if retry.verdict is Verdict.RATE_LIMITED:
            self._hold(delay)  # Retry-After holds every call, not only this item's
        elif retry.verdict is Verdict.RETRY:
            self._failures += 1
            self._hold(self.timing.backoff(self._failures))
            delay = self.timing.backoff(item.attempts + 1)
        log.warning("Slack: %s item %s for run %s will be retried in %.1fs: %s", item.kind, item.id,
                    item.run_id, delay, retry.reason)  # fmt: skip
        self._end(self.store.mark_retry, item.id, retry.reason, self.clock() + timedelta(seconds=delay))

    def _give_up(self, item: OutboxItem, failure: Fail) -> None:
        note = self._send_plain_status(item, failure) if failure.plain else ""
        log.error("Slack: %s item %s for run %s failed for good (%s): %s%s", item.kind, item.id, item.run_id,
                  failure.why, failure, note)  # fmt: skip
        with contextlib.suppress(Exception):  # a metric must never cost the record below
            self.on_failed(failure.why)
        self._end(self.store.mark_failed, item.id, f"{failure}{note}")

    def _end(self, mark: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(OutboxItemNotPending):  # another sender finished it after our lease
            mark(*args)

    def _send_plain_status(self, item: OutboxItem, failure: Fail) -> str:
        """After a refused or unbuildable message: the run's status as text only, in its place."""
        run = self.store.get_run(item.run_id) if item.run_id is not None else None
        if run is None or item.kind not in (OutboxKind.POST, OutboxKind.UPDATE):
            return ""
        text = plain_status_text(run, failure.short)
        try:
            owner = self._owner(item) or run.id  # a drift incident's message is its opening run's
            message = self.store.get_slack_message(owner)
            if message is None:
                answer = self.client.chat_postMessage(channel=item.channel, text=text, unfurl_links=False,
                                                      unfurl_media=False)  # fmt: skip
                self.store.set_slack_message(owner, answer["channel"], answer["ts"])
            else:  # blocks=[]: an update without blocks would keep the old ones (and their buttons)
                self.client.chat_update(channel=message.channel, ts=message.ts, text=text, blocks=[])
        except Exception as exc:  # noqa: BLE001 - the item is given up either way; say so
            return f"; the plain status message failed too ({_describe(exc)})"
        self._shown.pop(owner, None)
        return "; a plain message with the run's status was sent instead"

    # -- one Slack call per item -------------------------------------------------------------------

    def _send(self, item: OutboxItem) -> dict[str, Any]:
        try:
            call = self._build(item)
        except (Retry, Fail):
            raise
        except Exception as exc:  # noqa: BLE001 - our own record or run could not be turned into a message
            raise Fail(f"tfops could not build the message ({_describe(exc)})", why=UNBUILDABLE, plain=True,
                       short="tfops could not build it") from None  # fmt: skip
        if isinstance(call, dict):
            return call  # nothing to send: recorded as sent, with why
        try:
            result = call()
        except SlackApiError as exc:
            outcome = _classified(exc)
            if isinstance(outcome, Fail):
                self._slack_answered()  # a refusal is an answer: Slack is up
            raise outcome from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            raise Retry(f"connection error ({type(exc).__name__})", 0.0, Verdict.RETRY) from None
        except (KeyError, TypeError, ValueError) as exc:  # our arguments, or an answer without its fields
            raise Fail(
                f"the call or Slack's answer was malformed ({_describe(exc)})", why=UNBUILDABLE
            ) from None
        self._slack_answered()
        return result

    def _build(self, item: OutboxItem) -> Call | dict[str, Any]:
        """The Slack call for the item (not made yet), or the result of an item with nothing to send."""
        payload = item.payload
        if item.kind is OutboxKind.EPHEMERAL:
            user, text = payload["user"], payload["text"]
            return lambda: self._ephemeral(item.channel, user, text)
        run = self._run_of(item) if is_record(payload) else None
        if item.kind in (OutboxKind.POST, OutboxKind.UPDATE):
            return self._build_message(item, run)
        owner = self._owner(item)
        message = self.store.get_slack_message(owner) if owner is not None else None
        if owner is not None and message is None:
            self._wait_for_post(item, owner)
        channel = message.channel if message else item.channel
        thread_ts = message.ts if message else None
        if item.kind is OutboxKind.THREAD:
            text = self._thread_text(payload, run)
            if text is None:
                return {"skipped": "nothing to say in the thread"}
            return lambda: self._reply(channel, thread_ts, text)
        if item.kind is OutboxKind.FILE:
            file = self._file(payload, run)
            if file is None:
                return {"skipped": "the plan fits in the message"}
            return lambda: self._upload(channel, thread_ts, file)
        raise Fail(f"{item.kind} items are not delivered by this sender")

    def _run_of(self, item: OutboxItem) -> Run:
        run = self.store.get_run(item.run_id) if item.run_id is not None else None
        if run is None:
            raise ValueError(f"the record's run {item.run_id} does not exist")
        return run

    def _build_message(self, item: OutboxItem, run: Run | None) -> Call | dict[str, Any]:
        if run is None:  # an item enqueued as a finished message (older versions, other senders)
            content = {"text": item.payload["text"], "blocks": item.payload.get("blocks")}
        elif item.payload.get("render") == RENDER_RUN:
            rendered = self.renderer.message(run, item.payload)
            content = {"text": rendered.text, "blocks": rendered.blocks}
        else:
            raise ValueError(f"a {item.kind} record cannot render {item.payload.get('render')!r}")
        digest = _digest(content)
        owner = self._owner(item)  # the run whose message this is: a drift incident's opening run
        if item.kind is OutboxKind.POST:
            return lambda: self._remember(owner, digest, self._post(item.channel, content))
        message = self.store.get_slack_message(owner) if owner is not None else None
        if message is None:
            # The run's post was given up on (or went to another channel): this update becomes it.
            self._wait_for_post(item, owner)
            return lambda: self._remember(owner, digest, self._post_in_place_of_update(item, owner, content))
        if owner is not None and self._shown.get(owner) == digest:
            return {"skipped": "the message shows this already"}  # a backlog rendered the same state twice
        return lambda: self._remember(owner, digest, self._update(message.channel, message.ts, content))

    def _owner(self, item: OutboxItem) -> int | None:
        """The run under whose id the item's message is kept: a record of a drift incident goes to
        the message of the run that opened the incident, every other to its own run's."""
        incident = self.renderer.incident(item.payload) if is_record(item.payload) else None
        return incident.opened_run_id if incident is not None else item.run_id

    def _thread_text(self, payload: dict[str, Any], run: Run | None) -> str | None:
        if run is None:
            return payload["text"]
        if payload.get("render") == RENDER_INCIDENT_MENTION:
            return self.renderer.incident_mention(payload)
        if payload.get("render") != RENDER_ERROR:
            raise ValueError(f"a thread record cannot render {payload.get('render')!r}")
        notes = self.renderer.message(run, {}).thread_notes
        return notes[-1] if notes else None

    def _file(self, payload: dict[str, Any], run: Run | None) -> FileUpload | None:
        if run is None:
            return {
                "filename": payload["filename"],
                "content": payload["content"],
                "title": payload.get("title"),
            }
        if payload.get("render") != RENDER_PLAN_FILE:
            raise ValueError(f"a file record cannot render {payload.get('render')!r}")
        rendered = self.renderer.message(run, {}).file
        if rendered is None:
            return None
        filename, content = rendered
        return {"filename": filename, "content": content, "title": filename}

    def _remember(self, run_id: int | None, digest: str, result: dict[str, Any]) -> dict[str, Any]:
        if run_id is not None:
            self._shown[run_id] = digest
            self._shown.move_to_end(run_id)
            while len(self._shown) > SHOWN_REMEMBERED:
                self._shown.popitem(last=False)
        return result

    # -- the calls (each returns what the outbox records as the item's result) -----------------------

    def _post(self, channel: str, content: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.chat_postMessage(channel=channel, **_message_args(content))
        return {"ts": answer["ts"], "channel": answer["channel"]}

    def _update(self, channel: str, ts: str, content: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.chat_update(channel=channel, ts=ts, **_message_args(content))
        return {"ts": answer["ts"], "channel": answer["channel"]}

    def _post_in_place_of_update(
        self, item: OutboxItem, owner: int | None, content: dict[str, Any]
    ) -> dict[str, Any]:
        result = self._post(item.channel, content)
        if owner is not None:
            self.store.set_slack_message(owner, result["channel"], result["ts"])
        return result

    def _ephemeral(self, channel: str, user: str, text: str) -> dict[str, Any]:
        answer = self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        return {"message_ts": answer.get("message_ts"), "channel": channel}

    def _reply(self, channel: str, thread_ts: str | None, text: str) -> dict[str, Any]:
        answer = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
        return {"ts": answer["ts"], "channel": answer["channel"]}

    def _upload(self, channel: str, thread_ts: str | None, file: FileUpload) -> dict[str, Any]:
        answer = self.client.files_upload_v2(
            channel=channel, thread_ts=thread_ts, request_file_info=False, **file
        )
        shared: list[dict[str, Any]] = answer.get("files") or []
        return {"file_ids": [item["id"] for item in shared], "channel": channel}

    def _wait_for_post(self, item: OutboxItem, owner: int | None) -> None:
        pending = self.store.pending_for(item.channel)
        if any(other.run_id == owner and other.kind is OutboxKind.POST for other in pending):
            raise Retry("the run's message is not posted yet", WAIT_FOR_POST.total_seconds())


def _message_args(content: dict[str, Any]) -> dict[str, Any]:
    # Nothing links names or unfurls: the rendered text decides every mention itself.
    return {
        "text": content["text"],
        "blocks": content.get("blocks"),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _classified(exc: SlackApiError) -> Retry | Fail:
    """Retry or give up, from Slack's HTTP status and error name (never its payload or our token)."""
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    error = response.get("error") if hasattr(response, "get") else None
    error = str(error or f"http_{status}")
    verdict = classify_slack_error(status, error)
    if verdict is Verdict.RATE_LIMITED:
        headers = getattr(response, "headers", None) or {}
        wait = retry_after_seconds(headers.items())
        return Retry(f"rate limited (HTTP {status}), Retry-After {wait:g}s", wait, verdict)
    if verdict is Verdict.RETRY:
        return Retry(f"Slack answered HTTP {status} {error}", 0.0, verdict)
    return Fail(
        f"Slack refused the call: {error}", why=REFUSED, plain=plain_text_may_help(error), short=error
    )


def _describe(exc: BaseException) -> str:
    # Type and a short message: our own data is redacted, but a whole payload never goes to the log.
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _duration(age: timedelta) -> str:
    return f"{int(age.total_seconds())}s"
