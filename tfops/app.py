"""The tfops process: start-up, the daemon, one-shot passes, decisions and close.

`App(settings)` is built by `tfops.compose.build` (the composition root); tests build it from a
settings object exactly as the CLI does. What serves HTTP and Slack's Socket Mode is built by
`build_listeners`, for `serve` only.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tfops.approvals import Answer, DecisionRequest, Verdict
from tfops.compose import Parts, build, housekeeping
from tfops.config import Settings, check_serving
from tfops.errors import GitFetchError, TfopsError, UnknownStackError
from tfops.ha.pinning import refuse_at_start
from tfops.listeners import socket_mode_for, web_server_for
from tfops.models import FAILURE_STATUSES, Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import Notifier
from tfops.notify.socket_mode import SocketModeTransport
from tfops.preflight import check_startable, preflight, resolve_binary
from tfops.preflight import needed as _needed
from tfops.recovery import CRASH_REASON
from tfops.scheduler import head_of, queue_drift_check
from tfops.stacks import RefusedStack
from tfops.store import Store
from tfops.web.server import WebServer

log = logging.getLogger(__name__)

_SIGNAL_CHECK = 1.0  # seconds: how long the serving main thread may leave SIGTERM unhandled


# Runs that end a pass with a change not deployed: planned, asked about, blocked, or waiting for a window.
_LEFT_PENDING = frozenset(
    {RunStatus.PLANNED, RunStatus.AWAITING_APPROVAL, RunStatus.BLOCKED, RunStatus.AWAITING_WINDOW}
)


@dataclass(frozen=True)
class PassResult:
    runs: list[Run]
    fetch_error: str | None = None
    refused: tuple[RefusedStack, ...] = ()  # stacks left out at the head; the others were reconciled

    @property
    def exit_code(self) -> int:
        """0 all in sync, 2 drift or changes left pending, 1 errors (a refused stack is one)."""
        if self.fetch_error is not None or self.refused:
            return 1
        statuses = {run.status for run in self.runs}
        if statuses & FAILURE_STATUSES:
            return 1
        if statuses & {
            RunStatus.PLANNED,
            RunStatus.AWAITING_APPROVAL,
            RunStatus.BLOCKED,
            RunStatus.AWAITING_WINDOW,
        }:
            return 2
        return 0


class App(Parts):
    """The parts `tfops.compose.build` wired, and what the process does with them."""

    def __init__(
        self,
        settings: Settings,
        *,
        notifiers: Iterable[Notifier] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # The configuration checks come first (a refused one leaves nothing behind), and a build
        # that fails later closes the store again: a half-built App is never returned.
        super().__init__(**vars(build(settings, notifiers=notifiers, environ=environ)))
        # Built by `serve` (`build_listeners`): one-shot commands need neither, nor their secrets.
        self.socket_mode: SocketModeTransport | None = None
        self.web_server: WebServer | None = None
        self._closed = False

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Clone if needed and settle what a previous process left behind."""
        self.git.ensure_clone()
        self.git.prune_views()
        if self.outbox_sender is not None:
            self.outbox_sender.start()  # before recover(): what a previous process left is sent too
        self.recover()

    def recover(self) -> None:
        """Runs cut off mid-flight are marked for review, never retried; queued ones resume, and
        approved ones go on to their (re-checked) apply. Only when no other tfops process works on
        this data directory (see `tfops.recovery`)."""
        self.recovery.recover()

    # -- decisions --------------------------------------------------------------

    def decide(self, request: DecisionRequest, *, timeout: float | None = None) -> tuple[Answer, Run | None]:
        """`tfops approve` / `tfops reject`: decide, and on approval apply that run, nothing else.

        No recovery and no poll here: a one-shot decision must not take up (and then cut off)
        work that belongs to the daemon.
        """
        self.git.ensure_clone()
        if self.outbox_sender is not None:
            self.outbox_sender.start()
        answer = self.desk.decide(request, transport="cli")
        if answer.verdict in (Verdict.APPROVE, Verdict.SUPERSEDE):
            self.queue.wait_idle(timeout)  # the apply, or the fresh plan that replaces a stale one
            if answer.verdict is Verdict.APPROVE:
                # Several daemons: the instance holding the saved plan applies it (tfops.ha).
                wait_for_holder(self.store, request.run_id, timeout or self.settings.terraform.timeout)
        return answer, self.store.get_run(request.run_id)

    # -- the daemon --------------------------------------------------------------

    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.build_listeners()  # first: a missing secret stops the start before anything is done
        self._install_signal_handlers(stop)
        try:
            # Before anything: a second daemon on one SQLite file stops here (AlreadyServing).
            self.leadership.start()
            self.heartbeat.check_id_free()  # ... and one with this instance id on another host
            refuse_at_start(self.settings, self.git.ensure_clone)  # ... and local state (tfops.ha.pinning)
        except BaseException:
            self.close()
            raise
        try:
            # The port first: if it is taken, nothing has been resumed or started yet.
            if self.web_server is not None:
                self.web_server.start()
            self._start_work()
            self.scheduler.start()
            self.heartbeat.start()  # registers, and leads at once when it can
            self._start_listening()
        except BaseException:
            self._stop_serving()
            raise
        log.info(
            "tfops serving %s@%s: poll every %.0fs, at most %d runs at once",
            self.git.url if "@" not in self.git.url else "(repo)",
            self.settings.repo.branch,
            self.settings.repo.poll_interval,
            self.settings.terraform.max_parallel,
        )
        # In slices, not one endless wait: the kernel may hand SIGTERM to any thread, and Python
        # runs its handler only when the main thread next runs bytecode. An endless wait never
        # does, and the daemon would ignore the stop (seen under load).
        while not stop.wait(timeout=_SIGNAL_CHECK):
            pass
        self._stop_serving()

    def build_listeners(self) -> None:
        """The Socket Mode connection and the HTTP server, as configured, not started yet."""
        check_serving(self.settings)
        self.socket_mode = socket_mode_for(self.settings, self.interactions)
        self.web_server = web_server_for(self)

    def _start_work(self) -> None:
        try:
            self.start()
        except TfopsError as exc:
            # An unreachable remote or a stack path missing at the head is not fatal at start:
            # the poll job keeps trying and reports it.
            log.error("%s", exc)

    def _housekeeping(self) -> None:
        housekeeping(self.desk, self.recovery)

    def _install_signal_handlers(self, stop: threading.Event) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum, _frame):
            if stop.is_set():
                log.warning("already stopping; Terraform is given its grace period to write state")
                return
            log.info("received %s", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _start_listening(self) -> None:
        self.fetch_soon.start()
        if self.socket_mode is not None:
            self.socket_mode.start()

    # -- one-shot passes (CLI) -------------------------------------------------

    def reconcile_once(self, *, timeout: float | None = None) -> PassResult:
        """Fetch, deploy what changed, drift-check every stack, wait for all of it."""
        try:
            self.start()
            deploys = self.poller.poll(source=TriggerSource.RECONCILE, actor=local_user())
        except GitFetchError as exc:
            return PassResult(runs=[], fetch_error=str(exc))
        if self.recovery.recovered:  # no daemon works here: runs whose sync window opened go on
            deploys += self.scheduler.wake_waiting_runs()
        self.queue.wait_idle(timeout)
        drifts = [
            run
            for name in sorted(self.registry.current())
            if (run := self._queue_drift(name, TriggerSource.RECONCILE)) is not None
        ]
        self.queue.wait_idle(timeout)
        runs = [self.store.get_run(run.id) or run for run in [*deploys, *drifts]]
        return PassResult(runs=runs, refused=self.registry.refused)

    def one_shot(
        self,
        kind: RunKind,
        stacks: list[str] | None,
        *,
        timeout: float | None = None,
        allow_destroy: bool = False,
        override_window: bool = False,
    ) -> list[Run]:
        """`tfops plan` / `tfops drift`: fetch, queue, wait, return the finished runs. `allow_destroy`:
        a deploy past the change guards, `override_window`: outside the sync windows; each recorded
        on the run's trigger (and so in its record)."""
        self.start()
        self.poller.poll(source=TriggerSource.CLI, actor=local_user())
        self.queue.wait_idle(timeout)  # deploys the fetch queued come first, like in the daemon
        known = self.registry.current()
        names = stacks or sorted(known)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UnknownStackError(
                f"unknown stack(s): {', '.join(unknown)}; known: {', '.join(sorted(known)) or '(none)'}"
            )
        runs = []
        for name in names:
            if kind is RunKind.DRIFT:
                run = self._queue_drift(name, TriggerSource.CLI)
            else:
                head = _needed(head_of(self.store, name), f"the head commit of stack {name}")
                trigger = _cli_trigger(allow_destroy=allow_destroy, override_window=override_window)
                run = self.queue.submit(name, kind, trigger, head)
            if run is not None:
                runs.append(run)
        self.queue.wait_idle(timeout)
        return [self.store.get_run(run.id) or run for run in runs]

    # -- the end -----------------------------------------------------------------

    def close(self) -> None:
        """Stop everything, in this order: listeners (no new clicks or deliveries), the heartbeat
        (leadership), the timers, the queue (running Terraform gets one SIGINT and `stop_grace` to
        write state; queued runs stay queued for the next start), Slack, Git, the store, the serve
        lock and the owner lock. Safe to call again."""
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        self.heartbeat.stop()  # stops leading first; leaves the instances (a clean stop is no death)
        self.scheduler.stop()
        self.queue.shutdown(wait=self.settings.terraform.stop_grace + 15)
        self._stop_slack()
        self.git.close()
        self.store.close()
        self.leadership.close()  # last: the serve lock keeps a second daemon out until the store closed
        self.recovery.release()

    def _stop_serving(self) -> None:
        log.info("stopping: no new runs; running Terraform gets one SIGINT and time to write state")
        self.close()
        log.info("stopped")

    def _stop_listening(self) -> None:
        # First: no new clicks while the rest stops.
        if self.socket_mode is not None:
            self.socket_mode.stop()
        if self.web_server is not None:
            self.web_server.stop()
        self.fetch_soon.stop()

    def _stop_slack(self) -> None:
        # Decisions in hand are finished first (they enqueue answers); whatever is not delivered
        # yet stays in the outbox, and the next start sends it.
        if self.interactions is not None:
            self.interactions.close()
        if self.outbox_sender is not None:
            self.outbox_sender.stop()

    # -- internals ---------------------------------------------------------------

    def _queue_drift(self, stack: str, source: TriggerSource) -> Run | None:
        return queue_drift_check(self.store, self.queue, stack, source=source, actor=local_user())


def wait_for_holder(store: Store, run_id: int, timeout: float, step: float = 0.2) -> None:
    """Wait while the run is `approved` or `applying`: another instance holds its plan, takes it in
    at its next heartbeat and applies it. Returns at once when it ended (applied here, refused)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run is None or run.status not in (RunStatus.APPROVED, RunStatus.APPLYING):
            return
        time.sleep(step)


def _cli_trigger(*, allow_destroy: bool, override_window: bool) -> Trigger:
    """A person's run from the host; the overrides they asked for are recorded on it."""
    notes = [
        note
        for asked, note in (
            (allow_destroy, "--allow-destroy: change guards overridden"),
            (override_window, "--override-window: sync windows overridden"),
        )
        if asked
    ]
    return Trigger(
        source=TriggerSource.CLI,
        actor=local_user(),
        allow_destroy=allow_destroy,
        override_window=override_window,
        note="; ".join(notes),
    )


def local_user() -> str:
    """The account running this process, from its uid: unlike $USER or $LOGNAME, not a claim."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


__all__ = [
    "CRASH_REASON",
    "App",
    "PassResult",
    "TfopsError",
    "check_startable",
    "local_user",
    "preflight",
    "resolve_binary",
]
