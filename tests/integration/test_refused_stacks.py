"""One bad stack stops nothing: `tfops serve` (a real process, `http.listen` on) plans the good stacks
of a head that also brings a folder symlinked out of the repository, and says so everywhere."""

from __future__ import annotations

import json
import os
import signal
import socket

import httpx
import pytest
from harness import demo_stack, one_stack_repo, start_daemon, tfops_cli, wait_for

from tfops.models import RunKind
from tfops.store import Store

pytestmark = pytest.mark.terraform


@pytest.fixture
def port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _runs(store: Store, stack: str):
    try:
        return store.list_runs(stack=stack)
    except Exception:  # noqa: BLE001 - the daemon may not have created the schema yet
        return []


def test_a_stack_symlinked_outside_the_repository_is_refused_and_the_others_are_planned(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env, port
):
    (tmp_path / "github-secret").write_text("gh-webhook-secret-0123456789\n")
    remote, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        http={"listen": f"127.0.0.1:{port}"},
        webhooks={"github": {"secret_file": str(tmp_path / "github-secret")}},
    )
    config.write_text(config.read_text().replace("poll_interval: 1s", "poll_interval: 2s"))
    log = tmp_path / "daemon.log"
    store = Store(Store.sqlite_url(tmp_path / "data" / "tfops.db"))
    daemon = start_daemon(config, env=tf_env, log=log)
    try:
        wait_for(lambda: _runs(store, "app") or daemon.poll() is not None, timeout=90, what="app's deploy")
        assert daemon.poll() is None, log.read_text()

        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "main.tf").write_text(demo_stack(demo_cloud, {"stolen": "v1"}))
        os.symlink(outside, remote.work / "stacks" / "evil")
        remote.write("stacks/new/main.tf", demo_stack(demo_cloud, {"new-web": "v1"}))
        head = remote.commit_and_push("a new stack, and one that points out of the repository")

        new_runs = wait_for(lambda: _runs(store, "new"), timeout=60, what="a deploy of the new stack")
        assert [(run.kind, run.commit_sha) for run in new_runs] == [(RunKind.DEPLOY, head)]
        # Several polls find the same head: the refusal is logged once for it, not once per poll.
        polls: set[str] = set()
        wait_for(lambda: len(_polls_at(store, head, polls)) >= 3, timeout=60, what="three polls of the head")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)

    text = log.read_text()
    refusals = [line for line in text.splitlines() if "ERROR" in line and "'evil'" in line]
    assert len(refusals) == 1, text
    assert "resolves outside the repository" in refusals[0]
    assert str(outside) not in text.split("ERROR", 1)[1]  # never the host path it points to
    assert _runs(store, "evil") == []
    assert not (demo_cloud / "stolen.json").exists()

    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["stacks"] is False
    assert any("'evil'" in line and "outside the repository" in line for line in body["warnings"])

    status = tfops_cli(config, "status", "--json", env=tf_env)
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["evil"]["refused"]["reason"] == "outside_repository"
    assert rows["new"]["refused"] is None and rows["app"]["refused"] is None
    table = tfops_cli(config, "status", env=tf_env)
    assert "stack 'evil' (path 'stacks/evil') is refused" in table.stdout
    store.close()


def _polls_at(store: Store, head: str, seen: set[str]) -> set[str]:
    """`seen`, plus the time of the last fetch when it fetched `head` (each poll records its own)."""
    last = store.get_meta("last_fetch") or {}
    if last.get("sha") == head:
        seen.add(last["at"])
    return seen


def test_a_configured_stack_whose_folder_is_gone_is_refused_by_reconcile_and_check_config(
    tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env
):
    _remote, config = one_stack_repo(
        tmp_path,
        demo_cloud,
        terraform_bin=terraform_bin,
        cli_config=tf_cli_config,
        stacks=[{"path": "stacks/app"}, {"path": "stacks/gone", "name": "gone"}],
    )

    reconciled = tfops_cli(config, "reconcile", env=tf_env)
    checked = tfops_cli(config, "check-config", env=tf_env)

    assert reconciled.returncode == 1, reconciled.stdout + reconciled.stderr
    assert "stack 'gone' (path 'stacks/gone') is refused: folder not found at the head" in reconciled.stderr
    assert "leaves the repository" not in reconciled.stderr + reconciled.stdout
    assert cloud_has(demo_cloud, "app-web")  # the good stack was deployed all the same
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "folder not found at the head" in checked.stdout
    assert "stay inside it" not in checked.stdout  # not the hint about paths leaving the repository


def cloud_has(cloud, name: str) -> bool:
    return (cloud / f"{name}.json").exists()
