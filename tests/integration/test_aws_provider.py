"""The awsssm test provider under tfops, real git and real Terraform, against moto's SSM."""

from __future__ import annotations

import boto3
import pytest
from awsstack import access_keys, read_record, ssm_stack
from harness import make_app, one_stack_repo

from tfops.models import DriftState, RunKind, RunStatus

pytestmark = pytest.mark.terraform

PARAMETER = "/app/greeting"


def ssm_client(aws, access_key_id: str):
    return boto3.client(
        "ssm",
        endpoint_url=aws.url,
        region_name=aws.region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key="console-user-secret",
    )


@pytest.fixture
def app(tmp_path, aws, aws_record, terraform_bin, tf_cli_config, tf_env):
    code = ssm_stack({PARAMETER: "hello"}, endpoint_url=aws.url, record_file=aws_record)
    # The demo cloud argument is unused: the stack's code is given.
    _, config = one_stack_repo(
        tmp_path, tmp_path, terraform_bin=terraform_bin, cli_config=tf_cli_config, code=code
    )
    # A stack without roles: the daemon's own static AWS_* reach Terraform (default passthrough).
    app = make_app(config, {**tf_env, **aws.daemon_env()})
    yield app
    app.close()


def test_a_parameter_is_applied_with_the_daemons_identity_and_drift_in_aws_is_reported(app, aws, aws_record):
    result = app.reconcile_once()

    assert result.exit_code == 0, [(run.stack, run.status, run.error) for run in result.runs]
    ssm = ssm_client(aws, "AKIACONSOLEUSER00001")
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == "hello"
    ops = {entry["op"] for entry in read_record(aws_record)}
    assert {"configure", "create"} <= ops
    assert access_keys(aws_record) == {aws.access_key_id}

    ssm.put_parameter(Name=PARAMETER, Value="changed in the console", Type="String", Overwrite=True)
    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert run.status is RunStatus.PLANNED
    assert "attribution" not in run.summary, "attribution is off unless asked: CloudTrail is not asked"
    (drift,) = run.summary["drift"]
    assert drift["address"] == "awsssm_parameter.app_greeting"
    changed = {attr["path"]: (attr["before"], attr["after"]) for attr in drift["attributes"]}
    assert changed["value"] == ("hello", "changed in the console")
    assert app.store.get_stack("app").drift is DriftState.DRIFTED
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == "changed in the console"
    assert "read" in {entry["op"] for entry in read_record(aws_record)}
    assert access_keys(aws_record, "read") == {aws.access_key_id}, (
        "the drift check read with the daemon's key"
    )


def test_with_roles_the_provider_sees_the_plan_roles_keys_when_planning_and_the_apply_roles_when_applying(
    tmp_path, aws, aws_record, terraform_bin, tf_cli_config, tf_env
):
    code = ssm_stack({PARAMETER: "hello"}, endpoint_url=aws.url, record_file=aws_record)
    roles = {
        "plan_role": "arn:aws:iam::123456789012:role/tfops-read",
        "apply_role": "arn:aws:iam::123456789012:role/tfops-apply",
    }
    stack = {"name": "app", "path": "stacks/app", "on_merge": "apply", "drift_interval": 0, "aws": roles}
    _, config = one_stack_repo(
        tmp_path,
        tmp_path,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        code=code,
        stacks=[stack],
        aws={"region": aws.region, "endpoint_url": aws.url},
    )
    app = make_app(config, {**tf_env, **aws.daemon_env()})
    try:
        deploys = [run for run in app.reconcile_once().runs if run.kind is RunKind.DEPLOY]
    finally:
        app.close()

    assert [run.status for run in deploys] == [RunStatus.APPLIED], [run.error for run in deploys]
    record = read_record(aws_record)
    assert aws.access_key_id not in {entry["access_key_id"] for entry in record}, "never the daemon's key"
    assert all(entry["session_token"] for entry in record), "only temporary credentials"
    (applying,) = {entry["pid"] for entry in record if entry["op"] == "create"}
    apply_keys = {entry["access_key_id"] for entry in record if entry["pid"] == applying}
    plan_keys = {entry["access_key_id"] for entry in record if entry["pid"] != applying}
    assert len(apply_keys) == 1 and plan_keys and apply_keys.isdisjoint(plan_keys)
