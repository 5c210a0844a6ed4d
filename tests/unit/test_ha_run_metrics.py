"""Several daemons: a run's end is reported (`on_finished`: the run metrics) by the instance that
worked it, not by every instance whose worker only looked at it.

Every instance takes every queued run into its own queue (tfops.ha.intake); the store's claim
decides who runs each. A worker that then finds a run another instance claimed or finished must
leave its end to that instance, or `tfops_runs_finished_total` summed over the instances counts
it twice. Real store (SQLite), real Transitions; Git and Terraform are never reached on this path.
"""

from __future__ import annotations

from pathlib import Path

from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Reconciler, ReconcileSettings, Transitions
from tfops.store import Store

TRIGGER = Trigger(source=TriggerSource.CLI, actor="test")
SHA = "1" * 40


class NoTerraform:
    """The runner as far as a run that is not this worker's goes: no Terraform ever started."""

    def thread_terraform_seconds(self) -> float:
        return 0.0


def _instance(store: Store, tmp_path: Path, name: str, finished: list) -> Reconciler:
    settings = ReconcileSettings(runs_dir=tmp_path / name / "runs", stacks_dir=tmp_path / name, timeout=60)
    return Reconciler(
        store=store,
        git=None,  # type: ignore[arg-type] - never reached for a run that is not runnable here
        runner=NoTerraform(),  # type: ignore[arg-type]
        transitions=Transitions(store, MultiNotifier(), instance_id=name),
        stacks=dict,
        settings=settings,
        on_finished=lambda run, _timing: finished.append((name, run.id, run.status)),
    )


def _store(tmp_path: Path) -> Store:
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    return store


def test_a_run_finished_by_another_instance_is_not_reported_again_by_one_that_finds_it(tmp_path):
    store = _store(tmp_path)
    finished: list = []
    run = store.create_run("app", RunKind.DRIFT, TRIGGER, SHA)
    Transitions(store, MultiNotifier(), instance_id="vm-a").mark_planning(run, log_path=tmp_path / "run.log")
    store.transition(run.id, RunStatus.NO_CHANGES, message="in sync")  # vm-a's worker ends it
    vm_b = _instance(store, tmp_path, "vm-b", finished)

    seen = vm_b.execute(run.id)

    assert seen is not None and seen.status is RunStatus.NO_CHANGES, "it is left as vm-a ended it"
    assert finished == [], "vm-a reports its own run's end; vm-b must not count it again"


def test_a_queued_run_superseded_before_any_instance_took_it_is_still_reported(tmp_path):
    store = _store(tmp_path)
    finished: list = []
    run = store.create_run("app", RunKind.DRIFT, TRIGGER, SHA)
    superseded = Transitions(store, MultiNotifier()).mark_superseded(run, "a newer commit")
    vm_b = _instance(store, tmp_path, "vm-b", finished)

    vm_b.execute(run.id)

    assert superseded.instance_id is None
    assert finished == [("vm-b", run.id, RunStatus.SUPERSEDED)], "no instance worked it: as on one VM"
