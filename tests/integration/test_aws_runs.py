"""A stack's Terraform runs with its phase's role and its secrets from AWS, and nothing else:
real git, real Terraform with the demo provider, and moto as AWS on loopback.

A terraform shim records, for each command, the AWS credentials it was started with and whether
the secret variable arrived; the test asks STS whose credentials they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from harness import demo_stack, make_app, one_stack_repo, tfops_cli, wait_for
from slackfake import FakeSlack

from tfops.app import App
from tfops.config import load_settings
from tfops.models import RunKind, RunStatus

pytestmark = pytest.mark.terraform

READ_ROLE = "arn:aws:iam::123456789012:role/tfops-read"
APPLY_ROLE = "arn:aws:iam::123456789012:role/tfops-apply"
CANARY = "canary-db-password-7f3a9c51"
SECRET_CODE = """
variable "db_password" {
  type = string
}

resource "demo_object" "db" {
  name    = "db"
  content = var.db_password
}
"""


def recording_terraform(directory: Path, real: Path) -> Path:
    shim = directory / "terraform"
    shim.write_text(
        "#!/bin/sh\n"
        'printf "%s %s %s %s %s\\n" "$1" "${AWS_ACCESS_KEY_ID:-none}" "${AWS_SECRET_ACCESS_KEY:-none}" '
        f'"${{AWS_SESSION_TOKEN:-none}}" "${{TF_VAR_db_password:+secret}}" >> "{directory}/calls.log"\n'
        f'exec "{real}" "$@"\n'
    )
    os.chmod(shim, 0o755)
    return shim


def calls(directory: Path) -> list[list[str]]:
    return [line.split(" ") for line in (directory / "calls.log").read_text().splitlines()]


def whose(aws, key: str, secret: str, token: str) -> str:
    sts = boto3.client(
        "sts",
        endpoint_url=aws.url,
        region_name=aws.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )
    return sts.get_caller_identity()["Arn"]


@pytest.fixture
def aws_stack(tmp_path, aws, demo_cloud, terraform_bin, tf_cli_config):
    def make(aws_block: dict, *, daemon_env: dict[str, str] | None = None):
        shim_dir = tmp_path / "shim"
        shim_dir.mkdir(exist_ok=True)
        daemon = boto3.client("ssm", endpoint_url=aws.url, **_static(aws))
        daemon.put_parameter(Name="/prod/db/password", Value=CANARY, Type="SecureString", Overwrite=True)
        stack = {
            "name": "app",
            "path": "stacks/app",
            "on_merge": "apply",
            "drift_interval": 0,
            "aws": aws_block,
            "secrets": {"TF_VAR_db_password": "ssm:/prod/db/password"},
        }
        _, config = one_stack_repo(
            tmp_path,
            demo_cloud,
            terraform_bin=recording_terraform(shim_dir, terraform_bin),
            cli_config=tf_cli_config,
            code=demo_stack(demo_cloud, {"app-web": "v1"}, extra=SECRET_CODE),
            stacks=[stack],
            aws={"region": aws.region, "endpoint_url": aws.url},
        )
        return config, shim_dir

    return make


def _static(aws) -> dict[str, str]:
    return {
        "region_name": aws.region,
        "aws_access_key_id": aws.access_key_id,
        "aws_secret_access_key": aws.secret_access_key,
    }


def tfops_user(aws, statement: dict) -> dict[str, str]:
    """tfops' own identity as an IAM user allowed just `statement` (once moto enforces IAM)."""
    iam = boto3.client("iam", endpoint_url=aws.url, **_static(aws))
    iam.create_user(UserName="tfops")
    key = iam.create_access_key(UserName="tfops")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    iam.put_user_policy(UserName="tfops", PolicyName="tfops", PolicyDocument=json.dumps(policy))
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": aws.region,
    }


def test_each_phase_runs_with_its_roles_credentials_and_the_daemons_never_reach_terraform(
    aws, aws_stack, tf_env
):
    config, shim_dir = aws_stack({"plan_role": READ_ROLE, "apply_role": APPLY_ROLE})
    app = make_app(config, {**tf_env, **aws.daemon_env()})
    try:
        (run,) = [r for r in app.reconcile_once().runs if r.kind is RunKind.DEPLOY]
    finally:
        app.close()

    assert run.status is RunStatus.APPLIED, run.error
    recorded = calls(shim_dir)
    assert {call[0] for call in recorded} >= {"init", "plan", "apply"}
    assert all(call[1] != aws.access_key_id and call[1] != "none" for call in recorded)
    assert all(call[4] == "secret" for call in recorded), "TF_VAR_db_password reached every command"
    identities = [(call[0], whose(aws, *call[1:4])) for call in recorded]
    role = "arn:aws:sts::123456789012:assumed-role"
    session = f"tfops-app-{run.id}"  # the pass also checked the stack for drift, as another run
    assert [arn for command, arn in identities if command == "apply"] == [f"{role}/tfops-apply/{session}"]
    planning = {arn for command, arn in identities if command != "apply"}
    assert f"{role}/tfops-read/{session}" in planning
    assert all(arn.startswith(f"{role}/tfops-read/tfops-app-") for arn in planning)


def test_a_secret_from_ssm_reaches_terraform_and_its_value_is_nowhere_tfops_writes(
    aws, aws_stack, tf_env, demo_cloud
):
    config, _ = aws_stack({"plan_role": READ_ROLE, "apply_role": APPLY_ROLE})
    env = {**tf_env, **aws.daemon_env()}
    app = make_app(config, env)
    try:
        (run,) = [r for r in app.reconcile_once().runs if r.kind is RunKind.DEPLOY]
        events = app.store.events(run.id)
        log_text = Path(run.log_path).read_text()
    finally:
        app.close()

    assert run.status is RunStatus.APPLIED, run.error
    cloud_files = [path.read_text() for path in demo_cloud.rglob("*") if path.is_file()]
    assert any(CANARY in text for text in cloud_files), "the secret reached Terraform and its resource"
    assert CANARY not in json.dumps(run.summary)
    assert CANARY not in " ".join(event.message for event in events)
    assert CANARY not in log_text
    shown = tfops_cli(config, "show", str(run.id), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert CANARY not in shown.stdout + shown.stderr


def test_a_role_tfops_may_not_assume_fails_the_run_before_terraform_starts(aws, aws_stack, tf_env):
    config, shim_dir = aws_stack({"plan_role": READ_ROLE, "apply_role": APPLY_ROLE})
    daemon = tfops_user(aws, {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"})  # no sts
    aws.enforce_iam(True)
    try:
        app = make_app(config, {**tf_env, **daemon})
        try:
            (run,) = [r for r in app.reconcile_once().runs if r.kind is RunKind.DEPLOY]
        finally:
            app.close()
    finally:
        aws.enforce_iam(False)

    assert run.status is RunStatus.FAILED
    assert run.error.startswith(f"cannot assume {READ_ROLE}: AccessDenied")
    assert not (shim_dir / "calls.log").exists(), "no Terraform command started"


def test_check_config_aws_assumes_every_role_once_and_names_the_ones_that_fail(aws, aws_stack, tf_env):
    config, _ = aws_stack({"plan_role": READ_ROLE, "apply_role": APPLY_ROLE})
    daemon = tfops_user(aws, {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": READ_ROLE})
    aws.enforce_iam(True)
    try:
        checked = tfops_cli(config, "check-config", "--aws", env={**tf_env, **daemon})
    finally:
        aws.enforce_iam(False)

    lines = checked.stdout.splitlines()
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"aws role {READ_ROLE} (plan: app): assumed" in lines
    (refused,) = [line for line in lines if line.startswith(f"aws role {APPLY_ROLE} (apply: app): ")]
    assert "AccessDenied" in refused
    assert daemon["AWS_SECRET_ACCESS_KEY"] not in checked.stdout + checked.stderr
    assert "some AWS roles cannot be assumed" in checked.stderr


def test_tfops_reads_its_own_slack_bot_token_from_ssm_and_delivers_with_it(
    tmp_path, aws, demo_cloud, terraform_bin, tf_cli_config, tf_env
):
    slack = FakeSlack().start()
    try:
        ssm = boto3.client("ssm", endpoint_url=aws.url, **_static(aws))
        ssm.put_parameter(Name="/tfops/slack/bot-token", Value=slack.bot_token, Type="SecureString")
        _, config = one_stack_repo(
            tmp_path,
            demo_cloud,
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            slack={
                "bot_token_ssm": "/tfops/slack/bot-token",
                "channel": "C0DEPLOYS",
                "base_url": slack.api_url,
            },
            aws={"region": aws.region, "endpoint_url": aws.url},
        )
        # tfops reads its own secrets with its own identity: the environment it was started with.
        settings = load_settings(config, environ=aws.daemon_env())
        app = App(settings, environ={**tf_env, **aws.daemon_env()})
        try:
            app.reconcile_once(timeout=120)
            wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")
        finally:
            app.close()
        posts = slack.calls("chat.postMessage")
        assert posts and all(call.ok for call in posts), "Slack accepted the token read from SSM"
    finally:
        slack.stop()
