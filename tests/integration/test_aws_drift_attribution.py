"""Who caused the drift, end to end: a parameter changed in AWS by another identity is reported
with that principal, the event name and time, in the run, `tfops show`, the API's record and the
Slack message; when CloudTrail throttles or refuses, the drift is still reported, unattributed.

Real git, real Terraform with the awsssm test provider against moto, the real boto3 CloudTrail
client against the loopback CloudTrail (tests/cloudtrailfake.py), the real slack-sdk against the
Slack fake.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from awsstack import ssm_stack
from harness import one_stack_repo, tfops_cli, wait_for

from tfops.app import App
from tfops.config import load_settings
from tfops.models import DriftState, RunKind, RunStatus

pytestmark = pytest.mark.terraform

PARAMETER = "/app/greeting"
ADDRESS = "awsssm_parameter.app_greeting"
ALICE = "arn:aws:iam::123456789012:user/alice"
READ_ROLE = "arn:aws:iam::123456789012:role/tfops-read"
APPLY_ROLE = "arn:aws:iam::123456789012:role/tfops-apply"


@pytest.fixture
def setup(tmp_path, aws, aws_record, trail, slack, terraform_bin, tf_cli_config, tf_env):
    code = ssm_stack({PARAMETER: "hello"}, endpoint_url=aws.url, record_file=aws_record)
    stack = {
        "name": "app",
        "path": "stacks/app",
        "on_merge": "apply",
        "on_drift": "notify",
        "drift_interval": 0,
        "aws": {"plan_role": READ_ROLE, "apply_role": APPLY_ROLE},
    }
    _, config = one_stack_repo(
        tmp_path,
        tmp_path,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        code=code,
        stacks=[stack],
        aws={
            "region": aws.region,
            "endpoint_url": aws.url,
            "service_endpoints": {"cloudtrail": trail.url},
            "attribution": True,
        },
        slack={"bot_token_env": "TEST_SLACK_BOT_TOKEN", "channel": "C0DRIFT", "base_url": slack.api_url},
    )
    env = {**tf_env, **aws.daemon_env(), "TEST_SLACK_BOT_TOKEN": slack.bot_token}
    app = App(load_settings(config, environ=env), environ=env)
    deploys = [run for run in app.reconcile_once().runs if run.kind is RunKind.DEPLOY]
    assert [run.status for run in deploys] == [RunStatus.APPLIED], [run.error for run in deploys]
    yield app, config, env
    app.close()


def change_in_the_console(aws) -> None:
    ssm = boto3.client(
        "ssm",
        endpoint_url=aws.url,
        region_name=aws.region,
        aws_access_key_id="AKIAALICEALICE000001",
        aws_secret_access_key="alice-console-secret",
    )
    ssm.put_parameter(Name=PARAMETER, Value="changed by alice", Type="String", Overwrite=True)


def drift_run(app):
    (run,) = app.one_shot(RunKind.DRIFT, ["app"])
    assert run.status is RunStatus.PLANNED, run.error
    assert app.store.get_stack("app").drift is DriftState.DRIFTED
    return run


def drift_message(app, slack, run_id: int) -> str:
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")
    sent = [call for call in slack.calls() if call.method in ("chat.postMessage", "chat.update")]
    texts = [json.dumps(call.params) for call in sent]
    mine = [text for text in texts if f"#{run_id}" in text]
    assert mine, "the drift run was posted to Slack"
    return mine[-1]


def test_a_drift_made_in_the_console_names_who_made_it_everywhere_it_is_shown(setup, aws, trail, slack):
    app, config, env = setup
    in_sync_at = app.store.get_stack("app").in_sync_at
    assert in_sync_at is not None, "the applied deploy recorded when the stack was last in sync"
    change_in_the_console(aws)
    changed_at = datetime.now(UTC).replace(microsecond=0)
    trail.record(PARAMETER, "PutParameter", ALICE, time=changed_at, user_agent="console.amazonaws.com")
    trail.record(PARAMETER, "GetParameter", ALICE, time=changed_at, read_only=True)  # not a change

    run = drift_run(app)

    (found,) = run.summary["attribution"]
    assert found["address"] == ADDRESS and found["unavailable"] is None
    latest = found["events"][0]
    who = (latest["principal_arn"], latest["event_name"], latest["agent"])
    assert who == (ALICE, "PutParameter", "console")
    assert datetime.fromisoformat(latest["time"]) == changed_at
    assert not latest["by_tfops"]
    asked = trail.requests[0]
    assert asked.resource_name == PARAMETER
    assert abs((asked.start - in_sync_at).total_seconds()) < 1, "looked back to when it was last in sync"
    line = f"`{ADDRESS}`: value changed by {ALICE} (PutParameter, console, {changed_at:%Y-%m-%d %H:%M} UTC)"

    shown = tfops_cli(config, "show", str(run.id), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Who changed it (CloudTrail):" in shown.stdout and line in shown.stdout
    as_json = tfops_cli(config, "show", str(run.id), "--json", env=env)
    assert json.loads(as_json.stdout)["summary"]["attribution"] == run.summary["attribution"]
    stack_record = app.store.get_stack("app").extra["drift_summary"]
    assert stack_record["attribution"] == run.summary["attribution"], "the stack's drift report has it too"
    message = drift_message(app, slack, run.id)
    assert ALICE in message and "PutParameter" in message and ":bust_in_silhouette:" in message


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("AccessDeniedException", "AccessDeniedException"),
        ("ThrottlingException", "ThrottlingException"),
    ],
)
def test_a_cloudtrail_that_refuses_leaves_the_drift_reported_but_unattributed(
    setup, aws, trail, slack, code, reason
):
    app, config, env = setup
    change_in_the_console(aws)
    trail.record(PARAMETER, "PutParameter", ALICE, time=datetime.now(UTC))
    trail.fail_with(code, f"{code}: not for you today")

    run = drift_run(app)

    (found,) = run.summary["attribution"]
    assert found["events"] == [] and found["unavailable"].startswith(reason)
    (drifted,) = run.summary["drift"]
    assert drifted["address"] == ADDRESS, "the drift itself is reported in full"
    shown = tfops_cli(config, "show", str(run.id), env=env)
    assert f"`{ADDRESS}`: attribution unavailable: {reason}" in shown.stdout
    assert "attribution unavailable" in drift_message(app, slack, run.id)
