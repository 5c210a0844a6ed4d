"""Drift incidents end to end: real git, real Terraform (the demo provider), the fake Slack Web API.

The same drift seen again and again is one Slack message, updated in place; a change in the
drifted set updates it and pages again in its thread; the stack back in sync resolves it, and
the message says how and after how long.
"""

from __future__ import annotations

import json

import pytest
from harness import (
    demo_stack,
    edit_cloud_object,
    make_app,
    one_stack_repo,
    slack_settings,
    tfops_cli,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from tfops.incidents import Resolution
from tfops.models import RunKind, RunStatus

pytestmark = pytest.mark.terraform

CHANNEL = "C0DRIFT"
ONCALL = "S0ONCALL"


@pytest.fixture
def repo(tmp_path, terraform_bin, tf_cli_config, slack, demo_cloud):
    """The remote with stack `app` (two demo objects) and its tfops.yaml, Slack on."""
    return one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        code=demo_stack(demo_cloud, {"app-web": "v1", "app-db": "v1"}),
        slack=slack_settings(tmp_path, slack, CHANNEL, mention=ONCALL),
    )


@pytest.fixture
def app(repo, tf_env):
    app = make_app(repo[1], tf_env)
    app.outbox_sender.idle_wait = 0.1  # the tests wait on delivery; a daemon can idle longer
    [deploy] = [run for run in app.reconcile_once(timeout=120).runs if run.kind is RunKind.DEPLOY]
    assert deploy.status is RunStatus.APPLIED
    yield app
    app.close()


def delivered(app):
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")


def drift_check(app):
    [run] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)
    assert run.status is RunStatus.PLANNED, run.error
    return run


def incident_message(app, slack, run_id):
    recorded = app.store.get_slack_message(run_id)
    [message] = [m for m in slack.messages(CHANNEL) if m.ts == recorded.ts and m.thread_ts is None]
    return message


def top_level_posts(slack):
    return [call for call in slack.calls("chat.postMessage") if call.ok and not call.params.get("thread_ts")]


def test_the_same_drift_seen_three_times_is_one_message_updated_then_resolved_by_the_remediation(
    app, slack, demo_cloud
):
    posts_before = len(top_level_posts(slack))  # the deploy's own message
    edit_cloud_object(demo_cloud, "app-web", content="changed by hand")
    first, second, third = drift_check(app), drift_check(app), drift_check(app)
    delivered(app)

    assert len(top_level_posts(slack)) == posts_before + 1, "one message for the incident, not one per check"
    message = incident_message(app, slack, first.id)
    assert message.edits >= 2, "the later checks updated it (chat.update)"
    assert "demo_object.app-web" in message.text or "app-web" in str(message.blocks)
    assert "Drift incident open since" in message.text and "seen 3 times" in message.text
    assert f"run #{third.id}" in message.text
    incident = app.store.open_incident("app")
    assert (incident.opened_run_id, incident.last_run_id, incident.seen_count) == (first.id, third.id, 3)
    assert app.store.get_slack_message(second.id) is None and app.store.get_slack_message(third.id) is None

    [remedy] = app.one_shot(RunKind.DEPLOY, ["app"], timeout=120)  # `tfops deploy app`
    assert remedy.status is RunStatus.APPLIED
    delivered(app)

    assert app.store.open_incident("app") is None
    resolved = app.store.incident_of_run("app", remedy.id)
    assert resolved.resolution is Resolution.REMEDIATED and resolved.resolved_run_id == remedy.id
    message = incident_message(app, slack, first.id)
    assert f"Drift incident resolved: remediated by run #{remedy.id}, after " in message.text
    assert len(top_level_posts(slack)) == posts_before + 2, "the remediating deploy has its own message"


def test_a_new_drifted_resource_updates_the_message_and_pages_again_in_its_thread(app, slack, demo_cloud):
    edit_cloud_object(demo_cloud, "app-web", content="changed by hand")
    first, _ = drift_check(app), drift_check(app)
    delivered(app)
    assert not [m for m in slack.messages(CHANNEL) if m.thread_ts], "the same set pages nobody again"

    edit_cloud_object(demo_cloud, "app-db", content="changed too")
    changed = drift_check(app)
    delivered(app)

    message = incident_message(app, slack, first.id)
    assert "seen 3 times" in message.text
    posted_text = message.history[0][0]
    assert posted_text.startswith(f"<!subteam^{ONCALL}>"), "the post that opened the incident paged once"
    assert ONCALL not in message.text, "its updates page nobody"
    [reply] = [m for m in slack.messages(CHANNEL) if m.thread_ts == message.ts]
    assert f"<!subteam^{ONCALL}>" in reply.text and f"run #{changed.id}" in reply.text
    assert "demo_object.app-db" in reply.text and "demo_object.app-web" in reply.text
    assert app.store.open_incident("app").mentioned_run_id == changed.id

    # Changed back by hand: the next check resolves the incident without a new post.
    posts = len(top_level_posts(slack))
    edit_cloud_object(demo_cloud, "app-web", content="v1")
    edit_cloud_object(demo_cloud, "app-db", content="v1")
    [back] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)
    delivered(app)
    assert back.status is RunStatus.NO_CHANGES and len(top_level_posts(slack)) == posts
    assert (
        "Drift incident resolved: changed back outside Terraform"
        in incident_message(app, slack, first.id).text
    )


def test_a_commit_that_makes_the_code_match_the_drift_resolves_it_as_fixed_by_that_commit(
    app, repo, slack, demo_cloud
):
    remote, _ = repo
    edit_cloud_object(demo_cloud, "app-web", content="changed by hand")
    first = drift_check(app)
    fix = remote.commit_and_push(
        "adopt the hand edit",
        {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "changed by hand", "app-db": "v1"})},
    )
    deploys = [run for run in app.reconcile_once(timeout=120).runs if run.kind is RunKind.DEPLOY]
    delivered(app)

    assert [(run.commit_sha, run.status) for run in deploys] == [(fix, RunStatus.NO_CHANGES)]
    resolved = app.store.incident_of_run("app", deploys[0].id)
    assert resolved.resolution is Resolution.FIXED_BY_COMMIT and resolved.resolved_commit == fix
    text = incident_message(app, slack, first.id).text
    assert f"Drift incident resolved: fixed by commit {fix[:10]} (run #{deploys[0].id}), after " in text


def test_a_remediated_drift_is_one_message_opened_and_resolved_by_the_same_run(
    tmp_path, terraform_bin, tf_cli_config, tf_env, slack, demo_cloud
):
    remediate = {"discover": "stacks/*", "on_merge": "apply", "on_drift": "remediate", "drift_interval": 0}
    _, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        stacks=[remediate],
        slack=slack_settings(tmp_path, slack, CHANNEL),
    )
    app = make_app(config, tf_env)
    app.outbox_sender.idle_wait = 0.1
    try:
        app.reconcile_once(timeout=120)
        delivered(app)
        posts = len(top_level_posts(slack))
        edit_cloud_object(demo_cloud, "app-web", content="changed by hand")
        [run] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)
        delivered(app)

        assert run.status is RunStatus.APPLIED
        assert len(top_level_posts(slack)) == posts + 1, "the remediating drift run's one message"
        assert (
            f"Drift incident resolved: remediated by run #{run.id}, after "
            in incident_message(app, slack, run.id).text
        )
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(app.metrics.render()[0].decode())
            for sample in family.samples
        }
        assert samples["tfops_drift_incident_duration_seconds_count"] == 1
        assert samples["tfops_drift_incidents_open"] == 0
    finally:
        app.close()


def test_drift_json_and_status_json_show_the_open_incident(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env
):
    _, config = one_stack_repo(tmp_path, demo_cloud, terraform_bin=terraform_bin, cli_config=tf_cli_config)
    assert tfops_cli(config, "reconcile", env=tf_env).returncode == 0
    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")

    first = tfops_cli(config, "drift", "app", "--json", env=tf_env)
    again = tfops_cli(config, "drift", "app", "--json", env=tf_env)
    assert (first.returncode, again.returncode) == (2, 2), first.stderr + again.stderr
    [opened], [seen] = json.loads(first.stdout), json.loads(again.stdout)
    assert seen["incident"]["id"] == opened["incident"]["id"] and seen["incident"]["seen_count"] == 2
    assert seen["incident"]["since"] == opened["incident"]["since"] == opened["started_at"]
    assert seen["incident"]["resources"] == [{"address": "demo_object.app-web", "attributes": ["content"]}]

    [row] = json.loads(tfops_cli(config, "status", "--json", env=tf_env).stdout)
    assert row["incident"]["id"] == opened["incident"]["id"] and row["incident"]["last_run_id"] == seen["id"]
    table = tfops_cli(config, "status", env={**tf_env, "COLUMNS": "250"}).stdout
    assert "incident since" in table and "1 resource" in table

    edit_cloud_object(demo_cloud, "app-web", content="v1")
    [back] = json.loads(tfops_cli(config, "drift", "app", "--json", env=tf_env).stdout)
    assert back["incident"]["resolution"] == "changed back outside Terraform"
    [row] = json.loads(tfops_cli(config, "status", "--json", env=tf_env).stdout)
    assert row["incident"] is None
