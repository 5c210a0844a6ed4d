"""Stack order end to end: real git, real Terraform and the demo provider. `app` reads what
`network` wrote (its object in the demo cloud, through `file()` at plan time), so an `app` planned
before `network` is applied would read the old value, or nothing at all."""

from __future__ import annotations

import json

import pytest
from harness import Remote, cloud_object, demo_stack, make_app, tfops_cli, wait_for, write_config

from tfops.app import local_user
from tfops.approvals import DecisionRequest
from tfops.models import DecisionKind, DecisionSource, RunKind, RunReason, RunStatus

pytestmark = pytest.mark.terraform


def network_code(cloud, version: str) -> str:
    return demo_stack(cloud, {"network-vpc": version})


def app_code(cloud, note: str = "") -> str:
    """`app-web` carries the network object's content: app's plan reads network's outcome."""
    vpc = json.dumps(str(cloud / "network-vpc.json"))
    resource = f"""
    # {note}
    resource "demo_object" "app-web" {{
      name    = "app-web"
      content = jsondecode(file({vpc})).content
    }}
    """
    return demo_stack(cloud, {}, extra=resource)


@pytest.fixture
def order_app(tmp_path, demo_cloud, terraform_bin, tf_cli_config, tf_env):
    """A remote with `network` and `app` (which depends on it) and an App on it; `network` takes
    the policy given (default `on_merge: apply`)."""
    made = []

    def make(slack=None, **network_policy):
        """`slack`: the fake Slack to post to (none by default)."""
        remote = Remote(tmp_path)
        code = {
            "stacks/network/main.tf": network_code(demo_cloud, "v1"),
            "stacks/app/main.tf": app_code(demo_cloud),
        }
        remote.commit_and_push("network and app", code)
        apply = {"on_merge": "apply", "drift_interval": 0}
        stacks = [
            {"path": "stacks/network", **apply, **network_policy},
            {"path": "stacks/app", **apply, "depends_on": ["network"]},
        ]
        paths = {"data_dir": tmp_path / "data", "terraform_bin": terraform_bin, "cli_config": tf_cli_config}
        # max_parallel 4: room for both at once, so only the order holds app back
        if slack is not None:
            (tmp_path / "bot-token").write_text(slack.bot_token)
            token = str(tmp_path / "bot-token")
            paths["slack"] = {"bot_token_file": token, "channel": "C0DEPLOYS", "base_url": slack.api_url}
        config = write_config(
            tmp_path / "tfops.yaml", remote=remote, terraform={"max_parallel": 4}, stacks=stacks, **paths
        )
        made.append(make_app(config, tf_env))
        return remote, made[-1], config

    yield make
    for app in made:
        app.close()


def deploys(app) -> dict[str, object]:
    result = app.reconcile_once(timeout=180)
    return {run.stack: run for run in result.runs if run.kind is RunKind.DEPLOY}


def event_at(app, run_id: int, status: RunStatus):
    [event] = [event for event in app.store.events(run_id) if event.to_status is status]
    return event.at


def test_a_commit_touching_network_and_app_applies_network_before_app_is_planned(order_app, demo_cloud):
    remote, app, _ = order_app()
    first = deploys(app)
    assert {name: run.status for name, run in first.items()} == {
        "network": RunStatus.APPLIED,
        "app": RunStatus.APPLIED,
    }, "app's plan reads network's object: it exists only once network is applied"

    remote.commit_and_push(
        "network v2, and app",
        {
            "stacks/network/main.tf": network_code(demo_cloud, "v2"),
            "stacks/app/main.tf": app_code(demo_cloud, "2"),
        },
    )
    second = deploys(app)

    network, web = second["network"], second["app"]
    assert (network.status, web.status) == (RunStatus.APPLIED, RunStatus.APPLIED)
    assert event_at(app, network.id, RunStatus.APPLIED) <= event_at(app, web.id, RunStatus.PLANNING)
    assert cloud_object(demo_cloud, "app-web")["content"] == "v2", "app read network's new outcome"


def test_network_failing_blocks_app_naming_its_run_until_a_fix_of_network_deploys_both(order_app, demo_cloud):
    remote, app, _ = order_app()
    deploys(app)
    remote.commit_and_push(
        "broken network, and app",
        {"stacks/network/main.tf": "resource {\n", "stacks/app/main.tf": app_code(demo_cloud, "2")},
    )

    second = deploys(app)

    network, web = second["network"], second["app"]
    assert network.status is RunStatus.FAILED
    assert (web.status, web.reason) == (RunStatus.BLOCKED, RunReason.UPSTREAM_FAILED)
    [blocked] = [event for event in app.store.events(web.id) if event.to_status is RunStatus.BLOCKED]
    assert blocked.message == f"upstream network failed in run {network.id}"
    moves = [e.to_status for e in app.store.events(web.id) if e.from_status is not e.to_status]  # no notes
    assert moves == [RunStatus.QUEUED, RunStatus.BLOCKED], "never planned"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v1"

    remote.commit_and_push("fix network only", {"stacks/network/main.tf": network_code(demo_cloud, "v3")})
    third = deploys(app)

    assert {name: run.status for name, run in third.items()} == {
        "network": RunStatus.APPLIED,
        "app": RunStatus.APPLIED,
    }, "app's blocked change goes once network deploys again"
    assert cloud_object(demo_cloud, "app-web")["content"] == "v3"


def test_app_waits_visibly_while_network_awaits_approval_and_is_blocked_when_it_is_rejected(
    order_app, demo_cloud, tf_env, slack
):
    _, app, config = order_app(slack, on_merge="ask", approvers=["U0ALICE"])
    first = deploys(app)  # returns once only runs waiting on people are left
    network, held = first["network"], app.store.get_run(first["app"].id)
    assert network.status is RunStatus.AWAITING_APPROVAL
    assert held.status is RunStatus.QUEUED, "app waits"
    shown = tfops_cli(config, "status", "--json", env=tf_env)
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert rows["app"]["depends_on"] == ["network"] and rows["network"]["depends_on"] == []
    waits = f"waiting for upstream network (run {network.id}, awaiting approval)"
    assert rows["app"]["waiting_for"] == waits
    table = tfops_cli(config, "status", env=tf_env)
    assert f"app: {waits}" in table.stdout
    assert waits in shown_in_slack(app, slack, held.id), "app's Slack message says what it waits for"

    app.decide(rejection(network.id))

    wait_for(lambda: app.store.get_run(held.id).status is RunStatus.BLOCKED, timeout=60, what="app blocked")
    [blocked] = [e for e in app.store.events(held.id) if e.to_status is RunStatus.BLOCKED]
    assert blocked.message == f"upstream network was rejected in run {network.id}"
    assert blocked.message in shown_in_slack(app, slack, held.id)
    assert cloud_object(demo_cloud, "app-web") is None, "app was never applied"


def shown_in_slack(app, slack, run_id: int) -> str:
    """The run's one Slack message as it reads now, once the outbox has delivered everything."""
    wait_for(lambda: app.store.outbox_depth() == 0, timeout=30, what="the outbox to empty")
    posted = app.store.get_slack_message(run_id)
    assert posted is not None, "the run has a Slack message"
    shown = slack.message(posted.channel, posted.ts)
    return shown.text + json.dumps(shown.blocks)


def rejection(run_id: int) -> DecisionRequest:
    user = local_user()
    return DecisionRequest(run_id, DecisionKind.REJECT, user, user, source=DecisionSource.CLI)
