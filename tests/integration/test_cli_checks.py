"""The command line tells the truth: check-config's exit 0 means `serve` starts, a mistyped stack
is called a mistyped stack, and `status` says when the head's code is the code applied."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from harness import one_stack_repo, tfops_cli

pytestmark = pytest.mark.terraform


@pytest.fixture
def setup(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    remote, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        remote_dir=tmp_path / "git",
    )
    return remote, config, tf_env, tmp_path


def _run(args: list[str], env: dict[str, str], cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfops.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _serve_refuses(args: list[str], env: dict[str, str], cwd) -> str:
    """`tfops serve` must stop at start with exit 1; a daemon that keeps running fails the test."""
    try:
        result = _run([*args, "serve"], env, cwd, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve started with {args}, so check-config must accept it")
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr


def test_check_config_fails_exactly_when_serve_would_refuse_to_start(setup):
    _remote, config, env, tmp_path = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    no_url = tmp_path / "no-url.yaml"
    settings = yaml.safe_load(config.read_text())
    del settings["repo"]["url"]
    no_url.write_text(yaml.safe_dump(settings))
    token = tmp_path / "token.yaml"
    token.write_text(config.read_text().replace("repo:\n", "repo:\n  token_env: TFOPS_GIT_TOKEN\n", 1))
    broken = {
        "no config file at all": ([], "no config file was read"),
        "no repo.url": (["--config", str(no_url)], "repo.url: not set"),
        "a token variable that is not set": (["--config", str(token)], "TFOPS_GIT_TOKEN is not set"),
    }
    for case, (args, reason) in broken.items():
        checked = _run([*args, "check-config"], env, empty)
        assert checked.returncode == 1, f"{case}: check-config said\n{checked.stdout}{checked.stderr}"
        assert reason in checked.stderr, f"{case}: {checked.stderr}"
        assert "configuration OK" not in checked.stdout, case
        assert reason in _serve_refuses(args, env, empty), case

    good = _run(["check-config", "--config", str(token)], {**env, "TFOPS_GIT_TOKEN": "t0ken"}, empty)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "configuration OK" in good.stdout and "t0ken" not in good.stdout


def test_an_unknown_stack_argument_is_named_with_the_known_stacks(setup):
    _remote, config, env, _ = setup
    for command in ("plan", "deploy", "drift"):
        result = tfops_cli(config, command, "nosuch", env=env)

        assert result.returncode == 1, result.stdout + result.stderr
        assert "unknown stack(s): nosuch; known: app" in result.stderr
        assert "tfops status" in result.stderr, "the hint is about the argument"
        assert "check-config" not in result.stderr, "the configuration is not the mistake"


def test_status_says_the_heads_code_is_applied_after_a_revert(setup, demo_cloud):
    remote, config, env, _ = setup
    assert tfops_cli(config, "reconcile", env=env).returncode == 0
    good = (remote.work / "stacks/app/main.tf").read_text()
    remote.commit_and_push("broken", {"stacks/app/main.tf": good + '\nresource "demo_object" {\n'})
    assert tfops_cli(config, "reconcile", env=env).returncode == 1  # the deploy of the broken code fails
    broken = _app_status(config, env)
    assert broken["head_sha"] != broken["applied_sha"] and broken["head_code_applied"] is False

    remote.repo.git.revert("--no-edit", "HEAD")
    remote.push()
    assert tfops_cli(config, "reconcile", env=env).returncode == 0

    row = _app_status(config, env)
    assert row["head_sha"] == remote.repo.head.commit.hexsha
    assert row["head_sha"] != row["applied_sha"], "the revert needs no deploy: the code is the applied one"
    assert row["head_code_applied"] is True
    table = tfops_cli(config, "status", env={**env, "COLUMNS": "200"})  # one line per stack
    assert f"{row['head_sha'][:10]} · code applied" in table.stdout, table.stdout


def _app_status(config, env) -> dict:
    result = tfops_cli(config, "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}["app"]
