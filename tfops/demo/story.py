"""`tfops demo --once`: the demo's story, unattended, with a verdict for every step.

Each step does what a person would do (push a commit, edit the cloud by hand),
lets tfops reconcile through the same pipeline as the daemon, and checks the
outcome in the store and in the cloud folder. The exit code is 0 only if every
step behaved as expected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import git

from tfops.app import App
from tfops.demo.setup import STACKS, DemoLayout
from tfops.models import DriftState, Run, RunKind, RunStatus, StackState


@dataclass
class Step:
    title: str
    ok: bool
    detail: str
    runs: list[Run] = field(default_factory=list)

    def line(self) -> str:
        mark = "PASS" if self.ok else "FAIL"
        ids = ", ".join(f"#{run.id} {run.stack} {run.kind.value} {run.status.value}" for run in self.runs)
        return f"[{mark}] {self.title}: {self.detail}" + (f"\n       runs: {ids}" if ids else "")


class Story:
    def __init__(self, layout: DemoLayout, app: App, say: Callable[[str], None]) -> None:
        self.layout = layout
        self.app = app
        self.say = say
        self.work = git.Repo(layout.work)

    def run(self) -> list[Step]:
        steps = []
        for step in (
            self.initial_apply,
            self.drift_is_reverted_under_remediate,
            self.drift_is_recorded_under_notify,
            self.pushed_change_is_applied,
            self.module_change_touches_both_callers,
            self.broken_push_fails_cleanly,
        ):
            result = step()
            self.say(result.line())
            steps.append(result)
            if not result.ok and step == self.initial_apply:
                break  # nothing later can be judged without the first apply
        return steps

    # -- the steps ---------------------------------------------------------------

    def initial_apply(self) -> Step:
        runs = self._deploys(self.app.reconcile_once().runs)
        applied = {run.stack for run in runs if run.status is RunStatus.APPLIED}
        ok = applied == set(STACKS) and self._cloud("web-config") is not None
        return Step("initial apply of every stack", ok, f"applied {sorted(applied)} of {list(STACKS)}", runs)

    def drift_is_reverted_under_remediate(self) -> Step:
        self._edit_cloud("web-replica-0", content="edited by hand in the console")
        (run,) = self.app.one_shot(RunKind.DRIFT, ["web"])
        restored = (self._cloud("web-replica-0") or {}).get("content", "")
        summary = run.summary or {}
        drifted = [attr["path"] for change in summary.get("drift", []) for attr in change["attributes"]]
        ok = run.status is RunStatus.APPLIED and "edited by hand" not in restored and "content" in drifted
        return Step(
            "drift on web (on_drift: remediate) is found and reverted", ok, f"changed: {drifted}", [run]
        )

    def drift_is_recorded_under_notify(self) -> Step:
        self._delete_cloud("api-replica-0")
        (run,) = self.app.one_shot(RunKind.DRIFT, ["api"])
        state = self._state("api").drift
        still_gone = self._cloud("api-replica-0") is None
        ok = run.status is RunStatus.PLANNED and state is DriftState.DRIFTED and still_gone
        return Step(
            "drift on api (on_drift: notify) is recorded, not reverted",
            ok,
            f"deleted object reported, stack is {state.value}",
            [run],
        )

    def pushed_change_is_applied(self) -> Step:
        sha = self._push("jobs: back up at 04:00", "stacks/jobs/main.tf", '"0 3 * * *"', '"0 4 * * *"')
        runs = self._deploys(self.app.reconcile_once().runs)
        content = (self._cloud("job-backup") or {}).get("content")
        ok = [(r.stack, r.status, r.commit_sha) for r in runs] == [("jobs", RunStatus.APPLIED, sha)]
        ok = ok and content == "schedule: 0 4 * * *"
        return Step("a pushed change is planned and applied", ok, f"job-backup is now {content!r}", runs)

    def module_change_touches_both_callers(self) -> Step:
        self._push(
            "service: tag objects with a tier",
            "service/main.tf",
            'managed_by  = "tfops"',
            'managed_by  = "tfops"\n      tier        = "demo"',
        )
        runs = self._deploys(self.app.reconcile_once().runs)
        touched = sorted(run.stack for run in runs)
        ok = touched == ["api", "web"] and all(run.status is RunStatus.APPLIED for run in runs)
        ok = ok and (self._cloud("web-config") or {}).get("tags", {}).get("tier") == "demo"
        title = "a change to the shared module deploys exactly its two callers"
        return Step(title, ok, f"deployed {touched}", runs)

    def broken_push_fails_cleanly(self) -> Step:
        before = self._cloud("job-backup")
        sha = self._push("jobs: broken HCL", "stacks/jobs/main.tf", "locals {", "locals {\n  broken =")
        runs = self._deploys(self.app.reconcile_once().runs)
        run = runs[0] if len(runs) == 1 else None
        ok = run is not None and run.status is RunStatus.FAILED and run.commit_sha == sha
        ok = ok and run is not None and "invalid Terraform configuration" in (run.error or "")
        ok = ok and self._cloud("job-backup") == before and self._state("jobs").applied_sha != sha
        first_line = (run.error or "").splitlines()[0] if run else "no run"
        return Step("broken HCL fails its run, nothing applied", ok, first_line, runs)

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _deploys(runs: list[Run]) -> list[Run]:
        return sorted((run for run in runs if run.kind is RunKind.DEPLOY), key=lambda run: run.stack)

    def _push(self, message: str, path: str, old: str, new: str) -> str:
        target = self.layout.work / path
        text = target.read_text()
        if old not in text:
            raise AssertionError(f"{path} does not contain {old!r}; was the demo edited by hand?")
        target.write_text(text.replace(old, new, 1))
        self.work.git.add(path)
        self.work.index.commit(message)
        self.work.git.push("origin", "main")
        return self.work.head.commit.hexsha

    def _cloud_path(self, name: str) -> Path:
        return self.layout.cloud / f"{name}.json"

    def _state(self, stack: str) -> StackState:
        state = self.app.store.get_stack(stack)
        if state is None:
            raise LookupError(f"the store has no record of stack {stack}")
        return state

    def _cloud(self, name: str) -> dict | None:
        path = self._cloud_path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def _edit_cloud(self, name: str, **changes) -> None:
        data = self._cloud(name) or {}
        data.update(changes)
        self._cloud_path(name).write_text(json.dumps(data, indent=2, sort_keys=True))

    def _delete_cloud(self, name: str) -> None:
        self._cloud_path(name).unlink()
