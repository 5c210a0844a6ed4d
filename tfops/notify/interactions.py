"""Slack interactions (button clicks) from any transport, handed to the approval desk.

Transports (Socket Mode, the HTTP route) verify and acknowledge; they never decide. They pass the
interaction payload to an `InteractionSink`, which must return at once: the work happens after the
acknowledgement, on the sink's own thread.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tfops.approvals import Answer, DecisionRequest, Verdict
from tfops.models import DecisionKind, DecisionSource, OutboxKind
from tfops.notify.blocks import APPROVE_ACTION_ID, REJECT_ACTION_ID, parse_action_value
from tfops.store import Store

log = logging.getLogger(__name__)


class InteractionSink(Protocol):
    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        """Take one verified interaction payload (the JSON Slack sent); returns without waiting.

        `transport` is "socket" or "http", for the logs and the audit trail.
        """
        ...


# --- block_actions payloads (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Click:
    """An Approve or Reject click, as Slack reported it (the binding is checked by the desk)."""

    decision: DecisionKind
    run_id: int
    commit_sha: str
    plan_sha256: str
    user_id: str
    user_name: str | None
    channel: str | None


_DECISIONS = {APPROVE_ACTION_ID: DecisionKind.APPROVE, REJECT_ACTION_ID: DecisionKind.REJECT}


def parse_click(payload: Mapping[str, Any]) -> Click | None:
    """The tfops button click in a `block_actions` payload; None for anything else."""
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    user = payload.get("user")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(user, Mapping):
        return None
    action = actions[0]
    action_id = action.get("action_id") if isinstance(action, Mapping) else None
    if not isinstance(action_id, str) or action_id not in _DECISIONS:
        return None
    try:
        run_id, commit_sha, plan_sha256 = parse_action_value(action.get("value"))
    except ValueError:
        return None
    user_id = user.get("id")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        return None
    channel_id = _channel_id(payload)
    return Click(
        decision=_DECISIONS[action_id],
        run_id=run_id,
        commit_sha=commit_sha,
        plan_sha256=plan_sha256,
        user_id=user_id,
        user_name=_user_name(user),
        channel=channel_id if isinstance(channel_id, str) and channel_id else None,
    )


def _channel_id(payload: Mapping[str, Any]) -> str | None:
    # `channel` is there for messages in channels; `container` names it for every message.
    for holder, key in (("channel", "id"), ("container", "channel_id")):
        value = payload.get(holder)
        found = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(found, str) and found:
            return found
    return None


def _user_name(user: Mapping[str, Any]) -> str | None:
    for key in ("name", "username"):
        value = user.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:80]
    return None


_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")


# --- the sink ----------------------------------------------------------------------------------------


class Desk(Protocol):
    def decide(self, request: DecisionRequest, *, transport: str = "") -> Answer: ...


class SlackInteractions:
    """The `InteractionSink` of the daemon: decisions happen on one worker thread, after the ack.

    The person who clicked is answered with an ephemeral message through the outbox.
    """

    def __init__(self, desk: Desk, store: Store, *, on_enqueue: Callable[[], None] = lambda: None) -> None:
        self.desk = desk
        self.store = store
        self.on_enqueue = on_enqueue
        self._inbox: queue.SimpleQueue[tuple[dict[str, Any], str] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        # A daemon thread, so that a decision stuck on git or the store cannot hold up the exit.
        self._worker = threading.Thread(target=self._work, name="tfops-decisions", daemon=True)
        self._worker.start()

    def submit(self, payload: Mapping[str, Any], *, transport: str) -> None:
        if self._closed.is_set():
            log.warning("a Slack interaction arrived while stopping; it was not handled")
            return
        self._inbox.put((dict(payload), transport))

    def close(self, timeout: float = 10.0) -> None:
        """Finish the decisions in hand, waiting at most `timeout` seconds."""
        self._closed.set()
        self._inbox.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (item := self._inbox.get()) is not None:
            payload, transport = item
            try:
                self.handle(payload, transport)
            except Exception:
                log.exception("a Slack interaction could not be handled")

    def _audit_unknown(self, payload: Mapping[str, Any], transport: str) -> None:
        """A button click that is not a well-formed tfops click (forged or damaged) is recorded."""
        if payload.get("type") != "block_actions":
            log.debug("ignored a Slack interaction of type %r", payload.get("type"))
            return
        log.warning("refused a Slack click that is not a valid tfops button (transport %s)", transport)
        self.store.audit(_actor_of(payload), None, "invalid_click", None, {"transport": transport})

    def handle(self, payload: Mapping[str, Any], transport: str) -> Answer | None:
        click = parse_click(payload)
        if click is None:
            self._audit_unknown(payload, transport)
            return None
        answer = self.desk.decide(
            DecisionRequest(
                run_id=click.run_id,
                decision=click.decision,
                actor_id=click.user_id,
                actor_name=click.user_name,
                source=DecisionSource.SLACK,
                commit_sha=click.commit_sha,
                plan_sha256=click.plan_sha256,
            ),
            transport=transport,
        )
        if click.channel is not None and answer.verdict not in _SILENT_VERDICTS:
            self.store.enqueue(
                click.channel,
                OutboxKind.EPHEMERAL,
                {"user": click.user_id, "text": answer.text},
                run_id=click.run_id if answer.run is not None else None,
            )
            self.on_enqueue()
        return answer


def _actor_of(payload: Mapping[str, Any]) -> str:
    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    return user_id if isinstance(user_id, str) and _USER_ID.fullmatch(user_id) else "unknown"


# The message itself shows these outcomes to everyone; nobody needs a private note as well.
_SILENT_VERDICTS = frozenset({Verdict.APPROVE, Verdict.REJECT, Verdict.COUNT})
