"""`tfops serve` as a real process: graceful stop on SIGTERM, and recovery after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from harness import (
    Remote,
    cloud_object,
    demo_stack,
    make_app,
    processes_in_group,
    signal_counting_terraform,
    start_daemon,
    wait_for,
    write_config,
)

from tfops.app import CRASH_REASON
from tfops.models import RunStatus
from tfops.store import Store

pytestmark = pytest.mark.terraform

SLOW_APPLY = 'resource "demo_wait" "slow" {\n  seconds = 60\n}\n'


@pytest.fixture
def slow_stack_daemon(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    """A repo whose only stack takes a minute to apply, and a config using a signal-counting Terraform."""
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "slow stack", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}, extra=SLOW_APPLY)}
    )
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    shim = signal_counting_terraform(shim_dir, terraform_bin)
    config = write_config(
        tmp_path / "tfops.yaml",
        remote=remote,
        data_dir=tmp_path / "data",
        terraform_bin=shim,
        cli_config=tf_cli_config,
        terraform={"stop_grace": "20s"},
    )
    store = Store(Store.sqlite_url(tmp_path / "data" / "tfops.db"))
    started: list[subprocess.Popen] = []

    def start():
        daemon = start_daemon(config, env=tf_env, log=tmp_path / "daemon.log")
        started.append(daemon)
        return daemon

    yield start, store, shim_dir, config, tmp_path, demo_cloud
    for daemon in started:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    for pgid in _pgids(shim_dir):
        for pid in processes_in_group(pgid):
            os.kill(pid, signal.SIGKILL)
    store.close()


def _pgids(shim_dir):
    path = shim_dir / "pgids.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _applying_run(store):
    try:
        runs = store.runs_with_status({RunStatus.APPLYING})
    except Exception:  # noqa: BLE001 - the daemon may not have created the schema yet
        return None
    return runs[0] if runs else None


def test_sigterm_during_apply_sends_one_sigint_and_marks_the_run_interrupted(slow_stack_daemon):
    start, store, shim_dir, _config, tmp_path, cloud = slow_stack_daemon
    daemon = start()
    run = wait_for(lambda: _applying_run(store), timeout=90, what="the apply to start")
    # The quick object is created while the slow one still waits: state must keep it.
    wait_for(lambda: cloud_object(cloud, "app-web"), timeout=30, what="the first object to be created")

    daemon.send_signal(signal.SIGTERM)
    exit_code = daemon.wait(timeout=60)

    log = (tmp_path / "daemon.log").read_text()
    assert exit_code == 0, log
    assert store.get_run(run.id).status is RunStatus.INTERRUPTED
    assert (shim_dir / "signals.log").read_text().split() == ["INT"], "Terraform must get exactly one SIGINT"
    state = json.loads((tmp_path / "data" / "stacks" / "app" / "terraform.tfstate").read_text())
    assert state["version"] == 4
    assert "demo_object" in {resource["type"] for resource in state["resources"]}
    for pgid in _pgids(shim_dir):
        assert processes_in_group(pgid) == [], f"process group {pgid} survived the daemon"


def test_restart_after_kill_9_marks_the_cut_off_run_interrupted(slow_stack_daemon, tf_env):
    start, store, shim_dir, config, _tmp_path, _cloud = slow_stack_daemon
    daemon = start()
    run = wait_for(lambda: _applying_run(store), timeout=90, what="the apply to start")

    os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    for pgid in _pgids(shim_dir):  # the orphaned Terraform would finish on its own; end it for the test
        for pid in processes_in_group(pgid):
            os.kill(pid, signal.SIGKILL)
    app = make_app(config, tf_env)

    def cut_off_run_marked():
        current = store.get_run(run.id)
        if current.status is RunStatus.INTERRUPTED:
            return current
        # A child the killed daemon was still starting can hold the data directory a moment longer;
        # recovery then waits for the next try, as the daemon's housekeeping job does.
        app.recover()
        return None

    try:
        app.start()
        recovered = wait_for(cut_off_run_marked, timeout=60, what="the cut-off run to be marked interrupted")
        assert recovered.status is RunStatus.INTERRUPTED
        # What follows the reason, if anything, says how a still-running Terraform was ended.
        assert recovered.error.startswith(CRASH_REASON)
        # Never silently retried: no new run was queued for the same commit.
        assert [r.id for r in store.list_runs(stack="app")] == [run.id]
    finally:
        app.close()
