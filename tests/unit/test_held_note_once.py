"""A deploy held for its upstream (`depends_on`) says what it waits for once per run, however many
instances take it into their queues (tfops.ha) and however often a daemon restarts: the store
decides, from the run's last event (`Store.note_once`), not each process's memory.

On SQLite and on PostgreSQL (`store_url`); each instance has its own Store, queue and notifier.
"""

from __future__ import annotations

import threading

from tfops.models import RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.notify import MultiNotifier, RunNotice
from tfops.run_queue import RunQueue, StackOrder
from tfops.store import Store
from tfops.transitions import Transitions

TRIGGER = Trigger(source=TriggerSource.POLL, actor="poll")
SHA = "1" * 40
STACKS = {
    "network": Stack("network", "stacks/network"),
    "app": Stack("app", "stacks/app", depends_on=("network",)),
}


class Heard:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def run_changed(self, notice: RunNotice) -> None:
        self.messages.append(notice.message)


def _never_runs(run_id: int, cancel) -> None:
    raise AssertionError(f"run {run_id} was started while its upstream's deploy is open")


def _instance(store_url: str) -> tuple[Store, RunQueue, Heard]:
    store, heard = Store(store_url), Heard()
    transitions = Transitions(store, MultiNotifier(heard))
    order = StackOrder(lambda: STACKS, transitions, recheck=60)
    return store, RunQueue(store, transitions, _never_runs, 2, order=order), heard


def test_three_instances_and_a_restart_announce_what_a_held_deploy_waits_for_once(store_url):
    setup = Store(store_url)
    setup.upgrade()
    setup.sync_stacks((stack.name, stack.path) for stack in STACKS.values())
    network = setup.create_run("network", RunKind.DEPLOY, TRIGGER, SHA)
    setup.transition(network.id, RunStatus.PLANNING, message="planning elsewhere")  # open upstream
    app = setup.create_run("app", RunKind.DEPLOY, TRIGGER, SHA)
    instances = [_instance(store_url) for _ in range(3)]

    # Every heartbeat of every instance takes the queued runs in at once.
    takes = [
        threading.Thread(target=queue.adopt, args=(store.runs_with_status({RunStatus.QUEUED}),))
        for store, queue, _ in instances
    ]
    for take in takes:
        take.start()
    for take in takes:
        take.join(30)
    for _, queue, _ in instances:
        queue.shutdown(wait=5)
    restarted = _instance(store_url)  # a daemon started again: its memory is empty
    restarted[1].adopt(setup.runs_with_status({RunStatus.QUEUED}))
    restarted[1].shutdown(wait=5)

    said = [message for _, _, heard in [*instances, restarted] for message in heard.messages]
    notes = [e.message for e in setup.events(app.id) if e.from_status is e.to_status]
    assert said == [f"waiting for upstream network (run {network.id})"]
    assert notes == said  # the store's record of it, once
    assert setup.get_run(app.id).status is RunStatus.QUEUED
    for store, _, _ in [*instances, restarted]:
        store.close()
    setup.close()
