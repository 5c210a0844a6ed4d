"""Remote state on S3 with a DynamoDB lock table: real Terraform 1.0.3's s3 backend against moto.

Scenarios through the whole daemon (real git, real Terraform, the demo provider as the cloud,
state in moto's S3) and through the runner alone for `backend_config` files.
"""

from __future__ import annotations

import os

import pytest
from harness import cloud_object, demo_stack, edit_cloud_object, make_app, one_stack_repo
from s3state import S3State, resources_in

from tfops.errors import StateLockError, TerraformError
from tfops.models import RunKind, RunReason, RunStatus, Stack
from tfops.terraform.runner import BackendConfigError, Deadline, RunnerSettings, TerraformRunner, Workspace

pytestmark = pytest.mark.terraform

HOLDER = "alice@laptop"


@pytest.fixture
def s3(aws):
    return S3State(aws).create()


@pytest.fixture
def app_with_s3_stack(tmp_path, demo_cloud, s3, aws, terraform_bin, tf_cli_config, tf_env):
    """A daemon whose one stack (`stacks/app`) commits a full `backend "s3"` block, remediates
    drift, and waits 2s for a held state lock; the daemon's static AWS keys are its own env."""
    _, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        code=demo_stack(demo_cloud, {"app-web": "v1"}, extra=s3.backend_block()),
        terraform={"lock_timeout": "2s", "env_passthrough": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]},
        stacks=[{"discover": "stacks/*", "on_drift": "remediate", "drift_interval": 0}],
    )
    app = make_app(config, {**tf_env, **aws.daemon_env()})
    yield app
    app.close()


def test_a_stack_on_s3_applies_to_the_bucket_and_its_drift_is_reverted(app_with_s3_stack, s3, demo_cloud):
    app = app_with_s3_stack
    first = app.reconcile_once()
    assert first.exit_code == 0, [(run.stack, run.status, run.error) for run in first.runs]
    applied = s3.state()
    assert resources_in(applied)["demo_object.app-web"]["content"] == "v1"
    assert not [item for item in s3.lock_items() if "Info" in item], "the state lock was released"

    edit_cloud_object(demo_cloud, "app-web", content="changed in the console")
    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert [entry["address"] for entry in run.summary["drift"]] == ["demo_object.app-web"]
    assert run.status is RunStatus.APPLIED, run.error
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    # Terraform 1.11 does not write a state equal to the last one; the lineage proves it is
    # still the same state in the same place.
    reverted = s3.state()
    assert reverted["lineage"] == applied["lineage"]
    assert resources_in(reverted)["demo_object.app-web"]["content"] == "v1"


def test_a_lock_held_by_someone_else_fails_the_run_naming_the_holder(app_with_s3_stack, s3, demo_cloud):
    app = app_with_s3_stack
    assert app.reconcile_once().exit_code == 0
    edit_cloud_object(demo_cloud, "app-web", content="changed in the console")
    lock_id = s3.hold_lock(who=HOLDER)

    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert (run.status, run.reason) == (RunStatus.FAILED, RunReason.TERRAFORM_FAILED)
    assert f"the state is locked by {HOLDER} (apply, since 2026-11-28 10:42:00 +0000 UTC)" in run.error
    assert f"terraform force-unlock {lock_id}" in run.error  # StateLockError's own hint
    assert cloud_object(demo_cloud, "app-web")["content"] == "changed in the console"
    holders = [item["Info"]["S"] for item in s3.lock_items() if "Info" in item]
    assert len(holders) == 1 and HOLDER in holders[0], "the other holder's lock is left alone"


# -- backend_config files, through the runner --------------------------------------------------


@pytest.fixture
def runner(terraform_bin, tf_cli_config, tf_env, aws):
    settings = RunnerSettings(
        binary=str(terraform_bin),
        cli_config=tf_cli_config,
        lock_timeout=2,
        inherit={**tf_env, **aws.daemon_env()},
    )
    return TerraformRunner(settings)


def workspace(tmp_path, source_dir, *backend_config: str) -> Workspace:
    stack = Stack(name="app", path="stacks/app", backend_config=backend_config)
    return Workspace(stack, source_dir, tmp_path / "state", tmp_path / "run")


@pytest.fixture
def partial_backend_stack(tmp_path, demo_cloud, s3):
    """A stack whose code declares an empty `backend "s3" {}`; its settings live in a
    committed `backend/prod.s3.tfbackend`."""
    source = tmp_path / "view" / "stacks" / "app"
    (source / "backend").mkdir(parents=True)
    code = demo_stack(demo_cloud, {"app-web": "v1"}, extra='terraform {\n  backend "s3" {}\n}\n')
    (source / "main.tf").write_text(code)
    (source / "backend" / "prod.s3.tfbackend").write_text(s3.tfbackend())
    return source


def run_plan_and_apply(runner: TerraformRunner, ws: Workspace) -> None:
    deadline = Deadline(120)
    runner.prepare(ws, deadline=deadline, cancel=None, redact=None)
    plan = runner.plan(ws, deadline=deadline, cancel=None, redact=None)
    runner.apply(ws, plan.plan_path, deadline=deadline, cancel=None, redact=None)


def test_backend_config_files_reach_init_and_an_edited_one_runs_init_again(
    tmp_path, runner, partial_backend_stack, s3
):
    ws = workspace(tmp_path, partial_backend_stack, "./backend//prod.s3.tfbackend")
    assert runner.init_argv(ws) == [
        runner.settings.binary,
        "init",
        "-input=false",
        "-no-color",
        "-backend-config=backend/prod.s3.tfbackend",
    ]

    run_plan_and_apply(runner, ws)
    assert resources_in(s3.state())["demo_object.app-web"]["content"] == "v1"
    marker = ws.state_dir / "init.fingerprint"
    before = marker.read_text()
    runner.prepare(ws, deadline=Deadline(60), cancel=None, redact=None)
    assert marker.read_text() == before and ws.log_path.read_text().count("Initializing the backend") == 1

    backend_file = partial_backend_stack / "backend" / "prod.s3.tfbackend"
    backend_file.write_text("# reviewed\n" + backend_file.read_text())
    runner.prepare(ws, deadline=Deadline(60), cancel=None, redact=None)

    assert marker.read_text() != before
    assert ws.log_path.read_text().count("Initializing the backend") == 2


def test_a_moved_state_key_fails_init_and_tfops_never_migrates_the_state(
    tmp_path, runner, partial_backend_stack, s3
):
    ws = workspace(tmp_path, partial_backend_stack, "backend/prod.s3.tfbackend")
    run_plan_and_apply(runner, ws)
    backend_file = partial_backend_stack / "backend" / "prod.s3.tfbackend"
    backend_file.write_text(backend_file.read_text().replace(s3.key, "moved/terraform.tfstate"))

    with pytest.raises(TerraformError) as caught:
        run_plan_and_apply(runner, ws)

    assert "Backend configuration changed" in caught.value.args[0]
    assert resources_in(s3.state())["demo_object.app-web"]["content"] == "v1"
    assert S3State(s3.aws, key="moved/terraform.tfstate").state() is None


def test_a_held_lock_is_a_state_lock_error_after_the_lock_timeout(
    tmp_path, runner, partial_backend_stack, s3
):
    ws = workspace(tmp_path, partial_backend_stack, "backend/prod.s3.tfbackend")
    run_plan_and_apply(runner, ws)
    lock_id = s3.hold_lock(who=HOLDER, operation="OperationTypePlan")

    with pytest.raises(StateLockError) as caught:
        runner.plan(ws, deadline=Deadline(60), cancel=None, redact=None)

    assert caught.value.lock_id == lock_id
    assert caught.value.args[0].startswith(f"the state is locked by {HOLDER} (plan, since ")
    assert "-lock-timeout=2s" in caught.value.argv


def test_without_aws_keys_in_its_environment_terraform_cannot_reach_the_backend(
    tmp_path, terraform_bin, tf_cli_config, tf_env, partial_backend_stack, s3
):
    keyless = TerraformRunner(
        RunnerSettings(binary=str(terraform_bin), cli_config=tf_cli_config, inherit=tf_env)
    )
    ws = workspace(tmp_path, partial_backend_stack, "backend/prod.s3.tfbackend")

    with pytest.raises(TerraformError) as caught:
        keyless.prepare(ws, deadline=Deadline(60), cancel=None, redact=None)

    assert "no valid credential sources" in caught.value.args[0].lower()
    assert s3.state() is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("../shared/prod.tfbackend", "leaves the stack directory"),
        ("backend/../../x.tfbackend", "leaves the stack directory"),
        ("/etc/prod.tfbackend", "is not a relative POSIX path"),
        ("bucket=someone-elses", "contains '='"),
        ("backend/missing.tfbackend", "is not a file in the stack directory"),
        ("backend", "is not a file in the stack directory"),
        ("escape.tfbackend", "leaves the stack directory"),  # a symlink out of the stack
        ("", "is empty"),
    ],
)
def test_a_backend_config_entry_that_is_not_a_file_of_the_stack_is_refused_before_init(
    tmp_path, runner, entry, problem
):
    source = tmp_path / "view" / "stacks" / "app"
    (source / "backend").mkdir(parents=True)
    (source / "main.tf").write_text('terraform {\n  backend "s3" {}\n}\n')
    (tmp_path / "view" / "outside.tfbackend").write_text('bucket = "other"\n')
    os.symlink("../outside.tfbackend", source / "escape.tfbackend")
    ws = workspace(tmp_path, source, entry)

    with pytest.raises(BackendConfigError) as caught:
        runner.prepare(ws, deadline=Deadline(60), cancel=None, redact=None)

    assert problem in str(caught.value) and "stack app" in str(caught.value)
    assert not ws.log_path.exists(), "Terraform was not started"
