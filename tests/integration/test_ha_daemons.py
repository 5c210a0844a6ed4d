"""Several `tfops serve` processes on one store, seen from outside: real daemons, real Git, real
Terraform with the demo provider.

- SQLite holds one daemon: the second on the same file refuses to start and says to use
  PostgreSQL, the first keeps serving, and after a kill -9 of the first a new one starts.
"""

from __future__ import annotations

import os
import signal
import socket

import httpx
import pytest
from harness import Daemons, Remote, demo_stack, wait_for, write_config

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
