"""The store's PostgreSQL goes away while a real `tfops serve` is mid-apply:

- `pg_ctl restart`: the run ends `applied`, recorded once, its Terraform was not stopped for it,
  and the daemon carries on (the next merge is applied);
- the server stays down until after Terraform finished: the run's result waits for it and is
  recorded once it is back.

The store's cluster is this test's own (restarting it must not disturb other tests); Terraform's
state lives in a second cluster (the stacks' `pg` backend), which stays up, as a remote backend on
other machines would. The apply is slow because the demo provider's `demo_wait` sleeps on create.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import Daemons, Remote, cloud_object, wait_for
from pgserver import PostgresServer, start_or_skip
from sqlalchemy.exc import OperationalError
from test_ha_daemons import _applied, _config, _new_database, _runs, _stack

from tfops.models import Run, RunKind, RunStatus
from tfops.store import Store
from tfops.store.engine import utc_now

# Long enough that the restart (about a second) ends well before the apply does.
APPLY_SECONDS = 20


@pytest.fixture
def clusters() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """(the store's cluster, Terraform's state cluster)."""
    store_cluster = start_or_skip()
    try:
        state_cluster = start_or_skip()
    except BaseException:
        store_cluster.stop()
        raise
    yield store_cluster, state_cluster
    store_cluster.stop()
    state_cluster.stop()


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    started = Daemons()
    yield started
    started.kill_all()


def _slow_app(cloud, conn_str: str, content: str, seconds: int) -> str:
    """Stack `app`: one object, and a `demo_wait` that makes its first apply take `seconds`."""
    wait = f'resource "demo_wait" "slow" {{\n  seconds = {seconds}\n}}\n'
    return _stack(cloud, conn_str, "app", content) + wait


def _slow_app_estate(tmp_path, clusters, cloud, seconds: int) -> tuple[str, str, Remote, str]:
    """The store's database on the first cluster, Terraform's state on the second, and a remote
    whose stack `app` applies slowly: (store URL, state conn_str, remote, the merge's sha)."""
    store_url, _ = _new_database(clusters[0], "tfops")
    _, conn_str = _new_database(clusters[1], "state")
    remote = Remote(tmp_path)
    sha = remote.commit_and_push("app", {"stacks/app/main.tf": _slow_app(cloud, conn_str, "v1", seconds)})
    return store_url, conn_str, remote, sha


def _applying(store: Store) -> tuple[Run, int]:
    """The run being applied, once its Terraform runs: (run, Terraform's process group)."""
    [applying] = wait_for(
        lambda: [r for r in _runs(store) if r.status is RunStatus.APPLYING], timeout=240, what="the apply"
    )
    pgid, _ = wait_for(lambda: store.run_process_group(applying.id), timeout=60, what="its Terraform")
    return applying, pgid


def _restart(server: PostgresServer) -> None:
    """`pg_ctl restart -m fast`: the server terminates every session, then starts on its data with
    the options it had (its output goes to its log, so that pg_ctl returns)."""
    log = str(server.root / "server.log")
    server._run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "-t", "60", "-l", log, "restart")


@pytest.mark.terraform
def test_a_database_restart_mid_apply_records_the_run_once_and_the_daemon_carries_on(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, clusters
):
    store_url, conn_str, remote, first = _slow_app_estate(tmp_path, clusters, demo_cloud, APPLY_SECONDS)
    config = _config(tmp_path, "vm-1", remote, store_url, terraform_bin, tf_cli_config)
    daemon = daemons(config, tf_env, tmp_path / "vm-1.log")
    store = Store(store_url)  # the test's own reader: it does not wait through the restart
    try:
        applying, _ = _applying(store)

        _restart(clusters[0])
        restarted_at = utc_now()

        ended = wait_for(
            lambda: _quietly(lambda: (run := store.get_run(applying.id)).status.is_terminal and run),
            timeout=240,
            what="the run to end",
        )
        assert ended.status is RunStatus.APPLIED, ended.error
        assert ended.exit_code == 0  # Terraform was not stopped for the outage
        assert ended.finished_at is not None and ended.finished_at > restarted_at  # recorded after it
        terminal = [e for e in store.events(applying.id) if e.to_status.is_terminal]
        assert [e.to_status for e in terminal] == [RunStatus.APPLIED]
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v1"
        assert len(list((demo_cloud / ".waits").glob("*.json"))) == 1  # the slow create finished

        second = remote.commit_and_push(
            "app v2", {"stacks/app/main.tf": _slow_app(demo_cloud, conn_str, "v2", APPLY_SECONDS)}
        )
        wait_for(lambda: _quietly(lambda: _applied(store, "app", second)), timeout=240, what="the next merge")
        assert daemon.poll() is None  # it carried on
        deploys = [r for r in store.list_runs(stack="app", limit=50) if r.kind is RunKind.DEPLOY]
        assert sorted((r.commit_sha, r.status) for r in deploys if r.status.is_terminal) == sorted(
            [(first, RunStatus.APPLIED), (second, RunStatus.APPLIED)]
        )
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v2"
    finally:
        store.close()


@pytest.mark.terraform
def test_a_result_that_arrives_while_the_database_is_down_is_recorded_once_it_is_back(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, clusters
):
    store_cluster = clusters[0]
    store_url, _, remote, _ = _slow_app_estate(tmp_path, clusters, demo_cloud, 5)
    log = tmp_path / "vm-1.log"
    daemon = daemons(_config(tmp_path, "vm-1", remote, store_url, terraform_bin, tf_cli_config), tf_env, log)
    store = Store(store_url)
    try:
        applying, pgid = _applying(store)

        _stop(store_cluster)
        wait_for(lambda: not _group_alive(pgid), timeout=120, what="Terraform to finish without the store")
        waiting = f"[run {applying.id} app] the database does not answer"  # the run's own result
        wait_for(lambda: waiting in log.read_text(), timeout=60, what="the result to wait for the store")
        store_cluster.resume()

        ended = wait_for(
            lambda: _quietly(lambda: (run := store.get_run(applying.id)).status.is_terminal and run),
            timeout=240,
            what="the run to end",
        )
        assert (ended.status, ended.exit_code) == (RunStatus.APPLIED, 0), ended.error
        terminal = [e for e in store.events(applying.id) if e.to_status.is_terminal]
        assert [e.to_status for e in terminal] == [RunStatus.APPLIED]
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v1"
        assert daemon.poll() is None
    finally:
        store.close()


def _stop(server: PostgresServer) -> None:
    """`pg_ctl stop -m fast`: every session is terminated and the server stays down."""
    server._run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "stop")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _quietly(check):
    """`check()`, or False while the restarted server does not answer the test's own reads yet."""
    try:
        return check()
    except OperationalError:
        return False
