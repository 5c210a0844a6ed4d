"""The poller: fetch, rediscover the stacks, and queue a deploy for each stack whose code changed
since it was last applied.

It uses the queue and the stack registry through the Protocols declared here, so a queue kept in a
database can take its deploys as well as the in-process `RunQueue` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tfops.errors import GitFetchError
from tfops.gitsource import FetchResult, GitSource, fetch_with_backoff
from tfops.models import Run, RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.stacks import ModuleAwareDetector, RefusedStack, affected_stacks
from tfops.store import Store

log = logging.getLogger(__name__)

# Store meta key: the stacks refused at the head the poller last worked out, for `tfops status`.
REFUSED_STACKS_META = "refused_stacks"
# Store meta key: {"head": sha, "stacks": [names whose code at that head is their applied code]}.
HEAD_CODE_APPLIED = "head_code_applied"

# A deploy whose outcome leaves its commit's code undeployed on purpose: a later commit that does
# not touch the stack must not ask the same question again.
_DECLINED_OR_WAITING = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.REJECTED, RunStatus.EXPIRED})


class DeployQueue(Protocol):
    """Where the poller's deploys go (`RunQueue.submit`); None: not queued (coalesced, stopping)."""

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None: ...


class Stacks(Protocol):
    """The stacks at the head (`StackRegistry`): rediscovered on every fetch."""

    root: Path
    refused: tuple[RefusedStack, ...]

    def refresh(self) -> Mapping[str, Stack]: ...


class FetchTimer(Protocol):
    """Told how long each fetch took and whether it worked (`Metrics.fetch_done`)."""

    def __call__(self, seconds: float, *, ok: bool) -> None: ...


def _untimed(seconds: float, *, ok: bool) -> None:
    pass


class RepoPoller:
    """Fetch, and queue a deploy for every stack whose code moved since it was applied."""

    def __init__(
        self,
        *,
        git: GitSource,
        store: Store,
        queue: DeployQueue,
        registry: Stacks,
        fetch_attempts: int = 3,
        first_backoff: float = 2.0,
        on_fetch: FetchTimer = _untimed,
    ) -> None:
        self.on_fetch = on_fetch
        self.last_fetch_ok_at: datetime | None = None
        self.git = git
        self.store = store
        self.queue = queue
        self.registry = registry
        self.fetch_attempts = fetch_attempts
        self.first_backoff = first_backoff
        self._polling = threading.Lock()
        self.last_fetch: FetchResult | None = None
        self.last_error: str | None = None
        # The head whose deploys this process has already worked out. A poll that finds the
        # same head again has nothing new to decide: skip the per-stack checks (a git diff
        # per stack whose applied commit is behind the head) until the head moves.
        self._settled_head: str | None = None
        # The head and refusals last reported: a refused stack is logged once per head, not per poll.
        self._reported_refusals: tuple[str, tuple[RefusedStack, ...]] | None = None

    def confirm_head(self, max_age: float) -> str | None:
        """Fetch once, now, so that the recorded head is the branch's; None when it is current.

        For binding an approval: nothing is queued here (the next poll does that). When the fetch
        fails, a successful fetch younger than `max_age` seconds still counts; otherwise the
        reason the head cannot be confirmed is returned.
        """
        with self._polling:
            last_ok = self.last_fetch_ok_at
            try:
                fetched = self._fetch(attempts=1)
            except GitFetchError:
                age = (datetime.now(UTC) - last_ok).total_seconds() if last_ok else None
                if age is not None and age < max_age:
                    log.warning("fetch failed; using the head fetched %.0fs ago", age)
                    return None
                return "the branch head could not be confirmed (the Git remote did not answer)"
            self.store.set_head_all(fetched.head.sha)
            return None

    def poll(
        self, source: TriggerSource = TriggerSource.POLL, actor: str = "poll", *, note: str = ""
    ) -> list[Run]:
        """`note`: recorded on the deploys this poll queues (e.g. the webhook deliveries behind it)."""
        # The timer, a webhook and an approval (which fetches to learn the head) may poll at once.
        with self._polling:
            return self._poll(source, actor, note)

    def _fetch(self, *, attempts: int) -> FetchResult:
        """Fetch (cloning first if an earlier start could not), and record how it went."""
        started = time.monotonic()
        try:
            if not self.git.has_clone():
                self.git.ensure_clone()  # the remote was unreachable when the daemon started
            fetched = fetch_with_backoff(self.git, attempts=attempts, first_delay=self.first_backoff)
        except GitFetchError as exc:
            self.on_fetch(time.monotonic() - started, ok=False)
            self.last_error = str(exc)
            self.store.set_meta("last_fetch_error", {"at": _now(), "error": str(exc)})
            log.error("fetch failed; nothing new is planned until it succeeds: %s", exc)
            raise
        self.on_fetch(time.monotonic() - started, ok=True)
        self.last_fetch, self.last_error = fetched, None
        self.last_fetch_ok_at = datetime.now(UTC)
        self.store.set_meta("last_fetch", {"at": _now(), "sha": fetched.head.sha, "forced": fetched.forced})
        return fetched

    def _poll(self, source: TriggerSource, actor: str, note: str) -> list[Run]:
        fetched = self._fetch(attempts=self.fetch_attempts)
        stacks = self.registry.refresh()
        self.store.sync_stacks((stack.name, stack.path) for stack in stacks.values())
        self.store.set_head_all(fetched.head.sha)
        self._report_refusals(fetched.head.sha)
        if fetched.head.sha == self._settled_head:
            return []
        queued = self.queue_deploys(stacks.values(), fetched, source=source, actor=actor, note=note)
        self._settled_head = fetched.head.sha
        return queued

    def _report_refusals(self, head: str) -> None:
        """Log each refused stack at ERROR once per head, and record them for `tfops status`."""
        refused = self.registry.refused
        if self._reported_refusals == (head, refused):
            return
        previous = self._reported_refusals
        self._reported_refusals = (head, refused)
        self.store.set_meta(
            REFUSED_STACKS_META,
            {"head": head, "at": _now(), "stacks": [item.to_dict() for item in refused]},
        )
        for item in refused:
            log.error("%s; not planned at %s (the other stacks are)\n  hint: %s", item, head[:10], item.hint)
        if not refused and previous is not None and previous[1]:
            log.info("no stack is refused at %s any more", head[:10])

    def queue_deploys(
        self,
        stacks: Iterable[Stack],
        fetched: FetchResult,
        *,
        source: TriggerSource,
        actor: str,
        note: str = "",
    ) -> list[Run]:
        head = fetched.head.sha
        queued = []
        changes = _ChangesSince(self.git, ModuleAwareDetector(self.registry.root), head)
        ordered = sorted(stacks, key=lambda s: s.name)
        for stack in ordered:
            reason = self._deploy_reason(stack, head, changes)
            if reason is None:
                continue
            state = self.store.get_stack(stack.name)
            trigger = Trigger(
                source=source,
                actor=actor,
                previous_sha=state.applied_sha if state else None,
                forced=fetched.forced,
                note=f"{reason}; {note}" if note else reason,
            )
            run = self.queue.submit(stack.name, RunKind.DEPLOY, trigger, head)
            if run is not None:
                queued.append(run)
        self._record_head_code(ordered, head, changes)
        return queued

    def _record_head_code(self, stacks: Iterable[Stack], head: str, changes: _ChangesSince) -> None:
        """Which stacks' code at `head` is the code they were last applied with (no change since
        the applied commit touches them: a revert, or commits to other stacks), so `tfops status`
        can say "in sync" without a git diff of its own. One record per head."""
        applied = []
        for stack in stacks:
            state = self.store.get_stack(stack.name)
            if state is None or state.applied_sha is None:
                continue
            if state.applied_sha == head or not changes.touch(stack, state.applied_sha):
                applied.append(stack.name)
        self.store.set_meta(HEAD_CODE_APPLIED, {"head": head, "stacks": sorted(applied)})

    def _deploy_reason(self, stack: Stack, head: str, changes: _ChangesSince) -> str | None:
        """Why `stack` needs a deploy at `head`, or None. Each rule says why not."""
        last = _last_deploy(self.store, stack.name)
        if last is not None and last.commit_sha == head and last.status is RunStatus.SUPERSEDED:
            # Its re-plan never came (the daemon was stopping): this commit is not dealt with yet.
            return f"the plan of {head[:10]} was superseded and not made again"
        if last is not None and last.commit_sha == head:
            return None  # this commit was already taken up for this stack (whatever its outcome)
        if last is not None and last.commit_sha is not None and last.status in _DECLINED_OR_WAITING:
            if not changes.touch(stack, last.commit_sha):
                return None  # the stack's code is what was asked about (and is awaiting or declined)
            return f"changed since {last.commit_sha[:10]} ({last.status.value})"
        state = self.store.get_stack(stack.name)
        if state is None or state.applied_sha is None:
            return "never applied by tfops"
        if state.applied_sha == head:
            return None
        if not changes.touch(stack, state.applied_sha):
            return None
        return f"changed since {state.applied_sha[:10]}"


class _ChangesSince:
    """Does any commit after `since` up to `head` touch a stack? One git diff per distinct `since`
    and one answer per (stack, since) for the whole poll: deciding the deploys and recording which
    stacks' head code is applied ask the same questions. Unknown history counts as a change."""

    def __init__(self, git: GitSource, detector: ModuleAwareDetector, head: str) -> None:
        self.git, self.detector, self.head = git, detector, head
        self._diffs: dict[str, frozenset[str] | None] = {}
        self._answers: dict[tuple[str, str], bool] = {}

    def touch(self, stack: Stack, since: str) -> bool:
        key = (stack.name, since)
        if key not in self._answers:
            if since not in self._diffs:
                self._diffs[since] = self.git.changed_paths(since, self.head)
            changed = self._diffs[since]
            self._answers[key] = changed is None or bool(affected_stacks([stack], changed, self.detector))
        return self._answers[key]


def _last_deploy(store: Store, stack: str) -> Run | None:
    # However many drift checks and plans came since: one query, not a window of recent runs.
    return store.last_run(stack, kinds={RunKind.DEPLOY})


def _now() -> str:
    return datetime.now(UTC).isoformat()
