"""The Git edge and the clock: an unreachable remote, and drift checks fired by the scheduler."""

from __future__ import annotations

import pytest
from harness import Remote, demo_stack, edit_cloud_object, make_app, tfops_cli, wait_for, write_config

from tfops.errors import GitFetchError
from tfops.models import DriftState, RunKind, RunStatus


@pytest.fixture
def setup(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    remote = Remote(tmp_path)
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})

    def config(**kwargs):
        return write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            **kwargs,
        )

    return remote, config, tf_env


def test_an_unreachable_remote_is_reported_and_nothing_is_planned_until_it_returns(setup):
    remote, config, env = setup
    app = make_app(config(), env)
    app.poller.first_backoff = 0.01
    try:
        assert app.reconcile_once().exit_code == 0
        runs_before = app.store.list_runs(limit=100)
        hidden = remote.bare.rename(remote.bare.with_name("moved.git"))
        remote.commit("v2", {"stacks/app/main.tf": demo_stack(remote.work / "unused", {"app-web": "v2"})})

        with pytest.raises(GitFetchError) as caught:
            app.poller.poll()

        assert "remote.git" in str(caught.value)
        assert app.store.get_meta("last_fetch_error")["error"] == str(caught.value)
        assert app.store.list_runs(limit=100) == runs_before
        hidden.rename(remote.bare)
        remote.push()
        queued = app.poller.poll()
        assert [run.kind for run in queued] == [RunKind.DEPLOY]
        assert app.poller.last_error is None
    finally:
        app.close()


def test_reconcile_exits_1_with_the_reason_when_the_remote_cannot_be_cloned(tmp_path, setup):
    remote, config, env = setup
    remote.bare.rename(tmp_path / "gone.git")

    result = tfops_cli(config(), "reconcile", env=env)

    assert result.returncode == 1
    assert "fetch failed" in result.stderr
    assert "clone of" in result.stderr


@pytest.mark.terraform
def test_the_scheduler_checks_drift_on_each_stacks_timer(setup, demo_cloud):
    _remote, config, env = setup
    app = make_app(config(stacks=[{"discover": "stacks/*", "drift_interval": "2s"}]), env)
    try:
        app.start()
        app.scheduler.start()
        wait_for(lambda: app.store.get_stack("app") and app.store.get_stack("app").applied_sha, timeout=60)
        edit_cloud_object(demo_cloud, "app-web", content="edited by hand")

        def finished_drift_run():
            runs = app.store.list_runs(stack="app", limit=50)
            return next((r for r in runs if r.kind is RunKind.DRIFT and r.status is RunStatus.PLANNED), None)

        # The timer fires every 2 s, so newer drift runs may be in flight: wait for one that finished.
        run = wait_for(finished_drift_run, timeout=60, what="a drift run that found the edit")

        assert run.trigger.source.value == "drift_timer"
        assert app.store.get_stack("app").drift is DriftState.DRIFTED
        assert [entry["address"] for entry in run.summary["drift"]] == ["demo_object.app-web"]
        assert app.scheduler.next_drift_check("app") is not None
    finally:
        app.scheduler.stop()
        app.close()


@pytest.mark.timeout(60)  # without the lock this hangs rather than fails
def test_git_reads_from_run_threads_and_fetches_from_the_poller_do_not_deadlock(tmp_path):
    import threading

    from tfops.gitsource import GitSource

    remote = Remote(tmp_path)
    first = remote.commit_and_push("one", {"a.txt": "1"})
    source = GitSource(remote.url, "main", tmp_path / "data" / "repo")
    source.ensure_clone()
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(200):
                assert source.is_on_branch(first)
                source.revision(first)
                source.head()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for n in range(5):
        remote.commit_and_push(f"more {n}", {"a.txt": str(n)})
        source.fetch()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads), "a reader hung: the Repo was shared unsafely"
    assert errors == []


def test_runs_at_one_commit_share_a_view_and_old_views_go_when_the_head_moves(tmp_path):
    from tfops.gitsource import GitSource

    remote = Remote(tmp_path)
    first = remote.commit_and_push("one", {"stacks/a/main.tf": "# v1\n"})
    source = GitSource(remote.url, "main", tmp_path / "data" / "repo")
    source.ensure_clone()

    with source.view(first) as one, source.view(first) as two:
        assert one == two
        assert (one / "stacks/a/main.tf").read_text() == "# v1\n"
        remote.commit_and_push("two", {"stacks/a/main.tf": "# v2\n"})
        second = source.fetch().head.sha
        assert (one / "stacks/a/main.tf").read_text() == "# v1\n", "a fetch changed files under a run"
    assert not one.exists(), "the old commit's view outlived its last run"
    with source.view(second) as head_view:
        pass
    assert head_view.exists(), "the head's view is kept for the next run"


def test_views_of_processes_that_are_gone_are_pruned_and_live_ones_kept(tmp_path):
    import os

    from tfops.gitsource import GitSource

    remote = Remote(tmp_path)
    remote.commit_and_push("one", {"a.txt": "1"})
    source = GitSource(remote.url, "main", tmp_path / "data" / "repo")
    source.ensure_clone()
    dead = source.views_dir / "999999999" / "leftover"
    alive = source.views_dir / str(os.getppid()) / "in-use"
    for folder in (dead, alive):
        folder.mkdir(parents=True)

    source.prune_views()

    assert not dead.parent.exists()
    assert alive.exists()


@pytest.mark.terraform
def test_polls_that_find_the_same_head_do_no_per_stack_git_work(setup, demo_cloud):
    remote, config, env = setup
    remote.commit_and_push("db", {"stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v1"})})
    app = make_app(config(), env)

    class CountingGit:
        """The real GitSource, counting the diffs the poller asks for."""

        def __init__(self, real):
            self.real, self.diffs = real, 0

        def changed_paths(self, old, new):
            self.diffs += 1
            return self.real.changed_paths(old, new)

        def __getattr__(self, name):
            return getattr(self.real, name)

    try:
        assert app.reconcile_once().exit_code == 0
        remote.commit_and_push("db v2", {"stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v2"})})
        app.poller.git = counting = CountingGit(app.git)
        assert [run.stack for run in app.poller.poll()] == ["db"]
        app.queue.wait_idle(60)
        assert counting.diffs == 1  # app and db were applied at the same commit: one diff serves both

        assert app.poller.poll() == []
        assert counting.diffs == 1, "an unchanged head must not be re-examined stack by stack"
    finally:
        app.close()


def test_a_deploy_superseded_without_its_re_plan_is_planned_again_at_the_next_start(setup):
    remote, config, env = setup
    app = make_app(config(), env)
    try:
        app.reconcile_once(timeout=120)
        v2 = remote.commit_and_push(
            "v2", {"stacks/app/main.tf": demo_stack(remote.work / "cloud2", {"app-web": "v2"})}
        )
        # A stale plan at v2 was superseded while the daemon stopped, so its re-plan was dropped.
        app.git.fetch()
        app.store.set_head_all(v2)
        stale = app.store.create_run("app", RunKind.DEPLOY, _poll_trigger(), v2, status=RunStatus.PLANNING)
        app.transitions.mark_superseded(stale, "Saved plan is stale; planning again")
    finally:
        app.close()

    again = make_app(config(), env)
    try:
        again.reconcile_once(timeout=120)
        deploys = [run for run in again.store.list_runs(stack="app") if run.kind is RunKind.DEPLOY]
        assert deploys[0].id > stale.id and deploys[0].commit_sha == v2
        assert deploys[0].status is RunStatus.APPLIED
    finally:
        again.close()


def _poll_trigger():
    from tfops.models import Trigger, TriggerSource

    return Trigger(source=TriggerSource.POLL)


@pytest.mark.terraform
def test_a_rejected_deploy_is_not_asked_again_after_more_than_fifty_drift_checks(setup):
    _remote, config, env = setup
    ask = [{"discover": "stacks/*", "on_merge": "ask", "on_drift": "notify", "drift_interval": 0}]
    app = make_app(config(stacks=ask), env)
    try:
        (asked,) = app.reconcile_once(timeout=120).runs
        assert asked.status is RunStatus.AWAITING_APPROVAL
        rejected = app.transitions.mark_rejected(asked, "alice")
        head = rejected.commit_sha
        # A day of drift checks at the same head, recorded as the drift timer leaves them.
        for _ in range(55):
            app.store.create_run("app", RunKind.DRIFT, _drift_trigger(), head, status=RunStatus.NO_CHANGES)
    finally:
        app.close()

    again = make_app(config(stacks=ask), env)  # a restart: nothing remembered in memory
    try:
        assert again.poller.poll() == [], "the rejected commit must not be asked about again"
        deploys = [run for run in again.store.list_runs(stack="app", limit=100) if run.kind is RunKind.DEPLOY]
        assert [run.id for run in deploys] == [asked.id]
    finally:
        again.close()


def _drift_trigger():
    from tfops.models import Trigger, TriggerSource

    return Trigger(source=TriggerSource.DRIFT_TIMER)
