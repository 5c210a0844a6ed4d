"""A Slack click behind a load balancer, with several `tfops serve` processes on one PostgreSQL.

Slack in HTTP mode posts a click to whichever instance the load balancer picks. Here it reaches
the instance that did NOT plan the run: the click is verified and recorded there, and the run is
applied by the instance that holds its saved plan, from exactly that file. Real daemons, real
Git, real Terraform, the fake Slack Web API (the leader posts the message with its buttons), a
signed HTTP click as Slack sends it.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from harness import cloud_object, wait_for
from slackfake import FakeSlack, FakeSocketMode
from test_ha_daemons import _app_estate, _http_instances, _runs, daemons, postgres  # noqa: F401
from test_slack_approvals import ALICE, CHANNEL, SIGNING_SECRET, buttons, post_signed

from tfops.models import DecisionOutcome, RunStatus
from tfops.notify.blocks import APPROVE_ACTION_ID, action_value
from tfops.store import Store

pytestmark = pytest.mark.terraform


@pytest.fixture
def slack():
    fake = FakeSlack(users={ALICE: "alice"})
    # Only its payload builder is used: the clicks go over HTTP, as behind a load balancer.
    with fake, FakeSocketMode(fake) as payloads:
        fake.socket_mode = payloads
        yield fake


def _shows_buttons(slack, posted) -> bool:
    return bool(buttons(slack.message(posted.channel, posted.ts)))


def test_a_slack_click_sent_to_the_follower_is_applied_by_the_instance_holding_the_plan(
    tmp_path,
    demo_cloud,
    terraform_bin,
    tf_cli_config,
    tf_env,
    daemons,  # noqa: F811 - the fixture imported above
    postgres,  # noqa: F811
    slack,
):
    store_url, _, remote = _app_estate(tmp_path, postgres, demo_cloud, "ha_slack_click")
    (tmp_path / "bot-token").write_text(slack.bot_token)
    (tmp_path / "signing-secret").write_text(SIGNING_SECRET)
    policy = {"on_merge": "ask", "on_drift": "notify", "drift_interval": 0, "approvers": [ALICE]}
    asking = [{"discover": "stacks/*", **policy}]
    slack_config = {
        "bot_token_file": str(tmp_path / "bot-token"),
        "channel": CHANNEL,
        "base_url": slack.api_url,
        "mode": "http",
        "signing_secret_file": str(tmp_path / "signing-secret"),
    }
    ports = _http_instances(
        tmp_path, remote, store_url, terraform_bin, tf_cli_config, tf_env, daemons,
        stacks=asking, slack=slack_config,
    )  # fmt: skip
    store = Store(store_url)
    try:
        [waiting] = wait_for(
            lambda: [r for r in _runs(store) if r.status is RunStatus.AWAITING_APPROVAL],
            timeout=240,
            what="the deploy to ask",
        )
        posted = wait_for(
            lambda: (m := store.get_slack_message(waiting.id)) and _shows_buttons(slack, m) and m,
            timeout=60,
            what="the approval buttons in Slack",
        )
        [follower] = [name for name in ports if name != waiting.instance_id]
        value = action_value(waiting.id, waiting.commit_sha, waiting.plan_sha256)
        payload = slack.socket_mode.block_actions_payload(
            ALICE, APPROVE_ACTION_ID, value, channel=posted.channel, message_ts=posted.ts
        )

        answer = post_signed(
            f"http://127.0.0.1:{ports[follower]}/slack/interactions",
            urlencode({"payload": json.dumps(payload)}).encode(),
        )

        assert answer.status_code == 200, answer.text
        applied = wait_for(
            lambda: (r := store.get_run(waiting.id)) and r.status.is_terminal and r,
            timeout=240,
            what="the approved run to end",
        )
        assert applied.status is RunStatus.APPLIED, applied.error
        assert applied.instance_id == waiting.instance_id, "applied where its saved plan is"
        assert applied.plan_sha256 == waiting.plan_sha256, "exactly the approved plan"
        assert applied.decided_by == "alice"
        [decision] = store.decisions(waiting.id)
        assert (decision.actor_id, decision.outcome) == (ALICE, DecisionOutcome.COUNTED)
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v1"
        deploys = [r for r in _runs(store) if r.stack == "app"]
        assert [r.id for r in deploys] == [waiting.id], "no second plan or run of the stack"
    finally:
        store.close()
