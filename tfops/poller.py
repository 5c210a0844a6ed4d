"""The poller: fetch, rediscover the stacks, and queue a deploy for each stack whose code changed
since it was last applied.

What one new commit costs follows the commit, not the estate: discovery runs again only when the
commit changes the tree's shape (folders, files or symlinks that come or go), the store is read in
one query for every stack (`Store.deploy_facts`), and which stacks the commit touches comes from
one diff against the previous head (`tfops.changeindex.ChangeTracker`).

Locks: polls run one at a time (`_polling`). Confirming the head (an approval click, an apply, the
API) never waits for a poll: it fetches without moving the checkout the poll reads, and shares with
the poll only `_recording`, held for the one store write of the head.

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

from tfops.changeindex import ChangeTracker, stacks_layout
from tfops.errors import GitFetchError
from tfops.gitsource import FetchResult, GitSource, fetch_with_backoff
from tfops.models import Run, RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.ordering import ancestors, topological
from tfops.stacks import RefusedStack
from tfops.store import Store
from tfops.store.deploys import DeployFacts, DeploySnapshot

log = logging.getLogger(__name__)

# Store meta key: the stacks refused at the head the poller last worked out, for `tfops status`.
REFUSED_STACKS_META = "refused_stacks"
# Store meta key: {"head": sha, "stacks": [names whose code at that head is their applied code]}.
HEAD_CODE_APPLIED = "head_code_applied"

# A deploy whose outcome leaves its commit's code undeployed on purpose: a later commit that does
# not touch the stack must not ask the same question again (a guard's block included: its
# answer is `tfops deploy STACK --allow-destroy`, or a commit that changes the stack).
_DECLINED_OR_WAITING = frozenset(
    {
        RunStatus.AWAITING_APPROVAL,
        RunStatus.AWAITING_WINDOW,
        RunStatus.REJECTED,
        RunStatus.EXPIRED,
        RunStatus.BLOCKED,
    }
)


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
        self._polling = threading.Lock()  # one poll at a time: the timer's, a webhook's
        # Held only to write the head to the store: the newest fetch's head wins, whichever
        # thread gets there first. `confirm_head` waits on nothing else of a poll.
        self._recording = threading.Lock()
        self._recorded: FetchResult | None = None
        # The head the stacks were last discovered at, and those stacks (sorted by name).
        self._discovered: tuple[str, tuple[Stack, ...]] | None = None
        self._changes: ChangeTracker | None = None
        self._deploys: DeploySnapshot | None = None  # the store's deploy facts, read on from here
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
        # Not under `_polling`: a poll deciding thousands of stacks must not hold up an approval.
        # The fetch leaves the checkout alone (the poll may be reading it); the next poll moves it.
        last_ok = self.last_fetch_ok_at
        try:
            fetched = self._fetch(attempts=1, checkout=False)
        except GitFetchError:
            age = (datetime.now(UTC) - last_ok).total_seconds() if last_ok else None
            if age is not None and age < max_age:
                log.warning("fetch failed; using the head fetched %.0fs ago", age)
                return None
            return "the branch head could not be confirmed (the Git remote did not answer)"
        self._record_head(fetched)
        return None

    def poll(
        self, source: TriggerSource = TriggerSource.POLL, actor: str = "poll", *, note: str = ""
    ) -> list[Run]:
        """`note`: recorded on the deploys this poll queues (e.g. the webhook deliveries behind it)."""
        # The timer, a webhook and an approval (which fetches to learn the head) may poll at once.
        with self._polling:
            return self._poll(source, actor, note)

    def _fetch(self, *, attempts: int, checkout: bool = True) -> FetchResult:
        """Fetch (cloning first if an earlier start could not), and record how it went."""
        started = time.monotonic()
        try:
            if not self.git.has_clone():
                self.git.ensure_clone()  # the remote was unreachable when the daemon started
            if checkout:
                fetched = fetch_with_backoff(self.git, attempts=attempts, first_delay=self.first_backoff)
            else:
                fetched = self.git.fetch(checkout=False)
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
        stacks = self._discover(fetched.head.sha)
        self._record_head(fetched)
        self._report_refusals(fetched.head.sha)
        if fetched.head.sha == self._settled_head:
            return []
        queued = self.queue_deploys(stacks, fetched, source=source, actor=actor, note=note)
        self._settled_head = fetched.head.sha
        return queued

    def _discover(self, head: str) -> tuple[Stack, ...]:
        """The stacks at `head`: discovered again only when the tree's shape changed since the last
        discovery (a commit that only edits files finds the same folders, files and symlinks)."""
        if self._discovered is not None:
            seen_at, stacks = self._discovered
            changes = None if seen_at == head else self.git.tree_changes(seen_at, head)
            if seen_at == head or (changes is not None and changes.contents_only):
                self._discovered = (head, stacks)
                return stacks
        found = self.registry.refresh()
        stacks = tuple(found[name] for name in sorted(found))
        self.store.sync_stacks((stack.name, stack.path) for stack in stacks)
        self._discovered = (head, stacks)
        return stacks

    def _record_head(self, fetched: FetchResult) -> None:
        """Write the newest fetched head to every stack (a slower thread's older one never wins)."""
        with self._recording:
            if self._recorded is None or fetched.generation >= self._recorded.generation:
                self._recorded = fetched
            self.store.set_head_all(self._recorded.head.sha)

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
        ordered = sorted(stacks, key=lambda s: s.name)
        if self._changes is None:
            self._changes = ChangeTracker(self.registry.root)
            self._changes.resume(self.store.get_meta(HEAD_CODE_APPLIED), ordered)
        changes = _ChangesSince(self.git, self._changes, ordered, head)
        # Every stack's facts in one read, of what changed since the last one (not per stack).
        facts = self._deploys = self.store.deploy_facts(self._deploys)
        again = _AfterUpstreams(ordered, head)
        for stack in again.order:  # the queue holds a deploy behind its upstreams'
            known = facts.get(stack.name)
            reason = self._deploy_reason(stack, head, changes, known) or again.reason(stack, known)
            if reason is None:
                continue
            trigger = Trigger(
                source=source,
                actor=actor,
                previous_sha=known.applied_sha,
                forced=fetched.forced,
                note=f"{reason}; {note}" if note else reason,
            )
            run = self.queue.submit(stack.name, RunKind.DEPLOY, trigger, head)
            if run is not None:
                queued.append(run)
                again.queued.add(stack.name)
        self._record_head_code(ordered, head, changes, facts)
        return queued

    def _record_head_code(
        self, stacks: Iterable[Stack], head: str, changes: _ChangesSince, facts: DeploySnapshot
    ) -> None:
        """Which stacks' code at `head` is the code they were last applied with (no change since
        the applied commit touches them: a revert, or commits to other stacks), so `tfops status`
        can say "in sync" without a git diff of its own. One record per head."""
        applied: dict[str, list[str]] = {}  # applied commit -> the stacks whose code at head is its
        for stack in stacks:
            applied_sha = facts.get(stack.name).applied_sha
            if applied_sha is None:
                continue
            if applied_sha == head or not changes.touch(stack, applied_sha):
                applied.setdefault(applied_sha, []).append(stack.name)
        names = sorted(name for group in applied.values() for name in group)
        # `applied_at` and `layout` let the next process start from these answers (one diff from
        # this head, not one per applied commit): see ChangeTracker.resume.
        record = {"head": head, "stacks": names, "applied_at": applied, "layout": stacks_layout(stacks)}
        self.store.set_meta(HEAD_CODE_APPLIED, record)

    def _deploy_reason(
        self, stack: Stack, head: str, changes: _ChangesSince, known: DeployFacts
    ) -> str | None:
        """Why `stack` needs a deploy at `head`, or None. Each rule says why not. `known`: the
        stack's applied commit and newest deploy run, however many drift checks came since."""
        last_sha, last_status = known.last_deploy_sha, known.last_deploy_status
        if last_status is not None and last_sha == head and last_status is RunStatus.SUPERSEDED:
            # Its re-plan never came (the daemon was stopping): this commit is not dealt with yet.
            return f"the plan of {head[:10]} was superseded and not made again"
        if last_status is not None and last_sha == head:
            return None  # this commit was already taken up for this stack (whatever its outcome)
        if last_sha is not None and last_status in _DECLINED_OR_WAITING:
            assert last_status is not None
            if not changes.touch(stack, last_sha):
                return None  # the stack's code is what was asked about (and is awaiting or declined)
            return f"changed since {last_sha[:10]} ({last_status.value})"
        if known.applied_sha is None:
            return "never applied by tfops"
        if known.applied_sha == head:
            return None
        if not changes.touch(stack, known.applied_sha):
            return None
        return f"changed since {known.applied_sha[:10]}"


class _AfterUpstreams:
    """`depends_on` in one poll: the stacks upstreams first (the queue finds an upstream's deploy
    there when it looks whether a downstream may go), and a second chance for a stack whose last
    deploy was blocked (by its upstream, or a guard) once one of its upstreams deploys again."""

    def __init__(self, stacks: list[Stack], head: str) -> None:
        self.head = head
        self.queued: set[str] = set()
        self.graph = {stack.name: stack.depends_on for stack in stacks if stack.depends_on}
        by_name = {stack.name: stack for stack in stacks}
        self.order = [by_name[name] for name in topological(self.graph, by_name)] if self.graph else stacks

    def reason(self, stack: Stack, known: DeployFacts) -> str | None:
        if stack.name not in self.graph or known.last_deploy_status is not RunStatus.BLOCKED:
            return None
        if known.last_deploy_sha == self.head:
            return None
        moved = [name for name in ancestors(self.graph, stack.name) if name in self.queued]
        return f"upstream {moved[0]} deploys {self.head[:10]}; the last deploy was blocked" if moved else None


class _ChangesSince:
    """One poll's view of the tracker: the Git source the poller holds now, and the head."""

    def __init__(self, git: GitSource, tracker: ChangeTracker, stacks: list[Stack], head: str) -> None:
        self.git, self.tracker = git, tracker
        tracker.advance(git, stacks, head)

    def touch(self, stack: Stack, since: str) -> bool:
        return self.tracker.touch(self.git, stack, since)


def _now() -> str:
    return datetime.now(UTC).isoformat()
