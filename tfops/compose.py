"""The composition root: builds every part from the settings and wires them together, once.

Nothing else in tfops constructs a store, a Git source or a runner; tests build an `App` from a
settings object exactly as the CLI does. `build` runs its steps in this order: the configuration
checks (a ConfigError leaves no database behind and nothing open), then the I/O that a start needs
(the private directories, the Git askpass helper, the store's schema), then `wire`, which builds
each part from the parts it needs: the I/O is in those named steps, not in constructors, and no
part is changed once built (a part is handed every callback it needs when it is made).

One cycle remains: the reconciler calls the queue (a re-plan), the poller (to confirm the head)
and the run metrics (`on_finished`), while the queue's workers and the run metrics call it back.
The reconciler is built last, and those two reach it through a `Later`, set as soon as it is built
and before anything runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from slack_sdk import WebClient

from tfops import proc
from tfops.approvals import ApprovalDesk
from tfops.config import Settings
from tfops.gitsource import GitSource, git_env, write_askpass
from tfops.ha.hints import HintRelay
from tfops.ha.instances import Duties, Heartbeat, Me
from tfops.ha.intake import Intake
from tfops.ha.intake_wake import IntakeWake
from tfops.ha.leadership import Leadership, leadership_for
from tfops.ha.pinning import Pinning
from tfops.ha.routing import HolderBinding, PlanHolderRouting
from tfops.ha.serve_lock import ServeLock
from tfops.incident_tracker import IncidentTracker
from tfops.logs import hold_secrets
from tfops.metrics import Metrics
from tfops.models import Run, Stack
from tfops.notify import MultiNotifier, Notifier
from tfops.notify.blocks import CommitInfo
from tfops.notify.console import LogNotifier
from tfops.notify.directory import SlackDirectory
from tfops.notify.interactions import SlackInteractions
from tfops.notify.slack import OutboxSender, SlackNotifier, web_client
from tfops.notify.slack_render import RunRenderer
from tfops.observe import RunMetrics, snapshot_of
from tfops.poller import RepoPoller
from tfops.preflight import needed, preflight
from tfops.reconcile import Reconciler, ReconcileSettings, Transitions
from tfops.recovery import Recovery, record_group
from tfops.run_queue import RunQueue, StackOrder
from tfops.scheduler import Scheduler, StackRegistry, replan
from tfops.secrets import held_secrets
from tfops.stacks import discover
from tfops.store import Store
from tfops.store.engine import OUTAGE_WAIT
from tfops.terraform.runner import RunnerSettings, TerraformRunner
from tfops.triggers import FetchSoon, fetch_for_webhooks

if TYPE_CHECKING:  # boto3 is imported only when a stack needs AWS (AwsOnFirstUse)
    from tfops.aws.runs import RunCloud, RunIdentities

log = logging.getLogger(__name__)

_P = TypeVar("_P")


class Later(Generic[_P]):
    """A part built after the parts that call it: they call it through this. It is set once, as
    soon as the part is built and before anything runs; a call before that is a wiring bug."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._part: _P | None = None

    def set(self, part: _P) -> _P:
        if self._part is not None:
            raise RuntimeError(f"{self.what} was built twice")
        self._part = part
        return part

    def get(self) -> _P:
        if self._part is None:
            raise RuntimeError(f"{self.what} was used before it was built")
        return self._part


@dataclass(frozen=True, repr=False)  # no repr: the held secrets must not reach a log or a traceback
class Checked:
    """What the configuration checks found; nothing is open or written yet."""

    binary: str
    repo_url: str
    slack_client: WebClient | None
    held_secrets: frozenset[str]


@dataclass(eq=False, repr=False)
class Parts:
    """Every part of a tfops process, wired together (an `App` is one, with its behaviours)."""

    settings: Settings
    store: Store
    git: GitSource
    registry: StackRegistry
    notifier: MultiNotifier
    transitions: Transitions
    queue: RunQueue
    metrics: Metrics
    outbox_sender: OutboxSender | None
    poller: RepoPoller
    runner: TerraformRunner
    reconciler: Reconciler
    desk: ApprovalDesk
    interactions: SlackInteractions | None
    recovery: Recovery
    scheduler: Scheduler
    fetch_soon: FetchSoon
    started_at: datetime
    leadership: Leadership
    heartbeat: Heartbeat


def build(
    settings: Settings, *, notifiers: Iterable[Notifier] = (), environ: Mapping[str, str] | None = None
) -> Parts:
    """Every part, wired; a half-built set is never returned (the store is closed again)."""
    environ = dict(os.environ if environ is None else environ)
    # Everything that can refuse the configuration comes before the store: a ConfigError
    # leaves no database behind and nothing open. `tfops check-config` runs the same checks.
    checked = check_configuration(settings, environ)
    # What tfops read as a secret never leaves the host: runs, logs, store, Slack and the API.
    hold_secrets(checked.held_secrets)
    make_private_dirs(settings)
    credentials = git_credentials(settings)  # reads the Git token, writes the askpass helper
    store = Store(settings.store_url, outage_wait=OUTAGE_WAIT)  # a database restart is waited out
    try:
        store.upgrade()
        return wire(settings, checked, store, environ, notifiers, credentials)
    except BaseException:
        store.close()  # a half-built App is never returned: it must not hold the database
        raise


def check_configuration(settings: Settings, environ: Mapping[str, str]) -> Checked:
    """`preflight`, and what the checked configuration yields; reads secrets, writes nothing."""
    binary = preflight(settings, environ)
    return Checked(
        binary=binary,
        repo_url=settings.require_repo_url(),
        slack_client=slack_client_for(settings),
        held_secrets=held_secrets(settings),
    )


def slack_client_for(settings: Settings) -> WebClient | None:
    slack = settings.slack
    if not slack.enabled:
        return None  # (a channel and a token were required by `preflight`)
    return web_client(needed(settings.slack_token(), "slack.bot_token"), slack.base_url, slack.timeout)


def make_private_dirs(settings: Settings) -> None:
    """The data directory and those below it, created 0700."""
    for directory in (settings.data_dir, settings.runs_dir, settings.stacks_dir, settings.plugin_cache_dir):
        # Plans and state hold secrets in clear: only tfops' own user may read them.
        Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)


def git_credentials(settings: Settings) -> dict[str, str]:
    """The environment Git needs for the remote; with a token, the askpass helper is written first."""
    repo = settings.repo
    token = settings.repo_token()
    askpass = write_askpass(Path(settings.data_dir) / "git-askpass.sh") if token else None
    return git_env(ssh_key_file=repo.ssh_key_file, askpass=askpass, username=repo.username, token=token)


def wire(
    settings: Settings,
    checked: Checked,
    store: Store,
    environ: Mapping[str, str],
    notifiers: Iterable[Notifier],
    credentials: dict[str, str],
) -> Parts:
    """Build and connect the parts, once the configuration was accepted and the store is open."""
    git = git_for(settings, checked.repo_url, environ, credentials)
    registry = StackRegistry(
        lambda root: discover(root, settings.stacks, settings.defaults), settings.checkout_dir
    )
    notifier = MultiNotifier(LogNotifier(), *notifiers)
    me = Me.here(settings.ha.instance_for(settings.data_dir))
    leadership = leadership_for(
        settings.store_url,
        ServeLock(settings.store_url, settings.data_dir),
        heartbeat=settings.ha.heartbeat,
        failover=settings.ha.failover,
    )
    transitions = Transitions(store, notifier, settings.runs_dir, instance_id=me.id)
    reconciler: Later[Reconciler] = Later("the reconciler")

    def execute(run_id: int, cancel: proc.Cancel) -> Run | None:
        return reconciler.get().execute(run_id, cancel)

    terraform = settings.terraform
    order = StackOrder(registry.current, transitions)  # depends_on: upstreams' deploys go first
    # Several daemons with `ha.local_state_instance`: only that instance runs local-state stacks.
    pinned_to = settings.ha.local_state_instance
    keeps = Pinning(settings.checkout_dir, registry.current, pinned_to=pinned_to, me=me.id)
    # Several daemons: a worker left free takes others' queued runs in at once, not at the heartbeat.
    wake = IntakeWake()
    several = several_daemons(settings)
    queue = RunQueue(
        store, transitions, execute, terraform.max_parallel, terraform.drift_parallel, order,
        keeps=keeps.takes if several else None, on_free=wake.wake if several else None,
    )  # fmt: skip
    wake.slots = queue
    metrics = Metrics(
        snapshot=snapshot_of(store, queue, slack_on=checked.slack_client is not None), instance=me.id
    )
    sender = slack_delivery(
        settings, checked.slack_client, store, git, registry, metrics, notifier, leadership.is_leader
    )
    poller = RepoPoller(git=git, store=store, queue=queue, registry=registry, on_fetch=metrics.fetch_done)
    run_metrics = RunMetrics(metrics, store, lambda run_id: reconciler.get().is_executing(run_id))
    notifier.add(run_metrics)
    runner = runner_for(settings, checked.binary, environ, store)
    confirm_head = partial(poller.confirm_head, max_age=2 * settings.repo.poll_interval)
    reconciler.set(
        reconciler_for(
            settings,
            checked,
            store,
            git,
            runner,
            transitions,
            registry,
            queue,
            run_metrics,
            confirm_head,
            environ,
            IncidentTracker(store, [notifier.incident_changed, metrics.incident_changed]),
        )
    )
    shared = several_daemons(settings)
    holder = me.id if shared else None  # who applies an approved run: the instance with its plan
    desk = desk_for(
        settings, checked, store, transitions, registry, reconciler.get(), queue, confirm_head, holder
    )
    recovery = Recovery(store, transitions, registry, queue, settings, me.id if shared else None)
    scheduler = Scheduler(
        poller=poller,
        # Several daemons: a run with another instance's saved plan is released for that instance.
        queue=PlanHolderRouting(queue, transitions, me.id) if shared else queue,
        registry=registry,
        store=store,
        poll_interval=settings.repo.poll_interval,
        housekeeping=partial(housekeeping, desk, recovery),
        leading=leadership.is_leader,
    )
    interactions = SlackInteractions(desk, store, on_enqueue=sender.wake) if sender is not None else None
    relay = HintRelay(store, poller, leadership.is_leader)
    fetch_soon = FetchSoon(
        relay if shared else partial(fetch_for_webhooks, poller), window=settings.webhooks.debounce
    )
    heartbeat = Heartbeat(
        store,
        leadership,
        me,
        interval=settings.ha.heartbeat,
        failover=settings.ha.failover,
        roles=Duties(scheduler, metrics.leader_changed),
        transitions=transitions,
        queue=queue,
        intake=partial(ha_tick, Intake(store, queue, git, registry, me.id, leadership.is_leader), relay)
        if shared
        else None,
        wake=wake,
    )
    # In the order of Parts' fields; each has a type of its own, so mypy checks the order.
    return Parts(
        settings, store, git, registry, notifier, transitions, queue, metrics, sender, poller, runner,
        reconciler.get(), desk, interactions, recovery, scheduler, fetch_soon, datetime.now(UTC),
        leadership, heartbeat,
    )  # fmt: skip


def several_daemons(settings: Settings) -> bool:
    """Whether daemons may share this store (PostgreSQL); SQLite holds one (tfops.ha.serve_lock)."""
    return not settings.store_url.startswith("sqlite")


def ha_tick(intake: Intake, relay: HintRelay) -> list[Run]:
    """Every heartbeat interval, or sooner when a worker is free (tfops.ha.intake_wake), off the
    heartbeat's thread (several daemons): the leader acts on a webhook hint a follower left, then
    every instance takes in the runs queued by others. Returns the runs taken in."""
    relay.check()
    return intake()


def git_for(
    settings: Settings, repo_url: str, environ: Mapping[str, str], credentials: dict[str, str]
) -> GitSource:
    return GitSource(
        repo_url,
        settings.repo.branch,
        settings.checkout_dir,
        env=credentials,
        inherit=environ,
        fetch_timeout=settings.repo.fetch_timeout,
    )


def slack_delivery(
    settings: Settings,
    client: WebClient | None,
    store: Store,
    git: GitSource,
    registry: StackRegistry,
    metrics: Metrics,
    notifier: MultiNotifier,
    may_send: Callable[[], bool] = lambda: True,
) -> OutboxSender | None:
    """When Slack is configured: a notifier that fills the outbox, and the sender that empties it."""
    if client is None:
        return None
    slack = settings.slack
    # Rendering and commit lookups happen in the sender: a status change only enqueues a record.
    renderer = RunRenderer(
        store,
        commit_info=partial(commit_info, git),
        stack_for=lambda name: registry.current().get(name),
        mention=slack.mention,
    )
    sender = OutboxSender(
        store, client, renderer=renderer, on_failed=metrics.slack_delivery_failed, may_send=may_send
    )
    notifier.add(SlackNotifier(store, slack.channel_for, on_enqueue=sender.wake))
    return sender


def commit_info(git: GitSource, sha: str) -> CommitInfo:
    revision = git.revision(sha)
    return CommitInfo(sha=revision.sha, subject=revision.subject, author=revision.author)


def runner_for(settings: Settings, binary: str, environ: Mapping[str, str], store: Store) -> TerraformRunner:
    terraform = settings.terraform
    return TerraformRunner(
        RunnerSettings(
            binary=binary,
            cli_config=terraform.cli_config,
            plugin_cache_dir=settings.plugin_cache_dir,
            lock_timeout=terraform.lock_timeout,
            stop_grace=terraform.stop_grace,
            passthrough=tuple(terraform.env_passthrough),
            inherit=dict(environ),
            remote_state_only=several_daemons(settings)
            and not settings.ha.runs_local_state(settings.data_dir),
        ),
        on_group=partial(record_group, store),
    )


def reconciler_for(
    settings: Settings,
    checked: Checked,
    store: Store,
    git: GitSource,
    runner: TerraformRunner,
    transitions: Transitions,
    registry: StackRegistry,
    queue: RunQueue,
    run_metrics: RunMetrics,
    confirm_head: Callable[[], str | None],
    environ: Mapping[str, str],
    incidents: IncidentTracker | None = None,
) -> Reconciler:
    return Reconciler(
        store=store,
        git=git,
        runner=runner,
        transitions=transitions,
        stacks=registry.current,
        settings=ReconcileSettings(
            runs_dir=settings.runs_dir,
            stacks_dir=settings.stacks_dir,
            timeout=settings.terraform.timeout,
            redact_patterns=settings.compiled_redact_patterns,
            held_secrets=checked.held_secrets,
        ),
        on_stale_plan=partial(replan, store, queue),
        on_finished=run_metrics.run_finished,
        confirm_head=confirm_head,  # the worker fetches before it applies
        cloud=aws_for_runs(settings, environ),
        incidents=incidents,
    )


def aws_for_runs(settings: Settings, environ: Mapping[str, str]) -> AwsOnFirstUse:
    return AwsOnFirstUse(settings, environ)


class AwsOnFirstUse:
    """tfops' own AWS identity (instance profile or the default chain, from `environ`), assuming
    each stack's roles and reading its secrets. Built, and boto3 imported, when the first stack
    that needs AWS runs: one-shot commands and estates without AWS pay nothing for it."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ
        self._identities: RunIdentities | None = None
        self._lock = threading.Lock()

    def for_run(self, stack: Stack, run_id: int) -> RunCloud:
        with self._lock:
            if self._identities is None:
                self._identities = self._build()
        return self._identities.for_run(stack, run_id)

    def _build(self) -> RunIdentities:
        from tfops.aws.clients import AwsClients, AwsEndpoint
        from tfops.aws.runs import RunIdentities

        return RunIdentities(AwsClients(AwsEndpoint.of(self._settings.aws), self._environ), self._environ)


def desk_for(
    settings: Settings,
    checked: Checked,
    store: Store,
    transitions: Transitions,
    registry: StackRegistry,
    reconciler: Reconciler,
    queue: RunQueue,
    confirm_head: Callable[[], str | None],
    holder: str | None = None,
) -> ApprovalDesk:
    client = checked.slack_client
    return ApprovalDesk(
        store=store,
        transitions=transitions,
        stacks=registry.current,
        binding=HolderBinding(reconciler, holder) if holder is not None else reconciler,
        directory=SlackDirectory(client, ttl=settings.slack.usergroup_cache) if client is not None else None,
        start_apply=partial(start_apply, queue, holder),
        replan=partial(replan, store, queue),
        confirm_head=confirm_head,
    )


def start_apply(queue: RunQueue, holder: str | None, run: Run) -> None:
    """An approved run goes to the queue of the instance holding its saved plan: here, or (several
    daemons, another instance's plan) at that instance's next heartbeat (`tfops.ha.intake`)."""
    if holder is None or run.instance_id == holder:
        queue.resume([run])


def housekeeping(desk: ApprovalDesk, recovery: Recovery) -> None:
    """The scheduler's housekeeping job: expire approval requests, retry a recovery left undone."""
    desk.expire_due()
    recovery.retry()  # another process held the data directory at start; try again
