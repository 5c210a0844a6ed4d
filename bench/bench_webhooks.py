"""Benchmark: merge-to-plan latency with webhooks vs polling, and webhook acknowledgement under load.

1. Latency from "merge pushed" (the push to the bare remote returned) to "Terraform plan process
   started" (a shim in front of the real Terraform 1.0.3 writes the time it was exec'd with
   `plan`), over repeated merges that each change one stack:
   - webhooks: the daemon polls only hourly; right after each push a signed GitHub `pull_request`
     (closed, merged) is sent to `POST /webhooks/github`.
   - polling: no webhook; the daemon polls at the default interval (60 s). Merges are pushed at
     random moments, as real merges are, so each waits for the next tick.
2. Acknowledgement of `POST /webhooks/github` at 50 requests/s for 10 s (open loop, the same load
   generator as bench_slack_ack.py), against a bare route on the same server stack. Each request
   is a valid, signed merge event with a fresh delivery id, so every one is verified, parsed and
   handed to the debouncer; the debouncer's fetches (of an unchanged head) run meanwhile.

    .venv/bin/python bench/bench_webhooks.py [--merges 20] [--poll-merges 6] [--ack-runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import git
import httpx
import yaml
from bench_slack_ack import BARE_PATH, Phase, bare_router, open_loop

from tfops.app import App
from tfops.config import load_settings
from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config
from tfops.models import RunKind
from tfops.web.app import create_app
from tfops.web.server import HttpOptions, WebServer

SECRET = "bench-webhook-secret"
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
  name    = "{name}"
  content = "{content}"
}}
"""
SHIM = """#!/bin/sh
if [ "$1" = "plan" ]; then
  python3 -c 'import time; print(time.time())' >> {log}
fi
exec {real} "$@"
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--merges", type=int, default=20, help="merges measured with webhooks")
    parser.add_argument(
        "--poll-merges", type=int, default=6, help="merges measured with polling (~1 min each)"
    )
    parser.add_argument("--poll-interval", type=float, default=60.0)
    parser.add_argument("--ack-runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-webhooks-"))
    try:
        bench = Bench(root)
        webhook = bench.latencies(args.merges, poll_interval=3600, webhook=True)
        polling = bench.latencies(args.poll_merges, poll_interval=args.poll_interval, webhook=False)
        acks = [bench.acknowledgements(args.rate, args.seconds) for _ in range(args.ack_runs)]
        report(args, webhook, polling, acks)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = root / "cloud"
        self.cloud.mkdir()
        mirror = build_mirror(root / "mirror")
        cache = build_mirror(root / "plugin-cache")
        self.cli_config = write_cli_config(root / "terraformrc", mirror, plugin_cache_dir=cache)
        home = root / "home"
        home.mkdir()
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        self.plan_log = root / "plan-starts.log"
        self.shim = root / "terraform-shim"
        self.shim.write_text(SHIM.format(log=self.plan_log, real=terraform_binary()))
        self.shim.chmod(0o755)
        self.remote = root / "remote.git"
        git.Repo.init(self.remote, bare=True, initial_branch="main")
        self.work = git.Repo.init(root / "work", initial_branch="main")
        with self.work.config_writer() as config:
            config.set_value("user", "name", "bench")
            config.set_value("user", "email", "bench@example.com")
        self.work.create_remote("origin", str(self.remote))
        self.version = 0
        self.merge()
        self.runs = 0

    def merge(self) -> str:
        """A commit that changes the one stack, pushed; returns its sha once the push returned."""
        self.version += 1
        path = self.root / "work" / "stacks" / "app" / "main.tf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            STACK.format(cloud=json.dumps(str(self.cloud)), name="app", content=f"v{self.version}")
        )
        self.work.git.add("-A")
        sha = self.work.index.commit(f"v{self.version}").hexsha
        self.work.git.push("origin", "HEAD:refs/heads/main")
        return sha

    def app(self, *, poll_interval: float, port: int) -> App:
        (self.root / "github-secret").write_text(SECRET)
        config = {
            "data_dir": str(self.root / f"data-{port}"),
            "repo": {"url": str(self.remote), "branch": "main", "poll_interval": poll_interval},
            "terraform": {"binary": str(self.shim), "cli_config": str(self.cli_config), "timeout": "10m"},
            "http": {"listen": f"127.0.0.1:{port}"},
            "webhooks": {
                "repository": "acme/infra",
                "github": {"secret_file": str(self.root / "github-secret")},
            },
            "stacks": [{"discover": "stacks/*", "on_merge": "apply", "drift_interval": 0}],
        }
        path = self.root / "tfops.yaml"
        path.write_text(yaml.safe_dump(config))
        return App(load_settings(path, environ={}), environ=dict(self.env))

    def latencies(self, merges: int, *, poll_interval: float, webhook: bool) -> list[float]:
        if merges <= 0:
            return []
        port = free_port()
        app = self.app(poll_interval=poll_interval, port=port)
        stop = threading.Event()
        daemon = threading.Thread(target=app.serve, args=(stop,), daemon=True)
        daemon.start()
        try:
            wait(
                lambda: (
                    app.web_server is not None and app.web_server.running and app.store.list_runs(limit=1)
                ),
                120,
            )
            app.queue.wait_idle(120)
            samples = []
            for _ in range(merges):
                if not webhook:
                    time.sleep(random.uniform(0, poll_interval))  # merges land at random moments
                starts_before = len(self.plan_starts())
                sha = self.merge()
                pushed = time.time()
                if webhook:
                    send_merge(port, sha)
                wait(lambda n=starts_before: len(self.plan_starts()) > n, poll_interval * 2 + 60)
                samples.append(self.plan_starts()[starts_before] - pushed)
                wait(lambda s=sha: _deployed(app, s), 120)
                app.queue.wait_idle(120)
            return samples
        finally:
            stop.set()
            daemon.join(60)

    def plan_starts(self) -> list[float]:
        if not self.plan_log.exists():
            return []
        return [float(line) for line in self.plan_log.read_text().split()]

    def acknowledgements(self, rate: float, seconds: float) -> dict[str, Phase]:
        port = free_port()
        app = self.app(poll_interval=3600, port=port)
        app.build_listeners()
        app.start()
        app.fetch_soon.start()
        server = app.web_server
        server.start()
        bare = WebServer(create_app([bare_router()]), HttpOptions("127.0.0.1", 0))
        bare.start()
        body = json.dumps(
            merge_event(app.store.get_stack("app").head_sha if app.store.get_stack("app") else None)
        )
        try:
            phases = {
                "baseline": open_loop(
                    bare.port, BARE_PATH, body.encode(), rate=rate, seconds=seconds, clients=8
                ),
                "tfops": open_loop(
                    port,
                    "/webhooks/github",
                    body.encode(),
                    rate=rate,
                    seconds=seconds,
                    clients=8,
                    headers=signed,
                ),
            }
        finally:
            bare.stop()
            server.stop()
            app.fetch_soon.stop()
            app.close()
        return phases


def _deployed(app: App, sha: str) -> bool:
    return any(
        run.kind is RunKind.DEPLOY and run.commit_sha == sha and run.status.is_terminal
        for run in app.store.list_runs(stack="app", limit=5)
    )


def merge_event(sha: str | None) -> dict:
    sha = sha or "0" * 40
    return {
        "action": "closed",
        "number": 7,
        "pull_request": {"merged": True, "merge_commit_sha": sha, "base": {"ref": "main"}},
        "repository": {"full_name": "acme/infra", "clone_url": "https://github.com/acme/infra.git"},
    }


def signed(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def send_merge(port: int, sha: str) -> None:
    body = json.dumps(merge_event(sha)).encode()
    answer = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/github", content=body, headers=signed(body), timeout=10
    )
    assert answer.status_code == 202, answer.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        time.sleep(0.01)


def percentile(samples: list[float], q: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def report(args, webhook: list[float], polling: list[float], acks: list[dict[str, Phase]]) -> None:
    print(f"# merge pushed -> terraform plan started ({len(webhook)} merges with webhooks, "
          f"{len(polling)} with polling every {args.poll_interval:g}s)")  # fmt: skip
    for name, samples in (("webhooks", webhook), ("polling", polling)):
        if samples:
            print(f"{name:<9} p50 {percentile(samples, 50):7.3f} s   p95 {percentile(samples, 95):7.3f} s   "
                  f"samples {', '.join(f'{s:.2f}' for s in samples)}")  # fmt: skip
    if webhook and polling:
        print(f"polling/webhooks p50 ratio {percentile(polling, 50) / percentile(webhook, 50):.0f}x")
    print(
        f"# webhook acknowledgement: {args.rate:g} requests/s for {args.seconds:g} s, "
        f"medians of {len(acks)} runs"
    )
    for name in ("baseline", "tfops"):
        p50 = statistics.median(run[name].percentile(50) for run in acks)
        p99 = statistics.median(run[name].percentile(99) for run in acks)
        errors = sum(run[name].errors for run in acks)
        per_run = ", ".join(f"{run[name].percentile(99):.2f}" for run in acks)
        print(f"{name:<9} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (p99 per run: {per_run})   errors {errors}")


if __name__ == "__main__":
    main()
