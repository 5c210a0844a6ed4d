"""tfops.proc with real small processes: /bin/sh scripts written to tmp_path are the children."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tfops.proc import (
    DEFAULT_TERRAFORM_PASSTHROUGH,
    Cancel,
    Outcome,
    ProcResult,
    build_env,
    run,
    terraform_env,
)

pytestmark = pytest.mark.timeout(30)

CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture(autouse=True)
def sigint_not_ignored():
    # A shell cannot trap a signal that was ignored when it started, and an ignored
    # SIGINT is inherited through fork and exec. pytest started as a background job
    # (`pytest &`) ignores SIGINT; the daemon does not (it installs its own handler,
    # and exec resets handled signals to their default).
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def is_alive(pid: int) -> bool:
    # A killed orphan may linger as a zombie until PID 1 reaps it: that is not alive.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_in_thread(**kwargs) -> tuple[threading.Thread, list[ProcResult]]:
    results: list[ProcResult] = []
    thread = threading.Thread(target=lambda: results.append(run(**kwargs)))
    thread.start()
    return thread, results


# ------------------------------------------------------------------------ output


def test_output_is_streamed_into_the_log_while_the_command_runs(tmp_path):
    go = tmp_path / "go"
    program = script(
        tmp_path,
        "stream.sh",
        f'echo "first line"\nwhile [ ! -e {go} ]; do sleep 0.02; done\necho "second line" >&2\n',
    )
    log = tmp_path / "logs" / "run-1.log"  # the parent does not exist yet

    thread, results = run_in_thread(
        argv=[program, "--flag"], cwd=tmp_path, env=CHILD_ENV, log_path=log, timeout=10
    )
    # The child cannot exit before we create `go`, so seeing its first line now
    # proves the line reached the log while it was running.
    wait_for(lambda: log.exists() and "first line" in log.read_text())
    assert thread.is_alive()
    go.touch()
    thread.join()

    result = results[0]
    assert result.outcome is Outcome.SUCCEEDED and result.ok
    assert result.exit_code == 0
    lines = log.read_text().splitlines()
    assert lines[0] == f"$ {program} --flag"
    assert lines[1:3] == ["first line", "second line"]
    assert lines[3].startswith("[exited 0 after ")
    assert result.tail == "first line\nsecond line"


def test_each_command_appends_its_own_header_and_footer_to_the_same_log(tmp_path):
    log = tmp_path / "run.log"
    run(["/bin/echo", "init"], cwd=tmp_path, env=CHILD_ENV, log_path=log)
    run(["/bin/echo", "plan"], cwd=tmp_path, env=CHILD_ENV, log_path=log)

    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("$ ")] == ["$ /bin/echo init", "$ /bin/echo plan"]
    assert sum(line.startswith("[exited 0") for line in lines) == 2
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_failing_command_is_failed_with_its_exit_code_and_output_tail(tmp_path):
    program = script(
        tmp_path,
        "fail.sh",
        'i=0\nwhile [ $i -lt 100 ]; do echo "noise $i"; i=$((i+1)); done\n'
        'echo "Error: Unsupported argument" >&2\nexit 3\n',
    )
    log = tmp_path / "run.log"

    result = run([program, "plan"], cwd=tmp_path, env=CHILD_ENV, log_path=log)

    assert result.outcome is Outcome.FAILED and not result.ok
    assert result.exit_code == 3
    tail = result.tail.splitlines()
    assert len(tail) == 60
    assert tail[-1] == "Error: Unsupported argument"
    assert "noise 99" in tail and "noise 0" not in tail
    described = result.describe()
    assert described.startswith(f"command `{program} plan` in {tmp_path} exited 3 after ")
    assert described.endswith("Error: Unsupported argument")
    assert "[exited 3 after " in log.read_text()


def test_exit_codes_in_ok_codes_succeed(tmp_path):
    program = script(tmp_path, "changes.sh", "exit 2\n")

    detailed = run([program], cwd=tmp_path, env=CHILD_ENV, ok_codes=(0, 2))
    plain = run([program], cwd=tmp_path, env=CHILD_ENV)

    assert (detailed.outcome, detailed.exit_code) == (Outcome.SUCCEEDED, 2)
    assert (plain.outcome, plain.exit_code) == (Outcome.FAILED, 2)


def test_captured_stdout_stays_out_of_the_log_and_the_tail(tmp_path):
    program = script(
        tmp_path,
        "show.sh",
        'echo \'{"values": {"password": "hunter2"}}\'\necho "Warning: deprecated attribute" >&2\n',
    )
    log = tmp_path / "run.log"

    result = run([program, "show", "-json"], cwd=tmp_path, env=CHILD_ENV, log_path=log, capture_stdout=True)

    assert result.ok
    assert result.stdout == '{"values": {"password": "hunter2"}}\n'
    text = log.read_text()
    assert "hunter2" not in text
    assert "Warning: deprecated attribute" in text
    assert result.tail == "Warning: deprecated attribute"


def test_redact_is_applied_to_the_log_the_tail_and_the_shown_command(tmp_path):
    program = script(tmp_path, "leak.sh", 'echo "db password is hunter2"\necho "token hunter2" >&2\nexit 1\n')
    log = tmp_path / "run.log"

    result = run(
        [program, "-var", "password=hunter2"],
        cwd=tmp_path,
        env=CHILD_ENV,
        log_path=log,
        redact=lambda text: text.replace("hunter2", "***"),
    )

    text = log.read_text()
    assert "hunter2" not in text
    assert "db password is ***" in text and "-var 'password=***'" in text
    assert "hunter2" not in result.tail and "hunter2" not in result.describe()
    assert result.argv == (program, "-var", "password=***")


def test_a_failing_redactor_withholds_the_line(tmp_path):
    def broken(text: str) -> str:
        if "secret" in text:
            raise RuntimeError("bad pattern")
        return text

    program = script(tmp_path, "out.sh", 'echo "a secret value"\necho "fine"\n')
    log = tmp_path / "run.log"

    result = run([program], cwd=tmp_path, env=CHILD_ENV, log_path=log, redact=broken)

    assert result.ok
    assert "secret" not in log.read_text()
    assert result.tail == "[line withheld: redaction failed]\nfine"


def test_the_child_gets_the_pid_group_cwd_env_and_no_stdin_it_was_given(tmp_path):
    program = script(
        tmp_path,
        "whoami.sh",
        'echo "pid=$$"\necho "pgid=$(ps -o pgid= -p $$ | tr -d \' \')"\necho "cwd=$(pwd)"\n'
        'echo "secret=${TFOPS_SLACK_TOKEN:-unset}"\nread line || echo "stdin=eof"\n',
    )
    workdir = tmp_path / "stack"
    workdir.mkdir()
    pids: list[int] = []
    env = build_env(inherit={**CHILD_ENV, "TFOPS_SLACK_TOKEN": "xoxb-1"})

    result = run([program], cwd=workdir, env=env, capture_stdout=True, on_start=pids.append)

    assert result.ok
    assert len(pids) == 1
    assert result.stdout.splitlines() == [
        f"pid={pids[0]}",
        f"pgid={pids[0]}",  # its own process group
        f"cwd={workdir}",
        "secret=unset",
        "stdin=eof",
    ]


# ------------------------------------------------------------ timeout and cancel

INTERRUPTIBLE = """\
sleep 30 &
echo $! > {grandchild}
trap 'echo INT >> {signals}; sleep 0.2; exit 0' INT
echo ready
while true; do sleep 0.05; done
"""


def test_a_timeout_sends_one_sigint_and_leaves_nothing_of_the_group(tmp_path):
    grandchild, signals = tmp_path / "grandchild.pid", tmp_path / "signals"
    program = script(tmp_path, "slow.sh", INTERRUPTIBLE.format(grandchild=grandchild, signals=signals))
    log = tmp_path / "run.log"

    result = run([program], cwd=tmp_path, env=CHILD_ENV, log_path=log, timeout=0.5, grace=3.0)

    # The script exits 0 from its trap: still a timeout.
    assert result.outcome is Outcome.TIMED_OUT and not result.ok
    assert result.exit_code == 0
    assert signals.read_text() == "INT\n"
    assert 0.5 <= result.duration < 2.5
    # A background job of a non-interactive shell ignores SIGINT: only the final
    # sweep of the group can have ended it.
    wait_for(lambda: not is_alive(int(grandchild.read_text())), timeout=2)
    assert "[timed out (limit 0.5s): sent SIGINT to the process group; exited 0 after " in log.read_text()
    assert "timed out after" in result.describe()


def test_a_child_that_ignores_sigint_is_killed_after_the_grace_period(tmp_path):
    program = script(tmp_path, "stubborn.sh", "trap '' INT\necho ready\nsleep 30\n")
    log = tmp_path / "run.log"

    result = run([program], cwd=tmp_path, env=CHILD_ENV, log_path=log, timeout=0.3, grace=0.4)

    assert result.outcome is Outcome.TIMED_OUT
    assert result.exit_code == -9
    assert 0.7 <= result.duration < 3
    assert "SIGKILL after 0.4s grace; was killed by SIGKILL" in log.read_text()


def test_cancel_from_another_thread_interrupts_the_command(tmp_path):
    grandchild, signals = tmp_path / "grandchild.pid", tmp_path / "signals"
    program = script(tmp_path, "slow.sh", INTERRUPTIBLE.format(grandchild=grandchild, signals=signals))
    log = tmp_path / "run.log"
    cancel = Cancel()

    thread, results = run_in_thread(
        argv=[program], cwd=tmp_path, env=CHILD_ENV, log_path=log, cancel=cancel, timeout=10, grace=3
    )
    wait_for(lambda: log.exists() and "ready" in log.read_text())
    cancel.cancel()
    thread.join()

    result = results[0]
    assert result.outcome is Outcome.CANCELLED
    assert signals.read_text() == "INT\n"
    assert result.duration < 5
    assert cancel.is_cancelled and cancel.wait(0)
    wait_for(lambda: not is_alive(int(grandchild.read_text())), timeout=2)
    assert "[cancelled: sent SIGINT to the process group; exited 0 after " in log.read_text()


def test_a_cancel_given_before_start_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    program = script(tmp_path, "touch.sh", f"touch {marker}\n")
    cancel = Cancel()
    cancel.cancel()

    result = run([program], cwd=tmp_path, env=CHILD_ENV, cancel=cancel)

    assert result.outcome is Outcome.CANCELLED
    assert result.exit_code is None
    assert not marker.exists()


def test_a_leader_that_exits_leaves_no_background_process_behind(tmp_path):
    grandchild = tmp_path / "grandchild.pid"
    program = script(tmp_path, "leaky.sh", f"sleep 30 &\necho $! > {grandchild}\nexit 0\n")

    result = run([program], cwd=tmp_path, env=CHILD_ENV)

    assert result.ok
    wait_for(lambda: not is_alive(int(grandchild.read_text())), timeout=2)


# ------------------------------------------------------------ cannot start


def test_a_missing_program_is_a_failed_result_that_says_so(tmp_path):
    log = tmp_path / "run.log"

    on_path = run(["no-such-terraform", "plan"], cwd=tmp_path, env=CHILD_ENV, log_path=log)
    absolute = run([str(tmp_path / "bin" / "terraform")], cwd=tmp_path, env=CHILD_ENV)

    assert (on_path.outcome, on_path.exit_code) == (Outcome.FAILED, None)
    assert on_path.tail == "program not found: no-such-terraform (not on PATH='/usr/bin:/bin')"
    assert absolute.tail == f"program not found: {tmp_path / 'bin' / 'terraform'}"
    assert "could not be started" in on_path.describe()
    assert "program not found: no-such-terraform" in log.read_text()


def test_a_missing_working_directory_is_named_as_such(tmp_path):
    result = run(["/bin/true"], cwd=tmp_path / "gone", env=CHILD_ENV)

    assert (result.outcome, result.exit_code) == (Outcome.FAILED, None)
    assert result.tail == f"working directory not found: {tmp_path / 'gone'}"


def test_a_program_that_is_not_executable_is_a_failed_result(tmp_path):
    program = tmp_path / "terraform"
    program.write_text("#!/bin/sh\n")

    result = run([str(program)], cwd=tmp_path, env=CHILD_ENV)

    assert result.outcome is Outcome.FAILED
    assert "permission denied" in result.tail


@pytest.mark.parametrize(
    ("argv", "error"),
    [([], ValueError), ("terraform plan", TypeError), (["terraform", 3], TypeError), ([""], ValueError)],
)
def test_bad_argv_is_a_programming_error(tmp_path, argv, error):
    with pytest.raises(error):
        run(argv, cwd=tmp_path, env=CHILD_ENV)


def test_a_nonpositive_timeout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        run(["/bin/true"], cwd=tmp_path, env=CHILD_ENV, timeout=0)


# ------------------------------------------------------------------ environment

DAEMON_ENV = {
    "PATH": "/usr/local/bin:/usr/bin",
    "HOME": "/var/lib/tfops",
    "LC_ALL": "C.UTF-8",
    "https_proxy": "http://proxy:3128",
    "TFOPS_SLACK_TOKEN": "xoxb-secret",
    "TFOPS_DATABASE_URL": "postgresql://tfops:pw@db/tfops",
    "TF_CLI_CONFIG_FILE": "/nonexistent/terraformrc",
    "GITHUB_TOKEN": "ghp_secret",
    "AWS_REGION": "eu-west-1",
    "AWS_ROLE_ARN": "arn:aws:iam::1:role/x",
    "TF_VAR_region": "eu-west-1",
    "TF_LOG": "DEBUG",
    "TF_DATA_DIR": "/tmp/elsewhere",
    "VAULT_ADDR": "https://vault",
}


def test_build_env_keeps_the_allowlist_and_passthrough_and_drops_tfops_secrets():
    env = build_env(inherit=DAEMON_ENV, passthrough=["AWS_*", "VAULT_ADDR"], extra={"EXTRA": "1"})

    assert env == {
        "PATH": "/usr/local/bin:/usr/bin",
        "HOME": "/var/lib/tfops",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "AWS_REGION": "eu-west-1",
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/x",
        "VAULT_ADDR": "https://vault",
        "EXTRA": "1",
    }


def test_tfops_secrets_are_not_inherited_even_when_a_pattern_matches():
    env = build_env(inherit=DAEMON_ENV, passthrough=["TFOPS_*", "TF_*"])

    assert not [name for name in env if name.startswith("TFOPS_")]
    assert "TF_CLI_CONFIG_FILE" not in env
    assert env["TF_LOG"] == "DEBUG"


@pytest.mark.parametrize("entry", ["*", "", "AWS_*_KEY"])
def test_a_passthrough_entry_that_is_not_a_name_or_prefix_is_refused(entry):
    with pytest.raises(ValueError, match="passthrough"):
        build_env(inherit=DAEMON_ENV, passthrough=[entry])


def test_a_non_string_extra_value_is_refused_without_showing_it():
    with pytest.raises(TypeError) as caught:
        build_env(inherit={}, extra={"DB_PASSWORD": 12345})  # type: ignore[dict-item]
    assert "12345" not in str(caught.value)


def test_terraform_env_is_non_interactive_and_uses_tfops_own_paths(tmp_path):
    env = terraform_env(
        inherit=DAEMON_ENV,
        cli_config=tmp_path / "terraformrc",
        plugin_cache_dir=tmp_path / "plugins",
        data_dir=Path("relative/.terraform"),
        extra={"TF_INPUT": "1", "STACK_SETTING": "x"},
    )

    assert env["TF_IN_AUTOMATION"] == "1"
    assert env["TF_INPUT"] == "0"  # a stack cannot turn prompts back on
    assert env["CHECKPOINT_DISABLE"] == "1"
    assert env["TF_CLI_CONFIG_FILE"] == str(tmp_path / "terraformrc")
    assert env["TF_PLUGIN_CACHE_DIR"] == str(tmp_path / "plugins")
    assert env["TF_DATA_DIR"] == str(Path.cwd() / "relative/.terraform")
    assert (
        env["AWS_REGION"] == "eu-west-1" and env["TF_VAR_region"] == "eu-west-1" and env["TF_LOG"] == "DEBUG"
    )
    assert env["STACK_SETTING"] == "x"
    assert "GITHUB_TOKEN" not in env and "TFOPS_SLACK_TOKEN" not in env and "VAULT_ADDR" not in env


def test_terraform_env_without_a_cli_config_drops_the_inherited_one():
    env = terraform_env(inherit=DAEMON_ENV, cli_config=None, plugin_cache_dir=None, data_dir=None)

    assert "TF_CLI_CONFIG_FILE" not in env
    assert "TF_PLUGIN_CACHE_DIR" not in env
    assert "TF_DATA_DIR" not in env  # the inherited one is not Terraform passthrough


def test_default_terraform_passthrough_covers_the_clouds_and_terraform_inputs():
    assert set(DEFAULT_TERRAFORM_PASSTHROUGH) == {
        "AWS_*",
        "GOOGLE_*",
        "CLOUDSDK_*",
        "ARM_*",
        "AZURE_*",
        "TF_VAR_*",
        "TF_LOG*",
        "TF_TOKEN_*",
    }


_REPORTS_SIGINT = (
    "import signal, subprocess, sys\n"
    "{restore}"
    "child = 'import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)'\n"
    "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout.strip())\n"
)


@pytest.mark.parametrize(("restore", "child_ignores"), [(False, "True"), (True, "False")])
def test_a_tfops_started_with_sigint_ignored_starts_children_that_can_be_interrupted(restore, child_ignores):
    script = _REPORTS_SIGINT.format(
        restore="from tfops import proc; proc.restore_sigint()\n" if restore else ""
    )

    def ignore_sigint() -> None:  # what a non-interactive shell does to `cmd &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, preexec_fn=ignore_sigint
    )

    assert shown.stdout.strip() == child_ignores, shown.stderr
