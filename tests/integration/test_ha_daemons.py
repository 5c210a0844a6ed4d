"""Several `tfops serve` processes on one store, seen from outside: real daemons, real Git, real
Terraform with the demo provider, a real PostgreSQL (tests/pgserver.py) for the store and for
the stacks' state (Terraform's `pg` backend: state must be remote when runs move between
instances).

- SQLite holds one daemon: the second on the same file refuses to start and says to use
  PostgreSQL, the first keeps serving, and after a kill -9 of the first a new one starts.
- Three daemons on one PostgreSQL database: every merge is applied exactly once, whichever
  instance runs it, and no stack ever has two runs at once (from the runs' timestamps); after a
  kill -9 of the leader another instance leads and the next merge is applied.
- A webhook that reaches a follower makes the leader fetch (it polls only hourly here).
- An approval given on the instance that did not plan the run is applied by the one that did,
  from its saved plan.
- A stack with local state is refused when daemons share the store (each has its own data_dir).
- An instance lost mid-apply (kill -9 of the daemon and its Terraform: its VM gone): its run ends
  `interrupted` once its heartbeat is older than `ha.failover`, and the stack takes the next merge.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest
from harness import (
    Daemons,
    Remote,
    cloud_object,
    demo_stack,
    make_app,
    tfops_cli,
    wait_for,
    write_config,
)
from pgserver import start_or_skip
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError
from test_http_face import GITHUB_SECRET, github, merged_pull_request

from tfops.models import InstanceRole, RunKind, RunReason, RunStatus, TriggerSource
from tfops.store import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def daemons():
    started = Daemons()
    yield started
    started.kill_all()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.terraform
def test_a_second_daemon_on_one_sqlite_file_is_refused_and_the_first_keeps_serving(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons
):
    remote = Remote(tmp_path)
    remote.commit_and_push("app", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"})})
    database = tmp_path / "shared" / "tfops.db"
    ports = {name: _free_port() for name in ("one", "two", "three")}
    configs = {
        name: write_config(
            tmp_path / f"{name}.yaml",
            remote=remote,
            data_dir=tmp_path / name,
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            store={"url": Store.sqlite_url(database)},
            http={"listen": f"127.0.0.1:{port}"},
        )
        for name, port in ports.items()
    }
    first = daemons(configs["one"], tf_env, tmp_path / "one.log")
    wait_for(lambda: _healthy(ports["one"]), timeout=60, what="the first daemon serving")

    second = daemons(configs["two"], tf_env, tmp_path / "two.log")
    exit_code = second.wait(timeout=60)

    said = (tmp_path / "two.log").read_text()
    assert exit_code != 0
    assert f"already uses the SQLite store {database}" in said
    assert "PostgreSQL" in said and "docs/ha.md" in said
    assert first.poll() is None and _healthy(ports["one"])  # the first never noticed

    os.killpg(first.pid, signal.SIGKILL)  # the kernel drops its lock with it
    first.wait()
    daemons(configs["three"], tf_env, tmp_path / "three.log")
    wait_for(lambda: _healthy(ports["three"]), timeout=60, what="a new daemon serving after kill -9")


# -- three daemons on one PostgreSQL ----------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    server = start_or_skip()
    yield server
    server.stop()


def _new_database(server, name: str) -> tuple[str, str]:
    """A fresh database: (tfops' store URL, Terraform's `pg` backend conn_str)."""
    engine = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    socket_dir = server.socket_dir
    return (
        f"postgresql+psycopg://tfops@/{name}?host={socket_dir}",
        f"postgres://tfops@/{name}?host={socket_dir}&sslmode=disable",
    )


def _stack(cloud: Path, conn_str: str, name: str, content: str) -> str:
    backend = f'''
    terraform {{
      backend "pg" {{
        conn_str    = "{conn_str}"
        schema_name = "state_{name}"
      }}
    }}
    '''
    return demo_stack(cloud, {f"{name}-obj": content}, extra=backend)


def _instances(store: Store) -> list:
    try:
        return store.instances()
    except ProgrammingError:  # the daemons have not created the schema yet
        return []


def _app_estate(tmp_path: Path, server, cloud: Path, database: str) -> tuple[str, str, Remote]:
    """A fresh database and a remote whose one stack, `app`, keeps its state in it."""
    store_url, conn_str = _new_database(server, database)
    remote = Remote(tmp_path)
    remote.commit_and_push("app v1", {"stacks/app/main.tf": _stack(cloud, conn_str, "app", "v1")})
    return store_url, conn_str, remote


def _leader(store: Store) -> str | None:
    leaders = [i.id for i in _instances(store) if i.role is InstanceRole.LEADER]
    return leaders[0] if len(leaders) == 1 else None


def _applied(store: Store, stack: str, sha: str) -> bool:
    runs = [
        r for r in store.list_runs(stack=stack, limit=50) if r.kind is RunKind.DEPLOY and r.commit_sha == sha
    ]
    return any(r.status is RunStatus.APPLIED for r in runs)


def _overlaps(runs) -> list[tuple[int, int]]:
    """Pairs of runs of one stack whose [started_at, finished_at] overlap."""
    by_stack: dict[str, list] = {}
    for run in runs:
        if run.started_at is not None:
            by_stack.setdefault(run.stack, []).append(run)
    found = []
    for stack_runs in by_stack.values():
        stack_runs.sort(key=lambda r: r.started_at)
        for before, after in itertools.pairwise(stack_runs):
            if before.finished_at is None or after.started_at < before.finished_at:
                found.append((before.id, after.id))
    return found


@pytest.mark.terraform
def test_three_daemons_on_one_postgresql_apply_each_merge_once_and_survive_the_leader(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, conn_str = _new_database(postgres, "ha_three")
    stacks = ("app", "db")
    remote = Remote(tmp_path)
    first = remote.commit_and_push(
        "two stacks", {f"stacks/{n}/main.tf": _stack(demo_cloud, conn_str, n, "v1") for n in stacks}
    )
    names = ("vm-1", "vm-2", "vm-3")
    ports = {name: _free_port() for name in names}
    processes = {}
    for name in names:
        config = _config(
            tmp_path,
            name,
            remote,
            store_url,
            terraform_bin,
            tf_cli_config,
            http={"listen": f"127.0.0.1:{ports[name]}"},
        )
        processes[name] = daemons(config, tf_env, tmp_path / f"{name}.log")
    store = Store(store_url)
    try:
        wait_for(
            lambda: len(_instances(store)) == 3 and _leader(store), timeout=120, what="three, one leading"
        )
        wait_for(lambda: all(_applied(store, n, first) for n in stacks), timeout=240, what="the first merge")
        ready = httpx.get(f"http://127.0.0.1:{ports['vm-2']}/readyz", timeout=10).json()
        assert sorted(i["id"] for i in ready["instances"]) == list(names)
        assert [i["role"] for i in ready["instances"]].count("leader") == 1

        second = remote.commit_and_push(
            "v2 everywhere", {f"stacks/{n}/main.tf": _stack(demo_cloud, conn_str, n, "v2") for n in stacks}
        )
        wait_for(
            lambda: all(_applied(store, n, second) for n in stacks), timeout=240, what="the second merge"
        )

        old_leader = _leader(store)
        os.killpg(processes[old_leader].pid, signal.SIGKILL)
        processes[old_leader].wait()
        # The dead leader's row still says `leader` until the new leader settles it.
        wait_for(
            lambda: any(i.role is InstanceRole.LEADER and i.id != old_leader for i in _instances(store)),
            timeout=120,
            what="another instance to lead",
        )
        third = remote.commit_and_push(
            "app v3", {"stacks/app/main.tf": _stack(demo_cloud, conn_str, "app", "v3")}
        )
        wait_for(lambda: _applied(store, "app", third), timeout=240, what="the merge after the failover")
        wait_for(
            lambda: old_leader not in {i.id for i in store.instances()}, timeout=120, what="the dead one gone"
        )

        runs = store.list_runs(limit=100)
        deploys = [r for r in runs if r.kind is RunKind.DEPLOY]
        applied = Counter((r.stack, r.commit_sha) for r in deploys if r.status is RunStatus.APPLIED)
        assert applied == Counter(
            {("app", first): 1, ("db", first): 1, ("app", second): 1, ("db", second): 1, ("app", third): 1}
        )
        assert _overlaps(runs) == []
        assert {r.instance_id for r in deploys if r.status is RunStatus.APPLIED} <= set(names)
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v3"
        assert cloud_object(demo_cloud, "db-obj")["content"] == "v2"
    finally:
        store.close()


def _config(
    tmp_path: Path, name: str, remote: Remote, store_url: str, terraform_bin, tf_cli_config, **extra
) -> Path:
    """Instance `name`'s tfops.yaml: its own data dir, the shared store, a 10 s failover."""
    return write_config(
        tmp_path / f"{name}.yaml",
        remote=remote,
        data_dir=tmp_path / name,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        store={"url": store_url},
        ha={"failover": "10s", "instance_id": name},
        **extra,
    )


def _http_instances(
    tmp_path: Path, remote: Remote, store_url: str, terraform_bin, tf_cli_config, tf_env, daemons, **extra
) -> dict[str, int]:
    """Start vm-1 and vm-2, each serving HTTP on a port of its own (as behind a load balancer)."""
    ports = {name: _free_port() for name in ("vm-1", "vm-2")}
    for name, port in ports.items():
        config = _config(
            tmp_path, name, remote, store_url, terraform_bin, tf_cli_config,
            http={"listen": f"127.0.0.1:{port}"}, **extra,
        )  # fmt: skip
        daemons(config, tf_env, tmp_path / f"{name}.log")
    return ports


@pytest.mark.terraform
def test_an_instance_lost_mid_apply_has_its_run_interrupted_after_the_lease_and_the_stack_goes_on(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, conn_str = _new_database(postgres, "ha_lost")
    remote = Remote(tmp_path)
    slow = _stack(demo_cloud, conn_str, "app", "v1") + '\nresource "demo_wait" "slow" {\n  seconds = 300\n}\n'
    remote.commit_and_push("app, slow to apply", {"stacks/app/main.tf": slow})
    processes = {
        name: daemons(
            _config(tmp_path, name, remote, store_url, terraform_bin, tf_cli_config),
            tf_env,
            tmp_path / f"{name}.log",
        )
        for name in ("vm-1", "vm-2")
    }
    store = Store(store_url)
    try:
        [applying] = wait_for(
            lambda: [r for r in _runs(store) if r.status is RunStatus.APPLYING], timeout=240, what="the apply"
        )
        lost = applying.instance_id
        [survivor] = [name for name in processes if name != lost]
        group = wait_for(lambda: store.run_process_group(applying.id), timeout=60, what="its Terraform")
        # Its VM is gone: the daemon and its Terraform (in a session of its own) die together.
        for pgid in (processes[lost].pid, group[0]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        processes[lost].wait()

        ended = wait_for(
            lambda: (run := store.get_run(applying.id)).status is RunStatus.INTERRUPTED and run,
            timeout=120,
            what="the run to end interrupted",
        )
        assert ended.reason is RunReason.DAEMON_RESTARTED
        assert f"instance {lost} stopped sending heartbeats" in (ended.error or "")
        assert [i.id for i in store.instances()] == [survivor]

        fixed = remote.commit_and_push(
            "app v2", {"stacks/app/main.tf": _stack(demo_cloud, conn_str, "app", "v2")}
        )
        wait_for(lambda: _applied(store, "app", fixed), timeout=240, what="the next merge on the stack")
        assert store.get_run(applying.id).status is RunStatus.INTERRUPTED  # never retried
        assert _overlaps(store.list_runs(limit=50)) == []
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v2"
    finally:
        store.close()


def _runs(store: Store) -> list:
    try:
        return store.list_runs(limit=50)
    except ProgrammingError:
        return []


@pytest.mark.terraform
def test_a_stack_with_local_state_is_refused_when_daemons_share_the_store(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, postgres
):
    store_url, conn_str = _new_database(postgres, "ha_local")
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "one remote, one local",
        {
            "stacks/app/main.tf": _stack(demo_cloud, conn_str, "app", "v1"),
            "stacks/local/main.tf": demo_stack(demo_cloud, {"local-obj": "v1"}),
        },
    )
    config = _config(tmp_path, "vm-1", remote, store_url, terraform_bin, tf_cli_config)
    app = make_app(config, tf_env)
    try:
        runs = {run.stack: run for run in app.one_shot(RunKind.PLAN, None, timeout=240)}
    finally:
        app.close()

    assert runs["app"].status is RunStatus.NO_CHANGES  # its deploy (queued by the fetch) applied it
    assert runs["local"].status is RunStatus.FAILED
    assert "keeps its state locally" in runs["local"].error and "docs/ha.md" in runs["local"].error
    assert cloud_object(demo_cloud, "local-obj") is None  # nothing was planned, let alone applied


@pytest.mark.terraform
def test_an_approval_on_another_instance_is_applied_by_the_one_holding_the_plan(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, _, remote = _app_estate(tmp_path, postgres, demo_cloud, "ha_approve")
    asking = [{"discover": "stacks/*", "on_merge": "ask", "on_drift": "notify", "drift_interval": 0}]
    configs = {
        name: _config(tmp_path, name, remote, store_url, terraform_bin, tf_cli_config, stacks=asking)
        for name in ("vm-1", "vm-2")
    }
    for name, config in configs.items():
        daemons(config, tf_env, tmp_path / f"{name}.log")
    store = Store(store_url)
    try:
        [waiting] = wait_for(
            lambda: [r for r in _runs(store) if r.status is RunStatus.AWAITING_APPROVAL],
            timeout=240,
            what="the deploy to ask",
        )
        [elsewhere] = [name for name in configs if name != waiting.instance_id]

        approved = tfops_cli(configs[elsewhere], "approve", str(waiting.id), env=tf_env)

        assert approved.returncode == 0, approved.stdout + approved.stderr
        applied = store.get_run(waiting.id)
        assert applied.status is RunStatus.APPLIED
        assert applied.instance_id == waiting.instance_id  # from the plan file it made
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v1"
    finally:
        store.close()


@pytest.mark.terraform
def test_a_webhook_sent_to_a_follower_makes_the_leader_fetch_and_deploy(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, conn_str, remote = _app_estate(tmp_path, postgres, demo_cloud, "ha_webhook")
    (tmp_path / "github-secret").write_text(GITHUB_SECRET + "\n")
    ports = _http_instances(
        tmp_path, remote, store_url, terraform_bin, tf_cli_config, tf_env, daemons,
        repo={"url": remote.url, "branch": remote.branch, "poll_interval": "1h"},
        webhooks={"repository": "acme/infra", "github": {"secret_file": str(tmp_path / "github-secret")}},
    )  # fmt: skip
    store = Store(store_url)
    try:
        first = wait_for(lambda: _leader(store), timeout=120, what="a leader")
        wait_for(lambda: _applied(store, "app", remote.repo.head.commit.hexsha), timeout=240, what="v1")
        [follower] = [name for name in ports if name != first]
        merge = remote.commit_and_push(
            "app v2", {"stacks/app/main.tf": _stack(demo_cloud, conn_str, "app", "v2")}
        )

        answer = github(ports[follower], merged_pull_request(merge))

        assert answer.status_code == 202 and answer.json()["status"] == "accepted"
        wait_for(lambda: _applied(store, "app", merge), timeout=240, what="the merge the webhook announced")
        [deploy] = [r for r in store.list_runs(stack="app") if r.commit_sha == merge]
        assert deploy.trigger.source is TriggerSource.WEBHOOK
        assert cloud_object(demo_cloud, "app-obj")["content"] == "v2"
    finally:
        store.close()
