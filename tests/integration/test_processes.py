"""The processes tfops starts: Git and Terraform, seen from outside a real daemon.

- a terminal's Ctrl-C (SIGINT to the daemon's whole process group) stops runs cleanly:
  no Git child dies under tfops' feet;
- no Git process sees tfops' own environment, and a hanging Git command times out;
- after `kill -9`, the next start ends what is left of the cut-off Terraform.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from harness import (
    Daemons,
    Remote,
    demo_stack,
    one_stack_repo,
    processes_in_group,
    signal_counting_terraform,
    tfops_cli,
    wait_for,
)

from tfops.errors import GitTimedOut
from tfops.gitsource import GitSource
from tfops.models import RunStatus
from tfops.store import Store

CANARY = "canary-7d1f0c93-not-for-git"


def _slow_apply(seconds: int) -> str:
    return f'resource "demo_wait" "slow" {{\n  seconds = {seconds}\n}}\n'


def _git_wrapper(directory: Path, *, hang_on: str | None = None) -> Path:
    """A `git` placed first on PATH: records each call's argv and environment, then runs the real git.

    With `hang_on`, a call whose first argument is that subcommand sleeps instead (a hung Git).
    """
    real = shutil.which("git")
    assert real is not None
    bin_dir = directory / "bin"
    dumps = directory / "calls"
    bin_dir.mkdir(parents=True)
    dumps.mkdir()
    hang = f'[ "$1" = "{hang_on}" ] && exec sleep 600\n' if hang_on else ""
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" > "{dumps}/$$.argv"\n'
        f'env > "{dumps}/$$.env"\n'
        f"{hang}"
        f'exec "{real}" "$@"\n'
    )
    os.chmod(script, 0o755)
    return bin_dir


def _calls(directory: Path) -> list[tuple[str, str]]:
    """(argv, environment) of every recorded git call."""
    dumps = directory / "calls"
    return [
        (argv.read_text().strip(), argv.with_suffix(".env").read_text())
        for argv in sorted(dumps.glob("*.argv"))
        if argv.with_suffix(".env").exists()
    ]


def _runs_with(store: Store, *statuses: RunStatus):
    try:
        return store.runs_with_status(set(statuses))
    except Exception:  # noqa: BLE001 - the daemon may not have created the schema yet
        return []


def _kill_groups(pgids) -> None:
    for pgid in pgids:
        for pid in processes_in_group(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemons():
    """Start `tfops serve` processes; whatever is still running at the end is killed."""
    started = Daemons()
    yield started
    started.kill_all()


# -- Ctrl-C ----------------------------------------------------------------------------------------


@pytest.mark.terraform
def test_ctrl_c_to_the_daemons_process_group_ends_the_run_interrupted_not_internal_error(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons
):
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    _remote, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        code=demo_stack(demo_cloud, {"app-web": "v1"}, extra=_slow_apply(120)),
        terraform_bin=signal_counting_terraform(shim_dir, terraform_bin),
        cli_config=tf_cli_config,
        terraform={"stop_grace": "10s"},
    )
    store = Store(Store.sqlite_url(tmp_path / "data" / "tfops.db"))
    log = tmp_path / "daemon.log"
    try:
        daemon = daemons(config, tf_env, log)
        [run] = wait_for(lambda: _runs_with(store, RunStatus.APPLYING), timeout=120, what="the apply")

        # What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
        os.killpg(daemon.pid, signal.SIGINT)
        exit_code = _exit_code_or_stacks(daemon, log, timeout=120)

        text = log.read_text()
        ended = store.get_run(run.id)
        messages = [event.message for event in store.events(run.id)]
        assert exit_code == 0, text
        assert ended.status is RunStatus.INTERRUPTED, (ended.error, text)
        assert not any("internal error" in message for message in messages), messages
        assert "internal error" not in text
        assert "GitCommandError" not in text and "BrokenPipeError" not in text, text
    finally:
        store.close()
        _kill_groups(_pgids(shim_dir))


@pytest.mark.terraform
def test_sigusr1_makes_a_serving_daemon_write_its_threads_stacks_and_carry_on(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons
):
    _remote, config = one_stack_repo(
        tmp_path, demo_cloud, terraform_bin=terraform_bin, cli_config=tf_cli_config
    )
    log = tmp_path / "daemon.log"
    daemon = daemons(config, tf_env, log)
    wait_for(lambda: "tfops serving" in _read(log), timeout=120, what="the daemon to serve")

    daemon.send_signal(signal.SIGUSR1)

    wait_for(lambda: DUMPED in _read(log), timeout=30, what="the thread dump")
    assert "Thread 0x" in _read(log) and daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert _exit_code_or_stacks(daemon, log, timeout=120) == 0, _read(log)[-5000:]


DUMPED = "most recent call first"  # faulthandler's header of each thread's stack


def _exit_code_or_stacks(daemon: subprocess.Popen, log: Path, *, timeout: float) -> int:
    """The daemon's exit code; if it does not end in time, the test fails with every thread's stack
    (SIGUSR1, `tfops serve`'s faulthandler) and the log's tail, so a rare hang can be understood."""
    try:
        return daemon.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        dumps = _read(log).count(DUMPED)
        daemon.send_signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: _read(log).count(DUMPED) > dumps, timeout=10, what="the thread dump")
        pytest.fail(f"the daemon did not end within {timeout:g}s; its log:\n{_read(log)[-20000:]}")


def _pgids(shim_dir: Path) -> list[int]:
    return [int(pgid) for pgid in _read(shim_dir / "pgids.log").split()]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# -- Git's environment and timeouts ----------------------------------------------------------------


@pytest.mark.terraform
def test_no_git_process_sees_tfops_own_environment(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env
):
    _remote, config = one_stack_repo(
        tmp_path, demo_cloud, terraform_bin=terraform_bin, cli_config=tf_cli_config
    )
    wrapper = tmp_path / "git-wrapper"
    env = {
        **tf_env,
        "PATH": f"{_git_wrapper(wrapper)}:{tf_env['PATH']}",
        "TFOPS_CANARY_SECRET": CANARY,
        "GIT_DIR": str(tmp_path / "not-the-checkout"),  # a stray Git setting must not steer tfops' Git
    }

    result = tfops_cli(config, "reconcile", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(wrapper)
    commands = {argv.split()[0] for argv, _env in calls}
    # Every kind of Git work tfops does went through the wrapper: clone, ref reads, per-run views.
    assert {"clone", "fetch", "worktree"} <= commands, commands
    leaked = [argv for argv, environment in calls if CANARY in environment or "TFOPS_CANARY" in environment]
    assert leaked == [], f"tfops' environment reached git {leaked}"
    assert all("GIT_DIR=" not in environment for _argv, environment in calls)


@pytest.mark.timeout(120)  # before the fix the worktree call hangs for the wrapper's 600 s
def test_a_hanging_git_command_times_out_with_a_typed_error_and_frees_the_lock(tmp_path):
    remote = Remote(tmp_path)
    sha = remote.commit_and_push("one", {"stacks/a/main.tf": "# v1\n"})
    wrapper = tmp_path / "git-wrapper"
    inherit = {
        "PATH": f"{_git_wrapper(wrapper, hang_on='worktree')}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
    }
    source = GitSource(remote.url, "main", tmp_path / "data" / "repo", inherit=inherit, fetch_timeout=3)
    source.ensure_clone()

    with pytest.raises(GitTimedOut) as raised, source.view(sha):
        pass

    assert "worktree" in str(raised.value) and "timed out" in str(raised.value)
    hung = [argv for argv, _env in _calls(wrapper) if argv.startswith("worktree")]
    assert hung, "the worktree command never ran"
    # The lock is free again and the hung process is gone: the next Git command works.
    remote.commit_and_push("two", {"stacks/a/main.tf": "# v2\n"})
    assert source.fetch().moved
    sleepers = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True).stdout.split()
    assert not any(_is_descendant_of_test(int(pid)) for pid in sleepers)


def _is_descendant_of_test(pid: int) -> bool:
    """A `sleep 600` started by this test's wrapper (its environment names the wrapper's folder)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return b"git-wrapper" in environ


# -- kill -9 ---------------------------------------------------------------------------------------

LONG_PROVISIONER = """
resource "demo_object" "app-web" {
  name    = "app-web"
  content = "v1"
  provisioner "local-exec" {
    command = "sleep 600"
  }
}
"""


def _runs_sleep(pgid: int) -> bool:
    for pid in processes_in_group(pgid):
        try:
            if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


@pytest.mark.terraform
def test_restart_after_kill_9_ends_the_orphaned_terraform_process_group(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons
):
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    # A local-exec command outlives Terraform itself: Terraform dies of SIGPIPE at its next
    # progress line once tfops (the reader of its output) is gone; the command runs on.
    _remote, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        code=demo_stack(demo_cloud, {}, extra=LONG_PROVISIONER),
        terraform_bin=signal_counting_terraform(shim_dir, terraform_bin),
        cli_config=tf_cli_config,
        terraform={"stop_grace": "5s"},
    )
    store = Store(Store.sqlite_url(tmp_path / "data" / "tfops.db"))
    try:
        first = daemons(config, tf_env, tmp_path / "first.log")
        [run] = wait_for(lambda: _runs_with(store, RunStatus.APPLYING), timeout=120, what="the apply")
        # The apply's Terraform is the group that runs the command. Read the groups again each
        # time: the run is `applying` a moment before its Terraform starts.
        pgid = wait_for(
            lambda: next((group for group in _pgids(shim_dir) if _runs_sleep(group)), None),
            timeout=60,
            what="the local-exec command to start",
        )

        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert _runs_sleep(pgid), "the orphaned apply should still be running"

        second = daemons(config, tf_env, tmp_path / "second.log")
        wait_for(
            lambda: store.get_run(run.id).status is RunStatus.INTERRUPTED,
            timeout=120,
            what="the cut-off run to be marked interrupted",
        )
        wait_for(lambda: not processes_in_group(pgid), timeout=60, what="the orphaned group to end")

        messages = [event.message for event in store.events(run.id)]
        assert any(f"process group {pgid}" in message and "ended" in message for message in messages), (
            messages
        )
        assert _read(shim_dir / "signals.log").split()[:1] == ["INT"], "Terraform is asked to stop first"
        assert second.poll() is None, "the restarted daemon keeps serving"
    finally:
        store.close()
        _kill_groups(_pgids(shim_dir))
