"""Slack clicks: parsing `block_actions` payloads, the sink that answers the clicker, and the directory
that says who is an approver (against the fake Slack Web API, with the real slack-sdk client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slackfake import FakeSlack

from tfops.approvals import Answer, DecisionRequest, Verdict
from tfops.models import (
    DecisionKind,
    DecisionSource,
    OutboxKind,
    Run,
    RunKind,
    RunStatus,
    Trigger,
    TriggerSource,
)
from tfops.notify.blocks import APPROVE_ACTION_ID, REJECT_ACTION_ID, action_value
from tfops.notify.directory import SlackDirectory
from tfops.notify.interactions import Click, SlackInteractions, parse_click
from tfops.store import Store

CHANNEL = "C0INFRA"
SHA = "a" * 40
PLAN = "f" * 64
VALUE = action_value(7, SHA, PLAN)
APPROVERS_GROUP = "S0APPROVERS"


def action(action_id: str = APPROVE_ACTION_ID, value: Any = VALUE) -> dict[str, Any]:
    return {
        "action_id": action_id,
        "block_id": "tfops_run_7",
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
        "value": value,
        "style": "primary",
        "type": "button",
        "action_ts": "1700000001.000200",
    }


def block_actions(**changes: Any) -> dict[str, Any]:
    """A payload shaped like the one Slack sends for a button click in a channel message."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice.l", "name": "alice", "team_id": "T0TFOPS"},
        "api_app_id": "A0TFOPS",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": "1700000001.123.abcdef",
        "team": {"id": "T0TFOPS", "domain": "tfops"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "infra"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "network: awaiting approval"},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0TFOPS/1/abc",
        "actions": [action()],
    }
    payload.update(changes)
    return payload


# --- parse_click (pure) ----------------------------------------------------------------------------


def test_an_approve_click_is_parsed_with_its_binding_and_clicker():
    assert parse_click(block_actions()) == Click(
        decision=DecisionKind.APPROVE,
        run_id=7,
        commit_sha=SHA,
        plan_sha256=PLAN,
        user_id="U0ALICE",
        user_name="alice",
        channel=CHANNEL,
    )


def test_a_reject_click_is_a_reject_and_a_user_without_name_is_known_by_username():
    click = parse_click(
        block_actions(actions=[action(REJECT_ACTION_ID)], user={"id": "W0ALICE", "username": "alice.l"})
    )

    assert click is not None
    assert (click.decision, click.user_id, click.user_name) == (DecisionKind.REJECT, "W0ALICE", "alice.l")


def test_a_click_without_a_channel_field_takes_it_from_the_container():
    payload = block_actions()
    del payload["channel"]

    click = parse_click(payload)

    assert click is not None and click.channel == payload["container"]["channel_id"]


def test_a_click_that_names_no_channel_at_all_is_parsed_without_one():
    payload = block_actions()
    del payload["channel"]
    del payload["container"]

    click = parse_click(payload)

    assert click is not None and click.channel is None


@pytest.mark.parametrize(
    "payload",
    [
        block_actions(type="view_submission"),
        block_actions(type="interactive_message"),
        block_actions(actions=[action("approve")]),
        block_actions(actions=[action(), action(REJECT_ACTION_ID)]),
        block_actions(actions=[]),
        block_actions(actions=action()),
        block_actions(actions=[action(value=VALUE.replace(":7:", ":8:") + "0")]),
        block_actions(actions=[action(value=VALUE[:-1])]),
        block_actions(actions=[action(value="7")]),
        block_actions(actions=[action(value=None)]),
        block_actions(user={"id": "alice", "name": "alice"}),
        block_actions(user={"id": "u0alice", "name": "alice"}),
        block_actions(user={"id": "U0ALICE\n", "name": "alice"}),
        block_actions(user={"id": 42, "name": "alice"}),
        block_actions(user={"name": "alice"}),
        block_actions(user="U0ALICE"),
        block_actions(user=None),
        {k: v for k, v in block_actions().items() if k != "user"},
        {},
    ],
    ids=[
        "view-submission",
        "legacy-interactive-message",
        "unknown-action-id",
        "two-actions",
        "no-actions",
        "actions-not-a-list",
        "forged-value",
        "truncated-value",
        "bare-run-id",
        "no-value",
        "user-id-not-an-id",
        "user-id-lowercase",
        "user-id-with-newline",
        "user-id-not-a-string",
        "user-without-id",
        "user-not-an-object",
        "user-null",
        "user-missing",
        "empty",
    ],
)
def test_anything_but_a_well_formed_tfops_click_is_not_a_click(payload: dict[str, Any]):
    assert parse_click(payload) is None


@pytest.mark.parametrize("action_id", [[], {}, ["tfops_approve"], {"id": "tfops_approve"}])
def test_an_action_id_that_is_not_a_string_is_not_a_click(action_id: Any):
    # Slack never sends this, but the payload is untrusted JSON: it must not raise.
    assert parse_click(block_actions(actions=[action(action_id)])) is None


_json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def real_or_random(real: Any) -> st.SearchStrategy[Any]:
    return st.just(real) | json_values


random_action = (
    st.fixed_dictionaries(
        {"action_id": real_or_random(APPROVE_ACTION_ID), "value": real_or_random(VALUE)},
        optional={"type": real_or_random("button"), "block_id": json_values},
    )
    | json_values
)
random_user = st.fixed_dictionaries(
    {"id": real_or_random("U0ALICE")},
    optional={"name": json_values, "username": json_values},
)
near_clicks = st.fixed_dictionaries(
    {
        "type": real_or_random("block_actions"),
        "user": random_user | json_values,
        "actions": st.lists(random_action, min_size=1, max_size=2) | json_values,
    },
    optional={"channel": st.fixed_dictionaries({"id": real_or_random(CHANNEL)}) | json_values},
)


@settings(max_examples=400, deadline=None)
@given(payload=near_clicks | st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_random_json_payloads_never_raise(payload: dict[str, Any]):
    click = parse_click(payload)

    assert click is None or isinstance(click, Click)


# --- SlackInteractions, with a fake desk on a real store -------------------------------------------


@dataclass
class FakeDesk:
    answer: Answer
    gate: threading.Event | None = None
    started: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[DecisionRequest, str]] = field(default_factory=list)
    fail_first: bool = False

    def decide(self, request: DecisionRequest, *, transport: str = "") -> Answer:
        self.requests.append((request, transport))
        self.started.set()
        if self.gate is not None and not self.gate.wait(5):
            raise TimeoutError("the test never opened the gate")
        if self.fail_first and len(self.requests) == 1:
            raise RuntimeError("the desk broke")
        return self.answer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(Store.sqlite_url(tmp_path / "t.db"))
    store.upgrade()
    store.sync_stacks([("network", "stacks/network")])
    yield store
    store.close()


@pytest.fixture
def run(store: Store) -> Run:
    return store.create_run(
        "network", RunKind.DEPLOY, Trigger(source=TriggerSource.POLL), SHA, status=RunStatus.AWAITING_APPROVAL
    )


def click_on(run: Run, **changes: Any) -> dict[str, Any]:
    return block_actions(actions=[action(value=action_value(run.id, SHA, PLAN))], **changes)


@dataclass
class Wakes:
    count: int = 0

    def __call__(self) -> None:
        self.count += 1


def test_a_refusal_answers_the_clicker_with_one_ephemeral_in_the_clicks_channel(store: Store, run: Run):
    desk = FakeDesk(Answer(Verdict.REFUSE, "you are not an approver of stack network", run))
    wakes = Wakes()
    interactions = SlackInteractions(desk, store, on_enqueue=wakes)

    answer = interactions.handle(click_on(run), "http")

    assert answer is desk.answer
    (item,) = store.pending_for(CHANNEL)
    assert (item.kind, item.run_id) == (OutboxKind.EPHEMERAL, run.id)
    assert item.payload == {"user": "U0ALICE", "text": "you are not an approver of stack network"}
    assert wakes.count == 1
    ((request, transport),) = desk.requests
    assert transport == "http"
    assert (request.run_id, request.decision, request.source) == (
        run.id,
        DecisionKind.APPROVE,
        DecisionSource.SLACK,
    )
    assert (request.actor_id, request.actor_name) == ("U0ALICE", "alice")
    assert (request.commit_sha, request.plan_sha256) == (SHA, PLAN)
    interactions.close()


def test_a_refusal_for_a_run_that_does_not_exist_is_still_answered(store: Store):
    desk = FakeDesk(Answer(Verdict.REFUSE, "run 7 does not exist", None))
    interactions = SlackInteractions(desk, store)

    interactions.handle(block_actions(), "socket")

    (item,) = store.pending_for(CHANNEL)
    assert (item.run_id, item.payload["text"]) == (None, "run 7 does not exist")
    interactions.close()


@pytest.mark.parametrize("verdict", [Verdict.DUPLICATE, Verdict.EXPIRE, Verdict.SUPERSEDE])
def test_outcomes_the_message_does_not_explain_to_the_clicker_are_answered_privately(
    store: Store, run: Run, verdict: Verdict
):
    interactions = SlackInteractions(FakeDesk(Answer(verdict, f"because {verdict}", run)), store)

    interactions.handle(click_on(run), "socket")

    assert [item.payload["text"] for item in store.pending_for(CHANNEL)] == [f"because {verdict}"]
    interactions.close()


@pytest.mark.parametrize("verdict", [Verdict.APPROVE, Verdict.REJECT, Verdict.COUNT])
def test_outcomes_the_run_message_shows_enqueue_nothing(store: Store, run: Run, verdict: Verdict):
    desk = FakeDesk(Answer(verdict, "approved by alice", run))
    wakes = Wakes()
    interactions = SlackInteractions(desk, store, on_enqueue=wakes)

    answer = interactions.handle(click_on(run), "socket")

    assert answer.verdict is verdict
    assert len(desk.requests) == 1
    assert store.outbox_depth() == 0
    assert wakes.count == 0
    interactions.close()


def test_a_payload_that_is_not_a_click_is_ignored_without_asking_the_desk(store: Store, run: Run):
    desk = FakeDesk(Answer(Verdict.REFUSE, "never", run))
    interactions = SlackInteractions(desk, store)

    answer = interactions.handle({"type": "view_submission", "user": {"id": "U0ALICE"}}, "http")

    assert answer is None
    assert desk.requests == []
    assert store.outbox_depth() == 0
    interactions.close()


def test_submit_returns_before_a_slow_desk_finishes_and_close_waits_for_it(store: Store, run: Run):
    gate = threading.Event()
    desk = FakeDesk(Answer(Verdict.REFUSE, "you are not an approver", run), gate=gate)
    interactions = SlackInteractions(desk, store)

    started = time.monotonic()
    interactions.submit(click_on(run), transport="http")
    submitted_in = time.monotonic() - started

    assert desk.started.wait(2), "the desk was never called"
    assert submitted_in < 0.5
    assert store.outbox_depth() == 0  # the desk is still deciding
    opener = threading.Timer(0.2, gate.set)
    opener.start()
    interactions.close()
    opener.join()

    assert store.outbox_depth() == 1


def test_close_stops_waiting_for_a_stuck_desk_after_its_timeout(store: Store, run: Run):
    gate = threading.Event()
    desk = FakeDesk(Answer(Verdict.REFUSE, "you are not an approver", run), gate=gate)
    interactions = SlackInteractions(desk, store)
    interactions.submit(click_on(run), transport="http")
    assert desk.started.wait(2), "the desk was never called"
    opener = threading.Timer(1.5, gate.set)  # frees the desk if close() waits regardless
    opener.start()

    started = time.monotonic()
    interactions.close(timeout=0.2)
    waited = time.monotonic() - started

    gate.set()
    opener.join()
    deadline = time.monotonic() + 2
    while store.outbox_depth() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)  # let the freed decision finish before the store closes
    assert waited < 1.0, f"close(timeout=0.2) waited {waited:.2f}s"


def test_a_desk_failure_does_not_stop_the_next_click_from_being_handled(store: Store, run: Run):
    desk = FakeDesk(Answer(Verdict.REFUSE, "you are not an approver", run), fail_first=True)
    interactions = SlackInteractions(desk, store)

    interactions.submit(click_on(run), transport="socket")
    interactions.submit(click_on(run), transport="socket")
    interactions.close()

    assert len(desk.requests) == 2
    assert store.outbox_depth() == 1


def test_a_click_submitted_after_close_is_dropped_without_raising(store: Store, run: Run):
    desk = FakeDesk(Answer(Verdict.REFUSE, "never", run))
    interactions = SlackInteractions(desk, store)
    interactions.close()

    interactions.submit(click_on(run), transport="socket")

    assert desk.requests == []


# --- SlackDirectory, against the fake Slack Web API ------------------------------------------------


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack-sdk sends even 127.0.0.1 through HTTPS_PROXY/HTTP_PROXY when they are set.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={APPROVERS_GROUP: ["U0ALICE", "U0BOB"]}) as fake:
        yield fake


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


MEMBERS_CALL = "usergroups.users.list"


def test_a_listed_user_id_is_an_approver_without_asking_slack(slack: FakeSlack):
    directory = SlackDirectory(slack.web_client())

    assert directory.is_approver("U0CAROL", ("U0CAROL", APPROVERS_GROUP)) is True
    assert directory.is_approver("U0DAVE", ("U0CAROL", "U0ERIN")) is False
    assert slack.calls() == []


def test_group_members_are_approvers_with_one_slack_call_per_ttl(slack: FakeSlack):
    clock = Monotonic()
    directory = SlackDirectory(slack.web_client(), ttl=60, clock=clock)
    approvers = ("U0CAROL", APPROVERS_GROUP)

    checks = [directory.is_approver(user, approvers) for user in ("U0ALICE", "U0BOB", "U0ALICE")]

    assert checks == [True, True, True]
    assert len(slack.calls(MEMBERS_CALL)) == 1
    assert slack.calls(MEMBERS_CALL)[0].params["usergroup"] == APPROVERS_GROUP

    slack.set_usergroup(APPROVERS_GROUP, ["U0ALICE"])  # bob leaves the group
    clock.now += 59
    assert directory.is_approver("U0BOB", approvers) is True  # still cached
    assert len(slack.calls(MEMBERS_CALL)) == 1

    clock.now += 1
    assert directory.is_approver("U0BOB", approvers) is False
    assert len(slack.calls(MEMBERS_CALL)) == 2


def test_a_non_member_is_not_an_approver(slack: FakeSlack):
    directory = SlackDirectory(slack.web_client())

    assert directory.is_approver("U0MALLORY", ("U0CAROL", APPROVERS_GROUP)) is False
    assert len(slack.calls(MEMBERS_CALL)) == 1


@pytest.mark.parametrize("how", ["503", "refuse"])
def test_slack_down_with_nothing_cached_is_unknown(slack: FakeSlack, how: str):
    directory = SlackDirectory(slack.web_client())
    slack.go_down(30, how=how)

    assert directory.is_approver("U0ALICE", ("U0CAROL", APPROVERS_GROUP)) is None


def test_slack_down_with_a_fresh_cache_still_answers(slack: FakeSlack):
    clock = Monotonic()
    directory = SlackDirectory(slack.web_client(), ttl=60, clock=clock)
    assert directory.is_approver("U0ALICE", (APPROVERS_GROUP,)) is True
    slack.go_down(30)
    clock.now += 30

    assert directory.is_approver("U0BOB", (APPROVERS_GROUP,)) is True
    assert directory.is_approver("U0MALLORY", (APPROVERS_GROUP,)) is False
    assert len(slack.calls(MEMBERS_CALL)) == 1
