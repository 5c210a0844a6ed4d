"""A generated estate for per-commit cost scenarios: many small stacks in one commit, no Terraform.

`stacks/sNNN/main.tf` for each stack; the first `module_users` of them call `modules/shared`.
The poller runs on a real clone, a real SQLite store and a queue that records its deploys in the
store as the real one does (the deploys are never run: what is decided is what is tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness import Remote

from tfops.config import StackDefaults, StackEntry
from tfops.gitsource import GitSource
from tfops.models import Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.poller import RepoPoller
from tfops.scheduler import StackRegistry
from tfops.stacks import discover
from tfops.store import Store

SHARED_MODULE = 'module "shared" {\n  source = "../../modules/shared"\n}\n'


def stack_name(index: int) -> str:
    return f"s{index:04d}"


def stack_code(index: int, version: int = 1) -> str:
    calls = SHARED_MODULE if index < Estate.module_users_default else ""
    return f"locals {{\n  version = {version}\n}}\n{calls}"


class CountingGit(GitSource):
    """The real GitSource, counting the `git diff` processes it starts."""

    diffs = 0

    def _run(self, *args, **kwargs):
        if args and args[0] == "diff":
            self.diffs += 1
        return super()._run(*args, **kwargs)


@dataclass
class RecordingQueue:
    """A DeployQueue that records each deploy as a queued run in the store, as `RunQueue` does."""

    store: Store
    runs: list[Run] = field(default_factory=list)

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None:
        run = self.store.create_run(stack, kind, trigger, commit_sha)
        self.runs.append(run)
        return run


@dataclass
class Estate:
    module_users_default = 100

    remote: Remote
    git: CountingGit
    store: Store
    queue: RecordingQueue
    poller: RepoPoller
    registry: CountingRegistry
    size: int

    def commit(self, message: str, files: dict[str, str]) -> str:
        return self.remote.commit_and_push(message, files)

    def queued_stacks(self, runs: list[Run]) -> list[str]:
        return sorted(run.stack for run in runs)

    def restarted_poller(self) -> RepoPoller:
        """A new process's poller on the same clone, store and configuration: nothing in memory."""
        git = CountingGit(self.remote.url, "main", self.git.checkout_dir)
        registry = CountingRegistry(discover=self.registry.discover, root=git.checkout_dir)
        return RepoPoller(git=git, store=self.store, queue=self.queue, registry=registry, first_backoff=0.01)

    def apply(self, runs: list[Run]) -> None:
        """The deploys succeed: their stacks are applied at their commits."""
        for run in runs:
            _applied(self.store, run.stack, run.commit_sha or "")


class CountingRegistry(StackRegistry):
    """The real registry, counting discoveries."""

    discoveries = 0

    def refresh(self):
        self.discoveries += 1
        return super().refresh()


def _applied(store: Store, stack: str, sha: str) -> None:
    trigger = Trigger(source=TriggerSource.POLL, actor="poll")
    store.create_run(stack, RunKind.DEPLOY, trigger, sha, status=RunStatus.APPLIED)
    store.mark_stack_applied(stack, sha)


def build_estate(root: Path, size: int) -> Estate:
    """`size` stacks, all applied at the first commit (one store write each: seeding is not the test)."""
    remote = Remote(root)
    files = {f"stacks/{stack_name(i)}/main.tf": stack_code(i) for i in range(size)}
    files["modules/shared/main.tf"] = 'variable "x" {\n  default = 1\n}\n'
    first = remote.commit_and_push("estate", files)
    git = CountingGit(remote.url, "main", root / "data" / "repo")
    git.ensure_clone()
    store = Store(Store.sqlite_url(root / "tfops.db"))
    store.upgrade()
    store.sync_stacks((stack_name(i), f"stacks/{stack_name(i)}") for i in range(size))
    for i in range(size):
        store.mark_stack_applied(stack_name(i), first)
    entries = [StackEntry(discover="stacks/*")]
    registry = CountingRegistry(
        discover=partial(discover, entries=entries, defaults=StackDefaults()), root=git.checkout_dir
    )
    queue = RecordingQueue(store)
    poller = RepoPoller(git=git, store=store, queue=queue, registry=registry, first_backoff=0.01)
    return Estate(
        remote=remote, git=git, store=store, queue=queue, poller=poller, registry=registry, size=size
    )
