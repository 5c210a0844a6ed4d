"""Approve and Reject from Slack, end to end: the daemon (`App.serve`) with real git, real Terraform,
the fake Slack Web API, and clicks arriving over Socket Mode (or signed HTTP) to the real clients."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import pwd
import threading
import time
from urllib.parse import urlencode

import httpx
import pytest
from harness import Remote, cloud_object, demo_stack, make_app, tfops_cli, wait_for, write_config
from slackfake import FakeSlack, FakeSocketMode

from tfops.models import DecisionOutcome, OutboxKind, RunKind, RunStatus
from tfops.notify.blocks import APPROVE_ACTION_ID, REJECT_ACTION_ID, action_value

pytestmark = pytest.mark.terraform

CHANNEL = "C0DEPLOYS"
ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
PLATFORM = "S0PLATFORM"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
def slack():
    fake = FakeSlack(users={ALICE: "alice", BOB: "bob", MALLORY: "mallory"}, usergroups={PLATFORM: [BOB]})
    with fake, FakeSocketMode(fake) as socket_mode:
        fake.socket_mode = socket_mode
        yield fake


@pytest.fixture
def remote(tmp_path, demo_cloud):
    remote = Remote(tmp_path)
    remote.commit_and_push("app stack", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    return remote


@pytest.fixture
def configure(tmp_path, remote, terraform_bin, tf_cli_config, slack):
    """Write the config for an `ask` stack; keyword arguments override the stack's policy."""
    (tmp_path / "bot-token").write_text(slack.bot_token)
    (tmp_path / "app-token").write_text(slack.app_token)
    (tmp_path / "signing-secret").write_text(SIGNING_SECRET)

    def make(*, http_port=None, **policy):
        stack = {
            "path": "stacks/app",
            "on_merge": "ask",
            "on_drift": "notify",
            "drift_interval": 0,
            "approvers": [ALICE, PLATFORM],
            **policy,
        }
        return write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            stacks=[stack],
            slack={
                "bot_token_file": str(tmp_path / "bot-token"),
                "app_token_file": str(tmp_path / "app-token"),
                "channel": CHANNEL,
                "base_url": slack.api_url,
                **(
                    {"mode": "http", "signing_secret_file": str(tmp_path / "signing-secret")}
                    if http_port
                    else {}
                ),
            },
            **({"http": {"listen": f"127.0.0.1:{http_port}"}} if http_port else {}),
        )

    return make


@pytest.fixture
def serve(tf_env):
    """Run the daemon in a thread, as `tfops serve` does; stopped at the end of the test."""
    running = []

    def start(config):
        app = make_app(config, tf_env)
        app.outbox_sender.idle_wait = 0.1
        stop = threading.Event()
        thread = threading.Thread(target=app.serve, args=(stop,), daemon=True)
        thread.start()
        running.append((app, stop, thread))
        return app

    yield start
    for _, stop, thread in running:
        stop.set()
        thread.join(60)


def run_in(app, status, *, kind=RunKind.DEPLOY, newer_than=0, timeout=90):
    def found():
        runs = [run for run in app.store.list_runs(stack="app") if run.kind is kind and run.id > newer_than]
        return next((run for run in runs if run.status is status), None)

    return wait_for(found, timeout=timeout, what=f"a {kind} run {status}")


def message_of(app, slack, run):
    wait_for(lambda: app.store.get_slack_message(run.id), timeout=30, what="the run's message")
    posted = app.store.get_slack_message(run.id)
    return slack.message(posted.channel, posted.ts)


def buttons_shown(app, slack, run):
    """The run's message once it shows Approve/Reject (its post may show `planning` first)."""
    return wait_for(
        lambda: (message := message_of(app, slack, run)) and buttons(message),
        timeout=30,
        what="the approval buttons",
    )


def buttons(message):
    return [
        element
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") in (APPROVE_ACTION_ID, REJECT_ACTION_ID)
    ]


def click(slack, app, run, user, action_id=APPROVE_ACTION_ID):
    posted = app.store.get_slack_message(run.id)
    envelope = slack.socket_mode.send_block_actions(
        user, action_id, action_value(run.id, run.commit_sha, run.plan_sha256),
        channel=posted.channel, message_ts=posted.ts,
    )  # fmt: skip
    slack.socket_mode.wait_for_ack(envelope, timeout=5)


def ephemerals_to(slack, user):
    return [message for message in slack.ephemerals(CHANNEL) if message.user == user]


def shown_text(message):
    return json.dumps(message.blocks) + message.text


# --- the scenarios ------------------------------------------------------------------------------------


def test_an_approved_plan_is_applied_exactly_and_the_message_says_by_whom(
    serve, configure, slack, demo_cloud
):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    plan_file = app.settings.runs_dir / str(waiting.id) / "plan.tfplan"
    assert hashlib.sha256(plan_file.read_bytes()).hexdigest() == waiting.plan_sha256
    assert cloud_object(demo_cloud, "app-web") is None, "nothing is applied before approval"
    message = wait_for(
        lambda: (m := message_of(app, slack, waiting)) and buttons(m) and m, timeout=30, what="buttons"
    )
    assert {button["value"] for button in buttons(message)} == {
        action_value(waiting.id, waiting.commit_sha, waiting.plan_sha256)
    }

    click(slack, app, waiting, ALICE)
    applied = run_in(app, RunStatus.APPLIED)

    assert applied.id == waiting.id, "the approved run itself is applied, no new plan"
    assert applied.plan_sha256 == waiting.plan_sha256
    assert applied.decided_by == "alice"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    assert not plan_file.exists(), "the applied plan (secrets in clear) is deleted"
    [decision] = app.store.decisions(applied.id)
    assert (decision.actor_id, decision.actor_name, decision.outcome) == (
        ALICE,
        "alice",
        DecisionOutcome.COUNTED,
    )
    assert (decision.commit_sha, decision.plan_sha256) == (waiting.commit_sha, waiting.plan_sha256)
    final = wait_for(
        lambda: (m := message_of(app, slack, applied)) and "applied" in m.text.lower() and m,
        timeout=30,
        what="the message to show the apply",
    )
    assert buttons(final) == [], "a decided run shows no buttons"
    assert "alice" in shown_text(final) or ALICE in shown_text(final)
    assert ephemerals_to(slack, ALICE) == [], "the message itself tells the approver"


def test_a_click_by_someone_who_is_not_an_approver_is_refused_audited_and_changes_nothing(
    serve, configure, slack, demo_cloud
):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)

    click(slack, app, waiting, MALLORY)

    wait_for(lambda: ephemerals_to(slack, MALLORY), timeout=30, what="the refusal")
    [refusal] = ephemerals_to(slack, MALLORY)
    assert "not an approver" in refusal.text
    [entry] = [e for e in app.store.audit_entries() if e.actor_id == MALLORY]
    assert entry.run_id == waiting.id and entry.detail["verdict"] == "refuse"
    assert entry.detail["transport"] == "socket"
    assert [d.outcome for d in app.store.decisions(waiting.id)] == [DecisionOutcome.REFUSED]
    time.sleep(1.0)  # give a wrongly accepted click the time to start an apply
    assert app.store.get_run(waiting.id).status is RunStatus.AWAITING_APPROVAL
    assert cloud_object(demo_cloud, "app-web") is None


def test_a_member_of_an_approver_group_may_approve(serve, configure, slack, demo_cloud):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)

    click(slack, app, waiting, BOB)  # BOB is listed only through the S0PLATFORM group

    assert run_in(app, RunStatus.APPLIED).decided_by == "bob"
    assert slack.calls("usergroups.users.list"), "the group was resolved through Slack"


def test_two_approvals_need_two_different_people(serve, configure, slack, demo_cloud):
    app = serve(configure(approvals_required=2))
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)

    click(slack, app, waiting, ALICE)
    click(slack, app, waiting, ALICE)  # a double click, or the same person again
    wait_for(lambda: ephemerals_to(slack, ALICE), timeout=30, what="the answer to the second click")
    assert "already approved" in ephemerals_to(slack, ALICE)[0].text
    assert app.store.get_run(waiting.id).status is RunStatus.AWAITING_APPROVAL
    wait_for(
        lambda: "1 of 2" in shown_text(message_of(app, slack, waiting)),
        timeout=30,
        what="the message to show one approval of two",
    )
    assert cloud_object(demo_cloud, "app-web") is None

    click(slack, app, waiting, BOB)
    applied = run_in(app, RunStatus.APPLIED)
    assert {d.actor_id for d in app.store.counted_approvals(applied.id)} == {ALICE, BOB}
    assert applied.decided_by == "alice, bob"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"


def test_a_rejected_plan_is_never_applied(serve, configure, slack, demo_cloud):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    plan_file = app.settings.runs_dir / str(waiting.id) / "plan.tfplan"
    buttons_shown(app, slack, waiting)

    click(slack, app, waiting, ALICE, REJECT_ACTION_ID)
    rejected = run_in(app, RunStatus.REJECTED)
    click(slack, app, rejected, BOB)  # an approval after the rejection

    wait_for(lambda: ephemerals_to(slack, BOB), timeout=30, what="the answer to the late approval")
    assert "already rejected by alice" in ephemerals_to(slack, BOB)[0].text
    assert rejected.id == waiting.id and rejected.decided_by == "alice"
    assert not plan_file.exists()
    time.sleep(1.0)
    assert app.store.get_run(waiting.id).status is RunStatus.REJECTED
    assert cloud_object(demo_cloud, "app-web") is None


def test_an_approval_after_a_newer_commit_supersedes_the_plan_and_a_fresh_one_is_posted(
    serve, configure, slack, remote, demo_cloud
):
    app = serve(configure())
    old = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, old)
    v2 = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    # Whichever comes first, the poller seeing v2 or the click, the old plan must not be applied.
    click(slack, app, old, ALICE)
    superseded = wait_for(
        lambda: (run := app.store.get_run(old.id)).status is RunStatus.SUPERSEDED and run,
        timeout=60,
        what="the old plan superseded",
    )
    fresh = run_in(app, RunStatus.AWAITING_APPROVAL, newer_than=old.id)
    assert superseded.id != fresh.id and fresh.commit_sha == v2
    assert buttons_shown(app, slack, fresh), "the fresh plan is posted for approval"

    click(slack, app, fresh, ALICE)
    run_in(app, RunStatus.APPLIED, newer_than=old.id)
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2"


def test_a_commit_to_another_stack_does_not_void_an_approval(serve, configure, slack, remote, demo_cloud):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)
    docs = remote.commit_and_push("docs", {"README.md": "unrelated\n"})
    wait_for(lambda: app.store.get_stack("app").head_sha == docs, timeout=30, what="the fetch")

    click(slack, app, waiting, ALICE)

    assert run_in(app, RunStatus.APPLIED).id == waiting.id


def test_terraform_refusing_a_stale_plan_supersedes_the_run_and_plans_again(
    serve, configure, slack, remote, demo_cloud
):
    app = serve(configure())
    first = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, first)
    click(slack, app, first, ALICE)
    run_in(app, RunStatus.APPLIED)
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    second = run_in(app, RunStatus.AWAITING_APPROVAL, newer_than=first.id)
    buttons_shown(app, slack, second)
    # The state moves after the plan (another writer): the commit and the plan file are unchanged,
    # so only Terraform itself can tell that the plan is stale.
    state_file = app.settings.stacks_dir / "app" / "terraform.tfstate"
    state = json.loads(state_file.read_text())
    state["serial"] += 1
    state_file.write_text(json.dumps(state))

    click(slack, app, second, ALICE)

    superseded = wait_for(
        lambda: (run := app.store.get_run(second.id)).status is RunStatus.SUPERSEDED and run,
        timeout=60,
        what="the stale plan superseded",
    )
    assert "stale" in app.store.events(superseded.id)[-1].message.lower()
    fresh = run_in(app, RunStatus.AWAITING_APPROVAL, newer_than=second.id)
    assert fresh.commit_sha == second.commit_sha
    assert buttons_shown(app, slack, fresh), "a fresh plan is posted for approval"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1", "the stale plan was not applied"


def test_an_unapproved_plan_expires_and_its_file_is_deleted(serve, configure, slack, demo_cloud):
    app = serve(configure(approval_ttl="2s"))
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    plan_file = app.settings.runs_dir / str(waiting.id) / "plan.tfplan"
    time.sleep(2.1)

    click(slack, app, waiting, ALICE)  # too late

    expired = run_in(app, RunStatus.EXPIRED, timeout=40)
    assert expired.id == waiting.id
    assert not plan_file.exists()
    assert cloud_object(demo_cloud, "app-web") is None


def test_the_cli_approves_for_teams_without_slack(configure, slack, tf_env, demo_cloud, tmp_path):
    config = configure()
    first = tfops_cli(config, "reconcile", env=tf_env)
    assert first.returncode == 2, first.stdout + first.stderr  # a plan waits for approval
    app = make_app(config, tf_env)
    try:
        [waiting] = app.store.runs_with_status({RunStatus.AWAITING_APPROVAL})
    finally:
        app.close()

    approved = tfops_cli(config, "approve", str(waiting.id), env=tf_env)

    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "approved by" in approved.stdout
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    shown = tfops_cli(config, "show", str(waiting.id), "--json", env=tf_env)
    data = json.loads(shown.stdout)
    assert data["status"] == "applied"
    [decision] = data["decisions"]
    assert decision["source"] == "cli" and decision["outcome"] == "counted"
    again = tfops_cli(config, "approve", str(waiting.id), env=tf_env)
    assert again.returncode == 1 and "already approved" in again.stdout


def test_http_mode_takes_a_signed_click_and_refuses_a_tampered_or_stale_one(
    serve, configure, slack, demo_cloud, unused_port
):
    app = serve(configure(http_port=unused_port))
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    posted = wait_for(lambda: app.store.get_slack_message(waiting.id), timeout=30, what="the message")
    wait_for(lambda: app.web_server is not None and app.web_server.running, timeout=10, what="the server")
    url = f"http://127.0.0.1:{unused_port}/slack/interactions"
    value = action_value(waiting.id, waiting.commit_sha, waiting.plan_sha256)
    payload = slack.socket_mode.block_actions_payload(
        ALICE, APPROVE_ACTION_ID, value, channel=posted.channel, message_ts=posted.ts
    )
    body = urlencode({"payload": json.dumps(payload)}).encode()

    tampered = post_signed(url, body, tamper=True)
    stale = post_signed(url, body, age=360)
    assert (tampered.status_code, stale.status_code) == (401, 401)
    time.sleep(0.5)
    assert app.store.decisions(waiting.id) == []

    good = post_signed(url, body)
    assert good.status_code == 200
    assert run_in(app, RunStatus.APPLIED).id == waiting.id


def test_no_secret_reaches_slack_in_any_approval_message(serve, configure, slack, remote, demo_cloud):
    from test_secrets_and_cli import CANARY, SECRET_CODE

    remote.commit_and_push("secret", {"stacks/app/secret.tf": SECRET_CODE.format(secret=CANARY)})
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)
    click(slack, app, waiting, ALICE)
    run_in(app, RunStatus.APPLIED)
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="delivery")
    assert CANARY not in slack.all_text()
    assert [item for item in app.store.pending_for(CHANNEL) if item.kind is OutboxKind.EPHEMERAL] == []


# --- helpers ------------------------------------------------------------------------------------------


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_signed(url, body, *, tamper=False, age=0):
    timestamp = str(int(time.time()) - age)
    signature = (
        "v0="
        + hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    )
    sent = body.replace(b"U0ALICE", b"U0BOBBY") if tamper else body
    return httpx.post(
        url,
        content=sent,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        timeout=5,
    )


# --- restarts, other processes, the CLI's identity -------------------------------------------------


def test_an_approved_run_found_at_start_is_checked_against_the_head_of_now(
    configure, slack, remote, demo_cloud, tf_env, serve
):
    config = configure()
    first = make_app(config, tf_env)
    try:
        first.reconcile_once(timeout=120)
        [waiting] = first.store.runs_with_status({RunStatus.AWAITING_APPROVAL})
        # Approved, then the daemon stopped before the apply started.
        first.transitions.mark_approved(waiting, "alice")
    finally:
        first.close()
    v2 = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    app = serve(config)

    superseded = wait_for(
        lambda: (run := app.store.get_run(waiting.id)).status is RunStatus.SUPERSEDED and run,
        timeout=60,
        what="the old approval voided",
    )
    assert "moved on" in app.store.events(superseded.id)[-1].message
    fresh = run_in(app, RunStatus.AWAITING_APPROVAL, newer_than=waiting.id)
    assert fresh.commit_sha == v2
    assert cloud_object(demo_cloud, "app-web") is None, "the approved plan of v1 was never applied"


def test_a_daemon_that_started_beside_another_process_recovers_once_it_is_alone(configure, slack, tf_env):
    config = configure()
    app = make_app(config, tf_env)
    try:
        app.git.ensure_clone()
        app.git.fetch()
        app.store.sync_stacks([("app", "stacks/app")])
        crashed = app.store.create_run("app", RunKind.DEPLOY, _trigger(), "0" * 40, status=RunStatus.PLANNING)
        other = open(app.settings.data_dir / "owner.lock", "a")  # noqa: SIM115 - another tfops process
        fcntl.flock(other, fcntl.LOCK_SH)
        app.recover()
        assert app.store.get_run(crashed.id).status is RunStatus.PLANNING, "not ours to judge yet"
        other.close()

        app._housekeeping()

        assert app.store.get_run(crashed.id).status is RunStatus.INTERRUPTED
    finally:
        app.close()


def test_the_cli_records_the_account_that_ran_it_not_what_the_environment_claims(configure, slack, tf_env):
    config = configure(approvals_required=2)
    assert tfops_cli(config, "reconcile", env=tf_env).returncode == 2
    app = make_app(config, tf_env)
    try:
        [waiting] = app.store.runs_with_status({RunStatus.AWAITING_APPROVAL})
    finally:
        app.close()

    for name in ("alice", "bob"):
        tfops_cli(config, "approve", str(waiting.id), env={**tf_env, "LOGNAME": name, "USER": name})

    app = make_app(config, tf_env)
    try:
        decisions = app.store.decisions(waiting.id)
        assert {d.actor_id for d in decisions} == {pwd.getpwuid(os.getuid()).pw_name}
        assert [d.outcome for d in decisions] == [DecisionOutcome.COUNTED, DecisionOutcome.DUPLICATE]
        assert app.store.get_run(waiting.id).status is RunStatus.AWAITING_APPROVAL, (
            "one account is one person"
        )
    finally:
        app.close()


def test_a_rejected_change_is_not_asked_again_for_an_unrelated_commit(serve, configure, slack, remote):
    app = serve(configure())
    waiting = run_in(app, RunStatus.AWAITING_APPROVAL)
    buttons_shown(app, slack, waiting)
    click(slack, app, waiting, ALICE, REJECT_ACTION_ID)
    run_in(app, RunStatus.REJECTED)

    docs = remote.commit_and_push("docs", {"README.md": "unrelated\n"})
    wait_for(lambda: app.store.get_stack("app").head_sha == docs, timeout=30, what="the fetch")
    time.sleep(1.5)  # another poll or two

    assert [run.id for run in app.store.list_runs(stack="app")] == [waiting.id]


def _trigger():
    from tfops.models import Trigger, TriggerSource

    return Trigger(source=TriggerSource.POLL)
