"""Benchmark: a drift sweep of many stacks with 1, 2 and 3 `tfops serve` instances on one PostgreSQL.

Real cloud plans wait on API round trips, not on CPU: every stack's provider block sets the demo
provider's `read_latency` (default 300 ms per resource read), so a drift check is I/O bound as
against a real cloud. The set-up, once: a throwaway PostgreSQL cluster (tests/pgserver.py) holds
tfops' store and every stack's Terraform state (the `pg` backend: state is remote in HA); one bare
Git remote holds S stacks of K objects; three instances (own data dirs, one store) apply them.

Then, for 1, 2 and 3 instances (vm-1..vm-n started, the others stopped), with the same
`terraform.max_parallel` each: a warm-up sweep (every instance then has most stacks initialised,
as in a daemon that has run a while), then timed sweeps. A sweep
queues one drift run per stack in the store at once (a `queued` row per stack, as the API's
POST /api/stacks/{name}/drift does; every instance takes queued runs in at its heartbeat or when
a worker frees, whoever queued them, and the store's claim decides who runs each) and is timed
from the queueing to the last run ending. Reported: the median sweep time, runs per second, the
throughput ratio to one instance, and where the time goes: the CPU seconds of the daemons
themselves and of their Terraform processes (and providers, git) during the sweep, against the
machine's cores, the machine's load average, the time from the queueing to the first claim, and
the simulated waiting of a run (one latency per 10 objects: Terraform refreshes 10 resources at once).
Usage:

    .venv/bin/python bench/bench_scaleout.py [--stacks 200] [--objects 3] [--latency 300ms]
        [--max-parallel 4] [--repeats 1] [--instances 1,2,3]
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
from datetime import UTC, datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "integration")]

from bench_failover import until  # noqa: E402 - this folder is on the path when run as a script
from harness import Remote, demo_stack  # noqa: E402 - the tests' helpers, from the paths above
from pgserver import PostgresServer, start_server  # noqa: E402
from test_ha_daemons import _new_database as new_database  # noqa: E402

from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config  # noqa: E402
from tfops.demo.provider import resolve_read_latency  # noqa: E402
from tfops.models import RunKind, RunStatus, Trigger, TriggerSource  # noqa: E402
from tfops.store import Store  # noqa: E402

NAMES = ("vm-1", "vm-2", "vm-3")
TERRAFORM_PARALLELISM = 10  # terraform plan's default -parallelism
TICKS = os.sysconf("SC_CLK_TCK")


def main() -> None:
    layout = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=layout)
    parser.add_argument("--stacks", type=int, default=200)
    parser.add_argument("--objects", type=int, default=3, help="demo objects per stack")
    parser.add_argument("--latency", default="300ms", help="the demo provider's read_latency")
    parser.add_argument("--max-parallel", type=int, default=4, help="terraform.max_parallel of each instance")
    parser.add_argument("--repeats", type=int, default=1, help="timed sweeps per instance count")
    parser.add_argument("--instances", default="1,2,3")
    args = parser.parse_args()
    counts = [int(n) for n in args.instances.split(",")]
    args.load = load()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-scaleout-"))
    server = start_server()
    try:
        estate = Estate(root, server, args)
        estate.seed()
        results = {n: estate.sweeps(n, args.repeats) for n in counts}
        report(args, results)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def stack_code(cloud: Path, conn_str: str, name: str, objects: int, latency: str) -> str:
    backend = f"""
    terraform {{
      backend "pg" {{
        conn_str    = "{conn_str}"
        schema_name = "state_{name}"
      }}
    }}
    """
    code = demo_stack(cloud, {f"{name}-{i}": "v1" for i in range(objects)}, extra=backend)
    # The harness's provider block names the cloud; the latency goes in the same block.
    return code.replace('provider "demo" {\n', f'provider "demo" {{\n  read_latency = "{latency}"\n', 1)


class Estate:
    """The stacks, the remote, the store and the three instances' configs, made once."""

    def __init__(self, root: Path, server: PostgresServer, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.store_url, conn_str = new_database(server, "scaleout")
        self.stacks = [f"s{i:03d}" for i in range(args.stacks)]
        cloud = root / "cloud"
        cloud.mkdir()
        self.remote = Remote(root / "git")
        files = {
            f"stacks/{name}/main.tf": stack_code(cloud, conn_str, name, args.objects, args.latency)
            for name in self.stacks
        }
        self.head = self.remote.commit_and_push(f"{len(files)} stacks", files)
        cli_config = write_cli_config(
            root / "terraform.tfrc", build_mirror(root / "mirror"), plugin_cache_dir=root / "plugin-cache"
        )
        self.configs = {name: self.config(name, cli_config) for name in NAMES}
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "home")}
        (root / "home").mkdir()
        self.store = Store(self.store_url)

    def config(self, name: str, cli_config: Path) -> Path:
        settings = {
            "data_dir": str(self.root / name),
            "store": {"url": self.store_url},
            "ha": {"failover": "5s", "instance_id": name},
            "repo": {"url": self.remote.url, "branch": self.remote.branch, "poll_interval": "10m"},
            "terraform": {
                "binary": str(terraform_binary()),
                "cli_config": str(cli_config),
                "max_parallel": self.args.max_parallel,
                "timeout": "10m",
            },
            "stacks": [
                {"discover": "stacks/*", "on_merge": "apply", "on_drift": "notify", "drift_interval": 0}
            ],
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        return path

    def start(self, names) -> dict[str, subprocess.Popen]:
        daemons = {}
        for name in names:
            log = (self.root / f"{name}.log").open("ab")
            daemons[name] = subprocess.Popen(
                [sys.executable, "-m", "tfops.cli", "--config", str(self.configs[name]), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        until(lambda: {i.id for i in self.store.instances()} >= set(names))
        return daemons

    def stop(self, daemons: dict[str, subprocess.Popen]) -> None:
        for daemon in daemons.values():
            os.killpg(daemon.pid, signal.SIGTERM)
        for name, daemon in daemons.items():
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
            self.store.remove_instance(name)  # stopped, not dead: nothing for a leader to settle

    def seed(self) -> None:
        """Three instances apply every stack once (not timed)."""
        daemons = self.start(NAMES)
        try:
            until(self.all_applied, 60 * 60)
        finally:
            self.stop(daemons)

    def all_applied(self) -> bool:
        runs = self.store.list_runs(limit=10 * len(self.stacks))
        done = {r.stack for r in runs if r.kind is RunKind.DEPLOY and r.status is RunStatus.APPLIED}
        return done >= set(self.stacks)

    def sweeps(self, count: int, repeats: int) -> list[Sweep]:
        daemons = self.start(NAMES[:count])
        try:
            self.sweep(daemons)  # warm-up
            return [self.sweep(daemons) for _ in range(repeats)]
        finally:
            self.stop(daemons)

    def sweep(self, daemons: dict[str, subprocess.Popen]) -> Sweep:
        trigger = Trigger(TriggerSource.API, actor="bench")
        cpu_before = [cpu_seconds(d.pid) for d in daemons.values()]
        start, queued_at = time.monotonic(), datetime.now(UTC)
        ids = {self.store.create_run(s, RunKind.DRIFT, trigger, self.head).id for s in self.stacks}
        runs = until(lambda: self.finished(ids), 60 * 60)
        took = time.monotonic() - start
        cpu_after = [cpu_seconds(d.pid) for d in daemons.values()]
        own = sum(after[0] - before[0] for before, after in zip(cpu_before, cpu_after, strict=True))
        children = sum(after[1] - before[1] for before, after in zip(cpu_before, cpu_after, strict=True))
        statuses = sorted({r.status.value for r in runs})
        per_instance = sorted(sum(1 for r in runs if r.instance_id == n) for n in daemons)
        run_wall = statistics.median((r.finished_at - r.started_at).total_seconds() for r in runs)
        first = min(r.started_at for r in runs if r.started_at) - queued_at
        sweep = Sweep(took, own, children, statuses, per_instance, run_wall)
        sweep.first_start = first.total_seconds()  # the intake's latency: queued to the first claim
        return sweep

    def finished(self, ids: set[int]):
        runs = [r for r in self.store.list_runs(limit=len(ids) + 50) if r.id in ids]
        return runs if len(runs) == len(ids) and all(r.status.is_terminal for r in runs) else None


class Sweep:
    def __init__(
        self,
        seconds: float,
        daemons: float,
        terraform: float,
        statuses: list[str],
        per_instance: list[int],
        run_wall: float,
    ) -> None:
        self.seconds, self.statuses, self.per_instance = seconds, statuses, per_instance
        self.daemons, self.terraform = daemons, terraform  # CPU seconds: tfops itself; its children
        self.cpu = daemons + terraform
        self.run_wall = run_wall  # the median run's time from its claim to its end
        self.first_start = 0.0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system time of a process itself, and of its children it has waited for (Terraform,
    and through Terraform its provider plugins), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own, children = fields[11:13], fields[13:15]
    return sum(int(value) for value in own) / TICKS, sum(int(value) for value in children) / TICKS


def report(args, results: dict[int, list[Sweep]]) -> None:
    latency, _ = resolve_read_latency(args.latency, {})
    # Terraform refreshes up to 10 resources at once (-parallelism) and the provider answers them
    # concurrently: a run waits about one latency per 10 objects, not one per object.
    waiting = latency * -(-args.objects // TERRAFORM_PARALLELISM)
    cores = os.cpu_count() or 1
    print(
        f"stacks {args.stacks} x {args.objects} objects; read_latency {args.latency}; "
        f"max_parallel {args.max_parallel} per instance; {cores} cores; "
        f"simulated waiting per run {waiting:.1f} s; timed sweeps per row {args.repeats} (after a warm-up); "
        f"load average at the start: {args.load}"
    )
    print(f"load average at the end: {load()}")
    print(
        "| instances | sweep (median) | runs/s | throughput vs 1 | CPU s: daemons + Terraform | CPU busy "
        "| CPU s per run | first run started | median run | runs per instance | statuses |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = None
    for count, sweeps in results.items():
        seconds = statistics.median(s.seconds for s in sweeps)
        daemons = statistics.median(s.daemons for s in sweeps)
        terraform = statistics.median(s.terraform for s in sweeps)
        cpu = daemons + terraform
        base = base or (seconds if count == 1 else None)
        ratio = f"{base / seconds:.2f}x" if base else "n/a"
        last = sweeps[-1]
        first = statistics.median(s.first_start for s in sweeps)
        print(
            f"| {count} | {seconds:.1f} s | {args.stacks / seconds:.2f} | {ratio} | "
            f"{daemons:.0f} + {terraform:.0f} | {cpu / (seconds * cores):.0%} of {cores} | "
            f"{cpu / args.stacks:.2f} | {first:.1f} s | {last.run_wall:.1f} s | "
            f"{last.per_instance} | {', '.join(last.statuses)} |"
        )


def load() -> str:
    """The machine's load averages (1, 5, 15 min): other processes share the cores."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
