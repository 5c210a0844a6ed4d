"""Slack delivery through the outbox, with real git, real Terraform and a fake Slack Web API.

The scenarios at the end drive the sender itself (a real store, the real notifier and
transitions, the real slack-sdk client against the fake), so outages run in seconds.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
from harness import Remote, demo_stack, edit_cloud_object, make_app, wait_for, write_config
from slackfake import MAX_BLOCKS, MAX_BLOCKS_TEXT, MAX_SECTION_TEXT, blocks_text_length
from test_secrets_and_cli import CANARY, CONSOLE, SECRET_CODE

from tfops.config import load_settings
from tfops.errors import ConfigError
from tfops.metrics import Metrics
from tfops.models import OutboxKind, OutboxStatus, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier, RunNotice
from tfops.notify.blocks import CommitInfo
from tfops.notify.slack import OutboxSender, SlackNotifier, web_client
from tfops.notify.slack_policy import DeliveryTiming
from tfops.notify.slack_render import RunRenderer
from tfops.reconcile import Transitions
from tfops.store import Store

pytestmark = pytest.mark.terraform

CHANNEL = "C0DEPLOYS"


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


# -- the sender on its own: outages, rate limits, poison items, slow commit lookups ---------------------

OTHER = "C0OTHERS"
SHA = "c" * 40
POLL = Trigger(source=TriggerSource.POLL, actor="poll")
# Time to deliver a backlog of a few items once Slack answers, on a busy machine.
DELIVERY_ALLOWANCE = 2.5


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("poison", "stacks/poison")])
    yield store
    store.close()


@pytest.fixture
def senders():
    started = []

    def start(store, slack, **options):
        client = web_client(slack.bot_token, slack.api_url, timeout=5)
        sender = OutboxSender(store, client, idle_wait=0.05, **options)
        sender.start()
        started.append(sender)
        return sender

    yield start
    for sender in started:
        sender.stop()


def transitions_for(store, sender=None):
    notifier = SlackNotifier(store, lambda stack: CHANNEL, on_enqueue=sender.wake if sender else lambda: None)
    return Transitions(store, MultiNotifier(notifier))


def texts(slack, channel):
    return [message.text for message in slack.messages(channel)]


def uncapped_lag(base, outage):
    """How long after an outage ends the old schedule (doubling, cap 300 s) tries again."""
    tried, attempt = 0.0, 0
    while tried <= outage:
        tried += base * 2**attempt
        attempt += 1
    return tried - outage


@pytest.mark.parametrize("outage", [8.0])
def test_after_an_outage_the_backlog_leaves_within_the_probe_cap(store, slack, senders, outage):
    timing = DeliveryTiming(backoff_base=0.03, probe_cap=0.5)
    bound = timing.probe_cap + DELIVERY_ALLOWANCE
    assert uncapped_lag(timing.backoff_base, outage) > 2 * bound, "the outage is too short to tell"
    back_at = time.monotonic() + outage
    slack.go_down(outage)
    for channel in (CHANNEL, OTHER, CHANNEL, OTHER, CHANNEL):
        store.enqueue(channel, OutboxKind.POST, {"text": f"{channel} #{store.outbox_depth()}"})

    senders(store, slack, timing=timing)
    wait_for(lambda: store.outbox_depth() == 0, timeout=outage + 30, what="the backlog to leave")

    calls = slack.calls("chat.postMessage")
    failed = [call for call in calls if not call.ok]
    sent = [call for call in calls if call.ok]
    assert failed and all(call.status == 503 for call in failed), "the outage was seen"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(failed)]
    assert max(gaps) <= timing.probe_cap + DELIVERY_ALLOWANCE, "Slack was probed throughout the outage"
    assert max(call.at for call in sent) - back_at <= bound, "the backlog waited on a grown backoff"
    assert texts(slack, CHANNEL) == [f"{CHANNEL} #0", f"{CHANNEL} #2", f"{CHANNEL} #4"]
    assert texts(slack, OTHER) == [f"{OTHER} #1", f"{OTHER} #3"]


def test_after_a_429_nothing_is_sent_before_retry_after_and_then_promptly(store, slack, senders):
    retry_after = 2
    slack.fail_next(1, status=429, retry_after=retry_after)
    for text, channel in (("first", CHANNEL), ("other channel", OTHER), ("second", CHANNEL)):
        store.enqueue(channel, OutboxKind.POST, {"text": text})

    senders(store, slack)
    wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="delivery")

    throttled, *later = slack.calls()
    assert (throttled.status, throttled.params["text"]) == (429, "first")
    assert all(call.at - throttled.at >= retry_after for call in later), "a call came before Retry-After"
    [retried] = [call for call in later if call.params["text"] == "first"]
    assert retried.ok and retried.at - throttled.at <= retry_after + DELIVERY_ALLOWANCE
    assert texts(slack, CHANNEL) == ["first", "second"] and texts(slack, OTHER) == ["other channel"]


def test_blocks_slack_refuses_fail_the_item_and_a_plain_status_takes_their_place(
    store, slack, senders, tmp_path, caplog
):
    slack.refuse_blocks_containing("poison")
    metrics = Metrics()
    sender = senders(store, slack, on_failed=metrics.slack_delivery_failed)
    transitions = transitions_for(store, sender)
    poison = store.create_run("poison", RunKind.DEPLOY, POLL, SHA)
    app = store.create_run("app", RunKind.DEPLOY, POLL, SHA)

    with caplog.at_level(logging.ERROR, logger="tfops.notify.slack"):
        poison = transitions.mark_planning(poison, log_path=tmp_path / "poison.log")
        transitions.mark_planning(app, log_path=tmp_path / "app.log")
        wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="delivery")
        transitions.mark_failed(poison, "terraform exited 1")
        wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="delivery")

    [poison_post, _app_post, poison_update, _thread] = [store.get_outbox_item(i) for i in range(1, 5)]
    for item in (poison_post, poison_update):
        assert item.status is OutboxStatus.FAILED and "invalid_blocks" in item.last_error
    assert [r for r in caplog.records if r.levelno == logging.ERROR and "invalid_blocks" in r.getMessage()]
    assert 'tfops_slack_deliveries_failed_total{reason="refused"} 2.0' in metrics.render()[0].decode()
    shown = slack.message(CHANNEL, store.get_slack_message(poison.id).ts)
    assert not shown.blocks and "poison deploy run" in shown.text and "failed" in shown.text
    assert "planning" in shown.history[0][0], "the refused post was replaced by a plain one"
    app_message = slack.message(CHANNEL, store.get_slack_message(app.id).ts)
    assert app_message.blocks and "planning" in app_message.text, "the channel moved on"


def test_items_tfops_cannot_build_are_failed_and_the_channel_moves_on(store, slack, senders, tmp_path):
    metrics = Metrics()
    store.enqueue(CHANNEL, OutboxKind.POST, {"blocks": []})  # no text: not a message tfops can send
    broken = store.create_run("app", RunKind.DRIFT, POLL, SHA)
    broken = store.transition(broken.id, RunStatus.PLANNING)
    broken = store.transition(broken.id, RunStatus.PLANNED, summary={"changes": [{"no": "address"}]})
    SlackNotifier(store, lambda stack: CHANNEL).run_changed(RunNotice(run=broken, message="drift found"))
    store.enqueue(CHANNEL, OutboxKind.POST, {"text": "after"})

    senders(store, slack, on_failed=metrics.slack_delivery_failed)
    wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="the channel to move on")

    failed = [store.get_outbox_item(i) for i in (1, 2)]
    assert all(item.status is OutboxStatus.FAILED for item in failed)
    assert all("tfops could not build the message" in item.last_error for item in failed)
    assert 'tfops_slack_deliveries_failed_total{reason="unbuildable"} 2.0' in metrics.render()[0].decode()
    plain, after = slack.messages(CHANNEL)
    assert "app drift run" in plain.text and "planned" in plain.text and not plain.blocks
    assert after.text == "after"


class BlockedCommitLookup:
    """The App's commit lookup (`sha -> CommitInfo`), stuck as behind a fetch holding the Git lock."""

    def __init__(self):
        self.asked = threading.Event()
        self.release = threading.Event()

    def __call__(self, sha: str) -> CommitInfo | None:
        self.asked.set()
        if not self.release.wait(60):
            raise TimeoutError("the test never released the lookup")
        return CommitInfo(sha=sha, subject="Add the web server", author="Alice Example")


def test_status_changes_never_wait_for_a_commit_lookup_and_the_message_follows_it(
    store, slack, senders, tmp_path
):
    lookup = BlockedCommitLookup()
    sender = senders(store, slack, renderer=RunRenderer(store, commit_info=lookup))
    transitions = transitions_for(store, sender)
    run = store.create_run("app", RunKind.DEPLOY, POLL, SHA)
    done = threading.Event()

    def move_the_run():
        moved = transitions.mark_planning(run, log_path=tmp_path / "app.log")
        transitions.mark_failed(moved, "terraform exited 1")
        done.set()

    mover = threading.Thread(target=move_the_run)
    mover.start()
    try:
        assert done.wait(10), "a status change waited on the commit lookup"
        assert lookup.asked.wait(10), "the sender looks the commit up"
        assert store.get_run(run.id).status is RunStatus.FAILED
        assert slack.calls("chat.postMessage") == [], "the sender waits for the lookup, not the run"
    finally:
        lookup.release.set()
        mover.join(60)
    wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="delivery")

    message = slack.message(CHANNEL, store.get_slack_message(run.id).ts)
    assert "failed" in message.text
    assert "Add the web server" in str(message.blocks) and "Alice Example" in str(message.blocks)


def test_a_failing_commit_lookup_costs_the_subject_not_the_message(store, slack, senders, tmp_path):
    def no_such_commit(sha: str) -> CommitInfo | None:
        raise LookupError(f"commit {sha} is not in the clone")

    sender = senders(store, slack, renderer=RunRenderer(store, commit_info=no_such_commit))
    run = store.create_run("app", RunKind.DEPLOY, POLL, SHA)
    transitions_for(store, sender).mark_planning(run, log_path=tmp_path / "app.log")
    wait_for(lambda: store.outbox_depth() == 0, timeout=30, what="delivery")

    message = slack.message(CHANNEL, store.get_slack_message(run.id).ts)
    assert "planning" in message.text and SHA[:10] in str(message.blocks)
