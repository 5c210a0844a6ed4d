"""The daemon's HTTP face, end to end: `App.serve` with its uvicorn server on a loopback port, real
git and real Terraform behind it, real HTTP requests in front."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from harness import Remote, cloud_object, demo_stack, wait_for, write_config
from prometheus_client.parser import text_string_to_metric_families

from tfops.models import RunKind, RunStatus, TriggerSource

pytestmark = pytest.mark.terraform

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
GITHUB_SECRET = "gh-webhook-secret-0123456789"
GITLAB_TOKEN = "gl-webhook-token-0123456789"
READ_TOKEN = "api-read-token-0123456789"
WRITE_TOKEN = "api-write-token-0123456789"


def payload(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def remote(tmp_path, demo_cloud):
    remote = Remote(tmp_path)
    remote.commit_and_push(
        "two stacks",
        {
            "stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v1"}),
            "stacks/db/main.tf": demo_stack(demo_cloud, {"db-main": "v1"}),
        },
    )
    return remote


@pytest.fixture
def daemon(tmp_path, remote, terraform_bin, tf_cli_config, tf_env, port):
    """The daemon with webhooks and the API on; it polls only every hour, so webhooks must do it."""
    for name, value in (("github", GITHUB_SECRET), ("gitlab", GITLAB_TOKEN), ("read", READ_TOKEN)):
        (tmp_path / name).write_text(value + "\n")
    env = {**tf_env, "TFOPS_TEST_WRITE_TOKEN": WRITE_TOKEN}
    running = []

    def start(*, poll_interval="1h"):
        config = write_config(
            tmp_path / "tfops.yaml",
            remote=remote,
            data_dir=tmp_path / "data",
            terraform_bin=terraform_bin,
            cli_config=tf_cli_config,
            http={"listen": f"127.0.0.1:{port}", "max_body": 65536},
            webhooks={
                "repository": "acme/infra",
                "debounce": "100ms",
                "github": {"secret_file": str(tmp_path / "github")},
                "gitlab": {"secret_file": str(tmp_path / "gitlab")},
            },
            api={
                "tokens": [
                    {"name": "dashboard", "token_file": str(tmp_path / "read"), "scope": "read"},
                    {"name": "ci", "token_env": "TFOPS_TEST_WRITE_TOKEN", "scope": "write"},
                ]
            },
        )
        text = config.read_text().replace("poll_interval: 1s", f"poll_interval: {poll_interval}")
        config.write_text(text)
        from tfops.app import App
        from tfops.config import load_settings

        app = App(load_settings(config, environ=env), environ=dict(tf_env))
        stop = threading.Event()
        thread = threading.Thread(target=app.serve, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))
        wait_for(
            lambda: app.web_server is not None and app.web_server.running, timeout=20, what="the HTTP server"
        )
        # The first poll at start deploys both stacks; the tests start from there.
        wait_for(lambda: _applied(app) >= 2, timeout=90, what="the first deploys")
        app.queue.wait_idle(60)
        return app

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(60)


def _applied(app) -> int:
    return sum(1 for run in app.store.list_runs(limit=100) if run.status is RunStatus.APPLIED)


def url(port, path):
    return f"http://127.0.0.1:{port}{path}"


def github(port, body: dict | bytes, *, event="pull_request", delivery=None, secret=GITHUB_SECRET, sign=True):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if sign:
        headers["X-Hub-Signature-256"] = (
            "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        )
    return httpx.post(url(port, "/webhooks/github"), content=raw, headers=headers, timeout=10)


def merged_pull_request(sha: str) -> dict:
    body = payload("github_pull_request_merged.json")
    body["pull_request"]["merge_commit_sha"] = sha
    return body


def deploys(app, stack):
    return [run for run in app.store.list_runs(stack=stack, limit=50) if run.kind is RunKind.DEPLOY]


# --- webhooks -----------------------------------------------------------------------------------------


def test_a_signed_merged_pull_request_fetches_and_applies_the_touched_stack(daemon, port, remote, demo_cloud):
    app = daemon()
    before_db = len(deploys(app, "db"))
    merge = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    answer = github(port, merged_pull_request(merge))

    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    run = wait_for(
        lambda: next(
            (r for r in deploys(app, "app") if r.commit_sha == merge and r.status is RunStatus.APPLIED), None
        ),
        timeout=60,
        what="the merge applied",
    )
    assert run.trigger.source is TriggerSource.WEBHOOK
    assert "github pull_request" in run.trigger.note and merge[:10] in run.trigger.note
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2"
    assert len(deploys(app, "db")) == before_db, "an untouched stack is not deployed"


def test_the_same_delivery_twice_makes_one_run(daemon, port, remote, demo_cloud):
    app = daemon()
    merge = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    delivery = str(uuid.uuid4())

    first = github(port, merged_pull_request(merge), delivery=delivery)
    second = github(port, merged_pull_request(merge), delivery=delivery)

    assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")
    wait_for(lambda: any(r.commit_sha == merge for r in deploys(app, "app")), timeout=30, what="the run")
    app.queue.wait_idle(60)
    assert len([r for r in deploys(app, "app") if r.commit_sha == merge]) == 1
    assert app.fetch_soon.fetches == 1


def test_forged_missing_or_wrong_credentials_are_refused_and_queue_nothing(daemon, port, remote, demo_cloud):
    app = daemon()
    fetches = app.fetch_soon.fetches
    merge = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})

    forged = github(port, merged_pull_request(merge), secret="not-the-secret")
    unsigned = github(port, merged_pull_request(merge), sign=False)
    wrong_token = httpx.post(
        url(port, "/webhooks/gitlab"),
        content=json.dumps(payload("gitlab_push.json")).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Token": "wrong",
        },
        timeout=10,
    )
    not_configured = httpx.post(url(port, "/webhooks/gitea"), content=b"{}", timeout=10)

    assert [r.status_code for r in (forged, unsigned, wrong_token)] == [401, 401, 401]
    assert GITLAB_TOKEN not in wrong_token.text and "wrong" not in wrong_token.text
    assert not_configured.status_code == 404, "a webhook without a secret is not served"
    time.sleep(0.5)
    assert app.fetch_soon.fetches == fetches
    assert not any(r.commit_sha == merge for r in deploys(app, "app"))


def test_other_repositories_branches_and_bad_bodies_trigger_nothing(daemon, port):
    app = daemon()
    fetches = app.fetch_soon.fetches
    other_repo = payload("github_pull_request_merged.json")
    other_repo["repository"]["full_name"] = "acme/website"
    other_branch = payload("github_pull_request_merged.json")
    other_branch["pull_request"]["base"]["ref"] = "develop"

    ignored = [github(port, other_repo), github(port, other_branch)]
    malformed = github(port, b"{not json")
    oversized = github(port, b"{" + b" " * 70000 + b"}")

    assert [(r.status_code, r.json()["status"]) for r in ignored] == [(202, "ignored"), (202, "ignored")]
    assert "acme/website" in ignored[0].json()["reason"] or "repository" in ignored[0].json()["reason"]
    assert malformed.status_code == 400
    assert oversized.status_code == 413
    time.sleep(0.5)
    assert app.fetch_soon.fetches == fetches
    assert app.web_server.running, "bad input never takes the server down"


def test_two_quick_merges_end_with_the_newest_head_applied(daemon, port, remote, demo_cloud):
    app = daemon()
    first = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    github(port, merged_pull_request(first))
    second = remote.commit_and_push("v3", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v3"})})
    burst = [github(port, merged_pull_request(second)) for _ in range(5)]

    assert all(r.json()["status"] == "accepted" for r in burst)
    wait_for(
        lambda: any(r.commit_sha == second and r.status is RunStatus.APPLIED for r in deploys(app, "app")),
        timeout=90,
        what="the newest merge applied",
    )
    app.queue.wait_idle(60)
    assert cloud_object(demo_cloud, "app-web")["content"] == "v3"
    # The guarantee is that deliveries never pile up fetches (at most one each, fewer when they come
    # within the debounce window); how few depends on the machine's speed, so it is not asserted.
    assert 1 <= app.fetch_soon.fetches <= 1 + len(burst), "never more fetches than deliveries"


# --- health, readiness, metrics -------------------------------------------------------------------------


def test_readiness_follows_the_remote_going_away_and_coming_back(daemon, port, remote):
    app = daemon(poll_interval="1s")
    app.poller.first_backoff = 0.2  # fail fast: the test waits for three poll intervals
    assert httpx.get(url(port, "/readyz"), timeout=10).status_code == 200
    hidden = remote.bare.with_name("remote-away.git")
    remote.bare.rename(hidden)
    try:
        answer = wait_for(
            lambda: (r := httpx.get(url(port, "/readyz"), timeout=10)).status_code == 503 and r,
            timeout=30,
            what="readiness to drop",
        )
        assert answer.json()["checks"]["fetch"] is False
        assert httpx.get(url(port, "/healthz"), timeout=10).status_code == 200, "alive all along"
    finally:
        hidden.rename(remote.bare)
    wait_for(
        lambda: httpx.get(url(port, "/readyz"), timeout=10).status_code == 200,
        timeout=30,
        what="readiness to come back",
    )


def test_metrics_describe_the_runs_fetches_and_webhooks_that_happened(daemon, port, remote, demo_cloud):
    app = daemon()
    merge = remote.commit_and_push("v2", {"stacks/app/main.tf": demo_stack(demo_cloud, {"app-web": "v2"})})
    github(port, merged_pull_request(merge))
    github(port, merged_pull_request(merge), secret="forged")
    wait_for(
        lambda: any(r.commit_sha == merge and r.status is RunStatus.APPLIED for r in deploys(app, "app")),
        timeout=60,
        what="the merge applied",
    )
    app.queue.wait_idle(30)

    answer = httpx.get(url(port, "/metrics"), timeout=10)

    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples[("tfops_runs_total", (("kind", "deploy"), ("status", "applied")))] == 3
    assert samples[("tfops_run_duration_seconds_count", (("kind", "deploy"),))] == 3
    terraform = samples[("tfops_run_terraform_seconds_sum", (("kind", "deploy"),))]
    overhead = samples[("tfops_run_tfops_seconds_sum", (("kind", "deploy"),))]
    assert terraform > 0 and 0 <= overhead < terraform, "tfops' own time is a small part of a run"
    assert samples[("tfops_merge_to_apply_seconds_count", ())] == 3
    assert 0 < samples[("tfops_merge_to_apply_seconds_sum", ())] < 300
    assert samples[("tfops_git_fetch_duration_seconds_count", ())] >= 2
    assert samples[("tfops_webhook_deliveries_total", (("result", "accepted"), ("source", "github")))] == 1
    assert (
        samples[("tfops_webhook_deliveries_total", (("result", "unauthorized"), ("source", "github")))] == 1
    )
    assert samples[("tfops_stacks", (("drift", "in_sync"),))] == 2
    assert samples[("tfops_drifted_stacks", ())] == 0
    assert samples[("tfops_queue_depth", ())] == 0


# --- the API ---------------------------------------------------------------------------------------------


def test_api_tokens_are_scoped_and_a_write_token_queues_a_plan(daemon, port):
    app = daemon()
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    write = {"Authorization": f"Bearer {WRITE_TOKEN}"}

    stacks = httpx.get(url(port, "/api/stacks"), headers=read, timeout=10)
    refused = httpx.post(url(port, "/api/stacks/app/plan"), headers=read, timeout=10)
    anonymous = httpx.get(url(port, "/api/runs"), timeout=10)
    queued = httpx.post(url(port, "/api/stacks/app/plan"), headers=write, timeout=10)

    assert stacks.status_code == 200 and {s["name"] for s in stacks.json()} == {"app", "db"}
    assert all(s["next_check"] is None for s in stacks.json()), "drift checks are off in this config"
    assert (refused.status_code, anonymous.status_code, queued.status_code) == (403, 401, 202)
    run_id = queued.json()["run_id"]
    app.queue.wait_idle(60)
    run = app.store.get_run(run_id)
    assert (run.kind, run.status, run.trigger.source, run.trigger.actor) == (
        RunKind.PLAN,
        RunStatus.NO_CHANGES,
        TriggerSource.API,
        "api:ci",
    )
    detail = httpx.get(url(port, f"/api/runs/{run_id}"), headers=read, timeout=10).json()
    assert detail["status"] == "no_changes"
    schema = httpx.get(url(port, "/openapi.json"), timeout=10).json()
    assert {"/api/stacks", "/api/runs", "/webhooks/github", "/healthz", "/metrics"} <= set(schema["paths"])
