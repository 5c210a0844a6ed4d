"""Slack delivery through the outbox, with real git, real Terraform and a fake Slack Web API."""

from __future__ import annotations

import threading
import time

import pytest
from harness import Remote, demo_stack, edit_cloud_object, make_app, wait_for, write_config
from slackfake import MAX_BLOCKS, MAX_BLOCKS_TEXT, MAX_SECTION_TEXT, FakeSlack, blocks_text_length
from test_secrets_and_cli import CANARY, CONSOLE, SECRET_CODE

from tfops.config import load_settings
from tfops.errors import ConfigError
from tfops.models import RunKind, RunStatus

pytestmark = pytest.mark.terraform

CHANNEL = "C0DEPLOYS"


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def remote(tmp_path, demo_cloud):
    remote = Remote(tmp_path)
    remote.commit_and_push("app stack", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    return remote


@pytest.fixture
def config(tmp_path, remote, terraform_bin, tf_cli_config, slack):
    token_file = tmp_path / "slack-token"
    token_file.write_text(slack.bot_token + "\n")
    return write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        slack={"bot_token_file": str(token_file), "channel": CHANNEL, "base_url": slack.api_url},
    )


@pytest.fixture
def apps(config, tf_env):
    built = []

    def make():
        app = make_app(config, tf_env)
        app.outbox_sender.idle_wait = 0.1  # the tests wait on delivery; a daemon can idle longer
        built.append(app)
        return app

    yield make
    for app in built:
        app.close()


def delivered(app):
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")


def top_level(slack):
    return [message for message in slack.messages(CHANNEL) if message.thread_ts is None]


def assert_within_limits(blocks):
    assert len(blocks) <= MAX_BLOCKS
    assert blocks_text_length(blocks) <= MAX_BLOCKS_TEXT
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT


def test_a_deploy_is_one_message_updated_in_place_to_its_final_status(apps, slack):
    app = apps()
    result = app.reconcile_once(timeout=120)
    delivered(app)

    deploy = next(run for run in result.runs if run.kind is RunKind.DEPLOY)
    assert deploy.status is RunStatus.APPLIED
    posts = slack.calls("chat.postMessage")
    assert [call.ok for call in posts] == [True], "one post, for the deploy; an in-sync drift check is quiet"
    [message] = top_level(slack)
    recorded = app.store.get_slack_message(deploy.id)
    assert (recorded.channel, recorded.ts) == (CHANNEL, message.ts)
    updates = slack.calls("chat.update")
    assert updates and all(call.ok and call.params["ts"] == message.ts for call in updates)
    assert message.edits == len(updates)
    assert "applied" in message.text.lower()
    assert "planning" in (message.history[0][0] or "").lower()
    for text, blocks in [*message.history, (message.text, message.blocks)]:
        assert text and len(text) <= 3000
        assert_within_limits(blocks)


def test_rate_limit_then_outage_delays_delivery_but_loses_and_repeats_nothing(
    apps, slack, remote, demo_cloud
):
    app = apps()
    slack.fail_next(1, status=429, retry_after=1)

    def outage_after_the_throttle():
        slack.wait_for_calls("chat.postMessage", timeout=60, ok=False)
        slack.go_down(2.0)

    outage = threading.Thread(target=outage_after_the_throttle)
    outage.start()
    app.reconcile_once(timeout=120)
    outage.join()
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    app.reconcile_once(timeout=120)
    delivered(app)

    calls = slack.calls()
    throttled = calls[0]
    assert throttled.status == 429
    after_throttle = [call for call in calls if call.at > throttled.at]
    assert after_throttle[0].at - throttled.at >= 0.9, "Retry-After was not obeyed"
    assert any(call.status == 503 for call in calls), "the outage was never seen"
    deploys = [run for run in app.store.list_runs(stack="app") if run.kind is RunKind.DEPLOY]
    messages = top_level(slack)
    assert len(messages) == len(deploys) == 2, "each run posted exactly once"
    for run, message in zip(sorted(deploys, key=lambda run: run.id), messages, strict=True):
        assert app.store.get_slack_message(run.id).ts == message.ts
        texts = [text.lower() for text, _ in message.history] + [message.text.lower()]
        assert "applied" in texts[-1]
        assert len(texts) == len(set(texts)), "an update was delivered twice or out of order"


def test_a_restart_delivers_what_the_previous_process_left_in_the_outbox_once(apps, slack):
    first = apps()
    first.outbox_sender.stop()  # the process "dies" before its sender sends anything
    first.reconcile_once(timeout=120)
    left = first.store.outbox_depth()
    first.close()
    assert left >= 2 and slack.calls() == []

    second = apps()
    second.start()
    delivered(second)
    time.sleep(0.5)  # nothing more may arrive once the outbox is empty

    [message] = top_level(slack)
    assert len(slack.calls("chat.postMessage")) == 1
    # The backlog is rendered from the run as it stands: one post showing the final status, and
    # the records of the earlier statuses change nothing more (no edit that repeats the message).
    assert "applied" in message.text.lower()
    assert len(slack.calls("chat.update")) == message.edits <= left - 1
    texts = [text for text, _ in message.history] + [message.text]
    assert len(texts) == len(set(texts))


def test_a_sensitive_value_never_reaches_slack(apps, slack, remote, demo_cloud):
    remote.commit_and_push(
        "db", {"stacks/db/main.tf": demo_stack(demo_cloud, {}, extra=SECRET_CODE.format(secret=CANARY))}
    )
    app = apps()
    app.reconcile_once(timeout=120)
    edit_cloud_object(demo_cloud, "db-credentials", secret=CONSOLE)
    [drift] = app.one_shot(RunKind.DRIFT, ["db"], timeout=120)
    delivered(app)

    assert drift.status is RunStatus.PLANNED
    assert app.store.get_slack_message(drift.id) is not None, "the drift was posted"
    sent = slack.all_text()
    assert "demo_object.db" in sent
    assert CANARY not in sent and CONSOLE not in sent


BULK_CODE = """\
resource "demo_object" "bulk" {
  count   = 30
  name    = "bulk-${count.index}"
  content = "item ${count.index}"
}
"""

BROKEN_CODE = """\
resource "demo_object" "broken" {
  name    = "broken"
  content = var.not_declared
}
"""


def test_a_long_plan_is_attached_to_the_thread_and_a_failure_explained_there(apps, slack, remote, demo_cloud):
    remote.commit_and_push(
        "bulk and broken",
        {
            "stacks/bulk/main.tf": demo_stack(demo_cloud, {}, extra=BULK_CODE),
            "stacks/broken/main.tf": demo_stack(demo_cloud, {}, extra=BROKEN_CODE),
        },
    )
    app = apps()
    app.reconcile_once(timeout=120)
    delivered(app)

    by_stack = {run.stack: run for run in app.store.list_runs(limit=50) if run.kind is RunKind.DEPLOY}
    assert by_stack["bulk"].status is RunStatus.APPLIED
    assert by_stack["broken"].status is RunStatus.FAILED
    bulk = app.store.get_slack_message(by_stack["bulk"].id)
    [plan_file] = [file for file in slack.files(CHANNEL) if file.thread_ts == bulk.ts]
    assert "bulk-29" in plan_file.text or "bulk[29]" in plan_file.text
    assert_within_limits(slack.message(CHANNEL, bulk.ts).blocks)
    broken = app.store.get_slack_message(by_stack["broken"].id)
    replies = slack.thread(CHANNEL, broken.ts)
    assert replies and "not_declared" in replies[-1].text
    assert "failed" in slack.message(CHANNEL, broken.ts).text.lower()


def test_an_inline_slack_token_is_refused_and_never_echoed(tmp_path):
    config_file = tmp_path / "tfops.yaml"
    config_file.write_text("slack:\n  token: xoxb-pasted-by-mistake\n  channel: C0DEPLOYS\n")

    with pytest.raises(ConfigError) as refused:
        load_settings(config_file, environ={})

    assert "slack.token: inline secrets are not accepted" in str(refused.value)
    assert "xoxb-pasted-by-mistake" not in str(refused.value)


def test_without_a_slack_section_nothing_is_queued_for_slack(
    tmp_path, remote, terraform_bin, tf_cli_config, tf_env
):
    config_file = write_config(
        tmp_path / "plain.yaml",
        remote=remote,
        data_dir=tmp_path / "plain-data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
    )
    app = make_app(config_file, tf_env)
    try:
        assert app.outbox_sender is None
        app.reconcile_once(timeout=120)
        assert app.store.outbox_depth() == 0 and app.store.next_due() == []
    finally:
        app.close()
