"""The demo provider under a real Terraform: files in a folder behave like a cloud."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tfops.demo.mirror import build_mirror, write_cli_config

pytestmark = pytest.mark.terraform

STACK = """
terraform {
  required_providers {
    demo = { source = "tfops/demo", version = "0.1.0" }
  }
}

provider "demo" {}

resource "demo_object" "greeting" {
  name    = "greeting"
  content = "hello"
  tags    = { env = "test" }
  secret  = "hunter2-do-not-print"
}
"""


def terraform(binary: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args, "-no-color"],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def lock_hash(stack: Path) -> str:
    lock = (stack / ".terraform.lock.hcl").read_text()
    return next(line.strip().strip('",') for line in lock.splitlines() if '"h1:' in line)


@pytest.fixture(scope="module")
def initialised_stack(tmp_path_factory, terraform_bin, tf_cli_config, _tf_home) -> Path:
    """One `terraform init` per module; tests copy the result (its .terraform holds only symlinks)."""
    stack = tmp_path_factory.mktemp("demo-stack")
    (stack / "main.tf").write_text(STACK)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(_tf_home), "TF_CLI_CONFIG_FILE": str(tf_cli_config)}
    ok(terraform(terraform_bin, stack, env, "init", "-input=false"))
    return stack


@pytest.fixture
def stack(initialised_stack: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "stack"
    shutil.copytree(initialised_stack, copy, symlinks=True)
    return copy


@pytest.fixture
def env(tf_env: dict[str, str], demo_cloud: Path) -> dict[str, str]:
    return {**tf_env, "TFOPS_DEMO_CLOUD": str(demo_cloud)}


@pytest.fixture
def applied(terraform_bin, stack, env) -> subprocess.CompletedProcess[str]:
    return ok(terraform(terraform_bin, stack, env, "apply", "-auto-approve", "-input=false"))


def saved_plan(terraform_bin: Path, stack: Path, env: dict[str, str]) -> tuple[int, dict]:
    plan = terraform(terraform_bin, stack, env, "plan", "-input=false", "-detailed-exitcode", "-out=tfplan")
    assert plan.returncode in (0, 2), plan.stdout + plan.stderr
    shown = ok(terraform(terraform_bin, stack, env, "show", "-json", "tfplan"))
    return plan.returncode, json.loads(shown.stdout)


def test_apply_stores_the_object_as_a_sorted_json_file(applied, demo_cloud):
    stored_text = (demo_cloud / "greeting.json").read_text()
    stored = json.loads(stored_text)

    assert stored["content"] == "hello"
    assert stored["tags"] == {"env": "test"}
    assert stored["name"] == "greeting"
    assert len(stored["id"]) == 32
    assert list(stored) == sorted(stored), "keys are sorted so diffs of the cloud folder stay small"
    assert stored_text.startswith("{\n  "), "pretty-printed"


def test_sensitive_secret_is_hidden_in_terraform_output(applied):
    assert "secret  = (sensitive value)" in applied.stdout
    assert "hunter2-do-not-print" not in applied.stdout + applied.stderr


def test_editing_the_file_outside_terraform_is_reported_as_drift(
    terraform_bin, stack, env, applied, demo_cloud
):
    object_file = demo_cloud / "greeting.json"
    stored = json.loads(object_file.read_text())
    object_file.write_text(json.dumps({**stored, "content": "changed in the console"}))

    exit_code, plan = saved_plan(terraform_bin, stack, env)

    assert exit_code == 2
    [drift] = plan["resource_drift"]
    assert drift["address"] == "demo_object.greeting"
    assert drift["change"]["before"]["content"] == "hello"
    assert drift["change"]["after"]["content"] == "changed in the console"
    [change] = plan["resource_changes"]
    assert change["change"]["actions"] == ["update"]
    assert change["change"]["after"]["content"] == "hello", "applying the plan reverts the drift"


def test_deleting_the_file_makes_terraform_plan_to_create_it_again(
    terraform_bin, stack, env, applied, demo_cloud
):
    (demo_cloud / "greeting.json").unlink()

    exit_code, plan = saved_plan(terraform_bin, stack, env)

    assert exit_code == 2
    assert [c["change"]["actions"] for c in plan["resource_changes"]] == [["create"]]
    ok(terraform(terraform_bin, stack, env, "apply", "-input=false", "tfplan"))
    assert json.loads((demo_cloud / "greeting.json").read_text())["content"] == "hello"


def test_a_provider_without_a_cloud_folder_fails_with_a_clear_error(terraform_bin, stack, tf_env):
    plan = terraform(terraform_bin, stack, tf_env, "plan", "-input=false")

    assert plan.returncode == 1
    assert "The demo provider has no cloud folder" in plan.stderr
    assert "TFOPS_DEMO_CLOUD" in plan.stderr


def test_rebuilding_the_mirror_keeps_the_lock_file_hash(terraform_bin, stack, env, tf_mirror, tmp_path):
    locked = lock_hash(stack)
    launcher = next(tf_mirror.rglob("terraform-provider-demo_v0.1.0"))
    before = launcher.read_bytes()

    build_mirror(tf_mirror)
    fresh_mirror = build_mirror(tmp_path / "fresh-mirror")
    fresh_config = write_cli_config(tmp_path / "fresh.tfrc", fresh_mirror)
    # Without .terraform, init must install from the new mirror and check it against the lock file.
    shutil.rmtree(stack / ".terraform")
    ok(
        terraform(
            terraform_bin, stack, {**env, "TF_CLI_CONFIG_FILE": str(fresh_config)}, "init", "-input=false"
        )
    )

    assert launcher.read_bytes() == before
    assert lock_hash(stack) == locked, "a lock file made with one mirror must accept a rebuilt one"


SLOW_STACK = (
    STACK
    + """
resource "demo_wait" "slow" {
  seconds    = 60
  depends_on = [demo_object.greeting]
}
"""
)


def test_sigint_to_the_process_group_cuts_a_slow_apply_short_and_keeps_state(
    terraform_bin, stack, env, demo_cloud
):
    (stack / "main.tf").write_text(SLOW_STACK)
    apply = subprocess.Popen(
        [str(terraform_bin), "apply", "-auto-approve", "-input=false", "-no-color"],
        cwd=stack,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = []
        for line in apply.stdout:
            output.append(line)
            if "demo_wait.slow: Creating..." in line:
                break
        started = time.monotonic()
        # Terraform 1.0.x runs under panicwrap: only a group signal reaches the real process.
        os.killpg(apply.pid, signal.SIGINT)
        output.append(apply.stdout.read())
        exit_code = apply.wait(timeout=30)
    finally:
        if apply.poll() is None:
            os.killpg(apply.pid, signal.SIGKILL)
            apply.wait()

    assert exit_code == 1, "".join(output)
    assert time.monotonic() - started < 10
    # Which error Terraform prints races: Terraform's own "execution halted", or (when the group's
    # SIGINT reaches the provider first, as on a busy machine) the demo provider's diagnostic.
    text = "".join(output)
    assert "execution halted" in text or "The wait was interrupted (SIGINT)" in text, text
    state = ok(terraform(terraform_bin, stack, env, "state", "list")).stdout.split()
    assert state == ["demo_object.greeting"], "what finished before the interrupt is in the state"
    assert not (demo_cloud / ".waits").exists()
