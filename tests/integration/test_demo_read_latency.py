"""The demo provider's `read_latency` under a real Terraform: every refresh of a resource waits
like a cloud API's round trip, so a plan of N objects, one at a time, takes N latencies at least."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from test_demo_provider import terraform as plain_terraform

pytestmark = pytest.mark.terraform

OBJECTS = 3
LATENCY = 0.4


def stack_text(read_latency: str) -> str:
    block = 'resource "demo_object" "o{i}" {{\n  name    = "o{i}"\n  content = "v1"\n}}\n'
    objects = "\n".join(block.format(i=i) for i in range(OBJECTS))
    return f"""
terraform {{
  required_providers {{
    demo = {{ source = "tfops/demo", version = "0.1.0" }}
  }}
}}

provider "demo" {{
  read_latency = "{read_latency}"
}}

{objects}
"""


def terraform(binary: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return plain_terraform(binary, cwd, env, *args, "-input=false")


def test_a_plan_refreshing_n_objects_one_at_a_time_waits_n_read_latencies(
    terraform_bin, tf_env, demo_cloud, tmp_path
):
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "main.tf").write_text(stack_text(f"{int(LATENCY * 1000)}ms"))
    env = {**tf_env, "TFOPS_DEMO_CLOUD": str(demo_cloud)}
    for step in (("init",), ("apply", "-auto-approve")):
        done = terraform(terraform_bin, stack, env, *step)
        assert done.returncode == 0, done.stdout + done.stderr

    start = time.monotonic()
    plan = terraform(terraform_bin, stack, env, "plan", "-parallelism=1", "-detailed-exitcode")
    took = time.monotonic() - start

    assert plan.returncode == 0, plan.stdout + plan.stderr  # refreshed, found as applied
    assert plan.stdout.count("Refreshing state...") == OBJECTS
    assert took >= OBJECTS * LATENCY  # a lower bound the latency guarantees, not a speed claim


def test_a_read_latency_that_is_not_a_duration_stops_the_plan_saying_why(
    terraform_bin, tf_env, demo_cloud, tmp_path
):
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "main.tf").write_text(stack_text("soon"))
    env = {**tf_env, "TFOPS_DEMO_CLOUD": str(demo_cloud)}
    assert terraform(terraform_bin, stack, env, "init").returncode == 0

    plan = terraform(terraform_bin, stack, env, "plan")

    assert plan.returncode == 1
    assert "Invalid read_latency" in plan.stderr and "300ms" in plan.stderr
