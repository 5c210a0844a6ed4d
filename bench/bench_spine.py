"""Benchmark of the reconcile spine, against baselines measured in the same run.

1. Per-run overhead: the wall time of a tfops deploy run (worktree, init, plan,
   show -json, apply, store writes) against the same Terraform commands run
   directly in a plain copy of the stack. Reported as a ratio (target < 1.10).
2. Drift sweep over N demo stacks with the configured parallelism, against
   - a naive loop: `terraform init && terraform plan` per stack in a clean checkout
     (no .terraform yet; providers from the same plugin cache), and
   - the floor: `terraform plan` alone per already-initialised stack,
   both with the same parallelism (targets: faster than naive, within 1.15x of floor).

Medians of several repetitions; these machines are noisy. Usage:

    .venv/bin/python bench/bench_spine.py [--stacks 50] [--parallel 4] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import git
import yaml

from tfops.app import App
from tfops.config import load_settings
from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config
from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.scheduler import queue_drift_check

STACK = """\
terraform {{
  required_providers {{
    demo = {{
      source  = "tfops/demo"
      version = "0.1.0"
    }}
  }}
}}

provider "demo" {{
  root = {cloud}
}}

resource "demo_object" "a" {{
  name    = "{name}-a"
  content = "hello"
  tags    = {{ stack = "{name}" }}
}}

resource "demo_object" "b" {{
  name    = "{name}-b"
  content = "world"
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stacks", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--overhead-reps", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-"))
    try:
        bench = Bench(root, stacks=args.stacks, parallel=args.parallel)
        overhead = bench.overhead(args.overhead_reps)
        sweep = bench.sweep(args.reps)
        report(args, overhead, sweep)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


class Bench:
    def __init__(self, root: Path, *, stacks: int, parallel: int) -> None:
        self.root = root
        self.parallel = parallel
        self.terraform = str(terraform_binary())
        self.cloud = root / "cloud"
        self.cloud.mkdir()
        mirror = build_mirror(root / "mirror")
        cache = build_mirror(root / "plugin-cache")
        self.cli_config = write_cli_config(root / "terraformrc", mirror, plugin_cache_dir=cache)
        home = root / "home"
        home.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        self.names = [f"s{i:02d}" for i in range(stacks)]
        self.remote = root / "remote.git"
        self._make_repo()
        self.app = self._make_app(parallel)

    # -- setup -----------------------------------------------------------------

    def _make_repo(self) -> None:
        git.Repo.init(self.remote, bare=True, initial_branch="main")
        work = git.Repo.init(self.root / "work", initial_branch="main")
        with work.config_writer() as config:
            config.set_value("user", "name", "bench")
            config.set_value("user", "email", "bench@example.com")
        for name in [*self.names, *(f"o{i}" for i in range(40))]:
            folder = "overhead" if name.startswith("o") else "stacks"
            path = self.root / "work" / folder / name / "main.tf"
            path.parent.mkdir(parents=True)
            path.write_text(STACK.format(cloud=json.dumps(str(self.cloud)), name=name))
        work.git.add("-A")
        work.index.commit("bench stacks")
        work.create_remote("origin", str(self.remote))
        work.git.push("origin", "HEAD:refs/heads/main")

    def _make_app(self, parallel: int) -> App:
        config = {
            "data_dir": str(self.root / "data"),
            "repo": {"url": str(self.remote), "branch": "main", "poll_interval": "1h"},
            "terraform": {
                "binary": self.terraform,
                "cli_config": str(self.cli_config),
                "max_parallel": parallel,
                "timeout": "10m",
            },
            "stacks": [
                {"discover": "stacks/*", "on_merge": "apply", "on_drift": "notify", "drift_interval": 0},
                {"discover": "overhead/*", "on_merge": "apply", "on_drift": "notify", "drift_interval": 0},
            ],
        }
        path = self.root / "tfops.yaml"
        path.write_text(yaml.safe_dump(config))
        app = App(load_settings(path, environ={}), environ=dict(self.env))
        app.git.ensure_clone()
        fetched = app.git.fetch()
        stacks = app.registry.refresh()
        app.store.sync_stacks((s.name, s.path) for s in stacks.values())
        app.store.set_head_all(fetched.head.sha)
        self.head = fetched.head.sha
        return app

    # -- 1. per-run overhead -----------------------------------------------------

    def overhead(self, reps: int) -> dict:
        tfops_times, direct_times, tf_inside = [], [], []
        for rep in range(reps):
            # Alternate the order so that warm-up and noise do not favour one side.
            for side in ("direct", "tfops") if rep % 2 == 0 else ("tfops", "direct"):
                if side == "direct":
                    direct_times.append(self._direct_deploy(f"o{2 * rep}"))
                else:
                    wall, inside = self._tfops_deploy(f"o{2 * rep + 1}")
                    tfops_times.append(wall)
                    tf_inside.append(inside)
        return {
            "tfops": statistics.median(tfops_times),
            "direct": statistics.median(direct_times),
            "terraform_inside_tfops": statistics.median(tf_inside),
            "samples": {"tfops": tfops_times, "direct": direct_times},
        }

    def _tfops_deploy(self, name: str) -> tuple[float, float]:
        trigger = Trigger(source=TriggerSource.CLI, actor="bench")
        run = self.app.store.create_run(name, RunKind.DEPLOY, trigger, self.head)
        before = self.app.runner.terraform_seconds
        started = time.perf_counter()
        done = self.app.reconciler.execute(run.id)
        wall = time.perf_counter() - started
        assert done.status is RunStatus.APPLIED, (done.status, done.error)
        return wall, self.app.runner.terraform_seconds - before

    def _direct_deploy(self, name: str) -> float:
        folder = self.root / "direct" / name
        shutil.copytree(self.root / "work" / "overhead" / name, folder)
        # The same local-backend setting tfops writes for a stack without a backend block.
        _local_backend(folder, self.root / "direct-state" / name / "terraform.tfstate")
        env = {**self.env, "TF_DATA_DIR": str(folder / ".tfdata")}
        started = time.perf_counter()
        tf = self.terraform
        self._tf(folder, env, [tf, "init", "-input=false", "-no-color"])
        self._tf(
            folder,
            env,
            [tf, "plan", "-out=plan.tfplan", "-detailed-exitcode", "-input=false", "-no-color"],
            (2,),
        )
        self._tf(folder, env, [tf, "show", "-json", "plan.tfplan"])
        self._tf(folder, env, [tf, "apply", "-input=false", "-no-color", "plan.tfplan"])
        return time.perf_counter() - started

    # -- 2. drift sweep ----------------------------------------------------------

    def sweep(self, reps: int) -> dict:
        self._deploy_all()
        naive_dirs = self._naive_copies()
        results: dict[str, list[float]] = {"tfops": [], "naive": [], "floor": []}
        for rep in range(reps):
            order = ["tfops", "naive", "floor"]
            order = order[rep % 3 :] + order[: rep % 3]
            for method in order:
                if method == "tfops":
                    results["tfops"].append(self._tfops_sweep())
                else:
                    results[method].append(self._direct_sweep(naive_dirs, init=method == "naive"))
        return {method: statistics.median(times) for method, times in results.items()} | {"samples": results}

    def _deploy_all(self) -> None:
        trigger = Trigger(source=TriggerSource.CLI, actor="bench")
        for name in self.names:
            self.app.queue.submit(name, RunKind.DEPLOY, trigger, self.head)
        self.app.queue.wait_idle()
        failed = [r for r in self.app.store.runs_with_status({RunStatus.FAILED})]
        assert not failed, failed[0].error

    def _tfops_sweep(self) -> float:
        started = time.perf_counter()
        runs = [
            queue_drift_check(self.app.store, self.app.queue, name, source=TriggerSource.CLI, actor="bench")
            for name in self.names
        ]
        self.app.queue.wait_idle()
        elapsed = time.perf_counter() - started
        statuses = {self.app.store.get_run(run.id).status for run in runs}
        assert statuses == {RunStatus.NO_CHANGES}, statuses
        return elapsed

    def _naive_copies(self) -> dict[str, Path]:
        """Plain copies of each stack using the state tfops wrote, initialised once."""
        dirs = {}
        for name in self.names:
            folder = self.root / "naive" / name
            shutil.copytree(self.root / "work" / "stacks" / name, folder)
            _local_backend(folder, self.root / "data" / "stacks" / name / "terraform.tfstate")
            self._tf(folder, self.env, [self.terraform, "init", "-input=false", "-no-color"])
            dirs[name] = folder
        return dirs

    def _direct_sweep(self, dirs: dict[str, Path], *, init: bool) -> float:
        tf = self.terraform

        def one(folder: Path) -> None:
            env = self.env
            if init:
                # A naive loop starts from a clean checkout: no .terraform, providers from the cache.
                env = {**self.env, "TF_DATA_DIR": str(folder / ".naive-tfdata")}
                shutil.rmtree(folder / ".naive-tfdata", ignore_errors=True)
                self._tf(folder, env, [tf, "init", "-input=false", "-no-color"])
            self._tf(folder, env, [tf, "plan", "-input=false", "-no-color", "-detailed-exitcode"])

        started = time.perf_counter()
        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(one, dirs.values()))
        return time.perf_counter() - started

    @staticmethod
    def _tf(folder: Path, env: dict, argv: list[str], ok: tuple[int, ...] = ()) -> None:
        result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, check=False)
        if result.returncode not in (0, *ok):
            raise RuntimeError(f"{argv} failed in {folder}:\n{result.stdout}\n{result.stderr}")


def _local_backend(folder: Path, state: Path) -> None:
    (folder / "backend.tf").write_text(
        f'terraform {{\n  backend "local" {{\n    path = {json.dumps(str(state))}\n  }}\n}}\n'
    )


def report(args, overhead: dict, sweep: dict) -> None:
    ratio = overhead["tfops"] / overhead["direct"]
    own = overhead["tfops"] - overhead["terraform_inside_tfops"]
    print(f"# tfops spine benchmark ({args.stacks} stacks, parallelism {args.parallel})")
    print()
    print(f"per-run overhead, medians of {args.overhead_reps} deploy runs (init+plan+show+apply):")
    print(f"  direct terraform commands : {overhead['direct']:.2f}s")
    print(f"  tfops deploy run          : {overhead['tfops']:.2f}s  ratio {ratio:.3f} (target < 1.10)")
    share = own / overhead["terraform_inside_tfops"]
    print(f"  tfops' own time in a run  : {own:.2f}s ({share:.1%} of its Terraform time)")
    print()
    print(f"drift sweep over {args.stacks} stacks, medians of {args.reps}:")
    print(f"  floor (plan only)         : {sweep['floor']:.2f}s")
    print(f"  naive (init && plan)      : {sweep['naive']:.2f}s")
    print(
        f"  tfops drift sweep         : {sweep['tfops']:.2f}s  "
        f"{sweep['tfops'] / sweep['floor']:.3f}x floor (target <= 1.15), "
        f"{sweep['tfops'] / sweep['naive']:.3f}x naive (target < 1)"
    )
    print()
    print("samples:", json.dumps({"overhead": overhead["samples"], "sweep": sweep["samples"]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
