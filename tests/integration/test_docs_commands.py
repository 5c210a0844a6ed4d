"""Every `tfops ...` command line written in README.md, docs/*.md and config/ runs.

The command lines are read from the documents (see doccmds.py), never restated here: a
document that drifts from the program fails this test. Each one runs against a real
configuration (a local Git remote with one stack of the demo provider, the real Terraform);
placeholders (RUN_ID, STACK, ...) get real values; commands that serve until stopped (`serve`,
`demo`) and bare mentions of a command that needs arguments (`tfops show`) are parsed by the
real CLI with `--help` appended.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from doccmds import DocCommand, commands_in, documents
from harness import Remote, demo_stack, write_config

from tfops.cli import cli

pytestmark = pytest.mark.terraform

STACK = "network"  # the name the documents use in their examples
SERVES_UNTIL_STOPPED = {("serve",), ("demo",)}
# Documented exit codes: 2 means "changes"/"pending", 1 a refused decision (README's table).
ALLOWED_EXIT = {("approve",): {0, 1}, ("reject",): {0, 1}}
USAGE_OR_ERROR = re.compile(r"^(error|Error|Usage):|Traceback", re.MULTILINE)


def _command_path(args: list[str]) -> tuple[str, ...]:
    """The command words (`db upgrade`) in args, skipping the shared options and their values."""
    words: list[str] = []
    group: click.Command = cli
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c", "--log-level", "--log-format"):
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if not isinstance(group, click.Group) or arg not in group.commands:
            break
        group = group.commands[arg]
        words.append(arg)
        i += 1
    return tuple(words)


def _needs_arguments(path: tuple[str, ...], args: list[str]) -> bool:
    """A bare mention such as `tfops show` names the command; it is not a command line."""
    command: click.Command = cli
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
    required = [p for p in command.params if isinstance(p, click.Argument) and p.required]
    positional = [a for a in args if not a.startswith("-")]
    return bool(required) and len(positional) <= len(path)


def _concrete(args: tuple[str, ...], *, config: Path, run_id: int) -> list[str]:
    """Placeholders and the documents' example paths replaced by this test's real ones."""
    values = {"RUN_ID": str(run_id), "42": str(run_id), "STACK": STACK, "S": STACK, "N": "5"}
    concrete = []
    for arg in args:
        arg = arg.strip("[]")  # `[--json]`: the optional parts are given
        if arg.endswith("tfops.yaml"):
            arg = str(config)
        concrete.append(values.get(arg, arg))
    return concrete


@pytest.fixture
def real_setup(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    """One stack, `network`, that asks before applying: applied once, and a change awaiting approval."""
    remote = Remote(tmp_path)
    main_tf = f"stacks/{STACK}/main.tf"
    remote.commit_and_push("network", {main_tf: demo_stack(demo_cloud, {"net": "v1"})})
    config = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        stacks=[{"discover": "stacks/*", "on_merge": "ask", "on_drift": "notify", "drift_interval": 0}],
    )
    env = {**tf_env, "TFOPS_CONFIG": str(config)}
    assert _tfops(["reconcile"], env).returncode == 2  # the first deploy waits for an approval
    approved = _tfops(["approve", str(_awaiting(env))], env)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    remote.commit_and_push("network v2", {main_tf: demo_stack(demo_cloud, {"net": "v2"})})
    assert _tfops(["reconcile"], env).returncode == 2
    return config, env, _awaiting(env)


def _awaiting(env: dict[str, str]) -> int:
    runs = json.loads(_tfops(["runs", "--json"], env).stdout)
    waiting = [run["id"] for run in runs if run["status"] == "awaiting_approval"]
    assert len(waiting) == 1, runs
    return waiting[0]


def _tfops(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _all_commands() -> list[DocCommand]:
    return [command for path in documents() for command in commands_in(path) if command.args]


def test_the_documents_are_searched_where_the_commands_are():
    found = _all_commands()
    sources = {command.source.split(":")[0] for command in found}
    # The unit, the VM guide and the README all hold command lines; finding none would make
    # the test below pass vacuously.
    assert {"config/tfops.service", "docs/deploy-vm.md", "README.md", "docs/slack.md"} <= sources
    unit = [command.args for command in found if command.source.startswith("config/tfops.service")]
    assert unit and unit[0][0] == "serve", unit  # the unit's ExecStart


def test_every_documented_tfops_command_line_runs_against_a_real_configuration(real_setup):
    config, env, run_id = real_setup
    failures, seen = [], set()
    for command in _all_commands():
        args = _concrete(command.args, config=config, run_id=run_id)
        path = _command_path(args)
        parse_only = path in SERVES_UNTIL_STOPPED or _needs_arguments(path, args)
        if parse_only:
            args.append("--help")
        if tuple(args) in seen:
            continue
        seen.add(tuple(args))
        result = _tfops(args, env)
        output = result.stdout + result.stderr
        allowed = {0} if parse_only else ALLOWED_EXIT.get(path, {0, 2})
        if result.returncode not in allowed or USAGE_OR_ERROR.search(result.stderr):
            failures.append(
                f"{command.source}: {command.text}\n  ran: tfops {' '.join(args)}\n"
                f"  exit {result.returncode}: {output.strip()[-600:]}"
            )
        elif parse_only and "Usage:" not in result.stdout:
            failures.append(f"{command.source}: {command.text}: --help printed no usage")
    assert not failures, "documented commands that do not run:\n" + "\n".join(failures)
    assert len(seen) >= 15, seen
