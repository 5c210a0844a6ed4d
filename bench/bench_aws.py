"""Benchmark of tfops' AWS layer (issue 11), against baselines measured in the same run.

1. Per-run cost of roles and secrets: the wall time of tfops runs (real App and Reconciler, real
   git, real Terraform, the awsssm test provider against moto on loopback) of stacks WITH a
   plan_role, an apply_role and two secrets (`ssm:/…` and `secretsmanager:…#key`), against the
   same runs of identical stacks with static credentials (the daemon's own AWS_* passed through,
   no roles, no secrets). Deploy runs (init, plan, show, apply: both roles) on a fresh stack each,
   and drift runs (init, plan: the plan role) on one deployed stack; the two variants alternate.
   Reported as ratios (target < 1.05), with the AWS layer alone (`RunCloud.environment` for the
   plan and apply phases of a new run id) timed on its own.
2. CloudTrail attribution of a drift of 20 resources (tfops.aws.attribution.attribute with a
   TrailLookup on a real boto3 client against tests/cloudtrailfake.py): requests and wall time with
   the real 2/s token bucket, against the same lookups with the bucket out of the way (1000/s);
   a second attribution of the same resources (served by the cache); and 30 resources, where the
   run's bound (max_lookups, 20) leaves the rest "unavailable: lookup bound reached".

Medians of several repetitions; these machines are noisy. Usage:

    .venv/bin/python bench/bench_aws.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
# The test helpers (moto server, awsssm provider, CloudTrail fake, git remote, config) are reused.
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import awsstack  # noqa: E402
import cloudtrailfake  # noqa: E402
import motoserver  # noqa: E402
from harness import Remote, make_app, write_config  # noqa: E402
from unit.test_aws_attribution import client_for  # noqa: E402

from tfops.app import App  # noqa: E402
from tfops.aws.attribution import attribute  # noqa: E402
from tfops.aws.trail import TokenBucket, TrailCache, TrailLookup  # noqa: E402
from tfops.demo.mirror import build_mirror, terraform_binary, write_cli_config  # noqa: E402
from tfops.models import RunKind, RunStatus, Trigger, TriggerSource  # noqa: E402

ROLES = {
    "plan_role": "arn:aws:iam::123456789012:role/tfops-read",
    "apply_role": "arn:aws:iam::123456789012:role/tfops-apply",
}
SECRETS = {
    "TF_VAR_db_password": "ssm:/bench/db/password",
    "TF_VAR_api_key": "secretsmanager:bench/api#key",
}
# Both variants run the same Terraform: with static credentials the variables keep their defaults.
VARIABLES = """
variable "db_password" {{
  type    = string
  default = "static-default-password"
}}

variable "api_key" {{
  type    = string
  default = "static-default-api-key"
}}

resource "awsssm_parameter" "db" {{
  name  = "/bench/{name}/db"
  value = var.db_password
}}

resource "awsssm_parameter" "api" {{
  name  = "/bench/{name}/api"
  value = var.api_key
}}
"""
VARIANTS = ("static", "roles")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-aws-"))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server, aws = motoserver.start()
    try:
        bench = RunsBench(root, aws, repeats)
        try:
            runs = bench.measure()
        finally:
            bench.app.close()
        trail = trail_bench()
        report(repeats, runs, trail)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


# --- 1. per-run cost of roles and secrets ---------------------------------------------------------------


class RunsBench:
    def __init__(self, root: Path, aws: motoserver.MotoEndpoint, repeats: int) -> None:
        self.root = root
        self.aws = aws
        self.repeats = repeats
        # One stack per deploy (a warm-up and one per repeat) of each variant.
        self.names = {v: [f"{v}-{i:02d}" for i in range(repeats + 1)] for v in VARIANTS}
        self._put_secrets()
        env = self._tf_env()
        config = self._write_repo_and_config()
        self.app = make_app(config, {**env, **aws.daemon_env()})
        self.head = self._prepare(self.app)

    def _tf_env(self) -> dict[str, str]:
        mirror = awsstack.add_to_mirror(build_mirror(self.root / "mirror"))
        cache = awsstack.add_to_mirror(build_mirror(self.root / "plugin-cache"))
        self.cli_config = write_cli_config(self.root / "terraformrc", mirror, plugin_cache_dir=cache)
        home = self.root / "home"
        home.mkdir()
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def _put_secrets(self) -> None:
        own = {
            "endpoint_url": self.aws.url,
            "region_name": self.aws.region,
            "aws_access_key_id": self.aws.access_key_id,
            "aws_secret_access_key": self.aws.secret_access_key,
        }
        boto3.client("ssm", **own).put_parameter(
            Name="/bench/db/password", Value="bench-db-password-1c9e", Type="SecureString", Overwrite=True
        )
        boto3.client("secretsmanager", **own).create_secret(
            Name="bench/api", SecretString=json.dumps({"key": "bench-api-key-77d2", "other": "x"})
        )

    def _write_repo_and_config(self) -> Path:
        remote = Remote(self.root)
        stacks = []
        for variant, names in self.names.items():
            for name in names:
                code = awsstack.ssm_stack(
                    {f"/bench/{name}/greeting": "hello"},
                    endpoint_url=self.aws.url,
                    region=self.aws.region,
                    extra=VARIABLES.format(name=name),
                )
                remote.write(f"stacks/{name}/main.tf", code)
                stack = {"name": name, "path": f"stacks/{name}", "on_merge": "apply", "drift_interval": 0}
                if variant == "roles":
                    stack |= {"aws": ROLES, "secrets": SECRETS}
                stacks.append(stack)
        remote.commit_and_push("bench stacks")
        # The moto endpoint is the daemon's AWS (aws.endpoint_url); the provider names it itself.
        return write_config(
            self.root / "tfops.yaml",
            remote=remote,
            data_dir=self.root / "data",
            terraform_bin=terraform_binary(),
            cli_config=self.cli_config,
            stacks=stacks,
            terraform={"timeout": "10m", "lock_timeout": "30s"},
            aws={"region": self.aws.region, "endpoint_url": self.aws.url},
        )

    @staticmethod
    def _prepare(app: App) -> str:
        app.git.ensure_clone()
        fetched = app.git.fetch()
        stacks = app.registry.refresh()
        app.store.sync_stacks((s.name, s.path) for s in stacks.values())
        app.store.set_head_all(fetched.head.sha)
        return fetched.head.sha

    def measure(self) -> dict:
        # Warm-up, not counted: the first run of each variant pays one-off costs (tfops' AWS
        # clients built on first use, page cache, the provider's first start).
        warm = {v: self._run(self.names[v][0], RunKind.DEPLOY, RunStatus.APPLIED) for v in VARIANTS}
        deploy = self._alternate(
            lambda v, i: self._run(self.names[v][i + 1], RunKind.DEPLOY, RunStatus.APPLIED)
        )
        drift = self._alternate(lambda v, i: self._run(self.names[v][0], RunKind.DRIFT, RunStatus.NO_CHANGES))
        layer = self._layer_alone()
        self._check_values_reached_aws()
        return {"warm_up": warm, "deploy": deploy, "drift": drift, "layer": layer}

    def _alternate(self, one: Callable[[str, int], float]) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for i in range(self.repeats):
            # Alternate the order so that warm-up and noise do not favour one side.
            for variant in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
                samples[variant].append(one(variant, i))
        return samples

    def _run(self, name: str, kind: RunKind, expected: RunStatus) -> float:
        trigger = Trigger(source=TriggerSource.CLI, actor="bench")
        run = self.app.store.create_run(name, kind, trigger, self.head)
        started = time.perf_counter()
        done = self.app.reconciler.execute(run.id)
        wall = time.perf_counter() - started
        if done.status is not expected:
            raise RuntimeError(f"{kind.value} run of {name}: {done.status.value}: {done.error}")
        return wall

    def _check_values_reached_aws(self) -> None:
        """The roles variant really ran with the secrets, the static one with the defaults."""
        ssm = boto3.client(
            "ssm",
            endpoint_url=self.aws.url,
            region_name=self.aws.region,
            aws_access_key_id=self.aws.access_key_id,
            aws_secret_access_key=self.aws.secret_access_key,
        )
        for variant, expected in (("roles", "bench-api-key-77d2"), ("static", "static-default-api-key")):
            value = ssm.get_parameter(Name=f"/bench/{self.names[variant][1]}/api")["Parameter"]["Value"]
            if value != expected:
                raise RuntimeError(f"{variant}: the api parameter holds {value!r}")

    def _layer_alone(self) -> list[float]:
        """tfops' AWS work for one deploy run, alone: assume both roles (a new session name, so
        nothing is cached) and read both secrets, through the App's own RunIdentities."""
        stack = self.app.registry.current()[self.names["roles"][0]]
        cloud = self.app.reconciler.cloud
        assert cloud is not None
        samples = []
        for i in range(max(self.repeats, 5) * 2):
            run = cloud.for_run(stack, 900_000 + i)  # run ids no real run has
            started = time.perf_counter()
            plan, apply = run.environment("plan"), run.environment("apply")
            samples.append(time.perf_counter() - started)
            assert plan.env["TF_VAR_api_key"] == "bench-api-key-77d2"
            assert plan.env["AWS_ACCESS_KEY_ID"] != apply.env["AWS_ACCESS_KEY_ID"]
        return samples


# --- 2. CloudTrail attribution ------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
ALICE = "arn:aws:iam::111111111111:user/alice"


def drifted(count: int) -> list[dict]:
    """`resource_drift` entries for `count` security groups, as a drift run's plan gives them."""
    changes = []
    for i in range(count):
        group = f"sg-{i:017x}"
        before = {
            "id": group,
            "name": f"web-{i}",
            "arn": f"arn:aws:ec2:eu-west-1:111111111111:security-group/{group}",
        }
        changes.append(
            {
                "address": f"aws_security_group.web_{i}",
                "type": "aws_security_group",
                "change": {"actions": ["update"], "before": before, "after": before},
            }
        )
    return changes


def trail_bench() -> dict:
    server, fake = cloudtrailfake.start()
    try:
        for change in drifted(30):
            group = change["change"]["before"]["id"]
            fake.record(
                group, "DescribeSecurityGroups", ALICE, time=NOW - timedelta(minutes=30), read_only=True
            )
            fake.record(group, "AuthorizeSecurityGroupIngress", ALICE, time=NOW - timedelta(hours=1))
        client = client_for(fake)  # one attempt: the bucket, not botocore's retries, paces requests
        since = NOW - timedelta(days=1)
        results = {}
        # Baseline: the same requests with the bucket out of the way.
        results["unthrottled"] = _attribution(fake, client, drifted(20), since, TokenBucket(1000.0))
        cache = TrailCache()
        bucket = TokenBucket(2.0)  # the real limit, real clock
        results["throttled"] = _attribution(fake, client, drifted(20), since, bucket, cache)
        # The next drift run of the same stack: a new lookup (its own bound), the same cache.
        results["cached"] = _attribution(fake, client, drifted(20), since, bucket, cache)
        results["thirty"] = _attribution(fake, client, drifted(30), since, TokenBucket(2.0))
        return results
    finally:
        server.shutdown()
        server.server_close()


def _attribution(fake, client, changes, since, bucket: TokenBucket, cache: TrailCache | None = None) -> dict:
    lookup = TrailLookup(client, bucket=bucket, cache=cache or TrailCache())
    before = fake.request_count()
    started = time.perf_counter()
    found = attribute(changes, since, lookup)
    wall = time.perf_counter() - started
    attributed = sum(1 for a in found.values() if a.latest and a.latest.principal_arn == ALICE)
    reasons = sorted({a.unavailable for a in found.values() if a.unavailable})
    return {
        "resources": len(changes),
        "requests": fake.request_count() - before,
        "lookup_requests": lookup.requests,
        "wall": wall,
        "attributed": attributed,
        "unavailable": len(changes) - attributed,
        "reasons": reasons,
    }


# --- report -------------------------------------------------------------------------------------------


def report(repeats: int, runs: dict, trail: dict) -> None:
    med = statistics.median
    print(f"# tfops AWS layer benchmark (issue 11), medians of {repeats} runs per variant")
    print()
    for kind, label in (
        ("deploy", "deploy run (init, plan, show, apply)"),
        ("drift", "drift run (init, plan)"),
    ):
        static, roles = med(runs[kind]["static"]), med(runs[kind]["roles"])
        print(f"{label}:")
        print(f"  static credentials (daemon's AWS_*)  : {static:.2f}s")
        print(
            f"  2 roles + 2 secrets (STS, SSM, SM)   : {roles:.2f}s  "
            f"ratio {roles / static:.3f} (target < 1.05)"
        )
    layer = med(runs["layer"])
    print(
        f"AWS layer alone (AssumeRole x2 + 2 secret reads, moto on loopback): {layer * 1000:.0f} ms per run"
    )
    print(
        "warm-up deploys (first of each variant, not counted):",
        json.dumps({k: round(v, 2) for k, v in runs["warm_up"].items()}),
    )
    print()
    print("CloudTrail attribution (LookupEvents, max_lookups 20 per run):")
    rows = (
        ("unthrottled", "20 resources, bucket at 1000/s (baseline)"),
        ("throttled", "20 resources, real 2/s bucket"),
        ("cached", "same 20 again, next run (cache)"),
        ("thirty", "30 resources, real 2/s bucket"),
    )
    for key, label in rows:
        r = trail[key]
        print(
            f"  {label:42}: {r['requests']:2d} requests, {r['wall']:5.2f}s, "
            f"{r['attributed']} attributed, {r['unavailable']} unavailable {r['reasons'] or ''}"
        )
    print()
    samples = {
        kind: {v: [round(s, 3) for s in runs[kind][v]] for v in VARIANTS} for kind in ("deploy", "drift")
    }
    print("samples:", json.dumps(samples | {"layer": [round(s, 4) for s in runs["layer"]]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
