"""Drift ignore rules and change guards, end to end: real git, real Terraform, the demo provider's
cloud folder, and the fake Slack Web API behind the real slack-sdk."""

from __future__ import annotations

import json

import pytest
from harness import (
    Remote,
    cloud_object,
    demo_stack,
    edit_cloud_object,
    make_app,
    tfops_cli,
    wait_for,
    write_config,
)

from tfops.models import DriftState, RunKind, RunReason, RunStatus
from tfops.terraform.runner import PLAN_FILE

pytestmark = pytest.mark.terraform

CHANNEL = "C0DEPLOYS"
ALICE = "U0ALICE"


@pytest.fixture
def remote(tmp_path, demo_cloud):
    remote = Remote(tmp_path)
    code = demo_stack(demo_cloud, {"app-web": "v1", "app-db": "v1"})
    remote.commit_and_push("app stack", {"stacks/app/main.tf": code})
    return remote


@pytest.fixture
def configure(tmp_path, remote, terraform_bin, tf_cli_config, slack):
    """The config of one `apply` stack with Slack; keyword arguments are added to the stack entry."""
    (tmp_path / "bot-token").write_text(slack.bot_token)

    def make(**policy):
        stack = {"path": "stacks/app", "on_merge": "apply", "on_drift": "remediate", "drift_interval": 0}
        return write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            stacks=[{**stack, **policy}],
            slack={
                "bot_token_file": str(tmp_path / "bot-token"),
                "channel": CHANNEL,
                "base_url": slack.api_url,
            },
        )

    return make


@pytest.fixture
def apps(tf_env):
    built = []

    def make(config):
        app = make_app(config, tf_env)
        app.outbox_sender.idle_wait = 0.1  # the tests wait on delivery
        built.append(app)
        return app

    yield make
    for app in built:
        app.close()


def delivered(app):
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")


def deployed(app):
    result = app.reconcile_once(timeout=120)
    delivered(app)
    return [run for run in result.runs if run.kind is RunKind.DEPLOY]


def test_an_ignored_attribute_changed_in_the_cloud_is_no_drift_and_no_message(
    configure, apps, slack, demo_cloud
):
    app = apps(configure(drift={"ignore": [{"address": "demo_object.app-*", "attributes": ["tags.env"]}]}))
    [deploy] = deployed(app)
    assert deploy.status is RunStatus.APPLIED
    posted_before = len(slack.calls("chat.postMessage"))
    edit_cloud_object(demo_cloud, "app-web", tags={"env": "set-by-a-scanner"})

    [drift] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)
    delivered(app)

    assert (drift.status, drift.reason) == (RunStatus.NO_CHANGES, RunReason.DRIFT_IGNORED)
    assert app.store.get_stack("app").drift is DriftState.IN_SYNC
    assert cloud_object(demo_cloud, "app-web")["tags"] == {"env": "set-by-a-scanner"}, "never remediated"
    [ignored] = drift.summary["ignored"]
    assert (ignored["address"], [a["path"] for a in ignored["attributes"]]) == (
        "demo_object.app-web",
        ["tags.env"],
    )
    assert drift.summary["drift"] == []
    assert app.store.get_slack_message(drift.id) is None
    assert len(slack.calls("chat.postMessage")) == posted_before, "no message"


def test_drift_beside_an_ignored_attribute_is_reported_not_reverted_when_the_revert_touches_it(
    configure, apps, slack, demo_cloud
):
    app = apps(configure(drift={"ignore": [{"type": "demo_object", "attributes": ["tags"]}]}))
    deployed(app)
    edit_cloud_object(demo_cloud, "app-web", tags={"env": "scanner"}, content="edited by hand")

    [drift] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)
    delivered(app)

    # The saved plan would put `tags.env` back too: without approvers it is only reported.
    assert (drift.status, drift.reason) == (RunStatus.PLANNED, RunReason.IGNORED_IN_PLAN)
    assert [a["path"] for a in drift.summary["drift"][0]["attributes"]] == ["content"]
    assert app.store.get_stack("app").drift is DriftState.DRIFTED
    assert cloud_object(demo_cloud, "app-web")["content"] == "edited by hand"
    assert app.store.get_slack_message(drift.id) is not None, "the rest of the drift is reported"


def test_a_merge_that_deletes_a_protected_resource_ends_blocked_naming_the_guard_and_the_override_applies_it(
    configure, apps, remote, demo_cloud, tf_env, slack
):
    config = configure(guards={"protect": ["demo_object.app-db"]})
    app = apps(config)
    deployed(app)
    remote.commit_and_push("drop the db", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    [blocked] = deployed(app)

    assert (blocked.status, blocked.reason) == (RunStatus.BLOCKED, RunReason.GUARD_PROTECTED)
    [event] = [e for e in app.store.events(blocked.id) if e.to_status is RunStatus.BLOCKED]
    assert "guard protect" in event.message and "demo_object.app-db" in event.message
    assert cloud_object(demo_cloud, "app-db") is not None, "nothing was applied"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    assert not (app.settings.runs_dir / str(blocked.id) / PLAN_FILE).exists(), "its plan is gone"
    posted = app.store.get_slack_message(blocked.id)
    shown = slack.message(posted.channel, posted.ts)
    assert ":octagonal_sign:" in shown.text + json.dumps(shown.blocks)
    assert "blocked" in shown.text and "guard protect" in json.dumps(shown.blocks)
    remote.commit_and_push("docs only", {"README.md": "not a stack\n"})
    assert deployed(app) == [], "a commit that does not touch the stack does not ask again"
    app.close()

    override = tfops_cli(config, "deploy", "app", "--allow-destroy", env=tf_env)

    assert override.returncode == 0, override.stdout + override.stderr
    assert cloud_object(demo_cloud, "app-db") is None
    shown = tfops_cli(config, "runs", "--json", env=tf_env)
    latest = json.loads(shown.stdout)[0]
    assert (latest["status"], latest["reason"]) == ("applied", "applied")
    assert latest["trigger"]["allow_destroy"] is True and "--allow-destroy" in latest["trigger"]["note"]


def test_a_merge_that_deletes_a_protected_resource_waits_for_approval_when_the_stack_has_approvers(
    configure, apps, remote, demo_cloud, slack
):
    app = apps(configure(guards={"max_destroy": 0, "protect": ["demo_object.app-db"]}, approvers=[ALICE]))
    deployed(app)
    remote.commit_and_push("drop the db", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})

    [waiting] = deployed(app)

    assert (waiting.status, waiting.reason) == (RunStatus.AWAITING_APPROVAL, RunReason.GUARD_PROTECTED)
    assert cloud_object(demo_cloud, "app-db") is not None
    text = slack.all_text()
    assert "guard protect" in text and "guard max_destroy" in text
