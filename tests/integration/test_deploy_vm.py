"""docs/deploy-vm.md, followed as far as a machine without systemd (and without root) allows.

What cannot run here is creating the `tfops` user and installing files under /etc and /opt:
the commands that use those paths run with them replaced by this test's files, and
`sudo`/`runuser -u tfops --` (becoming another user) are left out. Everything else is the
documents' own text: the check-config command line with the shipped env file, the unit
(checked by `systemd-analyze verify` where that tool exists) and its ExecStart, started until
ready and stopped with SIGTERM as systemd would.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from doccmds import ROOT, exec_start
from harness import Remote, demo_stack, wait_for, write_config

pytestmark = pytest.mark.terraform

GUIDE = ROOT / "docs" / "deploy-vm.md"
UNIT = ROOT / "config" / "tfops.service"
ENV_EXAMPLE = ROOT / "config" / "tfops.env.example"
TFOPS = Path(sys.executable).with_name("tfops")  # the venv's entry point, as /opt/tfops/venv/bin/tfops


@pytest.fixture
def vm(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    """What steps 1-3 leave on the VM: /etc/tfops with tfops.yaml and tfops.env, a state directory."""
    assert TFOPS.is_file(), f"{TFOPS}: tfops is not installed in this environment"
    remote = Remote(tmp_path / "git")
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app": "v1"})})
    etc = tmp_path / "etc-tfops"
    etc.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(
        etc / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "var-lib-tfops",
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        http={"listen": f"127.0.0.1:{port}"},
    )
    shutil.copy(ENV_EXAMPLE, etc / "tfops.env")  # step 3: `cp config/tfops.env.example ...`
    paths = {
        "/etc/tfops/tfops.yaml": str(config),
        "/etc/tfops/tfops.env": str(etc / "tfops.env"),
        "/opt/tfops/venv/bin/tfops": str(TFOPS),
        "/var/lib/tfops": str(tmp_path / "var-lib-tfops"),
        "/var/backups/tfops": str(tmp_path / "backups"),
    }
    return paths, port, tmp_path, tf_env


def _on_this_machine(text: str, paths: dict[str, str]) -> str:
    for documented, here in paths.items():
        text = text.replace(documented, here)
    return text


def _guide_command(needle: str) -> str:
    """The one shell line of the guide's code blocks that contains `needle` (continuations joined)."""
    lines, block, pending = [], False, ""
    for line in GUIDE.read_text().splitlines():
        if line.startswith("```"):
            block = not block
            continue
        if block and line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        elif block:
            lines.append(pending + line)
            pending = ""
    found = [line for line in lines if needle in line]
    assert len(found) == 1, f"docs/deploy-vm.md: expected one command line with {needle!r}, found {found}"
    return found[0]


def _as_this_user(words: list[str]) -> list[str]:
    """Drop `sudo` and `runuser -u USER --`: the test cannot become root or `tfops`."""
    while words and words[0] == "sudo":
        words = words[3:] if words[1:2] == ["-u"] else words[1:]
    return words


def test_the_guides_check_config_reads_the_shipped_env_file_and_passes(vm):
    paths, _port, _tmp_path, tf_env = vm
    # The env file's variable must reach tfops: the config names it as the Git token.
    config = Path(paths["/etc/tfops/tfops.yaml"])
    config.write_text(config.read_text().replace("repo:\n", "repo:\n  token_env: TFOPS_GIT_TOKEN\n", 1))
    line = _on_this_machine(_guide_command("check-config"), paths)
    words = _as_this_user(shlex.split(line))
    if words[:2] == ["sh", "-c"]:  # strip the user switch inside the script as well
        words[2] = words[2].replace("runuser -u tfops -- ", "")
    assert "runuser" not in " ".join(words) and "sudo" not in " ".join(words), words

    result = subprocess.run(words, env=tf_env, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration OK" in result.stdout
    assert result.stderr.strip() == "", result.stderr  # e.g. `xargs: unmatched single quote`
    assert "ghp_replace_me" not in result.stdout, "a secret from the env file was printed"


def test_the_unit_verifies_and_its_exec_start_serves_until_ready_then_stops_on_sigterm(vm):
    paths, port, tmp_path, tf_env = vm
    unit = tmp_path / "tfops.service"
    unit.write_text(_on_this_machine(UNIT.read_text(), paths))  # step 4: `cp config/tfops.service ...`

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # only this check needs systemd's tool; the daemon runs regardless
        verified = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        complaints = [line for line in (verified.stdout + verified.stderr).splitlines() if unit.name in line]
        assert verified.returncode == 0 and not complaints, verified.stdout + verified.stderr

    command = shlex.split(exec_start(unit))
    assert command[0] == str(TFOPS), command
    state = tmp_path / "var-lib-tfops"
    env = {**tf_env, "STATE_DIRECTORY": str(state)}  # what StateDirectory=tfops gives the service
    log = tmp_path / "journal.log"
    with log.open("ab") as journal:
        daemon = subprocess.Popen(
            command,
            env=env,
            stdout=journal,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=tmp_path,
        )
    try:
        wait_for(
            lambda: _ready(port) or daemon.poll() is not None,
            timeout=120,
            what="GET /readyz 200 from the unit's ExecStart",
        )
        assert daemon.poll() is None, f"the daemon exited {daemon.returncode}:\n{log.read_text()}"
        # Step 5: a shell's `tfops status` reads the daemon's store (data_dir, not ~/.local/state).
        status = _run_guide_line("tfops.yaml status", paths, tf_env)
        assert status.returncode == 0 and "stacks/app" in status.stdout, status.stdout + status.stderr
        daemon.send_signal(signal.SIGTERM)  # `systemctl stop`: KillMode=mixed signals tfops only
        assert daemon.wait(timeout=120) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
    if shutil.which("sqlite3"):  # step 8, the backup (sqlite3 is in step 1's apt line)
        (tmp_path / "backups").mkdir()  # the guide's `install -d -o tfops ...`, as this user
        backup = _run_guide_line(".backup", paths, tf_env)
        assert backup.returncode == 0, backup.stderr
        copies = list((tmp_path / "backups").glob("tfops-*.db"))
        assert len(copies) == 1 and _tables(copies[0]) >= {"runs", "stacks"}, copies
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    records = [json.loads(line) for line in lines]  # --log-format json: journald gets JSON lines
    assert any("serving" in str(record.get("message", record)) for record in records), lines


def _run_guide_line(needle: str, paths: dict[str, str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """A shell line of the guide, run by sh as written but for the paths and `sudo -u tfops`."""
    line = _on_this_machine(_guide_command(needle), paths).removeprefix("sudo -u tfops ")
    assert not line.startswith("sudo"), line
    return subprocess.run(
        ["sh", "-c", line], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        return {row[0] for row in connection.execute("select name from sqlite_master where type = 'table'")}


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
