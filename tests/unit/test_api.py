"""The JSON API over real HTTP: uvicorn on a loopback port, a real SQLite store, httpx requests.

The store is filled through its own methods the way the daemon fills it. `queue_run` is a
hand-written fake that records its calls and creates the run in the store (or coalesces).
Host details (the run directory, holding the log and the plan file) sit under a folder whose name
is a canary, and a sensitive value from a real plan is another: neither may reach any answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tfops.errors import GitFetchError
from tfops.incidents import DriftedResource, DriftSeen, Resolution
from tfops.models import (
    DecisionKind,
    DecisionOutcome,
    DecisionSource,
    DriftState,
    OnDrift,
    OnMerge,
    Run,
    RunKind,
    RunStatus,
    Stack,
    Trigger,
    TriggerSource,
)
from tfops.store import Store
from tfops.terraform.plan import summarize, summary_to_dict
from tfops.web import HttpOptions, WebServer, create_app
from tfops.web.api import ApiToken, api_router

PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
HOST_CANARY = "host-canary-9d1e"  # in the run directory's name: log path and plan file path
ENV_CANARY = "env-canary-5b77"  # in a stack's Terraform environment, which the API never shows
SENSITIVE_CANARY = "canary-s3cr3t-value-42"  # a sensitive value inside the plan fixtures

READ = ApiToken(name="dashboard", token="read-token-0123456789abcdef", scope="read")
WRITE = ApiToken(name="ci", token="write-token-fedcba9876543210", scope="write")
SHA_OLD, SHA_NEW = "1" * 40, "2" * 40
NEXT_CHECK = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

STACKS = {
    "network": Stack(
        name="network",
        path="stacks/network",
        env=(("TF_VAR_db_password", ENV_CANARY),),
        drift_interval=600.0,
        on_merge=OnMerge.ASK,
        on_drift=OnDrift.REMEDIATE,
        approvers=("U0ALICE", "U0BOB"),
        approvals_required=2,
    ),
    "dns": Stack(name="dns", path="stacks/dns", drift_interval=0.0),
}


@dataclass
class RecordingQueue:
    """`queue_run` for the router: records every call; creates the run, or coalesces, or fails."""

    store: Store
    calls: list[tuple[str, RunKind, str]] = field(default_factory=list)
    coalesce: bool = False
    failure: Exception | None = None

    def __call__(self, stack: str, kind: RunKind, actor: str) -> Run | None:
        self.calls.append((stack, kind, actor))
        if self.failure is not None:
            raise self.failure
        if self.coalesce:
            return None
        return self.store.create_run(stack, kind, Trigger(source=TriggerSource.CLI, actor=actor), SHA_NEW)


@dataclass
class World:
    store: Store
    queue: RecordingQueue
    client: httpx.Client
    runs: dict[str, Run]  # the runs made up front, by role

    def get(self, path: str, token: ApiToken | None = READ, **params: object) -> httpx.Response:
        return self.client.get(path, params=params, headers=bearer(token))

    def post(self, path: str, token: ApiToken | None = WRITE) -> httpx.Response:
        return self.client.post(path, headers=bearer(token))


def bearer(token: ApiToken | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"} if token else {}


ATTRIBUTION = {
    "address": "demo_object.site",
    "identifier": "site",
    "unavailable": None,
    "events": [
        {
            "event_id": "e-1",
            "event_name": "PutObject",
            "time": "2026-11-28T10:42:00+00:00",
            "principal_arn": "arn:aws:iam::111111111111:user/alice",
            "session_name": None,
            "role_arn": None,
            "source_ip": "203.0.113.7",
            "user_agent": "console.amazonaws.com",
            "agent": "console",
            "by_tfops": False,
        }
    ],
}


def plan_summary(fixture: str) -> dict:
    return summary_to_dict(summarize(json.loads((PLANS / f"{fixture}.json").read_text())))


def fill_store(store: Store, runs_dir: Path) -> dict[str, Run]:
    """Three stacks (one no longer configured) and runs in the states the daemon leaves them in."""
    store.sync_stacks([("network", "stacks/network"), ("dns", "stacks/dns"), ("legacy", "stacks/legacy")])
    store.set_head_all(SHA_NEW)
    store.mark_stack_applied("network", SHA_OLD)
    store.set_drift("network", DriftState.DRIFTED, summary=plan_summary("drift"))
    poll = Trigger(source=TriggerSource.POLL, actor="poll", note="merge of #12")

    def planned(stack: str, kind: RunKind, fixture: str, **extra: Any) -> Run:
        run = store.create_run(stack, kind, poll, SHA_NEW)
        log_path = runs_dir / str(run.id) / "plan.log"
        log_path.parent.mkdir(parents=True)
        log_path.write_text(f"terraform output mentioning {HOST_CANARY}\n")
        (log_path.parent / "plan.tfplan").write_bytes(b"binary plan")
        store.transition(run.id, RunStatus.PLANNING, message="planning", log_path=str(log_path))
        return store.transition(
            run.id,
            RunStatus.AWAITING_APPROVAL,
            message="plan saved; waiting for 2 approvals",
            summary={**plan_summary(fixture), **extra},
            plan_sha256="f" * 64,
            exit_code=2,
        )

    awaiting = planned("network", RunKind.DEPLOY, "sensitive_update")
    store.record_decision(
        awaiting.id,
        DecisionKind.APPROVE,
        "U0ALICE",
        "alice",
        DecisionSource.SLACK,
        SHA_NEW,
        "f" * 64,
        DecisionOutcome.COUNTED,
    )
    drift = planned("network", RunKind.DRIFT, "drift", attribution=[ATTRIBUTION])
    failed = store.create_run("dns", RunKind.DEPLOY, poll, SHA_NEW)
    failed = store.transition(failed.id, RunStatus.PLANNING, message="planning")
    failed = store.transition(
        failed.id, RunStatus.FAILED, message="plan failed", error="Error: Unsupported argument", exit_code=1
    )
    old = store.create_run("legacy", RunKind.DEPLOY, poll, SHA_OLD)
    old = store.transition(old.id, RunStatus.SUPERSEDED, message="superseded by a newer commit")
    return {"awaiting": awaiting, "drift": drift, "failed": failed, "legacy": old}


@pytest.fixture(scope="module")
def world_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("api")
    store = Store(Store.sqlite_url(root / "tfops.db"))
    store.upgrade()
    runs = fill_store(store, root / HOST_CANARY / "runs")
    queue = RecordingQueue(store)
    router = api_router(
        store=store,
        stacks=lambda: STACKS,
        queue_run=queue,
        tokens=[READ, WRITE],
        next_check=lambda name: NEXT_CHECK if name == "network" else None,
    )
    server = WebServer(create_app([router]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield World(store, queue, client, runs)
    assert server.stop(timeout=5.0)
    store.close()


@pytest.fixture
def world(world_module: World) -> World:
    world_module.queue.calls.clear()
    world_module.queue.coalesce = False
    world_module.queue.failure = None
    return world_module


# --------------------------------------------------------------------------- reading


def test_read_token_lists_every_stack_with_policy_drift_last_run_and_next_check(world: World) -> None:
    response = world.get("/api/stacks")

    assert response.status_code == 200
    by_name = {stack["name"]: stack for stack in response.json()}
    assert sorted(by_name) == ["dns", "legacy", "network"]
    network = by_name["network"]
    assert network["policy"] == {
        "on_merge": "ask",
        "on_drift": "remediate",
        "drift_interval": 600.0,
        "approvals_required": 2,
    }
    assert (network["head_sha"], network["applied_sha"]) == (SHA_NEW, SHA_OLD)
    assert network["drift"] == "drifted"
    assert network["drift_checked_at"] is not None
    assert network["last_run"] == {
        "id": world.runs["drift"].id,
        "kind": "drift",
        "status": "awaiting_approval",
        "finished_at": None,
    }
    assert datetime.fromisoformat(network["next_check"]) == NEXT_CHECK
    assert by_name["dns"]["last_run"]["status"] == "failed"
    assert by_name["dns"]["next_check"] is None


def test_a_stack_with_an_open_drift_incident_shows_since_when_and_which_resources(world: World) -> None:
    drift = world.runs["drift"]
    since = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    web = DriftedResource("aws_instance.web", ("tags.env",))
    world.store.track_drift("network", DriftSeen(drift.id, since, SHA_NEW, (web,)))
    try:
        by_name = {stack["name"]: stack for stack in world.get("/api/stacks").json()}
    finally:
        world.store.resolve_incident("network", drift.id, since, Resolution.CHANGED_BACK, SHA_NEW)

    incident = by_name["network"]["incident"]
    assert datetime.fromisoformat(incident["since"]) == since and incident["seen_count"] == 1
    assert incident["resources"] == [{"address": "aws_instance.web", "attributes": ["tags.env"]}]
    assert incident["opened_run_id"] == drift.id
    assert by_name["dns"]["incident"] is None
    assert {stack["name"]: stack for stack in world.get("/api/stacks").json()}["network"]["incident"] is None


def test_a_stack_that_left_the_configuration_keeps_its_history_but_has_no_policy(world: World) -> None:
    legacy = {stack["name"]: stack for stack in world.get("/api/stacks").json()}["legacy"]

    assert legacy["configured"] is False
    assert legacy["policy"] is None
    assert legacy["path"] == "stacks/legacy"
    assert legacy["last_run"]["status"] == "superseded"


def test_runs_come_newest_first_with_trigger_and_change_counts(world: World) -> None:
    response = world.get("/api/runs")

    assert response.status_code == 200
    runs = response.json()
    ids = [run["id"] for run in runs]
    assert ids == sorted(ids, reverse=True)
    awaiting = next(run for run in runs if run["id"] == world.runs["awaiting"].id)
    assert awaiting["counts"] == {"create": 0, "update": 2, "delete": 0, "replace": 0}
    assert awaiting["trigger"] == {"source": "poll", "actor": "poll", "note": "merge of #12"}
    assert (awaiting["stack"], awaiting["kind"], awaiting["commit_sha"]) == ("network", "deploy", SHA_NEW)
    assert awaiting["plan_sha256"] == "f" * 64
    failed = next(run for run in runs if run["id"] == world.runs["failed"].id)
    assert failed["counts"] is None  # it never got as far as a plan


def test_runs_of_one_stack_and_of_an_unknown_stack(world: World) -> None:
    network = world.get("/api/runs", stack="network").json()
    unknown = world.get("/api/runs", stack="no-such-stack")

    assert {run["stack"] for run in network} == {"network"}
    assert [run["id"] for run in network][-2:] == [world.runs["drift"].id, world.runs["awaiting"].id]
    assert unknown.status_code == 200
    assert unknown.json() == []


def test_limit_keeps_only_the_newest_runs(world: World) -> None:
    everything = world.get("/api/runs", limit=500).json()

    assert world.get("/api/runs", limit=1).json() == everything[:1]


@pytest.mark.parametrize("limit", ["0", "501", "-3", "many"])
def test_limit_outside_1_to_500_is_refused_with_422(world: World, limit: str) -> None:
    response = world.get("/api/runs", limit=limit)

    assert response.status_code == 422
    assert "limit" in response.text


def test_run_detail_has_the_redacted_summary_events_and_decisions(world: World) -> None:
    run = world.runs["awaiting"]

    response = world.get(f"/api/runs/{run.id}")

    assert response.status_code == 200
    detail = response.json()
    assert detail["summary"] == world.store.get_run(run.id).summary
    assert detail["summary"]["changes"][0]["attributes"][0]["path"] == "secret"
    assert [event["to_status"] for event in detail["events"]] == ["queued", "planning", "awaiting_approval"]
    assert detail["events"][-1]["message"] == "plan saved; waiting for 2 approvals"
    assert [(d["actor_name"], d["decision"], d["source"], d["outcome"]) for d in detail["decisions"]] == [
        ("alice", "approve", "slack", "counted")
    ]
    assert detail["exit_code"] == 2


def test_a_drift_run_says_who_caused_the_drift(world: World) -> None:
    detail = world.get(f"/api/runs/{world.runs['drift'].id}").json()

    assert detail["summary"]["attribution"] == [ATTRIBUTION]


def test_failed_run_detail_carries_its_stored_error(world: World) -> None:
    detail = world.get(f"/api/runs/{world.runs['failed'].id}").json()

    assert detail["status"] == "failed"
    assert detail["error"] == "Error: Unsupported argument"
    assert detail["summary"] is None


def test_a_missing_run_is_404(world: World) -> None:
    response = world.get("/api/runs/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "no run 999999"}


@pytest.mark.parametrize("run_id", ["0", "-1", str(2**63), "99999999999999999999999"])
def test_a_run_id_outside_1_to_2_63_minus_1_is_refused_with_422(world: World, run_id: str) -> None:
    response = world.get(f"/api/runs/{run_id}")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "run_id"]


def test_the_largest_run_id_is_looked_up_and_missing(world: World) -> None:
    response = world.get(f"/api/runs/{2**63 - 1}")

    assert response.status_code == 404


def test_a_write_token_may_read(world: World) -> None:
    assert world.get("/api/runs", token=WRITE).status_code == 200


def test_host_details_env_and_sensitive_values_never_leave(world: World) -> None:
    answers = [
        world.get("/api/stacks"),
        world.get("/api/runs", limit=500),
        *(world.get(f"/api/runs/{run.id}") for run in world.runs.values()),
        world.post("/api/stacks/network/plan"),
        world.client.get("/openapi.json"),
    ]

    assert all(answer.status_code in (200, 202) for answer in answers)
    text = "\n".join(answer.text for answer in answers)
    for canary in (HOST_CANARY, ENV_CANARY, SENSITIVE_CANARY, "plan.log", "plan.tfplan", "log_path"):
        assert canary not in text
    # The canaries are really in the store: leaving them out above was the API's doing.
    assert HOST_CANARY in (world.store.get_run(world.runs["awaiting"].id).log_path or "")


DATA_DIR_CANARY = "/var/lib/data-dir-canary-3f0a"


def hide_data_dir(text: str) -> str:
    return text.replace(DATA_DIR_CANARY, "<data_dir>")


def test_the_daemons_scrub_rewrites_every_free_text_of_a_run(tmp_path: Path) -> None:
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("dns", "stacks/dns")])
    note = f"retry of {DATA_DIR_CANARY}/runs/11"
    run = store.create_run("dns", RunKind.PLAN, Trigger(TriggerSource.CLI, "ops", note=note), SHA_NEW)
    store.transition(run.id, RunStatus.PLANNING, message=f"planning in {DATA_DIR_CANARY}/work/dns")
    command = f"/usr/local/bin/terraform plan -out={DATA_DIR_CANARY}/runs/{run.id}/plan.tfplan"
    store.transition(
        run.id, RunStatus.FAILED, message="plan failed", error=f"command: {command}", exit_code=1
    )
    router = api_router(
        store=store,
        stacks=lambda: STACKS,
        queue_run=RecordingQueue(store),
        tokens=[READ],
        scrub=hide_data_dir,
    )

    with (
        WebServer(create_app([router]), HttpOptions(port=0)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        listed = client.get("/api/runs", headers=bearer(READ))
        detail = client.get(f"/api/runs/{run.id}", headers=bearer(READ))
    store.close()

    assert (listed.status_code, detail.status_code) == (200, 200)
    assert DATA_DIR_CANARY not in listed.text + detail.text
    assert listed.json()[0]["trigger"]["note"] == "retry of <data_dir>/runs/11"
    body = detail.json()
    assert body["trigger"]["note"] == "retry of <data_dir>/runs/11"
    assert (
        body["error"] == f"command: /usr/local/bin/terraform plan -out=<data_dir>/runs/{run.id}/plan.tfplan"
    )
    assert [event["message"] for event in body["events"]][-2:] == [
        "planning in <data_dir>/work/dns",
        "plan failed",
    ]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-configured-token"},
        {"Authorization": f"Bearer {READ.token}x"},
        {"Authorization": f"Bearer {READ.token[:-1]}"},
        {"Authorization": f"Basic {READ.token}"},
        {"Authorization": "Bearer"},
        {"Authorization": b"Bearer \xff\xfe-not-ascii"},
    ],
    ids=["missing", "unknown", "longer", "shorter", "basic-scheme", "empty", "latin-1"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/stacks"), ("GET", "/api/runs/1"), ("POST", "/api/stacks/network/plan")],
)
def test_no_valid_token_is_401_with_a_bearer_challenge_and_nothing_queued(
    world: World, headers: dict, method: str, path: str
) -> None:
    response = world.client.request(method, path, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert world.queue.calls == []


def test_unauthenticated_callers_learn_nothing_about_stacks_or_parameters(world: World) -> None:
    unknown_stack = world.post("/api/stacks/no-such-stack/drift", token=None)
    bad_limit = world.get("/api/runs", token=None, limit=0)

    assert (unknown_stack.status_code, bad_limit.status_code) == (401, 401)


@pytest.mark.parametrize("action", ["plan", "drift"])
def test_a_read_token_may_not_queue_runs(world: World, action: str) -> None:
    response = world.post(f"/api/stacks/network/{action}", token=READ)

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert world.queue.calls == []


def test_refusals_are_logged_without_any_token(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    world.client.get("/api/stacks", headers={"Authorization": "Bearer wrong-secret-canary"})
    world.post("/api/stacks/network/plan", token=READ)
    world.post("/api/stacks/network/plan", token=WRITE)

    assert "unknown token" in caplog.text
    assert "read scope only" in caplog.text
    for secret in ("wrong-secret-canary", READ.token, WRITE.token):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- queuing runs


@pytest.mark.parametrize(("action", "kind"), [("plan", RunKind.PLAN), ("drift", RunKind.DRIFT)])
def test_a_write_token_queues_a_run_as_its_named_caller(world: World, action: str, kind: RunKind) -> None:
    response = world.post(f"/api/stacks/network/{action}")

    assert response.status_code == 202
    answer = response.json()
    assert world.queue.calls == [("network", kind, "api:ci")]
    queued = world.store.get_run(answer["run_id"])
    assert (queued.stack, queued.kind, queued.trigger.actor) == ("network", kind, "api:ci")
    assert answer == {
        "queued": True,
        "stack": "network",
        "kind": kind.value,
        "run_id": queued.id,
        "status": "queued",
        "reason": None,
    }
    audit = world.store.audit_entries(limit=1)[0]
    assert (audit.actor_id, audit.action, audit.run_id) == ("api:ci", f"queue_{kind.value}", queued.id)


def test_a_coalesced_request_is_200_not_queued_with_a_reason(world: World) -> None:
    world.queue.coalesce = True

    response = world.post("/api/stacks/dns/drift")

    assert response.status_code == 200
    answer = response.json()
    assert answer["queued"] is False
    assert answer["run_id"] is None
    assert answer["reason"]
    assert world.queue.calls == [("dns", RunKind.DRIFT, "api:ci")]


@pytest.mark.parametrize(
    "name", ["no-such-stack", "legacy", "Network", "network%20", "network;id", "..%2Fnetwork", "%00"]
)
def test_only_a_configured_stack_by_its_exact_name_can_be_queued(world: World, name: str) -> None:
    response = world.post(f"/api/stacks/{name}/plan")

    assert response.status_code == 404
    assert world.queue.calls == []


def test_a_queue_that_cannot_take_the_run_is_503_without_internals(world: World) -> None:
    world.queue.failure = GitFetchError("cannot reach git@internal-host:infra.git")

    response = world.post("/api/stacks/network/plan")

    assert response.status_code == 503
    assert "internal-host" not in response.text


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_every_api_path_the_bearer_scheme_and_the_models(world: World) -> None:
    schema = world.client.get("/openapi.json").json()

    api_paths = {path for path in schema["paths"] if path.startswith("/api/")}
    assert api_paths == {
        "/api/stacks",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/stacks/{name}/plan",
        "/api/stacks/{name}/drift",
    }
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path in api_paths:
        for operation in schema["paths"][path].values():
            assert operation["tags"] == ["api"]
            assert operation["security"] == [{"bearer": []}]
    assert {"StackView", "RunView", "RunDetail", "QueueAnswer"} <= set(schema["components"]["schemas"])
    assert "202" in schema["paths"]["/api/stacks/{name}/plan"]["post"]["responses"]
    operation_ids = {op["operationId"] for path in api_paths for op in schema["paths"][path].values()}
    assert operation_ids == {"list_stacks", "list_runs", "get_run", "queue_plan", "queue_drift"}


# --------------------------------------------------------------------------- building the router


def build(tokens: list[ApiToken]) -> object:
    return api_router(store=None, stacks=dict, queue_run=lambda *args: None, tokens=tokens)  # type: ignore[arg-type]


def test_without_tokens_there_is_no_api() -> None:
    with pytest.raises(ValueError, match="at least one API token"):
        build([])


def test_two_tokens_with_one_secret_or_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="share a secret"):
        build([READ, ApiToken(name="other", token=READ.token, scope="write")])
    with pytest.raises(ValueError, match="share a name"):
        build([READ, ApiToken(name=READ.name, token="another-secret-value-1234", scope="read")])


@pytest.mark.parametrize(
    ("name", "token", "scope"),
    [
        ("ci", "", "read"),
        ("ci", "   ", "read"),
        ("ci", " padded ", "read"),
        ("", "x" * 20, "read"),
        ("two words", "x" * 20, "read"),
        ("ci", "x" * 20, "admin"),
    ],
)
def test_a_token_must_have_a_plain_name_a_secret_and_a_known_scope(name: str, token: str, scope: str) -> None:
    with pytest.raises(ValueError):
        ApiToken(name=name, token=token, scope=scope)  # type: ignore[arg-type]


def test_a_token_never_shows_its_secret() -> None:
    assert WRITE.token not in repr(WRITE)
    assert WRITE.token not in str(WRITE)
    assert "ci" in repr(WRITE)
