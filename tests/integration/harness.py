"""Building blocks for scenario tests: a real Git remote, demo stacks, a tfops config.

Everything here is real: a bare repository on disk that tfops clones and fetches,
a working clone the test commits and pushes from, Terraform code that uses the
demo provider, and a tfops.yaml loaded through the real settings loader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import git
import yaml

from tfops.app import App
from tfops.config import load_settings

PROVIDER_BLOCK = """\
terraform {{
  required_providers {{
    demo = {{
      source  = "tfops/demo"
      version = "0.1.0"
    }}
  }}
}}

provider "demo" {{
  root = {cloud}
}}
"""


def demo_stack(cloud: Path, objects: Mapping[str, str], *, extra: str = "") -> str:
    """Terraform code for a stack of demo objects: {resource name: content}."""
    blocks = [PROVIDER_BLOCK.format(cloud=json.dumps(str(cloud)))]
    for name, content in objects.items():
        blocks.append(
            textwrap.dedent(
                f"""\
                resource "demo_object" "{name}" {{
                  name    = "{name}"
                  content = {json.dumps(content)}
                  tags = {{
                    env = "test"
                  }}
                }}
                """
            )
        )
    if extra:
        blocks.append(textwrap.dedent(extra))
    return "\n".join(blocks)


class Remote:
    """A bare "origin" and a working clone that plays the engineer pushing changes."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.branch = branch
        self.bare = root / "remote.git"
        self.work = root / "work"
        git.Repo.init(self.bare, bare=True, initial_branch=branch)
        self.repo = git.Repo.init(self.work, initial_branch=branch)
        with self.repo.config_writer() as config:
            config.set_value("user", "name", "Test Engineer")
            config.set_value("user", "email", "engineer@example.com")
        self.repo.create_remote("origin", str(self.bare))

    @property
    def url(self) -> str:
        return str(self.bare)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def delete(self, path: str) -> None:
        (self.work / path).unlink()

    def commit(self, message: str, files: Mapping[str, str] | None = None) -> str:
        for path, text in (files or {}).items():
            self.write(path, text)
        self.repo.git.add("-A")
        self.repo.index.commit(message)
        return self.repo.head.commit.hexsha

    def push(self, *, force: bool = False) -> None:
        args = ["--force"] if force else []
        self.repo.git.push(*args, "origin", f"HEAD:refs/heads/{self.branch}")

    def commit_and_push(self, message: str, files: Mapping[str, str] | None = None) -> str:
        sha = self.commit(message, files)
        self.push()
        return sha

    def reset_hard(self, sha: str) -> None:
        self.repo.git.reset("--hard", sha)


def write_config(
    path: Path,
    *,
    remote: Remote,
    data_dir: Path,
    terraform_bin: Path,
    cli_config: Path,
    stacks: list[dict[str, Any]] | None = None,
    terraform: Mapping[str, Any] | None = None,
    **top: Any,
) -> Path:
    config = {
        "data_dir": str(data_dir),
        "repo": {"url": remote.url, "branch": remote.branch, "poll_interval": "1s"},
        "terraform": {
            "binary": str(terraform_bin),
            "cli_config": str(cli_config),
            "max_parallel": 2,
            "timeout": "120s",
            "lock_timeout": "10s",
            "stop_grace": "20s",
            **(terraform or {}),
        },
        "stacks": stacks
        or [{"discover": "stacks/*", "on_merge": "apply", "on_drift": "notify", "drift_interval": 0}],
        **top,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_stack_repo(
    tmp_path: Path,
    cloud: Path,
    *,
    terraform_bin: Path,
    cli_config: Path,
    code: str | None = None,
    remote_dir: Path | None = None,
    **config: Any,
) -> tuple[Remote, Path]:
    """A remote holding one stack (`stacks/app`, one demo object unless `code` is given) and a
    tfops.yaml for it in `tmp_path` (data in `tmp_path/data`); `config` goes to write_config."""
    remote = Remote(remote_dir or tmp_path)
    remote.commit_and_push("app", {"stacks/app/main.tf": code or demo_stack(cloud, {"app-web": "v1"})})
    path = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=terraform_bin,
        cli_config=cli_config,
        **config,
    )
    return remote, path


def slack_settings(directory: Path, slack: Any, channel: str, **extra: Any) -> dict[str, Any]:
    """The `slack` section for the fake Slack (`slack` fixture), its token in a file in `directory`."""
    token_file = directory / "slack-token"
    token_file.write_text(slack.bot_token + "\n")
    return {"bot_token_file": str(token_file), "channel": channel, "base_url": slack.api_url, **extra}


def make_app(config_path: Path, tf_env: Mapping[str, str]) -> App:
    return App(load_settings(config_path, environ={}), environ=dict(tf_env))


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def cloud_object(cloud: Path, name: str) -> dict[str, Any] | None:
    path = cloud / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def edit_cloud_object(cloud: Path, name: str, **changes: Any) -> None:
    """Change an object behind Terraform's back: this is what drift is."""
    path = cloud / f"{name}.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def processes_in_group(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (read from /proc, no ps needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            found.append(int(entry.name))
    return found


def signal_counting_terraform(directory: Path, real: Path) -> Path:
    """A terraform shim that records every SIGINT its process group receives.

    tfops.proc signals the whole group, so the shim (the group leader) sees exactly
    what Terraform sees. It does not forward signals: Terraform gets them directly.
    """
    shim = directory / "terraform"
    shim.write_text(
        "#!/bin/sh\n"
        f'log="{directory}/signals.log"\n'
        "trap 'echo INT >> \"$log\"' INT\n"
        f'echo "$$" >> "{directory}/pgids.log"\n'
        f'"{real}" "$@" &\n'
        "child=$!\n"
        "rc=0\n"
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done\n'
        'exit "$rc"\n'
    )
    os.chmod(shim, 0o755)
    return shim


def tfops_cli(
    config: Path, *args: str, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real `tfops` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "tfops.cli", "--config", str(config), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_daemon(config: Path, *, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """`tfops serve` in its own session, so a failing test can still kill everything it started."""
    handle = open(log, "ab")  # noqa: SIM115 - owned by the process for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "tfops.cli", "--config", str(config), "serve"],
        env=dict(env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


class Daemons:
    """`tfops serve` processes started by a test (`start_daemon`); `kill_all()` at its end kills
    whatever still runs, so a failing test leaves no daemon behind."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def __call__(self, config: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen:
        daemon = start_daemon(config, env=env, log=log)
        self.started.append(daemon)
        return daemon

    def kill_all(self) -> None:
        for daemon in self.started:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
