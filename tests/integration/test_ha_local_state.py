"""Stacks with local state when several `tfops serve` share one PostgreSQL store, seen from outside:
real daemons, real Git, real Terraform with the demo provider, a real PostgreSQL (tests/pgserver.py).

- Without a pin, `tfops serve` whose checkout holds a stack with local state refuses to start,
  naming the stack and both ways out; `tfops check-config` says the same, as an error.
- With `ha.local_state_instance`, the stack's runs are done by the pinned instance only, while the
  other instance (the leader, which queues them) leaves them in the store for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_ha_daemons as shared
import yaml
from harness import Remote, cloud_object, demo_stack, tfops_cli, wait_for
from test_ha_daemons import _config, _instances, _leader, _new_database, _stack

from tfops.models import RunKind, RunStatus
from tfops.store import Store

# The fixtures of the other HA tests: a daemon launcher that kills what it started, a PostgreSQL.
daemons = shared.daemons
postgres = shared.postgres


def _pinned(config: Path, instance: str) -> Path:
    """`config` with `ha.local_state_instance: <instance>`."""
    data = yaml.safe_load(config.read_text())
    data["ha"]["local_state_instance"] = instance
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _estate(tmp_path: Path, server, cloud: Path, database: str) -> tuple[str, Remote, str]:
    """A fresh database and a remote with `app` (state in PostgreSQL) and `cache` (no backend
    block: local state); returns the store URL, the remote and its commit."""
    store_url, conn_str = _new_database(server, database)
    remote = Remote(tmp_path)
    files = {"stacks/app/main.tf": _stack(cloud, conn_str, "app", "v1")}
    files["stacks/cache/main.tf"] = demo_stack(cloud, {"cache-obj": "v1"})
    return store_url, remote, remote.commit_and_push("app remote, cache local", files)


@pytest.mark.terraform
def test_serve_refuses_to_start_on_postgresql_while_a_stack_keeps_its_state_locally(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, remote, _ = _estate(tmp_path, postgres, demo_cloud, "ha_local_start")
    config = _config(tmp_path, "vm-1", remote, store_url, terraform_bin, tf_cli_config)

    serving = daemons(config, tf_env, tmp_path / "vm-1.log")
    exit_code = serving.wait(timeout=120)
    checked = tfops_cli(config, "check-config", env=tf_env, timeout=120)  # the checkout serve cloned

    said = (tmp_path / "vm-1.log").read_text()
    assert exit_code != 0
    assert "stack cache keeps its state locally (no backend block)" in said  # app has a backend
    assert "remote backend" in said and "ha.local_state_instance" in said and "docs/ha.md" in said
    assert checked.returncode != 0
    assert "error: stack cache keeps its state locally" in checked.stderr
    assert "ha.local_state_instance" in checked.stderr
    store = Store(store_url)
    try:
        assert store.list_runs(limit=10) == []  # it refused before it planned anything
        assert store.instances() == []  # and left no instance behind
    finally:
        store.close()
    assert cloud_object(demo_cloud, "cache-obj") is None


@pytest.mark.terraform
def test_a_stack_with_local_state_is_run_only_by_the_instance_it_is_pinned_to(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, daemons, postgres
):
    store_url, remote, first = _estate(tmp_path, postgres, demo_cloud, "ha_local_pin")
    configs = {
        name: _pinned(_config(tmp_path, name, remote, store_url, terraform_bin, tf_cli_config), "vm-2")
        for name in ("vm-1", "vm-2")
    }
    store = Store(store_url)
    try:
        # vm-1 first, so that it leads: the instance that queues the runs is not the pinned one.
        daemons(configs["vm-1"], tf_env, tmp_path / "vm-1.log")
        wait_for(lambda: _leader(store) == "vm-1", timeout=120, what="vm-1 leading")
        daemons(configs["vm-2"], tf_env, tmp_path / "vm-2.log")
        wait_for(lambda: len(_instances(store)) == 2, timeout=120, what="vm-2 serving")
        wait_for(lambda: _deployed(store, "cache", first), timeout=240, what="the local stack applied")
        second = remote.commit_and_push(
            "cache v2", {"stacks/cache/main.tf": demo_stack(demo_cloud, {"cache-obj": "v2"})}
        )
        wait_for(lambda: _deployed(store, "cache", second), timeout=240, what="its next merge applied")
        wait_for(lambda: _deployed(store, "app", first), timeout=240, what="the remote stack applied")

        cache_runs = [r for r in store.list_runs(stack="cache", limit=20) if r.started_at is not None]
        assert len(cache_runs) >= 2
        assert {r.instance_id for r in cache_runs} == {"vm-2"}
        assert all(r.status is not RunStatus.FAILED for r in cache_runs)
        assert cloud_object(demo_cloud, "cache-obj")["content"] == "v2"
    finally:
        store.close()


def _deployed(store: Store, stack: str, sha: str) -> bool:
    runs = store.list_runs(stack=stack, limit=20)
    return any(
        r.kind is RunKind.DEPLOY and r.commit_sha == sha and r.status is RunStatus.APPLIED for r in runs
    )
