"""This daemon among the instances sharing the store: its heartbeat, its role, the dead ones.

Every `heartbeat` seconds, one thread: checks the leadership (`Leadership.check`), writes the
heartbeat and the role into `instances`, and tells the daemon when it starts or stops leading
(`Roles.lead` / `Roles.follow`: the scheduler's jobs and Slack delivery follow). The leader also
settles instances whose heartbeat is older than `failover`: their planning or applying runs end
`interrupted` (never retried, as after a crash), which frees their stacks, and the runs they had
taken without starting (approved, waiting for their apply) go back to the queue. It judges only
once it has itself led, beating, for a whole `failover`: after a database outage every instance's
heartbeat is old, and the live ones must first have the time to beat again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Protocol

from tfops.ha.intake_wake import IntakeWake
from tfops.ha.leadership import Leadership
from tfops.ha.serve_lock import AlreadyServing
from tfops.models import InstanceRole, Run, RunReason, RunStatus
from tfops.store import InvalidTransition, Store
from tfops.store.engine import utc_now

log = logging.getLogger(__name__)

# What a run of a dead instance says; a person decides whether to run it again.
LOST_REASON = (
    "tfops instance {instance} stopped sending heartbeats during this run (crash, kill, or its host or "
    "network lost); review the log and the state before re-running"
)


class Roles(Protocol):
    """What follows the leadership: the scheduler's jobs, Slack delivery, a counter."""

    def lead(self) -> None: ...

    def follow(self) -> None: ...


class Interrupting(Protocol):
    """The status change a dead instance's runs get (`Transitions.mark_interrupted`)."""

    def mark_interrupted(self, run: Run, reason: str, *, why: RunReason = ...) -> Run: ...


class Resuming(Protocol):
    def resume(self, runs: Iterable[Run]) -> None: ...


@dataclass(frozen=True)
class Me:
    id: str
    host: str
    pid: int

    @classmethod
    def here(cls, instance_id: str) -> Me:
        return cls(instance_id, socket.gethostname(), os.getpid())


class Heartbeat:
    """The instance's row, kept fresh; the leadership, checked; the dead, settled (when leading)."""

    def __init__(
        self,
        store: Store,
        leadership: Leadership,
        me: Me,
        *,
        interval: float,
        failover: float,
        roles: Roles,
        transitions: Interrupting,
        queue: Resuming,
        intake: Callable[[], Sized | None] | None = None,
        wake: IntakeWake | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`intake`: called every `interval` on a thread of its own, to take in runs queued by others
        (returns the runs it took in); `wake`: what makes it look sooner (tfops.ha.intake_wake)."""
        self.store = store
        self.leadership = leadership
        self.me = me
        self.interval = interval
        self.failover = failover
        self.roles = roles
        self.transitions = transitions
        self.queue = queue
        self.intake = intake
        self.wake = wake or IntakeWake()
        self.clock = clock
        self.leading = False
        self._judging_since: float | None = None  # clock() since which it leads with every beat written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._intake_thread: threading.Thread | None = None

    def start(self) -> None:
        """Register, beat once (an instance that can lead leads at once), then beat on a thread."""
        if self._thread is not None:
            return
        self.store.register_instance(self.me.id, self.me.host, self.me.pid)
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="tfops-heartbeat", daemon=True)
        self._thread.start()
        if self.intake is not None:  # its own thread: a fetch must never delay a heartbeat
            self._intake_thread = threading.Thread(target=self._take_in, name="tfops-intake", daemon=True)
            self._intake_thread.start()

    def check_id_free(self) -> None:
        """Before anything is recovered: refuse to serve under an instance id that a daemon on
        another host is using (it beat within `failover`); recovery would take its runs for ours.
        The same host is this instance restarting (the serve lock keeps two off one data_dir)."""
        now = utc_now()
        for other in self.store.instances():
            fresh = (now - other.heartbeat_at).total_seconds() < self.failover
            if other.id == self.me.id and other.host != self.me.host and fresh:
                raise AlreadyServing(
                    f"instance id {self.me.id!r} is in use by tfops on {other.host} (pid {other.pid})",
                    hint="give each daemon its own ha.instance_id (or leave it unset: host and data_dir)",
                )

    def stop(self) -> None:
        """Stop beating and leading, and leave the instances (a clean stop is no death). A no-op when
        never started: a one-shot command shares the instance id of its host's daemon."""
        if self._thread is None:
            return
        self._stop.set()
        self.wake.wake()  # the intake thread stops waiting at once
        self._thread.join(self.interval + 5)
        if self._intake_thread is not None:
            self._intake_thread.join(self.interval + 5)
        if self.leading:
            self.leading = False
            self.roles.follow()
        try:
            self.store.remove_instance(self.me.id)
        except Exception:  # noqa: BLE001 - the database may be gone; the row then expires by itself
            log.warning(
                "could not remove instance %s from the store; it expires after %ss", self.me.id, self.failover
            )

    def beat(self) -> None:
        """Check the leadership and act on a change first (a lost leadership stops scheduling before
        anything else), then write the heartbeat; the leader then settles the dead."""
        leader = self.leadership.check()
        if leader != self.leading:
            self._changed(leader)
        role = InstanceRole.LEADER if leader else InstanceRole.FOLLOWER
        if not self.store.beat(self.me.id, role):
            log.warning("instance %s was declared dead by the leader; registering again", self.me.id)
            self.store.register_instance(self.me.id, self.me.host, self.me.pid)
            self.store.beat(self.me.id, role)
        if not leader:
            return
        if self._judging_since is None:
            self._judging_since = self.clock()
        # Only a leader that has itself beaten for a whole `failover` judges the others: after a
        # database outage (or a new leadership) every live instance first gets `failover` to beat.
        if self.clock() - self._judging_since >= self.failover:
            self.settle_dead()

    def settle_dead(self) -> list[str]:
        """End the runs of instances whose heartbeat is older than `failover`; returns their ids."""
        dead = [found for found in self.store.expired_instances(self.failover) if found != self.me.id]
        for instance in dead:
            self._settle(instance)
        return dead

    def _settle(self, instance: str) -> None:
        working = self.store.runs_of_instance(instance, {RunStatus.PLANNING, RunStatus.APPLYING})
        reason = LOST_REASON.format(instance=instance)
        for run in working:
            try:
                self.transitions.mark_interrupted(run, reason, why=RunReason.DAEMON_RESTARTED)
            except InvalidTransition:
                continue  # it ended meanwhile
        taken = self.store.runs_of_instance(instance, {RunStatus.QUEUED, RunStatus.APPROVED})
        self.store.remove_instance(instance)
        log.warning(
            "instance %s stopped sending heartbeats: %d run(s) interrupted, %d back to the queue",
            instance,
            len(working),
            len(taken),
        )
        if taken:
            self.queue.resume(taken)

    def _changed(self, leader: bool) -> None:
        self.leading = leader
        self._judging_since = None
        if leader:
            log.warning("instance %s is now the leader", self.me.id)
            self.roles.lead()
        else:
            log.warning("instance %s lost the leadership; it stops scheduling", self.me.id)
            self.roles.follow()

    def _take_in(self) -> None:
        assert self.intake is not None
        took_in = 0
        while True:
            self.wake.wait(took_in, self.interval)
            if self._stop.is_set():
                return
            try:
                took_in = len(self.intake() or ())
            except Exception:
                took_in = 0
                log.exception("taking in the queued runs failed; trying again in %.1fs", self.interval)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the database may be away: beat again later
                self._judging_since = None  # our own beats stopped: the others' may have too
                log.error("heartbeat failed (%s); it beats again in %.1fs", _first_line(exc), self.interval)


class Duties:
    """What follows the leadership in the daemon: the scheduler's jobs, and the count of changes."""

    def __init__(self, scheduler: Roles, on_change: Callable[[bool], None]) -> None:
        self.scheduler = scheduler
        self.on_change = on_change

    def lead(self) -> None:
        self.on_change(True)
        self.scheduler.lead()

    def follow(self) -> None:
        self.scheduler.follow()
        self.on_change(False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
