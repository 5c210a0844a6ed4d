"""Composition root: builds every part from the settings and wires them together.

Nothing else in tfops constructs a store, a Git source or a runner; tests build an
`App` from a settings object exactly as the CLI does.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import signal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

from fastapi import APIRouter
from slack_sdk import WebClient

from tfops import orphans
from tfops.approvals import Answer, ApprovalDesk, DecisionRequest, Verdict
from tfops.config import Settings, check_serving, check_slack_channel, http_needs
from tfops.errors import ConfigError, GitFetchError, TfopsError, UnknownStackError
from tfops.gitsource import GitSource, git_env, write_askpass
from tfops.logs import hold_secrets
from tfops.metrics import Metrics, metrics_router
from tfops.models import FAILURE_STATUSES, IN_FLIGHT_STATUSES, Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier, Notifier
from tfops.notify.blocks import CommitInfo
from tfops.notify.console import LogNotifier
from tfops.notify.directory import SlackDirectory
from tfops.notify.interactions import SlackInteractions
from tfops.notify.slack import OutboxSender, SlackNotifier, web_client
from tfops.notify.slack_render import RunRenderer
from tfops.notify.socket_mode import SocketModeTransport
from tfops.observe import RunMetrics, readiness_facts, snapshot_of
from tfops.reconcile import Reconciler, ReconcileSettings, Transitions
from tfops.scheduler import RepoPoller, RunQueue, Scheduler, StackRegistry, queue_drift_check
from tfops.secrets import held_secrets
from tfops.stacks import RefusedStack, discover
from tfops.store import Store
from tfops.terraform.runner import RunnerSettings, TerraformRunner, tf_data_dir
from tfops.triggers import FetchSoon, describe_hints
from tfops.web.api import ApiToken, api_router
from tfops.web.app import create_app
from tfops.web.health import health_router
from tfops.web.server import HttpOptions, WebServer
from tfops.web.slack import slack_router
from tfops.web.webhooks import RepoMatch, WebhookSecrets, webhook_router

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# What a run cut off by a crash says; a person decides whether to run it again.
CRASH_REASON = (
    "the previous tfops process stopped during this run (crash or kill); review the log before re-running"
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
        if RunStatus.PLANNED in statuses or RunStatus.AWAITING_APPROVAL in statuses:
            return 2
        return 0


class App:
    def __init__(
        self, settings: Settings, *, notifiers: Iterable[Notifier] = (), environ: dict | None = None
    ) -> None:
        self.settings = settings
        environ = dict(os.environ if environ is None else environ)
        # Everything that can refuse the configuration comes before the store: a ConfigError
        # leaves no database behind and nothing open. `tfops check-config` runs the same checks.
        self.binary = preflight(settings, environ)
        repo_url = settings.require_repo_url()
        self.slack_client = self._slack_client()
        # What tfops read as a secret never leaves the host: runs, logs, store, Slack and the API.
        self.held_secrets = held_secrets(settings)
        hold_secrets(self.held_secrets)
        for directory in (
            settings.data_dir,
            settings.runs_dir,
            settings.stacks_dir,
            settings.plugin_cache_dir,
        ):
            # Plans and state hold secrets in clear: only tfops' own user may read them.
            Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        git_env = self._git_env()  # reads the Git token, and writes the askpass helper into data_dir
        self.store = Store(settings.store_url)
        try:
            self.store.upgrade()
            self._wire(settings, environ, notifiers, repo_url, git_env)
        except BaseException:
            self.store.close()  # a half-built App is never returned: it must not hold the database
            raise

    def _wire(
        self,
        settings: Settings,
        environ: dict,
        notifiers: Iterable[Notifier],
        repo_url: str,
        git_env: dict[str, str],
    ) -> None:
        """Build and connect the parts, once the configuration was accepted and the store is open."""
        self.git = GitSource(
            repo_url,
            settings.repo.branch,
            settings.checkout_dir,
            env=git_env,
            inherit=environ,
            fetch_timeout=settings.repo.fetch_timeout,
        )
        # The state gauges read the queue and the store, built below; the lambda defers to them.
        self.metrics = Metrics(snapshot=lambda: self._snapshot())
        self.notifier = MultiNotifier(LogNotifier(), *notifiers)
        self.registry = StackRegistry(
            discover=lambda root: discover(root, settings.stacks, settings.defaults),
            root=settings.checkout_dir,
        )
        self.outbox_sender = self._slack_delivery()
        self.transitions = Transitions(self.store, self.notifier, settings.runs_dir)
        self.runner = TerraformRunner(
            RunnerSettings(
                binary=self.binary,
                cli_config=settings.terraform.cli_config,
                plugin_cache_dir=settings.plugin_cache_dir,
                lock_timeout=settings.terraform.lock_timeout,
                stop_grace=settings.terraform.stop_grace,
                passthrough=tuple(settings.terraform.env_passthrough),
                inherit=environ,
            ),
            on_group=self._record_group,
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
                held_secrets=self.held_secrets,
            ),
            on_stale_plan=self._replan,
        )
        self.run_metrics = RunMetrics(self.metrics, self.store, self.reconciler.is_executing)
        self.reconciler.on_finished = self.run_metrics.run_finished
        self.notifier.add(self.run_metrics)
        self.queue = RunQueue(
            self.store, self.transitions, self.reconciler.execute, settings.terraform.max_parallel
        )
        self.poller = RepoPoller(
            git=self.git,
            store=self.store,
            queue=self.queue,
            registry=self.registry,
            on_fetch=lambda seconds, ok: self.metrics.fetch_done(seconds, ok=ok),
        )
        self.reconciler.confirm_head = self._confirm_head  # the worker fetches before it applies
        self.desk = ApprovalDesk(
            store=self.store,
            transitions=self.transitions,
            stacks=self.registry.current,
            binding=self.reconciler,
            directory=(
                SlackDirectory(self.slack_client, ttl=settings.slack.usergroup_cache)
                if self.slack_client is not None
                else None
            ),
            start_apply=lambda run: self.queue.resume([run]),
            replan=self._replan,
            confirm_head=self._confirm_head,
        )
        self.interactions = (
            SlackInteractions(self.desk, self.store, on_enqueue=self.outbox_sender.wake)
            if self.outbox_sender is not None
            else None
        )
        self.scheduler = Scheduler(
            poller=self.poller,
            queue=self.queue,
            registry=self.registry,
            store=self.store,
            poll_interval=settings.repo.poll_interval,
            housekeeping=self._housekeeping,
        )
        self._owner_lock: TextIO | None = None
        self._recovered = False
        self._snapshot = snapshot_of(self.store, self.queue, slack_on=self.outbox_sender is not None)
        self.fetch_soon = FetchSoon(self._fetch_for_webhooks, window=settings.webhooks.debounce)
        self.started_at = datetime.now(UTC)
        # Built by `serve` (`build_listeners`): one-shot commands need neither, nor their secrets.
        self.socket_mode: SocketModeTransport | None = None
        self.web_server: WebServer | None = None

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
        approved ones go on to their (re-checked) apply.

        Only when no other tfops process works on this data directory: a `tfops plan` next to a
        running daemon must not take the daemon's runs for crashed ones.
        """
        if not self._claim_recovery():
            log.info("another tfops process works on %s; its runs are left to it", self.settings.data_dir)
            return
        self._recovered = True
        cut_off = self.store.runs_with_status(IN_FLIGHT_STATUSES - {RunStatus.APPROVED})
        # First: an orphaned apply must stop before the queue may start another on its stack.
        notes = self._end_orphaned_terraform(cut_off)
        for run in cut_off:
            log.warning("run %s (%s) was cut off while %s", run.id, run.stack, run.status.value)
            note = notes.get(run.id)
            self.transitions.mark_interrupted(run, f"{CRASH_REASON}; {note}" if note else CRASH_REASON)
        pending = self.store.runs_with_status({RunStatus.QUEUED, RunStatus.APPROVED})
        if pending:
            self.registry.refresh()
            self.queue.resume(pending)

    def _end_orphaned_terraform(self, runs: list[Run]) -> dict[int, str]:
        """End what is left of the cut-off runs' Terraform (SIGINT, grace, SIGKILL); say what was done."""
        found: dict[int, orphans.Orphan] = {}
        for run in runs:
            group = self.store.run_process_group(run.id)
            if group is not None:
                # Terraform passes TF_DATA_DIR (set by the runner) to its providers and local-exec.
                data_dir = tf_data_dir(Path(self.settings.stacks_dir) / run.stack).absolute()
                found[run.id] = orphans.Orphan(orphans.GroupRecord(*group), f"TF_DATA_DIR={data_dir}")
        grace = self.settings.terraform.stop_grace
        endings = orphans.end_orphans(list(found.values()), grace)
        notes = {}
        for (run_id, orphan), ending in zip(found.items(), endings, strict=True):
            self.store.set_run_process_group(run_id, None, None)
            if ending is orphans.Ending.GONE:
                continue  # nothing was left to do: the crash reason alone says it all
            notes[run_id] = orphans.describe(orphan.record.pgid, ending, grace)
            log.warning("run %s: %s", run_id, notes[run_id])
        return notes

    def _record_group(self, run_id: int, record: orphans.GroupRecord | None) -> None:
        if record is None:
            self.store.set_run_process_group(run_id, None, None)
        else:
            self.store.set_run_process_group(run_id, record.pgid, record.leader)

    def _claim_recovery(self) -> bool:
        """Exclusive while recovering, then shared for this process's life (released by exit)."""
        if self._owner_lock is None:
            self._owner_lock = open(Path(self.settings.data_dir) / "owner.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._owner_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._owner_lock, fcntl.LOCK_SH)
            return False
        fcntl.flock(self._owner_lock, fcntl.LOCK_SH)  # held for life: later processes leave us be
        return True

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
        return answer, self.store.get_run(request.run_id)

    # -- the daemon --------------------------------------------------------------

    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.build_listeners()  # first: a missing secret stops the start before anything is done
        self._install_signal_handlers(stop)
        try:
            # The port first: if it is taken, nothing has been resumed or started yet.
            if self.web_server is not None:
                self.web_server.start()
            self._start_work()
            self.scheduler.start()
            self._start_listening()
        except BaseException:
            self.shutdown()
            raise
        log.info(
            "tfops serving %s@%s: poll every %.0fs, at most %d runs at once",
            self.git.url if "@" not in self.git.url else "(repo)",
            self.settings.repo.branch,
            self.settings.repo.poll_interval,
            self.settings.terraform.max_parallel,
        )
        stop.wait()
        self.shutdown()

    def _start_work(self) -> None:
        try:
            self.start()
        except TfopsError as exc:
            # An unreachable remote or a stack path missing at the head is not fatal at start:
            # the poll job keeps trying and reports it.
            log.error("%s", exc)

    def _housekeeping(self) -> None:
        self.desk.expire_due()
        if not self._recovered:
            self.recover()  # another process held the data directory at start; try again

    def _confirm_head(self) -> str | None:
        return self.poller.confirm_head(max_age=2 * self.settings.repo.poll_interval)

    def shutdown(self) -> None:
        log.info("stopping: no new runs; running Terraform gets one SIGINT and time to write state")
        self._stop_listening()
        self.scheduler.stop()
        self.queue.shutdown(wait=self.settings.terraform.stop_grace + 15)
        self._stop_slack()
        self.git.close()
        self.store.close()
        self._release_owner_lock()
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
            deploys = self.poller.poll(source=TriggerSource.RECONCILE, actor=local_user())
        except GitFetchError as exc:
            return PassResult(runs=[], fetch_error=str(exc))
        self.queue.wait_idle(timeout)
        drifts = [
            run
            for name in sorted(self.registry.current())
            if (run := self._queue_drift(name, TriggerSource.RECONCILE)) is not None
        ]
        self.queue.wait_idle(timeout)
        runs = [self.store.get_run(run.id) or run for run in [*deploys, *drifts]]
        return PassResult(runs=runs, refused=self.registry.refused)

    def one_shot(self, kind: RunKind, stacks: list[str] | None, *, timeout: float | None = None) -> list[Run]:
        """`tfops plan` / `tfops drift`: fetch, queue, wait, return the finished runs."""
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
                head = _needed(self._head_of(name), f"the head commit of stack {name}")
                run = self.queue.submit(
                    name, kind, Trigger(source=TriggerSource.CLI, actor=local_user()), head
                )
            if run is not None:
                runs.append(run)
        self.queue.wait_idle(timeout)
        return [self.store.get_run(run.id) or run for run in runs]

    def close(self) -> None:
        self._stop_listening()
        self.queue.shutdown(wait=self.settings.terraform.stop_grace + 15)
        self._stop_slack()
        self.git.close()
        self.store.close()
        self._release_owner_lock()

    # -- internals ---------------------------------------------------------------

    def _queue_drift(self, stack: str, source: TriggerSource) -> Run | None:
        return queue_drift_check(self.store, self.queue, stack, source=source, actor=local_user())

    def _replan(self, run: Run) -> None:
        """A stale saved plan is never retried as is: a fresh plan of the branch head is queued."""
        trigger = Trigger(
            source=run.trigger.source, actor="tfops", note=f"re-plan after stale plan in run {run.id}"
        )
        head = self._head_of(run.stack) or run.commit_sha
        if head is None:
            log.error(
                "run %s: no commit is known for %s; the re-plan waits for the next poll", run.id, run.stack
            )
            return
        self.queue.submit(run.stack, run.kind, trigger, head)

    def _head_of(self, stack: str) -> str | None:
        state = self.store.get_stack(stack)
        return state.head_sha if state is not None else None

    def _slack_client(self) -> WebClient | None:
        slack = self.settings.slack
        if not slack.enabled:
            return None  # (a channel and a token were required by `preflight`)
        return web_client(
            _needed(self.settings.slack_token(), "slack.bot_token"), slack.base_url, slack.timeout
        )

    def _slack_delivery(self) -> OutboxSender | None:
        """When Slack is configured: a notifier that fills the outbox, and the sender that empties it."""
        if self.slack_client is None:
            return None
        slack = self.settings.slack
        # Rendering and commit lookups happen in the sender: a status change only enqueues a record.
        renderer = RunRenderer(
            self.store,
            commit_info=self._commit_info,
            stack_for=lambda name: self.registry.current().get(name),
            mention=slack.mention,
        )
        sender = OutboxSender(
            self.store, self.slack_client, renderer=renderer, on_failed=self.metrics.slack_delivery_failed
        )
        self.notifier.add(SlackNotifier(self.store, slack.channel_for, on_enqueue=sender.wake))
        return sender

    def build_listeners(self) -> None:
        """The Socket Mode connection and the HTTP server, as configured, not started yet."""
        check_serving(self.settings)
        self.socket_mode = self._socket_mode()
        self.web_server = self._web_server()

    def _socket_mode(self) -> SocketModeTransport | None:
        slack = self.settings.slack
        if self.interactions is None or slack.mode != "socket" or not slack.interactive:
            return None
        return SocketModeTransport(
            _needed(self.settings.slack_app_token(), "slack.app_token"),
            self.interactions,
            base_url=slack.base_url,
            timeout=slack.timeout,
        )

    def _web_server(self) -> WebServer | None:
        """The HTTP server, when `http.listen` is set: health, metrics, and what is configured of
        Slack's HTTP mode, the webhooks and the API."""
        http, settings = self.settings.http, self.settings
        if not http.listen:
            return None
        facts = readiness_facts(
            self.store,
            self.scheduler,
            self.poller,
            poll_interval=settings.repo.poll_interval,
            started_at=self.started_at,
        )
        routers = [health_router(facts), metrics_router(self.metrics), *self._optional_routers()]
        options = HttpOptions.from_listen(http.listen, tls_cert=http.tls_cert, tls_key=http.tls_key)
        return WebServer(create_app(routers, max_body=http.max_body), options)

    def _optional_routers(self) -> list[APIRouter]:
        settings, needs, routers = self.settings, http_needs(self.settings), []
        if "slack.mode http" in needs and self.interactions is not None:
            secret = _needed(settings.slack_signing_secret(), "slack.signing_secret")
            routers.append(slack_router(secret, self.interactions))
        if "webhooks" in needs:
            secrets = WebhookSecrets(
                **{source: settings.webhook_secret(source) for source in settings.webhooks.sources}
            )
            names = [settings.webhooks.repository] if settings.webhooks.repository else []
            repo = RepoMatch.from_remote(settings.require_repo_url(), settings.repo.branch, *names)
            routers.append(
                webhook_router(secrets, repo, self.fetch_soon, on_delivery=self.metrics.webhook_delivery)
            )
            self.metrics.webhook_sources(settings.webhooks.sources)
        if "api.tokens" in needs:
            tokens = [ApiToken(name, token, scope) for name, token, scope in settings.api_tokens()]
            routers.append(
                api_router(
                    store=self.store,
                    stacks=self.registry.current,
                    queue_run=self._queue_for_api,
                    tokens=tokens,
                    next_check=self.scheduler.next_drift_check,
                    scrub=self._hide_host_paths,
                )
            )
        return routers

    def _hide_host_paths(self, text: str) -> str:
        """Errors quote commands with paths under the data directory: host details, not API data."""
        return text.replace(str(self.settings.data_dir), "<data_dir>")

    def _fetch_for_webhooks(self, hints) -> None:
        self.poller.poll(source=TriggerSource.WEBHOOK, actor=hints[-1].source, note=describe_hints(hints))

    def _queue_for_api(self, stack: str, kind: RunKind, actor: str) -> Run | None:
        if kind is RunKind.DRIFT:
            return queue_drift_check(self.store, self.queue, stack, source=TriggerSource.API, actor=actor)
        state = self.store.get_stack(stack)
        if state is None or state.head_sha is None:
            return None
        return self.queue.submit(stack, kind, Trigger(source=TriggerSource.API, actor=actor), state.head_sha)

    def _start_listening(self) -> None:
        self.fetch_soon.start()
        if self.socket_mode is not None:
            self.socket_mode.start()

    def _stop_listening(self) -> None:
        # First: no new clicks while the rest stops.
        if self.socket_mode is not None:
            self.socket_mode.stop()
        if self.web_server is not None:
            self.web_server.stop()
        self.fetch_soon.stop()

    def _commit_info(self, sha: str) -> CommitInfo:
        revision = self.git.revision(sha)
        return CommitInfo(sha=revision.sha, subject=revision.subject, author=revision.author)

    def _stop_slack(self) -> None:
        # Decisions in hand are finished first (they enqueue answers); whatever is not delivered
        # yet stays in the outbox, and the next start sends it.
        if self.interactions is not None:
            self.interactions.close()
        if self.outbox_sender is not None:
            self.outbox_sender.stop()

    def _release_owner_lock(self) -> None:
        if self._owner_lock is not None:
            self._owner_lock.close()  # closing the file releases its flock
            self._owner_lock = None

    def _git_env(self) -> dict[str, str]:
        repo = self.settings.repo
        token = self.settings.repo_token()
        askpass = write_askpass(Path(self.settings.data_dir) / "git-askpass.sh") if token else None
        return git_env(ssh_key_file=repo.ssh_key_file, askpass=askpass, username=repo.username, token=token)


def preflight(settings: Settings, environ: Mapping[str, str]) -> str:
    """The checks every App makes before it opens anything: the Terraform binary, the repository,
    its credentials and Slack's. Returns the binary's path. ConfigError names the field."""
    binary = resolve_binary(settings.terraform.binary, dict(environ))
    settings.require_repo_url()
    settings.repo_token()
    check_slack_channel(settings)
    if settings.slack.enabled:
        settings.slack_token()
    return binary


def check_startable(settings: Settings, environ: Mapping[str, str]) -> str:
    """Everything `tfops serve` checks before it starts (`App`, then `build_listeners`), for
    `tfops check-config`: its exit 0 means the daemon will start. Returns the binary's path."""
    binary = preflight(settings, environ)
    check_serving(settings)
    return binary


def _needed(value: _T | None, what: str) -> _T:
    """A value the configuration checks (`preflight`, `check_serving`) already required."""
    if value is None:
        raise ConfigError(f"{what}: not set", hint="run tfops check-config")
    return value


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


def local_user() -> str:
    """The account running this process, from its uid: unlike $USER or $LOGNAME, not a claim."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


__all__ = ["App", "PassResult", "TfopsError", "check_startable", "preflight", "resolve_binary"]
