"""Composition root: builds every part from the settings and wires them together.

Nothing else in tfops constructs a store, a Git source or a runner; tests build an
`App` from a settings object exactly as the CLI does.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfops.config import Settings
from tfops.errors import ConfigError, GitFetchError, TfopsError
from tfops.gitsource import GitSource, git_env, write_askpass
from tfops.models import IN_FLIGHT_STATUSES, Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier, Notifier
from tfops.notify.blocks import CommitInfo
from tfops.notify.console import LogNotifier
from tfops.notify.slack import OutboxSender, SlackNotifier, web_client
from tfops.reconcile import Reconciler, ReconcileSettings, Transitions
from tfops.scheduler import RepoPoller, RunQueue, Scheduler, StackRegistry, queue_drift_check
from tfops.stacks import discover_stacks
from tfops.store import Store
from tfops.terraform.runner import RunnerSettings, TerraformRunner

log = logging.getLogger(__name__)

# What a run cut off by a crash says; a person decides whether to run it again.
CRASH_REASON = (
    "the previous tfops process stopped during this run (crash or kill); review the log before re-running"
)


@dataclass(frozen=True)
class PassResult:
    runs: list[Run]
    fetch_error: str | None = None

    @property
    def exit_code(self) -> int:
        """0 all in sync, 2 drift or changes left pending, 1 errors."""
        if self.fetch_error is not None:
            return 1
        statuses = {run.status for run in self.runs}
        if statuses & {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED, RunStatus.BLOCKED}:
            return 1
        if RunStatus.PLANNED in statuses or RunStatus.AWAITING_APPROVAL in statuses:
            return 2
        return 0


class App:
    def __init__(
        self, settings: Settings, *, notifiers: Iterable[Notifier] = (), environ: dict | None = None
    ) -> None:
        self.settings = settings
        environ = dict(os.environ if environ is None else environ)
        self.binary = resolve_binary(settings.terraform.binary, environ)
        for directory in (
            settings.data_dir,
            settings.runs_dir,
            settings.stacks_dir,
            settings.plugin_cache_dir,
        ):
            # Plans and state hold secrets in clear: only tfops' own user may read them.
            Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = Store(settings.store_url)
        self.store.upgrade()
        self.git = GitSource(
            settings.require_repo_url(),
            settings.repo.branch,
            settings.checkout_dir,
            env=self._git_env(),
            fetch_timeout=settings.repo.fetch_timeout,
        )
        self.notifier = MultiNotifier(LogNotifier(), *notifiers)
        self.outbox_sender = self._slack_delivery()
        self.transitions = Transitions(self.store, self.notifier)
        self.registry = StackRegistry(
            discover=lambda root: discover_stacks(root, settings.stacks, settings.defaults),
            root=settings.checkout_dir,
        )
        self.runner = TerraformRunner(
            RunnerSettings(
                binary=self.binary,
                cli_config=settings.terraform.cli_config,
                plugin_cache_dir=settings.plugin_cache_dir,
                lock_timeout=settings.terraform.lock_timeout,
                stop_grace=settings.terraform.stop_grace,
                passthrough=tuple(settings.terraform.env_passthrough),
                inherit=environ,
            )
        )
        self.reconciler = Reconciler(
            store=self.store,
            git=self.git,
            runner=self.runner,
            transitions=self.transitions,
            stacks=self.registry.current,
            settings=ReconcileSettings(
                runs_dir=settings.runs_dir,
                stacks_dir=settings.stacks_dir,
                timeout=settings.terraform.timeout,
                redact_patterns=settings.compiled_redact_patterns,
            ),
            on_stale_plan=self._replan,
        )
        self.queue = RunQueue(
            self.store, self.transitions, self.reconciler.execute, settings.terraform.max_parallel
        )
        self.poller = RepoPoller(git=self.git, store=self.store, queue=self.queue, registry=self.registry)
        self.scheduler = Scheduler(
            poller=self.poller,
            queue=self.queue,
            registry=self.registry,
            store=self.store,
            poll_interval=settings.repo.poll_interval,
        )

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Clone if needed and settle what a previous process left behind."""
        self.git.ensure_clone()
        self.git.prune_views()
        if self.outbox_sender is not None:
            self.outbox_sender.start()  # before recover(): what a previous process left is sent too
        self.recover()

    def recover(self) -> None:
        """Runs cut off mid-flight are marked for review, never retried; queued ones resume."""
        for run in self.store.runs_with_status(IN_FLIGHT_STATUSES):
            log.warning("run %s (%s) was cut off while %s", run.id, run.stack, run.status.value)
            self.transitions.mark_interrupted(run, CRASH_REASON)
        queued = self.store.runs_with_status({RunStatus.QUEUED})
        if queued:
            self.registry.refresh()
            self.queue.resume(queued)

    # -- the daemon --------------------------------------------------------------

    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self._install_signal_handlers(stop)
        try:
            self.start()
        except GitFetchError as exc:
            # An unreachable remote at first start is not fatal: the poll job keeps trying.
            log.error("%s", exc)
        self.scheduler.start()
        log.info(
            "tfops serving %s@%s: poll every %.0fs, at most %d runs at once",
            self.git.url if "@" not in self.git.url else "(repo)",
            self.settings.repo.branch,
            self.settings.repo.poll_interval,
            self.settings.terraform.max_parallel,
        )
        stop.wait()
        self.shutdown()

    def shutdown(self) -> None:
        log.info("stopping: no new runs; running Terraform gets one SIGINT and time to write state")
        self.scheduler.stop()
        self.queue.shutdown(wait=self.settings.terraform.stop_grace + 15)
        self._stop_slack()
        self.store.close()
        log.info("stopped")

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

    # -- one-shot passes (CLI) -------------------------------------------------

    def reconcile_once(self, *, timeout: float | None = None) -> PassResult:
        """Fetch, deploy what changed, drift-check every stack, wait for all of it."""
        try:
            self.start()
            deploys = self.poller.poll(source=TriggerSource.RECONCILE, actor=_user())
        except GitFetchError as exc:
            return PassResult(runs=[], fetch_error=str(exc))
        self.queue.wait_idle(timeout)
        drifts = [
            run
            for name in sorted(self.registry.current())
            if (run := self._queue_drift(name, TriggerSource.RECONCILE)) is not None
        ]
        self.queue.wait_idle(timeout)
        return PassResult(runs=[self.store.get_run(run.id) for run in [*deploys, *drifts]])

    def one_shot(self, kind: RunKind, stacks: list[str] | None, *, timeout: float | None = None) -> list[Run]:
        """`tfops plan` / `tfops drift`: fetch, queue, wait, return the finished runs."""
        self.start()
        self.poller.poll(source=TriggerSource.CLI, actor=_user())
        self.queue.wait_idle(timeout)  # deploys the fetch queued come first, like in the daemon
        known = self.registry.current()
        names = stacks or sorted(known)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ConfigError(f"unknown stack(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        runs = []
        for name in names:
            if kind is RunKind.DRIFT:
                run = self._queue_drift(name, TriggerSource.CLI)
            else:
                head = self.store.get_stack(name).head_sha
                run = self.queue.submit(name, kind, Trigger(source=TriggerSource.CLI, actor=_user()), head)
            if run is not None:
                runs.append(run)
        self.queue.wait_idle(timeout)
        return [self.store.get_run(run.id) for run in runs]

    def close(self) -> None:
        self.queue.shutdown(wait=self.settings.terraform.stop_grace + 15)
        self._stop_slack()
        self.store.close()

    # -- internals ---------------------------------------------------------------

    def _queue_drift(self, stack: str, source: TriggerSource) -> Run | None:
        return queue_drift_check(self.store, self.queue, stack, source=source, actor=_user())

    def _replan(self, run: Run) -> None:
        """A stale saved plan is never retried as is: a fresh plan of the same commit is queued."""
        trigger = Trigger(
            source=run.trigger.source, actor="tfops", note=f"re-plan after stale plan in run {run.id}"
        )
        self.queue.submit(run.stack, run.kind, trigger, run.commit_sha)

    def _slack_delivery(self) -> OutboxSender | None:
        """When Slack is configured: a notifier that fills the outbox, and the sender that empties it."""
        slack = self.settings.slack
        if not slack.enabled:
            return None
        if not (slack.channel or slack.channels):
            raise ConfigError(
                "slack.channel: not set; a Slack bot token is configured but there is no channel to post in",
                hint="set slack.channel to a channel id such as C0123ABCD, or remove the slack token",
            )
        token = self.settings.slack_token()
        sender = OutboxSender(self.store, web_client(token, slack.base_url, slack.timeout))
        self.notifier.add(
            SlackNotifier(
                self.store,
                slack.channel_for,
                mention=slack.mention,
                commit_info=self._commit_info,
                on_enqueue=sender.wake,
            )
        )
        return sender

    def _commit_info(self, sha: str) -> CommitInfo:
        revision = self.git.revision(sha)
        return CommitInfo(sha=revision.sha, subject=revision.subject, author=revision.author)

    def _stop_slack(self) -> None:
        # Whatever is not delivered yet stays in the outbox; the next start sends it.
        if self.outbox_sender is not None:
            self.outbox_sender.stop()

    def _git_env(self) -> dict[str, str]:
        repo = self.settings.repo
        token = self.settings.repo_token()
        askpass = write_askpass(Path(self.settings.data_dir) / "git-askpass.sh") if token else None
        return git_env(ssh_key_file=repo.ssh_key_file, askpass=askpass, username=repo.username, token=token)


def resolve_binary(binary: str, environ: dict) -> str:
    """An absolute path to Terraform (or OpenTofu), or a ConfigError that says what to install."""
    if os.sep in binary:
        path = Path(binary).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"terraform.binary: {binary} is not an executable file")
        return str(path)
    found = shutil.which(binary, path=environ.get("PATH"))
    if found is None:
        raise ConfigError(
            f"terraform.binary: {binary!r} was not found on PATH",
            hint="install Terraform or OpenTofu, or set terraform.binary to its absolute path",
        )
    return found


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


__all__ = ["App", "PassResult", "TfopsError", "resolve_binary"]
