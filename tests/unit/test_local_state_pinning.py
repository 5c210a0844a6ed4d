"""Stacks with local state among several daemons (tfops.ha.pinning): which stacks keep their state
locally (one definition, the runner's), the words that refuse them, and the pin that keeps their
runs on one named instance while the others leave them queued in the store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from tfops.config import load_settings
from tfops.config.ha import HaSettings
from tfops.config.summary import describe
from tfops.errors import ConfigError
from tfops.ha.pinning import LocalStateRefused, Pinning, local_state_stacks, refuse_local_state, runs_here
from tfops.models import RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.run_queue import RunQueue
from tfops.store import Store
from tfops.terraform.local_state import keeps_state_locally

TRIGGER = Trigger(source=TriggerSource.POLL, actor="poll")
SHA = "a" * 40
REMOTE = 'terraform {\n  backend "s3" {\n    bucket = "b"\n  }\n}\n'
LOCAL = 'resource "null_resource" "x" {}\n'


def _checkout(root: Path) -> dict[str, Stack]:
    """A checkout with two stacks keeping state locally and one with an S3 backend."""
    files = {"app": REMOTE, "cache": LOCAL, "web": LOCAL}
    for name, code in files.items():
        (root / "stacks" / name).mkdir(parents=True)
        (root / "stacks" / name / "main.tf").write_text(code)
    # The backend file tfops writes into a run's view is never the stack's own backend.
    (root / "stacks" / "web" / "_tfops_backend.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    return {name: Stack(name=name, path=f"stacks/{name}") for name in files}


@pytest.mark.parametrize(
    ("local_state", "pinned_to", "me", "expected"),
    [
        (False, None, "vm-1", True),  # remote state runs anywhere
        (False, "vm-2", "vm-1", True),
        (True, None, "vm-1", True),  # no pin: taken, and the runner refuses it, saying why
        (True, "vm-1", "vm-1", True),  # the pinned instance
        (True, "vm-2", "vm-1", False),  # another instance leaves it to vm-2
    ],
)
def test_only_the_pinned_instance_runs_a_stack_with_local_state(local_state, pinned_to, me, expected):
    assert runs_here(local_state, pinned_to, me) is expected


def test_a_stack_without_a_backend_block_keeps_its_state_locally(tmp_path):
    stacks = _checkout(tmp_path)

    assert local_state_stacks(tmp_path, stacks.values()) == ["cache", "web"]
    assert keeps_state_locally(tmp_path / "stacks" / "app") is False


def test_the_refusal_names_the_stacks_and_both_ways_out(tmp_path):
    stacks = _checkout(tmp_path)

    with pytest.raises(LocalStateRefused) as refused:
        refuse_local_state(tmp_path, stacks.values())

    said = str(refused.value)
    assert isinstance(refused.value, ConfigError)  # terminal: a person must act
    assert "stacks cache, web keep their state locally" in said
    assert "remote backend" in said and "ha.local_state_instance" in said and "docs/ha.md" in said
    refuse_local_state(tmp_path, [stacks["app"]])  # remote state only: nothing to refuse


def test_another_instance_leaves_the_runs_of_a_pinned_stack_queued_in_the_store(tmp_path):
    stacks = _checkout(tmp_path)
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([(stack.name, stack.path) for stack in stacks.values()])
    executed: list[int] = []
    done = threading.Event()

    def execute(run_id: int, cancel) -> None:
        executed.append(run_id)
        store.transition(run_id, RunStatus.PLANNING)
        store.transition(run_id, RunStatus.NO_CHANGES, message="done")
        done.set()

    pinning = Pinning(tmp_path, lambda: stacks, pinned_to="vm-2", me="vm-1")
    queue = RunQueue(store, Transitions(store, MultiNotifier()), execute, 2, keeps=pinning.takes)
    try:
        local = queue.submit("cache", RunKind.DEPLOY, TRIGGER, SHA)
        remote = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA)
        adopted = queue.adopt(store.runs_with_status({RunStatus.QUEUED}))
        assert done.wait(30)
        assert queue.wait_idle(30)
    finally:
        queue.shutdown(wait=10)

    assert local is not None and remote is not None
    assert executed == [remote.id]
    assert adopted == []  # a heartbeat does not take it in either
    assert store.get_run(local.id).status is RunStatus.QUEUED  # waiting for vm-2
    store.close()


def test_the_pinned_instance_and_every_instance_without_a_pin_take_every_stack(tmp_path):
    stacks = _checkout(tmp_path)
    names = ("app", "cache", "web", "gone")

    pinned_here = Pinning(tmp_path, lambda: stacks, pinned_to="vm-1", me="vm-1")
    unpinned = Pinning(tmp_path, lambda: stacks, pinned_to=None, me="vm-1")
    elsewhere = Pinning(tmp_path, lambda: stacks, pinned_to="vm-2", me="vm-1")

    assert all(pinned_here.takes(name) and unpinned.takes(name) for name in names)
    assert [name for name in names if elsewhere.takes(name)] == ["app", "gone"]


def test_the_pin_is_an_instance_id_and_names_the_instance_that_gives_local_state(tmp_path):
    pinned = HaSettings(instance_id="vm-2", local_state_instance="vm-2")
    other = HaSettings(instance_id="vm-1", local_state_instance="vm-2")

    assert pinned.runs_local_state(tmp_path) is True
    assert other.runs_local_state(tmp_path) is False
    assert HaSettings().runs_local_state(tmp_path) is False  # no pin: no instance
    with pytest.raises(ValidationError):
        HaSettings(local_state_instance="vm 2; rm")


def test_check_config_shows_the_pin_and_refuses_a_pin_that_is_no_instance_id(tmp_path):
    path = tmp_path / "tfops.yaml"
    path.write_text(
        "store: {url: 'postgresql+psycopg://tfops@db/tfops'}\n"
        "ha: {instance_id: vm-1, local_state_instance: vm-2}\n"
    )
    settings = load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path / "data")})
    path.write_text("ha: {local_state_instance: 'two words'}\n")

    [line] = [line for line in describe(settings).splitlines() if line.startswith("ha ")]
    assert line.endswith("several daemons share this PostgreSQL store, stacks with local state run on vm-2")
    with pytest.raises(ConfigError, match="local_state_instance"):
        load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path / "data")})
