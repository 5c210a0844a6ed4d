"""Benchmark: what deciding a new commit's deploys costs, against `git diff` alone in the same run.

A generated estate (no Terraform: the decision is measured, not the runs): N stacks of one small
`main.tf` each, the first 100 calling a shared local module. The history is the one a live estate
leaves: 100 commits, stack i last changed (and applied) at commit i % 100, a deploy run for each
and `--drift-runs` drift runs per stack, all written through tfops' own Store API.

For each size, a warm poller (it has seen the previous head) decides:
  - one stack touched: a commit that edits one stack's main.tf;
  - shared module touched: a commit that edits the module 100 stacks call;
and a freshly started poller decides the next commit (the first poll after a restart: one diff
per distinct applied commit). Decision time is the poll minus its fetch. The baseline is
`git diff --name-only` between the same two commits. Medians of `--reps` commits each.

Seeding writes with `PRAGMA synchronous = OFF`, the drift runs in one insert per stack (seeding is
not measured); the measured polls run on a store opened afresh with tfops' own settings. Usage:

    .venv/bin/python bench/bench_commit.py [--stacks 100,1000] [--reps 5] [--drift-runs 60]
    .venv/bin/python bench/bench_commit.py --stacks 5000   # seeding 300,000 runs takes minutes
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy import event, insert

from tfops.config import StackDefaults, StackEntry
from tfops.gitsource import GitSource
from tfops.models import Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.poller import RepoPoller
from tfops.scheduler import StackRegistry
from tfops.stacks import discover
from tfops.store import Store, schema

HISTORY = 100
MODULE_USERS = 100
POLL = Trigger(source=TriggerSource.POLL, actor="poll")
DRIFT = Trigger(source=TriggerSource.DRIFT_TIMER, actor="scheduler")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def stack_path(i: int) -> str:
    return f"stacks/s{i:05d}"


def stack_code(i: int, version: int) -> str:
    calls = 'module "shared" {\n  source = "../../modules/shared"\n}\n' if i < MODULE_USERS else ""
    return f"locals {{\n  version = {version}\n}}\n{calls}"


class Repo:
    """A bare remote and a working clone that commits to it."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "remote.git", root / "work"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(root, "init", "-q", "-b", "main", str(self.work))
        for key, value in (("user.name", "bench"), ("user.email", "bench@example.com")):
            git(self.work, "config", key, value)
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, message: str, files: dict[str, str], *, push: bool = True) -> str:
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        if push:
            self.push()
        return git(self.work, "rev-parse", "HEAD").strip()

    def push(self) -> None:
        git(self.work, "push", "-q", "origin", "HEAD:refs/heads/main")


@dataclass
class RecordingQueue:
    """Deploys recorded in the store as `RunQueue` records them (never run: the decision is measured)."""

    store: Store
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0  # spent writing the deploys (one store write each)

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None:
        started = time.monotonic()
        run = self.store.create_run(stack, kind, trigger, commit_sha)
        self.seconds += time.monotonic() - started
        self.runs.append(run)
        return run


def build_history(repo: Repo, size: int) -> list[str]:
    """Commit 0 holds every stack; commit k (1..99) edits the stacks i with i % 100 == k."""
    files = {f"{stack_path(i)}/main.tf": stack_code(i, 0) for i in range(size)}
    files["modules/shared/main.tf"] = 'variable "x" {\n  default = 0\n}\n'
    shas = [repo.commit("estate", files, push=False)]
    for k in range(1, HISTORY):
        edits = {f"{stack_path(i)}/main.tf": stack_code(i, k) for i in range(k, size, HISTORY)}
        shas.append(repo.commit(f"commit {k}", edits, push=False))
    repo.push()
    return shas


def seed(url: str, size: int, shas: list[str], drift_runs: int) -> None:
    store = Store(url)
    store.upgrade()
    event.listen(store.engine, "connect", lambda conn, _record: conn.execute("PRAGMA synchronous = OFF"))
    store.engine.dispose()  # reconnect with the pragma: seeding only
    names = [stack_path(i).split("/")[1] for i in range(size)]
    store.sync_stacks((name, stack_path(i)) for i, name in enumerate(names))
    for i, name in enumerate(names):
        applied = shas[i % HISTORY]  # the last commit that changed the stack
        store.create_run(name, RunKind.DEPLOY, POLL, applied, status=RunStatus.APPLIED)
        store.mark_stack_applied(name, applied)
    # The drift runs, as `create_run(..., status=NO_CHANGES)` writes them, in one transaction per
    # stack: a run a write is minutes of seeding at 5,000 stacks, and the seeding is not measured.
    template = store.create_run(names[0], RunKind.DRIFT, DRIFT, shas[0], status=RunStatus.NO_CHANGES)
    with store.engine.begin() as connection:
        for i, name in enumerate(names):
            rows = [_drift_row(template, name, shas[i % HISTORY]) for _ in range(drift_runs)]
            connection.execute(insert(schema.runs), rows)
    store.close()


def _drift_row(template: Run, stack: str, sha: str) -> dict[str, object]:
    return {
        "stack": stack,
        "kind": template.kind.value,
        "status": template.status.value,
        "trigger": template.trigger.to_dict(),
        "commit_sha": sha,
        "created_at": template.created_at,
        "started_at": template.started_at,
        "finished_at": template.finished_at,
    }


class Estate:
    def __init__(self, root: Path, size: int, drift_runs: int) -> None:
        self.root, self.size = root, size
        self.repo = Repo(root)
        started = time.monotonic()
        self.shas = build_history(self.repo, size)
        self.url = Store.sqlite_url(root / "tfops.db")
        seed(self.url, size, self.shas, drift_runs)
        took = time.monotonic() - started
        print(f"  {size} stacks: history and {size * (drift_runs + 1)} runs seeded in {took:.0f}s")
        self.store = Store(self.url)
        self.poller = self.new_poller(root / "data")
        self.poll()  # the poller has seen the head: what follows is steady state

    def new_poller(self, data: Path) -> RepoPoller:
        source = GitSource(str(self.repo.bare), "main", data / "repo")
        source.ensure_clone()
        entries = [StackEntry(discover="stacks/*")]
        registry = StackRegistry(
            discover=partial(discover, entries=entries, defaults=StackDefaults()), root=source.checkout_dir
        )
        self.fetch_seconds = 0.0
        return RepoPoller(
            git=source, store=self.store, queue=RecordingQueue(self.store), registry=registry,
            on_fetch=self._fetched,
        )  # fmt: skip

    def _fetched(self, seconds: float, *, ok: bool) -> None:
        self.fetch_seconds = seconds

    def poll(self, poller: RepoPoller | None = None) -> tuple[float, float, list[Run]]:
        """(seconds of the poll without its fetch, of which writing the deploys, the deploys)."""
        poller = poller or self.poller
        queue = poller.queue
        assert isinstance(queue, RecordingQueue)
        queue.seconds = 0.0
        started = time.monotonic()
        queued = poller.poll()
        return time.monotonic() - started - self.fetch_seconds, queue.seconds, queued

    def apply(self, runs: list[Run]) -> None:
        for run in runs:
            self.store.create_run(run.stack, RunKind.DEPLOY, POLL, run.commit_sha, status=RunStatus.APPLIED)
            self.store.mark_stack_applied(run.stack, run.commit_sha or "")

    def git_diff(self, old: str, new: str) -> float:
        started = time.monotonic()
        git(self.repo.work, "diff", "--name-only", old, new)
        return time.monotonic() - started


Row = tuple[float, float, float, int]  # poll without fetch, deploy writes, git diff, deploys


def measure(estate: Estate, reps: int, version: int) -> dict[str, list[Row]]:
    results: dict[str, list[Row]] = {"one stack": [], "shared module": [], "restart": []}
    for rep in range(reps):
        version += 1
        target = (rep * 37 + MODULE_USERS) % estate.size
        before = git(estate.repo.work, "rev-parse", "HEAD").strip()
        after = estate.repo.commit("one", {f"{stack_path(target)}/main.tf": stack_code(target, version)})
        seconds, writes, queued = estate.poll()
        results["one stack"].append((seconds, writes, estate.git_diff(before, after), len(queued)))
        estate.apply(queued)
        shared = {"modules/shared/main.tf": f'variable "x" {{\n  default = {version}\n}}\n'}
        after2 = estate.repo.commit("module", shared)
        seconds, writes, queued = estate.poll()
        results["shared module"].append((seconds, writes, estate.git_diff(after, after2), len(queued)))
        estate.apply(queued)
        # A fresh process (new poller, its own clone) at the next commit: nothing carried over.
        after3 = estate.repo.commit(
            "restart", {f"{stack_path(target)}/main.tf": stack_code(target, -version)}
        )
        fresh = estate.new_poller(estate.root / f"restart{rep}")
        seconds, writes, queued = estate.poll(fresh)
        results["restart"].append((seconds, writes, estate.git_diff(after2, after3), len(queued)))
        estate.apply(queued)
        estate.poll()  # the warm poller catches up with the head the fresh one decided
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stacks", default="100,1000", help="comma-separated estate sizes")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--drift-runs", type=int, default=60)
    args = parser.parse_args()
    header = f"{'stacks':>7} {'commit':<14} {'deploys':>7} {'poll ms':>8} {'writes ms':>9} {'decide ms':>9}"
    print(f"{header} {'git diff ms':>11} {'decide/diff':>11}")
    for size in (int(part) for part in args.stacks.split(",")):
        with tempfile.TemporaryDirectory(prefix="tfops-bench-commit-") as tmp:
            estate = Estate(Path(tmp), size, args.drift_runs)
            for scenario, rows in measure(estate, args.reps, HISTORY).items():
                poll, writes, diff = (statistics.median(row[n] for row in rows) * 1000 for n in range(3))
                decide = statistics.median((row[0] - row[1]) * 1000 for row in rows)
                deploys = statistics.median(row[3] for row in rows)
                line = f"{size:>7} {scenario:<14} {deploys:>7.0f} {poll:>8.1f} {writes:>9.1f} {decide:>9.1f}"
                print(f"{line} {diff:>11.1f} {decide / diff:>10.1f}x")
            estate.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
