"""Scenarios of the reconcile spine with real git, real Terraform and the demo provider."""

from __future__ import annotations

import threading

import pytest
from harness import (
    Remote,
    cloud_object,
    demo_stack,
    edit_cloud_object,
    make_app,
    processes_in_group,
    signal_counting_terraform,
    write_config,
)

from tfops.models import DriftState, RunKind, RunReason, RunStatus

pytestmark = pytest.mark.terraform


@pytest.fixture
def remote(tmp_path):
    return Remote(tmp_path)


@pytest.fixture
def config(tmp_path, remote, terraform_bin, tf_cli_config):
    def make(**kwargs):
        return write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            **kwargs,
        )

    return make


@pytest.fixture
def app_factory(config, tf_env):
    apps = []

    def make(**kwargs):
        app = make_app(config(**kwargs), tf_env)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def runs_by_stack(app, stack):
    return app.store.list_runs(stack=stack, limit=100)


def test_merged_change_is_applied_once_and_other_stacks_are_untouched(remote, demo_cloud, app_factory):
    first = remote.commit_and_push(
        "two stacks",
        {
            "stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}),
            "stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v1"}),
        },
    )
    app = app_factory()
    initial = app.reconcile_once()
    assert initial.exit_code == 0, [(r.stack, r.status, r.error) for r in initial.runs]
    assert {run.stack: run.status for run in initial.runs if run.kind is RunKind.DEPLOY} == {
        "app": RunStatus.APPLIED,
        "db": RunStatus.APPLIED,
    }
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"

    second = remote.commit_and_push(
        "bump app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})}
    )
    result = app.reconcile_once()

    deploys = [run for run in result.runs if run.kind is RunKind.DEPLOY]
    assert [(run.stack, run.status, run.commit_sha) for run in deploys] == [
        ("app", RunStatus.APPLIED, second)
    ]
    assert deploys[0].trigger.previous_sha == first
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2"
    assert app.store.get_stack("app").applied_sha == second
    assert app.store.get_stack("db").applied_sha == first
    # A third pass with nothing new queues no deploy at all: applied once.
    again = app.reconcile_once()
    assert [run for run in again.runs if run.kind is RunKind.DEPLOY] == []
    assert len([r for r in runs_by_stack(app, "app") if r.kind is RunKind.DEPLOY]) == 2


def test_broken_hcl_fails_with_terraforms_error_and_applies_nothing(remote, demo_cloud, app_factory):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory()
    assert app.reconcile_once().exit_code == 0
    broken = demo_stack(demo_cloud, {"app-web": "v2"}) + '\nresource "demo_object" "oops" {\n  name = \n}\n'
    bad_sha = remote.commit_and_push("broken", {"stacks/app/main.tf": broken})

    result = app.reconcile_once()

    assert result.exit_code == 1
    (run,) = [run for run in result.runs if run.kind is RunKind.DEPLOY]
    assert run.status is RunStatus.FAILED
    assert run.commit_sha == bad_sha
    assert "invalid Terraform configuration" in run.error
    assert "main.tf line" in run.error  # Terraform's own words reach the record
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"
    assert app.store.get_stack("app").applied_sha != bad_sha


def test_every_status_change_says_why_in_one_word(remote, demo_cloud, app_factory):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory()
    (applied,) = [run for run in app.reconcile_once().runs if run.kind is RunKind.DEPLOY]
    broken = demo_stack(demo_cloud, {"app-web": "v2"}) + '\nresource "demo_object" "oops" {\n  name = \n}\n'
    remote.commit_and_push("broken", {"stacks/app/main.tf": broken})
    (failed,) = [run for run in app.reconcile_once().runs if run.kind is RunKind.DEPLOY]

    assert [(event.to_status, event.reason) for event in app.store.events(applied.id)] == [
        (RunStatus.QUEUED, None),
        (RunStatus.PLANNING, RunReason.STARTED),
        (RunStatus.APPLYING, RunReason.POLICY_APPLY),
        (RunStatus.APPLIED, RunReason.APPLIED),
    ]
    assert (failed.status, failed.reason) == (RunStatus.FAILED, RunReason.TERRAFORM_FAILED)


@pytest.mark.parametrize(
    ("on_drift", "reverted"),
    [("remediate", True), ("notify", False)],
)
def test_drift_is_reported_with_changed_attribute_and_reverted_only_under_remediate(
    remote, demo_cloud, app_factory, on_drift, reverted
):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory(stacks=[{"discover": "stacks/*", "on_drift": on_drift, "drift_interval": 0}])
    assert app.reconcile_once().exit_code == 0
    edit_cloud_object(demo_cloud, "app-web", content="changed in the console")

    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    drift = run.summary["drift"]
    assert [entry["address"] for entry in drift] == ["demo_object.app-web"]
    changed = {attr["path"]: (attr["before"], attr["after"]) for attr in drift[0]["attributes"]}
    assert changed["content"] == ("v1", "changed in the console")
    expected_content = "v1" if reverted else "changed in the console"
    assert cloud_object(demo_cloud, "app-web")["content"] == expected_content
    if reverted:
        assert run.status is RunStatus.APPLIED
        assert app.store.get_stack("app").drift is DriftState.IN_SYNC
    else:
        assert run.status is RunStatus.PLANNED
        assert app.store.get_stack("app").drift is DriftState.DRIFTED


def test_two_quick_commits_end_with_head_applied_and_one_run_per_stack(remote, demo_cloud, app_factory):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory()
    assert app.reconcile_once().exit_code == 0
    concurrent = []
    original = app.queue.execute
    active: set[str] = set()
    guard = threading.Lock()

    def watching_execute(run_id, cancel):
        stack = app.store.get_run(run_id).stack
        with guard:
            concurrent.append(stack in active)
            active.add(stack)
        try:
            return original(run_id, cancel)
        finally:
            with guard:
                active.discard(stack)

    app.queue.execute = watching_execute
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    app.poller.poll()
    head = remote.commit_and_push("v3", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v3"})})
    app.poller.poll()
    assert app.queue.wait_idle(120)

    deploys = [run for run in runs_by_stack(app, "app") if run.kind is RunKind.DEPLOY]
    assert deploys[0].commit_sha == head and deploys[0].status is RunStatus.APPLIED
    assert all(run.status.is_terminal for run in deploys)
    assert not any(concurrent), "two runs overlapped on one stack"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v3"
    assert app.store.get_stack("app").applied_sha == head


def test_force_push_to_an_older_commit_is_applied_and_recorded(remote, demo_cloud, app_factory):
    old = remote.commit_and_push("v1", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory()
    assert app.reconcile_once().exit_code == 0
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    assert app.reconcile_once().exit_code == 0
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2"

    remote.reset_hard(old)
    remote.push(force=True)
    result = app.reconcile_once()

    (run,) = [run for run in result.runs if run.kind is RunKind.DEPLOY]
    assert run.commit_sha == old
    assert run.trigger.forced is True
    assert run.status is RunStatus.APPLIED
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"


def test_a_hanging_terraform_times_out_and_leaves_no_process(
    tmp_path, remote, demo_cloud, app_factory, terraform_bin
):
    hang = 'data "demo_wait" "slow" {\n  seconds = 300\n}\n'
    remote.commit_and_push(
        "slow", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}, extra=hang)}
    )
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    shim = signal_counting_terraform(shim_dir, terraform_bin)
    app = app_factory(terraform={"binary": str(shim), "timeout": "8s", "stop_grace": "3s"})

    result = app.reconcile_once()

    (run,) = result.runs
    assert run.status is RunStatus.TIMED_OUT
    assert result.exit_code == 1
    assert "timed out" in run.error
    assert (shim_dir / "signals.log").read_text().split() == ["INT"]
    for pgid in map(int, (shim_dir / "pgids.log").read_text().split()):
        assert processes_in_group(pgid) == [], "a Terraform or provider process outlived its run"


def test_remediation_is_not_held_back_by_a_commit_to_another_stack(remote, demo_cloud, app_factory):
    remote.commit_and_push(
        "two stacks",
        {
            "stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}),
            "stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v1"}),
        },
    )
    app = app_factory(stacks=[{"discover": "stacks/*", "on_drift": "remediate", "drift_interval": 0}])
    assert app.reconcile_once().exit_code == 0
    remote.commit_and_push("db only", {"stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v2"})})
    assert app.reconcile_once().exit_code == 0
    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")

    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert run.status is RunStatus.APPLIED
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"


def test_remediation_waits_for_the_deploy_of_a_stacks_own_unapplied_code(remote, demo_cloud, app_factory):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    assert app_factory().reconcile_once().exit_code == 0  # applied at v1
    stacks = [{"discover": "stacks/*", "on_merge": "plan", "on_drift": "remediate", "drift_interval": 0}]
    app = app_factory(stacks=stacks)  # the team switches the stack to reviewed merges
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    deploy = [run for run in app.reconcile_once().runs if run.kind is RunKind.DEPLOY]
    assert [run.status for run in deploy] == [RunStatus.PLANNED]  # on_merge: plan never applies by itself
    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")

    (run,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert run.status is RunStatus.PLANNED
    assert cloud_object(demo_cloud, "app-web")["content"] == "edited by hand"
    assert "not deployed yet" in app.store.events(run.id)[-1].message


def test_init_runs_once_per_stack_and_is_skipped_while_nothing_it_depends_on_changes(
    remote, demo_cloud, app_factory
):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    app = app_factory()
    app.reconcile_once()  # deploy, then a drift check
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    app.reconcile_once()
    app.one_shot(RunKind.DRIFT, ["app"])

    def commands(run):
        return [line.split()[2] for line in open(run.log_path) if line.startswith("$ ")]

    runs = sorted(app.store.list_runs(stack="app", limit=20), key=lambda run: run.id)
    assert len(runs) == 5
    assert commands(runs[0]) == ["init", "plan", "show", "apply"]
    assert [run.id for run in runs if "init" in commands(run)] == [runs[0].id]


def test_a_drift_check_reports_undeployed_code_as_pending_and_only_real_drift_as_drift(
    remote, demo_cloud, app_factory
):
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    assert app_factory().reconcile_once().exit_code == 0  # applied at v1
    stacks = [{"discover": "stacks/*", "on_merge": "plan", "on_drift": "remediate", "drift_interval": 0}]
    app = app_factory(stacks=stacks)
    remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    runs = {run.kind: run for run in app.reconcile_once().runs}  # the deploy of v2, then a drift check

    assert runs[RunKind.DEPLOY].status is RunStatus.PLANNED
    pending = runs[RunKind.DRIFT]
    assert pending.status is RunStatus.NO_CHANGES, "v2 waiting for its deploy is not drift"
    assert pending.summary["drift"] == [] and pending.summary["changes"] == []
    assert "pending" in app.store.events(pending.id)[-1].message
    assert app.store.get_stack("app").drift is DriftState.PENDING
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1", "remediation never deploys code"

    edit_cloud_object(demo_cloud, "app-web", content="edited by hand")
    (drifted,) = app.one_shot(RunKind.DRIFT, ["app"])

    assert drifted.status is RunStatus.PLANNED
    assert app.store.get_stack("app").drift is DriftState.DRIFTED
    assert [entry["address"] for entry in drifted.summary["drift"]] == ["demo_object.app-web"]
    assert drifted.summary["changes"] == [] and drifted.summary["pending_code"] is True
    assert app.store.get_stack("app").extra["drift_summary"]["changes"] == []
    assert cloud_object(demo_cloud, "app-web")["content"] == "edited by hand"
