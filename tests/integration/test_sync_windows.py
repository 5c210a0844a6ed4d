"""Sync windows end to end: real git, real Terraform, the demo provider's cloud folder, the fake
Slack Web API. The deny window is open from the start of this hour for three hours of real time;
the wake-up job is given a fake clock to see it close."""

from __future__ import annotations

import json
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta

import pytest
from harness import cloud_object, demo_stack, edit_cloud_object, make_app, one_stack_repo, tfops_cli, wait_for

from tfops.models import DriftState, RunKind, RunReason, RunStatus
from tfops.terraform.runner import PLAN_FILE

pytestmark = pytest.mark.terraform


def this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


# Open now, for hours: a slow machine cannot outlast it. It closes at `OPENS` (as of import time).
FREEZE = {"kind": "deny", "schedule": f"0 {this_hour().hour} * * *", "duration": "3h"}
OPENS = this_hour() + timedelta(hours=3)


@pytest.fixture
def configure(tmp_path, demo_cloud, terraform_bin, tf_cli_config, slack):
    """A remote with one `apply` stack, and its config: a freeze (UTC) in defaults, Slack on;
    keywords go to the stack entry. Returns (remote, config path)."""
    (tmp_path / "bot-token").write_text(slack.bot_token)

    def make(**policy):
        return one_stack_repo(
            tmp_path,
            demo_cloud,
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            stacks=[{"path": "stacks/app", "on_merge": "apply", "drift_interval": 0, **policy}],
            defaults={"windows": [FREEZE], "timezone": "UTC"},
            slack={
                "bot_token_file": str(tmp_path / "bot-token"),
                "channel": "C0DEPLOYS",
                "base_url": slack.api_url,
            },
        )

    return make


@pytest.fixture
def apps(tf_env):
    """Builds Apps from a config; each is closed at the end (closing twice is fine)."""
    with ExitStack() as opened:
        yield lambda config: opened.enter_context(closing(make_app(config, tf_env)))


def deployed(app):
    result = app.reconcile_once(timeout=120)
    return [run for run in result.runs if run.kind is RunKind.DEPLOY]


def moves(app, run_id):
    return [(event.to_status, event.reason) for event in app.store.events(run_id)]


def test_a_merge_inside_a_deny_window_waits_with_its_plan_and_is_applied_when_the_window_opens(
    configure, apps, demo_cloud, slack
):
    _, path = configure()
    app = apps(path)

    [waiting] = deployed(app)

    assert (waiting.status, waiting.reason) == (RunStatus.AWAITING_WINDOW, RunReason.WINDOW_CLOSED)
    [event] = [e for e in app.store.events(waiting.id) if e.to_status is RunStatus.AWAITING_WINDOW]
    assert f"it may apply from {OPENS:%Y-%m-%d %H:%M} UTC" in event.message
    assert "on_merge: apply" in event.message and "deny window" in event.message
    assert (app.settings.runs_dir / str(waiting.id) / PLAN_FILE).is_file(), "its plan is kept"
    assert cloud_object(demo_cloud, "app-web") is None, "nothing applied"
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")
    posted = app.store.get_slack_message(waiting.id)
    shown = slack.message(posted.channel, posted.ts)
    assert ":calendar:" in json.dumps(shown.blocks) and "awaiting window" in shown.text
    assert "it may apply from" in json.dumps(shown.blocks)
    assert app.scheduler.wake_waiting_runs(now=OPENS - timedelta(seconds=1)) == []
    app.close()

    restarted = apps(path)  # a restart: the run still waits, and the window still wakes it
    restarted.start()
    assert restarted.store.get_run(waiting.id).status is RunStatus.AWAITING_WINDOW
    assert [run.id for run in restarted.scheduler.wake_waiting_runs(now=OPENS)] == [waiting.id]
    restarted.queue.wait_idle(120)

    done = restarted.store.get_run(waiting.id)
    assert done.status is RunStatus.APPLIED
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    assert moves(restarted, waiting.id)[-4:] == [
        (RunStatus.AWAITING_WINDOW, RunReason.WINDOW_CLOSED),
        (RunStatus.APPROVED, RunReason.WINDOW_OPENED),
        (RunStatus.APPLYING, RunReason.WINDOW_OPENED),
        (RunStatus.APPLIED, RunReason.APPLIED),
    ]
    assert not (restarted.settings.runs_dir / str(waiting.id) / PLAN_FILE).exists()
    assert restarted.store.get_stack("app").applied_sha == waiting.commit_sha


def test_a_newer_commit_supersedes_a_waiting_run_and_override_window_applies_at_once_on_record(
    configure, apps, demo_cloud, tf_env
):
    remote, path = configure()
    app = apps(path)
    [first] = deployed(app)
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    [second] = deployed(app)

    assert app.store.get_run(first.id).status is RunStatus.SUPERSEDED
    assert (second.status, second.reason) == (RunStatus.AWAITING_WINDOW, RunReason.WINDOW_CLOSED)
    assert not (app.settings.runs_dir / str(first.id) / PLAN_FILE).exists()
    app.close()

    override = tfops_cli(path, "deploy", "app", "--override-window", env=tf_env)

    assert override.returncode == 0, override.stdout + override.stderr
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2"
    runs = json.loads(tfops_cli(path, "runs", "--json", env=tf_env).stdout)
    latest = runs[0]
    assert (latest["status"], latest["trigger"]["override_window"]) == ("applied", True)
    assert "--override-window" in latest["trigger"]["note"]
    assert [run["status"] for run in runs if run["id"] == second.id] == ["superseded"]
    shown = json.loads(tfops_cli(path, "show", str(latest["id"]), "--json", env=tf_env).stdout)
    [applying] = [event for event in shown["events"] if event["to"] == "applying"]
    assert "deny window" in applying["message"]
    assert "overridden by `tfops deploy --override-window`" in applying["message"]
    assert (RunStatus.APPLYING, RunReason.WINDOW_OVERRIDDEN) in moves(apps(path), latest["id"])


def test_an_ask_stack_is_approved_first_and_applied_at_the_window_with_its_approval_kept(
    configure, apps, demo_cloud, tf_env
):
    _, path = configure(on_merge="ask")
    first = tfops_cli(path, "reconcile", env=tf_env)
    assert first.returncode == 2, first.stdout + first.stderr
    app = apps(path)
    [asking] = app.store.runs_with_status({RunStatus.AWAITING_APPROVAL})
    app.close()

    approved = tfops_cli(path, "approve", str(asking.id), env=tf_env)

    assert approved.returncode == 0, approved.stdout + approved.stderr
    app = apps(path)
    app.start()
    waiting = app.store.get_run(asking.id)
    assert (waiting.status, waiting.reason) == (RunStatus.AWAITING_WINDOW, RunReason.WINDOW_CLOSED)
    assert waiting.decided_by, "the approval is kept"
    assert cloud_object(demo_cloud, "app-web") is None
    app.scheduler.wake_waiting_runs(now=OPENS)
    wait_for(lambda: app.store.get_run(asking.id).status.is_terminal, timeout=120, what="the apply")

    assert app.store.get_run(asking.id).status is RunStatus.APPLIED
    applying = [e for e in app.store.events(asking.id) if e.to_status is RunStatus.APPLYING]
    assert f"approved by {waiting.decided_by}" in applying[0].message
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"


def test_drift_is_detected_and_reported_inside_a_freeze_and_reverted_only_when_it_ends(
    configure, apps, demo_cloud
):
    freeze_remediation = {**FREEZE, "actions": ["remediate"]}  # deploys go on: this freeze is for drift
    _, path = configure(on_drift="remediate", windows=[freeze_remediation])
    app = apps(path)
    [deploy] = deployed(app)
    assert deploy.status is RunStatus.APPLIED
    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")

    [drift] = app.one_shot(RunKind.DRIFT, ["app"], timeout=120)

    assert (drift.status, drift.reason) == (RunStatus.AWAITING_WINDOW, RunReason.WINDOW_CLOSED)
    assert app.store.get_stack("app").drift is DriftState.DRIFTED, "detection is never held back"
    assert [change["address"] for change in drift.summary["drift"]] == ["demo_object.app-web"]
    assert cloud_object(demo_cloud, "app-web")["content"] == "edited by hand"
    app.scheduler.wake_waiting_runs(now=OPENS)
    wait_for(lambda: app.store.get_run(drift.id).status.is_terminal, timeout=120, what="the remediation")

    assert app.store.get_run(drift.id).status is RunStatus.APPLIED
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    assert app.store.get_stack("app").drift is DriftState.IN_SYNC
