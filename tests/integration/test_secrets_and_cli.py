"""The command line, end to end, and the promise that a sensitive value never leaves the run."""

from __future__ import annotations

import json

import pytest
from harness import Remote, cloud_object, demo_stack, edit_cloud_object, tfops_cli, write_config

pytestmark = pytest.mark.terraform

CANARY = "canary-s3cr3t-value-42"
ROTATED = "canary-r0tated-value-77"
CONSOLE = "canary-c0nsole-value-99"  # set outside Terraform: drift of a sensitive attribute

SECRET_CODE = """\
variable "db_password" {{
  type      = string
  sensitive = true
  default   = "{secret}"
}}

resource "demo_object" "db" {{
  name    = "db-credentials"
  content = "credentials"
  secret  = var.db_password
}}

output "password" {{
  value     = var.db_password
  sensitive = true
}}
"""


@pytest.fixture
def cli_setup(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "stacks",
        {
            "stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}),
            "stacks/db/main.tf": demo_stack(demo_cloud, {}, extra=SECRET_CODE.format(secret=CANARY)),
        },
    )
    config = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
    )
    return remote, config, tf_env, tmp_path


def test_reconcile_exit_codes_follow_the_state_of_the_stacks(cli_setup, demo_cloud):
    _remote, config, env, _ = cli_setup

    first = tfops_cli(config, "reconcile", env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")
    drifted = tfops_cli(config, "reconcile", env=env)
    assert drifted.returncode == 2, drifted.stderr + drifted.stdout

    status = json.loads(tfops_cli(config, "status", "--json", env=env).stdout)
    by_name = {row["name"]: row for row in status}
    assert by_name["app"]["drift"] == "drifted"
    assert by_name["db"]["drift"] == "in_sync"
    assert by_name["app"]["head_sha"] == by_name["app"]["applied_sha"]
    assert by_name["app"]["last_run"]["kind"] == "drift"
    assert set(by_name["app"]) >= {"name", "path", "head_sha", "applied_sha", "drift", "last_run"}

    drift = tfops_cli(config, "drift", "app", env=env)
    assert drift.returncode == 2
    assert "content" in drift.stdout and "edited by hand" in drift.stdout


def test_plan_command_prints_the_summary_and_exits_2_on_changes(cli_setup, demo_cloud):
    _remote, config, env, _ = cli_setup
    assert tfops_cli(config, "reconcile", env=env).returncode == 0
    assert tfops_cli(config, "plan", "app", env=env).returncode == 0

    edit_cloud_object(demo_cloud, "app-web", tags={"env": "console"})
    changed = tfops_cli(config, "plan", "app", env=env)

    assert changed.returncode == 2, changed.stderr
    assert "tags.env" in changed.stdout
    assert cloud_object(demo_cloud, "app-web")["tags"] == {"env": "console"}, "a plan must never apply"
    unknown = tfops_cli(config, "plan", "no-such-stack", env=env)
    assert unknown.returncode == 1
    assert "unknown stack" in unknown.stderr


def test_a_sensitive_value_never_reaches_the_store_the_log_or_the_cli(cli_setup):
    remote, config, env, tmp_path = cli_setup
    assert tfops_cli(config, "reconcile", env=env).returncode == 0
    remote.commit_and_push(
        "rotate",
        {
            "stacks/db/main.tf": demo_stack(
                tmp_path / "demo-cloud", {}, extra=SECRET_CODE.format(secret=ROTATED)
            )
        },
    )
    assert tfops_cli(config, "reconcile", env=env).returncode == 0
    edit_cloud_object(tmp_path / "demo-cloud", "db-credentials", secret=CONSOLE)
    drift = tfops_cli(config, "drift", "db", env=env)
    assert drift.returncode == 2, drift.stderr
    outputs = [drift.stdout, drift.stderr]
    runs = json.loads(tfops_cli(config, "runs", "--json", "--limit", "50", env=env).stdout)
    for run in runs:
        for args in (("show", str(run["id"])), ("show", str(run["id"]), "--json")):
            shown = tfops_cli(config, *args, env=env)
            assert shown.returncode == 0
            outputs.append(shown.stdout + shown.stderr)
    for args in (("runs",), ("runs", "--json"), ("status",), ("status", "--json"), ("check-config",)):
        outputs.append(tfops_cli(config, *args, env=env).stdout)

    data = tmp_path / "data"
    stored = [path.read_bytes() for path in [data / "tfops.db", *data.glob("tfops.db-*")] if path.exists()]
    logs = [path.read_text() for path in (data / "runs").glob("*/run.log")]
    assert any("(sensitive" in text for text in outputs + logs), "the secret was never even shown masked"
    for secret in (CANARY, ROTATED, CONSOLE):
        assert all(secret.encode() not in blob for blob in stored)
        assert all(secret not in text for text in logs)
        assert all(secret not in text for text in outputs)


def test_bad_config_is_reported_with_file_field_and_reason(tmp_path, tf_env):
    config = tmp_path / "tfops.yaml"
    config.write_text(
        "repo:\n  url: /srv/infra.git\nterraform:\n  max_parallel: 0\nstacks:\n  - path: ../outside\n"
    )

    result = tfops_cli(config, "check-config", env=tf_env)

    assert result.returncode == 1
    assert "tfops.yaml" in result.stderr
    assert "terraform.max_parallel" in result.stderr
    assert "stacks.0.path" in result.stderr
